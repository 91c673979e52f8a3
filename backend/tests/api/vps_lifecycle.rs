//! VPSes as real LXC containers on two test hosts, driven through the API: create, start, answer
//! at their address, processes, copy, move, edit, stop, delete; placement by capacity.

use crate::hosts_api::{add, wait_host};
use crate::support::*;
use reqwest::Client;
use serde_json::{json, Value};
use serverware_testhosts::{Cluster, ClusterOptions};
use std::time::{Duration, Instant};

pub(crate) const MIB: u64 = 1 << 20;

pub(crate) async fn get(t: &TestController, c: &Client, path: &str) -> Value {
    c.get(t.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits for a task to end; returns it with its log.
pub(crate) async fn task_end(t: &TestController, c: &Client, task: &Value) -> Value {
    let id = task["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("not a task: {task}"));
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let v = get(t, c, &format!("/api/v1/tasks/{id}")).await;
        if v["status"] != "running" {
            return v;
        }
        assert!(Instant::now() < deadline, "task never ended: {v}");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for a task to end; it must succeed.
pub(crate) async fn task_done(t: &TestController, c: &Client, task: &Value) -> Value {
    let v = task_end(t, c, task).await;
    assert_eq!(v["status"], "succeeded", "task failed: {v:#}");
    v
}

/// Waits until the VPS satisfies `pred`.
pub(crate) async fn wait_vps(
    t: &TestController,
    c: &Client,
    id: i64,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = get(t, c, &format!("/api/v1/vpses/{id}")).await;
        if pred(&v) {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "VPS never became {what}: {v:#}\n{}",
                what_happened(t, c).await
            );
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

/// For a failed wait: the newest events and the tasks, oldest first (what the controller did
/// and said while the test waited).
pub(crate) async fn what_happened(t: &TestController, c: &Client) -> String {
    let mut out = String::from("the controller's newest events (but settings):\n");
    let e = get(t, c, "/api/v1/events?limit=500").await;
    let events: Vec<&Value> = e["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] != "settings.update")
        .take(40)
        .collect();
    for e in events.into_iter().rev() {
        out += &format!("  {} {} {}\n", e["created_at"], e["action"], e["message"]);
    }
    out += "its newest tasks:\n";
    let ts = get(t, c, "/api/v1/tasks?limit=20").await;
    for x in ts.as_array().into_iter().flatten().rev() {
        out += &format!(
            "  {} #{} {} {} on {} {}\n",
            x["created_at"], x["id"], x["kind"], x["status"], x["target_id"], x["error"]
        );
    }
    out
}

/// Waits until http://ip/ answers with `body` (the minimal template's httpd serves the host name).
pub(crate) async fn answers(ip: &str, body: &str) {
    let c = Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last;
    loop {
        match c.get(format!("http://{ip}/")).send().await {
            Ok(r) => {
                last = r.text().await.unwrap_or_default();
                if last.trim() == body {
                    return;
                }
            }
            Err(e) => last = e.to_string(),
        }
        assert!(
            Instant::now() < deadline,
            "{ip} never answered '{body}': {last}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) async fn post(c: &Client, url: String, body: Value) -> reqwest::Response {
    c.post(url).json(&body).send().await.unwrap()
}

/// Runs a shell line inside a VPS on a test host, as its root; whether it succeeded and what it
/// printed.
pub(crate) fn vps_sh(cluster: &Cluster, host: usize, vps: &str, line: &str) -> (bool, String) {
    let pid = cluster.hosts[host].init_pid().unwrap().to_string();
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &pid,
            "-m",
            "-p",
            "-n",
            "lxc-attach",
            "-n",
            vps,
            "--",
            "sh",
            "-c",
            line,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs a program inside a VPS on a test host (as an operator would with lxc-attach there).
pub(crate) fn in_vps(cluster: &Cluster, host: usize, vps: &str, args: &[&str]) {
    let pid = cluster.hosts[host].init_pid().unwrap().to_string();
    let mut cmd = std::process::Command::new("nsenter");
    cmd.args(["-t", &pid, "-m", "-p", "-n", "lxc-attach", "-n", vps, "--"])
        .args(args)
        // What it starts in the background must not hold our pipes open.
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    assert!(cmd.status().unwrap().success(), "lxc-attach failed");
}

/// `n` test hosts added and online, a controller, its admin, the host ids and the built-in
/// template's id.
pub(crate) async fn site(n: usize) -> (Cluster, TestController, Client, Vec<i64>, i64) {
    site_on(n, TestController::start().await).await
}

/// [`site`] with a controller of the test's own (a process, say).
pub(crate) async fn site_on(
    n: usize,
    t: TestController,
) -> (Cluster, TestController, Client, Vec<i64>, i64) {
    let cluster = Cluster::create(ClusterOptions {
        hosts: n,
        ..Default::default()
    })
    .unwrap();
    let admin = t.admin().await;
    let mut hosts = Vec::new();
    for (i, h) in cluster.hosts.iter().enumerate() {
        let r = add(&t, &admin, &format!("node-{i}"), h).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        wait_host(&t, &admin, id, "online", |v| v["status"] == "online").await;
        hosts.push(id);
    }
    let tpl = get(&t, &admin, "/api/v1/templates").await[0]["id"]
        .as_i64()
        .unwrap();
    (cluster, t, admin, hosts, tpl)
}

pub(crate) async fn two_hosts(t: &TestController, c: &Client, cluster: &Cluster) -> Vec<i64> {
    hosts_at(t, c, cluster, &[0, 1]).await
}

/// Adds the cluster's hosts `at` as `node-a`, `node-b`, … and waits until each is online.
pub(crate) async fn hosts_at(
    t: &TestController,
    c: &Client,
    cluster: &Cluster,
    at: &[usize],
) -> Vec<i64> {
    let mut ids = Vec::new();
    for (n, i) in at.iter().enumerate() {
        let name = format!("node-{}", (b'a' + n as u8) as char);
        let r = add(t, c, &name, &cluster.hosts[*i]).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        ids.push(r.json::<Value>().await.unwrap()["id"].as_i64().unwrap());
    }
    for id in &ids {
        wait_host(t, c, *id, "online", |h| {
            h["status"] == "online" && h["sample"].is_object()
        })
        .await;
    }
    ids
}

#[actix_web::test]
async fn a_vps_lives_through_create_start_copy_move_edit_stop_and_delete() {
    let mut cluster = Cluster::create(ClusterOptions {
        hosts: 2,
        ..Default::default()
    })
    .unwrap();
    let net = format!("10.77.{}", cluster.subnet);
    let t = TestController::start().await;
    let admin = t.admin().await;
    let hosts = two_hosts(&t, &admin, &cluster).await;
    // Hosts' VPSes join the bridge that carries their link, with the test network's gateway.
    for h in &hosts {
        let r = admin
            .patch(t.url(&format!("/api/v1/hosts/{h}")))
            .json(&json!({"vps_gateway": cluster.gateway.to_string()}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    let templates = get(&t, &admin, "/api/v1/templates").await;
    let minimal = templates
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "minimal")
        .unwrap_or_else(|| panic!("no built-in template: {templates}"));
    assert_eq!(minimal["status"], "ready");
    let tpl = minimal["id"].as_i64().unwrap();

    // Every change is pushed on the socket too.
    let cookie = t.session_cookie("admin", ADMIN_PW).await;
    let mut sock = crate::ws::connect(&t, Some(&cookie)).await.unwrap();
    crate::ws::next_json(&mut sock).await;
    crate::ws::subscribe(&mut sock, &["tasks", "inventory"]).await;
    let mut sock = crate::ws::Listener::start(sock);

    // Bad input, before anything is made.
    let r = post(&admin, t.url("/api/v1/vpses"), json!({"name": "web-1", "template_id": tpl, "ipv4": "10.77.1.300", "memory_limit_bytes": 64 * MIB})).await;
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "ipv4");
    let r = post(&admin, t.url("/api/v1/vpses"), json!({"name": "web 1", "template_id": tpl, "ipv4": format!("{net}.50"), "memory_limit_bytes": 64 * MIB})).await;
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "name");
    let r = post(&admin, t.url("/api/v1/vpses"), json!({"name": "web-1", "template_id": tpl, "ipv4": format!("{net}.50"), "memory_limit_bytes": 1024})).await;
    assert_eq!(
        expect_error(r, 422, "invalid").await["field"],
        "memory_limit_bytes"
    );

    // Create on host A and start.
    let ip1 = format!("{net}.50");
    let r = post(
        &admin,
        t.url("/api/v1/vpses"),
        json!({
        "name": "web-1", "template_id": tpl, "host_id": hosts[0], "ipv4": ip1,
        "memory_limit_bytes": 64 * MIB, "cpu_shares": 512, "start": true}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let task: Value = r.json().await.unwrap();
    assert_eq!(task["kind"], "vps.create");
    let done = task_done(&t, &admin, &task).await;
    assert!(done["log"].as_array().unwrap().len() >= 2, "{done}");
    let vid = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    let v = wait_vps(&t, &admin, vid, "running", |v| v["state"] == "running").await;
    assert_eq!(
        (v["status"].as_str(), v["host_id"].as_i64()),
        (Some("running"), Some(hosts[0]))
    );
    answers(&ip1, "web-1").await;
    // LXC as users install it (Recommends included) brings uidmap, whose newuidmap takes only
    // ranges root was given: the host's agent gave root this VPS's range, on that host alone.
    assert!(
        std::path::Path::new("/usr/bin/newuidmap").exists(),
        "the test machine must have Debian's lxc with its recommended packages (uidmap)"
    );
    let base = v["id_base"]
        .as_u64()
        .expect("an unprivileged VPS has an id range");
    let pid = cluster.hosts[0].init_pid().unwrap().to_string();
    let subuid = std::process::Command::new("nsenter")
        .args(["-t", &pid, "-m", "cat", "/etc/subuid", "/etc/subgid"])
        .output()
        .unwrap();
    let subuid = String::from_utf8_lossy(&subuid.stdout);
    assert_eq!(
        subuid.matches(&format!("root:{base}:65536")).count(),
        2,
        "{subuid}"
    );
    let here = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    assert!(!here.contains(&format!("root:{base}:")), "{here}");

    // The same address or name again is refused with the field named; so is starting it twice.
    let r = post(
        &admin,
        t.url("/api/v1/vpses"),
        json!({"name": "web-9", "template_id": tpl, "ipv4": ip1, "memory_limit_bytes": 64 * MIB}),
    )
    .await;
    let e = expect_error(r, 409, "conflict").await;
    assert_eq!(e["field"], "ipv4");
    assert!(e["message"].as_str().unwrap().contains("web-1"), "{e}");
    let r = post(&admin, t.url("/api/v1/vpses"), json!({"name": "web-1", "template_id": tpl, "ipv4": format!("{net}.59"), "memory_limit_bytes": 64 * MIB})).await;
    assert_eq!(expect_error(r, 409, "conflict").await["field"], "name");
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/start")),
        json!({}),
    )
    .await;
    expect_error(r, 409, "conflict").await;

    // Its figures: a process started inside shows in its count; context is its init's PID.
    let v = wait_vps(&t, &admin, vid, "with figures", |v| {
        v["live"]["processes"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    let before = v["live"]["processes"].as_u64().unwrap();
    assert!(v["live"]["init_pid"].as_u64().is_some(), "{v}");
    assert!(v["live"]["memory_limit"].as_u64() == Some(64 * MIB), "{v}");
    in_vps(
        &cluster,
        0,
        "web-1",
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "/bin/busybox sleep 600 & /bin/busybox sleep 600 &",
        ],
    );
    wait_vps(&t, &admin, vid, "busier", |v| {
        v["live"]["processes"].as_u64().unwrap_or(0) >= before + 2
    })
    .await;

    // Copy onto host B under a new name and address, and start the copy.
    let ip2 = format!("{net}.51");
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/copy")),
        json!({"name": "web-2", "ipv4": ip2, "host_id": hosts[1], "start": true}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let cid = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    wait_vps(&t, &admin, cid, "running on B", |v| {
        v["state"] == "running" && v["host_id"] == hosts[1]
    })
    .await;
    answers(&ip2, "web-2").await;
    answers(&ip1, "web-1").await;

    // Move the original to host B: it runs there and is gone from A.
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/move")),
        json!({"host_id": hosts[1]}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let log: Vec<String> = done["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap().to_string())
        .collect();
    assert!(log.iter().any(|l| l.contains("downtime")), "{log:?}");
    wait_vps(&t, &admin, vid, "running on B", |v| {
        v["state"] == "running" && v["host_id"] == hosts[1]
    })
    .await;
    answers(&ip1, "web-1").await;
    assert!(
        !cluster.hosts[0].dir.join("lxc/web-1").exists(),
        "the container is still on A"
    );
    wait_host(&t, &admin, hosts[0], "without web-1", |h| {
        !h["sample"]["vpses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "web-1")
    })
    .await;
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/move")),
        json!({"host_id": hosts[1]}),
    )
    .await;
    assert_eq!(expect_error(r, 409, "conflict").await["field"], "host_id");

    // Host B loses power with both VPSes on it: once it is back, the controller starts them
    // again (they should run, and have autostart).
    cluster.power_off(1).unwrap();
    wait_host(&t, &admin, hosts[1], "offline", |h| {
        h["status"] == "offline"
    })
    .await;
    cluster.boot(1).unwrap();
    for (id, ip, name) in [(vid, &ip1, "web-1"), (cid, &ip2, "web-2")] {
        wait_vps(&t, &admin, id, "running again", |v| v["state"] == "running").await;
        answers(ip, name).await;
    }
    let restarts = get(&t, &admin, "/api/v1/tasks?status=succeeded").await;
    let by_reconcile = restarts
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "vps.start" && t["created_by"] == "system:reconcile")
        .count();
    assert_eq!(by_reconcile, 2, "{restarts}");

    // A memory limit edit takes effect on the running VPS; a new address needs a restart.
    let r = admin
        .patch(t.url(&format!("/api/v1/vpses/{vid}")))
        .json(&json!({"memory_limit_bytes": 96 * MIB, "description": "front end"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["restart_required"], false);
    task_done(&t, &admin, &e["task"]).await;
    wait_vps(&t, &admin, vid, "with the new limit", |v| {
        v["live"]["memory_limit"].as_u64() == Some(96 * MIB)
    })
    .await;
    let r = admin
        .patch(t.url(&format!("/api/v1/vpses/{vid}")))
        .json(&json!({"ipv4": ip2}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 409, "conflict").await["field"], "ipv4");

    // Stop, then delete.
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/stop")),
        json!({"timeout_secs": 20}),
    )
    .await;
    assert_eq!(r.status(), 202);
    task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let v = wait_vps(&t, &admin, vid, "stopped", |v| v["state"] == "stopped").await;
    assert_eq!(v["status"], "stopped");
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/stop")),
        json!({}),
    )
    .await;
    expect_error(r, 409, "conflict").await;
    for id in [vid, cid] {
        let r = admin
            .delete(t.url(&format!("/api/v1/vpses/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
        let r = admin
            .get(t.url(&format!("/api/v1/vpses/{id}")))
            .send()
            .await
            .unwrap();
        expect_error(r, 404, "not_found").await;
    }
    assert!(!cluster.hosts[1].dir.join("lxc/web-1").exists());
    assert!(!cluster.hosts[1].dir.join("lxc/web-2").exists());

    // Everything was seen on the socket: each task's end, and VPS changes.
    let mut ended = std::collections::BTreeSet::new();
    let mut inventory = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ended.len() < 7 && Instant::now() < deadline {
        let m = sock.next_json().await;
        match m["type"].as_str().unwrap() {
            "task" if m["task"]["status"] == "succeeded" => {
                ended.insert(m["task"]["kind"].as_str().unwrap().to_string());
            }
            "inventory" if m["change"]["kind"] == "vps" => inventory += 1,
            _ => {}
        }
    }
    let want: std::collections::BTreeSet<String> = [
        "vps.create",
        "vps.copy",
        "vps.move",
        "vps.start",
        "vps.edit",
        "vps.stop",
        "vps.delete",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(ended, want);
    assert!(inventory >= 6, "{inventory}");

    // A container nobody created through the controller is reported, never destroyed.
    let stray = cluster.hosts[0].dir.join("lxc/stray");
    std::fs::create_dir_all(stray.join("rootfs")).unwrap();
    std::fs::write(stray.join("config"), "lxc.uts.name = stray\n").unwrap();
    wait_host(&t, &admin, hosts[0], "reporting the stray container", |h| {
        h["unknown_vpses"] == json!(["stray"])
    })
    .await;
    let ev = get(&t, &admin, "/api/v1/events?action=host.unknown_vps").await;
    assert_eq!(ev["events"].as_array().unwrap().len(), 1, "{ev}");
    // A VPS of the same name is refused there rather than taking the container over.
    let r = post(&admin, t.url("/api/v1/vpses"), json!({"name": "stray", "template_id": tpl, "host_id": hosts[0], "ipv4": format!("{net}.58"), "memory_limit_bytes": 64 * MIB})).await;
    let e = expect_error(r, 409, "conflict").await;
    assert_eq!(e["field"], "name");
    assert!(
        e["message"].as_str().unwrap().contains("does not manage"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(stray.join("config")).unwrap(),
        "lxc.uts.name = stray\n"
    );
}

#[actix_web::test]
async fn placement_picks_the_host_with_most_room_and_refuses_when_none_has_it() {
    let cluster = Cluster::create(ClusterOptions {
        hosts: 2,
        ..Default::default()
    })
    .unwrap();
    let net = format!("10.77.{}", cluster.subnet);
    let t = TestController::start().await;
    let admin = t.admin().await;
    let hosts = two_hosts(&t, &admin, &cluster).await;
    // Test hosts share one kernel, so their reported memory is alike: declare capacities.
    for (h, mem) in [(hosts[0], 256 * MIB), (hosts[1], 1024 * MIB)] {
        let r = admin
            .patch(t.url(&format!("/api/v1/hosts/{h}")))
            .json(&json!({"capacity_memory_bytes": mem, "capacity_cpus": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["capacity"]["memory_bytes"].as_u64(), Some(mem));
    }
    let tpl = get(&t, &admin, "/api/v1/templates").await[0]["id"]
        .as_i64()
        .unwrap();
    let create = |name: &str, ip: String, mem: u64| {
        admin
            .post(t.url("/api/v1/vpses"))
            .json(&json!({"name": name, "template_id": tpl, "ipv4": ip, "memory_limit_bytes": mem}))
            .send()
    };
    // B has the most room.
    let r = create("p-1", format!("{net}.60"), 200 * MIB).await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let id = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    assert_eq!(
        get(&t, &admin, &format!("/api/v1/vpses/{id}")).await["host_id"],
        hosts[1]
    );
    // B has 824 MiB left, A 256 MiB: 700 MiB goes to B, and then 300 MiB fits nowhere.
    let r = create("p-2", format!("{net}.61"), 700 * MIB).await.unwrap();
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let id2 = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    assert_eq!(
        get(&t, &admin, &format!("/api/v1/vpses/{id2}")).await["host_id"],
        hosts[1]
    );
    let r = create("p-3", format!("{net}.62"), 300 * MIB).await.unwrap();
    let e = expect_error(r, 409, "conflict").await;
    assert_eq!(e["field"], "host_id");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("no host has room") && msg.contains("node-a has 256 MiB"),
        "{msg}"
    );
    // 100 MiB fits on A now, which has more room left than B's 124 MiB share.
    let r = create("p-3", format!("{net}.62"), 100 * MIB).await.unwrap();
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let id3 = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    assert_eq!(
        get(&t, &admin, &format!("/api/v1/vpses/{id3}")).await["host_id"],
        hosts[0]
    );
    let h = get(&t, &admin, &format!("/api/v1/hosts/{}", hosts[1])).await;
    assert_eq!(h["vps_count"], 2);
    assert_eq!(h["free"]["memory_bytes"].as_u64(), Some(124 * MIB));
}

#[actix_web::test]
async fn a_host_lost_during_a_task_fails_it_cleanly_and_its_vps_comes_back() {
    let mut cluster = Cluster::create(ClusterOptions {
        hosts: 1,
        ..Default::default()
    })
    .unwrap();
    let net = format!("10.77.{}", cluster.subnet);
    let t = TestController::start().await;
    let admin = t.admin().await;
    let r = add(&t, &admin, "node-a", &cluster.hosts[0]).await;
    let host = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    wait_host(&t, &admin, host, "online", |h| h["status"] == "online").await;
    let tpl = get(&t, &admin, "/api/v1/templates").await[0]["id"]
        .as_i64()
        .unwrap();
    let ip = format!("{net}.90");
    let r = post(&admin, t.url("/api/v1/vpses"), json!({"name": "db-1", "template_id": tpl, "ipv4": ip, "memory_limit_bytes": 64 * MIB, "start": true})).await;
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let vid = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    wait_vps(&t, &admin, vid, "running", |v| v["state"] == "running").await;
    // Frozen, it cannot stop cleanly: a restart waits out its timeout…
    let pid = cluster.hosts[0].init_pid().unwrap().to_string();
    let ok = std::process::Command::new("nsenter")
        .args(["-t", &pid, "-m", "-p", "-n", "lxc-freeze", "-n", "db-1"])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/restart")),
        json!({"timeout_secs": 300}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let task: Value = r.json().await.unwrap();
    // …and meanwhile its host loses power.
    cluster.power_off(0).unwrap();
    let failed = task_end(&t, &admin, &task).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("lost"),
        "{failed}"
    );
    let v = get(&t, &admin, &format!("/api/v1/vpses/{vid}")).await;
    // Nobody can say whether it runs: its host is offline, its state unknown (not running); it
    // should run.
    assert_eq!(
        (
            v["status"].as_str(),
            v["observed_state"].as_str(),
            v["desired_state"].as_str(),
            v["busy_task"].as_i64()
        ),
        (Some("host offline"), Some("unknown"), Some("running"), None),
        "{v}"
    );
    // Operations on a VPS whose host is offline are refused, not queued.
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/restart")),
        json!({}),
    )
    .await;
    let e = expect_error(r, 409, "conflict").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("unknown state (its host cannot be reached)"),
        "{e}"
    );
    // Back on: it should run, so it is started again.
    cluster.boot(0).unwrap();
    wait_vps(&t, &admin, vid, "running again", |v| {
        v["state"] == "running"
    })
    .await;
    answers(&ip, "db-1").await;
}
