//! `vpses`: a VPS as stored: its row, loading it and its host, recording a new one, and the
//! partial updates the operations make.

use super::hosts::HostRow;
use crate::db::DbConn;
use crate::error::{Error, Result};
use crate::models::now;
use crate::schema::{hosts, vpses};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serverware_shared::state::{DesiredState, ObservedState};
use serverware_shared::{HostId, VpsId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = vpses)]
pub struct VpsRow {
    pub id: VpsId,
    pub name: String,
    pub description: String,
    pub host_id: Option<HostId>,
    pub template_id: Option<i64>,
    pub ipv4: String,
    pub hostname: String,
    pub memory_limit_bytes: i64,
    pub cpu_shares: Option<i32>,
    pub cpu_limit_millis: Option<i32>,
    pub disk_limit_bytes: Option<i64>,
    pub autostart: bool,
    pub ha_enabled: bool,
    /// The observed state as last recorded (see [`ObservedState`]); shown as `unknown` while
    /// the host cannot be reached.
    pub status: ObservedState,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// What the operator asked for.
    pub desired_state: DesiredState,
    /// Root in the VPS is root on its host (no id mapping).
    pub privileged: bool,
    /// Where the VPS's ids start on its host; None when privileged.
    pub id_base: Option<i64>,
    /// netMON: who goes first when room is short.
    pub ha_priority: i32,
    /// netMON: the TCP ports its service checks try ("22,80").
    pub check_ports: String,
}

impl VpsRow {
    /// The base of the VPS's id range as the agent takes it (None: privileged).
    pub fn ids(&self) -> Option<u32> {
        if self.privileged {
            None
        } else {
            self.id_base.and_then(|b| u32::try_from(b).ok())
        }
    }

    /// The ids its root filesystem carries on its host, for a transfer: its base, or 0.
    pub fn ids_on_disk(&self) -> u32 {
        self.ids().unwrap_or(0)
    }

    pub fn desired(&self) -> DesiredState {
        self.desired_state
    }

    /// The state as recorded, whatever the host's connection.
    pub fn recorded(&self) -> ObservedState {
        self.status
    }
}

pub fn load(c: &mut crate::db::DbConn, id: VpsId) -> Result<VpsRow> {
    vpses::table
        .find(id)
        .select(VpsRow::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no VPS with id {id}")))
}

pub fn load_host(c: &mut crate::db::DbConn, id: HostId) -> Result<HostRow> {
    hosts::table
        .find(id)
        .select(HostRow::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| Error::invalid("host_id", format!("no host with id {id}")))
}

/// Checked ports as stored ("22,80").
pub fn ports_text(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A VPS about to be made on a host (create, copy).
#[derive(Insertable)]
#[diesel(table_name = vpses)]
pub struct NewVps<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub host_id: Option<HostId>,
    pub template_id: Option<i64>,
    pub ipv4: &'a str,
    pub hostname: &'a str,
    pub memory_limit_bytes: i64,
    pub cpu_shares: Option<i32>,
    pub cpu_limit_millis: Option<i32>,
    pub disk_limit_bytes: Option<i64>,
    pub autostart: bool,
    pub desired_state: DesiredState,
    pub privileged: bool,
    pub ha_enabled: bool,
    pub ha_priority: i32,
    pub check_ports: String,
}

impl<'a> NewVps<'a> {
    /// A new VPS like `src` (limits, template, privilege) under its own name and address on
    /// `host_id`: a copy, or a VPS made from one of `src`'s restore points. It runs as its source
    /// does, in an id range of its own.
    pub fn like(
        src: &'a VpsRow,
        name: &'a str,
        ipv4: &'a str,
        host_id: HostId,
        start: bool,
    ) -> Self {
        NewVps {
            name,
            description: &src.description,
            host_id: Some(host_id),
            template_id: src.template_id,
            ipv4,
            hostname: name,
            memory_limit_bytes: src.memory_limit_bytes,
            cpu_shares: src.cpu_shares,
            cpu_limit_millis: src.cpu_limit_millis,
            disk_limit_bytes: src.disk_limit_bytes,
            autostart: src.autostart,
            desired_state: if start {
                DesiredState::Running
            } else {
                DesiredState::Stopped
            },
            privileged: src.privileged,
            // A new VPS: high availability is the operator's to ask for.
            ha_enabled: false,
            ha_priority: 0,
            check_ports: String::new(),
        }
    }
}

/// The lowest id range no VPS has. Creates and copies take the placement lock, so two never
/// pick at once; the unique index on `id_base` guards the rest.
pub fn free_id_base(c: &mut crate::db::DbConn) -> Result<i64> {
    use serverware_shared::agent::{FIRST_ID_BASE, ID_RANGE};
    let taken: Vec<Option<i64>> = vpses::table
        .filter(vpses::id_base.is_not_null())
        .select(vpses::id_base)
        .order(vpses::id_base.asc())
        .load(c)?;
    let mut next = i64::from(FIRST_ID_BASE);
    for b in taken.into_iter().flatten() {
        if b > next {
            break;
        }
        next = next.max(b + i64::from(ID_RANGE));
    }
    if u32::try_from(next)
        .ok()
        .is_none_or(|b| !serverware_shared::agent::id_base_ok(b))
    {
        return Err(Error::conflict(
            None,
            "every id range of the site is taken: no more unprivileged VPSes can be made",
        ));
    }
    Ok(next)
}

/// Records a new VPS with status `creating` and returns it; an unprivileged one gets an id
/// range of its own.
pub fn insert_creating(c: &mut crate::db::DbConn, v: NewVps<'_>) -> Result<VpsRow> {
    let t = now();
    let id_base = if v.privileged {
        None
    } else {
        Some(free_id_base(c)?)
    };
    diesel::insert_into(vpses::table)
        .values((
            &v,
            vpses::id_base.eq(id_base),
            vpses::status.eq(ObservedState::Creating),
            vpses::created_at.eq(t),
            vpses::updated_at.eq(t),
        ))
        .execute(c)?;
    Ok(vpses::table
        .filter(vpses::name.eq(v.name))
        .select(VpsRow::as_select())
        .first(c)?)
}

/// Name and address must be free across the site.
pub fn unique(
    c: &mut crate::db::DbConn,
    name: &str,
    ipv4: &str,
    except: Option<VpsId>,
) -> Result<()> {
    let mut q = vpses::table.filter(vpses::name.eq(name)).into_boxed();
    if let Some(id) = except {
        q = q.filter(vpses::id.ne(id));
    }
    if q.count().get_result::<i64>(c)? > 0 {
        return Err(Error::conflict(
            Some("name"),
            format!("a VPS named '{name}' exists"),
        ));
    }
    let mut q = vpses::table.filter(vpses::ipv4.eq(ipv4)).into_boxed();
    if let Some(id) = except {
        q = q.filter(vpses::id.ne(id));
    }
    if let Some(other) = q.select(vpses::name).first::<String>(c).optional()? {
        return Err(Error::conflict(
            Some("ipv4"),
            format!("{ipv4} is already the address of VPS {other}"),
        ));
    }
    let host_addr: i64 = hosts::table
        .filter(hosts::address.eq(ipv4))
        .count()
        .get_result(c)?;
    if host_addr > 0 {
        return Err(Error::conflict(
            Some("ipv4"),
            format!("{ipv4} is the address of a host"),
        ));
    }
    Ok(())
}

/// Whether the VPS is duplicated (its row must exist: `vps::load` first).
pub fn duplo_enabled(c: &mut DbConn, id: VpsId) -> Result<bool> {
    Ok(vpses::table
        .find(id)
        .select(vpses::duplo_enabled)
        .first(c)?)
}

pub fn set_duplo_enabled(c: &mut DbConn, id: VpsId, on: bool) -> Result<()> {
    diesel::update(vpses::table.find(id))
        .set(vpses::duplo_enabled.eq(on))
        .execute(c)?;
    Ok(())
}

/// The columns an edit sets; `None` leaves one as it is, `Some(None)` clears it.
#[derive(AsChangeset, Default)]
#[diesel(table_name = vpses)]
pub struct VpsChanges {
    pub description: Option<String>,
    pub ipv4: Option<String>,
    pub hostname: Option<String>,
    pub memory_limit_bytes: Option<i64>,
    pub cpu_shares: Option<Option<i32>>,
    pub cpu_limit_millis: Option<Option<i32>>,
    pub autostart: Option<bool>,
    pub ha_enabled: Option<bool>,
    pub ha_priority: Option<i32>,
    pub check_ports: Option<String>,
}

/// Applies an edit (and marks the row updated).
pub fn update(c: &mut DbConn, id: VpsId, changes: &VpsChanges) -> Result<()> {
    diesel::update(vpses::table.find(id))
        .set((changes, vpses::updated_at.eq(now())))
        .execute(c)?;
    Ok(())
}

/// The VPS is now on `host` (a restore switched it there).
pub fn set_host(c: &mut DbConn, id: VpsId, host: HostId) -> Result<()> {
    diesel::update(vpses::table.find(id))
        .set(vpses::host_id.eq(Some(host)))
        .execute(c)?;
    Ok(())
}

/// The VPS is now on `host`, in state `status` (a move switched it there).
pub fn moved(c: &mut DbConn, id: VpsId, host: HostId, status: &str) -> Result<()> {
    diesel::update(vpses::table.find(id))
        .set((
            vpses::host_id.eq(host),
            vpses::status.eq(status),
            vpses::updated_at.eq(now()),
        ))
        .execute(c)?;
    Ok(())
}

pub fn delete(c: &mut DbConn, id: VpsId) -> Result<()> {
    diesel::delete(vpses::table.find(id)).execute(c)?;
    Ok(())
}

/// Every VPS, by name.
pub fn all(c: &mut DbConn) -> Result<Vec<VpsRow>> {
    Ok(vpses::table
        .order(vpses::name)
        .select(VpsRow::as_select())
        .load(c)?)
}

/// What each VPS takes of a host, for placement (read five times a second by netMON: only
/// these columns): its id, host, memory limit, CPU limit (millis) and disk limit.
pub type Need = (VpsId, Option<HostId>, i64, Option<i32>, Option<i64>);

pub fn needs(c: &mut DbConn) -> Result<Vec<Need>> {
    Ok(vpses::table
        .select((
            vpses::id,
            vpses::host_id,
            vpses::memory_limit_bytes,
            vpses::cpu_limit_millis,
            vpses::disk_limit_bytes,
        ))
        .load(c)?)
}

/// Which VPSes a list shows: whose name, address or host's name contains `q` (lowercase), of
/// exactly `name`, on `host` (each when given).
pub struct Matching<'a> {
    pub q: Option<&'a str>,
    pub name: Option<&'a str>,
    pub host: Option<HostId>,
}

/// What a list knows of a VPS before it reads its row: id, name, address, host.
pub type ListKey = (VpsId, String, String, Option<HostId>);

/// The VPSes `m` matches, by name. The matching is done on names and addresses alone (a few
/// bytes a VPS); [`rows`] reads the ones a page shows.
pub fn matching(c: &mut DbConn, m: &Matching<'_>) -> Result<Vec<ListKey>> {
    let keys: Vec<ListKey> = vpses::table
        .order(vpses::name)
        .select((vpses::id, vpses::name, vpses::ipv4, vpses::host_id))
        .load(c)?;
    let q = m.q.filter(|q| !q.is_empty());
    // Hosts whose name matches: their VPSes do.
    let hosts: std::collections::HashSet<HostId> = match q {
        Some(q) => super::hosts::names(c)?
            .into_iter()
            .filter(|(_, n)| n.to_lowercase().contains(q))
            .map(|(h, _)| h)
            .collect(),
        None => Default::default(),
    };
    Ok(keys
        .into_iter()
        .filter(|(_, name, ip, h)| {
            q.is_none_or(|q| {
                name.contains(q) || ip.contains(q) || h.is_some_and(|h| hosts.contains(&h))
            }) && m.name.is_none_or(|n| name == n)
                && m.host.is_none_or(|want| *h == Some(want))
        })
        .collect())
}

/// A page by name of the VPSes of exactly `name` and on `host` (each when given), counted and
/// paged by the database (no `q`: nothing to match on text): how many match in all, and the
/// ids of those after `after`, `offset` rows in, at most `take`, in name order (`desc`: the
/// other way).
pub fn page_by_name(
    c: &mut DbConn,
    name: Option<&str>,
    host: Option<HostId>,
    after: Option<&str>,
    desc: bool,
    offset: usize,
    take: usize,
) -> Result<(usize, Vec<VpsId>)> {
    let matching = || {
        let mut q = vpses::table.into_boxed();
        if let Some(n) = name {
            q = q.filter(vpses::name.eq(n.to_string()));
        }
        if let Some(h) = host {
            q = q.filter(vpses::host_id.eq(h));
        }
        q
    };
    let total: i64 = matching().count().get_result(c)?;
    let mut q = matching();
    if let Some(a) = after {
        q = q.filter(vpses::name.gt(a.to_string()));
    }
    q = if desc {
        q.order(vpses::name.desc())
    } else {
        q.order(vpses::name.asc())
    };
    let ids = q
        .select(vpses::id)
        .offset(i64::try_from(offset).unwrap_or(i64::MAX))
        .limit(i64::try_from(take).unwrap_or(i64::MAX))
        .load(c)?;
    Ok((total.max(0) as usize, ids))
}

/// The whole rows of these VPSes, by name.
pub fn rows(c: &mut DbConn, ids: &[VpsId]) -> Result<Vec<VpsRow>> {
    if ids.len() > 500 {
        // Read all and keep these: a list of thousands of ids is a query too long to bind.
        let want: std::collections::HashSet<VpsId> = ids.iter().copied().collect();
        let mut all = all(c)?;
        all.retain(|v| want.contains(&v.id));
        return Ok(all);
    }
    Ok(vpses::table
        .filter(vpses::id.eq_any(ids))
        .order(vpses::name)
        .select(VpsRow::as_select())
        .load(c)?)
}

pub fn by_name(c: &mut DbConn, name: &str) -> Result<Option<VpsRow>> {
    Ok(vpses::table
        .filter(vpses::name.eq(name))
        .select(VpsRow::as_select())
        .first(c)
        .optional()?)
}

/// Records what the VPS is now.
pub fn set_observed(c: &mut DbConn, id: VpsId, observed: ObservedState) -> Result<()> {
    diesel::update(vpses::table.find(id))
        .set((vpses::status.eq(observed), vpses::updated_at.eq(now())))
        .execute(c)?;
    Ok(())
}

/// Records what the VPS should be.
pub fn set_desired(c: &mut DbConn, id: VpsId, desired: DesiredState) -> Result<()> {
    diesel::update(vpses::table.find(id))
        .set((
            vpses::desired_state.eq(desired),
            vpses::updated_at.eq(now()),
        ))
        .execute(c)?;
    Ok(())
}

/// How many VPSes are recorded on the host.
pub fn count_on_host(c: &mut DbConn, host: HostId) -> Result<i64> {
    Ok(vpses::table
        .filter(vpses::host_id.eq(host))
        .count()
        .get_result(c)?)
}

/// Every VPS's name.
pub fn names(c: &mut DbConn) -> Result<Vec<String>> {
    Ok(vpses::table.select(vpses::name).load(c)?)
}

/// The VPSes on the host that should run, by name: id, name, HA.
pub fn should_run_on(c: &mut DbConn, host: HostId) -> Result<Vec<(VpsId, String, bool)>> {
    Ok(vpses::table
        .filter(vpses::host_id.eq(host))
        .filter(vpses::desired_state.eq(DesiredState::Running))
        .order(vpses::name)
        .select((vpses::id, vpses::name, vpses::ha_enabled))
        .load(c)?)
}

/// The VPS's name, if there is such a VPS.
pub fn name(c: &mut DbConn, id: VpsId) -> Result<Option<String>> {
    Ok(vpses::table
        .find(id)
        .select(vpses::name)
        .first(c)
        .optional()?)
}

/// The duplicated VPSes that are on a host: VPS, host, the host's interval (s), status.
pub fn duplicated(c: &mut DbConn) -> Result<Vec<(VpsId, HostId, i32, String)>> {
    use crate::schema::hosts;
    Ok(vpses::table
        .inner_join(hosts::table.on(vpses::host_id.eq(hosts::id.nullable())))
        .filter(vpses::duplo_enabled.eq(true))
        .select((
            vpses::id,
            hosts::id,
            hosts::duplo_interval_secs,
            vpses::status,
        ))
        .load(c)?)
}

/// The HA VPSes, by id, each with whether it is duplicated.
pub fn ha(c: &mut DbConn) -> Result<Vec<(VpsRow, bool)>> {
    Ok(vpses::table
        .filter(vpses::ha_enabled.eq(true))
        .order(vpses::id)
        .select((VpsRow::as_select(), vpses::duplo_enabled))
        .load(c)?)
}

/// The ids of the VPSes that are duplicated.
pub fn duplicated_ids(c: &mut DbConn) -> Result<Vec<VpsId>> {
    Ok(vpses::table
        .filter(vpses::duplo_enabled.eq(true))
        .select(vpses::id)
        .load(c)?)
}

/// The VPSes on the host, by id: id and name.
pub fn on_host(c: &mut DbConn, host: HostId) -> Result<Vec<(VpsId, String)>> {
    Ok(vpses::table
        .filter(vpses::host_id.eq(host))
        .order(vpses::id)
        .select((vpses::id, vpses::name))
        .load(c)?)
}
