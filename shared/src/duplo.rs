//! netDUPLO's words, shared by the agent (which reads a VPS's tree) and the controller (which
//! keeps it in storage): chunks named by their content, and the manifest of one duplication
//! cycle, which lists every entry of the tree as the VPS sees it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Files are cut into chunks of this size (the last one shorter); a chunk is named by the
/// SHA-256 of its content, so equal content is stored once across all VPSes.
pub const CHUNK_SIZE: usize = 1 << 20;

/// The SHA-256 of a chunk's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

impl std::str::FromStr for ChunkId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{}' is not a chunk id (64 hex digits)", s.escape_default());
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut id = [0u8; 32];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(ChunkId(id))
    }
}

impl Serialize for ChunkId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ChunkId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A path inside a VPS, as bytes (Linux names need not be UTF-8), relative to its root and
/// without a leading `/`. On the wire it is a string: valid UTF-8 as it is, with `%` and every
/// byte that is not valid UTF-8 written `%XX`, so that any name travels and comes back exact.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct PathBytes(pub Vec<u8>);

impl PathBytes {
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c == '%' {
                    out.push_str("%25");
                } else {
                    out.push(c);
                }
            }
            for b in chunk.invalid() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    pub fn decode(s: &str) -> Result<PathBytes, String> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("a bad escape in the path '{}'", s.escape_default()))?;
                out.push(hex);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        Ok(PathBytes(out))
    }
}

impl Serialize for PathBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for PathBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PathBytes::decode(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Entry {
    /// An entry of `kind` at `path` with every other field zero or empty, to be filled in.
    pub fn new(path: &[u8], kind: EntryKind) -> Entry {
        Entry {
            path: PathBytes(path.to_vec()),
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            size: 0,
            chunks: Vec::new(),
            target: None,
            rdev: None,
            ino: 0,
            ctime_ns: 0,
            xattrs: Vec::new(),
            data: None,
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// One entry of a VPS's tree, with its metadata as the VPS sees it (ids inside its own range,
/// whatever its mapping on the host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: PathBytes,
    pub kind: EntryKind,
    /// Permission and set-id bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Bytes of a file; 0 for the rest.
    #[serde(default)]
    pub size: u64,
    /// A file's content, chunk after chunk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkId>,
    /// A link's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PathBytes>,
    /// A device's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// A file's inode number on its host: files of one manifest with the same number are one
    /// file under several names (hard links). 0 for the rest.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ino: u64,
    /// A file's inode change time on its host (nanoseconds since the epoch): no VPS can set it,
    /// so a file whose inode, size, time and change time are all the same has the same content.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub ctime_ns: i64,
    /// Extended attributes the VPS can set and that mean something in it: `user.*`,
    /// `trusted.*`, file capabilities (`security.capability`) and POSIX ACLs
    /// (`system.posix_acl_*`), as the VPS sees them (the ids an ACL names and a capability's
    /// root within its own range), sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    /// A sparse file's data, as (offset, length) ranges in order; the rest are holes. None: all
    /// of it is data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<(u64, u64)>>,
}

/// One extended attribute of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: String,
    /// Its value, bytes written as a path's are (`%XX` for what is not UTF-8).
    pub value: PathBytes,
}

/// Whether an extended attribute is one a point keeps (see [`Entry::xattrs`]).
pub fn xattr_kept(name: &str) -> bool {
    name.starts_with("user.")
        || name.starts_with("trusted.")
        || name == XATTR_CAPABILITY
        || name == XATTR_ACL_ACCESS
        || name == XATTR_ACL_DEFAULT
}

pub const XATTR_CAPABILITY: &str = "security.capability";
pub const XATTR_ACL_ACCESS: &str = "system.posix_acl_access";
pub const XATTR_ACL_DEFAULT: &str = "system.posix_acl_default";

/// The most an entry's attributes may hold in all (the kernel's own limit for one value is 64 KiB).
pub const MAX_XATTR_BYTES: usize = 256 << 10;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// A file of the previous restore point, as a scan is told of it (`rootfs-scan --request`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownFile {
    pub path: PathBytes,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub chunks: Vec<ChunkId>,
    /// Its attributes and data ranges (a change of either changes its change time too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<(u64, u64)>>,
}

impl KnownFile {
    /// What the previous point knows of `e`, if it is a file with a change time.
    pub fn of(e: &Entry) -> Option<KnownFile> {
        (e.kind == EntryKind::File && e.ctime_ns != 0).then(|| KnownFile {
            path: e.path.clone(),
            ino: e.ino,
            size: e.size,
            mtime_ns: e.mtime_ns,
            ctime_ns: e.ctime_ns,
            chunks: e.chunks.clone(),
            xattrs: e.xattrs.clone(),
            data: e.data.clone(),
        })
    }

    /// Whether a file found now with this metadata is this one, unchanged.
    pub fn unchanged(&self, ino: u64, size: u64, mtime_ns: i64, ctime_ns: i64) -> bool {
        self.ctime_ns != 0
            && (self.ino, self.size, self.mtime_ns, self.ctime_ns)
                == (ino, size, mtime_ns, ctime_ns)
    }
}

/// What a cycle asks of the agent's scan, on its stdin.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScanRequest {
    /// Only these paths (an incremental cycle); absent: the whole tree.
    #[serde(default)]
    pub paths: Option<Vec<ChangedPath>>,
    /// The previous point's files under what is read: an unchanged one is not read again, and
    /// no chunk the previous point holds is sent again.
    #[serde(default)]
    pub known: Vec<KnownFile>,
}

/// A path the change journal saw changed since the last acknowledged cycle. `deep`: everything
/// under it may have changed too (a directory made or moved in, or moved away).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedPath {
    pub path: PathBytes,
    #[serde(default)]
    pub deep: bool,
}

/// What the journal hands a cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Changes {
    /// The journal cannot vouch for what changed: the cycle compares the whole tree.
    Full { reason: String },
    /// Only these paths (sorted) changed.
    Paths { paths: Vec<ChangedPath> },
}

/// At most this many changed paths travel; more make the cycle compare in full.
pub const MAX_CHANGED_PATHS: usize = 50_000;

/// What an incremental scan found: for each changed path (and its parent, whose time a change
/// moves), its entry if it still exists and, when `deep`, everything under it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Delta {
    pub roots: Vec<ChangedPath>,
    pub entries: Vec<Entry>,
}

impl Delta {
    /// `prev` (a manifest's entries, sorted) as it is after this delta: each root's old entry
    /// goes, with everything under it when the root is deep or is no longer a directory; then the
    /// entries found are put in. Sorted again.
    pub fn apply(&self, prev: Vec<Entry>) -> Vec<Entry> {
        use std::collections::BTreeMap;
        let mut m: BTreeMap<PathBytes, Entry> =
            prev.into_iter().map(|e| (e.path.clone(), e)).collect();
        let found: BTreeMap<&PathBytes, &Entry> =
            self.entries.iter().map(|e| (&e.path, e)).collect();
        for root in &self.roots {
            m.remove(&root.path);
            let still_dir = found
                .get(&root.path)
                .is_some_and(|e| e.kind == EntryKind::Dir);
            if root.deep || !still_dir {
                let under: Vec<PathBytes> = if root.path.0.is_empty() {
                    m.keys().cloned().collect()
                } else {
                    let mut lo = root.path.0.clone();
                    lo.push(b'/');
                    let mut hi = root.path.0.clone();
                    hi.push(b'/' + 1);
                    m.range(PathBytes(lo)..PathBytes(hi))
                        .map(|(k, _)| k.clone())
                        .collect()
                };
                for k in under {
                    m.remove(&k);
                }
            }
        }
        for e in &self.entries {
            m.insert(e.path.clone(), e.clone());
        }
        // A file's other names (hard links) share its inode: its content and metadata changed
        // for all of them, though the journal saw only the name it was changed through.
        let by_ino: std::collections::HashMap<u64, &Entry> = self
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File && e.ino != 0)
            .map(|e| (e.ino, e))
            .collect();
        if !by_ino.is_empty() {
            for e in m.values_mut() {
                if e.kind != EntryKind::File || found.contains_key(&e.path) {
                    continue;
                }
                if let Some(n) = by_ino.get(&e.ino) {
                    let path = std::mem::take(&mut e.path);
                    *e = (*n).clone();
                    e.path = path;
                }
            }
        }
        m.into_values().collect()
    }
}

/// What a restore did on its host.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RestoreSummary {
    /// Entries made.
    pub entries: u64,
    /// Files kept from the tree that was there (unchanged; copied, or linked from a standby
    /// copy), and their bytes.
    pub files_kept: u64,
    pub bytes_kept: u64,
    /// Files written from chunks, their bytes, and the chunk bytes that came over the wire.
    pub files_written: u64,
    pub bytes_written: u64,
    pub bytes_received: u64,
    /// Hard links made.
    pub links: u64,
    /// Entries not made: devices of an unprivileged VPS, sockets.
    pub skipped: u64,
    /// Started from a standby copy this host kept (its files linked, not copied).
    #[serde(default)]
    pub seeded: bool,
}

/// How a scan went, sent before its end.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScanStats {
    /// Files whose content was read, and their bytes.
    pub files_read: u64,
    pub bytes_read: u64,
    /// How long the VPS was frozen for a consistent point (0: not frozen).
    pub freeze_ms: u64,
    /// Whether the whole scan ran while the VPS was frozen: a consistent point. A scan too long
    /// to hold the VPS frozen thaws it and reads each file as it is at that moment.
    pub consistent: bool,
}

/// Bumped when a manifest's meaning changes; readers refuse formats they do not know.
pub const MANIFEST_FORMAT: u32 = 1;

/// The state of one VPS's tree at one completed cycle: a restore point. Written last, as the
/// cycle's commit; entries sorted by path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub vps_id: i64,
    /// Cycles count up from 1 per VPS.
    pub cycle: u64,
    /// When its tree was read (milliseconds since the Unix epoch).
    pub taken_at_ms: i64,
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// Every chunk the manifest needs, each once.
    pub fn chunk_ids(&self) -> std::collections::BTreeSet<ChunkId> {
        self.entries
            .iter()
            .flat_map(|e| e.chunks.iter().copied())
            .collect()
    }

    /// The bytes its files hold.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// The stream an agent sends for a cycle (`serverware-agent rootfs-scan`): frames of one type
/// byte, a little-endian u32 length and the payload. Chunks come as they are read; the list of
/// entries (a full scan) or the delta (an incremental one) comes last, then the scan's stats,
/// then the end. A stream that stops before its end is not a cycle.
pub mod stream {
    use super::{ChunkId, Delta, Entry, RestoreSummary, ScanStats};
    use std::io::{self, Read, Write};

    /// `C` + 32-byte id + content.
    pub const CHUNK: u8 = b'C';
    /// `E` + the entries as JSON.
    pub const ENTRIES: u8 = b'E';
    /// `D` + a [`Delta`] as JSON.
    pub const DELTA: u8 = b'D';
    /// `S` + [`ScanStats`] as JSON.
    pub const STATS: u8 = b'S';
    /// `N` + the chunk ids a restore needs, as JSON (agent → controller).
    pub const NEED: u8 = b'N';
    /// `R` + a [`RestoreSummary`] as JSON (agent → controller, at a restore's end).
    pub const SUMMARY: u8 = b'R';
    /// `Z`, empty: the stream is whole.
    pub const END: u8 = b'Z';

    /// The largest payload a reader accepts: a chunk and its id, or a long list of entries.
    pub const MAX_FRAME: usize = 256 << 20;

    pub fn write_chunk(w: &mut impl Write, id: &ChunkId, data: &[u8]) -> io::Result<()> {
        w.write_all(&[CHUNK])?;
        w.write_all(&((32 + data.len()) as u32).to_le_bytes())?;
        w.write_all(&id.0)?;
        w.write_all(data)
    }

    fn write_json(w: &mut impl Write, kind: u8, v: &impl serde::Serialize) -> io::Result<()> {
        let json = serde_json::to_vec(v).map_err(io::Error::other)?;
        if json.len() > MAX_FRAME {
            return Err(io::Error::other("too many entries for one frame"));
        }
        w.write_all(&[kind])?;
        w.write_all(&(json.len() as u32).to_le_bytes())?;
        w.write_all(&json)
    }

    pub fn write_entries(w: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
        write_json(w, ENTRIES, &entries)
    }

    pub fn write_delta(w: &mut impl Write, delta: &Delta) -> io::Result<()> {
        write_json(w, DELTA, delta)
    }

    pub fn write_stats(w: &mut impl Write, stats: &ScanStats) -> io::Result<()> {
        write_json(w, STATS, stats)
    }

    pub fn write_need(w: &mut impl Write, ids: &[ChunkId]) -> io::Result<()> {
        write_json(w, NEED, &ids)
    }

    pub fn write_summary(w: &mut impl Write, s: &RestoreSummary) -> io::Result<()> {
        write_json(w, SUMMARY, s)
    }

    pub fn write_end(w: &mut impl Write) -> io::Result<()> {
        w.write_all(&[END, 0, 0, 0, 0])
    }

    /// One frame read back.
    #[derive(Debug, PartialEq)]
    pub enum Frame {
        Chunk(ChunkId, Vec<u8>),
        Entries(Vec<Entry>),
        Delta(Delta),
        Stats(ScanStats),
        Need(Vec<ChunkId>),
        Summary(RestoreSummary),
        End,
    }

    fn json<T: serde::de::DeserializeOwned>(payload: &[u8]) -> io::Result<T> {
        serde_json::from_slice(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The next frame; an error for a stream cut short, an unknown frame or one too large.
    pub fn read(r: &mut impl Read) -> io::Result<Frame> {
        let mut head = [0u8; 5];
        r.read_exact(&mut head)?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a frame of {len} bytes"),
            ));
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload)?;
        match head[0] {
            CHUNK if len >= 32 => {
                let mut id = [0u8; 32];
                id.copy_from_slice(&payload[..32]);
                payload.drain(..32);
                Ok(Frame::Chunk(ChunkId(id), payload))
            }
            ENTRIES => json(&payload).map(Frame::Entries),
            DELTA => json(&payload).map(Frame::Delta),
            STATS => json(&payload).map(Frame::Stats),
            NEED => json(&payload).map(Frame::Need),
            SUMMARY => json(&payload).map(Frame::Summary),
            END if len == 0 => Ok(Frame::End),
            t => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "an unknown frame '{}' of {len} bytes",
                    (t as char).escape_default()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chunk_ids_read_back() {
        let id = ChunkId([0xab; 32]);
        let s = id.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<ChunkId>().unwrap(), id);
        for bad in ["", "xyz", &"g".repeat(64), &"a".repeat(63)] {
            assert!(bad.parse::<ChunkId>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ChunkId>(&json).unwrap(), id);
    }

    #[test]
    fn paths_keep_every_byte() {
        let p = PathBytes(b"etc/caf\xc3\xa9 100%/\xff\xfe\n".to_vec());
        let s = p.encode();
        assert_eq!(s, "etc/café 100%25/%FF%FE\n");
        assert_eq!(PathBytes::decode(&s).unwrap(), p);
        assert!(PathBytes::decode("a%4").is_err());
        assert!(PathBytes::decode("a%zz").is_err());
    }

    #[test]
    fn a_stream_reads_back_and_a_cut_one_is_an_error() {
        use stream::*;
        let e = Entry {
            path: PathBytes(b"etc/hostname".to_vec()),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 5,
            size: 3,
            chunks: vec![ChunkId([1; 32])],
            target: None,
            rdev: None,
            ino: 0,
            ctime_ns: 0,
            xattrs: Vec::new(),
            data: None,
        };
        let mut buf = Vec::new();
        write_chunk(&mut buf, &ChunkId([1; 32]), b"abc").unwrap();
        write_entries(&mut buf, std::slice::from_ref(&e)).unwrap();
        write_end(&mut buf).unwrap();
        let mut r = buf.as_slice();
        assert_eq!(
            read(&mut r).unwrap(),
            Frame::Chunk(ChunkId([1; 32]), b"abc".to_vec())
        );
        assert_eq!(read(&mut r).unwrap(), Frame::Entries(vec![e]));
        assert_eq!(read(&mut r).unwrap(), Frame::End);
        assert!(read(&mut r).is_err());
        let mut cut = &buf[..buf.len() - 20];
        read(&mut cut).unwrap();
        assert!(read(&mut cut).is_err());
        assert!(read(&mut &b"X\0\0\0\0"[..]).is_err());
        assert!(read(&mut &b"C\xff\xff\xff\xff"[..]).is_err());
    }

    fn e(path: &str, kind: EntryKind, mtime_ns: i64) -> Entry {
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
            ino: 0,
            ctime_ns: 0,
            xattrs: Vec::new(),
            data: None,
        }
    }

    #[test]
    fn a_delta_replaces_what_it_covers_and_nothing_else() {
        use EntryKind::*;
        let prev = vec![
            e("", Dir, 1),
            e("a", Dir, 1),
            e("a.b", File, 1),
            e("a/x", File, 1),
            e("a/y", Dir, 1),
            e("a/y/z", File, 1),
            e("b", File, 1),
        ];
        let root = |p: &str, deep| ChangedPath {
            path: PathBytes(p.as_bytes().to_vec()),
            deep,
        };
        // a/x deleted, a touched, b changed: shallow roots.
        let d = Delta {
            roots: vec![root("a", false), root("a/x", false), root("b", false)],
            entries: vec![e("a", Dir, 2), e("b", File, 2)],
        };
        let paths = |v: &[Entry]| {
            v.iter()
                .map(|e| (String::from_utf8(e.path.0.clone()).unwrap(), e.mtime_ns))
                .collect::<Vec<_>>()
        };
        let after = d.apply(prev.clone());
        assert_eq!(
            paths(&after),
            [
                ("", 1),
                ("a", 2),
                ("a.b", 1),
                ("a/y", 1),
                ("a/y/z", 1),
                ("b", 2)
            ]
            .map(|(p, t)| (p.to_string(), t))
        );
        // a replaced by a file: its old children go even though the root is shallow.
        let d = Delta {
            roots: vec![root("a", false)],
            entries: vec![e("a", File, 3)],
        };
        assert_eq!(
            paths(&d.apply(prev.clone())),
            [("", 1), ("a", 3), ("a.b", 1), ("b", 1)].map(|(p, t)| (p.to_string(), t))
        );
        // a deep root rescans the subtree: what was not found is gone.
        let d = Delta {
            roots: vec![root("a", true)],
            entries: vec![e("a", Dir, 4), e("a/new", File, 4)],
        };
        assert_eq!(
            paths(&d.apply(prev.clone())),
            [("", 1), ("a", 4), ("a.b", 1), ("a/new", 4), ("b", 1)]
                .map(|(p, t)| (p.to_string(), t))
        );
        // A file changed through one name: its other names (same inode) change with it.
        let mut linked = prev.clone();
        for e in linked.iter_mut().filter(|e| e.kind == File) {
            e.ino = 9;
        }
        let mut changed = e("b", File, 7);
        changed.ino = 9;
        changed.size = 42;
        let d = Delta {
            roots: vec![root("b", false)],
            entries: vec![changed],
        };
        let after = d.apply(linked);
        for p in ["a.b", "a/x", "a/y/z", "b"] {
            let f = after.iter().find(|e| e.path.0 == p.as_bytes()).unwrap();
            assert_eq!((f.mtime_ns, f.size), (7, 42), "{p}");
        }
        // The root itself, deep: the whole tree.
        let d = Delta {
            roots: vec![root("", true)],
            entries: vec![e("", Dir, 5)],
        };
        assert_eq!(paths(&d.apply(prev)), [("".to_string(), 5)]);
    }

    proptest! {
        #[test]
        fn any_path_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let p = PathBytes(bytes);
            let json = serde_json::to_string(&p).unwrap();
            prop_assert_eq!(serde_json::from_str::<PathBytes>(&json).unwrap(), p);
        }
    }
}
