//! The controller's private files: its data directory is readable by its owner only, and
//! secrets are written whole or not at all.

use anyhow::Context;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (0700) if needed. An existing directory others may read or write is made 0700 when it
/// is empty or is a controller's (it holds the key or the database); any other is refused,
/// since tightening a shared directory such as `/var/lib` would break its other users.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    // Others may pass through (0711: the pair's PostgreSQL reaches its own directory inside),
    // never list, read or write.
    if mode & 0o066 == 0 {
        return Ok(());
    }
    let ours = std::fs::read_dir(dir)?.next().is_none()
        || [
            crate::keys::KEY_FILE,
            "serverware.db",
            "storage",
            "chunks",
            "points",
        ]
        .iter()
        .any(|f| dir.join(f).exists());
    if !ours {
        anyhow::bail!(
            "the data directory {} is open to others (mode {mode:o}) and holds files that are not \
             the controller's: choose a directory of its own (it is made 0700)",
            dir.display()
        );
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (0700)", dir.display()))?;
    tracing::warn!(
        "{} was open to others (mode {mode:o}); it is 0700 now",
        dir.display()
    );
    Ok(())
}

/// Makes an existing file 0600 (for example the SQLite database and its journals).
pub fn private_file(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private (0600)", path.display()))?;
    }
    Ok(())
}

/// Writes a secret: to a 0600 file beside `path`, synced, then renamed over it. A crash at any
/// moment leaves either no file or the whole one, never a part.
pub fn write_secret(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let part = path.with_extension("part");
    let _ = std::fs::remove_file(&part);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&part)
        .with_context(|| format!("cannot create {}", part.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&part, path)
        .with_context(|| format!("cannot put {} in place", path.display()))?;
    if let Some(dir) = path.parent() {
        // The rename itself reaches the disk with its directory.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_close_and_secrets_are_whole_and_private() {
        let base = tempfile::tempdir().unwrap();
        let d = base.path().join("data");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&d).unwrap();
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let fresh = base.path().join("a/b");
        private_dir(&fresh).unwrap();
        assert_eq!(
            std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // A shared directory is not the controller's to close.
        let shared = base.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::write(shared.join("someone-else"), b"x").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(private_dir(&shared).is_err());
        assert_eq!(
            std::fs::metadata(&shared).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let f = d.join("secret");
        write_secret(&f, b"one").unwrap();
        write_secret(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!d.join("secret.part").exists());
    }
}
