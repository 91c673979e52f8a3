//! Hosts added through the API on real test hosts; netRES samples are each host's own.

use crate::support::*;
use reqwest::Client;
use serde_json::{json, Value};
use serverware_testhosts::{Cluster, ClusterOptions};
use std::time::{Duration, Instant};

pub(crate) async fn host(t: &TestController, c: &Client, id: i64) -> Value {
    c.get(t.url(&format!("/api/v1/hosts/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the host until `pred` holds; generous deadline, no fixed sleeps.
pub(crate) async fn wait_host(
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

pub(crate) async fn add(
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
    // The socket's `hosts` topic carries every host's status and summary, gathered once a
    // second into one message, never full samples; `host:<id>` carries that one host's full
    // samples.
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
        assert_eq!(m["type"], "host_statuses", "{m}");
        for h in m["hosts"].as_array().unwrap() {
            assert!(h["summary"]["cpu_pct"].is_number(), "{m}");
            assert_eq!(h["status"], "online", "{m}");
            seen.insert(h["host_id"].as_i64().unwrap());
        }
    }
    let topic = format!("host:{}", ids[0]);
    assert_eq!(
        crate::ws::subscribe(&mut sock, &[&topic]).await["topics"],
        json!(["hosts", topic])
    );
    let mut full = Vec::new();
    while full.len() < 3 {
        let m = crate::ws::next_json(&mut sock).await;
        match m["type"].as_str().unwrap() {
            "host_statuses" => {}
            "host_sample" => {
                assert_eq!(m["host_id"], ids[0], "only the subscribed host: {m}");
                let srv = m["sample"]["filesystems"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["mount_point"] == "/srv")
                    .cloned()
                    .unwrap();
                assert_eq!(
                    srv["size_bytes"].as_u64().unwrap(),
                    cluster.hosts[0].disk_mib * 1024 * 1024
                );
                full.push(m["sample"]["taken_at_ms"].as_i64().unwrap());
            }
            other => panic!("unexpected {other}: {m}"),
        }
    }
    assert!(full.windows(2).all(|w| w[0] < w[1]), "{full:?}");
    drop(sock);

    // Interface counters are the host's own: known traffic sent from here to host A shows in
    // A's eth0 as its namespace counts it, and not in B's.
    let eth0_rx = |h: &Value| {
        h["sample"]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "eth0")
            .map(|i| i["rx_bytes_total"].as_u64().unwrap())
            .expect("eth0")
    };
    let ns_rx = |i: usize| -> u64 {
        let out = cluster
            .exec_in_netns(i, "cat", &["/sys/class/net/eth0/statistics/rx_bytes"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let before_a = eth0_rx(&host(&t, &admin, ids[0]).await);
    let before_b = eth0_rx(&host(&t, &admin, ids[1]).await);
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let payload = [0u8; 1000];
    for _ in 0..2000 {
        sock.send_to(&payload, (cluster.hosts[0].addr, 9)).unwrap();
    }
    let expect = 2000 * 1000;
    let ns_after = ns_rx(0);
    assert!(
        ns_after - before_a >= expect,
        "the namespace itself counted {}",
        ns_after - before_a
    );
    let a = wait_host(&t, &admin, ids[0], "counting the traffic", |h| {
        eth0_rx(h) >= ns_after
    })
    .await;
    let reported = eth0_rx(&a);
    let ns_now = ns_rx(0);
    assert!(
        reported <= ns_now,
        "reported {reported} but the namespace counts only {ns_now}"
    );
    let b_now = eth0_rx(&host(&t, &admin, ids[1]).await);
    assert!(b_now - before_b < expect / 10, "host B counted A's traffic");

    // The controller keeps recent samples in memory, and one-minute rollups.
    let recent: Vec<Value> = admin
        .get(t.url(&format!("/api/v1/hosts/{}/samples", ids[0])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(recent.len() >= 2, "{}", recent.len());
    let times: Vec<i64> = recent
        .iter()
        .map(|s| s["taken_at_ms"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]));
    let hist: Vec<Value> = admin
        .get(t.url(&format!("/api/v1/hosts/{}/history", ids[0])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = hist.last().expect("the minute in progress");
    assert!(last["samples"].as_u64().unwrap() >= 1, "{last}");
    assert!(last["cpu_avg"].as_f64().unwrap() <= last["cpu_max"].as_f64().unwrap());
    assert!(last["rx_max"].as_f64().unwrap() > 0.0, "{last}");
    let r = admin
        .get(t.url(&format!(
            "/api/v1/hosts/{}/history?since=2030-01-01T00:00:00Z&until=2029-01-01T00:00:00Z",
            ids[0]
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "since");

    // Edit: bad values are refused with the field named; good ones apply without reconnecting.
    let patch = |body: Value| {
        admin
            .patch(t.url(&format!("/api/v1/hosts/{}", ids[0])))
            .json(&body)
            .send()
    };
    let r = patch(json!({"sample_interval_ms": 10})).await.unwrap();
    assert_eq!(
        expect_error(r, 422, "invalid").await["field"],
        "sample_interval_ms"
    );
    let r = patch(json!({"name": "beta"})).await.unwrap();
    assert_eq!(expect_error(r, 409, "conflict").await["field"], "name");
    let r = patch(json!({"name": "bad name!"})).await.unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "name");
    let r = patch(json!({"name": "alpha-1", "description": "rack 3", "sample_interval_ms": 250}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h: Value = r.json().await.unwrap();
    assert_eq!(
        (
            h["name"].as_str(),
            h["description"].as_str(),
            h["sample_interval_ms"].as_u64()
        ),
        (Some("alpha-1"), Some("rack 3"), Some(250))
    );
    // Samples now come four times as often.
    let first = host(&t, &admin, ids[0]).await["sample"]["taken_at_ms"]
        .as_i64()
        .unwrap();
    let mut stamps = vec![first];
    while stamps.len() < 6 {
        let h = wait_host(&t, &admin, ids[0], "sampling again", |h| {
            h["sample"]["taken_at_ms"].as_i64().unwrap() > *stamps.last().unwrap()
        })
        .await;
        stamps.push(h["sample"]["taken_at_ms"].as_i64().unwrap());
    }
    let gaps: Vec<i64> = stamps.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[1..].iter().any(|g| *g < 600),
        "still sampling slowly: {gaps:?}"
    );
    assert_eq!(host(&t, &admin, ids[0]).await["status"], "online");

    // Prometheus metrics: only with a token or session, with each host's own figures.
    let r = reqwest::get(t.url("/metrics")).await.unwrap();
    expect_error(r, 401, "unauthorized").await;
    let token = t.token(&admin, "prometheus", Some("viewer")).await;
    let r = Client::new()
        .get(t.url("/metrics"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    assert!(
        text.contains("serverware_host_up{host=\"alpha-1\",status=\"online\"} 1\n"),
        "{text}"
    );
    let srv_b = format!(
        "serverware_host_filesystem_size_bytes{{host=\"beta\",mountpoint=\"/srv\",device=\"hostdisk\",fstype=\"tmpfs\"}} {}\n",
        cluster.hosts[1].disk_mib * 1024 * 1024
    );
    assert!(text.contains(&srv_b), "{srv_b} missing from {text}");

    // Rollups past the retention are deleted when it is shortened.
    t.sql(&format!(
        "INSERT INTO host_rollups VALUES ({}, '2020-01-01 00:00:00', 60, 1,2,3,4,5,6,7,8,9,10,11,12,13,14)",
        ids[1]
    ));
    let old = |c: &Client| {
        c.get(t.url(&format!(
            "/api/v1/hosts/{}/history?since=2019-12-31T00:00:00Z&until=2020-01-02T00:00:00Z",
            ids[1]
        )))
        .send()
    };
    let v: Vec<Value> = old(&admin).await.unwrap().json().await.unwrap();
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(
        (v[0]["cpu_avg"].as_f64(), v[0]["cpu_max"].as_f64()),
        (Some(1.0), Some(2.0))
    );
    let r = admin
        .patch(t.url("/api/v1/settings"))
        .json(&json!({"rollup_retention_days": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(r, 422, "invalid").await["field"],
        "rollup_retention_days"
    );
    let r = admin
        .patch(t.url("/api/v1/settings"))
        .json(&json!({"rollup_retention_days": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Vec<Value> = old(&admin).await.unwrap().json().await.unwrap();
    assert!(v.is_empty(), "{v:?}");

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

    // Powered off: offline by itself; booted: online again by itself. A page that follows
    // `host-states` (every page does) hears each change and no host's figures.
    let mut states = crate::ws::connect(&t, Some(&cookie)).await.unwrap();
    assert_eq!(crate::ws::next_json(&mut states).await["type"], "hello");
    assert_eq!(
        crate::ws::subscribe(&mut states, &["host-states"]).await["topics"],
        json!(["host-states"])
    );
    cluster.power_off(0).unwrap();
    wait_host(&t, &admin, ids[0], "offline", |h| h["status"] == "offline").await;
    assert_eq!(host(&t, &admin, ids[1]).await["status"], "online");
    cluster.boot(0).unwrap();
    wait_host(&t, &admin, ids[0], "online again", |h| {
        h["status"] == "online"
    })
    .await;
    let mut heard = Vec::new();
    while heard.last().map(String::as_str) != Some("online") {
        let m = crate::ws::next_json(&mut states).await;
        assert_eq!(m["type"], "host_status", "only status changes: {m}");
        assert_eq!(m["host_id"], ids[0], "{m}");
        heard.push(m["status"].as_str().unwrap().to_string());
    }
    assert!(heard.iter().any(|s| s == "offline"), "{heard:?}");
    drop(states);

    // Reinstalled with a new host key: refused and flagged, until the operator pins the new key.
    cluster.replace_host_key(1).unwrap();
    wait_host(&t, &admin, ids[1], "flagged", |h| {
        h["status"] == "key_mismatch"
    })
    .await;
    let r = admin
        .patch(t.url(&format!("/api/v1/hosts/{}", ids[1])))
        .json(&json!({"host_key": probe["host_key"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 409, "conflict").await["field"], "host_key");
    let fresh: Value = admin
        .post(t.url("/api/v1/hosts/probe"))
        .json(&json!({"address": cluster.hosts[1].ssh_url()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = admin
        .patch(t.url(&format!("/api/v1/hosts/{}", ids[1])))
        .json(&json!({"host_key": fresh["host_key"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = wait_host(&t, &admin, ids[1], "online on the new key", |h| {
        h["status"] == "online"
    })
    .await;
    assert_eq!(h["fingerprint"], fresh["fingerprint"]);

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
    let actions = |kind: &'static str| {
        let admin = admin.clone();
        let url = t.url(&format!("/api/v1/events?action=host.&kind={kind}"));
        async move {
            let ev: Value = admin.get(url).send().await.unwrap().json().await.unwrap();
            ev["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["action"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    // What happened to the hosts: powered off and back, then off again for its new key and
    // back once that was pinned; each said once.
    assert_eq!(
        actions("system").await,
        vec!["host.online", "host.offline", "host.online", "host.offline"]
    );
    assert_eq!(
        actions("audit").await,
        vec![
            "host.delete",
            "host.rekey",
            "host.update",
            "host.create",
            "host.create"
        ]
    );
}

#[actix_web::test]
async fn a_host_that_ignores_the_controllers_key_is_refused_and_nothing_is_stored() {
    let mut cluster = Cluster::create(ClusterOptions {
        hosts: 1,
        ..Default::default()
    })
    .unwrap();
    // This host's sshd reads keys only from a file the controller does not write.
    let elsewhere = cluster.hosts[0].dir.join("other_keys");
    cluster.hosts[0]
        .set_authorized_keys_files(&elsewhere.to_string_lossy())
        .unwrap();
    cluster.power_off(0).unwrap();
    cluster.boot(0).unwrap();
    let t = TestController::start().await;
    let admin = t.admin().await;
    let r = add(&t, &admin, "ignores-keys", &cluster.hosts[0]).await;
    let e = expect_error(r, 422, "invalid").await;
    assert_eq!(e["field"], "address", "{e}");
    let msg = e["message"].as_str().unwrap();
    // It names where the host's sshd configuration says keys are read from (`sshd -T`).
    assert!(
        msg.contains("does not accept it") && msg.contains("(AuthorizedKeysFile)"),
        "{e}"
    );
    let hosts: Value = admin
        .get(t.url("/api/v1/hosts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hosts, json!([]), "nothing is stored");
}
