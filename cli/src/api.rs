//! The controller's REST API as the commands call it, and what its answers mean for the exit
//! code.

use serde_json::Value;
use serverware_shared::error::ErrorBody;
use std::fmt;
use std::time::Duration;

/// How a command ended (the process's exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// The operation failed (a task ended failed, the controller erred).
    Failed = 1,
    /// The command line is wrong.
    Usage = 2,
    /// The controller refused the input.
    Invalid = 3,
    /// Not logged in, or not allowed.
    Denied = 4,
    NotFound = 5,
    /// Busy, exists already, no room.
    Conflict = 6,
    /// The controller cannot be reached.
    Unreachable = 7,
    /// Too many attempts: wait and retry.
    TooMany = 8,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A command that did not succeed: what to tell the operator, and the exit code.
#[derive(Debug, Clone)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// The exit code an HTTP status stands for.
pub fn exit_of(status: u16) -> Exit {
    match status {
        200..=299 => Exit::Ok,
        400 | 413 | 415 | 422 => Exit::Invalid,
        401 | 403 => Exit::Denied,
        404 => Exit::NotFound,
        409 | 423 => Exit::Conflict,
        429 => Exit::TooMany,
        _ => Exit::Failed,
    }
}

/// The controller's error, as the operator should read it: its message, with the field named.
pub fn failure_of(status: u16, body: &Value) -> Failure {
    let exit = exit_of(status);
    let message = match serde_json::from_value::<ErrorBody>(body.clone()) {
        Ok(e) => match e.field {
            Some(f) => format!("{f}: {}", e.message),
            None => e.message,
        },
        Err(_) => format!("the controller answered {status}: {body}"),
    };
    let message = match (status, exit) {
        (401, _) => format!("{message} (log in with `sw login`, or set SERVERWARE_TOKEN)"),
        (403, _) => format!("not allowed: {message}"),
        _ => message,
    };
    Failure::new(exit, message)
}

/// A client of one controller, with one token.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    /// A session cookie (`name=value`) instead of a token: the controller's SSH command line.
    cookie: Option<String>,
    http: reqwest::Client,
    /// Certificates are not checked (`--insecure`).
    insecure: bool,
}

impl Api {
    /// `base`: the controller's URL (`https://controller:8080`), with or without a path.
    pub fn new(base: &str, token: Option<String>, insecure: bool) -> Result<Api> {
        let base = base.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::new(
                Exit::Usage,
                format!("'{base}' is not a controller URL: write http://… or https://…"),
            ));
        }
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(insecure)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            // Let idle connections go before the controller's keep-alive (5 s) closes them.
            .pool_idle_timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .map_err(|e| Failure::new(Exit::Failed, format!("cannot make an HTTP client: {e}")))?;
        Ok(Api {
            base,
            token,
            cookie: None,
            http,
            insecure,
        })
    }

    /// The request with this client's credentials: its token, or its session cookie.
    fn authed(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = &self.cookie {
            req = req.header(reqwest::header::COOKIE, c);
        }
        req
    }

    /// Opens the WebSocket at `path` (an HTTP/1.1 upgrade, authenticated like every request)
    /// and returns the connection for the socket's own framing. A refusal is the controller's
    /// error, as for any request.
    pub async fn upgrade(&self, path: &str) -> Result<reqwest::Upgraded> {
        use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(self.insecure)
            .http1_only()
            .connect_timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| Failure::new(Exit::Failed, format!("cannot make an HTTP client: {e}")))?;
        let key = generate_key();
        let mut req = http
            .get(format!("{}/api/v1{path}", self.base))
            .header(reqwest::header::CONNECTION, "Upgrade")
            .header(reqwest::header::UPGRADE, "websocket")
            .header(reqwest::header::SEC_WEBSOCKET_VERSION, "13")
            .header(reqwest::header::SEC_WEBSOCKET_KEY, &key);
        req = self.authed(req);
        let r = self.send(req).await?;
        let status = r.status().as_u16();
        if status != 101 {
            let text = r.text().await.unwrap_or_default();
            let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Err(failure_of(status, &v));
        }
        let accepted = r
            .headers()
            .get(reqwest::header::SEC_WEBSOCKET_ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if accepted.as_deref() != Some(derive_accept_key(key.as_bytes()).as_str()) {
            return Err(Failure::new(
                Exit::Failed,
                "the controller's WebSocket answer does not match the request".to_string(),
            ));
        }
        r.upgrade().await.map_err(|e| {
            Failure::new(
                Exit::Unreachable,
                format!("the controller's socket broke off: {}", chain(&e)),
            )
        })
    }

    /// Sends a request; a controller that cannot be reached is said so.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        req.send().await.map_err(|e| {
            Failure::new(
                Exit::Unreachable,
                format!(
                    "cannot reach the controller at {}: {}",
                    self.base,
                    chain(&e)
                ),
            )
        })
    }

    /// The same controller, authenticated by a session cookie (`name=value`).
    pub fn with_cookie(&self, cookie: String) -> Api {
        Api {
            token: None,
            cookie: Some(cookie),
            ..self.clone()
        }
    }

    /// Logs in as `username` and makes an API token named `name` with the session (which then
    /// ends): the token's id and secret.
    pub async fn token_by_password(
        &self,
        username: &str,
        password: &str,
        name: &str,
        insecure: bool,
    ) -> Result<(i64, String)> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(insecure)
            .cookie_store(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .map_err(|e| Failure::new(Exit::Failed, format!("cannot make an HTTP client: {e}")))?;
        let session = Api {
            base: self.base.clone(),
            token: None,
            cookie: None,
            http,
            insecure,
        };
        session
            .call(
                "POST",
                "/auth/login",
                Some(&serde_json::json!({ "username": username, "password": password })),
            )
            .await?;
        let made = session
            .call(
                "POST",
                "/tokens",
                Some(&serde_json::json!({ "name": name })),
            )
            .await;
        let _ = session
            .call("POST", "/auth/logout", Some(&serde_json::json!({})))
            .await;
        let v = made?;
        match (v["token"]["id"].as_i64(), v["secret"].as_str()) {
            (Some(id), Some(secret)) => Ok((id, secret.to_string())),
            _ => Err(Failure::new(
                Exit::Failed,
                format!("the controller's answer held no token: {v}"),
            )),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn with_token(&self, token: Option<String>) -> Api {
        Api {
            token,
            ..self.clone()
        }
    }

    /// One request to `/api/v1{path}`: its status and JSON body (Null when empty).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let url = format!("{}/api/v1{path}", self.base);
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| Failure::new(Exit::Failed, format!("bad method {method}")))?;
        let mut req = self.http.request(m, &url);
        if method == "POST" && path == "/hosts" {
            // Adding a host waits for its SSH login and its agent's install, which a slow host
            // stretches: the controller goes on with it whether or not we wait, so we wait.
            req = req.timeout(Duration::from_secs(15 * 60));
        }
        req = self.authed(req);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = self.send(req).await?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| {
            Failure::new(
                Exit::Unreachable,
                format!("the controller's answer broke off: {}", chain(&e)),
            )
        })?;
        let v = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, v))
    }

    /// A request that must succeed: its body, or the controller's error as a [`Failure`].
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, v) = self.raw(method, path, body).await?;
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(failure_of(status, &v))
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None).await
    }

    /// POSTs a file as the request body (streamed, never read whole), with `query`.
    pub async fn post_file(
        &self,
        path: &str,
        query: &[(&str, &str)],
        file: &std::path::Path,
    ) -> Result<Value> {
        let f = tokio::fs::File::open(file).await.map_err(|e| {
            Failure::new(Exit::Usage, format!("cannot read {}: {e}", file.display()))
        })?;
        let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self
            .http
            .post(&url)
            .query(query)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            // An archive of gigabytes takes its time.
            .timeout(Duration::from_secs(6 * 3600))
            .body(reqwest::Body::from(f));
        req = self.authed(req);
        let r = req.send().await.map_err(|e| {
            Failure::new(
                Exit::Unreachable,
                format!(
                    "cannot send {} to the controller: {}",
                    file.display(),
                    chain(&e)
                ),
            )
        })?;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(failure_of(status, &v))
        }
    }
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
