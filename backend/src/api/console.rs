//! A VPS's console over a WebSocket: `GET /api/v1/vpses/{id}/console?cols=C&rows=R` with
//! `Upgrade: websocket`, for operators. Binary frames carry the terminal's bytes both ways; a text
//! frame `{"cols": C, "rows": R}` resizes it. It closes when the shell exits, when the socket
//! does, and when the user's session (or token) ends; each session is audited (`vps/console.rs`).

use crate::auth::Principal;
use crate::core::Core;
use crate::vps::console::{self, Console};
use crate::vps::Vpses;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use serde::Deserialize;
use serverware_shared::{Role, VpsId};
use std::time::Duration;

/// How often a console checks that its user is still signed in.
const CHECK_EVERY: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
pub struct Size {
    #[serde(default = "default_cols")]
    cols: u16,
    #[serde(default = "default_rows")]
    rows: u16,
}

fn default_cols() -> u16 {
    80
}

fn default_rows() -> u16 {
    24
}

pub async fn console_socket(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<i64>,
    size: web::Query<Size>,
    vpses: web::Data<Vpses>,
    core: web::Data<Core>,
    principal: Principal,
) -> Result<HttpResponse, actix_web::Error> {
    principal.require(Role::Operator)?;
    let actor = crate::audit::Actor::from(&principal);
    let id = VpsId(path.into_inner());
    // Refused (not running, host offline, not found) before the upgrade, as a plain answer.
    let console = console::open(&vpses, &actor, id, (size.cols, size.rows)).await?;
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let core = core.into_inner();
    actix_web::rt::spawn(serve(console, session, stream, core, principal));
    Ok(response)
}

async fn serve(
    mut console: Console,
    mut session: actix_ws::Session,
    stream: actix_ws::MessageStream,
    core: std::sync::Arc<Core>,
    principal: Principal,
) {
    let mut stream = stream.max_frame_size(64 * 1024);
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    check.tick().await;
    let (why, close) = loop {
        tokio::select! {
            out = console.terminal.output.recv() => match out {
                Some(bytes) => {
                    match tokio::time::timeout(WRITE_TIMEOUT, session.binary(bytes)).await {
                        Ok(Ok(())) => {}
                        _ => break ("the browser stopped reading", None),
                    }
                }
                None => break ("the shell ended", Some(CloseReason { code: CloseCode::Normal, description: Some("the shell ended".into()) })),
            },
            frame = stream.recv() => match frame {
                Some(Ok(Message::Binary(bytes))) => {
                    if console.terminal.input.input(bytes.to_vec()).await.is_err() {
                        break ("the host's connection ended", Some(away("the host's connection ended")));
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    if let Ok(s) = serde_json::from_str::<Size>(&text) {
                        let (cols, rows) = console::size(s.cols, s.rows);
                        let _ = console.terminal.input.resize(cols, rows).await;
                    }
                }
                Some(Ok(Message::Ping(bytes))) => {
                    if session.pong(&bytes).await.is_err() {
                        break ("the socket closed", None);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break ("closed by the user", None),
                Some(Ok(_)) => {}
            },
            _ = check.tick() => {
                if !crate::auth::still_valid(&core.db, core.config.session_idle_minutes, &principal).await {
                    break ("the user's session ended", Some(CloseReason { code: CloseCode::Policy, description: Some("signed out".into()) }));
                }
            }
        }
    };
    console.close(why).await;
    let _ = tokio::time::timeout(WRITE_TIMEOUT, session.close(close)).await;
}

fn away(why: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::Away,
        description: Some(why.into()),
    }
}
