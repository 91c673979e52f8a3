//! The sender: delivers the outbox's messages, each target's in order and targets side by
//! side, so a target that does not answer delays only its own. A failed delivery is tried again
//! after a back-off that doubles up to [`MAX_BACKOFF`]; after [`GIVE_UP_AFTER`] the message is
//! given up and an event says so.
//!
//! A webhook gets the message as JSON in a POST, with `X-Serverware-Signature: sha256=<hex>`,
//! the HMAC-SHA256 of the body under the target's secret, and `X-Serverware-Delivery: <id>`.
//! A mail goes through the target's SMTP server (STARTTLS required, TLS from the start, or
//! plain for a local relay), with the message's id in its Message-ID.

use super::{channel, repo, Alerts};
use crate::models::now;
use hmac::{Hmac, Mac};
use serverware_shared::alerts::{AlertChannel, AlertPayload, SmtpSecurity};
use sha2::Sha256;
use std::time::Duration;

/// How long one delivery may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);
const GIVE_UP_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// Messages looked at per pass.
const BATCH: i64 = 200;

/// The signature header's value for `body`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends one message; what the receiver said, or why it failed.
pub async fn deliver(
    alerts: &Alerts,
    ch: &AlertChannel,
    secret: Option<&str>,
    subject: &str,
    p: &AlertPayload,
) -> Result<String, String> {
    match ch {
        AlertChannel::Webhook { url } => webhook(alerts, url, secret, p).await,
        AlertChannel::Email {
            smtp_host,
            smtp_port,
            security,
            username,
            from,
            to,
        } => {
            let server = Smtp {
                host: smtp_host,
                port: *smtp_port,
                security: *security,
                username: username.as_deref(),
                password: secret,
            };
            mail(&server, from, to, subject, p).await
        }
    }
}

/// An error with its causes (reqwest's and lettre's own text often name only the step).
async fn webhook(
    alerts: &Alerts,
    url: &str,
    secret: Option<&str>,
    p: &AlertPayload,
) -> Result<String, String> {
    let body = serde_json::to_vec(p).map_err(|e| e.to_string())?;
    let secret = secret.ok_or("the webhook has no secret to sign with")?;
    let mut r = alerts
        .client
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Serverware-Signature", signature(secret, &body))
        .header("X-Serverware-Delivery", p.id.to_string())
        .header("X-Serverware-Event", p.state.as_str())
        .body(body)
        .send()
        .await
        .map_err(|e| crate::error::causes(&e))?;
    let status = r.status();
    // The start of its answer only: a receiver cannot make the controller hold more.
    let mut head = Vec::new();
    while head.len() < 1024 {
        match r.chunk().await {
            Ok(Some(c)) => head.extend_from_slice(&c),
            _ => break,
        }
    }
    let text: String = String::from_utf8_lossy(&head).chars().take(200).collect();
    if status.is_success() {
        Ok(format!("HTTP {}", status.as_u16()))
    } else {
        Err(format!("HTTP {}: {}", status.as_u16(), text.trim()))
    }
}

pub struct Smtp<'a> {
    pub host: &'a str,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
}

/// The mail's text: the title, what it means, and where to look.
pub fn mail_text(p: &AlertPayload) -> String {
    let state = match p.state.as_str() {
        "opened" => "open",
        "cleared" => "cleared",
        "test" => "test",
        _ => "happened",
    };
    let mut t = format!("{}\n\n{}\n\n", p.title, p.detail);
    t.push_str(&format!("Site:      {}\n", p.site));
    t.push_str(&format!("State:     {state}\n"));
    if let Some(r) = p.rule {
        t.push_str(&format!("Rule:      {}\n", r.label()));
    }
    if !p.vpses.is_empty() {
        t.push_str(&format!("VPSes:     {}\n", p.vpses.join(", ")));
    }
    t.push_str(&format!(
        "At:        {}\n",
        p.at.format("%Y-%m-%d %H:%M:%S UTC")
    ));
    t.push_str(&format!("Dashboard: {}\n", p.link));
    t.push_str(&format!("Key:       {}\n", p.key));
    t
}

pub async fn mail(
    s: &Smtp<'_>,
    from: &str,
    to: &[String],
    subject: &str,
    p: &AlertPayload,
) -> Result<String, String> {
    use lettre::message::{header::ContentType, Mailbox};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let mailbox = |a: &str| a.parse::<Mailbox>().map_err(|e| format!("{a}: {e}"));
    let mut m = Message::builder()
        .from(mailbox(from)?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    if p.id > 0 {
        m = m.message_id(Some(format!(
            "<alert-{}.{}@serverware>",
            p.id,
            p.key.replace(['<', '>', '@', ' '], "-")
        )));
    }
    for a in to {
        m = m.to(mailbox(a)?);
    }
    let m = m.body(mail_text(p)).map_err(|e| crate::error::causes(&e))?;
    let tls = || TlsParameters::new(s.host.to_string()).map_err(|e| crate::error::causes(&e));
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host)
        .port(s.port)
        .timeout(Some(DELIVERY_TIMEOUT));
    b = match s.security {
        SmtpSecurity::Starttls => b.tls(Tls::Required(tls()?)),
        SmtpSecurity::Tls => b.tls(Tls::Wrapper(tls()?)),
        SmtpSecurity::None => b.tls(Tls::None),
    };
    if let Some(u) = s.username {
        b = b.credentials(Credentials::new(
            u.to_string(),
            s.password.unwrap_or_default().to_string(),
        ));
    }
    let r = tokio::time::timeout(DELIVERY_TIMEOUT, b.build().send(m))
        .await
        .map_err(|_| format!("the SMTP server did not answer within {DELIVERY_TIMEOUT:?}"))?
        .map_err(|e| crate::error::causes(&e))?;
    Ok(format!(
        "SMTP {}: {}",
        r.code(),
        r.message().collect::<Vec<_>>().join(" ")
    ))
}

/// The wait before attempt `attempts + 1`.
pub fn backoff(attempts: i32) -> Duration {
    let secs = 10u64.saturating_mul(1u64 << attempts.clamp(0, 20).saturating_sub(1));
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// One pass: every message due, delivered or rescheduled. How many were delivered.
pub async fn pass(alerts: &Alerts) -> Result<usize, String> {
    let (due, targets) = alerts
        .db
        .run(|c| Ok((repo::due(c, now(), BATCH)?, repo::targets(c)?)))
        .await
        .map_err(|e| e.message())?;
    let mut by_target: Vec<(repo::Target, Vec<repo::Message>)> = Vec::new();
    for m in due {
        match by_target.iter_mut().find(|(t, _)| t.id == m.target_id) {
            Some((_, list)) => list.push(m),
            None => {
                if let Some(t) = targets.iter().find(|t| t.id == m.target_id) {
                    by_target.push((t.clone(), vec![m]));
                }
            }
        }
    }
    let runs = by_target
        .into_iter()
        .filter(|(t, _)| t.enabled)
        .map(|(t, list)| target_pass(alerts, t, list));
    let sent = futures_util::future::join_all(runs).await;
    let mut n = 0;
    for r in sent {
        n += r?;
    }
    Ok(n)
}

/// One target's due messages, in order; it stops at the first failure (the rest wait their
/// turn behind it, so the receiver sees them in order).
async fn target_pass(
    alerts: &Alerts,
    t: repo::Target,
    list: Vec<repo::Message>,
) -> Result<usize, String> {
    let ch = channel(&t).map_err(|e| e.message())?;
    let mut sent = 0;
    for m in list {
        let mut p: AlertPayload = match serde_json::from_str(&m.body) {
            Ok(p) => p,
            Err(e) => {
                record(alerts, &t, &m, Err(format!("unreadable message: {e}"))).await?;
                continue;
            }
        };
        p.id = m.id;
        let r = deliver(alerts, &ch, t.secret.as_deref(), &m.subject, &p).await;
        let ok = r.is_ok();
        record(alerts, &t, &m, r).await?;
        if !ok {
            break;
        }
        sent += 1;
    }
    Ok(sent)
}

async fn record(
    alerts: &Alerts,
    t: &repo::Target,
    m: &repo::Message,
    r: Result<String, String>,
) -> Result<(), String> {
    let (id, attempts, created, target, name) =
        (m.id, m.attempts + 1, m.created_at, t.id, t.name.clone());
    let subject = m.subject.clone();
    alerts
        .db
        .run(move |c| {
            let at = now();
            match r {
                Ok(_) => repo::mark_sent(c, id, at, attempts),
                Err(e) if at - created > GIVE_UP_AFTER => {
                    repo::mark_failed(c, id, attempts, None, at, &e)?;
                    crate::audit::record_system(
                        c,
                        &crate::audit::Actor::system("alerts"),
                        crate::audit::Change::new(
                            "alert.undeliverable",
                            "alert_target",
                            target,
                            format!("alert to {name} given up after {attempts} attempts: {subject}: {e}"),
                        )
                        .severity(serverware_shared::api::Severity::Error),
                    )?;
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(target = %name, "alert not delivered (attempt {attempts}): {e}");
                    let next = at
                        + chrono::TimeDelta::from_std(backoff(attempts))
                            .unwrap_or(chrono::TimeDelta::minutes(30));
                    repo::mark_failed(c, id, attempts, Some(next), at, &e)
                }
            }
        })
        .await
        .map_err(|e| e.message())
}

/// Delivered and given-up messages and cleared incidents past the site's history retention.
pub async fn prune(db: &crate::db::Db) -> crate::error::Result<usize> {
    db.run(|c| {
        let days = crate::settings::read(c)?.history_retention_days;
        repo::prune(c, now() - chrono::TimeDelta::days(i64::from(days)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_back_off_to_half_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(5), Duration::from_secs(160));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
