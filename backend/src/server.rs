//! Starting the controller: database, first admin, HTTP(S) server.

use crate::api::{self, OpenApiDoc};
use crate::auth::LoginLimiter;
use crate::config::{Config, TlsFiles};
use crate::core::Core;
use crate::db::Db;
use actix_web::middleware::{self, from_fn};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use utoipa_actix_web::AppExt;

/// A running controller.
pub struct Running {
    /// Live messages to WebSocket clients.
    pub hub: std::sync::Arc<crate::hub::Hub>,
    pub addr: SocketAddr,
    pub tls: bool,
    /// The admin password when this start created the admin user with a random one.
    pub generated_admin_password: Option<String>,
    /// True when this start created the admin user.
    pub created_admin: bool,
    pub handle: actix_web::dev::ServerHandle,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    pub state: web::Data<Core>,
    /// Where the SSH command line listens (None: off).
    pub ssh_addr: Option<SocketAddr>,
}

/// How long a starting controller waits at most for its hosts to connect before it takes up
/// the operations an earlier run left.
pub const RESUME_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a stopping controller lets running operations reach their end.
pub const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

impl Running {
    /// Stops cleanly: no new operations, running ones get until `deadline` to end (every step
    /// they completed is recorded, so what is cut off is resumed at the next start), then the
    /// HTTP server stops.
    pub async fn shutdown(self, deadline: std::time::Duration) {
        self.state.stopping.stop();
        self.state.supervisor.stop_all();
        self.state.provision.dnsmasq.stop();
        let t0 = std::time::Instant::now();
        loop {
            let n = self.state.ops.live.count();
            if n == 0 {
                break;
            }
            if t0.elapsed() >= deadline {
                tracing::warn!("{n} operation(s) still running; they resume at the next start");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.handle.stop(true).await;
    }
}

impl Running {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let ip = if self.addr.ip().is_unspecified() {
            "127.0.0.1".parse().unwrap_or(self.addr.ip())
        } else {
            self.addr.ip()
        };
        format!("{scheme}://{}/", SocketAddr::new(ip, self.addr.port()))
    }
}

pub use crate::auth::users::{bootstrap_admin, Bootstrap};

/// Sends every stored event to the sockets subscribed to events, and the object it touched to
/// those subscribed to inventory.
fn spawn_event_fanout(db: &Db, hub: std::sync::Arc<crate::hub::Hub>) {
    use serverware_shared::ws::{ChangeKind, InventoryChange, ServerMessage};
    let mut rx = db.subscribe_events();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let change = inventory_change(&event.action).and_then(|change| {
                        Some(InventoryChange {
                            kind: event.target_type.clone()?,
                            id: event.target_id.clone()?,
                            change,
                        })
                    });
                    hub.publish(&ServerMessage::Event { event });
                    if let Some(change) = change {
                        hub.publish(&ServerMessage::Inventory { change });
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("live event fan-out fell behind; {n} events not pushed");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });

    fn inventory_change(action: &str) -> Option<ChangeKind> {
        let verb = action.rsplit('.').next()?;
        match verb {
            "create" => Some(ChangeKind::Created),
            "delete" | "revoke" => Some(ChangeKind::Deleted),
            "update" | "rekey" | "password" | "password_reset" => Some(ChangeKind::Updated),
            _ => None,
        }
    }
}

fn load_tls(files: &TlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read TLS certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("TLS certificate {} is not valid PEM", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "TLS certificate {} holds no certificate",
            files.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read TLS key {}", files.key.display()))?;
    rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS set-up failed")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the TLS certificate and key do not match or are unsupported")
}

/// Every background loop, owned by the supervisor.
fn start_loops(state: &std::sync::Arc<Core>) {
    use std::time::Duration;
    crate::stall::spawn();
    let sup = &state.supervisor;
    let ops = state.ops.clone();
    sup.spawn("recovery", Duration::from_secs(1), move || {
        let ops = ops.clone();
        async move { ops.drive().await.map_err(|e| e.message()) }
    });
    let vpses = state.vpses.clone();
    sup.spawn("reconcile", crate::vps::RECONCILE_EVERY, move || {
        let vpses = vpses.clone();
        async move { crate::vps::reconcile(&vpses).await.map_err(|e| e.message()) }
    });
    let db = state.db.clone();
    sup.spawn("retention", crate::hosts::RETENTION_EVERY, move || {
        let db = db.clone();
        async move {
            let rollups = crate::hosts::prune_rollups(&db)
                .await
                .map_err(|e| e.message())?;
            let history = crate::settings::prune_history(&db)
                .await
                .map_err(|e| e.message())?
                + crate::alerts::send::prune(&db)
                    .await
                    .map_err(|e| e.message())?;
            if rollups + history > 0 {
                tracing::info!(rollups, history, "deleted rows past retention");
            }
            Ok(())
        }
    });
    // netDUPLO: cycles as they fall due, and the retention of their restore points.
    let dup = state.duplication.clone();
    sup.spawn("duplo", Duration::from_millis(1), move || {
        let dup = dup.clone();
        async move { crate::duplo::tick(&dup).await }
    });
    let dup = state.duplication.clone();
    sup.spawn("duplo-prune", crate::duplo::prune::EVERY, move || {
        let dup = dup.clone();
        async move { crate::duplo::prune::run(&dup).await }
    });
    // netMON: service checks of HA VPSes, leases, failover.
    let mon = state.monitor.clone();
    sup.spawn("netmon", Duration::from_millis(1), move || {
        let mon = mon.clone();
        async move { crate::netmon::tick(&mon).await }
    });
    // Failover drills: what interrupted ones left on hosts, and the schedule.
    let vpses = state.vpses.clone();
    sup.spawn("drills", Duration::from_secs(30), move || {
        let vpses = vpses.clone();
        async move {
            crate::vps::drill::clean_up(&vpses)
                .await
                .map_err(|e| e.message())?;
            crate::vps::drill::scheduled(&vpses)
                .await
                .map_err(|e| e.message())
        }
    });
    // Alerts: incidents and events into the outbox, and the outbox delivered.
    let alerts = state.alerts.clone();
    sup.spawn("alert-watch", crate::alerts::watch::EVERY, move || {
        let alerts = alerts.clone();
        async move {
            crate::alerts::watch::look(&alerts)
                .await
                .map(|_| ())
                .map_err(|e| e.message())
        }
    });
    let alerts = state.alerts.clone();
    sup.spawn("alert-send", std::time::Duration::from_secs(1), move || {
        let alerts = alerts.clone();
        async move { crate::alerts::send::pass(&alerts).await.map(|_| ()) }
    });
    // The controller's own backups, on the configured schedule.
    let (config, db) = (state.config.clone(), state.db.clone());
    let started = chrono::Utc::now();
    sup.spawn("backup", Duration::from_secs(60), move || {
        let (config, db) = (config.clone(), db.clone());
        async move {
            if let Some(file) = crate::backup::scheduled(&config, &db, started).await? {
                crate::backup::record(&db, &file)
                    .await
                    .map_err(|e| e.message())?;
            }
            Ok(())
        }
    });
    // The built-in template: built at start, and again if its archive goes missing.
    let (db, dir) = (state.db.clone(), state.config.templates_dir.clone());
    sup.spawn("templates", Duration::from_secs(60), move || {
        let (db, dir) = (db.clone(), dir.clone());
        async move {
            crate::templates::ensure_minimal(&db, &dir)
                .await
                .map_err(|e| format!("the built-in template is not available: {e:#}"))
        }
    });
}

/// The listener the controller serves on. A controller of a pair binds it once, serves as
/// the standby on it, and keeps it when it takes over.
pub fn bind(config: &Config) -> anyhow::Result<TcpListener> {
    TcpListener::bind(config.listen).with_context(|| format!("cannot listen on {}", config.listen))
}

/// Opens the database, makes sure an admin exists and starts serving. Returns once the listener
/// is bound.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let listener = bind(&config)?;
    start_on(config, listener, None).await
}

/// Starts the controller on `listener`. `pair`: this controller leads its pair now; its
/// database refuses all work once it may no longer lead, and its takeover is recorded.
pub async fn start_on(
    config: Config,
    listener: TcpListener,
    pair: Option<Arc<crate::pair::Leadership>>,
) -> anyhow::Result<Running> {
    let won = (std::time::Instant::now(), chrono::Utc::now());
    let mut db = open_database(&config).await?;
    if let Some(lead) = &pair {
        let lead = lead.clone();
        db = db.fenced(Arc::new(move || lead.is_leader()));
    }
    let admin_pw = config.admin_password.clone();
    let db2 = db.clone();
    let boot =
        tokio::task::spawn_blocking(move || bootstrap_admin(&db2, admin_pw.as_deref())).await??;
    if let Some(pw) = &boot.generated_password {
        crate::auth::users::keep_first_password(&config.data_dir, pw)?;
    }

    let tls = match &config.tls {
        Some(files) => Some(load_tls(files)?),
        None => None,
    };
    let addr = listener.local_addr()?;
    let state = build_core(config, db, tls.is_some(), pair.clone()).await?;
    let hub = state.hub.clone();
    register_operations(&state);
    // What an earlier run left is taken up once its hosts are back (or had their chance).
    let (hosts, since) = (state.hosts.clone(), std::time::Instant::now());
    state.ops.wait_for(Arc::new(move || {
        hosts.all_settled() || since.elapsed() >= RESUME_WAIT
    }));
    match state.ops.settle_interrupted().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            "{n} task(s) without a step log were running when the controller stopped; marked failed"
        ),
        Err(e) => tracing::warn!("cannot check for interrupted tasks: {e}"),
    }
    match crate::vps::drill::settle_interrupted(&state.vpses).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!("{n} failover drill(s) were under way when the controller stopped; marked failed, their copies removed when their hosts answer"),
        Err(e) => tracing::warn!("cannot check for interrupted drills: {e}"),
    }
    let carried_on = crate::ops::unfinished(&state.db)
        .await
        .map(|o| o.len())
        .unwrap_or(0);
    start_loops(&state.clone().into_inner());
    // The host images are checked once now (every byte), not on a booting machine's first ask.
    let p = state.provision.clone();
    tokio::spawn(async move { p.images().await });
    crate::provision::join::resume(&state.provision).await;
    match state.provision.settings().await {
        Ok(s) if s.enabled => state.provision.start_boot_service(&s).await,
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the network boot settings: {e}"),
    }
    let doc = web::Data::new(OpenApiDoc(
        serde_json::to_string(&api::openapi()).context("cannot serialise the OpenAPI document")?,
    ));

    let static_dir = crate::api::dashboard::Dashboard::of(&state.config);
    let app_state = state.clone();
    let server = HttpServer::new(move || app(app_state.clone(), doc.clone(), static_dir.clone()))
        .workers(2)
        .disable_signals()
        .shutdown_timeout(5);
    let server = match tls {
        Some(cfg) => server.listen_rustls_0_23(listener, cfg)?,
        None => server.listen(listener)?,
    }
    .run();
    let handle = server.handle();
    let join = tokio::spawn(server);
    if let Some(lead) = &pair {
        crate::takeover::record(
            state.db.clone(),
            state.hosts.clone(),
            crate::takeover::Takeover {
                name: lead.me().name.clone(),
                previous: lead.previous().map(|p| p.name),
                won: won.0,
                won_at: won.1,
                serving: std::time::Instant::now(),
                operations: carried_on,
            },
        );
    }
    let ssh_addr = start_ssh(&state, addr).await?;
    Ok(Running {
        ssh_addr,
        hub,
        addr,
        tls: state.tls,
        generated_admin_password: boot.generated_password,
        created_admin: boot.created,
        handle,
        server: join,
        state,
    })
}

/// A controller of a pair that does not lead: it serves the dashboard (which shows it as the
/// standby and points to the leader), `GET /api/v1/health` with where it stands, and refuses
/// everything else of the API with `standby`, naming the leader. It holds no database
/// connection and runs nothing.
pub struct Standby {
    handle: actix_web::dev::ServerHandle,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Standby {
    /// Stops serving (requests under way finish); the listener stays with its owner.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.join.await;
    }
}

/// Serves as the standby on (a clone of) `listener` until stopped.
pub fn standby(
    config: &Config,
    listener: &TcpListener,
    lead: Arc<crate::pair::Leadership>,
) -> anyhow::Result<Standby> {
    let tls = match &config.tls {
        Some(files) => Some(load_tls(files)?),
        None => None,
    };
    let static_dir = crate::api::dashboard::Dashboard::of(config);
    let lead = web::Data::from(lead);
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(lead.clone())
            .wrap(
                middleware::DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("X-Frame-Options", "DENY"))
                    .add(("Referrer-Policy", "same-origin")),
            )
            .wrap(from_fn(api::cors::cross_site_reads))
            .service(web::resource("/api/v1/health").route(web::get().to(api::standby::health)))
            .service(web::scope("/api/v1").default_service(web::to(api::standby::refuse)))
            .service(web::resource("/metrics").to(api::standby::refuse));
        static_dir.serve(app)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(2);
    let listener = listener.try_clone().context("cannot share the listener")?;
    let server = match tls {
        Some(cfg) => server.listen_rustls_0_23(listener, cfg)?,
        None => server.listen(listener)?,
    }
    .run();
    let handle = server.handle();
    let join = tokio::spawn(server);
    Ok(Standby { handle, join })
}

/// Opens (and migrates) the database; a SQLite file and its companions are made private.
async fn open_database(config: &Config) -> anyhow::Result<Db> {
    // A database URL that cannot work is refused before anything is created.
    let target = crate::db::DbTarget::parse(&config.database_url)?;
    crate::files::private_dir(&config.data_dir)?;
    let url = config.database_url.clone();
    let db = tokio::task::spawn_blocking(move || Db::open(&url)).await??;
    if let crate::db::DbTarget::Sqlite(file) = target {
        // Wherever the database file is, it is the controller's alone.
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut f = file.clone().into_os_string();
            f.push(suffix);
            crate::files::private_file(std::path::Path::new(&f))?;
        }
    }
    Ok(db)
}

/// The controller's parts, each given what it needs.
async fn build_core(
    config: Config,
    db: Db,
    tls: bool,
    pair: Option<Arc<crate::pair::Leadership>>,
) -> anyhow::Result<web::Data<Core>> {
    let key = crate::keys::load_or_create(&config.data_dir)?;
    let agent = match &config.agent_bin {
        Some(p) => Some(
            std::fs::read(p)
                .with_context(|| format!("cannot read the agent binary {}", p.display()))?,
        ),
        None => {
            tracing::warn!(
                "no serverware-agent binary found (SERVERWARE_AGENT_BIN): hosts cannot be added"
            );
            None
        }
    };
    let hub = std::sync::Arc::new(crate::hub::Hub::default());
    let epoch = crate::hosts::next_lease_epoch(&db).await?;
    let host_manager = crate::hosts::HostManager::new(db.clone(), hub.clone(), key, agent, epoch);
    host_manager.start_all().await?;
    host_manager.every_second();
    spawn_event_fanout(&db, hub.clone());
    // Built before serving when it can be; the supervisor's `templates` loop retries.
    if let Err(e) = crate::templates::ensure_minimal(&db, &config.templates_dir).await {
        tracing::warn!("the built-in template is not available yet: {e:#}; retrying");
    }
    crate::files::private_dir(&config.storage_dir)?;
    let duplo = std::sync::Arc::new(
        match &config.storage_s3 {
            Some(s3) => {
                let store = crate::storage::S3Store::open(s3.clone()).with_context(|| {
                    format!("cannot open the S3 store at {}", s3.endpoints.join(", "))
                })?;
                crate::duplo::Duplo::with_store(Arc::new(store), &config.storage_dir)
            }
            None => crate::duplo::Duplo::open(&config.storage_dir).with_context(|| {
                format!(
                    "cannot open the storage directory {}",
                    config.storage_dir.display()
                )
            })?,
        }
        .with_tree_budget((config.duplo_tree_cache_mb << 20) as usize),
    );
    let stopping = crate::ops::Stopping::default();
    let ops = Arc::new(crate::ops::recovery::Engine::new(
        db.clone(),
        hub.clone(),
        stopping.clone(),
    ));
    let netmon = Arc::new(crate::netmon::Netmon::default());
    let duplication = Arc::new(crate::duplo::Duplication {
        db: db.clone(),
        hosts: host_manager.clone(),
        duplo: duplo.clone(),
        stopping: stopping.clone(),
    });
    let vpses = Arc::new(crate::vps::Vpses {
        db: db.clone(),
        hub: hub.clone(),
        hosts: host_manager.clone(),
        ops: ops.clone(),
        duplo: duplo.clone(),
        netmon: netmon.clone(),
        templates_dir: config.templates_dir.clone(),
        stopping: stopping.clone(),
        placement: Default::default(),
    });
    let monitor = Arc::new(crate::netmon::Monitor {
        db: db.clone(),
        hub: hub.clone(),
        hosts: host_manager.clone(),
        duplo,
        duplication: duplication.clone(),
        vpses: vpses.clone(),
        netmon,
    });
    let host_admin = Arc::new(crate::hosts::HostAdmin {
        db: db.clone(),
        hosts: host_manager.clone(),
        monitor: monitor.clone(),
        stopping: stopping.clone(),
    });
    let provision = crate::provision::Provisioner::new(
        db.clone(),
        hub.clone(),
        config.images_dir.clone(),
        host_admin.clone(),
        crate::provision::dnsmasq::run_dir(),
        crate::provision::dnsmasq::pid_file(&config.data_dir),
    );
    let alerts = Arc::new(crate::alerts::Alerts::new(db.clone(), vpses.clone())?);
    let state = web::Data::new(Core {
        alerts,
        provision,
        host_admin,
        vpses,
        duplication,
        monitor,
        ops,
        stopping,
        supervisor: Default::default(),
        site_reads: Default::default(),
        hosts: host_manager,
        hub: hub.clone(),
        login_limiter: LoginLimiter::new(config.login),
        tls,
        config,
        db,
        pair,
    });
    Ok(state)
}

/// Each kind of durable operation registers its recovery with the engine. The engine holds
/// them; they reach the VPS service through a weak reference, so the engine keeps nothing alive.
fn register_operations(state: &web::Data<Core>) {
    let ops = state.ops.clone();
    let weak = Arc::downgrade(&state.vpses);
    for kind in crate::vps::DURABLE_KINDS {
        let weak = weak.clone();
        ops.register(
            kind,
            std::sync::Arc::new(move |task, op| {
                let weak = weak.clone();
                Box::pin(async move {
                    if let Some(vpses) = weak.upgrade() {
                        crate::vps::recover(&vpses, task, op).await;
                    }
                })
            }),
        );
    }
}

/// The HTTP application: the API under `/api/v1`, the live socket, `/metrics` and the dashboard.
fn app(
    app_state: web::Data<Core>,
    doc: web::Data<OpenApiDoc>,
    static_dir: crate::api::dashboard::Dashboard,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let (app, _) = App::new()
        .app_data(app_state.clone())
        // Handlers that need one service are handed that service alone.
        .app_data(web::Data::from(app_state.vpses.clone()))
        .app_data(web::Data::from(app_state.host_admin.clone()))
        .app_data(web::Data::from(app_state.monitor.clone()))
        .app_data(doc.clone())
        .configure(api::extractor_configs)
        .wrap(
            middleware::DefaultHeaders::new()
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("X-Frame-Options", "DENY"))
                .add(("Referrer-Policy", "same-origin")),
        )
        // Other sites' dashboards may read (GET) with a token of this site.
        .wrap(from_fn(api::cors::cross_site_reads))
        .wrap(middleware::Logger::new("%a \"%r\" %s %b %Dms").log_target("serverware::http"))
        // The live socket shares its path with the event listing; it is told apart by the
        // upgrade header and authenticated by the same middleware.
        .service(
            web::resource("/api/v1/events")
                .guard(actix_web::guard::fn_guard(api::ws::is_upgrade))
                .wrap(from_fn(api::guard::require_auth))
                .route(web::get().to(api::ws::events_socket)),
        )
        // A VPS's console: a WebSocket of its own, authenticated the same way.
        .service(
            web::resource("/api/v1/vpses/{id}/console")
                .guard(actix_web::guard::fn_guard(api::ws::is_upgrade))
                .wrap(from_fn(api::guard::require_auth))
                .route(web::get().to(api::console::console_socket)),
        )
        // Prometheus scrapes with an API token, like any other client.
        .service(
            web::resource("/metrics")
                .wrap(from_fn(api::guard::require_auth))
                .route(web::get().to(api::metrics::metrics)),
        )
        .configure(api::provision::boot_routes)
        .into_utoipa_app()
        .service(
            utoipa_actix_web::scope("/api/v1")
                .wrap(from_fn(api::guard::require_auth))
                .configure(api::configure)
                .default_service(web::to(api::not_found)),
        )
        .split_for_parts();
    static_dir.serve(app)
}

/// The SSH command line, when configured; the address it listens on.
async fn start_ssh(
    state: &web::Data<Core>,
    addr: SocketAddr,
) -> anyhow::Result<Option<SocketAddr>> {
    let scheme = if state.tls { "https" } else { "http" };
    let local = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    Ok(match state.config.ssh_listen {
        Some(a) => {
            match crate::sshd::start(state.clone().into_inner(), a, format!("{scheme}://{local}"))
                .await
            {
                Ok(bound) => Some(bound),
                // The default port taken (another controller on this machine): the dashboard
                // and API still serve.
                Err(e) if !state.config.ssh_listen_explicit => {
                    tracing::warn!("the SSH command line is off: {e:#}");
                    None
                }
                Err(e) => return Err(e),
            }
        }
        None => None,
    })
}

pub fn reset_password(
    config: &Config,
    username: &str,
    password: Option<String>,
) -> anyhow::Result<String> {
    let db = Db::open(&config.database_url)?;
    let set = crate::auth::users::reset_password(&db, username, password)?;
    crate::auth::users::forget_first_password(&config.data_dir, username);
    Ok(set)
}
