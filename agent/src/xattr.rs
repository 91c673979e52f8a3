//! Extended attributes and holes of a VPS's files, for netDUPLO: read through a descriptor the
//! scan opened (never by path), kept as the VPS sees them, and put back on a restored tree in
//! the VPS's own id range. What a point keeps is [`xattr_kept`]: `user.*`, `trusted.*`, file
//! capabilities and POSIX ACLs. An ACL names ids and a capability names the root it is for, both
//! as host ids: they are translated between the host's range and the VPS's, as owners are.

use serverware_shared::duplo::{
    xattr_kept, PathBytes, Xattr, MAX_XATTR_BYTES, XATTR_ACL_ACCESS, XATTR_ACL_DEFAULT,
    XATTR_CAPABILITY,
};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use crate::restore::host_id as outer;
use crate::scan::inner_id as inner;

const ACL_USER: u16 = 0x02;
const ACL_GROUP: u16 = 0x08;

/// An ACL's value with the ids of its named users and groups mapped (the format of
/// `posix_acl_xattr`: a 4-byte version, then entries of tag, permissions and id). Anything not
/// in that format is returned as it is.
pub fn acl_mapped(v: &[u8], map: impl Fn(u32) -> u32) -> Vec<u8> {
    if v.len() < 4 || !(v.len() - 4).is_multiple_of(8) {
        return v.to_vec();
    }
    let mut out = v.to_vec();
    for e in out[4..].chunks_exact_mut(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        if tag == ACL_USER || tag == ACL_GROUP {
            let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            e[4..8].copy_from_slice(&map(id).to_le_bytes());
        }
    }
    out
}

/// The value as the VPS sees it (`to_inner`) or as its host holds it.
fn mapped(name: &str, v: &[u8], base: u32, to_inner: bool) -> Vec<u8> {
    let map = |id: u32| {
        if to_inner {
            inner(id, base)
        } else {
            outer(id, base)
        }
    };
    if base == 0 {
        return v.to_vec();
    }
    match name {
        XATTR_ACL_ACCESS | XATTR_ACL_DEFAULT => acl_mapped(v, map),
        XATTR_CAPABILITY => crate::idmap::rerooted(v, map),
        _ => v.to_vec(),
    }
}

fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// The kept attributes of the open file or directory `fd`, as the VPS sees them, sorted.
pub fn read(fd: RawFd, base: u32) -> io::Result<Vec<Xattr>> {
    let mut names = vec![0u8; 4096];
    let n = loop {
        // SAFETY: a buffer of the length given.
        let r = unsafe { libc::flistxattr(fd, names.as_mut_ptr().cast(), names.len()) };
        match cvt(r) {
            Ok(n) => break n,
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) && names.len() < (1 << 20) => {
                names.resize(names.len() * 4, 0);
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    };
    names.truncate(n);
    let mut out = Vec::new();
    let mut total = 0;
    for raw in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(raw) else {
            continue;
        };
        if !xattr_kept(name) {
            continue;
        }
        let c = CString::new(raw).map_err(io::Error::other)?;
        let mut value = vec![0u8; 256];
        let len = loop {
            // SAFETY: valid C string and a buffer of the length given.
            let r =
                unsafe { libc::fgetxattr(fd, c.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
            match cvt(r) {
                Ok(n) => break Some(n),
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) && value.len() < (64 << 10) => {
                    value.resize(64 << 10, 0);
                }
                // Removed since it was listed.
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => break None,
                Err(e) => return Err(e),
            }
        };
        let Some(len) = len else { continue };
        value.truncate(len);
        total += name.len() + len;
        if total > MAX_XATTR_BYTES {
            return Err(io::Error::other(format!(
                "more than {} KiB of extended attributes",
                MAX_XATTR_BYTES >> 10
            )));
        }
        out.push(Xattr {
            name: name.to_string(),
            value: PathBytes(mapped(name, &value, base, true)),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Puts `xattrs` (as the VPS sees them) on the open file or directory `fd` of a VPS whose range
/// starts at `base`. Only attributes a point keeps are set, whatever the list says.
pub fn write(fd: &impl AsRawFd, xattrs: &[Xattr], base: u32) -> io::Result<()> {
    for x in xattrs {
        if !xattr_kept(&x.name) {
            continue;
        }
        let c = CString::new(x.name.as_bytes()).map_err(io::Error::other)?;
        let v = mapped(&x.name, &x.value.0, base, false);
        // SAFETY: valid C string and a value of the length given.
        let r =
            unsafe { libc::fsetxattr(fd.as_raw_fd(), c.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("cannot set the attribute {}: {e}", x.name),
            ));
        }
    }
    Ok(())
}

/// An attribute of the entry at `path` itself (never what a link there points to), if it has
/// it: for trees no VPS can reach yet (one being unpacked).
pub fn lget(path: &std::path::Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let n = CString::new(name).map_err(io::Error::other)?;
    let mut value = vec![0u8; 64 << 10];
    // SAFETY: valid C strings and a buffer of the length given.
    let r = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    match cvt(r) {
        Ok(len) => {
            value.truncate(len);
            Ok(Some(value))
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA) | Some(libc::ENOTSUP)) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn lset(path: &std::path::Path, name: &str, value: &[u8]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let n = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: valid C strings and a value of the length given.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    cvt(r as isize).map(|_| ())
}

/// The data ranges of the open file `fd` of `size` bytes (holes between them); None when it is
/// all data (or the filesystem cannot tell).
pub fn data_ranges(fd: RawFd, size: u64) -> io::Result<Option<Vec<(u64, u64)>>> {
    if size == 0 {
        return Ok(None);
    }
    let mut ranges = Vec::new();
    let mut off: i64 = 0;
    let end = size as i64;
    while off < end {
        // SAFETY: plain lseeks on a descriptor of ours.
        let data = unsafe { libc::lseek(fd, off, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENXIO) => break, // only a hole from here on
                Some(libc::EINVAL) | Some(libc::ENOTSUP) => return Ok(None),
                _ => return Err(e),
            }
        }
        if data >= end {
            break;
        }
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let hole = hole.min(end);
        ranges.push((data as u64, (hole - data) as u64));
        off = hole;
    }
    // SAFETY: back to the start for the reader.
    unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
    if ranges.len() == 1 && ranges[0] == (0, size) {
        return Ok(None);
    }
    Ok(Some(ranges))
}

/// Writes `data`, which lies at `off` in a file, through `f`: only the parts inside `ranges`
/// (all of it for None), so that holes stay holes.
pub fn write_at(
    f: &std::fs::File,
    off: u64,
    data: &[u8],
    ranges: Option<&[(u64, u64)]>,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let Some(ranges) = ranges else {
        return f.write_all_at(data, off);
    };
    let end = off + data.len() as u64;
    for &(start, len) in ranges {
        let (a, b) = (start.max(off), (start + len).min(end));
        if a < b {
            f.write_all_at(&data[(a - off) as usize..(b - off) as usize], a)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_ids_move_between_ranges_and_nothing_else_does() {
        let base = 16 * serverware_shared::agent::ID_RANGE;
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (0x01u16, 6u16, u32::MAX),
            (ACL_USER, 4, base + 1000),
            (ACL_GROUP, 5, base + 33),
            (0x10, 7, u32::MAX),
            (0x20, 4, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        let inner_v = mapped(XATTR_ACL_ACCESS, &v, base, true);
        let id_at = |v: &[u8], i: usize| {
            u32::from_le_bytes(v[4 + 8 * i + 4..4 + 8 * i + 8].try_into().unwrap())
        };
        assert_eq!((id_at(&inner_v, 1), id_at(&inner_v, 2)), (1000, 33));
        assert_eq!(id_at(&inner_v, 0), u32::MAX);
        let other = 20 * serverware_shared::agent::ID_RANGE;
        let moved = mapped(XATTR_ACL_ACCESS, &inner_v, other, false);
        assert_eq!(
            (id_at(&moved, 1), id_at(&moved, 2)),
            (other + 1000, other + 33)
        );
        assert_eq!(mapped("user.x", b"\x01\x02", base, true), b"\x01\x02");
    }

    #[test]
    fn holes_are_found_and_kept() {
        use std::io::{Seek, Write};
        use std::os::unix::fs::MetadataExt;
        let d = std::env::temp_dir().join(format!("sw-holes-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("sparse");
        let mut f = std::fs::File::create(&p).unwrap();
        f.seek(std::io::SeekFrom::Start(8 << 20)).unwrap();
        f.write_all(&[7u8; 4096]).unwrap();
        f.set_len(16 << 20).unwrap();
        let size = f.metadata().unwrap().len();
        let r = data_ranges(f.as_raw_fd(), size).unwrap();
        let copy = std::fs::File::create(d.join("copy")).unwrap();
        let content = std::fs::read(&p).unwrap();
        for (i, c) in content.chunks(1 << 20).enumerate() {
            write_at(&copy, (i as u64) << 20, c, r.as_deref()).unwrap();
        }
        copy.set_len(size).unwrap();
        let (a, b) = (
            std::fs::metadata(&p).unwrap(),
            std::fs::metadata(d.join("copy")).unwrap(),
        );
        let back = std::fs::read(d.join("copy")).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(r, Some(vec![(8 << 20, 4096)]));
        assert_eq!(a.blocks(), b.blocks());
        assert_eq!(back, content);
    }
}
