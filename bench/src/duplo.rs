//! netDUPLO benchmark, on one test host, against `rsync -a --delete` over SSH from the same host
//! to the same storage disk:
//!   1. storage used by 10 VPSes made from one template, against one and against the sum of
//!      their sizes;
//!   2. one VPS holding a tree of 100,000 files: our first full copy and rsync's;
//!   3. the same tree with 10 files changed: our incremental cycle and rsync, median of rounds;
//!   4. continuous mode (1 s interval) under a steady write load: the lag p50/p99 for that VPS,
//!      then for 20 VPSes writing at once; the freeze time of their cycles.
//!
//! Usage: duplo-bench [--files N] [--rounds R] [--seconds S] [--vpses V]   (scripts/bench.sh duplo)

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use serverware_bench::*;
use serverware_testhosts::{Cluster, ClusterOptions, TestHost};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let files = arg("--files", 100_000)?;
    let rounds = arg("--rounds", 5)?;
    let seconds = arg("--seconds", 60)?;
    let vpses = arg("--vpses", 20)? as usize;
    raise_inotify_limits()?;
    actix_rt::System::new().block_on(run(files, rounds, seconds, vpses))
}

/// The journal watches every directory of every VPS and may queue many events: the host's
/// limits are raised if they are lower than this benchmark needs (never lowered).
fn raise_inotify_limits() -> Result<()> {
    for (key, want) in [
        ("/proc/sys/fs/inotify/max_user_watches", 1_048_576u64),
        ("/proc/sys/fs/inotify/max_queued_events", 1_048_576),
        ("/proc/sys/fs/inotify/max_user_instances", 1024),
    ] {
        let have: u64 = std::fs::read_to_string(key)?.trim().parse()?;
        if have < want {
            std::fs::write(key, want.to_string()).with_context(|| format!("cannot raise {key}"))?;
            println!("  raised {key} from {have} to {want}");
        }
    }
    Ok(())
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

/// Runs `args` inside VPS `vps` on the host, in the background; the child to end later.
fn in_vps(host: &TestHost, vps: &str, line: &str) -> Result<Child> {
    let pid = host.init_pid().context("the host is down")?.to_string();
    Ok(Command::new("nsenter")
        .args([
            "-t",
            &pid,
            "-m",
            "-p",
            "-n",
            "lxc-attach",
            "-n",
            vps,
            "--",
            "sh",
            "-c",
            line,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// The writers this run started inside VPSes, ended (by PID) when it ends.
struct Writers(Vec<Child>);
impl Drop for Writers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn status(api: &Api, vid: i64) -> Result<Value> {
    Ok(api
        .call("GET", &format!("/vpses/{vid}/duplo"), None)
        .await?
        .1)
}

/// Asks for a cycle now and waits for it; its restore point's row.
async fn cycle_now(api: &Api, vid: i64) -> Result<Value> {
    let before = status(api, vid).await?["last_cycle"].as_u64().unwrap_or(0);
    let (code, body) = api
        .call("POST", &format!("/vpses/{vid}/duplo/now"), Some(json!({})))
        .await?;
    if code != 202 {
        bail!("duplicate now: {body}");
    }
    first_point_after(api, vid, before).await
}

async fn first_point_after(api: &Api, vid: i64, before: u64) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let s = status(api, vid).await?;
        if s["last_cycle"].as_u64().unwrap_or(0) > before {
            let (_, points) = api
                .call("GET", &format!("/vpses/{vid}/points?limit=1000"), None)
                .await?;
            let p = points
                .as_array()
                .and_then(|v| {
                    v.iter()
                        .filter(|p| p["cycle"].as_u64().unwrap_or(0) > before)
                        .min_by_key(|p| p["cycle"].as_u64())
                })
                .cloned()
                .context("no point")?;
            return Ok(p);
        }
        if s["failures"].as_u64().unwrap_or(0) > 0 {
            bail!("the cycle failed: {}", s["last_error"]);
        }
        if Instant::now() > deadline {
            bail!("no cycle landed: {s}");
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_vps(api: &Api, name: &str, tpl: i64, host: i64, ip: String) -> Result<(i64, u32)> {
    let (code, task) = api
        .call(
            "POST",
            "/vpses",
            Some(
                json!({"name": name, "template_id": tpl, "host_id": host, "ipv4": ip,
                "memory_limit_bytes": 64u64 << 20, "start": true}),
            ),
        )
        .await?;
    if code != 202 {
        bail!("creating {name} failed: {task}");
    }
    let t = task_done(api, &task).await?;
    let vid: i64 = t["target_id"].as_str().context("no target")?.parse()?;
    let (_, v) = api.call("GET", &format!("/vpses/{vid}"), None).await?;
    Ok((vid, v["id_base"].as_u64().unwrap_or(0) as u32))
}

/// rsync of the VPS's tree from the host over SSH into `dest` on the storage disk; seconds. Run
/// off the client's runtime, which keeps serving meanwhile.
async fn rsync(ctl: &Controller, host: &TestHost, name: &str, dest: &Path) -> Result<f64> {
    let (key, port, addr) = (
        ctl.dir.join("data/controller_ed25519"),
        host.ssh_port,
        host.addr,
    );
    let (name, dest) = (name.to_string(), dest.to_path_buf());
    actix_rt::task::spawn_blocking(move || rsync_now(&key, port, addr, &name, &dest))
        .await
        .map_err(|_| anyhow::anyhow!("rsync's thread panicked"))?
}

fn rsync_now(
    key: &Path,
    port: u16,
    addr: std::net::Ipv4Addr,
    name: &str,
    dest: &Path,
) -> Result<f64> {
    let ssh = format!(
        "ssh -i {} -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        key.display()
    );
    std::fs::create_dir_all(dest)?;
    let t0 = Instant::now();
    let out = Command::new("rsync")
        .args(["-a", "--delete", "--numeric-ids", "-e", &ssh])
        .arg(format!("root@{addr}:/var/lib/lxc/{name}/rootfs/"))
        .arg(dest)
        .output()
        .context("cannot run rsync (apt install rsync)")?;
    if !out.status.success() {
        bail!("rsync failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// Flushes the filesystem holding `dir` to its disk (`sync -f`, which is `syncfs`).
fn syncfs(dir: &Path) -> Result<()> {
    let st = Command::new("sync").arg("-f").arg(dir).status()?;
    if !st.success() {
        bail!("sync -f {} failed", dir.display());
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    pct(&mut v, 50.0)
}

/// Samples every VPS's lag for `seconds`; all samples (ms).
async fn lags(api: &Api, vids: &[i64], seconds: u64) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        for v in vids {
            let s = status(api, *v).await?;
            if let Some(l) = s["lag_ms"].as_f64() {
                out.push(l);
            }
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(out)
}

/// Freeze times (ms) of the cycles of `vids` read after `since_ms`, and how many were
/// consistent (the VPS frozen for the whole read) of how many.
async fn freezes(api: &Api, vids: &[i64], since_ms: i64) -> Result<(Vec<f64>, usize, usize)> {
    let (mut ms, mut consistent, mut all) = (Vec::new(), 0, 0);
    for v in vids {
        let (_, points) = api
            .call("GET", &format!("/vpses/{v}/points?limit=1000"), None)
            .await?;
        for p in points.as_array().into_iter().flatten() {
            let taken = p["taken_at"].as_str().unwrap_or("");
            let t = chrono_ms(taken);
            if t < since_ms || p["full"] == true {
                continue;
            }
            all += 1;
            if p["consistent"] == true {
                consistent += 1;
                ms.push(p["freeze_ms"].as_f64().unwrap_or(0.0));
            }
        }
    }
    Ok((ms, consistent, all))
}

/// Milliseconds since the epoch of an RFC 3339 UTC time such as 2026-11-26T04:56:47.643Z.
fn chrono_ms(s: &str) -> i64 {
    let out = Command::new("date").args(["-d", s, "+%s%3N"]).output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

async fn run(files: u64, rounds: u64, seconds: u64, nvpses: usize) -> Result<()> {
    let ctl = start_controller()?;
    let r = measure(&ctl, files, rounds, seconds, nvpses).await;
    if r.is_err() {
        eprintln!("controller log (last lines):");
        for l in ctl.log_tail(60) {
            eprintln!("  {l}");
        }
    }
    r
}

async fn measure(
    ctl: &Controller,
    files: u64,
    rounds: u64,
    seconds: u64,
    nvpses: usize,
) -> Result<()> {
    println!("netDUPLO benchmark on one test host: {files} files, {rounds} incremental rounds, {seconds} s of continuous mode, {nvpses} VPSes writing at once");
    let cluster = Cluster::create(ClusterOptions {
        hosts: 1,
        ..Default::default()
    })?;
    let h = &cluster.hosts[0];
    let net = format!("10.77.{}", cluster.subnet);
    let api = admin_api(ctl).await?;
    let host = store_host(&api, h).await?;
    let (_, templates) = api.call("GET", "/templates", None).await?;
    let tpl = templates[0]["id"].as_i64().context("no template")?;
    let storage = ctl.dir.join("data/storage/duplo");

    // 1. Ten VPSes from one template.
    let (mut small, one, ten, tree_bytes) =
        from_one_template(&api, tpl, host, &net, &storage).await?;

    // 2. A tree of many files: full copies.
    let full = full_copy(ctl, h, &api, tpl, host, &net, files).await?;
    let big = full.big;

    // 3. Ten files changed.
    let (o, t) = ten_changed(ctl, h, &api, &full, files, rounds).await?;

    // 4. Continuous mode under a steady write load.
    let (code, body) = api
        .call(
            "PATCH",
            &format!("/hosts/{host}"),
            Some(json!({"duplo_interval_secs": 1})),
        )
        .await?;
    if code != 200 {
        bail!("continuous mode: {body}");
    }
    let writer = "i=0; while true; do i=$((i+1)); echo \"line $i\" >> /root/log; echo $i > /root/file-$((i % 50)); usleep 100000; done";
    let mut w = Writers(vec![in_vps(h, "big", writer)?]);
    let since = now_ms();
    let mut l1 = lags(&api, &[big], seconds).await?;
    drop(w);
    let (mut f1, c1, a1) = freezes(&api, &[big], since).await?;
    println!(
        "  continuous, 1 VPS of {files} files writing 10 times a second: lag p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} samples (target p99 < 2000 ms); freeze p50 {:.0} ms, p99 {:.0} ms ({c1} of {a1} cycles frozen for the whole read)",
        pct(&mut l1, 50.0),
        pct(&mut l1, 99.0),
        pct(&mut l1, 100.0),
        l1.len(),
        pct(&mut f1, 50.0),
        pct(&mut f1, 99.0)
    );
    // 20 small VPSes writing at once (the big one rests).
    let (code, body) = api
        .call(
            "PATCH",
            &format!("/vpses/{big}/duplo"),
            Some(json!({"enabled": false})),
        )
        .await?;
    if code != 200 {
        bail!("{body}");
    }
    for i in small.len()..nvpses {
        let (v, _) = create_vps(
            &api,
            &format!("tpl-{i}"),
            tpl,
            host,
            format!("{net}.{}", 20 + i),
        )
        .await?;
        small.push(v);
    }
    small.truncate(nvpses);
    w = Writers(Vec::new());
    for i in 0..nvpses {
        w.0.push(in_vps(h, &format!("tpl-{i}"), writer)?);
    }
    let since = now_ms();
    let mut l20 = lags(&api, &small, seconds).await?;
    drop(w);
    let (mut f20, c20, a20) = freezes(&api, &small, since).await?;
    println!(
        "  continuous, {nvpses} VPSes writing at once: lag p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} samples (target p99 < 2000 ms); freeze p50 {:.0} ms, p99 {:.0} ms ({c20} of {a20} cycles frozen for the whole read)",
        pct(&mut l20, 50.0),
        pct(&mut l20, 99.0),
        pct(&mut l20, 100.0),
        l20.len(),
        pct(&mut f20, 50.0),
        pct(&mut f20, 99.0)
    );
    println!();
    println!("| measure | ours | rsync -a --delete over SSH | target |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| full copy, {files} files | {:.2} s | {:.2} s | within 1.2× ({:.2}×) |",
        full.ours,
        full.rsync,
        full.ours / full.rsync
    );
    println!(
        "| full copy, durable (rsync then sync) | {:.2} s | {:.2} s | ({:.2}×) |",
        full.ours,
        full.rsync_synced,
        full.ours / full.rsync_synced
    );
    println!(
        "| 10 files changed (median of {rounds}) | {o:.3} s | {t:.3} s | ≥ 20× faster ({:.0}×) |",
        t / o
    );
    println!(
        "| lag p99, 1 VPS, 1 s interval | {:.0} ms | – | < 2000 ms |",
        pct(&mut l1, 99.0)
    );
    println!(
        "| lag p99, {nvpses} VPSes, 1 s interval | {:.0} ms | – | < 2000 ms |",
        pct(&mut l20, 99.0)
    );
    println!(
        "| freeze per cycle p99 (1 VPS / {nvpses}) | {:.0} / {:.0} ms | – | – |",
        pct(&mut f1, 99.0),
        pct(&mut f20, 99.0)
    );
    println!(
        "| storage, 10 VPSes from one template | {} ({:.2}× one; trees {}) | – | < 1.5× one |",
        mb(ten),
        ten as f64 / one.max(1) as f64,
        mb(10 * tree_bytes)
    );
    Ok(())
}

/// Ten VPSes made from one template, each duplicated once: their VPS ids, and storage after
/// the first and after all ten (and the size of one tree).
async fn from_one_template(
    api: &Api,
    tpl: i64,
    host: i64,
    net: &str,
    storage: &std::path::Path,
) -> Result<(Vec<i64>, u64, u64, u64)> {
    let mut small = Vec::new();
    let (v0, _) = create_vps(api, "tpl-0", tpl, host, format!("{net}.20")).await?;
    first_point_after(api, v0, 0).await?;
    let one = du(&storage.join("chunks"));
    small.push(v0);
    for i in 1..10 {
        let (v, _) = create_vps(
            api,
            &format!("tpl-{i}"),
            tpl,
            host,
            format!("{net}.{}", 20 + i),
        )
        .await?;
        first_point_after(api, v, 0).await?;
        small.push(v);
    }
    let ten = du(&storage.join("chunks"));
    let (_, p0) = api
        .call("GET", &format!("/vpses/{v0}/points?limit=1"), None)
        .await?;
    let tree_bytes = p0[0]["bytes"].as_u64().unwrap_or(0);
    println!(
        "  storage for 1 VPS from the template: {}; for 10: {} ({:.2}× one; their trees add up to {})",
        mb(one),
        mb(ten),
        ten as f64 / one.max(1) as f64,
        mb(10 * tree_bytes)
    );
    Ok((small, one, ten, tree_bytes))
}

/// A full copy of a VPS with many files, timed against rsync.
struct FullCopy {
    big: i64,
    /// Where its files are, on the test host.
    tree: std::path::PathBuf,
    /// rsync's copy.
    dest: std::path::PathBuf,
    ours: f64,
    rsync: f64,
    rsync_synced: f64,
}

/// Writes `files` files into a new VPS and copies it in full, ours and rsync's.
async fn full_copy(
    ctl: &Controller,
    h: &serverware_testhosts::TestHost,
    api: &Api,
    tpl: i64,
    host: i64,
    net: &str,
    files: u64,
) -> Result<FullCopy> {
    let (big, base) = create_vps(api, "big", tpl, host, format!("{net}.60")).await?;
    first_point_after(api, big, 0).await?;
    let root = h.dir.join("lxc/big/rootfs");
    let t0 = Instant::now();
    let tree = root.join("srv/tree");
    // Written on a thread of its own: the client's runtime keeps running.
    let t2 = tree.clone();
    actix_rt::task::spawn_blocking(move || -> Result<()> {
        for i in 0..files {
            let d = t2.join(format!("d{:03}", i / 1000));
            if i % 1000 == 0 {
                std::fs::create_dir_all(&d)?;
            }
            // About 2 KiB each, every file's content its own.
            let body = format!("file {i} ").repeat(200 + (i % 50) as usize);
            let p = d.join(format!("f{i:06}"));
            std::fs::write(&p, body)?;
            std::os::unix::fs::lchown(&p, Some(base), Some(base))?;
        }
        Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
    println!(
        "  wrote {files} files into the VPS in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let point = cycle_now(api, big).await?;
    let ours_full = point["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    if point["full"] != true {
        println!("  (note: that cycle was incremental: {point})");
    }
    let dest = ctl.dir.join("data/storage/rsync-big");
    let rsync_full = rsync(ctl, h, "big", &dest).await?;
    // rsync leaves its copy in the page cache; a cycle lands only once its point is durable.
    // The same guarantee for rsync's copy: its filesystem synced right after it.
    let t_sync = Instant::now();
    let d2 = dest.clone();
    actix_rt::task::spawn_blocking(move || syncfs(&d2))
        .await
        .map_err(|_| anyhow::anyhow!("sync's thread panicked"))??;
    let rsync_synced = rsync_full + t_sync.elapsed().as_secs_f64();
    println!(
        "  full copy of {} entries ({}): ours {:.2} s (durable), rsync {:.2} s ({:.2}× rsync), rsync then sync {:.2} s ({:.2}×); why full: {}",
        point["files"],
        mb(point["bytes"].as_u64().unwrap_or(0)),
        ours_full,
        rsync_full,
        ours_full / rsync_full,
        rsync_synced,
        ours_full / rsync_synced,
        point["full_reason"]
    );
    Ok(FullCopy {
        big,
        tree,
        dest,
        ours: ours_full,
        rsync: rsync_full,
        rsync_synced,
    })
}

/// Ten files changed, `rounds` times: the median cycle, ours and rsync's (s).
async fn ten_changed(
    ctl: &Controller,
    h: &serverware_testhosts::TestHost,
    api: &Api,
    full: &FullCopy,
    files: u64,
    rounds: u64,
) -> Result<(f64, f64)> {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        for k in 0..10u64 {
            let i = (r * 7919 + k * 104_729) % files;
            let p = full.tree.join(format!("d{:03}/f{i:06}", i / 1000));
            std::fs::write(&p, format!("changed in round {r} ").repeat(100))?;
        }
        let p = cycle_now(api, full.big).await?;
        if p["full"] == true {
            println!("  (round {r} compared in full: {})", p["full_reason"]);
        }
        ours.push(p["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0);
        theirs.push(rsync(ctl, h, "big", &full.dest).await?);
    }
    let (o, t) = (median(ours.clone()), median(theirs.clone()));
    println!(
        "  10 files changed, median of {rounds}: ours {:.3} s, rsync {:.3} s: {:.0}× faster (target ≥ 20×)",
        o,
        t,
        t / o
    );
    Ok((o, t))
}

/// The test host added as `store`, online, cycling when asked (a day apart otherwise) until
/// continuous mode, 8 streams at once: its id.
async fn store_host(api: &Api, h: &serverware_testhosts::TestHost) -> Result<i64> {
    let host = add_host(api, "store", h).await?;
    wait_for(api, &format!("/hosts/{host}"), "host online", |h| {
        h["status"] == "online"
    })
    .await?;
    let (code, body) = api
        .call(
            "PATCH",
            &format!("/hosts/{host}"),
            Some(json!({"duplo_interval_secs": 86400, "max_transfers": 8})),
        )
        .await?;
    if code != 200 {
        bail!("host settings: {body}");
    }
    Ok(host)
}
