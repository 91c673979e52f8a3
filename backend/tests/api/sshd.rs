//! The controller's SSH command line, driven by OpenSSH's own `ssh` client.

use crate::support::*;
use crate::vps_lifecycle::get;
use std::path::Path;
use std::process::{Command, Stdio};

type Out = ProcOut;

/// `ssh -p PORT USER@127.0.0.1 ARGS` with `password` given through SSH_ASKPASS, `input` on its
/// standard input; the controller's key pinned in `dir/known_hosts` under one alias (so it is
/// checked across restarts whatever the port). `tty`: a terminal on the far side (`-tt`).
async fn ssh(
    dir: &Path,
    port: u16,
    user: &str,
    password: &str,
    tty: bool,
    args: &[&str],
    input: &str,
) -> Out {
    ssh_prompts(dir, port, user, password, tty, args, input, 1).await
}

/// [`ssh`] that may ask the password up to `prompts` times (as OpenSSH does 3 times by default).
#[allow(clippy::too_many_arguments)]
async fn ssh_prompts(
    dir: &Path,
    port: u16,
    user: &str,
    password: &str,
    tty: bool,
    args: &[&str],
    input: &str,
    prompts: u32,
) -> Out {
    let askpass = dir.join(format!("askpass-{user}"));
    let pw_file = dir.join(format!("pw-{user}"));
    std::fs::write(&pw_file, password).unwrap();
    std::fs::write(
        &askpass,
        format!("#!/bin/sh\ncat '{}'\n", pw_file.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut c = Command::new("ssh");
    c.env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .args(["-p", &port.to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            &format!("UserKnownHostsFile={}", dir.join("known_hosts").display()),
            "-o",
            "HostKeyAlias=serverware-test",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            &format!("NumberOfPasswordPrompts={prompts}"),
            "-o",
            "ConnectTimeout=20",
            "-F",
            "/dev/null",
        ]);
    if tty {
        c.arg("-tt");
    } else {
        c.arg("-T");
    }
    c.arg(format!("{user}@127.0.0.1"));
    if !args.is_empty() {
        // (`--`: what follows is the command, even the words starting with '-'.)
        c.arg("--");
    }
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = input.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = c
            .spawn()
            .expect("OpenSSH's ssh client (apt openssh-client)");
        let mut stdin = child.stdin.take().unwrap();
        // Typed a little at a time, as a person would.
        for chunk in input.as_bytes().chunks(16) {
            let _ = stdin.write_all(chunk);
            let _ = stdin.flush();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if !tty {
            drop(stdin);
        } else {
            // A terminal session ends by its `exit`; stdin stays open until then.
            std::mem::forget(stdin);
        }
        let o = child.wait_with_output().unwrap();
        ProcOut::of(o)
    })
    .await
    .unwrap()
}

/// `ssh` with the private key `key` only (no password), one command.
async fn ssh_key(dir: &Path, port: u16, user: &str, key: &Path, args: &[&str]) -> Out {
    let mut c = Command::new("ssh");
    c.args(["-p", &port.to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            &format!("UserKnownHostsFile={}", dir.join("known_hosts").display()),
            "-o",
            "HostKeyAlias=serverware-test",
            "-o",
            "PreferredAuthentications=publickey",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-F",
            "/dev/null",
            "-i",
        ])
        .arg(key)
        .arg("-T")
        .arg(format!("{user}@127.0.0.1"))
        .arg("--")
        .args(args)
        .stdin(Stdio::null());
    let o = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    ProcOut::of(o)
}

pub(crate) fn keygen(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let key = dir.join(name);
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (apt openssh-client)")
        .success();
    assert!(ok);
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public)
}

/// A public key registered in one's account logs in as that user; any other key does not.
#[actix_web::test]
async fn a_registered_public_key_logs_in_to_the_ssh_command_line() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, public) = keygen(d, "id_admin");
    let (stranger, _) = keygen(d, "id_stranger");

    // Checked as the API checks it: garbage is 422 naming the field, a second time is 409.
    let r = admin
        .post(t.url("/api/v1/ssh-keys"))
        .json(&serde_json::json!({"name": "laptop", "public_key": "ssh-ed25519 !!"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 422, "invalid").await;
    let r = admin
        .post(t.url("/api/v1/ssh-keys"))
        .json(&serde_json::json!({"name": "laptop", "public_key": public}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = admin
        .post(t.url("/api/v1/ssh-keys"))
        .json(&serde_json::json!({"name": "again", "public_key": public}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let keys = get(&t, &admin, "/api/v1/ssh-keys").await;
    assert_eq!(keys[0]["key_type"], "ssh-ed25519", "{keys}");
    assert!(keys[0]["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("SHA256:"));

    let o = ssh_key(d, t.ssh_port(), "admin", &key, &["whoami"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("admin (admin, by session)"), "{o:?}");
    let o = ssh_key(d, t.ssh_port(), "admin", &stranger, &["whoami"]).await;
    assert_eq!(o.code, 255, "an unknown key: {o:?}");
    let logins = get(&t, &admin, "/api/v1/events?action=auth.login").await;
    assert_eq!(
        logins["events"][0]["details"]["ssh_key"], "laptop",
        "{logins}"
    );
    let keys = get(&t, &admin, "/api/v1/ssh-keys").await;
    assert!(keys[0]["last_used_at"].is_string(), "{keys}");

    // Removed: it no longer logs in.
    let r = admin
        .delete(t.url(&format!("/api/v1/ssh-keys/{}", keys[0]["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let o = ssh_key(d, t.ssh_port(), "admin", &key, &["whoami"]).await;
    assert_eq!(o.code, 255, "{o:?}");
}

#[actix_web::test]
async fn the_ssh_command_line_runs_sws_commands_with_the_users_role() {
    let mut t = TestController::start_process(None).await;
    let admin = t.admin().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // One-shot, by password: the same commands and output as sw.
    let o = ssh(
        d,
        t.ssh_port(),
        "admin",
        ADMIN_PW,
        false,
        &["user", "list"],
        "",
    )
    .await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.starts_with("ID  USER"), "{o:?}");
    assert!(o.stdout.contains("admin"), "{o:?}");
    let o = ssh(
        d,
        t.ssh_port(),
        "admin",
        ADMIN_PW,
        false,
        &["--json", "whoami"],
        "",
    )
    .await;
    let me: serde_json::Value =
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"));
    assert_eq!(me["user"]["username"], "admin");
    // Another controller or identity cannot be named here: refused, not ignored.
    let o = ssh(
        d,
        t.ssh_port(),
        "admin",
        ADMIN_PW,
        false,
        &["--token", "swt_x", "whoami"],
        "",
    )
    .await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("--token is for sw on your own machine"),
        "{o:?}"
    );
    // Bad input: the API's message with the field, exit 3.
    let o = ssh(
        d,
        t.ssh_port(),
        "admin",
        ADMIN_PW,
        false,
        &["user", "create", "x!", "--role", "viewer"],
        "a-long-enough-password\n",
    )
    .await;
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stderr.contains("username:"), "{o:?}");
    // A user made through it (the password on standard input), audited as done over SSH.
    let o = ssh(
        d,
        t.ssh_port(),
        "admin",
        ADMIN_PW,
        false,
        &["user", "create", "watcher", "--role", "viewer"],
        "watcher-password-1\n",
    )
    .await;
    assert_eq!(o.code, 0, "{o:?}");
    let events = get(&t, &admin, "/api/v1/events?action=user.create").await;
    assert_eq!(events["events"][0]["details"]["via"], "ssh", "{events}");
    let logins = get(&t, &admin, "/api/v1/events?action=auth.login").await;
    assert!(
        logins["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["details"]["via"] == "ssh"),
        "{logins}"
    );

    // A viewer: reads, and is refused a change with exit 4.
    let o = ssh(
        d,
        t.ssh_port(),
        "watcher",
        "watcher-password-1",
        false,
        &["vps", "list"],
        "",
    )
    .await;
    assert_eq!(o.code, 0, "{o:?}");
    let o = ssh(
        d,
        t.ssh_port(),
        "watcher",
        "watcher-password-1",
        false,
        &["user", "delete", "admin", "--yes"],
        "",
    )
    .await;
    assert_eq!(o.code, 4, "{o:?}");
    assert!(o.stderr.contains("not allowed"), "{o:?}");

    // Files named on its command line would be the controller's: refused, before anything.
    let o = ssh(
        d,
        t.ssh_port(),
        "admin",
        ADMIN_PW,
        false,
        &["ssh-key", "add", "x", "/etc/hostname"],
        "",
    )
    .await;
    assert!(o.code == 2 && o.stderr.contains("standard input"), "{o:?}");
    let o = ssh(
        d,
        t.ssh_port(),
        "admin",
        ADMIN_PW,
        false,
        &[
            "host",
            "add",
            "h",
            "ssh://root@127.0.0.1:1",
            "--private-key",
            "/etc/hostname",
        ],
        "",
    )
    .await;
    assert_eq!(o.code, 2, "{o:?}");
    // A key given on standard input is added to the account.
    let (_, public) = crate::sshd::keygen(d, "id_shell");
    let o = ssh(
        d,
        t.ssh_port(),
        "watcher",
        "watcher-password-1",
        false,
        &["ssh-key", "add", "shell", "-"],
        &public,
    )
    .await;
    assert!(o.code == 0 && o.stdout.contains("SHA256:"), "{o:?}");

    // The interactive shell on a terminal: a prompt, completion, history, exit.
    let o = ssh(
        d,
        t.ssh_port(),
        "admin",
        ADMIN_PW,
        true,
        &[],
        "user lis\t\r\x1b[A\rexit\r",
    )
    .await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("admin@serverware> "), "{o:?}");
    assert_eq!(
        o.stdout.matches("ID  USER").count(),
        2,
        "the line completed, then run again from the history: {o:?}"
    );

    // A wrong password is refused; after several, even the right one waits (back-off).
    let o = ssh(d, t.ssh_port(), "admin", "wrong", false, &["whoami"], "").await;
    assert_eq!(o.code, 255, "{o:?}");
    for _ in 0..5 {
        ssh(d, t.ssh_port(), "admin", "wrong", false, &["whoami"], "").await;
    }
    // (Asked up to twice, as a person at a terminal would be asked again.)
    let o = ssh_prompts(
        d,
        t.ssh_port(),
        "admin",
        ADMIN_PW,
        false,
        &["whoami"],
        "",
        2,
    )
    .await;
    assert_eq!(o.code, 255, "locked out after the failures: {o:?}");
    // Told why, not a bare "Permission denied", and the refused attempt is on record.
    assert!(o.stderr.contains("too many failed logins"), "{o:?}");
    let failed = get(&t, &admin, "/api/v1/events?action=auth.login_failed").await;
    assert!(failed["events"].as_array().unwrap().len() >= 5, "{failed}");
    let locked = get(&t, &admin, "/api/v1/events?action=auth.login_locked").await;
    let locked = locked["events"].as_array().unwrap();
    assert!(!locked.is_empty(), "{locked:?}");
    assert_eq!(locked[0]["details"]["via"], "ssh", "{locked:?}");

    // Its host key is the same after a restart (the pinned key is checked: a new one fails).
    t.restart(None).await;
    let o = ssh(
        d,
        t.ssh_port(),
        "watcher",
        "watcher-password-1",
        false,
        &["whoami"],
        "",
    )
    .await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("watcher (viewer"), "{o:?}");
}

/// Raises this process's limit on open descriptors to what the test needs.
fn open_files(n: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit to fill and set.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max.min(n.max(l.rlim_cur));
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

#[actix_web::test]
async fn the_ssh_port_survives_two_thousand_idle_connections() {
    open_files(8192);
    let t = TestController::start_process(None).await;
    let admin = t.admin().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = t.ssh_port();
    // 2,000 connections that never log in, held open by us, from another loopback address
    // than the user's below.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        match sock.connect(([127, 0, 0, 1], port).into()).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect: {e}"),
        }
    }
    // Those past the cap are closed at once by the controller.
    let mut closed = 0;
    for s in &mut idle {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(std::time::Duration::from_millis(5), s.read(&mut buf)).await
            {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => continue, // the server's greeting
                Err(_) => break,       // still open, waiting
            }
        }
    }
    assert!(
        closed >= 1900,
        "only {closed} of 2000 idle connections were closed"
    );
    // Meanwhile the dashboard's API and a login work as ever.
    let h = reqwest::get(t.url("/api/v1/health")).await.unwrap();
    assert_eq!(h.status(), 200);
    let me = admin.get(t.url("/api/v1/auth/me")).send().await.unwrap();
    assert_eq!(me.status(), 200);
    let o = ssh(d, port, "admin", ADMIN_PW, false, &["whoami"], "").await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("admin"), "{o:?}");
    drop(idle);
    let h = reqwest::get(t.url("/api/v1/health")).await.unwrap();
    assert_eq!(h.status(), 200);
}
