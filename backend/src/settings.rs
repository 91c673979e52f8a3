//! Site-wide settings, stored as key/value rows: read with their defaults, written one key at a
//! time. The API, the retention loop and the command line share them through here.

use crate::error::ApiResult;
use crate::models::now;
use crate::schema::settings;
use diesel::prelude::*;
use serverware_shared::api::SettingsResponse;

pub const SITE_NAME: &str = "site_name";
const DEFAULT_SITE_NAME: &str = "SERVERware";
pub const ROLLUP_RETENTION_DAYS: &str = "rollup_retention_days";
pub const DEFAULT_ROLLUP_RETENTION_DAYS: u32 = 30;
pub const HISTORY_RETENTION_DAYS: &str = "history_retention_days";
pub const DEFAULT_HISTORY_RETENTION_DAYS: u32 = 90;

fn get(conn: &mut crate::db::DbConn, key: &str) -> ApiResult<Option<String>> {
    Ok(settings::table
        .find(key)
        .select(settings::value)
        .first(conn)
        .optional()?)
}

pub fn put(conn: &mut crate::db::DbConn, key: &str, value: &str) -> ApiResult<()> {
    let t = now();
    let exists: i64 = settings::table.find(key).count().get_result(conn)?;
    if exists > 0 {
        diesel::update(settings::table.find(key))
            .set((settings::value.eq(value), settings::updated_at.eq(t)))
            .execute(conn)?;
    } else {
        diesel::insert_into(settings::table)
            .values((
                settings::key.eq(key),
                settings::value.eq(value),
                settings::updated_at.eq(t),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn read(conn: &mut crate::db::DbConn) -> ApiResult<SettingsResponse> {
    Ok(SettingsResponse {
        site_name: get(conn, SITE_NAME)?.unwrap_or_else(|| DEFAULT_SITE_NAME.to_string()),
        rollup_retention_days: get(conn, ROLLUP_RETENTION_DAYS)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_ROLLUP_RETENTION_DAYS),
        history_retention_days: get(conn, HISTORY_RETENTION_DAYS)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_HISTORY_RETENTION_DAYS),
    })
}
