//! Id-shift benchmark: what giving an unprivileged VPS its own id range costs when its root
//! filesystem is unpacked. A tree of many small files (a Debian system has about 20 000) is
//! packed once, then unpacked by the agent on a real test host twice: keeping its ids (as a move
//! does) and shifting them into a VPS's range (as a create or a copy does). Prints both times and
//! the shift's own time as the agent reports it.
//!
//! Usage: idshift-bench [--files N] [--rounds R]   (scripts/bench.sh idshift)

use anyhow::{bail, Context, Result};
use serverware_bench::*;
use serverware_shared::agent::FIRST_ID_BASE;
use serverware_testhosts::{Cluster, ClusterOptions};
use std::process::{Command, Stdio};
use std::time::Instant;

fn main() -> Result<()> {
    let files = arg("--files", 20_000)?;
    let rounds = arg("--rounds", 3)? as usize;
    println!("id-shift benchmark: a root filesystem of {files} files, unpacked {rounds} times each way on a test host");
    let work = std::env::temp_dir().join(format!("serverware-idshift-{}", std::process::id()));
    let _cleanup = Cleanup(work.clone());
    let tree = work.join("tree");
    for i in 0..files {
        let d = tree.join(format!("usr/share/d{}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&d)?;
        }
        std::fs::write(d.join(format!("f{i}")), format!("file {i}\n"))?;
    }
    let archive = work.join("rootfs.tar");
    let ok = Command::new("tar")
        .args(["-c", "--numeric-owner", "-f"])
        .arg(&archive)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()?
        .success();
    if !ok {
        bail!("tar failed");
    }
    let cluster = Cluster::create(ClusterOptions {
        hosts: 1,
        ..Default::default()
    })?;
    let host = &cluster.hosts[0];
    let agent = std::env::current_exe()?.with_file_name("serverware-agent");
    let on_host = host.dir.join("serverware-agent");
    std::fs::copy(&agent, &on_host).with_context(|| format!("cannot copy {}", agent.display()))?;
    let pid = host
        .init_pid()
        .context("the test host is not running")?
        .to_string();
    let modes = [
        ("keeping ids (a move)", "0:0".to_string()),
        (
            "shifting ids into a VPS's range (a create or copy)",
            format!("0:{FIRST_ID_BASE}"),
        ),
    ];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut shift_ms = Vec::new();
    // Rounds alternate the two ways, so the disk's state weighs on both alike.
    for r in 0..rounds {
        for (m, (_, ids)) in modes.iter().enumerate() {
            let name = format!("shiftbench-{r}-{m}");
            let t0 = Instant::now();
            let out = Command::new("nsenter")
                .args(["-t", &pid, "-m", "--"])
                .arg(&on_host)
                .args(["rootfs-import", &name, "--ids", ids])
                .stdin(Stdio::from(std::fs::File::open(&archive)?))
                .output()?;
            wall[m].push(t0.elapsed().as_secs_f64() * 1000.0);
            if !out.status.success() {
                bail!("import failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            // "ids of N files shifted from A to B in X ms"
            let note = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if let Some(ms) = note
                .strip_suffix(" ms")
                .and_then(|n| n.rsplit(' ').next())
                .and_then(|n| n.parse::<f64>().ok())
            {
                shift_ms.push(ms);
            }
            std::fs::remove_dir_all(host.dir.join("lxc").join(&name))?;
        }
    }
    for (m, (label, _)) in modes.iter().enumerate() {
        println!(
            "  whole unpack {label:<52} median {:>7.0} ms",
            pct(&mut wall[m], 50.0)
        );
    }
    let median = pct(&mut shift_ms, 50.0);
    println!(
        "  the shift alone (as the agent times it): median {median:.0} ms for {} entries, {:.0} entries/s",
        files,
        files as f64 / (median / 1000.0)
    );
    Ok(())
}

struct Cleanup(std::path::PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
