use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[actix_web::test]
async fn health_is_public_and_names_the_database() {
    let t = TestController::start().await;
    let r = t.anon().get(t.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(
        body["database"],
        if t.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    );
}

#[actix_web::test]
async fn every_documented_route_but_health_and_login_needs_authentication() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let doc: Value = admin
        .get(t.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    // The document lists the routes the controller serves.
    for expected in [
        "/api/v1/health",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/auth/me",
        "/api/v1/auth/password",
        "/api/v1/users",
        "/api/v1/users/{id}",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/events",
        "/api/v1/settings",
        "/api/v1/openapi.json",
    ] {
        assert!(
            paths.contains_key(expected),
            "{expected} missing from the OpenAPI document"
        );
    }
    let anon = t.anon();
    let mut checked = 0;
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let url = t.url(&path.replace("{id}", "1"));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = anon.request(m, &url).json(&json!({})).send().await.unwrap();
            let public = path == "/api/v1/health" || path == "/api/v1/auth/login";
            if public {
                assert_ne!(
                    r.status(),
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} must be public"
                );
            } else {
                expect_error(r, 401, "unauthorized").await;
                checked += 1;
            }
        }
    }
    assert!(checked >= 14, "only {checked} routes checked");
    // Unknown routes: 401 for strangers, 404 for users.
    expect_error(
        anon.get(t.url("/api/v1/nothing-here"))
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        admin
            .get(t.url("/api/v1/nothing-here"))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
}

#[actix_web::test]
async fn login_sets_a_strict_httponly_cookie_and_logout_ends_the_session() {
    let t = TestController::start().await;
    let c = t.anon();
    let r = c
        .post(t.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("serverware_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP must not mark the cookie Secure: {cookie}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["username"], "admin");
    assert_eq!(body["effective_role"], "admin");
    assert!(body["user"].get("password_hash").is_none());

    let me: Value = c
        .get(t.url("/api/v1/auth/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["auth_method"], "session");

    // Replaying the cookie after logout fails: the session ended on the server.
    let raw = cookie.split(';').next().unwrap().to_string();
    let r = c.post(t.url("/api/v1/auth/logout")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let replay = t
        .anon()
        .get(t.url("/api/v1/auth/me"))
        .header("cookie", raw)
        .send()
        .await
        .unwrap();
    expect_error(replay, 401, "unauthorized").await;
}

#[actix_web::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let t = TestController::start().await;
    let c = t.anon();
    for (user, pw) in [
        ("admin", "not-the-password"),
        ("nobody", "whatever-password"),
    ] {
        let r = c
            .post(t.url("/api/v1/auth/login"))
            .json(&json!({"username": user, "password": pw}))
            .send()
            .await
            .unwrap();
        let body = expect_error(r, 401, "unauthorized").await;
        assert_eq!(body["message"], "wrong user name or password");
    }
    // The failure is audited.
    let admin = t.admin().await;
    let ev: Value = admin
        .get(t.url("/api/v1/events?action=auth.login_failed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ev["events"].as_array().unwrap().len(), 2);
}

#[actix_web::test]
async fn repeated_failures_back_off_with_429_and_retry_after() {
    let t = TestController::start().await;
    let c = t.anon();
    let attempt = |user: &'static str, pw: &'static str| {
        let c = c.clone();
        let url = t.url("/api/v1/auth/login");
        async move {
            c.post(url)
                .json(&json!({"username": user, "password": pw}))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..5 {
        expect_error(
            attempt("admin", "wrong-password!").await,
            401,
            "unauthorized",
        )
        .await;
    }
    let r = attempt("admin", "wrong-password!").await;
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    expect_error(r, 429, "too_many_requests").await;
    // While locked, even the right password is refused...
    let r = attempt("admin", ADMIN_PW).await;
    expect_error(r, 429, "too_many_requests").await;
    // ...but another account from the same address still works (the address limit is higher).
    let r = attempt("someone-else", "wrong-password!").await;
    expect_error(r, 401, "unauthorized").await;
}

#[actix_web::test]
async fn a_session_ends_after_the_idle_timeout() {
    let t = TestController::start().await;
    let c = t.admin().await;
    assert_eq!(
        c.get(t.url("/api/v1/auth/me"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // Age the session past the 12 h default instead of waiting.
    t.sql("UPDATE sessions SET last_seen_at = '2000-01-01 00:00:00'");
    let r = c.get(t.url("/api/v1/auth/me")).send().await.unwrap();
    let body = expect_error(r, 401, "unauthorized").await;
    assert!(
        body["message"].as_str().unwrap().contains("session"),
        "{body}"
    );
}

#[actix_web::test]
async fn changing_ones_password_needs_the_current_one() {
    let t = TestController::start().await;
    let c = t.admin().await;
    let other = t.admin().await;
    let r = c
        .post(t.url("/api/v1/auth/password"))
        .json(&json!({"current_password": "nope-nope-nope", "new_password": "brand-new-password"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "forbidden").await;
    let r = c
        .post(t.url("/api/v1/auth/password"))
        .json(&json!({"current_password": ADMIN_PW, "new_password": "short"}))
        .send()
        .await
        .unwrap();
    let body = expect_error(r, 422, "invalid").await;
    assert_eq!(body["field"], "new_password");
    let r = c
        .post(t.url("/api/v1/auth/password"))
        .json(&json!({"current_password": ADMIN_PW, "new_password": "brand-new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // This session stays, the other one ended, and the new password works.
    assert_eq!(
        c.get(t.url("/api/v1/auth/me"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    expect_error(
        other.get(t.url("/api/v1/auth/me")).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    t.login("admin", "brand-new-password").await;
}

#[actix_web::test]
async fn tls_marks_the_session_cookie_secure() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let t = TestController::start_with(|c| {
        c.tls = Some(serverware::config::TlsFiles {
            cert: cert_path.clone(),
            key: key_path.clone(),
        })
    })
    .await;
    assert!(t.base.starts_with("https://"), "{}", t.base);
    let c = crate::support::client()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = c
        .post(t.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}

#[actix_web::test]
async fn one_address_trying_many_accounts_is_slowed_down_too() {
    let t = TestController::start_with(|c| c.login.address_failures = 3).await;
    let c = t.anon();
    for user in ["alice", "bob", "carol"] {
        let r = c
            .post(t.url("/api/v1/auth/login"))
            .json(&json!({"username": user, "password": "guess-guess-guess"}))
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "unauthorized").await;
    }
    let r = c
        .post(t.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));
    expect_error(r, 429, "too_many_requests").await;
}
