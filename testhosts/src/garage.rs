//! A Garage cluster for tests and benchmarks (S3, `cargo install garage`): `n` nodes on one
//! address (loopback, or a test bridge's so that test hosts' namespaces reach it) or each on a
//! test host of its own, replication
//! factor `n` in consistent mode, one bucket and one key with its rights. Each node can be
//! killed (powered off) and started again; all are killed and their files removed on drop.

use crate::free_port;
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct GarageNode {
    pub s3_url: String,
    /// Its admin API (metrics at `/metrics`, no token).
    pub admin_url: String,
    /// The test host's network namespace it runs in, if not this machine's.
    netns: Option<String>,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

pub struct GarageCluster {
    pub nodes: Vec<GarageNode>,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    dir: PathBuf,
}

/// The `garage` program: on the PATH or where `cargo install` puts it.
pub fn garage_bin() -> PathBuf {
    if let Ok(p) = std::env::var("GARAGE_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cargo = Path::new(&home).join(".cargo/bin/garage");
    if cargo.is_file() {
        cargo
    } else {
        PathBuf::from("garage")
    }
}

fn garage(config: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(garage_bin())
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run garage (cargo install garage)")?;
    if !out.status.success() {
        bail!(
            "garage {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `f` until it succeeds or `secs` pass (a new cluster takes a moment to agree).
fn retry<T>(secs: u64, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

impl GarageCluster {
    /// Starts `n` nodes on loopback.
    pub fn start(n: usize) -> Result<GarageCluster> {
        Self::start_at(n, Ipv4Addr::LOCALHOST)
    }

    /// Starts `n` nodes listening on `ip`, lays them out (one zone each, replication factor
    /// `n`), and makes a bucket and a key that may read and write it.
    pub fn start_at(n: usize, ip: Ipv4Addr) -> Result<GarageCluster> {
        Self::start_on(&vec![(ip, None); n])
    }

    /// One node on each of `places`: an address and, for a node on a test host of its own, that
    /// host's network namespace (the node then goes down with the host's link).
    pub fn start_on(places: &[(Ipv4Addr, Option<String>)]) -> Result<GarageCluster> {
        let n = places.len();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("sw-garage-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut secret = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)?;
        let rpc_secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let mut c = GarageCluster {
            nodes: Vec::new(),
            bucket: "serverware".into(),
            key_id: String::new(),
            secret: String::new(),
            dir,
        };
        for (i, (ip, netns)) in places.iter().enumerate() {
            let (rpc, s3, admin) = (free_port()?, free_port()?, free_port()?);
            let node = c.dir.join(format!("n{i}"));
            std::fs::create_dir_all(&node)?;
            let config = node.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{m}\"\ndata_dir = \"{d}\"\ndb_engine = \"sqlite\"\n\
                     replication_factor = {n}\nconsistency_mode = \"consistent\"\n\
                     rpc_bind_addr = \"{ip}:{rpc}\"\nrpc_public_addr = \"{ip}:{rpc}\"\n\
                     rpc_secret = \"{rpc_secret}\"\n\n[s3_api]\ns3_region = \"garage\"\n\
                     api_bind_addr = \"{ip}:{s3}\"\nroot_domain = \".s3.garage\"\n\n\
                     [admin]\napi_bind_addr = \"{ip}:{admin}\"\n",
                    m = node.join("meta").display(),
                    d = node.join("data").display(),
                ),
            )?;
            c.nodes.push(GarageNode {
                s3_url: format!("http://{ip}:{s3}"),
                admin_url: format!("http://{ip}:{admin}"),
                netns: netns.clone(),
                config,
                log: node.join("garage.log"),
                child: None,
            });
            c.power_on(i)?;
        }
        c.form()?;
        Ok(c)
    }

    fn form(&mut self) -> Result<()> {
        let first = self.nodes[0].config.clone();
        let mut ids = Vec::new();
        for n in &self.nodes {
            let id = retry(30, || garage(&n.config, &["node", "id", "-q"]))?;
            ids.push(id.trim().to_string());
        }
        // Every node told of every other (not left to gossip), so that any one can go.
        for (i, n) in self.nodes.iter().enumerate() {
            for id in &ids[i + 1..] {
                retry(30, || garage(&n.config, &["node", "connect", id]))?;
            }
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap_or(id);
            let zone = format!("z{i}");
            retry(30, || {
                garage(
                    &first,
                    &["layout", "assign", "-z", &zone, "-c", "1G", short],
                )
            })?;
        }
        retry(30, || {
            garage(&first, &["layout", "apply", "--version", "1"])
        })?;
        let key = retry(60, || garage(&first, &["key", "create", "serverware"]))?;
        for line in key.lines() {
            if let Some(v) = line.strip_prefix("Key ID:") {
                self.key_id = v.trim().to_string();
            }
            if let Some(v) = line.strip_prefix("Secret key:") {
                self.secret = v.trim().to_string();
            }
        }
        if self.key_id.is_empty() || self.secret.is_empty() {
            bail!("garage key create said no key: {key}");
        }
        retry(60, || garage(&first, &["bucket", "create", &self.bucket]))?;
        retry(60, || {
            garage(
                &first,
                &[
                    "bucket",
                    "allow",
                    "--read",
                    "--write",
                    "--owner",
                    &self.bucket,
                    "--key",
                    "serverware",
                ],
            )
        })?;
        Ok(())
    }

    /// The S3 endpoints of all nodes.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.s3_url.clone()).collect()
    }

    /// The admin APIs of all nodes (where their metrics are).
    pub fn metrics_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.admin_url.clone()).collect()
    }

    /// Node `i` goes down at once (SIGKILL), as if powered off.
    pub fn power_off(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Node `i` starts (again) on its files.
    pub fn power_on(&mut self, i: usize) -> Result<()> {
        let n = &mut self.nodes[i];
        if n.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)?;
        let mut cmd = match &n.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(garage_bin());
                c
            }
            None => Command::new(garage_bin()),
        };
        let child = cmd
            .arg("-c")
            .arg(&n.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start garage (cargo install garage)")?;
        n.child = Some(child);
        Ok(())
    }

    /// What node `i` logged.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.power_off(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
