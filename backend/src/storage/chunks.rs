//! Chunks: pieces of file content named by their SHA-256, stored once whatever number of VPSes
//! hold them, compressed with zstd, and checked against their name whenever they are read.

use super::ObjectStore;
use serverware_shared::duplo::ChunkId;
use sha2::{Digest, Sha256};
use std::io;

/// zstd's level: the fastest, which keeps a full copy near the speed of the data's path; a
/// higher level saves a few percent of storage at several times the CPU.
const LEVEL: i32 = 1;

pub fn id_of(data: &[u8]) -> ChunkId {
    ChunkId(Sha256::digest(data).into())
}

pub fn key(id: &ChunkId) -> String {
    let hex = id.to_string();
    format!("chunks/{}/{hex}", &hex[..2])
}

/// Stores a chunk unless it is there (then it is marked used now, so that collection spares it);
/// whether it was new. `data` must hash to `id` (it is checked: storage never holds a chunk under
/// another's name).
pub fn put(store: &dyn ObjectStore, id: &ChunkId, data: &[u8]) -> io::Result<bool> {
    put_sized(store, id, data).map(|stored| stored.is_some())
}

/// [`put`], saying how many bytes a new chunk takes in storage (None: it was there).
pub fn put_sized(store: &dyn ObjectStore, id: &ChunkId, data: &[u8]) -> io::Result<Option<u64>> {
    if id_of(data) != *id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("chunk {id} arrived damaged: its content has another hash"),
        ));
    }
    let key = key(id);
    if store.touch(&key)? {
        return Ok(None);
    }
    let packed = compress(data)?;
    store.put(&key, &packed)?;
    Ok(Some(packed.len() as u64))
}

thread_local! {
    /// One compression context per thread, kept: making one costs more than compressing a
    /// small chunk.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `data` compressed with zstd at [`LEVEL`].
pub fn compress(data: &[u8]) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(LEVEL)?);
        }
        c.as_mut().expect("just made").compress(data)
    })
}

/// A chunk's content, checked against its name.
pub fn get(store: &dyn ObjectStore, id: &ChunkId) -> io::Result<Vec<u8>> {
    let packed = store.get(&key(id))?;
    let data = zstd::stream::decode_all(packed.as_slice()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("chunk {id} is damaged in storage: {e}"),
        )
    })?;
    if id_of(&data) != *id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("chunk {id} is damaged in storage: its content has another hash"),
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::DirStore;

    #[test]
    fn equal_content_is_stored_once_and_damage_is_found() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::open(d.path()).unwrap();
        let data = b"the same bytes in ten VPSes ".repeat(1000);
        let id = id_of(&data);
        assert!(put(&s, &id, &data).unwrap());
        assert!(!put(&s, &id, &data).unwrap(), "stored twice");
        assert_eq!(get(&s, &id).unwrap(), data);
        let stored = s.get(&key(&id)).unwrap();
        assert!(
            stored.len() < data.len() / 10,
            "not compressed: {}",
            stored.len()
        );
        // Content that does not match its name is refused on the way in…
        assert!(put(&s, &id_of(b"other"), b"not other").is_err());
        // …and found on the way out.
        s.put(&key(&id), &zstd::bulk::compress(b"flipped", 3).unwrap())
            .unwrap();
        let e = get(&s, &id).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        s.put(&key(&id), b"not zstd").unwrap();
        assert!(get(&s, &id).is_err());
    }
}
