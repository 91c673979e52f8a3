//! The pair's database, replicated by PostgreSQL and kept by the pair (Patroni's job on the same
//! parts, with the pair's own lease): each controller runs its own PostgreSQL server as a child
//! (`[pair] postgres_port`). The leader's is the primary, the partner's a synchronous streaming
//! standby. etcd records the site's database (`/serverware/SITE/postgres`): which controller's
//! server is the primary, where it listens, and which standby is synchronous. Only the leader
//! writes that record, in a transaction that compares the leader key, so a controller that no
//! longer leads cannot change it.
//!
//! The rules that make a takeover lose nothing and never leave two primaries:
//! - A standby is named synchronous in etcd only once PostgreSQL reports it `sync` (every commit
//!   waits for its disk from then on); it is unnamed in etcd *before* the primary stops waiting
//!   for it. So whenever etcd names a standby, it holds every transaction ever acknowledged.
//! - A new leader promotes its server only if etcd names it the synchronous standby (or it is
//!   already the recorded primary); else it refuses to lead and leaves the site to the partner
//!   that holds the newest transactions. It records itself as the primary *before* promoting.
//! - The primary is a child of the controller that dies with it (a parent-death signal): a
//!   controller killed, stepping down or cut off takes its primary down before its lease can run
//!   out, and a standby whose lease it was is promoted only after.
//! - A former primary rejoins as a standby by itself: `pg_rewind` to the new primary (a fresh
//!   base backup if that fails, the old copy kept beside it).

use super::{Etcd, Leadership};
use crate::repo::replication::{self as repl, PgConn, Standby};
use anyhow::{bail, Context};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The site's database as etcd records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The controller whose server is the primary.
    pub primary: String,
    /// Where the primary listens (HOST:PORT), for its standby.
    pub address: String,
    /// The standby PostgreSQL confirms as synchronous, if any.
    pub sync: Option<String>,
}

/// What this controller's server runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Primary,
    /// A standby streaming from HOST:PORT.
    Standby(String),
}

/// The settings of a controller's own server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// PostgreSQL's programs (`/usr/lib/postgresql/VERSION/bin`).
    pub bin: PathBuf,
    /// The controller's data directory: the server's data is `postgres/` in it.
    pub data_dir: PathBuf,
    /// The port it listens on, on loopback and on `host`.
    pub port: u16,
    /// The address its partner reaches it at (the host of the controller's pair URL).
    pub host: String,
    /// This controller's name (its standby's `application_name`).
    pub name: String,
    /// The site's record in etcd.
    pub key: String,
}

/// The newest PostgreSQL installed the Debian way.
pub fn default_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (apt install postgresql)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .context("no PostgreSQL server under /usr/lib/postgresql (apt install postgresql)")
}

/// The postmaster is started by this one thread, which lives as long as the controller: its
/// parent-death signal fires when the controller dies or becomes a new program, never before.
type Job = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawn_for_life(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("postgres-parent".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("a thread to start PostgreSQL from");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, reply))
        .map_err(|_| std::io::Error::other("the PostgreSQL starter is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the PostgreSQL starter is gone"))?
}

/// This controller's own PostgreSQL server, kept by it.
pub struct Keeper {
    s: Settings,
    password: String,
    uid: u32,
    gid: u32,
    child: Mutex<Option<(Child, Mode)>>,
    /// The standbys as last seen by the leader, and the record it wrote last.
    seen: Mutex<(Vec<Standby>, Option<Record>)>,
    /// Set once the controller stops or steps down: the server is never started again by it.
    retired: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pair's password for its servers' `postgres` role, made once by the first controller and
/// copied to its partner (with the controller's keys).
fn read_or_make_password(file: &Path) -> anyhow::Result<String> {
    if let Ok(s) = std::fs::read_to_string(file) {
        let s = s.trim().to_string();
        if s.len() < 16 || !s.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!(
                "{} must hold the pair's database password (16 or more letters and digits)",
                file.display()
            );
        }
        return Ok(s);
    }
    let mut b = [0u8; 24];
    getrandom(&mut b)?;
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let s: String = b
        .iter()
        .map(|x| ALNUM[*x as usize % ALNUM.len()] as char)
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    writeln!(f, "{s}")?;
    Ok(s)
}

fn getrandom(buf: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)?;
    Ok(())
}

use std::os::unix::fs::OpenOptionsExt;

/// The uid and gid of the `postgres` account (made by Debian's package).
fn postgres_account() -> anyhow::Result<(u32, u32)> {
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam with a valid C string; the result is read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!("there is no postgres account (apt install postgresql)");
    }
    // SAFETY: non-null, as just checked.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

impl Keeper {
    pub fn new(s: Settings) -> anyhow::Result<Keeper> {
        let (uid, gid) = postgres_account()?;
        let password = read_or_make_password(&s.data_dir.join("postgres_password"))?;
        // The postgres account reaches its files through the data directory (never lists it).
        crate::files::private_dir(&s.data_dir)?;
        let meta = std::fs::metadata(&s.data_dir)?;
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(&s.data_dir, std::fs::Permissions::from_mode(mode | 0o001))?;
        }
        let k = Keeper {
            s,
            password,
            uid,
            gid,
            child: Mutex::new(None),
            seen: Mutex::new((Vec::new(), None)),
            retired: Default::default(),
        };
        // The password file the postgres programs read (never on a command line).
        let pass = k.passfile();
        std::fs::write(&pass, format!("*:*:*:postgres:{}\n", k.password))?;
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600))?;
        std::os::unix::fs::chown(&pass, Some(uid), Some(gid))?;
        Ok(k)
    }

    fn dir(&self) -> PathBuf {
        self.s.data_dir.join("postgres")
    }

    fn passfile(&self) -> PathBuf {
        self.s.data_dir.join("postgres.pgpass")
    }

    /// Where this controller's server listens for its partner.
    pub fn address(&self) -> String {
        format!("{}:{}", self.s.host, self.s.port)
    }

    /// The controller's database on its own server.
    pub fn database_url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/serverware",
            self.password, self.s.port
        )
    }

    fn admin_url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            self.password, self.s.port
        )
    }

    /// A postgres program run as the postgres account.
    fn program(&self, name: &str) -> Command {
        let mut c = Command::new(self.s.bin.join(name));
        c.uid(self.uid)
            .gid(self.gid)
            .current_dir(&self.s.data_dir)
            .env("PGPASSFILE", self.passfile())
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, mut c: Command, what: &str) -> anyhow::Result<()> {
        let out = c.output().with_context(|| format!("cannot run {what}"))?;
        tracing::debug!(
            "{what}: {} {}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if !out.status.success() {
            bail!(
                "{what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn conninfo(&self, address: &str) -> anyhow::Result<String> {
        let (host, port) = address
            .rsplit_once(':')
            .with_context(|| format!("'{address}' is not HOST:PORT"))?;
        Ok(format!(
            "host={host} port={port} user=postgres passfile={} application_name={} connect_timeout=5",
            self.passfile().display(),
            self.s.name
        ))
    }

    fn has_data(&self) -> bool {
        self.dir().join("PG_VERSION").is_file()
    }

    fn is_standby_copy(&self) -> bool {
        self.dir().join("standby.signal").is_file()
    }

    fn mark_standby(&self) -> anyhow::Result<()> {
        let f = self.dir().join("standby.signal");
        std::fs::write(&f, "")?;
        std::os::unix::fs::chown(&f, Some(self.uid), Some(self.gid))?;
        Ok(())
    }

    /// A new, empty cluster (the site's first start as a pair).
    fn initdb(&self) -> anyhow::Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir)?;
        std::os::unix::fs::chown(&dir, Some(self.uid), Some(self.gid))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let pw = self.s.data_dir.join("postgres.initpw");
        std::fs::write(&pw, format!("{}\n", self.password))?;
        std::os::unix::fs::chown(&pw, Some(self.uid), Some(self.gid))?;
        let mut c = self.program("initdb");
        c.arg("-D")
            .arg(&dir)
            .args(["-U", "postgres", "--auth=scram-sha-256", "--data-checksums"])
            .args(["-E", "UTF8", "--locale=C"])
            .arg(format!("--pwfile={}", pw.display()));
        let r = self.run(c, "initdb");
        let _ = std::fs::remove_file(&pw);
        r?;
        // Every connection, local or from the partner, by password.
        let hba = "# Written by SERVERware: the pair's servers, by password.\n\
                   host all postgres 0.0.0.0/0 scram-sha-256\n\
                   host all postgres ::/0 scram-sha-256\n\
                   host replication postgres 0.0.0.0/0 scram-sha-256\n\
                   host replication postgres ::/0 scram-sha-256\n";
        std::fs::write(dir.join("pg_hba.conf"), hba)?;
        self.write_settings()
    }

    /// The old copy goes beside (one kept), then a fresh copy of the primary's.
    fn base_backup(&self, from: &str) -> anyhow::Result<()> {
        let dir = self.dir();
        if dir.exists() {
            let old = self.s.data_dir.join("postgres.old");
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(&dir, &old)?;
        }
        std::fs::create_dir_all(&dir)?;
        std::os::unix::fs::chown(&dir, Some(self.uid), Some(self.gid))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let (host, port) = from.rsplit_once(':').context("HOST:PORT")?;
        let mut c = self.program("pg_basebackup");
        c.arg("-D")
            .arg(&dir)
            .args(["-h", host, "-p", port, "-U", "postgres", "-X", "stream"])
            .args(["-c", "fast", "--no-password"]);
        if let Err(e) = self.run(c, "pg_basebackup") {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.mark_standby()
    }

    /// A former primary follows the new one: its history rewound to where they parted.
    fn rewind(&self, from: &str) -> anyhow::Result<()> {
        let mut c = self.program("pg_rewind");
        c.arg("-D").arg(self.dir()).arg(format!(
            "--source-server={} dbname=postgres",
            self.conninfo(from)?
        ));
        match self.run(c, "pg_rewind") {
            Ok(()) => self.mark_standby(),
            // The primary out of reach: this copy stays as it is until it answers.
            Err(e) if format!("{e:#}").contains("connection to server") => Err(e),
            Err(e) => {
                tracing::warn!("{e:#}: taking a fresh copy of the primary instead");
                self.base_backup(from)
            }
        }
    }

    /// The pair's settings in the server's own configuration file, so that every run of it
    /// (also `pg_rewind`'s recovery run) keeps the WAL a former primary needs to be rewound.
    fn write_settings(&self) -> anyhow::Result<()> {
        const MARK: &str = "# SERVERWARE: the pair's replication";
        let conf = self.dir().join("postgresql.conf");
        let text = std::fs::read_to_string(&conf).unwrap_or_default();
        if text.contains(MARK) {
            return Ok(());
        }
        let mut f = std::fs::OpenOptions::new().append(true).open(&conf)?;
        writeln!(
            f,
            "\n{MARK} (the same on both servers)\n\
             wal_level = replica\n\
             hot_standby = on\n\
             wal_log_hints = on\n\
             wal_keep_size = 1024\n\
             wal_sender_timeout = 10s\n\
             wal_receiver_timeout = 10s\n\
             wal_retrieve_retry_interval = 500ms\n\
             # TCP only: no socket file in the data directory, nor in a shared one.\n\
             unix_socket_directories = ''"
        )?;
        Ok(())
    }

    /// Starts the server (a standby of `of`, or the primary) and waits until it answers.
    fn spawn(&self, of: Option<&str>) -> anyhow::Result<()> {
        if self.retired() {
            bail!("this controller is stopping: its PostgreSQL stays stopped");
        }
        let dir = self.dir();
        self.write_settings()?;
        let mut listen = vec!["127.0.0.1".to_string()];
        if self.s.host != "127.0.0.1" && self.s.host != "localhost" {
            listen.push(self.s.host.clone());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.s.data_dir.join("postgres.log"))?;
        let mut c = self.program("postgres");
        c.arg("-D").arg(&dir);
        let mut set = |k: &str, v: &str| {
            c.arg("-c").arg(format!("{k}={v}"));
        };
        set("port", &self.s.port.to_string());
        set("listen_addresses", &listen.join(","));
        if let Some(from) = of {
            set("primary_conninfo", &self.conninfo(from)?);
        }
        c.stdout(log.try_clone()?).stderr(log);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            let parent = libc::getpid();
            c.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0
                    || libc::getppid() != parent
                {
                    return Err(std::io::Error::other("the controller is gone"));
                }
                Ok(())
            });
        }
        let mut child = spawn_for_life(c).context("cannot start PostgreSQL")?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "PostgreSQL stopped at start ({status}); the end of {}:\n{}",
                    self.s.data_dir.join("postgres.log").display(),
                    self.log_tail()
                );
            }
            if repl::connect(&self.admin_url()).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("PostgreSQL did not answer within 120 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mode = match of {
            Some(a) => Mode::Standby(a.to_string()),
            None if self.is_standby_copy() => Mode::Standby(String::new()),
            None => Mode::Primary,
        };
        *lock(&self.child) = Some((child, mode));
        Ok(())
    }

    /// The last lines PostgreSQL wrote.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.s.data_dir.join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    fn mode(&self) -> Option<Mode> {
        let mut c = lock(&self.child);
        if let Some((child, _)) = c.as_mut() {
            if !matches!(child.try_wait(), Ok(None)) {
                *c = None;
            }
        }
        c.as_ref().map(|(_, m)| m.clone())
    }

    /// Whether the server runs.
    pub fn running(&self) -> bool {
        self.mode().is_some()
    }

    fn retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops the server for good (the controller stops, or steps down and starts again as a
    /// new program): nothing of this run starts it again. `fast` lets its standby receive
    /// everything first (a planned stop), else at once (a controller that may no longer lead).
    pub fn retire(&self, fast: bool) {
        self.retired
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop(fast);
    }

    /// Stops the server: `fast` lets its standby receive everything first, else at once.
    fn stop(&self, fast: bool) {
        let Some((mut child, _)) = lock(&self.child).take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        let signal = if fast { libc::SIGINT } else { libc::SIGQUIT };
        // SAFETY: our own child, not yet waited for.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(if fast { 20 } else { 5 });
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn connect(&self) -> anyhow::Result<PgConn> {
        repl::connect(&self.admin_url())
            .map_err(|e| anyhow::anyhow!("cannot reach this controller's PostgreSQL: {e}"))
    }

    /// The standby becomes the primary.
    fn promote(&self) -> anyhow::Result<()> {
        let mut c = self.connect()?;
        if repl::in_recovery(&mut c)? && !repl::promote(&mut c)? {
            bail!("PostgreSQL did not finish its promotion within 60 s");
        }
        if let Some((_, m)) = lock(&self.child).as_mut() {
            *m = Mode::Primary;
        }
        Ok(())
    }

    fn ensure_database(&self) -> anyhow::Result<()> {
        Ok(repl::ensure_database(&mut self.connect()?)?)
    }

    fn set_sync_names(&self, names: &str) -> anyhow::Result<()> {
        Ok(repl::set_sync_names(&mut self.connect()?, names)?)
    }

    /// As a standby: follows the primary at `address` (copied, or rewound, first if needed).
    fn follow_blocking(&self, address: &str) -> anyhow::Result<()> {
        match self.mode() {
            Some(Mode::Standby(a)) if a == address => return Ok(()),
            Some(_) => self.stop(true),
            None => {}
        }
        if !self.has_data() {
            tracing::info!("copying the site's database from its primary at {address}");
            self.base_backup(address)?;
        } else if !self.is_standby_copy() {
            tracing::info!(
                "this controller's database was a primary: rewinding it to follow {address}"
            );
            self.rewind(address)?;
        }
        self.spawn(Some(address))
    }

    async fn record(etcd: &Etcd, key: &str) -> anyhow::Result<Option<Record>> {
        match etcd.get(key).await? {
            Some(h) => Ok(Some(serde_json::from_str(&h.value).with_context(|| {
                format!("etcd's record of the site's database ({key}) is not readable")
            })?)),
            None => Ok(None),
        }
    }

    /// While this controller is the standby: keeps its server a standby of the recorded primary,
    /// until `stop` (after the step under way).
    pub async fn follow(
        self: std::sync::Arc<Self>,
        etcd: Etcd,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut last_error = String::new();
        while !*stop.borrow() {
            let outcome = match Self::record(&etcd, &self.s.key).await {
                Ok(Some(r)) if r.primary != self.s.name => {
                    let k = self.clone();
                    tokio::task::spawn_blocking(move || k.follow_blocking(&r.address))
                        .await
                        .unwrap_or_else(|e| Err(anyhow::anyhow!("{e}")))
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => last_error.clear(),
                Err(e) => {
                    let e = format!("{e:#}");
                    if e != last_error {
                        tracing::warn!("the standby's database: {e}");
                        last_error = e;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Writes the record if this controller still leads.
    async fn write(&self, lead: &Leadership, r: &Record) -> anyhow::Result<()> {
        let value = serde_json::to_string(r)?;
        if !lead.is_leader() || !lead.put_while_leading(&self.s.key, &value).await? {
            bail!("this controller no longer leads");
        }
        lock(&self.seen).1 = Some(r.clone());
        Ok(())
    }

    /// Becoming the leader: this controller's server becomes (or stays) the primary, when that
    /// loses nothing; the database's URL. An error says why it may not lead.
    pub async fn lead(self: std::sync::Arc<Self>, lead: &Leadership) -> anyhow::Result<String> {
        let me = self.s.name.clone();
        let mine = Record {
            primary: me.clone(),
            address: self.address(),
            sync: None,
        };
        let rec = Self::record(lead.etcd(), &self.s.key).await?;
        let k = self.clone();
        let blocking = move |f: fn(&Keeper) -> anyhow::Result<()>| {
            let k = k.clone();
            async move {
                tokio::task::spawn_blocking(move || f(&k))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
            }
        };
        match rec {
            None => {
                if self.is_standby_copy() {
                    bail!("this controller's database is a standby's copy, yet etcd records no primary for the site");
                }
                if !self.has_data() {
                    tracing::info!("the site's database is new: making it");
                    blocking(Keeper::initdb).await?;
                }
                self.write(lead, &mine).await?;
                blocking(|k| k.spawn(None)).await?;
            }
            Some(r) if r.primary == me => {
                if !self.has_data() {
                    bail!(
                        "this controller's database is gone{}",
                        match &r.sync {
                            Some(s) => format!("; the site's copy is on {s}"),
                            None => String::new(),
                        }
                    );
                }
                self.write(
                    lead,
                    &Record {
                        sync: r.sync.clone(),
                        ..mine
                    },
                )
                .await?;
                if !self.running() {
                    blocking(|k| k.spawn(None)).await?;
                }
                blocking(Keeper::promote).await?;
            }
            Some(r) if r.sync.as_deref() == Some(me.as_str()) => {
                // Recorded first: the old primary may never come back as one.
                self.write(lead, &mine).await?;
                if !self.running() {
                    let from = r.address.clone();
                    let k = self.clone();
                    tokio::task::spawn_blocking(move || k.spawn(Some(&from)))
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))??;
                }
                tracing::info!(from = %r.primary, "promoting this controller's database to the primary");
                blocking(Keeper::promote).await?;
            }
            Some(r) => bail!(
                "the site's newest transactions are only on {}'s database (this controller's copy \
                 was not a synchronous standby when {} stopped); waiting for {} to come back",
                r.primary,
                r.primary,
                r.primary
            ),
        }
        if lock(&self.seen)
            .1
            .as_ref()
            .is_some_and(|r| r.sync.is_none())
        {
            // A copy of the old primary's settings may wait for a standby that is not there.
            blocking(|k| k.set_sync_names("")).await?;
        }
        blocking(Keeper::ensure_database).await?;
        Ok(self.database_url())
    }

    /// One look, as the leader: names a standby synchronous once PostgreSQL says it is, and
    /// unnames one that is gone before the primary stops waiting for it.
    async fn tend(self: &std::sync::Arc<Self>, lead: &Leadership) -> anyhow::Result<()> {
        let k = self.clone();
        let (standbys, names) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut c = k.connect()?;
            Ok((repl::standbys(&mut c)?, repl::sync_names(&mut c)?))
        })
        .await??;
        let rec = lock(&self.seen).1.clone();
        lock(&self.seen).0 = standbys.clone();
        let Some(rec) = rec else { return Ok(()) };
        let streaming = |n: &str| {
            standbys
                .iter()
                .any(|s| s.name == n && s.state == "streaming")
        };
        let in_sync = |n: &str| {
            standbys
                .iter()
                .any(|s| s.name == n && s.state == "streaming" && s.sync_state == "sync")
        };
        let set = |names: String| {
            let k = self.clone();
            async move {
                tokio::task::spawn_blocking(move || k.set_sync_names(&names))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
            }
        };
        match &rec.sync {
            Some(s) if in_sync(s) => {}
            Some(s) => {
                tracing::warn!(standby = %s, "the database's synchronous standby is gone: the primary goes on alone");
                self.write(
                    lead,
                    &Record {
                        sync: None,
                        ..rec.clone()
                    },
                )
                .await?;
                set(String::new()).await?;
            }
            None => {
                let candidate = standbys
                    .iter()
                    .find(|s| s.name != self.s.name && streaming(&s.name))
                    .map(|s| s.name.clone());
                match candidate {
                    // Named in etcd only once every commit waits for it.
                    Some(c) if names == format!("\"{c}\"") && in_sync(&c) => {
                        self.write(
                            lead,
                            &Record {
                                sync: Some(c.clone()),
                                ..rec.clone()
                            },
                        )
                        .await?;
                        tracing::info!(standby = %c, "the database is replicated synchronously");
                    }
                    Some(c) if names == format!("\"{c}\"") => {}
                    Some(c) => set(format!("\"{c}\"")).await?,
                    None if !names.is_empty() => set(String::new()).await?,
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// While this controller leads: keeps the synchronous standby named (every half second).
    pub async fn tend_while_leading(self: std::sync::Arc<Self>, lead: std::sync::Arc<Leadership>) {
        let mut last_error = String::new();
        while lead.is_leader() {
            match self.tend(&lead).await {
                Ok(()) => last_error.clear(),
                Err(e) => {
                    let e = format!("{e:#}");
                    if e != last_error {
                        tracing::warn!("the database's replication: {e}");
                        last_error = e;
                    }
                }
            }
            if !self.running() && lead.is_leader() && !self.retired() {
                // Still the recorded primary: started again, its commits wait for the
                // synchronous standby it names as before.
                tracing::error!(
                    "this controller's PostgreSQL stopped while it leads: starting it again"
                );
                let k = self.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || k.spawn(None)).await {
                    tracing::error!("cannot start this controller's PostgreSQL again: {e:#}");
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `serverware pair init`: makes this controller's server the pair's first database,
    /// filled with the single controller's database at `from` (SQLite), then stops it; the
    /// first run of the pair that leads takes it up as the site's primary. Refused when this
    /// controller has a pair database already. The rows copied, by table.
    pub fn init_from(&self, from: &str) -> anyhow::Result<Vec<(String, usize)>> {
        if self.has_data() {
            bail!(
                "this controller already has the pair's database ({}): pair init is for a controller that has none",
                self.dir().display()
            );
        }
        let source = crate::db::Db::open(from)?;
        if source.kind() != "sqlite" {
            bail!(
                "pair init moves an SQLite database (sqlite://PATH), not {}",
                source.kind()
            );
        }
        self.initdb()?;
        let copied = self.spawn(None).and_then(|()| {
            self.ensure_database()?;
            let target = crate::db::Db::open(&self.database_url())?;
            let mut src = source.get_blocking()?;
            let mut dst = target.get_blocking()?;
            match (&mut *src, &mut *dst) {
                (crate::db::DbConn::Sqlite(s), crate::db::DbConn::Postgres(d)) => {
                    crate::repo::transfer::sqlite_to_postgres(s, d)
                }
                _ => bail!("pair init moves SQLite into PostgreSQL"),
            }
        });
        self.stop(true);
        if copied.is_err() {
            // Nothing half-made is left: the next try starts clean.
            let _ = std::fs::remove_dir_all(self.dir());
        }
        copied
    }

    /// What the leader saw last: its standbys and the record it wrote last.
    pub fn seen(&self) -> (Vec<Standby>, Option<Record>) {
        lock(&self.seen).clone()
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_made_once_and_a_weak_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("postgres_password");
        let made = read_or_make_password(&f).unwrap();
        assert_eq!(made.len(), 24);
        assert!(made.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_or_make_password(&f).unwrap(), made);
        std::fs::write(&f, "short\n").unwrap();
        assert!(format!("{:#}", read_or_make_password(&f).unwrap_err()).contains("16 or more"));
        std::fs::write(&f, "has spaces and quotes ' in it\n").unwrap();
        assert!(read_or_make_password(&f).is_err());
    }

    #[test]
    fn the_record_reads_back() {
        let r = Record {
            primary: "ctl-a".into(),
            address: "10.0.0.1:5433".into(),
            sync: Some("ctl-b".into()),
        };
        let v = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&v).unwrap(), r);
    }
}
