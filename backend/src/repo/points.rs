//! `duplo_points`: a row describing each restore point storage holds (storage holds the point
//! itself; `duplo::records` keeps the two in step).

use crate::db::DbConn;
use crate::error::{Error, Result};
use crate::schema::{duplo_points as p, hosts, vpses};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serverware_shared::api::RestorePoint;
use serverware_shared::{HostId, VpsId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = p)]
pub struct PointRow {
    pub vps_id: VpsId,
    pub cycle: i64,
    pub host_id: Option<HostId>,
    pub taken_at: NaiveDateTime,
    pub full_compare: bool,
    pub full_reason: Option<String>,
    pub files: i64,
    pub bytes: i64,
    pub entries_read: i64,
    pub chunks_new: i64,
    pub bytes_new: i64,
    pub duration_ms: i64,
    pub freeze_ms: i64,
    pub consistent: bool,
    pub unchanged_until: Option<NaiveDateTime>,
}

impl PointRow {
    pub fn into_api(self) -> RestorePoint {
        let n = |v: i64| v.max(0) as u64;
        RestorePoint {
            cycle: n(self.cycle),
            taken_at: self.taken_at.and_utc(),
            host_id: self.host_id.map(HostId::get),
            full: self.full_compare,
            full_reason: self.full_reason,
            files: n(self.files),
            bytes: n(self.bytes),
            entries_read: n(self.entries_read),
            chunks_new: n(self.chunks_new),
            bytes_new: n(self.bytes_new),
            duration_ms: n(self.duration_ms),
            freeze_ms: n(self.freeze_ms),
            consistent: self.consistent,
            unchanged_until: self.unchanged_until.map(|t| t.and_utc()),
        }
    }
}

/// Records a point.
pub fn insert(c: &mut DbConn, row: &PointRow) -> Result<()> {
    crate::with_backend!(c, |c| diesel::insert_into(p::table).values(row).execute(c))?;
    Ok(())
}

/// Records a point unless it has a row already.
pub fn insert_missing(c: &mut DbConn, row: &PointRow) -> Result<()> {
    crate::with_backend!(c, |c| diesel::insert_into(p::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

/// Every point with a row: (VPS, cycle).
pub fn all_keys(c: &mut DbConn) -> Result<Vec<(VpsId, i64)>> {
    Ok(p::table.select((p::vps_id, p::cycle)).load(c)?)
}

pub fn delete(c: &mut DbConn, vps: VpsId, cycle: i64) -> Result<()> {
    diesel::delete(
        p::table
            .filter(p::vps_id.eq(vps))
            .filter(p::cycle.eq(cycle)),
    )
    .execute(c)?;
    Ok(())
}

/// A VPS's points, newest first (at most `limit`).
pub fn newest(c: &mut DbConn, vps: VpsId, limit: i64) -> Result<Vec<PointRow>> {
    Ok(p::table
        .filter(p::vps_id.eq(vps))
        .order(p::cycle.desc())
        .limit(limit)
        .select(PointRow::as_select())
        .load(c)?)
}

pub fn count(c: &mut DbConn, vps: VpsId) -> Result<i64> {
    Ok(p::table.filter(p::vps_id.eq(vps)).count().get_result(c)?)
}

/// Whether the VPS is duplicated, and its host's interval (None: on no host); "not found"
/// when there is no such VPS.
pub fn settings_of(c: &mut DbConn, vps: VpsId) -> Result<(bool, Option<i32>)> {
    vpses::table
        .left_join(hosts::table.on(vpses::host_id.eq(hosts::id.nullable())))
        .filter(vpses::id.eq(vps))
        .select((vpses::duplo_enabled, hosts::duplo_interval_secs.nullable()))
        .first(c)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no VPS with id {vps}")))
}

/// Per VPS with points: how many, and its newest cycle.
pub fn per_vps(c: &mut DbConn) -> Result<Vec<(VpsId, i64, Option<i64>)>> {
    Ok(p::table
        .group_by(p::vps_id)
        .select((
            p::vps_id,
            diesel::dsl::count_star(),
            diesel::dsl::max(p::cycle),
        ))
        .load(c)?)
}

/// What a VPS's points take: the size of the point of `cycle`, and the bytes all its points
/// added.
pub fn usage(c: &mut DbConn, vps: VpsId, cycle: i64) -> Result<(i64, i64)> {
    let newest_bytes = p::table
        .filter(p::vps_id.eq(vps))
        .filter(p::cycle.eq(cycle))
        .select(p::bytes)
        .first::<i64>(c)
        .optional()?
        .unwrap_or(0);
    let added: Option<i64> = p::table
        .filter(p::vps_id.eq(vps))
        .select(p::bytes_new)
        .load::<i64>(c)?
        .into_iter()
        .reduce(|a, b| a + b);
    Ok((newest_bytes, added.unwrap_or(0)))
}

/// Per VPS with points: when its newest was taken, or found unchanged later.
pub fn newest_taken(c: &mut DbConn) -> Result<Vec<(i64, Option<NaiveDateTime>)>> {
    let rows: Vec<(i64, Option<NaiveDateTime>, Option<NaiveDateTime>)> = p::table
        .group_by(p::vps_id)
        .select((
            p::vps_id,
            diesel::dsl::max(p::taken_at),
            diesel::dsl::max(p::unchanged_until),
        ))
        .load(c)?;
    Ok(rows
        .into_iter()
        .map(|(v, taken, unchanged)| (v, taken.max(unchanged)))
        .collect())
}

/// Records, in one transaction, that each point (VPS, cycle) still was its VPS's tree at the
/// time given (a later time only: a batch written late never moves one back).
pub fn mark_unchanged(c: &mut DbConn, marks: &[(VpsId, i64, NaiveDateTime)]) -> Result<()> {
    c.transaction(|c| {
        for (vps, cycle, at) in marks {
            diesel::update(
                p::table
                    .filter(p::vps_id.eq(*vps))
                    .filter(p::cycle.eq(*cycle))
                    .filter(p::unchanged_until.is_null().or(p::unchanged_until.lt(*at))),
            )
            .set(p::unchanged_until.eq(*at))
            .execute(c)?;
        }
        Ok(())
    })
}
