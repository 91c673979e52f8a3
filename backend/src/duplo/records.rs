//! The `duplo_points` rows describe the restore points storage holds; storage is the truth. A
//! controller killed between a commit and its row, or between dropping a point and its row,
//! leaves them apart: [`settle`] puts them together again.

use crate::core::Core;
use crate::schema::duplo_points as p;
use crate::storage::points::{self, Point};

use diesel::prelude::*;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Removes the rows of `dropped` points and of any point storage no longer holds, and adds a
/// row for each point storage holds without one.
pub async fn settle(core: &Arc<Core>, dropped: &[Point]) -> Result<(), String> {
    let duplo = core.duplo.clone();
    let in_storage: BTreeSet<(i64, i64)> = tokio::task::spawn_blocking(move || {
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
    let dropped: Vec<(i64, i64)> = dropped.iter().map(|d| (d.vps_id, d.cycle as i64)).collect();
    let rows: BTreeSet<(i64, i64)> = core
        .db
        .run(|c| {
            Ok(p::table
                .select((p::vps_id, p::cycle))
                .load::<(i64, i64)>(c)?)
        })
        .await
        .map_err(|e| e.message())?
        .into_iter()
        .collect();
    let gone: Vec<(i64, i64)> = rows
        .iter()
        .filter(|r| !in_storage.contains(r) || dropped.contains(r))
        .copied()
        .collect();
    if !gone.is_empty() {
        core.db
            .run(move |c| {
                for (vps, cycle) in &gone {
                    diesel::delete(
                        p::table
                            .filter(p::vps_id.eq(vps))
                            .filter(p::cycle.eq(cycle)),
                    )
                    .execute(c)?;
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
        if core.duplo.state(vps).running_since_ms.is_some() {
            continue;
        }
        let duplo = core.duplo.clone();
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
        let row = (
            p::vps_id.eq(vps),
            p::cycle.eq(cycle),
            p::host_id.eq(None::<i64>),
            p::taken_at.eq(chrono::DateTime::from_timestamp_millis(m.taken_at_ms)
                .unwrap_or_default()
                .naive_utc()),
            p::full_compare.eq(false),
            p::full_reason.eq(None::<String>),
            p::files.eq(m.files as i64),
            p::bytes.eq(m.bytes as i64),
            p::entries_read.eq(0i64),
            p::chunks_new.eq(0i64),
            p::bytes_new.eq(0i64),
            p::duration_ms.eq(0i64),
            p::freeze_ms.eq(0i64),
            p::consistent.eq(false),
        );
        let _ = core
            .db
            .run(move |c| {
                crate::with_backend!(c, |c| diesel::insert_into(p::table)
                    .values(row)
                    .on_conflict_do_nothing()
                    .execute(c))?;
                Ok(())
            })
            .await;
    }
    Ok(())
}
