//! `netmon_state`: netMON's decision state, one row, written before its decisions are carried
//! out.

use crate::db::Db;
use crate::error::Result;
use crate::schema::netmon_state as ns;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// netMON's state as last written: the JSON of its decisions' memory, and when it was written
/// on netMON's clock (milliseconds) and on the wall clock.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ns)]
pub struct Saved {
    pub manager: String,
    pub saved_ms: i64,
    pub saved_at: NaiveDateTime,
}

const ROW: i64 = 1;

pub async fn load(db: &Db) -> Result<Option<Saved>> {
    db.run(|c| {
        Ok(ns::table
            .find(ROW)
            .select(Saved::as_select())
            .first(c)
            .optional()?)
    })
    .await
}

pub async fn save(db: &Db, saved: Saved) -> Result<()> {
    db.run(move |c| {
        c.transaction(|c| {
            let n = diesel::update(ns::table.find(ROW))
                .set((
                    ns::manager.eq(&saved.manager),
                    ns::saved_ms.eq(saved.saved_ms),
                    ns::saved_at.eq(saved.saved_at),
                ))
                .execute(c)?;
            if n == 0 {
                diesel::insert_into(ns::table)
                    .values((
                        ns::id.eq(ROW),
                        ns::manager.eq(&saved.manager),
                        ns::saved_ms.eq(saved.saved_ms),
                        ns::saved_at.eq(saved.saved_at),
                    ))
                    .execute(c)?;
            }
            Ok(())
        })
    })
    .await
}
