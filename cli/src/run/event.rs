//! `sw event …`: the audit log and what the controller did.

use super::{parse, Ctx, Term};
use crate::api::Result;
use crate::args::*;
use crate::show;
use serverware_shared::api::EventListResponse;
use std::time::Duration;

pub(super) async fn event<T: Term>(ctx: &mut Ctx<'_, T>, c: EventCmd) -> Result<()> {
    let EventCmd::List {
        action,
        actor,
        limit,
        follow,
    } = c;
    let mut query = String::new();
    if let Some(a) = &action {
        query.push_str(&format!("&action={a}"));
    }
    if let Some(a) = &actor {
        query.push_str(&format!("&actor={a}"));
    }
    let v = ctx
        .api
        .get(&format!("/events?limit={}{query}", limit.clamp(1, 500)))
        .await?;
    let page: EventListResponse = parse(&v)?;
    let line = |e: &serverware_shared::api::EventResponse| {
        format!(
            "{}  {:<7}  {:<12}  {:<22}  {}",
            show::time(&e.created_at),
            format!("{:?}", e.severity).to_lowercase(),
            e.actor,
            e.action,
            e.message
        )
    };
    let mut newest = page.events.first().map(|e| e.id).unwrap_or(0);
    if ctx.json && !follow {
        ctx.print_json(&v);
        return Ok(());
    }
    for e in page.events.iter().rev() {
        if ctx.json {
            ctx.term.out(&serde_json::to_string(e).unwrap_or_default());
        } else {
            ctx.term.out(&line(e));
        }
    }
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let v = ctx.api.get(&format!("/events?limit=500{query}")).await?;
        let page: EventListResponse = parse(&v)?;
        for e in page.events.iter().rev().filter(|e| e.id > newest) {
            if ctx.json {
                ctx.term.out(&serde_json::to_string(e).unwrap_or_default());
            } else {
                ctx.term.out(&line(e));
            }
        }
        newest = newest.max(page.events.first().map(|e| e.id).unwrap_or(0));
    }
}
