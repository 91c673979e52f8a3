//! Root's subordinate id ranges (`/etc/subuid`, `/etc/subgid`). Debian's `lxc` recommends
//! `uidmap`; where its `newuidmap` is installed LXC maps a container's ids through it even when run
//! as root, and it refuses any range root was not given in these files. Each VPS's range is added
//! for root before its configuration names it, so an unprivileged VPS starts on a host installed
//! with Debian's defaults. Ranges already given (to root or anyone) are kept as they are.

use std::path::Path;
use std::sync::Mutex;

/// One writer at a time in this agent (requests run on several threads).
static LOCK: Mutex<()> = Mutex::new(());

/// Whether `text` (the files' `name:first:count` lines) gives root all of `[first, first+count)`.
pub fn covers(text: &str, first: u32, count: u32) -> bool {
    let end = u64::from(first) + u64::from(count);
    text.lines().any(|line| {
        let mut f = line.trim().split(':');
        let (Some(who), Some(a), Some(n)) = (f.next(), f.next(), f.next()) else {
            return false;
        };
        if who != "root" && who != "0" {
            return false;
        }
        match (a.trim().parse::<u64>(), n.trim().parse::<u64>()) {
            (Ok(a), Ok(n)) => a <= u64::from(first) && a + n >= end,
            _ => false,
        }
    })
}

/// `text` with a line for root's `[first, first+count)` added if it is not covered yet; None when
/// nothing needs to change.
pub fn with_range(text: &str, first: u32, count: u32) -> Option<String> {
    if covers(text, first, count) {
        return None;
    }
    let mut t = text.to_string();
    if !t.is_empty() && !t.ends_with('\n') {
        t.push('\n');
    }
    t.push_str(&format!("root:{first}:{count}\n"));
    Some(t)
}

fn ensure_in(path: &Path, first: u32, count: u32) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let Some(new) = with_range(&text, first, count) else {
        return Ok(());
    };
    // Whole or not at all: a torn file would take every user's range with it.
    let tmp = path.with_extension("serverware-part");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(new.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!(
            "cannot give root the ids {first}-{} in {}: {e}",
            u64::from(first) + u64::from(count) - 1,
            path.display()
        )
    })
}

/// Gives root the ids `[first, first+count)` in both files (under `etc`, `/etc` on a host).
pub fn ensure(etc: &Path, first: u32, count: u32) -> Result<(), String> {
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    ensure_in(&etc.join("subuid"), first, count)?;
    ensure_in(&etc.join("subgid"), first, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_added_once_and_others_are_kept() {
        let d = std::env::temp_dir().join(format!("sw-subids-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("subuid"), "alice:100000:65536").unwrap();
        ensure(&d, 1048576, 65536).unwrap();
        ensure(&d, 1048576, 65536).unwrap();
        let u = std::fs::read_to_string(d.join("subuid")).unwrap();
        let g = std::fs::read_to_string(d.join("subgid")).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(u, "alice:100000:65536\nroot:1048576:65536\n");
        assert_eq!(g, "root:1048576:65536\n");
    }

    #[test]
    fn coverage_needs_the_whole_range_for_root() {
        assert!(covers("root:1000000:200000\n", 1048576, 65536));
        assert!(covers("0:1048576:65536\n", 1048576, 65536));
        assert!(!covers("root:1048576:65535\n", 1048576, 65536));
        assert!(!covers("bob:1048576:65536\n", 1048576, 65536));
        assert!(!covers(
            "root:x:65536\n# root:1048576:65536\n",
            1048576,
            65536
        ));
        assert!(with_range("root:1048576:65536\n", 1048576, 65536).is_none());
    }
}
