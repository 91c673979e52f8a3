//! `user_ssh_keys`: the public keys users log in to the SSH command line with.

use crate::db::DbConn;
use crate::error::Result;
use crate::models::User;
use crate::schema::{user_ssh_keys, users};
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = user_ssh_keys)]
pub struct SshKey {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = user_ssh_keys)]
pub struct NewSshKey<'a> {
    pub user_id: i64,
    pub name: &'a str,
    pub public_key: &'a str,
    pub fingerprint: &'a str,
    pub created_at: NaiveDateTime,
}

/// A user's keys, oldest first.
pub fn of_user(c: &mut DbConn, user: i64) -> Result<Vec<SshKey>> {
    Ok(user_ssh_keys::table
        .filter(user_ssh_keys::user_id.eq(user))
        .order(user_ssh_keys::id)
        .select(SshKey::as_select())
        .load(c)?)
}

pub fn by_fingerprint(c: &mut DbConn, fp: &str) -> Result<Option<SshKey>> {
    Ok(user_ssh_keys::table
        .filter(user_ssh_keys::fingerprint.eq(fp))
        .select(SshKey::as_select())
        .first(c)
        .optional()?)
}

pub fn find(c: &mut DbConn, id: i64) -> Result<Option<SshKey>> {
    Ok(user_ssh_keys::table
        .find(id)
        .select(SshKey::as_select())
        .first(c)
        .optional()?)
}

pub fn insert(c: &mut DbConn, new: NewSshKey<'_>) -> Result<()> {
    diesel::insert_into(user_ssh_keys::table)
        .values(&new)
        .execute(c)?;
    Ok(())
}

pub fn delete(c: &mut DbConn, id: i64) -> Result<()> {
    diesel::delete(user_ssh_keys::table.find(id)).execute(c)?;
    Ok(())
}

/// The user named `username` with the key of fingerprint `fp`, if that user has it.
pub fn user_with_key(c: &mut DbConn, username: &str, fp: &str) -> Result<Option<(User, SshKey)>> {
    Ok(users::table
        .inner_join(user_ssh_keys::table)
        .filter(users::username.eq(username))
        .filter(user_ssh_keys::fingerprint.eq(fp))
        .select((User::as_select(), SshKey::as_select()))
        .first(c)
        .optional()?)
}

/// Marks the key used at `t`.
pub fn touch(c: &mut DbConn, id: i64, t: NaiveDateTime) -> Result<()> {
    diesel::update(user_ssh_keys::table.find(id))
        .set(user_ssh_keys::last_used_at.eq(t))
        .execute(c)?;
    Ok(())
}
