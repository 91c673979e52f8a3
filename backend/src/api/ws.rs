//! The events WebSocket: `GET /api/v1/events` with `Upgrade: websocket`. Authenticated like every
//! other route (session cookie or bearer token), before the upgrade.

use crate::auth::Principal;
use crate::core::Core;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use serverware_shared::ws::{ClientMessage, ServerMessage};
use std::time::{Duration, Instant};

pub const PING_EVERY: Duration = Duration::from_secs(15);
/// A write that takes longer than this means the client stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Matches a WebSocket upgrade request, whatever the case of the header value.
pub fn is_upgrade(ctx: &actix_web::guard::GuardContext<'_>) -> bool {
    ctx.head()
        .headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

pub async fn events_socket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<Core>,
    principal: Principal,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, mut session, stream) = actix_ws::handle(&req, body)?;
    let mut stream = stream.max_frame_size(64 * 1024);
    let (guard, mut queue) = state.hub.register();
    let hub = state.hub.clone();
    let state = state.into_inner();
    actix_web::rt::spawn(async move {
        // Removes this client from the hub however the socket ends.
        let guard = guard;
        let hello = ServerMessage::Hello {
            username: principal.username.clone(),
            role: principal.role,
            ping_interval_secs: PING_EVERY.as_secs(),
        };
        if send(&mut session, &hello).await.is_err() {
            return;
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        ping.tick().await;
        let mut last_heard = Instant::now();
        let close = loop {
            tokio::select! {
                queued = queue.recv() => match queued {
                    Some(json) => {
                        match tokio::time::timeout(WRITE_TIMEOUT, session.text(json.to_string())).await {
                            Ok(Ok(())) => {}
                            _ => break Some(too_slow()),
                        }
                    }
                    // The hub dropped us: we did not keep up.
                    None => break Some(too_slow()),
                },
                frame = stream.recv() => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            let reply = match serde_json::from_str::<ClientMessage>(&text) {
                                Ok(ClientMessage::Subscribe { topics }) => ServerMessage::Subscribed {
                                    topics: hub.update_topics(guard.id, &topics, &[]),
                                },
                                Ok(ClientMessage::Unsubscribe { topics }) => ServerMessage::Subscribed {
                                    topics: hub.update_topics(guard.id, &[], &topics),
                                },
                                Err(e) => ServerMessage::Error { message: format!("message not understood: {e}") },
                            };
                            if send(&mut session, &reply).await.is_err() {
                                break None;
                            }
                        }
                        Some(Ok(Message::Ping(bytes))) => {
                            if session.pong(&bytes).await.is_err() {
                                break None;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                        Some(Ok(_)) => {}
                    }
                },
                _ = ping.tick() => {
                    // A socket outlives neither its session nor its token.
                    if !crate::auth::still_valid(&state.db, state.config.session_idle_minutes, &principal).await {
                        break Some(CloseReason { code: CloseCode::Policy, description: Some("signed out".into()) });
                    }
                    if last_heard.elapsed() > PING_EVERY * 3 {
                        break Some(CloseReason { code: CloseCode::Away, description: Some("no answer to pings".into()) });
                    }
                    if session.ping(b"").await.is_err() {
                        break None;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(WRITE_TIMEOUT, session.close(close)).await;
    });
    Ok(response)
}

fn too_slow() -> CloseReason {
    CloseReason {
        code: CloseCode::Policy,
        description: Some("too slow: messages were not read in time".into()),
    }
}

async fn send(session: &mut actix_ws::Session, msg: &ServerMessage) -> Result<(), ()> {
    let json = serde_json::to_string(msg).map_err(|_| ())?;
    match tokio::time::timeout(WRITE_TIMEOUT, session.text(json)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
