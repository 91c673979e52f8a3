//! Failover drills on real test hosts and real LXC: an HA VPS's newest restore point brought up
//! on the other host in an isolated network, checked, removed; the live VPS answers throughout
//! (sampled every 200 ms) and never runs twice; RTO and RPO reported; nothing left on the host
//! and no restore point made. A whole host's drill. A controller killed mid-drill: the drill is
//! failed at the next start and its copy removed. Bad asks refused.

use crate::netmon::{ha_vps, services, Sampler};
use crate::support::*;
use crate::vps_lifecycle::{answers, get, post, task_end, MIB};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Asks `http://ip/` every 200 ms from a thread of its own; each answer that was not `body`
/// (or none within 2 s), with when.
struct Prober {
    stop: Arc<AtomicBool>,
    bad: Arc<Mutex<Vec<String>>>,
    asked: Arc<Mutex<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn ask(ip: &str, body: &str) -> Result<(), String> {
    let addr: std::net::SocketAddr = format!("{ip}:80").parse().unwrap();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut got = String::new();
    s.read_to_string(&mut got)
        .map_err(|e| format!("read: {e}"))?;
    let text = got.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    if text == body {
        Ok(())
    } else {
        Err(format!("answered {text:?}"))
    }
}

impl Prober {
    fn start(ip: &str, body: &str) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let bad = Arc::new(Mutex::new(Vec::new()));
        let asked = Arc::new(Mutex::new(0));
        let (s2, b2, a2, ip, body) = (
            stop.clone(),
            bad.clone(),
            asked.clone(),
            ip.to_string(),
            body.to_string(),
        );
        let t0 = Instant::now();
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                if let Err(e) = ask(&ip, &body) {
                    b2.lock()
                        .unwrap()
                        .push(format!("{:.1} s: {e}", t0.elapsed().as_secs_f64()));
                }
                *a2.lock().unwrap() += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Prober {
            stop,
            bad,
            asked,
            thread: Some(thread),
        }
    }

    /// How many times it asked; every bad answer.
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let n = *self.asked.lock().unwrap();
        let bad = self.bad.lock().unwrap().clone();
        (n, bad)
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Runs a program in a test host's mount and network namespaces; what it printed.
fn on_host(cluster: &serverware_testhosts::Cluster, i: usize, args: &[&str]) -> String {
    let pid = cluster.hosts[i].init_pid().unwrap().to_string();
    let mut a = vec!["-t", pid.as_str(), "-m", "-n", "-p"];
    a.extend_from_slice(args);
    let out = std::process::Command::new("nsenter")
        .args(&a)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Nothing of drill `n` on host `i`: no container, bridge, veth or network namespace.
fn nothing_left(cluster: &serverware_testhosts::Cluster, i: usize, n: i64) {
    let containers = on_host(cluster, i, &["lxc-ls", "-1"]);
    assert!(
        !containers.lines().any(|l| l.trim() == format!("drill-{n}")),
        "drill-{n} is still on host {i}: {containers}"
    );
    let links = on_host(cluster, i, &["ip", "-o", "link", "show"]);
    for name in [format!("swdb{n}"), format!("swdv{n}"), format!("swdp{n}")] {
        assert!(
            !links.contains(&format!(": {name}:")) && !links.contains(&format!(": {name}@")),
            "{name} is still on host {i}: {links}"
        );
    }
    let addrs = on_host(cluster, i, &["ip", "-o", "addr", "show"]);
    assert!(
        !addrs.contains(&format!("swdb{n}")),
        "an address stays on the drill's bridge on host {i}: {addrs}"
    );
    let ns = on_host(cluster, i, &["ip", "netns", "list"]);
    assert!(
        !ns.contains(&format!("swdrill{n}")),
        "the drill's network namespace is still on host {i}: {ns}"
    );
}

/// The VPS's drills, newest first.
async fn drills(t: &TestController, c: &reqwest::Client, vid: i64) -> Vec<Value> {
    get(t, c, &format!("/api/v1/vpses/{vid}/drills"))
        .await
        .as_array()
        .unwrap()
        .clone()
}

async fn point_count(t: &TestController, c: &reqwest::Client, vid: i64) -> usize {
    get(t, c, &format!("/api/v1/vpses/{vid}/points"))
        .await
        .as_array()
        .map_or(0, |p| p.len())
}

/// A drill asked at `path` is refused with `status`, its message saying `says`.
async fn refused(t: &TestController, c: &reqwest::Client, path: &str, status: u16, says: &str) {
    let r = post(c, t.url(path), json!({})).await;
    let code = match status {
        403 => "forbidden",
        404 => "not_found",
        _ => "conflict",
    };
    let body = expect_error(r, status, code).await;
    assert!(body["message"].as_str().unwrap().contains(says), "{body}");
}

fn log_of(task: &Value) -> String {
    task["log"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|x| x["line"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[actix_web::test]
async fn a_drill_reports_rto_and_rpo_leaves_nothing_and_never_touches_the_live_vps() {
    let (cluster, mut t, admin, hosts, tpl) =
        crate::vps_lifecycle::site_on(2, TestController::start_process(None).await).await;
    let net = format!("10.77.{}", cluster.subnet);

    // A VPS cannot take a drill copy's name; a VPS that is not HA has no drill.
    let r = post(
        &admin,
        t.url("/api/v1/vpses"),
        json!({
            "name": "drill-1", "template_id": tpl, "host_id": hosts[0],
            "ipv4": format!("{net}.70"), "memory_limit_bytes": 64 * MIB, "start": false
        }),
    )
    .await;
    let body = expect_error(r, 422, "invalid").await;
    assert_eq!(body["field"], "name", "{body}");
    let r = post(
        &admin,
        t.url("/api/v1/vpses"),
        json!({
            "name": "plain", "template_id": tpl, "host_id": hosts[0],
            "ipv4": format!("{net}.71"), "memory_limit_bytes": 64 * MIB, "start": false
        }),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let plain = crate::vps_lifecycle::task_done(&t, &admin, &r.json::<Value>().await.unwrap())
        .await["target_id"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    refused(
        &t,
        &admin,
        &format!("/api/v1/vpses/{plain}/drill"),
        409,
        "not HA",
    )
    .await;
    refused(&t, &admin, "/api/v1/vpses/999999/drill", 404, "").await;

    // A webhook that wants to hear of failed drills.
    let (hooks, hook_url) = crate::alerts::Hooks::start().await;
    let r = crate::alerts::create(
        &t,
        &admin,
        &crate::alerts::webhook(&hook_url, &["drill_failed"]),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // The HA VPS on node-0, with a restore point.
    let ip = format!("{net}.72");
    let ha = ha_vps(&t, &admin, hosts[0], tpl, "dr-ha", &ip).await;
    answers(&ip, "dr-ha").await;
    services(&t, &admin, ha, true).await;
    crate::duplo::cycle_now(&t, &admin, ha).await;
    let points = point_count(&t, &admin, ha).await;
    let init = get(&t, &admin, &format!("/api/v1/vpses/{ha}")).await["live"]["init_pid"].clone();
    assert!(init.is_number(), "{init}");

    // A viewer sees drills but cannot start one.
    let viewer = t.user_with_role(&admin, "drill-viewer", "viewer").await;
    let r = post(
        &viewer,
        t.url(&format!("/api/v1/vpses/{ha}/drill")),
        json!({}),
    )
    .await;
    expect_error(r, 403, "forbidden").await;
    assert!(drills(&t, &viewer, ha).await.is_empty());

    // The drill, the live VPS asked every 200 ms and watched on both hosts throughout.
    let prober = Prober::start(&ip, "dr-ha");
    let sampler = Sampler::start(&cluster, "dr-ha");
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{ha}/drill")),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let task: Value = r.json().await.unwrap();
    refused(
        &t,
        &admin,
        &format!("/api/v1/vpses/{ha}/drill"),
        409,
        "under way",
    )
    .await;
    let done = task_end(&t, &admin, &task).await;
    let (asked, bad) = prober.finish();
    let seen = sampler.finish();
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let log = log_of(&done);
    assert!(log.contains("isolated network on node-1"), "{log}");
    assert!(log.contains("RTO") && log.contains("RPO"), "{log}");
    assert!(
        bad.is_empty(),
        "the live VPS did not answer {} of {asked} times: {bad:?}",
        bad.len()
    );
    assert!(asked >= 3, "asked {asked} times");
    assert!(
        seen.iter().all(|(_, on)| on == &vec![0]),
        "the live VPS stopped or moved during the drill: {seen:?}"
    );

    let list = drills(&t, &viewer, ha).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let d = &list[0];
    eprintln!("drill: {}", d["message"]);
    assert_eq!(d["state"], "passed", "{d}");
    assert_eq!(d["host_id"], hosts[1], "{d}");
    assert_eq!(d["task_id"], task["id"], "{d}");
    assert_eq!(d["cleaned"], true, "{d}");
    let (rto, rpo) = (d["rto_ms"].as_i64().unwrap(), d["rpo_ms"].as_i64().unwrap());
    // RTO counts netMON's detection (a lease of at least 3 s) and the restore; RPO is the
    // point's age when the drill began.
    assert!(rto >= 3000, "{d}");
    assert!(rpo >= 0, "{d}");
    nothing_left(&cluster, 1, d["id"].as_i64().unwrap());
    nothing_left(&cluster, 0, d["id"].as_i64().unwrap());
    assert_eq!(
        point_count(&t, &admin, ha).await,
        points,
        "a drill made a restore point"
    );
    let v = get(&t, &admin, &format!("/api/v1/vpses/{ha}")).await;
    assert_eq!(v["host_id"], hosts[0], "{v}");
    assert_eq!(
        v["live"]["init_pid"], init,
        "the live VPS was restarted: {v}"
    );
    let ev = get(
        &t,
        &admin,
        &format!("/api/v1/events?action=vps.drill&target_id={ha}"),
    )
    .await;
    assert_eq!(ev["events"].as_array().unwrap().len(), 1, "{ev}");
    let ev = get(
        &t,
        &admin,
        &format!("/api/v1/events?action=vps.drill.passed&target_id={ha}"),
    )
    .await;
    assert_eq!(ev["events"][0]["details"]["rto_ms"], rto, "{ev}");

    // A whole host's drill: each of its HA VPSes (the one here).
    refused(
        &t,
        &admin,
        &format!("/api/v1/hosts/{}/drill", hosts[1]),
        409,
        "no HA VPS",
    )
    .await;
    let r = post(
        &admin,
        t.url(&format!("/api/v1/hosts/{}/drill", hosts[0])),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["tasks"].as_array().unwrap().len(), 1, "{h}");
    assert_eq!(h["refused"], json!([]), "{h}");
    let done = task_end(&t, &admin, &h["tasks"][0]).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let list = drills(&t, &admin, ha).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["state"], "passed", "{}", list[0]);

    // The controller killed while a drill's copy is being made: at its next start the drill is
    // failed, and its copy and network are removed from the host.
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{ha}/drill")),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let task: Value = r.json().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get(&t, &admin, &format!("/api/v1/tasks/{}", task["id"])).await;
        if log_of(&v).contains("restoring point") {
            break;
        }
        assert_eq!(v["status"], "running", "the drill ended first: {v:#}");
        assert!(Instant::now() < deadline, "the drill never restored: {v:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.restart(None).await;
    let admin = t.admin().await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let d = loop {
        let list = drills(&t, &admin, ha).await;
        let d = list[0].clone();
        if d["state"] != "running" && d["cleaned"] == true {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "the interrupted drill stays: {d}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(d["state"], "failed", "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("controller stopped"),
        "{d}"
    );
    nothing_left(&cluster, 1, d["id"].as_i64().unwrap());
    answers(&ip, "dr-ha").await;
    // The failed drill is told once, to the target that wants it; the passed ones are not.
    let told = crate::alerts::wait_for("the failed drill's alert", || {
        let p = hooks.payloads();
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["rule"], "drill_failed", "{told:?}");
    assert_eq!(told[0]["link"], format!("/vpses/{ha}"), "{told:?}");
    let v = get(&t, &admin, &format!("/api/v1/vpses/{ha}")).await;
    assert_eq!(v["host_id"], hosts[0], "{v}");
    assert_eq!(
        v["live"]["init_pid"], init,
        "the live VPS was restarted: {v}"
    );
}
