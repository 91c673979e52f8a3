//! Restore points: one manifest per completed cycle, at
//! `points/<vps id>/<cycle>-<taken at, ms>.json.zst` (the cycle zero-padded, so that keys sort as
//! cycles do; the time in the name, so that a retention policy needs no manifest read). Saving a
//! manifest is a cycle's commit: every chunk it names is made durable first, and the manifest
//! appears whole or not at all.

use super::{chunks, ObjectStore};
use serverware_shared::duplo::{ChunkId, Manifest, MANIFEST_FORMAT};
use std::io;

pub fn key(vps_id: i64, cycle: u64, taken_at_ms: i64) -> String {
    format!(
        "points/{vps_id}/{cycle:020}-{}.json.zst",
        taken_at_ms.max(0)
    )
}

/// One restore point as storage names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Point {
    pub vps_id: i64,
    pub cycle: u64,
    pub taken_at_ms: i64,
}

impl Point {
    pub fn key(&self) -> String {
        key(self.vps_id, self.cycle, self.taken_at_ms)
    }

    fn parse(vps_id: i64, key: &str) -> Option<Point> {
        let (cycle, taken) = key
            .rsplit('/')
            .next()?
            .strip_suffix(".json.zst")?
            .split_once('-')?;
        Some(Point {
            vps_id,
            cycle: cycle.parse().ok()?,
            taken_at_ms: taken.parse().ok()?,
        })
    }
}

/// A VPS's restore points, oldest first.
pub fn list(store: &dyn ObjectStore, vps_id: i64) -> io::Result<Vec<Point>> {
    let mut v: Vec<Point> = store
        .list(&format!("points/{vps_id}/"))?
        .iter()
        .filter_map(|k| Point::parse(vps_id, k))
        .collect();
    v.sort();
    Ok(v)
}

/// The VPSes that have restore points (deleted ones too).
pub fn vpses(store: &dyn ObjectStore) -> io::Result<Vec<i64>> {
    let mut v: Vec<i64> = store
        .list("points/")?
        .iter()
        .filter_map(|k| k.strip_prefix("points/")?.split('/').next()?.parse().ok())
        .collect();
    v.dedup();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Commits a cycle: refuses a manifest that names a chunk storage lacks (a cycle is whole or
/// it does not land), then writes it durably. Chunks for which `present` says yes (those that
/// came with the cycle, or that the previous point holds) are not looked up again.
pub fn commit(
    store: &dyn ObjectStore,
    m: &Manifest,
    present: &dyn Fn(&ChunkId) -> bool,
) -> io::Result<()> {
    if m.format != MANIFEST_FORMAT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("manifest format {} is not {MANIFEST_FORMAT}", m.format),
        ));
    }
    for id in m.chunk_ids() {
        if !present(&id) && !store.exists(&chunks::key(&id))? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "cycle {} of VPS {} names chunk {id}, which storage lacks",
                    m.cycle, m.vps_id
                ),
            ));
        }
    }
    let json = serde_json::to_vec(m).map_err(io::Error::other)?;
    let packed = zstd::bulk::compress(&json, 3)?;
    store.commit(&key(m.vps_id, m.cycle, m.taken_at_ms), &packed)
}

pub fn load(store: &dyn ObjectStore, vps_id: i64, cycle: u64) -> io::Result<Manifest> {
    let p = list(store, vps_id)?
        .into_iter()
        .find(|p| p.cycle == cycle)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("VPS {vps_id} has no restore point {cycle}"),
            )
        })?;
    load_point(store, &p)
}

pub fn load_point(store: &dyn ObjectStore, p: &Point) -> io::Result<Manifest> {
    let (vps_id, cycle) = (p.vps_id, p.cycle);
    let packed = store.get(&p.key())?;
    let json = zstd::stream::decode_all(packed.as_slice())?;
    let m: Manifest =
        serde_json::from_slice(&json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if m.format != MANIFEST_FORMAT || m.vps_id != vps_id || m.cycle != cycle {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the manifest of cycle {cycle} of VPS {vps_id} does not say so"),
        ));
    }
    Ok(m)
}

/// The cycles of a VPS that have a restore point, oldest first.
pub fn cycles(store: &dyn ObjectStore, vps_id: i64) -> io::Result<Vec<u64>> {
    Ok(list(store, vps_id)?.iter().map(|p| p.cycle).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::DirStore;
    use serverware_shared::duplo::{Entry, EntryKind, PathBytes};

    fn manifest(cycle: u64, chunk: serverware_shared::duplo::ChunkId) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            vps_id: 7,
            cycle,
            taken_at_ms: 1_700_000_000_000,
            entries: vec![
                Entry {
                    path: PathBytes(b"etc".to_vec()),
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime_ns: 1,
                    size: 0,
                    chunks: vec![],
                    target: None,
                    rdev: None,
                    ino: 0,
                    ctime_ns: 0,
                },
                Entry {
                    path: PathBytes(b"etc/hostname\xff".to_vec()),
                    kind: EntryKind::File,
                    mode: 0o644,
                    uid: 1000,
                    gid: 1000,
                    mtime_ns: 2,
                    size: 6,
                    chunks: vec![chunk],
                    target: None,
                    rdev: None,
                    ino: 0,
                    ctime_ns: 0,
                },
            ],
        }
    }

    #[test]
    fn a_cycle_lands_only_with_all_its_chunks() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::open(d.path()).unwrap();
        let data = b"web-1\n";
        let id = chunks::id_of(data);
        // A manifest naming a chunk that never arrived does not land.
        assert!(commit(&s, &manifest(1, id), &|_| false).is_err());
        assert!(cycles(&s, 7).unwrap().is_empty());
        chunks::put(&s, &id, data).unwrap();
        commit(&s, &manifest(1, id), &|_| false).unwrap();
        commit(&s, &manifest(2, id), &|_| false).unwrap();
        commit(&s, &manifest(10, id), &|_| false).unwrap();
        assert_eq!(cycles(&s, 7).unwrap(), [1, 2, 10]);
        assert!(cycles(&s, 8).unwrap().is_empty());
        let back = load(&s, 7, 2).unwrap();
        assert_eq!(back, manifest(2, id));
        assert_eq!(back.bytes(), 6);
        assert_eq!(vpses(&s).unwrap(), [7]);
        // A manifest stored under another cycle's name is refused.
        let t = 1_700_000_000_000;
        s.put(&key(7, 3, t), &s.get(&key(7, 2, t)).unwrap())
            .unwrap();
        assert!(load(&s, 7, 3).is_err());
    }
}
