//! Controller pair takeover benchmark: two release controllers of a pair keeping their own
//! replicated database (a PostgreSQL server each, the leader's the primary, the partner's its
//! synchronous standby) and sharing one storage, an etcd cluster of three (Debian
//! `etcd-server`), two test hosts with an HA VPS. By default the pair is on machines of its own:
//! the controllers and the witness are test hosts (namespaces on one bridge), each with its etcd
//! member, and the leader holds the site's service address; each round powers the leader's
//! machine off (its controller and PostgreSQL, its etcd member, its link, its address gone) and
//! times power-off → a write acknowledged at the service address; the machine boots and its
//! controller comes back as the synchronous standby. With `--kill`, everything is on loopback
//! and each round SIGKILLs the leader's process and times kill → the partner acknowledging a
//! write. A writer tries a settings change every 20 ms at each controller (and the service
//! address). Printed: p50 / p99 over the rounds, the writes acknowledged and any lost (the
//! newest acknowledged value must be what the new leader reads), writes both controllers
//! acknowledged (must be none), the HA VPS's longest silence (sampled every 100 ms over HTTP) and
//! whether its init changed, beside Patroni's documented defaults.
//!
//! Usage: takeover-bench [--rounds N] [--lease S] [--kill] (scripts/bench.sh takeover)

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use serverware_bench::*;
use serverware_testhosts::{Cluster, ClusterOptions, EtcdCluster};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One controller of the pair: its process, address and data directory.
struct Member {
    name: String,
    url: String,
    env: Vec<(String, String)>,
    dir: PathBuf,
    /// The test host's network namespace it runs in (its machine), if not this machine's.
    netns: Option<String>,
    child: Option<Child>,
}

impl Member {
    fn spawn(&mut self) -> Result<()> {
        let bin = std::env::current_exe()?.with_file_name("serverware");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("controller.log"))?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("cannot start the controller")?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where a controller runs: its machine's namespace, address and the API port (one port for
/// both, so that the service address reaches either), and the site's service address.
struct Place<'a> {
    netns: &'a str,
    ip: Ipv4Addr,
    port: u16,
    address: &'a str,
}

fn member(
    name: &str,
    etcd: &str,
    shared: &Path,
    keys: &Path,
    place: Option<&Place>,
) -> Result<Member> {
    let dir = shared.join(name);
    std::fs::create_dir_all(&dir)?;
    // The pair's controller key and database password, held by both.
    for f in ["controller_ed25519", "postgres_password"] {
        std::fs::copy(keys.join(f), dir.join(f))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o600))?;
    }
    let (url, listen) = match place {
        Some(p) => (
            format!("http://{}:{}", p.ip, p.port),
            format!("0.0.0.0:{}", p.port),
        ),
        None => {
            let port = free_port()?;
            (
                format!("http://127.0.0.1:{port}"),
                format!("127.0.0.1:{port}"),
            )
        }
    };
    let lease = arg("--lease", 3)?.to_string();
    let mut env = vec![
        ("SERVERWARE_CONFIG", "/dev/null".to_string()),
        ("SERVERWARE_LISTEN", listen),
        ("SERVERWARE_PAIR_URL", url.clone()),
        ("SERVERWARE_SSH_LISTEN", "off".into()),
        ("SERVERWARE_DATA_DIR", dir.display().to_string()),
        // The pair keeps its own replicated database: a PostgreSQL server per controller.
        ("SERVERWARE_PAIR_POSTGRES_PORT", free_port()?.to_string()),
        (
            "SERVERWARE_STORAGE_DIR",
            shared.join("storage").display().to_string(),
        ),
        (
            "SERVERWARE_STATIC_DIR",
            dir.join("no-dashboard").display().to_string(),
        ),
        ("SERVERWARE_ADMIN_PASSWORD", ADMIN_PW.into()),
        (
            "SERVERWARE_TEMPLATES_DIR",
            shared.join("templates").display().to_string(),
        ),
        ("SERVERWARE_LOG", "warn".into()),
        ("SERVERWARE_PAIR_ETCD", etcd.into()),
        ("SERVERWARE_PAIR_NAME", name.into()),
        ("SERVERWARE_PAIR_LEASE_SECS", lease),
        (
            "SERVERWARE_AGENT_BIN",
            std::env::current_exe()?
                .with_file_name("serverware-agent")
                .display()
                .to_string(),
        ),
    ];
    if let Some(p) = place {
        env.push(("SERVERWARE_PAIR_ADDRESS", p.address.to_string()));
        env.push(("SERVERWARE_PAIR_INTERFACE", "br0".into()));
    }
    Ok(Member {
        name: name.into(),
        url,
        env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        dir,
        netns: place.map(|p| p.netns.to_string()),
        child: None,
    })
}

async fn status(url: &str) -> Option<String> {
    let r = awc::Client::default()
        .get(format!("{url}/api/v1/health"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .ok();
    let v: Value = r?.json().await.ok()?;
    v["pair"]["role"].as_str().map(str::to_string)
}

async fn until_role(m: &Member, role: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while status(&m.url).await.as_deref() != Some(role) {
        if Instant::now() > deadline {
            bail!("{} never became {role}", m.name);
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// One write at `url`: the settings' site name set to `n`; whether it was acknowledged. The
/// answer is read whole, so that its connection can serve the next write.
async fn write(client: &awc::Client, url: &str, token: &str, n: u64) -> bool {
    let r = client
        .patch(format!("{url}/api/v1/settings"))
        .bearer_auth(token)
        // Short: a write that hangs on a powered-off controller holds up the round's others.
        .timeout(Duration::from_millis(300))
        .send_json(&json!({ "site_name": format!("w{n}") }))
        .await;
    match r {
        Ok(mut r) => {
            let ok = r.status().is_success();
            ok && r.body().await.is_ok()
        }
        Err(_) => false,
    }
}

fn main() -> Result<()> {
    let rounds = arg("--rounds", 10)?;
    actix_rt::System::new().block_on(run(rounds))
}

/// The machines the pair runs on: test hosts (the VPSes' and, powering off, the controllers' and
/// the witness's), etcd, and the service address when the pair has machines of its own.
struct Rig {
    cluster: Cluster,
    etcd: EtcdCluster,
    /// The service address (CIDR) and its URL, powering machines off.
    vip: Option<(String, String)>,
    /// The test hosts the VPSes run on.
    hosts_at: [usize; 2],
}

impl Rig {
    fn new(kill: bool) -> Result<Rig> {
        if kill {
            return Ok(Rig {
                cluster: Cluster::create(ClusterOptions {
                    hosts: 2,
                    ..Default::default()
                })?,
                etcd: EtcdCluster::start(3)?,
                vip: None,
                hosts_at: [0, 1],
            });
        }
        let cluster = Cluster::create(ClusterOptions {
            hosts: 5,
            ..Default::default()
        })?;
        let places: Vec<_> = (0..3)
            .map(|i| {
                let h = &cluster.hosts[i];
                (h.addr, Some(h.netns().to_string()))
            })
            .collect();
        let etcd = EtcdCluster::start_on(&places)?;
        let ip = format!("10.77.{}.200", cluster.subnet);
        Ok(Rig {
            cluster,
            etcd,
            vip: Some((format!("{ip}/24"), ip)),
            hosts_at: [3, 4],
        })
    }

    /// Controller `i`'s machine loses power (or, killing, only its process ends).
    fn power_off(&mut self, i: usize, m: &mut Member) -> Result<()> {
        m.kill();
        if let Some((cidr, _)) = &self.vip {
            self.etcd.power_off(i);
            self.cluster.power_off(i)?;
            // What the machine held in memory is gone with it.
            let _ = self
                .cluster
                .exec_in_netns(i, "ip", &["addr", "del", cidr, "dev", "br0"]);
        }
        Ok(())
    }

    /// Controller `i`'s machine boots (its controller is started by the caller).
    fn boot(&mut self, i: usize) -> Result<()> {
        if self.vip.is_some() {
            self.cluster.boot(i)?;
            self.etcd.power_on(i)?;
        }
        Ok(())
    }
}

async fn run(rounds: u64) -> Result<()> {
    let lease = arg("--lease", 3)?;
    let kill = std::env::args().any(|a| a == "--kill");
    println!(
        "controller pair takeover benchmark: etcd of three, two controllers (lease {lease} s), \
         two test hosts, one HA VPS; {rounds} {}",
        if kill {
            "leader processes killed (all on loopback)"
        } else {
            "power-offs of the leader's machine (controllers and witness on machines of their own, writes at the service address)"
        }
    );
    let mut rig = Rig::new(kill)?;
    let port = free_port()?;
    let shared = std::env::temp_dir().join(format!("serverware-takeover-{}", std::process::id()));
    std::fs::create_dir_all(shared.join("storage"))?;
    let _cleanup = Cleanup(shared.clone());
    // The pair's controller key, made once and held by both.
    let keys = shared.join("keys");
    std::fs::create_dir_all(&keys)?;
    let ok = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "serverware-controller",
            "-f",
        ])
        .arg(keys.join("controller_ed25519"))
        .status()?
        .success();
    if !ok {
        bail!("ssh-keygen failed");
    }
    let mut pw = [0u8; 18];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut pw)?;
    let pw: String = pw.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(keys.join("postgres_password"), format!("{pw}\n"))?;
    let place = |i: usize| {
        rig.vip.as_ref().map(|(cidr, _)| Place {
            netns: rig.cluster.hosts[i].netns(),
            ip: rig.cluster.hosts[i].addr,
            port,
            address: cidr,
        })
    };
    let mut m = [
        member(
            "ctl-a",
            &rig.etcd.members[0].client_url,
            &shared,
            &keys,
            place(0).as_ref(),
        )?,
        member(
            "ctl-b",
            &rig.etcd.members[1].client_url,
            &shared,
            &keys,
            place(1).as_ref(),
        )?,
    ];
    let vip_url = rig
        .vip
        .as_ref()
        .map(|(_, ip)| format!("http://{ip}:{port}"));
    m[0].spawn()?;
    until_role(&m[0], "leader").await?;
    m[1].spawn()?;
    until_role(&m[1], "standby").await?;
    let r = measure(&mut m, rounds, &mut rig, vip_url).await;
    if r.is_err() {
        for x in &m {
            let log = std::fs::read_to_string(x.dir.join("controller.log")).unwrap_or_default();
            eprintln!("{} log (last lines):", x.name);
            for l in log
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                eprintln!("  {l}");
            }
        }
    }
    drop(m);
    drop(rig);
    r
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until the leader says `standby`'s database is its synchronous standby.
async fn until_synchronous(api: &Api, standby: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok((_, v)) = api.call("GET", "/pair", None).await {
            if v["database"]["synchronous"] == standby {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{standby}'s database never became the synchronous standby");
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Serving and API at whichever controller leads.
async fn leader_api(m: &[Member; 2]) -> Result<(usize, Api)> {
    let l = if status(&m[0].url).await.as_deref() == Some("leader") {
        0
    } else {
        1
    };
    wait_serving(&m[l].url).await?;
    Ok((l, admin_api_at(&m[l].url).await?))
}

async fn wait_serving(url: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = awc::Client::default()
            .get(format!("{url}/api/v1/health"))
            .send()
            .await
            .ok()
            .is_some_and(|r| r.status().is_success());
        if ok && status(url).await.as_deref() == Some("leader") {
            let r = awc::Client::default()
                .post(format!("{url}/api/v1/auth/login"))
                .send_json(&json!({}))
                .await;
            // Serving the API (not the standby's 503): a bad login is refused as such.
            if r.is_ok_and(|r| r.status().as_u16() != 503) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} never served");
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The same API token at the other controller of the pair (tokens live in the site's database).
fn at(api: &Api, url: &str) -> Api {
    Api {
        client: api.client.clone(),
        base: url.to_string(),
        token: api.token.clone(),
    }
}

/// Every acknowledged write: when, at which controller, its number.
type Acks = Arc<Mutex<Vec<(Instant, usize, u64)>>>;

/// Writes every 20 ms at both controllers (only the leader may acknowledge) and at the service
/// address, if any, until `stop`; counts the rounds in `tried`.
fn spawn_writer(
    urls: Vec<String>,
    token: String,
    acks: Acks,
    tried: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    actix_rt::spawn(async move {
        let client = awc::Client::builder()
            .connector(awc::Connector::new().conn_keep_alive(Duration::from_secs(2)))
            .finish();
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            tried.fetch_add(1, Ordering::SeqCst);
            let done =
                futures_util::future::join_all(urls.iter().map(|u| write(&client, u, &token, n)))
                    .await;
            let now = Instant::now();
            acks.lock().unwrap_or_else(|p| p.into_inner()).extend(
                done.into_iter()
                    .enumerate()
                    .filter(|(_, ok)| *ok)
                    .map(|(i, _)| (now, i, n)),
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Samples the VPS's web server every 100 ms; the longest time it did not answer.
fn spawn_sampler(
    ip: String,
    body: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let mut last_ok = Instant::now();
        let mut worst = Duration::ZERO;
        while !stop.load(Ordering::SeqCst) {
            if answers(&ip, &body) {
                worst = worst.max(last_ok.elapsed());
                last_ok = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        worst.max(last_ok.elapsed())
    })
}

/// Which of the two says it leads (the second when the first does not).
async fn leader_of(m: &[Member; 2]) -> usize {
    if status(&m[0].url).await.as_deref() == Some("leader") {
        0
    } else {
        1
    }
}

/// How many writes both controllers acknowledged (two leaders at once: must be none).
fn answered_by_both(all: &[(Instant, usize, u64)]) -> usize {
    let mut by_n = std::collections::HashMap::<u64, usize>::new();
    // The controllers' own addresses only (the service address reaches one of them).
    for a in all.iter().filter(|a| a.1 < 2) {
        *by_n.entry(a.2).or_default() += 1;
    }
    by_n.values().filter(|c| **c > 1).count()
}

/// The site the pair runs: two test hosts and an HA VPS answering; the VPS's id, address and
/// init PID.
struct Site {
    hosts: Vec<i64>,
    vid: i64,
    ip: String,
    init: Value,
}

async fn site(api: &Api, cluster: &Cluster, at: [usize; 2]) -> Result<Site> {
    let mut hosts = Vec::new();
    for (i, h) in at.iter().map(|i| &cluster.hosts[*i]).enumerate() {
        let id = add_host(api, &format!("node-{i}"), h).await?;
        wait_for(api, &format!("/hosts/{id}"), "host online", |h| {
            h["status"] == "online"
        })
        .await?;
        hosts.push(id);
    }
    let (_, tpls) = api.call("GET", "/templates", None).await?;
    let tpl = tpls[0]["id"].as_i64().context("no template")?;
    let ip = format!("10.77.{}.70", cluster.subnet);
    let vid = ha_vps(api, "to-ha", tpl, hosts[0], &ip).await?;
    let v = wait_for(api, &format!("/vpses/{vid}"), "VPS sampled", |v| {
        v["live"]["init_pid"].is_number()
    })
    .await?;
    let init = v["live"]["init_pid"].clone();
    while !answers(&ip, "to-ha") {
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Site {
        hosts,
        vid,
        ip,
        init,
    })
}

async fn measure(
    m: &mut [Member; 2],
    rounds: u64,
    rig: &mut Rig,
    vip_url: Option<String>,
) -> Result<()> {
    let (_, api) = leader_api(m).await?;
    let Site {
        hosts,
        vid,
        ip,
        init,
    } = site(&api, &rig.cluster, rig.hosts_at).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Acks = Default::default();
    let tried = Arc::new(AtomicU64::new(0));
    let mut urls = vec![m[0].url.clone(), m[1].url.clone()];
    urls.extend(vip_url.clone());
    spawn_writer(
        urls,
        api.token.clone(),
        acks.clone(),
        tried.clone(),
        stop.clone(),
    );
    let sampler = spawn_sampler(ip.clone(), "to-ha".into(), stop.clone());
    let lost = AtomicU64::new(0);
    let mut times = Vec::new();
    for round in 1..=rounds {
        let l = leader_of(m).await;
        let o = 1 - l;
        until_role(&m[o], "standby").await?;
        // The partner may take over only once its database is the synchronous standby.
        until_synchronous(&at(&api, &m[l].url), &m[o].name).await?;
        // Writes acknowledged by the leader before the kill.
        let seen = acks.lock().unwrap_or_else(|p| p.into_inner()).len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while acks.lock().unwrap_or_else(|p| p.into_inner()).len() < seen + 5 {
            if Instant::now() > deadline {
                bail!("round {round}: the leader acknowledges no writes");
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let t0 = Instant::now();
        rig.power_off(l, &mut m[l])?;
        let last_before = acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|a| a.1 == l)
            .map(|a| a.2)
            .max()
            .unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(60);
        let t1 = loop {
            let first = acks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|a| a.1 == if vip_url.is_some() { 2 } else { o } && a.0 > t0)
                .map(|a| a.0);
            if let Some(t) = first {
                break t;
            }
            if Instant::now() > deadline {
                bail!("round {round}: {} never answered writes", m[o].name);
            }
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        };
        let took = t1 - t0;
        times.push(took.as_secs_f64());
        // Nothing the old leader acknowledged is missing: the new leader reads the newest
        // acknowledged value or a later one.
        let (_, s) = at(&api, &m[o].url).call("GET", "/settings", None).await?;
        let now_n: u64 = s["site_name"]
            .as_str()
            .and_then(|v| v.strip_prefix('w'))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if now_n < last_before {
            lost.fetch_add(1, Ordering::SeqCst);
        }
        println!(
            "  round {round}: {} {}, {} answered writes{} after {:.2} s",
            m[l].name,
            if vip_url.is_some() {
                "powered off"
            } else {
                "killed"
            },
            m[o].name,
            if vip_url.is_some() {
                " at the service address"
            } else {
                ""
            },
            took.as_secs_f64()
        );
        rig.boot(l)?;
        m[l].spawn()?;
        until_role(&m[l], "standby").await?;
    }
    stop.store(true, Ordering::SeqCst);
    let worst = sampler.join().unwrap_or_default();
    let all = acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let both = answered_by_both(&all);
    let l = leader_of(m).await;
    let v = wait_for(
        &at(&api, &m[l].url),
        &format!("/vpses/{vid}"),
        "VPS sampled",
        |v| v["live"]["init_pid"].is_number(),
    )
    .await?;
    let same_init = v["live"]["init_pid"] == init && v["host_id"] == hosts[0];
    if !same_init {
        println!(
            "the HA VPS's init was {init} on host {}; now {} on host {}",
            hosts[0], v["live"]["init_pid"], v["host_id"]
        );
    }
    report(&Figures {
        times,
        acked: all.len(),
        tried: tried.load(Ordering::SeqCst),
        lost: lost.load(Ordering::SeqCst),
        both,
        worst,
        same_init,
        at_address: vip_url.is_some(),
    })
}

/// What the rounds measured.
struct Figures {
    times: Vec<f64>,
    acked: usize,
    tried: u64,
    lost: u64,
    both: usize,
    worst: Duration,
    same_init: bool,
    at_address: bool,
}

/// Prints the figures as a table beside Patroni's documented defaults.
fn report(f: &Figures) -> Result<()> {
    let Figures {
        times,
        acked,
        tried,
        lost,
        both,
        worst,
        same_init,
        at_address,
    } = f;
    let mut sorted = times.clone();
    println!();
    println!(
        "| measure | SERVERware (lease {} s) | Patroni defaults (documented) |",
        arg("--lease", 3)?
    );
    println!("| --- | --- | --- |");
    println!(
        "| {} → API answering writes{}, p50 | {:.2} s | ~30–40 s (ttl 30 s, loop_wait 10 s) |",
        if *at_address {
            "leader's machine powered off"
        } else {
            "leader killed"
        },
        if *at_address {
            " at the service address"
        } else {
            ""
        },
        pct(&mut sorted, 50.0)
    );
    println!(
        "| … p99 ({} rounds) | {:.2} s | — |",
        times.len(),
        pct(&mut sorted, 99.0)
    );
    println!(
        "| writes acknowledged (of rounds tried) / lost / answered by both at once | {} ({}) / {} / {} | — |",
        acked, tried, lost, both
    );
    println!(
        "| HA VPS: longest silence (HTTP every 100 ms) / same init after | {} ms / {} | — |",
        worst.as_millis(),
        if *same_init { "yes" } else { "NO" }
    );
    println!();
    println!(
        "Patroni's figure is its documented default, not measured here: the leader key's TTL \
         is 30 s and the HA loop runs every 10 s, so a dead primary's key expires after up to \
         30 s and a replica promotes on its next loop."
    );
    Ok(())
}
