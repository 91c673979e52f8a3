//! What the API shows of netDUPLO: a VPS's duplication, its restore points, and storage.

use crate::core::Core;
use crate::error::{Error, Result};
use crate::schema::{duplo_points as p, hosts, vpses};
use diesel::prelude::*;
use serverware_shared::api::{DuploStatus, RestorePoint, StorageReport, StorageVps};
use std::sync::Arc;

#[derive(Queryable, Selectable)]
#[diesel(table_name = p)]
struct PointRow {
    cycle: i64,
    host_id: Option<i64>,
    taken_at: chrono::NaiveDateTime,
    full_compare: bool,
    full_reason: Option<String>,
    files: i64,
    bytes: i64,
    entries_read: i64,
    chunks_new: i64,
    bytes_new: i64,
    duration_ms: i64,
    freeze_ms: i64,
    consistent: bool,
}

impl PointRow {
    fn into_api(self) -> RestorePoint {
        let n = |v: i64| v.max(0) as u64;
        RestorePoint {
            cycle: n(self.cycle),
            taken_at: self.taken_at.and_utc(),
            host_id: self.host_id,
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
        }
    }
}

/// A VPS's restore points, newest first (at most `limit`).
pub async fn points(core: &Core, vps_id: i64, limit: i64) -> Result<Vec<RestorePoint>> {
    let rows: Vec<PointRow> = core
        .db
        .run(move |c| {
            Ok(p::table
                .filter(p::vps_id.eq(vps_id))
                .order(p::cycle.desc())
                .limit(limit)
                .select(PointRow::as_select())
                .load(c)?)
        })
        .await?;
    Ok(rows.into_iter().map(PointRow::into_api).collect())
}

pub async fn status(core: &Arc<Core>, vps_id: i64) -> Result<DuploStatus> {
    let (enabled, interval): (bool, Option<i32>) = core
        .db
        .run(move |c| {
            vpses::table
                .left_join(hosts::table.on(vpses::host_id.eq(hosts::id.nullable())))
                .filter(vpses::id.eq(vps_id))
                .select((vpses::duplo_enabled, hosts::duplo_interval_secs.nullable()))
                .first(c)
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("no VPS with id {vps_id}")))
        })
        .await?;
    let count: i64 = core
        .db
        .run(move |c| {
            Ok(p::table
                .filter(p::vps_id.eq(vps_id))
                .count()
                .get_result(c)?)
        })
        .await?;
    let recent = points(core, vps_id, 10).await?;
    let s = core.duplo.state(vps_id);
    let now = super::now_ms();
    let newest = recent.first();
    let last_taken_ms = s
        .last_taken_ms
        .or(newest.map(|r| r.taken_at.timestamp_millis()));
    let when = |ms: i64| chrono::DateTime::from_timestamp_millis(ms);
    Ok(DuploStatus {
        vps_id,
        enabled,
        interval_secs: interval.unwrap_or(0).max(0) as u32,
        last_cycle: newest
            .map(|r| r.cycle)
            .or((s.last_cycle > 0).then_some(s.last_cycle)),
        last_taken_at: last_taken_ms.and_then(when),
        lag_ms: last_taken_ms.map(|t| (now - t).max(0)),
        running_since: s.running_since_ms.and_then(when),
        next_in_ms: if enabled && s.running_since_ms.is_none() {
            let iv = std::time::Duration::from_secs(interval.unwrap_or(1).max(1) as u64);
            Some(s.next_due(iv).map_or(0, |d| {
                d.saturating_duration_since(std::time::Instant::now())
                    .as_millis() as i64
            }))
        } else {
            None
        },
        journal_lost: match (&s.last_full_reason, s.loaded) {
            (Some(r), _) => Some(r.clone()),
            (None, false) => newest.and_then(|r| r.full_reason.clone()),
            (None, true) => None,
        },
        failures: s.failures,
        last_error: s.last_error,
        points: count.max(0) as u64,
        recent,
    })
}

/// The filesystem holding `dir`: its size and free bytes.
pub(crate) fn filesystem(dir: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: st is written by statvfs before it is read.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let f = st.f_frsize as u64;
    Some((st.f_blocks as u64 * f, st.f_bavail as u64 * f))
}

pub async fn storage(core: &Arc<Core>) -> Result<StorageReport> {
    let policy = core.db.run(crate::settings::duplo_policy).await?;
    type Agg = (i64, i64, Option<i64>);
    let per_vps: Vec<Agg> = core
        .db
        .run(|c| {
            Ok(p::table
                .group_by(p::vps_id)
                .select((
                    p::vps_id,
                    diesel::dsl::count_star(),
                    diesel::dsl::max(p::cycle),
                ))
                .load(c)?)
        })
        .await?;
    let mut vpses_out = Vec::new();
    for (vps_id, points, newest) in per_vps {
        let (name, newest_bytes, added): (Option<String>, i64, i64) = core
            .db
            .run(move |c| {
                let name = vpses::table
                    .find(vps_id)
                    .select(vpses::name)
                    .first::<String>(c)
                    .optional()?;
                let newest_bytes = p::table
                    .filter(p::vps_id.eq(vps_id))
                    .filter(p::cycle.eq(newest.unwrap_or(0)))
                    .select(p::bytes)
                    .first::<i64>(c)
                    .optional()?
                    .unwrap_or(0);
                let added: Option<i64> = p::table
                    .filter(p::vps_id.eq(vps_id))
                    .select(p::bytes_new)
                    .load::<i64>(c)?
                    .into_iter()
                    .reduce(|a, b| a + b);
                Ok((name, newest_bytes, added.unwrap_or(0)))
            })
            .await?;
        vpses_out.push(StorageVps {
            vps_id,
            name,
            points: points.max(0) as u64,
            newest_bytes: newest_bytes.max(0) as u64,
            bytes_added: added.max(0) as u64,
        });
    }
    let collected = core
        .duplo
        .collected
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let fs = filesystem(&core.duplo.dir);
    let (at, c) = match collected {
        Some((at, c)) => (
            Some(chrono::Utc::now() - chrono::Duration::from_std(at.elapsed()).unwrap_or_default()),
            c,
        ),
        None => (None, Default::default()),
    };
    Ok(StorageReport {
        dir: core.duplo.dir.display().to_string(),
        filesystem_bytes: fs.map(|f| f.0),
        filesystem_free_bytes: fs.map(|f| f.1),
        collected_at: at,
        points: vpses_out.iter().map(|v| v.points).sum(),
        chunks_used: c.chunks_used,
        bytes_stored: c.bytes_used,
        bytes_logical: c.bytes_logical,
        bytes_reclaimable: c.bytes_spared,
        bytes_freed_last: c.bytes_freed,
        keep_last: policy.keep_last,
        keep_hourly_days: policy.hourly_days,
        keep_daily_days: policy.daily_days,
        vpses: vpses_out,
    })
}
