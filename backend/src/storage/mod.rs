//! netDUPLO's storage: content-addressed chunks shared by every VPS ([`chunks`]), and per
//! duplication cycle a manifest written last, as the cycle's commit ([`points`]). The bytes live
//! behind [`ObjectStore`]: a directory ([`DirStore`]) or an S3-compatible object store
//! ([`S3Store`], Garage), without touching the cycle logic.
//!
//! What storage promises: a manifest exists only once every chunk it names is durable, and it
//! appears whole or not at all. A cycle therefore lands whole or not at all, and is made durable
//! once, at its commit ([`ObjectStore::commit`]), not file by file.

pub mod chunks;
pub mod cycle;
mod dir;
pub mod migrate;
pub mod points;
mod s3;
pub mod tree;

pub use dir::DirStore;
pub use s3::S3Store;

use std::io;

/// Where storage keeps its bytes. Keys are relative paths of lowercase letters, digits, `.`,
/// `_`, `-` and `/`; a key's content never changes once written (chunks are named by their hash,
/// manifests by their cycle), so a put may skip a key that exists.
pub trait ObjectStore: Send + Sync {
    /// Stores `data` under `key`: readable at once, whole or not at all, durable only after the
    /// next [`ObjectStore::commit`].
    fn put(&self, key: &str, data: &[u8]) -> io::Result<()>;
    /// The bytes under `key`; `NotFound` if there are none.
    fn get(&self, key: &str) -> io::Result<Vec<u8>>;
    fn exists(&self, key: &str) -> io::Result<bool>;
    /// Marks `key` as used now (what chunk collection goes by); whether it exists.
    fn touch(&self, key: &str) -> io::Result<bool>;
    /// Its stored size and when it was last written or touched; None if it is not there.
    fn stat(&self, key: &str) -> io::Result<Option<(u64, std::time::SystemTime)>>;
    /// Removes `key`; no error if it is not there.
    fn delete(&self, key: &str) -> io::Result<()>;
    /// The keys under `prefix` (a directory-like prefix ending in `/`), sorted.
    fn list(&self, prefix: &str) -> io::Result<Vec<String>>;
    /// Makes every put so far durable, then stores `data` under `key` durably and atomically.
    fn commit(&self, key: &str, data: &[u8]) -> io::Result<()>;
    /// Where a store that is not a local directory keeps its bytes, as an operator names it
    /// (None: the storage directory, whose filesystem's size and free space are reported).
    fn remote(&self) -> Option<String> {
        None
    }
    /// Each node of a replicated store: whether it answers now and how far behind it is (none
    /// for a directory).
    fn nodes(&self) -> Vec<serverware_shared::api::StorageNodeInfo> {
        Vec::new()
    }
}

/// Refuses a key that could leave the store (`..`, a leading `/`) or is not plain.
pub(crate) fn check_key(key: &str) -> io::Result<()> {
    let plain = !key.is_empty()
        && !key.starts_with('/')
        && !key.ends_with('/')
        && key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{}' is not a storage key", key.escape_default()),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_stay_inside_the_store() {
        for good in [
            "chunks/ab/abcdef",
            "points/12/00000000000000000001-1700000000000.json.zst",
        ] {
            assert!(super::check_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "a/",
            "A",
            "a b",
            "a/./b",
        ] {
            assert!(super::check_key(bad).is_err(), "{bad}");
        }
    }
}
