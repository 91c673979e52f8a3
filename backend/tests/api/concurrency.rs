//! Many requests at once: one operation per VPS, placement never past a host's declared
//! capacity, and many transfers to one host within its sshd's session limit (the default
//! `MaxSessions`). Real test hosts and real LXC.

use crate::support::*;
use crate::vps_lifecycle::{get, post, site, task_done, task_end, MIB};
use futures_util::future::join_all;
use serde_json::{json, Value};

/// The tasks' running times do not overlap.
fn one_at_a_time(tasks: &[Value]) {
    let mut spans: Vec<(String, String)> = tasks
        .iter()
        .map(|t| {
            (
                t["started_at"].as_str().unwrap().to_string(),
                t["finished_at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        let (a_end, b_start) = (
            chrono::DateTime::parse_from_rfc3339(&w[0].1).unwrap(),
            chrono::DateTime::parse_from_rfc3339(&w[1].0).unwrap(),
        );
        assert!(
            a_end <= b_start,
            "two tasks ran at once on one VPS: {spans:?}"
        );
    }
}

#[actix_web::test]
async fn twenty_requests_at_once_on_one_vps_run_one_at_a_time() {
    let (cluster, t, admin, hosts, tpl) = site(2).await;
    let net = format!("10.77.{}", cluster.subnet);
    let ip = format!("{net}.70");
    let r = post(&admin, t.url("/api/v1/vpses"), json!({"name": "busy-1", "template_id": tpl, "host_id": hosts[0], "ipv4": ip, "memory_limit_bytes": 64 * MIB, "start": true})).await;
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let id: i64 = done["target_id"].as_str().unwrap().parse().unwrap();
    let target = hosts[1];
    let requests = (0..20).map(|i| {
        let (admin, t) = (&admin, &t);
        async move {
            let path = format!("/api/v1/vpses/{id}");
            let r = match i % 5 {
                0 => post(admin, t.url(&format!("{path}/start")), json!({})).await,
                1 => post(admin, t.url(&format!("{path}/stop")), json!({})).await,
                2 => {
                    post(
                        admin,
                        t.url(&format!("{path}/move")),
                        json!({"host_id": target}),
                    )
                    .await
                }
                3 => admin
                    .patch(t.url(&path))
                    .json(&json!({"memory_limit_bytes": (64 + i) * MIB}))
                    .send()
                    .await
                    .unwrap(),
                _ => admin.delete(t.url(&path)).send().await.unwrap(),
            };
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    });
    let answers = join_all(requests).await;
    let mut tasks = Vec::new();
    for (status, body) in &answers {
        match status {
            202 => tasks.push(body.clone()),
            200 => {
                if body["task"].is_object() {
                    tasks.push(body["task"].clone())
                }
            }
            409 => assert!(
                body["message"].as_str().unwrap().contains("VPS busy-1"),
                "{body}"
            ),
            _ => panic!("unexpected answer {status}: {body}"),
        }
    }
    assert!(!tasks.is_empty(), "no request was accepted: {answers:?}");
    let mut ended = Vec::new();
    for task in &tasks {
        ended.push(task_end(&t, &admin, task).await);
    }
    one_at_a_time(&ended);
    // Consistent: gone everywhere, or recorded on one host with no operation left on it.
    let listed = get(&t, &admin, "/api/v1/vpses").await;
    if let Some(v) = listed.as_array().unwrap().iter().find(|v| v["id"] == id) {
        assert!(v["busy_task"].is_null(), "{v}");
        assert!(
            ["running", "stopped"].contains(&v["status"].as_str().unwrap()),
            "{v}"
        );
    }
}

#[actix_web::test]
async fn twenty_creates_at_once_on_one_host_all_succeed() {
    let (cluster, t, admin, hosts, tpl) = site(1).await;
    let net = format!("10.77.{}", cluster.subnet);
    let host = hosts[0];
    // Two transfers at a time on this host: the others wait their turn, and say so.
    let r = admin
        .patch(t.url(&format!("/api/v1/hosts/{host}")))
        .json(&json!({"max_transfers": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(r, 422, "invalid").await["field"],
        "max_transfers"
    );
    let r = admin
        .patch(t.url(&format!("/api/v1/hosts/{host}")))
        .json(&json!({"max_transfers": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["max_transfers"], 2);
    let creates = (0..20).map(|i| {
        let (admin, t) = (&admin, &t);
        let ip = format!("{net}.{}", 100 + i);
        async move {
            let r = post(admin, t.url("/api/v1/vpses"), json!({"name": format!("many-{i}"), "template_id": tpl, "host_id": host, "ipv4": ip, "memory_limit_bytes": 32 * MIB, "start": false})).await;
            assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
            task_done(t, admin, &r.json::<Value>().await.unwrap()).await
        }
    });
    let done = join_all(creates).await;
    assert_eq!(done.len(), 20);
    let waited = done
        .iter()
        .filter(|t| {
            t["log"]
                .to_string()
                .contains("already runs 2 transfers (its limit)")
        })
        .count();
    assert!(waited > 0, "no create waited for a transfer slot");
    let listed = get(&t, &admin, "/api/v1/vpses").await;
    assert_eq!(listed.as_array().unwrap().len(), 20, "{listed}");
    let deletes = listed.as_array().unwrap().iter().map(|v| {
        let (admin, t) = (&admin, &t);
        let id = v["id"].as_i64().unwrap();
        async move {
            let r = admin
                .delete(t.url(&format!("/api/v1/vpses/{id}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            task_done(t, admin, &r.json::<Value>().await.unwrap()).await
        }
    });
    join_all(deletes).await;
}

#[actix_web::test]
async fn creates_and_moves_at_once_never_overfill_a_host() {
    let (cluster, t, admin, hosts, tpl) = site(2).await;
    let net = format!("10.77.{}", cluster.subnet);
    let cap = 256 * MIB;
    for h in &hosts {
        let r = admin
            .patch(t.url(&format!("/api/v1/hosts/{h}")))
            .json(&json!({"capacity_memory_bytes": cap}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    // One VPS on each host, then at once: both moved to the other host, and eight creates
    // placed automatically. Room for eight VPSes of 64 MiB in all: some must be refused.
    let mut placed = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        // Set-up, not what is tested: a host whose connection is re-made on a busy machine
        // is waited for.
        let body = json!({"name": format!("mv-{i}"), "template_id": tpl, "host_id": h, "ipv4": format!("{net}.{}", 80 + i), "memory_limit_bytes": 64 * MIB, "start": false});
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let r = loop {
            crate::hosts_api::wait_host(&t, &admin, *h, "online", |v| v["status"] == "online")
                .await;
            let r = post(&admin, t.url("/api/v1/vpses"), body.clone()).await;
            if r.status() != 409 || std::time::Instant::now() > deadline {
                break r;
            }
            let text = r.text().await.unwrap();
            assert!(text.contains("is not online"), "{text}");
        };
        assert_eq!(r.status(), 202);
        let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
        placed.push(done["target_id"].as_str().unwrap().parse::<i64>().unwrap());
    }
    let moves = placed.iter().enumerate().map(|(i, id)| {
        let (admin, t) = (&admin, &t);
        let to = hosts[1 - i];
        async move {
            post(
                admin,
                t.url(&format!("/api/v1/vpses/{id}/move")),
                json!({"host_id": to}),
            )
            .await
        }
    });
    let creates = (0..8).map(|i| {
        let (admin, t) = (&admin, &t);
        let ip = format!("{net}.{}", 140 + i);
        async move {
            post(admin, t.url("/api/v1/vpses"), json!({"name": format!("auto-{i}"), "template_id": tpl, "ipv4": ip, "memory_limit_bytes": 64 * MIB, "start": false})).await
        }
    });
    let (moved, created) = futures_util::join!(join_all(moves), join_all(creates));
    let mut accepted = 0;
    for r in moved.into_iter().chain(created) {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        match status {
            202 => {
                task_end(&t, &admin, &body).await;
                accepted += 1;
            }
            409 => {}
            _ => panic!("unexpected answer {status}: {body}"),
        }
    }
    assert!(accepted >= 2, "too few requests were accepted");
    let listed = get(&t, &admin, "/api/v1/vpses").await;
    for h in &hosts {
        let used: u64 = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["host_id"].as_i64() == Some(*h))
            .map(|v| v["memory_limit_bytes"].as_u64().unwrap())
            .sum();
        assert!(
            used <= cap,
            "host {h} holds {used} bytes of VPSes, more than its {cap}: {listed:#}"
        );
    }
}
