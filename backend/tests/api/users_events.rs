use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn user_id(t: &TestController, admin: &reqwest::Client, name: &str) -> i64 {
    let users: Value = admin
        .get(t.url("/api/v1/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == name)
        .unwrap()["id"]
        .as_i64()
        .unwrap()
}

#[actix_web::test]
async fn the_last_admin_stays_and_nobody_deletes_themselves() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let me = user_id(&t, &admin, "admin").await;
    for payload in [json!({"role": "viewer"}), json!({"disabled": true})] {
        let r = admin
            .patch(t.url(&format!("/api/v1/users/{me}")))
            .json(&payload)
            .send()
            .await
            .unwrap();
        expect_error(r, 409, "conflict").await;
    }
    let r = admin
        .delete(t.url(&format!("/api/v1/users/{me}")))
        .send()
        .await
        .unwrap();
    expect_error(r, 409, "conflict").await;
    // With a second admin, the first may step down.
    t.user_with_role(&admin, "second", "admin").await;
    let r = admin
        .patch(t.url(&format!("/api/v1/users/{me}")))
        .json(&json!({"role": "operator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["role"], "operator");
}

#[actix_web::test]
async fn disabling_or_deleting_a_user_ends_their_access() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let vera = t.user_with_role(&admin, "vera", "viewer").await;
    let token = t.token(&vera, "mine", None).await;
    let id = user_id(&t, &admin, "vera").await;
    let r = admin
        .patch(t.url(&format!("/api/v1/users/{id}")))
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    expect_error(
        vera.get(t.url("/api/v1/auth/me")).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        t.anon()
            .get(t.url("/api/v1/auth/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let r = t
        .anon()
        .post(t.url("/api/v1/auth/login"))
        .json(&json!({"username": "vera", "password": "vera-password-123"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;

    let r = admin
        .delete(t.url(&format!("/api/v1/users/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    expect_error(
        admin
            .get(t.url(&format!("/api/v1/users/{id}")))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    let ev: Value = admin
        .get(t.url(&format!("/api/v1/events?target_type=user&target_id={id}")))
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
    assert!(
        actions.contains(&"user.create")
            && actions.contains(&"user.update")
            && actions.contains(&"user.delete"),
        "{actions:?}"
    );
}

#[actix_web::test]
async fn events_are_filtered_and_paged_newest_first() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    for i in 0..5 {
        t.token(&admin, &format!("t{i}"), None).await;
    }
    let page1: Value = admin
        .get(t.url("/api/v1/events?action=token.create&limit=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ev1 = page1["events"].as_array().unwrap();
    assert_eq!(ev1.len(), 2);
    assert_eq!(ev1[0]["details"]["name"], "t4");
    let before = page1["next_before"].as_i64().expect("a next page");
    let page2: Value = admin
        .get(t.url(&format!(
            "/api/v1/events?action=token.create&limit=2&before={before}"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page2["events"][0]["details"]["name"], "t2");
    let page3: Value = admin
        .get(t.url(&format!(
            "/api/v1/events?action=token.create&limit=2&before={}",
            page2["next_before"]
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page3["events"].as_array().unwrap().len(), 1);
    assert!(page3["next_before"].is_null());

    let future: Value = admin
        .get(t.url("/api/v1/events?since=2999-01-01T00:00:00Z"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(future["events"].as_array().unwrap().len(), 0);
    let past: Value = admin
        .get(t.url("/api/v1/events?until=2000-01-01T00:00:00Z"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(past["events"].as_array().unwrap().len(), 0);
    let sys: Value = admin
        .get(t.url("/api/v1/events?actor=system:bootstrap"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sys["events"][0]["action"], "user.create");
}

#[actix_web::test]
async fn events_and_finished_tasks_past_the_history_retention_are_deleted() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    t.sql(
        "INSERT INTO events (kind, severity, actor, action, message, details, created_at) \
         VALUES ('audit', 'info', 'admin', 'old.thing', 'long ago', '{}', '2020-01-01 00:00:00');
         INSERT INTO tasks (kind, status, created_by, created_at, started_at, finished_at) \
         VALUES ('vps.start', 'succeeded', 'admin', '2020-01-01 00:00:00', '2020-01-01 00:00:00', '2020-01-01 00:00:01');
         INSERT INTO tasks (kind, status, created_by, created_at, started_at) \
         VALUES ('vps.move', 'running', 'admin', '2020-01-01 00:00:00', '2020-01-01 00:00:00');",
    );
    let count = |what: &'static str| {
        let (t, admin) = (&t, &admin);
        async move {
            let path = match what {
                "events" => "/api/v1/events?action=old.thing",
                _ => "/api/v1/tasks?limit=100",
            };
            let v: Value = admin
                .get(t.url(path))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let list = v.get("events").unwrap_or(&v).clone();
            list.as_array().unwrap().len()
        }
    };
    assert_eq!((count("events").await, count("tasks").await), (1, 2));
    let r = admin
        .patch(t.url("/api/v1/settings"))
        .json(&json!({"history_retention_days": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(r, 422, "invalid").await["field"],
        "history_retention_days"
    );
    let r = admin
        .patch(t.url("/api/v1/settings"))
        .json(&json!({"history_retention_days": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["history_retention_days"],
        30
    );
    // The old event and the old finished task are gone; a running task is never pruned.
    assert_eq!(count("events").await, 0);
    let tasks: Value = admin
        .get(t.url("/api/v1/tasks?limit=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["running"], "{tasks}");
}

#[actix_web::test]
async fn admins_see_every_background_loop_of_the_supervisor() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let loops = loop {
        let v: Value = admin
            .get(t.url("/api/v1/system/loops"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Each loop has run once (the first run starts at once).
        let ran = v
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["interval_ms"] != 0)
            .all(|l| l["runs"].as_u64().unwrap() >= 1);
        if ran {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "{v:#}");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = loops
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "recovery",
            "reconcile",
            "retention",
            "duplo",
            "duplo-prune",
            "netmon",
            "drills",
            "alert-watch",
            "alert-send",
            "backup",
            "templates",
            "host connections"
        ],
        "{loops:#}"
    );
    for l in loops.as_array().unwrap() {
        assert_eq!(l["failures"], 0, "{l}");
    }
    let operator = t.user_with_role(&admin, "opal", "operator").await;
    let r = operator
        .get(t.url("/api/v1/system/loops"))
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "forbidden").await;
}
