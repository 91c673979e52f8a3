//! `rootfs-restore NAME [--ids BASE]`: a restore point becomes a VPS's root filesystem.
//!
//! The controller sends the point's entries; the agent answers with the chunks it needs: every
//! chunk of a file that the tree already there does not hold exactly (the same inode unchanged
//! since the point, or the same content read back: never size and time alone, which a VPS
//! sets as it likes). The controller sends those; the agent builds the new tree
//! beside the old one (`rootfs.restore`, root's and closed until it is whole), copying what it
//! could keep from the old tree and writing the rest, owners shifted into the VPS's range. Then
//! it swaps the two in one `renameat2(RENAME_EXCHANGE)` and removes the old one: a restore
//! killed at any instant leaves the old tree or the new one, never a mix.
//!
//! Every path is taken apart and opened component by component from a directory descriptor with
//! `O_NOFOLLOW`: the old tree is the VPS's (it may hold any link), and the entries are checked
//! (no `..`, no empty or `.` component) before a byte is written.

use crate::scan::open_at;
use serverware_shared::duplo::stream::{self, Frame};
use serverware_shared::duplo::{ChunkId, Entry, EntryKind, RestoreSummary};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The components of an entry's path; an error for one that could leave its tree.
fn components(e: &Entry) -> io::Result<Vec<&[u8]>> {
    if e.path.0.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&[u8]> = e.path.0.split(|b| *b == b'/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == b"." || *p == b".." || p.contains(&0))
    {
        return Err(bad(format!(
            "the entry '{}' is not a plain path",
            e.path.encode()
        )));
    }
    Ok(parts)
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: a valid C string; checked.
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directory holding `parts`' last component, opened from `root` one component at a time.
fn parent_of(root: &OwnedFd, parts: &[&[u8]]) -> io::Result<OwnedFd> {
    // SAFETY: dup of an open descriptor; checked.
    let mut dir = unsafe {
        OwnedFd::from_raw_fd(cvt(libc::fcntl(
            root.as_raw_fd(),
            libc::F_DUPFD_CLOEXEC,
            0,
        ))?)
    };
    for p in &parts[..parts.len().saturating_sub(1)] {
        let c = CString::new(*p).map_err(io::Error::other)?;
        dir = open_at(&dir, &c, libc::O_RDONLY | libc::O_DIRECTORY)?;
    }
    Ok(dir)
}

/// The directory holding `parts` (a path's components, at least one) under `root`, open, and
/// its last component's name.
fn dir_and_name(root: &OwnedFd, parts: &[&[u8]]) -> io::Result<(OwnedFd, CString)> {
    let dir = parent_of(root, parts)?;
    let name = CString::new(*parts.last().unwrap_or(&&b""[..])).map_err(io::Error::other)?;
    Ok((dir, name))
}

fn stat_at(dir: &OwnedFd, name: &CString) -> io::Result<libc::stat> {
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

/// The old tree's file at `e`'s path, open for reading at its start, if it holds exactly the
/// point's content. Size and time say nothing (a VPS sets a file's time as it likes): the file
/// is the point's own inode, unchanged since (its inode number and change time, which no VPS can
/// set, as the point recorded them), or its content is read and each chunk compared.
fn keepable(old: &OwnedFd, e: &Entry) -> Option<File> {
    let parts = components(e).ok()?;
    let dir = parent_of(old, &parts).ok()?;
    let name = CString::new(*parts.last()?).ok()?;
    let st = stat_at(&dir, &name).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size as u64 != e.size {
        return None;
    }
    let fd = open_at(&dir, &name, libc::O_RDONLY | libc::O_NONBLOCK).ok()?;
    let mut f = File::from(fd);
    let now = f.metadata().ok()?;
    if !now.file_type().is_file() || now.len() != e.size {
        return None;
    }
    use std::os::unix::fs::MetadataExt;
    let same_inode = e.ino != 0
        && now.ino() == e.ino
        && now.ctime() * 1_000_000_000 + now.ctime_nsec() == e.ctime_ns
        && now.mtime() * 1_000_000_000 + now.mtime_nsec() == e.mtime_ns;
    if !same_inode && !same_content(&mut f, e).ok()? {
        return None;
    }
    f.seek(SeekFrom::Start(0)).ok()?;
    Some(f)
}

/// Whether `f` holds exactly the chunks of `e`, read from where it stands.
fn same_content(f: &mut File, e: &Entry) -> io::Result<bool> {
    let mut buf = vec![0u8; serverware_shared::duplo::CHUNK_SIZE];
    for id in &e.chunks {
        let mut filled = 0;
        while filled < buf.len() {
            match f.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 || ChunkId(Sha256::digest(&buf[..filled]).into()) != *id {
            return Ok(false);
        }
    }
    // Nothing more than the point's chunks.
    Ok(f.read(&mut buf[..1])? == 0)
}

pub(crate) fn host_id(id: u32, base: u32) -> u32 {
    if base == 0 {
        id
    } else {
        base + id.min(serverware_shared::agent::ID_RANGE - 1)
    }
}

/// Restores onto `container` (the VPS's directory); `input` carries the controller's frames,
/// `output` the agent's.
pub fn restore(
    container: &Path,
    base: u32,
    seed: Option<&Seed>,
    input: &mut impl Read,
    output: &mut impl Write,
) -> io::Result<(RestoreSummary, Vec<Entry>)> {
    let entries = match stream::read(input)? {
        Frame::Entries(e) => e,
        _ => return Err(bad("a restore starts with the entries".into())),
    };
    for e in &entries {
        components(e)?;
    }
    if entries
        .first()
        .is_none_or(|e| !e.path.0.is_empty() || e.kind != EntryKind::Dir)
    {
        return Err(bad("a restore point starts with its root directory".into()));
    }
    // What is kept comes from the seed when there is one (linked: it is ours), else from the
    // VPS's own tree (copied: it is the VPS's).
    let old = match seed {
        Some(s) => open_dir(&s.tree).ok(),
        None => open_dir(&container.join("rootfs")).ok(),
    };
    let plan = Plan::make(&entries, seed, old.as_ref());
    stream::write_need(output, &plan.need)?;
    output.flush()?;

    // The new tree, beside the old: root's and closed while it is built.
    let staging = container.join("rootfs.restore");
    if std::fs::symlink_metadata(&staging).is_ok() {
        std::fs::remove_dir_all(&staging)?;
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    }
    let mut b = Build {
        entries: &entries,
        new: open_dir(&staging)?,
        base,
        linking: seed.is_some(),
        plan,
        written: HashMap::new(),
        summary: RestoreSummary::default(),
    };
    let mut dirs: Vec<usize> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let parts = components(entry)?;
        if parts.is_empty() {
            dirs.push(i);
            continue;
        }
        let (dir, name) = dir_and_name(&b.new, &parts)?;
        match b.make(i, &dir, &name, input)? {
            Made::Dir => dirs.push(i),
            Made::Entry => {
                set_meta(&dir, &name, entry, base)?;
                b.summary.entries += 1;
            }
            Made::Nothing => {}
        }
    }
    match stream::read(input)? {
        Frame::End => {}
        _ => return Err(bad("the restore stream did not end where it should".into())),
    }
    // Directories last, deepest first: their times stay, their modes never block a write.
    for i in dirs.iter().rev() {
        let e = &entries[*i];
        let parts = components(e)?;
        if parts.is_empty() {
            set_meta_fd(&b.new, e, base)?;
        } else {
            let (dir, name) = dir_and_name(&b.new, &parts)?;
            set_meta(&dir, &name, e, base)?;
        }
        b.summary.entries += 1;
    }
    // SAFETY: syncs the filesystem holding the new tree before it becomes the VPS's.
    unsafe { libc::syncfs(b.new.as_raw_fd()) };
    let summary = b.summary;
    drop(b.new);
    drop(old);
    drop(b.plan.keep);
    swap_in(container)?;
    Ok((summary, entries))
}

/// What the old tree holds as it is (open, by entry), which chunks must come, and each inode's
/// first name (its other names are hard links to it).
struct Plan {
    keep: HashMap<usize, File>,
    need: Vec<ChunkId>,
    first_of_ino: HashMap<u64, usize>,
}

impl Plan {
    fn make(entries: &[Entry], seed: Option<&Seed>, old: Option<&OwnedFd>) -> Plan {
        let mut plan = Plan {
            keep: HashMap::new(),
            need: Vec::new(),
            first_of_ino: HashMap::new(),
        };
        let mut needed: HashSet<ChunkId> = HashSet::new();
        for (i, e) in entries.iter().enumerate() {
            if e.kind != EntryKind::File {
                continue;
            }
            if e.ino != 0 {
                if plan.first_of_ino.contains_key(&e.ino) {
                    continue; // a hard link: made from its first name
                }
                plan.first_of_ino.insert(e.ino, i);
            }
            let kept = match seed {
                Some(s) => old.and_then(|o| s.keepable(o, e)),
                None => old.and_then(|o| keepable(o, e)),
            };
            if let Some(f) = kept {
                plan.keep.insert(i, f);
                continue;
            }
            for id in &e.chunks {
                if needed.insert(*id) {
                    plan.need.push(*id);
                }
            }
        }
        plan
    }
}

/// What making an entry left to do.
enum Made {
    /// A directory: its metadata is set last.
    Dir,
    /// Its metadata, and it counts as restored.
    Entry,
    /// Nothing (a hard link, whose metadata is its first name's; a skipped entry).
    Nothing,
}

/// The new tree as it is built beside the old one.
struct Build<'a> {
    entries: &'a [Entry],
    new: OwnedFd,
    base: u32,
    /// Kept files are linked (the old tree is a seed of our own), not copied.
    linking: bool,
    plan: Plan,
    /// Where each chunk already written lies (file entry, offset, length), for a second use.
    written: HashMap<ChunkId, (usize, u64, usize)>,
    summary: RestoreSummary,
}

impl Build<'_> {
    /// Makes entry `i` as `name` in `dir`.
    fn make(
        &mut self,
        i: usize,
        dir: &OwnedFd,
        name: &CString,
        input: &mut impl Read,
    ) -> io::Result<Made> {
        let e = &self.entries[i];
        match e.kind {
            EntryKind::Dir => {
                // SAFETY: valid descriptor and name.
                cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) })?;
                return Ok(Made::Dir);
            }
            EntryKind::File => return self.file(i, dir, name, input),
            EntryKind::Symlink => {
                let t = CString::new(e.target.as_ref().map(|t| t.0.clone()).unwrap_or_default())
                    .map_err(io::Error::other)?;
                // SAFETY: valid descriptor and strings.
                cvt(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })?;
            }
            EntryKind::Fifo => {
                // SAFETY: as above.
                cvt(unsafe {
                    libc::mknodat(dir.as_raw_fd(), name.as_ptr(), libc::S_IFIFO | 0o600, 0)
                })?;
            }
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Socket => {
                // A device in an unprivileged VPS's tree is one it could not have made: only a
                // privileged VPS gets its devices back. Sockets are made by their servers.
                let kind = match e.kind {
                    EntryKind::CharDevice => libc::S_IFCHR,
                    EntryKind::BlockDevice => libc::S_IFBLK,
                    _ => {
                        self.summary.skipped += 1;
                        return Ok(Made::Nothing);
                    }
                };
                if self.base != 0 {
                    self.summary.skipped += 1;
                    return Ok(Made::Nothing);
                }
                // SAFETY: as above.
                cvt(unsafe {
                    libc::mknodat(
                        dir.as_raw_fd(),
                        name.as_ptr(),
                        kind | 0o600,
                        e.rdev.unwrap_or(0) as libc::dev_t,
                    )
                })?;
            }
        }
        Ok(Made::Entry)
    }

    /// A file: a hard link to its first name, the seed's own file linked, or written (from
    /// the old tree's copy, chunks written already, or chunks that come).
    fn file(
        &mut self,
        i: usize,
        dir: &OwnedFd,
        name: &CString,
        input: &mut impl Read,
    ) -> io::Result<Made> {
        let e = &self.entries[i];
        if let Some(&first) = self
            .plan
            .first_of_ino
            .get(&e.ino)
            .filter(|f| e.ino != 0 && **f != i)
        {
            let fparts = components(&self.entries[first])?;
            let (fdir, fname) = dir_and_name(&self.new, &fparts)?;
            // SAFETY: valid descriptors and names; links are never followed.
            cvt(unsafe {
                libc::linkat(
                    fdir.as_raw_fd(),
                    fname.as_ptr(),
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    0,
                )
            })?;
            self.summary.links += 1;
            return Ok(Made::Nothing); // its metadata is its first name's
        }
        if self.linking && self.link_kept(i, dir, name) {
            return Ok(Made::Entry);
        }
        // SAFETY: valid descriptor and name; a fresh file (O_EXCL).
        let fd = cvt(unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )
        })?;
        // SAFETY: fresh.
        let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // Its whole length first: what is not written is a hole, and reads as zeros (a chunk
        // read back for its next use may lie in one).
        f.set_len(e.size)?;
        match self.plan.keep.remove(&i) {
            Some(src) => self.copy_kept(&f, e, src)?,
            None => self.write_chunks(&f, i, input)?,
        }
        f.sync_all()?;
        Ok(Made::Entry)
    }

    /// The seed's own file, the same content: linked, not copied. False when it cannot be.
    fn link_kept(&mut self, i: usize, dir: &OwnedFd, name: &CString) -> bool {
        let Some(src) = self.plan.keep.get(&i) else {
            return false;
        };
        let empty = CString::default();
        // SAFETY: valid descriptors and names; AT_EMPTY_PATH links the open file itself,
        // whatever its name became.
        let linked = unsafe {
            libc::linkat(
                src.as_raw_fd(),
                empty.as_ptr(),
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        } == 0;
        if linked {
            self.plan.keep.remove(&i);
            self.summary.files_kept += 1;
            self.summary.bytes_kept += self.entries[i].size;
        }
        linked
    }

    /// The old tree's copy, piece by piece, its holes left holes.
    fn copy_kept(&mut self, f: &File, e: &Entry, mut src: File) -> io::Result<()> {
        let mut buf = vec![0u8; serverware_shared::duplo::CHUNK_SIZE];
        let mut n = 0u64;
        loop {
            let got = src.read(&mut buf)?;
            if got == 0 {
                break;
            }
            crate::xattr::write_at(f, n, &buf[..got], e.data.as_deref())?;
            n += got as u64;
        }
        f.set_len(n)?;
        self.summary.files_kept += 1;
        self.summary.bytes_kept += n;
        Ok(())
    }

    /// Entry `i`'s chunks: read back where one was written already, else as they come.
    fn write_chunks(&mut self, f: &File, i: usize, input: &mut impl Read) -> io::Result<()> {
        let e = &self.entries[i];
        let mut off = 0u64;
        for id in &e.chunks {
            let data = match self.written.get(id) {
                Some(&(src_i, src_off, len)) => {
                    read_back(&self.new, &self.entries[src_i], src_off, len)?
                }
                None => {
                    let data = next_chunk(input, id)?;
                    self.summary.bytes_received += data.len() as u64;
                    data
                }
            };
            self.written.entry(*id).or_insert((i, off, data.len()));
            crate::xattr::write_at(f, off, &data, e.data.as_deref())?;
            off += data.len() as u64;
        }
        f.set_len(off)?;
        if off != e.size {
            return Err(bad(format!(
                "'{}' came with {off} bytes, not {}",
                e.path.encode(),
                e.size
            )));
        }
        self.summary.files_written += 1;
        self.summary.bytes_written += off;
        Ok(())
    }
}

/// A tree of our own to restore from: a standby copy (`standby.rs`), never run, so its files
/// can be linked into the new tree instead of copied. What each of its files holds is known from
/// the entries it was built from, so a file is kept only if its chunks are the same.
pub struct Seed {
    pub tree: std::path::PathBuf,
    /// Each file's path → its size and chunks.
    pub files: HashMap<Vec<u8>, (u64, Vec<ChunkId>)>,
}

impl Seed {
    pub fn new(tree: std::path::PathBuf, entries: &[Entry]) -> Seed {
        let files = entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| (e.path.0.clone(), (e.size, e.chunks.clone())))
            .collect();
        Seed { tree, files }
    }

    /// The seed's file at `e`'s path, open, if it holds `e`'s content.
    fn keepable(&self, old: &OwnedFd, e: &Entry) -> Option<File> {
        let (size, chunks) = self.files.get(&e.path.0)?;
        if *size != e.size || *chunks != e.chunks {
            return None;
        }
        let parts = components(e).ok()?;
        let dir = parent_of(old, &parts).ok()?;
        let name = CString::new(*parts.last()?).ok()?;
        let fd = open_at(&dir, &name, libc::O_RDONLY | libc::O_NONBLOCK).ok()?;
        let f = File::from(fd);
        let now = f.metadata().ok()?;
        (now.file_type().is_file() && now.len() == e.size).then_some(f)
    }
}

/// The new tree becomes the root filesystem in one step; the old one goes.
fn swap_in(container: &Path) -> io::Result<()> {
    let dir = open_dir(container)?;
    let (a, b) = (CString::new("rootfs.restore")?, CString::new("rootfs")?);
    // SAFETY: valid descriptor and names.
    let exchanged = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            dir.as_raw_fd(),
            a.as_ptr(),
            dir.as_raw_fd(),
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if exchanged == 0 {
        // The old tree is at rootfs.restore now.
        std::fs::remove_dir_all(container.join("rootfs.restore"))?;
    } else {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
        // No tree there before (a clone, or a VPS whose host lost it).
        // SAFETY: as above.
        cvt(unsafe { libc::renameat(dir.as_raw_fd(), a.as_ptr(), dir.as_raw_fd(), b.as_ptr()) })?;
    }
    // SAFETY: as above.
    unsafe { libc::fsync(dir.as_raw_fd()) };
    Ok(())
}

fn next_chunk(input: &mut impl Read, want: &ChunkId) -> io::Result<Vec<u8>> {
    match stream::read(input)? {
        Frame::Chunk(id, data) if id == *want => {
            if ChunkId(Sha256::digest(&data).into()) != id {
                return Err(bad(format!("chunk {id} arrived damaged")));
            }
            Ok(data)
        }
        Frame::Chunk(id, _) => Err(bad(format!("chunk {id} came where {want} was asked"))),
        _ => Err(bad(format!("the stream ended before chunk {want}"))),
    }
}

/// A chunk written before, read back from the new tree (verified again).
fn read_back(new: &OwnedFd, e: &Entry, off: u64, len: usize) -> io::Result<Vec<u8>> {
    let parts = components(e)?;
    let (dir, name) = dir_and_name(new, &parts)?;
    let mut f = File::from(open_at(&dir, &name, libc::O_RDONLY)?);
    f.seek(SeekFrom::Start(off))?;
    let mut data = vec![0u8; len];
    f.read_exact(&mut data)?;
    Ok(data)
}

/// Owner (shifted into the VPS's range), mode (after the owner: chown clears set-id bits) and
/// time of `name` in `dir`, never following a link.
fn set_meta(dir: &OwnedFd, name: &CString, e: &Entry, base: u32) -> io::Result<()> {
    if !e.xattrs.is_empty() && matches!(e.kind, EntryKind::File | EntryKind::Dir) {
        // After the owner (a change of owner drops file capabilities), before the times.
        let flags = libc::O_RDONLY
            | libc::O_NONBLOCK
            | if e.kind == EntryKind::Dir {
                libc::O_DIRECTORY
            } else {
                0
            };
        set_owner_mode(dir, name, e, base)?;
        let fd = open_at(dir, name, flags)?;
        crate::xattr::write(&fd, &e.xattrs, base)?;
        return set_times(dir, name, e);
    }
    set_owner_mode(dir, name, e, base)?;
    set_times(dir, name, e)
}

fn set_owner_mode(dir: &OwnedFd, name: &CString, e: &Entry, base: u32) -> io::Result<()> {
    let (uid, gid) = (host_id(e.uid, base), host_id(e.gid, base));
    // SAFETY: valid descriptor and name.
    cvt(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    if e.kind != EntryKind::Symlink {
        // SAFETY: as above (fchmodat cannot be told not to follow, but the name is not a link).
        cvt(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), e.mode & 0o7777, 0) })?;
    }
    Ok(())
}

fn set_times(dir: &OwnedFd, name: &CString, e: &Entry) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: e.mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: e.mtime_ns.rem_euclid(1_000_000_000),
    };
    let times = [t, t];
    // SAFETY: two valid timespecs.
    cvt(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

fn set_meta_fd(fd: &OwnedFd, e: &Entry, base: u32) -> io::Result<()> {
    // SAFETY: a valid descriptor of ours.
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), host_id(e.uid, base), host_id(e.gid, base)) })?;
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), e.mode & 0o7777) })?;
    crate::xattr::write(fd, &e.xattrs, base)?;
    let t = libc::timespec {
        tv_sec: e.mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: e.mtime_ns.rem_euclid(1_000_000_000),
    };
    let times = [t, t];
    // SAFETY: as above.
    cvt(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::scan;
    use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};

    /// Plays the controller: sends the entries, reads what is needed, sends it.
    fn run(
        container: &Path,
        entries: &[Entry],
        chunks: &HashMap<ChunkId, Vec<u8>>,
        base: u32,
    ) -> RestoreSummary {
        run_seeded(container, entries, chunks, base, None)
    }

    fn run_seeded(
        container: &Path,
        entries: &[Entry],
        chunks: &HashMap<ChunkId, Vec<u8>>,
        base: u32,
        seed: Option<Seed>,
    ) -> RestoreSummary {
        let (mut to_agent_r, mut to_agent_w) = std::io::pipe().unwrap();
        let (mut from_agent_r, mut from_agent_w) = std::io::pipe().unwrap();
        let c = container.to_path_buf();
        let agent = std::thread::spawn(move || {
            restore(&c, base, seed.as_ref(), &mut to_agent_r, &mut from_agent_w).map(|(s, _)| s)
        });
        stream::write_entries(&mut to_agent_w, entries).unwrap();
        let Frame::Need(need) = stream::read(&mut from_agent_r).unwrap() else {
            panic!("no need list")
        };
        // (A write the agent no longer reads: its own error says why.)
        for id in &need {
            if stream::write_chunk(&mut to_agent_w, id, &chunks[id]).is_err() {
                break;
            }
        }
        let _ = stream::write_end(&mut to_agent_w);
        drop(to_agent_w);
        agent.join().unwrap().unwrap()
    }

    fn listing(root: &Path) -> Vec<(String, u32, u32, u32, i64, [u8; 32])> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let md = std::fs::symlink_metadata(e.path()).unwrap();
                let content = if md.is_file() {
                    std::fs::read(e.path()).unwrap()
                } else if md.file_type().is_symlink() {
                    std::fs::read_link(e.path())
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec()
                } else {
                    Vec::new()
                };
                if md.is_dir() {
                    stack.push(e.path());
                }
                out.push((
                    e.path().strip_prefix(root).unwrap().display().to_string(),
                    md.mode(),
                    md.uid(),
                    md.gid(),
                    md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                    Sha256::digest(&content).into(),
                ));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn attributes_acls_capabilities_and_holes_come_back_in_the_new_range() {
        use std::io::{Seek, Write};
        let d = std::env::temp_dir().join(format!("sw-xattr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let src = d.join("src/rootfs");
        let base = 16 * serverware_shared::agent::ID_RANGE;
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::write(src.join("bin/ping"), b"\x7fELF").unwrap();
        let mut sparse = std::fs::File::create(src.join("sparse")).unwrap();
        sparse.seek(std::io::SeekFrom::Start(3 << 20)).unwrap();
        sparse.write_all(&[9u8; 8192]).unwrap();
        sparse.set_len(6 << 20).unwrap();
        drop(sparse);
        for p in ["", "bin", "bin/ping", "sparse"] {
            lchown(src.join(p), Some(base), Some(base)).unwrap();
        }
        let set = |p: &str, n: &str, v: &[u8]| {
            crate::xattr::lset(&src.join(p), n, v).unwrap();
        };
        set("bin/ping", "user.note", b"checked");
        set("bin", "user.dir", b"\x00\xff");
        // cap_net_raw, effective, for the VPS's root (revision 3 naming it).
        let mut cap = (0x0300_0000u32 | 1).to_le_bytes().to_vec();
        for w in [1u32 << 13, 0, 0, 0, base] {
            cap.extend_from_slice(&w.to_le_bytes());
        }
        set("bin/ping", "security.capability", &cap);
        // An ACL granting the VPS's user 1000 and group 33.
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (0x01u16, 7u16, u32::MAX),
            (0x02, 5, base + 1000),
            (0x04, 5, u32::MAX),
            (0x08, 4, base + 33),
            (0x10, 5, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            acl.extend_from_slice(&tag.to_le_bytes());
            acl.extend_from_slice(&perm.to_le_bytes());
            acl.extend_from_slice(&id.to_le_bytes());
        }
        set("sparse", "system.posix_acl_access", &acl);
        let mut chunks = HashMap::new();
        let entries = scan(&src, base, &mut |id, data| {
            chunks.insert(*id, data.to_vec());
            Ok(())
        })
        .unwrap()
        .entries;
        let ping = entries.iter().find(|e| e.path.0 == b"bin/ping").unwrap();
        assert_eq!(ping.xattrs.len(), 2, "{:?}", ping.xattrs);
        let sp = entries.iter().find(|e| e.path.0 == b"sparse").unwrap();
        assert_eq!(sp.data, Some(vec![(3 << 20, 8192)]));

        // Into another range (a copy): everything as the VPS saw it, ids in the new range.
        let other = 20 * serverware_shared::agent::ID_RANGE;
        let dst = d.join("dst");
        std::fs::create_dir_all(&dst).unwrap();
        run(&dst, &entries, &chunks, other);
        let get = |p: &str, n: &str| crate::xattr::lget(&dst.join("rootfs").join(p), n).unwrap();
        assert_eq!(
            get("bin/ping", "user.note").as_deref(),
            Some(&b"checked"[..])
        );
        assert_eq!(get("bin", "user.dir").as_deref(), Some(&b"\x00\xff"[..]));
        let c = get("bin/ping", "security.capability").expect("the capability");
        assert_eq!(c.len(), 24);
        assert_eq!(&c[4..8], &(1u32 << 13).to_le_bytes());
        assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), other);
        let a = get("sparse", "system.posix_acl_access").expect("the ACL");
        let id_at =
            |i: usize| u32::from_le_bytes(a[4 + 8 * i + 4..4 + 8 * i + 8].try_into().unwrap());
        assert_eq!((id_at(1), id_at(3)), (other + 1000, other + 33));
        let (sb, db) = (
            std::fs::metadata(src.join("sparse")).unwrap(),
            std::fs::metadata(dst.join("rootfs/sparse")).unwrap(),
        );
        assert_eq!(sb.len(), db.len());
        assert_eq!(sb.blocks(), db.blocks(), "holes stay holes");
        assert_eq!(
            std::fs::read(src.join("sparse")).unwrap(),
            std::fs::read(dst.join("rootfs/sparse")).unwrap()
        );
        // And back from the copy's own scan: the same entries as the VPS sees them.
        let again = scan(&dst.join("rootfs"), other, &mut |_, _| Ok(()))
            .unwrap()
            .entries;
        type Seen = (
            Vec<u8>,
            Vec<serverware_shared::duplo::Xattr>,
            Option<Vec<(u64, u64)>>,
        );
        let strip = |v: &[Entry]| -> Vec<Seen> {
            v.iter()
                .map(|e| (e.path.0.clone(), e.xattrs.clone(), e.data.clone()))
                .collect()
        };
        assert_eq!(strip(&entries), strip(&again));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_point_restores_whole_and_only_the_difference_travels() {
        let d = std::env::temp_dir().join(format!("sw-restore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let src = d.join("src/rootfs");
        let base = 16 * serverware_shared::agent::ID_RANGE;
        std::fs::create_dir_all(src.join("etc/deep")).unwrap();
        std::fs::write(src.join("etc/hostname"), b"web-1\n").unwrap();
        std::fs::write(src.join("etc/deep/big"), vec![3u8; 3 << 20]).unwrap();
        std::fs::hard_link(src.join("etc/deep/big"), src.join("big-again")).unwrap();
        std::fs::write(src.join("suid"), b"x").unwrap();
        lchown(src.join("suid"), Some(base + 1000), Some(base + 50)).unwrap();
        std::fs::set_permissions(src.join("suid"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        symlink("/etc/shadow", src.join("link")).unwrap();
        std::fs::set_permissions(src.join("etc/deep"), std::fs::Permissions::from_mode(0o555))
            .unwrap();
        // (Everything in the VPS's range: ids outside it read back as its nobody.)
        for p in [
            "",
            "etc",
            "etc/deep",
            "etc/hostname",
            "etc/deep/big",
            "link",
        ] {
            lchown(src.join(p), Some(base), Some(base)).unwrap();
        }
        let mut chunks = HashMap::new();
        let entries = scan(&src, base, &mut |id, data| {
            chunks.insert(*id, data.to_vec());
            Ok(())
        })
        .unwrap()
        .entries;

        // Onto a host with nothing there: everything travels.
        let dst = d.join("dst");
        std::fs::create_dir_all(&dst).unwrap();
        let s = run(&dst, &entries, &chunks, base);
        assert_eq!(listing(&src), listing(&dst.join("rootfs")));
        assert_eq!((s.files_kept, s.links), (0, 1), "{s:?}");
        assert!(s.bytes_received >= 1 << 20, "{s:?}");
        let a = std::fs::metadata(dst.join("rootfs/etc/deep/big")).unwrap();
        let b = std::fs::metadata(dst.join("rootfs/big-again")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard links stay links");

        // Again onto the copy now there, one file changed since: only it travels.
        std::fs::write(dst.join("rootfs/etc/hostname"), b"changed").unwrap();
        let s = run(&dst, &entries, &chunks, base);
        assert_eq!(listing(&src), listing(&dst.join("rootfs")));
        assert_eq!(s.bytes_received, 6, "{s:?}");
        assert!(s.files_kept >= 2, "{s:?}");
        assert!(!dst.join("rootfs.restore").exists());

        // Rewritten with the same size and its time set back (as `touch -d` does): the point's
        // content comes back all the same.
        let host = entries
            .iter()
            .find(|e| e.path.0 == b"etc/hostname")
            .unwrap();
        std::fs::write(dst.join("rootfs/etc/hostname"), b"web-9\n").unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(host.mtime_ns as u64);
        std::fs::File::options()
            .write(true)
            .open(dst.join("rootfs/etc/hostname"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        let s = run(&dst, &entries, &chunks, base);
        assert_eq!(
            std::fs::read(dst.join("rootfs/etc/hostname")).unwrap(),
            b"web-1\n"
        );
        assert_eq!(listing(&src), listing(&dst.join("rootfs")));
        assert_eq!(s.bytes_received, 6, "{s:?}");

        // A point naming a path out of its tree is refused before anything is written.
        let mut evil = entries.clone();
        evil[1].path = serverware_shared::duplo::PathBytes(b"../escape".to_vec());
        let (mut r, mut w) = std::io::pipe().unwrap();
        stream::write_entries(&mut w, &evil).unwrap();
        drop(w);
        assert!(restore(&dst, base, None, &mut r, &mut Vec::new()).is_err());
        assert!(!d.join("escape").exists());

        // From a seed (a standby copy): its files that hold the entries' chunks are linked, not
        // copied, and a file whose chunks differ travels even though size and time match.
        let standby = d.join("standby");
        std::fs::create_dir_all(&standby).unwrap();
        run(&standby, &entries, &chunks, base);
        let mut seed = Seed::new(standby.join("rootfs"), &entries);
        let hostname = entries
            .iter()
            .find(|e| e.path.0 == b"etc/hostname")
            .unwrap()
            .clone();
        let mut other = hostname.clone();
        other.chunks = vec![ChunkId([9; 32])];
        seed.files
            .insert(other.path.0.clone(), (other.size, other.chunks));
        let onto = d.join("onto");
        std::fs::create_dir_all(&onto).unwrap();
        let s = run_seeded(&onto, &entries, &chunks, base, Some(seed));
        assert_eq!(listing(&src), listing(&onto.join("rootfs")));
        assert_eq!(
            s.bytes_received, 6,
            "only the file the seed does not vouch for: {s:?}"
        );
        let a = std::fs::metadata(onto.join("rootfs/etc/deep/big")).unwrap();
        let b = std::fs::metadata(standby.join("rootfs/etc/deep/big")).unwrap();
        assert_eq!(a.ino(), b.ino(), "linked from the seed");
        let _ = std::fs::remove_dir_all(&d);
    }
}
