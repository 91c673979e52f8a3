//! One operation per VPS, and capacity held for VPSes bound for a host, as rows.

use crate::db::DbConn;
use crate::error::{Error, Result};
use crate::models::now;
use crate::schema::vpses;
use crate::schema::{host_reservations, vps_claims};
use diesel::prelude::*;
use serverware_shared::state::{Refusal, VpsOperation};
use serverware_shared::{HostId, VpsId};

/// The operation holding a VPS, with its task.
pub fn holder(c: &mut DbConn, vps_id: VpsId) -> Result<Option<(VpsOperation, i64)>> {
    let row: Option<(String, i64)> = vps_claims::table
        .find(vps_id)
        .select((vps_claims::operation, vps_claims::task_id))
        .first(c)
        .optional()?;
    Ok(row.map(|(op, task)| (VpsOperation::parse(&op).unwrap_or(VpsOperation::Edit), task)))
}

/// Every claim: VPS id → (operation, task).
pub fn all(c: &mut DbConn) -> Result<std::collections::HashMap<VpsId, (VpsOperation, i64)>> {
    let rows: Vec<(VpsId, String, i64)> = vps_claims::table
        .select((
            vps_claims::vps_id,
            vps_claims::operation,
            vps_claims::task_id,
        ))
        .load(c)?;
    Ok(rows
        .into_iter()
        .map(|(v, op, t)| {
            (
                v,
                (VpsOperation::parse(&op).unwrap_or(VpsOperation::Edit), t),
            )
        })
        .collect())
}

/// Locks the VPS rows for the rest of the caller's transaction, lowest id first. Every
/// transaction that claims or edits a VPS starts here, so on PostgreSQL they queue on the row
/// in one order instead of taking the claim and the row in opposite orders and deadlocking.
/// SQLite needs nothing: its writers already take turns ([`crate::db::Db`]).
pub fn lock(c: &mut DbConn, ids: &[VpsId]) -> Result<()> {
    if let DbConn::Postgres(pg) = c {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            vpses::table
                .find(id)
                .select(vpses::id)
                .for_update()
                .first::<VpsId>(pg)
                .optional()?;
        }
    }
    Ok(())
}

/// Claims the VPSes (id, name) for a task inside the caller's transaction, or answers 409
/// naming the operation that holds one. The primary key settles races between controllers.
pub fn take(c: &mut DbConn, vpses: &[(VpsId, &str)], task_id: i64, op: VpsOperation) -> Result<()> {
    lock(c, &vpses.iter().map(|v| v.0).collect::<Vec<_>>())?;
    for (id, name) in vpses {
        if let Some(h) = holder(c, *id)? {
            return Err(busy(name, op, h));
        }
        let r = diesel::insert_into(vps_claims::table)
            .values((
                vps_claims::vps_id.eq(id),
                vps_claims::task_id.eq(task_id),
                vps_claims::operation.eq(op.as_str()),
                vps_claims::claimed_at.eq(now()),
            ))
            .execute(c);
        match r {
            Ok(_) => {}
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => {
                return Err(Error::conflict(
                    None,
                    format!("VPS {name} is busy with another operation"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub fn busy(name: &str, op: VpsOperation, holder: (VpsOperation, i64)) -> Error {
    Error::conflict(
        None,
        Refusal::Busy {
            operation: holder.0,
            task: holder.1,
        }
        .message(name, op),
    )
}

/// Holds room on `host_id` for `vps_id` until the task ends.
pub fn reserve(c: &mut DbConn, task_id: i64, host_id: HostId, vps_id: VpsId) -> Result<()> {
    diesel::insert_into(host_reservations::table)
        .values((
            host_reservations::task_id.eq(task_id),
            host_reservations::host_id.eq(host_id),
            host_reservations::vps_id.eq(vps_id),
        ))
        .execute(c)?;
    Ok(())
}

/// Every reservation: (host, VPS).
pub fn reservations(c: &mut DbConn) -> Result<Vec<(HostId, VpsId)>> {
    Ok(host_reservations::table
        .select((host_reservations::host_id, host_reservations::vps_id))
        .load(c)?)
}

/// Frees what the task holds: its claims on VPSes and the room it reserved on hosts.
pub fn release(c: &mut DbConn, task_id: i64) -> Result<()> {
    diesel::delete(vps_claims::table.filter(vps_claims::task_id.eq(task_id))).execute(c)?;
    diesel::delete(host_reservations::table.filter(host_reservations::task_id.eq(task_id)))
        .execute(c)?;
    Ok(())
}
