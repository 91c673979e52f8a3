//! Network provisioning benchmark: machines with empty disks (QEMU, on a test bridge where a test
//! host plays the site's DHCP server) boot from the controller, join and come online, and a VPS
//! is created on each; timed from power-on to the host online and to the VPS answering HTTP, p50
//! over `--boots` machines (the target: under 2 minutes to a VPS answering, no manual step: the
//! site allows any machine to join). Before that, `serverware image build` timed cold (a new
//! images directory: debootstrap from the Debian mirror) and cached (the same inputs again), unless
//! `--cold 0` (then the images `scripts/test.sh` built are used).
//!
//! The machines run under TCG (software emulation) unless `SERVERWARE_TEST_QEMU_ACCEL=kvm`.
//!
//! Usage: provision-bench [--boots N] [--cold 0|1]   (scripts/bench.sh provision)

use anyhow::{bail, Context, Result};
use serde_json::json;
use serverware_bench::*;
use serverware_testhosts::{Cluster, ClusterOptions, Vm};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn build_image(images: &Path) -> Result<f64> {
    let bin = std::env::current_exe()?.with_file_name("serverware");
    let t = Instant::now();
    let out = Command::new(&bin)
        .args(["--config", "/dev/null", "--images-dir"])
        .arg(images)
        .args(["image", "build"])
        .env(
            "SERVERWARE_AGENT_BIN",
            bin.with_file_name("serverware-agent"),
        )
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "image build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(t.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let boots = arg("--boots", 5)? as usize;
    let cold = arg("--cold", 1)? == 1;
    let cache = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
        .join(".cache/serverware");
    let scratch = tempfile::tempdir_in(&cache)?;
    let images = if cold {
        scratch.path().join("images")
    } else {
        cache.join("images")
    };
    // The first build: cold (a new directory) or on the cached debootstrap base (this agent
    // is new there); the second finds it built.
    let first_s = build_image(&images)?;
    let cached_s = build_image(&images)?;
    actix_rt::System::new().block_on(async move {
        let cluster = Cluster::create(ClusterOptions {
            hosts: 1,
            ..Default::default()
        })?;
        let net = format!("10.77.{}", cluster.subnet);
        let mut dhcp = Command::new("ip")
            .args([
                "netns",
                "exec",
                cluster.hosts[0].netns(),
                "dnsmasq",
                "--keep-in-foreground",
                "--port=0",
            ])
            .args([
                "--interface=br0",
                "--bind-interfaces",
                "--pid-file=",
                "--dhcp-leasefile=/dev/null",
            ])
            .arg(format!("--dhcp-range={net}.100,{net}.199,255.255.255.0,1h"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("dnsmasq")?;
        let images_env = images.to_string_lossy().to_string();
        let ctl = start_controller_env(
            &[],
            &[
                ("SERVERWARE_LISTEN", "0.0.0.0"),
                ("SERVERWARE_IMAGES_DIR", &images_env),
            ],
        )?;
        let r = measure(&ctl, &cluster, boots).await;
        // The controller's boot service goes with it (it is killed outright when dropped).
        let mark = format!("serverware-boot-{}-", ctl.child.id());
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if let (true, Ok(pid)) = (cmd.starts_with("dnsmasq") && cmd.contains(&mark), e.file_name().to_string_lossy().parse::<i32>()) {
                // SAFETY: a signal to the boot service of the controller this bench started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let _ = dhcp.kill();
        let _ = dhcp.wait();
        if r.is_err() {
            for l in ctl.log_tail(30) {
                eprintln!("  {l}");
            }
        }
        let (mut online, mut vps) = r?;
        println!("\n| measure | SERVERware |\n| --- | --- |");
        if cold {
            println!("| serverware image build, cold (debootstrap from the mirror) | {first_s:.0} s |");
        } else {
            println!("| serverware image build, new agent on the cached debootstrap base | {first_s:.0} s |");
        }
        println!("| serverware image build, cached (same inputs) | {cached_s:.1} s |");
        println!(
            "| power-on → host online, p50 / max of {boots} | {:.1} / {:.1} s |",
            pct(&mut online, 50.0),
            pct(&mut online, 100.0)
        );
        println!(
            "| power-on → first VPS answering, p50 / max of {boots} | {:.1} / {:.1} s |",
            pct(&mut vps, 50.0),
            pct(&mut vps, 100.0)
        );
        println!("| manual steps | 0 (the site allows any machine to join) |");
        println!(
            "accelerator: {}",
            std::env::var("SERVERWARE_TEST_QEMU_ACCEL")
                .unwrap_or_else(|_| "tcg (software emulation)".into())
        );
        Ok(())
    })
}

/// Boots `boots` machines one after another; each one's times to online and to its VPS answering.
async fn measure(
    ctl: &Controller,
    cluster: &Cluster,
    boots: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let api = admin_api(ctl).await?;
    let port = ctl.url.rsplit(':').next().unwrap_or_default().to_string();
    let net = format!("10.77.{}", cluster.subnet);
    let (s, v) = api
        .call("PUT", "/provision/settings", Some(json!({"enabled": true, "interface": cluster.bridge, "network": format!("{net}.0/24"), "controller_url": format!("http://{}:{port}", cluster.gateway), "allow_unapproved": true})))
        .await?;
    if s != 200 {
        bail!("settings refused: {v}");
    }
    let (_, tpls) = api.call("GET", "/templates", None).await?;
    let tpl = tpls[0]["id"].as_i64().context("no template")?;
    let dir = tempfile::tempdir()?;
    let (mut online, mut answering) = (Vec::new(), Vec::new());
    for i in 0..boots {
        let mac = format!("52:54:00:78:{:02x}:{:02x}", cluster.subnet, i + 1);
        let mut vm = Vm::new(
            dir.path(),
            &cluster.bridge,
            &format!("swvb{}", cluster.subnet),
            &mac,
            4,
        )?;
        let t0 = Instant::now();
        vm.power_on()?;
        let name = format!("host-{}", &mac.replace(':', "")[6..]);
        let host = loop {
            let (_, hosts) = api.call("GET", "/hosts", None).await?;
            if let Some(h) = hosts
                .as_array()
                .into_iter()
                .flatten()
                .find(|h| h["name"] == name.as_str() && h["status"] == "online")
            {
                break h["id"].as_i64().unwrap_or(0);
            }
            if t0.elapsed() > Duration::from_secs(1200) || !vm.is_on() {
                bail!(
                    "machine {mac} did not come online; its console ends:\n{}",
                    tail(&vm.console())
                );
            }
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        };
        online.push(t0.elapsed().as_secs_f64());
        let ip = format!("{net}.{}", 60 + i);
        let (s, task) = api
            .call("POST", "/vpses", Some(json!({"name": format!("web-{i}"), "template_id": tpl, "host_id": host, "ipv4": ip, "memory_limit_bytes": 64 << 20, "start": true})))
            .await?;
        if s != 202 {
            bail!("VPS create refused: {task}");
        }
        while !answers(&ip, &format!("web-{i}")) {
            if t0.elapsed() > Duration::from_secs(1500) {
                bail!("the VPS on {name} never answered");
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        answering.push(t0.elapsed().as_secs_f64());
        println!(
            "boot {}: online after {:.1} s, VPS answering after {:.1} s",
            i + 1,
            online[i],
            answering[i]
        );
    }
    Ok((online, answering))
}

fn tail(s: &str) -> String {
    s.lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n")
}
