use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use serverware::config::{Config, ConfigArgs};
use serverware::server::Running;
use std::sync::atomic::{AtomicU32, Ordering};

pub const ADMIN_PW: &str = "admin-password-for-tests";

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A controller started for one test, on its own database, removed when dropped.
pub struct TestController {
    pub base: String,
    pub database_url: String,
    running: Option<Running>,
    /// In process mode: the `serverware` binary, killed by its PID when dropped.
    process: Option<std::process::Child>,
    listen: String,
    /// In process mode: where its SSH command line listens.
    ssh_listen: String,
    pg: Option<(String, String)>,
    /// In process mode: more environment (a controller of a pair: its name, its etcd).
    env: Vec<(String, String)>,
    /// In process mode: the network namespace it runs in (a test host's), if any.
    netns: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestController {
    /// The controller's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

/// One controller of a pair in a test: named `name`, asking the etcd members `etcd`, with its
/// own data directory (holding a copy of the pair's controller keys from `keys_from`, and of its
/// database password when there is one), the pair's database (empty: the pair keeps its own,
/// see `SERVERWARE_PAIR_POSTGRES_PORT`) and storage (templates beside it). `owns`: this one drops the (PostgreSQL)
/// database when dropped. `at`: in a test host's network namespace (its name, the host's
/// address, a port), listening on every address there (so that the site's service address
/// reaches it too) and answering at the host's; else on loopback. `extra`: more environment.
pub struct PairMember<'a> {
    pub name: &'a str,
    pub etcd: &'a [String],
    pub database_url: &'a str,
    pub owns: Option<(String, String)>,
    pub storage: &'a std::path::Path,
    pub keys_from: &'a std::path::Path,
    pub at: Option<(&'a str, std::net::Ipv4Addr, u16)>,
    pub extra: &'a [(&'a str, &'a str)],
    /// Made the first of its pair by `serverware pair init --from URL` before it starts.
    pub init_from: Option<&'a str>,
    /// Given the pair's keys by `serverware pair join --from URL` with this admin token
    /// (instead of copies from `keys_from`) before it starts.
    pub join: Option<(&'a str, &'a str)>,
}

/// A client for the controller. Its idle connections are dropped after 2 s, before the
/// controller's keep-alive (5 s) closes them: reusing a connection the server is closing
/// at that moment fails the request ("IncompleteMessage"), which a test waiting several
/// seconds between two requests met in CI.
pub fn client() -> reqwest::ClientBuilder {
    Client::builder().pool_idle_timeout(std::time::Duration::from_secs(2))
}

pub fn postgres_admin_url() -> Option<String> {
    std::env::var("SERVERWARE_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

fn pg_exec(admin_url: &str, sql: &str) {
    use diesel::{Connection, RunQueryDsl};
    let mut c =
        diesel::PgConnection::establish(admin_url).expect("connect to the test PostgreSQL server");
    diesel::sql_query(sql).execute(&mut c).expect(sql);
}

/// A new empty database for one controller: on the test PostgreSQL server when there is one
/// (with the admin URL and name to drop it), else an SQLite file in `dir`.
pub fn fresh_database(dir: &std::path::Path) -> (String, Option<(String, String)>) {
    match postgres_admin_url() {
        Some(admin) => {
            let name = format!(
                "sw_test_{}_{}",
                std::process::id(),
                NEXT_DB.fetch_add(1, Ordering::SeqCst)
            );
            pg_exec(&admin, &format!("CREATE DATABASE {name}"));
            let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
            (format!("{base}/{name}"), Some((admin, name)))
        }
        None => (format!("sqlite://{}/serverware.db", dir.display()), None),
    }
}

impl TestController {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (database_url, pg) = fresh_database(dir.path());
        let mut config = Config::resolve(&ConfigArgs {
            config: Some("/dev/null".into()),
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().to_path_buf()),
            database_url: Some(database_url.clone()),
            admin_password: Some(ADMIN_PW.into()),
            ..Default::default()
        })
        .unwrap();
        // The agent cargo built for this workspace, as installed on hosts.
        let agent = std::path::Path::new(env!("CARGO_BIN_EXE_serverware"))
            .with_file_name("serverware-agent");
        config.agent_bin = agent.is_file().then_some(agent);
        tweak(&mut config);
        let running = serverware::server::start(config)
            .await
            .expect("controller starts");
        let base = running.url().trim_end_matches('/').to_string();
        TestController {
            base,
            database_url,
            running: Some(running),
            process: None,
            listen: String::new(),
            ssh_listen: String::new(),
            pg,
            env: Vec::new(),
            netns: None,
            _dir: dir,
        }
    }

    /// A controller as its own process (the `serverware` binary), so that a test can kill it
    /// with SIGKILL and start it again on the same database, data directory and port.
    /// `fault` sets `SERVERWARE_FAULT` (test builds only) for this first run.
    pub async fn start_process(fault: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (database_url, pg) = fresh_database(dir.path());
        let port = serverware_testhosts::free_port().unwrap();
        let listen = format!("127.0.0.1:{port}");
        let ssh_port = serverware_testhosts::free_port().unwrap();
        let mut t = TestController {
            base: format!("http://{listen}"),
            database_url,
            running: None,
            process: None,
            listen,
            ssh_listen: format!("127.0.0.1:{ssh_port}"),
            pg,
            env: Vec::new(),
            netns: None,
            _dir: dir,
        };
        t.spawn_process(fault).await;
        t
    }

    /// One controller of a pair as its own process (see [`PairMember`]). It answers health as
    /// soon as it serves, leader or standby.
    pub async fn start_pair_member(m: PairMember<'_>) -> Self {
        let (init_from, join) = (m.init_from, m.join);
        let mut t = Self::pair_member(m);
        if let Some((from, token)) = join {
            let out = t.pair_join(from, token);
            assert!(
                out.status.success(),
                "pair join failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if let Some(from) = init_from {
            let out = t
                .command(None)
                .args(["pair", "init", "--from", from])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pair init failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        t.spawn_process(None).await;
        t
    }

    /// `serverware pair join --from FROM` run as this controller, the admin token on its
    /// standard input.
    pub fn pair_join(&self, from: &str, token: &str) -> std::process::Output {
        use std::io::Write;
        let mut c = self
            .command(None)
            .args(["pair", "join", "--from", from])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(c.stdin.take().unwrap(), "{token}").unwrap();
        c.wait_with_output().unwrap()
    }

    /// [`TestController::start_pair_member`] made ready (its data directory and environment),
    /// not started: `pair init`/`pair join` are not run.
    pub fn pair_member(m: PairMember<'_>) -> Self {
        let PairMember {
            name,
            etcd,
            database_url,
            owns,
            storage,
            keys_from,
            at,
            extra,
            join,
            ..
        } = m;
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "controller_ed25519",
            "ssh_host_ed25519_key",
            "postgres_password",
        ] {
            let to = dir.path().join(f);
            if join.is_some() || (f == "postgres_password" && !keys_from.join(f).exists()) {
                continue;
            }
            std::fs::copy(keys_from.join(f), &to).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let (base, listen) = match at {
            Some((_, ip, port)) => (format!("http://{ip}:{port}"), format!("0.0.0.0:{port}")),
            None => {
                let port = serverware_testhosts::free_port().unwrap();
                (
                    format!("http://127.0.0.1:{port}"),
                    format!("127.0.0.1:{port}"),
                )
            }
        };
        let ssh_port = serverware_testhosts::free_port().unwrap();
        let mut env: Vec<(String, String)> = vec![("SERVERWARE_PAIR_URL".into(), base.clone())];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut t = TestController {
            base,
            database_url: database_url.to_string(),
            running: None,
            process: None,
            listen,
            ssh_listen: format!("127.0.0.1:{ssh_port}"),
            pg: owns,
            netns: at.map(|(ns, _, _)| ns.to_string()),
            env: vec![
                ("SERVERWARE_PAIR_ETCD".into(), etcd.join(",")),
                ("SERVERWARE_PAIR_NAME".into(), name.into()),
                ("SERVERWARE_PAIR_LEASE_SECS".into(), "3".into()),
                (
                    "SERVERWARE_STORAGE_DIR".into(),
                    storage.display().to_string(),
                ),
                (
                    "SERVERWARE_TEMPLATES_DIR".into(),
                    storage.with_file_name("templates").display().to_string(),
                ),
            ],
            _dir: dir,
        };
        t.env.extend(env);
        t
    }

    /// Where it stands in its pair (`leader` or `standby`) and who it says leads, from its
    /// health (None while it does not answer).
    pub async fn pair_status(&self) -> Option<(String, Option<String>)> {
        let r = self
            .anon()
            .get(self.url("/api/v1/health"))
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        Some((
            v["pair"]["role"].as_str()?.to_string(),
            v["pair"]["leader"]["name"].as_str().map(str::to_string),
        ))
    }

    /// Its process's PID (process mode, while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|c| c.id())
    }

    async fn spawn_process(&mut self, fault: Option<&str>) {
        self.process = Some(
            self.command(fault)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("the serverware binary starts"),
        );
        self.wait_started().await;
    }

    /// The serverware program as this controller runs (its environment, its namespace).
    pub fn command(&self, fault: Option<&str>) -> std::process::Command {
        let bin = env!("CARGO_BIN_EXE_serverware");
        let agent = std::path::Path::new(bin).with_file_name("serverware-agent");
        // `ip netns exec` enters the namespace and then becomes the controller (same PID).
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => std::process::Command::new(bin),
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("SERVERWARE_") {
                c.env_remove(k);
            }
        }
        // A pair that keeps its own database is given none.
        if !self.database_url.is_empty() {
            c.env("SERVERWARE_DATABASE_URL", &self.database_url);
        }
        c.env("SERVERWARE_CONFIG", "/dev/null")
            .env("SERVERWARE_DATA_DIR", self._dir.path())
            .env("SERVERWARE_LISTEN", &self.listen)
            .env("SERVERWARE_SSH_LISTEN", &self.ssh_listen)
            .env("SERVERWARE_ADMIN_PASSWORD", ADMIN_PW)
            .env("SERVERWARE_AGENT_BIN", &agent)
            .env(
                "SERVERWARE_LOG",
                std::env::var("TEST_CONTROLLER_LOG")
                    .unwrap_or("warn,serverware::tasks=info,serverware::netmon=info".into()),
            )
            .stdout(std::process::Stdio::null());
        if let Some(f) = fault {
            c.env("SERVERWARE_FAULT", f);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Waits until the process answers its health (panics if it exits first).
    async fn wait_started(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let client = self.anon();
        loop {
            if let Ok(r) = client.get(self.url("/api/v1/health")).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            if let Some(status) = self.process.as_mut().unwrap().try_wait().unwrap() {
                panic!("the controller exited at start: {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the controller never answered"
            );
            actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Waits until the controller process dies by itself (a fault point killed it) and says
    /// whether it died by SIGKILL.
    pub async fn wait_killed(&mut self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        let child = self.process.as_mut().expect("process mode");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.process = None;
                return status.signal() == Some(9);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the controller was never killed by its fault point"
            );
            actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Kills the controller process with SIGKILL now (by its PID).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.process.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM to the controller and waits for it to exit; returns how long it took.
    pub async fn terminate(&mut self) -> std::time::Duration {
        let child = self.process.as_mut().expect("process mode");
        let t0 = std::time::Instant::now();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        loop {
            if child.try_wait().unwrap().is_some() {
                self.process = None;
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(120),
                "the controller did not exit after SIGTERM"
            );
            actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// An environment variable for the next start of the process (it wins over the defaults).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Starts the controller process again on the same database and port.
    pub async fn restart(&mut self, fault: Option<&str>) {
        self.kill();
        self.spawn_process(fault).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The port of its SSH command line.
    pub fn ssh_port(&self) -> u16 {
        match &self.running {
            Some(r) => r.ssh_addr.expect("the SSH command line is on").port(),
            None => self
                .ssh_listen
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("an SSH port"),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// A client with no credentials.
    pub fn anon(&self) -> Client {
        client().cookie_store(true).build().unwrap()
    }

    /// A client logged in with a session cookie.
    pub async fn login(&self, user: &str, password: &str) -> Client {
        let c = self.anon();
        let r = c
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "login as {user}: {}",
            r.text().await.unwrap()
        );
        c
    }

    /// Logs in and returns the raw session cookie (`serverware_session=…`).
    pub async fn session_cookie(&self, user: &str, password: &str) -> String {
        let r = self
            .anon()
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let c = r.headers().get("set-cookie").unwrap().to_str().unwrap();
        c.split(';').next().unwrap().to_string()
    }

    pub fn hub(&self) -> std::sync::Arc<serverware::hub::Hub> {
        self.running.as_ref().unwrap().hub.clone()
    }

    pub async fn admin(&self) -> Client {
        self.login("admin", ADMIN_PW).await
    }

    /// Creates a user through the API and returns a logged-in client for them.
    pub async fn user_with_role(&self, admin: &Client, name: &str, role: &str) -> Client {
        let pw = format!("{name}-password-123");
        let r = admin
            .post(self.url("/api/v1/users"))
            .json(&json!({"username": name, "password": pw, "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        self.login(name, &pw).await
    }

    /// Creates an API token with `client` and returns its secret.
    pub async fn token(&self, client: &Client, name: &str, role: Option<&str>) -> String {
        let r = client
            .post(self.url("/api/v1/tokens"))
            .json(&json!({"name": name, "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        body["secret"].as_str().unwrap().to_string()
    }

    /// Runs SQL on the controller's database behind its back.
    pub fn sql(&self, sql: &str) {
        use diesel::connection::SimpleConnection;
        let db = serverware::db::Db::open(&self.database_url).unwrap();
        let mut c = db.get_blocking().unwrap();
        c.batch_execute(sql).unwrap();
    }
}

impl Drop for TestController {
    fn drop(&mut self) {
        self.kill();
        if let Some(r) = self.running.take() {
            // Stop accepting at once; the runtime ending with the test ends the rest. The boot
            // service is a process of its own with a run directory: ended and removed here, as a
            // stopping controller does (the test binary's exit would leave both).
            r.state.provision.dnsmasq.stop();
            drop(r.handle.stop(false));
            r.server.abort();
        }
        if let Some((admin, name)) = self.pg.take() {
            pg_exec(
                &admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// Reads `/api/v1/events?{query}` until `done` accepts its events (deadline `secs`); the body.
pub async fn events_until(
    t: &TestController,
    c: &Client,
    query: &str,
    secs: u64,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let r = c
            .get(t.url(&format!("/api/v1/events?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "events?{query}");
        let ev: Value = r.json().await.unwrap();
        if done(ev["events"].as_array().map_or(&[][..], |l| l.as_slice())) {
            return ev;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {ev:#}");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Asserts the status and the one error shape, and returns the body.
pub async fn expect_error(r: Response, status: u16, code: &str) -> Value {
    let got = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

/// What a command-line program run by a test printed, and how it ended.
pub struct ProcOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl ProcOut {
    pub fn of(o: std::process::Output) -> ProcOut {
        ProcOut {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for ProcOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}
