//! fleet-bench: the release controller with a fleet of simulated hosts (`sw-fleetsim`: an SSH
//! server per host, the real agent protocol; see fleetsim/src/lib.rs for what it does not
//! simulate), at each size asked (default 100 and 1,000 hosts × 10 VPSes, samples at 1 Hz).
//! Hosts are added and VPSes created through the API as an operator would (one VPS in ten HA,
//! one on each host). Printed, one row per size: controller CPU and RSS (averages over a steady
//! window), sample → live-socket p99 for a dashboard subscribed to one host (with 50 more
//! dashboards open on the hosts list), API
//! `GET /vpses?limit=100` p99, host death → its HA VPSes placed elsewhere p99 (the decision: the
//! VPS's host changes; not the restore), reconnect of every host after a controller restart
//! (and the VPSes that moved meanwhile: false failovers), and database growth per day; then
//! the memory per host connection, and netDUPLO's cycles a second (those that landed a point,
//! and those whose journal saw nothing change since the newest: a simulated VPS's log file
//! changes about once a minute) and its oldest newest point (every VPS duplicated, at
//! `--duplo-interval`, default the product's 10 s; `--change-every 1` makes every cycle land a
//! point).
//!
//! Targets at 1,000 × 10: under one core and 1 GiB RSS on average, sample → socket p99 ≤ 100 ms,
//! list p99 ≤ 50 ms, reconnect of all ≤ 60 s without a false failover.

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde_json::{json, Value};
use serverware_bench::*;
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The simulator, ended (its namespace with it) when dropped.
struct Sim {
    child: Child,
    stdin: ChildStdin,
    out: std::io::BufReader<ChildStdout>,
    hosts: Vec<Value>,
    pid: u32,
}

const LINK: &str = "swfleetb";
const PASSWORD_ENV: &str = "SW_FLEETSIM_PASSWORD";

impl Sim {
    fn start(n: usize, password: &str, change_every: u64) -> Result<Sim> {
        let bin = std::env::current_exe()?.with_file_name("sw-fleetsim");
        let agent = std::env::current_exe()?.with_file_name("serverware-agent");
        let out_file =
            std::env::temp_dir().join(format!("fleet-bench-{}.json", std::process::id()));
        let port = free_port()?.to_string();
        let mut child = Command::new(&bin)
            .args(["--hosts", &n.to_string(), "--port", &port])
            .args(["--change-every", &change_every.to_string()])
            .args(["--vps-link", LINK, "--vps-net", "10.77.192.0/18"])
            .arg("--agent")
            .arg(&agent)
            .arg("--out")
            .arg(&out_file)
            .env(PASSWORD_ENV, password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id();
        let mut sim = Sim {
            stdin: child.stdin.take().context("no stdin")?,
            out: std::io::BufReader::new(child.stdout.take().context("no stdout")?),
            child,
            hosts: Vec::new(),
            pid,
        };
        let ready = sim.line()?;
        if ready != format!("ready {n}") {
            bail!("sw-fleetsim did not start: {ready}");
        }
        sim.hosts = serde_json::from_slice(&std::fs::read(&out_file)?)?;
        let _ = std::fs::remove_file(&out_file);
        Ok(sim)
    }

    fn line(&mut self) -> Result<String> {
        let mut l = String::new();
        self.out.read_line(&mut l)?;
        Ok(l.trim().to_string())
    }

    fn say(&mut self, cmd: &str) -> Result<String> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        self.line()
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h["name"] == name)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip").args(["link", "del", LINK]).status();
        let _ = Command::new("ip").args(["netns", "del", LINK]).status();
    }
}

/// Every row of a paged list (following Link rel=next), and how long the first page took.
async fn every(api: &Api, path: &str) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    let mut next = Some(format!("{}/api/v1{path}", api.base));
    while let Some(url) = next.take() {
        let mut r = api
            .client
            .get(&url)
            .bearer_auth(&api.token)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        if r.status() != 200 {
            bail!("{url}: {}", r.status());
        }
        next = r
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.split('<').nth(1))
            .and_then(|l| l.split('>').next())
            .map(|p| {
                if p.starts_with("http") {
                    p.to_string()
                } else {
                    format!("{}{p}", api.base)
                }
            });
        let page: Vec<Value> = r.json().limit(1 << 26).await?;
        rows.extend(page);
    }
    Ok(rows)
}

async fn until<T>(
    what: &str,
    secs: u64,
    mut f: impl AsyncFnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {secs} s");
        }
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn online(api: &Api) -> Result<(usize, Vec<Value>)> {
    let hosts = every(api, "/hosts?limit=1000").await?;
    Ok((
        hosts.iter().filter(|h| h["status"] == "online").count(),
        hosts,
    ))
}

/// Bytes of the controller's SQLite database (with its write-ahead log).
fn db_bytes(ctl: &Controller) -> u64 {
    ["serverware.db", "serverware.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(ctl.dir.join("data").join(f)).ok())
        .map(|m| m.len())
        .sum()
}

struct Row {
    hosts: usize,
    vpses: usize,
    setup_s: f64,
    cpu_pct: f64,
    sim_cpu_pct: f64,
    rss_mib: f64,
    socket_p99_ms: f64,
    list_p50_ms: f64,
    list_p99_ms: f64,
    memory: Memory,
    placed_p99_s: f64,
    placed_n: usize,
    reconnect_s: f64,
    false_failovers: usize,
    db_mib_per_day: f64,
    duplo_interval: u64,
    duplo_per_s: f64,
    duplo_unchanged_per_s: f64,
    duplo_max_lag_s: f64,
    duplo_without_point: u64,
    browser: Option<Browser>,
}

/// The controller's RSS (MiB) as the site grows: started, every host connected (no VPS yet),
/// every VPS running.
struct Memory {
    at_start: f64,
    with_hosts: f64,
    with_vpses: f64,
}

/// The VPS list in Chromium (e2e/scale/bench.js).
struct Browser {
    total: usize,
    first_paint_ms: f64,
    rows_held: usize,
    filter_p50_ms: f64,
    filter_max_ms: f64,
    scroll_ms: f64,
    sort_ms: f64,
    /// The Hosts page: first paint, rows drawn, a scroll to the last host.
    hosts_first_paint_ms: f64,
    hosts_rows_drawn: usize,
    hosts_scroll_ms: f64,
}

/// The VPS list of `names` and the Hosts page of `hosts` measured in Chromium, when the bench
/// was given the dashboard (`BENCH_STATIC_DIR`) and the browser tests' directory
/// (`BENCH_E2E_DIR`).
fn browser(ctl: &Controller, names: &[String], hosts: &[String]) -> Result<Option<Browser>> {
    let Ok(e2e) = std::env::var("BENCH_E2E_DIR") else {
        println!("  (no BENCH_E2E_DIR: the VPS list is not measured in a browser)");
        return Ok(None);
    };
    println!("  the VPS list and the Hosts page in Chromium…");
    let file = ctl.dir.join("names.json");
    let mut sorted = names.to_vec();
    sorted.sort();
    std::fs::write(&file, serde_json::to_vec(&sorted)?)?;
    // The Hosts page lists them by name.
    let mut hosts = hosts.to_vec();
    hosts.sort();
    // One name, then the first characters of another (tens, then hundreds of names on a
    // large site).
    let mid = &sorted[sorted.len() / 2];
    let probes = [
        sorted[sorted.len() / 3].clone(),
        mid[..mid.len() - 1].to_string(),
        mid[..mid.len() - 2].to_string(),
    ];
    let out = std::process::Command::new("node")
        .arg("scale/bench.js")
        .current_dir(&e2e)
        .env("BENCH_URL", &ctl.url)
        .env("BENCH_PASSWORD", serverware_bench::ADMIN_PW)
        .env("BENCH_NAMES", &file)
        .env("BENCH_PROBES", serde_json::to_string(&probes)?)
        .env("BENCH_HOSTS", serde_json::to_string(&hosts)?)
        .output()?;
    if !out.status.success() {
        bail!(
            "the browser measurement failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .context("the browser measurement said nothing")?;
    let v: Value = serde_json::from_str(line)?;
    let ms = |k: &str| v[k].as_f64().with_context(|| format!("no {k} in {line}"));
    Ok(Some(Browser {
        total: v["total"].as_u64().unwrap_or(0) as usize,
        first_paint_ms: ms("firstPaintMs")?,
        rows_held: v["rowsHeld"].as_u64().unwrap_or(0) as usize,
        filter_p50_ms: ms("filterP50Ms")?,
        filter_max_ms: ms("filterMaxMs")?,
        scroll_ms: ms("scrollMs")?,
        sort_ms: ms("sortMs")?,
        hosts_first_paint_ms: ms("hostsFirstPaintMs")?,
        hosts_rows_drawn: v["hostsRowsDrawn"].as_u64().unwrap_or(0) as usize,
        hosts_scroll_ms: ms("hostsScrollMs")?,
    }))
}

/// Every host added and every VPS created through the API, all running: the hosts, the VPSes
/// and how long it took.
async fn setup(
    sim: &Sim,
    api: &Api,
    password: &str,
    per_host: usize,
    duplo_interval: u64,
    ctl_pid: u32,
) -> Result<(Vec<Value>, Vec<Value>, f64, Memory)> {
    let n = sim.hosts.len();
    let began = Instant::now();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let at_start = mib(usage(ctl_pid)?.1);

    println!("  adding {n} hosts…");
    let results: Vec<Result<(u16, Value)>> = futures_util::stream::iter(sim.hosts.clone())
        .map(|h| {
            let password = password.to_string();
            async move {
                api.call(
                    "POST",
                    "/hosts",
                    Some(json!({"name": h["name"], "address": h["address"],
                        "host_key": h["host_key"], "password": password,
                        "duplo_interval_secs": duplo_interval})),
                )
                .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        let (status, body) = r?;
        if status != 201 {
            bail!("adding a host: {status} {body}");
        }
    }
    let hosts = until("every host online", 600, async || {
        let (up, hosts) = online(api).await?;
        Ok((up == n).then_some(hosts))
    })
    .await?;
    println!(
        "  {n} hosts online after {:.0} s; creating {} VPSes…",
        began.elapsed().as_secs_f64(),
        n * per_host
    );
    let with_hosts = mib(usage(ctl_pid)?.1);

    let (_, templates) = api.call("GET", "/templates", None).await?;
    let tpl = templates
        .as_array()
        .and_then(|t| t.iter().find(|x| x["name"] == "minimal"))
        .context("no minimal template")?["id"]
        .clone();
    let specs: Vec<Value> = (0..n * per_host)
        .map(|k| {
            json!({
                "name": format!("fv-{k:05}"), "template_id": tpl,
                "host_id": hosts[k % n]["id"],
                "ipv4": format!("10.77.{}.{}", 192 + k / 250, k % 250 + 1),
                "memory_limit_bytes": 256u64 << 20, "start": true,
                "ha_enabled": (k / n).is_multiple_of(10), "check_ports": [],
            })
        })
        .collect();
    let results: Vec<Result<(u16, Value)>> = futures_util::stream::iter(specs)
        .map(|body| async move { api.call("POST", "/vpses", Some(body)).await })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        let (status, body) = r?;
        if status != 202 {
            bail!("creating a VPS: {status} {body}");
        }
    }
    let total = n * per_host;
    let vpses = until("every VPS running", 1800, async || {
        let v = every(api, "/vpses?limit=1000").await?;
        let running = v.iter().filter(|v| v["state"] == "running").count();
        Ok((running == total).then_some(v))
    })
    .await?;
    let setup_s = began.elapsed().as_secs_f64();
    println!("  {total} VPSes running after {setup_s:.0} s");
    let memory = Memory {
        at_start,
        with_hosts,
        with_vpses: mib(usage(ctl_pid)?.1),
    };
    Ok((hosts, vpses, setup_s, memory))
}

/// What the steady window measured.
struct Steady {
    cpu_pct: f64,
    sim_cpu_pct: f64,
    rss_mib: f64,
    socket_p99_ms: f64,
    db_mib_per_day: f64,
    /// Duplication cycles a second in the window (that landed a point, and that found
    /// nothing changed since the newest), and the oldest newest point at its end (seconds).
    duplo_per_s: f64,
    duplo_unchanged_per_s: f64,
    duplo_max_lag_s: f64,
    /// VPSes with no restore point at its end (not in the lag).
    duplo_without_point: u64,
}

const LANDED: &str = "serverware_duplo_cycles_total{result=\"landed\"}";
const UNCHANGED: &str = "serverware_duplo_cycles_total{result=\"unchanged\"}";

async fn steady(ctl: &Controller, sim: &Sim, api: &Api, first: i64, window: u64) -> Result<Steady> {
    println!("  steady window of {window} s…");
    // The steady window: one dashboard on one host's page, 50 more on the hosts list.
    let mut one = api.socket(&[format!("host:{first}")]).await?;
    let mut others = Vec::new();
    for _ in 0..50 {
        others.push(api.socket(&["hosts".to_string()]).await?);
    }
    let drain = actix_rt::spawn(async move {
        // The 50 read what they are sent, as a browser would.
        let mut live = others;
        loop {
            for s in live.iter_mut() {
                while let Ok(Some(_)) =
                    actix_rt::time::timeout(Duration::from_millis(1), s.next()).await
                {
                }
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (cpu0, _, _) = usage(ctl.child.id())?;
    let (sim0, _, _) = usage(sim.pid)?;
    let db0 = db_bytes(ctl);
    let landed0 = api.metric(LANDED).await?;
    let unchanged0 = api.metric(UNCHANGED).await?;
    let t0 = Instant::now();
    let mut lat = Vec::new();
    let mut rss = Vec::new();
    let mut next_rss = Instant::now();
    while t0.elapsed() < Duration::from_secs(window) {
        if Instant::now() >= next_rss {
            rss.push(usage(ctl.child.id())?.1 as f64);
            next_rss += Duration::from_secs(1);
        }
        if let Ok(v) = next_json(&mut one, Duration::from_millis(500)).await {
            if v["type"] == "host_sample" {
                if let Some(at) = v["sample"]["taken_at_ms"].as_i64() {
                    lat.push((now_ms() - at) as f64);
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, _, _) = usage(ctl.child.id())?;
    let (sim1, _, _) = usage(sim.pid)?;
    let db1 = db_bytes(ctl);
    let duplo_per_s = (api.metric(LANDED).await? - landed0) / secs;
    let duplo_unchanged_per_s = (api.metric(UNCHANGED).await? - unchanged0) / secs;
    let (_, site) = api.call("GET", "/site", None).await?;
    let duplo_max_lag_s = site["duplication"]["max_lag_ms"]
        .as_f64()
        .unwrap_or(f64::NAN)
        / 1000.0;
    let duplo_without_point = site["duplication"]["without_point"].as_u64().unwrap_or(0);
    drain.abort();
    drop(one);
    let socket_samples = lat.len();
    let socket_p99_ms = pct(&mut lat, 99.0);
    let cpu_pct = (cpu1 - cpu0) / secs * 100.0;
    let sim_cpu_pct = (sim1 - sim0) / secs * 100.0;
    let rss_mib = rss.iter().sum::<f64>() / rss.len().max(1) as f64 / (1 << 20) as f64;
    let db_mib_per_day = (db1.saturating_sub(db0)) as f64 / secs * 86400.0 / (1 << 20) as f64;

    let _ = socket_samples;
    Ok(Steady {
        cpu_pct,
        sim_cpu_pct,
        rss_mib,
        socket_p99_ms,
        db_mib_per_day,
        duplo_per_s,
        duplo_unchanged_per_s,
        duplo_max_lag_s,
        duplo_without_point,
    })
}

/// Hosts powered off one after another: how long until each one's HA VPSes were placed on
/// another host (p99 over all of them, and how many).
async fn deaths_of(
    sim: &mut Sim,
    api: &Api,
    hosts: &[Value],
    vpses: &[Value],
    deaths: usize,
) -> Result<(f64, usize)> {
    let n = hosts.len();
    // Hosts die, one after another: each one's HA VPSes placed elsewhere.
    println!("  {deaths} host deaths…");
    let mut placed = Vec::new();
    for d in 0..deaths {
        let host = &hosts[(d * 7 + 3) % n];
        let hid = host["id"].as_i64().context("host id")?;
        let ha: Vec<i64> = vpses
            .iter()
            .filter(|v| v["host_id"] == hid && v["ha_enabled"] == true)
            .filter_map(|v| v["id"].as_i64())
            .collect();
        for id in &ha {
            until("a restore point of each HA VPS", 300, async || {
                let (_, d) = api.call("GET", &format!("/vpses/{id}/duplo"), None).await?;
                Ok(d["points"].as_u64().is_some_and(|p| p > 0).then_some(()))
            })
            .await?;
        }
        let index = sim
            .index_of(host["name"].as_str().unwrap_or_default())
            .context("the host in the fleet")?;
        let off = Instant::now();
        if sim.say(&format!("off {index}"))? != "ok" {
            bail!("the simulator did not power host {index} off");
        }
        for id in &ha {
            let s = until("an HA VPS placed elsewhere", 300, async || {
                let (_, v) = api.call("GET", &format!("/vpses/{id}"), None).await?;
                Ok((v["host_id"].as_i64().is_some_and(|h| h != hid)).then(|| off.elapsed()))
            })
            .await?;
            placed.push(s.as_secs_f64());
        }
        sim.say(&format!("on {index}"))?;
    }
    let placed_n = placed.len();
    let placed_p99_s = pct(&mut placed, 99.0);
    until("every host online again", 600, async || {
        Ok((online(api).await?.0 == n).then_some(()))
    })
    .await?;

    Ok((placed_p99_s, placed_n))
}

/// The controller restarted: how long until every host is online again, and the VPSes that
/// moved for it (false failovers).
async fn restart(ctl: &mut Controller, api: &Api, n: usize) -> Result<(f64, usize)> {
    // The controller restarts: every host reconnects; nothing fails over for it.
    println!("  controller restart…");
    actix_rt::time::sleep(Duration::from_secs(5)).await;
    let before: std::collections::HashMap<i64, Value> = every(api, "/vpses?limit=1000")
        .await?
        .into_iter()
        .filter_map(|v| Some((v["id"].as_i64()?, v["host_id"].clone())))
        .collect();
    let restarted = Instant::now();
    ctl.restart()?;
    let reconnect = until("every host online after the restart", 600, async || {
        let up = match online(api).await {
            Ok((up, _)) => up,
            Err(_) => 0, // still starting
        };
        Ok((up == n).then(|| restarted.elapsed()))
    })
    .await?;
    // netMON's grace after a start has passed twice over before moves are counted.
    actix_rt::time::sleep(Duration::from_secs(30)).await;
    let after = every(api, "/vpses?limit=1000").await?;
    let false_failovers = after
        .iter()
        .filter(|v| {
            v["id"]
                .as_i64()
                .and_then(|id| before.get(&id))
                .is_some_and(|h| *h != v["host_id"])
        })
        .count();
    Ok((reconnect.as_secs_f64(), false_failovers))
}

async fn run(
    n: usize,
    per_host: usize,
    window: u64,
    deaths: usize,
    duplo_interval: u64,
    change_every: u64,
) -> Result<Row> {
    let password = format!("fleet-bench-{}", std::process::id());
    let mut sim = Sim::start(n, &password, change_every)?;
    let dashboard = std::env::var("BENCH_STATIC_DIR").unwrap_or_default();
    let mut env = vec![("SERVERWARE_SSH_LISTEN", "off")];
    if !dashboard.is_empty() {
        env.push(("SERVERWARE_STATIC_DIR", dashboard.as_str()));
    }
    let mut ctl = start_controller_env(&[], &env)?;
    let api = admin_api(&ctl).await?;
    let (hosts, vpses, setup_s, memory) = setup(
        &sim,
        &api,
        &password,
        per_host,
        duplo_interval,
        ctl.child.id(),
    )
    .await?;
    let first = hosts[0]["id"].as_i64().context("host id")?;
    let st = steady(&ctl, &sim, &api, first, window).await?;
    println!("  the list, 200 times…");
    let mut list = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let (status, _) = api.call("GET", "/vpses?limit=100", None).await?;
        if status != 200 {
            bail!("GET /vpses: {status}");
        }
        list.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let list_p50_ms = pct(&mut list, 50.0);
    let list_p99_ms = pct(&mut list, 99.0);
    let names: Vec<String> = vpses
        .iter()
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect();
    let host_names: Vec<String> = hosts
        .iter()
        .filter_map(|h| h["name"].as_str().map(String::from))
        .collect();
    let browser = browser(&ctl, &names, &host_names)?;

    let (placed_p99_s, placed_n) = deaths_of(&mut sim, &api, &hosts, &vpses, deaths).await?;
    let (reconnect_s, false_failovers) = restart(&mut ctl, &api, n).await?;
    drop(sim);
    drop(ctl);
    Ok(Row {
        hosts: n,
        vpses: vpses.len(),
        setup_s,
        cpu_pct: st.cpu_pct,
        sim_cpu_pct: st.sim_cpu_pct,
        rss_mib: st.rss_mib,
        socket_p99_ms: st.socket_p99_ms,
        list_p50_ms,
        list_p99_ms,
        memory,
        placed_p99_s,
        placed_n,
        reconnect_s,
        false_failovers,
        db_mib_per_day: st.db_mib_per_day,
        duplo_interval,
        duplo_per_s: st.duplo_per_s,
        duplo_unchanged_per_s: st.duplo_unchanged_per_s,
        duplo_without_point: st.duplo_without_point,
        duplo_max_lag_s: st.duplo_max_lag_s,
        browser,
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes: Vec<usize> = args
        .iter()
        .position(|a| a == "--hosts")
        .and_then(|i| args.get(i + 1))
        .map_or("100,1000", |s| s.as_str())
        .split(',')
        .map(|s| s.parse().context("--hosts takes sizes such as 100,1000"))
        .collect::<Result<_>>()?;
    let per_host = arg("--vpses", 10)? as usize;
    let window = arg("--seconds", 60)?;
    let deaths = arg("--deaths", 5)? as usize;
    // netDUPLO's cycle interval on every host (the product's default is 10 s).
    let duplo_interval = arg("--duplo-interval", 10)?;
    // Each simulated VPS's log file changes at every this many cuts (the simulator's default 6;
    // 1: every cycle lands a point).
    let change_every = arg("--change-every", 6)?.max(1);
    let mut rows = Vec::new();
    for n in sizes {
        println!(
            "fleet of {n} simulated hosts × {per_host} VPSes (each VPS's log changes at every {change_every}. duplication cut, cycles every {duplo_interval} s)"
        );
        let row = actix_rt::System::new().block_on(run(
            n,
            per_host,
            window,
            deaths,
            duplo_interval,
            change_every,
        ))?;
        rows.push(row);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "fleet bench ({cores} cores; samples at 1 Hz; the simulator runs on the same machine)"
    );
    println!(
        "{:>6} {:>7} {:>8} {:>9} {:>9} {:>8} {:>13} {:>10} {:>13} {:>11} {:>7} {:>10}",
        "hosts",
        "VPSes",
        "setup s",
        "ctl CPU%",
        "sim CPU%",
        "RSS MiB",
        "sample→ws p99",
        "list p99",
        "placed p99",
        "reconnect",
        "false",
        "DB MiB/day"
    );
    for r in &rows {
        println!(
            "{:>6} {:>7} {:>8.0} {:>9.1} {:>9.1} {:>8.0} {:>10.0} ms {:>7.1} ms {:>8.1} s ({}) {:>9.1} s {:>7} {:>10.1}",
            r.hosts, r.vpses, r.setup_s, r.cpu_pct, r.sim_cpu_pct, r.rss_mib, r.socket_p99_ms,
            r.list_p99_ms, r.placed_p99_s, r.placed_n, r.reconnect_s, r.false_failovers,
            r.db_mib_per_day
        );
    }
    println!(
        "targets at 1,000 × 10: ctl CPU < 100 %, RSS < 1024 MiB, sample→ws p99 ≤ 100 ms, list p99 ≤ 50 ms, reconnect ≤ 60 s, false failovers 0"
    );
    for r in &rows {
        let m = &r.memory;
        println!(
            "{} hosts: RSS {:.0} MiB started, {:.0} MiB with every host connected ({:.0} KiB a host connection), {:.0} MiB with {} VPSes running; list p50 {:.1} ms",
            r.hosts,
            m.at_start,
            m.with_hosts,
            (m.with_hosts - m.at_start) * 1024.0 / r.hosts.max(1) as f64,
            m.with_vpses,
            r.vpses,
            r.list_p50_ms
        );
        println!(
            "{} hosts: netDUPLO ran {:.1} cycles/s in the window ({:.1} landed a point, {:.1} found nothing changed since the newest; every VPS once every {} s would be {:.0}/s); the oldest newest point at its end: {:.0} s ({} VPSes with no point yet)",
            r.hosts,
            r.duplo_per_s + r.duplo_unchanged_per_s,
            r.duplo_per_s,
            r.duplo_unchanged_per_s,
            r.duplo_interval,
            r.vpses as f64 / r.duplo_interval.max(1) as f64,
            r.duplo_max_lag_s,
            r.duplo_without_point
        );
    }
    for b in rows.iter().filter_map(|r| r.browser.as_ref()) {
        println!(
            "VPS list of {} in Chromium: first paint {:.0} ms, filter p50 {:.0} ms (max {:.0} ms), scroll to the end {:.0} ms, order {:.0} ms, {} rows held (targets: first paint < 1000 ms, filter < 100 ms)",
            b.total, b.first_paint_ms, b.filter_p50_ms, b.filter_max_ms, b.scroll_ms, b.sort_ms, b.rows_held
        );
        println!(
            "Hosts page in Chromium: first paint {:.0} ms, {} rows drawn, scroll to the last host {:.0} ms",
            b.hosts_first_paint_ms, b.hosts_rows_drawn, b.hosts_scroll_ms
        );
    }
    Ok(())
}
