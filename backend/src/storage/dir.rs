//! [`ObjectStore`] in a directory of the controller (on a real site a big disk or a mounted
//! storage server). A put writes a temporary file and renames it into place; a commit makes
//! every put since the last one durable (each file and its directory when they are few, else the
//! whole filesystem in one `syncfs`), then writes its key synced and renamed, and syncs the
//! directory that holds it.

use super::{check_key, ObjectStore};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub struct DirStore {
    root: PathBuf,
    /// Directories known to exist (chunks fan out into 256): not made again for every put.
    made: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    /// Files put since the last commit (None: too many to sync one by one).
    unsynced: std::sync::Mutex<Option<Vec<PathBuf>>>,
}

/// A commit syncs up to this many files put since the last one, each with its directory;
/// past it, the whole filesystem at once (`syncfs`).
const SYNC_ONE_BY_ONE: usize = 256;

/// Temporary files end so; listings never show them, and [`DirStore::open`] removes those a
/// crash left.
const PART: &str = ".part";

impl DirStore {
    /// Opens (creating) the store at `root`, 0700, and removes what an interrupted put left.
    pub fn open(root: &Path) -> io::Result<DirStore> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)?;
        let store = DirStore {
            root: root.to_path_buf(),
            made: Default::default(),
            // What an earlier run put may not be on the disk yet: the first commit syncs all.
            unsynced: std::sync::Mutex::new(None),
        };
        store.sweep_parts(root)?;
        Ok(store)
    }

    fn sweep_parts(&self, dir: &Path) -> io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() {
                self.sweep_parts(&e.path())?;
            } else if e.file_name().to_string_lossy().ends_with(PART) {
                std::fs::remove_file(e.path())?;
            }
        }
        Ok(())
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Makes `dir` unless this store made or saw it before.
    fn known_dir(&self, dir: &Path) -> io::Result<()> {
        let known = self
            .made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(dir);
        if !known {
            std::fs::create_dir_all(dir)?;
            self.made
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(dir.to_path_buf());
        }
        Ok(())
    }

    /// Writes `data` beside `path` and renames it into place; synced first when `durable`.
    fn write(&self, path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        self.known_dir(dir)?;
        let tmp = dir.join(format!(
            ".{}.{}.{}{PART}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id(),
            rand::random::<u32>()
        ));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            if durable {
                f.sync_all()?;
            }
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        if durable {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Writes `data` into a new file with no name in `dir` (`O_TMPFILE`) and links it as `path`:
/// one directory change instead of a temporary name's two, and nothing left by a crash. False
/// when the filesystem has no unnamed files or `path` exists (the caller replaces it then).
fn link_new(dir: &Path, path: &Path, data: &[u8]) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
    {
        Ok(f) => f,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    (&f).write_all(data)?;
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map_err(io::Error::other)?;
    let to = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: two valid C strings; linkat has no memory effects.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::AlreadyExists {
        Ok(false)
    } else {
        Err(e)
    }
}

impl ObjectStore for DirStore {
    fn put(&self, key: &str, data: &[u8]) -> io::Result<()> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root);
        self.known_dir(dir)?;
        if !link_new(dir, &path, data)? {
            self.write(&path, data, false)?;
        }
        let mut u = self.unsynced.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = u.as_mut() {
            if list.len() < SYNC_ONE_BY_ONE {
                list.push(path);
            } else {
                *u = None;
            }
        }
        Ok(())
    }

    fn get(&self, key: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.path(key)?)
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        Ok(self.path(key)?.is_file())
    }

    fn touch(&self, key: &str) -> io::Result<bool> {
        use std::os::unix::ffi::OsStrExt;
        let path = self.path(key)?;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // One call: both times to now (a missing key is ENOENT); never follows a link.
        // SAFETY: a valid C string; a null times pointer means "now".
        let r = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                std::ptr::null(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::NotFound {
            Ok(false)
        } else {
            Err(e)
        }
    }

    fn stat(&self, key: &str) -> io::Result<Option<(u64, std::time::SystemTime)>> {
        match std::fs::metadata(self.path(key)?) {
            Ok(m) => Ok(Some((m.len(), m.modified()?))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(key)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let base = prefix.trim_end_matches('/');
        check_key(base)?;
        let mut out = Vec::new();
        let mut stack = vec![self.root.join(base)];
        while let Some(dir) = stack.pop() {
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in rd {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type()?.is_dir() {
                    stack.push(e.path());
                } else if !name.ends_with(PART) {
                    if let Ok(rel) = e.path().strip_prefix(&self.root) {
                        out.push(rel.to_string_lossy().into_owned());
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn commit(&self, key: &str, data: &[u8]) -> io::Result<()> {
        let path = self.path(key)?;
        // Everything put so far reaches the disk: a few files each with its directory, or the
        // whole filesystem in one call (whatever else is waiting on it).
        let pending = self
            .unsynced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Vec::new());
        let synced = match &pending {
            Some(list) => (|| {
                let mut dirs = std::collections::BTreeSet::new();
                for p in list {
                    match std::fs::File::open(p) {
                        Ok(f) => f.sync_all()?,
                        // Collected since: nothing of it to keep.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                    if let Some(d) = p.parent() {
                        dirs.insert(d.to_path_buf());
                    }
                }
                for d in dirs {
                    std::fs::File::open(d)?.sync_all()?;
                }
                Ok(())
            })(),
            None => {
                let root = std::fs::File::open(&self.root)?;
                // SAFETY: syncfs takes an open descriptor and has no memory effects.
                if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            }
        };
        if let Err(e) = synced {
            // Not known durable: the next commit syncs the whole filesystem.
            *self.unsynced.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return Err(e);
        }
        crate::fault::point("duplo", "synced");
        self.write(&path, data, true)?;
        crate::fault::point("duplo", "committed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_are_whole_and_listed_without_leftovers() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore::open(&d.path().join("storage")).unwrap();
        s.put("chunks/ab/abc", b"one").unwrap();
        s.commit("points/1/00000000000000000001.json.zst", b"manifest")
            .unwrap();
        assert_eq!(s.get("chunks/ab/abc").unwrap(), b"one");
        assert!(s.exists("chunks/ab/abc").unwrap());
        assert!(!s.exists("chunks/ab/abd").unwrap());
        assert_eq!(
            s.get("chunks/zz/none").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // A put cut short by a crash leaves a part file: never listed, removed at the next open.
        std::fs::write(d.path().join("storage/chunks/ab/.abd.1.2.part"), b"hal").unwrap();
        assert_eq!(s.list("chunks/").unwrap(), ["chunks/ab/abc"]);
        drop(s);
        let s = DirStore::open(&d.path().join("storage")).unwrap();
        assert!(!d.path().join("storage/chunks/ab/.abd.1.2.part").exists());
        s.delete("chunks/ab/abc").unwrap();
        s.delete("chunks/ab/abc").unwrap();
        assert!(s.list("chunks/").unwrap().is_empty());
        assert!(s.list("nothing/").unwrap().is_empty());
        assert!(s.put("../outside", b"x").is_err());
    }
}
