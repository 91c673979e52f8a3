//! The controller killed with SIGKILL at every step boundary of every durable operation kind
//! (create, copy of a running source, move, delete, restore in place onto another host as a
//! failover does, restore as a new VPS), walked from the kinds' own step lists
//! (`serverware::vps::durable_steps`, so a new step is walked without a new test), and at a random
//! moment inside a file transfer, then started again: every
//! operation is resumed or rolled back by itself, the task log says which, the VPS ends
//! consistent (present only on the host the database names, not paused, running if it should),
//! and the same operation can be asked for again. Then SIGTERM during a move: the controller
//! exits within its deadline and the move is complete or rolled back after the next start.
//! Real test hosts, real LXC, the real `serverware` binary; the kill points are a setting that
//! exists only in test builds (`SERVERWARE_FAULT`).

use crate::hosts_api::{add, wait_host};
use crate::support::*;
use crate::vps_lifecycle::{answers, get, post, task_done, task_end, MIB};
use reqwest::Client;
use serde_json::{json, Value};
use serverware_testhosts::{Cluster, ClusterOptions};
use std::time::{Duration, Instant};

/// The containers on a test host, with their state, as the host itself reports them.
fn containers_on(cluster: &Cluster, host: usize) -> Vec<(String, String)> {
    let pid = cluster.hosts[host].init_pid().unwrap().to_string();
    let ns = |args: &[&str]| {
        let out = std::process::Command::new("nsenter")
            .args(["-t", &pid, "-m", "-p", "-n"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ns(&["lxc-ls", "-1"])
        .split_whitespace()
        .map(|name| {
            let state = ns(&["lxc-info", "-n", name, "-s", "-H"])
                .trim()
                .to_lowercase();
            (name.to_string(), state)
        })
        .collect()
}

struct Site {
    cluster: Cluster,
    t: TestController,
    admin: Client,
    hosts: [i64; 2],
    tpl: i64,
    net: String,
}

impl Site {
    /// Two test hosts added to a controller running as its own process.
    async fn new() -> Site {
        let cluster = Cluster::create(ClusterOptions {
            hosts: 2,
            ..Default::default()
        })
        .unwrap();
        let net = format!("10.77.{}", cluster.subnet);
        let t = TestController::start_process(None).await;
        let admin = t.admin().await;
        let mut hosts = [0; 2];
        for (i, name) in ["node-a", "node-b"].into_iter().enumerate() {
            let r = add(&t, &admin, name, &cluster.hosts[i]).await;
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            hosts[i] = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        }
        let tpl = get(&t, &admin, "/api/v1/templates").await[0]["id"]
            .as_i64()
            .unwrap();
        let s = Site {
            cluster,
            t,
            admin,
            hosts,
            tpl,
            net,
        };
        s.online().await;
        s
    }

    async fn online(&self) {
        for h in self.hosts {
            wait_host(&self.t, &self.admin, h, "online", |v| {
                v["status"] == "online"
            })
            .await;
        }
    }

    fn index(&self, host_id: i64) -> usize {
        self.hosts.iter().position(|h| *h == host_id).unwrap()
    }

    /// Starts the controller with a kill point, asks for an operation, waits for the kill,
    /// starts it again without one and returns the operation's task once it ended.
    async fn crash(
        &mut self,
        fault: &str,
        kind: &str,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Value {
        self.t.restart(Some(fault)).await;
        self.online().await;
        // The answer may or may not leave before the kill: the task is found either way.
        let before = get(&self.t, &self.admin, "/api/v1/tasks?limit=1").await[0]["id"]
            .as_i64()
            .unwrap_or(0);
        let r = self
            .admin
            .request(method, self.t.url(path))
            .json(&body)
            .send()
            .await;
        if let Ok(r) = r {
            assert!(
                r.status() == 202 || r.status().is_server_error(),
                "{fault}: {}",
                r.text().await.unwrap_or_default()
            );
        }
        assert!(
            self.t.wait_killed().await,
            "{fault}: the controller did not die by SIGKILL"
        );
        self.t.restart(None).await;
        let listed = get(&self.t, &self.admin, "/api/v1/tasks?limit=20").await;
        let newest = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == kind && t["id"].as_i64().unwrap() > before)
            .unwrap_or_else(|| panic!("{fault}: no {kind} task was recorded: {listed:#}"))
            .clone();
        let done = task_end(&self.t, &self.admin, &newest).await;
        let log = done["log"].to_string();
        assert!(
            log.contains("resumed") || log.contains("rolled back"),
            "{fault}: the task log says neither resumed nor rolled back: {done:#}"
        );
        done
    }

    /// The VPS is where the database says, and only there; not paused; running if it should
    /// (and then answering at its address); no operation holds it.
    async fn consistent(&self, id: i64, name: &str, ip: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v = get(&self.t, &self.admin, &format!("/api/v1/vpses/{id}")).await;
            let at = self.index(v["host_id"].as_i64().unwrap());
            let found: Vec<(usize, String)> = (0..2)
                .flat_map(|h| {
                    containers_on(&self.cluster, h)
                        .into_iter()
                        .filter(|(n, _)| n == name)
                        .map(move |(_, s)| (h, s))
                })
                .collect();
            let want = v["desired_state"].as_str().unwrap().to_string();
            let ok = v["busy_task"].is_null()
                && found.len() == 1
                && found[0].0 == at
                && found[0].1 == want
                && v["status"] == want.as_str();
            if ok {
                if want == "running" {
                    answers(ip, name).await;
                }
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "VPS {name} never became consistent: containers {found:?}, record {v:#}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Nothing of a VPS named `name` is left anywhere.
    async fn gone(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let listed = get(&self.t, &self.admin, "/api/v1/vpses").await;
            let in_db = listed.as_array().unwrap().iter().any(|v| v["name"] == name);
            let on_hosts: Vec<usize> = (0..2)
                .filter(|h| {
                    containers_on(&self.cluster, *h)
                        .iter()
                        .any(|(n, _)| n == name)
                })
                .collect();
            if !in_db && on_hosts.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "VPS {name} is still there: record {in_db}, hosts {on_hosts:?}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn create(&self, name: &str, ip: &str, host: i64) -> i64 {
        self.online().await;
        let r = post(
            &self.admin,
            self.t.url("/api/v1/vpses"),
            json!({"name": name, "template_id": self.tpl, "host_id": host, "ipv4": ip,
                   "memory_limit_bytes": 64 * MIB, "start": true}),
        )
        .await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let done = task_done(&self.t, &self.admin, &r.json::<Value>().await.unwrap()).await;
        done["target_id"].as_str().unwrap().parse().unwrap()
    }

    async fn delete(&self, id: i64) {
        let r = self
            .admin
            .delete(self.t.url(&format!("/api/v1/vpses/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        task_done(&self.t, &self.admin, &r.json::<Value>().await.unwrap()).await;
    }

    /// A restore point of the VPS newer than any it had: its cycle.
    async fn point(&self, id: i64) -> u64 {
        self.online().await;
        let before = crate::duplo::duplo(&self.t, &self.admin, id).await["last_cycle"]
            .as_u64()
            .unwrap_or(0);
        crate::duplo::request_now(&self.t, &self.admin, id).await;
        crate::duplo::point_after(&self.t, &self.admin, id, before).await;
        crate::duplo::duplo(&self.t, &self.admin, id).await["last_cycle"]
            .as_u64()
            .unwrap()
    }

    fn find(&self, listed: &Value, name: &str) -> Option<i64> {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["id"].as_i64())
    }
}

/// Somewhere inside a transfer of at least `within` bytes, different on every run (the
/// minimal template's archive is about 1 MB, a VPS made from it about 2 MB).
fn random_transfer_point(within: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    format!("transfer:{}", 16 * 1024 + nanos % (within - 16 * 1024))
}

/// The kill points of an operation kind: after each of its steps, and a transfer point inserted
/// at `transfer` (before the step that follows the transfer).
fn kill_points(kind: &str, transfer: Option<(usize, &str)>) -> Vec<String> {
    let (_, steps) = serverware::vps::durable_steps()
        .into_iter()
        .find(|(k, _)| *k == kind)
        .unwrap_or_else(|| panic!("no operation kind {kind}"));
    let recorded = kind.split(' ').next().unwrap();
    let mut points: Vec<String> = steps.iter().map(|s| format!("{recorded}:{s}")).collect();
    if let Some((i, t)) = transfer {
        points.insert(i, t.to_string());
    }
    points
}

#[test]
fn every_kind_is_walked() {
    let walked = [
        "vps.move",
        "vps.copy",
        "vps.create",
        "vps.delete",
        "vps.restore in place",
        "vps.restore as new",
    ];
    for (kind, steps) in serverware::vps::durable_steps() {
        assert!(
            walked.contains(&kind),
            "the crash test does not walk {kind}"
        );
        assert!(!steps.is_empty(), "{kind}");
    }
}

#[actix_web::test]
async fn operations_killed_at_every_step_are_resumed_or_rolled_back() {
    let mut s = Site::new().await;

    // Move: a running VPS killed at each step, moved toward the other host each time (which
    // also shows that the same operation can be asked for again).
    let ip_a = format!("{}.60", s.net);
    let a = s.create("crash-a", &ip_a, s.hosts[0]).await;
    s.consistent(a, "crash-a", &ip_a).await;
    let transfer_point = random_transfer_point(1536 * 1024);
    for fault in &kill_points("vps.move", Some((2, &transfer_point))) {
        let at = get(&s.t, &s.admin, &format!("/api/v1/vpses/{a}")).await["host_id"]
            .as_i64()
            .unwrap();
        let other = s.hosts[1 - s.index(at)];
        let done = s
            .crash(
                fault,
                "vps.move",
                reqwest::Method::POST,
                &format!("/api/v1/vpses/{a}/move"),
                json!({"host_id": other}),
            )
            .await;
        let v = s.consistent(a, "crash-a", &ip_a).await;
        let log = done["log"].to_string();
        if log.contains("rolled back") {
            assert_eq!(v["host_id"].as_i64(), Some(at), "{fault}: {done:#}");
        } else {
            assert_eq!(v["host_id"].as_i64(), Some(other), "{fault}: {done:#}");
        }
        assert_eq!(v["desired_state"], "running", "{fault}");
    }

    // Copy of the running VPS: the source is never left paused.
    let ip_d = format!("{}.61", s.net);
    let transfer_point = random_transfer_point(1536 * 1024);
    for fault in &kill_points("vps.copy", Some((2, &transfer_point))) {
        let at = get(&s.t, &s.admin, &format!("/api/v1/vpses/{a}")).await["host_id"]
            .as_i64()
            .unwrap();
        let other = s.hosts[1 - s.index(at)];
        let done = s
            .crash(
                fault,
                "vps.copy",
                reqwest::Method::POST,
                &format!("/api/v1/vpses/{a}/copy"),
                json!({"name": "crash-d", "ipv4": ip_d, "host_id": other, "start": true}),
            )
            .await;
        s.consistent(a, "crash-a", &ip_a).await;
        let listed = get(&s.t, &s.admin, "/api/v1/vpses").await;
        match s.find(&listed, "crash-d") {
            Some(d) => {
                assert!(
                    done["log"].to_string().contains("resumed"),
                    "{fault}: {done:#}"
                );
                s.consistent(d, "crash-d", &ip_d).await;
                s.delete(d).await;
            }
            None => assert!(done["log"].to_string().contains("rolled back"), "{fault}"),
        }
        s.gone("crash-d").await;
    }

    // Create: carried on from its last step (rolled back only when that fails); the same name
    // can be created again.
    let ip_c = format!("{}.62", s.net);
    let transfer_point = random_transfer_point(900 * 1024);
    for fault in &kill_points("vps.create", Some((1, &transfer_point))) {
        let done = s
            .crash(
                fault,
                "vps.create",
                reqwest::Method::POST,
                "/api/v1/vpses",
                json!({"name": "crash-c", "template_id": s.tpl, "host_id": s.hosts[0],
                       "ipv4": ip_c, "memory_limit_bytes": 64 * MIB, "start": true}),
            )
            .await;
        let listed = get(&s.t, &s.admin, "/api/v1/vpses").await;
        match s.find(&listed, "crash-c") {
            Some(c) => {
                assert!(
                    done["log"].to_string().contains("resumed"),
                    "{fault}: {done:#}"
                );
                s.consistent(c, "crash-c", &ip_c).await;
                s.delete(c).await;
            }
            None => assert!(done["log"].to_string().contains("rolled back"), "{fault}"),
        }
        s.gone("crash-c").await;
    }
    let c = s.create("crash-c", &ip_c, s.hosts[0]).await;
    s.consistent(c, "crash-c", &ip_c).await;

    // Restore in place onto the other host (what a failover does): carried forward.
    for fault in &kill_points("vps.restore in place", None) {
        let cycle = s.point(a).await;
        let at = get(&s.t, &s.admin, &format!("/api/v1/vpses/{a}")).await["host_id"]
            .as_i64()
            .unwrap();
        let other = s.hosts[1 - s.index(at)];
        let done = s
            .crash(
                fault,
                "vps.restore",
                reqwest::Method::POST,
                &format!("/api/v1/vpses/{a}/restore"),
                json!({"cycle": cycle, "host_id": other}),
            )
            .await;
        let v = s.consistent(a, "crash-a", &ip_a).await;
        let log = done["log"].to_string();
        if log.contains("rolled back") {
            assert_eq!(v["host_id"].as_i64(), Some(at), "{fault}: {done:#}");
        } else {
            assert_eq!(v["host_id"].as_i64(), Some(other), "{fault}: {done:#}");
        }
        assert_eq!(v["desired_state"], "running", "{fault}");
    }

    // Restore as a new VPS: finished if complete, else nothing of it is left.
    let ip_r = format!("{}.64", s.net);
    for fault in &kill_points("vps.restore as new", None) {
        let cycle = s.point(a).await;
        let done = s
            .crash(
                fault,
                "vps.restore",
                reqwest::Method::POST,
                &format!("/api/v1/vpses/{a}/restore"),
                json!({"cycle": cycle, "name": "crash-r", "ipv4": ip_r, "host_id": s.hosts[1], "start": true}),
            )
            .await;
        s.consistent(a, "crash-a", &ip_a).await;
        let listed = get(&s.t, &s.admin, "/api/v1/vpses").await;
        match s.find(&listed, "crash-r") {
            Some(r) => {
                assert!(
                    done["log"].to_string().contains("resumed"),
                    "{fault}: {done:#}"
                );
                s.consistent(r, "crash-r", &ip_r).await;
                s.delete(r).await;
            }
            None => assert!(done["log"].to_string().contains("rolled back"), "{fault}"),
        }
        s.gone("crash-r").await;
    }

    // Delete: carried through.
    for fault in &kill_points("vps.delete", None) {
        s.crash(
            fault,
            "vps.delete",
            reqwest::Method::DELETE,
            &format!("/api/v1/vpses/{c}"),
            json!(null),
        )
        .await;
    }
    s.gone("crash-c").await;
}

#[actix_web::test]
async fn sigterm_during_a_move_exits_in_time_and_the_move_ends_at_the_next_start() {
    let mut s = Site::new().await;
    let ip = format!("{}.63", s.net);
    let id = s.create("term-a", &ip, s.hosts[0]).await;
    s.consistent(id, "term-a", &ip).await;
    let r = post(
        &s.admin,
        s.t.url(&format!("/api/v1/vpses/{id}/move")),
        json!({"host_id": s.hosts[1]}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let task: Value = r.json().await.unwrap();
    // Once the move is under way (its source stopping), the controller is asked to stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get(&s.t, &s.admin, &format!("/api/v1/tasks/{}", task["id"])).await;
        if v["log"].as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the move never began: {v}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let took = s.t.terminate().await;
    assert!(
        took < serverware::server::STOP_DEADLINE + Duration::from_secs(10),
        "the controller took {took:?} to stop"
    );
    s.t.restart(None).await;
    let done = task_end(&s.t, &s.admin, &task).await;
    let v = s.consistent(id, "term-a", &ip).await;
    // Completed before the exit, or resumed or rolled back after the start: never half-way.
    match done["status"].as_str() {
        Some("succeeded") => assert_eq!(v["host_id"].as_i64(), Some(s.hosts[1]), "{done:#}"),
        _ => assert!(done["log"].to_string().contains("rolled back"), "{done:#}"),
    }
    // Started again, it takes new operations.
    let r = post(
        &s.admin,
        s.t.url(&format!("/api/v1/vpses/{id}/stop")),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}
