//! The `serverware` binary as an operator runs it (always on SQLite: these are about the command).

use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_serverware");

/// A controller process, killed (by its PID) when dropped, also when the test fails.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(data: &Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("SERVERWARE_") {
            c.env_remove(k);
        }
    }
    c.env("SERVERWARE_CONFIG", "/dev/null")
        .env("SERVERWARE_DATA_DIR", data)
        .env("SERVERWARE_LISTEN", "127.0.0.1:0")
        .env("SERVERWARE_LOG", "warn");
    c
}

fn spawn(data: &Path) -> Proc {
    let mut child = command(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Proc { child, lines: rx }
}

impl Proc {
    /// Lines printed up to and including the one containing `until`.
    fn read_until(&self, until: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let done = line.contains(until);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no line with '{until}' within 60 s; got {seen:?}"),
            }
        }
    }
}

fn value_after(lines: &[String], marker: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.split_once(marker).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no '{marker}' in {lines:?}"))
}

async fn login(base: &str, password: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{base}api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

#[actix_web::test]
async fn first_start_prints_where_to_log_in_and_reset_password_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn(dir.path());
    let lines = first.read_until("Log in");
    let url = value_after(&lines, "Dashboard and API:");
    let password = value_after(&lines, "password:");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(password.len(), 20);
    assert!(dir.path().join("serverware.db").exists());
    assert_eq!(login(&url, &password).await, reqwest::StatusCode::OK);
    drop(first);

    // The next start creates nobody and prints no password.
    let second = spawn(dir.path());
    let lines = second.read_until("Log in");
    assert!(!lines.iter().any(|l| l.contains(&password)), "{lines:?}");
    let url = value_after(&lines, "Dashboard and API:");

    // Recover a lost password while the controller runs.
    let out = command(dir.path())
        .args(["admin", "reset-password", "admin"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let new_pw = value_after(
        &stdout.lines().map(str::to_string).collect::<Vec<_>>(),
        "New password for admin:",
    );
    assert_ne!(new_pw, password);
    assert_eq!(
        login(&url, &password).await,
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert_eq!(login(&url, &new_pw).await, reqwest::StatusCode::OK);

    // A chosen password from stdin, and a user who does not exist.
    let mut child = command(dir.path())
        .args(["admin", "reset-password", "admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"chosen-by-the-operator\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(
        login(&url, "chosen-by-the-operator").await,
        reqwest::StatusCode::OK
    );
    let out = command(dir.path())
        .args(["admin", "reset-password", "nobody"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user 'nobody'"));
}

#[test]
fn an_unknown_database_scheme_is_an_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = command(&data)
        .env("SERVERWARE_DATABASE_URL", "mysql://user:pw@localhost/sw")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scheme 'mysql' is not supported"), "{err}");
    assert!(
        !err.contains("pw@"),
        "the password must not be printed: {err}"
    );
    assert!(!data.exists(), "nothing may be created");
}

#[test]
fn a_weak_admin_password_from_the_environment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .env("SERVERWARE_ADMIN_PASSWORD", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 10 characters"));
}
