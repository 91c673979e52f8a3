//! netMON failover benchmark on three test hosts: one HA VPS (its services checked on port 80);
//! each round lands a fresh restore point, powers the VPS's host off, and times power-off →
//! the VPS answering HTTP at its address on another host; then the host boots again (its stale
//! copy is removed) for the next round. Printed: p50 / p99 over the rounds, for the minimal
//! template and for a VPS holding `--gb` GiB of files, beside Proxmox VE's documented ~120 s.
//!
//! Then `--many M` HA VPSes on one host of two, the survivor with room for all: the time until
//! every one answers there. Then `--soak S` seconds of both cores saturated by CPU and disk load
//! on every host, heartbeats late but hosts alive: how many failovers, suspicions and self-fences
//! (the target is none).
//!
//! Then `--cut C` HA VPSes on one host of two whose link is cut (it is alive, only unreachable):
//! when its guard had stopped them all, how long before the first ran on the other host (it must
//! be before: never twice), and when the last answered there.
//!
//! Usage: failover-bench [--rounds N] [--gb G] [--many M] [--cut C] [--soak S]
//! (scripts/bench.sh failover; 0 skips a part)

use anyhow::{bail, Context, Result};
use serde_json::json;
use serverware_bench::*;
use serverware_testhosts::{Cluster, ClusterOptions};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let rounds = arg("--rounds", 10)?;
    let gb = arg("--gb", 1)?;
    let many = arg("--many", 12)?;
    let cut = arg("--cut", 12)?;
    let soak = arg("--soak", 600)?;
    actix_rt::System::new().block_on(async move {
        if rounds > 0 {
            run(rounds, gb).await?;
        }
        if many > 0 {
            let ctl = start_controller()?;
            let r = many_at_once(&ctl, many).await;
            tail_on_error(&ctl, &r);
            r?;
        }
        if cut > 0 {
            let ctl = start_controller()?;
            let r = cut_off(&ctl, cut).await;
            tail_on_error(&ctl, &r);
            r?;
        }
        if soak > 0 {
            let ctl = start_controller()?;
            let r = soak_run(&ctl, soak).await;
            tail_on_error(&ctl, &r);
            r?;
        }
        Ok(())
    })
}

fn tail_on_error<T>(ctl: &Controller, r: &Result<T>) {
    if r.is_err() {
        eprintln!("controller log (last lines):");
        for l in ctl.log_tail(30) {
            eprintln!("  {l}");
        }
    }
}

/// A controller with `n` test hosts added and online; the cluster, the API, the hosts, the
/// template.
async fn site(ctl: &Controller, n: usize) -> Result<(Cluster, Api, Vec<i64>, i64)> {
    let cluster = Cluster::create(ClusterOptions {
        hosts: n,
        ..Default::default()
    })?;
    let api = admin_api(ctl).await?;
    let mut hosts = Vec::new();
    for (i, h) in cluster.hosts.iter().enumerate() {
        let id = add_host(&api, &format!("node-{i}"), h).await?;
        wait_for(&api, &format!("/hosts/{id}"), "host online", |h| {
            h["status"] == "online"
        })
        .await?;
        hosts.push(id);
    }
    let (_, templates) = api.call("GET", "/templates", None).await?;
    let tpl = templates[0]["id"].as_i64().context("no template")?;
    Ok((cluster, api, hosts, tpl))
}

/// `many` HA VPSes on the first of two hosts; it is powered off; how long until all answer on
/// the second.
async fn many_at_once(ctl: &Controller, many: u64) -> Result<()> {
    let (cluster, api, hosts, tpl) = site(ctl, 2).await?;
    let net = format!("10.77.{}", cluster.subnet);
    let mut vpses = Vec::new();
    for i in 0..many {
        let name = format!("fo-m{i}");
        let ip = format!("{net}.{}", 100 + i);
        let id = ha_vps(&api, &name, tpl, hosts[0], &ip).await?;
        vpses.push((id, name, ip));
    }
    for (id, _, _) in &vpses {
        cycle_now(&api, *id).await?;
        wait_for(&api, &format!("/vpses/{id}"), "services answering", |v| {
            v["services"]["up"] == true
        })
        .await?;
    }
    let cluster = Arc::new(Mutex::new(cluster));
    on_cluster(&cluster, |c| c.power_off(0)).await?;
    let off = Instant::now();
    let targets: Vec<(String, String)> = vpses.iter().map(|v| (v.2.clone(), v.1.clone())).collect();
    let times = actix_rt::task::spawn_blocking(move || {
        let mut left = targets;
        let mut times = Vec::new();
        while !left.is_empty() && off.elapsed() < Duration::from_secs(600) {
            left.retain(|(ip, name)| {
                if answers(ip, name) {
                    times.push(off.elapsed().as_secs_f64());
                    false
                } else {
                    true
                }
            });
            std::thread::sleep(Duration::from_millis(20));
        }
        (times, left.len())
    })
    .await
    .map_err(|_| anyhow::anyhow!("the prober panicked"))?;
    let (mut times, missing) = times;
    if missing > 0 {
        bail!("{missing} of {many} VPSes never answered on the survivor");
    }
    println!(
        "{many} HA VPSes on one host, powered off, a single survivor with room for all: the first answered {:.2} s after power-off, half by {:.2} s, the last {:.2} s",
        pct(&mut times, 0.0),
        pct(&mut times, 50.0),
        pct(&mut times, 100.0)
    );
    Ok(())
}

/// `n` HA VPSes on the first of two hosts; its link is cut. The guard's own log says when it
/// had stopped them all; the other host is sampled every 50 ms for the first of them running.
async fn cut_off(ctl: &Controller, n: u64) -> Result<()> {
    let (cluster, api, hosts, tpl) = site(ctl, 2).await?;
    let net = format!("10.77.{}", cluster.subnet);
    let mut vpses = Vec::new();
    for i in 0..n {
        let name = format!("fo-c{i}");
        let ip = format!("{net}.{}", 160 + i);
        let id = ha_vps(&api, &name, tpl, hosts[0], &ip).await?;
        vpses.push((id, name, ip));
    }
    for (id, _, _) in &vpses {
        cycle_now(&api, *id).await?;
        wait_for(&api, &format!("/vpses/{id}"), "services answering", |v| {
            v["services"]["up"] == true
        })
        .await?;
    }
    let guard_log = cluster.hosts[0].dir.join("data/guard.log");
    let other = cluster.hosts[1]
        .init_pid()
        .context("the other host runs")?
        .to_string();
    let names: Vec<String> = vpses.iter().map(|v| v.1.clone()).collect();
    let cluster = Arc::new(Mutex::new(cluster));
    on_cluster(&cluster, |c| c.cut_link(0)).await?;
    let cut = Instant::now();
    let cut_ms = unix_ms();
    let targets: Vec<(String, String)> = vpses.iter().map(|v| (v.2.clone(), v.1.clone())).collect();
    // The other host sampled on a thread of its own, every 50 ms, whatever the prober does.
    let sampler = std::thread::spawn(move || {
        while cut.elapsed() < Duration::from_secs(600) {
            let t = unix_ms();
            let out = std::process::Command::new("nsenter")
                .args(["-t", &other, "-m", "-p", "-n", "lxc-ls", "--running", "-1"])
                .output();
            if let Ok(o) = out {
                let running = String::from_utf8_lossy(&o.stdout).to_string();
                if running
                    .split_whitespace()
                    .any(|r| names.iter().any(|n| n == r))
                {
                    return Some(t);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    });
    let (times, missing) = actix_rt::task::spawn_blocking(move || {
        let mut left = targets;
        let mut times = Vec::new();
        while !left.is_empty() && cut.elapsed() < Duration::from_secs(600) {
            left.retain(|(ip, name)| {
                if answers(ip, name) {
                    times.push(cut.elapsed().as_secs_f64());
                    false
                } else {
                    true
                }
            });
            std::thread::sleep(Duration::from_millis(50));
        }
        (times, left.len())
    })
    .await
    .map_err(|_| anyhow::anyhow!("the prober panicked"))?;
    let first_elsewhere = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
    let mut times = times;
    if missing > 0 {
        bail!("{missing} of {n} VPSes never answered on the other host");
    }
    let first = first_elsewhere.context("never seen running on the other host")?;
    let log = std::fs::read_to_string(&guard_log).unwrap_or_default();
    let (stopped_at, took) = log
        .lines()
        .filter(|l| l.contains(" stopped "))
        .filter_map(|l| {
            let at: u128 = l.split_whitespace().next()?.parse().ok()?;
            let ms: u64 = l.rsplit_once(" in ")?.1.strip_suffix(" ms")?.parse().ok()?;
            (at >= cut_ms).then_some((at, ms))
        })
        .next()
        .context("the guard logged no fence")?;
    println!(
        "{n} HA VPSes on a host cut off: its guard had stopped them all {:.2} s after the cut ({took} ms for the kills), {} ms before the first ran on the other host; the first answered there {:.2} s after the cut, the last {:.2} s",
        (stopped_at - cut_ms) as f64 / 1000.0,
        first as i128 - stopped_at as i128,
        pct(&mut times, 0.0),
        pct(&mut times, 100.0)
    );
    if stopped_at >= first {
        bail!("a VPS ran on the other host before the cut-off host had stopped them all");
    }
    Ok(())
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Both cores saturated on every host (CPU spinners and disk writers in each host's
/// namespaces) for `secs`: no failover, no suspicion, no self-fence.
async fn soak_run(ctl: &Controller, secs: u64) -> Result<()> {
    let (cluster, api, hosts, tpl) = site(ctl, 3).await?;
    let net = format!("10.77.{}", cluster.subnet);
    let mut vpses = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let name = format!("fo-s{i}");
        let id = ha_vps(&api, &name, tpl, *h, &format!("{net}.{}", 120 + i)).await?;
        vpses.push(id);
    }
    let mut load = Vec::new();
    for h in &cluster.hosts {
        let pid = h.init_pid().context("a host without init")?.to_string();
        for line in [
            "while :; do :; done",
            "while :; do :; done",
            "while :; do dd if=/dev/zero of=/srv/soak bs=1M count=256 conv=fsync 2>/dev/null; done",
        ] {
            load.push(
                std::process::Command::new("nsenter")
                    .args(["-t", &pid, "-m", "-p", "-n", "sh", "-c", line])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()?,
            );
        }
    }
    println!(
        "soak: {} load processes on {} hosts for {secs} s",
        load.len(),
        hosts.len()
    );
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        actix_rt::time::sleep(Duration::from_secs(5)).await;
    }
    for mut p in load {
        let _ = p.kill();
        let _ = p.wait();
    }
    let mut counts = Vec::new();
    for action in ["netmon.failover", "netmon.host_suspected", "netmon.restart"] {
        let (_, evs) = api
            .call("GET", &format!("/events?action={action}&limit=1000"), None)
            .await?;
        counts.push((
            action,
            evs["events"].as_array().map(|a| a.len()).unwrap_or(0),
        ));
    }
    let fenced = cluster
        .hosts
        .iter()
        .filter(|h| {
            std::fs::read_to_string(h.dir.join("data/guard.log"))
                .unwrap_or_default()
                .contains("stopped")
        })
        .count();
    println!(
        "soak of {secs} s, both cores saturated on every host: {} (target: none), hosts that fenced themselves: {fenced}",
        counts
            .iter()
            .map(|(a, n)| format!("{n} × {a}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Whether http://ip/ answers with `body` within 300 ms.
async fn cycle_now(api: &Api, vid: i64) -> Result<()> {
    let (_, s) = api
        .call("GET", &format!("/vpses/{vid}/duplo"), None)
        .await?;
    let before = s["last_cycle"].as_u64().unwrap_or(0);
    let (code, body) = api
        .call("POST", &format!("/vpses/{vid}/duplo/now"), Some(json!({})))
        .await?;
    if code != 202 {
        bail!("duplicate now: {body}");
    }
    wait_for(
        api,
        &format!("/vpses/{vid}/duplo"),
        "a restore point",
        |s| s["last_cycle"].as_u64().unwrap_or(0) > before,
    )
    .await?;
    Ok(())
}

/// Rounds of power-off → answering elsewhere for one HA VPS; the times in seconds.
/// Runs `f` on the cluster off the client's runtime (powering a host off or booting it waits
/// for processes; the client's connections keep being served meanwhile).
async fn on_cluster<T: Send + 'static>(
    cluster: &Arc<Mutex<Cluster>>,
    f: impl FnOnce(&mut Cluster) -> Result<T> + Send + 'static,
) -> Result<T> {
    let c = cluster.clone();
    actix_rt::task::spawn_blocking(move || f(&mut c.lock().unwrap_or_else(|p| p.into_inner())))
        .await
        .map_err(|_| anyhow::anyhow!("the cluster's thread panicked"))?
}

async fn rounds_of(
    api: &Api,
    cluster: &Arc<Mutex<Cluster>>,
    hosts: &[i64],
    vid: i64,
    name: &str,
    ip: &str,
    rounds: u64,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut times, mut named) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        cycle_now(api, vid).await.context("a fresh restore point")?;
        wait_for(api, &format!("/vpses/{vid}"), "services answering", |v| {
            v["services"]["up"] == true
        })
        .await
        .context("its services answering")?;
        // Its standby copy (on the host a failover goes to) at that point.
        let (_, d) = api
            .call("GET", &format!("/vpses/{vid}/duplo"), None)
            .await?;
        let last = d["last_cycle"].clone();
        let t_sb = Instant::now();
        wait_for(
            api,
            &format!("/vpses/{vid}"),
            "a current standby copy",
            // That point or a newer one: cycles go on meanwhile, and the copy follows the
            // newest.
            |v| v["standby"]["cycle"].as_u64() >= last.as_u64(),
        )
        .await
        .context("its standby copy")?;
        let (_, v) = api.call("GET", &format!("/vpses/{vid}"), None).await?;
        let standby = v["standby"]["host_id"].clone();
        if t_sb.elapsed() > Duration::from_secs(1) {
            println!(
                "  (its standby copy was current {:.1} s after the point landed)",
                t_sb.elapsed().as_secs_f64()
            );
        }
        let on = hosts
            .iter()
            .position(|h| v["host_id"] == *h)
            .context("the VPS is on no known host")?;
        on_cluster(cluster, move |c| c.power_off(on)).await?;
        let off = Instant::now();
        let (ip2, name2) = (ip.to_string(), name.to_string());
        let prober = actix_rt::task::spawn_blocking(move || {
            while !answers(&ip2, &name2) {
                if off.elapsed() > Duration::from_secs(600) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(off.elapsed().as_secs_f64())
        });
        // Meanwhile: when the site's incidents (the dashboard's banner) name the host and this
        // VPS.
        let key = format!("host:{}", hosts[on]);
        let incident = async {
            loop {
                if let Ok((_, s)) = api.call("GET", "/site", None).await {
                    let found = s["incidents"].as_array().is_some_and(|l| {
                        l.iter().any(|i| {
                            i["key"] == key.as_str()
                                && i["vpses"]
                                    .as_array()
                                    .is_some_and(|v| v.iter().any(|n| n == name))
                        })
                    });
                    if found {
                        return Some(off.elapsed().as_secs_f64());
                    }
                }
                if off.elapsed() > Duration::from_secs(120) {
                    return None;
                }
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let (took, seen) = futures_util::future::join(prober, incident).await;
        let took = took
            .map_err(|_| anyhow::anyhow!("the prober panicked"))?
            .context("it never answered elsewhere")?;
        let seen = seen.context("no incident named the host and its VPS")?;
        named.push(seen);
        let (_, v) = api.call("GET", &format!("/vpses/{vid}"), None).await?;
        println!(
            "  round {}: incident named {seen:.2} s, answering on another host {took:.2} s after power-off{}",
            r + 1,
            if v["host_id"] == standby {
                " (its standby host)"
            } else {
                " (not its standby host)"
            }
        );
        times.push(took);
        on_cluster(cluster, move |c| c.boot(on)).await?;
        wait_for(api, &format!("/hosts/{}", hosts[on]), "host online", |h| {
            h["status"] == "online"
        })
        .await?;
        // Its stale copy goes before the next round.
        let (dir, host_name) = {
            let c = cluster.lock().unwrap_or_else(|p| p.into_inner());
            (
                c.hosts[on].dir.join(format!("lxc/{name}")),
                c.hosts[on].name.clone(),
            )
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while dir.exists() {
            if Instant::now() > deadline {
                bail!("the stale copy stayed on {host_name}");
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok((times, named))
}

async fn run(rounds: u64, gb: u64) -> Result<()> {
    let ctl = start_controller()?;
    let r = measure(&ctl, rounds, gb).await;
    tail_on_error(&ctl, &r);
    r
}

async fn measure(ctl: &Controller, rounds: u64, gb: u64) -> Result<()> {
    println!("netMON failover benchmark: three test hosts, {rounds} power-offs per VPS size");
    let (cluster, api, hosts, tpl) = site(ctl, 3).await?;
    let net = format!("10.77.{}", cluster.subnet);
    let big_dir = cluster.hosts[0].dir.join("lxc/fo-big/rootfs/srv/bulk");
    let cluster = Arc::new(Mutex::new(cluster));

    let ip = format!("{net}.30");
    let small = ha_vps(&api, "fo-small", tpl, hosts[0], &ip).await?;
    println!("minimal template:");
    let (mut t_small, mut named) =
        rounds_of(&api, &cluster, &hosts, small, "fo-small", &ip, rounds).await?;
    let (_, r) = api.call("DELETE", &format!("/vpses/{small}"), None).await?;
    let _ = task_done(&api, &r).await;

    let mut t_big = Vec::new();
    if gb > 0 {
        let ip = format!("{net}.31");
        let big = ha_vps(&api, "fo-big", tpl, hosts[0], &ip).await?;
        let (_, v) = api.call("GET", &format!("/vpses/{big}"), None).await?;
        let base = v["id_base"].as_u64().unwrap_or(0) as u32;
        let dir = big_dir.clone();
        let files = gb * 1024;
        let t0 = Instant::now();
        actix_rt::task::spawn_blocking(move || -> Result<()> {
            std::fs::create_dir_all(&dir)?;
            let mut x: u64 = 0x9e3779b97f4a7c15;
            for i in 0..files {
                // 1 MiB each, content of its own (no two chunks alike, barely compressible).
                let mut buf = vec![0u8; 1 << 20];
                for w in buf.chunks_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
                }
                let p = dir.join(format!("f{i:05}"));
                std::fs::write(&p, &buf)?;
                std::os::unix::fs::lchown(&p, Some(base), Some(base))?;
            }
            Ok(())
        })
        .await
        .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
        println!(
            "VPS with {gb} GiB of files (written in {:.0} s):",
            t0.elapsed().as_secs_f64()
        );
        let (t, n) = rounds_of(&api, &cluster, &hosts, big, "fo-big", &ip, rounds).await?;
        t_big = t;
        named.extend(n);
    }
    println!();
    println!(
        "| VPS | failover p50 | p99 | Proxmox VE HA (documented, not measured here) | target |"
    );
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| minimal template | {:.2} s | {:.2} s | ~120 s | p50 ≤ 5 s, p99 ≤ 10 s |",
        pct(&mut t_small, 50.0),
        pct(&mut t_small, 99.0)
    );
    if !t_big.is_empty() {
        println!(
            "| {gb} GiB of files | {:.2} s | {:.2} s | ~120 s | p50 ≤ 5 s, p99 ≤ 10 s |",
            pct(&mut t_big, 50.0),
            pct(&mut t_big, 99.0)
        );
    }
    println!(
        "| the incident named with its VPS (`GET /site`, the dashboard's banner) | {:.2} s | {:.2} s | – | ≤ 5 s |",
        pct(&mut named, 50.0),
        pct(&mut named, 99.0)
    );
    Ok(())
}
