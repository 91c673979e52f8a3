//! Restore points: one manifest per completed cycle, at
//! `points/<vps id>/<cycle>-<taken at, ms>.json.zst` (the cycle zero-padded, so that keys sort as
//! cycles do; the time in the name, so that a retention policy needs no manifest read). A point
//! is a short header: its root entry and the segment of each directory ([`super::tree`]).
//! Saving it is a cycle's commit: every chunk and segment it names is made durable first, and the
//! header appears whole or not at all.

use super::tree::Tree;
use super::{chunks, ObjectStore};
use serde::{Deserialize, Serialize};
use serverware_shared::duplo::{ChunkId, Entry, Manifest, PathBytes};
use serverware_shared::VpsId;
use std::io;

pub fn key(vps_id: VpsId, cycle: u64, taken_at_ms: i64) -> String {
    format!(
        "points/{vps_id}/{cycle:020}-{}.json.zst",
        taken_at_ms.max(0)
    )
}

/// One restore point as storage names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Point {
    pub vps_id: VpsId,
    pub cycle: u64,
    pub taken_at_ms: i64,
}

impl Point {
    pub fn key(&self) -> String {
        key(self.vps_id, self.cycle, self.taken_at_ms)
    }

    fn parse(vps_id: VpsId, key: &str) -> Option<Point> {
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
pub fn list(store: &dyn ObjectStore, vps_id: VpsId) -> io::Result<Vec<Point>> {
    let mut v: Vec<Point> = store
        .list(&format!("points/{vps_id}/"))?
        .iter()
        .filter_map(|k| Point::parse(vps_id, k))
        .collect();
    v.sort();
    Ok(v)
}

/// The VPSes that have restore points (deleted ones too).
pub fn vpses(store: &dyn ObjectStore) -> io::Result<Vec<VpsId>> {
    let mut v: Vec<VpsId> = store
        .list("points/")?
        .iter()
        .filter_map(|k| k.strip_prefix("points/")?.split('/').next()?.parse().ok())
        .collect();
    v.dedup();
    v.sort();
    v.dedup();
    Ok(v)
}

/// What a point's key holds. Bumped with its meaning; readers refuse formats they do not know.
pub const FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    pub vps_id: VpsId,
    pub cycle: u64,
    pub taken_at_ms: i64,
    /// The root directory's own entry.
    pub root: Entry,
    /// Each directory (by path) and the segment of its entries.
    pub dirs: Vec<(PathBytes, ChunkId)>,
    /// Entries of the tree, and bytes of its files.
    pub files: u64,
    pub bytes: u64,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Commits a cycle's tree as point `cycle`: the segments of the directories it changed are
/// written, every chunk the tree names must be in storage (those for which `present` says yes,
/// because they came with the cycle or the previous point holds them, are not looked up again),
/// then the header is written durably, after everything it names.
pub fn commit_tree(
    store: &dyn ObjectStore,
    tree: &mut Tree,
    vps_id: VpsId,
    cycle: u64,
    taken_at_ms: i64,
    present: &dyn Fn(&ChunkId) -> bool,
) -> io::Result<Header> {
    let root = tree.root.clone().ok_or_else(|| {
        bad(format!(
            "cycle {cycle} of VPS {vps_id} has no root directory"
        ))
    })?;
    for id in tree.chunk_ids() {
        if !present(id) && !store.exists(&chunks::key(id))? {
            return Err(bad(format!(
                "cycle {cycle} of VPS {vps_id} names chunk {id}, which storage lacks"
            )));
        }
    }
    let dirs = tree.save_segments(store)?;
    let (files, bytes) = tree.totals();
    let h = Header {
        format: FORMAT,
        vps_id,
        cycle,
        taken_at_ms,
        root,
        dirs,
        files,
        bytes,
    };
    let json = serde_json::to_vec(&h).map_err(io::Error::other)?;
    store.commit(
        &key(vps_id, cycle, taken_at_ms),
        &zstd::bulk::compress(&json, 3)?,
    )?;
    Ok(h)
}

/// Commits a whole list of entries as a point (what a full scan gives).
pub fn commit(
    store: &dyn ObjectStore,
    m: &Manifest,
    present: &dyn Fn(&ChunkId) -> bool,
) -> io::Result<()> {
    let mut t = Tree::from_entries(m.entries.clone());
    commit_tree(
        store,
        &mut t,
        VpsId(m.vps_id),
        m.cycle,
        m.taken_at_ms,
        present,
    )
    .map(|_| ())
}

/// A point's header, checked to be the one its name says.
pub fn header(store: &dyn ObjectStore, p: &Point) -> io::Result<Header> {
    let packed = store.get(&p.key())?;
    let json = zstd::stream::decode_all(packed.as_slice())?;
    let h: Header =
        serde_json::from_slice(&json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if h.format != FORMAT || h.vps_id != p.vps_id || h.cycle != p.cycle {
        return Err(bad(format!(
            "the restore point {} of VPS {} does not say so (or is of another format)",
            p.cycle, p.vps_id
        )));
    }
    Ok(h)
}

/// A point's tree, read back.
pub fn load_tree(store: &dyn ObjectStore, p: &Point) -> io::Result<(Header, Tree)> {
    let h = header(store, p)?;
    let t = Tree::load(store, h.root.clone(), &h.dirs)?;
    Ok((h, t))
}

pub fn load(store: &dyn ObjectStore, vps_id: VpsId, cycle: u64) -> io::Result<Manifest> {
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

/// A point as one list of entries, sorted by path.
pub fn load_point(store: &dyn ObjectStore, p: &Point) -> io::Result<Manifest> {
    let (h, t) = load_tree(store, p)?;
    Ok(Manifest {
        format: serverware_shared::duplo::MANIFEST_FORMAT,
        vps_id: h.vps_id.get(),
        cycle: h.cycle,
        taken_at_ms: h.taken_at_ms,
        entries: t.entries(),
    })
}

/// The cycles of a VPS that have a restore point, oldest first.
pub fn cycles(store: &dyn ObjectStore, vps_id: VpsId) -> io::Result<Vec<u64>> {
    Ok(list(store, vps_id)?.iter().map(|p| p.cycle).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::DirStore;
    use serverware_shared::duplo::{EntryKind, MANIFEST_FORMAT};

    fn manifest(cycle: u64, chunk: serverware_shared::duplo::ChunkId) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            vps_id: 7,
            cycle,
            taken_at_ms: 1_700_000_000_000,
            entries: vec![
                Entry {
                    path: PathBytes::default(),
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
                    xattrs: Vec::new(),
                    data: None,
                },
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
                    xattrs: Vec::new(),
                    data: None,
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
                    xattrs: Vec::new(),
                    data: None,
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
        assert!(cycles(&s, VpsId(7)).unwrap().is_empty());
        chunks::put(&s, &id, data).unwrap();
        commit(&s, &manifest(1, id), &|_| false).unwrap();
        commit(&s, &manifest(2, id), &|_| false).unwrap();
        commit(&s, &manifest(10, id), &|_| false).unwrap();
        assert_eq!(cycles(&s, VpsId(7)).unwrap(), [1, 2, 10]);
        assert!(cycles(&s, VpsId(8)).unwrap().is_empty());
        let back = load(&s, VpsId(7), 2).unwrap();
        assert_eq!(back, manifest(2, id));
        assert_eq!(back.bytes(), 6);
        assert_eq!(vpses(&s).unwrap(), [VpsId(7)]);
        // A manifest stored under another cycle's name is refused.
        let t = 1_700_000_000_000;
        s.put(&key(VpsId(7), 3, t), &s.get(&key(VpsId(7), 2, t)).unwrap())
            .unwrap();
        assert!(load(&s, VpsId(7), 3).is_err());
    }
}
