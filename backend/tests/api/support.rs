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
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TestController {
    /// The controller's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }
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

impl TestController {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (database_url, pg) = match postgres_admin_url() {
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
            None => (
                format!("sqlite://{}/serverware.db", dir.path().display()),
                None,
            ),
        };
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
            pg,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// A client with no credentials.
    pub fn anon(&self) -> Client {
        Client::builder().cookie_store(true).build().unwrap()
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
        if let Some(r) = self.running.take() {
            // Stop accepting at once; the runtime ending with the test ends the rest.
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
