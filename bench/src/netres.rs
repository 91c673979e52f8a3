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

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use serverware_testhosts::{Cluster, ClusterOptions};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

struct Controller {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

const ADMIN_PW: &str = "bench-admin-password";

fn start_controller() -> Result<Controller> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("serverware");
    if !bin.exists() {
        bail!(
            "{} is missing: build it with cargo build --release",
            bin.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("serverware-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let child = Command::new(&bin)
        .env("SERVERWARE_DATA_DIR", dir.join("data"))
        .env("SERVERWARE_LISTEN", format!("127.0.0.1:{port}"))
        .env("SERVERWARE_ADMIN_PASSWORD", ADMIN_PW)
        .env("SERVERWARE_STATIC_DIR", dir.join("no-dashboard"))
        .env("SERVERWARE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(
            dir.join("controller.log"),
        )?))
        .spawn()
        .context("cannot start the controller")?;
    let url = format!("http://127.0.0.1:{port}");
    serverware_testhosts::wait_for_port(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(30),
    )?;
    Ok(Controller { child, url, dir })
}

/// CPU seconds (user + system) and resident memory of a process.
fn usage(pid: u32) -> Result<(f64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    let hz: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((ticks / hz, kb("VmRSS:") * 1024, kb("VmHWM:") * 1024))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p / 100.0).round() as usize;
    v[i]
}

async fn next_json(s: &mut Socket, deadline: Duration) -> Result<Value> {
    let until = Instant::now() + deadline;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let frame = actix_rt::time::timeout(left, s.next())
            .await
            .context("no message in time")?
            .context("socket closed")??;
        match frame {
            awc::ws::Frame::Text(t) => return Ok(serde_json::from_slice(&t)?),
            awc::ws::Frame::Ping(p) => s.send(awc::ws::Message::Pong(p)).await?,
            _ => {}
        }
    }
}

struct Api {
    client: awc::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let url = format!("{}/api/v1{path}", self.base);
        let req = match method {
            "GET" => self.client.get(url),
            "PATCH" => self.client.patch(url),
            _ => self.client.post(url),
        }
        .bearer_auth(&self.token)
        .timeout(Duration::from_secs(60));
        let mut r = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        }
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let status = r.status().as_u16();
        let v = r
            .json::<Value>()
            .limit(1 << 24)
            .await
            .unwrap_or(Value::Null);
        Ok((status, v))
    }

    async fn socket(&self, topics: &[String]) -> Result<Socket> {
        let url = format!("{}/api/v1/events", self.base).replacen("http", "ws", 1);
        let (_, mut s) = self
            .client
            .ws(url)
            .bearer_auth(&self.token)
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        next_json(&mut s, Duration::from_secs(10)).await?;
        s.send(awc::ws::Message::Text(
            json!({"type": "subscribe", "topics": topics})
                .to_string()
                .into(),
        ))
        .await?;
        Ok(s)
    }
}

fn arg(name: &str, default: u64) -> Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} takes a number")),
        None => Ok(default),
    }
}

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
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let r = client
        .post(format!("{}/api/v1/auth/login", ctl.url))
        .send_json(&json!({"username": "admin", "password": ADMIN_PW}))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(serverware_shared::SESSION_COOKIE))
        .and_then(|v| v.split(';').next())
        .context("login gave no session")?
        .to_string();
    let mut r = client
        .post(format!("{}/api/v1/tokens", ctl.url))
        .insert_header(("cookie", cookie))
        .send_json(&json!({"name": "bench", "role": "admin"}))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let created: Value = r.json().await?;
    let token = created["secret"]
        .as_str()
        .with_context(|| format!("no token: {created}"))?
        .to_string();
    let api = Api {
        client,
        base: ctl.url.clone(),
        token,
    };

    // 1. Adding: from the API call returning to the first sample on the live socket.
    let mut status_sock = api.socket(&["hosts".to_string()]).await?;
    let mut ids = Vec::new();
    let mut first_sample = Vec::new();
    for (i, h) in cluster.hosts.iter().enumerate() {
        let (_, probe) = api
            .call(
                "POST",
                "/hosts/probe",
                Some(json!({"address": h.ssh_url()})),
            )
            .await?;
        let (code, body) = api
            .call(
                "POST",
                "/hosts",
                Some(
                    json!({"name": format!("bench-{}", i + 1), "address": h.ssh_url(),
                    "host_key": probe["host_key"], "password": h.password}),
                ),
            )
            .await?;
        if code != 201 {
            bail!("adding {} failed: {body}", h.name);
        }
        let added = Instant::now();
        let id = body["id"].as_i64().context("no id")?;
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
