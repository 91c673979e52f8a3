//! `provision_machines`: the machines that booted from the network, by MAC.

use crate::db::DbConn;
use crate::error::Result;
use crate::schema::provision_machines as pm;
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, PartialEq)]
#[diesel(table_name = pm)]
#[diesel(treat_none_as_null = true)]
pub struct Machine {
    pub mac: String,
    pub name: String,
    /// `waiting` (not approved), `booting` (a token handed out), `joining` (the token used, the
    /// host being added), `joined`, `failed` (joined but could not be added).
    pub state: String,
    pub approved: bool,
    pub address: Option<String>,
    pub gateway: Option<String>,
    pub token_sha256: Option<String>,
    pub token_expires_at: Option<NaiveDateTime>,
    pub host_id: Option<i64>,
    /// The newest stage seen: `dhcp`, `ipxe`, `kernel`, `root`, `joined`, `online`.
    pub stage: String,
    pub message: String,
    pub first_seen_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
    /// The host key and address of its accepted join (kept to answer a repeated join and to
    /// finish a join a controller crash interrupted).
    pub join_host_key: Option<String>,
    pub join_address: Option<String>,
    /// The host image it boots: chosen at its first boot, changed only by a re-image.
    pub image_id: Option<String>,
}

pub fn all(c: &mut DbConn) -> Result<Vec<Machine>> {
    Ok(pm::table
        .order(pm::first_seen_at)
        .select(Machine::as_select())
        .load(c)?)
}

pub fn find(c: &mut DbConn, mac: &str) -> Result<Option<Machine>> {
    Ok(pm::table
        .find(mac)
        .select(Machine::as_select())
        .first(c)
        .optional()?)
}

pub fn by_host(c: &mut DbConn, host: i64) -> Result<Option<Machine>> {
    Ok(pm::table
        .filter(pm::host_id.eq(host))
        .select(Machine::as_select())
        .first(c)
        .optional()?)
}

pub fn name_taken(c: &mut DbConn, name: &str, mac: &str) -> Result<bool> {
    Ok(pm::table
        .filter(pm::name.eq(name))
        .filter(pm::mac.ne(mac))
        .count()
        .get_result::<i64>(c)?
        > 0)
}

pub fn insert(c: &mut DbConn, m: &Machine) -> Result<()> {
    diesel::insert_into(pm::table).values(m).execute(c)?;
    Ok(())
}

pub fn save(c: &mut DbConn, m: &Machine) -> Result<()> {
    diesel::update(pm::table.find(&m.mac)).set(m).execute(c)?;
    Ok(())
}

pub fn delete(c: &mut DbConn, mac: &str) -> Result<()> {
    diesel::delete(pm::table.find(mac)).execute(c)?;
    Ok(())
}

/// Forgets the machine that became host `host` (the host is being removed): if it boots again
/// it is a new machine, to be approved.
pub fn forget_host(c: &mut DbConn, host: i64) -> Result<()> {
    diesel::delete(pm::table.filter(pm::host_id.eq(host))).execute(c)?;
    Ok(())
}
