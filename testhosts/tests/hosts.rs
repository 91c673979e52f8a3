//! The test hosts behave like separate machines. Needs root (as CI has it).

use serverware_testhosts::{is_unreachable, wait_for_port, Cluster, ClusterOptions};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

fn ssh(key: &std::path::Path, host: &serverware_testhosts::TestHost, remote: &[&str]) -> String {
    let out = Command::new("ssh")
        .args([
            "-i",
            &key.to_string_lossy(),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("root@{}", host.addr))
        .args(remote)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh to {} failed: {}",
        host.name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn hosts_are_separate_machines_that_power_off_and_boot() {
    let mut cluster = Cluster::create(ClusterOptions {
        hosts: 2,
        ..Default::default()
    })
    .unwrap();
    let keydir = tempfile_dir();
    let key = keydir.join("id");
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
    let (a, b) = (&cluster.hosts[0], &cluster.hosts[1]);
    assert_ne!(a.addr, b.addr);
    // Own PID namespace (init is tini), own address, own disk of its own size.
    for h in [a, b] {
        assert_eq!(ssh(&key, h, &["cat", "/proc/1/comm"]), "tini");
        assert!(
            ssh(&key, h, &["ip", "-o", "-4", "addr", "show", "br0"]).contains(&h.addr.to_string())
        );
        let df = ssh(&key, h, &["df", "-m", "--output=size", "/srv"]);
        let size: u64 = df.lines().last().unwrap().trim().parse().unwrap();
        assert_eq!(size, h.disk_mib, "{}", h.name);
    }
    // A process started on one host is not seen on the other.
    // ssh joins its arguments into one command line for the remote shell.
    ssh(&key, a, &["setsid -f sleep 300 </dev/null >/dev/null 2>&1"]);
    assert!(ssh(&key, a, &["ps", "-eo", "comm"]).contains("sleep"));
    assert!(!ssh(&key, b, &["ps", "-eo", "comm"]).contains("sleep"));

    let a_ssh = SocketAddr::from((a.addr, 22));
    cluster.power_off(0).unwrap();
    assert!(is_unreachable(a_ssh, Duration::from_secs(2)));
    assert!(ssh(&key, &cluster.hosts[1], &["hostname", "-I"])
        .contains(&cluster.hosts[1].addr.to_string()));
    cluster.boot(0).unwrap();
    wait_for_port(a_ssh, Duration::from_secs(30)).unwrap();
    // Powered off means every process died.
    assert!(!ssh(&key, &cluster.hosts[0], &["ps", "-eo", "comm"]).contains("sleep"));

    cluster.cut_link(1).unwrap();
    assert!(is_unreachable(
        SocketAddr::from((cluster.hosts[1].addr, 22)),
        Duration::from_secs(2)
    ));
    cluster.restore_link(1).unwrap();
    wait_for_port(
        SocketAddr::from((cluster.hosts[1].addr, 22)),
        Duration::from_secs(30),
    )
    .unwrap();

    let (bridge, netns) = (cluster.bridge.clone(), cluster.hosts[0].netns().to_string());
    drop(cluster);
    let links = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(!links.contains(&bridge), "the bridge is left behind");
    let nss = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(!nss.contains(&netns), "a namespace is left behind");
    let _ = std::fs::remove_dir_all(keydir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sw-th-key-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
