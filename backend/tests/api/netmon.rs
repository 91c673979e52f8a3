//! netMON on real test hosts and real LXC: an HA VPS killed alone is restarted where it is; an
//! HA VPS whose host is powered off answers again on another host, from its newest restore
//! point; its old host, booted again, holds no copy that runs.

use crate::duplo::point_after;
use crate::support::*;
use crate::vps_lifecycle::{answers, get, post, task_done, wait_vps, MIB};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// An HA VPS checked on port 80 (the template's httpd), running on `host`.
pub(crate) async fn ha_vps(
    t: &TestController,
    admin: &reqwest::Client,
    host: i64,
    tpl: i64,
    name: &str,
    ip: &str,
) -> i64 {
    let r = post(
        admin,
        t.url("/api/v1/vpses"),
        json!({
            "name": name, "template_id": tpl, "host_id": host, "ipv4": ip,
            "memory_limit_bytes": 64 * MIB, "start": true,
            "ha_enabled": true, "ha_priority": 5, "check_ports": [80]
        }),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let done = task_done(t, admin, &r.json::<Value>().await.unwrap()).await;
    let id = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    let v = wait_vps(t, admin, id, "running", |v| v["state"] == "running").await;
    assert_eq!(v["ha_enabled"], true, "{v}");
    assert_eq!(v["check_ports"], json!([80]), "{v}");
    id
}

/// Waits until netMON's checks of the VPS say `up`.
pub(crate) async fn services(
    t: &TestController,
    admin: &reqwest::Client,
    id: i64,
    up: bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get(t, admin, &format!("/api/v1/vpses/{id}")).await;
        if v["services"]["up"] == up {
            return v;
        }
        assert!(Instant::now() < deadline, "services never {up}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The newest event of `action` about the VPS, waited for.
async fn event_of(t: &TestController, admin: &reqwest::Client, action: &str, id: i64) -> Value {
    event_about(t, admin, action, "vps", id).await
}

/// The newest event of `action` about the `kind` (`vps`, `host`) with `id`, waited for.
pub(crate) async fn event_about(
    t: &TestController,
    admin: &reqwest::Client,
    action: &str,
    kind: &str,
    id: i64,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let evs = get(
            t,
            admin,
            &format!("/api/v1/events?action={action}&target_type={kind}&target_id={id}"),
        )
        .await;
        if let Some(e) = evs["events"].as_array().and_then(|l| l.first()) {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {action} event for {kind} {id}: {evs}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn ha_settings_are_checked_and_shown() {
    let (cluster, t, admin, hosts, tpl) = crate::vps_lifecycle::site(1).await;
    let net = format!("10.77.{}", cluster.subnet);
    for (field, bad) in [
        ("ha_priority", json!(5000)),
        ("check_ports", json!([0])),
        ("check_ports", json!([80, 80])),
        ("check_ports", json!([1, 2, 3, 4, 5, 6, 7, 8, 9])),
    ] {
        let mut body = json!({"name": "bad-1", "template_id": tpl, "host_id": hosts[0],
            "ipv4": format!("{net}.40"), "memory_limit_bytes": 64 * MIB});
        body[field] = bad;
        let r = post(&admin, t.url("/api/v1/vpses"), body).await;
        assert_eq!(expect_error(r, 422, "invalid").await["field"], field);
    }
    let id = ha_vps(&t, &admin, hosts[0], tpl, "ha-0", &format!("{net}.41")).await;
    let v = services(&t, &admin, id, true).await;
    assert_eq!(v["ha_priority"], 5);
    let r = admin
        .patch(t.url(&format!("/api/v1/vpses/{id}")))
        .json(&json!({"ha_priority": -1, "check_ports": [], "ha_enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = get(&t, &admin, &format!("/api/v1/vpses/{id}")).await;
    assert_eq!(
        (
            v["ha_enabled"].clone(),
            v["ha_priority"].clone(),
            v["check_ports"].clone()
        ),
        (json!(false), json!(-1), json!([]))
    );
}

#[actix_web::test]
async fn an_ha_vps_killed_alone_is_restarted_where_it_is() {
    let (cluster, t, admin, hosts, tpl) = crate::vps_lifecycle::site(2).await;
    let net = format!("10.77.{}", cluster.subnet);
    let ip = format!("{net}.42");
    let id = ha_vps(&t, &admin, hosts[0], tpl, "ha-1", &ip).await;
    answers(&ip, "ha-1").await;
    services(&t, &admin, id, true).await;
    // Its init killed from the host: the container stops.
    let pid = cluster.hosts[0].init_pid().unwrap().to_string();
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid, "-m", "-p", "-n", "lxc-stop", "-n", "ha-1", "-k"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let killed = Instant::now();
    services(&t, &admin, id, false).await;
    answers(&ip, "ha-1").await;
    eprintln!(
        "answering again {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    event_of(&t, &admin, "netmon.restart", id).await;
    let v = get(&t, &admin, &format!("/api/v1/vpses/{id}")).await;
    assert_eq!(v["host_id"], hosts[0], "restarted in place: {v}");
}

#[actix_web::test]
async fn three_ha_vpses_of_a_powered_off_host_answer_on_others() {
    let (mut cluster, t, admin, hosts, tpl) = crate::vps_lifecycle::site(3).await;
    let net = format!("10.77.{}", cluster.subnet);
    let names = ["ha-2a", "ha-2b", "ha-2c"];
    let mut vpses = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let ip = format!("{net}.{}", 43 + i);
        let id = ha_vps(&t, &admin, hosts[0], tpl, name, &ip).await;
        vpses.push((*name, id, ip));
    }
    for (name, id, ip) in &vpses {
        answers(ip, name).await;
        // A file written inside, then a restore point that holds it.
        let (ok, out) =
            crate::vps_lifecycle::vps_sh(&cluster, 0, name, &format!("echo {name} > /root/mark"));
        assert!(ok, "{out}");
        let before = crate::duplo::duplo(&t, &admin, *id).await["last_cycle"]
            .as_u64()
            .unwrap_or(0);
        crate::duplo::request_now(&t, &admin, *id).await;
        point_after(&t, &admin, *id, before).await;
        services(&t, &admin, *id, true).await;
    }
    // Each has a standby copy on another host, at its newest point.
    let mut standby_on = Vec::new();
    for (_, id, _) in &vpses {
        standby_on.push(standby_current(&t, &admin, *id).await);
    }
    for (h, (_, id, _)) in standby_on.iter().zip(&vpses) {
        assert_ne!(*h, hosts[0]);
        let i = hosts.iter().position(|x| *h == *x).unwrap();
        let copy = cluster.hosts[i]
            .dir
            .join(format!("lxc/.serverware-standby/{id}/rootfs/root/mark"));
        assert!(copy.is_file(), "no standby copy at {}", copy.display());
    }
    // Someone on call is told.
    let (hooks, url) = crate::alerts::Hooks::start().await;
    let r = crate::alerts::create(
        &t,
        &admin,
        &crate::alerts::webhook(&url, &["host_offline", "failover_done", "failover_failed"]),
    )
    .await;
    assert_eq!(r.status(), 201);

    cluster.power_off(0).unwrap();
    let off = Instant::now();
    // The site's incidents name the host and each of its VPSes, with what becomes of it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let site = get(&t, &admin, "/api/v1/site").await;
        let incident = site["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == format!("host:{}", hosts[0]))
            .cloned();
        if let Some(i) = incident {
            assert_eq!(i["severity"], "error", "{site}");
            assert_eq!(i["link"], format!("/hosts/{}", hosts[0]), "{site}");
            assert_eq!(i["vpses"], json!(names), "{site}");
            assert_eq!(site["healthy"], false, "{site}");
            assert_eq!(site["hosts"]["down"], 1, "{site}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no incident for the host: {site}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let store = crate::duplo::store_of(&t);
    for (name, id, ip) in &vpses {
        answers(ip, name).await;
        eprintln!(
            "{name} answering on another host {:.1} s after power-off",
            off.elapsed().as_secs_f64()
        );
        let v = get(&t, &admin, &format!("/api/v1/vpses/{id}")).await;
        assert_ne!(v["host_id"], hosts[0], "{v}");
        let now_on = hosts.iter().position(|h| v["host_id"] == *h).unwrap();
        let (ok, out) = crate::vps_lifecycle::vps_sh(&cluster, now_on, name, "cat /root/mark");
        assert!(ok && out.trim() == *name, "{out}");
        // Its files are its newest restore point's, but for what its own start rewrote (the
        // template's init writes its host name into the web page at every boot: a new time).
        let root = cluster.hosts[now_on].dir.join(format!("lxc/{name}/rootfs"));
        let base = v["id_base"].as_u64().unwrap_or(0) as u32;
        let cycles =
            serverware::storage::points::cycles(&store, serverware_shared::VpsId(*id)).unwrap();
        let m = serverware::storage::points::load(
            &store,
            serverware_shared::VpsId(*id),
            *cycles.last().unwrap(),
        )
        .unwrap();
        let d: Vec<String> = crate::duplo::differences(
            &crate::duplo::tree_of(&root, base),
            &crate::duplo::tree_of_point(&store, &m),
        )
        .into_iter()
        .filter(|l| !l.starts_with("differs var/www/index.html:"))
        .collect();
        assert!(
            d.is_empty(),
            "{name} is not its newest point:\n{}",
            d.join("\n")
        );
        let e = event_of(&t, &admin, "netmon.failover", *id).await;
        assert_eq!(e["actor"], "system:netmon", "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("after its host was found lost"),
            "{e}"
        );
        let d: Value = e["details"].clone();
        for k in ["detected", "fenced", "placed", "started", "healthy"] {
            assert!(d[k].is_string(), "{k}: {e}");
        }
        // Onto its standby host, from the copy there (used up: a new one is made elsewhere).
        let k = vpses.iter().position(|x| x.1 == *id).unwrap();
        assert_eq!(v["host_id"], standby_on[k], "{v}");
        let restore = restore_log(&t, &admin, *id).await;
        assert!(
            restore.contains("from its standby copy on this host"),
            "{restore}"
        );
        assert!(!cluster.hosts[now_on]
            .dir
            .join(format!("lxc/.serverware-standby/{id}"))
            .exists());
    }

    // Booted again: its stale copies are removed, never started.
    cluster.boot(0).unwrap();
    crate::hosts_api::wait_host(&t, &admin, hosts[0], "online", |h| h["status"] == "online").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while names
        .iter()
        .any(|n| cluster.hosts[0].dir.join(format!("lxc/{n}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "a stale copy stays on the old host"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (name, _, ip) in &vpses {
        answers(ip, name).await;
    }
    // The host lost and back, each said once in an event naming its VPSes.
    let lost = event_about(&t, &admin, "host.offline", "host", hosts[0]).await;
    let back = event_about(&t, &admin, "host.online", "host", hosts[0]).await;
    for n in names {
        assert!(lost["message"].as_str().unwrap().contains(n), "{lost}");
    }
    assert_eq!(lost["target_name"], "node-0", "{lost}");
    assert!(
        back["message"].as_str().unwrap().contains("answers again"),
        "{back}"
    );
    // The on-call webhook got the host lost and back, once each, and each VPS's failover once.
    let count = |p: &[Value], state: &str, rule: &str| {
        p.iter()
            .filter(|m| m["state"] == state && m["rule"] == rule)
            .count()
    };
    crate::alerts::wait_for("the host's all-clear", || {
        let p = hooks.payloads();
        (count(&p, "cleared", "host_offline") > 0 && count(&p, "event", "failover_done") >= 3)
            .then_some(())
    })
    .await;
    let p = hooks.payloads();
    assert_eq!(count(&p, "opened", "host_offline"), 1, "{p:#?}");
    assert_eq!(count(&p, "cleared", "host_offline"), 1, "{p:#?}");
    assert_eq!(count(&p, "event", "failover_done"), 3, "{p:#?}");
    for n in names {
        assert!(
            p.iter().any(|m| m["rule"] == "failover_done"
                && m["title"].as_str().unwrap().contains(n)
                && m["detail"].as_str().unwrap().contains("after detection")),
            "{p:#?}"
        );
    }
    assert_eq!(p.len(), 5, "{p:#?}");
}

/// Waits until VPS `id` has a standby copy at its newest restore point; its host.
async fn standby_current(t: &TestController, admin: &reqwest::Client, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get(t, admin, &format!("/api/v1/vpses/{id}")).await;
        let last = crate::duplo::duplo(t, admin, id).await["last_cycle"].clone();
        if !v["standby"].is_null() && v["standby"]["cycle"] == last && last.as_u64() > Some(0) {
            return v["standby"]["host_id"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no current standby copy: {v} (last cycle {last})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The log of the newest restore task of VPS `id`, one line per entry.
async fn restore_log(t: &TestController, admin: &reqwest::Client, id: i64) -> String {
    let tasks = get(t, admin, "/api/v1/tasks?limit=100").await;
    let task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "vps.restore" && x["target_id"] == id.to_string().as_str())
        .unwrap_or_else(|| panic!("no restore task of VPS {id}: {tasks}"));
    let full = get(t, admin, &format!("/api/v1/tasks/{}", task["id"])).await;
    full["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// When (unix ms) a sample was taken, and the hosts (indexes) the VPS ran on.
pub(crate) type Seen = Vec<(u128, Vec<usize>)>;

/// Samples every 200 ms, on every host, whether the VPS runs there.
pub(crate) struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

impl Sampler {
    pub(crate) fn start(cluster: &serverware_testhosts::Cluster, vps: &str) -> Sampler {
        let pids: Vec<String> = cluster
            .hosts
            .iter()
            .map(|h| h.init_pid().unwrap().to_string())
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s2, seen2, vps) = (stop.clone(), seen.clone(), vps.to_string());
        let thread = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::SeqCst) {
                let t = unix_ms();
                let running: Vec<usize> = pids
                    .iter()
                    .enumerate()
                    .filter(|(_, pid)| {
                        std::process::Command::new("nsenter")
                            .args(["-t", pid, "-m", "-p", "-n", "lxc-info", "-n", &vps, "-s"])
                            .output()
                            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("RUNNING"))
                    })
                    .map(|(i, _)| i)
                    .collect();
                seen2.lock().unwrap().push((t, running));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Sampler {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Stops sampling; every sample, after checking that none saw the VPS on two hosts.
    pub(crate) fn finish(mut self) -> Seen {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let seen = self.seen.lock().unwrap().clone();
        for (t, on) in &seen {
            assert!(on.len() <= 1, "at {t} the VPS ran on hosts {on:?}");
        }
        seen
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The unix ms at which host `i`'s guard says it stopped `vps`.
fn guard_stopped(cluster: &serverware_testhosts::Cluster, i: usize, vps: &str) -> Option<u128> {
    let log = std::fs::read_to_string(cluster.hosts[i].dir.join("data/guard.log")).ok()?;
    log.lines()
        .filter(|l| l.contains("stopped") && l.split_whitespace().any(|w| w == vps))
        .find_map(|l| l.split_whitespace().next()?.parse().ok())
}

#[actix_web::test]
async fn a_cut_off_host_stops_its_ha_vps_before_it_starts_elsewhere() {
    partition(false).await
}

/// Its agent killed first: the guard, a process of its own, still stops the VPS.
#[actix_web::test]
async fn a_cut_off_host_whose_agent_was_killed_stops_its_ha_vps_all_the_same() {
    partition(true).await
}

async fn partition(kill_agent: bool) {
    let (cluster, t, admin, hosts, tpl) = crate::vps_lifecycle::site(3).await;
    let net = format!("10.77.{}", cluster.subnet);
    let ip = format!("{net}.44");
    let id = ha_vps(&t, &admin, hosts[0], tpl, "ha-3", &ip).await;
    answers(&ip, "ha-3").await;
    let before = crate::duplo::duplo(&t, &admin, id).await["last_cycle"]
        .as_u64()
        .unwrap_or(0);
    crate::duplo::request_now(&t, &admin, id).await;
    point_after(&t, &admin, id, before).await;
    services(&t, &admin, id, true).await;

    let sampler = Sampler::start(&cluster, "ha-3");
    if kill_agent {
        let pid = crate::duplo::agent_pid(&cluster, 0).expect("the host's agent");
        // SAFETY: a process the controller started for this test's host.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    cluster.cut_link(0).unwrap();
    answers(&ip, "ha-3").await;
    let v = get(&t, &admin, &format!("/api/v1/vpses/{id}")).await;
    assert_ne!(v["host_id"], hosts[0], "{v}");
    // The link back: the stale copy goes, and never runs.
    cluster.restore_link(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while cluster.hosts[0].dir.join("lxc/ha-3").exists() {
        assert!(
            Instant::now() < deadline,
            "the stale copy stays on the cut-off host"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = sampler.finish();
    eprintln!(
        "the guard's log:\n{}",
        std::fs::read_to_string(cluster.hosts[0].dir.join("data/guard.log")).unwrap_or_default()
    );
    let stopped = guard_stopped(&cluster, 0, "ha-3").expect("the guard's own stop, logged");
    let elsewhere = seen
        .iter()
        .find(|(_, on)| on.iter().any(|h| *h != 0))
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("never seen running on another host: {seen:?}"));
    assert!(
        stopped < elsewhere,
        "stopped on the cut-off host at {stopped}, running elsewhere at {elsewhere}"
    );
    eprintln!(
        "the guard stopped it {} ms before it was seen running elsewhere",
        elsewhere - stopped
    );
    assert!(
        seen.iter()
            .filter(|(t, _)| *t > elsewhere)
            .all(|(_, on)| !on.contains(&0)),
        "it ran on the cut-off host again"
    );
}

/// Which of `names` run on each test host, sampled every 100 ms (one `lxc-ls --running` per
/// host a round): (unix ms, name → hosts running it).
/// Each sample: when (unix ms), and each VPS with the hosts it ran on.
type ManySeen = Vec<(u128, Vec<(String, Vec<usize>)>)>;

struct ManySampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<ManySeen>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ManySampler {
    fn start(cluster: &serverware_testhosts::Cluster, names: &[String]) -> ManySampler {
        let pids: Vec<String> = cluster
            .hosts
            .iter()
            .map(|h| h.init_pid().unwrap().to_string())
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s2, seen2, names) = (stop.clone(), seen.clone(), names.to_vec());
        let thread = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::SeqCst) {
                let t0 = Instant::now();
                let t = unix_ms();
                let running: Vec<Vec<String>> = pids
                    .iter()
                    .map(|pid| {
                        std::process::Command::new("nsenter")
                            .args(["-t", pid, "-m", "-p", "-n", "lxc-ls", "--running", "-1"])
                            .output()
                            .map(|o| {
                                String::from_utf8_lossy(&o.stdout)
                                    .split_whitespace()
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect();
                let row = names
                    .iter()
                    .map(|n| {
                        let on = running
                            .iter()
                            .enumerate()
                            .filter(|(_, r)| r.contains(n))
                            .map(|(i, _)| i)
                            .collect();
                        (n.clone(), on)
                    })
                    .collect();
                seen2.lock().unwrap().push((t, row));
                std::thread::sleep(Duration::from_millis(100).saturating_sub(t0.elapsed()));
            }
        });
        ManySampler {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> ManySeen {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let seen = self.seen.lock().unwrap().clone();
        for (t, row) in &seen {
            for (n, on) in row {
                assert!(on.len() <= 1, "at {t} {n} ran on hosts {on:?}");
            }
        }
        seen
    }
}

impl Drop for ManySampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Twelve HA VPSes on one host, its link cut: its guard stops them all before any runs
/// elsewhere, each of them, sampled every 100 ms on every host.
#[actix_web::test]
async fn a_cut_off_host_with_twelve_ha_vpses_stops_them_all_before_any_starts_elsewhere() {
    let (cluster, t, admin, hosts, tpl) = crate::vps_lifecycle::site(3).await;
    let net = format!("10.77.{}", cluster.subnet);
    let names: Vec<String> = (0..12).map(|i| format!("many-{i}")).collect();
    let mut ids = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let ip = format!("{net}.{}", 60 + i);
        ids.push(ha_vps(&t, &admin, hosts[0], tpl, n, &ip).await);
    }
    for (i, id) in ids.iter().enumerate() {
        answers(&format!("{net}.{}", 60 + i), &names[i]).await;
        let before = crate::duplo::duplo(&t, &admin, *id).await["last_cycle"]
            .as_u64()
            .unwrap_or(0);
        crate::duplo::request_now(&t, &admin, *id).await;
        point_after(&t, &admin, *id, before).await;
        services(&t, &admin, *id, true).await;
    }

    let sampler = ManySampler::start(&cluster, &names);
    cluster.cut_link(0).unwrap();
    for (i, id) in ids.iter().enumerate() {
        answers(&format!("{net}.{}", 60 + i), &names[i]).await;
        let v = get(&t, &admin, &format!("/api/v1/vpses/{id}")).await;
        assert_ne!(v["host_id"], hosts[0], "{v}");
    }
    cluster.restore_link(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while names
        .iter()
        .any(|n| cluster.hosts[0].dir.join("lxc").join(n).exists())
    {
        assert!(
            Instant::now() < deadline,
            "stale copies stay on the cut-off host"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = sampler.finish();
    let log = std::fs::read_to_string(cluster.hosts[0].dir.join("data/guard.log")).unwrap();
    eprintln!("the guard's log:\n{log}");
    for n in &names {
        let stopped =
            guard_stopped(&cluster, 0, n).unwrap_or_else(|| panic!("{n}: no stop logged:\n{log}"));
        let elsewhere = seen
            .iter()
            .find(|(_, row)| {
                row.iter()
                    .any(|(m, on)| m == n && on.iter().any(|h| *h != 0))
            })
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("{n} never seen running on another host"));
        assert!(
            stopped < elsewhere,
            "{n}: stopped on the cut-off host at {stopped}, running elsewhere at {elsewhere}"
        );
        assert!(
            seen.iter()
                .filter(|(t, _)| *t > elsewhere)
                .all(|(_, row)| row.iter().all(|(m, on)| m != n || !on.contains(&0))),
            "{n} ran on the cut-off host again"
        );
    }
}

/// The controller killed (SIGKILL) for 60 s, then started again: nobody can start a copy
/// elsewhere meanwhile, so the hosts' guards hold on, and the HA VPS answers throughout.
#[actix_web::test]
async fn a_controller_outage_stops_no_vps() {
    let cluster = serverware_testhosts::Cluster::create(serverware_testhosts::ClusterOptions {
        hosts: 3,
        ..Default::default()
    })
    .unwrap();
    let net = format!("10.77.{}", cluster.subnet);
    let mut t = TestController::start_process(None).await;
    let admin = t.admin().await;
    let mut hosts = Vec::new();
    for (i, h) in cluster.hosts.iter().enumerate() {
        let r = crate::hosts_api::add(&t, &admin, &format!("node-{i}"), h).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        crate::hosts_api::wait_host(&t, &admin, id, "online", |v| v["status"] == "online").await;
        hosts.push(id);
    }
    let tpl = get(&t, &admin, "/api/v1/templates").await[0]["id"]
        .as_i64()
        .unwrap();
    let ip = format!("{net}.45");
    let id = ha_vps(&t, &admin, hosts[0], tpl, "ha-4", &ip).await;
    answers(&ip, "ha-4").await;
    services(&t, &admin, id, true).await;
    let sampler = Sampler::start(&cluster, "ha-4");
    t.kill();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    // Asked every half second for 60 s (twenty leases' length): it answers every time.
    let outage = Instant::now();
    let mut asked = 0;
    while outage.elapsed() < Duration::from_secs(60) {
        let r = http.get(format!("http://{ip}/")).send().await;
        assert!(
            r.is_ok_and(|r| r.status().is_success()),
            "the VPS stopped answering {:.1} s into the outage",
            outage.elapsed().as_secs_f64()
        );
        asked += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(asked >= 90);
    t.restart(None).await;
    let admin = t.admin().await;
    for h in &hosts {
        crate::hosts_api::wait_host(&t, &admin, *h, "online", |v| v["status"] == "online").await;
    }
    services(&t, &admin, id, true).await;
    let seen = sampler.finish();
    assert!(
        seen.iter().all(|(_, on)| on == &vec![0]),
        "it ran elsewhere or not at all: {seen:?}"
    );
    let guard =
        std::fs::read_to_string(cluster.hosts[0].dir.join("data/guard.log")).unwrap_or_default();
    assert!(guard.contains("holding on"), "{guard}");
    assert!(!guard.contains("stopped"), "{guard}");
}

/// An operator's failover loses nothing (a last cycle of the stopped VPS); a host in
/// maintenance has its VPSes moved away, takes none, and leaves maintenance when told.
#[actix_web::test]
async fn failover_on_demand_and_maintenance() {
    let (cluster, t, admin, hosts, tpl) = crate::vps_lifecycle::site(2).await;
    let net = format!("10.77.{}", cluster.subnet);
    let ip = format!("{net}.46");
    let id = ha_vps(&t, &admin, hosts[0], tpl, "ha-5", &ip).await;
    answers(&ip, "ha-5").await;
    // Written just before: no cycle has it yet.
    let (ok, out) = crate::vps_lifecycle::vps_sh(&cluster, 0, "ha-5", "echo late > /root/late");
    assert!(ok, "{out}");
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{id}/failover")),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    assert_eq!(r.json::<Value>().await.unwrap()["vpses"], json!([id]));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get(&t, &admin, &format!("/api/v1/vpses/{id}")).await;
        if v["host_id"] == hosts[1] && v["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "never failed over: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    answers(&ip, "ha-5").await;
    let (ok, out) = crate::vps_lifecycle::vps_sh(&cluster, 1, "ha-5", "cat /root/late");
    assert!(ok && out.trim() == "late", "{out}");
    // Whoever asked is named: in the request's audit event and in the failover's timeline.
    let asked = event_of(&t, &admin, "vps.failover", id).await;
    assert_eq!(
        (asked["actor"].as_str(), asked["kind"].as_str()),
        (Some("admin"), Some("audit")),
        "{asked}"
    );
    assert_eq!(asked["target_name"], "ha-5", "{asked}");
    let done = event_of(&t, &admin, "netmon.failover", id).await;
    assert_eq!(done["actor"], "admin", "{done}");
    assert!(
        done["message"].as_str().unwrap().contains("as admin asked"),
        "{done}"
    );
    // A non-HA VPS is not netMON's to fail over.
    let r = post(&admin, t.url("/api/v1/vpses/99999/failover"), json!({})).await;
    assert_eq!(r.status(), 404);

    // Host 1 into maintenance: the VPS moves back to host 0, and nothing is placed on host 1.
    let r = admin
        .patch(t.url(&format!("/api/v1/hosts/{}", hosts[1])))
        .json(&json!({"maintenance": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["maintenance"], true);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get(&t, &admin, &format!("/api/v1/vpses/{id}")).await;
        if v["host_id"] == hosts[0] && v["state"] == "running" && v["busy_task"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "never moved away: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    answers(&ip, "ha-5").await;
    let r = post(
        &admin,
        t.url("/api/v1/vpses"),
        json!({"name": "m-1", "template_id": tpl,
        "host_id": hosts[1], "ipv4": format!("{net}.47"), "memory_limit_bytes": 64 * MIB}),
    )
    .await;
    let e = expect_error(r, 409, "conflict").await;
    assert!(
        e["message"].as_str().unwrap().contains("maintenance"),
        "{e}"
    );
    let r = admin
        .patch(t.url(&format!("/api/v1/hosts/{}", hosts[1])))
        .json(&json!({"maintenance": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["maintenance"], false);
}

/// A standby copy is made on the other host, and goes when the VPS is no longer HA, when it is
/// deleted, and with its host when the host is removed: no copy is left behind.
#[actix_web::test]
async fn standby_copies_come_and_go_with_the_ha_setting_and_the_vps() {
    let (cluster, t, admin, hosts, tpl) = crate::vps_lifecycle::site(2).await;
    let net = format!("10.77.{}", cluster.subnet);
    let ip = format!("{net}.47");
    let id = ha_vps(&t, &admin, hosts[0], tpl, "ha-6", &ip).await;
    let copy = cluster.hosts[1]
        .dir
        .join(format!("lxc/.serverware-standby/{id}"));
    let wait_for = |want: bool| {
        let copy = copy.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while copy.join("rootfs").is_dir() != want {
                assert!(
                    Instant::now() < deadline,
                    "the standby copy {} {}",
                    copy.display(),
                    if want { "never came" } else { "stayed" }
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(standby_current(&t, &admin, id).await, hosts[1]);
    wait_for(true).await;
    // No longer HA: the copy goes.
    let r = admin
        .patch(t.url(&format!("/api/v1/vpses/{id}")))
        .json(&json!({"ha_enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    wait_for(false).await;
    let v = get(&t, &admin, &format!("/api/v1/vpses/{id}")).await;
    assert!(v["standby"].is_null(), "{v}");
    // HA again: a copy again; the VPS deleted: it goes.
    let r = admin
        .patch(t.url(&format!("/api/v1/vpses/{id}")))
        .json(&json!({"ha_enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    standby_current(&t, &admin, id).await;
    wait_for(true).await;
    let r = admin
        .delete(t.url(&format!("/api/v1/vpses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    wait_for(false).await;

    // A host removed from the site takes the copies it kept with it.
    let id = ha_vps(&t, &admin, hosts[0], tpl, "ha-7", &format!("{net}.48")).await;
    assert_eq!(standby_current(&t, &admin, id).await, hosts[1]);
    let copy = cluster.hosts[1]
        .dir
        .join(format!("lxc/.serverware-standby/{id}/rootfs"));
    assert!(copy.is_dir());
    let r = admin
        .delete(t.url(&format!("/api/v1/hosts/{}", hosts[1])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    assert!(
        !copy.exists(),
        "the removed host still holds {}",
        copy.display()
    );
    let v = get(&t, &admin, &format!("/api/v1/vpses/{id}")).await;
    assert!(v["standby"].is_null(), "{v}");
}

/// Its host powered off, an HA VPS fails over; the controller restarted (its memory of the
/// stale copy gone); the host booted again: the stale copy is removed all the same, from what the
/// database says, and the VPS can fail over onto that host again.
#[actix_web::test]
async fn a_host_back_after_a_failover_and_a_controller_restart_can_take_the_vps_again() {
    let mut cluster = serverware_testhosts::Cluster::create(serverware_testhosts::ClusterOptions {
        hosts: 2,
        ..Default::default()
    })
    .unwrap();
    let mut t = TestController::start_process(None).await;
    let admin = t.admin().await;
    let hosts = crate::vps_lifecycle::two_hosts(&t, &admin, &cluster).await;
    let tpl = get(&t, &admin, "/api/v1/templates").await[0]["id"]
        .as_i64()
        .unwrap();
    let net = format!("10.77.{}", cluster.subnet);
    let ip = format!("{net}.47");
    let id = ha_vps(&t, &admin, hosts[0], tpl, "ha-back", &ip).await;
    answers(&ip, "ha-back").await;
    let before = crate::duplo::duplo(&t, &admin, id).await["last_cycle"]
        .as_u64()
        .unwrap_or(0);
    crate::duplo::request_now(&t, &admin, id).await;
    point_after(&t, &admin, id, before).await;
    services(&t, &admin, id, true).await;

    cluster.power_off(0).unwrap();
    answers(&ip, "ha-back").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get(&t, &admin, &format!("/api/v1/vpses/{id}")).await;
        if v["host_id"] == hosts[1] && v["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "never failed over: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(cluster.hosts[0].dir.join("lxc/ha-back").exists());

    t.restart(None).await;
    let admin = t.admin().await;
    cluster.boot(0).unwrap();
    crate::hosts_api::wait_host(&t, &admin, hosts[0], "online", |h| h["status"] == "online").await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while cluster.hosts[0].dir.join("lxc/ha-back").exists() {
        assert!(
            Instant::now() < deadline,
            "the stale copy stays on the host that came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let e = event_of(&t, &admin, "vps.stale_copy_removed", id).await;
    assert_eq!(e["details"]["host_id"], hosts[0], "{e}");

    // Onto that host again, on demand: nothing there stands in the way.
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{id}/failover")),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get(&t, &admin, &format!("/api/v1/vpses/{id}")).await;
        if v["host_id"] == hosts[0] && v["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "never failed over back: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    answers(&ip, "ha-back").await;
}

/// The controller killed between netMON's decision to bring an HA VPS up elsewhere and the
/// restore that does it: the next run takes up netMON's memory (the host stays fenced, not
/// suspected anew; the failover keeps the time it was detected) and the VPS comes up on the
/// other host, never on two at once.
#[actix_web::test]
async fn a_controller_killed_between_the_failover_decision_and_its_restore_brings_the_vps_up_once()
{
    let mut cluster = serverware_testhosts::Cluster::create(serverware_testhosts::ClusterOptions {
        hosts: 2,
        ..Default::default()
    })
    .unwrap();
    let mut t = TestController::start_process(Some("netmon:placed")).await;
    let admin = t.admin().await;
    let hosts = crate::vps_lifecycle::two_hosts(&t, &admin, &cluster).await;
    let tpl = get(&t, &admin, "/api/v1/templates").await[0]["id"]
        .as_i64()
        .unwrap();
    let ip = format!("10.77.{}.48", cluster.subnet);
    let id = ha_vps(&t, &admin, hosts[0], tpl, "ha-kill", &ip).await;
    answers(&ip, "ha-kill").await;
    let before = crate::duplo::duplo(&t, &admin, id).await["last_cycle"]
        .as_u64()
        .unwrap_or(0);
    crate::duplo::request_now(&t, &admin, id).await;
    point_after(&t, &admin, id, before).await;
    services(&t, &admin, id, true).await;
    let sampler = Sampler::start(&cluster, "ha-kill");

    cluster.power_off(0).unwrap();
    assert!(
        t.wait_killed().await,
        "the controller was not killed at its fault point"
    );
    let killed = chrono::Utc::now();
    t.restart(None).await;
    let admin = t.admin().await;
    wait_vps(&t, &admin, id, "running on the other host", |v| {
        v["host_id"] == hosts[1] && v["state"] == "running"
    })
    .await;
    answers(&ip, "ha-kill").await;
    let e = event_of(&t, &admin, "netmon.failover", id).await;
    let detected =
        chrono::DateTime::parse_from_rfc3339(e["details"]["detected"].as_str().unwrap()).unwrap();
    assert!(
        detected < killed,
        "the failover was detected anew after the restart: {e}"
    );
    let suspected = get(
        &t,
        &admin,
        &format!(
            "/api/v1/events?action=netmon.host_suspected&target_type=host&target_id={}",
            hosts[0]
        ),
    )
    .await;
    assert_eq!(
        suspected["events"].as_array().map(Vec::len),
        Some(1),
        "the host was suspected again by the next run: {suspected}"
    );
    let seen = sampler.finish();
    assert_eq!(seen.last().map(|s| s.1.clone()), Some(vec![1]), "{seen:?}");
}
