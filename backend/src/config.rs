//! Configuration: defaults, then a TOML file, then `SERVERWARE_*` environment, then flags.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the TOML file is looked for when `SERVERWARE_CONFIG` is not set.
/// Where the Debian package installs the agent the controller puts on its hosts.
pub const PACKAGED_AGENT: &str = "/usr/lib/serverware/serverware-agent";
pub const SYSTEM_CONFIG_PATH: &str = "/etc/serverware/config.toml";

/// Options taken from the environment and the command line. clap lets a flag win over its
/// environment variable; both win over the file, which wins over the defaults.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file [default: /etc/serverware/config.toml if present]
    #[arg(long, env = "SERVERWARE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address and port to serve the dashboard and API on [default: 127.0.0.1:8080]
    #[arg(long, env = "SERVERWARE_LISTEN", global = true)]
    pub listen: Option<String>,
    /// Directory for the database, keys and storage [default: ./data]
    #[arg(long, env = "SERVERWARE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// netDUPLO's storage: where every VPS's restore points are kept (a big disk, or a mounted
    /// storage server) [default: DATA_DIR/storage/duplo]
    #[arg(long, env = "SERVERWARE_STORAGE_DIR", global = true)]
    pub storage_dir: Option<PathBuf>,
    /// VPS templates' archives (shared by the controllers of a pair, like the storage)
    /// [default: DATA_DIR/storage/templates]
    #[arg(long, env = "SERVERWARE_TEMPLATES_DIR", global = true)]
    pub templates_dir: Option<PathBuf>,
    /// Host images for network boot (`serverware image build`), shared by a pair like the
    /// templates [default: DATA_DIR/storage/images]
    #[arg(long, env = "SERVERWARE_IMAGES_DIR", global = true)]
    pub images_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://USER:PASS@HOST/DB [default: SQLite in the data directory]
    #[arg(
        long,
        env = "SERVERWARE_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Log filter, such as `info` or `serverware=debug` [default: info]
    #[arg(long, env = "SERVERWARE_LOG", global = true)]
    pub log: Option<String>,
    /// Address and port of the SSH command line, or "off" [default: the listen address's IP,
    /// port 2222 (port 0, any free one, when the listen port is 0)]
    #[arg(long, env = "SERVERWARE_SSH_LISTEN", global = true)]
    pub ssh_listen: Option<String>,
    /// PEM certificate chain; serve HTTPS when given with --tls-key
    #[arg(long, env = "SERVERWARE_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, env = "SERVERWARE_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Minutes of inactivity after which a login session ends [default: 720]
    #[arg(long, env = "SERVERWARE_SESSION_IDLE_MINUTES", global = true)]
    pub session_idle_minutes: Option<u64>,
    /// Memory for the VPSes' newest restore points' trees between duplication cycles, in MiB;
    /// a VPS whose tree does not fit reads it from storage at its next cycle [default: 256]
    #[arg(long, env = "SERVERWARE_DUPLO_TREE_CACHE_MB", global = true)]
    pub duplo_tree_cache_mb: Option<u64>,
    /// Directory of the built dashboard (index.html) [default: ./dist if present]
    #[arg(long, env = "SERVERWARE_STATIC_DIR", global = true)]
    pub static_dir: Option<PathBuf>,
    /// The agent binary installed on hosts [default: serverware-agent next to this program]
    #[arg(long, env = "SERVERWARE_AGENT_BIN", global = true)]
    pub agent_bin: Option<PathBuf>,
    /// Password of the `admin` user created on first start (random and printed when unset)
    #[arg(
        long,
        env = "SERVERWARE_ADMIN_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub admin_password: Option<String>,
    /// The controller pair: etcd members' client URLs, comma-separated (unset: a single
    /// controller)
    #[arg(long, env = "SERVERWARE_PAIR_ETCD", global = true)]
    pub pair_etcd: Option<String>,
    /// This controller's name in the pair [default: the machine's host name]
    #[arg(long, env = "SERVERWARE_PAIR_NAME", global = true)]
    pub pair_name: Option<String>,
    /// The URL its partner and the dashboard point to while this one leads [default: from the
    /// listen address]
    #[arg(long, env = "SERVERWARE_PAIR_URL", global = true)]
    pub pair_url: Option<String>,
    /// The leader's lease in etcd, in seconds (2 to 60) [default: 3]
    #[arg(long, env = "SERVERWARE_PAIR_LEASE_SECS", global = true)]
    pub pair_lease_secs: Option<u64>,
    /// The site's service address, held by whichever controller leads (IPv4/PREFIX)
    #[arg(long, env = "SERVERWARE_PAIR_ADDRESS", global = true)]
    pub pair_address: Option<String>,
    /// The interface the service address is held on
    #[arg(long, env = "SERVERWARE_PAIR_INTERFACE", global = true)]
    pub pair_interface: Option<String>,
    /// The pair keeps its own replicated PostgreSQL, this controller's listening on this port
    /// (on loopback and on its pair URL's host)
    #[arg(long, env = "SERVERWARE_PAIR_POSTGRES_PORT", global = true)]
    pub pair_postgres_port: Option<u16>,
    /// Storage on an S3 store (Garage): its nodes' S3 endpoints, comma-separated (unset: the
    /// storage directory)
    #[arg(long, env = "SERVERWARE_STORAGE_S3_ENDPOINTS", global = true)]
    pub storage_s3_endpoints: Option<String>,
    /// The S3 bucket [default: serverware]
    #[arg(long, env = "SERVERWARE_STORAGE_S3_BUCKET", global = true)]
    pub storage_s3_bucket: Option<String>,
    /// The S3 access key's id
    #[arg(long, env = "SERVERWARE_STORAGE_S3_KEY_ID", global = true)]
    pub storage_s3_key_id: Option<String>,
    /// The S3 access key's secret
    #[arg(
        long,
        env = "SERVERWARE_STORAGE_S3_SECRET_KEY",
        global = true,
        hide_env_values = true
    )]
    pub storage_s3_secret_key: Option<String>,
    /// Each Garage node's admin API (`http://10.0.0.1:3903`), in the order of the endpoints,
    /// comma-separated: its metrics show how far the node is behind (optional)
    #[arg(long, env = "SERVERWARE_STORAGE_S3_METRICS", global = true)]
    pub storage_s3_metrics: Option<String>,
    /// The bearer token of the nodes' metrics, when Garage asks for one (its `metrics_token`)
    #[arg(
        long,
        env = "SERVERWARE_STORAGE_S3_METRICS_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub storage_s3_metrics_token: Option<String>,
}

/// `[pair]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePair {
    etcd: Option<Vec<String>>,
    name: Option<String>,
    url: Option<String>,
    lease_secs: Option<u64>,
    site: Option<String>,
    address: Option<String>,
    interface: Option<String>,
    postgres_port: Option<u16>,
}

/// `[storage_s3]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileS3 {
    endpoints: Option<Vec<String>>,
    bucket: Option<String>,
    region: Option<String>,
    key_id: Option<String>,
    secret_key: Option<String>,
    metrics: Option<Vec<String>>,
    metrics_token: Option<String>,
}

/// Storage on an S3-compatible store (`storage/s3.rs`): where it is and how to sign for it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The S3 API of each node (`http://10.0.0.1:3900`), tried in turn.
    pub endpoints: Vec<String>,
    pub bucket: String,
    pub region: String,
    pub key_id: String,
    pub secret: String,
    /// Each node's admin API (same order as `endpoints`), for its metrics; may be empty.
    pub metrics: Vec<String>,
    pub metrics_token: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoints", &self.endpoints)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("key_id", &self.key_id)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

/// `[storage_s3]` or `SERVERWARE_STORAGE_S3_*`: all of endpoints, key id and secret, or none.
fn resolve_s3(args: &ConfigArgs, file: Option<FileS3>) -> anyhow::Result<Option<S3Config>> {
    let file = file.unwrap_or_default();
    let urls = |arg: &Option<String>, file: Option<Vec<String>>| -> Vec<String> {
        match arg {
            Some(list) => list
                .split(',')
                .map(|s| s.trim().trim_end_matches('/').to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            None => file
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.trim().trim_end_matches('/').to_string())
                .collect(),
        }
    };
    let endpoints = urls(&args.storage_s3_endpoints, file.endpoints);
    let metrics = urls(&args.storage_s3_metrics, file.metrics);
    let key_id = args.storage_s3_key_id.clone().or(file.key_id);
    let secret = args.storage_s3_secret_key.clone().or(file.secret_key);
    if endpoints.is_empty() {
        if key_id.is_some() || secret.is_some() {
            bail!("storage_s3 needs its endpoints (SERVERWARE_STORAGE_S3_ENDPOINTS)");
        }
        return Ok(None);
    }
    if !metrics.is_empty() && metrics.len() != endpoints.len() {
        bail!(
            "storage_s3 has {} endpoints and {} metrics URLs: give each node's admin API, in the same order, or none",
            endpoints.len(),
            metrics.len()
        );
    }
    for e in endpoints.iter().chain(&metrics) {
        let ok = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', ' ', '?', '#']));
        if !ok {
            bail!("storage_s3 endpoint '{e}' is not a URL such as http://10.0.0.1:3900");
        }
    }
    let (Some(key_id), Some(secret)) = (key_id, secret) else {
        bail!("storage_s3 needs an access key: key_id and secret_key (SERVERWARE_STORAGE_S3_KEY_ID, _SECRET_KEY)");
    };
    if key_id.trim().is_empty() || secret.trim().is_empty() {
        bail!("storage_s3: the access key's id and secret must not be empty");
    }
    let bucket = args
        .storage_s3_bucket
        .clone()
        .or(file.bucket)
        .unwrap_or_else(|| "serverware".into());
    let plain = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.']);
    if !plain {
        bail!("storage_s3 bucket '{bucket}' is not a bucket name (3 to 63 lowercase letters, digits, '-' and '.')");
    }
    Ok(Some(S3Config {
        endpoints,
        bucket,
        region: file.region.unwrap_or_else(|| "garage".into()),
        key_id: key_id.trim().to_string(),
        secret: secret.trim().to_string(),
        metrics,
        metrics_token: args
            .storage_s3_metrics_token
            .clone()
            .or(file.metrics_token)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()),
    }))
}

/// The site's service address: an IPv4 address and the interface the leader holds it on
/// (taken and given back by `pair/address.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddress {
    pub ip: std::net::Ipv4Addr,
    pub prefix: u8,
    pub interface: String,
}

/// A controller of a pair: who decides who leads, and how it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairConfig {
    /// The etcd members' client URLs (http://IP:2379).
    pub etcd: Vec<String>,
    /// This controller's name.
    pub name: String,
    /// Where it serves, as its partner and the dashboard point to it.
    pub url: String,
    /// The leader's lease.
    pub lease: std::time::Duration,
    /// The site's name in etcd: its leader key is `/serverware/SITE/leader`.
    pub site: String,
    /// The service address the leader holds, if any.
    pub address: Option<ServiceAddress>,
    /// The pair's own replicated PostgreSQL (`pair/postgres.rs`), when it keeps one.
    pub postgres: Option<ManagedPostgres>,
}

/// Where this controller's own PostgreSQL server listens: on loopback and on `host` (its pair
/// URL's host, where its partner reaches it), at `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedPostgres {
    pub host: String,
    pub port: u16,
}

impl PairConfig {
    /// The key whose holder leads the site.
    pub fn leader_key(&self) -> String {
        format!("/serverware/{}/leader", self.site)
    }

    /// Where each controller of the site says it is present.
    pub fn members_prefix(&self) -> String {
        format!("/serverware/{}/members", self.site)
    }

    /// etcd's record of the site's replicated database.
    pub fn postgres_key(&self) -> String {
        format!("/serverware/{}/postgres", self.site)
    }
}

/// The keys a TOML file may set; unknown keys are an error, so a typo is noticed.
/// netDUPLO's trees kept between cycles, by default (MiB): enough for a few hundred full-size
/// VPS trees (`duplo::trees`).
pub const DEFAULT_DUPLO_TREE_CACHE_MB: u64 = 256;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    ssh_listen: Option<String>,
    data_dir: Option<PathBuf>,
    storage_dir: Option<PathBuf>,
    templates_dir: Option<PathBuf>,
    images_dir: Option<PathBuf>,
    database_url: Option<String>,
    log: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    session_idle_minutes: Option<u64>,
    duplo_tree_cache_mb: Option<u64>,
    static_dir: Option<PathBuf>,
    login: Option<LoginLimits>,
    pair: Option<FilePair>,
    storage_s3: Option<FileS3>,
    backup: Option<BackupConfig>,
}

/// `[backup]`: the controller's own backups (`serverware backup`), made on a schedule by the
/// leading controller, the newest `keep` kept.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where backups are written [default: DATA_DIR/backups]. Put it on another disk, or copy
    /// its files off the machine: a backup on the disk that died restores nothing.
    pub dir: Option<PathBuf>,
    /// A backup every this many hours; 0: only when asked.
    pub every_hours: u32,
    /// How many backups are kept (the oldest removed first); at least 1.
    pub keep: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: None,
            every_hours: 24,
            keep: 7,
        }
    }
}

/// How failed logins are slowed down.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LoginLimits {
    /// Failures in a row on one account before it is locked for a while.
    pub account_failures: u32,
    /// Failures in a row from one address before it is locked for a while.
    pub address_failures: u32,
    /// First lock, in seconds; each further failure doubles it.
    pub base_lock_secs: u64,
    /// Longest lock, in seconds.
    pub max_lock_secs: u64,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            account_failures: 5,
            address_failures: 20,
            base_lock_secs: 30,
            max_lock_secs: 900,
        }
    }
}

#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The SSH command line's address (None: off).
    pub ssh_listen: Option<SocketAddr>,
    /// Whether it was asked for (else the default, given up with a warning when taken).
    pub ssh_listen_explicit: bool,
    pub data_dir: PathBuf,
    /// netDUPLO's storage directory.
    pub storage_dir: PathBuf,
    /// The templates' archives.
    pub templates_dir: PathBuf,
    pub images_dir: PathBuf,
    pub database_url: String,
    pub log: String,
    pub tls: Option<TlsFiles>,
    pub session_idle_minutes: u64,
    /// The duplication trees' memory, in MiB (`duplo::trees`).
    pub duplo_tree_cache_mb: u64,
    pub static_dir: Option<PathBuf>,
    pub admin_password: Option<String>,
    pub login: LoginLimits,
    pub agent_bin: Option<PathBuf>,
    /// Set when this controller is one of a pair.
    pub pair: Option<PairConfig>,
    /// Set when storage is an S3 store (else the storage directory).
    pub storage_s3: Option<S3Config>,
    /// The configuration file read, if any (a backup keeps a copy).
    pub config_file: Option<PathBuf>,
    /// The controller's own backups: where, how often, how many kept.
    pub backup: BackupConfig,
    pub backup_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl fmt::Debug for Config {
    // Secrets stay out of logs: the database password and the admin password are redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("ssh_listen", &self.ssh_listen)
            .field("data_dir", &self.data_dir)
            .field("storage_dir", &self.storage_dir)
            .field("templates_dir", &self.templates_dir)
            .field("images_dir", &self.images_dir)
            .field("database_url", &redact_db_url(&self.database_url))
            .field("log", &self.log)
            .field("tls", &self.tls)
            .field("session_idle_minutes", &self.session_idle_minutes)
            .field("duplo_tree_cache_mb", &self.duplo_tree_cache_mb)
            .field("static_dir", &self.static_dir)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<redacted>"),
            )
            .field("login", &self.login)
            .field("agent_bin", &self.agent_bin)
            .field("pair", &self.pair)
            .field("storage_s3", &self.storage_s3)
            .finish()
    }
}

/// Replaces the password of a database URL with `****`.
pub fn redact_db_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:****@{host}{path}")
            } else {
                url.to_string()
            }
        }
        None => url.to_string(),
    }
}

impl Config {
    /// Resolves the configuration from `args` (environment and flags), the TOML file and defaults.
    pub fn resolve(args: &ConfigArgs) -> anyhow::Result<Config> {
        let config_file = match &args.config {
            Some(path) => Some(path.clone()),
            None if Path::new(SYSTEM_CONFIG_PATH).exists() => {
                Some(PathBuf::from(SYSTEM_CONFIG_PATH))
            }
            None => None,
        };
        let file = match &config_file {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        // `/dev/null` (tests, and "no file") is no file to keep.
        let config_file = config_file.filter(|p| p.is_file());

        let listen_s = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let listen: SocketAddr = listen_s.parse().with_context(|| {
            format!("listen address '{listen_s}' is not IP:PORT (such as 127.0.0.1:8080)")
        })?;
        let ssh_asked = args.ssh_listen.clone().or(file.ssh_listen);
        let ssh_listen_explicit = ssh_asked.is_some();
        let ssh_listen = match ssh_asked {
            Some(s) if s.trim() == "off" => None,
            Some(s) => Some(s.parse::<SocketAddr>().with_context(|| {
                format!("SSH listen address '{s}' is not IP:PORT (such as 0.0.0.0:2222) or off")
            })?),
            None => Some(SocketAddr::new(
                listen.ip(),
                if listen.port() == 0 { 0 } else { 2222 },
            )),
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let storage_dir = args
            .storage_dir
            .clone()
            .or(file.storage_dir)
            .unwrap_or_else(|| data_dir.join("storage").join("duplo"));
        let templates_dir = args
            .templates_dir
            .clone()
            .or(file.templates_dir)
            .unwrap_or_else(|| data_dir.join("storage").join("templates"));
        let images_dir = args
            .images_dir
            .clone()
            .or(file.images_dir)
            .unwrap_or_else(|| data_dir.join("storage").join("images"));
        let given_database = args.database_url.clone().or(file.database_url);
        let database_url = given_database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("serverware.db").display()));
        let log = args
            .log
            .clone()
            .or(file.log)
            .unwrap_or_else(|| "info".to_string());
        let cert = args.tls_cert.clone().or(file.tls_cert);
        let key = args.tls_key.clone().or(file.tls_key);
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!(
                "TLS needs both a certificate (SERVERWARE_TLS_CERT) and a key (SERVERWARE_TLS_KEY)"
            ),
        };
        let session_idle_minutes = args
            .session_idle_minutes
            .or(file.session_idle_minutes)
            .unwrap_or(12 * 60);
        if session_idle_minutes == 0 || session_idle_minutes > 60 * 24 * 90 {
            bail!("session idle timeout must be between 1 and 129600 minutes");
        }
        let duplo_tree_cache_mb = args
            .duplo_tree_cache_mb
            .or(file.duplo_tree_cache_mb)
            .unwrap_or(DEFAULT_DUPLO_TREE_CACHE_MB);
        if duplo_tree_cache_mb > 1 << 20 {
            bail!("duplo_tree_cache_mb must be at most 1048576 (1 TiB); 0 keeps no tree between cycles");
        }
        let static_dir = args.static_dir.clone().or(file.static_dir).or_else(|| {
            let dist = PathBuf::from("./dist");
            dist.join("index.html").exists().then_some(dist)
        });
        let pair = resolve_pair(args, file.pair.unwrap_or_default(), listen, tls.is_some())?;
        if pair.as_ref().is_some_and(|p| p.postgres.is_some()) && given_database.is_some() {
            bail!(
                "pair.postgres_port makes the pair keep its own replicated database: database_url \
                 (SERVERWARE_DATABASE_URL) must not be set as well"
            );
        }
        let storage_s3 = resolve_s3(args, file.storage_s3)?;
        let backup = file.backup.unwrap_or_default();
        if backup.keep == 0 {
            bail!("backup.keep must be at least 1");
        }
        let backup_dir = backup
            .dir
            .clone()
            .unwrap_or_else(|| data_dir.join("backups"));
        let login = file.login.unwrap_or_default();
        if login.account_failures == 0 || login.address_failures == 0 || login.base_lock_secs == 0 {
            bail!("login limits must be at least 1");
        }
        Ok(Config {
            listen,
            ssh_listen,
            ssh_listen_explicit,
            data_dir,
            storage_dir,
            templates_dir,
            images_dir,
            database_url,
            log,
            tls,
            session_idle_minutes,
            duplo_tree_cache_mb,
            static_dir,
            admin_password: args.admin_password.clone(),
            login,
            agent_bin: args.agent_bin.clone().or_else(|| {
                // Beside the controller (a build folder), else where the package puts it.
                let p = std::env::current_exe()
                    .ok()?
                    .parent()?
                    .join("serverware-agent");
                let packaged = PathBuf::from(PACKAGED_AGENT);
                [p, packaged].into_iter().find(|p| p.is_file())
            }),
            pair,
            storage_s3,
            config_file,
            backup,
            backup_dir,
        })
    }
}

/// The pair's settings, when etcd members are given (a single controller otherwise).
fn resolve_pair(
    args: &ConfigArgs,
    file: FilePair,
    listen: SocketAddr,
    tls: bool,
) -> anyhow::Result<Option<PairConfig>> {
    let etcd: Vec<String> = match &args.pair_etcd {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => file.etcd.unwrap_or_default(),
    };
    if etcd.is_empty() {
        if args.pair_name.is_some() || file.name.is_some() {
            bail!("a controller pair needs its etcd members (pair.etcd or SERVERWARE_PAIR_ETCD)");
        }
        return Ok(None);
    }
    for e in &etcd {
        let ok = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
        if !ok {
            bail!("etcd member '{e}' is not a URL such as http://10.0.0.3:2379");
        }
    }
    let name = match args.pair_name.clone().or(file.name) {
        Some(n) => n,
        None => std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    };
    let name = serverware_shared::validate::hostname("pair.name", &name)
        .map_err(|e| anyhow::anyhow!("the controller's pair name '{name}': {}", e.message))?;
    let url = match args.pair_url.clone().or(file.url) {
        Some(u) => u,
        None => {
            if listen.ip().is_unspecified() {
                bail!(
                    "a controller of a pair listening on {listen} needs pair.url (SERVERWARE_PAIR_URL): \
                     the address its partner and browsers reach it at"
                );
            }
            format!("{}://{listen}", if tls { "https" } else { "http" })
        }
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("pair.url '{url}' is not an http:// or https:// URL");
    }
    let secs = args.pair_lease_secs.or(file.lease_secs).unwrap_or(3);
    if !(2..=60).contains(&secs) {
        bail!("pair.lease_secs must be 2 to 60 seconds (it is {secs})");
    }
    let address = service_address(
        args.pair_address.clone().or(file.address),
        args.pair_interface.clone().or(file.interface),
    )?;
    let postgres = match args.pair_postgres_port.or(file.postgres_port) {
        None => None,
        Some(0) => bail!("pair.postgres_port must be a port number (1 to 65535)"),
        Some(port) => Some(ManagedPostgres {
            host: url_host(&url).with_context(|| {
                format!("pair.url '{url}' names no host for the pair's database")
            })?,
            port,
        }),
    };
    let site = file.site.unwrap_or_else(|| "default".into());
    let site = serverware_shared::validate::hostname("pair.site", &site)
        .map_err(|e| anyhow::anyhow!("pair.site '{site}': {}", e.message))?;
    Ok(Some(PairConfig {
        etcd,
        name,
        url: url.trim_end_matches('/').to_string(),
        lease: std::time::Duration::from_secs(secs),
        site,
        address,
        postgres,
    }))
}

/// The host of an http(s) URL (an IPv4 address or a name).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split(':').next()?;
    (!host.is_empty()).then(|| host.to_string())
}

/// `pair.address` (IPv4/PREFIX) on `pair.interface`: both or neither.
fn service_address(
    address: Option<String>,
    interface: Option<String>,
) -> anyhow::Result<Option<ServiceAddress>> {
    use serverware_shared::validate;
    let (address, interface) = match (address, interface) {
        (None, None) => return Ok(None),
        (Some(a), Some(i)) => (a, i),
        _ => bail!(
            "the service address needs both pair.address (such as 10.0.0.10/24) and pair.interface"
        ),
    };
    let (ip, prefix) = address.split_once('/').ok_or_else(|| {
        anyhow::anyhow!("pair.address '{address}' is not IPv4/PREFIX (such as 10.0.0.10/24)")
    })?;
    let ip = validate::ipv4_address("pair.address", ip)
        .map_err(|e| anyhow::anyhow!("pair.address: {}", e.message))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| anyhow::anyhow!("pair.address '{address}': the prefix is not a number"))?;
    let prefix = validate::prefix_len("pair.address", prefix)
        .map_err(|e| anyhow::anyhow!("pair.address: {}", e.message))?;
    let interface = validate::interface_name("pair.interface", &interface)
        .map_err(|e| anyhow::anyhow!("pair.interface: {}", e.message))?;
    Ok(Some(ServiceAddress {
        ip,
        prefix,
        interface,
    }))
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    toml::from_str(&text)
        .with_context(|| format!("configuration file {} is invalid", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::resolve(&ConfigArgs {
            config: Some(PathBuf::from("/dev/null")),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://./data/serverware.db");
        assert_eq!(c.session_idle_minutes, 720);
        assert!(c.tls.is_none());
    }

    #[test]
    fn file_then_args() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\ndata_dir = \"/srv/sw\"\nlog = \"debug\"\n[login]\naccount_failures = 3\n",
        )
        .unwrap();
        let c = Config::resolve(&ConfigArgs {
            config: Some(path.clone()),
            log: Some("warn".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.database_url, "sqlite:///srv/sw/serverware.db");
        assert_eq!(c.log, "warn");
        assert_eq!(c.login.account_failures, 3);
        assert_eq!(c.login.address_failures, 20);

        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let e = Config::resolve(&ConfigArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("lisen"), "{e:#}");
    }

    #[test]
    fn the_ssh_command_line_listens_beside_the_dashboard_unless_told() {
        let with = |listen: &str, ssh: Option<&str>| {
            Config::resolve(&ConfigArgs {
                config: Some(PathBuf::from("/dev/null")),
                listen: Some(listen.into()),
                ssh_listen: ssh.map(str::to_string),
                ..Default::default()
            })
        };
        let c = with("0.0.0.0:8080", None).unwrap();
        assert_eq!(c.ssh_listen, Some("0.0.0.0:2222".parse().unwrap()));
        assert!(!c.ssh_listen_explicit);
        let c = with("127.0.0.1:0", None).unwrap();
        assert_eq!(c.ssh_listen, Some("127.0.0.1:0".parse().unwrap()));
        let c = with("127.0.0.1:8080", Some("off")).unwrap();
        assert_eq!(c.ssh_listen, None);
        let c = with("127.0.0.1:8080", Some("10.0.0.1:22")).unwrap();
        assert_eq!(c.ssh_listen, Some("10.0.0.1:22".parse().unwrap()));
        assert!(c.ssh_listen_explicit);
        assert!(with("127.0.0.1:8080", Some("port 22")).is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        let bad_listen = ConfigArgs {
            config: Some(PathBuf::from("/dev/null")),
            listen: Some("localhost".into()),
            ..Default::default()
        };
        assert!(Config::resolve(&bad_listen).is_err());
        let half_tls = ConfigArgs {
            config: Some(PathBuf::from("/dev/null")),
            tls_cert: Some("/x.pem".into()),
            ..Default::default()
        };
        assert!(Config::resolve(&half_tls).is_err());
    }

    #[test]
    fn a_pair_that_keeps_its_database_listens_at_its_url_host_and_takes_no_database_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let with = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::resolve(&ConfigArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        let base =
            "[pair]\netcd = [\"http://e:2379\"]\nname = \"a\"\nurl = \"https://10.0.0.5:8443/\"\n";
        let p = with(&format!("{base}postgres_port = 5433\n"))
            .unwrap()
            .pair
            .unwrap();
        assert_eq!(
            p.postgres,
            Some(ManagedPostgres {
                host: "10.0.0.5".into(),
                port: 5433
            })
        );
        assert_eq!(p.postgres_key(), "/serverware/default/postgres");
        assert!(with(base).unwrap().pair.unwrap().postgres.is_none());
        let err = |t: &str| format!("{:#}", with(t).unwrap_err());
        assert!(err(&format!("{base}postgres_port = 0\n")).contains("port number"));
        assert!(err(&format!(
            "database_url = \"postgres://x@h/db\"\n{base}postgres_port = 5433\n"
        ))
        .contains("must not be set"));
        assert_eq!(
            url_host("http://ctl-a.example:8080/x").as_deref(),
            Some("ctl-a.example")
        );
        assert_eq!(url_host("http:///x"), None);
    }

    #[test]
    fn an_s3_store_needs_its_endpoints_and_a_key_and_never_shows_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let with = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::resolve(&ConfigArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        let c = with("[storage_s3]\nendpoints = [\"http://10.0.0.1:3900/\", \"http://10.0.0.2:3900\"]\nkey_id = \"GK1\"\nsecret_key = \"s3cr3t\"\n").unwrap();
        let s3 = c.storage_s3.clone().unwrap();
        assert_eq!(
            s3.endpoints,
            ["http://10.0.0.1:3900", "http://10.0.0.2:3900"]
        );
        assert_eq!(
            (s3.bucket.as_str(), s3.region.as_str()),
            ("serverware", "garage")
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(with("").unwrap().storage_s3.is_none());
        let err = |t: &str| format!("{:#}", with(t).unwrap_err());
        assert!(err("[storage_s3]\nkey_id = \"GK1\"\n").contains("endpoints"));
        assert!(err("[storage_s3]\nendpoints = [\"http://a:3900\"]\n").contains("access key"));
        assert!(err(
            "[storage_s3]\nendpoints = [\"a:3900\"]\nkey_id = \"k\"\nsecret_key = \"s\"\n"
        )
        .contains("not a URL"));
        assert!(err("[storage_s3]\nendpoints = [\"http://a:3900\"]\nkey_id = \"k\"\nsecret_key = \"s\"\nbucket = \"A_B\"\n").contains("bucket name"));
        // Each node's admin API, in the same order as its S3 API, or none.
        let two = "[storage_s3]\nendpoints = [\"http://a:3900\", \"http://b:3900\"]\nkey_id = \"k\"\nsecret_key = \"s\"\n";
        let m = with(&format!(
            "{two}metrics = [\"http://a:3903/\", \"http://b:3903\"]\nmetrics_token = \"t\"\n"
        ))
        .unwrap();
        let s3 = m.storage_s3.unwrap();
        assert_eq!(s3.metrics, ["http://a:3903", "http://b:3903"]);
        assert_eq!(s3.metrics_token.as_deref(), Some("t"));
        assert!(err(&format!("{two}metrics = [\"http://a:3903\"]\n"))
            .contains("2 endpoints and 1 metrics URLs"));
        assert!(
            err(&format!("{two}metrics = [\"http://a:3903\", \"b:3903\"]\n")).contains("not a URL")
        );
    }

    #[test]
    fn a_pair_needs_its_etcd_and_a_name_and_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let with = |text: &str, args: ConfigArgs| {
            std::fs::write(&path, text).unwrap();
            Config::resolve(&ConfigArgs {
                config: Some(path.clone()),
                ..args
            })
        };
        let c = with(
            "listen = \"10.0.0.1:8080\"\n[pair]\netcd = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]\nname = \"ctl-a\"\n",
            ConfigArgs::default(),
        )
        .unwrap();
        let p = c.pair.unwrap();
        assert_eq!(p.name, "ctl-a");
        assert_eq!(p.url, "http://10.0.0.1:8080");
        assert_eq!(p.lease, std::time::Duration::from_secs(3));
        assert_eq!(p.leader_key(), "/serverware/default/leader");
        assert!(with("", ConfigArgs::default()).unwrap().pair.is_none());
        let env = ConfigArgs {
            pair_etcd: Some("http://127.0.0.1:2379, http://127.0.0.1:2380".into()),
            pair_name: Some("B".into()),
            ..Default::default()
        };
        let p = with("", env).unwrap().pair.unwrap();
        assert_eq!(p.etcd.len(), 2);
        assert_eq!(p.name, "b");
        let err = |text: &str| format!("{:#}", with(text, ConfigArgs::default()).unwrap_err());
        assert!(err("[pair]\nname = \"a\"\n").contains("etcd"));
        assert!(err("[pair]\netcd = [\"10.0.0.1:2379\"]\nname = \"a\"\n").contains("not a URL"));
        assert!(err("[pair]\netcd = [\"http://e:2379\"]\nname = \"a b\"\n").contains("pair name"));
        assert!(
            err("[pair]\netcd = [\"http://e:2379\"]\nname = \"a\"\nlease_secs = 1\n")
                .contains("2 to 60")
        );
        assert!(err(
            "listen = \"0.0.0.0:8080\"\n[pair]\netcd = [\"http://e:2379\"]\nname = \"a\"\n"
        )
        .contains("pair.url"));
        assert!(err("[pair]\netcd = [\"http://e:2379\"]\nnmae = \"a\"\n").contains("nmae"));
        assert!(err(
            "[pair]\netcd = [\"http://e:2379\"]\nname = \"a\"\naddress = \"10.0.0.9/24\"\n"
        )
        .contains("both"));
        assert!(err("[pair]\netcd = [\"http://e:2379\"]\nname = \"a\"\naddress = \"10.0.0.9\"\ninterface = \"eth0\"\n").contains("IPv4/PREFIX"));
        let ok = with(
            "[pair]\netcd = [\"http://e:2379\"]\nname = \"a\"\naddress = \"10.0.0.9/24\"\ninterface = \"eth0\"\n",
            ConfigArgs::default(),
        )
        .unwrap();
        let a = ok.pair.unwrap().address.unwrap();
        assert_eq!(
            (a.ip.to_string(), a.prefix, a.interface.as_str()),
            ("10.0.0.9".into(), 24, "eth0")
        );
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact_db_url("postgres://sw:s3cret@db.example:5432/sw"),
            "postgres://sw:****@db.example:5432/sw"
        );
        assert_eq!(
            redact_db_url("sqlite://./data/x.db"),
            "sqlite://./data/x.db"
        );
        let c = Config::resolve(&ConfigArgs {
            config: Some(PathBuf::from("/dev/null")),
            database_url: Some("postgres://sw:s3cret@localhost/sw".into()),
            admin_password: Some("hunter2hunter2".into()),
            ..Default::default()
        })
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("hunter2"), "{dbg}");
    }
}
