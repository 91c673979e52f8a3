//! The database's side of the controller's backups (`backup.rs`): an SQLite database copied whole
//! while it runs (`VACUUM INTO`, one consistent snapshot), a PostgreSQL one read table by table
//! as JSON rows in one snapshot and loaded back in one transaction, and the migrations a database
//! has had.

use crate::db::DbConn;
use anyhow::{bail, Context};
use diesel::prelude::*;
use diesel::sql_types::Text;
use std::path::Path;

use super::transfer::{ids_after_highest, insert_json_rows, plain, Json, Name};

/// The migrations applied to this database, oldest first.
pub fn applied_migrations(c: &mut DbConn) -> anyhow::Result<Vec<String>> {
    let q = "SELECT version AS name FROM __diesel_schema_migrations ORDER BY version";
    let rows: Vec<Name> = crate::with_backend!(c, |c| diesel::sql_query(q).load(c))?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// Writes a consistent copy of a running SQLite database to `to` (which must not exist).
pub fn sqlite_snapshot(c: &mut DbConn, to: &Path) -> anyhow::Result<()> {
    let DbConn::Sqlite(c) = c else {
        bail!("not an SQLite database");
    };
    let path = to
        .to_str()
        .context("the backup's path is not UTF-8")?
        .replace('\'', "''");
    diesel::sql_query(format!("VACUUM INTO '{path}'"))
        .execute(c)
        .with_context(|| format!("cannot copy the database to {}", to.display()))?;
    Ok(())
}

/// The tables of the public schema but diesel's own.
fn pg_tables(c: &mut diesel::PgConnection) -> anyhow::Result<Vec<String>> {
    let names: Vec<Name> = diesel::sql_query(
        "SELECT table_name::text AS name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
         AND table_name <> '__diesel_schema_migrations' ORDER BY table_name",
    )
    .load(c)?;
    names
        .into_iter()
        .map(|n| plain(&n.name).map(str::to_string))
        .collect()
}

/// Every row of every table, each a JSON object, all read in one snapshot; `each(table, rows)`
/// is called table by table.
pub fn pg_dump(
    c: &mut DbConn,
    mut each: impl FnMut(&str, Vec<String>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let DbConn::Postgres(c) = c else {
        bail!("not a PostgreSQL database");
    };
    c.build_transaction()
        .repeatable_read()
        .read_only()
        .run(|c| {
            for t in pg_tables(c)? {
                let rows: Vec<Json> = diesel::sql_query(format!(
                    "SELECT row_to_json(t)::text AS json FROM \"{t}\" t"
                ))
                .load(c)?;
                each(&t, rows.into_iter().map(|r| r.json).collect())?;
            }
            Ok::<_, anyhow::Error>(())
        })
}

/// Replaces every table's rows with `tables` (table, JSON rows), in one transaction: the
/// database is the backup's whole or unchanged. Sequences go on after the highest id.
pub fn pg_load(c: &mut DbConn, tables: &[(String, Vec<String>)]) -> anyhow::Result<()> {
    let DbConn::Postgres(c) = c else {
        bail!("not a PostgreSQL database");
    };
    let here = pg_tables(c)?;
    for (t, _) in tables {
        if !here.contains(t) {
            bail!("the backup has a table {t} this database does not");
        }
    }
    c.transaction(|c| {
        // Rows come in any order: references hold once all are in.
        diesel::sql_query("SET LOCAL session_replication_role = replica").execute(c)?;
        for t in &here {
            diesel::sql_query(format!("DELETE FROM \"{t}\"")).execute(c)?;
        }
        for (t, rows) in tables {
            let t = plain(t)?;
            let json: Vec<&str> = rows.iter().map(String::as_str).collect();
            insert_json_rows(c, t, &json, "restoring")?;
            let has_id: i64 = diesel::sql_query(
                "SELECT COUNT(*) AS n FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = $1 AND column_name = 'id'",
            )
            .bind::<Text, _>(t)
            .get_result::<Count>(c)?
            .n;
            if has_id > 0 {
                ids_after_highest(c, t)?;
            }
        }
        Ok::<_, anyhow::Error>(())
    })
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}
