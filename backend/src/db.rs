//! The database: SQLite by default, PostgreSQL when the URL says so. One diesel
//! `MultiConnection` enum, one migrations folder per database, migrations embedded and applied at
//! start. Blocking diesel calls run on tokio's blocking pool, never on the async executor.

use crate::error::Error;
use anyhow::{bail, Context};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Sqlite(diesel::SqliteConnection),
    Postgres(diesel::PgConnection),
}

/// Runs `$body` with `$c` bound to the concrete connection, for the few queries a
/// `MultiConnection` cannot express (such as `RETURNING`).
#[macro_export]
macro_rules! with_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Sqlite($c) => $body,
            $crate::db::DbConn::Postgres($c) => $body,
        }
    };
}

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DbTarget {
    /// `sqlite://PATH` (`sqlite:///abs/path` or `sqlite://./rel/path`) or `postgres://…` /
    /// `postgresql://…`. Anything else is an error: a typo must never create a new empty database.
    pub fn parse(url: &str) -> anyhow::Result<DbTarget> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                bail!(
                    "database URL 'sqlite://' names no file: use sqlite:///path/to/serverware.db"
                );
            }
            return Ok(DbTarget::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbTarget::Postgres(url.to_string()));
        }
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or(url);
        bail!(
            "database URL scheme '{scheme}' is not supported: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE"
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            DbTarget::Sqlite(_) => "sqlite",
            DbTarget::Postgres(_) => "postgres",
        }
    }
}

/// Opens connections for the pool; see [`Db`].
pub struct Manager {
    target: DbTarget,
    /// Connections that refuse every change (`PRAGMA query_only`): [`Db::read`]'s.
    read_only: bool,
}

fn sqlite_path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .context("the SQLite database path is not valid UTF-8")
}

fn open(target: &DbTarget) -> anyhow::Result<DbConn> {
    open_as(target, false)
}

fn open_as(target: &DbTarget, read_only: bool) -> anyhow::Result<DbConn> {
    match target {
        DbTarget::Sqlite(path) => {
            let mut c = diesel::SqliteConnection::establish(sqlite_path_str(path)?)
                .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
            // busy_timeout lets writers queue instead of failing; foreign keys are off by
            // default in SQLite and our ON DELETE rules rely on them.
            c.batch_execute(
                "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
            )?;
            if read_only {
                c.batch_execute("PRAGMA query_only = ON;")?;
            }
            Ok(DbConn::Sqlite(c))
        }
        DbTarget::Postgres(url) => {
            let c = diesel::PgConnection::establish(url).map_err(|e| {
                anyhow::anyhow!(
                    "cannot connect to PostgreSQL at {}: {e}",
                    crate::config::redact_db_url(url)
                )
            })?;
            Ok(DbConn::Postgres(c))
        }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        open_as(&self.target, self.read_only).map_err(|e| {
            r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(format!("{e:#}")))
        })
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConn) -> bool {
        false
    }
}

thread_local! {
    /// Events stored by the closure running on this thread; published once it succeeds.
    static PENDING_EVENTS: std::cell::RefCell<Vec<crate::models::Event>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Called by the audit log for every stored event.
pub(crate) fn note_event(event: &crate::models::Event) {
    PENDING_EVENTS.with(|p| p.borrow_mut().push(event.clone()));
}

fn take_pending() -> Vec<crate::models::Event> {
    PENDING_EVENTS.with(|p| std::mem::take(&mut *p.borrow_mut()))
}

/// Whether this controller may still act on the site: for a controller of a pair, whether it
/// leads (its lease cannot have run out). A database fenced by it does nothing once it says no.
pub type Fence = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// The error of every unit of work a fenced database refuses.
pub fn not_leading() -> Error {
    Error::Standby(
        "this controller no longer leads the pair; its partner takes over the site".into(),
    )
}

/// How many read-only SQLite connections [`Db::read`] may use at once.
const READERS: u32 = 4;

/// A pool of database connections; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool<Manager>,
    kind: &'static str,
    events: tokio::sync::broadcast::Sender<serverware_shared::api::EventResponse>,
    /// SQLite only: one unit of work at a time. A deferred SQLite transaction that reads and
    /// then writes fails at once ("database is locked") when another writer committed in
    /// between, whatever the busy timeout; taking turns here makes writers queue instead.
    /// Each unit is short (milliseconds), and PostgreSQL needs no such thing.
    turn: Option<std::sync::Arc<std::sync::Mutex<()>>>,
    /// SQLite only: connections for [`Db::read`], which change nothing and so need no turn.
    readers: Option<Pool<Manager>>,
    /// Checked before every unit of work (see [`Fence`]); None: a single controller.
    fence: Option<Fence>,
}

/// The migrations this release knows for a database kind (`sqlite`, `postgres`), by version.
pub fn known_migrations(kind: &str) -> anyhow::Result<Vec<String>> {
    use diesel::migration::MigrationSource;
    Ok(match kind {
        "sqlite" => MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .iter()
            .map(|m| m.name().version().to_string())
            .collect(),
        _ => MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .iter()
            .map(|m| m.name().version().to_string())
            .collect(),
    })
}

/// Refuses a database that a newer release migrated: a migration it applied that this release
/// does not know means tables this release would misread (or a later upgrade would skip). Nothing
/// is changed; the message says what to run instead.
fn refuse_downgrade<DB, C>(c: &mut C, known: &EmbeddedMigrations) -> anyhow::Result<()>
where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB>,
    EmbeddedMigrations: diesel::migration::MigrationSource<DB>,
{
    use diesel::migration::MigrationSource;
    let known: Vec<String> = MigrationSource::<DB>::migrations(known)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let applied = c
        .applied_migrations()
        .map_err(|e| anyhow::anyhow!("cannot read the database's migrations: {e}"))?;
    let unknown: Vec<String> = applied
        .iter()
        .map(|v| v.to_string())
        .filter(|v| !known.contains(v))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "this database was upgraded by a newer SERVERware release than this one ({}): its \
             migrations {} are unknown here. A downgrade is refused so that nothing is lost: run \
             that release or a newer one, or restore a backup taken before the upgrade",
            serverware_shared::BUILD,
            unknown.join(", ")
        );
    }
    Ok(())
}

impl Db {
    /// Whether the database answers (a `SELECT 1`).
    pub async fn ping(&self) -> Result<(), Error> {
        self.run(|conn| {
            use diesel::connection::SimpleConnection;
            conn.batch_execute("SELECT 1")
                .map_err(|e| Error::DatabaseUnavailable(e.to_string()))
        })
        .await
    }

    /// Opens the database at `url`, creating an SQLite file only where the URL says so, and
    /// applies pending migrations (refusing one a newer release migrated).
    pub fn open(url: &str) -> anyhow::Result<Db> {
        let target = DbTarget::parse(url)?;
        let mut conn = open(&target)?;
        match &mut conn {
            DbConn::Sqlite(c) => {
                // WAL lets readers work while a writer commits; it is stored in the file.
                c.batch_execute("PRAGMA journal_mode = WAL;")?;
                refuse_downgrade(c, &SQLITE_MIGRATIONS)?;
                c.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map_err(|e| anyhow::anyhow!("SQLite migration failed: {e}"))?;
            }
            DbConn::Postgres(c) => {
                refuse_downgrade(c, &POSTGRES_MIGRATIONS)?;
                c.run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map_err(|e| anyhow::anyhow!("PostgreSQL migration failed: {e}"))?;
            }
        }
        drop(conn);
        let kind = target.kind();
        let size = if kind == "sqlite" { 6 } else { 10 };
        let pool_of = |size: u32, read_only: bool| {
            Pool::builder()
                .max_size(size)
                .min_idle(Some(1))
                .connection_timeout(Duration::from_secs(10))
                .build(Manager {
                    target: target.clone(),
                    read_only,
                })
                .context("cannot create the database connection pool")
        };
        let pool = pool_of(size, false)?;
        let readers = match kind {
            "sqlite" => Some(pool_of(READERS, true)?),
            _ => None,
        };
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let turn = (kind == "sqlite").then(Default::default);
        Ok(Db {
            pool,
            kind,
            events,
            turn,
            readers,
            fence: None,
        })
    }

    /// This database as a controller of a pair uses it: every unit of work first asks `fence`
    /// and is refused ([`not_leading`]) once this controller may no longer lead.
    pub fn fenced(mut self, fence: Fence) -> Db {
        self.fence = Some(fence);
        self
    }

    /// Whether this controller may act on the site now (always, for a single controller).
    pub fn leads(&self) -> bool {
        self.fence.as_ref().is_none_or(|f| f())
    }

    /// Events stored through [`Db::run`], as they commit.
    pub fn subscribe_events(
        &self,
    ) -> tokio::sync::broadcast::Receiver<serverware_shared::api::EventResponse> {
        self.events.subscribe()
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// A connection for blocking code (start-up and the command line).
    pub fn get_blocking(&self) -> Result<PooledConnection<Manager>, Error> {
        self.pool.get().map_err(Error::from)
    }

    /// Runs blocking database work on tokio's blocking pool.
    pub async fn run<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut DbConn) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let events = self.events.clone();
        let turn = self.turn.clone();
        let fence = self.fence.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn
                .as_ref()
                .map(|t| t.lock().unwrap_or_else(|p| p.into_inner()));
            // Asked as late as can be: after waiting for its turn, just before the work.
            if fence.as_ref().is_some_and(|f| !f()) {
                return Err(not_leading());
            }
            let mut conn = pool.get().map_err(Error::from)?;
            take_pending();
            let result = f(&mut conn);
            // Only work that succeeded (and so committed) is announced.
            let stored = take_pending();
            if result.is_ok() {
                for e in stored {
                    let _ = events.send(e.to_response());
                }
            }
            result
        })
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("database task failed: {e}")))?
    }

    /// Read-only work: like [`Db::run`], but on SQLite it does not wait for the writers' turn
    /// (WAL lets readers work beside a writer) and sees one snapshot (it runs in one read
    /// transaction), on a connection that refuses any change (`query_only`: a unit that tried
    /// to write would fail, not slip past the turn). netMON's and placement's reads five times
    /// a second, the lists and the duplication cycles' look-ups no longer queue behind every
    /// write, nor writes behind them.
    pub async fn read<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut DbConn) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let Some(readers) = self.readers.clone() else {
            return self.run(f).await;
        };
        let fence = self.fence.clone();
        tokio::task::spawn_blocking(move || {
            if fence.as_ref().is_some_and(|f| !f()) {
                return Err(not_leading());
            }
            let mut conn = readers.get().map_err(Error::from)?;
            atomic(&mut conn, f)
        })
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("database task failed: {e}")))?
    }

    /// Like [`Db::run`], all of `f` in one transaction: committed if it returns Ok, rolled back
    /// otherwise.
    pub async fn transaction<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut DbConn) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        self.run(move |c| {
            use diesel::Connection;
            c.transaction(f)
        })
        .await
    }
}

/// All of `f` in one transaction on a connection already held (nested in an outer one, a
/// savepoint): committed if it returns Ok, rolled back otherwise.
pub fn atomic<T>(
    c: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, Error>,
) -> Result<T, Error> {
    use diesel::Connection;
    c.transaction(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_schemes() {
        assert_eq!(
            DbTarget::parse("sqlite:///var/lib/sw/x.db").unwrap(),
            DbTarget::Sqlite("/var/lib/sw/x.db".into())
        );
        assert_eq!(
            DbTarget::parse("sqlite://./data/x.db").unwrap(),
            DbTarget::Sqlite("./data/x.db".into())
        );
        assert!(matches!(
            DbTarget::parse("postgresql://u:p@localhost/sw").unwrap(),
            DbTarget::Postgres(_)
        ));
        for bad in [
            "mysql://u@h/db",
            "sqlite://",
            "./data/x.db",
            "sqlite:x.db",
            "postgre://x",
        ] {
            assert!(DbTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_scheme_creates_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("mysql://{}/x.db", dir.path().display());
        let err = Db::open(&url).err().unwrap();
        assert!(format!("{err:#}").contains("mysql"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn sqlite_migrates_and_uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let db = Db::open(&url).unwrap();
        let mut c = db.get_blocking().unwrap();
        #[derive(QueryableByName)]
        struct Mode {
            #[diesel(sql_type = diesel::sql_types::Text)]
            journal_mode: String,
        }
        let m: Mode = diesel::sql_query("PRAGMA journal_mode")
            .get_result(&mut *c)
            .unwrap();
        assert_eq!(m.journal_mode, "wal");
        // Opening again finds nothing to migrate.
        drop(c);
        Db::open(&url).unwrap();
    }

    #[test]
    fn a_database_a_newer_release_migrated_is_refused_untouched() {
        use diesel::connection::SimpleConnection;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        drop(Db::open(&url).unwrap());
        // A newer release added a migration (and a table).
        let db = Db::open(&url).unwrap();
        let mut c = db.get_blocking().unwrap();
        c.batch_execute(
            "CREATE TABLE from_the_future (id INTEGER); \
             INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000099');",
        )
        .unwrap();
        drop(c);
        drop(db);
        let err = format!("{:#}", Db::open(&url).err().expect("refused"));
        assert!(err.contains("newer SERVERware release"), "{err}");
        assert!(err.contains("29991231000099"), "{err}");
        // Nothing was changed: the newer release's table is still there.
        let mut c = open(&DbTarget::parse(&url).unwrap()).unwrap();
        c.batch_execute("SELECT id FROM from_the_future").unwrap();
    }

    #[test]
    fn reads_pass_a_writer_holding_its_turn_and_cannot_write() {
        use diesel::connection::SimpleConnection;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let db = Db::open(&url).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A writer's unit of work is under way (it holds the turn): a read does not wait.
        let turn = db.turn.clone().expect("SQLite takes turns");
        let held = turn.lock().unwrap();
        let n: i64 = rt
            .block_on(db.read(|c| Ok(crate::schema::hosts::table.count().get_result::<i64>(c)?)))
            .unwrap();
        assert_eq!(n, 0);
        drop(held);
        // A read that tries to change anything fails and changes nothing.
        let err = rt
            .block_on(db.read(|c| {
                c.batch_execute("CREATE TABLE sneaked_in (id INTEGER)")?;
                Ok(())
            }))
            .expect_err("a read cannot write");
        assert!(format!("{err:?}").contains("readonly"), "{err:?}");
        let mut c = db.get_blocking().unwrap();
        assert!(c.batch_execute("SELECT id FROM sneaked_in").is_err());
    }

    #[test]
    fn sqlite_plans_a_statement_once() {
        // Without the planner stability guarantee, a cached statement whose LIMIT is bound
        // (every `.first()`) is prepared again on every run.
        #[derive(QueryableByName)]
        struct Used {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            used: i32,
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let db = Db::open(&url).unwrap();
        let mut c = db.get_blocking().unwrap();
        let u: Used = diesel::sql_query("SELECT sqlite_compileoption_used('ENABLE_QPSG') AS used")
            .get_result(&mut *c)
            .unwrap();
        assert_eq!(
            u.used, 1,
            "the bundled SQLite is built with SQLITE_ENABLE_QPSG"
        );
    }
}
