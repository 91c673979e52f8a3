//! Hosts provisioned over the network, on real parts: a QEMU machine with an empty disk boots
//! from the network on a test bridge where the site's DHCP (a dnsmasq in a test host) hands out
//! addresses and only the controller's boot service (dnsmasq in proxy mode) answers for booting.
//! It waits for approval, joins with the static address it was given, comes online, runs a VPS
//! that answers, after a power cycle comes back the same host with its VPS, and is re-imaged onto
//! a newer image. Forged joins are refused.

use crate::support::*;
use crate::vps_lifecycle::{answers, get, post, task_done, wait_vps, MIB};
use reqwest::Client;
use serde_json::{json, Value};
use serverware_testhosts::{Cluster, ClusterOptions, Vm};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The host images `./scripts/test.sh` builds (`serverware image build`) before the suite.
fn images_dir() -> std::path::PathBuf {
    let d = std::env::var_os("SERVERWARE_TEST_IMAGES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/serverware/images")
        });
    let ok = serverware::provision::image::list(&d)
        .into_iter()
        .any(|(_, m)| m.is_ok());
    assert!(
        ok,
        "no host image in {}: ./scripts/test.sh builds it (serverware image build)",
        d.display()
    );
    d
}

/// The site's own DHCP server: dnsmasq handing out addresses inside test host `i`.
struct SiteDhcp {
    child: Child,
    _leases: tempfile::TempDir,
}

impl SiteDhcp {
    fn start(cluster: &Cluster, i: usize) -> SiteDhcp {
        let dir = tempfile::tempdir().unwrap();
        let net = format!("10.77.{}", cluster.subnet);
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                cluster.hosts[i].netns(),
                "dnsmasq",
                "--keep-in-foreground",
            ])
            .args([
                "--port=0",
                "--interface=br0",
                "--bind-interfaces",
                "--pid-file=",
            ])
            .arg(format!("--dhcp-range={net}.100,{net}.150,255.255.255.0,1h"))
            .arg(format!("--dhcp-option=3,{net}.1"))
            .arg(format!(
                "--dhcp-leasefile={}",
                dir.path().join("leases").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (apt install dnsmasq)");
        SiteDhcp {
            child,
            _leases: dir,
        }
    }
}

impl Drop for SiteDhcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ends, also when the test fails, the boot service this test process's controllers started
/// (a dnsmasq whose configuration is under `serverware-boot-<this PID>-<n>`).
struct BootServiceGuard;

impl Drop for BootServiceGuard {
    fn drop(&mut self) {
        let mark = format!("serverware-boot-{}-", std::process::id());
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.starts_with("dnsmasq") && cmd.contains(&mark) {
                // SAFETY: a signal to a process this test's controller started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    }
}

async fn overview(t: &TestController, c: &Client) -> Value {
    get(t, c, "/api/v1/provision").await
}

async fn machine(t: &TestController, c: &Client, mac: &str) -> Option<Value> {
    overview(t, c).await["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mac"] == mac)
        .cloned()
}

/// Waits (a machine under emulation boots slowly: minutes) until `pred` holds.
async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    secs: u64,
    vm: &mut Vm,
    mut pred: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred().await {
        if Instant::now() > deadline || !vm.is_on() {
            let console = vm.console();
            let tail: String = console
                .chars()
                .rev()
                .take(6000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "{what}: not within {secs} s (machine on: {}); its console:\n{tail}",
                vm.is_on()
            );
        }
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn join(t: &TestController, mac: &str, token: &str, key: &str) -> reqwest::Response {
    client()
        .build()
        .unwrap()
        .post(t.url("/boot/join"))
        .json(&json!({"mac": mac, "token": token, "host_key": key, "address": "10.77.0.200"}))
        .send()
        .await
        .unwrap()
}

async fn events_of(t: &TestController, c: &Client, action: &str) -> Vec<Value> {
    get(t, c, &format!("/api/v1/events?action={action}&limit=500")).await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn online_host(t: &TestController, c: &Client, name: &str) -> Option<i64> {
    let hosts = get(t, c, "/api/v1/hosts").await;
    hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name && h["status"] == "online")
        .and_then(|h| h["id"].as_i64())
}

#[actix_web::test]
async fn a_machine_boots_from_the_network_joins_when_approved_and_comes_back_as_itself() {
    let images = images_dir();
    let cluster = Cluster::create(ClusterOptions {
        hosts: 1,
        ..Default::default()
    })
    .unwrap();
    let _dhcp = SiteDhcp::start(&cluster, 0);
    let _boot = BootServiceGuard;
    // The controller's own images directory, holding the newest built image (linked).
    let own = tempfile::tempdir().unwrap();
    let first = link_image(&images, own.path(), None);
    let im = own.path().to_path_buf();
    let t = TestController::start_with(move |c| {
        c.listen = "0.0.0.0:0".parse().unwrap();
        c.images_dir = im;
    })
    .await;
    let admin = t.admin().await;
    let port = t
        .url("/")
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let net = format!("10.77.{}", cluster.subnet);
    let controller_url = format!("http://{}:{port}", cluster.gateway);

    // Settings are checked: a network with host bits is refused, naming the field.
    let r = admin
        .put(t.url("/api/v1/provision/settings"))
        .json(&json!({"enabled": true, "interface": cluster.bridge, "network": format!("{net}.5/24"), "controller_url": controller_url, "allow_unapproved": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "network");
    // The site's DHCP pool (as its dnsmasq hands out) is told: one outside the network is refused.
    let settings = |pool: String| json!({"enabled": true, "interface": cluster.bridge, "network": format!("{net}.0/24"), "controller_url": controller_url, "allow_unapproved": false, "dhcp_pool": pool});
    let r = admin
        .put(t.url("/api/v1/provision/settings"))
        .json(&settings("10.78.0.100-10.78.0.150".into()))
        .send()
        .await
        .unwrap();
    let e = expect_error(r, 422, "invalid").await;
    assert_eq!(e["field"], "dhcp_pool", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not in the hosts' network"),
        "{e}"
    );
    let r = admin
        .put(t.url("/api/v1/provision/settings"))
        .json(&settings(format!("{net}.100-{net}.150")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    added_by_mac_before_it_boots(&t, &admin, &net, cluster.subnet).await;
    let o: Value = r.json().await.unwrap();
    assert!(
        o["boot_service"].as_str().unwrap().starts_with("answering"),
        "{o}"
    );
    assert!(
        o["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["served"] == true),
        "{o}"
    );

    // A machine with an empty disk boots from the network and waits for approval.
    let mac = format!("52:54:00:77:{:02x}:10", cluster.subnet);
    let vmdir = tempfile::tempdir().unwrap();
    let mut vm = Vm::new(
        vmdir.path(),
        &cluster.bridge,
        &format!("swvm{}", cluster.subnet),
        &mac,
        4,
    )
    .unwrap();
    vm.power_on().unwrap();
    until("the machine is listed as waiting", 300, &mut vm, || async {
        machine(&t, &admin, &mac)
            .await
            .is_some_and(|m| m["state"] == "waiting")
    })
    .await;
    assert_eq!(
        get(&t, &admin, "/api/v1/hosts")
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Forged joins: no token was handed out, a malformed one, an unknown MAC.
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhpBl8tKzWAJCDGhUXF3Kz0yB8ozvPOcgB6r1T0dXuF";
    let r = join(&t, &mac, &"0".repeat(64), key).await;
    assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());
    let r = join(&t, &mac, "not-a-token", key).await;
    assert_eq!(r.status(), 422);
    let r = join(&t, "52:54:00:99:99:99", &"a".repeat(64), key).await;
    assert_eq!(r.status(), 403);

    // Approved with a static address (outside the site's DHCP pool), it boots with a token (its
    // iPXE asks again by itself) and joins. An address outside the boot network is refused.
    let approve = t.url(&format!("/api/v1/provision/machines/{mac}/approve"));
    let r = post(
        &admin,
        approve.clone(),
        json!({"name": "pxe-1", "address": "10.78.0.70/24"}),
    )
    .await;
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "address");
    // One inside the site's DHCP pool is refused too, said in an event; nothing changed.
    let r = post(
        &admin,
        approve.clone(),
        json!({"name": "pxe-1", "address": format!("{net}.120/24")}),
    )
    .await;
    let e = expect_error(r, 422, "invalid").await;
    assert_eq!(e["field"], "address", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(&format!("in the site's DHCP pool {net}.100-{net}.150")),
        "{e}"
    );
    let refused = events_of(&t, &admin, "provision.approve_refused").await;
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(refused
        .iter()
        .any(|e| e["message"].as_str().unwrap().contains("DHCP pool")));
    assert_eq!(machine(&t, &admin, &mac).await.unwrap()["state"], "waiting");
    let r = post(
        &admin,
        approve,
        json!({"name": "pxe-1", "address": format!("{net}.70/24"), "gateway": format!("{net}.1")}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // A pool told later that holds the machine's static address is refused, naming it.
    let r = admin
        .put(t.url("/api/v1/provision/settings"))
        .json(&settings(format!("{net}.50-{net}.99")))
        .send()
        .await
        .unwrap();
    let e = expect_error(r, 409, "conflict").await;
    assert_eq!(e["field"], "dhcp_pool", "{e}");
    assert!(e["message"].as_str().unwrap().contains("pxe-1"), "{e}");
    assert_eq!(
        events_of(&t, &admin, "provision.settings_refused")
            .await
            .len(),
        1
    );
    assert_eq!(
        overview(&t, &admin).await["settings"]["dhcp_pool"],
        format!("{net}.100-{net}.150")
    );
    until(
        "the machine joined and its host is online",
        1200,
        &mut vm,
        || async { online_host(&t, &admin, "pxe-1").await.is_some() },
    )
    .await;
    let host_id = online_host(&t, &admin, "pxe-1").await.unwrap();
    let m = machine(&t, &admin, &mac).await.unwrap();
    assert_eq!(
        (m["state"].as_str(), m["host_id"].as_i64()),
        (Some("joined"), Some(host_id)),
        "{m}"
    );
    let h = get(&t, &admin, &format!("/api/v1/hosts/{host_id}")).await;
    assert!(
        h["address"]
            .as_str()
            .is_some_and(|a| a.contains(&format!("{net}.70"))),
        "the static address: {h}"
    );
    let fingerprint = h["fingerprint"].clone();
    assert!(
        fingerprint
            .as_str()
            .is_some_and(|f| f.starts_with("SHA256:")),
        "{h}"
    );

    // Its token, read off its console (the kernel prints its command line), cannot be replayed;
    // a second machine claiming its MAC is refused.
    let console = vm.console();
    let token = console
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sw.token="))
        .expect("the kernel command line on the console")
        .to_string();
    let r = join(&t, &mac, &token, key).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("joined already"));

    // A VPS on it answers.
    let tpl = get(&t, &admin, "/api/v1/templates").await[0]["id"]
        .as_i64()
        .unwrap();
    let ip = format!("{net}.60");
    let r = post(&admin, t.url("/api/v1/vpses"), json!({"name": "web-p", "template_id": tpl, "host_id": host_id, "ipv4": ip, "memory_limit_bytes": 64 * MIB, "start": true})).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let done = task_done(&t, &admin, &r.json().await.unwrap()).await;
    let vid = done["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    wait_vps(&t, &admin, vid, "running", |v| v["state"] == "running").await;
    answers(&ip, "web-p").await;

    // Power cycled, it boots as the same host: same key, its VPS, no new join.
    vm.power_off();
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(&t, &admin, &format!("/api/v1/hosts/{host_id}")).await["status"] == "online" {
        assert!(
            Instant::now() < deadline,
            "the powered-off host is still online"
        );
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
    vm.power_on().unwrap();
    until("the host is online again", 1200, &mut vm, || async {
        let h = get(&t, &admin, &format!("/api/v1/hosts/{host_id}")).await;
        h["status"] == "online" && h["fingerprint"] == fingerprint
    })
    .await;
    assert!(
        !vm.console().contains("sw.token="),
        "a joined machine boots without a token"
    );
    wait_vps(&t, &admin, vid, "running", |v| v["state"] == "running").await;
    answers(&ip, "web-p").await;
    assert_eq!(
        get(&t, &admin, "/api/v1/hosts")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    reimage_to_a_newer_image(
        &t,
        &admin,
        &mut vm,
        &mac,
        host_id,
        own.path(),
        &images,
        &first,
    )
    .await;
    wait_vps(&t, &admin, vid, "running", |v| v["state"] == "running").await;
    answers(&ip, "web-p").await;

    // Every refusal was an event; the machine was seen once and joined once.
    assert!(events_of(&t, &admin, "provision.join_refused").await.len() >= 4);
    assert_eq!(events_of(&t, &admin, "provision.seen").await.len(), 1);
}

/// A machine added by its MAC before it boots: checked as an approval is (a refused address is
/// an event); its first ask for a script boots the image with a join token, its name and static
/// address; forgotten, its task ends failed instead of waiting for a join that cannot come.
async fn added_by_mac_before_it_boots(t: &TestController, admin: &Client, net: &str, subnet: u8) {
    let add = t.url("/api/v1/provision/machines");
    let mac = format!("52:54:00:77:{subnet:02x}:20");
    let r = post(admin, add.clone(), json!({"mac": "52:54:00:77"})).await;
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "mac");
    let r = post(
        admin,
        add.clone(),
        json!({"mac": mac, "name": "pre-1", "address": format!("{net}.130/24")}),
    )
    .await;
    let e = expect_error(r, 422, "invalid").await;
    assert!(e["message"].as_str().unwrap().contains("DHCP pool"), "{e}");
    assert_eq!(
        events_of(t, admin, "provision.approve_refused").await.len(),
        1
    );
    assert!(machine(t, admin, &mac).await.is_none());
    let body = json!({"mac": mac, "name": "pre-1", "address": format!("{net}.71/24"), "gateway": format!("{net}.1")});
    let r = post(admin, add.clone(), body.clone()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let m: Value = r.json().await.unwrap();
    assert_eq!(
        (m["state"].as_str(), m["approved"].as_bool()),
        (Some("approved"), Some(true)),
        "{m}"
    );
    let r = post(admin, add, body).await;
    assert_eq!(expect_error(r, 409, "conflict").await["field"], "mac");

    let script = client()
        .build()
        .unwrap()
        .get(t.url(&format!("/boot/mac/{}", mac.replace(':', "-"))))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for word in [
        "sw.name=pre-1".to_string(),
        format!("sw.address={net}.71/24"),
        format!("sw.gateway={net}.1"),
        "sw.token=".into(),
    ] {
        assert!(script.contains(&word), "{word} not in {script}");
    }
    assert_eq!(machine(t, admin, &mac).await.unwrap()["state"], "booting");
    let r = admin
        .delete(t.url(&format!("/api/v1/provision/machines/{mac}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let tasks = get(t, admin, "/api/v1/tasks").await;
    let task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "host.provision" && x["target_id"] == mac.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no task for {mac}: {tasks}"));
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["error"].as_str().unwrap().contains("forgotten"),
        "{task}"
    );
}

/// Puts the newest image of `from` into `to` (hard links, or copies across file systems) under
/// its own id, or as a newer image `<id>-next` (built a second later: what a rebuild gives).
fn link_image(from: &std::path::Path, to: &std::path::Path, next: Option<&str>) -> String {
    let (id, m) = serverware::provision::image::list(from)
        .into_iter()
        .find_map(|(id, m)| m.ok().map(|m| (id, m)))
        .unwrap();
    let (new_id, built_at) = match next {
        Some(base) => (format!("{base}-next"), m.built_at + 1),
        None => (id.clone(), m.built_at),
    };
    let dir = to.join(&new_id);
    std::fs::create_dir_all(&dir).unwrap();
    for f in serverware::provision::image::FILES {
        let (a, b) = (from.join(&id).join(f), dir.join(f));
        if std::fs::hard_link(&a, &b).is_err() {
            std::fs::copy(&a, &b).unwrap();
        }
    }
    let mut m = m;
    m.id = new_id.clone();
    m.built_at = built_at;
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    new_id
}

/// *Re-image*: refused outside maintenance and while a VPS runs there (unless forced); then the
/// host reboots into the newer image, fetches its root and is back online, the task saying so.
#[allow(clippy::too_many_arguments)]
async fn reimage_to_a_newer_image(
    t: &TestController,
    admin: &Client,
    vm: &mut Vm,
    mac: &str,
    host_id: i64,
    own: &std::path::Path,
    images: &std::path::Path,
    first: &str,
) {
    let m = machine(t, admin, mac).await.unwrap();
    assert_eq!(m["image_id"], first, "{m}");
    let newer = link_image(images, own, Some(first));
    // A newer image is not served to new machines before a host came online on it.
    let image = |o: &Value, id: &str| {
        o["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap()
    };
    let o = overview(t, admin).await;
    assert!(
        image(&o, first)["proven"]
            .as_str()
            .is_some_and(|p| p.contains("pxe-1")),
        "{o}"
    );
    assert_eq!(
        (
            image(&o, first)["served"].as_bool(),
            image(&o, &newer)["served"].as_bool()
        ),
        (Some(true), Some(false)),
        "{o}"
    );
    let url = t.url(&format!("/api/v1/provision/machines/{mac}/reimage"));
    let r = post(admin, url.clone(), json!({})).await;
    assert!(expect_error(r, 409, "conflict").await["message"]
        .as_str()
        .unwrap()
        .contains("maintenance"));
    let r = admin
        .patch(t.url(&format!("/api/v1/hosts/{host_id}")))
        .json(&json!({"maintenance": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Its only host: the VPS stays, and is named.
    let r = post(admin, url.clone(), json!({"image": newer})).await;
    assert!(expect_error(r, 409, "conflict").await["message"]
        .as_str()
        .unwrap()
        .contains("web-p"));
    let r = post(
        admin,
        url.clone(),
        json!({"image": "no-such-image", "force": true}),
    )
    .await;
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "image");
    let r = post(admin, url, json!({"image": newer, "force": true})).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let task = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let path = format!("/api/v1/tasks/{task}");
    until("the re-imaged host is back online", 1200, vm, || async {
        get(t, admin, &path).await["status"] != "running"
    })
    .await;
    let done = get(t, admin, &path).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let log = done["log"].to_string();
    assert!(log.contains(&format!("image {newer}")), "{done:#}");
    let m = machine(t, admin, mac).await.unwrap();
    assert_eq!(m["image_id"], newer.as_str(), "{m}");
    let o = overview(t, admin).await;
    assert_eq!(image(&o, &newer)["served"], true, "{o}");
    // The older image stays while a machine could need it; the newer is the one it boots.
    assert_eq!(
        get(t, admin, &format!("/api/v1/hosts/{host_id}")).await["status"],
        "online"
    );
    let r = admin
        .patch(t.url(&format!("/api/v1/hosts/{host_id}")))
        .json(&json!({"maintenance": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
