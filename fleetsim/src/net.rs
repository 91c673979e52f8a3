//! The simulated VPSes' addresses: each running VPS's IPv4 address is put on one interface in a
//! network namespace of the fleet's own (and taken off when it stops, its host loses power or
//! its lease runs out), so that netMON's ICMP check of an HA VPS is answered exactly while the
//! VPS "runs". The namespace is reached from this machine through a veth pair and a route for
//! the VPSes' network. Changes are applied in batches (`ip -batch`), a few times a second. The
//! namespace and the pair are removed when the fleet ends.

use std::net::Ipv4Addr;
use tokio::sync::mpsc;

#[derive(Debug)]
pub struct Net {
    pub link: String,
    tx: mpsc::UnboundedSender<(bool, Ipv4Addr)>,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip").args(args).output()?;
    if !out.status.success() {
        anyhow::bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Net {
    /// Makes the namespace and veth pair `link` (replacing ones left by an earlier run) and
    /// routes `network` (the VPSes' addresses, `a.b.c.d/len`) to it.
    pub fn start(link: &str, network: &str) -> anyhow::Result<std::sync::Arc<Net>> {
        if link.is_empty() || link.len() > 14 || !link.bytes().all(|b| b.is_ascii_alphanumeric()) {
            anyhow::bail!("a link name is 1–14 letters and digits");
        }
        match network.split_once('/') {
            Some((a, len))
                if a.parse::<Ipv4Addr>().is_ok()
                    && len.parse::<u8>().is_ok_and(|l| (8..=32).contains(&l)) => {}
            _ => anyhow::bail!("the VPSes' network is ADDRESS/LENGTH, e.g. 10.77.240.0/20"),
        }
        let peer = format!("{link}p");
        let _ = ip(&["link", "del", link]);
        let _ = ip(&["netns", "del", link]);
        ip(&["netns", "add", link])?;
        let made = (|| {
            ip(&["link", "add", link, "type", "veth", "peer", "name", &peer])?;
            ip(&["link", "set", &peer, "netns", link])?;
            ip(&["-n", link, "link", "set", "lo", "up"])?;
            ip(&["-n", link, "link", "set", &peer, "up"])?;
            // Answers go back the way the checks came.
            ip(&["-n", link, "route", "add", "default", "dev", &peer])?;
            ip(&["link", "set", link, "up"])?;
            ip(&["route", "replace", network, "dev", link])
        })();
        if let Err(e) = made {
            let _ = ip(&["link", "del", link]);
            let _ = ip(&["netns", "del", link]);
            return Err(e);
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<(bool, Ipv4Addr)>();
        let name = link.to_string();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let mut script = String::new();
                for (up, addr) in batch {
                    let verb = if up { "replace" } else { "del" };
                    script.push_str(&format!("address {verb} {addr}/32 dev {name}p\n"));
                }
                let name = name.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    let child = std::process::Command::new("ip")
                        .args(["-n", &name, "-force", "-batch", "-"])
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn();
                    if let Ok(mut child) = child {
                        if let Some(mut stdin) = child.stdin.take() {
                            let _ = stdin.write_all(script.as_bytes());
                        }
                        let _ = child.wait();
                    } else {
                        eprintln!("sw-fleetsim: cannot change the addresses on {name}");
                    }
                })
                .await;
            }
        });
        Ok(std::sync::Arc::new(Net {
            link: link.to_string(),
            tx,
        }))
    }

    /// The address answers (`up`) or no longer does.
    pub fn set(&self, addr: &str, up: bool) {
        if let Ok(a) = addr.parse::<Ipv4Addr>() {
            let _ = self.tx.send((up, a));
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.link]);
        let _ = ip(&["netns", "del", &self.link]);
    }
}
