//! The agent on real test hosts, reached over SSH: the figures are each host's own.

use serverware_shared::agent::*;
use serverware_testhosts::{Cluster, ClusterOptions};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Remote {
    child: Child,
    frames: mpsc::Receiver<AgentFrame>,
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the agent on a host over SSH; the binary is copied into the host's own directory
/// first, since a test host sees its own root home, not this machine's build directory.
fn agent_over_ssh(key: &std::path::Path, host: &serverware_testhosts::TestHost) -> Remote {
    let addr = host.addr;
    let agent = host.dir.join("serverware-agent");
    std::fs::copy(env!("CARGO_BIN_EXE_serverware-agent"), &agent).unwrap();
    let mut child = Command::new("ssh")
        .args([
            "-T",
            "-i",
            &key.to_string_lossy(),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("root@{addr}"))
        .arg(&agent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let hello = AgentRequestFrame {
        id: 1,
        request: AgentRequest::SetInterval { millis: 200 },
    };
    let stdin = child.stdin.as_mut().unwrap();
    writeln!(
        stdin,
        "{}",
        serde_json::to_string(&AgentRequestFrame {
            id: 0,
            request: AgentRequest::Hello {
                protocol: PROTOCOL_VERSION
            }
        })
        .unwrap()
    )
    .unwrap();
    writeln!(stdin, "{}", serde_json::to_string(&hello).unwrap()).unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, frames) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(f) = serde_json::from_str(&line) {
                if tx.send(f).is_err() {
                    break;
                }
            }
        }
    });
    Remote { child, frames }
}

impl Remote {
    fn sample(&self) -> HostSample {
        loop {
            match self
                .frames
                .recv_timeout(Duration::from_secs(30))
                .expect("a sample within 30 s")
            {
                AgentFrame::Sample { sample } => return sample,
                AgentFrame::Response { .. } => {}
            }
        }
    }
}

fn rx_total(s: &HostSample, name: &str) -> u64 {
    s.interfaces
        .iter()
        .find(|i| i.name == name)
        .map(|i| i.rx_bytes_total)
        .unwrap_or_else(|| panic!("no {name} in {:?}", s.interfaces))
}

#[test]
fn each_host_reports_its_own_disk_and_interfaces() {
    let cluster = Cluster::create(ClusterOptions {
        hosts: 2,
        ..Default::default()
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("sw-agent-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("id");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    for h in &cluster.hosts {
        h.authorize_key(&public).unwrap();
    }
    let a = agent_over_ssh(&key, &cluster.hosts[0]);
    let b = agent_over_ssh(&key, &cluster.hosts[1]);
    let (sa, sb) = (a.sample(), b.sample());
    for (s, h) in [(&sa, &cluster.hosts[0]), (&sb, &cluster.hosts[1])] {
        let srv = s
            .filesystems
            .iter()
            .find(|f| f.mount_point == "/srv")
            .expect("the host's disk");
        assert_eq!(srv.size_bytes, h.disk_mib * 1024 * 1024, "{}", h.name);
        let names: Vec<&str> = s.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert!(
            names.contains(&"br0") && names.contains(&"eth0"),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n.starts_with("swtb")),
            "the machine's own links leaked in: {names:?}"
        );
    }

    // Known traffic to host A only: 2000 datagrams of 1000 bytes.
    let before_a = rx_total(&sa, "eth0");
    let before_b = rx_total(&sb, "eth0");
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let payload = [0u8; 1000];
    for _ in 0..2000 {
        sock.send_to(&payload, (cluster.hosts[0].addr, 9)).unwrap();
    }
    let expect = 2000 * 1000;
    let mut got_a = 0;
    for _ in 0..50 {
        got_a = rx_total(&a.sample(), "eth0") - before_a;
        if got_a >= expect {
            break;
        }
    }
    assert!(
        got_a >= expect,
        "host A received {got_a} bytes, expected at least {expect}"
    );
    let got_b = rx_total(&b.sample(), "eth0") - before_b;
    assert!(got_b < expect / 10, "host B counted A's traffic: {got_b}");
    drop((a, b));
    let _ = std::fs::remove_dir_all(dir);
}
