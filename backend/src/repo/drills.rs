//! `drills`: failover drills, their results and whether their copies are gone from their hosts.

use crate::db::DbConn;
use crate::error::Result;
use crate::schema::drills;
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = drills)]
pub struct Drill {
    pub id: i64,
    pub vps_id: i64,
    pub vps_name: String,
    pub host_id: i64,
    pub host_name: String,
    pub task_id: Option<i64>,
    pub cycle: i64,
    pub point_taken_at: NaiveDateTime,
    pub started_by: String,
    pub state: String,
    pub started_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    pub rto_ms: Option<i64>,
    pub rpo_ms: Option<i64>,
    pub message: Option<String>,
    pub cleaned: bool,
}

#[derive(Insertable)]
#[diesel(table_name = drills)]
pub struct NewDrill<'a> {
    pub vps_id: i64,
    pub vps_name: &'a str,
    pub host_id: i64,
    pub host_name: &'a str,
    pub task_id: Option<i64>,
    pub cycle: i64,
    pub point_taken_at: NaiveDateTime,
    pub started_by: &'a str,
    pub state: &'a str,
    pub started_at: NaiveDateTime,
    pub cleaned: bool,
}

/// Records a drill about to begin; its id.
pub fn insert(c: &mut DbConn, d: &NewDrill<'_>) -> Result<i64> {
    Ok(crate::with_backend!(c, |c| diesel::insert_into(
        drills::table
    )
    .values(d)
    .returning(drills::id)
    .get_result(c))?)
}

pub fn get(c: &mut DbConn, id: i64) -> Result<Option<Drill>> {
    Ok(drills::table
        .find(id)
        .select(Drill::as_select())
        .first(c)
        .optional()?)
}

/// A VPS's drills, newest first, at most `limit`.
pub fn of_vps(c: &mut DbConn, vps_id: i64, limit: i64) -> Result<Vec<Drill>> {
    Ok(drills::table
        .filter(drills::vps_id.eq(vps_id))
        .order(drills::id.desc())
        .limit(limit)
        .select(Drill::as_select())
        .load(c)?)
}

/// The drill of this VPS under way, if any.
pub fn running_of(c: &mut DbConn, vps_id: i64) -> Result<Option<Drill>> {
    Ok(drills::table
        .filter(drills::vps_id.eq(vps_id))
        .filter(drills::state.eq("running"))
        .select(Drill::as_select())
        .first(c)
        .optional()?)
}

/// When each VPS last had a drill begin.
pub fn last_started(c: &mut DbConn) -> Result<Vec<(i64, NaiveDateTime)>> {
    Ok(drills::table
        .group_by(drills::vps_id)
        .select((drills::vps_id, diesel::dsl::max(drills::started_at)))
        .load::<(i64, Option<NaiveDateTime>)>(c)?
        .into_iter()
        .filter_map(|(v, t)| t.map(|t| (v, t)))
        .collect())
}

pub fn set_task(c: &mut DbConn, id: i64, task_id: i64) -> Result<()> {
    diesel::update(drills::table.find(id))
        .set(drills::task_id.eq(Some(task_id)))
        .execute(c)?;
    Ok(())
}

/// The drill's result: `state` (passed or failed), its figures and what it found.
pub fn finish(
    c: &mut DbConn,
    id: i64,
    state: &str,
    rto_ms: Option<i64>,
    rpo_ms: Option<i64>,
    message: &str,
    at: NaiveDateTime,
) -> Result<()> {
    diesel::update(drills::table.find(id).filter(drills::state.eq("running")))
        .set((
            drills::state.eq(state),
            drills::rto_ms.eq(rto_ms),
            drills::rpo_ms.eq(rpo_ms),
            drills::message.eq(Some(message)),
            drills::finished_at.eq(Some(at)),
        ))
        .execute(c)?;
    Ok(())
}

/// Drills still recorded as running (after a restart: cut short).
pub fn running(c: &mut DbConn) -> Result<Vec<Drill>> {
    Ok(drills::table
        .filter(drills::state.eq("running"))
        .select(Drill::as_select())
        .load(c)?)
}

/// Drills whose copy may still be on their host.
pub fn unclean(c: &mut DbConn) -> Result<Vec<Drill>> {
    Ok(drills::table
        .filter(drills::cleaned.eq(false))
        .filter(drills::state.ne("running"))
        .select(Drill::as_select())
        .load(c)?)
}

pub fn set_cleaned(c: &mut DbConn, id: i64) -> Result<()> {
    diesel::update(drills::table.find(id))
        .set(drills::cleaned.eq(true))
        .execute(c)?;
    Ok(())
}
