//! The watch: every few seconds it compares the site's incidents (`site::health`) with the
//! incidents alerts were sent for, opens the new ones and clears those whose cause has been gone
//! for [`CLEAR_AFTER`] (a host that flaps does not send a message per flap), and turns failover
//! and takeover events into one message each. Every message is written to the outbox in the
//! same transaction as the change it tells of.

use super::{repo, Alerts};
use crate::error::Result;
use crate::models::now;
use chrono::NaiveDateTime;
use serverware_shared::alerts::{AlertPayload, AlertRule};
use serverware_shared::api::{Incident, IncidentKind, Severity};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the watch looks.
pub const EVERY: Duration = Duration::from_secs(2);
/// How long an incident's cause must stay gone before it clears.
pub const CLEAR_AFTER: Duration = Duration::from_secs(20);
/// Events older than this are not told (a target added later, a controller started after a
/// long stop).
const EVENT_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// Events that are one message each, and the rule each falls under.
const EVENTS: [(&str, AlertRule); 3] = [
    ("netmon.failover", AlertRule::FailoverDone),
    ("controller.takeover", AlertRule::ControllerTakeover),
    ("vps.drill.failed", AlertRule::DrillFailed),
];

/// After a start (or a takeover) nothing clears before this: hosts are still being connected to,
/// and a host that is still down must not be told "back" and then "down" again.
pub const STARTUP_GRACE: Duration = Duration::from_secs(40);

/// What the watch remembers between looks: since when each open incident's cause is gone.
pub struct Memory {
    gone_since: Mutex<HashMap<String, Instant>>,
    started: Instant,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            gone_since: Default::default(),
            started: Instant::now(),
        }
    }
}

/// An incident as alerts see it: its rule and its key under that rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub key: String,
    pub rule: AlertRule,
    pub incident: Incident,
}

/// The rule an incident falls under; None for one that is not told (a failover under way is
/// told once done; a host in maintenance going offline was expected).
pub fn rule_of(i: &Incident) -> Option<AlertRule> {
    Some(match i.kind {
        IncidentKind::HostLost if i.severity == Severity::Warning => return None,
        IncidentKind::HostLost => AlertRule::HostOffline,
        IncidentKind::FailingOver => return None,
        IncidentKind::FailoverGaveUp => AlertRule::FailoverFailed,
        IncidentKind::NoRoom => AlertRule::VpsNotPlaced,
        IncidentKind::DuplicationFailing => AlertRule::DuplicationFailing,
        IncidentKind::DuplicationLagging => AlertRule::DuplicationLagging,
        IncidentKind::StorageFull => AlertRule::StorageFull,
    })
}

pub fn seen(incidents: Vec<Incident>) -> Vec<Seen> {
    incidents
        .into_iter()
        .filter_map(|i| {
            let rule = rule_of(&i)?;
            Some(Seen {
                key: format!("{}/{}", rule.as_str(), i.key),
                rule,
                incident: i,
            })
        })
        .collect()
}

/// What to change: incidents to open, and the ids of open ones to clear.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub open: Vec<Seen>,
    pub clear: Vec<i64>,
}

/// Compares what is seen now with what is open (`(id, key)`): a new key opens; an open key not
/// seen for `clear_after` clears; one seen again before that stays open, no message. A key's
/// "gone" clock starts no earlier than `earliest`.
pub fn plan(
    open: &[(i64, String)],
    seen: Vec<Seen>,
    gone_since: &mut HashMap<String, Instant>,
    (now, earliest): (Instant, Instant),
    clear_after: Duration,
) -> Plan {
    let mut p = Plan::default();
    for (id, key) in open {
        if seen.iter().any(|s| &s.key == key) {
            gone_since.remove(key);
            continue;
        }
        let since = *gone_since.entry(key.clone()).or_insert(now.max(earliest));
        if now.duration_since(since) >= clear_after {
            gone_since.remove(key);
            p.clear.push(*id);
        }
    }
    gone_since.retain(|k, _| open.iter().any(|(_, key)| key == k));
    p.open = seen
        .into_iter()
        .filter(|s| !open.iter().any(|(_, key)| key == &s.key))
        .collect();
    p
}

/// The targets that want `rule`, enabled, with the time each was added.
fn wanting(targets: &[repo::Target], rule: AlertRule) -> Vec<&repo::Target> {
    targets
        .iter()
        .filter(|t| t.enabled && AlertRule::split(&t.rules).contains(&rule))
        .collect()
}

fn subject(site: &str, p: &AlertPayload) -> String {
    match p.state.as_str() {
        "cleared" => format!("[{site}] Resolved: {}", p.title),
        _ => format!("[{site}] {}", p.title),
    }
}

fn put(
    c: &mut crate::db::DbConn,
    target: i64,
    dedupe: &str,
    site: &str,
    p: &AlertPayload,
    at: NaiveDateTime,
) -> Result<bool> {
    let body =
        serde_json::to_string(p).map_err(|e| crate::error::Error::Internal(anyhow::anyhow!(e)))?;
    repo::insert_message(
        c,
        &repo::NewMessage {
            target_id: target,
            dedupe,
            subject: &subject(site, p),
            body: &body,
            created_at: at,
            attempts: 0,
            next_attempt_at: at,
        },
    )
}

fn payload(site: &str, state: &str, rule: AlertRule, i: &Incident) -> AlertPayload {
    AlertPayload {
        id: 0,
        site: site.to_string(),
        state: state.into(),
        rule: Some(rule),
        severity: i.severity,
        title: i.title.clone(),
        detail: i.detail.clone(),
        key: i.key.clone(),
        vpses: i.vpses.clone(),
        link: i.link.clone(),
        at: chrono::Utc::now(),
    }
}

/// Writes the plan: each opened incident with a message to every target that wants it, each
/// cleared one with a message to every target told of its opening.
fn apply(c: &mut crate::db::DbConn, plan: Plan) -> Result<usize> {
    let at = now();
    let site = crate::settings::read(c)?.site_name;
    let targets = repo::targets(c)?;
    let mut written = 0;
    for s in &plan.open {
        let id = repo::insert_incident(
            c,
            &repo::NewIncident {
                incident_key: &s.key,
                rule: s.rule.as_str(),
                severity: s.incident.severity.as_str(),
                title: &s.incident.title,
                detail: &s.incident.detail,
                opened_at: at,
            },
        )?;
        let p = payload(&site, "opened", s.rule, &s.incident);
        for t in wanting(&targets, s.rule) {
            written += put(c, t.id, &format!("open:{id}"), &site, &p, at)? as usize;
        }
    }
    let open = repo::open_incidents(c)?;
    for id in plan.clear {
        let Some(i) = open.iter().find(|i| i.id == id) else {
            continue;
        };
        repo::clear_incident(c, id, at)?;
        let Some(rule) = AlertRule::parse(&i.rule) else {
            continue;
        };
        let told = repo::targets_told(c, &format!("open:{id}"))?;
        let p = AlertPayload {
            detail: format!(
                "Cleared after {} s: its cause is gone.",
                (at - i.opened_at).num_seconds().max(0)
            ),
            title: i.title.clone(),
            key: i
                .incident_key
                .split_once('/')
                .map_or("", |k| k.1)
                .to_string(),
            severity: Severity::Info,
            ..payload(&site, "cleared", rule, &blank())
        };
        for t in targets.iter().filter(|t| t.enabled && told.contains(&t.id)) {
            written += put(c, t.id, &format!("clear:{id}"), &site, &p, at)? as usize;
        }
    }
    written += events(c, &site, &targets, at)?;
    Ok(written)
}

fn blank() -> Incident {
    Incident {
        key: String::new(),
        kind: IncidentKind::HostLost,
        severity: Severity::Info,
        title: String::new(),
        detail: String::new(),
        vpses: Vec::new(),
        since: None,
        link: "/".into(),
    }
}

/// Failovers, takeovers and failed drills of the last minutes, each one message to each target that wants it
/// and existed when it happened.
fn events(
    c: &mut crate::db::DbConn,
    site: &str,
    targets: &[repo::Target],
    at: NaiveDateTime,
) -> Result<usize> {
    let actions: Vec<&str> = EVENTS.iter().map(|(a, _)| *a).collect();
    let mut written = 0;
    for e in repo::events_since(c, &actions, at - EVENT_WINDOW)? {
        let Some((_, rule)) = EVENTS.iter().find(|(a, _)| *a == e.action) else {
            continue;
        };
        let link = match (e.target_type.as_deref(), e.target_id.as_deref()) {
            (Some("vps"), Some(id)) => format!("/vpses/{id}"),
            _ => "/".into(),
        };
        let p = AlertPayload {
            id: 0,
            site: site.to_string(),
            state: "event".into(),
            rule: Some(*rule),
            severity: Severity::Warning,
            title: e.message.clone(),
            detail: describe(&e.details),
            key: format!("event:{}", e.id),
            vpses: Vec::new(),
            link,
            at: e.created_at.and_utc(),
        };
        for t in wanting(targets, *rule)
            .into_iter()
            .filter(|t| t.created_at <= e.created_at)
        {
            written += put(c, t.id, &format!("event:{}", e.id), site, &p, at)? as usize;
        }
    }
    Ok(written)
}

/// An event's details as a line of text: its plain fields, and a failover's timeline (`ms`).
fn describe(details: &str) -> String {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(details)
    else {
        return String::new();
    };
    let mut parts = Vec::new();
    for (k, v) in &m {
        match v {
            serde_json::Value::String(s) => parts.push(format!("{k}: {s}")),
            serde_json::Value::Number(n) => parts.push(format!("{k}: {n}")),
            serde_json::Value::Bool(b) => parts.push(format!("{k}: {b}")),
            serde_json::Value::Object(o) if k == "ms" => {
                let steps: Vec<String> = o.iter().map(|(s, ms)| format!("{s} {ms} ms")).collect();
                parts.push(format!("after detection: {}", steps.join(", ")));
            }
            _ => {}
        }
    }
    parts.join("; ")
}

/// One look: the site's incidents against the open ones; the changes and their messages in one
/// transaction. How many messages it wrote.
pub async fn look(alerts: &Alerts) -> Result<usize> {
    let health = crate::site::health(&alerts.vpses).await?;
    let open: Vec<(i64, String)> = alerts
        .db
        .run(|c| {
            Ok(repo::open_incidents(c)?
                .into_iter()
                .map(|i| (i.id, i.incident_key))
                .collect())
        })
        .await?;
    let plan = {
        let mut gone = alerts
            .watch
            .gone_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        plan(
            &open,
            seen(health.incidents),
            &mut gone,
            (Instant::now(), alerts.watch.started + STARTUP_GRACE),
            CLEAR_AFTER,
        )
    };
    alerts.db.transaction(move |c| apply(c, plan)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(key: &str, kind: IncidentKind, severity: Severity) -> Incident {
        Incident {
            key: key.into(),
            kind,
            severity,
            title: format!("about {key}"),
            detail: String::new(),
            vpses: Vec::new(),
            since: None,
            link: "/".into(),
        }
    }

    #[test]
    fn incidents_open_once_and_clear_only_after_staying_gone() {
        let host = || seen(vec![inc("host:3", IncidentKind::HostLost, Severity::Error)]);
        let mut gone = HashMap::new();
        let t0 = Instant::now();
        let after = Duration::from_secs(20);
        // New: opened.
        let p = plan(&[], host(), &mut gone, (t0, t0), after);
        assert_eq!(p.open.len(), 1);
        assert_eq!(p.open[0].key, "host_offline/host:3");
        assert_eq!(p.open[0].rule, AlertRule::HostOffline);
        let open = vec![(7, "host_offline/host:3".to_string())];
        // Still there: nothing.
        assert_eq!(
            plan(&open, host(), &mut gone, (t0, t0), after),
            Plan::default()
        );
        // Gone, then back within the window (a flap): nothing, and the clock restarts.
        assert_eq!(
            plan(&open, vec![], &mut gone, (t0, t0), after),
            Plan::default()
        );
        let t1 = t0 + Duration::from_secs(15);
        assert_eq!(
            plan(&open, host(), &mut gone, (t1, t0), after),
            Plan::default()
        );
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(
            plan(&open, vec![], &mut gone, (t2, t0), after),
            Plan::default()
        );
        // Gone for the whole window: cleared, once.
        let p = plan(&open, vec![], &mut gone, (t2 + after, t0), after);
        assert_eq!(p.clear, vec![7]);
        assert!(gone.is_empty());
    }

    #[test]
    fn nothing_clears_in_the_grace_after_a_start() {
        // Just started: the host's incident (open from before) is not seen yet (its connection
        // is being tried); it does not clear before the grace has passed and then the window.
        let mut gone = HashMap::new();
        let t0 = Instant::now();
        let (after, grace) = (Duration::from_secs(20), Duration::from_secs(40));
        let open = vec![(3, "host_offline/host:1".to_string())];
        let p = plan(&open, vec![], &mut gone, (t0, t0 + grace), after);
        assert_eq!(p, Plan::default());
        let p = plan(&open, vec![], &mut gone, (t0 + after, t0 + grace), after);
        assert_eq!(p, Plan::default(), "cleared within the grace");
        let p = plan(
            &open,
            vec![],
            &mut gone,
            (t0 + grace + after, t0 + grace),
            after,
        );
        assert_eq!(p.clear, vec![3]);
    }

    #[test]
    fn only_incidents_worth_a_message_are_told() {
        let s = seen(vec![
            inc("host:1", IncidentKind::HostLost, Severity::Error),
            // In maintenance: expected.
            inc("host:2", IncidentKind::HostLost, Severity::Warning),
            // Under way: told once done, by its event.
            inc("vps:3", IncidentKind::FailingOver, Severity::Warning),
            inc("vps:4", IncidentKind::FailoverGaveUp, Severity::Error),
            inc("vps:5", IncidentKind::NoRoom, Severity::Error),
            inc(
                "duplo:6",
                IncidentKind::DuplicationFailing,
                Severity::Warning,
            ),
            inc("lag:6", IncidentKind::DuplicationLagging, Severity::Warning),
            inc("storage", IncidentKind::StorageFull, Severity::Error),
        ]);
        let keys: Vec<&str> = s.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "host_offline/host:1",
                "failover_failed/vps:4",
                "vps_not_placed/vps:5",
                "duplication_failing/duplo:6",
                "duplication_lagging/lag:6",
                "storage_full/storage",
            ]
        );
    }

    #[test]
    fn event_details_read_as_a_line() {
        let d =
            r#"{"from":1,"to":2,"cause":"HostLost","ms":{"fenced":800,"healthy":3200},"list":[1]}"#;
        assert_eq!(
            describe(d),
            "cause: HostLost; from: 1; after detection: fenced 800 ms, healthy 3200 ms; to: 2"
        );
        assert_eq!(describe("not json"), "");
    }

    #[test]
    fn an_incident_that_changes_rule_is_a_new_one() {
        // A VPS waiting for room whose failover then gives up: the first clears (after the
        // window), the second opens now.
        let mut gone = HashMap::new();
        let t0 = Instant::now();
        let open = vec![(1, "vps_not_placed/vps:5".to_string())];
        let p = plan(
            &open,
            seen(vec![inc(
                "vps:5",
                IncidentKind::FailoverGaveUp,
                Severity::Error,
            )]),
            &mut gone,
            (t0, t0),
            Duration::from_secs(20),
        );
        assert_eq!(p.open.len(), 1);
        assert_eq!(p.open[0].key, "failover_failed/vps:5");
        assert!(p.clear.is_empty());
    }
}
