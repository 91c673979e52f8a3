//! A VPS as stored: its row, loading it and its host, and recording a new one.

use crate::error::{Error, Result};
use crate::hosts::HostRow;
use crate::models::now;
use crate::schema::{hosts, vpses};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serverware_shared::state::{DesiredState, ObservedState};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = vpses)]
pub struct VpsRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub host_id: Option<i64>,
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
    pub status: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// What the operator asked for (see [`DesiredState`]).
    pub desired_state: String,
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
        DesiredState::parse(&self.desired_state).unwrap_or(DesiredState::Stopped)
    }

    /// The state as recorded, whatever the host's connection.
    pub fn recorded(&self) -> ObservedState {
        ObservedState::parse(&self.status).unwrap_or(ObservedState::Unknown)
    }
}

pub fn load(c: &mut crate::db::DbConn, id: i64) -> Result<VpsRow> {
    vpses::table
        .find(id)
        .select(VpsRow::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no VPS with id {id}")))
}

pub fn load_host(c: &mut crate::db::DbConn, id: i64) -> Result<HostRow> {
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
pub(super) struct NewVps<'a> {
    pub(super) name: &'a str,
    pub(super) description: &'a str,
    pub(super) host_id: Option<i64>,
    pub(super) template_id: Option<i64>,
    pub(super) ipv4: &'a str,
    pub(super) hostname: &'a str,
    pub(super) memory_limit_bytes: i64,
    pub(super) cpu_shares: Option<i32>,
    pub(super) cpu_limit_millis: Option<i32>,
    pub(super) disk_limit_bytes: Option<i64>,
    pub(super) autostart: bool,
    pub(super) desired_state: &'a str,
    pub(super) privileged: bool,
    pub(super) ha_enabled: bool,
    pub(super) ha_priority: i32,
    pub(super) check_ports: String,
}

impl<'a> NewVps<'a> {
    /// A new VPS like `src` (limits, template, privilege) under its own name and address on
    /// `host_id`: a copy, or a VPS made from one of `src`'s restore points. It runs as its source
    /// does, in an id range of its own.
    pub(super) fn like(
        src: &'a VpsRow,
        name: &'a str,
        ipv4: &'a str,
        host_id: i64,
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
            desired_state: if start { "running" } else { "stopped" },
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
pub(super) fn free_id_base(c: &mut crate::db::DbConn) -> Result<i64> {
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
pub(super) fn insert_creating(c: &mut crate::db::DbConn, v: NewVps<'_>) -> Result<VpsRow> {
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
            vpses::status.eq("creating"),
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
pub(super) fn unique(
    c: &mut crate::db::DbConn,
    name: &str,
    ipv4: &str,
    except: Option<i64>,
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
