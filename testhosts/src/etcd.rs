//! A real etcd cluster for tests of the controller pair: each member is Debian's `etcd` with its
//! own data directory and ports, on loopback, a test bridge's address or a test host of its own.
//! A member can be paused (SIGSTOP: it stops answering, as a machine cut off would) and resumed,
//! powered off and on again. Dropping the cluster ends every member and removes its files.

use super::{free_port, reap, try_run};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct EtcdMember {
    pub name: String,
    /// Where clients reach it (`http://ADDRESS:PORT`).
    pub client_url: String,
    addr: SocketAddr,
    /// The test host's network namespace it runs in, if not this machine's.
    netns: Option<String>,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    dir: PathBuf,
}

impl EtcdCluster {
    /// Starts `n` members that form one cluster on loopback, and waits until each answers as
    /// healthy.
    pub fn start(n: usize) -> Result<EtcdCluster> {
        Self::start_at(n, Ipv4Addr::LOCALHOST)
    }

    /// [`EtcdCluster::start`] with every member listening on `ip` (a test bridge's address, so
    /// that programs in test hosts' namespaces reach it).
    pub fn start_at(n: usize, ip: Ipv4Addr) -> Result<EtcdCluster> {
        Self::start_on(&vec![(ip, None); n])
    }

    /// One member on each of `places`: an address and, for a member on a test host of its own,
    /// that host's network namespace (the member then goes down with the host's link).
    pub fn start_on(places: &[(Ipv4Addr, Option<String>)]) -> Result<EtcdCluster> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("sw-etcd-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let ports: Vec<(u16, u16)> = places
            .iter()
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<Result<_>>()?;
        let initial: Vec<String> = ports
            .iter()
            .zip(places)
            .enumerate()
            .map(|(i, ((_, peer), (ip, _)))| format!("m{i}=http://{ip}:{peer}"))
            .collect();
        // One token for the whole cluster, new for each (so members of another never join).
        let token = format!("sw-test-{}-{}", std::process::id(), ports[0].0);
        let mut c = EtcdCluster {
            members: Vec::new(),
            dir,
        };
        for (i, ((client, peer), (ip, netns))) in ports.iter().zip(places).enumerate() {
            let name = format!("m{i}");
            let client_url = format!("http://{ip}:{client}");
            let peer_url = format!("http://{ip}:{peer}");
            let data = c.dir.join(&name);
            let args: Vec<String> = [
                "--name",
                &name,
                "--data-dir",
                &data.to_string_lossy(),
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                &token,
                // As the README asks of a site's members: a member cut off and back does not
                // force an election (which stalls every lease renewal) with the terms it raised
                // alone.
                "--pre-vote=true",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            c.members.push(EtcdMember {
                log: c.dir.join(format!("{name}.log")),
                name,
                client_url,
                addr: SocketAddr::from((*ip, *client)),
                netns: netns.clone(),
                args,
                child: None,
                paused: false,
            });
            c.power_on(i)?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..places.len() {
            while !c.healthy(i) {
                if Instant::now() > deadline {
                    bail!(
                        "etcd member m{i} did not become healthy: {}",
                        std::fs::read_to_string(&c.members[i].log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(c)
    }

    /// Member `i` starts (again, on its data after [`EtcdCluster::power_off`]).
    pub fn power_on(&mut self, i: usize) -> Result<()> {
        let m = &mut self.members[i];
        if m.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)?;
        let mut cmd = match &m.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "etcd"]);
                c
            }
            None => Command::new("etcd"),
        };
        let child = cmd
            .args(&m.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start etcd (Debian package etcd-server)")?;
        m.child = Some(child);
        Ok(())
    }

    /// Member `i` goes down at once (SIGKILL), as if its machine lost power.
    pub fn power_off(&mut self, i: usize) {
        if self.members[i].paused {
            self.resume(i);
        }
        self.signal(i, "-KILL");
        if let Some(c) = self.members[i].child.take() {
            reap(c);
        }
    }

    /// The client URLs of all members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Whether member `i` says it is healthy (it has a leader and answers).
    pub fn healthy(&self, i: usize) -> bool {
        let addr = self.members[i].addr;
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.contains("\"health\":\"true\"")
    }

    fn signal(&mut self, i: usize, sig: &str) {
        if let Some(c) = &self.members[i].child {
            try_run("kill", &[sig, &c.id().to_string()]);
        }
    }

    /// Member `i` stops answering (SIGSTOP), as if cut off.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, "-STOP");
        self.members[i].paused = true;
    }

    /// Member `i` answers again.
    pub fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
        self.members[i].paused = false;
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.power_off(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
