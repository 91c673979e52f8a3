//! Authentication: argon2 password hashes, server-side sessions, hashed API tokens, roles, and
//! the back-off on failed logins. A domain service: the HTTP API (`api/guard.rs`) and the SSH
//! command line (`sshd.rs`) both call it, and it knows neither.

mod limiter;
mod login;
mod secrets;
pub mod ssh_keys;
pub mod tokens;
pub mod users;

pub use limiter::{LoginLimiter, LoginLimits};
pub use login::{key_login, password_login};
pub use secrets::*;

use crate::audit::Actor;
use crate::db::{Db, DbConn};
use crate::error::{Error, Result};
use crate::models::now;
use crate::repo::users as repo;
use serverware_shared::{Role, TOKEN_PREFIX};

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

/// Who is calling, attached to every authenticated request by the API's guard.
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

    /// Refuses (forbidden) unless the role in force allows `required`.
    pub fn require(&self, required: Role) -> Result<(), Error> {
        if self.role.allows(required) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this needs the {required} role; you act as {}",
                self.role
            )))
        }
    }
}

/// Last-seen times are written at most this often, so reads do not turn into writes.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The user of the session whose secret is `secret`, if it is still open: a session idle for
/// longer than `idle_minutes`, or of a disabled user, is ended here.
pub async fn authenticate_session(db: &Db, idle_minutes: u64, secret: String) -> Result<Principal> {
    let idle = chrono::TimeDelta::minutes(idle_minutes as i64);
    db.run(move |conn: &mut DbConn| {
        let hash = secret_hash(&secret);
        let found = repo::session_by_hash(conn, &hash)?;
        let Some((session, user)) = found else {
            return Err(Error::Unauthorized(
                "your session has ended; log in again".into(),
            ));
        };
        let t = now();
        if user.disabled || session.last_seen_at + idle < t {
            repo::end_session(conn, session.id)?;
            return Err(Error::Unauthorized(
                "your session has ended; log in again".into(),
            ));
        }
        if t - session.last_seen_at > TOUCH_EVERY {
            repo::touch_session(conn, session.id, t)?;
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

/// The user of the API token `secret`, with the token's role (never above the user's own).
pub async fn authenticate_token(db: &Db, secret: String) -> Result<Principal> {
    db.run(move |conn: &mut DbConn| {
        let invalid =
            || Error::Unauthorized("the API token is not valid, revoked or expired".into());
        if !secret.starts_with(TOKEN_PREFIX) {
            return Err(invalid());
        }
        let hash = secret_hash(&secret);
        let found = repo::token_by_hash(conn, &hash)?;
        let Some((token, user)) = found else {
            return Err(invalid());
        };
        let t = now();
        if user.disabled || token.revoked_at.is_some() || token.expires_at.is_some_and(|e| e <= t) {
            return Err(invalid());
        }
        if token.last_used_at.is_none_or(|u| t - u > TOUCH_EVERY) {
            repo::touch_token(conn, token.id, t)?;
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
pub async fn still_valid(db: &Db, idle_minutes: u64, p: &Principal) -> bool {
    let idle = chrono::TimeDelta::minutes(idle_minutes as i64);
    let method = p.method.clone();
    let r = db
        .run(move |conn| {
            let t = now();
            let ok = match method {
                AuthMethod::Session { session_id, .. } => {
                    repo::session_open(conn, session_id, t - idle)?
                }
                AuthMethod::Token { token_id, .. } => repo::token_valid(conn, token_id, t)?,
            };
            Ok(ok)
        })
        .await;
    // A database hiccup does not end a socket; a definite "no" does.
    r.unwrap_or(true)
}

/// Who acts, in the audit log, for a request of `p`.
impl From<&Principal> for Actor {
    fn from(p: &Principal) -> Actor {
        Actor {
            name: p.username.clone(),
            via_token: p.token_name().map(str::to_string),
            via: p.via(),
        }
    }
}
