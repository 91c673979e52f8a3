use crate::support::*;
use reqwest::{Client, StatusCode};
use serde_json::json;

async fn create_user(t: &TestController, c: &Client, name: &str) -> reqwest::Response {
    c.post(t.url("/api/v1/users"))
        .json(&json!({"username": name, "password": "password-of-someone", "role": "viewer"}))
        .send()
        .await
        .unwrap()
}

async fn rename_site(t: &TestController, c: &Client) -> reqwest::Response {
    c.patch(t.url("/api/v1/settings"))
        .json(&json!({"site_name": "Lab"}))
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn each_role_is_allowed_and_refused_as_documented() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let viewer = t.user_with_role(&admin, "vera", "viewer").await;
    let operator = t.user_with_role(&admin, "otto", "operator").await;

    // Everyone reads.
    for c in [&viewer, &operator, &admin] {
        for path in [
            "/api/v1/users",
            "/api/v1/events",
            "/api/v1/settings",
            "/api/v1/tokens",
            "/api/v1/openapi.json",
        ] {
            let r = c.get(t.url(path)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
        }
    }
    // Only admins manage users and settings.
    for c in [&viewer, &operator] {
        expect_error(create_user(&t, c, "mallory").await, 403, "forbidden").await;
        expect_error(rename_site(&t, c).await, 403, "forbidden").await;
        let r = c.delete(t.url("/api/v1/users/1")).send().await.unwrap();
        expect_error(r, 403, "forbidden").await;
        let r = c
            .get(t.url("/api/v1/tokens?user=all"))
            .send()
            .await
            .unwrap();
        expect_error(r, 403, "forbidden").await;
    }
    assert_eq!(
        create_user(&t, &admin, "carol").await.status(),
        StatusCode::CREATED
    );
    let r = rename_site(&t, &admin).await;
    assert_eq!(r.status(), StatusCode::OK);
    let s: serde_json::Value = viewer
        .get(t.url("/api/v1/settings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["site_name"], "Lab");
}

#[actix_web::test]
async fn a_viewer_token_gets_403_on_a_mutating_route() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let viewer = t.user_with_role(&admin, "vera", "viewer").await;
    let secret = t.token(&viewer, "monitoring", None).await;
    let bearer = t.anon();
    let r = bearer
        .post(t.url("/api/v1/users"))
        .bearer_auth(&secret)
        .json(&json!({"username": "x", "password": "password-of-someone", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "forbidden").await;
    let r = bearer
        .patch(t.url("/api/v1/settings"))
        .bearer_auth(&secret)
        .json(&json!({"site_name": "X"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "forbidden").await;
    // It still reads.
    let r = bearer
        .get(t.url("/api/v1/events"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[actix_web::test]
async fn a_token_carries_a_lower_role_than_its_user_and_never_a_higher_one() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let low = t.token(&admin, "read-only", Some("viewer")).await;
    let c = t.anon();
    let me: serde_json::Value = c
        .get(t.url("/api/v1/auth/me"))
        .bearer_auth(&low)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["effective_role"], "viewer");
    assert_eq!(me["user"]["role"], "admin");
    assert_eq!(me["auth_method"], "token");
    expect_error(rename_site(&t, &c_with(&low)).await, 403, "forbidden").await;

    let operator = t.user_with_role(&admin, "otto", "operator").await;
    let r = operator
        .post(t.url("/api/v1/tokens"))
        .json(&json!({"name": "escalate", "role": "admin"}))
        .send()
        .await
        .unwrap();
    let body = expect_error(r, 422, "invalid").await;
    assert_eq!(body["field"], "role");

    // Demoting a user limits their existing tokens at once.
    let op_token = t.token(&operator, "deploy", None).await;
    let users: serde_json::Value = admin
        .get(t.url("/api/v1/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let otto = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "otto")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = admin
        .patch(t.url(&format!("/api/v1/users/{otto}")))
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: serde_json::Value = c
        .get(t.url("/api/v1/auth/me"))
        .bearer_auth(&op_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["effective_role"], "viewer");
}

/// A client that sends `token` on every request.
fn c_with(token: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    crate::support::client()
        .default_headers(headers)
        .build()
        .unwrap()
}
