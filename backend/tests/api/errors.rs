use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[actix_web::test]
async fn every_error_status_has_the_one_json_shape() {
    let t = TestController::start().await;
    let admin = t.admin().await;

    // 400: malformed JSON, wrong types, missing fields, bad query, bad path.
    let r = admin
        .post(t.url("/api/v1/users"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request").await;
    let r = admin
        .post(t.url("/api/v1/users"))
        .json(&json!({"username": 5, "password": [], "role": "admin"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request").await;
    let r = admin
        .post(t.url("/api/v1/users"))
        .json(&json!({"username": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request").await;
    let r = admin
        .post(t.url("/api/v1/users"))
        .json(&json!({"username": "dave", "password": "password-123", "role": "root"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request").await;
    let r = admin
        .get(t.url("/api/v1/events?limit=lots"))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request").await;
    let r = admin
        .get(t.url("/api/v1/events?colour=blue"))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request").await;
    let r = admin.get(t.url("/api/v1/users/abc")).send().await.unwrap();
    expect_error(r, 400, "bad_request").await;
    let r = admin
        .post(t.url("/api/v1/auth/login"))
        .body("username=admin")
        .send()
        .await
        .unwrap();
    expect_error(r, 415, "unsupported_media_type").await;

    // 401 and 403 are covered route by route elsewhere; 404:
    let r = admin
        .get(t.url("/api/v1/users/999999"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;
    let r = admin
        .delete(t.url("/api/v1/tokens/999999"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;

    // 409: a duplicate name.
    let r = admin
        .post(t.url("/api/v1/users"))
        .json(&json!({"username": "admin", "password": "password-123", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    let body = expect_error(r, 409, "conflict").await;
    assert_eq!(body["field"], "username");

    // 422: fields that fail validation name the field.
    for (payload, field) in [
        (
            json!({"username": "Bad Name", "password": "password-123", "role": "viewer"}),
            "username",
        ),
        (
            json!({"username": "dave", "password": "short", "role": "viewer"}),
            "password",
        ),
    ] {
        let r = admin
            .post(t.url("/api/v1/users"))
            .json(&payload)
            .send()
            .await
            .unwrap();
        let body = expect_error(r, 422, "invalid").await;
        assert_eq!(body["field"], field);
    }
    let r = admin
        .post(t.url("/api/v1/tokens"))
        .json(&json!({"name": "x", "expires_in_days": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(r, 422, "invalid").await["field"],
        "expires_in_days"
    );
    let r = admin
        .patch(t.url("/api/v1/settings"))
        .json(&json!({"site_name": "   "}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "site_name");
    let r = admin
        .get(t.url("/api/v1/events?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "limit");

    // Nothing was half-created by the refused requests.
    let users: Value = admin
        .get(t.url("/api/v1/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
}

#[actix_web::test]
async fn an_internal_error_is_500_and_leaks_nothing() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    // Break the database behind the controller's back.
    t.sql("DROP TABLE settings");
    let r = admin.get(t.url("/api/v1/settings")).send().await.unwrap();
    let body = expect_error(r, 500, "internal").await;
    let text = body.to_string().to_lowercase();
    for leak in ["settings", "table", "sql", "relation", "diesel"] {
        assert!(!text.contains(leak), "the answer leaks '{leak}': {text}");
    }
    // The rest of the API keeps working.
    assert_eq!(
        admin
            .get(t.url("/api/v1/users"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[actix_web::test]
async fn an_oversized_body_is_refused() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let big = "x".repeat(2 << 20);
    let r = admin
        .post(t.url("/api/v1/tokens"))
        .json(&json!({"name": big}))
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "payload_too_large").await;
}
