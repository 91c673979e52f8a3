//! The two migration folders must describe the same schema.

use crate::support::postgres_admin_url;
use diesel::prelude::*;
use std::collections::BTreeMap;

#[derive(QueryableByName)]
struct Col {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_name: String,
}

type Schema = BTreeMap<String, Vec<String>>;

fn collect(cols: Vec<Col>) -> Schema {
    let mut s = Schema::new();
    for c in cols {
        if c.table_name.starts_with("__diesel") || c.table_name.starts_with("sqlite_") {
            continue;
        }
        s.entry(c.table_name).or_default().push(c.column_name);
    }
    for v in s.values_mut() {
        v.sort();
    }
    s
}

#[test]
fn sqlite_and_postgres_have_the_same_tables_and_columns() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!(
            "SERVERWARE_TEST_POSTGRES_URL is not set: the comparison runs in the PostgreSQL pass"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        serverware::db::Db::open(&format!("sqlite://{}/s.db", dir.path().display())).unwrap();
    let mut c = sqlite.get_blocking().unwrap();
    let sqlite_cols: Vec<Col> = diesel::sql_query(
        "SELECT m.name AS table_name, p.name AS column_name FROM sqlite_master m \
         JOIN pragma_table_info(m.name) p WHERE m.type = 'table'",
    )
    .load(&mut *c)
    .unwrap();

    let name = format!("sw_schema_{}", std::process::id());
    let mut pg_admin = diesel::PgConnection::establish(&admin).unwrap();
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut pg_admin)
        .unwrap();
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut pg_admin)
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let result = std::panic::catch_unwind(|| {
        let pg = serverware::db::Db::open(&url).unwrap();
        let mut c = pg.get_blocking().unwrap();
        let cols: Vec<Col> = diesel::sql_query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name \
             FROM information_schema.columns WHERE table_schema = 'public'",
        )
        .load(&mut *c)
        .unwrap();
        cols
    });
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut pg_admin)
        .unwrap();
    let pg_cols = result.unwrap();
    let (a, b) = (collect(sqlite_cols), collect(pg_cols));
    assert!(a.len() >= 10, "{a:?}");
    assert_eq!(
        a, b,
        "migrations/sqlite and migrations/postgres drifted apart"
    );
}
