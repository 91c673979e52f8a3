//! Shared parts of the benchmarks: a release controller in its own process, and its API.

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

pub struct Controller {
    pub child: Child,
    pub url: String,
    pub dir: PathBuf,
    /// How it was started, to start it again ([`Controller::restart`]).
    bin: PathBuf,
    env: Vec<(String, String)>,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(bin: &std::path::Path, env: &[(String, String)], log: &std::path::Path) -> Result<Child> {
    let mut cmd = Command::new(bin);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A bench stopped by a signal (Ctrl-C) runs no destructor: the controller then ends with it.
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .context("cannot start the controller")
}

impl Controller {
    /// Stops the controller (SIGTERM, as systemd does; SIGKILL after 60 s) and starts it again
    /// on the same data, port and settings; returns once it listens.
    pub fn restart(&mut self) -> Result<()> {
        // SAFETY: a signal to the child this struct owns.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = spawn(&self.bin, &self.env, &self.dir.join("controller.log"))?;
        let port: u16 = self.url.rsplit(':').next().unwrap_or("0").parse()?;
        serverware_testhosts::wait_for_port(
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(60),
        )?;
        Ok(())
    }

    /// The last `n` lines the controller logged (read before its directory goes).
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("controller.log")).unwrap_or_default();
        let mut tail: Vec<String> = log.lines().rev().take(n).map(String::from).collect();
        tail.reverse();
        tail
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub use serverware_testhosts::free_port;

pub const ADMIN_PW: &str = "bench-admin-password";

pub fn start_controller() -> Result<Controller> {
    start_controller_with(&[])
}

/// A controller whose data directory starts with `files` (name, content), such as a
/// `serverware.toml` named by `SERVERWARE_CONFIG`.
pub fn start_controller_with(files: &[(&str, &str)]) -> Result<Controller> {
    start_controller_env(files, &[])
}

/// A controller as `start_controller_with` makes it, with more environment (`SERVERWARE_LISTEN`
/// there moves it off loopback; its URL stays the loopback one).
pub fn start_controller_env(files: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Controller> {
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
    let mut env_all: Vec<(String, String)> = Vec::new();
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content)?;
        if name.ends_with(".toml") {
            env_all.push(("SERVERWARE_CONFIG".into(), path.display().to_string()));
        }
    }
    let port = free_port()?;
    let listen = env
        .iter()
        .find(|(k, _)| *k == "SERVERWARE_LISTEN")
        .map(|(_, ip)| format!("{ip}:{port}"))
        .unwrap_or_else(|| format!("127.0.0.1:{port}"));
    for (k, v) in env.iter().filter(|(k, _)| *k != "SERVERWARE_LISTEN") {
        env_all.push((k.to_string(), v.to_string()));
    }
    let d = |p: &str| dir.join(p).display().to_string();
    env_all.extend([
        ("SERVERWARE_DATA_DIR".into(), d("data")),
        ("SERVERWARE_LISTEN".into(), listen),
        ("SERVERWARE_ADMIN_PASSWORD".into(), ADMIN_PW.into()),
        (
            "SERVERWARE_LOG".into(),
            std::env::var("BENCH_CONTROLLER_LOG").unwrap_or_else(|_| "warn".into()),
        ),
    ]);
    // No dashboard unless the caller names one.
    if !env_all.iter().any(|(k, _)| k == "SERVERWARE_STATIC_DIR") {
        env_all.push(("SERVERWARE_STATIC_DIR".into(), d("no-dashboard")));
    }
    let _ = std::fs::remove_file(dir.join("controller.log"));
    let child = spawn(&bin, &env_all, &dir.join("controller.log"))?;
    let url = format!("http://127.0.0.1:{port}");
    serverware_testhosts::wait_for_port(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(30),
    )?;
    Ok(Controller {
        child,
        url,
        dir,
        bin,
        env: env_all,
    })
}

/// CPU seconds (user + system) and resident memory of a process.
pub fn usage(pid: u32) -> Result<(f64, u64, u64)> {
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

pub fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p / 100.0).round() as usize;
    v[i]
}

pub async fn next_json(s: &mut Socket, deadline: Duration) -> Result<Value> {
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

pub struct Api {
    pub client: awc::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let url = format!("{}/api/v1{path}", self.base);
        let req = match method {
            "GET" => self.client.get(url),
            "PATCH" => self.client.patch(url),
            "PUT" => self.client.put(url),
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

    /// A figure of `GET /metrics` (the line that starts with `name`, labels included).
    pub async fn metric(&self, name: &str) -> Result<f64> {
        let mut r = self
            .client
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let body = r.body().limit(1 << 26).await?;
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no {name} in /metrics"))
    }

    pub async fn socket(&self, topics: &[String]) -> Result<Socket> {
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

/// Logs in as admin and makes an API token for the rest of the run.
pub async fn admin_api(ctl: &Controller) -> Result<Api> {
    admin_api_at(&ctl.url).await
}

/// [`admin_api`] for the controller at `url`.
pub async fn admin_api_at(url: &str) -> Result<Api> {
    // Idle connections are let go after 2 s, before the controller's 5 s keep-alive closes
    // them under a request.
    let client = awc::Client::builder()
        .connector(awc::Connector::new().conn_keep_alive(Duration::from_secs(2)))
        .timeout(Duration::from_secs(600))
        .finish();
    let r = client
        .post(format!("{url}/api/v1/auth/login"))
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
        .post(format!("{url}/api/v1/tokens"))
        .insert_header(("cookie", cookie))
        .send_json(&json!({"name": "bench", "role": "admin"}))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let created: Value = r.json().await?;
    let token = created["secret"]
        .as_str()
        .with_context(|| format!("no token: {created}"))?
        .to_string();
    Ok(Api {
        client,
        base: url.to_string(),
        token,
    })
}

/// Adds a test host through the API (probe, confirm, password) and returns its id.
pub async fn add_host(api: &Api, name: &str, h: &serverware_testhosts::TestHost) -> Result<i64> {
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
            Some(json!({"name": name, "address": h.ssh_url(),
                "host_key": probe["host_key"], "password": h.password})),
        )
        .await?;
    if code != 201 {
        bail!("adding {} failed: {body}", h.name);
    }
    body["id"].as_i64().context("no id")
}

/// Polls until the predicate holds for GET `path`.
pub async fn wait_for(
    api: &Api,
    path: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, v) = api.call("GET", path, None).await?;
        if pred(&v) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: gave up waiting: {v}");
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A numeric command-line option (`--name N`), or its default.
pub fn arg(name: &str, default: u64) -> Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} takes a number")),
        None => Ok(default),
    }
}

/// Waits for a task to end; it must succeed.
pub async fn task_done(api: &Api, task: &Value) -> Result<Value> {
    let id = task["id"]
        .as_i64()
        .with_context(|| format!("not a task: {task}"))?;
    let t = wait_for(api, &format!("/tasks/{id}"), "task", |t| {
        t["status"] != "running"
    })
    .await?;
    if t["status"] != "succeeded" {
        bail!("task {id} failed: {t}");
    }
    Ok(t)
}

/// Whether the VPS's web server at `ip` answers with `body` (its host name) now.
pub fn answers(ip: &str, body: &str) -> bool {
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

/// An HA VPS (checked on port 80) of the template `tpl` on `host`, running; its id.
pub async fn ha_vps(api: &Api, name: &str, tpl: i64, host: i64, ip: &str) -> Result<i64> {
    // 32 MiB each: many fit on one test host.
    let (code, task) = api
        .call(
            "POST",
            "/vpses",
            Some(
                json!({"name": name, "template_id": tpl, "host_id": host, "ipv4": ip,
                "memory_limit_bytes": 32u64 << 20, "start": true,
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
