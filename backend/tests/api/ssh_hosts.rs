//! The controller's SSH client against real test hosts (OpenSSH sshd in namespaces).

use serverware::ssh::{probe_host_key, Credentials, Session, SshError};
use serverware_testhosts::{Cluster, ClusterOptions};
use std::process::Command;

/// The agent binary built with this workspace (cargo builds it for the test run).
fn agent_binary() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_BIN_EXE_serverware"))
        .parent()
        .unwrap()
        .to_path_buf();
    let p = dir.join("serverware-agent");
    assert!(
        p.exists(),
        "build the agent first (cargo test builds the workspace): {}",
        p.display()
    );
    p
}

/// A fresh ed25519 key, made by OpenSSH's own ssh-keygen.
fn new_key() -> russh::keys::PrivateKey {
    let dir = std::env::temp_dir().join(format!("sw-ctl-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("id");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .status()
        .unwrap()
        .success());
    let key =
        russh::keys::PrivateKey::from_openssh(std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    key
}

#[actix_web::test]
async fn host_keys_are_pinned_and_commands_take_argument_vectors() {
    let mut cluster = Cluster::create(ClusterOptions {
        hosts: 2,
        ..Default::default()
    })
    .unwrap();
    let (a, b) = (&cluster.hosts[0], &cluster.hosts[1]);
    let addr = a.addr.to_string();

    // The fingerprint shown to the operator is the one OpenSSH itself computes.
    let key = probe_host_key(&addr, 22).await.unwrap();
    let expected = String::from_utf8(
        Command::new("ssh-keygen")
            .arg("-lf")
            .arg(a.dir.join("ssh_host_ed25519_key.pub"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        expected.contains(&key.fingerprint),
        "{expected} vs {}",
        key.fingerprint
    );
    assert_eq!(
        key.openssh.split_whitespace().nth(1),
        a.host_public_key().unwrap().split_whitespace().nth(1)
    );

    // Logged in with the password, on the pinned key: commands run on that host.
    let s = Session::connect(
        &addr,
        22,
        "root",
        &key.openssh,
        &Credentials::Password(a.password.clone()),
    )
    .await
    .unwrap();
    let (code, out, _) = s.run("cat", &["/proc/1/comm"]).await.unwrap();
    assert_eq!((code, String::from_utf8_lossy(&out).trim()), (0, "tini"));
    // An argument is passed whole, never interpreted by the remote shell.
    let marker = std::env::temp_dir().join(format!("sw-pwned-{}", std::process::id()));
    let nasty = format!("it's \"quoted\"; touch {} $(id) `id`", marker.display());
    let (code, out, _) = s.run("printf", &["%s", &nasty]).await.unwrap();
    assert_eq!(code, 0);
    assert_eq!(String::from_utf8_lossy(&out), nasty);
    assert!(!marker.exists(), "the remote shell ran part of an argument");

    // A key installed in root's authorized_keys on the host logs in from then on.
    let controller_key = new_key();
    let public = controller_key.public_key().to_openssh().unwrap();
    let (code, _, err) = s
        .run(
            "sh",
            &[
                "-c",
                "umask 077; mkdir -p ~/.ssh; printf '%s\\n' \"$1\" >> ~/.ssh/authorized_keys",
                "sh",
                &public,
            ],
        )
        .await
        .unwrap();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    s.close().await;
    let k = Session::connect(
        &addr,
        22,
        "root",
        &key.openssh,
        &Credentials::Key(std::sync::Arc::new(controller_key)),
    )
    .await
    .unwrap();
    assert_eq!(k.run("true", &[]).await.unwrap().0, 0);

    // The agent, uploaded with its checksum verified, speaks its protocol over the connection.
    let agent = std::fs::read(agent_binary()).unwrap();
    let sum = k
        .upload("/var/lib/serverware/bin/serverware-agent", &agent)
        .await
        .unwrap();
    assert_eq!(sum.len(), 64);
    let mut link = k
        .start_agent("/var/lib/serverware/bin/serverware-agent")
        .await
        .unwrap();
    use serverware_shared::agent::{AgentFrame, AgentRequest, AgentResponse, PROTOCOL_VERSION};
    let id = link
        .send(AgentRequest::Hello {
            protocol: PROTOCOL_VERSION,
        })
        .await
        .unwrap();
    let mut hello = None;
    let mut sample = None;
    while hello.is_none() || sample.is_none() {
        match tokio::time::timeout(std::time::Duration::from_secs(30), link.frames.recv())
            .await
            .expect("a frame in time")
            .expect("agent running")
        {
            AgentFrame::Response {
                id: rid,
                response: AgentResponse::Hello { protocol, .. },
            } if rid == id => hello = Some(protocol),
            AgentFrame::Sample { sample: s } => sample = Some(s),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(hello, Some(PROTOCOL_VERSION));
    let srv = sample
        .unwrap()
        .filesystems
        .into_iter()
        .find(|f| f.mount_point == "/srv")
        .expect("host disk");
    assert_eq!(srv.size_bytes, a.disk_mib * 1024 * 1024);
    k.close().await;
    // ...and only there: the machine's own root keys are untouched, and host B does not know it.
    let real = std::fs::read_to_string("/root/.ssh/authorized_keys").unwrap_or_default();
    assert!(
        !real.contains(public.split_whitespace().nth(1).unwrap()),
        "the key leaked onto the real machine"
    );

    // Wrong password: refused.
    let r = Session::connect(
        &addr,
        22,
        "root",
        &key.openssh,
        &Credentials::Password("wrong-password".into()),
    )
    .await;
    assert!(matches!(r, Err(SshError::AuthRejected)), "{:?}", r.err());

    // Host B presented where A's key is pinned: refused and named, before any credentials are sent.
    let r = Session::connect(
        &b.addr.to_string(),
        22,
        "root",
        &key.openssh,
        &Credentials::Password(b.password.clone()),
    )
    .await;
    match r {
        Err(SshError::HostKeyMismatch { presented }) => assert!(presented.starts_with("SHA256:")),
        other => panic!("a different host key was accepted: {:?}", other.err()),
    }

    // A powered-off host is unreachable, with a clear error.
    cluster.power_off(0).unwrap();
    let r = probe_host_key(&addr, 22).await;
    assert!(matches!(r, Err(SshError::Unreachable(..))), "{:?}", r.err());
}
