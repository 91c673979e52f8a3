//! Landing a cycle: the agent's stream (`serverware_shared::duplo::stream`) becomes chunks in
//! storage and, once it has ended whole, a committed restore point. A stream cut short, a chunk
//! whose content does not match its name or a list of entries naming a chunk that never came
//! leaves no point: storage keeps exactly the points it had.

use super::{chunks, points, ObjectStore};
use serverware_shared::duplo::stream::{self, Frame};
use serverware_shared::duplo::{Entry, Manifest, MANIFEST_FORMAT};
use std::io::{self, Read};

/// What a landed cycle cost storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Landed {
    pub manifest: Manifest,
    /// Chunks storage did not have, and their bytes before compression.
    pub chunks_new: u64,
    pub bytes_new: u64,
    /// Chunks that came but storage had already (from this VPS or another).
    pub chunks_known: u64,
}

pub fn ingest(
    store: &dyn ObjectStore,
    r: &mut impl Read,
    vps_id: i64,
    cycle: u64,
    taken_at_ms: i64,
) -> io::Result<Landed> {
    let (mut chunks_new, mut bytes_new, mut chunks_known) = (0, 0, 0);
    let mut entries: Option<Vec<Entry>> = None;
    loop {
        match stream::read(r)? {
            Frame::Chunk(id, data) => {
                if chunks::put(store, &id, &data)? {
                    chunks_new += 1;
                    bytes_new += data.len() as u64;
                } else {
                    chunks_known += 1;
                }
            }
            Frame::Entries(e) if entries.is_none() => entries = Some(e),
            Frame::Entries(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the stream lists its entries twice",
                ))
            }
            Frame::End => break,
        }
    }
    let entries = entries.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the stream ended without its entries",
        )
    })?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        vps_id,
        cycle,
        taken_at_ms,
        entries,
    };
    points::commit(store, &manifest)?;
    Ok(Landed {
        manifest,
        chunks_new,
        bytes_new,
        chunks_known,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::DirStore;
    use serverware_shared::duplo::{EntryKind, PathBytes};

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
        }
    }

    fn stream_of(files: &[(&str, &[u8])], end: bool) -> Vec<u8> {
        let mut buf = Vec::new();
        for (_, data) in files {
            stream::write_chunk(&mut buf, &chunks::id_of(data), data).unwrap();
        }
        let entries: Vec<Entry> = files.iter().map(|(p, d)| file(p, d)).collect();
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
        let files: [(&str, &[u8]); 2] = [("etc/hostname", b"web-1\n"), ("srv/data", b"payload")];
        let landed = ingest(&s, &mut stream_of(&files, true).as_slice(), 3, 1, 10).unwrap();
        assert_eq!(
            (landed.chunks_new, landed.bytes_new, landed.chunks_known),
            (2, 13, 0)
        );
        assert_eq!(points::load(&s, 3, 1).unwrap(), landed.manifest);
        // A second VPS with the same content costs no new chunk.
        let again = ingest(&s, &mut stream_of(&files, true).as_slice(), 4, 1, 11).unwrap();
        assert_eq!((again.chunks_new, again.chunks_known), (0, 2));

        // Cut before its end, cut in a chunk, or with a damaged chunk: no point.
        let whole = stream_of(&[("a", b"new content")], true);
        for cut in [whole.len() - 5, 20] {
            assert!(ingest(&s, &mut &whole[..cut], 3, 2, 12).is_err());
        }
        let mut damaged = Vec::new();
        stream::write_chunk(&mut damaged, &chunks::id_of(b"this"), b"that").unwrap();
        assert!(ingest(&s, &mut damaged.as_slice(), 3, 2, 12).is_err());
        // Entries naming a chunk that never came.
        let mut missing = Vec::new();
        stream::write_entries(&mut missing, &[file("x", b"never sent")]).unwrap();
        stream::write_end(&mut missing).unwrap();
        assert!(ingest(&s, &mut missing.as_slice(), 3, 2, 12).is_err());
        assert_eq!(points::cycles(&s, 3).unwrap(), [1]);
    }
}
