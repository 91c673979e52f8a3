//! `host_rollups`: each host's samples by the minute.

use crate::db::DbConn;
use crate::error::Result;
use crate::schema::{host_rollups as r, hosts};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serverware_shared::api::HostRollup;
use serverware_shared::HostId;

/// A row of `host_rollups`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = r)]
pub struct RollupRow {
    pub host_id: HostId,
    pub minute: chrono::NaiveDateTime,
    pub samples: i32,
    pub cpu_avg: f64,
    pub cpu_max: f64,
    pub memory_avg: f64,
    pub memory_max: f64,
    pub load_avg: f64,
    pub load_max: f64,
    pub rx_avg: f64,
    pub rx_max: f64,
    pub tx_avg: f64,
    pub tx_max: f64,
    pub disk_read_avg: f64,
    pub disk_read_max: f64,
    pub disk_write_avg: f64,
    pub disk_write_max: f64,
}

impl RollupRow {
    pub fn from_rollup(host_id: HostId, r: &HostRollup) -> Self {
        RollupRow {
            host_id,
            minute: r.minute.naive_utc(),
            samples: r.samples as i32,
            cpu_avg: r.cpu_avg,
            cpu_max: r.cpu_max,
            memory_avg: r.memory_avg,
            memory_max: r.memory_max,
            load_avg: r.load_avg,
            load_max: r.load_max,
            rx_avg: r.rx_avg,
            rx_max: r.rx_max,
            tx_avg: r.tx_avg,
            tx_max: r.tx_max,
            disk_read_avg: r.disk_read_avg,
            disk_read_max: r.disk_read_max,
            disk_write_avg: r.disk_write_avg,
            disk_write_max: r.disk_write_max,
        }
    }

    pub fn to_rollup(&self) -> HostRollup {
        HostRollup {
            minute: self.minute.and_utc(),
            samples: self.samples.max(0) as u32,
            cpu_avg: self.cpu_avg,
            cpu_max: self.cpu_max,
            memory_avg: self.memory_avg,
            memory_max: self.memory_max,
            load_avg: self.load_avg,
            load_max: self.load_max,
            rx_avg: self.rx_avg,
            rx_max: self.rx_max,
            tx_avg: self.tx_avg,
            tx_max: self.tx_max,
            disk_read_avg: self.disk_read_avg,
            disk_read_max: self.disk_read_max,
            disk_write_avg: self.disk_write_avg,
            disk_write_max: self.disk_write_max,
        }
    }
}

/// The host's rollup of that minute, if stored.
pub fn get(c: &mut DbConn, host: HostId, minute: NaiveDateTime) -> Result<Option<RollupRow>> {
    Ok(r::table
        .find((host, minute))
        .select(RollupRow::as_select())
        .first(c)
        .optional()?)
}

/// Stores the rollup in place of the one of its minute; nothing when its host is gone.
pub fn put(c: &mut DbConn, row: RollupRow) -> Result<()> {
    diesel::delete(r::table.find((row.host_id, row.minute))).execute(c)?;
    let exists: i64 = hosts::table.find(row.host_id).count().get_result(c)?;
    if exists > 0 {
        diesel::insert_into(r::table).values(&row).execute(c)?;
    }
    Ok(())
}

/// The host's rollups of the minutes in `[since, until)`, oldest first.
pub fn between(
    c: &mut DbConn,
    host: HostId,
    since: NaiveDateTime,
    until: NaiveDateTime,
) -> Result<Vec<RollupRow>> {
    Ok(r::table
        .filter(r::host_id.eq(host))
        .filter(r::minute.ge(since))
        .filter(r::minute.lt(until))
        .order(r::minute)
        .select(RollupRow::as_select())
        .load(c)?)
}

/// Deletes the rollups of minutes before `cutoff`: how many.
pub fn delete_older(c: &mut DbConn, cutoff: NaiveDateTime) -> Result<usize> {
    Ok(diesel::delete(r::table.filter(r::minute.lt(cutoff))).execute(c)?)
}
