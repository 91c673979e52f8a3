//! Reading a VPS's tree for netDUPLO, as host root, without ever leaving it: every directory is
//! opened relative to its parent's descriptor with `O_NOFOLLOW`, every entry is examined with
//! `fstatat(AT_SYMLINK_NOFOLLOW)`, and only what is still a plain file when opened is read. A VPS
//! that swaps a directory for a link while it is read gets its link recorded, never followed.
//! Owners are recorded as the VPS sees them, whatever its id mapping.

use serverware_shared::agent::ID_RANGE;
use serverware_shared::duplo::{ChunkId, Entry, EntryKind, PathBytes, CHUNK_SIZE};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The id a VPS sees for a host id of its range (`base` 0: unmapped).
fn inner_id(id: u32, base: u32) -> u32 {
    if base == 0 {
        return id;
    }
    match id.checked_sub(base) {
        Some(i) if i < ID_RANGE => i,
        _ => 65534,
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn open_at(dir: &OwnedFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a valid descriptor and C string; the result is checked.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn stat_at(dir: &OwnedFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: st is written by the call before it is read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

fn fstat(fd: &impl AsRawFd) -> io::Result<libc::stat> {
    // SAFETY: as above.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// The names in a directory (not `.` and `..`), sorted, read through its descriptor (not
/// through /proc, which may show another PID namespace than the agent's).
fn read_names(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    // fdopendir takes the descriptor it is given: it gets a duplicate.
    // SAFETY: dup of an open descriptor; checked.
    let fd = cvt(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: fd is open and ours.
    let d = unsafe { libc::fdopendir(fd) };
    if d.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fd is still ours when fdopendir failed.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    // The duplicate shares its offset with `dir`: start from the beginning.
    // SAFETY: d is a valid stream.
    unsafe { libc::rewinddir(d) };
    let mut names = Vec::new();
    loop {
        // SAFETY: d is valid; the entry is read before the next call.
        let e = unsafe { libc::readdir(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: d_name is a NUL-terminated array inside the entry.
        let name = unsafe { CStr::from_ptr((*e).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    // SAFETY: closes the stream and the duplicate.
    unsafe { libc::closedir(d) };
    names.sort();
    Ok(names)
}

fn kind(mode: u32) -> Option<EntryKind> {
    Some(match mode & libc::S_IFMT {
        libc::S_IFDIR => EntryKind::Dir,
        libc::S_IFREG => EntryKind::File,
        libc::S_IFLNK => EntryKind::Symlink,
        libc::S_IFIFO => EntryKind::Fifo,
        libc::S_IFSOCK => EntryKind::Socket,
        libc::S_IFCHR => EntryKind::CharDevice,
        libc::S_IFBLK => EntryKind::BlockDevice,
        _ => return None,
    })
}

/// Reads the whole tree under `root` (the root itself is the entry with an empty path). Each
/// file's content goes to `chunk` piece by piece, as it is named in the entry.
pub fn scan(
    root: &Path,
    base: u32,
    chunk: &mut dyn FnMut(&ChunkId, &[u8]) -> io::Result<()>,
) -> io::Result<Vec<Entry>> {
    let c = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a NUL in the root's path"))?;
    // SAFETY: a valid C string; the result is checked.
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh.
    let root_fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = fstat(&root_fd)?;
    let mut out = vec![entry(PathBytes::default(), &st, EntryKind::Dir, base)];
    let mut links: HashMap<(u64, u64), PathBytes> = HashMap::new();
    let mut stack = vec![(root_fd, Vec::<u8>::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let names = read_names(&dir)?;
        for name in names {
            let cname =
                CString::new(name.clone()).map_err(|_| io::Error::other("a NUL in a name"))?;
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            // Gone since the listing: nothing to record.
            let Ok(st) = stat_at(&dir, &cname) else {
                continue;
            };
            let Some(k) = kind(st.st_mode) else { continue };
            let mut e = entry(PathBytes(path.clone()), &st, k, base);
            match k {
                EntryKind::Dir => match open_at(&dir, &cname, libc::O_RDONLY | libc::O_DIRECTORY) {
                    Ok(sub) => stack.push((sub, path)),
                    // Swapped for something else under our feet: recorded as it was seen.
                    Err(_) => continue,
                },
                EntryKind::Symlink => {
                    let mut buf = vec![0u8; 4096];
                    // SAFETY: buf is valid for its length.
                    let n = unsafe {
                        libc::readlinkat(
                            dir.as_raw_fd(),
                            cname.as_ptr(),
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                        )
                    };
                    if n < 0 {
                        continue;
                    }
                    buf.truncate(n as usize);
                    e.target = Some(PathBytes(buf));
                }
                EntryKind::File => {
                    if st.st_nlink > 1 {
                        let key = (st.st_dev, st.st_ino);
                        if let Some(first) = links.get(&key) {
                            e.link_of = Some(first.clone());
                            e.size = 0;
                            out.push(e);
                            continue;
                        }
                        links.insert(key, PathBytes(path.clone()));
                    }
                    // O_NONBLOCK: a FIFO swapped in since cannot hold the scan; fstat then
                    // makes sure it is still a plain file before a byte is read.
                    let Ok(fd) = open_at(&dir, &cname, libc::O_RDONLY | libc::O_NONBLOCK) else {
                        continue;
                    };
                    let now = fstat(&fd)?;
                    if now.st_mode & libc::S_IFMT != libc::S_IFREG {
                        continue;
                    }
                    let mut f = File::from(fd);
                    let (chunks, size) = read_chunks(&mut f, chunk)?;
                    e.chunks = chunks;
                    e.size = size;
                }
                EntryKind::CharDevice | EntryKind::BlockDevice => e.rdev = Some(st.st_rdev),
                EntryKind::Fifo | EntryKind::Socket => {}
            }
            out.push(e);
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn entry(path: PathBytes, st: &libc::stat, kind: EntryKind, base: u32) -> Entry {
    Entry {
        path,
        kind,
        mode: st.st_mode & 0o7777,
        uid: inner_id(st.st_uid, base),
        gid: inner_id(st.st_gid, base),
        mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
        size: 0,
        chunks: Vec::new(),
        target: None,
        rdev: None,
        link_of: None,
    }
}

/// A file's content as chunks of [`CHUNK_SIZE`], each handed to `chunk`; the ids and the size.
fn read_chunks(
    f: &mut File,
    chunk: &mut dyn FnMut(&ChunkId, &[u8]) -> io::Result<()>,
) -> io::Result<(Vec<ChunkId>, u64)> {
    let mut ids = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match f.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        let id = ChunkId(Sha256::digest(&buf[..filled]).into());
        chunk(&id, &buf[..filled])?;
        ids.push(id);
        size += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    Ok((ids, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{lchown, symlink, PermissionsExt};

    #[test]
    fn a_tree_is_read_as_its_vps_sees_it_and_links_are_never_followed() {
        let d = std::env::temp_dir().join(format!("sw-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let root = d.join("rootfs");
        let outside = d.join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"host secret").unwrap();
        let base = 16 * ID_RANGE;
        std::fs::write(root.join("etc/hostname"), b"web-1\n").unwrap();
        lchown(
            root.join("etc/hostname"),
            Some(base + 1000),
            Some(base + 33),
        )
        .unwrap();
        std::fs::write(root.join("big"), vec![7u8; CHUNK_SIZE + 10]).unwrap();
        std::fs::set_permissions(root.join("big"), std::fs::Permissions::from_mode(0o4750))
            .unwrap();
        std::fs::hard_link(root.join("big"), root.join("big-again")).unwrap();
        symlink(&outside, root.join("escape")).unwrap();
        std::fs::write(root.join(std::ffi::OsStr::from_bytes(b"caf\xff")), b"").unwrap();
        // SAFETY: a valid C string.
        let fifo = CString::new(root.join("pipe").as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

        let mut seen = Vec::new();
        let entries = scan(&root, base, &mut |id, data| {
            seen.push((*id, data.len()));
            Ok(())
        })
        .unwrap();
        let by = |p: &[u8]| {
            entries
                .iter()
                .find(|e| e.path.0 == p)
                .unwrap_or_else(|| panic!("{p:?} missing: {entries:?}"))
        };
        assert_eq!(by(b"").kind, EntryKind::Dir);
        let h = by(b"etc/hostname");
        assert_eq!((h.uid, h.gid, h.size, h.chunks.len()), (1000, 33, 6, 1));
        let big = by(b"big");
        assert_eq!(
            (big.mode, big.size, big.chunks.len()),
            (0o4750, CHUNK_SIZE as u64 + 10, 2)
        );
        assert_eq!(by(b"big-again").link_of, Some(PathBytes(b"big".to_vec())));
        let esc = by(b"escape");
        assert_eq!(esc.kind, EntryKind::Symlink);
        assert_eq!(
            esc.target.as_ref().unwrap().0,
            outside.as_os_str().as_bytes()
        );
        assert!(
            !entries.iter().any(|e| e.path.0.ends_with(b"secret")),
            "followed a link out"
        );
        assert_eq!(by(b"pipe").kind, EntryKind::Fifo);
        assert_eq!(by(b"caf\xff").size, 0);
        // Root's own files (unmapped ids) are the VPS's nobody.
        assert_eq!(by(b"etc").uid, 65534);
        // Sorted, and only file content was read: hostname once, big twice (its hard link never).
        assert!(entries.windows(2).all(|w| w[0].path < w[1].path));
        assert_eq!(seen.len(), 3);
        let _ = std::fs::remove_dir_all(&d);
    }
}
