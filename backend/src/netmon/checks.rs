//! netMON's service checks, from the controller: an ICMP echo to the VPS's address, then a TCP
//! connect to each port it names (shared's probe rules and packets). Asynchronous, and every
//! echo goes through one ICMP socket whose replies one task hands to the check waiting for
//! them: a thousand HA VPSes checked each second took a thread, a socket and two wake-ups
//! each when every check blocked a thread of its own.

use serverware_shared::probe::{echo_reply, echo_request, icmp_socket, PROBE_TIMEOUT};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

/// The checks' ICMP socket and the echoes waiting for their replies; its reading task ends
/// when it is dropped.
pub struct Checker {
    shared: Arc<Shared>,
    reader: tokio::task::AbortHandle,
}

struct Shared {
    fd: AsyncFd<socket2::Socket>,
    /// A raw socket (as root): every ICMP message arrives, with its IP header, and only those
    /// carrying `id` are ours. A ping socket gets only its own replies (the kernel sets the id).
    raw: bool,
    id: u16,
    seq: AtomicU16,
    /// (address, sequence number) → the check waiting for that reply.
    waiting: Mutex<HashMap<(Ipv4Addr, u16), oneshot::Sender<()>>>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Checker {
    /// Opens the socket and starts reading replies (inside the runtime).
    pub fn open() -> Result<Checker, String> {
        let (sock, raw) = icmp_socket()?;
        sock.set_nonblocking(true)
            .map_err(|e| format!("icmp: {e}"))?;
        // A second's replies of a large site, while the reader is busy: room for them.
        let _ = sock.set_recv_buffer_size(1 << 20);
        // SAFETY: the socket owns its descriptor and the AsyncFd owns the socket for as long
        // as it lives; nothing else closes or replaces it.
        let fd = unsafe { AsyncFd::register(sock) }.map_err(|e| format!("icmp: {e}"))?;
        let shared = Arc::new(Shared {
            fd,
            raw,
            id: (std::process::id() as u16) ^ 0x5357,
            seq: AtomicU16::new(0),
            waiting: Mutex::new(HashMap::new()),
        });
        let reader = tokio::spawn(read_replies(shared.clone())).abort_handle();
        Ok(Checker { shared, reader })
    }

    /// Whether the VPS at `ip` answers: the ICMP echo, then every TCP port. The first failure,
    /// said.
    pub async fn check(&self, ip: Ipv4Addr, ports: &[u16]) -> Result<(), String> {
        self.ping(ip).await?;
        for p in ports {
            tcp(ip, *p).await?;
        }
        Ok(())
    }

    /// An ICMP echo to `ip`: Ok when it answered within [`PROBE_TIMEOUT`].
    pub async fn ping(&self, ip: Ipv4Addr) -> Result<(), String> {
        let s = &self.shared;
        let seq = s.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&s.waiting).insert((ip, seq), tx);
        // Forgotten however this ends (answered, timed out, or the check dropped).
        struct Forget<'a>(&'a Shared, (Ipv4Addr, u16));
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                lock(&self.0.waiting).remove(&self.1);
            }
        }
        let _forget = Forget(s, (ip, seq));
        let pkt = echo_request(s.id, seq);
        let to: socket2::SockAddr = SocketAddr::V4(SocketAddrV4::new(ip, 0)).into();
        let sent = tokio::time::timeout(PROBE_TIMEOUT, async {
            loop {
                let mut ready = s.fd.writable().await?;
                match ready.try_io(|fd| fd.get_ref().send_to(&pkt, &to)) {
                    Ok(r) => return r,
                    Err(_would_block) => continue,
                }
            }
        })
        .await;
        match sent {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("icmp: {e}")),
            Err(_) => return Err("icmp: no answer".into()),
        }
        match tokio::time::timeout(PROBE_TIMEOUT, rx).await {
            Ok(Ok(())) => Ok(()),
            _ => Err("icmp: no answer".into()),
        }
    }
}

/// Hands each echo reply to the check waiting for it, for as long as the checker lives.
async fn read_replies(s: Arc<Shared>) {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    loop {
        let mut ready = match s.fd.readable().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("netMON's ICMP socket failed: {e}");
                return;
            }
        };
        let (n, from) = match ready.try_io(|fd| fd.get_ref().recv_from(&mut buf)) {
            Ok(Ok(r)) => r,
            // An error queued on the socket (an unreachable address): that check times out.
            Ok(Err(_)) => continue,
            Err(_would_block) => continue,
        };
        // SAFETY: recv_from initialised the first `n` bytes.
        let data: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        let (Some(from), Some((id, seq))) = (from.as_socket_ipv4(), echo_reply(data, s.raw)) else {
            continue;
        };
        if s.raw && id != s.id {
            continue;
        }
        if let Some(tx) = lock(&s.waiting).remove(&(*from.ip(), seq)) {
            let _ = tx.send(());
        }
    }
}

/// A TCP connect to `ip`:`port`: Ok when it was accepted within [`PROBE_TIMEOUT`].
async fn tcp(ip: Ipv4Addr, port: u16) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect((ip, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("tcp/{port}: {e}")),
        Err(_) => Err(format!("tcp/{port}: no answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn many_checks_at_once_each_get_their_own_answer() {
        let c = Checker::open().expect("an ICMP socket (the tests run as root)");
        // Fifty loopback addresses at once: every one answers, each to its own check.
        let all =
            futures_util::future::join_all((1..=50u8).map(|i| c.ping(Ipv4Addr::new(127, 0, 0, i))))
                .await;
        assert!(all.iter().all(Result::is_ok), "{all:?}");
        assert!(lock(&c.shared.waiting).is_empty(), "nothing left waiting");

        // A port that listens answers; one that does not is named.
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = open.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        c.check(Ipv4Addr::LOCALHOST, &[port]).await.unwrap();
        let err = c
            .check(Ipv4Addr::LOCALHOST, &[port, closed])
            .await
            .expect_err("a closed port");
        assert!(err.starts_with(&format!("tcp/{closed}:")), "{err}");
    }
}
