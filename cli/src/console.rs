//! `sw vps console NAME`: a root shell inside a VPS on this terminal, over the controller's
//! console socket (`GET /api/v1/vpses/{id}/console`; reqwest's connection upgraded, so the token
//! and `--insecure` apply as for every request). The terminal is raw while it lasts and put back
//! however it ends; the window's size follows; Ctrl-] ends it.

use crate::api::{Api, Exit, Failure, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::{Message, Role};
use tokio_tungstenite::WebSocketStream;

/// The key that ends the console (Ctrl-]).
const ESCAPE: u8 = 0x1d;

/// The terminal in raw mode until dropped.
struct Raw(libc::termios);

impl Raw {
    fn enter() -> std::io::Result<Raw> {
        // SAFETY: tcgetattr/tcsetattr on standard input with a termios we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Raw(saved))
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: puts back the settings read in `enter`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.0);
        }
    }
}

/// This terminal's size (80 × 24 when it cannot be read).
fn window() -> (u16, u16) {
    // SAFETY: TIOCGWINSZ fills a winsize we own.
    unsafe {
        let mut w: libc::winsize = std::mem::zeroed();
        if libc::ioctl(1, libc::TIOCGWINSZ, &mut w) == 0 && w.ws_col > 0 && w.ws_row > 0 {
            (w.ws_col, w.ws_row)
        } else {
            (80, 24)
        }
    }
}

fn broke(e: impl std::fmt::Display) -> Failure {
    Failure::new(
        Exit::Unreachable,
        format!("the console's connection broke: {e}"),
    )
}

/// Runs the console of VPS `id` (named `name`) until its shell ends, the user presses Ctrl-],
/// or the controller closes it.
pub async fn run(api: &Api, id: i64, name: &str) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(Failure::new(
            Exit::Usage,
            "a console needs a terminal: run sw vps console from one".to_string(),
        ));
    }
    let (cols, rows) = window();
    let conn = api
        .upgrade(&format!("/vpses/{id}/console?cols={cols}&rows={rows}"))
        .await?;
    let ws = WebSocketStream::from_raw_socket(conn, Role::Client, None).await;
    let (mut sink, mut stream) = ws.split();
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!("cannot follow the window's size: {e}"),
        )
    })?;
    eprintln!("Console to {name}: a root shell inside it (audited). Ctrl-] ends it.");
    let raw = Raw::enter()
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot set the terminal: {e}")))?;
    let (mut stdin, mut stdout) = (tokio::io::stdin(), tokio::io::stdout());
    let mut buf = [0u8; 4096];
    let ended = loop {
        tokio::select! {
            n = stdin.read(&mut buf) => {
                let n = n.map_err(broke)?;
                if n == 0 {
                    break "the input ended".to_string();
                }
                let typed = &buf[..n];
                let (send, escape) = match typed.iter().position(|b| *b == ESCAPE) {
                    Some(p) => (&typed[..p], true),
                    None => (typed, false),
                };
                if !send.is_empty() {
                    sink.send(Message::Binary(send.to_vec().into())).await.map_err(broke)?;
                }
                if escape {
                    let _ = sink.send(Message::Close(None)).await;
                    break "closed with Ctrl-]".to_string();
                }
            }
            m = stream.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    stdout.write_all(&b).await.map_err(broke)?;
                    stdout.flush().await.map_err(broke)?;
                }
                Some(Ok(Message::Close(c))) => {
                    break c.map(|c| c.reason.to_string()).filter(|r| !r.is_empty()).unwrap_or_else(|| "the controller closed it".into());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("the connection broke: {e}"),
                None => break "the connection ended".to_string(),
            },
            _ = winch.recv() => {
                let (cols, rows) = window();
                let size = serde_json::json!({"cols": cols, "rows": rows}).to_string();
                sink.send(Message::Text(size.into())).await.map_err(broke)?;
            }
        }
    };
    drop(raw);
    eprintln!("\r\n[console to {name} closed: {ended}]");
    Ok(())
}
