//! Hosts added through the API on real test hosts; netRES samples are each host's own.

use crate::support::*;
use reqwest::Client;
use serde_json::{json, Value};
use serverware_testhosts::{Cluster, ClusterOptions};
use std::time::{Duration, Instant};

async fn host(t: &TestController, c: &Client, id: i64) -> Value {
    c.get(t.url(&format!("/api/v1/hosts/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the host until `pred` holds; generous deadline, no fixed sleeps.
async fn wait_host(
    t: &TestController,
    c: &Client,
    id: i64,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = host(t, c, id).await;
        if pred(&h) {
            return h;
        }
        assert!(Instant::now() < deadline, "host never became {what}: {h}");
        tokio::task::yield_now().await;
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn add(
    t: &TestController,
    c: &Client,
    name: &str,
    h: &serverware_testhosts::TestHost,
) -> reqwest::Response {
    let r = c
        .post(t.url("/api/v1/hosts/probe"))
        .json(&json!({"address": h.ssh_url()}))
        .send()
        .await
        .unwrap();
    if r.status() != 200 {
        return r;
    }
    let probe: Value = r.json().await.unwrap();
    assert!(
        probe["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:"),
        "{probe}"
    );
    c.post(t.url("/api/v1/hosts"))
        .json(&json!({"name": name, "address": h.ssh_url(), "host_key": probe["host_key"], "password": h.password}))
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn hosts_added_over_ssh_report_their_own_samples_and_go_offline_and_back() {
    let mut cluster = Cluster::create(ClusterOptions {
        hosts: 2,
        ..Default::default()
    })
    .unwrap();
    let t = TestController::start().await;
    let admin = t.admin().await;

    // Bad input leaves nothing behind.
    let r = admin
        .post(t.url("/api/v1/hosts/probe"))
        .json(&json!({"address": "root@10.77.1.1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "address");
    let probe: Value = admin
        .post(t.url("/api/v1/hosts/probe"))
        .json(&json!({"address": cluster.hosts[0].ssh_url()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = admin
        .post(t.url("/api/v1/hosts"))
        .json(&json!({"name": "a", "address": cluster.hosts[0].ssh_url(), "host_key": probe["host_key"], "password": "wrong-password"}))
        .send().await.unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "password");
    // Host B's address with host A's key: the changed key is refused.
    let r = admin
        .post(t.url("/api/v1/hosts"))
        .json(&json!({"name": "b", "address": cluster.hosts[1].ssh_url(), "host_key": probe["host_key"], "password": cluster.hosts[1].password}))
        .send().await.unwrap();
    assert_eq!(expect_error(r, 409, "conflict").await["field"], "host_key");
    let list: Value = admin
        .get(t.url("/api/v1/hosts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "nothing half-added: {list}"
    );

    let mut ids = Vec::new();
    for (i, name) in ["alpha", "beta"].iter().enumerate() {
        let r = add(&t, &admin, name, &cluster.hosts[i]).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        ids.push(body["id"].as_i64().unwrap());
    }
    // Samples arrive, and each host's disk is its own.
    for (i, id) in ids.iter().enumerate() {
        let h = wait_host(&t, &admin, *id, "online with a sample", |h| {
            h["status"] == "online" && h["sample"].is_object()
        })
        .await;
        let srv = h["sample"]["filesystems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["mount_point"] == "/srv")
            .cloned()
            .expect("the host's disk");
        assert_eq!(
            srv["size_bytes"].as_u64().unwrap(),
            cluster.hosts[i].disk_mib * 1024 * 1024
        );
    }
    // Browsers subscribed to hosts get each sample pushed, with the host's own figures.
    let cookie = t.session_cookie("admin", ADMIN_PW).await;
    let mut sock = crate::ws::connect(&t, Some(&cookie)).await.unwrap();
    assert_eq!(crate::ws::next_json(&mut sock).await["type"], "hello");
    assert_eq!(
        crate::ws::subscribe(&mut sock, &["hosts"]).await["topics"],
        json!(["hosts"])
    );
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 {
        let m = crate::ws::next_json(&mut sock).await;
        assert_eq!(m["type"], "host_status", "{m}");
        let id = m["host_id"].as_i64().unwrap();
        let i = ids.iter().position(|x| *x == id).expect("a known host");
        let srv = m["sample"]["filesystems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["mount_point"] == "/srv")
            .cloned()
            .unwrap();
        assert_eq!(
            srv["size_bytes"].as_u64().unwrap(),
            cluster.hosts[i].disk_mib * 1024 * 1024
        );
        seen.insert(id);
    }
    drop(sock);

    // A viewer may read hosts but not add them.
    let viewer = t.user_with_role(&admin, "vera", "viewer").await;
    assert_eq!(
        viewer
            .get(t.url("/api/v1/hosts"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = add(&t, &viewer, "gamma", &cluster.hosts[0]).await;
    expect_error(r, 403, "forbidden").await;

    // Powered off: offline by itself; booted: online again by itself.
    cluster.power_off(0).unwrap();
    wait_host(&t, &admin, ids[0], "offline", |h| h["status"] == "offline").await;
    assert_eq!(host(&t, &admin, ids[1]).await["status"], "online");
    cluster.boot(0).unwrap();
    wait_host(&t, &admin, ids[0], "online again", |h| {
        h["status"] == "online"
    })
    .await;

    // Deleted: gone, and audited.
    let r = admin
        .delete(t.url(&format!("/api/v1/hosts/{}", ids[1])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    expect_error(
        admin
            .get(t.url(&format!("/api/v1/hosts/{}", ids[1])))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    let ev: Value = admin
        .get(t.url("/api/v1/events?action=host."))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["host.delete", "host.create", "host.create"]);
}
