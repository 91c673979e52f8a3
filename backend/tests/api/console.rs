//! A VPS's console over its WebSocket, on a real test host with LXC: a shell inside the VPS
//! (its host name, its own processes), resized, refused to a viewer and for a stopped VPS,
//! audited when it opens and closes, and closed when the user signs out.

use crate::support::*;
use crate::vps_lifecycle::{post, site, task_done, wait_vps};
use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

type Socket = crate::ws::Socket;

async fn open(t: &TestController, cookie: &str, id: i64) -> Result<Socket, String> {
    let url = t
        .url(&format!("/api/v1/vpses/{id}/console?cols=100&rows=30"))
        .replacen("http", "ws", 1);
    awc::Client::new()
        .ws(url)
        .header("cookie", cookie)
        .connect()
        .await
        .map(|(_, s)| s)
        .map_err(|e| format!("{e:?}"))
}

/// Reads the terminal until its text holds `want`; returns everything read.
async fn read_until(s: &mut Socket, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.next()).await {
            Ok(Some(Ok(Frame::Binary(b)))) => {
                // Like a terminal, it answers the shell's question for the cursor's place
                // (`ESC [6n`, asked by busybox's line editor).
                let text = String::from_utf8_lossy(&b).into_owned();
                for _ in 0..text.matches("\x1b[6n").count() {
                    s.send(Message::Binary("\x1b[1;1R".into())).await.unwrap();
                }
                seen.push_str(&text);
            }
            Ok(Some(Ok(Frame::Ping(p)))) => s.send(Message::Pong(p)).await.unwrap(),
            Ok(Some(Ok(Frame::Close(c)))) => panic!("closed ({c:?}) before {want:?}: {seen}"),
            Ok(Some(Ok(_))) => {}
            other => panic!("no {want:?} ({other:?}): {seen}"),
        }
    }
    seen
}

/// Runs `sw vps console NAME` under a pseudo-terminal (`script`); see [`drive`].
async fn sw_console(home: &str, name: &str) -> String {
    let cmd = format!("{} vps console {name}", crate::sw::sw_bin().display());
    let mut c = std::process::Command::new("script");
    c.args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("HOME", home)
        .env_remove("SERVERWARE_URL");
    drive(c, "from sw").await
}

/// `vps console NAME` on the controller's SSH command line, with OpenSSH's client (`-tt`,
/// the password through SSH_ASKPASS); see [`drive`].
async fn ssh_console(t: &TestController, dir: &std::path::Path, name: &str) -> String {
    let askpass = dir.join("askpass");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{ADMIN_PW}'\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut c = std::process::Command::new("ssh");
    c.env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .args(["-p", &t.ssh_port().to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args([
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ])
        .args(["-o", "NumberOfPasswordPrompts=1", "-F", "/dev/null", "-tt"])
        .arg("admin@127.0.0.1")
        .args(["--", "vps", "console", name]);
    drive(c, "over ssh").await
}

/// Starts `c`, waits for the shell's prompt, types a line, waits for its answer, then presses
/// Ctrl-] and waits for the console to say it closed and the program to exit well. Everything
/// it printed.
async fn drive(mut c: std::process::Command, tag: &str) -> String {
    use std::io::{Read, Write};
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut wait_for = async |want: &str, seen: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !seen.contains(want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
                _ => panic!("the console never printed {want:?}: {seen}"),
            }
        }
    };
    wait_for("# ", &mut seen).await;
    stdin
        .write_all(format!("echo \"{tag}: $((3+4))\"\r").as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    wait_for(&format!("{tag}: 7"), &mut seen).await;
    stdin.write_all(&[0x1d]).unwrap();
    stdin.flush().unwrap();
    wait_for("closed with Ctrl-]", &mut seen).await;
    drop(stdin);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "the console's program exited with {status}: {seen}"
    );
    seen
}

async fn closed(s: &mut Socket) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.next()).await {
            Ok(Some(Ok(Frame::Close(c)))) => return Some(format!("{c:?}")),
            Ok(None) => return Some("ended".into()),
            Ok(Some(_)) => {}
            Err(_) => return None,
        }
    }
}

#[actix_web::test]
async fn a_console_is_a_shell_inside_the_vps_for_operators_audited_and_ended_with_the_session() {
    let (cluster, t, admin, hosts, tpl) = site(1).await;
    let net = format!("10.77.{}", cluster.subnet);
    let r = post(
        &admin,
        t.url("/api/v1/vpses"),
        json!({"name": "con-1", "template_id": tpl, "host_id": hosts[0], "ipv4": format!("{net}.60"),
            "memory_limit_bytes": 64 * 1024 * 1024, "start": true}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let task: Value = r.json().await.unwrap();
    let done = task_done(&t, &admin, &task).await;
    let id = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    wait_vps(&t, &admin, id, "running", |v| v["state"] == "running").await;

    // An operator's console: the shell runs inside the VPS (its host name, and its own init as
    // process 1, not the host's).
    let cookie = t.session_cookie("admin", ADMIN_PW).await;
    let mut s = open(&t, &cookie, id).await.expect("the console opens");
    // Typed once its prompt shows, as a person does (what is typed before the shell reads its
    // terminal is not its input).
    read_until(&mut s, "# ").await;
    s.send(Message::Binary(
        "hostname; cat /proc/1/comm; echo \"sum: $((40+2))\"\n".into(),
    ))
    .await
    .unwrap();
    let seen = read_until(&mut s, "sum: 42").await;
    assert!(seen.contains("con-1"), "{seen}");
    assert!(
        seen.contains("init"),
        "the VPS's own init is its process 1: {seen}"
    );
    // Resized: the shell sees the new size.
    s.send(Message::Text(
        json!({"cols": 132, "rows": 40}).to_string().into(),
    ))
    .await
    .unwrap();
    s.send(Message::Binary("stty size\n".into())).await.unwrap();
    read_until(&mut s, "40 132").await;
    // `exit` ends the shell, and the socket closes with it.
    s.send(Message::Binary("exit\n".into())).await.unwrap();
    assert!(
        closed(&mut s).await.is_some(),
        "the socket stayed open after exit"
    );

    // Both ends are audited, with who and how long.
    let ev = events_until(
        &t,
        &admin,
        &format!("target_type=vps&target_id={id}&limit=50"),
        30,
        "no vps.console.closed",
        |l| l.iter().any(|e| e["action"] == "vps.console.closed"),
    )
    .await;
    let events = ev["events"].as_array().unwrap();
    let opened = events
        .iter()
        .find(|e| e["action"] == "vps.console.opened")
        .unwrap();
    assert_eq!(opened["actor"], "admin");
    let ended = events
        .iter()
        .find(|e| e["action"] == "vps.console.closed")
        .unwrap();
    assert_eq!(ended["details"]["reason"], "the shell ended", "{ended}");
    assert!(ended["details"]["seconds"].is_u64(), "{ended}");

    // `sw vps console` on a terminal (a pty from `script`): the same shell; Ctrl-] ends it and
    // puts the terminal back.
    let home = tempfile::tempdir().unwrap();
    let home_s = home.path().to_str().unwrap().to_string();
    let o = crate::sw::sw(
        &[("HOME", &home_s)],
        &["login", &t.base],
        &format!("{ADMIN_PW}\n"),
    )
    .await;
    assert_eq!(o.code, 0, "{o:?}");
    let typed = sw_console(&home_s, "con-1").await;
    assert!(typed.contains("from sw: 7"), "{typed}");
    assert!(typed.contains("closed with Ctrl-]"), "{typed}");
    // The same over the controller's SSH command line: `ssh -t controller vps console NAME`.
    let typed = ssh_console(&t, home.path(), "con-1").await;
    assert!(typed.contains("over ssh: 7"), "{typed}");

    // A viewer is refused before any shell starts.
    let _viewer = t.user_with_role(&admin, "watcher", "viewer").await;
    let vcookie = t.session_cookie("watcher", "watcher-password-123").await;
    let e = open(&t, &vcookie, id)
        .await
        .err()
        .expect("a viewer gets no console");
    assert!(e.contains("403"), "{e}");

    // Signed out: the open console closes within a few seconds.
    let mut s = open(&t, &cookie, id)
        .await
        .expect("the console opens again");
    read_until(&mut s, "# ").await;
    s.send(Message::Binary("echo ready\n".into()))
        .await
        .unwrap();
    read_until(&mut s, "ready").await;
    let r = t
        .anon()
        .post(t.url("/api/v1/auth/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let why = closed(&mut s)
        .await
        .expect("the console outlived its session");
    assert!(why.contains("signed out") || why == "ended", "{why}");

    // A stopped VPS has no console (409, before any upgrade).
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{id}/stop")),
        json!({}),
    )
    .await;
    task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let cookie = t.session_cookie("admin", ADMIN_PW).await;
    let e = open(&t, &cookie, id)
        .await
        .err()
        .expect("no console to a stopped VPS");
    assert!(e.contains("409"), "{e}");
    drop(cluster);
}
