//! The Debian package, as a user meets it: installed with dpkg on a clean Debian 12 that runs
//! systemd (an LXC system container on a test bridge, made from a cached debootstrap with the
//! package's Depends), started by its unit as its own user, logged into with the first password
//! it names; a host added and a VPS started on it; then upgraded to a newer build that carries
//! one more migration, while the VPS is sampled every 200 ms: it never stops answering, the
//! database is migrated, the host's agent is replaced by the new build's, and installing the
//! older package again is refused by the controller with a clear message.
//!
//! `./scripts/test.sh` builds both packages (`scripts/package.sh --profile pkgtest`, the second
//! from a copy of the checkout with one more migration) and the clean Debian: see
//! `SERVERWARE_TEST_PACKAGES` and `SERVERWARE_TEST_PACKAGE_HOST`.

use reqwest::Client;
use serde_json::{json, Value};
use serverware_testhosts::{Cluster, ClusterOptions};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const OLD: &str = "0.1.0+test.1";
const NEW: &str = "0.1.0+test.2";
const MIB: i64 = 1024 * 1024;

fn env_path(name: &str) -> PathBuf {
    let p = PathBuf::from(std::env::var_os(name).unwrap_or_else(|| {
        panic!("{name} is not set: ./scripts/test.sh builds the packages and the clean Debian")
    }));
    assert!(p.exists(), "{name}={} does not exist", p.display());
    p
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A clean machine with systemd: an LXC system container whose root is an overlay on the cached
/// debootstrap (left untouched), with its address on the test cluster's bridge.
struct Machine {
    name: String,
    dir: PathBuf,
    addr: Ipv4Addr,
}

impl Machine {
    fn start(root: &Path, bridge: &str, addr: Ipv4Addr, gateway: Ipv4Addr) -> Machine {
        sweep_stale();
        let name = format!("swpkg-{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("serverware-pkgtest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["upper", "work", "root", &format!("lxc/{name}")] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let m = Machine { name, dir, addr };
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            root.display(),
            m.dir.join("upper").display(),
            m.dir.join("work").display()
        );
        let o = run(
            "mount",
            &[
                "-t",
                "overlay",
                "overlay",
                "-o",
                &opts,
                &m.root().to_string_lossy(),
            ],
        );
        assert!(o.status.success(), "overlay: {}", text(&o));
        let config = format!(
            "lxc.uts.name = pkgtest\n\
             lxc.rootfs.path = dir:{root}\n\
             lxc.net.0.type = veth\n\
             lxc.net.0.link = {bridge}\n\
             lxc.net.0.flags = up\n\
             lxc.net.0.ipv4.address = {addr}/24\n\
             lxc.net.0.ipv4.gateway = {gateway}\n\
             lxc.mount.auto = proc:mixed sys:mixed cgroup:rw:force\n\
             lxc.apparmor.profile = unconfined\n\
             lxc.autodev = 1\n\
             lxc.tty.max = 2\n\
             lxc.pty.max = 16\n\
             lxc.init.cmd = /lib/systemd/systemd\n\
             lxc.environment = container=lxc\n",
            root = m.root().display(),
        );
        std::fs::write(m.dir.join("lxc").join(&m.name).join("config"), config).unwrap();
        let o = run(
            "lxc-start",
            &[
                "-P",
                &m.lxcpath(),
                "-n",
                &m.name,
                "-o",
                &m.dir.join("lxc.log").to_string_lossy(),
            ],
        );
        assert!(o.status.success(), "lxc-start: {}", text(&o));
        // systemd is up when it says so (degraded would name a failed unit: shown, not hidden).
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let o = m.sh(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if state == "running" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the clean machine's systemd never came up: {state}; failed: {}",
                text(&m.sh(&["systemctl", "--failed", "--no-pager"]))
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        m
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn lxcpath(&self) -> String {
        self.dir.join("lxc").to_string_lossy().into_owned()
    }

    /// A command on the machine, as root, with an argument vector.
    fn sh(&self, args: &[&str]) -> Output {
        let lxcpath = self.lxcpath();
        let mut v = vec!["-P", lxcpath.as_str(), "-n", self.name.as_str(), "--"];
        v.extend_from_slice(args);
        run("lxc-attach", &v)
    }

    fn install(&self, deb: &Path) -> String {
        let name = deb.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(deb, self.root().join("root").join(&name)).unwrap();
        let o = self.sh(&["dpkg", "-i", &format!("/root/{name}")]);
        let out = text(&o);
        assert!(o.status.success(), "dpkg -i {name}: {out}");
        out
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}:8080{path}", self.addr)
    }

    fn journal(&self) -> String {
        text(&self.sh(&["journalctl", "-u", "serverware", "--no-pager", "-n", "60"]))
    }
}

/// What a killed run of this test left (its process is gone): the container, the overlay, the
/// directory.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("serverware-pkgtest-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = e.path();
        let lxcpath = dir.join("lxc").to_string_lossy().into_owned();
        let _ = run(
            "lxc-stop",
            &["-P", &lxcpath, "-n", &format!("swpkg-{pid}"), "-k"],
        );
        let _ = run("umount", &["-l", &dir.join("root").to_string_lossy()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = run("lxc-stop", &["-P", &self.lxcpath(), "-n", &self.name, "-k"]);
        let _ = run("umount", &["-l", &self.root().to_string_lossy()]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A list answer's items: the answer itself, or its one list field.
fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Object(o) => o
            .values()
            .find_map(|x| x.as_array().cloned())
            .unwrap_or_else(|| panic!("no list in {v}")),
        _ => panic!("no list in {v}"),
    }
}

fn client() -> Client {
    Client::builder()
        .cookie_store(true)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn until<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn get(c: &Client, url: &str) -> Option<Value> {
    let r = c.get(url).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

async fn login(m: &Machine, password: &str) -> Client {
    let c = client();
    let r = c
        .post(m.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    c
}

/// Samples http://ip/ every 200 ms until told to stop; returns (answers, failures).
fn sample(
    ip: String,
    body: String,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<(u32, Vec<String>)>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let c = Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let (mut ok, mut failed) = (0, Vec::new());
        while !*stopped.borrow() {
            match c.get(format!("http://{ip}/")).send().await {
                Ok(r) => match r.text().await {
                    Ok(t) if t.trim() == body => ok += 1,
                    Ok(t) => failed.push(format!("answered {t:?}")),
                    Err(e) => failed.push(e.to_string()),
                },
                Err(e) => failed.push(e.to_string()),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stopped.changed() => {}
            }
        }
        (ok, failed)
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_installs_runs_and_upgrades_in_place_while_a_vps_runs() {
    let packages = env_path("SERVERWARE_TEST_PACKAGES");
    let clean = env_path("SERVERWARE_TEST_PACKAGE_HOST");
    let deb = |v: &str| packages.join(format!("serverware_{v}_amd64.deb"));
    let (old, new) = (deb(OLD), deb(NEW));
    assert!(
        old.is_file() && new.is_file(),
        "no packages in {}",
        packages.display()
    );

    let cluster = Cluster::create(ClusterOptions {
        hosts: 1,
        ..Default::default()
    })
    .unwrap();
    let net = format!("10.77.{}", cluster.subnet);
    let m = Machine::start(
        &clean,
        &cluster.bridge,
        format!("{net}.200").parse().unwrap(),
        cluster.gateway,
    );

    // Installed: it says where to log in and where the first password is; the unit is active
    // (a notify unit: only once it serves), run by its own user, and serves the dashboard
    // compiled into it.
    let said = m.install(&old);
    assert!(said.contains(&m.url("/")), "{said}");
    assert!(
        said.contains("/var/lib/serverware/initial-admin-password"),
        "{said}"
    );
    let active = m.sh(&["systemctl", "is-active", "serverware"]);
    assert_eq!(text(&active).trim(), "active", "{}", m.journal());
    let user = m.sh(&["ps", "-o", "user=", "-C", "serverware"]);
    assert_eq!(text(&user).trim(), "serverware");
    let status = text(&m.sh(&["systemctl", "status", "serverware", "--no-pager"]));
    assert!(
        status.contains("leading: serving the dashboard and API"),
        "{status}"
    );
    let index = client().get(m.url("/vpses")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(index.text().await.unwrap().contains("<html"));
    let password = text(&m.sh(&["cat", "/var/lib/serverware/initial-admin-password"]))
        .trim()
        .to_string();
    login(&m, &password).await;
    // As the notes say for a lost password, as root: the command acts as the service's user,
    // so no file of the data directory becomes root's; the first password's file goes.
    let o = m.sh(&["serverware", "admin", "reset-password", "admin"]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    let password = said
        .lines()
        .find_map(|l| l.strip_prefix("New password for admin: "))
        .unwrap_or_else(|| panic!("no new password in: {said}"))
        .trim()
        .to_string();
    let roots = text(&m.sh(&["find", "/var/lib/serverware", "-user", "root"]));
    assert!(
        roots.trim().is_empty(),
        "root's files in the data directory: {roots}"
    );
    assert!(!m
        .sh(&["test", "-e", "/var/lib/serverware/initial-admin-password"])
        .status
        .success());
    let admin = login(&m, &password).await;
    let health = get(&admin, &m.url("/api/v1/health")).await.unwrap();
    assert_eq!(health["version"], OLD);

    // A host and a VPS on it.
    let h = &cluster.hosts[0];
    let probe: Value = admin
        .post(m.url("/api/v1/hosts/probe"))
        .json(&json!({"address": h.ssh_url()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = admin
        .post(m.url("/api/v1/hosts"))
        .json(&json!({"name": "pkg-host", "address": h.ssh_url(), "host_key": probe["host_key"], "password": h.password}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let host: Value = r.json().await.unwrap();
    let hid = host["id"].as_i64().unwrap();
    let host_url = m.url(&format!("/api/v1/hosts/{hid}"));
    let on_old = until("the host online with the old agent", 120, async || {
        let h = get(&admin, &host_url).await?;
        (h["status"] == "online" && h["agent_version"] == OLD).then_some(h)
    })
    .await;
    assert_eq!(on_old["agent_version"], OLD);
    let r = admin
        .patch(&host_url)
        .json(&json!({"vps_gateway": cluster.gateway.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let templates = get(&admin, &m.url("/api/v1/templates")).await.unwrap();
    let tpl = templates
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "minimal" && t["status"] == "ready")
        .unwrap_or_else(|| panic!("no built-in template: {templates}"))["id"]
        .as_i64()
        .unwrap();
    let ip = format!("{net}.50");
    let r = admin
        .post(m.url("/api/v1/vpses"))
        .json(
            &json!({"name": "web-1", "template_id": tpl, "host_id": hid, "ipv4": ip,
            "memory_limit_bytes": 64 * MIB, "start": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let ask = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    until("the VPS answering", 180, async || {
        let r = ask.get(format!("http://{ip}/")).send().await.ok()?;
        (r.text().await.ok()?.trim() == "web-1").then_some(())
    })
    .await;

    // The upgrade, while the VPS is sampled.
    let (stop, sampler) = sample(ip.clone(), "web-1".into());
    let said = m.install(&new);
    assert!(said.contains(&m.url("/")), "{said}");
    let health = until("the new controller serving", 120, async || {
        let h = get(&client(), &m.url("/api/v1/health")).await?;
        (h["version"] == NEW).then_some(h)
    })
    .await;
    assert_eq!(health["version"], NEW);
    // The session outlived the restart (it is in the database); the host's agent is the new
    // build's, rolled out by the controller, and said in an event.
    until("the host online with the new agent", 180, async || {
        let h = get(&admin, &host_url).await?;
        (h["status"] == "online" && h["agent_version"] == NEW).then_some(())
    })
    .await;
    let upgraded = until("an agent.upgraded event", 60, async || {
        let events = get(&admin, &m.url("/api/v1/events?limit=200")).await?;
        items(&events)
            .into_iter()
            .find(|e| e["action"] == "agent.upgraded")
    })
    .await;
    eprintln!("{}", upgraded["message"]);
    let v = get(&admin, &m.url("/api/v1/vpses")).await.unwrap();
    let vps = items(&v)
        .iter()
        .find(|v| v["name"] == "web-1")
        .cloned()
        .unwrap();
    assert_eq!(vps["state"], "running", "{vps:#}");
    let _ = stop.send(true);
    let (answered, failed) = sampler.await.unwrap();
    eprintln!("the VPS answered {answered} samples in a row through the upgrade");
    assert!(answered >= 5, "too few samples: {answered}");
    assert!(
        failed.is_empty(),
        "the VPS stopped answering during the upgrade ({answered} answers): {failed:?}"
    );

    // The older package again: the controller refuses the newer database, says why, and the
    // unit tells the truth (not active).
    let o = {
        let name = old.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(&old, m.root().join("root").join(&name)).unwrap();
        m.sh(&["dpkg", "-i", &format!("/root/{name}")])
    };
    assert!(o.status.success(), "{}", text(&o));
    let journal = until("the downgrade refused", 120, async || {
        let active = text(&m.sh(&["systemctl", "is-active", "serverware"]));
        let j = m.journal();
        (active.trim() != "active" && j.contains("newer")).then_some(j)
    })
    .await;
    assert!(
        journal.contains("2099"),
        "the refusal names the unknown migration: {journal}"
    );
    eprintln!(
        "downgrade refused: {}",
        journal
            .lines()
            .rev()
            .find(|l| l.contains("newer"))
            .unwrap_or_default()
    );

    // Removed: the service is gone, the data and the configuration stay.
    let o = m.sh(&["dpkg", "-r", "serverware"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = m.sh(&["systemctl", "is-active", "serverware"]);
    assert_ne!(text(&o).trim(), "active");
    for kept in [
        "/var/lib/serverware/serverware.db",
        "/etc/serverware/config.toml",
    ] {
        assert!(
            m.sh(&["test", "-e", kept]).status.success(),
            "{kept} was not kept"
        );
    }
    // Purged: they go, and so does the user.
    let o = m.sh(&["dpkg", "-P", "serverware"]);
    assert!(o.status.success(), "{}", text(&o));
    for gone in ["/var/lib/serverware", "/etc/serverware"] {
        assert!(
            !m.sh(&["test", "-e", gone]).status.success(),
            "{gone} is left"
        );
    }
    assert!(!m.sh(&["getent", "passwd", "serverware"]).status.success());

    // `sw` alone, for an operator's machine.
    let sw = packages.join(format!("serverware-sw_{NEW}_amd64.deb"));
    m.install(&sw);
    let o = m.sh(&["sw", "--version"]);
    assert!(text(&o).contains(NEW), "{}", text(&o));
    assert!(!m
        .sh(&["test", "-e", "/usr/bin/serverware"])
        .status
        .success());
}
