use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[actix_web::test]
async fn token_create_use_list_and_revoke() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let r = admin
        .post(t.url("/api/v1/tokens"))
        .json(&json!({"name": "ci", "expires_in_days": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_string();
    let id = created["token"]["id"].as_i64().unwrap();
    assert!(secret.starts_with("swt_"));
    assert!(secret.starts_with(created["token"]["prefix"].as_str().unwrap()));
    assert!(created["token"]["expires_at"].is_string());

    // Used with a real request.
    let anon = t.anon();
    let r = anon
        .get(t.url("/api/v1/users"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Listed without its secret; the secret is not stored in clear either.
    let list = admin
        .get(t.url("/api/v1/tokens"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains("\"ci\"") && !list.contains(&secret), "{list}");
    let listed: Value = serde_json::from_str(&list).unwrap();
    assert!(
        listed[0]["last_used_at"].is_string(),
        "use is recorded: {listed}"
    );

    // A second token with the same name is a conflict on the name field.
    let r = admin
        .post(t.url("/api/v1/tokens"))
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    let body = expect_error(r, 409, "conflict").await;
    assert_eq!(body["field"], "name");

    // Revoked: it stops working at once; revoking again is a conflict.
    let r = admin
        .delete(t.url(&format!("/api/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = anon
        .get(t.url("/api/v1/users"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
    let r = admin
        .delete(t.url(&format!("/api/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    expect_error(r, 409, "conflict").await;
    let active: Value = admin
        .get(t.url("/api/v1/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(active.as_array().unwrap().len(), 0);
    let all: Value = admin
        .get(t.url("/api/v1/tokens?include_inactive=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(all[0]["revoked_at"].is_string());
}

#[actix_web::test]
async fn garbage_and_expired_tokens_are_refused() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let anon = t.anon();
    for bad in ["swt_not-a-real-token", "hello", ""] {
        let r = anon
            .get(t.url("/api/v1/users"))
            .header("authorization", format!("Bearer {bad}"))
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "unauthorized").await;
    }
    let r = anon
        .get(t.url("/api/v1/users"))
        .header("authorization", "Basic YWRtaW46eA==")
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
    let secret = t.token(&admin, "short-lived", None).await;
    t.sql("UPDATE api_tokens SET expires_at = '2000-01-01 00:00:00'");
    let r = anon
        .get(t.url("/api/v1/users"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
}

#[actix_web::test]
async fn others_tokens_are_hidden_from_users_and_managed_by_admins() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let alice = t.user_with_role(&admin, "alice", "operator").await;
    let bob = t.user_with_role(&admin, "bob", "operator").await;
    let secret = t.token(&alice, "alice-ci", None).await;
    let list: Value = alice
        .get(t.url("/api/v1/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list[0]["id"].as_i64().unwrap();

    let bobs: Value = bob
        .get(t.url("/api/v1/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bobs.as_array().unwrap().len(), 0);
    let r = bob
        .delete(t.url(&format!("/api/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;

    let all: Value = admin
        .get(t.url("/api/v1/tokens?user=all"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["username"] == "alice"));
    let r = admin
        .get(t.url("/api/v1/tokens?user=abc"))
        .send()
        .await
        .unwrap();
    expect_error(r, 422, "invalid").await;
    let r = admin
        .delete(t.url(&format!("/api/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = t
        .anon()
        .get(t.url("/api/v1/auth/me"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;

    // The audit log says who revoked whose token.
    let ev: Value = admin
        .get(t.url("/api/v1/events?action=token.revoke"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let e = &ev["events"][0];
    assert_eq!(e["actor"], "admin");
    assert_eq!(e["details"]["owner"], "alice");
}

#[actix_web::test]
async fn the_audit_listing_shows_who_created_a_token() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let ops = t.user_with_role(&admin, "ops", "operator").await;
    t.token(&ops, "deploy-bot", Some("viewer")).await;
    // A change made with a token is attributed to its user and names the token.
    let admin_token = t.token(&admin, "automation", None).await;
    let r = t
        .anon()
        .post(t.url("/api/v1/tokens"))
        .bearer_auth(&admin_token)
        .json(&json!({"name": "nested"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let ev: Value = admin
        .get(t.url("/api/v1/events?kind=audit&action=token.create&actor=ops"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = ev["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{ev}");
    assert_eq!(events[0]["actor"], "ops");
    assert_eq!(events[0]["target_type"], "token");
    assert_eq!(events[0]["details"]["name"], "deploy-bot");
    assert_eq!(events[0]["details"]["role"], "viewer");
    assert!(events[0]["created_at"].is_string());

    let ev: Value = admin
        .get(t.url("/api/v1/events?action=token.&actor=admin"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nested = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["details"]["name"] == "nested")
        .expect("nested token event");
    assert_eq!(nested["details"]["via_token"], "automation");
}
