//! Files inside a VPS's root filesystem, reached as host root without ever leaving it.
//!
//! Root in a VPS owns everything under its root filesystem and may turn any path there into a
//! link, for example `/etc/hostname` → `/root/.ssh/authorized_keys`. Every path below is therefore
//! resolved with `openat2(RESOLVE_IN_ROOT)`: links, `..` and absolute targets all stay inside the
//! VPS's root, as if the agent were chrooted there, and no mount point is crossed. The last
//! component of a write is never followed at all: the new content is written beside it and
//! renamed over it, and an entry that is not a plain file is left alone.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A VPS's root filesystem, opened once; paths are resolved inside it.
pub struct Root(OwnedFd);

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a path"))
}

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Splits `etc/hostname` into (`etc`, `hostname`); the name must be a plain file name.
fn split(rel: &str) -> io::Result<(&str, &str)> {
    let rel = rel.trim_start_matches('/');
    let (parent, name) = rel.rsplit_once('/').unwrap_or((".", rel));
    if name.is_empty() || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{rel}' does not name a file"),
        ));
    }
    Ok((if parent.is_empty() { "." } else { parent }, name))
}

impl Root {
    /// Opens `path` (a directory the host made, such as `/var/lib/lxc/NAME/rootfs`), not
    /// following a link in its last component.
    pub fn open(path: &Path) -> io::Result<Root> {
        let p = cstr(path.as_os_str().as_bytes())?;
        // SAFETY: p is a valid C string; the result is checked.
        let fd = unsafe {
            libc::open(
                p.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        cvt(fd as libc::c_long)?;
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        Ok(Root(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// `openat2` of `rel` resolved inside this root.
    fn resolve(&self, rel: &str, flags: i32, mode: u32) -> io::Result<OwnedFd> {
        let p = cstr(rel.as_bytes())?;
        // SAFETY: open_how is plain data; all-zero is its "nothing asked" value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.mode = u64::from(mode);
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
        // SAFETY: every pointer is valid for the call; the size is that of the struct passed.
        let fd = cvt(unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.0.as_raw_fd(),
                p.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        })?;
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// The directory holding `rel`, and `rel`'s last component.
    fn parent<'a>(&self, rel: &'a str) -> io::Result<(OwnedFd, &'a str)> {
        let (parent, name) = split(rel)?;
        let dir = self.resolve(parent, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        Ok((dir, name))
    }

    /// The target of the link `rel` (its directory resolved inside this root), or None if it is
    /// not a link.
    pub fn read_link(&self, rel: &str) -> io::Result<Option<String>> {
        let (dir, name) = self.parent(rel)?;
        let n = cstr(name.as_bytes())?;
        let mut buf = vec![0u8; 4096];
        // SAFETY: buf is valid for its length; dir is an open descriptor.
        let len = unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                n.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if len < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(None),
                _ => Err(e),
            };
        }
        buf.truncate(len as usize);
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }

    /// Whether the plain file `name` in `dir` holds exactly `data` (opened without following).
    fn holds(&self, dir: &OwnedFd, name: &CString, data: &[u8]) -> bool {
        use std::io::Read;
        // SAFETY: valid descriptor and name; O_NOFOLLOW|O_NONBLOCK opens no link or FIFO.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return false;
        }
        // SAFETY: fresh.
        let mut f = unsafe { File::from_raw_fd(fd) };
        let mut have = Vec::with_capacity(data.len() + 1);
        Read::by_ref(&mut f)
            .take(data.len() as u64 + 1)
            .read_to_end(&mut have)
            .is_ok()
            && have == data
    }

    /// Replaces the plain file `rel` with `data`, keeping its owner and mode; creates it (owned
    /// like its directory, mode 0644) if missing. Returns false, writing nothing, when `rel` is a
    /// link, a device or anything else that is not a plain file: that entry is the VPS's business.
    pub fn replace_file(&self, rel: &str, data: &[u8]) -> io::Result<bool> {
        let (dir, name) = self.parent(rel)?;
        let n = cstr(name.as_bytes())?;
        let stat_at = |name: &CString, flags: i32| -> io::Result<Option<libc::stat>> {
            // SAFETY: st is written by the call before it is read; pointers are valid.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            let r = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, flags) };
            if r == 0 {
                Ok(Some(st))
            } else {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOENT) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        };
        let (uid, gid, mode) = match stat_at(&n, libc::AT_SYMLINK_NOFOLLOW)? {
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {
                // Already so: left untouched (its time too).
                if st.st_size as usize == data.len() && self.holds(&dir, &n, data) {
                    return Ok(true);
                }
                (st.st_uid, st.st_gid, st.st_mode & 0o7777)
            }
            Some(_) => return Ok(false),
            None => {
                let here = cstr(b".")?;
                let st = stat_at(&here, 0)?.ok_or_else(|| io::Error::other("no directory"))?;
                (st.st_uid, st.st_gid, 0o644)
            }
        };
        let tmp = cstr(format!(".{name}.serverware-{}", std::process::id()).as_bytes())?;
        // SAFETY: pointers are valid; O_EXCL|O_NOFOLLOW never opens an existing entry.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        cvt(fd as libc::c_long)?;
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let mut f = unsafe { File::from_raw_fd(fd) };
        let written = (|| {
            f.write_all(data)?;
            // SAFETY: f is open; ownership first, since chown clears set-id bits.
            cvt(unsafe { libc::fchown(f.as_raw_fd(), uid, gid) } as libc::c_long)?;
            cvt(unsafe { libc::fchmod(f.as_raw_fd(), mode) } as libc::c_long)?;
            f.sync_all()?;
            // SAFETY: both names are relative to the same open directory.
            cvt(unsafe {
                libc::renameat(dir.as_raw_fd(), tmp.as_ptr(), dir.as_raw_fd(), n.as_ptr())
            } as libc::c_long)?;
            Ok(())
        })();
        if written.is_err() {
            // SAFETY: removes only the name this call created.
            unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
        }
        written.map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_stay_inside_the_root() {
        let outside = tempdir("outside");
        let marker = outside.join("secret");
        std::fs::write(&marker, "host file\n").unwrap();
        let root_dir = tempdir("root");
        std::fs::create_dir_all(root_dir.join("etc")).unwrap();
        std::fs::create_dir_all(root_dir.join("sbin")).unwrap();
        symlink(&marker, root_dir.join("etc/hostname")).unwrap();
        let root = Root::open(&root_dir).unwrap();
        // The link itself is left alone and the host file untouched.
        assert!(!root.replace_file("etc/hostname", b"evil\n").unwrap());
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "host file\n");
        // A directory link pointing out of the root resolves inside it.
        std::fs::remove_file(root_dir.join("etc/hostname")).unwrap();
        std::fs::remove_dir(root_dir.join("etc")).unwrap();
        symlink(&outside, root_dir.join("etc")).unwrap();
        let r = root.replace_file("etc/secret", b"evil\n");
        assert!(r.is_err(), "{r:?}");
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "host file\n");
        // A plain file is replaced, keeping its mode.
        std::fs::remove_file(root_dir.join("etc")).unwrap();
        std::fs::create_dir(root_dir.join("etc")).unwrap();
        std::fs::write(root_dir.join("etc/hostname"), "old\n").unwrap();
        assert!(root.replace_file("etc/hostname", b"web-1\n").unwrap());
        assert_eq!(
            std::fs::read_to_string(root_dir.join("etc/hostname")).unwrap(),
            "web-1\n"
        );
        // Reading a link: absolute targets are not followed, only read.
        symlink("/bin/busybox", root_dir.join("sbin/init")).unwrap();
        assert_eq!(
            root.read_link("sbin/init").unwrap().as_deref(),
            Some("/bin/busybox")
        );
        assert_eq!(root.read_link("etc/hostname").unwrap(), None);
        let _ = std::fs::remove_dir_all(&outside);
        let _ = std::fs::remove_dir_all(&root_dir);
    }

    fn tempdir(what: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sw-rootfs-{what}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
