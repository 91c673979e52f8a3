//! A real etcd cluster on loopback for tests of the controller pair: each member is Debian's
//! `etcd` with its own data directory and ports. A member can be paused (SIGSTOP: it stops
//! answering, as a machine cut off would) and resumed. Dropping the cluster ends every member and
//! removes its files.

use super::{free_port, reap, try_run};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct EtcdMember {
    pub name: String,
    /// Where clients reach it (`http://127.0.0.1:PORT`).
    pub client_url: String,
    client_port: u16,
    child: Option<Child>,
    paused: bool,
}

pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    dir: PathBuf,
    ip: Ipv4Addr,
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
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("sw-etcd-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<Result<_>>()?;
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://{ip}:{peer}"))
            .collect();
        // One token for the whole cluster, new for each (so members of another never join).
        let token = format!("sw-test-{}-{}", std::process::id(), ports[0].0);
        let mut c = EtcdCluster {
            members: Vec::new(),
            dir,
            ip,
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let client_url = format!("http://{ip}:{client}");
            let peer_url = format!("http://{ip}:{peer}");
            let data = c.dir.join(&name);
            let log = std::fs::File::create(c.dir.join(format!("{name}.log")))?;
            let child = Command::new("etcd")
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("cannot start etcd (Debian package etcd-server)")?;
            c.members.push(EtcdMember {
                name,
                client_url,
                client_port: *client,
                child: Some(child),
                paused: false,
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..n {
            while !c.healthy(i) {
                if Instant::now() > deadline {
                    bail!(
                        "etcd member m{i} did not become healthy: {}",
                        std::fs::read_to_string(c.dir.join(format!("m{i}.log")))
                            .unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(c)
    }

    /// The client URLs of all members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Whether member `i` says it is healthy (it has a leader and answers).
    pub fn healthy(&self, i: usize) -> bool {
        let addr = SocketAddr::from((self.ip, self.members[i].client_port));
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
            if self.members[i].paused {
                self.resume(i);
            }
            self.signal(i, "-KILL");
            if let Some(c) = self.members[i].child.take() {
                reap(c);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
