//! The SSH command line: `ssh -p 2222 admin@controller vps list`, or an interactive shell.
//!
//! A russh server with its own host key (`ssh_host_ed25519_key` in the data directory, made on
//! first start, the same across restarts). A login by password goes through the dashboard's own
//! login ([`crate::auth::password_login`]: the same back-off, the same audit event, marked
//! `via: ssh`) and makes a session like a browser's; a login by a public key registered in the
//! user's account (Settings, `POST /ssh-keys`) makes one too ([`crate::auth::key_login`]). Every command is `sw`'s
//! ([`serverware_cli`]): parsed by the same command tree, carried out by the same code, over the
//! controller's own REST API with that session. Nothing here implements an operation or checks
//! a field, and roles hold exactly as in the API. The session ends with the connection.

use crate::core::Core;
use clap::Parser;
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId};
use serverware_cli::api::{Api, Exit, Failure};
use serverware_cli::args::{Cli, Command};
use serverware_cli::run::{Ctx, Term};
use serverware_cli::shell::{self, Edit, LineEditor};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Starts the SSH command line on `addr`; the address it listens on.
pub async fn start(
    core: Arc<Core>,
    addr: SocketAddr,
    api_base: String,
) -> anyhow::Result<SocketAddr> {
    use anyhow::Context;
    let key = crate::keys::load_or_create_named(
        &core.config.data_dir,
        crate::keys::HOST_KEY_FILE,
        "serverware-ssh",
    )?;
    let config = Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-SERVERware".into()),
        methods: russh::MethodSet::from(
            &[russh::MethodKind::PublicKey, russh::MethodKind::Password][..],
        ),
        keys: vec![key],
        auth_rejection_time: std::time::Duration::from_secs(1),
        auth_rejection_time_initial: Some(std::time::Duration::from_secs(0)),
        max_auth_attempts: 6,
        inactivity_timeout: Some(std::time::Duration::from_secs(3600)),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen for the SSH command line on {addr} (set SERVERWARE_SSH_LISTEN, or off)"
        )
    })?;
    let bound = listener.local_addr()?;
    // The controller's own API, reached the way any client reaches it (a certificate made for
    // its public name is accepted on this local hop).
    let api = Api::new(&api_base, None, true).map_err(|e| anyhow::anyhow!("{e}"))?;
    let waiting = Arc::new(std::sync::Mutex::new(Waiting::default()));
    tokio::spawn(async move {
        loop {
            let (sock, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("the SSH command line cannot accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            };
            if core.stopping.is_stopping() {
                return;
            }
            // Connections that have not logged in are few and short: a flood of them is
            // closed at once instead of taking the controller's descriptors.
            let Some(slot) = Waiting::take(&waiting, peer.ip()) else {
                tracing::debug!(%peer, "SSH connection closed: too many connections not logged in");
                drop(sock);
                continue;
            };
            let handle: HandleSlot = Arc::new(std::sync::OnceLock::new());
            let authed = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let handler = Conn {
                core: core.clone(),
                api: api.clone(),
                peer,
                login: None,
                channels: HashMap::new(),
                waiting: Some(slot),
                handle: handle.clone(),
                authed: authed.clone(),
            };
            let config = config.clone();
            tokio::spawn(async move {
                let begun = tokio::time::Instant::now();
                let session = match tokio::time::timeout(
                    LOGIN_GRACE,
                    russh::server::run_stream(config, sock, handler),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "SSH connection refused: {e}");
                        return;
                    }
                    Err(_) => return, // no SSH greeting in time: closed (the handler with it)
                };
                let h = session.handle();
                let _ = handle.set(h.clone());
                let mut session = std::pin::pin!(session);
                tokio::select! {
                    r = &mut session => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, "SSH connection ended: {e}");
                        }
                        return;
                    }
                    _ = tokio::time::sleep_until(begun + LOGIN_GRACE) => {}
                }
                if !authed.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        h.disconnect(
                            russh::Disconnect::ByApplication,
                            format!("no login within {} s", LOGIN_GRACE.as_secs()),
                            "en".into(),
                        ),
                    )
                    .await;
                }
                if let Err(e) = session.await {
                    tracing::debug!(%peer, "SSH connection ended: {e}");
                }
            });
        }
    });
    Ok(bound)
}

struct Login {
    username: String,
    secret: String,
}

/// How long a connection may take to log in (OpenSSH's `LoginGraceTime` is 120 s).
const LOGIN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);
/// Connections not logged in yet, in all and from one address (OpenSSH's `MaxStartups` is 10
/// in all).
const MAX_WAITING: usize = 64;
const MAX_WAITING_PER_ADDRESS: usize = 8;

/// The connections that have not logged in yet.
#[derive(Default)]
struct Waiting {
    total: usize,
    by_address: HashMap<std::net::IpAddr, usize>,
}

/// One of them: its place is given back when it logs in or ends.
struct WaitingSlot {
    waiting: Arc<std::sync::Mutex<Waiting>>,
    ip: std::net::IpAddr,
}

impl Waiting {
    fn take(w: &Arc<std::sync::Mutex<Waiting>>, ip: std::net::IpAddr) -> Option<WaitingSlot> {
        let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
        let here = g.by_address.get(&ip).copied().unwrap_or(0);
        if g.total >= MAX_WAITING || here >= MAX_WAITING_PER_ADDRESS {
            return None;
        }
        g.total += 1;
        g.by_address.insert(ip, here + 1);
        Some(WaitingSlot {
            waiting: w.clone(),
            ip,
        })
    }
}

impl Drop for WaitingSlot {
    fn drop(&mut self) {
        let mut g = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        g.total = g.total.saturating_sub(1);
        if let Some(n) = g.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.by_address.remove(&self.ip);
            }
        }
    }
}

/// A refusal that lets the client try again on the same connection (as OpenSSH's own server
/// does: a mistyped password is asked again), up to `max_auth_attempts`; russh's default would
/// strike the method off after one try.
fn again() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(russh::MethodSet::from(
            &[russh::MethodKind::PublicKey, russh::MethodKind::Password][..],
        )),
        partial_success: false,
    }
}

/// The session's handle, once it runs (to end it from inside the handler).
type HandleSlot = Arc<std::sync::OnceLock<russh::server::Handle>>;

/// Input packets waiting for the command (at most 32 KiB each): a client that sends more than
/// it reads loses its input, not the controller's memory.
const INPUT_QUEUE: usize = 64;
/// The longest line read without a terminal.
const MAX_RAW_LINE: usize = 64 << 10;

#[derive(Default)]
struct ChannelState {
    pty: bool,
    /// The terminal's size (columns, rows), as the client last said.
    size: (u16, u16),
    /// Where a change of size goes (a console follows it).
    sizes: Option<tokio::sync::watch::Sender<(u16, u16)>>,
    /// Input for the command or shell running on it.
    input: Option<mpsc::Sender<Vec<u8>>>,
    /// The command or shell running on it, ended with the channel.
    work: Option<tokio::task::AbortHandle>,
}

/// One SSH connection.
struct Conn {
    core: Arc<Core>,
    api: Api,
    peer: SocketAddr,
    login: Option<Login>,
    channels: HashMap<ChannelId, ChannelState>,
    /// Its place among the connections not logged in yet (None once logged in).
    waiting: Option<WaitingSlot>,
    handle: HandleSlot,
    authed: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for c in self.channels.values() {
            if let Some(w) = &c.work {
                w.abort();
            }
        }
        // The session ends with the connection.
        if let Some(l) = self.login.take() {
            let core = self.core.clone();
            tokio::spawn(async move {
                let hash = crate::auth::secret_hash(&l.secret);
                let _ = core
                    .db
                    .run(move |c| crate::repo::users::end_session_by_hash(c, &hash))
                    .await;
            });
        }
    }
}

impl Conn {
    fn logged_in(&mut self, username: String, secret: String) {
        self.login = Some(Login { username, secret });
        self.waiting = None;
        self.authed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// A client locked out by the login back-off is told so, and why it must wait, instead of
    /// a bare "Permission denied": the connection ends with that message.
    async fn refused(&self, e: &crate::error::Error) {
        if let crate::error::Error::LockedOut { retry_after_secs } = e {
            if let Some(h) = self.handle.get().cloned() {
                let text = format!(
                    "too many failed logins for this user or from this address: try again in {retry_after_secs} s"
                );
                // Queued now: it follows the refusal (a client that asks again reads it).
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    h.disconnect(
                        russh::Disconnect::NoMoreAuthMethodsAvailable,
                        text,
                        "en".into(),
                    ),
                )
                .await;
            }
        }
    }

    fn api(&self) -> Option<Api> {
        self.login.as_ref().map(|l| {
            self.api.with_cookie(format!(
                "{}={}",
                serverware_shared::SESSION_COOKIE,
                l.secret
            ))
        })
    }

    /// Runs `work` on `channel` with a terminal of its own; then its exit status, and the
    /// channel ends.
    fn spawn(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
        work: impl FnOnce(
                SshTerm,
                Api,
                String,
            ) -> std::pin::Pin<Box<dyn std::future::Future<Output = u32> + Send>>
            + Send
            + 'static,
    ) {
        let (Some(api), Some(user)) = (self.api(), self.login.as_ref().map(|l| l.username.clone()))
        else {
            return;
        };
        let state = self.channels.entry(channel).or_default();
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        state.input = Some(tx);
        let (size_tx, sizes) = tokio::sync::watch::channel(if state.size.0 > 0 {
            state.size
        } else {
            (80, 24)
        });
        state.sizes = Some(size_tx);
        let handle = session.handle();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(bool, Vec<u8>)>();
        let writer_handle = handle.clone();
        // Output in order: one writer per channel.
        let writer = tokio::spawn(async move {
            while let Some((stderr, data)) = out_rx.recv().await {
                let r = if stderr {
                    writer_handle.extended_data(channel, 1, data).await
                } else {
                    writer_handle.data(channel, data).await
                };
                if r.is_err() {
                    break;
                }
            }
        });
        let term = SshTerm {
            out: out_tx,
            input: rx,
            pending: Vec::new(),
            pty: state.pty,
            sizes,
            editor: LineEditor::new(),
            closed: false,
        };
        let task = tokio::spawn(async move {
            let code = work(term, api, user).await;
            let _ = writer.await;
            let _ = handle.exit_status_request(channel, code).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        state.work = Some(task.abort_handle());
    }
}

/// A channel as `sw`'s terminal: output to the client (CR LF on a terminal), input from it.
struct SshTerm {
    out: mpsc::UnboundedSender<(bool, Vec<u8>)>,
    input: mpsc::Receiver<Vec<u8>>,
    /// Input received beyond the last line read.
    pending: Vec<u8>,
    pty: bool,
    /// The terminal's size as it changes.
    sizes: tokio::sync::watch::Receiver<(u16, u16)>,
    editor: LineEditor,
    closed: bool,
}

impl SshTerm {
    fn send(&self, stderr: bool, text: &str) {
        let data = if self.pty {
            text.replace('\n', "\r\n").into_bytes()
        } else {
            text.as_bytes().to_vec()
        };
        // On a terminal both streams are the screen; kept in one, they stay in order.
        let _ = self.out.send((stderr && !self.pty, data));
    }

    /// A line typed on the terminal, edited (None: the end, or Ctrl-C).
    async fn edited_line(&mut self, prompt: &str, secret: bool) -> Option<String> {
        self.send(false, prompt);
        self.editor.reset(secret);
        loop {
            let data = if self.pending.is_empty() {
                if self.closed {
                    return None;
                }
                match self.input.recv().await {
                    Some(d) => d,
                    None => {
                        self.closed = true;
                        return None;
                    }
                }
            } else {
                std::mem::take(&mut self.pending)
            };
            let edits = self.editor.feed(&data);
            // What came after the line waits for the next read.
            self.pending = self.editor.take_rest();
            for e in edits {
                match e {
                    Edit::Show(b) => {
                        let _ = self.out.send((false, b));
                    }
                    Edit::Redraw(line) => self.send(false, &format!("{prompt}{line}")),
                    Edit::Line(l) => return Some(l),
                    Edit::Interrupt => return Some(String::new()),
                    Edit::End => return None,
                }
            }
        }
    }

    /// A line of raw input (no terminal).
    async fn raw_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Some(
                    String::from_utf8_lossy(&line)
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                );
            }
            if self.pending.len() > MAX_RAW_LINE {
                // No line ends in sight: the rest of the input is not read.
                self.pending.clear();
                self.closed = true;
                return None;
            }
            if self.closed {
                if self.pending.is_empty() {
                    return None;
                }
                let line = std::mem::take(&mut self.pending);
                return Some(String::from_utf8_lossy(&line).to_string());
            }
            match self.input.recv().await {
                Some(d) => self.pending.extend_from_slice(&d),
                None => self.closed = true,
            }
        }
    }
}

impl Term for SshTerm {
    fn out(&mut self, text: &str) {
        self.send(false, &format!("{text}\n"));
    }

    fn err(&mut self, text: &str) {
        self.send(true, &format!("{text}\n"));
    }

    fn interactive(&self) -> bool {
        self.pty
    }

    fn progress(&mut self, text: &str) {
        self.send(false, &format!("\r\x1b[2K{text}"));
    }

    async fn read_line(&mut self, prompt: &str, secret: bool) -> Option<String> {
        if self.pty {
            self.edited_line(prompt, secret).await
        } else {
            self.raw_line().await
        }
    }
}

/// A size a client gave, within what a terminal can be.
fn terminal_size(cols: u32, rows: u32) -> (u16, u16) {
    (
        cols.clamp(1, u32::from(u16::MAX)) as u16,
        rows.clamp(1, u32::from(u16::MAX)) as u16,
    )
}

/// `vps console NAME` on this SSH channel: its keys and window go to the VPS's console socket
/// (through this controller's own API, as the SSH login), its output to the channel.
async fn console(term: &mut SshTerm, api: &Api, vps: &str) -> u32 {
    if !term.pty {
        term.err("sw: a console needs a terminal: connect with ssh -t");
        return Exit::Usage.code() as u32;
    }
    let id = match vps.parse::<i64>() {
        Ok(id) => Ok(id),
        Err(_) => api.get("/vpses").await.and_then(|all| {
            all.as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == vps)
                .and_then(|v| v["id"].as_i64())
                .ok_or_else(|| Failure::new(Exit::NotFound, format!("no VPS named '{vps}'")))
        }),
    };
    let id = match id {
        Ok(id) => id,
        Err(f) => {
            term.err(&format!("sw: {}", f.message));
            return f.exit.code() as u32;
        }
    };
    term.err(&format!(
        "Console to {vps}: a root shell inside it (audited). Ctrl-] ends it."
    ));
    let out = term.out.clone();
    let io = serverware_cli::console::Io {
        keys: &mut term.input,
        sizes: term.sizes.clone(),
        screen: Box::new(move |b: &[u8]| {
            out.send((false, b.to_vec()))
                .map_err(|_| std::io::Error::other("the channel closed"))
        }),
    };
    match serverware_cli::console::bridge(api, id, io).await {
        Ok(why) => {
            term.err(&format!("\n[console to {vps} closed: {why}]"));
            0
        }
        Err(f) => {
            term.err(&format!("sw: {}", f.message));
            f.exit.code() as u32
        }
    }
}

/// Runs one command line (its words) for the user; its exit code.
async fn one(term: &mut SshTerm, api: &Api, words: Vec<String>) -> u32 {
    if let [vps, console_word, name] = words.as_slice() {
        if vps == "vps" && console_word == "console" {
            return console(term, api, name).await;
        }
    }
    // Here every command runs as the SSH login, on this controller: a flag naming another
    // controller or identity is refused, never silently ignored.
    if let Some(w) = words.iter().take_while(|w| *w != "--").find(|w| {
        ["--url", "--token", "--insecure"]
            .iter()
            .any(|f| *w == f || w.starts_with(&format!("{f}=")))
    }) {
        let flag = w.split('=').next().unwrap_or(w);
        term.err(&format!(
            "sw: {flag} is for sw on your own machine; over SSH you act as your SSH login on this controller"
        ));
        return Exit::Usage.code() as u32;
    }
    let cli = match Cli::try_parse_from(std::iter::once("sw".to_string()).chain(words)) {
        Ok(c) => c,
        Err(e) => {
            let text = e.render().to_string();
            let ok = !e.use_stderr();
            if ok {
                term.out(text.trim_end());
            } else {
                term.err(text.trim_end());
            }
            return if ok { 0 } else { Exit::Usage.code() as u32 };
        }
    };
    if let Command::Login { .. }
    | Command::Logout
    | Command::Site(_)
    | Command::Completions { .. } = cli.command
    {
        term.err("login, logout, site and completions are for sw on your own machine; here you are logged in already");
        return Exit::Usage.code() as u32;
    }
    let mut ctx = Ctx {
        api,
        json: cli.json,
        yes: cli.yes,
        term,
        files: false,
    };
    match serverware_cli::run::execute(&mut ctx, cli.command).await {
        Ok(()) => 0,
        Err(f) => {
            ctx.term.err(&format!("sw: {}", f.message));
            f.exit.code() as u32
        }
    }
}

/// The interactive shell: a prompt, the line editor, each line a command; `exit` ends it.
async fn shell_loop(mut term: SshTerm, api: Api, user: String) -> u32 {
    if term.pty {
        term.out(&format!(
            "SERVERware command line. Logged in as {user}. Type help, a command such as `vps list`, or exit."
        ));
    }
    let prompt = format!("{user}@serverware> ");
    let mut last = 0;
    loop {
        let line = if term.pty {
            term.edited_line(&prompt, false).await
        } else {
            term.raw_line().await
        };
        let Some(line) = line else { break };
        let words = match shell::split_words(&line) {
            Ok(w) => w,
            Err(e) => {
                term.err(&e);
                continue;
            }
        };
        match words.first().map(String::as_str) {
            None => continue,
            Some("exit" | "quit" | "logout") => break,
            Some("help") if words.len() == 1 => {
                last = one(&mut term, &api, vec!["--help".into()]).await;
                continue;
            }
            _ => {}
        }
        last = one(&mut term, &api, words).await;
    }
    last
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    /// An address locked out by the login back-off is told so before it tries.
    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(self
            .core
            .login_limiter
            .check("", Some(self.peer.ip()), std::time::Instant::now())
            .err()
            .map(|wait| {
                format!(
                    "Too many failed logins from {}: try again in {} s.\n",
                    self.peer.ip(),
                    wait.as_secs().max(1)
                )
            }))
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        match crate::auth::password_login(
            &self.core.db,
            &self.core.login_limiter,
            user,
            password.to_string(),
            Some(self.peer.ip()),
            Some(crate::auth::SSH_SESSION_AGENT.to_string()),
            Some("ssh"),
        )
        .await
        {
            Ok((u, secret)) => {
                self.logged_in(u.username, secret);
                Ok(Auth::Accept)
            }
            Err(e) => {
                tracing::info!(peer = %self.peer, "SSH login refused: {}", e.message());
                self.refused(&e).await;
                Ok(again())
            }
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Whether it is a key of this user is decided once the client proved it holds it.
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fp = key
            .public_key
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string();
        match crate::auth::key_login(
            &self.core.db,
            &self.core.login_limiter,
            user,
            fp,
            Some(self.peer.ip()),
        )
        .await
        {
            Ok((u, secret)) => {
                self.logged_in(u.username, secret);
                Ok(Auth::Accept)
            }
            Err(e) => {
                self.refused(&e).await;
                Ok(again())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), ChannelState::default());
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let c = self.channels.entry(channel).or_default();
        c.pty = true;
        c.size = terminal_size(col_width, row_height);
        session.channel_success(channel)?;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(c) = self.channels.get_mut(&channel) {
            c.size = terminal_size(col_width, row_height);
            if let Some(s) = &c.sizes {
                let _ = s.send(c.size);
            }
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        self.spawn(channel, session, |term, api, user| {
            Box::pin(shell_loop(term, api, user))
        });
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let line = String::from_utf8_lossy(data).into_owned();
        self.spawn(channel, session, move |mut term, api, user| {
            Box::pin(async move {
                match shell::split_words(&line) {
                    Ok(words) if words.is_empty() => shell_loop(term, api, user).await,
                    Ok(words) => one(&mut term, &api, words).await,
                    Err(e) => {
                        term.err(&format!("sw: {e}"));
                        Exit::Usage.code() as u32
                    }
                }
            })
        });
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(c) = self.channels.get_mut(&channel) {
            if let Some(tx) = &c.input {
                if tx.try_send(data.to_vec()).is_err() {
                    // Not read fast enough (or no longer read): the input ends here.
                    c.input = None;
                }
            }
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(c) = self.channels.get_mut(&channel) {
            c.input = None;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(w) = self.channels.remove(&channel).and_then(|c| c.work) {
            w.abort();
        }
        Ok(())
    }
}
