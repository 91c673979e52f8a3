//! Authentication: argon2 password hashes, server-side sessions behind an HttpOnly cookie,
//! hashed API tokens, roles, and the back-off on failed logins.

use crate::core::Core;
use crate::db::DbConn;
use crate::error::{ApiError, ApiResult};
use crate::models::{now, ApiToken, Session, User};
use crate::schema::{api_tokens, sessions, users};
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use diesel::prelude::*;
use rand::RngCore;
use serverware_shared::{Role, SESSION_COOKIE, TOKEN_PREFIX};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::{ready, Ready};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Routes anyone may call.
pub const PUBLIC_API_PATHS: [&str; 2] = ["/api/v1/health", "/api/v1/auth/login"];

pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("password hashing failed: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Password hashing is slow on purpose. It runs on threads of its own, as many as half the CPUs,
/// at a lower scheduling priority (nice 10), never holding a database connection: a flood of
/// logins takes at most those CPUs, and even there yields to the threads answering everyone
/// else. At most [`HASH_QUEUE`] checks wait for a thread; past that a login is refused (429)
/// after [`REFUSAL_DELAY`] instead of queueing without end.
struct Hashing {
    jobs: std::sync::mpsc::SyncSender<HashJob>,
}

type HashJob = Box<dyn FnOnce() + Send>;

/// How long a login refused without a password check (a locked client, a full queue) waits
/// for its answer, so that refusals cannot be asked for as fast as a client can send.
pub const REFUSAL_DELAY: Duration = Duration::from_secs(1);

/// How many password checks may wait for their turn.
pub const HASH_QUEUE: usize = 64;

fn hashing() -> &'static Hashing {
    static H: std::sync::OnceLock<Hashing> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (jobs, queue) = std::sync::mpsc::sync_channel::<HashJob>(HASH_QUEUE);
        let queue = std::sync::Arc::new(Mutex::new(queue));
        for i in 0..(cpus / 2).max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    // SAFETY: setpriority has no memory effects; on Linux, `who` 0 with
                    // PRIO_PROCESS is this thread alone. A failure leaves the priority as is.
                    unsafe {
                        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
                    }
                    loop {
                        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a password hashing thread: {e}");
            }
        }
        Hashing { jobs }
    })
}

/// Runs `work` on a hashing thread, when one is free.
async fn hash_turn<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: HashJob = Box::new(move || {
        // A client that went away while waiting costs no hash.
        if tx.is_closed() {
            return;
        }
        if let Ok(v) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            let _ = tx.send(v);
        }
    });
    match hashing().jobs.try_send(job) {
        Ok(()) => {}
        Err(std::sync::mpsc::TrySendError::Full(_)) => {
            tokio::time::sleep(REFUSAL_DELAY).await;
            return Err(ApiError::Busy(
                "too many password checks are waiting; try again in a moment".into(),
            ));
        }
        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "no password hashing thread is running"
            )))
        }
    }
    rx.await
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("password hashing failed")))
}

/// [`hash_password`] in its turn, holding no database connection.
pub async fn hash_password_off(password: String) -> Result<String, ApiError> {
    hash_turn(move || hash_password(&password)).await?
}

/// [`verify_password`] in its turn, holding no database connection.
pub async fn verify_password_off(password: String, hash: String) -> ApiResult<bool> {
    hash_turn(move || verify_password(&password, &hash)).await
}

/// A hash to verify against when the user does not exist, so the answer takes as long.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no such user, no such password").unwrap_or_default())
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A random password that is easy to copy: 20 characters from an unambiguous alphabet.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char)
        .collect()
}

/// Sessions and tokens are long random strings, so a fast hash is enough to store them.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn new_session_secret() -> String {
    random_b64(32)
}

/// The user agent recorded for sessions of the controller's SSH command line (a browser's
/// agent that says the same is recorded with a prefix: see the login).
pub const SSH_SESSION_AGENT: &str = "serverware-ssh";

/// A new API token: `swt_` and 40 random characters.
pub fn new_token_secret() -> String {
    format!("{TOKEN_PREFIX}{}", random_b64(30))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    Session {
        session_id: i64,
        /// Made by a login to the controller's SSH command line (not the dashboard).
        ssh: bool,
    },
    Token {
        token_id: i64,
        name: String,
        /// When the token stops working, if ever.
        expires_at: Option<chrono::NaiveDateTime>,
    },
}

/// Who is calling, attached to every authenticated request by [`require_auth`].
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub username: String,
    /// The user's own role.
    pub user_role: Role,
    /// The role in force: the user's, or the token's when lower.
    pub role: Role,
    pub method: AuthMethod,
}

impl Principal {
    pub fn token_name(&self) -> Option<&str> {
        match &self.method {
            AuthMethod::Token { name, .. } => Some(name),
            AuthMethod::Session { .. } => None,
        }
    }

    /// The way other than the dashboard or an API token the request came by, if any.
    pub fn via(&self) -> Option<&'static str> {
        match &self.method {
            AuthMethod::Session { ssh: true, .. } => Some("ssh"),
            _ => None,
        }
    }

    /// Refuses with 403 unless the role in force allows `required`.
    pub fn require(&self, required: Role) -> Result<(), ApiError> {
        if self.role.allows(required) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {required} role; you act as {}",
                self.role
            )))
        }
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .ok_or_else(|| ApiError::Unauthorized("authentication required".into())),
        )
    }
}

/// Middleware on `/api/v1`: every route but the public ones needs a session cookie or a bearer
/// token. Unknown routes answer 401 too, so an anonymous caller learns nothing of the API.
pub async fn require_auth(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if PUBLIC_API_PATHS.contains(&req.path()) {
        return next.call(req).await;
    }
    let state = req
        .app_data::<web::Data<Core>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    let bearer = match req.headers().get(actix_web::http::header::AUTHORIZATION) {
        Some(value) => {
            let v = value
                .to_str()
                .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
            let token = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .ok_or_else(|| {
                    ApiError::Unauthorized(
                        "the Authorization header must be 'Bearer <token>'".into(),
                    )
                })?;
            Some(token.trim().to_string())
        }
        None => None,
    };
    let cookie = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string());
    let principal = match (bearer, cookie) {
        (Some(token), _) => authenticate_token(&state, token).await?,
        (None, Some(secret)) => {
            same_origin(req.request())?;
            authenticate_session(&state, secret).await?
        }
        (None, None) => {
            return Err(ApiError::Unauthorized(
                "authentication required: log in or send an API token".into(),
            )
            .into())
        }
    };
    req.extensions_mut().insert(principal);
    next.call(req).await
}

/// A request authenticated by the session cookie that changes something (any method but GET,
/// HEAD and OPTIONS), or opens the live socket, must come from the controller's own pages:
/// browsers say where a request comes from in `Sec-Fetch-Site` and `Origin`, and a page of
/// another site is refused with 403 whatever the request's body or content type. A client that
/// sends neither header is no browser, and cannot have been steered by another site's page.
/// Requests with an API token are not affected: a token is never sent by a browser on its own.
pub fn same_origin(req: &HttpRequest) -> Result<(), ApiError> {
    use actix_web::http::{header, Method};
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !upgrade && matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let refuse = |from: &str| {
        ApiError::Forbidden(format!(
            "this request came from {from}, not from the controller's own pages: with the \
             session cookie, changes are accepted only from them (scripts use an API token)"
        ))
    };
    if let Some(site) = req.headers().get("sec-fetch-site") {
        return match site.to_str().unwrap_or("") {
            "same-origin" | "none" => Ok(()),
            other => Err(refuse(&format!("a {other} page"))),
        };
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let own = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        return match (host, own) {
            (Some(h), Some(own)) if h.eq_ignore_ascii_case(own) => Ok(()),
            _ => Err(refuse(&format!("'{}'", origin.escape_default()))),
        };
    }
    Ok(())
}

/// Last-seen times are written at most this often, so reads do not turn into writes.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

async fn authenticate_session(state: &Core, secret: String) -> Result<Principal, ApiError> {
    let idle = chrono::TimeDelta::minutes(state.config.session_idle_minutes as i64);
    state
        .db
        .run(move |conn: &mut DbConn| {
            let hash = secret_hash(&secret);
            let found: Option<(Session, User)> = sessions::table
                .inner_join(users::table)
                .filter(sessions::token_hash.eq(&hash))
                .select((Session::as_select(), User::as_select()))
                .first(conn)
                .optional()?;
            let Some((session, user)) = found else {
                return Err(ApiError::Unauthorized(
                    "your session has ended; log in again".into(),
                ));
            };
            let t = now();
            if user.disabled || session.last_seen_at + idle < t {
                diesel::delete(sessions::table.find(session.id)).execute(conn)?;
                return Err(ApiError::Unauthorized(
                    "your session has ended; log in again".into(),
                ));
            }
            if t - session.last_seen_at > TOUCH_EVERY {
                diesel::update(sessions::table.find(session.id))
                    .set(sessions::last_seen_at.eq(t))
                    .execute(conn)?;
            }
            Ok(Principal {
                user_id: user.id,
                username: user.username.clone(),
                user_role: user.role(),
                role: user.role(),
                method: AuthMethod::Session {
                    session_id: session.id,
                    ssh: session.user_agent.as_deref() == Some(SSH_SESSION_AGENT),
                },
            })
        })
        .await
}

async fn authenticate_token(state: &Core, secret: String) -> Result<Principal, ApiError> {
    state
        .db
        .run(move |conn: &mut DbConn| {
            let invalid =
                || ApiError::Unauthorized("the API token is not valid, revoked or expired".into());
            if !secret.starts_with(TOKEN_PREFIX) {
                return Err(invalid());
            }
            let hash = secret_hash(&secret);
            let found: Option<(ApiToken, User)> = api_tokens::table
                .inner_join(users::table)
                .filter(api_tokens::token_hash.eq(&hash))
                .select((ApiToken::as_select(), User::as_select()))
                .first(conn)
                .optional()?;
            let Some((token, user)) = found else {
                return Err(invalid());
            };
            let t = now();
            if user.disabled
                || token.revoked_at.is_some()
                || token.expires_at.is_some_and(|e| e <= t)
            {
                return Err(invalid());
            }
            if token.last_used_at.is_none_or(|u| t - u > TOUCH_EVERY) {
                diesel::update(api_tokens::table.find(token.id))
                    .set(api_tokens::last_used_at.eq(t))
                    .execute(conn)?;
            }
            let token_role = crate::models::parse_role(&token.role);
            Ok(Principal {
                user_id: user.id,
                username: user.username.clone(),
                user_role: user.role(),
                // A demoted user's tokens lose the rights the user lost.
                role: token_role.min(user.role()),
                method: AuthMethod::Token {
                    token_id: token.id,
                    name: token.name,
                    expires_at: token.expires_at,
                },
            })
        })
        .await
}

/// Whether what authenticated `p` still holds: the session was not ended, the token not revoked
/// or expired, the user not disabled. Long-lived connections (the live socket) check this.
pub async fn still_valid(state: &Core, p: &Principal) -> bool {
    let idle = chrono::TimeDelta::minutes(state.config.session_idle_minutes as i64);
    let method = p.method.clone();
    let r = state
        .db
        .run(move |conn| {
            let t = now();
            let ok = match method {
                AuthMethod::Session { session_id, .. } => {
                    sessions::table
                        .inner_join(users::table)
                        .filter(sessions::id.eq(session_id))
                        .filter(users::disabled.eq(false))
                        .filter(sessions::last_seen_at.gt(t - idle))
                        .count()
                        .get_result::<i64>(conn)?
                        > 0
                }
                AuthMethod::Token { token_id, .. } => {
                    api_tokens::table
                        .inner_join(users::table)
                        .filter(api_tokens::id.eq(token_id))
                        .filter(users::disabled.eq(false))
                        .filter(api_tokens::revoked_at.is_null())
                        .filter(
                            api_tokens::expires_at
                                .is_null()
                                .or(api_tokens::expires_at.gt(t)),
                        )
                        .count()
                        .get_result::<i64>(conn)?
                        > 0
                }
            };
            Ok(ok)
        })
        .await;
    // A database hiccup does not end a socket; a definite "no" does.
    r.unwrap_or(true)
}

pub use crate::config::LoginLimits;

#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

/// Slows down password guessing per account and per client address: after a number of failures
/// in a row the key is locked, for a time that doubles with each further failure.
#[derive(Debug)]
pub struct LoginLimiter {
    limits: LoginLimits,
    accounts: Mutex<HashMap<String, Strikes>>,
    addresses: Mutex<HashMap<IpAddr, Strikes>>,
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            accounts: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while the account or the address is locked.
    pub fn check(&self, account: &str, addr: Option<IpAddr>, at: Instant) -> Result<(), Duration> {
        let mut wait = Duration::ZERO;
        if let Some(s) = lock(&self.accounts).get(account) {
            wait = wait.max(remaining(s, at));
        }
        if let Some(a) = addr {
            if let Some(s) = lock(&self.addresses).get(&a) {
                wait = wait.max(remaining(s, at));
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    pub fn failure(&self, account: &str, addr: Option<IpAddr>, at: Instant) {
        let forget = Duration::from_secs(self.limits.max_lock_secs.max(60) * 2);
        {
            let mut map = lock(&self.accounts);
            prune(&mut map, at, forget);
            strike(
                map.entry(account.to_string()),
                &self.limits,
                self.limits.account_failures,
                at,
                forget,
            );
        }
        if let Some(a) = addr {
            let mut map = lock(&self.addresses);
            prune(&mut map, at, forget);
            strike(
                map.entry(a),
                &self.limits,
                self.limits.address_failures,
                at,
                forget,
            );
        }
    }

    pub fn success(&self, account: &str, addr: Option<IpAddr>) {
        lock(&self.accounts).remove(account);
        if let Some(a) = addr {
            lock(&self.addresses).remove(&a);
        }
    }
}

fn lock<K, V>(m: &Mutex<HashMap<K, V>>) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
    // A panic while holding the lock leaves plain counters behind: still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn remaining(s: &Strikes, at: Instant) -> Duration {
    s.locked_until
        .map(|u| u.saturating_duration_since(at))
        .unwrap_or_default()
}

fn prune<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Strikes>, at: Instant, forget: Duration) {
    if map.len() > 10_000 {
        map.retain(|_, s| at.saturating_duration_since(s.last_failure) < forget);
    }
}

fn strike<K>(
    entry: std::collections::hash_map::Entry<'_, K, Strikes>,
    limits: &LoginLimits,
    threshold: u32,
    at: Instant,
    forget: Duration,
) {
    let s = entry.or_insert(Strikes {
        failures: 0,
        locked_until: None,
        last_failure: at,
    });
    if at.saturating_duration_since(s.last_failure) >= forget {
        s.failures = 0;
    }
    s.failures += 1;
    s.last_failure = at;
    if s.failures >= threshold {
        let doublings = (s.failures - threshold).min(20);
        let secs = limits
            .base_lock_secs
            .saturating_mul(1u64 << doublings)
            .min(limits.max_lock_secs);
        s.locked_until = Some(at + Duration::from_secs(secs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = new_token_secret();
        let b = new_token_secret();
        assert!(a.starts_with("swt_") && a.len() == 44);
        assert_ne!(a, b);
        assert_eq!(secret_hash(&a).len(), 64);
        assert_ne!(secret_hash(&a), secret_hash(&b));
        let p = random_password();
        assert_eq!(p.len(), 20);
        assert!(serverware_shared::validate::new_password("p", &p).is_ok());
    }

    #[test]
    fn limiter_locks_after_threshold_and_doubles() {
        let limits = LoginLimits {
            account_failures: 3,
            address_failures: 100,
            base_lock_secs: 10,
            max_lock_secs: 25,
        };
        let l = LoginLimiter::new(limits);
        let t0 = Instant::now();
        let ip: IpAddr = "10.77.0.9".parse().unwrap();
        l.failure("alice", Some(ip), t0);
        l.failure("alice", Some(ip), t0);
        assert!(l.check("alice", Some(ip), t0).is_ok());
        l.failure("alice", Some(ip), t0);
        assert_eq!(l.check("alice", Some(ip), t0), Err(Duration::from_secs(10)));
        // Another account from another address is not affected.
        assert!(l.check("bob", None, t0).is_ok());
        // The lock runs out by itself.
        assert!(l.check("alice", None, t0 + Duration::from_secs(10)).is_ok());
        let t1 = t0 + Duration::from_secs(11);
        l.failure("alice", None, t1);
        assert_eq!(l.check("alice", None, t1), Err(Duration::from_secs(20)));
        l.failure("alice", None, t1);
        assert_eq!(
            l.check("alice", None, t1),
            Err(Duration::from_secs(25)),
            "capped"
        );
        l.success("alice", None);
        assert!(l.check("alice", None, t1).is_ok());
    }

    #[test]
    fn limiter_locks_an_address_across_accounts() {
        let limits = LoginLimits {
            account_failures: 100,
            address_failures: 2,
            base_lock_secs: 5,
            max_lock_secs: 60,
        };
        let l = LoginLimiter::new(limits);
        let t = Instant::now();
        let ip: IpAddr = "10.77.0.10".parse().unwrap();
        l.failure("a", Some(ip), t);
        l.failure("b", Some(ip), t);
        assert!(l.check("c", Some(ip), t).is_err());
        assert!(l.check("c", Some("10.77.0.11".parse().unwrap()), t).is_ok());
    }
}
