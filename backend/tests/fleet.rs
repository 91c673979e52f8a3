//! The controller at scale, in CI: 200 simulated hosts (`sw-fleetsim`: an SSH server per host
//! with its own key, the real agent protocol) added through the API, a VPS on each (some of them
//! HA, answering netMON's pings from the simulator's namespace while they run), every host online and
//! sampled, the lists paged, and one host powered off: its HA VPSes come up elsewhere and no
//! other VPS moves. Figures are printed; the fleet bench (`scripts/bench.sh fleet`) holds the
//! targets. The deadlines are generous: a busy machine makes this slower, not wrong.

#[path = "api/support.rs"]
#[allow(dead_code)]
mod support;

use futures_util::StreamExt;
use reqwest::Client;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const HOSTS: usize = 200;
/// Every this many VPSes, one is HA.
const HA_EVERY: usize = 10;
const MIB: u64 = 1 << 20;

/// `sw-fleetsim`, ended (and its namespace removed) when dropped.
struct Sim {
    child: Child,
    stdin: ChildStdin,
    out: std::io::BufReader<ChildStdout>,
    hosts: Vec<Value>,
    link: String,
}

impl Sim {
    fn start(n: usize, password: &str) -> Sim {
        let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_serverware"))
            .parent()
            .unwrap()
            .to_path_buf();
        let sim = bin_dir.join("sw-fleetsim");
        assert!(
            sim.is_file(),
            "{} is missing: cargo build -p serverware-fleetsim (scripts/test.sh does)",
            sim.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("hosts.json");
        let port = serverware_testhosts::free_port().unwrap().to_string();
        let link = format!("swfl{}", std::process::id() % 100_000);
        let mut child = Command::new(&sim)
            .args([
                "--hosts",
                &n.to_string(),
                "--port",
                &port,
                "--vps-link",
                &link,
            ])
            .arg("--agent")
            .arg(bin_dir.join("serverware-agent"))
            .arg("--out")
            .arg(&out)
            .env("SW_FLEETSIM_PASSWORD", password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut sim = Sim {
            out: std::io::BufReader::new(child.stdout.take().unwrap()),
            child,
            stdin,
            hosts: Vec::new(),
            link,
        };
        let ready = sim.line();
        assert_eq!(ready, format!("ready {n}"), "sw-fleetsim did not start");
        sim.hosts = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(sim.hosts.len(), n);
        sim
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l.trim().to_string()
    }

    fn say(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.line()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.link])
            .status();
    }
}

async fn get(t: &TestController, c: &Client, path: &str) -> Value {
    let r = c.get(t.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// Every row of a paged list, following its Link rel=next.
async fn every(t: &TestController, c: &Client, path: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut next = Some(t.url(path));
    while let Some(url) = next.take() {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
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
                    t.url(p)
                }
            });
        rows.extend(r.json::<Vec<Value>>().await.unwrap());
    }
    rows
}

/// Waits (up to `secs`) until `f` holds of the whole list at `path` (hosts or VPSes); returns
/// it. A timeout says how many rows have `field` = `value` (online hosts, running VPSes).
async fn list_until(
    t: &TestController,
    c: &Client,
    path: &str,
    (field, value): (&str, &str),
    what: &str,
    secs: u64,
    f: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let rows = every(t, c, path).await;
        if f(&rows) {
            return rows;
        }
        let so = rows.iter().filter(|r| r[field] == value).count();
        assert!(
            Instant::now() < deadline,
            "{path}: never {what} ({so} of {} {value})",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn hosts_until(
    t: &TestController,
    c: &Client,
    what: &str,
    secs: u64,
    f: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let path = "/api/v1/hosts?limit=100";
    list_until(t, c, path, ("status", "online"), what, secs, f).await
}

async fn vpses_until(
    t: &TestController,
    c: &Client,
    what: &str,
    secs: u64,
    f: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let path = "/api/v1/vpses?limit=100";
    list_until(t, c, path, ("state", "running"), what, secs, f).await
}

/// POSTs every body to `path`, eight at a time, as an operator's script would; each must answer
/// `status`.
async fn post_all(t: &TestController, c: &Client, path: &str, bodies: Vec<Value>, status: u16) {
    let answers: Vec<(u16, String)> = futures_util::stream::iter(bodies)
        .map(|body| async move {
            let r = c.post(t.url(path)).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (got, body) in answers {
        assert_eq!(got, status, "{path}: {body}");
    }
}

fn p99(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(|a, b| a.total_cmp(b));
    ms[(ms.len() * 99 / 100).min(ms.len() - 1)]
}

#[actix_web::test]
async fn two_hundred_simulated_hosts_are_one_site() {
    let password = format!("fleet-{}", std::process::id());
    let mut sim = Sim::start(HOSTS, &password);
    let t = TestController::start().await;
    let admin = t.admin().await;

    // Every host added the way an operator adds one: its key pinned, the controller's key
    // installed with the root password, the agent checked.
    let began = Instant::now();
    let bodies = sim.hosts.iter().map(|h| {
        json!({
            "name": h["name"], "address": h["address"], "host_key": h["host_key"],
            "password": password,
        })
    });
    post_all(&t, &admin, "/api/v1/hosts", bodies.collect(), 201).await;
    println!(
        "fleet: {HOSTS} hosts added in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    let hosts = hosts_until(&t, &admin, "all online", 300, |h| {
        h.len() == HOSTS && h.iter().all(|h| h["status"] == "online")
    })
    .await;
    println!(
        "fleet: all online {:.1} s after the first add",
        began.elapsed().as_secs_f64()
    );

    // A VPS on every host, every tenth HA (checked by ping: its address answers on the
    // simulator's namespace while it runs).
    let templates = get(&t, &admin, "/api/v1/templates").await;
    let tpl = templates
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "minimal")
        .unwrap_or_else(|| panic!("no built-in template: {templates}"))["id"]
        .as_i64()
        .unwrap();
    let began = Instant::now();
    let bodies = hosts.iter().enumerate().map(|(i, h)| {
        json!({
            "name": format!("fv-{i:04}"), "template_id": tpl, "host_id": h["id"],
            "ipv4": format!("10.77.{}.{}", 240 + i / 250, i % 250 + 1),
            "memory_limit_bytes": 256 * MIB, "start": true,
            "ha_enabled": i % HA_EVERY == 0, "check_ports": [],
        })
    });
    post_all(&t, &admin, "/api/v1/vpses", bodies.collect(), 202).await;
    let vpses = vpses_until(&t, &admin, "all running", 600, |v| {
        v.len() == HOSTS && v.iter().all(|v| v["state"] == "running")
    })
    .await;
    println!(
        "fleet: {HOSTS} VPSes running {:.1} s after the first create",
        began.elapsed().as_secs_f64()
    );
    // Each row names the host it is on (a page reads only its own hosts' names).
    let host_names: std::collections::HashMap<i64, &str> = hosts
        .iter()
        .map(|h| (h["id"].as_i64().unwrap(), h["name"].as_str().unwrap()))
        .collect();
    for v in &vpses {
        let on = v["host_id"].as_i64().expect("on a host");
        assert_eq!(v["host_name"].as_str(), Some(host_names[&on]), "{v}");
    }

    // The lists answer from the controller's side, a page at a time.
    let mut times = Vec::new();
    for _ in 0..40 {
        let t0 = Instant::now();
        let r = admin
            .get(t.url("/api/v1/vpses?limit=100"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-total-count"], HOSTS.to_string().as_str());
        assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 100);
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    println!("fleet: GET /vpses?limit=100 p99 {:.1} ms", p99(times));

    // Every HA VPS has a restore point before its host is lost.
    let ha: Vec<&Value> = vpses.iter().filter(|v| v["ha_enabled"] == true).collect();
    assert_eq!(ha.len(), HOSTS / HA_EVERY);
    let deadline = Instant::now() + Duration::from_secs(300);
    for v in &ha {
        loop {
            let d = get(&t, &admin, &format!("/api/v1/vpses/{}/duplo", v["id"])).await;
            if d["points"].as_u64().is_some_and(|n| n > 0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no restore point of {}: {d}",
                v["name"]
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // A host with an HA VPS loses power: its HA VPS runs elsewhere, nothing else moves.
    let victim = ha[1];
    let victim_host = victim["host_id"].as_i64().unwrap();
    let victim_name = &hosts.iter().find(|h| h["id"] == victim_host).unwrap()["name"];
    let index = sim
        .hosts
        .iter()
        .position(|h| h["name"] == *victim_name)
        .unwrap();
    let before: Vec<(i64, i64)> = vpses
        .iter()
        .map(|v| (v["id"].as_i64().unwrap(), v["host_id"].as_i64().unwrap()))
        .collect();
    let lost = Instant::now();
    assert_eq!(sim.say(&format!("off {index}")), "ok");
    let vid = victim["id"].as_i64().unwrap();
    let after = vpses_until(&t, &admin, "failed over", 300, |all| {
        all.iter().any(|v| {
            v["id"] == vid && v["state"] == "running" && v["host_id"].as_i64() != Some(victim_host)
        })
    })
    .await;
    println!(
        "fleet: host lost → its HA VPS running elsewhere in {:.1} s",
        lost.elapsed().as_secs_f64()
    );
    for (id, host) in before {
        if id == vid {
            continue;
        }
        let now = after.iter().find(|v| v["id"] == id).unwrap();
        assert_eq!(
            now["host_id"].as_i64(),
            Some(host),
            "a VPS moved that should not have: {now}"
        );
    }

    // Booted again, the host is back and holds no running copy of the VPS that left it.
    assert_eq!(sim.say(&format!("on {index}")), "ok");
    hosts_until(&t, &admin, "all online again", 180, |h| {
        h.iter().all(|h| h["status"] == "online")
    })
    .await;
    // Its stale copy is removed, and never runs meanwhile.
    let deadline = Instant::now() + Duration::from_secs(120);
    let name = victim["name"].as_str().unwrap();
    loop {
        let state: Vec<(String, bool)> =
            serde_json::from_str(&sim.say(&format!("state {index}"))).unwrap();
        let copy = state.iter().find(|(n, _)| n == name);
        assert!(
            !copy.is_some_and(|c| c.1),
            "the old host runs the VPS too: {state:?}"
        );
        if copy.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stale copy stays on the booted host: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(sim);
}
