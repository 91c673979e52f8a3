//! Keeping restore points by a policy, and collecting the chunks no point uses.
//!
//! Never breaks a kept point, even if killed half-way: points are dropped first (each a single
//! delete), and a chunk is deleted only when no manifest in storage names it (all of them are
//! read first; one that cannot be read stops the collection) and no cycle can be reusing it:
//! it was last written or touched before every cycle now running started. That last check is
//! made again for each chunk under the exclusive side of [`super::Duplo::gate`], which cycles hold
//! shared while they put or touch a chunk.

use super::Duplo;
use crate::storage::{chunks, points, points::Point, tree};
use serverware_shared::duplo::ChunkId;
use serverware_shared::VpsId;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::time::SystemTime;

/// Which restore points are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The newest this many, always (at least 1).
    pub keep_last: u32,
    /// The newest point of each hour for this many days.
    pub hourly_days: u32,
    /// The newest point of each day for this many days.
    pub daily_days: u32,
}

pub const DEFAULT_POLICY: Policy = Policy {
    keep_last: 100,
    hourly_days: 2,
    daily_days: 14,
};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The cycles of `points` (one VPS's, any order) that `policy` keeps at `now_ms`.
pub fn keep(points: &[Point], policy: Policy, now_ms: i64) -> BTreeSet<u64> {
    let mut sorted: Vec<&Point> = points.iter().collect();
    sorted.sort_by_key(|p| std::cmp::Reverse(p.cycle));
    let mut kept: BTreeSet<u64> = sorted
        .iter()
        .take(policy.keep_last.max(1) as usize)
        .map(|p| p.cycle)
        .collect();
    for (span_ms, days) in [(HOUR_MS, policy.hourly_days), (DAY_MS, policy.daily_days)] {
        let since = now_ms - i64::from(days) * DAY_MS;
        let mut newest_per: BTreeMap<i64, u64> = BTreeMap::new();
        for p in &sorted {
            if days > 0 && p.taken_at_ms >= since {
                newest_per
                    .entry(p.taken_at_ms.div_euclid(span_ms))
                    .or_insert(p.cycle);
            }
        }
        kept.extend(newest_per.values());
    }
    kept
}

/// What a collection found and deleted.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Collected {
    pub points: u64,
    pub chunks_deleted: u64,
    pub bytes_freed: u64,
    /// Chunks (and their stored bytes) some point uses.
    pub chunks_used: u64,
    pub bytes_used: u64,
    /// Chunks no point uses that were too new to delete (a cycle may be landing them); the
    /// next collection reclaims them.
    pub chunks_spared: u64,
    pub bytes_spared: u64,
    /// Bytes of file content the points stand for, before sharing and compression.
    pub bytes_logical: u64,
    /// The newest point of each VPS these figures count (points landed later are added to
    /// them as they land).
    pub through: std::collections::BTreeMap<VpsId, u64>,
}

/// Drops the points `policy` does not keep (never a VPS's newest, never a pinned one).
pub fn drop_points(duplo: &Duplo, policy: Policy, now_ms: i64) -> io::Result<Vec<Point>> {
    let store = &*duplo.store;
    let mut dropped = Vec::new();
    for vps in points::vpses(store)? {
        let list = points::list(store, vps)?;
        let kept = keep(&list, policy, now_ms);
        let newest = list.iter().map(|p| p.cycle).max();
        for p in &list {
            if kept.contains(&p.cycle) || Some(p.cycle) == newest || duplo.is_pinned(vps, p.cycle) {
                continue;
            }
            store.delete(&p.key())?;
            dropped.push(*p);
        }
    }
    Ok(dropped)
}

/// Deletes every chunk no point in storage names that was last used before `cutoff`.
pub fn collect(duplo: &Duplo, cutoff: SystemTime) -> io::Result<Collected> {
    let store = &*duplo.store;
    let mut out = Collected::default();
    // Mark: every chunk and segment any point in storage names. Points share most of their
    // directories' segments: each is read once.
    let mut used: HashSet<ChunkId> = HashSet::new();
    let mut segments: HashSet<ChunkId> = HashSet::new();
    for vps in points::vpses(store)? {
        for p in points::list(store, vps)? {
            let unreadable = |e: io::Error| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "restore point {} of VPS {vps} cannot be read ({e}); nothing is collected until it can",
                        p.cycle
                    ),
                )
            };
            let h = points::header(store, &p).map_err(unreadable)?;
            for (_, seg) in &h.dirs {
                if segments.insert(*seg) {
                    for e in tree::read_segment(store, seg).map_err(unreadable)? {
                        used.extend(e.chunks);
                    }
                }
            }
            out.points += 1;
            out.bytes_logical += h.bytes;
            let t = out.through.entry(vps).or_default();
            *t = (*t).max(p.cycle);
        }
    }
    // Segments no point names go the same way as chunks.
    for k in store.list("segments/")? {
        let Some(id) = k.rsplit('/').next().and_then(|h| h.parse::<ChunkId>().ok()) else {
            continue;
        };
        if !segments.contains(&id) {
            let _excl = duplo.gate.write().unwrap_or_else(|p| p.into_inner());
            if let Some((_, at)) = store.stat(&k)? {
                if at < cutoff {
                    store.delete(&k)?;
                }
            }
        }
    }
    // Sweep, in batches under the gate.
    let mut unused = Vec::new();
    for k in store.list("chunks/")? {
        let Some(id) = k.rsplit('/').next().and_then(|h| h.parse::<ChunkId>().ok()) else {
            continue;
        };
        if used.contains(&id) {
            if let Some((size, _)) = store.stat(&k)? {
                out.chunks_used += 1;
                out.bytes_used += size;
            }
        } else {
            unused.push(id);
        }
    }
    for batch in unused.chunks(256) {
        let _excl = duplo.gate.write().unwrap_or_else(|p| p.into_inner());
        for id in batch {
            let key = chunks::key(id);
            match store.stat(&key)? {
                Some((size, at)) if at < cutoff => {
                    store.delete(&key)?;
                    out.chunks_deleted += 1;
                    out.bytes_freed += size;
                }
                Some((size, _)) => {
                    out.chunks_spared += 1;
                    out.bytes_spared += size;
                }
                None => {}
            }
        }
    }
    Ok(out)
}

/// How often the retention loop runs: drops points at once; collects chunks when points were
/// dropped (or after a start, or hourly).
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const COLLECT_AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The retention loop's step.
pub async fn run(dup: &std::sync::Arc<super::Duplication>) -> Result<(), String> {
    let policy = dup
        .db
        .run(crate::settings::duplo_policy)
        .await
        .map_err(|e| e.message())?;
    let duplo = dup.duplo.clone();
    let now = super::now_ms();
    let dropped = tokio::task::spawn_blocking(move || drop_points(&duplo, policy, now))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot drop restore points: {e}"))?;
    if !dropped.is_empty() {
        tracing::info!(
            points = dropped.len(),
            "dropped restore points past the policy"
        );
    }
    super::records::settle(dup, &dropped).await?;
    let due = {
        let last = dup
            .duplo
            .collected
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        !dropped.is_empty()
            || dup
                .duplo
                .dirty
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            || last
                .as_ref()
                .is_none_or(|(at, _)| at.elapsed() >= COLLECT_AT_LEAST_EVERY)
    };
    if !due {
        return Ok(());
    }
    // Spare what any running cycle may be reusing: chunks used since the earliest one started.
    let earliest = dup.duplo.earliest_running_ms().unwrap_or(now).min(now);
    let cutoff = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(earliest.max(0) as u64)
        - std::time::Duration::from_secs(5);
    let duplo = dup.duplo.clone();
    let collected = tokio::task::spawn_blocking(move || collect(&duplo, cutoff))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot collect chunks: {e}"))?;
    if collected.chunks_deleted > 0 {
        tracing::info!(
            chunks = collected.chunks_deleted,
            bytes = collected.bytes_freed,
            "collected chunks no restore point uses"
        );
    }
    *dup.duplo
        .collected
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), collected));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cycle: u64, taken_at_ms: i64) -> Point {
        Point {
            vps_id: VpsId(1),
            cycle,
            taken_at_ms,
        }
    }

    #[test]
    fn the_policy_keeps_the_newest_and_one_per_hour_and_day() {
        let now = 100 * DAY_MS;
        // A point every 10 minutes for 20 days.
        let pts: Vec<Point> = (0..20 * 24 * 6)
            .map(|i| p(i as u64 + 1, now - 20 * DAY_MS + i as i64 * 10 * 60_000))
            .collect();
        let kept = keep(
            &pts,
            Policy {
                keep_last: 5,
                hourly_days: 1,
                daily_days: 7,
            },
            now,
        );
        let newest = pts.len() as u64;
        for c in newest - 4..=newest {
            assert!(kept.contains(&c));
        }
        // 24 hours of hourly points (one may be in the last 5), 7 or 8 days.
        assert!(
            (5 + 24 + 7 - 2..=5 + 25 + 8).contains(&kept.len()),
            "{}",
            kept.len()
        );
        // Nothing older than 7 days except by keep_last.
        assert!(kept
            .iter()
            .all(|c| pts[*c as usize - 1].taken_at_ms >= now - 8 * DAY_MS));
        // keep_last 0 still keeps the newest.
        let k = keep(
            &pts,
            Policy {
                keep_last: 0,
                hourly_days: 0,
                daily_days: 0,
            },
            now,
        );
        assert_eq!(k.into_iter().collect::<Vec<_>>(), [newest]);
    }

    /// A store that stops (as if killed) after a number of deletes.
    struct Killed {
        inner: crate::storage::DirStore,
        deletes_left: std::sync::atomic::AtomicI64,
    }

    impl crate::storage::ObjectStore for Killed {
        fn put(&self, key: &str, data: &[u8]) -> io::Result<()> {
            self.inner.put(key, data)
        }
        fn get(&self, key: &str) -> io::Result<Vec<u8>> {
            self.inner.get(key)
        }
        fn exists(&self, key: &str) -> io::Result<bool> {
            self.inner.exists(key)
        }
        fn touch(&self, key: &str) -> io::Result<bool> {
            self.inner.touch(key)
        }
        fn stat(&self, key: &str) -> io::Result<Option<(u64, SystemTime)>> {
            self.inner.stat(key)
        }
        fn delete(&self, key: &str) -> io::Result<()> {
            if self
                .deletes_left
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
                <= 0
            {
                return Err(io::Error::other("killed"));
            }
            self.inner.delete(key)
        }
        fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
            self.inner.list(prefix)
        }
        fn commit(&self, key: &str, data: &[u8]) -> io::Result<()> {
            self.inner.commit(key, data)
        }
    }

    #[test]
    fn pruning_killed_anywhere_breaks_no_point_it_keeps() {
        use crate::storage::{DirStore, ObjectStore};
        use serverware_shared::duplo::{Entry, EntryKind, Manifest, PathBytes, MANIFEST_FORMAT};
        let now = 100 * DAY_MS;
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let store = DirStore::open(&src).unwrap();
        // Ten points of one VPS, a file growing by a chunk each time (so consecutive points
        // share chunks), and chunks no point uses (a failed cycle's).
        let mut content: Vec<Vec<u8>> = Vec::new();
        for cycle in 1..=10u64 {
            content.push(format!("piece {cycle}").into_bytes());
            let ids: Vec<ChunkId> = content.iter().map(|c| chunks::id_of(c)).collect();
            for (c, id) in content.iter().zip(&ids) {
                chunks::put(&store, id, c).unwrap();
            }
            let m = Manifest {
                format: MANIFEST_FORMAT,
                vps_id: 1,
                cycle,
                taken_at_ms: now - (10 - cycle as i64) * DAY_MS,
                entries: vec![
                    Entry {
                        path: PathBytes::default(),
                        kind: EntryKind::Dir,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        mtime_ns: cycle as i64,
                        size: 0,
                        chunks: vec![],
                        target: None,
                        rdev: None,
                        ino: 0,
                        ctime_ns: 0,
                        xattrs: Vec::new(),
                        data: None,
                    },
                    Entry {
                        path: PathBytes(b"f".to_vec()),
                        kind: EntryKind::File,
                        mode: 0o644,
                        uid: 0,
                        gid: 0,
                        mtime_ns: 0,
                        size: 0,
                        chunks: ids,
                        target: None,
                        rdev: None,
                        ino: 1,
                        ctime_ns: 0,
                        xattrs: Vec::new(),
                        data: None,
                    },
                ],
            };
            points::commit(&store, &m, &|_| false).unwrap();
        }
        for i in 0..5 {
            let orphan = format!("orphan {i}").into_bytes();
            chunks::put(&store, &chunks::id_of(&orphan), &orphan).unwrap();
        }
        let policy = Policy {
            keep_last: 2,
            hourly_days: 0,
            daily_days: 4,
        };
        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        let mut k = 0;
        loop {
            let copy = d.path().join(format!("run-{k}"));
            let ok = std::process::Command::new("cp")
                .args(["-a", src.to_str().unwrap(), copy.to_str().unwrap()])
                .status()
                .unwrap()
                .success();
            assert!(ok);
            let killed = std::sync::Arc::new(Killed {
                inner: DirStore::open(&copy).unwrap(),
                deletes_left: k.into(),
            });
            let duplo = Duplo::with_store(killed, &copy);
            let done = drop_points(&duplo, policy, now)
                .and_then(|_| collect(&duplo, later))
                .is_ok();
            // Whatever was deleted before the kill, every point left is whole.
            let after = DirStore::open(&copy).unwrap();
            let left = points::list(&after, VpsId(1)).unwrap();
            for p in &left {
                let m = points::load_point(&after, p).unwrap();
                for id in m.chunk_ids() {
                    chunks::get(&after, &id).unwrap_or_else(|e| {
                        panic!("killed after {k} deletes: point {} lost {id}: {e}", p.cycle)
                    });
                }
            }
            // And what the policy keeps is never dropped.
            for c in keep(&points::list(&store, VpsId(1)).unwrap(), policy, now) {
                assert!(left.iter().any(|p| p.cycle == c), "kept point {c} dropped");
            }
            if done {
                // The whole pass: only the kept points and their chunks remain.
                assert_eq!(left.len(), keep(&left, policy, now).len());
                assert!(after.list("chunks/").unwrap().len() < 15);
                // Segments no kept point names went too.
                assert_eq!(after.list("segments/").unwrap().len(), left.len());
                break;
            }
            k += 1;
            assert!(k < 100);
        }
        assert!(k > 5, "the pass deleted only {k} things");
    }
}
