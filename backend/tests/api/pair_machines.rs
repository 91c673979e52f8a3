//! A controller pair on machines of its own: the two controllers and the witness are test hosts
//! (network namespaces on one bridge), each running its own etcd member and Garage node, each
//! controller its own PostgreSQL; two more test hosts run the VPSes. The site's service address
//! moves with the leader. The leader's whole machine is powered off while a writer goes on
//! through the service address and a duplication cycle runs: every acknowledged write and
//! operation is there afterwards and the operation ends once, no VPS stops, every restore point is
//! whole, a host powered off right after is failed over by the new leader; the old leader's
//! machine boots and its controller rejoins as the synchronous standby; then the witness's
//! machine is powered off and the pair goes on.

use crate::netmon::{ha_vps, services, Sampler};
use crate::pair_site::{
    is_primary, name, pair_keys, until_at_address, wait_role, wait_sync, who_leads,
};
use crate::support::*;
use crate::vps_lifecycle::{answers, get, post, task_end, wait_vps, MIB};
use serde_json::{json, Value};
use serverware::storage::{points, tree, ObjectStore, S3Store};
use serverware_shared::VpsId;
use serverware_testhosts::{Cluster, ClusterOptions, EtcdCluster, GarageCluster};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Machines 0 and 1 are the controllers, 2 the witness, 3 and 4 the VPS hosts.
const WITNESS: usize = 2;
const HOSTS: [usize; 2] = [3, 4];

struct Site {
    cluster: Cluster,
    etcd: EtcdCluster,
    garage: GarageCluster,
    /// Each controller's API port and its PostgreSQL port.
    ports: [(u16, u16); 2],
    keys: tempfile::TempDir,
    cidr: String,
    vip_url: String,
}

impl Site {
    fn new() -> Site {
        let cluster = Cluster::create(ClusterOptions {
            hosts: 5,
            ..Default::default()
        })
        .unwrap();
        let places: Vec<_> = (0..3)
            .map(|i| {
                let h = &cluster.hosts[i];
                (h.addr, Some(h.netns().to_string()))
            })
            .collect();
        let etcd = EtcdCluster::start_on(&places).unwrap();
        let garage = GarageCluster::start_on(&places).unwrap();
        let keys = tempfile::tempdir().unwrap();
        pair_keys(keys.path());
        let port = || serverware_testhosts::free_port().unwrap();
        let ports = [(port(), port()), (port(), port())];
        let vip = format!("10.77.{}.200", cluster.subnet);
        Site {
            cidr: format!("{vip}/24"),
            vip_url: format!("http://{vip}:{}", ports[0].0),
            etcd,
            garage,
            ports,
            keys,
            cluster,
        }
    }

    /// Controller `i` on its machine, asking its machine's etcd member, keeping its PostgreSQL
    /// there, its restore points in the three machines' Garage.
    async fn controller(&self, i: usize) -> TestController {
        let h = &self.cluster.hosts[i];
        let g = &self.garage;
        // Both controllers listen on the same port, so the service address reaches either.
        let (api, pg) = (self.ports[0].0, self.ports[i].1);
        let extra: Vec<(&str, String)> = vec![
            // Longer than the 3 s default: this test runs many machines' worth of daemons on
            // one (etcd's members answer late when it is busy, and a lead lost to that is a
            // takeover the test did not ask for). Takeover times are the benchmark's business.
            ("SERVERWARE_PAIR_LEASE_SECS", "8".into()),
            ("SERVERWARE_PAIR_POSTGRES_PORT", pg.to_string()),
            ("SERVERWARE_PAIR_ADDRESS", self.cidr.clone()),
            ("SERVERWARE_PAIR_INTERFACE", "br0".into()),
            ("SERVERWARE_STORAGE_S3_ENDPOINTS", g.endpoints().join(",")),
            ("SERVERWARE_STORAGE_S3_BUCKET", g.bucket.clone()),
            ("SERVERWARE_STORAGE_S3_KEY_ID", g.key_id.clone()),
            ("SERVERWARE_STORAGE_S3_SECRET_KEY", g.secret.clone()),
            ("SERVERWARE_STORAGE_S3_METRICS", g.metrics_urls().join(",")),
        ];
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        TestController::start_pair_member(PairMember {
            name: name(i),
            etcd: &[self.etcd.members[i].client_url.clone()],
            database_url: "",
            owns: None,
            storage: &self.keys.path().join("storage"),
            keys_from: self.keys.path(),
            at: Some((h.netns(), h.addr, api)),
            extra: &extra,
            init_from: None,
            join: None,
        })
        .await
    }

    /// Machine `i` loses power: everything on it stops at once (its controller with the
    /// controller's PostgreSQL, its etcd member and Garage node), its link goes down and what it
    /// held in memory (the service address) is gone.
    fn power_off(&mut self, i: usize, ctl: Option<&mut TestController>) {
        if let Some(c) = ctl {
            c.kill();
        }
        self.etcd.power_off(i);
        self.garage.power_off(i);
        self.cluster.power_off(i).unwrap();
        let _ = self
            .cluster
            .exec_in_netns(i, "ip", &["addr", "del", &self.cidr, "dev", "br0"]);
    }

    /// Machine `i` boots: its link, etcd member and Garage node come back (its controller is
    /// restarted by the caller).
    fn boot(&mut self, i: usize) {
        self.cluster.boot(i).unwrap();
        self.etcd.power_on(i).unwrap();
        self.garage.power_on(i).unwrap();
    }

    /// Whether controller `i`'s PostgreSQL answers as a primary (None: it does not answer).
    fn primary(&self, i: usize) -> Option<bool> {
        is_primary(&self.cluster.hosts[i].addr.to_string(), self.ports[i].1)
    }

    /// [`Site::primary`] of a server that should answer (asked again while it does not).
    fn answering(&self, i: usize) -> Option<bool> {
        crate::pair_site::answering_primary(
            &self.cluster.hosts[i].addr.to_string(),
            self.ports[i].1,
        )
    }

    /// The restore points' store, as the controllers reach it.
    fn store(&self) -> S3Store {
        S3Store::open(serverware::config::S3Config {
            endpoints: self.garage.endpoints(),
            bucket: self.garage.bucket.clone(),
            region: "garage".into(),
            key_id: self.garage.key_id.clone(),
            secret: self.garage.secret.clone(),
            metrics: Vec::new(),
            metrics_token: None,
        })
        .unwrap()
    }
}

/// Every restore point of `vid` is whole: its header, every segment of its tree and every chunk
/// the tree names are in storage. The number of points. Storage that does not answer (it has just
/// lost a node) is asked again for a while, each failure printed; a missing piece fails at once.
fn points_whole(store: &dyn ObjectStore, vid: i64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match points_checked(store, vid) {
            Ok(n) => return n,
            Err(e) if Instant::now() < deadline => {
                eprintln!("storage did not answer (asked again): {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => panic!("storage did not answer for 120 s: {e}"),
        }
    }
}

fn points_checked(store: &dyn ObjectStore, vid: i64) -> std::io::Result<usize> {
    let list = points::list(store, VpsId(vid))?;
    for p in &list {
        match points::load_tree(store, p) {
            Ok((_, t)) => {
                for id in t.chunk_ids() {
                    assert!(
                        tree::chunk_stored(store, id)?,
                        "restore point {} names a chunk storage does not hold",
                        p.key()
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("restore point {} is not whole: {e}", p.key())
            }
            Err(e) => return Err(e),
        }
    }
    Ok(list.len())
}

/// Writes the site's name `site-N` through the service address, one after another until
/// stopped; remembers each write the API acknowledged.
struct Writer {
    acked: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(url: String, token: String) -> Writer {
        let (acked, stop) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
        );
        let (a, s) = (acked.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let c = client().build().unwrap();
            let mut n = 0;
            while !s.load(Ordering::SeqCst) {
                n += 1;
                let ok = c
                    .patch(format!("{url}/api/v1/settings"))
                    .bearer_auth(&token)
                    .json(&json!({ "site_name": format!("site-{n}") }))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    a.lock().unwrap().push(n);
                }
                tokio::time::sleep(Duration::from_millis(if ok { 150 } else { 50 })).await;
            }
        });
        Writer { acked, stop, task }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `more` further writes were acknowledged.
    async fn until_more(&self, more: usize, what: &str) {
        let (from, deadline) = (self.count(), Instant::now() + Duration::from_secs(120));
        while self.count() < from + more {
            assert!(
                Instant::now() < deadline,
                "writes through the service address stopped being accepted {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(self) -> Vec<u32> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// Every site name the events record as written, paging through all of them.
async fn written(t: &TestController, admin: &reqwest::Client) -> Vec<u32> {
    let mut out = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let mut path = "/api/v1/events?action=settings.update&limit=500".to_string();
        if let Some(b) = before {
            path.push_str(&format!("&before={b}"));
        }
        let e = get(t, admin, &path).await;
        out.extend(e["events"].as_array().unwrap().iter().filter_map(|ev| {
            ev["details"]["site_name"]
                .as_str()?
                .strip_prefix("site-")?
                .parse::<u32>()
                .ok()
        }));
        match e["next_before"].as_i64() {
            Some(b) => before = Some(b),
            None => return out,
        }
    }
}

/// Writes and address holding of one controller, sampled every 100 ms: when each acknowledged
/// write began and ended, and when the controller was seen holding the service address.
#[derive(Default)]
struct Seen {
    writes: Vec<(Instant, Instant)>,
    held: Vec<Instant>,
}

/// Samples controller `i` (writes at `url` with `token`, from inside its machine, and whether
/// it holds `cidr`) every 100 ms until `stop`.
fn sample(
    netns: String,
    url: String,
    token: String,
    cidr: String,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Seen>>, std::thread::JoinHandle<()>) {
    let seen: Arc<Mutex<Seen>> = Default::default();
    let shared = seen.clone();
    let thread = std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let t0 = Instant::now();
            let body = format!("{{\"site_name\":\"cut-{n}\"}}");
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &netns, "curl", "-s", "-o", "/dev/null"])
                .args(["-w", "%{http_code}", "-m", "1", "-X", "PATCH"])
                .args(["-H", &format!("Authorization: Bearer {token}")])
                .args(["-H", "Content-Type: application/json", "-d", &body])
                .arg(format!("{url}/api/v1/settings"))
                .output();
            if out.is_ok_and(|o| o.stdout == b"200") {
                shared.lock().unwrap().writes.push((t0, Instant::now()));
            }
            let addr = std::process::Command::new("ip")
                .args([
                    "netns", "exec", &netns, "ip", "-o", "-4", "addr", "show", "dev", "br0",
                ])
                .output();
            if addr.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {cidr} ")))
            {
                shared.lock().unwrap().held.push(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    (seen, thread)
}

/// The leader `l` cut off from the network, alive: sampled from inside each machine every
/// 100 ms, its last acknowledged write ends before the partner's first begins, and it gives the
/// service address back before the partner is seen holding it. Then its link comes back and it
/// is the standby.
async fn cut_off_hands_over(site: &Site, ctl: &[TestController; 2], l: usize, token: &str) {
    let o = 1 - l;
    let stop = Arc::new(AtomicBool::new(false));
    let samplers: Vec<_> = [l, o]
        .iter()
        .map(|i| {
            sample(
                site.cluster.hosts[*i].netns().to_string(),
                ctl[*i].base.clone(),
                token.to_string(),
                site.cidr.clone(),
                stop.clone(),
            )
        })
        .collect();
    // The leader accepts writes from its own machine before it is cut off.
    let deadline = Instant::now() + Duration::from_secs(60);
    while samplers[0].0.lock().unwrap().writes.is_empty() {
        assert!(Instant::now() < deadline, "the leader accepts no write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    site.cluster.cut_link(l).unwrap();
    wait_role(&ctl[o], "leader", Some(name(o))).await;
    until_at_address(&site.vip_url, name(o)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while samplers[1].0.lock().unwrap().writes.is_empty() {
        assert!(Instant::now() < deadline, "the partner accepts no write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut seen = samplers.into_iter().map(|(seen, t)| {
        t.join().unwrap();
        std::mem::take(&mut *seen.lock().unwrap())
    });
    let (old, new) = (seen.next().unwrap(), seen.next().unwrap());
    let (Some(last), Some(first)) = (old.writes.last(), new.writes.first()) else {
        panic!(
            "writes acknowledged: {} by the cut-off leader, {} by its partner",
            old.writes.len(),
            new.writes.len()
        );
    };
    assert!(
        last.1 < first.0,
        "both accepted writes at once: the cut-off leader's last ended {:?} after the partner's first began",
        last.1 - first.0
    );
    if let (Some(gave), Some(took)) = (old.held.last(), new.held.first()) {
        assert!(gave < took, "both held the service address at once");
    }
    site.cluster.restore_link(l).unwrap();
    wait_role(&ctl[l], "standby", Some(name(o))).await;
}

#[actix_web::test]
async fn the_leaders_machine_powered_off_the_pair_carries_the_site_on() {
    let mut site = Site::new();
    let mut ctl = [site.controller(0).await, site.controller(1).await];
    let (l, s) = who_leads(&ctl).await;
    wait_role(&ctl[s], "standby", Some(name(l))).await;
    until_at_address(&site.vip_url, name(l)).await;

    // The standby serves nothing but its health, and says where the leader is.
    let r = ctl[s]
        .anon()
        .get(ctl[s].url("/api/v1/vpses"))
        .send()
        .await
        .unwrap();
    let body = expect_error(r, 503, "standby").await;
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains(name(l)) && msg.contains(&ctl[l].base),
        "the refusal does not name the leader and its address: {msg}"
    );

    // The leader runs the site: two hosts, an HA VPS with a restore point; its database has
    // the partner as the synchronous standby.
    let admin = ctl[l].admin().await;
    wait_sync(&ctl[l], &admin, name(s)).await;
    let hosts = crate::vps_lifecycle::hosts_at(&ctl[l], &admin, &site.cluster, &HOSTS).await;
    let tpl = get(&ctl[l], &admin, "/api/v1/templates").await[0]["id"]
        .as_i64()
        .unwrap();
    let net = format!("10.77.{}", site.cluster.subnet);
    let ha_ip = format!("{net}.61");
    let ha = ha_vps(&ctl[l], &admin, hosts[0], tpl, "pair-ha", &ha_ip).await;
    answers(&ha_ip, "pair-ha").await;
    let first = crate::duplo::cycle_now(&ctl[l], &admin, ha).await["last_cycle"]
        .as_u64()
        .unwrap();
    services(&ctl[l], &admin, ha, true).await;
    let context = wait_vps(&ctl[l], &admin, ha, "sampled", |v| {
        v["live"]["init_pid"].is_number()
    })
    .await["live"]["init_pid"]
        .clone();
    let sampler = Sampler::start(&site.cluster, "pair-ha");
    let token = ctl[l].token(&admin, "pair-writer", None).await;
    let writer = Writer::start(site.vip_url.clone(), token.clone());
    writer.until_more(5, "before the power-off").await;

    // An operation the leader acknowledged and a duplication cycle under way, then the leader's
    // machine loses power.
    let r = post(
        &admin,
        ctl[l].url("/api/v1/vpses"),
        json!({
            "name": "pair-new", "template_id": tpl, "host_id": hosts[1],
            "ipv4": format!("{net}.62"), "memory_limit_bytes": 64 * MIB, "start": true
        }),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let task: Value = r.json().await.unwrap();
    crate::duplo::request_now(&ctl[l], &admin, ha).await;
    site.power_off(l, Some(&mut ctl[l]));
    let off = Instant::now();

    // The partner takes over: it leads, its database is the primary, the service address
    // reaches it and accepts writes again.
    wait_role(&ctl[s], "leader", Some(name(s))).await;
    until_at_address(&site.vip_url, name(s)).await;
    writer.until_more(3, "after the takeover").await;
    eprintln!(
        "the leader's machine powered off → writes at the service address: {:?}",
        off.elapsed()
    );
    assert_eq!(site.answering(s), Some(true));
    assert_eq!(
        site.primary(l),
        None,
        "the powered-off machine's database answers"
    );
    let admin = ctl[s].admin().await;

    // The acknowledged operation is there and ends, once.
    let t = task_end(&ctl[s], &admin, &task).await;
    assert_eq!(t["status"], "succeeded", "{t:#}");
    let new_id = t["target_id"].as_str().unwrap().parse::<i64>().unwrap();
    wait_vps(&ctl[s], &admin, new_id, "running", |v| {
        v["state"] == "running"
    })
    .await;
    answers(&format!("{net}.62"), "pair-new").await;
    let on: Vec<_> = HOSTS
        .iter()
        .filter(|h| site.cluster.hosts[**h].dir.join("lxc/pair-new").exists())
        .collect();
    assert_eq!(on, vec![&HOSTS[1]], "the created VPS is on {on:?}");
    // The HA VPS never stopped: same container, same init.
    let v = wait_vps(&ctl[s], &admin, ha, "running on its host", |v| {
        v["state"] == "running" && v["host_id"] == hosts[0] && v["live"]["init_pid"].is_number()
    })
    .await;
    assert_eq!(
        v["live"]["init_pid"], context,
        "the HA VPS was restarted: {v}"
    );
    let seen = sampler.finish();
    assert!(
        seen.iter().all(|(_, on)| on == &vec![HOSTS[0]]),
        "the HA VPS stopped during the takeover: {seen:?}"
    );
    // The cycle under way at the power-off is whole or was never a point; the new leader's next
    // cycle lands; every point in storage is whole (the old leader's Garage node is down).
    let last = crate::duplo::duplo(&ctl[s], &admin, ha).await["last_cycle"]
        .as_u64()
        .unwrap();
    assert!(last >= first, "restore points went back: {first} → {last}");
    crate::duplo::cycle_now(&ctl[s], &admin, ha).await;
    let n = points_whole(&site.store(), ha);
    assert!(n >= 2, "{n} restore points");
    // One takeover event, with its timeline.
    let e = get(&ctl[s], &admin, "/api/v1/events?action=controller.takeover").await;
    let list = e["events"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{e}");
    assert_eq!(list[0]["details"]["previous"], name(l), "{e}");
    assert_eq!(list[0]["details"]["hosts_online"], 2, "{e}");
    // Controllers names the storage node that went with the old leader; the others say how far
    // behind they are.
    let v = get(&ctl[s], &admin, "/api/v1/pair").await;
    for (i, n) in v["storage"].as_array().unwrap().iter().enumerate() {
        assert_eq!(n["endpoint"], site.garage.endpoints()[i], "{v}");
        assert_eq!(n["answers"], i != l, "{v}");
        assert_eq!(n["resync_queue"].is_u64(), i != l, "{v}");
    }

    // A host powered off right after the takeover is failed over by the new leader, from the
    // restore points two Garage nodes hold.
    site.cluster.power_off(HOSTS[0]).unwrap();
    wait_vps(&ctl[s], &admin, ha, "running on the other host", |v| {
        v["host_id"] == hosts[1] && v["state"] == "running"
    })
    .await;
    answers(&ha_ip, "pair-ha").await;

    // The old leader's machine boots; its controller comes back as the standby, its database
    // rewound and synchronous again.
    site.boot(l);
    ctl[l].restart(None).await;
    wait_role(&ctl[l], "standby", Some(name(s))).await;
    wait_sync(&ctl[s], &admin, name(l)).await;
    assert_eq!(site.answering(l), Some(false));
    // Its storage node answers again: Controllers shows each node with its resync queue.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get(&ctl[s], &admin, "/api/v1/pair").await;
        let nodes = v["storage"].as_array().unwrap();
        assert_eq!(nodes.len(), 3, "{v}");
        if nodes
            .iter()
            .all(|n| n["answers"] == true && n["resync_queue"].is_u64())
        {
            break;
        }
        assert!(Instant::now() < deadline, "a storage node stays away: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The leader cut off from the network (alive) hands the site back to its partner, never
    // both accepting writes or holding the address; back, it is the standby, synchronous again.
    cut_off_hands_over(&site, &ctl, s, &token).await;
    let (s, l) = (l, s);
    let admin = ctl[s].admin().await;
    wait_sync(&ctl[s], &admin, name(l)).await;

    // The witness's machine powered off: two etcd members and two Garage nodes of three, the
    // pair goes on: writes accepted at the service address, one leader, cycles land. (etcd
    // elects a leader of its own again if the witness's member led it; a lease renewal that
    // misses that window moves the lead to the partner, a takeover like any other.)
    site.power_off(WITNESS, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(site.etcd.healthy(0) && site.etcd.healthy(1)) {
        assert!(Instant::now() < deadline, "etcd never had a leader again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.until_more(10, "with the witness powered off").await;
    let (now, other) = who_leads(&ctl).await;
    wait_role(&ctl[other], "standby", Some(name(now))).await;
    if now != s {
        eprintln!("the lead moved to {} while etcd elected anew", name(now));
    }
    let admin = ctl[now].admin().await;
    crate::duplo::cycle_now(&ctl[now], &admin, ha).await;

    // Nothing acknowledged was lost.
    let acked = writer.finish().await;
    let there = written(&ctl[now], &admin).await;
    let lost: Vec<_> = acked.iter().filter(|n| !there.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes are lost: {lost:?}",
        lost.len(),
        acked.len()
    );
    eprintln!(
        "{} writes acknowledged through the service address, none lost",
        acked.len()
    );
    let _ = &mut ctl;
}
