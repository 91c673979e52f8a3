//! `operations`: each durable operation's record (its kind, parameters, the last step it
//! completed, which way it goes, which controller run drives it).

use crate::db::DbConn;
use crate::error::Result;
use crate::schema::{operations, tasks, vps_claims};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serverware_shared::state::TaskStatus;
use serverware_shared::VpsId;

/// An operation's record as loaded for its work or its recovery.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = operations)]
pub struct OpRow {
    pub task_id: i64,
    pub kind: String,
    pub vps_id: VpsId,
    pub params: String,
    pub step: String,
    pub phase: String,
    pub owner: String,
    pub updated_at: NaiveDateTime,
}

pub fn insert(c: &mut DbConn, row: &OpRow) -> Result<()> {
    diesel::insert_into(operations::table)
        .values(row)
        .execute(c)?;
    Ok(())
}

pub fn set_owner(c: &mut DbConn, task_id: i64, owner: &str) -> Result<()> {
    diesel::update(operations::table.find(task_id))
        .set(operations::owner.eq(owner))
        .execute(c)?;
    Ok(())
}

pub fn set_step(c: &mut DbConn, task_id: i64, step: &str, at: NaiveDateTime) -> Result<()> {
    diesel::update(operations::table.find(task_id))
        .set((operations::step.eq(step), operations::updated_at.eq(at)))
        .execute(c)?;
    Ok(())
}

pub fn set_phase(c: &mut DbConn, task_id: i64, phase: &str, at: NaiveDateTime) -> Result<()> {
    diesel::update(operations::table.find(task_id))
        .set((operations::phase.eq(phase), operations::updated_at.eq(at)))
        .execute(c)?;
    Ok(())
}

pub fn delete(c: &mut DbConn, task_id: i64) -> Result<()> {
    diesel::delete(operations::table.find(task_id)).execute(c)?;
    Ok(())
}

/// Every recorded operation, oldest first.
pub fn all(c: &mut DbConn) -> Result<Vec<OpRow>> {
    Ok(operations::table
        .order(operations::task_id)
        .select(OpRow::as_select())
        .load(c)?)
}

/// Tasks still marked running with no operation record (they cannot be resumed): their
/// claims go and they are marked failed with `why`. How many.
pub fn fail_unrecorded_running(c: &mut DbConn, why: &str, at: NaiveDateTime) -> Result<usize> {
    let durable: Vec<i64> = operations::table.select(operations::task_id).load(c)?;
    let stale: Vec<i64> = tasks::table
        .filter(tasks::status.eq(TaskStatus::Running.as_str()))
        .filter(tasks::id.ne_all(&durable))
        .select(tasks::id)
        .load(c)?;
    diesel::delete(vps_claims::table.filter(vps_claims::task_id.eq_any(&stale))).execute(c)?;
    diesel::update(tasks::table.filter(tasks::id.eq_any(&stale)))
        .set((
            tasks::status.eq(TaskStatus::Failed.as_str()),
            tasks::error.eq(why),
            tasks::finished_at.eq(at),
        ))
        .execute(c)?;
    Ok(stale.len())
}
