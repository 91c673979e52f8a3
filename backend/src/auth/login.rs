//! Signing in, by password (the dashboard, the API and the SSH command line) or by SSH key (the
//! SSH command line): the back-off, the audit events, and a new session whose secret is returned.

use super::LoginLimiter;
use crate::audit::{self, Actor, Change};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::models::{now, NewSession, User};
use crate::repo::users as repo;
use serverware_shared::api::Severity;
use serverware_shared::validate;
use std::time::Instant;

/// A login by password, for the dashboard and the SSH command line (`via`): checked against
/// the login limiter, audited, and on success a new session (its secret returned).
pub async fn password_login(
    db: &Db,
    limiter: &LoginLimiter,
    username: &str,
    password: String,
    addr: Option<std::net::IpAddr>,
    user_agent: Option<String>,
    via: Option<&'static str>,
) -> Result<(User, String)> {
    // Only a name that could be a user's is looked up; any other is kept, in the limiter and
    // the failed-login event, as a short escaped prefix: what a client sends is never stored
    // whole.
    let normal = username.trim().to_lowercase();
    let plausible = validate::username("username", &normal).is_ok();
    let account = if plausible {
        normal
    } else {
        shown_name(username)
    };
    if let Err(wait) = limiter.check(&account, addr, Instant::now()) {
        // Every attempt is on record, refused ones too.
        locked_out(db, &account, addr, via, wait).await?;
        // A locked client waits for its answer: a flood slows to one attempt per connection
        // and second, at the cost of a timer.
        tokio::time::sleep(super::REFUSAL_DELAY.min(wait)).await;
        return Err(Error::LockedOut {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let ip = addr.map(|a| a.to_string());
    let secret = super::new_session_secret();
    let secret_hash = super::secret_hash(&secret);
    let acct = account.clone();
    let user: Option<User> = if plausible {
        db.run(move |conn| repo::by_name(conn, &acct)).await?
    } else {
        None
    };
    // Hashing is slow by design: it runs on the blocking pool without holding the database.
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        // Same work as for a real user, so timing does not reveal which names exist.
        .unwrap_or_else(|| super::dummy_hash().to_string());
    let verified = super::verify_password_off(password, hash).await?;
    let user = user.filter(|u| verified && !u.disabled);
    let acct = account.clone();
    let result = db
        .run(move |conn| {
            let Some(user) = user else {
                // Nobody is known yet: the attempted name is the target, not the actor.
                let actor = Actor {
                    name: "anonymous".into(),
                    via_token: None,
                    via,
                };
                audit::record(
                    conn,
                    &actor,
                    Change::new(
                        "auth.login_failed",
                        "user",
                        &acct,
                        format!("failed login for '{acct}'"),
                    )
                    .details(serde_json::json!({ "ip": ip }))
                    .severity(Severity::Warning),
                )?;
                return Ok(None);
            };
            let user = open_session(
                conn,
                user,
                &secret_hash,
                ip.as_deref(),
                user_agent.as_deref(),
                via,
                None,
            )?;
            Ok(Some(user))
        })
        .await?;
    match result {
        Some(user) => {
            limiter.success(&account, addr);
            Ok((user, secret))
        }
        None => {
            limiter.failure(&account, addr, Instant::now());
            Err(Error::Unauthorized("wrong user name or password".into()))
        }
    }
}

/// Records an attempt refused unheard because its account or address is locked out.
async fn locked_out(
    db: &Db,
    account: &str,
    addr: Option<std::net::IpAddr>,
    via: Option<&'static str>,
    wait: std::time::Duration,
) -> Result<()> {
    let acct = account.to_string();
    let ip = addr.map(|a| a.to_string());
    let secs = wait.as_secs().max(1);
    db
        .run(move |conn| {
            audit::record(
                conn,
                &Actor {
                    name: "anonymous".into(),
                    via_token: None,
                    via,
                },
                Change::new(
                    "auth.login_locked",
                    "user",
                    &acct,
                    format!("login for '{acct}' refused unheard: too many failed logins (locked for {secs} s more)"),
                )
                .details(serde_json::json!({ "ip": ip, "retry_after_secs": secs }))
                .severity(Severity::Warning),
            )?;
            Ok(())
        })
        .await
}

/// Records a login of `user`: a new session (its secret's hash), the last login time, and the
/// audit event (`key`: the SSH key it came with).
fn open_session(
    conn: &mut crate::db::DbConn,
    user: User,
    secret_hash: &str,
    ip: Option<&str>,
    user_agent: Option<&str>,
    via: Option<&'static str>,
    key: Option<&str>,
) -> Result<User> {
    let t = now();
    crate::db::atomic(conn, |conn| {
        repo::open_session(
            conn,
            NewSession {
                token_hash: secret_hash,
                user_id: user.id,
                created_at: t,
                last_seen_at: t,
                ip,
                user_agent,
            },
        )?;
        audit::record(
            conn,
            &Actor {
                name: user.username.clone(),
                via_token: None,
                via,
            },
            Change::new(
                "auth.login",
                "user",
                user.id,
                format!(
                    "{} logged in{}{}",
                    user.username,
                    if via == Some("ssh") {
                        " to the SSH command line"
                    } else {
                        ""
                    },
                    key.map(|k| format!(" with key '{k}'")).unwrap_or_default()
                ),
            )
            .details(serde_json::json!({ "ip": ip, "ssh_key": key })),
        )?;
        Ok::<_, Error>(())
    })?;
    Ok(User {
        last_login_at: Some(t),
        ..user
    })
}

/// A login to the SSH command line with a public key (its signature checked by the SSH
/// server): the key must be registered to `username`, who must be enabled. A locked account
/// (too many wrong passwords) waits as for a password. A new session; its secret.
pub async fn key_login(
    db: &Db,
    limiter: &LoginLimiter,
    username: &str,
    fingerprint: String,
    addr: Option<std::net::IpAddr>,
) -> Result<(User, String)> {
    let account = username.trim().to_lowercase();
    if validate::username("username", &account).is_err() {
        return Err(Error::Unauthorized("no such key for that user".into()));
    }
    if let Err(wait) = limiter.check(&account, addr, Instant::now()) {
        locked_out(db, &account, addr, Some("ssh"), wait).await?;
        return Err(Error::LockedOut {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let secret = super::new_session_secret();
    let secret_hash = super::secret_hash(&secret);
    let ip = addr.map(|a| a.to_string());
    let acct = account.clone();
    let user = db
        .run(move |conn| {
            let found = crate::repo::ssh_keys::user_with_key(conn, &acct, &fingerprint)?;
            let Some((user, key)) = found.filter(|(u, _)| !u.disabled) else {
                return Ok(None);
            };
            crate::repo::ssh_keys::touch(conn, key.id, now())?;
            let key_name = key.name;
            open_session(
                conn,
                user,
                &secret_hash,
                ip.as_deref(),
                Some(super::SSH_SESSION_AGENT),
                Some("ssh"),
                Some(&key_name),
            )
            .map(Some)
        })
        .await?;
    match user {
        Some(u) => {
            limiter.success(&account, addr);
            Ok((u, secret))
        }
        None => Err(Error::Unauthorized("no such key for that user".into())),
    }
}

/// How a name that cannot be a user's is kept: at most 40 characters, escaped, marked as cut.
fn shown_name(name: &str) -> String {
    const KEEP: usize = 40;
    let mut shown: String = name
        .chars()
        .take(KEEP)
        .flat_map(char::escape_default)
        .collect();
    let total = name.chars().count();
    if total > KEEP {
        shown.push_str(&format!("… ({total} characters)"));
    }
    shown
}
