//! A simulated host's SSH server: root logs in with the host's password or an authorized key,
//! and the few commands the controller runs on a host are answered as a Debian host with the
//! agent would answer them. Anything else is refused (exit 127), never run.

use crate::{agent, scan, SimHost, AGENT_PATH};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// An OpenSSH public key line.
pub type HostKeyLine = String;

pub(crate) fn config() -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-OpenSSH_9.2p1 fleetsim".into()),
        methods: russh::MethodSet::from(
            &[russh::MethodKind::PublicKey, russh::MethodKind::Password][..],
        ),
        keys: Vec::new(),
        auth_rejection_time: std::time::Duration::from_millis(0),
        auth_rejection_time_initial: Some(std::time::Duration::from_secs(0)),
        max_auth_attempts: 6,
        inactivity_timeout: Some(std::time::Duration::from_secs(3600)),
        ..Default::default()
    }
}

pub(crate) fn new_key() -> russh::keys::PrivateKey {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    russh::keys::PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
        &seed,
    ))
}

/// Accepts connections until the host is powered off (this task is aborted then).
pub(crate) async fn accept(host: Arc<SimHost>, listener: tokio::net::TcpListener) {
    let mut config = config();
    config.keys = vec![host.key.clone()];
    let config = Arc::new(config);
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let _ = sock.set_nodelay(true);
        let (host, config) = (host.clone(), config.clone());
        tokio::spawn(async move {
            let mut power = host.power.subscribe();
            let born = *power.borrow_and_update();
            let handler = Conn {
                host: host.clone(),
                born,
                channels: HashMap::new(),
            };
            let Ok(session) = russh::server::run_stream(config, sock, handler).await else {
                return;
            };
            let mut session = std::pin::pin!(session);
            tokio::select! {
                _ = &mut session => return,
                _ = power.changed() => {}
            }
            // Powered off: the connection stays open and silent (a machine that is off answers
            // nothing), until the host boots again and forgets it.
            let _ = power.changed().await;
        });
    }
}

/// Input for a channel's command: data, then its end (the sender dropped).
struct ChannelState {
    input: Option<mpsc::UnboundedSender<Vec<u8>>>,
    work: Option<tokio::task::AbortHandle>,
}

struct Conn {
    host: Arc<SimHost>,
    born: u64,
    channels: HashMap<ChannelId, ChannelState>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for c in self.channels.values() {
            if let Some(w) = &c.work {
                w.abort();
            }
        }
    }
}

/// Where a command writes: stdout (false) or stderr (true), in order.
pub(crate) type Out = mpsc::UnboundedSender<(bool, Vec<u8>)>;

/// The words of a command line the controller sent: each argument single-quoted (as
/// `ssh::shell_quote` makes them), or plain words without quotes.
pub(crate) fn words(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        ch => cur.push(ch),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            ' ' | '\t' | '\n' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            ch => {
                in_word = true;
                cur.push(ch);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

/// What a command ends with: its exit status.
pub(crate) type Exit = u32;

async fn run_command(
    host: Arc<SimHost>,
    words: Vec<String>,
    mut input: mpsc::UnboundedReceiver<Vec<u8>>,
    out: Out,
    born: u64,
) -> Exit {
    let say = |stderr: bool, text: String| {
        let _ = out.send((stderr, text.into_bytes()));
    };
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["sh", "-c", script, "sh", arg] if script.contains("authorized_keys") => {
            let key = arg
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            if script.contains("grep -vxF") {
                host.lock().authorized.remove(&key);
            } else if key.is_empty() {
                say(true, "not a key\n".into());
                return 1;
            } else {
                host.lock().authorized.insert(key);
            }
            0
        }
        ["sh", "-c", script, "sh", path] if script.contains("cat > \"$1.part\"") => {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            while let Some(d) = input.recv().await {
                h.update(&d);
            }
            let sum = hex::encode(h.finalize());
            host.lock().files.insert(path.to_string(), sum);
            0
        }
        ["sha256sum", path] => match host.lock().files.get(*path) {
            Some(sum) => {
                say(false, format!("{sum}  {path}\n"));
                0
            }
            None => {
                say(
                    true,
                    format!("sha256sum: {path}: No such file or directory\n"),
                );
                1
            }
        },
        ["rm", "-f", path] => {
            host.lock().files.remove(*path);
            0
        }
        ["mv", "-f", from, to] => {
            let mut s = host.lock();
            match s.files.remove(*from) {
                Some(sum) => {
                    s.files.insert(to.to_string(), sum);
                    0
                }
                None => 1,
            }
        }
        [path, rest @ ..] if host.lock().files.contains_key(*path) => match rest {
            [] => agent::serve(host, input, out, born).await,
            ["rootfs-import", name, ..] => {
                let mut bytes = 0u64;
                while let Some(d) = input.recv().await {
                    bytes += d.len() as u64;
                }
                match agent::import(&host, name) {
                    Ok(()) => {
                        say(false, format!("imported {bytes} bytes (simulated host)\n"));
                        0
                    }
                    Err(e) => {
                        say(true, format!("serverware-agent: {e}\n"));
                        1
                    }
                }
            }
            ["rootfs-scan", name, ..] => {
                let mut req = Vec::new();
                while let Some(d) = input.recv().await {
                    req.extend_from_slice(&d);
                }
                match scan::scan(&host, name, &req) {
                    Ok(stream) => {
                        let _ = out.send((false, stream));
                        0
                    }
                    Err(e) => {
                        say(true, format!("serverware-agent: {e}\n"));
                        1
                    }
                }
            }
            ["rootfs-restore", name, ..] => {
                let into = crate::restore::Into::Container(name.to_string());
                finish(
                    &out,
                    crate::restore::restore(&host, into, input, &out).await,
                )
            }
            ["rootfs-standby", id, "--cycle", cycle, ..] => {
                let into = match (id.parse(), cycle.parse()) {
                    (Ok(vps_id), Ok(cycle)) => crate::restore::Into::Standby { vps_id, cycle },
                    _ => {
                        return finish(
                            &out,
                            Err("rootfs-standby takes a VPS id and --cycle".into()),
                        )
                    }
                };
                finish(
                    &out,
                    crate::restore::restore(&host, into, input, &out).await,
                )
            }
            ["--version"] => {
                say(
                    false,
                    format!(
                        "serverware-agent {} protocol {}\n",
                        serverware_shared::BUILD,
                        serverware_shared::agent::PROTOCOL_VERSION
                    ),
                );
                0
            }
            _ => {
                say(
                    true,
                    format!("serverware-agent: {} is not simulated\n", rest.join(" ")),
                );
                1
            }
        },
        [path, ..] if *path == AGENT_PATH => {
            say(true, format!("sh: 1: {path}: not found\n"));
            127
        }
        _ => {
            say(
                true,
                format!("fleetsim: not simulated: {}\n", words.join(" ")),
            );
            127
        }
    }
}

/// A command's end: its error on stderr, and its exit status.
fn finish(out: &Out, r: Result<(), String>) -> Exit {
    match r {
        Ok(()) => 0,
        Err(e) => {
            let _ = out.send((true, format!("serverware-agent: {e}\n").into_bytes()));
            1
        }
    }
}

impl Conn {
    fn start(&mut self, channel: ChannelId, session: &mut Session, words: Vec<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = self.channels.entry(channel).or_insert(ChannelState {
            input: None,
            work: None,
        });
        state.input = Some(tx);
        let handle = session.handle();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(bool, Vec<u8>)>();
        let writer_handle = handle.clone();
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
        let (host, born) = (self.host.clone(), self.born);
        let task = tokio::spawn(async move {
            let code = run_command(host, words, rx, out_tx, born).await;
            let _ = writer.await;
            let _ = handle.exit_status_request(channel, code).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        state.work = Some(task.abort_handle());
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if user == "root" && !self.host.password.is_empty() && password == self.host.password {
            return Ok(Auth::Accept);
        }
        Ok(Auth::Reject {
            proceed_with_methods: None,
            partial_success: false,
        })
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let _ = offer;
        Ok(if user == "root" {
            Auth::Accept
        } else {
            Auth::Reject {
                proceed_with_methods: None,
                partial_success: false,
            }
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let line = key.public_key.to_openssh().unwrap_or_default();
        let b64 = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        if user == "root" && self.host.lock().authorized.contains(&b64) {
            return Ok(Auth::Accept);
        }
        Ok(Auth::Reject {
            proceed_with_methods: None,
            partial_success: false,
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(
            channel.id(),
            ChannelState {
                input: None,
                work: None,
            },
        );
        reply.accept().await;
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
        let words = words(&line).unwrap_or_else(|| vec![line.clone()]);
        self.start(channel, session, words);
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.channels.get(&channel).and_then(|c| c.input.as_ref()) {
            let _ = tx.send(data.to_vec());
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

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn quoted_words_come_back_whole() {
        assert_eq!(
            words("'sha256sum' '/var/lib/a b'").unwrap(),
            ["sha256sum", "/var/lib/a b"]
        );
        assert_eq!(
            words(r"'sh' '-c' 'it'\''s' 'sh' 'x'").unwrap(),
            ["sh", "-c", "it's", "sh", "x"]
        );
        assert!(words("'open").is_none());
    }
}
