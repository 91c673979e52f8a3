//! Abuse resistance at the API: cross-site requests riding on the session cookie, tokens that
//! would outlive the token that made them, and user names sent to fill the database.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[actix_web::test]
async fn a_cross_site_change_with_the_cookie_is_refused_and_with_a_token_accepted() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let own = t.url("");
    let own = own.trim_end_matches('/');
    // Another site's page, as the browser labels it, with or without a JSON body.
    for (header, value) in [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let r = admin
            .post(t.url("/api/v1/tokens"))
            .header(header, value)
            .json(&json!({"name": "csrf"}))
            .send()
            .await
            .unwrap();
        let body = expect_error(r, 403, "forbidden").await;
        assert!(
            body["message"].as_str().unwrap().contains("API token"),
            "{body}"
        );
        // A request without a body is refused the same way.
        let r = admin
            .post(t.url("/api/v1/auth/logout"))
            .header(header, value)
            .send()
            .await
            .unwrap();
        expect_error(r, 403, "forbidden").await;
    }
    // Reading is fine from anywhere the cookie goes.
    let r = admin
        .get(t.url("/api/v1/users"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The controller's own pages, by either header.
    let r = admin
        .post(t.url("/api/v1/tokens"))
        .header("origin", own)
        .json(&json!({"name": "same-origin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let secret = r.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let r = admin
        .post(t.url("/api/v1/tokens"))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"name": "same-origin-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A token is no ambient credential: the same cross-site request with it goes through.
    let r = t
        .anon()
        .post(t.url("/api/v1/tokens"))
        .bearer_auth(&secret)
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"name": "by-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // The live socket is opened only from the controller's own pages too.
    let r = admin
        .get(t.url("/api/v1/events"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

async fn create_token(t: &TestController, bearer: &str, body: Value) -> Value {
    let r = t
        .anon()
        .post(t.url("/api/v1/tokens"))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    r.json().await.unwrap()
}

#[actix_web::test]
async fn a_token_never_outlives_or_outranks_the_token_that_made_it() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let r = admin
        .post(t.url("/api/v1/tokens"))
        .json(&json!({"name": "parent", "role": "operator", "expires_in_days": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let parent: Value = r.json().await.unwrap();
    let parent_secret = parent["secret"].as_str().unwrap().to_string();
    let parent_expiry = parent["token"]["expires_at"].as_str().unwrap().to_string();
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();

    // Asking for longer, or for no expiry, gives the parent's expiry.
    for ask in [
        json!({"name": "longer", "expires_in_days": 30}),
        json!({"name": "forever"}),
    ] {
        let child = create_token(&t, &parent_secret, ask).await;
        let exp = child["token"]["expires_at"]
            .as_str()
            .unwrap_or_else(|| panic!("a child token without expiry: {child}"));
        assert!(
            parse(exp) <= parse(&parent_expiry),
            "{exp} > {parent_expiry}"
        );
    }
    // Asking for shorter is granted.
    let short = create_token(
        &t,
        &parent_secret,
        json!({"name": "short", "expires_in_days": 1}),
    )
    .await;
    assert!(parse(short["token"]["expires_at"].as_str().unwrap()) < parse(&parent_expiry));
    // No role above the parent's.
    let r = t
        .anon()
        .post(t.url("/api/v1/tokens"))
        .bearer_auth(&parent_secret)
        .json(&json!({"name": "admin-child", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "role");

    // Revoking the parent ends its children, and theirs.
    let child = create_token(&t, &parent_secret, json!({"name": "child"})).await;
    let child_secret = child["secret"].as_str().unwrap().to_string();
    let grandchild = create_token(&t, &child_secret, json!({"name": "grandchild"})).await;
    let grandchild_secret = grandchild["secret"].as_str().unwrap().to_string();
    let r = admin
        .delete(t.url(&format!(
            "/api/v1/tokens/{}",
            parent["token"]["id"].as_i64().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for secret in [&parent_secret, &child_secret, &grandchild_secret] {
        let r = t
            .anon()
            .get(t.url("/api/v1/vpses"))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
}

#[actix_web::test]
async fn huge_user_names_are_answered_4xx_and_never_stored() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let marker = "zq";
    // 10 MB: refused before anything reads it.
    let huge = marker.repeat(5 << 20);
    let r = t
        .anon()
        .post(t.url("/api/v1/auth/login"))
        .json(&json!({"username": huge, "password": "whatever-it-is"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    // 500 kB fits the body limit: a plain failed login, kept as a short prefix.
    let big = marker.repeat(250 << 10);
    let r = t
        .anon()
        .post(t.url("/api/v1/auth/login"))
        .json(&json!({"username": big, "password": "whatever-it-is"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
    let events: Value = admin
        .get(t.url("/api/v1/events?action=auth.login_failed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let stored = serde_json::to_string(&events[0]).unwrap();
    assert!(stored.len() < 2000, "{} bytes stored", stored.len());
    assert!(stored.contains("characters)"), "{stored}");
}
