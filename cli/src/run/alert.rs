//! `sw alert …`: notification targets, a test message, the incidents told.

use super::Ctx;
use super::Term;
use crate::api::{Exit, Failure, Result};
use crate::args::*;
use crate::show;
use serverware_shared::alerts::{AlertChannel, AlertsOverview};

pub(super) async fn alert<T: Term>(ctx: &mut Ctx<'_, T>, c: AlertCmd) -> Result<()> {
    let v = ctx.api.get("/alerts").await?;
    let o: AlertsOverview = super::parse(&v)?;
    match c {
        AlertCmd::List => {
            if ctx.json {
                ctx.print_json(&v["targets"]);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = o
                .targets
                .iter()
                .map(|t| {
                    let to = match &t.channel {
                        AlertChannel::Webhook { url } => url.clone(),
                        AlertChannel::Email {
                            smtp_host,
                            smtp_port,
                            to,
                            ..
                        } => format!("{} via {smtp_host}:{smtp_port}", to.join(",")),
                    };
                    vec![
                        t.id.to_string(),
                        t.name.clone(),
                        if t.enabled {
                            t.channel.kind().to_string()
                        } else {
                            format!("{} (off)", t.channel.kind())
                        },
                        to,
                        t.rules
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        match (&t.last_error, t.pending) {
                            (Some(e), n) => format!("failing, {n} waiting: {e}"),
                            (None, 0) => "up to date".into(),
                            (None, n) => format!("{n} waiting"),
                        },
                    ]
                })
                .collect();
            ctx.term.out(&show::table(
                &["ID", "NAME", "KIND", "TO", "RULES", "DELIVERY"],
                &rows,
            ));
            Ok(())
        }
        AlertCmd::Incidents => {
            if ctx.json {
                ctx.print_json(&v["incidents"]);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = o
                .incidents
                .iter()
                .map(|i| {
                    vec![
                        i.rule.as_str().to_string(),
                        i.title.clone(),
                        i.opened_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        i.cleared_at
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_else(|| "open".into()),
                    ]
                })
                .collect();
            ctx.term.out(&show::table(
                &["RULE", "INCIDENT", "OPENED (UTC)", "CLEARED (UTC)"],
                &rows,
            ));
            Ok(())
        }
        AlertCmd::Test { target } => {
            let t = o
                .targets
                .iter()
                .find(|t| t.name == target || t.id.to_string() == target)
                .ok_or_else(|| {
                    Failure::new(Exit::NotFound, format!("no alert target '{target}'"))
                })?;
            let r = ctx
                .api
                .call(
                    "POST",
                    &format!("/alerts/targets/{}/test", t.id),
                    Some(&serde_json::json!({})),
                )
                .await?;
            let ok = r["ok"].as_bool().unwrap_or(false);
            let message = r["message"].as_str().unwrap_or("").to_string();
            ctx.say(&r, || {
                if ok {
                    format!("delivered to {}: {message}", t.name)
                } else {
                    format!("not delivered to {}: {message}", t.name)
                }
            });
            if ok {
                Ok(())
            } else {
                Err(Failure::new(
                    Exit::Failed,
                    format!("the test message to {} was not delivered", t.name),
                ))
            }
        }
    }
}
