//! Root inside a VPS is a stranger: on real test hosts and real LXC, a VPS's root tries to reach
//! its host, and the host stays untouched.

use crate::support::*;
use crate::vps_lifecycle::{get, post, site, task_done, vps_sh, wait_vps, MIB};
use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;

/// Removes the test's host-side marker, also when the test fails.
struct Marker(std::path::PathBuf);
impl Drop for Marker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn delete(t: &TestController, admin: &reqwest::Client, ids: &[i64]) {
    for id in ids {
        let r = admin
            .delete(t.url(&format!("/api/v1/vpses/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        task_done(t, admin, &r.json::<Value>().await.unwrap()).await;
    }
}

/// Owner, group and mode of each file, as the VPS sees them.
const OWNERS: &str = "cd /srv/owned && for f in *; do stat -c '%n %u:%g %a' \"$f\"; done";

#[actix_web::test]
async fn a_hostile_vps_root_cannot_reach_its_host() {
    let (cluster, t, admin, hosts, tpl) = site(2).await;
    let net = format!("10.77.{}", cluster.subnet);
    // A file of the host: the agent runs as root where this path is the same.
    let marker = Marker(std::env::temp_dir().join(format!("sw-hostile-{}", std::process::id())));
    std::fs::write(&marker.0, "host file\n").unwrap();
    let marker_path = marker.0.to_string_lossy().to_string();

    let r = post(&admin, t.url("/api/v1/vpses"), json!({"name": "tenant", "template_id": tpl, "host_id": hosts[0], "ipv4": format!("{net}.60"), "memory_limit_bytes": 64 * MIB, "start": true})).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let vid = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    let v = wait_vps(&t, &admin, vid, "running", |v| v["state"] == "running").await;
    assert_eq!(v["privileged"], false, "{v}");
    let base = v["id_base"]
        .as_u64()
        .expect("an unprivileged VPS has an id range") as u32;
    assert!(base >= 65536, "{base}");
    let rootfs = cluster.hosts[0].dir.join("lxc/tenant/rootfs");

    // (b) What root makes in the VPS belongs to an unprivileged id on the host.
    let (ok, out) = vps_sh(&cluster, 0, "tenant", "id -u && touch /root/made-by-root");
    assert!(ok && out.trim() == "0", "{out}");
    let md = std::fs::symlink_metadata(rootfs.join("root/made-by-root")).unwrap();
    assert_eq!((md.uid(), md.gid()), (base, base));

    // (c) No host process is visible, no device can be made, no host path reached.
    let (_, out) = vps_sh(
        &cluster,
        0,
        "tenant",
        "cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
    );
    assert!(!out.contains("sshd"), "the VPS sees its host's sshd: {out}");
    let (ok, out) = vps_sh(&cluster, 0, "tenant", "mknod /root/disk b 8 0");
    assert!(!ok, "root in the VPS made a block device: {out}");
    let (_, out) = vps_sh(
        &cluster,
        0,
        "tenant",
        &format!(
            "echo owned > {marker_path}; for p in /proc/[0-9]*/root; do echo owned > $p{marker_path}; done; \
             echo owned > /proc/1/root/../../..{marker_path}; true"
        ),
    );
    assert_eq!(
        std::fs::read_to_string(&marker.0).unwrap(),
        "host file\n",
        "the host file was written: {out}"
    );

    // (d) Files of several owners, a set-uid one among them, as the VPS sees them.
    let (ok, out) = vps_sh(
        &cluster,
        0,
        "tenant",
        "mkdir -p /srv/owned && cd /srv/owned && touch a b c s && chown 1000:1000 a && \
         chown 33:44 b && chown 65534:65534 c && chmod 4755 s && chown 0:0 s && chmod 4755 s",
    );
    assert!(ok, "{out}");
    let (_, owners) = vps_sh(&cluster, 0, "tenant", OWNERS);
    assert!(
        owners.contains("a 1000:1000") && owners.contains("s 0:0 4755"),
        "{owners}"
    );

    // (a) /etc/hostname becomes a link to the host's file; then restart, copy and move.
    let (ok, out) = vps_sh(
        &cluster,
        0,
        "tenant",
        &format!("ln -sf {marker_path} /etc/hostname"),
    );
    assert!(ok, "{out}");
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/restart")),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    wait_vps(&t, &admin, vid, "running again", |v| {
        v["state"] == "running"
    })
    .await;
    assert_eq!(std::fs::read_to_string(&marker.0).unwrap(), "host file\n");

    let r = post(&admin, t.url(&format!("/api/v1/vpses/{vid}/copy")), json!({"name": "tenant-copy", "ipv4": format!("{net}.61"), "host_id": hosts[1], "start": true})).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let log = done["log"].to_string();
    assert!(
        log.contains("shifted"),
        "the copy's ids were not shifted: {log}"
    );
    let cid = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    let c = wait_vps(&t, &admin, cid, "copy running", |v| v["state"] == "running").await;
    let copy_base = c["id_base"].as_u64().unwrap() as u32;
    assert_ne!(copy_base, base, "a copy has an id range of its own");
    assert_eq!(std::fs::read_to_string(&marker.0).unwrap(), "host file\n");
    let (_, copy_owners) = vps_sh(&cluster, 1, "tenant-copy", OWNERS);
    assert_eq!(copy_owners, owners, "the copy's files changed owners");
    let a = std::fs::symlink_metadata(
        cluster.hosts[1]
            .dir
            .join("lxc/tenant-copy/rootfs/srv/owned/a"),
    )
    .unwrap();
    assert_eq!(a.uid(), copy_base + 1000);

    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/move")),
        json!({"host_id": hosts[1]}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    wait_vps(&t, &admin, vid, "running on B", |v| {
        v["state"] == "running" && v["host_id"] == hosts[1]
    })
    .await;
    assert_eq!(std::fs::read_to_string(&marker.0).unwrap(), "host file\n");
    let (_, moved_owners) = vps_sh(&cluster, 1, "tenant", OWNERS);
    assert_eq!(moved_owners, owners, "the moved VPS's files changed owners");
    let (ok, out) = vps_sh(&cluster, 1, "tenant", "id -u && touch /root/after-move");
    assert!(ok && out.trim() == "0", "{out}");
    let md = std::fs::symlink_metadata(
        cluster.hosts[1]
            .dir
            .join("lxc/tenant/rootfs/root/after-move"),
    )
    .unwrap();
    assert_eq!(md.uid(), base, "the moved VPS keeps its id range");

    delete(&t, &admin, &[vid, cid]).await;
}

#[actix_web::test]
async fn a_privileged_vps_is_asked_for_and_shown() {
    let (cluster, t, admin, hosts, tpl) = site(2).await;
    let net = format!("10.77.{}", cluster.subnet);
    let r = post(&admin, t.url("/api/v1/vpses"), json!({"name": "legacy", "template_id": tpl, "host_id": hosts[0], "ipv4": format!("{net}.70"), "memory_limit_bytes": 64 * MIB, "start": true, "privileged": true})).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let vid = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    let v = wait_vps(&t, &admin, vid, "running", |v| v["state"] == "running").await;
    assert_eq!(
        (v["privileged"].clone(), v["id_base"].clone()),
        (json!(true), Value::Null)
    );
    vps_sh(&cluster, 0, "legacy", "touch /root/made-by-root");
    let md = std::fs::symlink_metadata(
        cluster.hosts[0]
            .dir
            .join("lxc/legacy/rootfs/root/made-by-root"),
    )
    .unwrap();
    assert_eq!(md.uid(), 0, "a privileged VPS's root is the host's");
    // Its copy is privileged too.
    let r = post(
        &admin,
        t.url(&format!("/api/v1/vpses/{vid}/copy")),
        json!({"name": "legacy-2", "ipv4": format!("{net}.71"), "host_id": hosts[1]}),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let done = task_done(&t, &admin, &r.json::<Value>().await.unwrap()).await;
    let cid = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    let c = get(&t, &admin, &format!("/api/v1/vpses/{cid}")).await;
    assert_eq!(c["privileged"], true, "{c}");
    delete(&t, &admin, &[vid, cid]).await;
}
