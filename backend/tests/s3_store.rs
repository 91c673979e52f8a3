//! Storage on a real Garage cluster of three (replication factor 3, consistent mode): netDUPLO's
//! cycles land as restore points through the S3 store, one node powered off changes nothing
//! (a write quorum is two), two powered off refuse the cycle with an error and leave no point,
//! and `storage migrate`'s copy moves every point to a directory store and back, each whole.

use serverware::config::S3Config;
use serverware::storage::cycle::{ingest, Terms};
use serverware::storage::{chunks, migrate, points, DirStore, ObjectStore, S3Store};
use serverware_shared::duplo::stream;
use serverware_shared::duplo::{Entry, EntryKind, PathBytes};
use serverware_shared::VpsId;
use serverware_testhosts::GarageCluster;

fn file(path: &str, data: &[u8]) -> Entry {
    Entry {
        path: PathBytes(path.as_bytes().to_vec()),
        kind: EntryKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: 1,
        size: data.len() as u64,
        chunks: vec![chunks::id_of(data)],
        target: None,
        rdev: None,
        ino: 0,
        ctime_ns: 0,
        xattrs: Vec::new(),
        data: None,
    }
}

/// A full cycle's stream: every file's chunk, then the entries.
fn stream_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = Vec::new();
    for (_, data) in files {
        stream::write_chunk(&mut buf, &chunks::id_of(data), data).unwrap();
    }
    let mut entries = vec![Entry {
        kind: EntryKind::Dir,
        size: 0,
        chunks: vec![],
        ..file("", b"")
    }];
    entries.extend(files.iter().map(|(p, d)| file(p, d)));
    stream::write_entries(&mut buf, &entries).unwrap();
    stream::write_end(&mut buf).unwrap();
    buf
}

fn cycle(store: &dyn ObjectStore, cycle: u64, files: &[(&str, &[u8])]) -> std::io::Result<()> {
    let terms = Terms::default();
    let gate = std::sync::RwLock::new(());
    ingest(
        store,
        &gate,
        &terms,
        terms.current(VpsId(9)),
        &mut stream_of(files).as_slice(),
        None,
        VpsId(9),
        cycle,
        cycle as i64 * 1000,
    )
    .map(|_| ())
}

/// Each point's files, read back and checked against their names.
fn contents(store: &dyn ObjectStore) -> Vec<(u64, Vec<Vec<u8>>)> {
    points::list(store, VpsId(9))
        .unwrap()
        .iter()
        .map(|p| {
            let m = points::load_point(store, p).unwrap();
            let files = m
                .entries
                .iter()
                .filter(|e| e.kind == EntryKind::File)
                .map(|e| chunks::get(store, &e.chunks[0]).unwrap())
                .collect();
            (p.cycle, files)
        })
        .collect()
}

#[test]
fn restore_points_on_garage_survive_a_lost_node_and_migrate_both_ways() {
    let mut g = GarageCluster::start(3).unwrap();
    let cfg = S3Config {
        endpoints: g.endpoints(),
        bucket: g.bucket.clone(),
        region: "garage".into(),
        key_id: g.key_id.clone(),
        secret: g.secret.clone(),
        metrics: Vec::new(),
        metrics_token: None,
    };
    let s3 = S3Store::open(cfg.clone()).unwrap();
    assert!(s3.remote().unwrap().contains(&g.bucket));
    cycle(&s3, 1, &[("etc/hostname", b"web-1\n"), ("srv/a", b"first")]).unwrap();
    // The store's own calls: stat, touch, list, delete.
    let k = chunks::key(&chunks::id_of(b"first"));
    let (size, _) = s3.stat(&k).unwrap().unwrap();
    assert!(size > 0);
    assert!(s3.touch(&k).unwrap());
    assert!(!s3.touch("chunks/00/none").unwrap());
    assert_eq!(s3.stat("chunks/00/none").unwrap(), None);
    assert_eq!(
        s3.get("chunks/00/none").unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    s3.put("scratch/x", b"1").unwrap();
    assert_eq!(s3.list("scratch/").unwrap(), ["scratch/x"]);
    s3.delete("scratch/x").unwrap();
    s3.delete("scratch/x").unwrap();
    assert!(s3.list("scratch/").unwrap().is_empty());
    assert!(s3.get("../escape").is_err());

    // One node powered off (the first endpoint, so requests fail over too): cycles go on.
    g.power_off(0);
    cycle(
        &s3,
        2,
        &[("etc/hostname", b"web-1\n"), ("srv/a", b"second")],
    )
    .unwrap();
    assert_eq!(
        contents(&s3),
        vec![
            (1, vec![b"web-1\n".to_vec(), b"first".to_vec()]),
            (2, vec![b"web-1\n".to_vec(), b"second".to_vec()])
        ]
    );
    // Two of three off: no quorum, the cycle is refused and leaves no point.
    g.power_off(1);
    let e = cycle(&s3, 3, &[("srv/a", b"third")]).unwrap_err();
    assert!(!e.to_string().is_empty());
    g.power_on(0).unwrap();
    g.power_on(1).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let listed = loop {
        match points::list(&s3, VpsId(9)) {
            Ok(l) => break l,
            Err(e) if std::time::Instant::now() > deadline => panic!("{e}: {}", g.log(0)),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(250)),
        }
    };
    assert_eq!(listed.iter().map(|p| p.cycle).collect::<Vec<_>>(), [1, 2]);

    // Migrated to a directory store and into a second bucket-less copy back: the same points.
    let d = tempfile::tempdir().unwrap();
    let dir = DirStore::open(d.path()).unwrap();
    let c = migrate::copy_all(&s3, &dir, |_, _| {}).unwrap();
    assert_eq!(c.points, 2);
    assert_eq!(contents(&dir), contents(&s3));
    let again = migrate::copy_all(&s3, &dir, |_, _| {}).unwrap();
    assert_eq!((again.points, again.chunks), (0, 0));
    // And from the directory into S3 after the bucket lost a point: only it is copied.
    let p2 = points::list(&s3, VpsId(9)).unwrap()[1];
    s3.delete(&p2.key()).unwrap();
    let back = migrate::copy_all(&dir, &s3, |_, _| {}).unwrap();
    assert_eq!((back.points, back.points_there), (1, 1));
    assert_eq!(contents(&s3), contents(&dir));
}
