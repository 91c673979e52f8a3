//! What the API shows of netDUPLO: a VPS's duplication, its restore points, and storage.

use super::Duplication;
use crate::error::Result;
use crate::repo::points::{self as repo, PointRow};
use serverware_shared::api::{DuploStatus, RestorePoint, StorageReport, StorageVps};
use serverware_shared::VpsId;
use std::sync::Arc;

/// A VPS's restore points, newest first (at most `limit`).
pub async fn points(dup: &Duplication, vps_id: VpsId, limit: i64) -> Result<Vec<RestorePoint>> {
    let rows = dup.db.run(move |c| repo::newest(c, vps_id, limit)).await?;
    Ok(rows.into_iter().map(PointRow::into_api).collect())
}

pub async fn status(dup: &Arc<Duplication>, vps_id: VpsId) -> Result<DuploStatus> {
    let (enabled, interval): (bool, Option<i32>) =
        dup.db.run(move |c| repo::settings_of(c, vps_id)).await?;
    let count: i64 = dup.db.run(move |c| repo::count(c, vps_id)).await?;
    let recent = points(dup, vps_id, 10).await?;
    let s = dup.duplo.state(vps_id);
    let now = super::now_ms();
    let newest = recent.first();
    let last_taken_ms = s
        .last_taken_ms
        .or(newest.map(|r| r.taken_at.timestamp_millis()));
    // Found unchanged since: as this run knows it, or as the newest point's row says (written
    // in batches, and before a restart).
    let unchanged_ms = s.unchanged_ms.max(
        newest
            .filter(|r| s.last_cycle == 0 || r.cycle == s.last_cycle)
            .and_then(|r| r.unchanged_until)
            .map(|t| t.timestamp_millis()),
    );
    let fresh_ms = last_taken_ms.max(unchanged_ms);
    let when = |ms: i64| chrono::DateTime::from_timestamp_millis(ms);
    Ok(DuploStatus {
        vps_id: vps_id.get(),
        enabled,
        interval_secs: interval.unwrap_or(0).max(0) as u32,
        last_cycle: newest
            .map(|r| r.cycle)
            .or((s.last_cycle > 0).then_some(s.last_cycle)),
        last_taken_at: last_taken_ms.and_then(when),
        unchanged_at: unchanged_ms.and_then(when),
        lag_ms: fresh_ms.map(|t| (now - t).max(0)),
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

pub async fn storage(dup: &Arc<Duplication>) -> Result<StorageReport> {
    let policy = dup.db.run(crate::settings::duplo_policy).await?;
    type Agg = (VpsId, i64, Option<i64>);
    let per_vps: Vec<Agg> = dup.db.run(repo::per_vps).await?;
    let mut vpses_out = Vec::new();
    for (vps_id, points, newest) in per_vps {
        let (name, newest_bytes, added): (Option<String>, i64, i64) = dup
            .db
            .run(move |c| {
                let name = crate::repo::vpses::name(c, vps_id)?;
                let (newest_bytes, added) = repo::usage(c, vps_id, newest.unwrap_or(0))?;
                Ok((name, newest_bytes, added))
            })
            .await?;
        vpses_out.push(StorageVps {
            vps_id: vps_id.get(),
            name,
            points: points.max(0) as u64,
            newest_bytes: newest_bytes.max(0) as u64,
            bytes_added: added.max(0) as u64,
        });
    }
    let collected = dup
        .duplo
        .collected
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let remote = dup.duplo.store.remote();
    // An S3 store's capacity is its nodes' business, not this machine's disk.
    let fs = if remote.is_some() {
        None
    } else {
        filesystem(&dup.duplo.dir)
    };
    let (at, c) = match collected {
        Some((at, c)) => (
            Some(chrono::Utc::now() - chrono::Duration::from_std(at.elapsed()).unwrap_or_default()),
            c,
        ),
        None => (None, Default::default()),
    };
    Ok(StorageReport {
        dir: remote.unwrap_or_else(|| dup.duplo.dir.display().to_string()),
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
