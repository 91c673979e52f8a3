//! Moving a site's restore points from one store to another (`serverware storage migrate`): every
//! chunk and directory segment first, each checked against its name on the way, then each point's
//! manifest, committed,
//! so a point appears in the new store only once all it names is there. What the new store holds
//! already is skipped: the copy can run while the controller goes on writing to the old store, and
//! again after it stopped, which then copies only what came since.

use super::ObjectStore;
use sha2::{Digest, Sha256};
use std::io;

/// What a copy did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub chunks: u64,
    pub chunks_there: u64,
    pub points: u64,
    pub points_there: u64,
    pub bytes: u64,
}

/// A stored chunk or segment (zstd of content whose SHA-256 is its name), checked before it is
/// copied.
fn check_chunk(key: &str, packed: &[u8]) -> io::Result<()> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let data = zstd::stream::decode_all(packed).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{key} is damaged: {e}"))
    })?;
    let hash: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if hash != name {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{key} is damaged: its content has another hash"),
        ));
    }
    Ok(())
}

/// Copies every chunk and restore point of `from` that `to` lacks; `progress` hears each step.
pub fn copy_all(
    from: &dyn ObjectStore,
    to: &dyn ObjectStore,
    mut progress: impl FnMut(&str, &Copied),
) -> io::Result<Copied> {
    let mut c = Copied::default();
    let mut chunks = from.list("chunks/")?;
    chunks.extend(from.list("segments/")?);
    for (i, key) in chunks.iter().enumerate() {
        if to.exists(key)? {
            c.chunks_there += 1;
        } else {
            let packed = from.get(key)?;
            check_chunk(key, &packed)?;
            to.put(key, &packed)?;
            c.chunks += 1;
            c.bytes += packed.len() as u64;
        }
        if (i + 1) % 500 == 0 {
            progress(
                &format!("chunks and segments: {} of {}", i + 1, chunks.len()),
                &c,
            );
        }
    }
    // Manifests last, each a commit: a point whole or not at all.
    for key in from.list("points/")? {
        if to.exists(&key)? {
            c.points_there += 1;
            continue;
        }
        let manifest = from.get(&key)?;
        to.commit(&key, &manifest)?;
        c.points += 1;
        c.bytes += manifest.len() as u64;
        progress(&format!("point {key}"), &c);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{chunks, DirStore};

    #[test]
    fn every_point_arrives_whole_once_and_a_damaged_chunk_stops_the_copy() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let from = DirStore::open(a.path()).unwrap();
        let to = DirStore::open(b.path()).unwrap();
        let id = chunks::id_of(b"hello");
        chunks::put(&from, &id, b"hello").unwrap();
        from.commit("points/7/00000000000000000001-1000.json.zst", b"m1")
            .unwrap();
        let first = copy_all(&from, &to, |_, _| {}).unwrap();
        assert_eq!((first.chunks, first.points), (1, 1));
        assert_eq!(chunks::get(&to, &id).unwrap(), b"hello");
        assert_eq!(
            to.get("points/7/00000000000000000001-1000.json.zst")
                .unwrap(),
            b"m1"
        );
        // Again: nothing to copy but what came since.
        from.commit("points/7/00000000000000000002-2000.json.zst", b"m2")
            .unwrap();
        let again = copy_all(&from, &to, |_, _| {}).unwrap();
        assert_eq!((again.chunks, again.points), (0, 1));
        assert_eq!((again.chunks_there, again.points_there), (1, 1));
        // A chunk whose content is not its name is never copied.
        let bad = chunks::key(&chunks::id_of(b"other"));
        from.put(&bad, &chunks::compress(b"not other").unwrap())
            .unwrap();
        let e = copy_all(&from, &to, |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        assert!(!to.exists(&bad).unwrap());
    }
}
