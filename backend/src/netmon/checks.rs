//! netMON's service checks, from the controller: an ICMP echo to the VPS's address (a raw
//! socket, as the controller runs as root; else the unprivileged ping socket where the kernel
//! allows it), then a TCP connect to each port the VPS names. Nothing reaches a shell.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// How long one probe waits for its answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in b.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum = sum.wrapping_add(u32::from(word));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo to `ip`: Ok when it answered in time. Blocking (run it on a blocking thread).
pub fn ping(ip: Ipv4Addr) -> Result<(), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (sock, raw) = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
        Ok(s) => (s, true),
        Err(_) => (
            Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4))
                .map_err(|e| format!("icmp: no socket for it ({e}): run the controller as root"))?,
            false,
        ),
    };
    let id = (std::process::id() as u16) ^ (rand::random::<u16>());
    let seq = rand::random::<u16>();
    let mut pkt = vec![8u8, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"serverware netMON");
    let c = checksum(&pkt);
    pkt[2..4].copy_from_slice(&c.to_be_bytes());
    let to = SocketAddr::V4(SocketAddrV4::new(ip, 0));
    sock.send_to(&pkt, &to.into())
        .map_err(|e| format!("icmp: {e}"))?;
    let end = Instant::now() + PROBE_TIMEOUT;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("icmp: no answer".into());
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| format!("icmp: {e}"))?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("icmp: no answer".into())
            }
            Err(e) => return Err(format!("icmp: {e}")),
        };
        // SAFETY: recv_from initialised the first `n` bytes.
        let data: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if from.as_socket_ipv4().map(|a| *a.ip()) != Some(ip) {
            continue;
        }
        // A raw socket hands over the IP header too; the ping socket only the ICMP message
        // (and rewrites its id).
        let icmp = if raw {
            let ihl = usize::from(data.first().map(|b| b & 0x0f).unwrap_or(5)) * 4;
            data.get(ihl..).unwrap_or(&[])
        } else {
            &data[..]
        };
        if icmp.len() >= 8 && icmp[0] == 0 && icmp[6..8] == seq.to_be_bytes() {
            if raw && icmp[4..6] != id.to_be_bytes() {
                continue;
            }
            return Ok(());
        }
    }
}

/// Whether the VPS at `ip` answers: the ICMP echo, then every TCP port. The first failure, said.
pub async fn check(ip: Ipv4Addr, ports: &[u16]) -> Result<(), String> {
    tokio::task::spawn_blocking(move || ping(ip))
        .await
        .map_err(|e| format!("icmp: {e}"))??;
    for p in ports {
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, *p));
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("tcp/{p}: {e}")),
            Err(_) => return Err(format!("tcp/{p}: no answer")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_icmp_checksum_is_the_internet_one() {
        // An echo request with id 1, seq 1 and no payload: 0xf7fd.
        assert_eq!(checksum(&[8, 0, 0, 0, 0, 1, 0, 1]), 0xf7fd);
        let mut p = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 9, b'x'];
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&p), 0);
    }

    #[tokio::test]
    async fn loopback_answers_and_a_closed_port_is_named() {
        ping(Ipv4Addr::LOCALHOST).expect("loopback answers an echo");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap().port();
        assert!(check(Ipv4Addr::LOCALHOST, &[open]).await.is_ok());
        drop(l);
        let e = check(Ipv4Addr::LOCALHOST, &[open]).await.unwrap_err();
        assert!(e.starts_with(&format!("tcp/{open}:")), "{e}");
    }
}
