//! `settings`: site-wide key/value rows.

use crate::db::DbConn;
use crate::error::Result;
use crate::models::now;
use crate::schema::settings;
use diesel::prelude::*;

pub fn get(c: &mut DbConn, key: &str) -> Result<Option<String>> {
    Ok(settings::table
        .find(key)
        .select(settings::value)
        .first(c)
        .optional()?)
}

/// Sets `key` to `value`, adding the row when there is none.
pub fn put(c: &mut DbConn, key: &str, value: &str) -> Result<()> {
    let t = now();
    let exists: i64 = settings::table.find(key).count().get_result(c)?;
    if exists > 0 {
        diesel::update(settings::table.find(key))
            .set((settings::value.eq(value), settings::updated_at.eq(t)))
            .execute(c)?;
    } else {
        diesel::insert_into(settings::table)
            .values((
                settings::key.eq(key),
                settings::value.eq(value),
                settings::updated_at.eq(t),
            ))
            .execute(c)?;
    }
    Ok(())
}
