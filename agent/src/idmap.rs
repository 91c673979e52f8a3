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

    /// Re-owns one entry; whether it is a directory to walk into. A change of owner clears
    /// set-id bits and file capabilities: both are put back, the capabilities re-rooted at the
    /// new range (as a kernel honours them only for the root they name).
    fn one(&self, p: &Path) -> std::io::Result<bool> {
        let md = std::fs::symlink_metadata(p)?;
        let ft = md.file_type();
        let caps = if ft.is_file() { caps::read(p)? } else { None };
        // POSIX ACLs name users and groups by host id: they move with the range too.
        let mut acls = Vec::new();
        if ft.is_file() || ft.is_dir() {
            for n in [
                serverware_shared::duplo::XATTR_ACL_ACCESS,
                serverware_shared::duplo::XATTR_ACL_DEFAULT,
            ] {
                if let Some(v) = crate::xattr::lget(p, n)? {
                    acls.push((n, v));
                }
            }
        }
        lchown(p, Some(self.map(md.uid())), Some(self.map(md.gid())))?;
        for (n, v) in acls {
            crate::xattr::lset(p, n, &crate::xattr::acl_mapped(&v, |id| self.map(id)))?;
        }
        if !ft.is_symlink() && md.mode() & 0o6000 != 0 {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
        if let Some(c) = caps {
            caps::write(p, &caps::rerooted(&c, |root| self.map(root)))?;
        }
        Ok(ft.is_dir())
    }
}

pub(crate) use caps::rerooted;

/// File capabilities (`security.capability`): revision 2 (no root named: the host's root) and
/// revision 3 (the root id of the user namespace they are for).
mod caps {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    const NAME: &[u8] = b"security.capability\0";
    const REVISION_MASK: u32 = 0xFF00_0000;
    const REVISION_2: u32 = 0x0200_0000;
    const REVISION_3: u32 = 0x0300_0000;

    fn cpath(p: &Path) -> std::io::Result<CString> {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::other("a NUL in a path"))
    }

    /// The raw attribute, if the file has one.
    pub fn read(p: &Path) -> std::io::Result<Option<Vec<u8>>> {
        let c = cpath(p)?;
        let mut buf = vec![0u8; 64];
        // SAFETY: valid C strings and a buffer of the length given.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                NAME.as_ptr().cast(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
                _ => Err(e),
            };
        }
        buf.truncate(n as usize);
        Ok(Some(buf))
    }

    pub fn write(p: &Path, value: &[u8]) -> std::io::Result<()> {
        let c = cpath(p)?;
        // SAFETY: valid C strings and a value of the length given.
        let r = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                NAME.as_ptr().cast(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The same capabilities for the root `map` gives: revision 3 naming it, or revision 2 when
    /// it is the host's root. Anything unknown is returned as it was.
    pub fn rerooted(v: &[u8], map: impl Fn(u32) -> u32) -> Vec<u8> {
        let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if v.len() < 20 {
            return v.to_vec();
        }
        let magic = le(&v[0..4]);
        let old_root = match (magic & REVISION_MASK, v.len()) {
            (REVISION_2, 20) => 0,
            (REVISION_3, 24) => le(&v[20..24]),
            _ => return v.to_vec(),
        };
        let root = map(old_root);
        let flags = magic & !REVISION_MASK;
        let mut out = Vec::with_capacity(24);
        if root == 0 {
            out.extend_from_slice(&(REVISION_2 | flags).to_le_bytes());
            out.extend_from_slice(&v[4..20]);
        } else {
            out.extend_from_slice(&(REVISION_3 | flags).to_le_bytes());
            out.extend_from_slice(&v[4..20]);
            out.extend_from_slice(&root.to_le_bytes());
        }
        out
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
        // ping's cap_net_raw=ep, as a Debian package installs it (revision 2).
        std::fs::write(d.join("usr/bin/ping"), b"x").unwrap();
        let v2 = [
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        caps::write(&d.join("usr/bin/ping"), &v2).unwrap();
        let base = 16 * ID_RANGE;
        let n = Shift { from: 0, to: base }.apply(&d.join("usr")).unwrap();
        assert_eq!(n, 5);
        let caps = caps::read(&d.join("usr/bin/ping"))
            .unwrap()
            .expect("capabilities kept");
        let mut v3 = v2.to_vec();
        v3[3] = 3;
        v3.extend_from_slice(&base.to_le_bytes());
        assert_eq!(caps, v3, "re-rooted at the VPS's root");
        // And back to a privileged VPS: revision 2 again.
        Shift { from: base, to: 0 }.apply(&d.join("usr")).unwrap();
        assert_eq!(
            caps::read(&d.join("usr/bin/ping")).unwrap().unwrap(),
            v2.to_vec()
        );
        Shift { from: 0, to: base }.apply(&d.join("usr")).unwrap();
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
