//! Reading a VPS's tree for netDUPLO, as host root, without ever leaving it: every directory is
//! opened relative to its parent's descriptor with `O_NOFOLLOW`, every entry is examined with
//! `fstatat(AT_SYMLINK_NOFOLLOW)`, and only what is still a plain file when opened is read. A VPS
//! that swaps a directory for a link while it is read gets its link recorded, never followed.
//! Owners are recorded as the VPS sees them, whatever its id mapping.

use serverware_shared::agent::ID_RANGE;
use serverware_shared::duplo::{
    ChangedPath, ChunkId, Entry, EntryKind, KnownFile, PathBytes, CHUNK_SIZE,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The id a VPS sees for a host id of its range (`base` 0: unmapped).
pub(crate) fn inner_id(id: u32, base: u32) -> u32 {
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

pub(crate) fn open_at(dir: &OwnedFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
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
pub(crate) fn read_names(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
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

/// Where a scan's file content goes: each chunk as it is read, named as in its entry.
pub type ChunkSink<'a> = dyn FnMut(&ChunkId, &[u8]) -> io::Result<()> + 'a;

fn open_root(root: &Path) -> io::Result<OwnedFd> {
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
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[derive(Clone)]
struct Linked {
    chunks: Vec<ChunkId>,
    size: u64,
    xattrs: Vec<serverware_shared::duplo::Xattr>,
    data: Option<Vec<(u64, u64)>>,
}

impl Linked {
    fn of(e: &Entry) -> Linked {
        Linked {
            chunks: e.chunks.clone(),
            size: e.size,
            xattrs: e.xattrs.clone(),
            data: e.data.clone(),
        }
    }

    fn fill(&self, e: &mut Entry) {
        e.chunks = self.chunks.clone();
        e.size = self.size;
        e.xattrs = self.xattrs.clone();
        e.data = self.data.clone();
    }
}

/// One scan's state: hard links seen (read once), and what was read.
struct Walk<'a> {
    base: u32,
    /// The previous point's files by path: unchanged ones are not read again.
    known: &'a HashMap<Vec<u8>, KnownFile>,
    /// A file with several names, read once: its chunks, size, attributes and data ranges.
    links: HashMap<(u64, u64), Linked>,
    chunk: &'a mut ChunkSink<'a>,
    out: Vec<Entry>,
    files_read: u64,
    bytes_read: u64,
}

impl Walk<'_> {
    /// Records the entry `name` of `dir` (at `path`); a directory's descriptor is returned so
    /// that the caller can go in.
    fn one(&mut self, dir: &OwnedFd, name: &[u8], path: Vec<u8>) -> io::Result<Option<OwnedFd>> {
        let cname = CString::new(name).map_err(|_| io::Error::other("a NUL in a name"))?;
        // Gone since the listing: nothing to record.
        let Ok(st) = stat_at(dir, &cname) else {
            return Ok(None);
        };
        let Some(k) = kind(st.st_mode) else {
            return Ok(None);
        };
        let mut e = entry(PathBytes(path), &st, k, self.base);
        let mut sub = None;
        match k {
            EntryKind::Dir => match open_at(dir, &cname, libc::O_RDONLY | libc::O_DIRECTORY) {
                Ok(fd) => {
                    e.xattrs = crate::xattr::read(fd.as_raw_fd(), self.base)?;
                    sub = Some(fd)
                }
                // Swapped for something else under our feet: its name is checked again by
                // the next cycle (the journal saw the swap).
                Err(_) => return Ok(None),
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
                    return Ok(None);
                }
                buf.truncate(n as usize);
                e.target = Some(PathBytes(buf));
            }
            EntryKind::File => {
                e.ino = st.st_ino;
                e.ctime_ns = st.st_ctime * 1_000_000_000 + st.st_ctime_nsec;
                let key = (st.st_dev, st.st_ino);
                if let Some(k) = self.known.get(&e.path.0) {
                    if k.unchanged(e.ino, st.st_size as u64, e.mtime_ns, e.ctime_ns) {
                        // (An attribute or a hole changed moves the change time too.)
                        e.chunks = k.chunks.clone();
                        e.size = k.size;
                        e.xattrs = k.xattrs.clone();
                        e.data = k.data.clone();
                        if st.st_nlink > 1 {
                            self.links.insert(key, Linked::of(&e));
                        }
                        self.out.push(e);
                        return Ok(None);
                    }
                }
                if st.st_nlink > 1 {
                    if let Some(l) = self.links.get(&key) {
                        l.fill(&mut e);
                        self.out.push(e);
                        return Ok(None);
                    }
                }
                // O_NONBLOCK: a FIFO swapped in since cannot hold the scan; fstat then
                // makes sure it is still a plain file before a byte is read.
                let Ok(fd) = open_at(dir, &cname, libc::O_RDONLY | libc::O_NONBLOCK) else {
                    return Ok(None);
                };
                let now = fstat(&fd)?;
                if now.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Ok(None);
                }
                e.xattrs = crate::xattr::read(fd.as_raw_fd(), self.base)?;
                e.data = crate::xattr::data_ranges(fd.as_raw_fd(), now.st_size as u64)?;
                let mut f = File::from(fd);
                let (chunks, size) = read_chunks(&mut f, self.chunk)?;
                self.files_read += 1;
                self.bytes_read += size;
                e.chunks = chunks;
                e.size = size;
                if e.data
                    .as_ref()
                    .is_some_and(|r| r.iter().any(|(o, l)| o + l > size))
                {
                    // It changed while read: holes past its end mean nothing.
                    e.data = None;
                }
                if st.st_nlink > 1 {
                    self.links.insert(key, Linked::of(&e));
                }
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => e.rdev = Some(st.st_rdev),
            EntryKind::Fifo | EntryKind::Socket => {}
        }
        self.out.push(e);
        Ok(sub)
    }

    /// Everything under the directory `top` (at `prefix`).
    fn tree(&mut self, top: OwnedFd, prefix: Vec<u8>) -> io::Result<()> {
        let mut stack = vec![(top, prefix)];
        while let Some((dir, prefix)) = stack.pop() {
            for name in read_names(&dir)? {
                let mut path = prefix.clone();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(&name);
                if let Some(sub) = self.one(&dir, &name, path.clone())? {
                    stack.push((sub, path));
                }
            }
        }
        Ok(())
    }
}

/// What a scan read: its entries (sorted by path) and how much content.
pub struct Scanned {
    pub entries: Vec<Entry>,
    pub files_read: u64,
    pub bytes_read: u64,
}

/// Reads the whole tree under `root` (the root itself is the entry with an empty path). Each
/// file's content goes to `chunk` piece by piece, as it is named in the entry.
#[cfg(test)]
pub fn scan(root: &Path, base: u32, chunk: &mut ChunkSink<'_>) -> io::Result<Scanned> {
    scan_paths(root, base, None, &HashMap::new(), chunk)
}

/// Reads only `paths` of the tree under `root` (an incremental cycle; None: all of it): each
/// one's entry if it still exists, with its parent's (whose time its change moved), and
/// everything under the deep ones. Each component is opened from its parent's descriptor, never
/// followed. A file `known` lists unchanged (same inode, size, time and change time) is not
/// read again.
pub fn scan_paths(
    root: &Path,
    base: u32,
    paths: Option<&[ChangedPath]>,
    known: &HashMap<Vec<u8>, KnownFile>,
    chunk: &mut ChunkSink<'_>,
) -> io::Result<Scanned> {
    let everything = [ChangedPath {
        path: PathBytes::default(),
        deep: true,
    }];
    let paths = paths.unwrap_or(&everything);
    let root_fd = open_root(root)?;
    let mut w = Walk {
        base,
        known,
        links: HashMap::new(),
        chunk,
        out: Vec::new(),
        files_read: 0,
        bytes_read: 0,
    };
    let mut seen = std::collections::HashSet::new();
    let mut wanted: Vec<(Vec<u8>, bool)> = Vec::new();
    for p in paths {
        if let Some(i) = p.path.0.iter().rposition(|b| *b == b'/') {
            wanted.push((p.path.0[..i].to_vec(), false));
        } else if !p.path.0.is_empty() {
            wanted.push((Vec::new(), false));
        }
        wanted.push((p.path.0.clone(), p.deep));
    }
    // Deep first, so that a shallow visit of a path a deep one covers is skipped.
    wanted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut deep_done: Vec<Vec<u8>> = Vec::new();
    for (path, deep) in wanted {
        let covered = deep_done.iter().any(|d| {
            d.is_empty() || path == *d || (path.starts_with(d) && path.get(d.len()) == Some(&b'/'))
        });
        if covered || !seen.insert(path.clone()) {
            continue;
        }
        if path.is_empty() {
            let st = fstat(&root_fd)?;
            let mut e = entry(PathBytes::default(), &st, EntryKind::Dir, base);
            e.xattrs = crate::xattr::read(root_fd.as_raw_fd(), base)?;
            w.out.push(e);
            if deep {
                let fd = open_root(root)?;
                w.tree(fd, Vec::new())?;
                deep_done.push(path);
            }
            continue;
        }
        // The parent, opened component by component from the root.
        let (parent, name) = match path.iter().rposition(|b| *b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], &path[..]),
        };
        let mut dir = open_root(root)?;
        let mut reached = true;
        for part in parent.split(|b| *b == b'/').filter(|p| !p.is_empty()) {
            let Ok(c) = CString::new(part) else {
                reached = false;
                break;
            };
            match open_at(&dir, &c, libc::O_RDONLY | libc::O_DIRECTORY) {
                Ok(sub) => dir = sub,
                Err(_) => {
                    reached = false;
                    break;
                }
            }
        }
        if !reached || name.is_empty() {
            continue; // gone: its removal is the cycle's to record
        }
        if let Some(sub) = w.one(&dir, name, path.clone())? {
            if deep {
                w.tree(sub, path.clone())?;
                deep_done.push(path);
            }
        }
    }
    let mut entries = w.out;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Scanned {
        entries,
        files_read: w.files_read,
        bytes_read: w.bytes_read,
    })
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
        ino: 0,
        ctime_ns: 0,
        xattrs: Vec::new(),
        data: None,
    }
}

/// A file's content as chunks of [`CHUNK_SIZE`], each handed to `chunk`; the ids and the size.
fn read_chunks(f: &mut File, chunk: &mut ChunkSink<'_>) -> io::Result<(Vec<ChunkId>, u64)> {
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
        .unwrap()
        .entries;
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
        let again = by(b"big-again");
        assert_eq!(
            (again.ino, &again.chunks, again.size),
            (big.ino, &big.chunks, big.size)
        );
        assert_ne!(big.ino, 0);
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
