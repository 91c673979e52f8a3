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
    /// Another path of this file (a hard link), listed before it in the same manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_of: Option<PathBytes>,
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

    proptest! {
        #[test]
        fn any_path_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let p = PathBytes(bytes);
            let json = serde_json::to_string(&p).unwrap();
            prop_assert_eq!(serde_json::from_str::<PathBytes>(&json).unwrap(), p);
        }
    }
}
