//! netMON's service checks, run by the controller (against a VPS's address on the site's
//! network) and by an agent (inside a failover drill's isolated network): an ICMP echo to the
//! VPS's address (a raw socket when running as root; else the unprivileged ping socket where the
//! kernel allows it), then a TCP connect to each port the VPS names. Nothing reaches a shell.
//! Blocking: run them on a thread of their own.

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

/// A number unlikely to repeat between probes (the echo's id and sequence).
fn nonce() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// A socket for ICMP echoes: raw when running as root, else the kernel's unprivileged ping
/// socket; and whether it is raw (a raw socket hands over every ICMP message with its IP
/// header; a ping socket only its own replies, without).
pub fn icmp_socket() -> Result<(socket2::Socket, bool), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
        Ok(s) => Ok((s, true)),
        Err(_) => Ok((
            Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4))
                .map_err(|e| format!("icmp: no socket for it ({e}): run as root"))?,
            false,
        )),
    }
}

/// An ICMP echo request with this id and sequence number.
pub fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut pkt = vec![8u8, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"serverware netMON");
    let c = checksum(&pkt);
    pkt[2..4].copy_from_slice(&c.to_be_bytes());
    pkt
}

/// The id and sequence number of an echo reply as `icmp_socket` received it (`raw`: with its
/// IP header); None for anything else.
pub fn echo_reply(data: &[u8], raw: bool) -> Option<(u16, u16)> {
    let icmp = if raw {
        let ihl = usize::from(data.first().map(|b| b & 0x0f).unwrap_or(5)) * 4;
        data.get(ihl..)?
    } else {
        data
    };
    (icmp.len() >= 8 && icmp[0] == 0).then(|| {
        (
            u16::from_be_bytes([icmp[4], icmp[5]]),
            u16::from_be_bytes([icmp[6], icmp[7]]),
        )
    })
}

/// An ICMP echo to `ip`: Ok when it answered in time.
pub fn ping(ip: Ipv4Addr) -> Result<(), String> {
    let (sock, raw) = icmp_socket()?;
    let n = nonce();
    let (id, seq) = ((n >> 16) as u16, n as u16);
    let pkt = echo_request(id, seq);
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
        // The ping socket rewrites the id (and hands over only its own replies).
        match echo_reply(&data, raw) {
            Some((got_id, got_seq)) if got_seq == seq && (!raw || got_id == id) => return Ok(()),
            _ => continue,
        }
    }
}

/// A TCP connect to `ip`:`port`: Ok when it was accepted in time.
pub fn tcp(ip: Ipv4Addr, port: u16) -> Result<(), String> {
    let addr = SocketAddr::V4(SocketAddrV4::new(ip, port));
    match std::net::TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(format!("tcp/{port}: no answer")),
        Err(e) => Err(format!("tcp/{port}: {e}")),
    }
}

/// Whether the VPS at `ip` answers: the ICMP echo, then every TCP port. The first failure, said.
pub fn check(ip: Ipv4Addr, ports: &[u16]) -> Result<(), String> {
    ping(ip)?;
    for p in ports {
        tcp(ip, *p)?;
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

    #[test]
    fn loopback_answers_and_a_closed_port_is_named() {
        ping(Ipv4Addr::LOCALHOST).expect("loopback answers an echo");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap().port();
        assert!(check(Ipv4Addr::LOCALHOST, &[open]).is_ok());
        drop(l);
        let e = check(Ipv4Addr::LOCALHOST, &[open]).unwrap_err();
        assert!(e.starts_with(&format!("tcp/{open}:")), "{e}");
    }
}
