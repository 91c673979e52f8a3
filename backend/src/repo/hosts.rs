//! `hosts`: the columns read apart from a host's whole row.

use crate::db::DbConn;
use crate::error::Result;
use crate::schema::hosts;
use diesel::prelude::*;
use serverware_shared::HostId;

/// The connection details of a host, as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = hosts)]
pub struct HostRow {
    pub id: HostId,
    pub name: String,
    pub description: String,
    pub ssh_user: String,
    pub address: String,
    pub ssh_port: i32,
    pub host_key_fingerprint: Option<String>,
    pub host_key: Option<String>,
    pub status: serverware_shared::state::HostStatus,
    pub sample_interval_ms: i32,
    pub heartbeat_timeout_ms: i32,
    pub agent_version: Option<String>,
    pub last_seen_at: Option<chrono::NaiveDateTime>,
    pub capacity_memory_bytes: Option<i64>,
    pub capacity_cpus: Option<i32>,
    pub capacity_disk_bytes: Option<i64>,
    pub vps_bridge: String,
    pub vps_prefix_len: i32,
    pub vps_gateway: Option<String>,
    /// Root-filesystem streams at once (see `hosts::TRANSFERS_PER_HOST`).
    pub max_transfers: i32,
    pub duplo_interval_secs: i32,
    /// netMON: never failed over from, nothing placed on it.
    pub maintenance: bool,
}

/// Every host's id and name, by name.
pub fn names(c: &mut DbConn) -> Result<Vec<(HostId, String)>> {
    Ok(hosts::table
        .order(hosts::name)
        .select((hosts::id, hosts::name))
        .load(c)?)
}

/// The names of these hosts (a page's): id → name.
pub fn names_of(c: &mut DbConn, ids: &[HostId]) -> Result<Vec<(HostId, String)>> {
    if ids.len() > 500 {
        // A list of ids too long to bind: every host's.
        return names(c);
    }
    Ok(hosts::table
        .filter(hosts::id.eq_any(ids))
        .select((hosts::id, hosts::name))
        .load(c)?)
}

/// Every host, by id.
pub fn all(c: &mut DbConn) -> Result<Vec<HostRow>> {
    Ok(hosts::table
        .order(hosts::id)
        .select(HostRow::as_select())
        .load(c)?)
}

/// The host's name, if there is such a host.
pub fn name(c: &mut DbConn, id: HostId) -> Result<Option<String>> {
    Ok(hosts::table
        .find(id)
        .select(hosts::name)
        .first(c)
        .optional()?)
}

/// A host about to be recorded (its key confirmed and the controller's installed).
#[derive(Insertable)]
#[diesel(table_name = hosts)]
pub struct NewHostRow<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub ssh_user: &'a str,
    pub address: &'a str,
    pub ssh_port: i32,
    pub host_key_fingerprint: &'a str,
    pub host_key: &'a str,
    pub status: serverware_shared::state::HostStatus,
    pub heartbeat_timeout_ms: i32,
    pub duplo_interval_secs: i32,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
}

/// Records a host; its row.
pub fn insert(c: &mut DbConn, new: NewHostRow<'_>) -> Result<HostRow> {
    diesel::insert_into(hosts::table).values(&new).execute(c)?;
    Ok(hosts::table
        .filter(hosts::name.eq(new.name))
        .select(HostRow::as_select())
        .first(c)?)
}

/// Whether a host other than `except` has that name.
pub fn name_taken(c: &mut DbConn, name: &str, except: Option<HostId>) -> Result<bool> {
    let mut q = hosts::table.filter(hosts::name.eq(name)).into_boxed();
    if let Some(id) = except {
        q = q.filter(hosts::id.ne(id));
    }
    Ok(q.count().get_result::<i64>(c)? > 0)
}

/// Whether a host is reached at that address and port.
pub fn address_taken(c: &mut DbConn, address: &str, port: i32) -> Result<bool> {
    let n: i64 = hosts::table
        .filter(hosts::address.eq(address))
        .filter(hosts::ssh_port.eq(port))
        .count()
        .get_result(c)?;
    Ok(n > 0)
}

/// The columns an edit changes; `None` leaves a column as it is, `Some(None)` clears it.
#[derive(AsChangeset, Default, Clone)]
#[diesel(table_name = hosts)]
pub struct HostChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub sample_interval_ms: Option<i32>,
    pub vps_bridge: Option<String>,
    pub vps_prefix_len: Option<i32>,
    pub vps_gateway: Option<Option<String>>,
    pub max_transfers: Option<i32>,
    pub duplo_interval_secs: Option<i32>,
    pub maintenance: Option<bool>,
    pub capacity_memory_bytes: Option<Option<i64>>,
    pub capacity_cpus: Option<Option<i32>>,
    pub capacity_disk_bytes: Option<Option<i64>>,
    pub host_key: Option<Option<String>>,
    pub host_key_fingerprint: Option<Option<String>>,
}

/// Applies an edit (and marks the row updated).
pub fn update(c: &mut DbConn, id: HostId, changes: &HostChanges) -> Result<()> {
    diesel::update(hosts::table.find(id))
        .set((changes, hosts::updated_at.eq(crate::models::now())))
        .execute(c)?;
    Ok(())
}

pub fn delete(c: &mut DbConn, id: HostId) -> Result<()> {
    diesel::delete(hosts::table.find(id)).execute(c)?;
    Ok(())
}

/// Every host, by name.
pub fn list(c: &mut DbConn) -> Result<Vec<HostRow>> {
    Ok(hosts::table
        .order(hosts::name)
        .select(HostRow::as_select())
        .load(c)?)
}

/// The host, or "not found".
pub fn find(c: &mut DbConn, id: HostId) -> Result<HostRow> {
    hosts::table
        .find(id)
        .select(HostRow::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| crate::error::Error::NotFound(format!("no host with id {id}")))
}

/// Records the host's connection state and when it was last heard.
pub fn set_status(
    c: &mut DbConn,
    id: HostId,
    status: serverware_shared::state::HostStatus,
    last_seen: Option<chrono::NaiveDateTime>,
) -> Result<()> {
    diesel::update(hosts::table.find(id))
        .set((hosts::status.eq(status), hosts::last_seen_at.eq(last_seen)))
        .execute(c)?;
    Ok(())
}

/// Records the version of the agent the host runs.
pub fn set_agent_version(c: &mut DbConn, id: HostId, version: &str) -> Result<()> {
    diesel::update(hosts::table.find(id))
        .set(hosts::agent_version.eq(version))
        .execute(c)?;
    Ok(())
}
