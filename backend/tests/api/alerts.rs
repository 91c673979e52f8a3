//! Alerts: notification targets are checked, tested and keep their secret; a host powered off
//! sends exactly one signed webhook and one mail, and one of each when it is back. The receivers
//! are small servers in this test on loopback: an HTTP one and an SMTP one.

use crate::hosts_api::wait_host;
use crate::support::*;
use crate::vps_lifecycle::hosts_at;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use serverware_testhosts::{Cluster, ClusterOptions};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const SECRET: &str = "a-secret-of-enough-length";

/// A webhook receiver: every POST it got (headers lower-cased, body), answered 200.
#[derive(Clone, Default)]
pub(crate) struct Hooks(Arc<Mutex<Vec<Request>>>);

/// A request's headers (names lower-cased) and body.
type Request = (Vec<(String, String)>, Vec<u8>);

impl Hooks {
    pub(crate) async fn start() -> (Hooks, String) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let hooks = Hooks::default();
        let h = hooks.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let h = h.clone();
                tokio::spawn(async move {
                    let mut r = BufReader::new(s);
                    // Requests on one connection, one after another (keep-alive).
                    loop {
                        let mut headers = Vec::new();
                        let mut line = String::new();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        loop {
                            let mut l = String::new();
                            if r.read_line(&mut l).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let l = l.trim_end();
                            if l.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = l.split_once(':') {
                                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                            }
                        }
                        let len: usize = headers
                            .iter()
                            .find(|(k, _)| k == "content-length")
                            .and_then(|(_, v)| v.parse().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; len];
                        if r.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        h.0.lock().unwrap().push((headers, body));
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if r.get_mut().write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (hooks, url)
    }

    /// The messages, each checked to carry a valid signature.
    pub(crate) fn payloads(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(headers, body)| {
                let sig = headers
                    .iter()
                    .find(|(k, _)| k == "x-serverware-signature")
                    .map(|(_, v)| v.clone())
                    .expect("a signature header");
                let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(body);
                let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                assert_eq!(sig, want, "a wrong signature");
                serde_json::from_slice(body).unwrap()
            })
            .collect()
    }
}

async fn say(r: &mut BufReader<tokio::net::TcpStream>, t: &str) -> std::io::Result<()> {
    r.get_mut().write_all(t.as_bytes()).await
}

/// An SMTP server that takes every mail (no STARTTLS offered): each mail's text.
#[derive(Clone, Default)]
struct Mails(Arc<Mutex<Vec<String>>>);

impl Mails {
    async fn start() -> (Mails, u16) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let mails = Mails::default();
        let m = mails.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let m = m.clone();
                tokio::spawn(async move {
                    let mut r = BufReader::new(s);
                    if say(&mut r, "220 test ESMTP\r\n").await.is_err() {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        let answer = match verb.as_str() {
                            "EHLO" => "250-test\r\n250 8BITMIME\r\n",
                            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => "250 ok\r\n",
                            "DATA" => {
                                if say(&mut r, "354 go on\r\n").await.is_err() {
                                    return;
                                }
                                let mut text = String::new();
                                loop {
                                    let mut l = String::new();
                                    if r.read_line(&mut l).await.unwrap_or(0) == 0 {
                                        return;
                                    }
                                    if l == ".\r\n" {
                                        break;
                                    }
                                    text.push_str(&l);
                                }
                                m.0.lock().unwrap().push(text);
                                "250 queued\r\n"
                            }
                            "QUIT" => {
                                let _ = say(&mut r, "221 bye\r\n").await;
                                return;
                            }
                            _ => "502 not here\r\n",
                        };
                        if say(&mut r, answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (mails, port)
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

pub(crate) async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited 180 s for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn webhook(url: &str, rules: &[&str]) -> Value {
    json!({
        "name": "ops-hook",
        "channel": { "kind": "webhook", "url": url },
        "secret": SECRET,
        "rules": rules,
    })
}

fn mail(port: u16, security: &str, rules: &[&str]) -> Value {
    json!({
        "name": format!("ops-mail-{security}"),
        "channel": {
            "kind": "email", "smtp_host": "127.0.0.1", "smtp_port": port,
            "security": security, "from": "serverware@example.com",
            "to": ["oncall@example.com", "boss@example.com"],
        },
        "rules": rules,
    })
}

async fn send_test(t: &TestController, c: &reqwest::Client, id: i64) -> Value {
    let r = c
        .post(t.url(&format!("/api/v1/alerts/targets/{id}/test")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

pub(crate) async fn create(
    t: &TestController,
    c: &reqwest::Client,
    body: &Value,
) -> reqwest::Response {
    c.post(t.url("/api/v1/alerts/targets"))
        .json(body)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn alert_targets_are_checked_tested_and_keep_their_secret() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let viewer = t.user_with_role(&admin, "vera", "viewer").await;
    let operator = t.user_with_role(&admin, "otto", "operator").await;
    let (hooks, url) = Hooks::start().await;
    let (mails, port) = Mails::start().await;

    // Who may see and change targets.
    let r = viewer.get(t.url("/api/v1/alerts")).send().await.unwrap();
    expect_error(r, 403, "forbidden").await;
    let r = operator.get(t.url("/api/v1/alerts")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = create(&t, &operator, &webhook(&url, &["host_offline"])).await;
    expect_error(r, 403, "forbidden").await;

    // Bad input: refused, naming the field; nothing stored.
    for (mut body, field) in [
        (webhook("ftp://x/", &["host_offline"]), "url"),
        (
            webhook("http://user:pw@127.0.0.1/", &["host_offline"]),
            "url",
        ),
        (webhook(&url, &[]), "rules"),
        (mail(port, "none", &["host_offline"]), "to"),
    ] {
        if field == "to" {
            body["channel"]["to"] = json!(["oncall@example.com\r\nBcc: x@evil.org"]);
        }
        let r = create(&t, &admin, &body).await;
        assert_eq!(expect_error(r, 422, "invalid").await["field"], field);
    }
    let mut short = webhook(&url, &["host_offline"]);
    short["secret"] = json!("short");
    let r = create(&t, &admin, &short).await;
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "secret");
    short.as_object_mut().unwrap().remove("secret");
    let r = create(&t, &admin, &short).await;
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "secret");
    let r = create(&t, &admin, &webhook(&url, &["unknown_rule"])).await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let v: Value = admin
        .get(t.url("/api/v1/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["targets"], json!([]), "{v}");

    // A webhook: stored without showing its secret; its name is unique.
    let r = create(
        &t,
        &admin,
        &webhook(&url, &["host_offline", "failover_done"]),
    )
    .await;
    assert_eq!(r.status(), 201);
    let hook: Value = r.json().await.unwrap();
    assert_eq!(hook["secret_set"], true);
    assert!(!hook.to_string().contains(SECRET), "{hook}");
    let r = create(&t, &admin, &webhook(&url, &["host_offline"])).await;
    assert_eq!(expect_error(r, 409, "conflict").await["field"], "name");

    // Send test: delivered and signed.
    let id = hook["id"].as_i64().unwrap();
    let res = send_test(&t, &admin, id).await;
    assert_eq!(res["ok"], true, "{res}");
    let got = hooks.payloads();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["state"], "test");
    assert!(got[0]["title"].as_str().unwrap().contains("Test message"));
    // Changed without a secret: the secret stays (the next test is signed with it).
    let mut change = webhook(&url, &["host_offline"]);
    change.as_object_mut().unwrap().remove("secret");
    let r = admin
        .put(t.url(&format!("/api/v1/alerts/targets/{id}")))
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(send_test(&t, &admin, id).await["ok"], true);
    assert_eq!(hooks.payloads().len(), 2);

    // A mail target: the test arrives by SMTP.
    let r = create(&t, &admin, &mail(port, "none", &["host_offline"])).await;
    assert_eq!(r.status(), 201);
    let m: Value = r.json().await.unwrap();
    let res = send_test(&t, &admin, m["id"].as_i64().unwrap()).await;
    assert_eq!(res["ok"], true, "{res}");
    let all = mails.all();
    assert_eq!(all.len(), 1);
    assert!(
        all[0].contains("Test message from SERVERware"),
        "{}",
        all[0]
    );
    assert!(all[0].contains("oncall@example.com"), "{}", all[0]);
    // STARTTLS required but not offered: refused, said, and nothing sent in the clear.
    let r = create(&t, &admin, &mail(port, "starttls", &["host_offline"])).await;
    let tls: Value = r.json().await.unwrap();
    let res = send_test(&t, &admin, tls["id"].as_i64().unwrap()).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(mails.all().len(), 1);
    // A webhook nobody answers: the test says why.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/hook", dead.local_addr().unwrap());
    drop(dead);
    let mut body = webhook(&dead_url, &["host_offline"]);
    body["name"] = json!("nobody");
    let nobody: Value = create(&t, &admin, &body).await.json().await.unwrap();
    let res = send_test(&t, &admin, nobody["id"].as_i64().unwrap()).await;
    assert_eq!(res["ok"], false, "{res}");
    assert!(!res["message"].as_str().unwrap().is_empty(), "{res}");

    // The same from the command line.
    let home = tempfile::tempdir().unwrap();
    let env = [("HOME", home.path().to_str().unwrap())];
    let o = crate::sw::sw(&env, &["login", &t.base], &format!("{ADMIN_PW}\n")).await;
    assert_eq!(o.code, 0, "{o:?}");
    let o = crate::sw::sw(&env, &["alert", "list"], "").await;
    assert!(
        o.code == 0 && o.stdout.contains("ops-hook") && o.stdout.contains("nobody"),
        "{o:?}"
    );
    let o = crate::sw::sw(&env, &["alert", "test", "ops-hook"], "").await;
    assert!(o.code == 0 && o.stdout.contains("delivered"), "{o:?}");
    assert_eq!(hooks.payloads().len(), 3);
    let o = crate::sw::sw(&env, &["alert", "test", "nobody"], "").await;
    assert!(o.code != 0 && o.stdout.contains("not delivered"), "{o:?}");
    let o = crate::sw::sw(&env, &["alert", "test", "no-such"], "").await;
    assert_eq!(o.code, 5, "{o:?}");

    // Each test is in the audit log; a removed target is gone.
    let e = get_json(&t, &admin, "/api/v1/events?action=alert.test").await;
    assert_eq!(e["events"].as_array().unwrap().len(), 7, "{e}");
    let r = admin
        .delete(t.url(&format!("/api/v1/alerts/targets/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = admin
        .post(t.url(&format!("/api/v1/alerts/targets/{id}/test")))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;

    // The lag threshold: checked, kept.
    let r = admin
        .put(t.url("/api/v1/alerts/settings"))
        .json(&json!({ "lag_threshold_minutes": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(r, 422, "invalid").await["field"],
        "lag_threshold_minutes"
    );
    let r = admin
        .put(t.url("/api/v1/alerts/settings"))
        .json(&json!({ "lag_threshold_minutes": 45 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["lag_threshold_minutes"],
        45
    );
}

async fn get_json(t: &TestController, c: &reqwest::Client, path: &str) -> Value {
    c.get(t.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// How many times the alert watch has looked.
async fn watch_runs(t: &TestController, admin: &reqwest::Client) -> u64 {
    let v = get_json(t, admin, "/api/v1/system/loops").await;
    v.as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "alert-watch")
        .and_then(|l| l["runs"].as_u64())
        .unwrap()
}

#[actix_web::test]
async fn a_host_powered_off_sends_one_message_and_one_when_it_is_back() {
    let mut cluster = Cluster::create(ClusterOptions {
        hosts: 1,
        ..Default::default()
    })
    .unwrap();
    let t = TestController::start().await;
    let admin = t.admin().await;
    let (hooks, url) = Hooks::start().await;
    let (mails, port) = Mails::start().await;
    let hosts = hosts_at(&t, &admin, &cluster, &[0]).await;
    let host = hosts[0];
    for body in [
        webhook(&url, &["host_offline"]),
        mail(port, "none", &["host_offline", "failover_done"]),
    ] {
        assert_eq!(create(&t, &admin, &body).await.status(), 201);
    }
    let key = format!("host:{host}");
    let of = |state: &str, list: &[Value]| {
        list.iter()
            .filter(|p| p["key"] == key.as_str() && p["state"] == state)
            .count()
    };
    let mails_of = |word: &str| {
        mails
            .all()
            .iter()
            .filter(|m| m.contains(&format!("Key:       {key}")) && m.contains(word))
            .count()
    };

    cluster.power_off(0).unwrap();
    wait_host(&t, &admin, host, "offline", |h| h["status"] == "offline").await;
    let opened = wait_for("the webhook's message", || {
        let p = hooks.payloads();
        (of("opened", &p) > 0).then_some(p)
    })
    .await;
    let msg = opened.iter().find(|p| p["state"] == "opened").unwrap();
    assert_eq!(msg["rule"], "host_offline", "{msg}");
    assert_eq!(msg["severity"], "error", "{msg}");
    assert!(msg["title"].as_str().unwrap().contains("node-a"), "{msg}");
    assert!(msg["id"].as_i64().unwrap() > 0, "{msg}");
    wait_for("the mail", || {
        (mails_of("State:     open") > 0).then_some(())
    })
    .await;
    let v = get_json(&t, &admin, "/api/v1/alerts").await;
    let open: Vec<&Value> = v["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["cleared_at"].is_null() && i["rule"] == "host_offline")
        .collect();
    assert_eq!(open.len(), 1, "{v:#}");
    assert_eq!(open[0]["key"], format!("host_offline/host:{host}"), "{v:#}");

    cluster.boot(0).unwrap();
    wait_host(&t, &admin, host, "online", |h| h["status"] == "online").await;
    wait_for("the webhook's all-clear", || {
        (of("cleared", &hooks.payloads()) > 0).then_some(())
    })
    .await;
    wait_for("the mail's all-clear", || {
        (mails_of("State:     cleared") > 0).then_some(())
    })
    .await;
    // Several more looks later, still one message of each, to each target.
    let runs = watch_runs(&t, &admin).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    while watch_runs(&t, &admin).await < runs + 5 {
        assert!(Instant::now() < deadline, "the alert watch stopped looking");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    let p = hooks.payloads();
    assert_eq!((of("opened", &p), of("cleared", &p)), (1, 1), "{p:#?}");
    assert_eq!(
        (mails_of("State:     open"), mails_of("State:     cleared")),
        (1, 1),
        "{:#?}",
        mails.all()
    );
    // Every message is recorded as sent.
    let v = get_json(&t, &admin, "/api/v1/alerts").await;
    let states: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["sent"; 4], "{v:#}");
    // (Storage may be an incident too: the test's storage is on this machine's own disk.)
    let host_incident = v["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["rule"] == "host_offline")
        .unwrap();
    assert!(host_incident["cleared_at"].is_string(), "{v:#}");
    drop(cluster);
}
