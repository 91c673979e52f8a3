//! Landing a cycle: the agent's stream (`serverware_shared::duplo::stream`) becomes chunks in
//! storage and, once it has ended whole, a committed restore point. A stream cut short, a chunk
//! whose content does not match its name or a list of entries naming a chunk that never came
//! leaves no point: storage keeps exactly the points it had.

use super::points::{self, Header};
use super::tree::Tree;
use super::{chunks, ObjectStore};
use serverware_shared::duplo::stream::{self, Frame};
use serverware_shared::duplo::{ChunkId, ScanStats};
use serverware_shared::VpsId;
use std::collections::HashSet;
use std::io::{self, Read};

/// Each VPS's term: a restore or a failover (the VPS's files now come from a restore point,
/// perhaps on another host) begins a new one, and a cycle that began in an older term (reading a
/// copy that may since have been fenced) is refused at its commit. A new term cannot begin while
/// a commit is under way, so once [`Terms::next`] returns, no older cycle lands.
#[derive(Default)]
pub struct Terms(std::sync::Mutex<std::collections::HashMap<VpsId, u64>>);

impl Terms {
    fn hold(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<VpsId, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn current(&self, vps_id: VpsId) -> u64 {
        self.hold().get(&vps_id).copied().unwrap_or(0)
    }

    /// Ends the VPS's term: cycles begun before are refused from now on.
    pub fn next(&self, vps_id: VpsId) {
        *self.hold().entry(vps_id).or_default() += 1;
    }
}

/// What a landed cycle cost storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Landed {
    /// The point as committed, and its tree (the next cycle's starting point).
    pub header: Header,
    pub tree: Tree,
    /// A full compare (every entry read), or an incremental one.
    pub full: bool,
    /// Entries the agent read this cycle.
    pub entries_read: u64,
    /// Chunks storage did not have, and their bytes before compression.
    pub chunks_new: u64,
    pub bytes_new: u64,
    /// What the new chunks take in storage (compressed).
    pub stored_new: u64,
    /// Chunks that came but storage had already (from this VPS or another).
    pub chunks_known: u64,
    pub stats: ScanStats,
    /// Time spent writing the tree's changed directories and making the point durable.
    pub commit_ms: u64,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Lands one cycle's stream as restore point `cycle` of `vps_id`. A full stream lists every
/// entry; an incremental one (a delta) is applied to `prev`, the VPS's last point's tree. Every
/// chunk the new entries name must have come in the stream (or be held by `prev`): storage never
/// commits a point it cannot restore. Each chunk is put (or touched) holding `gate` shared, so
/// that chunk collection, which holds it exclusively, never deletes one being reused.
#[allow(clippy::too_many_arguments)]
pub fn ingest(
    store: &dyn ObjectStore,
    gate: &std::sync::RwLock<()>,
    terms: &Terms,
    term: u64,
    r: &mut impl Read,
    prev: Option<Tree>,
    vps_id: VpsId,
    cycle: u64,
    taken_at_ms: i64,
) -> io::Result<Landed> {
    let (mut chunks_new, mut bytes_new, mut chunks_known, mut stored_new) = (0, 0, 0, 0);
    let mut arrived: HashSet<ChunkId> = HashSet::new();
    let mut listed = None;
    let mut stats = ScanStats::default();
    loop {
        match stream::read(r)? {
            Frame::Chunk(id, data) => {
                let new = {
                    let _shared = gate.read().unwrap_or_else(|p| p.into_inner());
                    chunks::put_sized(store, &id, &data)?
                };
                if let Some(stored) = new {
                    chunks_new += 1;
                    bytes_new += data.len() as u64;
                    stored_new += stored;
                } else {
                    chunks_known += 1;
                }
                arrived.insert(id);
            }
            Frame::Entries(_) | Frame::Delta(_) if listed.is_some() => {
                return Err(bad("the stream lists its entries twice"))
            }
            Frame::Entries(e) => listed = Some(Ok(e)),
            Frame::Delta(d) => listed = Some(Err(d)),
            Frame::Stats(s) => stats = s,
            Frame::Need(_) | Frame::Summary(_) => {
                return Err(bad("a restore's frame in a cycle's stream"))
            }
            Frame::End => break,
        }
    }
    let listed = listed.ok_or_else(|| bad("the stream ended without its entries"))?;
    let full = listed.is_ok();
    // Every chunk the new entries name came with the cycle or is the previous point's (held
    // while it is); anything else is refused before the commit.
    let new_entries = match &listed {
        Ok(e) => e,
        Err(d) => &d.entries,
    };
    let held = |id: &ChunkId| prev.as_ref().is_some_and(|t| t.holds_chunk(id));
    if let Some(id) = new_entries
        .iter()
        .flat_map(|e| e.chunks.iter())
        .find(|id| !arrived.contains(id) && !held(id))
    {
        return Err(bad(&format!(
            "the cycle names chunk {id}, which never came and no earlier point holds"
        )));
    }
    let entries_read = new_entries.len() as u64;
    let mut tree = match listed {
        Ok(e) => Tree::from_entries(e),
        Err(d) => {
            let mut t = prev.ok_or_else(|| bad("an incremental cycle without a previous point"))?;
            t.apply(&d);
            t
        }
    };
    // (Every chunk of the tree was checked above, or was its previous point's.)
    let t0 = std::time::Instant::now();
    // Committed only within the term the cycle began in, and the term cannot end meanwhile.
    let terms_now = terms.hold();
    if terms_now.get(&vps_id).copied().unwrap_or(0) != term {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the VPS was restored or failed over elsewhere while this cycle ran: a cycle of its old copy is refused",
        ));
    }
    let header = points::commit_tree(store, &mut tree, vps_id, cycle, taken_at_ms, &|_| true)?;
    drop(terms_now);
    let commit_ms = t0.elapsed().as_millis() as u64;
    Ok(Landed {
        commit_ms,
        header,
        tree,
        full,
        entries_read,
        chunks_new,
        bytes_new,
        stored_new,
        chunks_known,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::DirStore;
    use serverware_shared::duplo::{ChangedPath, Delta, Entry, EntryKind, PathBytes};

    fn file(path: &str, data: &[u8]) -> Entry {
        Entry {
            path: PathBytes(path.as_bytes().to_vec()),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 1,
            size: data.len() as u64,
            chunks: vec![chunks::id_of(data)],
            target: None,
            rdev: None,
            ino: 0,
            ctime_ns: 0,
            xattrs: Vec::new(),
            data: None,
        }
    }

    fn root_dir() -> Entry {
        Entry {
            kind: EntryKind::Dir,
            size: 0,
            chunks: vec![],
            ..file("", b"")
        }
    }

    fn stream_of(files: &[(&str, &[u8])], end: bool) -> Vec<u8> {
        let mut buf = Vec::new();
        for (_, data) in files {
            stream::write_chunk(&mut buf, &chunks::id_of(data), data).unwrap();
        }
        let mut entries: Vec<Entry> = vec![root_dir()];
        entries.extend(files.iter().map(|(p, d)| file(p, d)));
        stream::write_entries(&mut buf, &entries).unwrap();
        if end {
            stream::write_end(&mut buf).unwrap();
        }
        buf
    }

    #[test]
    fn a_whole_stream_lands_and_anything_less_leaves_no_point() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::open(d.path()).unwrap();
        let g = std::sync::RwLock::new(());
        let files: [(&str, &[u8]); 2] = [("etc/hostname", b"web-1\n"), ("srv/data", b"payload")];
        let terms = Terms::default();
        // A cycle begun in a term that ended meanwhile is refused (in a store of its own).
        let d2 = tempfile::tempdir().unwrap();
        let s2 = DirStore::open(d2.path()).unwrap();
        let old = terms.current(VpsId(3));
        terms.next(VpsId(3));
        let refused = ingest(
            &s2,
            &g,
            &terms,
            old,
            &mut stream_of(&files, true).as_slice(),
            None,
            VpsId(3),
            1,
            10,
        );
        assert_eq!(
            refused.err().map(|e| e.kind()),
            Some(io::ErrorKind::PermissionDenied)
        );
        assert!(points::list(&s2, VpsId(3)).unwrap().is_empty());
        let landed = ingest(
            &s,
            &g,
            &terms,
            terms.current(VpsId(3)),
            &mut stream_of(&files, true).as_slice(),
            None,
            VpsId(3),
            1,
            10,
        )
        .unwrap();
        assert_eq!(
            (landed.chunks_new, landed.bytes_new, landed.chunks_known),
            (2, 13, 0)
        );
        assert_eq!(
            points::load(&s, VpsId(3), 1).unwrap().entries,
            landed.tree.entries()
        );
        // A second VPS with the same content costs no new chunk.
        let again = ingest(
            &s,
            &g,
            &terms,
            terms.current(VpsId(4)),
            &mut stream_of(&files, true).as_slice(),
            None,
            VpsId(4),
            1,
            11,
        )
        .unwrap();
        assert_eq!((again.chunks_new, again.chunks_known), (0, 2));

        // Cut before its end, cut in a chunk, or with a damaged chunk: no point.
        let whole = stream_of(&[("a", b"new content")], true);
        for cut in [whole.len() - 5, 20] {
            assert!(ingest(
                &s,
                &g,
                &Terms::default(),
                0,
                &mut &whole[..cut],
                None,
                VpsId(3),
                2,
                12
            )
            .is_err());
        }
        let mut damaged = Vec::new();
        stream::write_chunk(&mut damaged, &chunks::id_of(b"this"), b"that").unwrap();
        assert!(ingest(
            &s,
            &g,
            &Terms::default(),
            0,
            &mut damaged.as_slice(),
            None,
            VpsId(3),
            2,
            12
        )
        .is_err());
        // Entries naming a chunk that never came.
        let mut missing = Vec::new();
        stream::write_entries(&mut missing, &[file("x", b"never sent")]).unwrap();
        stream::write_end(&mut missing).unwrap();
        assert!(ingest(
            &s,
            &g,
            &Terms::default(),
            0,
            &mut missing.as_slice(),
            None,
            VpsId(3),
            2,
            12
        )
        .is_err());
        assert_eq!(points::cycles(&s, VpsId(3)).unwrap(), [1]);

        // An incremental cycle: one file changed, one deleted; the rest carried over.
        let prev = landed.tree;
        let mut delta = Vec::new();
        let changed = b"web-2\n";
        stream::write_chunk(&mut delta, &chunks::id_of(changed), changed).unwrap();
        let root = |p: &str| ChangedPath {
            path: PathBytes(p.as_bytes().to_vec()),
            deep: false,
        };
        stream::write_delta(
            &mut delta,
            &Delta {
                roots: vec![root("etc/hostname"), root("srv/data")],
                entries: vec![file("etc/hostname", changed)],
            },
        )
        .unwrap();
        stream::write_end(&mut delta).unwrap();
        // Without its previous point it cannot land.
        assert!(ingest(
            &s,
            &g,
            &Terms::default(),
            0,
            &mut delta.as_slice(),
            None,
            VpsId(3),
            2,
            13
        )
        .is_err());
        let next = ingest(
            &s,
            &g,
            &Terms::default(),
            0,
            &mut delta.as_slice(),
            Some(prev),
            VpsId(3),
            2,
            13,
        )
        .unwrap();
        assert!(!next.full);
        assert_eq!(
            next.tree.entries(),
            vec![root_dir(), file("etc/hostname", changed)]
        );
        assert_eq!(points::cycles(&s, VpsId(3)).unwrap(), [1, 2]);
        // A delta naming a chunk that did not come with it does not land.
        let mut lying = Vec::new();
        stream::write_delta(
            &mut lying,
            &Delta {
                roots: vec![root("x")],
                entries: vec![file("x", b"never sent")],
            },
        )
        .unwrap();
        stream::write_end(&mut lying).unwrap();
        assert!(ingest(
            &s,
            &g,
            &Terms::default(),
            0,
            &mut lying.as_slice(),
            Some(next.tree),
            VpsId(3),
            3,
            14
        )
        .is_err());
        assert_eq!(points::cycles(&s, VpsId(3)).unwrap(), [1, 2]);
    }
}
