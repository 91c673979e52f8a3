//! The `duplo_points` rows describe the restore points storage holds; storage is the truth. A
//! controller killed between a commit and its row, or between dropping a point and its row,
//! leaves them apart: [`settle`] puts them together again.

use super::Duplication;
use crate::repo::points::{self as repo, PointRow};
use crate::storage::points::{self, Point};
use serverware_shared::VpsId;

use std::collections::BTreeSet;
use std::sync::Arc;

/// Removes the rows of `dropped` points and of any point storage no longer holds, and adds a
/// row for each point storage holds without one.
pub async fn settle(dup: &Arc<Duplication>, dropped: &[Point]) -> Result<(), String> {
    let duplo = dup.duplo.clone();
    let in_storage: BTreeSet<(VpsId, i64)> = tokio::task::spawn_blocking(move || {
        let mut all = BTreeSet::new();
        for vps in points::vpses(&*duplo.store)? {
            for pt in points::list(&*duplo.store, vps)? {
                all.insert((vps, pt.cycle as i64));
            }
        }
        Ok::<_, std::io::Error>(all)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot list storage: {e}"))?;
    let dropped: Vec<(VpsId, i64)> = dropped.iter().map(|d| (d.vps_id, d.cycle as i64)).collect();
    let rows: BTreeSet<(VpsId, i64)> = dup
        .db
        .run(repo::all_keys)
        .await
        .map_err(|e| e.message())?
        .into_iter()
        .collect();
    let gone: Vec<(VpsId, i64)> = rows
        .iter()
        .filter(|r| !in_storage.contains(r) || dropped.contains(r))
        .copied()
        .collect();
    if !gone.is_empty() {
        dup.db
            .run(move |c| {
                for (vps, cycle) in &gone {
                    repo::delete(c, *vps, *cycle)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| e.message())?;
    }
    // Points without a row: a cycle whose row was never written. Described from the manifest.
    // A cycle landing right now is left to write its own.
    for (vps, cycle) in in_storage.difference(&rows) {
        let (vps, cycle) = (*vps, *cycle);
        if dup.duplo.state(vps).running_since_ms.is_some() {
            continue;
        }
        let duplo = dup.duplo.clone();
        let Ok(Ok(m)) = tokio::task::spawn_blocking(move || {
            let p = points::list(&*duplo.store, vps)?
                .into_iter()
                .find(|p| p.cycle == cycle as u64)
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
            points::header(&*duplo.store, &p)
        })
        .await
        else {
            continue;
        };
        let row = PointRow {
            vps_id: vps,
            cycle,
            host_id: None,
            taken_at: chrono::DateTime::from_timestamp_millis(m.taken_at_ms)
                .unwrap_or_default()
                .naive_utc(),
            full_compare: false,
            full_reason: None,
            files: m.files as i64,
            bytes: m.bytes as i64,
            entries_read: 0,
            chunks_new: 0,
            bytes_new: 0,
            duration_ms: 0,
            freeze_ms: 0,
            consistent: false,
            unchanged_until: None,
        };
        let _ = dup.db.run(move |c| repo::insert_missing(c, &row)).await;
    }
    Ok(())
}
