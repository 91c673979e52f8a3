//! A failover drill's isolated network on this host: a bridge with no uplink (the drill's
//! container joins it with the live VPS's own address, which therefore conflicts with nothing),
//! and a network namespace on it holding one more address of the VPS's network, from which
//! netMON's checks are run. Made and removed with `ip` (argument vectors, names from
//! [`drill_names`]); nothing here opens a path inside the drill's container.

use serverware_shared::agent::{drill_names, DrillNames, DRILL_MAX};
use serverware_shared::validate;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

fn names(drill: u64) -> Result<DrillNames, String> {
    if drill == 0 || drill > DRILL_MAX {
        return Err(format!("drill number {drill} is out of range"));
    }
    Ok(drill_names(drill))
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn netns_path(n: &DrillNames) -> std::path::PathBuf {
    Path::new("/run/netns").join(&n.netns)
}

/// The drill's network, made (idempotent): the bridge, the probe's namespace and its veth with
/// `probe` (`address/prefix`) on it.
pub fn up(drill: u64, probe: &str) -> Result<(), String> {
    let n = names(drill)?;
    let (addr, prefix) = probe
        .split_once('/')
        .ok_or_else(|| format!("'{probe}' is not address/prefix"))?;
    validate::exact("probe", addr, validate::ipv4_address).map_err(|e| e.to_string())?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (8..=30).contains(p))
        .ok_or_else(|| format!("'{prefix}' is not a prefix length of 8–30"))?;
    let cidr = format!("{addr}/{prefix}");
    if !link_exists(&n.bridge) {
        ip(&["link", "add", "name", &n.bridge, "type", "bridge"])?;
    }
    // The host has no address on the bridge: no IPv4 one is given, and the IPv6 link-local one
    // the kernel would give it is turned off before it comes up (absent when IPv6 is off).
    let v6 = Path::new("/proc/sys/net/ipv6/conf")
        .join(&n.bridge)
        .join("disable_ipv6");
    if v6.exists() {
        std::fs::write(&v6, "1")
            .map_err(|e| format!("cannot turn IPv6 off on {}: {e}", n.bridge))?;
    }
    ip(&["link", "set", &n.bridge, "up"])?;
    // Made afresh: a name left by a crash may no longer hold a namespace (its mount gone), and
    // nothing runs in the drill's network before this. The veth pair goes first (at once, both
    // ends; a namespace's own interfaces go in the background).
    let (host_end, probe_end) = (&n.probe_veth.0, &n.probe_veth.1);
    delete_link(host_end)?;
    if netns_path(&n).exists() {
        ip(&["netns", "delete", &n.netns])?;
    }
    ip(&["netns", "add", &n.netns])?;
    ip(&[
        "link", "add", host_end, "type", "veth", "peer", "name", probe_end, "netns", &n.netns,
    ])?;
    ip(&["link", "set", host_end, "master", &n.bridge, "up"])?;
    let inside = ["-n", n.netns.as_str()];
    let with = |rest: &[&str]| -> Result<(), String> {
        let mut a: Vec<&str> = inside.to_vec();
        a.extend_from_slice(rest);
        ip(&a)
    };
    with(&["link", "set", "lo", "up"])?;
    with(&["addr", "replace", &cidr, "dev", probe_end])?;
    with(&["link", "set", probe_end, "up"])
}

/// The drill's network removed (idempotent): the probe's namespace (its veth pair goes with it)
/// and the bridge.
pub fn down(drill: u64) -> Result<(), String> {
    let n = names(drill)?;
    delete_link(&n.probe_veth.0)?;
    if netns_path(&n).exists() {
        ip(&["netns", "delete", &n.netns])?;
    }
    delete_link(&n.bridge)
}

/// Deletes an interface; one that is gone (or goes meanwhile) is fine.
fn delete_link(name: &str) -> Result<(), String> {
    if !link_exists(name) {
        return Ok(());
    }
    match ip(&["link", "delete", name]) {
        Err(_) if !link_exists(name) => Ok(()),
        r => r,
    }
}

/// netMON's checks of `ipv4` from inside the drill's namespace: on a thread of its own, which
/// enters the namespace (a network namespace is per thread) and never leaves it.
pub fn check(drill: u64, ipv4: &str, ports: &[u16]) -> Result<(), String> {
    let n = names(drill)?;
    validate::exact("ipv4", ipv4, validate::ipv4_address).map_err(|e| e.to_string())?;
    let target: Ipv4Addr = ipv4
        .parse()
        .map_err(|_| format!("'{ipv4}' is not an IPv4 address"))?;
    let ns = std::fs::File::open(netns_path(&n))
        .map_err(|e| format!("drill {drill} has no network here: {e}"))?;
    let ports = ports.to_vec();
    std::thread::spawn(move || {
        // SAFETY: setns on a descriptor of a network namespace this thread owns; only this
        // thread changes namespace, and it ends when the checks are done.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "cannot enter the drill's network: {}",
                std::io::Error::last_os_error()
            ));
        }
        serverware_shared::probe::check(target, &ports)
    })
    .join()
    .map_err(|_| "the drill's check failed".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Removes the drill's network however the test ends.
    struct Cleanup(u64);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = down(self.0);
        }
    }

    /// Runs `f` on a thread inside the drill's network namespace.
    fn inside<T: Send + 'static>(drill: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = std::fs::File::open(netns_path(&names(drill).unwrap())).unwrap();
        std::thread::spawn(move || {
            // SAFETY: setns on a namespace descriptor, in a thread that ends with `f`.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            f()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn the_checks_run_inside_the_drills_own_network_and_nothing_stays() {
        // A number no controller's drill has on this machine, and an address only inside.
        let drill = 90_000_000_000 + u64::from(std::process::id());
        let _c = Cleanup(drill);
        let n = names(drill).unwrap();
        up(drill, "10.77.251.1/24").unwrap();
        up(drill, "10.77.251.1/24").expect("made again");
        assert!(Path::new("/sys/class/net").join(&n.bridge).exists());
        let v6 =
            std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", n.bridge));
        assert!(
            v6.map_or(true, |v| v.trim() == "1"),
            "IPv6 is on on the bridge"
        );

        // Nothing at the address: the checks say so.
        let e = check(drill, "10.77.251.9", &[80]).unwrap_err();
        assert!(e.starts_with("icmp"), "{e}");
        // Something there, in the namespace only: the echo and its port answer, another port not.
        ip(&[
            "-n",
            &n.netns,
            "addr",
            "add",
            "10.77.251.9/24",
            "dev",
            &n.probe_veth.1,
        ])
        .unwrap();
        let listener = inside(drill, || TcpListener::bind("10.77.251.9:18080").unwrap());
        check(drill, "10.77.251.9", &[18080]).expect("answers inside");
        let e = check(drill, "10.77.251.9", &[18080, 18081]).unwrap_err();
        assert!(e.starts_with("tcp/18081"), "{e}");
        // Outside the namespace this machine has no such address (not probed: it would be
        // routed off this machine).
        let here = std::process::Command::new("ip")
            .args(["-o", "addr", "show"])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&here.stdout).contains("10.77.251."));
        drop(listener);
        assert!(
            check(drill, "10.77.251.9 ", &[]).is_err(),
            "a padded address is refused"
        );

        down(drill).unwrap();
        down(drill).expect("removed again");
        assert!(!Path::new("/sys/class/net").join(&n.bridge).exists());
        assert!(!netns_path(&n).exists());
        assert!(!Path::new("/sys/class/net").join(&n.probe_veth.0).exists());
        assert!(up(0, "10.77.251.1/24").is_err() && up(drill, "10.77.251.1").is_err());
    }
}
