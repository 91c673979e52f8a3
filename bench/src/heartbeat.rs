//! Heartbeat benchmark: one test host running many VPSes, one of them with a large root
//! filesystem of many small files. Prints the gaps between the host's samples as a live-socket
//! client receives them (p50 / p99 / max), whether the host ever looked offline, and the agent's
//! CPU. Per-VPS figures are gathered off the heartbeat path, so the gaps stay at the interval.
//!
//! Usage: heartbeat-bench [--vpses N] [--gb G] [--seconds S]   (scripts/bench.sh heartbeat)

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use serverware_bench::*;
use serverware_testhosts::{Cluster, ClusterOptions};
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let vpses = arg("--vpses", 50)? as usize;
    let gb = arg("--gb", 2)?;
    let seconds = arg("--seconds", 120)?;
    actix_rt::System::new().block_on(run(vpses, gb, seconds))
}

/// Writes `gb` GiB of 32 KiB files (1000 to a directory) under `root`; returns the file count.
fn small_files(root: &std::path::Path, gb: u64) -> Result<u64> {
    let block: Vec<u8> = (0..32 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let files = gb * 1024 * 1024 / 32;
    for i in 0..files {
        let d = root.join(format!("d{}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&d)?;
        }
        std::fs::write(d.join(format!("f{i}")), &block)?;
    }
    Ok(files)
}

/// The agent serving the controller on the host (the one run without arguments).
fn agent_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        (args.len() == 1 && args[0].ends_with(b"serverware-agent")).then_some(pid)
    })
}

async fn run(vpses: usize, gb: u64, seconds: u64) -> Result<()> {
    println!("heartbeat benchmark: {vpses} running VPSes on one test host, one with {gb} GiB of small files, {seconds} s at a 1 s interval");
    let cluster = Cluster::create(ClusterOptions {
        hosts: 1,
        ..Default::default()
    })?;
    let net = format!("10.77.{}", cluster.subnet);
    let ctl = start_controller()?;
    let api = admin_api(&ctl).await?;
    let host = add_host(&api, "busy", &cluster.hosts[0]).await?;
    wait_for(&api, &format!("/hosts/{host}"), "host online", |h| {
        h["status"] == "online"
    })
    .await?;
    let (_, templates) = api.call("GET", "/templates", None).await?;
    let tpl = templates[0]["id"].as_i64().context("no template")?;
    let t0 = Instant::now();
    for i in 0..vpses {
        let (code, task) = api
            .call(
                "POST",
                "/vpses",
                Some(json!({"name": format!("hb-{i}"), "template_id": tpl, "host_id": host,
                    "ipv4": format!("{net}.{}", 20 + i), "memory_limit_bytes": 32u64 << 20, "start": true})),
            )
            .await?;
        if code != 202 {
            bail!("creating hb-{i} failed: {task}");
        }
        task_done(&api, &task).await?;
    }
    println!(
        "  {vpses} VPSes created and running in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let t0 = Instant::now();
    let root = cluster.hosts[0].dir.join("lxc/hb-0/rootfs/var/lib/filler");
    let files = small_files(&root, gb)?;
    println!(
        "  {files} files ({gb} GiB) written into hb-0 in {:.0} s",
        t0.elapsed().as_secs_f64()
    );

    let pid = agent_pid().context("the agent is not running")?;
    let cpu0 = usage(pid)?.0;
    // Status changes on `hosts`; every sample on the host's own topic.
    let mut socket = api
        .socket(&["hosts".to_string(), format!("host:{host}")])
        .await?;
    let (mut last, mut gaps, mut flaps) = (None::<Instant>, Vec::new(), 0u32);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(frame))) = actix_rt::time::timeout(left, socket.next()).await else {
            continue;
        };
        let text = match frame {
            awc::ws::Frame::Text(text) => text,
            // The controller closes a socket that stays silent: answer its pings.
            awc::ws::Frame::Ping(p) => {
                socket.send(awc::ws::Message::Pong(p)).await?;
                continue;
            }
            awc::ws::Frame::Close(_) => bail!("the controller closed the socket"),
            _ => continue,
        };
        let m: serde_json::Value = serde_json::from_slice(&text)?;
        if m["host_id"] != host {
            continue;
        }
        if m["type"] == "host_status" && m["status"] != "online" {
            flaps += 1;
            continue;
        }
        if m["type"] != "host_sample" {
            continue;
        }
        let now = Instant::now();
        if let Some(l) = last {
            gaps.push(now.duration_since(l).as_secs_f64() * 1000.0);
        }
        last = Some(now);
    }
    let cpu = (usage(pid)?.0 - cpu0) / start.elapsed().as_secs_f64() * 100.0;
    let n = gaps.len();
    let (p50, p99) = (pct(&mut gaps, 50.0), pct(&mut gaps, 99.0));
    let max = gaps.iter().cloned().fold(0.0, f64::max);
    println!();
    println!("| measure | value | target |");
    println!("| --- | --- | --- |");
    println!("| heartbeat gap p50 / p99 / max ({n} gaps) | {p50:.0} / {p99:.0} / {max:.0} ms | p99 < 1500 ms |");
    println!("| samples not online (offline flaps) | {flaps} | 0 |");
    println!("| agent CPU (of one core) | {cpu:.1} % | |");
    Ok(())
}
