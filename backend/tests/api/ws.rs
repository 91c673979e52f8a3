use crate::support::*;
use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub(crate) type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

pub(crate) async fn connect(
    t: &TestController,
    cookie: Option<&str>,
) -> Result<Socket, awc::error::WsClientError> {
    let url = t.url("/api/v1/events").replacen("http", "ws", 1);
    let mut req = awc::Client::new().ws(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.connect().await.map(|(_, s)| s)
}

/// A socket read all along by a task of its own (answering pings, as a browser does), its
/// messages kept in order until the test takes them: a test busy elsewhere for minutes is not a
/// client that stopped reading.
pub(crate) struct Listener {
    rx: tokio::sync::mpsc::UnboundedReceiver<Value>,
    task: actix_web::rt::task::JoinHandle<()>,
}

impl Listener {
    pub(crate) fn start(mut s: Socket) -> Listener {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = actix_web::rt::spawn(async move {
            while let Some(Ok(frame)) = s.next().await {
                match frame {
                    Frame::Text(b) => {
                        let Ok(v) = serde_json::from_slice(&b) else {
                            continue;
                        };
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Frame::Ping(b) if s.send(Message::Pong(b.clone())).await.is_err() => return,
                    Frame::Close(_) => return,
                    _ => {}
                }
            }
        });
        Listener { rx, task }
    }

    /// The next message, within a generous deadline.
    pub(crate) async fn next_json(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(30), self.rx.recv())
            .await
            .expect("a message in time")
            .expect("the socket stayed open")
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The next JSON text message, within a generous deadline.
pub(crate) async fn next_json(s: &mut Socket) -> Value {
    let deadline = Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout(deadline, s.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .unwrap();
        match frame {
            Frame::Text(b) => return serde_json::from_slice(&b).unwrap(),
            Frame::Ping(b) => s.send(Message::Pong(b)).await.unwrap(),
            Frame::Close(r) => panic!("closed: {r:?}"),
            _ => {}
        }
    }
}

pub(crate) async fn subscribe(s: &mut Socket, topics: &[&str]) -> Value {
    s.send(Message::Text(
        json!({"type": "subscribe", "topics": topics})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    next_json(s).await
}

#[actix_web::test]
async fn an_unauthenticated_socket_is_refused() {
    let t = TestController::start().await;
    match connect(&t, None).await {
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 401),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("an anonymous socket was accepted"),
    }
    match connect(&t, Some("serverware_session=forged")).await {
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 401),
        other => panic!("a forged cookie was not refused: {:?}", other.err()),
    }
    // An API token works as well as a session cookie.
    let admin = t.admin().await;
    let token = t.token(&admin, "socket", Some("viewer")).await;
    let url = t.url("/api/v1/events").replacen("http", "ws", 1);
    let (_, mut s) = awc::Client::new()
        .ws(url)
        .bearer_auth(&token)
        .connect()
        .await
        .unwrap();
    let hello = next_json(&mut s).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["role"], "viewer");
}

#[actix_web::test]
async fn sockets_receive_only_the_topics_they_subscribed_to() {
    let t = TestController::start().await;
    let cookie = t.session_cookie("admin", ADMIN_PW).await;
    let mut events = connect(&t, Some(&cookie)).await.unwrap();
    let mut inventory = connect(&t, Some(&cookie)).await.unwrap();
    let mut late = connect(&t, Some(&cookie)).await.unwrap();
    for s in [&mut events, &mut inventory, &mut late] {
        let hello = next_json(s).await;
        assert_eq!(hello["type"], "hello");
        assert_eq!(hello["username"], "admin");
    }
    assert_eq!(
        subscribe(&mut events, &["events"]).await,
        json!({"type": "subscribed", "topics": ["events"]})
    );
    assert_eq!(
        subscribe(&mut inventory, &["inventory"]).await["topics"],
        json!(["inventory"])
    );

    let admin = t.admin().await;
    t.token(&admin, "live-one", None).await;

    // The events socket sees the audit events (the login, then the token), nothing else.
    let mut seen = Vec::new();
    loop {
        let m = next_json(&mut events).await;
        assert_eq!(m["type"], "event", "{m}");
        seen.push(m["event"]["action"].as_str().unwrap().to_string());
        if m["event"]["action"] == "token.create" {
            assert_eq!(m["event"]["details"]["name"], "live-one");
            break;
        }
    }
    assert!(seen.contains(&"auth.login".to_string()), "{seen:?}");
    // The inventory socket sees the new token as an object change, and no raw events.
    let m = next_json(&mut inventory).await;
    assert_eq!(m["type"], "inventory", "{m}");
    assert_eq!(m["change"]["kind"], "token");
    assert_eq!(m["change"]["change"], "created");

    // A socket that subscribes only now receives nothing of what happened before.
    assert_eq!(
        subscribe(&mut late, &["inventory"]).await["topics"],
        json!(["inventory"])
    );
    let r = admin
        .patch(t.url("/api/v1/settings"))
        .json(&json!({"site_name": "Marker"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = next_json(&mut late).await;
    assert_eq!(m["change"]["kind"], "settings", "{m}");

    assert_eq!(
        next_json(&mut inventory).await["change"]["kind"],
        "settings"
    );

    // Unsubscribing stops the flow; an unknown topic is an error message, not a closed socket.
    assert_eq!(json!({"type": "subscribed", "topics": []}), {
        inventory
            .send(Message::Text(
                json!({"type": "unsubscribe", "topics": ["inventory"]})
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
        next_json(&mut inventory).await
    });
    inventory
        .send(Message::Text(
            r#"{"type":"subscribe","topics":["secrets"]}"#.into(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut inventory).await["type"], "error");
    t.token(&admin, "live-two", None).await;
    assert_eq!(
        subscribe(&mut inventory, &["events"]).await["topics"],
        json!(["events"])
    );
    let r = admin
        .patch(t.url("/api/v1/settings"))
        .json(&json!({"site_name": "Second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The next message is the settings event: live-two's inventory change was never queued.
    let m = next_json(&mut inventory).await;
    assert_eq!(m["type"], "event", "an unsubscribed topic arrived: {m}");
    assert_eq!(m["event"]["action"], "settings.update", "{m}");
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_dropped_and_the_controller_stays_responsive() {
    let t = TestController::start().await;
    let cookie = t.session_cookie("admin", ADMIN_PW).await;
    let mut slow = connect(&t, Some(&cookie)).await.unwrap();
    next_json(&mut slow).await;
    subscribe(&mut slow, &["events"]).await;
    let hub = t.hub();
    assert_eq!(hub.client_count(), 1);
    // From now on the client reads nothing. Push large events until the controller gives up on it.
    let big = serverware_shared::api::EventResponse {
        id: 0,
        kind: serverware_shared::api::EventKind::System,
        severity: serverware_shared::api::Severity::Info,
        actor: "test".into(),
        action: "test.flood".into(),
        target_type: None,
        target_id: None,
        target_name: None,
        message: "x".repeat(16 * 1024),
        details: json!({}),
        created_at: chrono::Utc::now(),
    };
    let msg = serverware_shared::ws::ServerMessage::Event { event: big };
    let start = Instant::now();
    let mut sent = 0u64;
    while hub.dropped_slow() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not dropped after {sent} messages"
        );
        let t0 = Instant::now();
        hub.publish(&msg);
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "publishing blocked on a slow client"
        );
        sent += 1;
        if sent.is_multiple_of(64) {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(hub.client_count(), 0);
    // Others are served as usual.
    let r = t.anon().get(t.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    drop(slow);
}

#[actix_web::test]
async fn a_socket_closes_when_its_session_ends() {
    let t = TestController::start().await;
    let cookie = t.session_cookie("admin", ADMIN_PW).await;
    let mut s = connect(&t, Some(&cookie)).await.unwrap();
    assert_eq!(next_json(&mut s).await["type"], "hello");
    let r = t
        .anon()
        .post(t.url("/api/v1/auth/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The controller re-checks at its next ping (15 s); allow plenty.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(Instant::now() < deadline, "the socket outlived its session");
        match tokio::time::timeout(Duration::from_secs(90), s.next()).await {
            Ok(Some(Ok(Frame::Close(reason)))) => {
                assert_eq!(
                    reason.and_then(|r| r.description).as_deref(),
                    Some("signed out")
                );
                break;
            }
            Ok(Some(Ok(Frame::Ping(b)))) => s.send(Message::Pong(b)).await.unwrap(),
            Ok(Some(Ok(_))) => {}
            Ok(None) | Ok(Some(Err(_))) => panic!("the socket ended without a close frame"),
            Err(_) => panic!("nothing within 90 s"),
        }
    }
}
