//! PostgreSQL's own replication, as the pair's keeper (`pair/postgres.rs`) and the Controllers
//! view read and steer it on a server they connect to.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};

pub type PgConn = diesel::PgConnection;

/// A connection to one server (the pair's keeper speaks to its own).
pub fn connect(url: &str) -> anyhow::Result<PgConn> {
    PgConn::establish(url).map_err(|e| anyhow::anyhow!("{e}"))
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    v: bool,
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    v: String,
}

/// A standby as its primary sees it (`pg_stat_replication`).
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct Standby {
    /// Its `application_name`: the controller's name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// `streaming` once it has caught up.
    #[diesel(sql_type = Text)]
    pub state: String,
    /// `sync` while every commit waits for it.
    #[diesel(sql_type = Text)]
    pub sync_state: String,
    /// WAL the primary wrote that the standby has not replayed yet.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub lag_bytes: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub replay_lag_ms: Option<i64>,
}

/// Whether the server is a standby (in recovery).
pub fn in_recovery(c: &mut PgConn) -> QueryResult<bool> {
    let r: Flag = diesel::sql_query("SELECT pg_is_in_recovery() AS v").get_result(c)?;
    Ok(r.v)
}

/// Promotes a standby, waiting up to 60 s: whether it is the primary now. A checkpoint follows
/// at once, so that its control file names its new timeline (what `pg_rewind` of the former
/// primary reads).
pub fn promote(c: &mut PgConn) -> QueryResult<bool> {
    let r: Flag = diesel::sql_query("SELECT pg_promote(true, 60) AS v").get_result(c)?;
    if r.v {
        diesel::sql_query("CHECKPOINT").execute(c)?;
    }
    Ok(r.v)
}

/// The standbys connected to this primary.
pub fn standbys(c: &mut PgConn) -> QueryResult<Vec<Standby>> {
    diesel::sql_query(
        "SELECT application_name AS name, COALESCE(state, '') AS state, \
         COALESCE(sync_state, '') AS sync_state, \
         pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes, \
         (EXTRACT(EPOCH FROM replay_lag) * 1000)::bigint AS replay_lag_ms \
         FROM pg_stat_replication ORDER BY application_name",
    )
    .load(c)
}

/// `synchronous_standby_names` as the server uses it now.
pub fn sync_names(c: &mut PgConn) -> QueryResult<String> {
    let r: Setting = diesel::sql_query(
        "SELECT setting AS v FROM pg_settings WHERE name = 'synchronous_standby_names'",
    )
    .get_result(c)?;
    Ok(r.v)
}

/// Sets `synchronous_standby_names` (kept across restarts) and makes the server use it now.
pub fn set_sync_names(c: &mut PgConn, names: &str) -> QueryResult<()> {
    let quoted = names.replace('\'', "''");
    diesel::sql_query(format!(
        "ALTER SYSTEM SET synchronous_standby_names = '{quoted}'"
    ))
    .execute(c)?;
    diesel::sql_query("SELECT pg_reload_conf()").execute(c)?;
    Ok(())
}

/// Creates the database `serverware` unless it is there.
pub fn ensure_database(c: &mut PgConn) -> QueryResult<()> {
    let r: Flag = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'serverware') AS v",
    )
    .get_result(c)?;
    if !r.v {
        diesel::sql_query("CREATE DATABASE serverware").execute(c)?;
    }
    Ok(())
}
