//! `users` and what hangs off a user: `sessions` and `api_tokens`.

use crate::db::DbConn;
use crate::error::{Error, Result};
use crate::models::{ApiToken, NewSession, NewUser, Session, User};
use crate::schema::{api_tokens, sessions, users};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serverware_shared::Role;

pub fn count(c: &mut DbConn) -> Result<i64> {
    Ok(users::table.count().get_result(c)?)
}

/// Every user, by name.
pub fn list(c: &mut DbConn) -> Result<Vec<User>> {
    Ok(users::table
        .order(users::username)
        .select(User::as_select())
        .load(c)?)
}

/// The user, or "not found".
pub fn find(c: &mut DbConn, id: i64) -> Result<User> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no user with id {id}")))
}

pub fn by_name(c: &mut DbConn, username: &str) -> Result<Option<User>> {
    Ok(users::table
        .filter(users::username.eq(username))
        .select(User::as_select())
        .first(c)
        .optional()?)
}

/// Admins still able to log in, other than `except`.
pub fn other_active_admins(c: &mut DbConn, except: i64) -> Result<i64> {
    Ok(users::table
        .filter(users::role.eq(Role::Admin.as_str()))
        .filter(users::disabled.eq(false))
        .filter(users::id.ne(except))
        .count()
        .get_result(c)?)
}

/// Adds a user; a name already taken (also by a racing insert) is a conflict on `username`.
pub fn insert(c: &mut DbConn, new: NewUser<'_>) -> Result<User> {
    let taken =
        |name: &str| Error::conflict(Some("username"), format!("the user name '{name}' is taken"));
    if by_name(c, new.username)?.is_some() {
        return Err(taken(new.username));
    }
    diesel::insert_into(users::table)
        .values(&new)
        .execute(c)
        .map_err(|e| match Error::from(e) {
            Error::Conflict { .. } => taken(new.username),
            other => other,
        })?;
    by_name(c, new.username)?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("the user just added is not there")))
}

/// What an update of a user sets; `None` leaves a column as it is.
#[derive(AsChangeset, Default)]
#[diesel(table_name = users)]
pub struct UserChanges<'a> {
    pub role: Option<&'a str>,
    pub disabled: Option<bool>,
    pub password_hash: Option<&'a str>,
    pub updated_at: Option<NaiveDateTime>,
    pub last_login_at: Option<NaiveDateTime>,
}

pub fn update(c: &mut DbConn, id: i64, changes: &UserChanges<'_>) -> Result<()> {
    diesel::update(users::table.find(id))
        .set(changes)
        .execute(c)?;
    Ok(())
}

/// Ends every session of the user.
pub fn end_sessions(c: &mut DbConn, user: i64) -> Result<usize> {
    Ok(diesel::delete(sessions::table.filter(sessions::user_id.eq(user))).execute(c)?)
}

/// Ends every session of the user but `keep`.
pub fn end_other_sessions(c: &mut DbConn, user: i64, keep: i64) -> Result<usize> {
    Ok(diesel::delete(
        sessions::table
            .filter(sessions::user_id.eq(user))
            .filter(sessions::id.ne(keep)),
    )
    .execute(c)?)
}

/// Ends one session.
pub fn end_session(c: &mut DbConn, id: i64) -> Result<()> {
    diesel::delete(sessions::table.find(id)).execute(c)?;
    Ok(())
}

/// Deletes the user with their sessions and tokens. Foreign keys cascade on both databases;
/// this deletes explicitly anyway so an SQLite connection opened without the pragma cannot
/// leave orphans.
pub fn delete(c: &mut DbConn, id: i64) -> Result<()> {
    diesel::delete(api_tokens::table.filter(api_tokens::user_id.eq(id))).execute(c)?;
    end_sessions(c, id)?;
    diesel::delete(users::table.find(id)).execute(c)?;
    Ok(())
}

/// The session whose secret hashes to `hash`, with its user.
pub fn session_by_hash(c: &mut DbConn, hash: &str) -> Result<Option<(Session, User)>> {
    Ok(sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(hash))
        .select((Session::as_select(), User::as_select()))
        .first(c)
        .optional()?)
}

/// Marks the session used at `t`.
pub fn touch_session(c: &mut DbConn, id: i64, t: NaiveDateTime) -> Result<()> {
    diesel::update(sessions::table.find(id))
        .set(sessions::last_seen_at.eq(t))
        .execute(c)?;
    Ok(())
}

/// Whether the session is still there, used since `since`, of a user not disabled.
pub fn session_open(c: &mut DbConn, id: i64, since: NaiveDateTime) -> Result<bool> {
    Ok(sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(id))
        .filter(users::disabled.eq(false))
        .filter(sessions::last_seen_at.gt(since))
        .count()
        .get_result::<i64>(c)?
        > 0)
}

/// The API token whose secret hashes to `hash`, with its user.
pub fn token_by_hash(c: &mut DbConn, hash: &str) -> Result<Option<(ApiToken, User)>> {
    Ok(api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::token_hash.eq(hash))
        .select((ApiToken::as_select(), User::as_select()))
        .first(c)
        .optional()?)
}

/// Marks the token used at `t`.
pub fn touch_token(c: &mut DbConn, id: i64, t: NaiveDateTime) -> Result<()> {
    diesel::update(api_tokens::table.find(id))
        .set(api_tokens::last_used_at.eq(t))
        .execute(c)?;
    Ok(())
}

/// Whether the token is neither revoked nor expired at `t`, of a user not disabled.
pub fn token_valid(c: &mut DbConn, id: i64, t: NaiveDateTime) -> Result<bool> {
    Ok(api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::id.eq(id))
        .filter(users::disabled.eq(false))
        .filter(api_tokens::revoked_at.is_null())
        .filter(
            api_tokens::expires_at
                .is_null()
                .or(api_tokens::expires_at.gt(t)),
        )
        .count()
        .get_result::<i64>(c)?
        > 0)
}

/// Opens a session for the user and records the login time `t`.
pub fn open_session(c: &mut DbConn, new: NewSession<'_>) -> Result<()> {
    diesel::insert_into(sessions::table)
        .values(&new)
        .execute(c)?;
    diesel::update(users::table.find(new.user_id))
        .set(users::last_login_at.eq(new.created_at))
        .execute(c)?;
    Ok(())
}

/// Ends the session whose secret hashes to `hash`.
pub fn end_session_by_hash(c: &mut DbConn, hash: &str) -> Result<()> {
    diesel::delete(sessions::table.filter(sessions::token_hash.eq(hash))).execute(c)?;
    Ok(())
}
