//! A single controller's SQLite database moved into PostgreSQL (`serverware pair init`): every
//! table row by row, with no knowledge of the tables' shapes beyond what both databases say of
//! themselves. Both must be at the same migration (each opened with `Db::open` first). SQLite
//! gives each row as a JSON object; PostgreSQL turns it back into a row of its own types
//! (`json_populate_recordset`), in one transaction: the copy lands whole or not at all.

use anyhow::{bail, Context};
use diesel::prelude::*;
use diesel::sql_types::Text;

#[derive(QueryableByName)]
pub(super) struct Name {
    #[diesel(sql_type = Text)]
    pub(super) name: String,
}

#[derive(QueryableByName)]
pub(super) struct Json {
    #[diesel(sql_type = Text)]
    pub(super) json: String,
}

/// Inserts `rows` (JSON objects of table `t`'s columns) into `t`, 500 at a time; `doing` says
/// what for, in an error.
pub(super) fn insert_json_rows(
    c: &mut diesel::PgConnection,
    t: &str,
    rows: &[&str],
    doing: &str,
) -> anyhow::Result<()> {
    let t = plain(t)?;
    for batch in rows.chunks(500) {
        diesel::sql_query(format!(
            "INSERT INTO \"{t}\" SELECT * FROM json_populate_recordset(NULL::\"{t}\", $1::json)"
        ))
        .bind::<Text, _>(format!("[{}]", batch.join(",")))
        .execute(c)
        .with_context(|| format!("{doing} table {t}"))?;
    }
    Ok(())
}

/// New rows of table `t` (which has an `id`) go on after its highest id (a table without a
/// sequence: nothing).
pub(super) fn ids_after_highest(c: &mut diesel::PgConnection, t: &str) -> anyhow::Result<()> {
    let t = plain(t)?;
    diesel::sql_query(format!(
        "SELECT setval(pg_get_serial_sequence('\"{t}\"', 'id'), \
         COALESCE((SELECT MAX(id) FROM \"{t}\"), 0) + 1, false)"
    ))
    .execute(c)?;
    Ok(())
}

/// A table or column name as the migrations make them (never quoted user input).
pub(super) fn plain(name: &str) -> anyhow::Result<&str> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("unexpected name in the database: {name:?}");
    }
    Ok(name)
}

/// Copies every row of every table of `src` into the same table of `dst` (emptied first);
/// the number of rows of each table.
pub fn sqlite_to_postgres(
    src: &mut diesel::SqliteConnection,
    dst: &mut diesel::PgConnection,
) -> anyhow::Result<Vec<(String, usize)>> {
    let tables: Vec<Name> = diesel::sql_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '__diesel_schema_migrations' ORDER BY name",
    )
    .load(src)?;
    let mut rows_of = Vec::new();
    let mut plan = Vec::new();
    for t in &tables {
        let t = plain(&t.name)?.to_string();
        let cols: Vec<Name> = diesel::sql_query(format!(
            "SELECT name FROM pragma_table_info('{t}') ORDER BY cid"
        ))
        .load(src)?;
        let mut cols: Vec<String> = cols.into_iter().map(|c| c.name).collect();
        let mut theirs: Vec<String> = diesel::sql_query(
            "SELECT column_name::text AS name FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1",
        )
        .bind::<Text, _>(&t)
        .load::<Name>(dst)?
        .into_iter()
        .map(|c| c.name)
        .collect();
        cols.sort();
        theirs.sort();
        if cols != theirs {
            bail!(
                "table {t} differs between the two databases ({} against {}): both must run this version's migrations",
                cols.join(", "),
                theirs.join(", ")
            );
        }
        for c in &cols {
            plain(c)?;
        }
        plan.push((t, cols));
    }
    dst.transaction(|dst| {
        // Rows come in any order: references are checked by the data being whole, not row by row.
        diesel::sql_query("SET LOCAL session_replication_role = replica").execute(dst)?;
        for (t, cols) in &plan {
            let object = cols
                .iter()
                .map(|c| format!("'{c}', \"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            let rows: Vec<Json> =
                diesel::sql_query(format!("SELECT json_object({object}) AS json FROM \"{t}\""))
                    .load(src)?;
            diesel::sql_query(format!("DELETE FROM \"{t}\"")).execute(dst)?;
            let json: Vec<&str> = rows.iter().map(|r| r.json.as_str()).collect();
            insert_json_rows(dst, t, &json, "copying")?;
            if cols.iter().any(|c| c == "id") {
                ids_after_highest(dst, t)?;
            }
            rows_of.push((t.clone(), rows.len()));
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(rows_of)
}
