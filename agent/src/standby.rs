//! netMON's standby copies: a host keeps a nearly current copy of an HA VPS that runs on another
//! host, so that a failover onto it starts from local files instead of the whole VPS travelling.
//!
//! A copy lives in `/var/lib/lxc/.serverware-standby/ID/` (ID: the VPS's id; the LXC path, so
//! its files can be linked into the VPS's own tree on the same filesystem), root's and closed
//! (0700): no VPS reaches it, and none ever runs in it. It holds:
//! - `rootfs`: the tree of a restore point, owners as the VPS has them on its hosts;
//! - `entries`: that point's entries (what each file holds, by its chunks), written only once
//!   the tree is whole, and removed before the tree changes, so it never vouches for a tree it
//!   does not describe;
//! - `cycle`: which point that was.
//!
//! `rootfs-standby ID` brings a copy to a newer point (a restore into it, whose unchanged files
//! are linked from the copy it replaces: the work grows with the files, not their bytes). A
//! failover onto this host (`rootfs-restore NAME --seed ID`) first renames the copy to
//! `ID.used`, builds the VPS's tree from it the same way, and removes what is left: a copy that
//! may share files with a VPS's tree is never used again, and `list` removes any `.used` left by
//! a crash. Each VPS's copy is changed under a lock of its own (`ID.lock`).

use crate::restore::Seed;
use serverware_shared::agent::StandbyCopy;
use serverware_shared::duplo::stream::{self, Frame};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub fn top() -> PathBuf {
    Path::new(crate::lxc::LXC_PATH).join(".serverware-standby")
}

fn dir(vps_id: i64) -> PathBuf {
    top().join(vps_id.to_string())
}

fn used(vps_id: i64) -> PathBuf {
    top().join(format!("{vps_id}.used"))
}

fn ensure_top() -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let t = top();
    match std::fs::DirBuilder::new().mode(0o700).create(&t) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let md = std::fs::symlink_metadata(&t)?;
            if !md.is_dir() {
                return Err(io::Error::other(format!(
                    "{} is not a directory",
                    t.display()
                )));
            }
            std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o700))
        }
        Err(e) => Err(e),
    }
}

/// Holds VPS `vps_id`'s copy for changes while it lives (the lock goes with the descriptor).
pub struct Lock(#[allow(dead_code)] std::fs::File);

pub fn lock(vps_id: i64) -> io::Result<Lock> {
    ensure_top()?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(top().join(format!("{vps_id}.lock")))?;
    // SAFETY: a valid descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Lock(f))
}

/// A copy's tree and what it holds, if it is whole.
fn seed_of(d: &Path) -> Option<Seed> {
    let raw = std::fs::read(d.join("entries")).ok()?;
    let Frame::Entries(entries) = stream::read(&mut &raw[..]).ok()? else {
        return None;
    };
    Some(Seed::new(d.join("rootfs"), &entries))
}

fn write_atomic(d: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = d.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, d.join(name))
}

/// `rootfs-standby ID --cycle C [--ids BASE]`: the copy of VPS `vps_id` becomes restore point
/// `cycle`, sent as a restore is (frames on stdin and stdout).
pub fn apply(vps_id: i64, cycle: u64, base: u32) -> Result<(), String> {
    let _lock = lock(vps_id).map_err(|e| format!("cannot lock the standby copy: {e}"))?;
    let d = dir(vps_id);
    {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", d.display())),
        }
    }
    let seed = seed_of(&d);
    // From here the tree may change: nothing vouches for it until it is whole again.
    for f in ["entries", "cycle"] {
        match std::fs::remove_file(d.join(f)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot reset the standby copy: {e}")),
        }
    }
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(1 << 20, stdin.lock());
    let stdout = std::io::stdout();
    let mut output = stdout.lock();
    let (summary, entries) =
        crate::restore::restore(&d, base, seed.as_ref(), &mut input, &mut output)
            .map_err(|e| format!("cannot bring the standby copy up to date: {e}"))?;
    let mut raw = Vec::new();
    stream::write_entries(&mut raw, &entries).map_err(|e| e.to_string())?;
    write_atomic(&d, "entries", &raw)
        .and_then(|_| write_atomic(&d, "cycle", cycle.to_string().as_bytes()))
        .map_err(|e| format!("cannot record the standby copy: {e}"))?;
    stream::write_summary(&mut output, &summary)
        .and_then(|_| output.flush())
        .map_err(|e| format!("cannot report the standby copy: {e}"))
}

/// For a failover onto this host: VPS `vps_id`'s copy, taken out of service (renamed `.used`)
/// and returned as a seed, if it is whole. The caller removes it with [`finish_used`].
pub fn take(vps_id: i64) -> Option<(Lock, Seed)> {
    if std::fs::symlink_metadata(dir(vps_id)).is_err() {
        return None;
    }
    let lock = lock(vps_id).ok()?;
    let d = dir(vps_id);
    let u = used(vps_id);
    if std::fs::symlink_metadata(&u).is_ok() {
        std::fs::remove_dir_all(&u).ok()?;
    }
    // Whole only with its entries (written last); read once, after the copy is out of service
    // (one that does not parse is left there as `.used`, removed like any other).
    if !d.join("entries").is_file() {
        return None;
    }
    std::fs::rename(&d, &u).ok()?;
    let seed = seed_of(&u)?;
    Some((lock, seed))
}

pub fn finish_used(vps_id: i64) {
    let _ = std::fs::remove_dir_all(used(vps_id));
}

/// The copies this host holds (removing what a crash left half-used).
pub fn list() -> Vec<StandbyCopy> {
    let Ok(rd) = std::fs::read_dir(top()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = name
            .strip_suffix(".used")
            .and_then(|i| i.parse::<i64>().ok())
        {
            if let Ok(_l) = lock(id) {
                let _ = std::fs::remove_dir_all(e.path());
            }
            continue;
        }
        let Ok(vps_id) = name.parse::<i64>() else {
            continue;
        };
        let cycle = std::fs::read_to_string(e.path().join("cycle"))
            .ok()
            .and_then(|c| c.trim().parse().ok());
        out.push(StandbyCopy { vps_id, cycle });
    }
    out.sort_by_key(|c| c.vps_id);
    out
}

/// Removes VPS `vps_id`'s copy (no longer wanted here).
pub fn remove(vps_id: i64) -> Result<(), String> {
    let _lock = lock(vps_id).map_err(|e| format!("cannot lock the standby copy: {e}"))?;
    for d in [dir(vps_id), used(vps_id)] {
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", d.display())),
        }
    }
    // (The lock file stays: removing it while another waits on it would let two hold it.)
    Ok(())
}
