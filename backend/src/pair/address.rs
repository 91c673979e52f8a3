//! The site's service address: one IPv4 address that the leader of the pair holds on its
//! network interface, so that browsers, `sw` and the SSH command line reach whichever controller
//! leads. The leader adds it once it serves and announces it with gratuitous ARP (so that
//! neighbours' caches point to its MAC at once); it removes it before its lease can run out
//! (when it steps down, hands over or stops) and a starting controller removes it first (a
//! crashed run may have left it). Programs run with argument vectors (`ip`); the ARP frames go
//! out on a packet socket.

pub use crate::config::ServiceAddress;
use std::net::Ipv4Addr;
use std::process::Command;

impl ServiceAddress {
    fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.prefix)
    }

    /// Adds the address (again, if it is there) and announces it.
    pub fn take(&self) -> Result<(), String> {
        ip(&["addr", "replace", &self.cidr(), "dev", &self.interface])?;
        // Three announcements a little apart: one lost frame does not leave a stale cache.
        for i in 0..3 {
            if i > 0 {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            gratuitous_arp(&self.interface, self.ip)
                .map_err(|e| format!("cannot announce {} on {}: {e}", self.ip, self.interface))?;
        }
        Ok(())
    }

    /// Removes the address if this machine holds it.
    pub fn release(&self) -> Result<(), String> {
        if !self.held() {
            return Ok(());
        }
        ip(&["addr", "del", &self.cidr(), "dev", &self.interface])
    }

    /// Whether the interface holds the address now.
    pub fn held(&self) -> bool {
        let out = Command::new("ip")
            .args(["-o", "-4", "addr", "show", "dev", &self.interface])
            .output();
        let want = format!(" {} ", self.cidr());
        out.is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split("inet")
                .any(|part| part.starts_with(&want))
        })
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The ARP frame announcing that `ip` is at `mac`: a request whose sender and target are both
/// `ip`, to everyone.
pub fn announcement(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // Target MAC stays zero.
    f[38..42].copy_from_slice(&ip.octets());
    f
}

fn gratuitous_arp(interface: &str, ip: Ipv4Addr) -> std::io::Result<()> {
    let sys = std::path::Path::new("/sys/class/net").join(interface);
    let index: i32 = std::fs::read_to_string(sys.join("ifindex"))?
        .trim()
        .parse()
        .map_err(|_| std::io::Error::other("no interface index"))?;
    let mac_text = std::fs::read_to_string(sys.join("address"))?;
    let mut mac = [0u8; 6];
    for (i, part) in mac_text.trim().split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16).map_err(|_| std::io::Error::other("odd MAC"))?;
    }
    let frame = announcement(mac, ip);
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: plain socket calls on a descriptor this function owns and closes; the address
    // structure is fully initialised and its size is passed.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = index;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let sent = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if sent < 0 {
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announcement_says_the_address_is_at_this_mac() {
        let mac = [2, 0x53, 0x57, 0, 0, 1];
        let f = announcement(mac, Ipv4Addr::new(10, 77, 5, 200));
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[10, 77, 5, 200]);
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[10, 77, 5, 200]);
    }
}
