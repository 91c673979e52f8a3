//! `sw vps console NAME`: a root shell inside a VPS, over the controller's console socket
//! (`GET /api/v1/vpses/{id}/console`; reqwest's connection upgraded, so the token and
//! `--insecure` apply as for every request). [`bridge`] carries it between any terminal and the
//! socket: this machine's (raw while it lasts, put back however it ends; [`run`]) or an SSH
//! channel of the controller's command line. Ctrl-] ends it.

use crate::api::{Api, Exit, Failure, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::{Message, Role};
use tokio_tungstenite::WebSocketStream;

/// The key that ends the console (Ctrl-]).
pub const ESCAPE: u8 = 0x1d;

/// What a console is carried between: the keys typed (ended: the input is gone), the window's
/// size as it changes, and the screen.
pub struct Io<'a> {
    pub keys: &'a mut mpsc::Receiver<Vec<u8>>,
    pub sizes: watch::Receiver<(u16, u16)>,
    pub screen: Screen<'a>,
}

/// Where a console's output is written.
pub type Screen<'a> = Box<dyn FnMut(&[u8]) -> std::io::Result<()> + Send + 'a>;

fn broke(e: impl std::fmt::Display) -> Failure {
    Failure::new(
        Exit::Unreachable,
        format!("the console's connection broke: {e}"),
    )
}

/// Carries the console of VPS `id` until its shell ends, Ctrl-] is typed, the input ends or the
/// controller closes it; says which.
pub async fn bridge(api: &Api, id: i64, mut io: Io<'_>) -> Result<String> {
    let (cols, rows) = *io.sizes.borrow_and_update();
    let conn = api
        .upgrade(&format!("/vpses/{id}/console?cols={cols}&rows={rows}"))
        .await?;
    let ws = WebSocketStream::from_raw_socket(conn, Role::Client, None).await;
    let (mut sink, mut stream) = ws.split();
    let mut sizes_open = true;
    let ended = loop {
        tokio::select! {
            typed = io.keys.recv() => {
                let Some(typed) = typed else {
                    let _ = sink.send(Message::Close(None)).await;
                    break "the input ended".to_string();
                };
                let (send, escape) = match typed.iter().position(|b| *b == ESCAPE) {
                    Some(p) => (&typed[..p], true),
                    None => (&typed[..], false),
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
                Some(Ok(Message::Binary(b))) => (io.screen)(&b).map_err(broke)?,
                Some(Ok(Message::Close(c))) => {
                    break c
                        .map(|c| c.reason.to_string())
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| "the controller closed it".into());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("the connection broke: {e}"),
                None => break "the connection ended".to_string(),
            },
            changed = io.sizes.changed(), if sizes_open => match changed {
                Ok(()) => {
                    let (cols, rows) = *io.sizes.borrow_and_update();
                    let size = serde_json::json!({"cols": cols, "rows": rows}).to_string();
                    sink.send(Message::Text(size.into())).await.map_err(broke)?;
                }
                Err(_) => sizes_open = false,
            },
        }
    };
    Ok(ended)
}

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

/// The console of VPS `id` (named `name`) on this machine's terminal.
pub async fn run(api: &Api, id: i64, name: &str) -> Result<()> {
    use std::io::{IsTerminal, Write};
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(Failure::new(
            Exit::Usage,
            "a console needs a terminal: run sw vps console from one".to_string(),
        ));
    }
    let (size_tx, sizes) = watch::channel(window());
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!("cannot follow the window's size: {e}"),
        )
    })?;
    let follow = tokio::spawn(async move {
        while winch.recv().await.is_some() {
            if size_tx.send(window()).is_err() {
                break;
            }
        }
    });
    // A thread of its own (not the runtime's blocking pool, which would hold the exit until
    // the next key): it ends with the process.
    let (key_tx, mut keys) = mpsc::channel(64);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || key_tx.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    eprintln!("Console to {name}: a root shell inside it (audited). Ctrl-] ends it.");
    let raw = Raw::enter()
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot set the terminal: {e}")))?;
    let screen = Box::new(|b: &[u8]| {
        let mut out = std::io::stdout().lock();
        out.write_all(b)?;
        out.flush()
    });
    let ended = bridge(
        api,
        id,
        Io {
            keys: &mut keys,
            sizes,
            screen,
        },
    )
    .await;
    drop(raw);
    follow.abort();
    let ended = ended?;
    eprintln!("\r\n[console to {name} closed: {ended}]");
    Ok(())
}
