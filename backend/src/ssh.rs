//! The controller's SSH client (russh). Host keys are pinned: a first contact only reads the key
//! so the operator can confirm its fingerprint; every later connection must present exactly the
//! pinned key, and a different one is refused.

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use serverware_shared::agent::{AgentRequest, AgentResponse};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A host key as shown to the operator and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The key in OpenSSH form (`ssh-ed25519 AAAA…`), stored to compare later.
    pub openssh: String,
}

impl HostKey {
    fn of(key: &PublicKey) -> HostKey {
        HostKey {
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
            openssh: key.to_openssh().unwrap_or_default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, String),
    #[error("the host presented a different host key ({presented}) than the one pinned; refusing to connect")]
    HostKeyMismatch { presented: String },
    #[error("the host refused the credentials")]
    AuthRejected,
    #[error("SSH failed: {0}")]
    Protocol(String),
    /// The agent ran the request and reports why it failed.
    #[error("{0}")]
    Agent(String),
}

#[derive(Clone)]
pub enum Credentials {
    Password(String),
    Key(Arc<PrivateKey>),
}

struct Client {
    pinned: Option<String>,
    seen: Arc<Mutex<Option<HostKey>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Only plain host keys are pinned; a host certificate is refused.
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let hk = HostKey::of(key);
        let ok = match &self.pinned {
            Some(p) => same_key(p, &hk.openssh),
            None => true,
        };
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(hk);
        }
        Ok(ok)
    }
}

/// Compares OpenSSH key lines by type and data, ignoring the comment.
fn same_key(a: &str, b: &str) -> bool {
    let parts = |s: &str| {
        s.split_whitespace()
            .take(2)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    parts(a) == parts(b) && !parts(a).is_empty()
}

fn config() -> Arc<client::Config> {
    // AES-GCM first: with the CPU's AES instructions it moves bulk data (root filesystems,
    // netDUPLO cycles) at several times the speed of ChaCha20 on these machines.
    const CIPHERS: &[russh::cipher::Name] = &[
        russh::cipher::AES_256_GCM,
        russh::cipher::CHACHA20_POLY1305,
        russh::cipher::AES_256_CTR,
    ];
    Arc::new(client::Config {
        // A host whose sshd is slow to log in (a minute is seen where PAM or name look-ups
        // stall) is waited for; a dead connection is found by the keep-alives and, for netMON,
        // by the missing samples long before this.
        inactivity_timeout: Some(Duration::from_secs(180)),
        keepalive_interval: Some(Duration::from_secs(10)),
        keepalive_max: 6,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(CIPHERS),
            ..Default::default()
        },
        ..Default::default()
    })
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A bounded number of SSH handshakes at once: the TCP connection is made first, outside it
/// (a host that does not answer holds no place), then the key exchange waits for a place;
/// `on_turn` is called once it has one.
pub struct Gate {
    pub places: Arc<tokio::sync::Semaphore>,
    pub on_turn: Box<dyn FnOnce() + Send>,
}

async fn open(
    addr: &str,
    port: u16,
    pinned: Option<String>,
) -> Result<(Handle<Client>, Arc<Mutex<Option<HostKey>>>), SshError> {
    open_gated(addr, port, pinned, None).await
}

async fn open_gated(
    addr: &str,
    port: u16,
    pinned: Option<String>,
    gate: Option<Gate>,
) -> Result<(Handle<Client>, Arc<Mutex<Option<HostKey>>>), SshError> {
    let seen = Arc::new(Mutex::new(None));
    let handler = Client {
        pinned: pinned.clone(),
        seen: seen.clone(),
    };
    let target = format!("{addr}:{port}");
    let stream = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((addr, port)),
    )
    .await
    {
        Err(_) => {
            return Err(SshError::Unreachable(
                target,
                "no answer within 10 s".into(),
            ))
        }
        Ok(Err(e)) => return Err(SshError::Unreachable(target, e.to_string())),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let _place = match gate {
        Some(g) => {
            let p = g.places.acquire_owned().await.ok();
            (g.on_turn)();
            p
        }
        None => None,
    };
    let r = tokio::time::timeout(
        CONNECT_TIMEOUT,
        client::connect_stream(config(), stream, handler),
    )
    .await;
    match r {
        Err(_) => Err(SshError::Unreachable(
            target,
            "no answer within 10 s".into(),
        )),
        Ok(Ok(h)) => Ok((h, seen)),
        Ok(Err(e)) => {
            let presented = seen.lock().ok().and_then(|s| s.clone());
            match (pinned, presented) {
                (Some(p), Some(k)) if !same_key(&p, &k.openssh) => Err(SshError::HostKeyMismatch {
                    presented: k.fingerprint,
                }),
                _ => match e {
                    russh::Error::IO(io) => Err(SshError::Unreachable(target, io.to_string())),
                    other => Err(SshError::Protocol(other.to_string())),
                },
            }
        }
    }
}

/// First contact: reads the host's key without logging in.
pub async fn probe_host_key(addr: &str, port: u16) -> Result<HostKey, SshError> {
    let (handle, seen) = open(addr, port, None).await?;
    let key = seen.lock().ok().and_then(|s| s.clone());
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    key.ok_or_else(|| SshError::Protocol("the host sent no key".into()))
}

/// A logged-in connection to a host whose key is pinned.
pub struct Session {
    handle: Handle<Client>,
    /// How it was made, to make another beside it for a bulk stream ([`Session::exec_apart`]).
    twin: Twin,
}

/// Where and as whom a [`Session`] logged in.
#[derive(Clone)]
struct Twin {
    addr: String,
    port: u16,
    user: String,
    pinned_key: String,
    creds: Credentials,
}

impl Session {
    pub async fn connect(
        addr: &str,
        port: u16,
        user: &str,
        pinned_key: &str,
        creds: &Credentials,
    ) -> Result<Session, SshError> {
        Self::connect_gated(addr, port, user, pinned_key, creds, None).await
    }

    /// [`Session::connect`], its key exchange waiting for a place at `gate`.
    pub async fn connect_gated(
        addr: &str,
        port: u16,
        user: &str,
        pinned_key: &str,
        creds: &Credentials,
        gate: Option<Gate>,
    ) -> Result<Session, SshError> {
        let (mut handle, _) = open_gated(addr, port, Some(pinned_key.to_string()), gate).await?;
        let result = match creds {
            Credentials::Password(p) => handle.authenticate_password(user, p).await,
            Credentials::Key(k) => {
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .ok()
                    .flatten()
                    .flatten();
                handle
                    .authenticate_publickey(user, PrivateKeyWithHashAlg::new(k.clone(), hash))
                    .await
            }
        }
        .map_err(|e| SshError::Protocol(e.to_string()))?;
        if !result.success() {
            return Err(SshError::AuthRejected);
        }
        Ok(Session {
            handle,
            twin: Twin {
                addr: addr.to_string(),
                port,
                user: user.to_string(),
                pinned_key: pinned_key.to_string(),
                creds: creds.clone(),
            },
        })
    }

    /// [`Session::exec_channel`] on a connection of its own, made for this stream and closed
    /// when the channel is dropped, for streams that send much to the host (an upload, a
    /// restore, a template or a move). The SSH client keeps the largest write buffer a
    /// connection ever needed (several hundred KiB once a stream filled the host's window):
    /// on the host's lasting connection that memory would stay for as long as the host is
    /// connected, and the stream would share one TCP connection with the host's samples and
    /// lease. If the second connection cannot be made, the stream runs on this one.
    pub async fn exec_apart(
        &self,
        program: &str,
        args: &[&str],
    ) -> Result<russh::Channel<client::Msg>, SshError> {
        let t = &self.twin;
        match Session::connect(&t.addr, t.port, &t.user, &t.pinned_key, &t.creds).await {
            // The new connection lives as long as its channel: its handle goes here.
            Ok(apart) => apart.exec_channel(program, args).await,
            Err(e) => {
                tracing::debug!(host = %t.addr, "a stream's own connection failed ({e}); using the host's");
                self.exec_channel(program, args).await
            }
        }
    }

    /// Starts `program` with `args` on the host and returns its channel, for streams
    /// (arguments quoted as in [`Session::run`]).
    pub async fn exec_channel(
        &self,
        program: &str,
        args: &[&str],
    ) -> Result<russh::Channel<client::Msg>, SshError> {
        let line = command_line(program, args);
        let ch = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        ch.exec(true, line)
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        Ok(ch)
    }

    /// Runs `program` with `args` on the host and returns its exit status and output. Every
    /// argument is quoted for the remote shell, so no argument can change the command.
    pub async fn run(
        &self,
        program: &str,
        args: &[&str],
    ) -> Result<(u32, Vec<u8>, Vec<u8>), SshError> {
        let line = command_line(program, args);
        let mut ch = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        ch.exec(true, line)
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
        while let Some(msg) = ch.wait().await {
            match msg {
                russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
                russh::ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
                russh::ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
                _ => {}
            }
            if out.len() + err.len() > MAX_COMMAND_OUTPUT {
                let _ = ch.close().await;
                return Err(SshError::Protocol(format!(
                    "{program} printed more than {} MiB on the host",
                    MAX_COMMAND_OUTPUT >> 20
                )));
            }
        }
        Ok((code.unwrap_or(255), out, err))
    }

    /// Runs `program` with `args` on the host under a pseudo-terminal of `cols` × `rows` (a
    /// console): what it prints arrives on [`Terminal::output`], which ends when it exits.
    pub async fn terminal(
        &self,
        program: &str,
        args: &[&str],
        (cols, rows): (u16, u16),
    ) -> Result<Terminal, SshError> {
        let line = command_line(program, args);
        let ch = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        let (mut read, write) = ch.split();
        write
            .request_pty(
                true,
                "xterm-256color",
                u32::from(cols),
                u32::from(rows),
                0,
                0,
                &[],
            )
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        write
            .exec(true, line)
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        let (tx, output) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            while let Some(msg) = read.wait().await {
                let data = match msg {
                    russh::ChannelMsg::Data { data } => data,
                    russh::ChannelMsg::ExtendedData { data, .. } => data,
                    russh::ChannelMsg::Eof | russh::ChannelMsg::Close => break,
                    _ => continue,
                };
                if tx.send(data.to_vec()).await.is_err() {
                    break;
                }
            }
        });
        Ok(Terminal {
            output,
            input: TerminalInput { write },
        })
    }

    /// Writes `data` to `path` on the host (mode 0755, replaced atomically) and verifies its
    /// SHA-256 there. Returns the checksum.
    pub async fn upload(&self, path: &str, data: &[u8]) -> Result<String, SshError> {
        use sha2::{Digest, Sha256};
        let want = hex::encode(Sha256::digest(data));
        let script = "umask 022; d=$(dirname \"$1\"); mkdir -p \"$d\" && cat > \"$1.part\" && chmod 0755 \"$1.part\" && mv -f \"$1.part\" \"$1\"";
        let ch = self.exec_apart("sh", &["-c", script, "sh", path]).await?;
        ch.data(data)
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        ch.eof()
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        let (mut ch, mut code, mut err) = (ch, None, Vec::new());
        while let Some(msg) = ch.wait().await {
            match msg {
                russh::ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
                russh::ChannelMsg::ExtendedData { data, .. } if err.len() < MAX_COMMAND_OUTPUT => {
                    err.extend_from_slice(&data)
                }
                _ => {}
            }
        }
        if code != Some(0) {
            return Err(SshError::Protocol(format!(
                "upload to {path} failed: {}",
                String::from_utf8_lossy(&err).trim()
            )));
        }
        let (code, out, _) = self.run("sha256sum", &[path]).await?;
        let got = String::from_utf8_lossy(&out)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        if code != 0 || got != want {
            return Err(SshError::Protocol(format!(
                "checksum of {path} on the host does not match the upload"
            )));
        }
        Ok(want)
    }

    /// Starts the agent at `path` on the host and speaks its protocol over the channel.
    pub async fn start_agent(&self, path: &str) -> Result<AgentLink, SshError> {
        let ch = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        ch.exec(true, shell_quote(path))
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))?;
        let (mut read, write) = ch.split();
        let (frames_tx, frames) = tokio::sync::mpsc::channel(1024);
        let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(64);
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            loop {
                tokio::select! {
                    msg = read.wait() => match msg {
                        Some(russh::ChannelMsg::Data { data }) => {
                            let scanned = buf.len();
                            buf.extend_from_slice(&data);
                            let mut from = scanned;
                            while let Some(pos) = buf[from..].iter().position(|b| *b == b'\n') {
                                let line: Vec<u8> = buf.drain(..=from + pos).collect();
                                from = 0;
                                match serde_json::from_slice::<serverware_shared::agent::AgentFrame>(&line) {
                                    Ok(f) => if frames_tx.send(f).await.is_err() { return },
                                    Err(e) => tracing::warn!("agent sent an unreadable frame: {e}"),
                                }
                            }
                            if buf.len() > serverware_shared::agent::MAX_AGENT_FRAME {
                                // A frame this long is no sample: the link ends (and is made anew)
                                // rather than the controller's memory growing with it.
                                tracing::error!(
                                    "the agent sent a frame longer than {} bytes: closing its link",
                                    serverware_shared::agent::MAX_AGENT_FRAME
                                );
                                return;
                            }
                        }
                        // What the agent says on stderr (a panic, a failed journal) is logged.
                        Some(russh::ChannelMsg::ExtendedData { data, .. }) => {
                            let text = String::from_utf8_lossy(&data[..data.len().min(4096)]).into_owned();
                            tracing::warn!("agent: {}", text.trim());
                        }
                        Some(russh::ChannelMsg::ExitStatus { exit_status }) => {
                            tracing::warn!("the agent exited with status {exit_status}");
                        }
                        Some(russh::ChannelMsg::ExitSignal { signal_name, .. }) => {
                            tracing::warn!("the agent was killed by signal {signal_name:?}");
                        }
                        Some(_) => {}
                        None => return,
                    },
                    line = lines.recv() => match line {
                        Some(l) => if write.data_bytes(l.into_bytes()).await.is_err() { return },
                        None => { let _ = write.eof().await; return }
                    },
                }
            }
        });
        Ok(AgentLink {
            caller: AgentCaller {
                lines: lines_tx,
                next_id: Arc::new(std::sync::atomic::AtomicU64::new(1)),
                pending: Arc::new(Mutex::new(HashMap::new())),
            },
            frames,
        })
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// The most a command run on a host may print (its output is read into memory).
const MAX_COMMAND_OUTPUT: usize = 4 << 20;

/// `program` and `args`, each quoted, as one line for the remote shell.
fn command_line(program: &str, args: &[&str]) -> String {
    let mut line = shell_quote(program);
    for a in args {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    line
}

/// Quotes one argument for a POSIX shell: the remote side of an SSH exec always goes through the
/// login shell, so each argument is wrapped in single quotes.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A program under a pseudo-terminal on a host ([`Session::terminal`]).
pub struct Terminal {
    /// What it prints; ends when it exits or the channel closes.
    pub output: tokio::sync::mpsc::Receiver<Vec<u8>>,
    /// What is typed, and the window's size.
    pub input: TerminalInput,
}

/// The sending side of a [`Terminal`].
pub struct TerminalInput {
    write: russh::ChannelWriteHalf<client::Msg>,
}

impl TerminalInput {
    /// Keys typed, as bytes.
    pub async fn input(&self, bytes: Vec<u8>) -> Result<(), SshError> {
        self.write
            .data_bytes(bytes)
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))
    }

    /// The window's new size.
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), SshError> {
        self.write
            .window_change(u32::from(cols), u32::from(rows), 0, 0)
            .await
            .map_err(|e| SshError::Protocol(e.to_string()))
    }

    /// Ends it: the channel closes, and the shell on the host gets its hang-up.
    pub async fn close(&self) {
        let _ = self.write.eof().await;
        let _ = self.write.close().await;
    }
}

/// A running agent: send requests, receive its frames (responses and pushed samples).
pub struct AgentLink {
    pub caller: AgentCaller,
    pub frames: tokio::sync::mpsc::Receiver<serverware_shared::agent::AgentFrame>,
}

type Pending = Arc<Mutex<HashMap<u64, tokio::sync::oneshot::Sender<AgentResponse>>>>;

/// Sends requests to an agent; cheap to clone. Responses are handed back by whoever reads the
/// link's frames, through [`AgentCaller::deliver`].
#[derive(Clone)]
pub struct AgentCaller {
    lines: tokio::sync::mpsc::Sender<String>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    pending: Pending,
}

impl AgentLink {
    pub async fn send(&mut self, request: AgentRequest) -> Result<u64, SshError> {
        self.caller.send(request).await
    }
}

impl AgentCaller {
    /// Sends a request without waiting for its answer; returns its id.
    pub async fn send(&self, request: AgentRequest) -> Result<u64, SshError> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.send_with_id(id, request).await?;
        Ok(id)
    }

    async fn send_with_id(&self, id: u64, request: AgentRequest) -> Result<(), SshError> {
        let mut line =
            serde_json::to_string(&serverware_shared::agent::AgentRequestFrame { id, request })
                .map_err(|e| SshError::Protocol(e.to_string()))?;
        line.push('\n');
        self.lines
            .send(line)
            .await
            .map_err(|_| SshError::Protocol("the host's agent is not connected".into()))
    }

    /// Whether some request still waits for its answer.
    pub fn busy(&self) -> bool {
        !lock(&self.pending).is_empty()
    }

    /// Sends a request and waits for its answer. An `Error` answer becomes an error.
    pub async fn call(
        &self,
        request: AgentRequest,
        timeout: std::time::Duration,
    ) -> Result<AgentResponse, SshError> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.pending).insert(id, tx);
        if let Err(e) = self.send_with_id(id, request).await {
            lock(&self.pending).remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(AgentResponse::Error { message })) => Err(SshError::Agent(message)),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(SshError::Protocol(
                "the connection to the host was lost".into(),
            )),
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(SshError::Protocol(format!(
                    "the host did not answer within {timeout:?}"
                )))
            }
        }
    }

    /// Hands a response to the call waiting for it; false if nobody waits for that id.
    pub fn deliver(&self, id: u64, response: AgentResponse) -> bool {
        match lock(&self.pending).remove(&id) {
            Some(tx) => {
                let _ = tx.send(response);
                true
            }
            None => false,
        }
    }

    /// Fails every waiting call (the connection ended).
    pub fn fail_all(&self) {
        lock(&self.pending).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_arguments_whole() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's; rm -rf /"), r"'it'\''s; rm -rf /'");
        assert!(same_key(
            "ssh-ed25519 AAAA host1",
            "ssh-ed25519 AAAA other-comment"
        ));
        assert!(!same_key("ssh-ed25519 AAAA", "ssh-ed25519 BBBB"));
        assert!(!same_key("", ""));
    }
}
