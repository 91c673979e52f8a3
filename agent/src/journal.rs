//! netDUPLO's change journal: per VPS, the paths of its tree changed since its last acknowledged
//! cycle, from inotify. One thread owns one inotify instance for every VPS of the host.
//!
//! Safe by construction: a VPS controls every name under its root, so watches are never added by
//! path. The thread has a working directory of its own (`unshare(CLONE_FS)`); it walks the tree
//! with `openat(O_NOFOLLOW | O_DIRECTORY)` from the root's descriptor, `fchdir`s into each
//! directory it opened and watches `.`: exactly the directory it holds, whatever the VPS renames
//! meanwhile. (The `notify` crate adds watches by path and may follow links, so it is not used.)
//!
//! Never a silent gap: whenever the journal may have missed something (the queue overflowed, the
//! watch limit was reached, the agent started, a cut was handed out but never acknowledged as a
//! full one) the next cut says `Full` with the reason, and the cycle compares the whole tree.

use crate::scan::{open_at, read_names};
use serverware_shared::duplo::{ChangedPath, Changes, PathBytes, MAX_CHANGED_PATHS};
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW
    | libc::IN_EXCL_UNLINK;

enum Cmd {
    Cut {
        name: String,
        root: PathBuf,
        reply: mpsc::Sender<(u64, Changes)>,
    },
    Ack {
        name: String,
        cut: u64,
    },
    Forget {
        name: String,
    },
}

/// The handle the agent's request loop holds.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Cmd>,
    wake: std::sync::Arc<OwnedFd>,
}

impl Journal {
    /// Starts the journal's thread.
    pub fn start() -> io::Result<Journal> {
        // SAFETY: plain syscalls; results checked.
        let ifd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if ifd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptors owned by nobody else.
        let ifd = unsafe { OwnedFd::from_raw_fd(ifd) };
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        let wake = std::sync::Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
        let (tx, rx) = mpsc::channel();
        let w = wake.clone();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                // The working directory below is this thread's own.
                // SAFETY: affects only this thread's fs attributes.
                if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                    eprintln!(
                        "serverware-agent: no journal: {}",
                        io::Error::last_os_error()
                    );
                    return;
                }
                Watcher {
                    ifd,
                    wds: HashMap::new(),
                    vpses: HashMap::new(),
                }
                .run(rx, &w)
            })?;
        Ok(Journal { tx, wake })
    }

    fn send(&self, cmd: Cmd) -> Result<(), String> {
        self.tx
            .send(cmd)
            .map_err(|_| "the change journal stopped".to_string())?;
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        Ok(())
    }

    /// What changed in `name`'s tree (at `root`) since its last acknowledged cut.
    pub fn cut(&self, name: &str, root: &Path) -> Result<(u64, Changes), String> {
        let (reply, rx) = mpsc::channel();
        self.send(Cmd::Cut {
            name: name.into(),
            root: root.into(),
            reply,
        })?;
        rx.recv()
            .map_err(|_| "the change journal stopped".to_string())
    }

    pub fn ack(&self, name: &str, cut: u64) -> Result<(), String> {
        self.send(Cmd::Ack {
            name: name.into(),
            cut,
        })
    }

    pub fn forget(&self, name: &str) -> Result<(), String> {
        self.send(Cmd::Forget { name: name.into() })
    }
}

#[derive(Default)]
struct Vps {
    root: PathBuf,
    /// Since the last cut.
    changed: BTreeMap<Vec<u8>, bool>,
    /// Handed out by cuts not acknowledged yet.
    pending: BTreeMap<Vec<u8>, bool>,
    /// A full compare was handed out and not acknowledged: cuts stay full until it is.
    pending_full: Option<String>,
    /// The journal missed something since the last cut.
    lost: Option<String>,
    /// The watches do not cover the tree (a limit was reached): every cut is full.
    broken: Option<String>,
    cut: u64,
    /// Names of files made (or moved in) since the last cut, and whether something was written
    /// through them. A new name may be a second name of an older file (a hard link): a change
    /// through it is a change of that file under every name, which the journal (watching
    /// directories) never sees under the others.
    created: HashMap<Vec<u8>, bool>,
    /// A written new name vanished before the cut could look at it: which file it named is
    /// unknown.
    vanished: Option<Vec<u8>>,
    /// The host's clock at the last cut (ns since the epoch).
    last_cut_ns: i64,
}

struct Watcher {
    ifd: OwnedFd,
    /// Watch → (VPS, the directory's path inside it).
    wds: HashMap<i32, (String, Vec<u8>)>,
    vpses: HashMap<String, Vps>,
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn under(path: &[u8], top: &[u8]) -> bool {
    top.is_empty() || path == top || (path.starts_with(top) && path.get(top.len()) == Some(&b'/'))
}

fn mark(map: &mut BTreeMap<Vec<u8>, bool>, path: Vec<u8>, deep: bool) {
    let d = map.entry(path).or_insert(false);
    *d |= deep;
}

impl Watcher {
    fn run(mut self, rx: mpsc::Receiver<Cmd>, wake: &OwnedFd) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.ifd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
            self.drain(&mut buf);
            let mut n = 0u64;
            // SAFETY: reads 8 bytes into a valid u64 (nonblocking).
            unsafe { libc::read(wake.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
            loop {
                match rx.try_recv() {
                    Ok(cmd) => self.command(cmd, &mut buf),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
        }
    }

    fn command(&mut self, cmd: Cmd, buf: &mut [u8]) {
        match cmd {
            Cmd::Cut { name, root, reply } => {
                // Whatever the kernel has queued belongs to this cut.
                self.drain(buf);
                let answer = self.cut(&name, root);
                let _ = reply.send(answer);
            }
            Cmd::Ack { name, cut } => {
                if let Some(v) = self.vpses.get_mut(&name) {
                    if v.cut == cut {
                        v.pending.clear();
                        v.pending_full = None;
                    }
                }
            }
            Cmd::Forget { name } => self.unwatch(&name, b"", true),
        }
    }

    fn cut(&mut self, name: &str, root: PathBuf) -> (u64, Changes) {
        let fresh = match self.vpses.get(name) {
            None => Some("the journal starts (the agent started, or it was reset)".to_string()),
            Some(v) if v.root != root => Some("the VPS's tree moved".to_string()),
            Some(v) => v.broken.clone(),
        };
        if let Some(reason) = fresh {
            self.unwatch(name, b"", true);
            let cut = self.vpses.get(name).map_or(0, |v| v.cut) + 1;
            self.vpses.insert(
                name.into(),
                Vps {
                    root,
                    cut,
                    last_cut_ns: now_ns(),
                    ..Default::default()
                },
            );
            // The watches go in before the full compare starts: nothing changed after it
            // is missed.
            let broken = self.watch_tree(name, b"").err();
            let v = self.vpses.get_mut(name).expect("just put");
            v.broken = broken.clone();
            let reason = broken.unwrap_or(reason);
            v.pending_full = Some(reason.clone());
            return (v.cut, Changes::Full { reason });
        }
        let v = self.vpses.get_mut(name).expect("checked");
        v.cut += 1;
        if let Some(reason) = v.lost.take() {
            v.created.clear();
            v.vanished = None;
            v.last_cut_ns = now_ns();
            v.changed.clear();
            v.pending.clear();
            v.pending_full = Some(reason.clone());
            return (v.cut, Changes::Full { reason });
        }
        if let Some(reason) = &v.pending_full {
            v.changed.clear();
            v.created.clear();
            v.vanished = None;
            v.last_cut_ns = now_ns();
            return (
                v.cut,
                Changes::Full {
                    reason: format!("{reason} (that full compare has not landed yet)"),
                },
            );
        }
        // Files changed through a name that is a second name of theirs: found by their change
        // time, which the kernel sets on every write, chmod and link and no VPS can set.
        let since = v.last_cut_ns;
        v.last_cut_ns = now_ns();
        let created = std::mem::take(&mut v.created);
        let vanished = v.vanished.take();
        let root = v.root.clone();
        let linked = match vanished {
            Some(p) => Some(p),
            None => created
                .into_iter()
                .find(|(p, written)| match stat_path(&root, p) {
                    Some(st) => st.st_nlink > 1 && st.st_mode & libc::S_IFMT != libc::S_IFDIR,
                    None => *written,
                })
                .map(|(p, _)| p),
        };
        if linked.is_some() {
            // One second of slack: the kernel stamps change times from a coarse clock.
            match changed_since(&root, since - 1_000_000_000) {
                Ok(found) => {
                    for p in found {
                        mark(&mut v.changed, p, false);
                    }
                }
                Err(e) => {
                    let reason = format!(
                        "a file was changed through a second name and the tree could not be swept for it: {e}"
                    );
                    v.changed.clear();
                    v.pending.clear();
                    v.pending_full = Some(reason.clone());
                    return (v.cut, Changes::Full { reason });
                }
            }
        }
        for (p, deep) in std::mem::take(&mut v.changed) {
            mark(&mut v.pending, p, deep);
        }
        if v.pending.len() > MAX_CHANGED_PATHS {
            let reason = format!("more than {MAX_CHANGED_PATHS} paths changed");
            v.pending.clear();
            v.pending_full = Some(reason.clone());
            return (v.cut, Changes::Full { reason });
        }
        let paths = v
            .pending
            .iter()
            .map(|(p, deep)| ChangedPath {
                path: PathBytes(p.clone()),
                deep: *deep,
            })
            .collect();
        (v.cut, Changes::Paths { paths })
    }

    /// Drops the watches of `name` on `top` and under it; with `all`, its journal too.
    fn unwatch(&mut self, name: &str, top: &[u8], all: bool) {
        let gone: Vec<i32> = self
            .wds
            .iter()
            .filter(|(_, (n, p))| n == name && under(p, top))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            self.wds.remove(&wd);
            // SAFETY: removes a watch of our own instance.
            unsafe { libc::inotify_rm_watch(self.ifd.as_raw_fd(), wd) };
        }
        if all {
            self.vpses.remove(name);
        }
    }

    /// Watches the directory at `top` (a path inside `name`'s tree) and every directory under
    /// it; an error when a watch could not be added (the journal then cannot vouch for it).
    fn watch_tree(&mut self, name: &str, top: &[u8]) -> Result<(), String> {
        let root = self
            .vpses
            .get(name)
            .map(|v| v.root.clone())
            .unwrap_or_default();
        let Ok(mut fd) = open_root(&root) else {
            return Ok(()); // no tree (yet): nothing to watch, nothing to miss
        };
        for part in top.split(|b| *b == b'/').filter(|p| !p.is_empty()) {
            let Ok(c) = CString::new(part) else {
                return Ok(());
            };
            match open_at(&fd, &c, libc::O_RDONLY | libc::O_DIRECTORY) {
                Ok(sub) => fd = sub,
                Err(_) => return Ok(()), // gone or not a directory: the cut's scan sees that
            }
        }
        let mut stack = vec![(fd, top.to_vec())];
        while let Some((dir, path)) = stack.pop() {
            // SAFETY: this thread's own working directory; `.` is exactly `dir`.
            let wd = unsafe {
                if libc::fchdir(dir.as_raw_fd()) != 0 {
                    continue;
                }
                libc::inotify_add_watch(self.ifd.as_raw_fd(), c".".as_ptr(), MASK)
            };
            if wd < 0 {
                let e = io::Error::last_os_error();
                // SAFETY: back to a directory no VPS controls.
                unsafe { libc::chdir(c"/".as_ptr()) };
                return Err(if e.raw_os_error() == Some(libc::ENOSPC) {
                    "the host's inotify watch limit (fs.inotify.max_user_watches) is reached"
                        .to_string()
                } else {
                    format!("a directory could not be watched: {e}")
                });
            }
            self.wds.insert(wd, (name.to_string(), path.clone()));
            for n in read_names(&dir).unwrap_or_default() {
                let Ok(c) = CString::new(n.clone()) else {
                    continue;
                };
                if let Ok(sub) = open_at(&dir, &c, libc::O_RDONLY | libc::O_DIRECTORY) {
                    stack.push((sub, join(&path, &n)));
                }
            }
        }
        // SAFETY: as above.
        unsafe { libc::chdir(c"/".as_ptr()) };
        Ok(())
    }

    /// Reads every event the kernel has queued.
    fn drain(&mut self, buf: &mut [u8]) {
        loop {
            // SAFETY: reads into a valid buffer (nonblocking).
            let n = unsafe { libc::read(self.ifd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
            let n = n as usize;
            let mut off = 0;
            let head = std::mem::size_of::<libc::inotify_event>();
            while off + head <= n {
                // SAFETY: the kernel wrote a whole event here; read unaligned.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                let name_bytes = &buf[off + head..off + head + ev.len as usize];
                let name = &name_bytes[..name_bytes
                    .iter()
                    .position(|b| *b == 0)
                    .unwrap_or(name_bytes.len())];
                self.event(ev.wd, ev.mask, name);
                off += head + ev.len as usize;
            }
        }
    }

    fn event(&mut self, wd: i32, mask: u32, name: &[u8]) {
        if mask & libc::IN_Q_OVERFLOW != 0 {
            for v in self.vpses.values_mut() {
                v.lost = Some("the host's change queue overflowed".into());
            }
            return;
        }
        let Some((vps, dir)) = self.wds.get(&wd).cloned() else {
            return;
        };
        if mask & libc::IN_IGNORED != 0 {
            // The directory is gone (its parent's event says so) or unwatched.
            self.wds.remove(&wd);
            return;
        }
        if name.is_empty() {
            // The watched directory itself.
            if mask & libc::IN_DELETE_SELF == 0 {
                if let Some(v) = self.vpses.get_mut(&vps) {
                    mark(&mut v.changed, dir, false);
                }
            }
            return;
        }
        let path = join(&dir, name);
        let is_dir = mask & libc::IN_ISDIR != 0;
        let deep =
            is_dir && mask & (libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_MOVED_FROM) != 0;
        if is_dir && mask & libc::IN_MOVED_FROM != 0 {
            // Its watches now carry a path that is no longer its.
            self.unwatch(&vps, &path, false);
        }
        if let Some(v) = self.vpses.get_mut(&vps) {
            if !is_dir {
                if mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
                    // A name moved in may carry writes made under its old name: counted as written.
                    v.created
                        .insert(path.clone(), mask & libc::IN_MOVED_TO != 0);
                } else if mask & (libc::IN_MODIFY | libc::IN_ATTRIB) != 0 {
                    if let Some(w) = v.created.get_mut(&path) {
                        *w = true;
                    }
                } else if mask & libc::IN_DELETE != 0 && v.created.remove(&path) == Some(true) {
                    v.vanished.get_or_insert(path.clone());
                } else if mask & libc::IN_MOVED_FROM != 0 {
                    // Its new name (IN_MOVED_TO) is a new name of its own.
                    v.created.remove(&path);
                }
            }
            mark(&mut v.changed, path.clone(), deep);
        }
        if is_dir && mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
            if let Err(reason) = self.watch_tree(&vps, &path) {
                if let Some(v) = self.vpses.get_mut(&vps) {
                    v.broken = Some(reason.clone());
                    v.lost = Some(reason);
                }
            }
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The entry at `path` inside the tree at `root`, each component opened from its parent with
/// `O_NOFOLLOW`; None when it is not there.
fn stat_path(root: &Path, path: &[u8]) -> Option<libc::stat> {
    let mut dir = open_root(root).ok()?;
    let mut parts = path
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty())
        .peekable();
    while let Some(part) = parts.next() {
        let c = CString::new(part).ok()?;
        if parts.peek().is_some() {
            dir = open_at(&dir, &c, libc::O_RDONLY | libc::O_DIRECTORY).ok()?;
        } else {
            // SAFETY: st is written by the call before it is read.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            let r = unsafe {
                libc::fstatat(
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            return (r == 0).then_some(st);
        }
    }
    None
}

/// Every entry but directories under `root` whose inode changed at or after `since_ns`: a
/// walk of the whole tree by descriptor (never following a link), reading no content.
fn changed_since(root: &Path, since_ns: i64) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    walk(root, |path, st| {
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR
            && st.st_ctime * 1_000_000_000 + st.st_ctime_nsec >= since_ns
        {
            out.push(path.to_vec());
        }
    })?;
    Ok(out)
}

/// The disk space the tree under `root` takes (blocks, a hard-linked file once), walked by
/// descriptor like [`changed_since`]: a VPS's links are never followed, nor its mounts crossed.
pub fn disk_usage(root: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    let mut seen = std::collections::HashSet::new();
    walk(root, |_, st| {
        if st.st_nlink > 1 && st.st_mode & libc::S_IFMT != libc::S_IFDIR && !seen.insert(st.st_ino)
        {
            return;
        }
        total += st.st_blocks as u64 * 512;
    })?;
    Ok(total)
}

/// Calls `visit` with the path (relative to `root`) and the `lstat` of every entry under
/// `root`, opening each directory from its parent with `O_NOFOLLOW` and staying on `root`'s
/// filesystem.
fn walk(root: &Path, mut visit: impl FnMut(&[u8], &libc::stat)) -> io::Result<()> {
    let top = open_root(root)?;
    // SAFETY: st is written by the call before it is read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(top.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let dev = st.st_dev;
    let mut stack = vec![(top, Vec::new())];
    while let Some((dir, path)) = stack.pop() {
        for n in read_names(&dir).unwrap_or_default() {
            let Ok(c) = CString::new(n.clone()) else {
                continue;
            };
            // SAFETY: st is written by the call before it is read.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            if unsafe {
                libc::fstatat(
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            } != 0
            {
                continue;
            }
            let p = join(&path, &n);
            visit(&p, &st);
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR && st.st_dev == dev {
                if let Ok(sub) = open_at(&dir, &c, libc::O_RDONLY | libc::O_DIRECTORY) {
                    stack.push((sub, p));
                }
            }
        }
    }
    Ok(())
}

fn open_root(root: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(root.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: a valid C string; checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::time::{Duration, Instant};

    fn paths(c: &Changes) -> Vec<(String, bool)> {
        match c {
            Changes::Full { reason } => panic!("full: {reason}"),
            Changes::Paths { paths } => paths
                .iter()
                .map(|p| (String::from_utf8_lossy(&p.path.0).into_owned(), p.deep))
                .collect(),
        }
    }

    /// Cuts until `want` is among the paths (events arrive asynchronously), with a deadline.
    fn cut_until(j: &Journal, root: &Path, want: &str) -> (u64, Vec<(String, bool)>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (cut, c) = j.cut("v", root).unwrap();
            let p = paths(&c);
            if p.iter().any(|(x, _)| x == want) || Instant::now() > deadline {
                return (cut, p);
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn disk_usage_counts_the_tree_and_never_what_a_link_points_to() {
        let d = std::env::temp_dir().join(format!("sw-du-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let root = d.join("rootfs");
        std::fs::create_dir_all(root.join("srv")).unwrap();
        std::fs::create_dir_all(d.join("outside")).unwrap();
        std::fs::write(d.join("outside/big"), vec![7u8; 4 << 20]).unwrap();
        std::fs::write(root.join("srv/data"), vec![1u8; 256 << 10]).unwrap();
        std::fs::hard_link(root.join("srv/data"), root.join("srv/again")).unwrap();
        symlink(d.join("outside"), root.join("srv/escape")).unwrap();
        let used = disk_usage(&root).unwrap();
        assert!(used >= 256 << 10, "{used}");
        // The hard link counted once; the 4 MiB behind the link not at all.
        assert!(used < 1 << 20, "{used}");
        // A root that is itself a link is refused.
        symlink(d.join("outside"), d.join("linked")).unwrap();
        assert!(disk_usage(&d.join("linked")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_journal_keeps_what_changed_until_acknowledged_and_never_follows_links() {
        let d = std::env::temp_dir().join(format!("sw-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let root = d.join("rootfs");
        let outside = d.join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("escape")).unwrap();
        let j = Journal::start().unwrap();

        let (cut, c) = j.cut("v", &root).unwrap();
        assert!(matches!(c, Changes::Full { .. }), "{c:?}");
        // Until that full compare is acknowledged, cuts stay full.
        assert!(matches!(j.cut("v", &root).unwrap().1, Changes::Full { .. }));
        j.ack("v", cut).unwrap(); // an old cut: ignored
        let (cut, _) = j.cut("v", &root).unwrap();
        j.ack("v", cut).unwrap();

        std::fs::write(root.join("etc/hostname"), b"a").unwrap();
        let (c1, p) = cut_until(&j, &root, "etc/hostname");
        assert!(p.contains(&("etc/hostname".into(), false)), "{p:?}");
        // Not acknowledged: handed out again with what came since.
        std::fs::create_dir_all(root.join("srv/deep")).unwrap();
        let (c2, p) = cut_until(&j, &root, "srv");
        assert!(p.contains(&("etc/hostname".into(), false)), "{p:?}");
        assert!(p.contains(&("srv".into(), true)), "{p:?}");
        assert!(c2 > c1);
        j.ack("v", c2).unwrap();
        // The new directory is watched too; a write outside through the link is not seen.
        std::fs::write(outside.join("x"), b"host").unwrap();
        std::fs::write(root.join("srv/deep/f"), b"x").unwrap();
        let (c3, p) = cut_until(&j, &root, "srv/deep/f");
        assert_eq!(p, [("srv/deep/f".to_string(), false)]);
        j.ack("v", c3).unwrap();
        // A directory moved away and back under another name: the new name is watched.
        std::fs::rename(root.join("srv"), root.join("var")).unwrap();
        let (c4, p) = cut_until(&j, &root, "var");
        assert!(
            p.contains(&("srv".into(), true)) && p.contains(&("var".into(), true)),
            "{p:?}"
        );
        j.ack("v", c4).unwrap();
        std::fs::write(root.join("var/deep/g"), b"y").unwrap();
        let (c5, p) = cut_until(&j, &root, "var/deep/g");
        assert_eq!(p, [("var/deep/g".to_string(), false)]);
        j.ack("v", c5).unwrap();
        // A second name of an older file, written through and removed before the cut: the
        // file is handed out under the name it keeps.
        std::fs::create_dir_all(root.join("d1")).unwrap();
        std::fs::create_dir_all(root.join("d2")).unwrap();
        std::fs::write(root.join("d1/f"), b"hello\n").unwrap();
        let (c6, _) = cut_until(&j, &root, "d1/f");
        j.ack("v", c6).unwrap();
        std::fs::hard_link(root.join("d1/f"), root.join("d2/g")).unwrap();
        {
            use std::io::Write;
            let mut g = std::fs::OpenOptions::new()
                .append(true)
                .open(root.join("d2/g"))
                .unwrap();
            g.write_all(b"more\n").unwrap();
        }
        std::fs::remove_file(root.join("d2/g")).unwrap();
        let (c7, p) = cut_until(&j, &root, "d1/f");
        assert!(p.contains(&("d1/f".into(), false)), "{p:?}");
        j.ack("v", c7).unwrap();
        // The same with the second name kept: the first is handed out too.
        std::fs::hard_link(root.join("d1/f"), root.join("d2/h")).unwrap();
        let (c8, p) = cut_until(&j, &root, "d2/h");
        assert!(p.contains(&("d1/f".into(), false)), "{p:?}");
        j.ack("v", c8).unwrap();
        // Forgotten: the next cut is full.
        j.forget("v").unwrap();
        assert!(matches!(j.cut("v", &root).unwrap().1, Changes::Full { .. }));
        let _ = std::fs::remove_dir_all(&d);
    }
}
