//! Alerts: notification targets (a signed webhook, e-mail over SMTP) and the rules each one
//! wants; the watch that turns the site's incidents and a few events into messages (`watch.rs`),
//! and the sender that delivers them (`send.rs`).
//!
//! A message is written to the outbox (`alert_messages`) in the same transaction that opens or
//! clears its incident, so a controller that crashes (or a pair that switches leaders) neither
//! loses one nor writes it twice; the sender retries until it is delivered or a day has passed.
//! A delivery whose answer was lost is sent again with the same id (`X-Serverware-Delivery`,
//! the mail's Message-ID), so a receiver can ignore the second.

pub mod send;
pub mod watch;

use crate::audit::{self, Actor, Change};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::models::now;
use crate::repo::alerts as repo;
use serverware_shared::alerts::{
    AlertChannel, AlertIncident, AlertMessage, AlertRule, AlertSettings, AlertTarget,
    AlertTargetRequest, AlertTestResult, AlertsOverview,
};
use serverware_shared::api::Severity;
use std::sync::Arc;

/// The alerts service: what the API, the watch and the sender share.
pub struct Alerts {
    pub db: Db,
    pub vpses: Arc<crate::vps::Vpses>,
    pub(crate) client: reqwest::Client,
    pub(crate) watch: watch::Memory,
}

impl Alerts {
    pub fn new(db: Db, vpses: Arc<crate::vps::Vpses>) -> Result<Alerts> {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(send::DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("serverware/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Internal(anyhow::anyhow!("the alerts' HTTP client: {e}")))?;
        Ok(Alerts {
            db,
            vpses,
            client,
            watch: Default::default(),
        })
    }
}

fn severity(s: &str) -> Severity {
    match s {
        "error" => Severity::Error,
        "warning" => Severity::Warning,
        _ => Severity::Info,
    }
}

fn channel(t: &repo::Target) -> Result<AlertChannel> {
    serde_json::from_str(&t.channel).map_err(|e| {
        Error::Internal(anyhow::anyhow!(
            "alert target {} has a channel this release cannot read: {e}",
            t.name
        ))
    })
}

fn target_response(c: &mut crate::db::DbConn, t: &repo::Target) -> Result<AlertTarget> {
    let (pending, last_error) = repo::delivery_state(c, t.id)?;
    Ok(AlertTarget {
        id: t.id,
        name: t.name.clone(),
        channel: channel(t)?,
        secret_set: t.secret.is_some(),
        rules: AlertRule::split(&t.rules),
        enabled: t.enabled,
        created_at: t.created_at.and_utc(),
        pending: pending.max(0) as u64,
        last_error,
    })
}

fn incident_response(i: &repo::Incident) -> Option<AlertIncident> {
    Some(AlertIncident {
        id: i.id,
        key: i.incident_key.clone(),
        rule: AlertRule::parse(&i.rule)?,
        severity: severity(&i.severity),
        title: i.title.clone(),
        detail: i.detail.clone(),
        opened_at: i.opened_at.and_utc(),
        cleared_at: i.cleared_at.map(|t| t.and_utc()),
    })
}

fn message_response(m: &repo::Message) -> AlertMessage {
    AlertMessage {
        id: m.id,
        target_id: m.target_id,
        subject: m.subject.clone(),
        created_at: m.created_at.and_utc(),
        state: if m.sent_at.is_some() {
            "sent"
        } else if m.failed_at.is_some() {
            "failed"
        } else {
            "pending"
        }
        .into(),
        attempts: m.attempts,
        sent_at: m.sent_at.map(|t| t.and_utc()),
        last_error: m.last_error.clone(),
    }
}

/// The Alerts page: targets, incidents, the newest messages and the lag threshold.
pub async fn overview(db: &Db) -> Result<AlertsOverview> {
    db.run(|c| {
        let targets = repo::targets(c)?
            .iter()
            .map(|t| target_response(c, t))
            .collect::<Result<Vec<_>>>()?;
        Ok(AlertsOverview {
            targets,
            incidents: repo::recent_incidents(c, 50)?
                .iter()
                .filter_map(incident_response)
                .collect(),
            messages: repo::recent_messages(c, 50)?
                .iter()
                .map(message_response)
                .collect(),
            lag_threshold_minutes: crate::settings::alert_lag_minutes(c)?,
        })
    })
    .await
}

/// Adds a target (`id` None) or changes one; its name is unique. Audited.
pub async fn save_target(
    db: &Db,
    actor: Actor,
    id: Option<i64>,
    req: AlertTargetRequest,
) -> Result<AlertTarget> {
    db.transaction(move |c| {
        let old = match id {
            Some(id) => Some(
                repo::target(c, id)?
                    .ok_or_else(|| Error::NotFound(format!("no alert target {id}")))?,
            ),
            None => None,
        };
        // A change of kind (a webhook become a mail target) does not carry the secret over, so
        // only a target of the same kind has one to keep.
        let kept = old
            .as_ref()
            .filter(|o| channel(o).is_ok_and(|ch| ch.kind() == req.channel.kind()))
            .and_then(|o| o.secret.clone());
        let req = req.check(kept.is_some())?;
        if let Some(other) = repo::target_named(c, &req.name)? {
            if Some(other.id) != id {
                return Err(Error::conflict(
                    Some("name"),
                    format!("an alert target named {} exists already", req.name),
                ));
            }
        }
        let secret = req.secret.clone().or(kept);
        let channel_text = serde_json::to_string(&req.channel)
            .map_err(|e| Error::Internal(anyhow::anyhow!("{e}")))?;
        let rules = AlertRule::join(&req.rules);
        let row = repo::NewTarget {
            name: &req.name,
            channel: &channel_text,
            secret: secret.as_deref(),
            rules: &rules,
            enabled: req.enabled,
            created_at: now(),
        };
        let (id, action, verb) = match id {
            Some(id) => {
                repo::update_target(c, id, &row)?;
                (id, "alert.target_update", "changed")
            }
            None => (
                repo::insert_target(c, &row)?,
                "alert.target_create",
                "added",
            ),
        };
        audit::record(
            c,
            &actor,
            Change::new(
                action,
                "alert_target",
                id,
                format!("alert target {} {verb} ({})", req.name, req.channel.kind()),
            )
            .details(serde_json::json!({
                "name": req.name, "kind": req.channel.kind(), "rules": rules,
                "enabled": req.enabled, "secret_changed": req.secret.is_some(),
            })),
        )?;
        let t = repo::target(c, id)?.ok_or_else(|| Error::NotFound("gone".into()))?;
        target_response(c, &t)
    })
    .await
}

/// Removes a target and the messages still waiting for it. Audited.
pub async fn delete_target(db: &Db, actor: Actor, id: i64) -> Result<()> {
    db.transaction(move |c| {
        let t =
            repo::target(c, id)?.ok_or_else(|| Error::NotFound(format!("no alert target {id}")))?;
        repo::delete_target(c, id)?;
        audit::record(
            c,
            &actor,
            Change::new(
                "alert.target_delete",
                "alert_target",
                id,
                format!("alert target {} removed", t.name),
            )
            .details(serde_json::json!({ "name": t.name })),
        )?;
        Ok(())
    })
    .await
}

/// The alert settings (the lag threshold). Audited.
pub async fn set_settings(db: &Db, actor: Actor, s: AlertSettings) -> Result<()> {
    let s = s.check()?;
    db.transaction(move |c| {
        crate::repo::settings::put(
            c,
            crate::settings::ALERT_LAG_MINUTES,
            &s.lag_threshold_minutes.to_string(),
        )?;
        audit::record(
            c,
            &actor,
            Change::new(
                "alert.settings",
                "settings",
                crate::settings::ALERT_LAG_MINUTES,
                format!(
                    "duplication counts as lagging after {} min",
                    s.lag_threshold_minutes
                ),
            ),
        )?;
        Ok(())
    })
    .await
}

/// *Send test*: a test message delivered to the target now, not through the outbox; what the
/// receiver said. Audited with the outcome.
pub async fn test_target(alerts: &Alerts, actor: Actor, id: i64) -> Result<AlertTestResult> {
    let (t, site) = alerts
        .db
        .run(move |c| {
            let t = repo::target(c, id)?
                .ok_or_else(|| Error::NotFound(format!("no alert target {id}")))?;
            Ok((t, crate::settings::read(c)?.site_name))
        })
        .await?;
    let ch = channel(&t)?;
    let payload = serverware_shared::alerts::AlertPayload {
        id: 0,
        site: site.clone(),
        state: "test".into(),
        rule: None,
        severity: Severity::Info,
        title: format!("Test message from SERVERware ({site})"),
        detail: format!(
            "{} sent this from the Alerts page to check that alert target {} is reached.",
            actor.name, t.name
        ),
        key: format!("test:{}", chrono::Utc::now().timestamp_millis()),
        vpses: Vec::new(),
        link: "/alerts".into(),
        at: chrono::Utc::now(),
    };
    let subject = format!("[{site}] {}", payload.title);
    let r = send::deliver(alerts, &ch, t.secret.as_deref(), &subject, &payload).await;
    let result = match r {
        Ok(m) => AlertTestResult {
            ok: true,
            message: m,
        },
        Err(e) => AlertTestResult {
            ok: false,
            message: e,
        },
    };
    let (name, outcome) = (t.name.clone(), result.clone());
    alerts
        .db
        .run(move |c| {
            audit::record(
                c,
                &actor,
                Change::new(
                    "alert.test",
                    "alert_target",
                    id,
                    format!(
                        "test message to alert target {name}: {}",
                        if outcome.ok { "delivered" } else { "failed" }
                    ),
                )
                .severity(if outcome.ok {
                    Severity::Info
                } else {
                    Severity::Warning
                })
                .details(serde_json::json!({ "ok": outcome.ok, "message": outcome.message })),
            )?;
            Ok(())
        })
        .await?;
    Ok(result)
}
