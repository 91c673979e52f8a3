//! netMON failover benchmark on three test hosts: one HA VPS (its services checked on port 80);
//! each round lands a fresh restore point, powers the VPS's host off, and times power-off →
//! the VPS answering HTTP at its address on another host; then the host boots again (its stale
//! copy is removed) for the next round. Printed: p50 / p99 over the rounds, for the minimal
//! template and for a VPS holding `--gb` GiB of files, beside Proxmox VE's documented ~120 s.
//!
//! Usage: failover-bench [--rounds N] [--gb G]   (scripts/bench.sh failover; G = 0 skips it)

use anyhow::{bail, Context, Result};
use serde_json::json;
use serverware_bench::*;
use serverware_testhosts::{Cluster, ClusterOptions};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let rounds = arg("--rounds", 10)?;
    let gb = arg("--gb", 1)?;
    actix_rt::System::new().block_on(run(rounds, gb))
}

/// Whether http://ip/ answers with `body` within 300 ms.
fn answers(ip: &str, body: &str) -> bool {
    let addr: std::net::SocketAddr = match format!("{ip}:80").parse() {
        Ok(a) => a,
        Err(_) => return false,
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    if s.write_all(format!("GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains(body)
}

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
) -> Result<Vec<f64>> {
    let mut times = Vec::new();
    for r in 0..rounds {
        cycle_now(api, vid).await.context("a fresh restore point")?;
        wait_for(api, &format!("/vpses/{vid}"), "services answering", |v| {
            v["services"]["up"] == true
        })
        .await
        .context("its services answering")?;
        let (_, v) = api.call("GET", &format!("/vpses/{vid}"), None).await?;
        let on = hosts
            .iter()
            .position(|h| v["host_id"] == *h)
            .context("the VPS is on no known host")?;
        on_cluster(cluster, move |c| c.power_off(on)).await?;
        let off = Instant::now();
        let (ip2, name2) = (ip.to_string(), name.to_string());
        let took = actix_rt::task::spawn_blocking(move || {
            while !answers(&ip2, &name2) {
                if off.elapsed() > Duration::from_secs(600) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(off.elapsed().as_secs_f64())
        })
        .await
        .map_err(|_| anyhow::anyhow!("the prober panicked"))?
        .context("it never answered elsewhere")?;
        println!(
            "  round {}: answering on another host {took:.2} s after power-off",
            r + 1
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
    Ok(times)
}

async fn ha_vps(api: &Api, name: &str, tpl: i64, host: i64, ip: &str) -> Result<i64> {
    let (code, task) = api
        .call(
            "POST",
            "/vpses",
            Some(
                json!({"name": name, "template_id": tpl, "host_id": host, "ipv4": ip,
                "memory_limit_bytes": 64u64 << 20, "start": true,
                "ha_enabled": true, "check_ports": [80]}),
            ),
        )
        .await?;
    if code != 202 {
        bail!("creating {name}: {task}");
    }
    let t = task_done(api, &task).await?;
    Ok(t["target_id"].as_str().context("no target")?.parse()?)
}

async fn run(rounds: u64, gb: u64) -> Result<()> {
    let ctl = start_controller()?;
    let r = measure(&ctl, rounds, gb).await;
    if r.is_err() {
        eprintln!("controller log (last lines):");
        for l in ctl.log_tail(30) {
            eprintln!("  {l}");
        }
    }
    r
}

async fn measure(ctl: &Controller, rounds: u64, gb: u64) -> Result<()> {
    println!("netMON failover benchmark: three test hosts, {rounds} power-offs per VPS size");
    let cluster = Cluster::create(ClusterOptions {
        hosts: 3,
        ..Default::default()
    })?;
    let net = format!("10.77.{}", cluster.subnet);
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
    let big_dir = cluster.hosts[0].dir.join("lxc/fo-big/rootfs/srv/bulk");
    let cluster = Arc::new(Mutex::new(cluster));

    let ip = format!("{net}.30");
    let small = ha_vps(&api, "fo-small", tpl, hosts[0], &ip).await?;
    println!("minimal template:");
    let mut t_small = rounds_of(&api, &cluster, &hosts, small, "fo-small", &ip, rounds).await?;
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
        t_big = rounds_of(&api, &cluster, &hosts, big, "fo-big", &ip, rounds).await?;
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
    Ok(())
}
