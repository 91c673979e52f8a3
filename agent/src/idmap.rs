//! Ownership of a root filesystem under a VPS's id mapping. Root in an unprivileged VPS is id
//! `base` on its host, its user 1000 is `base + 1000`, and so on for [`ID_RANGE`] ids; the files
//! of its root filesystem are owned accordingly on the host. Root filesystems travel between
//! hosts with the ids of their source, and are shifted to their new range when unpacked.

use serverware_shared::agent::{id_base_ok, ID_RANGE};
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::Path;

/// Where a tree's ids come from and where they go: `0` is the unmapped range of a template or a
/// privileged VPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    pub from: u32,
    pub to: u32,
}

/// The id a VPS's overflow ("nobody") has inside it.
const NOBODY: u32 = 65534;

impl Shift {
    /// `FROM:TO`, each 0 or a valid id base.
    pub fn parse(s: &str) -> Result<Shift, String> {
        let bad = || format!("'{}' is not FROM:TO id bases", s.escape_default());
        let (a, b) = s.split_once(':').ok_or_else(bad)?;
        let base = |v: &str| -> Result<u32, String> {
            let n: u32 = v.parse().map_err(|_| bad())?;
            if n == 0 || id_base_ok(n) {
                Ok(n)
            } else {
                Err(format!("{n} is not an id base"))
            }
        };
        Ok(Shift {
            from: base(a)?,
            to: base(b)?,
        })
    }

    /// The id on the new range: an id of the source's range keeps its place in it; any other
    /// (which no VPS could have made) becomes the VPS's nobody.
    pub fn map(&self, id: u32) -> u32 {
        if self.from == self.to {
            return id;
        }
        match id.checked_sub(self.from) {
            Some(inner) if inner < ID_RANGE => self.to + inner,
            _ => self.to + NOBODY,
        }
    }

    /// Re-owns every entry under `root` (links themselves, never what they point to) and puts
    /// back the set-id bits that a change of owner clears. `root` must be a tree no VPS can reach
    /// yet (a root filesystem being unpacked), so nothing changes under the walk. Returns the
    /// number of entries.
    pub fn apply(&self, root: &Path) -> std::io::Result<u64> {
        let mut n = 0;
        if self.from == self.to {
            return Ok(n);
        }
        let mut stack = vec![root.to_path_buf()];
        self.one(root)?;
        n += 1;
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir)? {
                let e = e?;
                let p = e.path();
                if self.one(&p)? {
                    stack.push(p);
                }
                n += 1;
            }
        }
        Ok(n)
    }

    /// Re-owns one entry; whether it is a directory to walk into.
    fn one(&self, p: &Path) -> std::io::Result<bool> {
        let md = std::fs::symlink_metadata(p)?;
        lchown(p, Some(self.map(md.uid())), Some(self.map(md.gid())))?;
        let ft = md.file_type();
        if !ft.is_symlink() && md.mode() & 0o6000 != 0 {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
        Ok(ft.is_dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_place_in_the_range() {
        let b1 = 16 * ID_RANGE;
        let b2 = 17 * ID_RANGE;
        let t = Shift { from: 0, to: b1 };
        assert_eq!(
            (t.map(0), t.map(1000), t.map(65535)),
            (b1, b1 + 1000, b1 + 65535)
        );
        assert_eq!(t.map(70000), b1 + NOBODY);
        let c = Shift { from: b1, to: b2 };
        assert_eq!((c.map(b1), c.map(b1 + 33)), (b2, b2 + 33));
        assert_eq!(
            c.map(0),
            b2 + NOBODY,
            "a host-root file becomes nobody, not root"
        );
        let back = Shift { from: b2, to: 0 };
        assert_eq!(back.map(b2 + 5), 5);
        assert_eq!(Shift { from: b1, to: b1 }.map(7), 7);
        assert!(Shift::parse("0:1048576").is_ok());
        for bad in ["", "1:2", "0:1000", "0", "x:y", "0:1048576:3"] {
            assert!(Shift::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tree_is_shifted_with_its_links_and_set_id_bits() {
        use std::os::unix::fs::symlink;
        let d = std::env::temp_dir().join(format!("sw-idmap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("usr/bin")).unwrap();
        std::fs::write(d.join("usr/bin/su"), b"x").unwrap();
        lchown(d.join("usr/bin/su"), Some(0), Some(0)).unwrap();
        std::fs::set_permissions(
            d.join("usr/bin/su"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::fs::write(d.join("outside"), b"host").unwrap();
        symlink(d.join("outside"), d.join("usr/link")).unwrap();
        let base = 16 * ID_RANGE;
        let n = Shift { from: 0, to: base }.apply(&d.join("usr")).unwrap();
        assert_eq!(n, 4);
        let su = std::fs::symlink_metadata(d.join("usr/bin/su")).unwrap();
        assert_eq!(
            (su.uid(), su.gid(), su.mode() & 0o7777),
            (base, base, 0o4755)
        );
        // The link is re-owned; what it points to is not.
        assert_eq!(
            std::fs::symlink_metadata(d.join("usr/link")).unwrap().uid(),
            base
        );
        assert_eq!(std::fs::metadata(d.join("outside")).unwrap().uid(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }
}
