use clap::{Parser, Subcommand};
use serverware::config::{Config, ConfigArgs};
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

/// SERVERware controller: keeps virtual servers alive across a pool of hosts.
#[derive(Parser)]
#[command(name = "serverware", version = serverware_shared::BUILD, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run,
    /// Administration on the controller machine.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The controller pair.
    Pair {
        #[command(subcommand)]
        command: PairCommand,
    },
    /// The restore points' store.
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
    /// The host image that machines booted from the network run.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Backs the controller up now (its database, keys and configuration file) into the
    /// backup directory ([backup] dir, default DATA_DIR/backups); `backup list` lists them.
    /// Runs beside a running controller.
    Backup {
        #[command(subcommand)]
        command: Option<BackupCommand>,
    },
    /// Puts a backup back: the database (the one replaced is kept beside it), the keys, and
    /// the configuration file beside the one in use. Stop the controller first.
    Restore {
        /// The backup file (serverware-backup-….tar.zst).
        file: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// The backups in the backup directory, newest first, each checked readable.
    List,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Builds the host image (debootstrap of Debian 12 with its kernel, LXC, OpenSSH and the
    /// agent) into the images directory, or finds it built: a rebuild only when its inputs
    /// change. Needs a reachable Debian mirror the first time.
    Build {
        /// The Debian mirror
        #[arg(long, default_value = "http://deb.debian.org/debian")]
        mirror: String,
    },
    /// Lists the images and checks each against its manifest.
    List,
}

#[derive(Subcommand)]
enum PairCommand {
    /// Makes this controller the first of a pair that keeps its own database (`[pair]` with
    /// `postgres_port` in its configuration): its PostgreSQL server is made and filled with the
    /// single controller's SQLite database, every row. Stop the single controller first; start
    /// it again in pair mode afterwards.
    Init {
        /// The single controller's database [default: the data directory's serverware.db]
        #[arg(long)]
        from: Option<String>,
    },
    /// Makes this machine the second controller of a pair: fetches the pair's keys and
    /// database password from the leader (`GET /api/v1/pair/join`, with an admin's API token
    /// read from the first line of standard input) into this data directory. Then start it in
    /// pair mode: it copies the database and follows.
    Join {
        /// The leading controller's URL (https://, or http:// on loopback or with --allow-http)
        #[arg(long)]
        from: String,
        /// Accept the keys over plain HTTP from another machine (a network you trust)
        #[arg(long)]
        allow_http: bool,
    },
}

#[derive(Subcommand)]
enum StorageCommand {
    /// Copies every restore point from the storage directory to the S3 store (`--to s3`) or
    /// back (`--to directory`): chunks checked on the way, each point whole. What the other
    /// store holds already is skipped: run it while the controller runs, then once more after
    /// stopping it, then switch the configuration and start it.
    Migrate {
        #[arg(long, value_parser = ["s3", "directory"])]
        to: String,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set a new password for USER (random and printed, unless --password-stdin), enable the
    /// account and end its sessions.
    ResetPassword {
        username: String,
        /// Read the new password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// A controller holds a connection per host, browser and SSH client: the soft limit on open
/// descriptors (1024 under systemd) is raised to the hard one, as servers such as sshd do.
/// glibc gives every thread that allocates its own heap arena (up to 8 per core), and memory
/// freed in one arena is never used by another: with a thousand host connections moving
/// between the runtime's threads, the controller's resident size grew with the arenas, not
/// with what it holds. Two arenas serve the two worker threads.
fn cap_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn raise_open_files_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit to fill and then to set.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

fn main() -> ExitCode {
    cap_malloc_arenas();
    let cli = Cli::parse();
    let config = match Config::resolve(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("serverware: {e:#}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    raise_open_files_limit();
    let command = cli.command.unwrap_or(Command::Run);
    // Building the host image needs root (debootstrap, chroot); everything else runs as the
    // data directory's owner, so root never leaves files the service cannot use.
    if !matches!(
        command,
        Command::Image {
            command: ImageCommand::Build { .. }
        }
    ) {
        if let Err(e) = act_as_data_owner(&config.data_dir) {
            eprintln!("serverware: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let result = match command {
        Command::Run => run(config),
        Command::Admin {
            command:
                AdminCommand::ResetPassword {
                    username,
                    password_stdin,
                },
        } => reset_password(&config, &username, password_stdin),
        Command::Storage {
            command: StorageCommand::Migrate { to },
        } => migrate_storage(&config, &to),
        Command::Image {
            command: ImageCommand::Build { mirror },
        } => image_build(&config, &mirror),
        Command::Image {
            command: ImageCommand::List,
        } => image_list(&config),
        Command::Backup { command: None } => backup_now(&config),
        Command::Backup {
            command: Some(BackupCommand::List),
        } => backup_list(&config),
        Command::Restore { file } => restore(&config, &file),
        Command::Pair {
            command: PairCommand::Init { from },
        } => pair_init(&config, from),
        Command::Pair {
            command: PairCommand::Join { from, allow_http },
        } => pair_join(&config, &from, allow_http),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serverware: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn backup_now(config: &Config) -> anyhow::Result<()> {
    if config.pair.as_ref().is_some_and(|p| p.postgres.is_some()) {
        anyhow::bail!(
            "a pair keeps its own database: the leading controller makes the backups (on its \
             schedule, or POST /api/v1/backups)"
        );
    }
    let db = serverware::db::Db::open(&config.database_url)?;
    let file = serverware::backup::create(config, &db)?;
    let m = serverware::backup::manifest(&file)?;
    println!(
        "backed up ({} database, {} files) to {}",
        m.database,
        m.files.len(),
        file.display()
    );
    println!("It holds the controller's keys: keep it as safe as the controller itself.");
    Ok(())
}

fn backup_list(config: &Config) -> anyhow::Result<()> {
    let list = serverware::backup::list(&config.backup_dir);
    if list.is_empty() {
        println!("no backup in {}", config.backup_dir.display());
    }
    for b in list {
        println!(
            "{}  {}  {:>10} bytes  {} (release {})",
            b.manifest.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
            b.manifest.database,
            b.size,
            b.file.display(),
            b.manifest.version
        );
    }
    Ok(())
}

fn restore(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let _lock = serverware::backup::lock(&config.data_dir)?;
    let r = serverware::backup::restore(config, file)?;
    println!(
        "restored the backup of {} (release {}, {} database)",
        r.manifest.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        r.manifest.version,
        r.manifest.database
    );
    for k in &r.kept {
        println!("kept what it replaced: {}", k.display());
    }
    if let Some(c) = &r.config_copy {
        println!(
            "the backup's configuration file is at {} (the one in use was not changed)",
            c.display()
        );
    }
    println!("Start the controller: hosts reconnect with the restored key.");
    Ok(())
}

/// Gives the site's service address back, if this machine holds it.
fn release(address: Option<&serverware::config::ServiceAddress>) {
    if let Some(a) = address {
        if let Err(e) = a.release() {
            tracing::error!("cannot give the site's service address back: {e}");
        }
    }
}

/// Set (in milliseconds) for the run that follows a planned switch-over; never by a person.
const YIELD_ENV: &str = "SERVERWARE_PAIR_YIELD_MS";

/// How long this run leaves the lead to its partner (after a planned switch-over).
fn handed_over() -> std::time::Duration {
    let ms = std::env::var(YIELD_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    std::time::Duration::from_millis(ms.min(180_000))
}

type Keeper = std::sync::Arc<serverware::pair::Keeper>;

/// This controller's own PostgreSQL server, when the pair keeps its database.
fn keeper(
    config: &Config,
    pair: &serverware::config::PairConfig,
) -> anyhow::Result<Option<Keeper>> {
    let Some(pg) = &pair.postgres else {
        return Ok(None);
    };
    std::fs::create_dir_all(&config.data_dir)?;
    let k = serverware::pair::Keeper::new(serverware::pair::postgres::Settings {
        bin: serverware::pair::postgres::default_bin()?,
        data_dir: std::fs::canonicalize(&config.data_dir)?,
        port: pg.port,
        host: pg.host.clone(),
        name: pair.name.clone(),
        key: pair.postgres_key(),
    })?;
    Ok(Some(std::sync::Arc::new(k)))
}

/// What a controller of a pair brings to the site once it leads.
struct Leading {
    lead: std::sync::Arc<serverware::pair::Leadership>,
    /// Its own PostgreSQL, now the primary, and the database's URL on it.
    database: Option<(Keeper, String)>,
}

/// A controller never starts in a place another holds: under a name another controller of the
/// pair is present with (elsewhere), or as a third. Unknown while etcd does not answer: then the
/// lease decides as always.
async fn refuse_a_taken_place(
    etcd: &serverware::pair::Etcd,
    pair: &serverware::config::PairConfig,
) -> anyhow::Result<()> {
    use serverware::pair::setup;
    let me = serverware::pair::Member::this(&pair.name, &pair.url);
    match setup::present(etcd, &pair.members_prefix()).await {
        Ok(present) => setup::judge_claim(&me, &present).map_err(anyhow::Error::msg),
        Err(e) => {
            tracing::warn!("{e}: starting as the standby until etcd answers");
            Ok(())
        }
    }
}

/// A controller of a pair: serves as the standby until it leads (Some) or is told to stop
/// (None).
async fn standby_until_leading(
    config: &Config,
    pair: &serverware::config::PairConfig,
    listener: &std::net::TcpListener,
    term: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<Option<Leading>> {
    use serverware::pair::{Etcd, Leadership, Options};
    // A run that crashed while it led may have left the site's address here.
    release(pair.address.as_ref());
    let etcd = Etcd::new(pair.etcd.clone(), std::time::Duration::from_secs(1))?;
    refuse_a_taken_place(&etcd, pair).await?;
    let keeper = keeper(config, pair)?;
    let (stop_following, following) = tokio::sync::watch::channel(false);
    let follower = keeper
        .clone()
        .map(|k| tokio::spawn(k.follow(etcd.clone(), following)));
    let lead = std::sync::Arc::new(Leadership::start(
        etcd,
        Options {
            name: pair.name.clone(),
            url: pair.url.clone(),
            key: pair.leader_key(),
            ttl: pair.lease,
            members: pair.members_prefix(),
            yield_for: handed_over(),
        },
    ));
    let standby = serverware::server::standby(config, listener, lead.clone())?;
    println!();
    println!(
        "SERVERware controller {} ({}) is the standby of its pair until it leads.",
        serverware_shared::BUILD,
        pair.name
    );
    println!(
        "  It answers at {}; etcd: {}",
        pair.url,
        pair.etcd.join(", ")
    );
    println!();
    notify_systemd("READY=1\nSTATUS=standby of its pair: not leading");
    let outcome = tokio::select! {
        _ = lead.leading() => true,
        _ = tokio::signal::ctrl_c() => false,
        _ = term.recv() => false,
    };
    standby.stop().await;
    let _ = stop_following.send(true);
    if let Some(f) = follower {
        let _ = f.await;
    }
    if !outcome {
        lead.stop().await;
        if let Some(k) = keeper {
            let _ = tokio::task::spawn_blocking(move || k.retire(true)).await;
        }
        return Ok(None);
    }
    tracing::info!(name = %pair.name, "this controller leads the pair: taking over the site");
    let database = match keeper {
        None => None,
        Some(k) => match k.clone().lead(&lead).await {
            Ok(url) => Some((k, url)),
            Err(e) => {
                tracing::error!("this controller cannot lead: {e:#}");
                lead.stop().await;
                step_down(Some(lead.ttl() * 3), None, Some(&k));
            }
        },
    };
    Ok(Some(Leading { lead, database }))
}

/// A leader that may no longer lead stops everything it does at once, by becoming a new run of
/// this program (the same arguments and environment, so the standby of the pair again):
/// nothing of its leading survives, and an operation it was driving is taken up by the partner
/// from its record, exactly as after a crash.
/// `yield_for`: after a planned switch-over, how long the new run leaves the lead to its partner.
fn step_down(
    yield_for: Option<std::time::Duration>,
    address: Option<&serverware::config::ServiceAddress>,
    database: Option<&Keeper>,
) -> ! {
    use std::os::unix::process::CommandExt;
    release(address);
    if let Some(k) = database {
        // A primary stops accepting anything before the partner can lead (a planned hand-over
        // lets its standby receive everything first).
        k.retire(yield_for.is_some());
    }
    let mut cmd = std::process::Command::new(
        std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()),
    );
    cmd.args(std::env::args_os().skip(1));
    match yield_for {
        Some(d) => {
            tracing::warn!("the site is handed over to the partner: starting again as the standby");
            cmd.env(YIELD_ENV, d.as_millis().to_string());
        }
        None => {
            tracing::warn!(
                "this controller no longer leads the pair: starting again as the standby"
            );
            cmd.env_remove(YIELD_ENV);
        }
    }
    let err = cmd.exec();
    eprintln!("serverware: cannot start again as the standby ({err}); exiting");
    std::process::exit(75)
}

fn pair_init(config: &Config, from: Option<String>) -> anyhow::Result<()> {
    use anyhow::Context;
    let pair = config.pair.as_ref().context(
        "pair init needs this controller's [pair] settings (etcd, name, url, postgres_port)",
    )?;
    pair.postgres.as_ref().context(
        "pair init makes the pair's own database: set pair.postgres_port (SERVERWARE_PAIR_POSTGRES_PORT)",
    )?;
    let from = from.unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            config.data_dir.join("serverware.db").display()
        )
    });
    // A site whose pair has a database already is joined, not made again.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let etcd = serverware::pair::Etcd::new(pair.etcd.clone(), std::time::Duration::from_secs(2))?;
    check_set_up(&rt, &etcd, pair)?;
    if let Some(h) = rt
        .block_on(etcd.get(&pair.leader_key()))
        .context("cannot ask etcd who leads the site")?
    {
        let p = serverware::pair::Peer::from_value(&h.value);
        anyhow::bail!(
            "{} leads this site already, at {}: make this controller its partner with `serverware pair join --from {}`",
            p.name,
            p.url,
            p.url
        );
    }
    if let Some(h) = rt
        .block_on(etcd.get(&pair.postgres_key()))
        .context("cannot ask etcd whether the site has a database")?
    {
        anyhow::bail!(
            "the site already has its pair database ({}): start this controller in pair mode to follow it",
            h.value
        );
    }
    let keeper = keeper(config, pair)?.context("the pair's own database")?;
    println!(
        "Moving {} into this controller's PostgreSQL",
        serverware::config::redact_db_url(&from)
    );
    let copied = keeper.init_from(&from)?;
    for (table, rows) in &copied {
        println!("  {table}: {rows} rows");
    }
    println!(
        "Done. Start this controller in pair mode: it leads with this database as the site's primary."
    );
    Ok(())
}

/// What a pair's set-up checks before it changes anything: every etcd member answers, no other
/// controller has this one's name or the pair's second place, and the partner present runs this
/// version. Each problem is named.
fn check_set_up(
    rt: &tokio::runtime::Runtime,
    etcd: &serverware::pair::Etcd,
    pair: &serverware::config::PairConfig,
) -> anyhow::Result<()> {
    use serverware::pair::setup;
    let me = serverware::pair::Member::this(&pair.name, &pair.url);
    let s = rt
        .block_on(setup::survey(etcd, &pair.members_prefix()))
        .map_err(anyhow::Error::msg)?;
    setup::judge_etcd(&s).map_err(anyhow::Error::msg)?;
    setup::judge_claim(&me, &s.present).map_err(anyhow::Error::msg)?;
    setup::judge_version(&me, &s.present).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Whether `url` may carry the pair's keys: HTTPS, or plain HTTP on loopback (or when allowed).
fn may_carry_keys(url: &str, allow_http: bool) -> anyhow::Result<()> {
    if url.starts_with("https://") || allow_http {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        anyhow::bail!("'{url}' is not an http:// or https:// URL");
    };
    let host = rest.split(['/', ':']).next().unwrap_or("");
    if host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        return Ok(());
    }
    anyhow::bail!(
        "the pair's keys would cross the network unencrypted from {url}: use the leader's https:// URL, or --allow-http on a network you trust"
    )
}

fn pair_join(config: &Config, from: &str, allow_http: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let pair = config.pair.as_ref().context(
        "pair join needs this controller's [pair] settings (etcd, name, url): it joins as their controller",
    )?;
    may_carry_keys(from, allow_http)?;
    let mut token = String::new();
    std::io::stdin().lock().read_line(&mut token)?;
    let token = token.trim();
    if token.is_empty() {
        anyhow::bail!("pair join reads an admin's API token from standard input: none came");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The set-up is checked before the leader is asked: a refusal leaves no trace there either.
    let etcd = serverware::pair::Etcd::new(pair.etcd.clone(), std::time::Duration::from_secs(2))?;
    check_set_up(&rt, &etcd, pair)?;
    let url = format!("{}/api/v1/pair/join", from.trim_end_matches('/'));
    let secrets: serverware_shared::api::PairJoinResponse = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(&url)
            .bearer_auth(token)
            .timeout(std::time::Duration::from_secs(20))
            .send()
            .await
            .with_context(|| format!("cannot reach the leader at {from}"))?;
        let status = r.status();
        if !status.is_success() {
            let body = r.text().await.unwrap_or_default();
            anyhow::bail!("{from} refused ({status}): {body}");
        }
        Ok(r.json().await?)
    })?;
    if secrets.version != serverware_shared::BUILD {
        anyhow::bail!(
            "the leader at {from} runs SERVERware {} and this controller {}: install the same version on both",
            secrets.version,
            serverware_shared::BUILD
        );
    }
    serverware::files::private_dir(&config.data_dir)?;
    let mut files = vec![(serverware::keys::KEY_FILE, Some(secrets.controller_key))];
    files.push((serverware::keys::HOST_KEY_FILE, secrets.ssh_host_key));
    files.push(("postgres_password", secrets.postgres_password));
    // A key this machine has already must be the pair's: never replaced behind its back.
    for (name, value) in &files {
        let path = config.data_dir.join(name);
        if let (Some(v), Ok(have)) = (value, std::fs::read_to_string(&path)) {
            if have.trim() != v.trim() {
                anyhow::bail!(
                    "{} holds another key than the pair's: move it away first (this data directory belongs to another controller)",
                    path.display()
                );
            }
        }
    }
    for (name, value) in files {
        if let Some(v) = value {
            let text = if name == "postgres_password" {
                format!("{v}\n")
            } else {
                v
            };
            serverware::files::write_secret(&config.data_dir.join(name), text.as_bytes())?;
            println!("  {name}");
        }
    }
    println!(
        "This controller holds the pair's keys. Start it in pair mode: it copies the site's database and follows the leader."
    );
    Ok(())
}

fn migrate_storage(config: &Config, to: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use serverware::storage::{migrate, DirStore, ObjectStore, S3Store};
    let s3 = config.storage_s3.clone().context(
        "storage migrate needs the S3 store's settings ([storage_s3] or SERVERWARE_STORAGE_S3_*)",
    )?;
    let endpoints = s3.endpoints.join(", ");
    let s3 =
        S3Store::open(s3).with_context(|| format!("cannot open the S3 store at {endpoints}"))?;
    let dir = DirStore::open(&config.storage_dir).with_context(|| {
        format!(
            "cannot open the storage directory {}",
            config.storage_dir.display()
        )
    })?;
    let (from, into): (&dyn ObjectStore, &dyn ObjectStore) = match to {
        "s3" => (&dir, &s3),
        _ => (&s3, &dir),
    };
    println!(
        "Copying the restore points from {} to {}",
        from.remote()
            .unwrap_or_else(|| config.storage_dir.display().to_string()),
        into.remote()
            .unwrap_or_else(|| config.storage_dir.display().to_string())
    );
    let c = migrate::copy_all(from, into, |step, _| println!("  {step}"))?;
    println!(
        "Copied {} chunks ({} there already) and {} restore points ({} there already), {:.1} MiB.",
        c.chunks,
        c.chunks_there,
        c.points,
        c.points_there,
        c.bytes as f64 / 1048576.0
    );
    Ok(())
}

/// Run as root on a data directory another user owns (the package's `serverware`), becomes
/// that user: a `serverware admin reset-password` or `backup` by root then leaves no file (a
/// database journal, a backup) that the service cannot read or write. Nothing otherwise.
fn act_as_data_owner(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(data_dir) else {
        return Ok(());
    };
    if meta.uid() == 0 {
        return Ok(());
    }
    // SAFETY: plain credential changes, groups first and the user last (after which none of
    // these could be made again); each result is checked.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(meta.gid()) != 0
            || libc::setuid(meta.uid()) != 0
        {
            anyhow::bail!(
                "cannot act as the owner of {} (uid {}): {}",
                data_dir.display(),
                meta.uid(),
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Tells systemd (a `Type=notify` unit, as the package installs) how the controller stands, so
/// `systemctl status serverware` says it is ready only once it serves. Nothing without systemd.
fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|a| {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &a)
    });
    if let Err(e) = sent {
        tracing::warn!("cannot tell systemd how the controller stands: {e}");
    }
}

fn reset_password(config: &Config, username: &str, from_stdin: bool) -> anyhow::Result<()> {
    let given = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Some(line.trim_end_matches(['\r', '\n']).to_string())
    } else {
        None
    };
    let shown = given.is_none();
    let password = serverware::server::reset_password(config, username, given)?;
    if shown {
        println!(
            "New password for {}: {password}",
            username.trim().to_lowercase()
        );
    } else {
        println!("Password for {} changed.", username.trim().to_lowercase());
    }
    println!("The account is enabled and its sessions have ended.");
    Ok(())
}

fn run(mut config: Config) -> anyhow::Result<()> {
    tracing::info!(?config, "starting");
    // One controller per data directory (a restore waits for it to stop). Held for the whole
    // run; a re-exec closes it and takes it again. A database URL that cannot work is refused
    // before anything (the data directory) is made.
    serverware::db::DbTarget::parse(&config.database_url)?;
    let _lock = serverware::backup::lock(&config.data_dir)?;
    // A boot service an earlier run left (killed, or a leader that stepped down and started again
    // as this standby) answers for nobody: only the leading run serves network boots.
    serverware::provision::dnsmasq::end_stale(&serverware::provision::dnsmasq::pid_file(
        &config.data_dir,
    ));
    serverware::provision::dnsmasq::sweep_run_dirs();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let from_env = config.admin_password.is_some();
        let listener = serverware::server::bind(&config)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let (lead, database) = match &config.pair {
            Some(pair) => match standby_until_leading(&config, pair, &listener, &mut term).await? {
                Some(Leading { lead, database }) => (Some(lead), database),
                None => return Ok(()),
            },
            None => (None, None),
        };
        let keeper = database.map(|(k, url)| {
            config.database_url = url;
            if let Some(l) = &lead {
                tokio::spawn(k.clone().tend_while_leading(l.clone()));
            }
            k
        });
        let address = config.pair.as_ref().and_then(|p| p.address.clone());
        let data_dir = config.data_dir.clone();
        let mut running = serverware::server::start_on(config, listener, lead.clone()).await?;
        if let Some(a) = address.clone() {
            // Serving: the site's address comes here.
            match tokio::task::spawn_blocking(move || a.take()).await {
                Ok(Ok(())) => tracing::info!("this controller holds the site's service address"),
                Ok(Err(e)) => tracing::error!("cannot take the site's service address: {e}"),
                Err(e) => tracing::error!("cannot take the site's service address: {e}"),
            }
        }
        println!();
        println!("SERVERware controller {} is running.", serverware_shared::BUILD);
        println!("  Dashboard and API: {}", running.url());
        println!("  API reference:     {}api/v1/openapi.json", running.url());
        if let Some(a) = running.ssh_addr {
            let host = if a.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                a.ip().to_string()
            };
            println!("  Command line:      sw, or ssh -p {} admin@{host}", a.port());
        }
        if running.created_admin {
            match &running.generated_admin_password {
                Some(pw) => {
                    println!("  Log in as admin with password: {pw}");
                    println!(
                        "  (kept in {} until admin changes it; `serverware admin reset-password admin` sets a new one)",
                        data_dir.join(serverware::auth::users::FIRST_PASSWORD_FILE).display()
                    );
                }
                None if from_env => println!("  Log in as admin with the password from SERVERWARE_ADMIN_PASSWORD."),
                None => {}
            }
        } else {
            println!("  Log in with your account (lost it? `serverware admin reset-password USER`).");
        }
        if std::io::stdout().is_terminal() {
            println!("  Press Ctrl-C to stop.");
        }
        println!();
        notify_systemd("READY=1\nSTATUS=leading: serving the dashboard and API");
        // actix's own signal handling is off: SIGTERM and Ctrl-C stop the controller here, after
        // running operations had their chance to end.
        let server = &mut running.server;
        let lost = async {
            match &lead {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        };
        let hand_over = async {
            match &lead {
                Some(l) => l.hand_over_requested().await,
                None => std::future::pending().await,
            }
        };
        let handing_over = tokio::select! {
            r = server => { r??; return Ok(()); }
            _ = tokio::signal::ctrl_c() => false,
            _ = term.recv() => false,
            _ = lost => step_down(None, address.as_ref(), keeper.as_ref()),
            _ = hand_over => true,
        };
        tracing::info!("stopping: no new operations; waiting for running ones");
        // The lease is still watched while running operations end: should it be lost, the
        // site's address goes at once (the database is fenced by the lease by itself).
        let watch = async {
            if let Some(l) = &lead {
                l.lost().await;
                tracing::warn!("the lease ran out while stopping: giving the site's address back");
                release(address.as_ref());
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = running.shutdown(serverware::server::STOP_DEADLINE) => {}
            _ = watch => {}
        }
        let ttl = lead.as_ref().map(|l| l.ttl());
        if let Some(k) = keeper {
            // Its standby receives everything before the partner may take the site.
            let _ = tokio::task::spawn_blocking(move || k.retire(true)).await;
        }
        if let Some(l) = lead {
            // The address goes first, then the lease: the partner takes both at once.
            release(address.as_ref());
            // Hands the lead over at once: the partner need not wait for the lease to run out.
            l.stop().await;
        }
        if handing_over {
            // The standby again, claiming nothing while the partner takes the site.
            step_down(ttl.map(|t| t * 3), None, None);
        }
        Ok(())
    })
}

/// `serverware image build`: the stages as they happen, then the image.
fn image_build(config: &Config, mirror: &str) -> anyhow::Result<()> {
    use serverware::provision::image;
    if !(mirror.starts_with("http://") || mirror.starts_with("https://")) {
        anyhow::bail!("--mirror: an http:// or https:// URL");
    }
    let agent = config.agent_bin.as_deref().ok_or_else(|| {
        anyhow::anyhow!("no serverware-agent binary found (SERVERWARE_AGENT_BIN)")
    })?;
    let t = std::time::Instant::now();
    let log = |m: &str| println!("[{:>6.1} s] {m}", t.elapsed().as_secs_f64());
    let b = image::build(&config.images_dir, mirror, agent, &log)?;
    println!(
        "image {} ({}) in {}: {}",
        b.manifest.id,
        if b.cached {
            "cached"
        } else if b.base_cached {
            "built on the cached base"
        } else {
            "built cold"
        },
        config.images_dir.join(&b.manifest.id).display(),
        b.manifest
            .files
            .iter()
            .map(|f| format!("{} {} MB sha256 {}", f.name, f.size >> 20, &f.sha256[..16]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// `serverware image list`: every image with what its check found.
fn image_list(config: &Config) -> anyhow::Result<()> {
    for (id, m) in serverware::provision::image::list(&config.images_dir) {
        match m {
            Ok(m) => println!(
                "{id}  version {}  agent {}  built in {:.0} s  ok",
                m.version,
                &m.agent_sha256[..12],
                m.build_secs
            ),
            Err(e) => println!("{id}  UNUSABLE: {e:#}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::may_carry_keys;

    #[test]
    fn the_pairs_keys_never_cross_a_network_unencrypted_unless_allowed() {
        assert!(may_carry_keys("https://ctl-a.example:8443", false).is_ok());
        assert!(may_carry_keys("http://127.0.0.1:8080", false).is_ok());
        assert!(may_carry_keys("http://localhost:8080/", false).is_ok());
        let e = may_carry_keys("http://10.0.0.1:8080", false).unwrap_err();
        assert!(e.to_string().contains("unencrypted"), "{e}");
        assert!(may_carry_keys("http://10.0.0.1:8080", true).is_ok());
        assert!(may_carry_keys("ftp://10.0.0.1", false).is_err());
    }
}
