//! Move benchmark: the downtime of moving a running VPS between two real test hosts, for the
//! built-in minimal template and for a VPS with a 200 MB root filesystem.
//!
//! Downtime is printed twice: as the controller logs it (from stopping the VPS on the old host to
//! its start on the new one), and as a client sees it (the longest gap between answers of the
//! VPS's web server, polled every 20 ms during the move).
//!
//! Usage: move-bench [--rounds N] [--mb M]   (scripts/bench.sh move builds and runs it as root)

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use serverware_bench::*;
use serverware_testhosts::{Cluster, ClusterOptions};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let rounds = arg("--rounds", 3)? as usize;
    let mb = arg("--mb", 200)?;
    actix_rt::System::new().block_on(run(rounds, mb))
}

/// The minimal template's archive plus `mb` MB of random (incompressible) data.
fn big_template(ctl: &Controller, mb: u64) -> Result<std::path::PathBuf> {
    let minimal = ctl.dir.join("data/storage/templates/minimal.tar.gz");
    let dir = ctl.dir.join("big");
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("var/lib/filler"))?;
    let ok = Command::new("tar")
        .args(["-x", "-z", "-f"])
        .arg(&minimal)
        .arg("-C")
        .arg(&root)
        .status()?
        .success();
    if !ok {
        bail!("cannot unpack {}", minimal.display());
    }
    let ok = Command::new("dd")
        .arg("if=/dev/urandom")
        .arg(format!("of={}", root.join("var/lib/filler/blob").display()))
        .args(["bs=1M", &format!("count={mb}"), "status=none"])
        .status()?
        .success();
    if !ok {
        bail!("dd failed");
    }
    let out = dir.join("big.tar");
    let ok = Command::new("tar")
        .args(["-c", "--numeric-owner", "-f"])
        .arg(&out)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()?
        .success();
    if !ok {
        bail!("tar failed");
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(out)
}

/// Polls http://ip/ every 20 ms; returns the times of good answers.
fn prober(ip: String) -> (Arc<Mutex<Vec<Instant>>>, Arc<Mutex<bool>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(Mutex::new(false));
    let (s2, st2) = (seen.clone(), stop.clone());
    actix_rt::spawn(async move {
        let client = awc::Client::builder()
            .timeout(Duration::from_millis(200))
            .finish();
        while !*st2.lock().unwrap() {
            let t = Instant::now();
            if let Ok(mut r) = client.get(format!("http://{ip}/")).send().await {
                if r.status().is_success() && r.body().await.is_ok() {
                    s2.lock().unwrap().push(Instant::now());
                }
            }
            let left = Duration::from_millis(20).saturating_sub(t.elapsed());
            actix_rt::time::sleep(left).await;
        }
    });
    (seen, stop)
}

struct Row {
    label: String,
    bytes: u64,
    logged: Vec<f64>,
    observed: Vec<f64>,
    total: Vec<f64>,
}

async fn run(rounds: usize, mb: u64) -> Result<()> {
    println!("move benchmark: {rounds} moves per VPS between two test hosts");
    let cluster = Cluster::create(ClusterOptions {
        hosts: 2,
        ..Default::default()
    })?;
    let net = format!("10.77.{}", cluster.subnet);
    let ctl = start_controller()?;
    let api = admin_api(&ctl).await?;
    let mut hosts = Vec::new();
    for (i, h) in cluster.hosts.iter().enumerate() {
        let id = add_host(&api, &format!("move-{}", i + 1), h).await?;
        api.call(
            "PATCH",
            &format!("/hosts/{id}"),
            Some(json!({"vps_gateway": cluster.gateway.to_string()})),
        )
        .await?;
        hosts.push(id);
    }
    for id in &hosts {
        wait_for(&api, &format!("/hosts/{id}"), "host online", |h| {
            h["status"] == "online"
        })
        .await?;
    }
    let (_, templates) = api.call("GET", "/templates", None).await?;
    let minimal = templates
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "minimal"))
        .and_then(|t| t["id"].as_i64())
        .context("no built-in template")?;

    let big_id = upload_big(&api, &ctl, mb).await?;
    let mut rows = Vec::new();
    for (label, tpl, ip) in [
        ("minimal template".to_string(), minimal, format!("{net}.70")),
        (
            format!("{mb} MB root filesystem"),
            big_id,
            format!("{net}.71"),
        ),
    ] {
        let name = if tpl == minimal { "mv-small" } else { "mv-big" };
        let (code, task) = api
            .call(
                "POST",
                "/vpses",
                Some(
                    json!({"name": name, "template_id": tpl, "host_id": hosts[0], "ipv4": ip,
                    "memory_limit_bytes": 128u64 << 20, "start": true}),
                ),
            )
            .await?;
        if code != 202 {
            bail!("create failed: {task}");
        }
        let done = task_done(&api, &task).await?;
        let vid: i64 = done["target_id"].as_str().context("no target")?.parse()?;
        let mut row = Row {
            label,
            bytes: 0,
            logged: Vec::new(),
            observed: Vec::new(),
            total: Vec::new(),
        };
        for round in 0..rounds {
            let target = hosts[(round + 1) % 2];
            let (done, logged, gap, total) = one_move(&api, vid, &ip, target).await?;
            row.bytes = done["bytes_done"].as_u64().unwrap_or(0).max(row.bytes);
            row.logged.push(logged);
            row.observed.push(gap);
            row.total.push(total);
        }
        rows.push(row);
    }
    print_rows(&mut rows);
    Ok(())
}

/// Uploads a template of `mb` MB of random data: its id.
async fn upload_big(api: &Api, ctl: &Controller, mb: u64) -> Result<i64> {
    println!("building and uploading a template with {mb} MB of random data…");
    let big = big_template(ctl, mb)?;
    let body = std::fs::read(&big)?;
    let mut r = api
        .client
        .post(format!("{}/api/v1/templates?name=big&os=busybox", api.base))
        .bearer_auth(&api.token)
        .timeout(Duration::from_secs(600))
        .send_body(body)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let t: Value = r.json().await?;
    let big_id = t["id"]
        .as_i64()
        .with_context(|| format!("upload failed: {t}"))?;
    let _ = std::fs::remove_file(&big);

    Ok(big_id)
}

/// Moves VPS `vid` (answering HTTP on `ip`) to `target`, probing it throughout: the finished
/// task, the downtime it logged and the longest gap the prober saw (ms), and the whole move (ms).
async fn one_move(api: &Api, vid: i64, ip: &str, target: i64) -> Result<(Value, f64, f64, f64)> {
    wait_for(api, &format!("/vpses/{vid}"), "running", |v| {
        v["state"] == "running"
    })
    .await?;
    let (seen, stop) = prober(ip.to_string());
    // Answers before the move starts.
    let warm = Instant::now() + Duration::from_secs(1);
    while Instant::now() < warm {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let t0 = Instant::now();
    let (_, task) = api
        .call(
            "POST",
            &format!("/vpses/{vid}/move"),
            Some(json!({"host_id": target})),
        )
        .await?;
    let done = task_done(api, &task).await?;
    let total = t0.elapsed();
    // Until it answers again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let back = seen
            .lock()
            .unwrap()
            .iter()
            .any(|t| *t > t0 + total.min(total));
        if back || Instant::now() > deadline {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    *stop.lock().unwrap() = true;
    let times = seen.lock().unwrap().clone();
    let gap = times
        .windows(2)
        .filter(|w| w[1] > t0)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    let log = done["log"].as_array().cloned().unwrap_or_default();
    let logged = log
        .iter()
        .filter_map(|l| l["line"].as_str())
        .find_map(|l| l.split("downtime ").nth(1))
        .and_then(|d| d.trim_end_matches(" ms").parse::<f64>().ok())
        .context("no downtime in the task log")?;
    Ok((done, logged, gap, total.as_secs_f64() * 1000.0))
}

fn print_rows(rows: &mut [Row]) {
    println!();
    println!(
        "{:<26} {:>12} {:>22} {:>22} {:>18}",
        "VPS", "transferred", "downtime logged", "downtime seen (HTTP)", "whole move"
    );
    println!(
        "{:<26} {:>12} {:>22} {:>22} {:>18}",
        "", "", "median / max", "median / max", "median"
    );
    for r in rows.iter_mut() {
        println!(
            "{:<26} {:>9.1} MB {:>9.0} / {:>6.0} ms {:>9.0} / {:>6.0} ms {:>15.0} ms",
            r.label,
            r.bytes as f64 / 1e6,
            pct(&mut r.logged.clone(), 50.0),
            pct(&mut r.logged, 100.0),
            pct(&mut r.observed.clone(), 50.0),
            pct(&mut r.observed, 100.0),
            pct(&mut r.total, 50.0),
        );
    }
}
