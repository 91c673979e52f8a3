//! A restore point's tree, kept per directory: each directory's entries are one content-addressed
//! segment in storage (`segments/xx/<sha-256>`, zstd JSON), shared by every point and VPS that
//! has that directory as it is. A cycle re-writes only the segments of the directories it
//! changed, and the point itself is a short header naming its segments: a cycle costs what
//! changed, not the size of the tree.

use super::{chunks, ObjectStore};
use serverware_shared::duplo::{ChunkId, Delta, Entry, EntryKind, PathBytes};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;

/// One directory's entries by name, and the segment holding them (None: changed since it was
/// last saved).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dir {
    pub entries: BTreeMap<Vec<u8>, Entry>,
    pub segment: Option<ChunkId>,
}

/// A VPS's tree as of one point, ready to take the next cycle's changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tree {
    /// The root directory's own entry.
    pub root: Option<Entry>,
    /// Directory path → its entries ("" is the root's).
    pub dirs: HashMap<Vec<u8>, Dir>,
    /// How many entries name each chunk.
    refs: HashMap<ChunkId, u32>,
    /// Files by inode (hard links share one).
    inos: HashMap<u64, BTreeSet<Vec<u8>>>,
}

fn parent_and_name(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

fn under(path: &[u8], top: &[u8]) -> bool {
    top.is_empty() || path == top || (path.starts_with(top) && path.get(top.len()) == Some(&b'/'))
}

pub fn segment_key(id: &ChunkId) -> String {
    let hex = id.to_string();
    format!("segments/{}/{hex}", &hex[..2])
}

impl Tree {
    pub fn from_entries(entries: Vec<Entry>) -> Tree {
        let mut t = Tree::default();
        for e in entries {
            t.insert(e);
        }
        t
    }

    fn count(&mut self, e: &Entry, add: bool) {
        for id in &e.chunks {
            if add {
                *self.refs.entry(*id).or_default() += 1;
            } else if let Some(n) = self.refs.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    self.refs.remove(id);
                }
            }
        }
        if e.kind == EntryKind::File && e.ino != 0 {
            if add {
                self.inos.entry(e.ino).or_default().insert(e.path.0.clone());
            } else if let Some(s) = self.inos.get_mut(&e.ino) {
                s.remove(&e.path.0);
                if s.is_empty() {
                    self.inos.remove(&e.ino);
                }
            }
        }
    }

    /// Puts `e` in (replacing what was at its path).
    pub fn insert(&mut self, e: Entry) {
        if e.path.0.is_empty() {
            if let Some(old) = self.root.take() {
                self.count(&old, false);
            }
            self.count(&e, true);
            self.root = Some(e);
            return;
        }
        self.remove(&e.path.0.clone());
        self.count(&e, true);
        let (parent, name) = parent_and_name(&e.path.0);
        let d = self.dirs.entry(parent.to_vec()).or_default();
        d.segment = None;
        d.entries.insert(name.to_vec(), e);
    }

    /// Takes the entry at `path` out (not what is under it).
    pub fn remove(&mut self, path: &[u8]) -> Option<Entry> {
        if path.is_empty() {
            let old = self.root.take();
            if let Some(o) = &old {
                self.count(o, false);
            }
            return old;
        }
        let (parent, name) = parent_and_name(path);
        let d = self.dirs.get_mut(parent)?;
        let old = d.entries.remove(name)?;
        d.segment = None;
        self.count(&old, false);
        Some(old)
    }

    /// Takes out everything under the directory `top` (its own entry stays).
    fn remove_under(&mut self, top: &[u8]) {
        let gone: Vec<Vec<u8>> = self
            .dirs
            .keys()
            .filter(|k| under(k, top))
            .cloned()
            .collect();
        for k in gone {
            if let Some(d) = self.dirs.remove(&k) {
                for e in d.entries.values() {
                    self.count(e, false);
                }
            }
        }
    }

    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        if path.is_empty() {
            return self.root.as_ref();
        }
        let (parent, name) = parent_and_name(path);
        self.dirs.get(parent)?.entries.get(name)
    }

    /// The other names of the file at `path` (hard links to its inode), as the tree has them.
    pub fn other_links<'a>(&'a self, path: &'a [u8]) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        self.get(path)
            .filter(|e| e.kind == EntryKind::File && e.ino != 0)
            .and_then(|e| self.inos.get(&e.ino))
            .into_iter()
            .flatten()
            .filter(move |p| p.as_slice() != path)
    }

    /// The entries at and under `top`.
    pub fn under<'a>(&'a self, top: &'a [u8]) -> impl Iterator<Item = &'a Entry> + 'a {
        self.get(top).into_iter().chain(
            self.dirs
                .iter()
                .filter(move |(k, _)| under(k, top))
                .flat_map(|(_, d)| d.entries.values()),
        )
    }

    /// Applies a cycle's delta (as [`Delta::apply`] does to a flat list).
    pub fn apply(&mut self, delta: &Delta) {
        let found: HashMap<&[u8], &Entry> = delta
            .entries
            .iter()
            .map(|e| (e.path.0.as_slice(), e))
            .collect();
        for root in &delta.roots {
            let p = &root.path.0;
            self.remove(p);
            let still_dir = found
                .get(p.as_slice())
                .is_some_and(|e| e.kind == EntryKind::Dir);
            if root.deep || !still_dir {
                self.remove_under(p);
            }
        }
        for e in &delta.entries {
            self.insert(e.clone());
        }
        // A file's other names (hard links) share its inode: its content and metadata changed
        // for all of them, though the journal saw only the name it was changed through.
        for e in &delta.entries {
            if e.kind != EntryKind::File || e.ino == 0 {
                continue;
            }
            let others: Vec<Vec<u8>> = self
                .inos
                .get(&e.ino)
                .map(|s| {
                    s.iter()
                        .filter(|p| !found.contains_key(p.as_slice()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            for p in others {
                let mut n = e.clone();
                n.path = PathBytes(p);
                self.insert(n);
            }
        }
    }

    /// Every entry, sorted by path.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out: Vec<Entry> = self.root.iter().cloned().collect();
        for d in self.dirs.values() {
            out.extend(d.entries.values().cloned());
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// About how many bytes of memory the tree takes: each entry with what it owns (its path
    /// and its name again as its directory's key, its chunks, link target, attributes and data
    /// ranges) and its share of the maps' nodes, and the chunk and inode indexes.
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        const NODE: usize = 32; // a map slot's own overhead, about
        let entry = |e: &Entry| {
            size_of::<Entry>()
                + NODE
                + 2 * e.path.0.len()
                + size_of::<Vec<u8>>()
                + e.chunks.len() * size_of::<ChunkId>()
                + e.target.as_ref().map_or(0, |t| t.0.len())
                + e.xattrs
                    .iter()
                    .map(|x| {
                        size_of::<serverware_shared::duplo::Xattr>()
                            + x.name.len()
                            + x.value.0.len()
                    })
                    .sum::<usize>()
                + e.data.as_ref().map_or(0, |d| d.len() * 16)
        };
        let dirs: usize = self
            .dirs
            .iter()
            .map(|(k, d)| {
                size_of::<Dir>() + NODE + k.len() + d.entries.values().map(entry).sum::<usize>()
            })
            .sum();
        let refs = self.refs.len() * (size_of::<ChunkId>() + size_of::<u32>() + NODE);
        let inos: usize = self
            .inos
            .values()
            .map(|s| size_of::<u64>() + NODE + s.iter().map(|p| p.len() + NODE).sum::<usize>())
            .sum();
        size_of::<Tree>() + self.root.as_ref().map_or(0, entry) + dirs + refs + inos
    }

    pub fn holds_chunk(&self, id: &ChunkId) -> bool {
        self.refs.contains_key(id)
    }

    pub fn chunk_ids(&self) -> impl Iterator<Item = &ChunkId> {
        self.refs.keys()
    }

    /// Entries, and bytes of their files.
    pub fn totals(&self) -> (u64, u64) {
        let mut n = self.root.is_some() as u64;
        let mut bytes = 0;
        for d in self.dirs.values() {
            n += d.entries.len() as u64;
            bytes += d.entries.values().map(|e| e.size).sum::<u64>();
        }
        (n, bytes)
    }

    /// Writes the segments of the directories changed since the last save (their ids are then
    /// known); the directories' (path, segment) list, sorted. Durable at the next commit.
    pub fn save_segments(
        &mut self,
        store: &dyn ObjectStore,
    ) -> io::Result<Vec<(PathBytes, ChunkId)>> {
        self.dirs.retain(|_, d| !d.entries.is_empty());
        for d in self.dirs.values_mut() {
            if d.segment.is_some() {
                continue;
            }
            let list: Vec<&Entry> = d.entries.values().collect();
            let json = serde_json::to_vec(&list).map_err(io::Error::other)?;
            let id = ChunkId(Sha256::digest(&json).into());
            let key = segment_key(&id);
            if !store.touch(&key)? {
                store.put(&key, &chunks::compress(&json)?)?;
            }
            d.segment = Some(id);
        }
        let mut list: Vec<(PathBytes, ChunkId)> = self
            .dirs
            .iter()
            .filter_map(|(k, d)| Some((PathBytes(k.clone()), d.segment?)))
            .collect();
        list.sort();
        Ok(list)
    }

    /// A saved tree read back: its directories' segments, each checked against its name.
    pub fn load(
        store: &dyn ObjectStore,
        root: Entry,
        dirs: &[(PathBytes, ChunkId)],
    ) -> io::Result<Tree> {
        let mut t = Tree::default();
        t.count(&root, true);
        t.root = Some(root);
        for (path, id) in dirs {
            let entries = read_segment(store, id)?;
            let mut d = Dir {
                entries: BTreeMap::new(),
                segment: Some(*id),
            };
            for e in entries {
                let (parent, name) = parent_and_name(&e.path.0);
                if parent != path.0.as_slice() || name.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("segment {id} holds an entry of another directory"),
                    ));
                }
                t.count(&e, true);
                d.entries.insert(name.to_vec(), e);
            }
            t.dirs.insert(path.0.clone(), d);
        }
        Ok(t)
    }
}

/// One directory's entries from storage, checked against the segment's name.
pub fn read_segment(store: &dyn ObjectStore, id: &ChunkId) -> io::Result<Vec<Entry>> {
    let packed = store.get(&segment_key(id))?;
    let json = zstd::stream::decode_all(packed.as_slice())?;
    if ChunkId(Sha256::digest(&json).into()) != *id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("segment {id} is damaged in storage"),
        ));
    }
    serde_json::from_slice(&json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Whether a chunk is in storage (for a point's commit).
pub fn chunk_stored(store: &dyn ObjectStore, id: &ChunkId) -> io::Result<bool> {
    store.exists(&chunks::key(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serverware_shared::duplo::ChangedPath;

    fn e(path: &str, kind: EntryKind, mtime_ns: i64, ino: u64) -> Entry {
        Entry {
            path: PathBytes(path.as_bytes().to_vec()),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime_ns,
            size: 0,
            chunks: vec![],
            target: None,
            rdev: None,
            ino,
            ctime_ns: 0,
            xattrs: Vec::new(),
            data: None,
        }
    }

    /// A tree applies any delta exactly as the flat list does.
    #[test]
    fn a_tree_takes_a_delta_as_the_flat_list_does() {
        use EntryKind::*;
        let prev = vec![
            e("", Dir, 1, 0),
            e("a", Dir, 1, 0),
            e("a.b", File, 1, 7),
            e("a/x", File, 1, 7),
            e("a/y", Dir, 1, 0),
            e("a/y/z", File, 1, 0),
            e("b", File, 1, 0),
        ];
        let root = |p: &str, deep| ChangedPath {
            path: PathBytes(p.as_bytes().to_vec()),
            deep,
        };
        let deltas = [
            Delta {
                roots: vec![root("a", false), root("a/x", false), root("b", false)],
                entries: vec![e("a", Dir, 2, 0), e("b", File, 2, 0)],
            },
            Delta {
                roots: vec![root("a", false)],
                entries: vec![e("a", File, 3, 0)],
            },
            Delta {
                roots: vec![root("a", true)],
                entries: vec![e("a", Dir, 4, 0), e("a/new", File, 4, 0)],
            },
            Delta {
                roots: vec![root("a.b", false)],
                entries: vec![e("a.b", File, 9, 7)],
            },
            Delta {
                roots: vec![root("", true)],
                entries: vec![e("", Dir, 5, 0)],
            },
        ];
        for d in deltas {
            let mut t = Tree::from_entries(prev.clone());
            t.apply(&d);
            assert_eq!(t.entries(), d.apply(prev.clone()), "{d:?}");
        }
    }

    #[test]
    fn only_changed_directories_are_written_again() {
        use EntryKind::*;
        let dir = tempfile::tempdir().unwrap();
        let s = crate::storage::DirStore::open(dir.path()).unwrap();
        let mut entries = vec![e("", Dir, 1, 0)];
        for d in 0..10 {
            entries.push(e(&format!("d{d}"), Dir, 1, 0));
            for f in 0..100 {
                entries.push(e(&format!("d{d}/f{f}"), File, 1, 0));
            }
        }
        let mut t = Tree::from_entries(entries.clone());
        let list = t.save_segments(&s).unwrap();
        assert_eq!(list.len(), 11);
        let segments = s.list("segments/").unwrap().len();
        t.apply(&Delta {
            roots: vec![ChangedPath {
                path: PathBytes(b"d3/f7".to_vec()),
                deep: false,
            }],
            entries: vec![e("d3/f7", File, 2, 0)],
        });
        let list2 = t.save_segments(&s).unwrap();
        let changed: Vec<_> = list
            .iter()
            .zip(&list2)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| String::from_utf8_lossy(&a.0 .0).into_owned())
            .collect();
        assert_eq!(changed, ["d3"]);
        assert_eq!(s.list("segments/").unwrap().len(), segments + 1);
        // Read back, the same tree.
        let back = Tree::load(&s, t.root.clone().unwrap(), &list2).unwrap();
        assert_eq!(back.entries(), t.entries());
        // A damaged segment is found.
        let key = segment_key(&list2[0].1);
        s.put(&key, &zstd::bulk::compress(b"[]", 3).unwrap())
            .unwrap();
        assert!(Tree::load(&s, t.root.clone().unwrap(), &list2).is_err());
    }
}
