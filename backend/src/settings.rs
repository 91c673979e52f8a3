//! Site-wide settings, stored as key/value rows: read with their defaults, written one key at a
//! time. The API, the retention loop and the command line share them through here.

use crate::error::Result;
use serverware_shared::api::SettingsResponse;

pub const SITE_NAME: &str = "site_name";
const DEFAULT_SITE_NAME: &str = "SERVERware";
pub const ROLLUP_RETENTION_DAYS: &str = "rollup_retention_days";
pub const DEFAULT_ROLLUP_RETENTION_DAYS: u32 = 30;
pub const HISTORY_RETENTION_DAYS: &str = "history_retention_days";
pub const DEFAULT_HISTORY_RETENTION_DAYS: u32 = 90;
pub const DUPLO_KEEP_LAST: &str = "duplo_keep_last";
pub const DUPLO_KEEP_HOURLY_DAYS: &str = "duplo_keep_hourly_days";
pub const DUPLO_KEEP_DAILY_DAYS: &str = "duplo_keep_daily_days";

pub const ALERT_LAG_MINUTES: &str = "alert_lag_minutes";
pub const DRILL_EVERY_DAYS: &str = "drill_every_days";

/// How often each HA VPS gets a scheduled failover drill, in days (0: never).
pub fn drill_every_days(conn: &mut crate::db::DbConn) -> Result<u32> {
    number(conn, DRILL_EVERY_DAYS, 0)
}

/// How old a duplicated VPS's newest restore point may grow before it is an incident.
pub fn alert_lag_minutes(conn: &mut crate::db::DbConn) -> Result<u32> {
    number(
        conn,
        ALERT_LAG_MINUTES,
        serverware_shared::alerts::DEFAULT_LAG_MINUTES,
    )
}

fn number(conn: &mut crate::db::DbConn, key: &str, default: u32) -> Result<u32> {
    Ok(get(conn, key)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(default))
}

/// Which restore points netDUPLO keeps.
pub fn duplo_policy(conn: &mut crate::db::DbConn) -> Result<crate::duplo::prune::Policy> {
    let d = crate::duplo::prune::DEFAULT_POLICY;
    Ok(crate::duplo::prune::Policy {
        keep_last: number(conn, DUPLO_KEEP_LAST, d.keep_last)?,
        hourly_days: number(conn, DUPLO_KEEP_HOURLY_DAYS, d.hourly_days)?,
        daily_days: number(conn, DUPLO_KEEP_DAILY_DAYS, d.daily_days)?,
    })
}

use crate::repo::settings::{get, put};

pub fn read(conn: &mut crate::db::DbConn) -> Result<SettingsResponse> {
    let policy = duplo_policy(conn)?;
    Ok(SettingsResponse {
        site_name: get(conn, SITE_NAME)?.unwrap_or_else(|| DEFAULT_SITE_NAME.to_string()),
        rollup_retention_days: number(conn, ROLLUP_RETENTION_DAYS, DEFAULT_ROLLUP_RETENTION_DAYS)?,
        history_retention_days: number(
            conn,
            HISTORY_RETENTION_DAYS,
            DEFAULT_HISTORY_RETENTION_DAYS,
        )?,
        duplo_keep_last: policy.keep_last,
        duplo_keep_hourly_days: policy.hourly_days,
        duplo_keep_daily_days: policy.daily_days,
        drill_every_days: drill_every_days(conn)?,
    })
}

/// Deletes the history (events, finished tasks) older than the site's retention.
pub async fn prune_history(db: &crate::db::Db) -> Result<usize> {
    let days = db.run(read).await?.history_retention_days;
    crate::tasks::prune_history(db, days).await
}

/// The site's settings.
pub async fn current(db: &crate::db::Db) -> Result<SettingsResponse> {
    db.run(read).await
}

/// Changes site-wide settings, each checked by the same rules as the dashboard's, each change an
/// audit event; a shorter retention applies at once.
pub async fn update(
    db: &crate::db::Db,
    actor: crate::audit::Actor,
    req: serverware_shared::api::UpdateSettingsRequest,
) -> Result<SettingsResponse> {
    use crate::audit::{self, Change};
    use serverware_shared::validate;
    let site_name = req
        .site_name
        .as_deref()
        .map(|s| validate::label("site_name", s))
        .transpose()?;
    // The numbers, each checked, with what its change says.
    let mut numbers: Vec<(&'static str, u32, String)> = Vec::new();
    if let Some(d) = req.rollup_retention_days {
        let d = validate::retention_days("rollup_retention_days", d)?;
        numbers.push((
            ROLLUP_RETENTION_DAYS,
            d,
            format!("host history kept for {d} days"),
        ));
    }
    if let Some(d) = req.history_retention_days {
        let d = validate::retention_days("history_retention_days", d)?;
        numbers.push((
            HISTORY_RETENTION_DAYS,
            d,
            format!("events and finished tasks kept for {d} days"),
        ));
    }
    if let Some(n) = req.duplo_keep_last {
        let n = validate::duplo_keep_last("duplo_keep_last", n)?;
        numbers.push((
            DUPLO_KEEP_LAST,
            n,
            format!("each VPS's newest {n} restore points kept"),
        ));
    }
    if let Some(d) = req.duplo_keep_hourly_days {
        let d = validate::duplo_keep_days("duplo_keep_hourly_days", d)?;
        numbers.push((
            DUPLO_KEEP_HOURLY_DAYS,
            d,
            format!("hourly restore points kept for {d} days"),
        ));
    }
    if let Some(d) = req.duplo_keep_daily_days {
        let d = validate::duplo_keep_days("duplo_keep_daily_days", d)?;
        numbers.push((
            DUPLO_KEEP_DAILY_DAYS,
            d,
            format!("daily restore points kept for {d} days"),
        ));
    }
    if let Some(d) = req.drill_every_days {
        let d = validate::drill_every_days("drill_every_days", d)?;
        numbers.push((
            DRILL_EVERY_DAYS,
            d,
            if d == 0 {
                "no scheduled failover drills".to_string()
            } else {
                format!("a failover drill of each HA VPS every {d} days")
            },
        ));
    }
    let retention = req.rollup_retention_days.is_some();
    let history = req.history_retention_days.is_some();
    let out = db
        .transaction(move |conn| {
            if let Some(name) = &site_name {
                put(conn, SITE_NAME, name)?;
                audit::record(
                    conn,
                    &actor,
                    Change::new(
                        "settings.update",
                        "settings",
                        SITE_NAME,
                        format!("site name set to '{name}'"),
                    )
                    .details(serde_json::json!({ "site_name": name })),
                )?;
            }
            for (key, value, message) in &numbers {
                put(conn, key, &value.to_string())?;
                audit::record(
                    conn,
                    &actor,
                    Change::new("settings.update", "settings", key, message.clone())
                        .details(serde_json::json!({ *key: value })),
                )?;
            }
            read(conn)
        })
        .await?;
    // A shorter retention applies at once.
    if retention {
        crate::hosts::prune_rollups(db).await?;
    }
    if history {
        prune_history(db).await?;
    }
    Ok(out)
}
