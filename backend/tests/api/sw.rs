//! `sw`, the command line, run as an operator runs it against a real controller and a real test
//! host: every check is on its output and exit code.

use crate::support::*;
use crate::vps_lifecycle::get;
use serde_json::Value;
use serverware_testhosts::{Cluster, ClusterOptions};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `sw` cargo built beside the controller.
pub(crate) fn sw_bin() -> PathBuf {
    let p = std::path::Path::new(env!("CARGO_BIN_EXE_serverware")).with_file_name("sw");
    assert!(
        p.is_file(),
        "no sw binary at {} (cargo build -p serverware-cli)",
        p.display()
    );
    p
}

type Out = ProcOut;

/// Runs `sw args` with `env` (and nothing else of ours), `input` on its standard input, off the
/// test's runtime (the controller runs on it).
pub(crate) async fn sw(env: &[(&str, &str)], args: &[&str], input: &str) -> Out {
    let mut c = Command::new(sw_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("SERVERWARE_") || k == "XDG_CONFIG_HOME" {
            c.env_remove(k);
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = input.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = c.spawn().expect("sw runs");
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(input.as_bytes());
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        ProcOut::of(o)
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn an_operator_drives_a_host_and_a_vps_with_sw() {
    let cluster = Cluster::create(ClusterOptions {
        hosts: 1,
        ..Default::default()
    })
    .unwrap();
    let t = TestController::start().await;
    let admin = t.admin().await;
    let home = tempfile::tempdir().unwrap();
    let home_s = home.path().to_str().unwrap().to_string();
    let base = t.base.clone();

    // Logged in once: the token is kept, readable by its owner only.
    // As the README has it: no --user, no terminal (the password is standard input's line).
    let o = sw(
        &[("HOME", &home_s)],
        &["login", &base],
        &format!("{ADMIN_PW}\n"),
    )
    .await;
    assert_eq!(o.code, 0, "{o:?}");
    let kept = home.path().join(".config/serverware/cli.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let me = sw(&[("HOME", &home_s)], &["whoami"], "").await;
    assert!(
        me.code == 0 && me.stdout.contains("admin (admin, by token)"),
        "{me:?}"
    );
    let env = [("HOME", home_s.as_str())];
    // The site at a glance: nothing added yet, nothing wrong, but for the one thing the test
    // cannot choose: the storage directory is on this machine's disk, which may be nearly full.
    let st = sw(&env, &["status"], "").await;
    // (nearly full or full: a warning or an error, as the disk happens to be).
    let only_the_disk = st.stdout.contains("1 incident(s)") && st.stdout.contains("Storage is");
    assert!(
        st.code == 0
            && (st.stdout.contains("healthy") || only_the_disk)
            && st.stdout.contains("0 of 0 online"),
        "{st:?}"
    );
    let st = sw(&env, &["status", "--json"], "").await;
    assert!(st.stdout.contains("\"incidents\""), "{st:?}");
    // Machines booting from the network: none yet; one that never booted is not found.
    let ml = sw(&env, &["machine", "list"], "").await;
    assert!(
        ml.code == 0 && ml.stdout.contains("MAC") && ml.stdout.contains("IMAGE"),
        "{ml:?}"
    );
    let ap = sw(&env, &["machine", "approve", "52:54:00:00:00:01"], "").await;
    assert!(
        ap.code == 5 && ap.stderr.contains("52:54:00:00:00:01"),
        "{ap:?}"
    );
    let ri = sw(&env, &["machine", "reimage", "pxe-9"], "").await;
    assert!(
        ri.code == 5 && ri.stderr.contains("no machine 'pxe-9'"),
        "{ri:?}"
    );
    // One added by its MAC before it boots: a malformed MAC refused, then listed approved,
    // added twice refused, forgotten.
    let bad = sw(&env, &["machine", "add", "52:54:00:00:00:0g"], "").await;
    assert!(bad.code == 3 && bad.stderr.contains("mac"), "{bad:?}");
    let add = sw(
        &env,
        &["machine", "add", "52:54:00:00:00:02", "--name", "pre-9"],
        "",
    )
    .await;
    assert!(
        add.code == 0 && add.stdout.contains("added as pre-9"),
        "{add:?}"
    );
    let again = sw(&env, &["machine", "add", "52:54:00:00:00:02"], "").await;
    assert!(
        again.code == 6 && again.stderr.contains("known already"),
        "{again:?}"
    );
    let ml = sw(&env, &["machine", "list"], "").await;
    assert!(
        ml.stdout.contains("pre-9") && ml.stdout.contains("approved"),
        "{ml:?}"
    );
    let fg = sw(
        &env,
        &["--yes", "machine", "forget", "52:54:00:00:00:02"],
        "",
    )
    .await;
    assert_eq!(fg.code, 0, "{fg:?}");

    // A host: its key confirmed by its fingerprint (a wrong one adds nothing).
    let h = &cluster.hosts[0];
    let wrong = sw(
        &env,
        &[
            "host",
            "add",
            "node-0",
            &h.ssh_url(),
            "--fingerprint",
            "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "--password-stdin",
        ],
        &format!("{}\n", h.password),
    )
    .await;
    assert_eq!(wrong.code, 6, "{wrong:?}");
    assert!(wrong.stderr.contains("not added"), "{wrong:?}");
    let probe: Value = crate::vps_lifecycle::post(
        &admin,
        t.url("/api/v1/hosts/probe"),
        serde_json::json!({"address": h.ssh_url()}),
    )
    .await
    .json()
    .await
    .unwrap();
    let fp = probe["fingerprint"].as_str().unwrap().to_string();
    let added = sw(
        &env,
        &[
            "host",
            "add",
            "node-0",
            &h.ssh_url(),
            "--fingerprint",
            &fp,
            "--password-stdin",
        ],
        &format!("{}\n", h.password),
    )
    .await;
    assert_eq!(added.code, 0, "{added:?}");
    let host_id = get(&t, &admin, "/api/v1/hosts").await[0]["id"]
        .as_i64()
        .unwrap();
    crate::hosts_api::wait_host(&t, &admin, host_id, "online", |v| v["status"] == "online").await;
    // Every setting of the host form, from the command line too.
    let edited = sw(
        &env,
        &[
            "host",
            "edit",
            "node-0",
            "--capacity-memory",
            "3G",
            "--capacity-cpus",
            "3",
            "--vps-prefix-len",
            "24",
            "--vps-gateway",
            &cluster.gateway.to_string(),
        ],
        "",
    )
    .await;
    assert_eq!(edited.code, 0, "{edited:?}");
    let h = get(&t, &admin, &format!("/api/v1/hosts/{host_id}")).await;
    assert_eq!(h["capacity"]["memory_bytes"], 3i64 << 30, "{h}");
    assert_eq!(h["vps_gateway"], cluster.gateway.to_string(), "{h}");
    let bad = sw(
        &env,
        &["host", "edit", "node-0", "--capacity-memory", "lots"],
        "",
    )
    .await;
    assert_eq!(bad.code, 3, "{bad:?}");
    let hosts = sw(&env, &["host", "list"], "").await;
    assert!(
        hosts.code == 0 && hosts.stdout.contains("node-0") && hosts.stdout.contains("online"),
        "{hosts:?}"
    );
    // Each host's agent version is a column.
    assert!(
        hosts.stdout.contains("AGENT") && hosts.stdout.contains(serverware_shared::BUILD),
        "{hosts:?}"
    );
    let report = sw(&env, &["host", "show", "node-0"], "").await;
    assert!(
        report.code == 0 && report.stdout.contains("Load") && report.stdout.contains("Memory"),
        "{report:?}"
    );

    // Bad input: the API's message, the field named, exit 3; nothing made.
    let tpl = get(&t, &admin, "/api/v1/templates").await[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = sw(
        &env,
        &[
            "vps",
            "create",
            "web-1",
            "--template",
            &tpl,
            "--ipv4",
            "999.1.2.3",
        ],
        "",
    )
    .await;
    assert_eq!(bad.code, 3, "{bad:?}");
    assert!(bad.stderr.contains("ipv4:"), "{bad:?}");
    let bad = sw(
        &env,
        &[
            "vps",
            "create",
            "web-1",
            "--template",
            &tpl,
            "--ipv4",
            "10.77.0.9",
            "--memory",
            "lots",
        ],
        "",
    )
    .await;
    assert!(bad.code == 3 && bad.stderr.contains("memory:"), "{bad:?}");

    // Create and start, following the task to its end.
    let ip = format!("10.77.{}.60", cluster.subnet);
    let made = sw(
        &env,
        &[
            "vps",
            "create",
            "web-1",
            "--template",
            &tpl,
            "--ipv4",
            &ip,
            "--memory",
            "64M",
            "--start",
            "--wait",
        ],
        "",
    )
    .await;
    assert_eq!(made.code, 0, "{made:?}");
    assert!(made.stdout.contains("succeeded"), "{made:?}");
    let list = sw(&env, &["vps", "list"], "").await;
    let line = list
        .stdout
        .lines()
        .find(|l| l.contains("web-1"))
        .unwrap_or_else(|| panic!("{list:?}"));
    assert!(
        line.contains(&ip) && line.contains("running") && line.contains("node-0"),
        "{list:?}"
    );
    assert!(list.stdout.starts_with("ID  NAME"), "{list:?}");
    let json = sw(&env, &["--json", "vps", "list"], "").await;
    let v: Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {json:?}"));
    assert_eq!(v[0]["name"], "web-1");
    assert_eq!(v[0]["ipv4"], ip);

    // A viewer is refused a change: a clear message, exit 4, and the VPS still runs.
    let viewer = t.token(&admin, "watcher", Some("viewer")).await;
    let refused = sw(
        &[
            ("HOME", "/nonexistent"),
            ("SERVERWARE_URL", &base),
            ("SERVERWARE_TOKEN", &viewer),
        ],
        &["vps", "stop", "web-1"],
        "",
    )
    .await;
    assert_eq!(refused.code, 4, "{refused:?}");
    assert!(refused.stderr.contains("not allowed"), "{refused:?}");
    let seen = sw(
        &[
            ("HOME", "/nonexistent"),
            ("SERVERWARE_URL", &base),
            ("SERVERWARE_TOKEN", &viewer),
        ],
        &["vps", "show", "web-1"],
        "",
    )
    .await;
    assert!(
        seen.code == 0 && seen.stdout.contains("running"),
        "{seen:?}"
    );

    // A drill of a VPS that is not HA is refused (exit 6, saying why); it has had none.
    let drill = sw(&env, &["vps", "drill", "web-1", "--wait"], "").await;
    assert!(
        drill.code == 6 && drill.stderr.contains("not HA"),
        "{drill:?}"
    );
    let drills = sw(&env, &["vps", "drills", "web-1"], "").await;
    assert!(
        drills.code == 0 && drills.stdout.contains("RTO") && drills.stdout.lines().count() == 1,
        "{drills:?}"
    );

    // Stop, then delete (a deletion needs --yes without a terminal).
    let stopped = sw(&env, &["vps", "stop", "web-1", "--wait"], "").await;
    assert_eq!(stopped.code, 0, "{stopped:?}");
    let unasked = sw(&env, &["vps", "delete", "web-1"], "").await;
    assert_eq!(unasked.code, 2, "{unasked:?}");
    let deleted = sw(&env, &["vps", "delete", "web-1", "--yes", "--wait"], "").await;
    assert_eq!(deleted.code, 0, "{deleted:?}");
    assert_eq!(
        get(&t, &admin, "/api/v1/vpses").await,
        serde_json::json!([])
    );
    let tasks = sw(&env, &["--json", "task", "list"], "").await;
    let tasks: Value = serde_json::from_str(&tasks.stdout).unwrap();
    assert!(tasks.as_array().unwrap().len() >= 3, "{tasks}");

    // The events say who did it, through the token sw made.
    let events = sw(&env, &["event", "list", "--action", "vps."], "").await;
    assert!(
        events.code == 0 && events.stdout.contains("vps.create"),
        "{events:?}"
    );

    // Logged out: the token no longer works.
    let out = sw(&env, &["logout"], "").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!kept.exists());
    let after = sw(&env, &["vps", "list"], "").await;
    assert_eq!(after.code, 4, "{after:?}");
}

/// A wrong password at login: 4, and nothing kept. (What needs no controller is in
/// `cli/tests/offline.rs`.)
#[actix_web::test]
async fn a_wrong_password_at_login_keeps_nothing() {
    let home = tempfile::tempdir().unwrap();
    let t = TestController::start().await;
    let o = sw(
        &[("HOME", home.path().to_str().unwrap())],
        &["login", &t.base, "--password-stdin"],
        "not-the-password\n",
    )
    .await;
    assert_eq!(o.code, 4, "{o:?}");
    assert!(!home.path().join(".config/serverware/cli.json").exists());
}

#[actix_web::test]
async fn sites_are_named_logins_and_commands_go_to_the_current_one_or_the_one_named() {
    let (lon, par) = (TestController::start().await, TestController::start().await);
    let par_admin = par.admin().await;
    let r = par_admin
        .post(par.url("/api/v1/users"))
        .json(&serde_json::json!({"username": "only-in-paris", "password": "a-long-password-1", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let home = tempfile::tempdir().unwrap();
    let home_s = home.path().to_str().unwrap().to_string();
    let env = [("HOME", home_s.as_str())];
    let pw = format!("{ADMIN_PW}\n");

    let o = sw(&env, &["site", "list"], "").await;
    assert!(o.code == 0 && o.stdout.contains("SITE"), "{o:?}");
    let o = sw(&env, &["user", "list"], "").await;
    assert!(o.code == 4 && o.stderr.contains("not logged in"), "{o:?}");
    let o = sw(&env, &["site", "add", "a b", &lon.base], &pw).await;
    assert!(o.code == 2 && o.stderr.contains("not a site name"), "{o:?}");

    // Two sites; the first one added is current.
    let o = sw(&env, &["site", "add", "lon", &lon.base], &pw).await;
    assert!(
        o.code == 0 && o.stdout.contains("site 'lon', current"),
        "{o:?}"
    );
    let o = sw(&env, &["site", "add", "par", &par.base], &pw).await;
    assert!(o.code == 0 && !o.stdout.contains("current"), "{o:?}");
    let o = sw(&env, &["site", "list"], "").await;
    let star: Vec<&str> = o
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('*'))
        .collect();
    assert!(
        star.len() == 1 && star[0].contains("lon") && o.stdout.contains(&par.base),
        "{o:?}"
    );

    let users = |o: &ProcOut| o.code == 0 && o.stdout.contains("only-in-paris");
    let o = sw(&env, &["user", "list"], "").await;
    assert!(o.code == 0 && !users(&o), "{o:?}");
    let o = sw(&env, &["--site", "par", "user", "list"], "").await;
    assert!(users(&o), "{o:?}");
    let mut with_env = env.to_vec();
    with_env.push(("SERVERWARE_SITE", "par"));
    let o = sw(&with_env, &["user", "list"], "").await;
    assert!(users(&o), "{o:?}");
    let o = sw(&env, &["--site", "nowhere", "user", "list"], "").await;
    assert!(
        o.code == 5
            && o.stderr
                .contains("no site named 'nowhere' (known: lon, par)"),
        "{o:?}"
    );
    let o = sw(&env, &["site", "use", "par"], "").await;
    assert_eq!(o.code, 0, "{o:?}");
    let o = sw(&env, &["user", "list"], "").await;
    assert!(users(&o), "{o:?}");

    // Removing the current site revokes its token there and leaves no current site: commands
    // then say so rather than go to another site.
    let o = sw(&env, &["site", "remove", "par"], "").await;
    assert!(
        o.code == 0 && o.stdout.contains("its token revoked"),
        "{o:?}"
    );
    let tokens = crate::vps_lifecycle::get(&par, &par_admin, "/api/v1/tokens").await;
    assert_eq!(tokens.as_array().unwrap().len(), 0, "{tokens}");
    let o = sw(&env, &["user", "list"], "").await;
    assert!(
        o.code == 4 && o.stderr.contains("no current site") && o.stderr.contains("lon"),
        "{o:?}"
    );
    let o = sw(&env, &["site", "use", "par"], "").await;
    assert_eq!(o.code, 5, "{o:?}");
    let o = sw(&env, &["--site", "lon", "whoami"], "").await;
    assert!(o.code == 0 && o.stdout.contains("admin"), "{o:?}");
}
