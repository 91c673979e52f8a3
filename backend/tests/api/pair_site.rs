//! A controller pair, each part of it watched on its own: a real etcd cluster of three deciding
//! who leads, two `serverware` processes. The pair's own replicated PostgreSQL loses no
//! acknowledged write when its leader is killed and never has two primaries; a planned
//! switch-over hands the site over and loses no write; a leader cut off from etcd stops accepting
//! writes before its partner starts (both sampled every 100 ms); the service address follows the
//! leader between two machines; a single controller becomes the first of a pair with all its data
//! and the partner joins it. The whole site on machines of its own is `pair_machines.rs`.

use crate::support::*;
use crate::vps_lifecycle::{get, post};
use serde_json::{json, Value};
use serverware_testhosts::EtcdCluster;
use std::time::{Duration, Instant};

/// The pair's shared parts: etcd, each controller's PostgreSQL port, the storage, the controller
/// keys.
struct Pair {
    etcd: EtcdCluster,
    kept: Option<[u16; 2]>,
    dir: tempfile::TempDir,
    storage: std::path::PathBuf,
}

impl Pair {
    /// A pair that keeps its own replicated database: each controller runs a PostgreSQL server.
    fn keeping_its_database() -> Pair {
        let etcd = EtcdCluster::start(3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        pair_keys(dir.path());
        let port = || serverware_testhosts::free_port().unwrap();
        Pair {
            etcd,
            kept: Some([port(), port()]),
            storage: dir.path().join("storage"),
            dir,
        }
    }

    /// Whether controller `i`'s own PostgreSQL answers as a primary (None: it does not answer).
    fn primary(&self, i: usize) -> Option<bool> {
        is_primary("127.0.0.1", self.kept.unwrap()[i])
    }

    /// [`Pair::primary`] of a server that should answer (see [`answering_primary`]).
    fn answering(&self, i: usize) -> Option<bool> {
        answering_primary("127.0.0.1", self.kept.unwrap()[i])
    }

    /// Controller `i` (0 or 1), asking etcd member `i` only (as on its own machine).
    async fn controller(&mut self, i: usize) -> TestController {
        self.controller_from(i, None).await
    }

    /// [`Pair::controller`], made the pair's first by `pair init --from` a single controller's
    /// database when given.
    async fn controller_from(&mut self, i: usize, init_from: Option<&str>) -> TestController {
        self.member(i, init_from, None).await
    }

    /// Controller `i`, made the first by `pair init --from` or given its keys by `pair join
    /// --from LEADER` with an admin token, when asked.
    async fn member(
        &mut self,
        i: usize,
        init_from: Option<&str>,
        join: Option<(&str, &str)>,
    ) -> TestController {
        let port = self.kept.map(|p| p[i].to_string());
        let extra: Vec<(&str, &str)> = port
            .iter()
            .map(|p| ("SERVERWARE_PAIR_POSTGRES_PORT", p.as_str()))
            .collect();
        TestController::start_pair_member(self.spec(i, &extra, init_from, join)).await
    }

    /// Controller `i` made ready, not started, with the pair's keys (or without, to join).
    fn prepared(&self, i: usize, with_keys: bool) -> TestController {
        let port = self.kept.unwrap()[i].to_string();
        let extra = [("SERVERWARE_PAIR_POSTGRES_PORT", port.as_str())];
        let join = if with_keys { None } else { Some(("", "")) };
        TestController::pair_member(self.spec(i, &extra, None, join))
    }

    /// How controller `i` of this pair is made: its etcd member, the shared storage and keys.
    fn spec<'a>(
        &'a self,
        i: usize,
        extra: &'a [(&'a str, &'a str)],
        init_from: Option<&'a str>,
        join: Option<(&'a str, &'a str)>,
    ) -> PairMember<'a> {
        PairMember {
            name: name(i),
            etcd: std::slice::from_ref(&self.etcd.members[i].client_url),
            database_url: "",
            owns: None,
            storage: self.storage.as_path(),
            keys_from: self.dir.path(),
            at: None,
            extra,
            init_from,
            join,
        }
    }
}

/// What both controllers of a pair hold, in `dir`: the site's keys, the pair's database
/// password (`PAIR_PW`), and a storage directory.
pub(crate) fn pair_keys(dir: &std::path::Path) {
    site_keys(dir);
    std::fs::write(dir.join("postgres_password"), format!("{PAIR_PW}\n")).unwrap();
    std::fs::create_dir_all(dir.join("storage")).unwrap();
}

/// The pair's database password in tests.
pub(crate) const PAIR_PW: &str = "pairSecret0123456789abcd";

/// Whether the pair's PostgreSQL at `host:port` answers as a primary (None: it does not
/// answer).
pub(crate) fn is_primary(host: &str, port: u16) -> Option<bool> {
    use diesel::{Connection, QueryableByName, RunQueryDsl};
    #[derive(QueryableByName)]
    struct R {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        v: bool,
    }
    let url = format!("postgres://postgres:{PAIR_PW}@{host}:{port}/postgres?connect_timeout=2");
    let mut c = diesel::PgConnection::establish(&url).ok()?;
    let r: R = diesel::sql_query("SELECT NOT pg_is_in_recovery() AS v")
        .get_result(&mut c)
        .ok()?;
    Some(r.v)
}

/// [`is_primary`] of a server that should answer: asked again (for up to 30 s) while it does
/// not, as a busy machine may keep a connection waiting past its timeout. None: it never did.
pub(crate) fn answering_primary(host: &str, port: u16) -> Option<bool> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = is_primary(host, port);
        if r.is_some() || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `t` says it stands as `role` (with `leader` leading, when given).
pub(crate) async fn wait_role(t: &TestController, role: &str, leader: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = t.pair_status().await;
        if let Some((r, l)) = &s {
            if r == role && leader.is_none_or(|want| l.as_deref() == Some(want)) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never became {role} (leader {leader:?}): {s:?}",
            t.base
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Records a sample of (old leader, partner) having something (accepting writes, holding the
/// address) and says whether the partner alone has it now. Never both at once; the partner by
/// `deadline`.
fn handed_over(
    seen: &mut Vec<(bool, bool)>,
    now: (bool, bool),
    what: &str,
    deadline: Instant,
) -> bool {
    seen.push(now);
    assert!(!(now.0 && now.1), "both {what} at once: {seen:?}");
    if now.1 && !now.0 {
        return true;
    }
    assert!(
        Instant::now() < deadline,
        "the partner never {what}: {seen:?}"
    );
    false
}

/// The site's controller keys in `dir`, which both controllers of a pair hold.
pub(crate) fn site_keys(dir: &std::path::Path) {
    serverware::keys::load_or_create(dir).unwrap();
    serverware::keys::load_or_create_named(dir, serverware::keys::HOST_KEY_FILE, "serverware-ssh")
        .unwrap();
}

/// Which of the two leads once one does: (leader, standby) indexes.
pub(crate) async fn who_leads(ctl: &[TestController; 2]) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let a = ctl[0].pair_status().await.map(|s| s.0);
        let b = ctl[1].pair_status().await.map(|s| s.0);
        match (a.as_deref(), b.as_deref()) {
            (Some("leader"), Some("standby")) => return (0, 1),
            (Some("standby"), Some("leader")) => return (1, 0),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no leader: {a:?} {b:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn name(i: usize) -> &'static str {
    ["ctl-a", "ctl-b"][i]
}

/// One write to `t` with `token`: whether it was accepted.
async fn writes(c: &reqwest::Client, t: &TestController, token: &str, n: u32) -> bool {
    c.patch(t.url("/api/v1/settings"))
        .bearer_auth(token)
        .json(&json!({ "site_name": format!("site-{n}") }))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[actix_web::test]
async fn a_leader_cut_off_from_etcd_stops_writing_before_its_partner_starts() {
    let mut pair = Pair::keeping_its_database();
    let a = pair.controller(0).await;
    let b = pair.controller(1).await;
    let mut ctl = [a, b];
    let (l, s) = who_leads(&ctl).await;
    let admin = ctl[l].admin().await;
    wait_sync(&ctl[l], &admin, name(s)).await;
    let token = ctl[l].token(&admin, "pair-writer", None).await;
    let c = client().build().unwrap();
    assert!(writes(&c, &ctl[l], &token, 0).await);
    assert!(!writes(&c, &ctl[s], &token, 0).await);
    let leader_pid = ctl[l].pid().unwrap();

    // Cut the leader off from etcd (its only member stops answering), and sample who writes.
    pair.etcd.pause(l);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut n = 0;
    let mut rounds = Vec::new();
    loop {
        n += 1;
        let (wl, ws) = tokio::join!(
            writes(&c, &ctl[l], &token, n),
            writes(&c, &ctl[s], &token, n)
        );
        if handed_over(&mut rounds, (wl, ws), "accepted writes", deadline) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A few more rounds: the old leader stays out.
    for _ in 0..10 {
        n += 1;
        let (wl, ws) = tokio::join!(
            writes(&c, &ctl[l], &token, n),
            writes(&c, &ctl[s], &token, n)
        );
        assert!(!wl && ws, "round {n}: old leader {wl}, new leader {ws}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It restarted itself in place (same process) as the standby, and names the new leader
    // once it hears etcd again.
    assert_eq!(ctl[l].pid(), Some(leader_pid));
    // Its database stopped with its lead: never two primaries.
    assert_eq!((pair.primary(l), pair.answering(s)), (None, Some(true)));
    pair.etcd.resume(l);
    wait_role(&ctl[l], "standby", Some(name(s))).await;
    let admin = ctl[s].admin().await;
    let settings = get(&ctl[s], &admin, "/api/v1/settings").await;
    assert_eq!(settings["site_name"], format!("site-{n}"), "{settings}");
    // Once it hears etcd again, its database follows the new primary's.
    wait_sync(&ctl[s], &admin, name(l)).await;
    assert_eq!(
        (pair.answering(l), pair.answering(s)),
        (Some(false), Some(true))
    );
    let _ = &mut ctl;
}

#[actix_web::test]
async fn a_planned_switch_over_hands_the_site_over_and_loses_nothing() {
    let mut pair = Pair::keeping_its_database();
    let a = pair.controller(0).await;
    wait_role(&a, "leader", Some("ctl-a")).await;
    let admin = a.admin().await;
    // Alone, there is nobody to hand the site to.
    let r = post(&admin, a.url("/api/v1/pair/switchover"), json!({})).await;
    let body = expect_error(r, 409, "conflict").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no standby controller"),
        "{body}"
    );
    let b = pair.controller(1).await;
    let ctl = [a, b];
    wait_role(&ctl[1], "standby", Some("ctl-a")).await;

    // The Controllers view: both present, who leads, the three etcd members answering.
    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        let v = get(&ctl[0], &admin, "/api/v1/pair").await;
        if v["controllers"].as_array().map(Vec::len) == Some(2) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the partner is never listed: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(view["mode"], "pair", "{view}");
    assert_eq!(view["name"], "ctl-a", "{view}");
    // The database: ctl-a's the primary, ctl-b's its synchronous standby.
    let v = wait_sync(&ctl[0], &admin, "ctl-b").await;
    assert_eq!(v["database"]["primary"], "ctl-a", "{v}");
    let roles: Vec<(String, String)> = view["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        vec![
            ("ctl-a".into(), "leader".into()),
            ("ctl-b".into(), "standby".into())
        ]
    );
    let etcd = view["etcd"].as_array().unwrap();
    assert_eq!(etcd.len(), 3, "{view}");
    assert!(etcd.iter().all(|m| m["healthy"] == true), "{view}");
    // A viewer sees it; only an admin switches over.
    let viewer = ctl[0].user_with_role(&admin, "watcher", "viewer").await;
    assert_eq!(get(&ctl[0], &viewer, "/api/v1/pair").await["mode"], "pair");
    let r = post(&viewer, ctl[0].url("/api/v1/pair/switchover"), json!({})).await;
    expect_error(r, 403, "forbidden").await;

    // The switch-over, with both sampled for writes every 100 ms.
    let token = ctl[0].token(&admin, "pair-writer", None).await;
    let c = client().build().unwrap();
    let r = post(&admin, ctl[0].url("/api/v1/pair/switchover"), json!({})).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["to"]["name"], "ctl-b", "{body}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut n, mut last) = (0, 0);
    loop {
        n += 1;
        let (wa, wb) = tokio::join!(
            writes(&c, &ctl[0], &token, n),
            writes(&c, &ctl[1], &token, n)
        );
        assert!(!(wa && wb), "both controllers accepted writes in round {n}");
        if wa || wb {
            last = n;
        }
        if wb {
            break;
        }
        assert!(Instant::now() < deadline, "ctl-b never took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ctl-a stays the standby (it leaves the lead to its partner), and nothing was lost.
    wait_role(&ctl[0], "standby", Some("ctl-b")).await;
    for _ in 0..10 {
        n += 1;
        let (wa, wb) = tokio::join!(
            writes(&c, &ctl[0], &token, n),
            writes(&c, &ctl[1], &token, n)
        );
        assert!(!wa && wb, "round {n}: ctl-a {wa}, ctl-b {wb}");
        last = n;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let admin_b = ctl[1].admin().await;
    assert_eq!(
        get(&ctl[1], &admin_b, "/api/v1/settings").await["site_name"],
        format!("site-{last}")
    );
    let e = get(
        &ctl[1],
        &admin_b,
        "/api/v1/events?action=controller.switchover",
    )
    .await;
    assert_eq!(e["events"][0]["details"]["to"], "ctl-b", "{e}");
    let e = get(
        &ctl[1],
        &admin_b,
        "/api/v1/events?action=controller.takeover",
    )
    .await;
    assert_eq!(e["events"][0]["details"]["previous"], "ctl-a", "{e}");
    // ctl-a's database follows ctl-b's, synchronously.
    let v = wait_sync(&ctl[1], &admin_b, "ctl-a").await;
    assert_eq!(v["database"]["primary"], "ctl-b", "{v}");
    assert_eq!(
        (pair.answering(0), pair.answering(1)),
        (Some(false), Some(true))
    );
}

/// Waits until the leader `t` says the pair's database has `standby` as its synchronous standby
/// (etcd names it, and PostgreSQL says every commit waits for it): the view.
pub(crate) async fn wait_sync(t: &TestController, admin: &reqwest::Client, standby: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get(t, admin, "/api/v1/pair").await;
        let d = &v["database"];
        let sync = d["standbys"].as_array().is_some_and(|s| {
            s.iter()
                .any(|x| x["name"] == standby && x["sync_state"] == "sync")
        });
        if d["synchronous"] == standby && sync {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{standby} never became the synchronous standby: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The number `N` of the site's name `site-N`.
fn site_number(settings: &Value) -> u32 {
    settings["site_name"]
        .as_str()
        .and_then(|s| s.strip_prefix("site-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{settings}"))
}

#[actix_web::test]
async fn the_pairs_own_database_loses_no_acknowledged_write_and_never_has_two_primaries() {
    let mut pair = Pair::keeping_its_database();
    let a = pair.controller(0).await;
    wait_role(&a, "leader", Some("ctl-a")).await;
    let b = pair.controller(1).await;
    let mut ctl = [a, b];
    wait_role(&ctl[1], "standby", Some("ctl-a")).await;
    let admin = ctl[0].admin().await;
    let v = wait_sync(&ctl[0], &admin, "ctl-b").await;
    assert_eq!(v["database"]["primary"], "ctl-a", "{v}");
    assert_eq!(
        (pair.answering(0), pair.answering(1)),
        (Some(true), Some(false))
    );
    let token = ctl[0].token(&admin, "pair-writer", None).await;
    let c = client().build().unwrap();

    // Writes to the leader one after another; it is SIGKILLed between two of them (or during
    // one). Both servers are sampled every 100 ms until the partner accepts writes.
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let writer = {
        let (c, token, url, acked) = (
            c.clone(),
            token.clone(),
            ctl[0].url("/api/v1/settings"),
            acked.clone(),
        );
        tokio::spawn(async move {
            for n in 1.. {
                let ok = c
                    .patch(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "site_name": format!("site-{n}") }))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    return;
                }
                acked.store(n, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    while acked.load(std::sync::atomic::Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ctl[0].kill();
    let _ = writer.await;
    let last = acked.load(std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    loop {
        let now = (pair.primary(0) == Some(true), pair.primary(1) == Some(true));
        seen.push(now);
        assert!(!(now.0 && now.1), "two primaries at once: {seen:?}");
        if writes(&c, &ctl[1], &token, 100_000).await {
            break;
        }
        assert!(Instant::now() < deadline, "ctl-b never took over: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pair.primary(0),
        None,
        "the killed leader's server still answers"
    );
    assert_eq!(pair.answering(1), Some(true));
    // Nothing acknowledged was lost: the last write before the kill was there before ours.
    let admin_b = ctl[1].admin().await;
    let e = get(
        &ctl[1],
        &admin_b,
        "/api/v1/events?action=settings.update&limit=500",
    )
    .await;
    let names: Vec<u32> = e["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|ev| {
            ev["details"]["site_name"]
                .as_str()?
                .strip_prefix("site-")?
                .parse()
                .ok()
        })
        .collect();
    for n in 1..=last {
        assert!(
            names.contains(&n),
            "acknowledged write {n} of {last} is lost: {e}"
        );
    }
    assert_eq!(
        site_number(&get(&ctl[1], &admin_b, "/api/v1/settings").await),
        100_000
    );

    // The old leader comes back by itself as the standby of the new primary: rewound,
    // streaming, synchronous; never a primary again meanwhile.
    ctl[0].restart(None).await;
    wait_role(&ctl[0], "standby", Some("ctl-b")).await;
    let v = wait_sync(&ctl[1], &admin_b, "ctl-a").await;
    assert_eq!(v["database"]["primary"], "ctl-b", "{v}");
    assert_eq!(
        (pair.answering(0), pair.answering(1)),
        (Some(false), Some(true))
    );
    let _ = &mut ctl;
}

/// Whether the test host `i`'s namespace holds `cidr` on its bridge.
fn holds(cluster: &serverware_testhosts::Cluster, i: usize, cidr: &str) -> bool {
    let out = cluster
        .exec_in_netns(i, "ip", &["-o", "-4", "addr", "show", "dev", "br0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {cidr} "))
}

/// Waits until `name` answers at the service address `url`.
pub(crate) async fn until_at_address(url: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while at_address(url).await.as_deref() != Some(name) {
        assert!(
            Instant::now() < deadline,
            "the service address never reached {name}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Who answers at the service address (the name its health gives), if anyone.
async fn at_address(url: &str) -> Option<String> {
    let r = client()
        .build()
        .unwrap()
        .get(format!("{url}/api/v1/health"))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    v["pair"]["name"].as_str().map(str::to_string)
}

/// Two controllers on two machines (test hosts' namespaces) with the site's service address:
/// the leader holds it and answers there; cut off from the network (alive), it gives the address
/// back before its partner takes it (the two sampled every 100 ms, never both); powered off, its
/// partner takes it; the address always reaches whoever leads.
#[actix_web::test]
async fn the_service_address_follows_the_leader() {
    let cluster = serverware_testhosts::Cluster::create(serverware_testhosts::ClusterOptions {
        hosts: 2,
        ..Default::default()
    })
    .unwrap();
    let etcd = EtcdCluster::start_at(3, cluster.gateway).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/site.db", dir.path().display());
    site_keys(dir.path());
    let port = serverware_testhosts::free_port().unwrap();
    let vip = format!("10.77.{}.200", cluster.subnet);
    let cidr = format!("{vip}/24");
    let vip_url = format!("http://{vip}:{port}");
    let mut ctl = Vec::new();
    for i in 0..2 {
        let (ns, ip) = (cluster.hosts[i].netns().to_string(), cluster.hosts[i].addr);
        ctl.push(
            TestController::start_pair_member(PairMember {
                name: name(i),
                etcd: &[etcd.members[i].client_url.clone()],
                database_url: &database_url,
                owns: None,
                storage: &dir.path().join("storage"),
                keys_from: dir.path(),
                at: Some((&ns, ip, port)),
                extra: &[
                    ("SERVERWARE_PAIR_ADDRESS", &cidr),
                    ("SERVERWARE_PAIR_INTERFACE", "br0"),
                ],
                init_from: None,
                join: None,
            })
            .await,
        );
    }
    let ctl: [TestController; 2] = ctl.try_into().ok().unwrap();
    let (l, s) = who_leads(&ctl).await;
    until_at_address(&vip_url, name(l)).await;
    assert!(holds(&cluster, l, &cidr) && !holds(&cluster, s, &cidr));

    // The leader cut off, alive: it gives the address back before its partner takes it.
    cluster.cut_link(l).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    loop {
        let now = (holds(&cluster, l, &cidr), holds(&cluster, s, &cidr));
        if handed_over(&mut seen, now, "held the service address", deadline) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_at_address(&vip_url, name(s)).await;
    // Back on the network, the old leader is the standby and holds nothing.
    cluster.restore_link(l).unwrap();
    wait_role(&ctl[l], "standby", Some(name(s))).await;
    assert!(!holds(&cluster, l, &cidr));

    // The new leader powered off (its process gone, its link down): the other takes over.
    let mut ctl = ctl;
    ctl[s].kill();
    cluster.cut_link(s).unwrap();
    until_at_address(&vip_url, name(l)).await;
    assert!(holds(&cluster, l, &cidr));
    drop(ctl);
    drop(etcd);
}

#[actix_web::test]
async fn a_single_controller_becomes_the_first_of_a_pair_with_all_its_data() {
    // A single controller on SQLite: a user, an API token, a setting, its events.
    let src = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/single.db", src.path().display());
    let single = {
        let url = url.clone();
        TestController::start_with(move |c| c.database_url = url).await
    };
    let admin = single.admin().await;
    single.user_with_role(&admin, "carol", "operator").await;
    let token = single.token(&admin, "kept", None).await;
    let c = client().build().unwrap();
    assert!(writes(&c, &single, &token, 7).await);
    let before = get(&single, &admin, "/api/v1/events?limit=500").await["events"]
        .as_array()
        .unwrap()
        .len();
    drop(single);

    // `pair init` moves it into the first controller's PostgreSQL; that one leads with it.
    let mut pair = Pair::keeping_its_database();
    let a = pair.controller_from(0, Some(&url)).await;
    wait_role(&a, "leader", Some("ctl-a")).await;
    let carol = a.login("carol", "carol-password-123").await;
    assert_eq!(site_number(&get(&a, &carol, "/api/v1/settings").await), 7);
    assert!(writes(&c, &a, &token, 8).await, "the token was not moved");
    let admin = a.admin().await;
    let after = get(&a, &admin, "/api/v1/events?limit=500").await["events"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        after > before,
        "{after} events after the move, {before} before"
    );
    // New rows take ids after the moved ones.
    a.user_with_role(&admin, "dave", "viewer").await;
    // The partner joins with an admin's token (no key copied by hand), copies the database and
    // becomes its synchronous standby. Only an admin hands the keys out.
    let viewer_token = a.token(&admin, "viewer", Some("viewer")).await;
    let r = c
        .get(a.url("/api/v1/pair/join"))
        .bearer_auth(&viewer_token)
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "forbidden").await;
    let admin_token = a.token(&admin, "join", None).await;
    let b = pair.member(1, None, Some((&a.base, &admin_token))).await;
    wait_role(&b, "standby", Some("ctl-a")).await;
    wait_sync(&a, &admin, "ctl-b").await;
    let e = get(&a, &admin, "/api/v1/events?action=controller.join").await;
    assert_eq!(e["events"].as_array().map(Vec::len), Some(1), "{e}");
}

/// What a command printed on standard error, asserting that it failed.
fn refused(out: std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "it was not refused: {}{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// Runs `c` (a controller that should refuse to start) and waits for it to exit.
async fn exits(mut c: std::process::Command) -> std::process::Output {
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the controller did not refuse to start: {:?}",
                child.wait_with_output()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.wait_with_output().unwrap()
}

/// Bad input at set-up: the witness's etcd member down, a second controller claiming a pair
/// that has a leader, a controller started under the leader's name elsewhere, a leader that
/// cannot be reached: each refused with an error naming the part, nothing changed.
#[actix_web::test]
async fn a_pair_set_up_with_a_part_down_or_taken_is_refused_and_changes_nothing() {
    let src = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/single.db", src.path().display());
    drop(
        TestController::start_with({
            let url = url.clone();
            move |c| c.database_url = url
        })
        .await,
    );
    let single = std::fs::read(src.path().join("single.db")).unwrap();
    let mut pair = Pair::keeping_its_database();
    let witness = pair.etcd.members[2].client_url.clone();

    // The witness is down: pair init names it and makes no database.
    pair.etcd.pause(2);
    let a = pair.prepared(0, true);
    let err = refused(
        a.command(None)
            .args(["pair", "init", "--from", &url])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains(&format!("m2 ({witness})")) && err.contains("does not answer"),
        "{err}"
    );
    assert!(!a.data_dir().join("postgres").exists());
    assert_eq!(std::fs::read(src.path().join("single.db")).unwrap(), single);
    pair.etcd.resume(2);
    drop(a);

    // ctl-a leads; ctl-b claiming the pair as its first too is refused, naming ctl-a.
    let a = pair.controller(0).await;
    wait_role(&a, "leader", Some("ctl-a")).await;
    let b = pair.prepared(1, true);
    let err = refused(
        b.command(None)
            .args(["pair", "init", "--from", &url])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("ctl-a leads this site already") && err.contains(&a.base),
        "{err}"
    );
    assert!(!b.data_dir().join("postgres").exists());

    // A controller started elsewhere under ctl-a's name refuses to start, naming the one
    // there; ctl-a goes on leading.
    let mut c = b.command(None);
    c.env("SERVERWARE_PAIR_NAME", "ctl-a");
    let err = refused(exits(c).await);
    assert!(
        err.contains("a controller named ctl-a is already") && err.contains(&a.base),
        "{err}"
    );
    assert!(!b.data_dir().join("postgres").exists());
    wait_role(&a, "leader", Some("ctl-a")).await;

    // A leader that cannot be reached is named; no key is written.
    let joining = pair.prepared(1, false);
    let gone = format!(
        "http://127.0.0.1:{}",
        serverware_testhosts::free_port().unwrap()
    );
    let err = refused(joining.pair_join(&gone, "some-admin-token"));
    assert!(
        err.contains(&format!("cannot reach the leader at {gone}")),
        "{err}"
    );
    assert!(!joining.data_dir().join("controller_ed25519").exists());
    // With the witness down, joining is refused too, naming it.
    let admin = a.admin().await;
    let token = a.token(&admin, "join", None).await;
    pair.etcd.pause(2);
    let err = refused(joining.pair_join(&a.base, &token));
    assert!(err.contains(&format!("m2 ({witness})")), "{err}");
    assert!(!joining.data_dir().join("controller_ed25519").exists());
    pair.etcd.resume(2);
    // Refused before the leader was asked: it handed nothing out.
    let e = get(&a, &admin, "/api/v1/events?action=controller.join").await;
    assert_eq!(e["events"].as_array().map(Vec::len), Some(0), "{e}");
}
