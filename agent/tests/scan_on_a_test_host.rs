//! `serverware-agent rootfs-scan` on a real test host: the netDUPLO stream of a VPS's tree reads
//! back whole, with owners as the VPS sees them and its links recorded, never followed.

use serverware_shared::agent::FIRST_ID_BASE;
use serverware_shared::duplo::stream::{self, Frame};
use serverware_shared::duplo::{EntryKind, PathBytes};
use serverware_testhosts::{Cluster, ClusterOptions};
use std::os::unix::fs::{lchown, symlink};
use std::process::Command;

#[test]
fn a_vps_tree_streams_whole_as_the_vps_sees_it() {
    let cluster = Cluster::create(ClusterOptions {
        hosts: 1,
        ..Default::default()
    })
    .unwrap();
    let host = &cluster.hosts[0];
    let agent = host.dir.join("serverware-agent");
    std::fs::copy(env!("CARGO_BIN_EXE_serverware-agent"), &agent).unwrap();
    let root = host.dir.join("lxc/scan-1/rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("srv")).unwrap();
    let base = FIRST_ID_BASE;
    for p in ["", "etc", "srv"] {
        lchown(root.join(p), Some(base), Some(base)).unwrap();
    }
    std::fs::write(root.join("etc/hostname"), b"scan-1\n").unwrap();
    lchown(root.join("etc/hostname"), Some(base), Some(base)).unwrap();
    std::fs::write(root.join("srv/a"), b"same").unwrap();
    std::fs::write(root.join("srv/b"), b"same").unwrap();
    lchown(root.join("srv/a"), Some(base + 1000), Some(base + 1000)).unwrap();
    // A link to a host file: recorded as a link, the host file never read.
    symlink("/etc/shadow", root.join("srv/shadow")).unwrap();

    let pid = host.init_pid().unwrap().to_string();
    let out = Command::new("nsenter")
        .args(["-t", &pid, "-m", "--"])
        .arg(&agent)
        .args(["rootfs-scan", "scan-1", "--ids", &base.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = out.stdout.as_slice();
    let mut chunks = Vec::new();
    let entries = loop {
        match stream::read(&mut r).unwrap() {
            Frame::Chunk(id, data) => chunks.push((id, data)),
            Frame::Entries(e) => break e,
            other => panic!("{other:?} came before the entries"),
        }
    };
    let Frame::Stats(stats) = stream::read(&mut r).unwrap() else {
        panic!("no stats after the entries")
    };
    assert_eq!(stats.files_read, 3, "{stats:?}");
    assert!(!stats.consistent, "a stopped VPS is not frozen: {stats:?}");
    assert_eq!(stream::read(&mut r).unwrap(), Frame::End);
    assert!(r.is_empty());
    // "same" twice is sent once.
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    let by = |p: &str| {
        entries
            .iter()
            .find(|e| e.path == PathBytes(p.as_bytes().to_vec()))
            .unwrap_or_else(|| panic!("{p} missing: {entries:?}"))
    };
    assert_eq!((by("").uid, by("etc/hostname").uid), (0, 0));
    assert_eq!((by("srv/a").uid, by("srv/a").gid), (1000, 1000));
    assert_eq!(by("srv/a").chunks, by("srv/b").chunks);
    let link = by("srv/shadow");
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(link.target, Some(PathBytes(b"/etc/shadow".to_vec())));
    assert!(
        chunks.iter().all(|(_, d)| !d.starts_with(b"root:")),
        "a host file was read"
    );

    // A name that is not a VPS's, or a bad id base, is refused.
    for args in [
        ["rootfs-scan", "../etc", "--ids", "0"],
        ["rootfs-scan", "scan-1", "--ids", "12"],
    ] {
        let out = Command::new("nsenter")
            .args(["-t", &pid, "-m", "--"])
            .arg(&agent)
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
    }
}
