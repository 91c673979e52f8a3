//! netDUPLO on real LXC VPSes on test hosts: restore points equal to the VPS's tree after random
//! workloads, with and without the change journal, and storage that holds exactly the last
//! landed point whatever breaks mid-cycle.

use crate::support::*;
use crate::vps_lifecycle::{get, post, site, task_done, vps_sh, wait_vps, MIB};
use serde_json::{json, Value};
use serverware::storage::{chunks, points, DirStore};
use serverware_shared::duplo::{EntryKind, Manifest};
use serverware_shared::VpsId;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// One entry as a comparison sees it: kind, mode, owner, time, size, content hash, link target,
/// and its hard-link group (the first path of its inode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Desc {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    size: u64,
    content: Option<[u8; 32]>,
    target: Option<Vec<u8>>,
    group: Option<Vec<u8>>,
    /// Kept extended attributes as the VPS sees them (ACL ids and a capability's root in its
    /// own range), sorted.
    xattrs: Vec<(String, Vec<u8>)>,
    /// A sparse file's data ranges (None: all data).
    data: Option<Vec<(u64, u64)>>,
}

/// The kept extended attributes of the entry at `p` (not a link), as the VPS sees them.
fn xattrs_of(p: &Path, base: u32) -> Vec<(String, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 1 << 16];
    // SAFETY: valid C string and buffers of the lengths given.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8(name.to_vec()).unwrap();
        if !serverware_shared::duplo::xattr_kept(&name) {
            continue;
        }
        let cn = std::ffi::CString::new(name.clone()).unwrap();
        let mut v = vec![0u8; 1 << 16];
        let len =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(len >= 0, "{name} of {}", p.display());
        v.truncate(len as usize);
        let le = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
        if name.starts_with("system.posix_acl_") {
            for e in v[4..].chunks_exact_mut(8) {
                let tag = u16::from_le_bytes([e[0], e[1]]);
                if tag == 0x02 || tag == 0x08 {
                    let id = inner(le(&e[4..8]), base);
                    e[4..8].copy_from_slice(&id.to_le_bytes());
                }
            }
        } else if name == "security.capability" && v.len() == 24 && base != 0 {
            // Revision 3 for the VPS's root reads, inside it, as revision 2.
            let root = inner(le(&v[20..24]), base);
            if root == 0 {
                let magic = (le(&v[0..4]) & 0x00FF_FFFF) | 0x0200_0000;
                v.truncate(20);
                v[0..4].copy_from_slice(&magic.to_le_bytes());
            } else {
                v[20..24].copy_from_slice(&root.to_le_bytes());
            }
        }
        out.push((name, v));
    }
    out.sort();
    out
}

/// The data ranges of the file at `p` (None: all of it is data).
fn data_of(p: &Path) -> Option<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(p).unwrap();
    let size = f.metadata().unwrap().len() as i64;
    let mut ranges = Vec::new();
    let mut off = 0i64;
    while off < size {
        // SAFETY: lseeks on a file of ours.
        let data = unsafe { libc::lseek(f.as_raw_fd(), off, libc::SEEK_DATA) };
        if data < 0 || data >= size {
            break;
        }
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) }.min(size);
        ranges.push((data as u64, (hole - data) as u64));
        off = hole;
    }
    (!(size == 0 || ranges == [(0, size as u64)])).then_some(ranges)
}

/// A VPS's files given extended attributes from its host, as its own programs would set them
/// (busybox has no setfattr): a `user.` attribute on a few files and directories, a file
/// capability for the VPS's root (cap_net_raw, as Debian's ping has) and an ACL naming a user
/// and a group of the VPS.
pub(crate) fn attributes(root: &Path, base: u32, rng: &mut Lcg) {
    use std::os::unix::ffi::OsStrExt;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut stack = vec![root.join("srv/w")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        dirs.push(d.clone());
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                files.push(e.path());
            }
        }
    }
    files.sort();
    dirs.sort();
    let set = |p: &Path, name: &str, v: &[u8]| {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        let n = std::ffi::CString::new(name).unwrap();
        // SAFETY: valid C strings and a value of the length given.
        let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        assert_eq!(
            r,
            0,
            "{name} on {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
    };
    if files.is_empty() {
        return;
    }
    for _ in 0..3 {
        let f = &files[rng.next(files.len() as u64) as usize];
        set(f, "user.tag", format!("t{}", rng.next(1000)).as_bytes());
    }
    if let Some(d) = dirs.get(rng.next(dirs.len().max(1) as u64) as usize) {
        set(d, "user.dir", b"\x00\x01binary");
    }
    let f = &files[rng.next(files.len() as u64) as usize];
    let mut cap = (0x0300_0000u32 | 1).to_le_bytes().to_vec();
    for w in [1u32 << 13, 0, 0, 0, base] {
        cap.extend_from_slice(&w.to_le_bytes());
    }
    set(f, "security.capability", &cap);
    let f = &files[rng.next(files.len() as u64) as usize];
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, base + 1000),
        (0x04, 4, u32::MAX),
        (0x08, 4, base + 33),
        (0x10, 6, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    set(f, "system.posix_acl_access", &acl);
}

fn inner(id: u32, base: u32) -> u32 {
    if base == 0 {
        return id;
    }
    match id.checked_sub(base) {
        Some(i) if i < 65536 => i,
        _ => 65534,
    }
}

/// The tree under `root` read from the host, without following a link.
pub(crate) fn tree_of(root: &Path, base: u32) -> BTreeMap<Vec<u8>, Desc> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = BTreeMap::new();
    let mut first_of_ino: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut paths = Vec::new();
    let mut stack = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        paths.push((dir.clone(), rel.clone()));
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(e.file_name().as_bytes());
            if e.file_type().unwrap().is_dir() {
                stack.push((e.path(), r));
            } else {
                paths.push((e.path(), r));
            }
        }
    }
    paths.sort_by(|a, b| a.1.cmp(&b.1));
    for (p, rel) in paths {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_char_device() {
            "char"
        } else {
            "block"
        };
        let group = ft
            .is_file()
            .then(|| first_of_ino.entry(md.ino()).or_insert(rel.clone()).clone());
        out.insert(
            rel,
            Desc {
                kind,
                mode: md.mode() & 0o7777,
                uid: inner(md.uid(), base),
                gid: inner(md.gid(), base),
                mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                size: if ft.is_file() { md.len() } else { 0 },
                content: ft
                    .is_file()
                    .then(|| Sha256::digest(std::fs::read(&p).unwrap()).into()),
                target: ft.is_symlink().then(|| {
                    std::fs::read_link(&p)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec()
                }),
                group,
                xattrs: if ft.is_file() || ft.is_dir() {
                    xattrs_of(&p, base)
                } else {
                    Vec::new()
                },
                data: if ft.is_file() { data_of(&p) } else { None },
            },
        );
    }
    out
}

/// A restore point as the same comparison sees it, its content read back from storage's chunks.
pub(crate) fn tree_of_point(store: &DirStore, m: &Manifest) -> BTreeMap<Vec<u8>, Desc> {
    let mut out = BTreeMap::new();
    let mut first_of_ino: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for e in &m.entries {
        let content = (e.kind == EntryKind::File).then(|| {
            let mut h = Sha256::new();
            for id in &e.chunks {
                h.update(chunks::get(store, id).expect("every chunk of a point is in storage"));
            }
            h.finalize().into()
        });
        let group = (e.kind == EntryKind::File).then(|| {
            first_of_ino
                .entry(e.ino)
                .or_insert(e.path.0.clone())
                .clone()
        });
        out.insert(
            e.path.0.clone(),
            Desc {
                kind: match e.kind {
                    EntryKind::Dir => "dir",
                    EntryKind::File => "file",
                    EntryKind::Symlink => "symlink",
                    EntryKind::Fifo => "fifo",
                    EntryKind::Socket => "socket",
                    EntryKind::CharDevice => "char",
                    EntryKind::BlockDevice => "block",
                },
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                mtime_ns: e.mtime_ns,
                size: e.size,
                content,
                target: e.target.as_ref().map(|t| t.0.clone()),
                group,
                xattrs: {
                    let mut x: Vec<(String, Vec<u8>)> = e
                        .xattrs
                        .iter()
                        .map(|x| (x.name.clone(), x.value.0.clone()))
                        .collect();
                    x.sort();
                    x
                },
                data: e.data.clone(),
            },
        );
    }
    out
}

/// Every difference between two trees, readable.
pub(crate) fn differences(
    want: &BTreeMap<Vec<u8>, Desc>,
    got: &BTreeMap<Vec<u8>, Desc>,
) -> Vec<String> {
    let mut d = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => d.push(format!("missing {}", String::from_utf8_lossy(p))),
            Some(g) if g != w => d.push(format!(
                "differs {}: want {w:?}, got {g:?}",
                String::from_utf8_lossy(p)
            )),
            _ => {}
        }
    }
    for p in got.keys().filter(|p| !want.contains_key(*p)) {
        d.push(format!("extra {}", String::from_utf8_lossy(p)));
    }
    d
}

/// A small deterministic generator, so that a failing workload can be run again from its seed.
pub(crate) struct Lcg(u64);
impl Lcg {
    /// Seeded from `SW_SEED` when set (to run a failed workload again), else from `fallback`;
    /// the seed is printed either way.
    pub(crate) fn seeded(fallback: u64) -> Lcg {
        let seed = std::env::var("SW_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(fallback);
        eprintln!("workload seed {seed} (SW_SEED={seed} runs it again)");
        Lcg(seed)
    }

    pub(crate) fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// A random workload for busybox sh under /srv/w: create, modify, append, truncate, delete,
/// rename across directories (files and directories), hard and symbolic links, chmod, chown.
pub(crate) fn workload(rng: &mut Lcg, ops: usize) -> String {
    let dirs = ["a", "b", "a/deep", "c"];
    let names = ["f1", "f2", "f3", "g", "h", "x y", "caf\u{e9}"];
    let mut s = String::from("cd /srv/w 2>/dev/null || { mkdir -p /srv/w && cd /srv/w; }\n");
    s.push_str("mkdir -p a/deep b c\n");
    for _ in 0..ops {
        let d = dirs[rng.next(dirs.len() as u64) as usize];
        let d2 = dirs[rng.next(dirs.len() as u64) as usize];
        let f = format!("'{d}/{}'", names[rng.next(names.len() as u64) as usize]);
        let g = format!("'{d2}/{}'", names[rng.next(names.len() as u64) as usize]);
        let n = rng.next(100_000);
        let line = match rng.next(17) {
            // Rewritten with the same size and its time put back (as tar or cp -p leave it).
            14 => format!(
                "[ -f {f} ] && touch -r {f} /srv/.ref && n=$(wc -c < {f}) && head -c $n /dev/urandom > {f}.new && cat {f}.new > {f} && rm -f {f}.new && touch -r /srv/.ref {f}"
            ),
            // A sparse file: data after a hole.
            15 => format!(
                "dd if=/dev/urandom of={f} bs=4096 count=1 seek={} 2>/dev/null",
                1 + n % 600
            ),
            // A write through a second name that is gone before the cycle.
            16 => format!("[ -f {f} ] && ln -f {f} /srv/w/.second && echo through-link {n} >> /srv/w/.second && rm -f /srv/w/.second"),
            0 | 1 => format!("printf 'content {n}\\n' > {f}"),
            2 => format!("echo appended {n} >> {f}"),
            3 => format!(
                "dd if=/dev/urandom of={f} bs=1024 count={} 2>/dev/null",
                1 + n % 2500
            ),
            4 => format!(
                "[ -f {f} ] && dd if=/dev/null of={f} bs=1 seek={} 2>/dev/null",
                n % 5000
            ),
            5 => format!("rm -f {f}"),
            6 => format!("mv -f {f} {g}"),
            7 => format!("ln -f {f} {g}"),
            8 => format!("ln -sfn ../{d}/target-{n} {g}"),
            9 => format!(
                "chmod {} {f}",
                ["600", "644", "755", "4755", "2750", "1777"][(n % 6) as usize]
            ),
            10 => format!("chown {}:{} {f}", n % 2000, n % 100),
            11 => format!(
                "mkdir -p '{d}/sub{}' && echo in-sub > '{d}/sub{}/file'",
                n % 3,
                n % 3
            ),
            12 => format!(
                "[ -d '{d}/sub{}' ] && mv '{d}/sub{}' '{d2}/moved{}'",
                n % 3,
                n % 3,
                n % 4
            ),
            _ => format!("rm -rf '{d2}/moved{}'", n % 4),
        };
        s.push_str(&line);
        s.push_str(" 2>/dev/null; true\n");
    }
    s
}

pub(crate) async fn duplo(t: &TestController, c: &reqwest::Client, vid: i64) -> Value {
    get(t, c, &format!("/api/v1/vpses/{vid}/duplo")).await
}

/// Waits until the VPS's newest restore point is past `after`; its status.
pub(crate) async fn point_after(
    t: &TestController,
    c: &reqwest::Client,
    vid: i64,
    after: u64,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = duplo(t, c, vid).await;
        if s["last_cycle"].as_u64().is_some_and(|n| n > after) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "no restore point after {after}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asks for a cycle now and waits for its point.
pub(crate) async fn cycle_now(t: &TestController, c: &reqwest::Client, vid: i64) -> Value {
    let before = duplo(t, c, vid).await["last_cycle"].as_u64().unwrap_or(0);
    request_now(t, c, vid).await;
    point_after(t, c, vid, before).await
}

pub(crate) fn store_of(t: &TestController) -> DirStore {
    DirStore::open(&t.data_dir().join("storage/duplo")).unwrap()
}

/// The newest point in storage equals the VPS's tree now.
pub(crate) fn assert_point_is_tree(store: &DirStore, vid: i64, root: &Path, base: u32) -> Manifest {
    let cycles = points::cycles(store, VpsId(vid)).unwrap();
    let m = points::load(store, VpsId(vid), *cycles.last().unwrap()).unwrap();
    let d = differences(&tree_of(root, base), &tree_of_point(store, &m));
    assert!(
        d.is_empty(),
        "cycle {} is not the tree:\n{}",
        m.cycle,
        d.join("\n")
    );
    m
}

/// The PID of a process on a test host (in its mount namespace) whose arguments `pick` accepts.
fn host_process(
    cluster: &serverware_testhosts::Cluster,
    host: usize,
    pick: impl Fn(&[&[u8]]) -> bool,
) -> Option<i32> {
    let init = cluster.hosts[host].init_pid().unwrap();
    let ns = std::fs::read_link(format!("/proc/{init}/ns/mnt")).ok()?;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        if pick(&args)
            && std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                .ok()
                .as_ref()
                == Some(&ns)
        {
            return Some(pid);
        }
    }
    None
}

/// The PID of the serving agent on a test host (the one the controller started there).
pub(crate) fn agent_pid(cluster: &serverware_testhosts::Cluster, host: usize) -> Option<i32> {
    host_process(cluster, host, |a| {
        a.len() == 1 && a[0].ends_with(b"/serverware-agent")
    })
}

/// The PID of a `rootfs-scan` running on a test host.
fn scan_pid(cluster: &serverware_testhosts::Cluster, host: usize) -> Option<i32> {
    host_process(cluster, host, |a| {
        a.len() > 1 && a[0].ends_with(b"/serverware-agent") && a[1] == b"rootfs-scan"
    })
}

/// Cycles of the host's VPSes only when asked for (a day apart otherwise), so that a test knows
/// what each carries.
async fn on_demand(t: &TestController, admin: &reqwest::Client, host: i64) {
    let r = admin
        .patch(t.url(&format!("/api/v1/hosts/{host}")))
        .json(&json!({"duplo_interval_secs": 86400}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// A test host added to a controller started by the test itself, cycling on demand; its id and
/// the built-in template's.
async fn one_host(
    t: &TestController,
    admin: &reqwest::Client,
    cluster: &serverware_testhosts::Cluster,
) -> (i64, i64) {
    let r = crate::hosts_api::add(t, admin, "node-0", &cluster.hosts[0]).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let hid = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    crate::hosts_api::wait_host(t, admin, hid, "online", |h| h["status"] == "online").await;
    on_demand(t, admin, hid).await;
    let tpl = get(t, admin, "/api/v1/templates").await[0]["id"]
        .as_i64()
        .unwrap();
    (hid, tpl)
}

/// Asks for a cycle now (202).
pub(crate) async fn request_now(t: &TestController, c: &reqwest::Client, vid: i64) {
    let r = c
        .post(t.url(&format!("/api/v1/vpses/{vid}/duplo/now")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

/// Waits until the VPS's duplication reports a failed cycle; its status.
async fn failed(t: &TestController, c: &reqwest::Client, vid: i64, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = duplo(t, c, vid).await;
        if s["failures"].as_u64().unwrap_or(0) > 0 {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn one_vps(
    t: &TestController,
    admin: &reqwest::Client,
    cluster: &serverware_testhosts::Cluster,
    host: i64,
    tpl: i64,
    name: &str,
    last_octet: u8,
) -> (i64, u32) {
    let net = format!("10.77.{}", cluster.subnet);
    let r = post(admin, t.url("/api/v1/vpses"), json!({"name": name, "template_id": tpl, "host_id": host, "ipv4": format!("{net}.{last_octet}"), "memory_limit_bytes": 64 * MIB, "start": true})).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let done = task_done(t, admin, &r.json::<Value>().await.unwrap()).await;
    let vid = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    let v = wait_vps(t, admin, vid, "running", |v| v["state"] == "running").await;
    (vid, v["id_base"].as_u64().unwrap_or(0) as u32)
}

#[actix_web::test]
async fn restore_points_equal_the_vps_tree_with_and_without_the_journal() {
    // No memory for trees between cycles: every cycle reads its VPS's newest point from
    // storage again (as a VPS whose tree the budget let go does), and still carries only what
    // the journal saw.
    let t = TestController::start_with(|c| c.duplo_tree_cache_mb = 0).await;
    let (cluster, t, admin, hosts, tpl) = crate::vps_lifecycle::site_on(1, t).await;
    // Cycles when asked for (a day apart otherwise), so that the test knows what each carries.
    on_demand(&t, &admin, hosts[0]).await;
    let (vid, base) = one_vps(&t, &admin, &cluster, hosts[0], tpl, "dup-1", 70).await;
    let root = cluster.hosts[0].dir.join("lxc/dup-1/rootfs");
    let store = store_of(&t);

    // The first cycle copies everything.
    let s = point_after(&t, &admin, vid, 0).await;
    assert_eq!(s["recent"][0]["full"], true, "{s}");
    assert_point_is_tree(&store, vid, &root, base);

    // A write through a second name of a file, that name gone by the next cycle.
    let (ok, out) = vps_sh(
        &cluster,
        0,
        "dup-1",
        "mkdir -p /d1 /d2 && echo hello > /d1/f",
    );
    assert!(ok, "{out}");
    cycle_now(&t, &admin, vid).await;
    let (ok, out) = vps_sh(
        &cluster,
        0,
        "dup-1",
        "ln /d1/f /d2/g && echo more >> /d2/g && rm /d2/g",
    );
    assert!(ok, "{out}");
    let s = cycle_now(&t, &admin, vid).await;
    assert_eq!(s["recent"][0]["full"], false, "{s}");
    let m = assert_point_is_tree(&store, vid, &root, base);
    let f = m.entries.iter().find(|e| e.path.0 == b"d1/f").unwrap();
    let content: Vec<u8> = f
        .chunks
        .iter()
        .flat_map(|id| chunks::get(&store, id).unwrap())
        .collect();
    assert_eq!(content, b"hello\nmore\n");

    let mut rng = Lcg::seeded(std::process::id() as u64);
    for round in 0..3 {
        let (ok, out) = vps_sh(&cluster, 0, "dup-1", &workload(&mut rng, 80));
        assert!(ok, "{out}");
        attributes(&root, base, &mut rng);
        let s = cycle_now(&t, &admin, vid).await;
        let newest = &s["recent"][0];
        assert_eq!(
            newest["full"], false,
            "round {round}: the journal should carry it: {s}"
        );
        assert!(newest["entries_read"].as_u64().unwrap() < newest["files"].as_u64().unwrap());
        assert_point_is_tree(&store, vid, &root, base);
    }

    // The journal lost: the agent killed; its replacement cannot vouch for what changed while
    // no journal ran, and the next cycle compares in full.
    let pid = agent_pid(&cluster, 0).expect("the host's agent");
    // SAFETY: a process the controller started for this test's host.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let (ok, out) = vps_sh(&cluster, 0, "dup-1", &workload(&mut rng, 80));
    assert!(ok, "{out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent_pid(&cluster, 0).is_none_or(|p| p == pid) {
        assert!(Instant::now() < deadline, "the agent did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    crate::hosts_api::wait_host(&t, &admin, hosts[0], "online", |h| h["status"] == "online").await;
    let s = cycle_now(&t, &admin, vid).await;
    let newest = &s["recent"][0];
    assert_eq!(newest["full"], true, "{s}");
    assert!(s["journal_lost"].is_string(), "{s}");
    // Every entry compared, but only files whose inode changed read again.
    assert!(
        newest["entries_read"].as_u64().unwrap() * 2 < newest["files"].as_u64().unwrap(),
        "{s}"
    );
    assert_point_is_tree(&store, vid, &root, base);
    // And it keeps journaling after that.
    let (ok, out) = vps_sh(&cluster, 0, "dup-1", &workload(&mut rng, 40));
    assert!(ok, "{out}");
    let s = cycle_now(&t, &admin, vid).await;
    assert_eq!(s["recent"][0]["full"], false, "{s}");
    assert_point_is_tree(&store, vid, &root, base);
    assert!(s["journal_lost"].is_null(), "{s}");
    // `/metrics` counts the cycles; no tree was kept between them.
    assert!(
        metric(
            &t,
            &admin,
            "serverware_duplo_cycles_total{result=\"landed\"}"
        )
        .await
            >= 7.0
    );
    assert_eq!(metric(&t, &admin, "serverware_duplo_trees_kept").await, 0.0);

    // The Storage page's totals follow each point, not only the hourly collection: what
    // `GET /storage` says is what storage holds (nothing was pruned, so every chunk is used).
    use serverware::storage::ObjectStore;
    let report = get(&t, &admin, "/api/v1/storage").await;
    let keys = store.list("chunks/").unwrap();
    let stored: u64 = keys
        .iter()
        .map(|k| store.stat(k).unwrap().map_or(0, |(size, _)| size))
        .sum();
    let list = points::list(&store, VpsId(vid)).unwrap();
    let logical: u64 = list
        .iter()
        .map(|p| points::header(&store, p).unwrap().bytes)
        .sum();
    assert_eq!(
        (
            report["chunks_used"].as_u64(),
            report["bytes_stored"].as_u64(),
            report["bytes_logical"].as_u64(),
            report["points"].as_u64()
        ),
        (
            Some(keys.len() as u64),
            Some(stored),
            Some(logical),
            Some(list.len() as u64)
        ),
        "{report}"
    );
}

/// Milliseconds since the epoch of an RFC 3339 time in a status.
fn ms_of(v: &Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[actix_web::test]
async fn a_cycle_that_finds_nothing_changed_lands_no_point_and_still_counts_as_current() {
    let (cluster, t, admin, hosts, tpl) = site(1).await;
    // Scheduled cycles every 2 s (none asked for: an asked-for cycle always lands a point).
    let r = admin
        .patch(t.url(&format!("/api/v1/hosts/{}", hosts[0])))
        .json(&json!({"duplo_interval_secs": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (vid, base) = one_vps(&t, &admin, &cluster, hosts[0], tpl, "same-1", 71).await;
    let root = cluster.hosts[0].dir.join("lxc/same-1/rootfs");
    let store = store_of(&t);
    point_after(&t, &admin, vid, 0).await;

    // Cycles go on finding nothing changed: the newest point stays, and counts as current.
    let deadline = Instant::now() + Duration::from_secs(120);
    let s = loop {
        let s = duplo(&t, &admin, vid).await;
        let (taken, unchanged) = (ms_of(&s["last_taken_at"]), ms_of(&s["unchanged_at"]));
        if let (Some(taken), Some(unchanged)) = (taken, unchanged) {
            if unchanged >= taken + 5000 {
                break s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no cycle found the idle VPS unchanged for 5 s: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let taken = ms_of(&s["last_taken_at"]).unwrap();
    let lag = s["lag_ms"].as_i64().unwrap();
    let age = chrono::Utc::now().timestamp_millis() - taken;
    assert!(
        lag + 4000 <= age,
        "the lag counts from the newest point's read: {s}"
    );
    let cycle = s["last_cycle"].as_u64().unwrap();
    assert_eq!(
        points::cycles(&store, VpsId(vid)).unwrap().last(),
        Some(&cycle),
        "no point landed in storage: {s}"
    );
    // What it vouched for is true: the newest point is the VPS's tree now.
    assert_point_is_tree(&store, vid, &root, base);

    // A change inside: the next scheduled cycle lands a point with it, carried by the journal.
    let (ok, out) = vps_sh(&cluster, 0, "same-1", "echo changed > /root/after");
    assert!(ok, "{out}");
    let s = point_after(&t, &admin, vid, cycle).await;
    assert_eq!(s["recent"][0]["full"], false, "{s}");
    assert!(
        s["unchanged_at"].is_null(),
        "a new point is current by itself: {s}"
    );
    let m = assert_point_is_tree(&store, vid, &root, base);
    assert!(m.entries.iter().any(|e| e.path.0 == b"root/after"));

    // The points' rows keep it too (written in batches), for after a restart.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = get(&t, &admin, &format!("/api/v1/vpses/{vid}/points?limit=1")).await;
        if ms_of(&p[0]["unchanged_until"]).is_some_and(|u| u > ms_of(&p[0]["taken_at"]).unwrap()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the newest point's row never said it was found unchanged: {p}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        metric(
            &t,
            &admin,
            "serverware_duplo_cycles_total{result=\"unchanged\"}"
        )
        .await
            >= 3.0
    );
}

/// A figure of `/metrics` (the line that starts with `name`).
async fn metric(t: &TestController, c: &reqwest::Client, name: &str) -> f64 {
    let text = c
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The tree of point `cycle` of `vid` as stored.
pub(crate) fn point_tree(store: &DirStore, vid: i64, cycle: u64) -> BTreeMap<Vec<u8>, Desc> {
    tree_of_point(store, &points::load(store, VpsId(vid), cycle).unwrap())
}

#[actix_web::test]
async fn a_restore_from_a_random_point_equals_that_point() {
    let (cluster, t, admin, hosts, tpl) = site(2).await;
    let net = format!("10.77.{}", cluster.subnet);
    for h in &hosts {
        on_demand(&t, &admin, *h).await;
    }
    // An interval of 0 or of a year is refused, naming the field.
    for bad in [0u64, 365 * 86400] {
        let r = admin
            .patch(t.url(&format!("/api/v1/hosts/{}", hosts[0])))
            .json(&json!({"duplo_interval_secs": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(r, 422, "invalid").await["field"],
            "duplo_interval_secs"
        );
    }
    let (vid, base) = one_vps(&t, &admin, &cluster, hosts[0], tpl, "dup-r", 80).await;
    let root = cluster.hosts[0].dir.join("lxc/dup-r/rootfs");
    let r = admin
        .get(t.url(&format!("/api/v1/vpses/{vid}/points?limit=0")))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "limit");
    let r = admin
        .post(t.url("/api/v1/vpses/99999/duplo/now"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let store = store_of(&t);
    point_after(&t, &admin, vid, 0).await;
    let mut rng = Lcg::seeded(std::process::id() as u64 ^ 0x5eed);
    for _ in 0..3 {
        let (ok, out) = vps_sh(&cluster, 0, "dup-r", &workload(&mut rng, 60));
        assert!(ok, "{out}");
        attributes(&root, base, &mut rng);
        cycle_now(&t, &admin, vid).await;
    }
    let cycles = points::cycles(&store, VpsId(vid)).unwrap();
    assert_eq!(cycles.len(), 4, "{cycles:?}");
    // Changes after the last point, which the restore must undo.
    let (ok, out) = vps_sh(&cluster, 0, "dup-r", &workload(&mut rng, 60));
    assert!(ok, "{out}");
    let pick = cycles[rng.next(cycles.len() as u64 - 1) as usize];
    eprintln!("restoring point {pick}");

    // Bad input first: an unknown point, a clone without an address, a host without room.
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/restore")),
        json!({"cycle": 999}),
    )
    .await;
    let e = expect_error(r, 422, "invalid").await;
    assert_eq!(e["field"], "cycle", "{e}");
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/restore")),
        json!({"cycle": pick, "name": "x"}),
    )
    .await;
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "ipv4");
    let r = admin
        .patch(t.url(&format!("/api/v1/hosts/{}", hosts[1])))
        .json(&json!({"capacity_memory_bytes": 32 * MIB}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post(&admin, t.url(&format!("/api/v1/vpses/{vid}/restore")), json!({"cycle": pick, "name": "dup-clone", "ipv4": format!("{net}.81"), "host_id": hosts[1]})).await;
    assert_eq!(expect_error(r, 409, "conflict").await["field"], "host_id");
    let r = admin
        .patch(t.url(&format!("/api/v1/hosts/{}", hosts[1])))
        .json(&json!({"capacity_memory_bytes": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // In place: the VPS's tree is the point again, and what its host held did not travel again.
    // (Not started: its init writes its web page at every start.)
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/restore")),
        json!({"cycle": pick, "start": false}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let log = serde_json::to_string(&done["log"]).unwrap();
    assert!(log.contains("files kept as they were"), "{log}");
    let d = differences(&point_tree(&store, vid, pick), &tree_of(&root, base));
    assert!(
        d.is_empty(),
        "the restored tree is not point {pick}:\n{}",
        d.join("\n")
    );
    wait_vps(&t, &admin, vid, "stopped on a connected host", |v| {
        v["state"] == "stopped"
    })
    .await;
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/start")),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    wait_vps(&t, &admin, vid, "running", |v| v["state"] == "running").await;
    // The first cycle after it compares in full (the tree was replaced under the journal).
    let s = cycle_now(&t, &admin, vid).await;
    let first_after = s["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["cycle"].as_u64().unwrap() > 4)
        .min_by_key(|p| p["cycle"].as_u64().unwrap())
        .unwrap();
    assert_eq!(first_after["full"], true, "{s}");
    assert_point_is_tree(&store, vid, &root, base);

    // As a new VPS on the other host: the same tree in its own id range, its own host name.
    let r = post(&admin, t.url(&format!("/api/v1/vpses/{vid}/restore")), json!({"cycle": pick, "name": "dup-clone", "ipv4": format!("{net}.81"), "host_id": hosts[1], "start": false})).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let cid = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    let c = wait_vps(&t, &admin, cid, "stopped", |v| {
        v["observed_state"] == "stopped"
    })
    .await;
    let cbase = c["id_base"].as_u64().unwrap() as u32;
    assert_ne!(cbase, base);
    let mut want = point_tree(&store, vid, pick);
    let mut got = tree_of(&cluster.hosts[1].dir.join("lxc/dup-clone/rootfs"), cbase);
    let hostname = b"etc/hostname".to_vec();
    assert_eq!(
        std::fs::read_to_string(
            cluster.hosts[1]
                .dir
                .join("lxc/dup-clone/rootfs/etc/hostname")
        )
        .unwrap(),
        "dup-clone\n"
    );
    // Its host name is its own, written into /etc (whose time that moves).
    for p in [hostname, b"etc".to_vec()] {
        want.remove(&p);
        got.remove(&p);
    }
    let d = differences(&want, &got);
    assert!(
        d.is_empty(),
        "the clone is not point {pick}:\n{}",
        d.join("\n")
    );
    // Startable once its host is connected (a busy machine can drop a host's connection for a
    // moment; a start then is refused as it should be).
    wait_vps(&t, &admin, cid, "stopped on a connected host", |v| {
        v["state"] == "stopped"
    })
    .await;
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{cid}/start")),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    crate::vps_lifecycle::answers(&format!("{net}.81"), "dup-clone").await;
}

/// Every point in storage loads, and every chunk it names is there and whole.
pub(crate) fn assert_storage_whole(store: &DirStore, vid: i64) -> Vec<u64> {
    let cycles = points::cycles(store, VpsId(vid)).unwrap();
    for c in &cycles {
        let m = points::load(store, VpsId(vid), *c).unwrap();
        for id in m.chunk_ids() {
            chunks::get(store, &id).unwrap_or_else(|e| panic!("point {c} lost chunk {id}: {e}"));
        }
    }
    cycles
}

#[actix_web::test]
async fn a_scan_killed_mid_cycle_leaves_the_last_point_whole() {
    let (cluster, t, admin, hosts, tpl) = site(1).await;
    on_demand(&t, &admin, hosts[0]).await;
    let (vid, base) = one_vps(&t, &admin, &cluster, hosts[0], tpl, "dup-k", 90).await;
    let root = cluster.hosts[0].dir.join("lxc/dup-k/rootfs");
    let store = store_of(&t);
    point_after(&t, &admin, vid, 0).await;
    let before = assert_point_is_tree(&store, vid, &root, base);

    // A big change, so that the scan is still streaming when it is killed.
    let (ok, out) = vps_sh(
        &cluster,
        0,
        "dup-k",
        "dd if=/dev/urandom of=/root/big bs=1M count=96 2>&1 && echo more >> /etc/motd",
    );
    assert!(ok, "{out}");
    request_now(&t, &admin, vid).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        if let Some(p) = scan_pid(&cluster, 0) {
            break p;
        }
        assert!(Instant::now() < deadline, "no scan ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // SAFETY: the scan the controller started on this test's host.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // The cycle fails, with an event, and storage holds exactly the point it had.
    let s = failed(&t, &admin, vid, "the killed cycle was not reported").await;
    assert_eq!(s["last_cycle"], before.cycle, "{s}");
    assert!(s["last_error"].is_string(), "{s}");
    assert_eq!(assert_storage_whole(&store, vid), [before.cycle]);
    let ev = get(
        &t,
        &admin,
        &format!("/api/v1/events?action=duplo.cycle_failed&target_id={vid}"),
    )
    .await;
    assert!(
        !ev["events"].as_array().unwrap().is_empty(),
        "no event for the failed cycle: {ev}"
    );
    // The next cycle carries everything since the last point.
    let s = cycle_now(&t, &admin, vid).await;
    assert_eq!(s["failures"], 0, "{s}");
    assert_point_is_tree(&store, vid, &root, base);
}

#[actix_web::test]
async fn a_controller_killed_mid_commit_leaves_one_whole_point_or_the_next() {
    let cluster = serverware_testhosts::Cluster::create(serverware_testhosts::ClusterOptions {
        hosts: 1,
        ..Default::default()
    })
    .unwrap();
    let mut t = TestController::start_process(None).await;
    let admin = t.admin().await;
    let (hid, tpl) = one_host(&t, &admin, &cluster).await;
    let (vid, base) = one_vps(&t, &admin, &cluster, hid, tpl, "dup-c", 95).await;
    let root = cluster.hosts[0].dir.join("lxc/dup-c/rootfs");
    let store = store_of(&t);
    point_after(&t, &admin, vid, 0).await;
    let mut trees = vec![tree_of(&root, base)];
    assert_point_is_tree(&store, vid, &root, base);
    let mut rng = Lcg::seeded(std::process::id() as u64 ^ 0xc0117);

    for fault in ["duplo:synced", "duplo:committed"] {
        let (ok, out) = vps_sh(&cluster, 0, "dup-c", &workload(&mut rng, 60));
        assert!(ok, "{out}");
        trees.push(tree_of(&root, base));
        // Started again with the kill point: its first cycle dies in its commit.
        t.restart(Some(fault)).await;
        assert!(t.wait_killed().await, "{fault}: not killed");
        let cycles = assert_storage_whole(&store, vid);
        let newest = points::load(&store, VpsId(vid), *cycles.last().unwrap()).unwrap();
        let got = tree_of_point(&store, &newest);
        let is_old = differences(&trees[trees.len() - 2], &got).is_empty();
        let is_new = differences(&trees[trees.len() - 1], &got).is_empty();
        assert!(is_old || is_new, "{fault}: storage holds a mix");
        assert_eq!(is_new, fault == "duplo:committed", "{fault}");
        t.restart(None).await;
        let admin = t.admin().await;
        crate::hosts_api::wait_host(&t, &admin, hid, "online", |h| h["status"] == "online").await;
        let s = cycle_now(&t, &admin, vid).await;
        assert_eq!(s["failures"], 0, "{s}");
        assert_point_is_tree(&store, vid, &root, base);
    }
    t.kill();
}

/// A small filesystem of the test's own, unmounted when the test ends.
struct SmallFs(std::path::PathBuf);
impl SmallFs {
    fn new(bytes: u64) -> SmallFs {
        let d = std::env::temp_dir().join(format!("sw-smallfs-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "sw-test",
                d.to_str().unwrap(),
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot mount a small tmpfs");
        SmallFs(d)
    }
}
impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[actix_web::test]
async fn a_full_storage_disk_fails_the_cycle_and_keeps_every_point() {
    let fs = SmallFs::new(24 << 20);
    let cluster = serverware_testhosts::Cluster::create(serverware_testhosts::ClusterOptions {
        hosts: 1,
        ..Default::default()
    })
    .unwrap();
    let storage = fs.0.join("duplo");
    let t = TestController::start_with(|c| c.storage_dir = storage.clone()).await;
    let admin = t.admin().await;
    let (hid, tpl) = one_host(&t, &admin, &cluster).await;
    let (vid, base) = one_vps(&t, &admin, &cluster, hid, tpl, "dup-f", 96).await;
    let root = cluster.hosts[0].dir.join("lxc/dup-f/rootfs");
    let store = DirStore::open(&storage).unwrap();
    point_after(&t, &admin, vid, 0).await;
    let (ok, out) = vps_sh(&cluster, 0, "dup-f", "echo small > /root/small");
    assert!(ok, "{out}");
    cycle_now(&t, &admin, vid).await;
    let kept = assert_storage_whole(&store, vid);
    let newest = assert_point_is_tree(&store, vid, &root, base);

    // More than the disk holds (random: it does not compress).
    let (ok, out) = vps_sh(
        &cluster,
        0,
        "dup-f",
        "dd if=/dev/urandom of=/root/huge bs=1M count=40 2>&1",
    );
    assert!(ok, "{out}");
    request_now(&t, &admin, vid).await;
    let s = failed(&t, &admin, vid, "a cycle onto a full disk did not fail").await;
    let err = s["last_error"].as_str().unwrap();
    assert!(err.contains("space") || err.contains("No space"), "{err}");
    assert_eq!(s["last_cycle"], newest.cycle, "{s}");
    assert_eq!(assert_storage_whole(&store, vid), kept);
    let ev = get(
        &t,
        &admin,
        &format!("/api/v1/events?action=duplo.cycle_failed&target_id={vid}"),
    )
    .await;
    let ev = &ev["events"][0];
    assert_eq!(ev["severity"], "error", "{ev}");
    drop(t);
    drop(fs);
}
