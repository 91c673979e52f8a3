//! netRES benchmark: a release controller (its own process) watching real test hosts.
//!
//! Prints
//! - time from adding a host (the API call returning) to its first sample on the live socket,
//! - latency from an agent taking a sample to a live-socket client receiving it (p50, p99),
//! - time to detect a powered-off host (offline status on the live socket), and to see it
//!   online again after it boots,
//! - the controller's CPU and memory while it watches the hosts.
//!
//! The live-socket client is this program, speaking the dashboard's protocol (`host:<id>`
//! topics); a browser adds its own event-loop delay on top. Agent and controller run on this
//! machine, so both timestamps come from the same clock.
//!
//! Usage: netres-bench [--hosts N] [--seconds S]   (scripts/bench.sh builds and runs it as root)

use anyhow::Result;
use serverware_bench::*;
use serverware_testhosts::{Cluster, ClusterOptions};
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let hosts = arg("--hosts", 4)? as usize;
    let seconds = arg("--seconds", 60)?;
    actix_rt::System::new().block_on(run(hosts, seconds))
}

async fn run(n: usize, seconds: u64) -> Result<()> {
    println!("netRES benchmark: {n} test hosts, {seconds} s of samples at 1 s intervals");
    let mut cluster = Cluster::create(ClusterOptions {
        hosts: n,
        ..Default::default()
    })?;
    let ctl = start_controller()?;
    let api = admin_api(&ctl).await?;

    // 1. Adding: from the API call returning to the first sample on the live socket.
    let mut status_sock = api.socket(&["hosts".to_string()]).await?;
    let mut ids = Vec::new();
    let mut first_sample = Vec::new();
    for (i, h) in cluster.hosts.iter().enumerate() {
        let id = add_host(&api, &format!("bench-{}", i + 1), h).await?;
        let added = Instant::now();
        loop {
            let m = next_json(&mut status_sock, Duration::from_secs(30)).await?;
            if m["type"] == "host_status" && m["host_id"] == id && m["summary"].is_object() {
                break;
            }
        }
        first_sample.push(added.elapsed().as_secs_f64() * 1000.0);
        ids.push(id);
    }

    // 2. Steady state: sample → live-socket latency, controller CPU and memory.
    let topics: Vec<String> = ids.iter().map(|id| format!("host:{id}")).collect();
    let mut sample_sock = api.socket(&topics).await?;
    // Let the subscription settle, then measure.
    let warm = Instant::now() + Duration::from_secs(3);
    while Instant::now() < warm {
        let _ = next_json(&mut sample_sock, Duration::from_secs(5)).await?;
    }
    let pid = ctl.child.id();
    let (cpu0, _, _) = usage(pid)?;
    let t0 = Instant::now();
    let mut lat = Vec::new();
    let end = t0 + Duration::from_secs(seconds);
    while Instant::now() < end {
        let m = next_json(&mut sample_sock, Duration::from_secs(10)).await?;
        if m["type"] == "host_sample" {
            let taken = m["sample"]["taken_at_ms"].as_i64().unwrap_or(0);
            lat.push((now_ms() - taken) as f64);
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let (cpu1, rss, hwm) = usage(pid)?;
    drop(sample_sock);
    // Drain what queued on the status socket meanwhile.
    drop(status_sock);
    let mut status_sock = api.socket(&["hosts".to_string()]).await?;

    // 3. Power off each host in turn: time until the live socket says offline; boot: online.
    let mut offline = Vec::new();
    let mut back = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let t = Instant::now();
        cluster.power_off(i)?;
        loop {
            let m = next_json(&mut status_sock, Duration::from_secs(60)).await?;
            if m["type"] == "host_status" && m["host_id"] == *id && m["status"] == "offline" {
                break;
            }
        }
        offline.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        cluster.boot(i)?;
        loop {
            let m = next_json(&mut status_sock, Duration::from_secs(60)).await?;
            if m["type"] == "host_status" && m["host_id"] == *id && m["status"] == "online" {
                break;
            }
        }
        back.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    let count = lat.len();
    println!();
    println!(
        "{:<58} {:>10} {:>10} {:>10}",
        "measure", "p50", "p99/max", "target"
    );
    println!(
        "{:<58} {:>8.0}ms {:>8.0}ms {:>10}",
        format!(
            "first sample after adding a host (n={})",
            first_sample.len()
        ),
        pct(&mut first_sample.clone(), 50.0),
        pct(&mut first_sample, 100.0),
        "< 3000ms"
    );
    println!(
        "{:<58} {:>8.1}ms {:>8.1}ms {:>10}",
        format!("agent sample -> live-socket client, 1 ms resolution (n={count})"),
        pct(&mut lat.clone(), 50.0),
        pct(&mut lat, 99.0),
        ""
    );
    println!(
        "{:<58} {:>8.0}ms {:>8.0}ms {:>10}",
        format!("powered-off host shown offline (n={})", offline.len()),
        pct(&mut offline.clone(), 50.0),
        pct(&mut offline, 100.0),
        "< 5000ms"
    );
    println!(
        "{:<58} {:>8.0}ms {:>8.0}ms {:>10}",
        format!(
            "booted host online again, incl. sshd start (n={})",
            back.len()
        ),
        pct(&mut back.clone(), 50.0),
        pct(&mut back, 100.0),
        ""
    );
    println!(
        "controller while watching {n} hosts: CPU {:.2} % of one core over {wall:.0} s, RSS {:.1} MiB (peak {:.1} MiB)",
        (cpu1 - cpu0) / wall * 100.0,
        rss as f64 / 1048576.0,
        hwm as f64 / 1048576.0
    );
    Ok(())
}
