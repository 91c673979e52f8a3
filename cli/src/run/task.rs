//! `sw task …`: tasks and their progress.

use super::{parse, Ctx, Term};
use crate::api::Result;
use crate::args::*;
use crate::show;
use serverware_shared::api::TaskResponse;

pub(super) async fn task<T: Term>(ctx: &mut Ctx<'_, T>, c: TaskCmd) -> Result<()> {
    match c {
        TaskCmd::List { status, limit } => {
            let mut path = format!("/tasks?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            ctx.listing(
                &path,
                &[
                    "ID", "KIND", "TARGET", "STATUS", "PROGRESS", "BY", "STARTED",
                ],
                |t: &TaskResponse| {
                    Some(vec![
                        t.id.to_string(),
                        t.kind.clone(),
                        format!(
                            "{} {}",
                            t.target_type.clone().unwrap_or_default(),
                            t.target_id.clone().unwrap_or_default()
                        ),
                        t.status.clone(),
                        format!("{} %", t.progress_pct),
                        t.created_by.clone(),
                        show::time(&t.created_at),
                    ])
                },
            )
            .await
        }
        TaskCmd::Show { id } => {
            let v = ctx.api.get(&format!("/tasks/{id}")).await?;
            if ctx.json {
                ctx.print_json(&v);
                return Ok(());
            }
            let t: TaskResponse = parse(&v)?;
            let mut out = show::pairs(&[
                ("Task", format!("{} ({})", t.id, t.kind)),
                ("Status", t.status.clone()),
                ("Progress", format!("{} %", t.progress_pct)),
                ("By", t.created_by.clone()),
                ("Started", show::time(&t.created_at)),
                (
                    "Finished",
                    show::opt(t.finished_at.as_ref().map(show::time)),
                ),
                ("Error", show::opt(t.error.clone())),
            ]);
            for l in t.log.unwrap_or_default() {
                out.push_str(&format!("\n  {} {}", show::time(&l.at), l.line));
            }
            ctx.term.out(&out);
            Ok(())
        }
        TaskCmd::Follow { id } => ctx.follow(id).await,
    }
}
