//! Alerts: where the controller sends word of an incident (notification targets: a webhook signed
//! with HMAC-SHA256, or e-mail over SMTP), which incidents each target wants (its rules), and what
//! was sent. The dashboard and the API check a target with the same code.

use crate::validate::{self, ValidationError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// What a target can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertRule {
    /// A host is offline (or refuses the controller); one message more when it is back.
    HostOffline,
    /// netMON failed a VPS over (one message, with how long it took).
    FailoverDone,
    /// A failover gave up: the VPS failed on every host tried.
    FailoverFailed,
    /// A VPS that should run could not be placed: no host has room.
    VpsNotPlaced,
    /// A VPS's duplication cycles fail.
    DuplicationFailing,
    /// A VPS's newest restore point is older than the site's threshold.
    DuplicationLagging,
    /// Storage is nearly full.
    StorageFull,
    /// The standby controller took over the site.
    ControllerTakeover,
    /// A failover drill failed: the VPS's failover would not have worked as it is.
    DrillFailed,
}

impl AlertRule {
    pub const ALL: [AlertRule; 9] = [
        AlertRule::HostOffline,
        AlertRule::FailoverDone,
        AlertRule::FailoverFailed,
        AlertRule::VpsNotPlaced,
        AlertRule::DuplicationFailing,
        AlertRule::DuplicationLagging,
        AlertRule::StorageFull,
        AlertRule::ControllerTakeover,
        AlertRule::DrillFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertRule::HostOffline => "host_offline",
            AlertRule::FailoverDone => "failover_done",
            AlertRule::FailoverFailed => "failover_failed",
            AlertRule::VpsNotPlaced => "vps_not_placed",
            AlertRule::DuplicationFailing => "duplication_failing",
            AlertRule::DuplicationLagging => "duplication_lagging",
            AlertRule::StorageFull => "storage_full",
            AlertRule::ControllerTakeover => "controller_takeover",
            AlertRule::DrillFailed => "drill_failed",
        }
    }

    pub fn parse(s: &str) -> Option<AlertRule> {
        AlertRule::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// What the dashboard calls it.
    pub fn label(self) -> &'static str {
        match self {
            AlertRule::HostOffline => "Host offline",
            AlertRule::FailoverDone => "Failover done",
            AlertRule::FailoverFailed => "Failover failed",
            AlertRule::VpsNotPlaced => "VPS could not be placed",
            AlertRule::DuplicationFailing => "Duplication failing",
            AlertRule::DuplicationLagging => "Duplication lagging",
            AlertRule::StorageFull => "Storage nearly full",
            AlertRule::ControllerTakeover => "Controller takeover",
            AlertRule::DrillFailed => "Failover drill failed",
        }
    }

    /// Whether it is an incident that clears (a second message then), not a single event.
    pub fn clears(self) -> bool {
        !matches!(
            self,
            AlertRule::FailoverDone | AlertRule::ControllerTakeover | AlertRule::DrillFailed
        )
    }

    /// Rules as stored: their names, comma-separated, in a fixed order.
    pub fn join(rules: &[AlertRule]) -> String {
        let mut r = rules.to_vec();
        r.sort();
        r.dedup();
        r.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
    }

    /// Stored rules back (an unknown name, from a newer release, is skipped).
    pub fn split(s: &str) -> Vec<AlertRule> {
        s.split(',').filter_map(AlertRule::parse).collect()
    }
}

/// How the controller talks to an SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain SMTP, upgraded with STARTTLS, refused if the server does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption at all: only for a relay on the same machine or network.
    None,
}

/// Where a target's messages go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AlertChannel {
    /// An HTTP POST of the message as JSON, signed: `X-Serverware-Signature: sha256=<hex>` is
    /// HMAC-SHA256 of the body with the target's secret.
    Webhook { url: String },
    /// A mail through an SMTP server (the target's secret is the SMTP password, if it has one).
    Email {
        smtp_host: String,
        smtp_port: u16,
        #[serde(default)]
        security: SmtpSecurity,
        #[serde(default)]
        username: Option<String>,
        from: String,
        to: Vec<String>,
    },
}

impl AlertChannel {
    pub fn kind(&self) -> &'static str {
        match self {
            AlertChannel::Webhook { .. } => "webhook",
            AlertChannel::Email { .. } => "email",
        }
    }

    /// Checked and tidied (trimmed; an empty user name is none).
    pub fn check(self) -> Result<AlertChannel, ValidationError> {
        match self {
            AlertChannel::Webhook { url } => Ok(AlertChannel::Webhook {
                url: webhook_url("url", &url)?,
            }),
            AlertChannel::Email {
                smtp_host,
                smtp_port,
                security,
                username,
                from,
                to,
            } => {
                let smtp_host = host_name("smtp_host", &smtp_host)?;
                if smtp_port == 0 {
                    return Err(ValidationError::new("smtp_port", "a port from 1 to 65535"));
                }
                let username = match username.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(u) => Some(printable("username", u, 256)?),
                };
                let from = mail_address("from", &from)?;
                if to.is_empty() || to.len() > MAX_RECIPIENTS {
                    return Err(ValidationError::new(
                        "to",
                        format!("from 1 to {MAX_RECIPIENTS} addresses"),
                    ));
                }
                let to = to
                    .iter()
                    .map(|a| mail_address("to", a))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(AlertChannel::Email {
                    smtp_host,
                    smtp_port,
                    security,
                    username,
                    from,
                    to,
                })
            }
        }
    }
}

pub const MAX_RECIPIENTS: usize = 20;
/// A webhook's secret: long enough that its signature means something.
pub const SECRET_MIN: usize = 16;

/// A target as created or changed. `secret`: the webhook's HMAC key (required for a new
/// webhook, at least 16 characters) or the SMTP password; left out on a change, it is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AlertTargetRequest {
    pub name: String,
    pub channel: AlertChannel,
    #[serde(default)]
    pub secret: Option<String>,
    pub rules: Vec<AlertRule>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl AlertTargetRequest {
    /// Checked, as the controller stores it. `had_secret`: the target being changed has one.
    pub fn check(self, had_secret: bool) -> Result<AlertTargetRequest, ValidationError> {
        let name = validate::label("name", &self.name)?;
        let channel = self.channel.check()?;
        if self.rules.is_empty() {
            return Err(ValidationError::new(
                "rules",
                "choose at least one thing to be told about",
            ));
        }
        let secret = match self.secret {
            Some(s) if s.is_empty() => None,
            Some(s) => Some(printable("secret", &s, 256)?),
            None => None,
        };
        if let AlertChannel::Webhook { .. } = channel {
            match &secret {
                Some(s) if s.chars().count() < SECRET_MIN => {
                    return Err(ValidationError::new(
                        "secret",
                        format!("a webhook's secret has at least {SECRET_MIN} characters"),
                    ))
                }
                None if !had_secret => {
                    return Err(ValidationError::new(
                        "secret",
                        "a webhook needs a secret to sign its messages with",
                    ))
                }
                _ => {}
            }
        }
        let mut rules = self.rules;
        rules.sort();
        rules.dedup();
        Ok(AlertTargetRequest {
            name,
            channel,
            secret,
            rules,
            enabled: self.enabled,
        })
    }
}

/// A notification target (its secret is never shown, only whether it has one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AlertTarget {
    pub id: i64,
    pub name: String,
    pub channel: AlertChannel,
    pub secret_set: bool,
    pub rules: Vec<AlertRule>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    /// Messages waiting to be delivered to it (being retried).
    pub pending: u64,
    /// The newest failure to deliver to it, if its newest attempt failed.
    pub last_error: Option<String>,
}

/// An incident alerts were sent for: open until its cause has been gone a little while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AlertIncident {
    pub id: i64,
    pub key: String,
    pub rule: AlertRule,
    pub severity: crate::api::Severity,
    pub title: String,
    pub detail: String,
    pub opened_at: DateTime<Utc>,
    pub cleared_at: Option<DateTime<Utc>>,
}

/// One message to one target, and how its delivery went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AlertMessage {
    pub id: i64,
    pub target_id: i64,
    pub subject: String,
    pub created_at: DateTime<Utc>,
    /// `pending` (being tried), `sent`, or `failed` (given up after a day).
    pub state: String,
    pub attempts: i32,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// The Alerts page: targets, incidents (open first, then the newest cleared) and the newest
/// messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AlertsOverview {
    pub targets: Vec<AlertTarget>,
    pub incidents: Vec<AlertIncident>,
    pub messages: Vec<AlertMessage>,
    /// How old an HA VPS's newest restore point may be before duplication counts as lagging.
    pub lag_threshold_minutes: u32,
}

/// What *Send test* found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AlertTestResult {
    pub ok: bool,
    /// What the receiver answered, or why it could not be reached.
    pub message: String,
}

/// A change of the alert settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AlertSettings {
    pub lag_threshold_minutes: u32,
}

impl AlertSettings {
    pub fn check(self) -> Result<AlertSettings, ValidationError> {
        validate::number_in_range(
            "lag_threshold_minutes",
            i64::from(self.lag_threshold_minutes),
            1,
            7 * 24 * 60,
            "minutes",
        )?;
        Ok(self)
    }
}

pub const DEFAULT_LAG_MINUTES: u32 = 30;

/// What a webhook receives (and what a mail says, as text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AlertPayload {
    /// The message's id: a receiver that sees it twice (a delivery retried after its answer
    /// was lost) ignores the second.
    pub id: i64,
    pub site: String,
    /// `opened`, `cleared`, `event` (a failover or takeover: nothing to clear) or `test`.
    pub state: String,
    pub rule: Option<AlertRule>,
    pub severity: crate::api::Severity,
    pub title: String,
    pub detail: String,
    /// The incident's key (`host:3`), or the event's (`event:812`).
    pub key: String,
    pub vpses: Vec<String>,
    /// The dashboard page to act from.
    pub link: String,
    pub at: DateTime<Utc>,
}

fn printable(field: &str, v: &str, max: usize) -> Result<String, ValidationError> {
    if v.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("at most {max} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(ValidationError::new(
            field,
            "control characters are not allowed",
        ));
    }
    Ok(v.to_string())
}

/// A host name or an IPv4 address, as a server is reached at.
pub fn host_name(field: &str, v: &str) -> Result<String, ValidationError> {
    let v = v.trim().to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if v.is_empty() || v.len() > 253 || !v.split('.').all(label_ok) {
        return Err(ValidationError::new(
            field,
            "a host name (mail.example.com) or an IPv4 address",
        ));
    }
    Ok(v)
}

/// An http(s) URL a webhook is posted to: a host, an optional port and path, no spaces,
/// no user:password part.
pub fn webhook_url(field: &str, v: &str) -> Result<String, ValidationError> {
    let v = v.trim();
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or_else(|| ValidationError::new(field, "an http:// or https:// URL"))?;
    if v.len() > 2048 {
        return Err(ValidationError::new(field, "at most 2048 characters"));
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::new(field, "a URL has no spaces"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(ValidationError::new(
            field,
            "no user or password in the URL: the signature is the webhook's secret",
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(ValidationError::new(field, "a port from 1 to 65535"));
        }
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<std::net::IpAddr>().is_err() {
        host_name(field, host).map_err(|_| ValidationError::new(field, "the URL needs a host"))?;
    }
    Ok(v.to_string())
}

/// An e-mail address: `local@domain`, no spaces, angle brackets or line breaks (it goes into a
/// mail header).
pub fn mail_address(field: &str, v: &str) -> Result<String, ValidationError> {
    let v = v.trim();
    let bad = || ValidationError::new(field, "an e-mail address: name@example.com");
    let (local, domain) = v.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || v.len() > 254
        || local.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '<' | '>' | ',' | ';' | '"' | '@' | '(' | ')' | '\\')
        })
    {
        return Err(bad());
    }
    host_name(field, domain).map_err(|_| bad())?;
    if !domain.contains('.') && domain != "localhost" {
        return Err(bad());
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str, secret: Option<&str>) -> AlertTargetRequest {
        AlertTargetRequest {
            name: "ops".into(),
            channel: AlertChannel::Webhook { url: url.into() },
            secret: secret.map(Into::into),
            rules: vec![AlertRule::HostOffline, AlertRule::HostOffline],
            enabled: true,
        }
    }

    #[test]
    fn a_webhook_needs_a_url_and_a_long_enough_secret() {
        let ok = hook("https://hooks.example.com/sw?x=1", Some("0123456789abcdef"))
            .check(false)
            .unwrap();
        assert_eq!(ok.rules, vec![AlertRule::HostOffline]);
        assert!(hook("http://127.0.0.1:8080/in", Some("0123456789abcdef"))
            .check(false)
            .is_ok());
        for (url, field) in [
            ("ftp://x", "url"),
            ("https://", "url"),
            ("https://a b/", "url"),
            ("https://user:pw@example.com/", "url"),
            ("https://example.com:0/", "url"),
            ("https://example.com:99999/", "url"),
            ("https://exa$mple.com/", "url"),
        ] {
            let e = hook(url, Some("0123456789abcdef"))
                .check(false)
                .unwrap_err();
            assert_eq!(e.field, field, "{url}");
        }
        assert_eq!(
            hook("https://x.org/", Some("short"))
                .check(false)
                .unwrap_err()
                .field,
            "secret"
        );
        assert_eq!(
            hook("https://x.org/", None).check(false).unwrap_err().field,
            "secret"
        );
        // A change that leaves the secret out keeps the one stored.
        assert!(hook("https://x.org/", None).check(true).is_ok());
        let mut none = hook("https://x.org/", Some("0123456789abcdef"));
        none.rules.clear();
        assert_eq!(none.check(false).unwrap_err().field, "rules");
    }

    #[test]
    fn mail_targets_check_their_server_and_addresses() {
        let mail = |host: &str, from: &str, to: Vec<&str>| AlertTargetRequest {
            name: "mail".into(),
            channel: AlertChannel::Email {
                smtp_host: host.into(),
                smtp_port: 587,
                security: SmtpSecurity::Starttls,
                username: Some(" ".into()),
                from: from.into(),
                to: to.into_iter().map(Into::into).collect(),
            },
            secret: None,
            rules: vec![AlertRule::StorageFull],
            enabled: true,
        };
        let ok = mail(
            "Mail.Example.com",
            "sw@example.com",
            vec!["ops@example.com"],
        )
        .check(false)
        .unwrap();
        match ok.channel {
            AlertChannel::Email {
                smtp_host,
                username,
                ..
            } => {
                assert_eq!(smtp_host, "mail.example.com");
                assert_eq!(username, None);
            }
            _ => unreachable!(),
        }
        for (host, from, to, field) in [
            ("mail..example.com", "a@b.c", vec!["d@e.f"], "smtp_host"),
            ("m.example.com", "no-at", vec!["d@e.f"], "from"),
            ("m.example.com", "a@b.c", vec![], "to"),
            (
                "m.example.com",
                "a@b.c",
                vec!["x@y.z\r\nBcc: e@vil.org"],
                "to",
            ),
            ("m.example.com", "a@b.c", vec!["<x@y.z>"], "to"),
        ] {
            let e = mail(host, from, to.clone()).check(false).unwrap_err();
            assert_eq!(e.field, field, "{host} {from} {to:?}");
        }
    }

    #[test]
    fn rules_are_stored_as_names_and_read_back() {
        let s = AlertRule::join(&[AlertRule::StorageFull, AlertRule::HostOffline]);
        assert_eq!(s, "host_offline,storage_full");
        assert_eq!(
            AlertRule::split(&format!("{s},from_the_future")),
            vec![AlertRule::HostOffline, AlertRule::StorageFull]
        );
        for r in AlertRule::ALL {
            assert_eq!(AlertRule::parse(r.as_str()), Some(r));
        }
    }
}
