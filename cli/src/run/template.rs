//! `sw template …`: templates.

use super::{usage, Ctx, Term};
use crate::api::Result;
use crate::args::*;
use crate::show;
use serde_json::json;
use serverware_shared::api::TemplateResponse;

pub(super) async fn template<T: Term>(ctx: &mut Ctx<'_, T>, c: TemplateCmd) -> Result<()> {
    match c {
        TemplateCmd::List => {
            ctx.listing(
                "/templates",
                &["ID", "NAME", "OS", "SIZE", "STATUS", "ADDED"],
                |t: &TemplateResponse| {
                    Some(vec![
                        t.id.to_string(),
                        t.name.clone(),
                        t.os.clone(),
                        show::bytes(t.size_bytes as f64),
                        t.status.clone(),
                        show::time(&t.created_at),
                    ])
                },
            )
            .await
        }
        TemplateCmd::Upload {
            name,
            file,
            os,
            description,
        } => {
            if !ctx.files {
                return Err(usage(
                    "over SSH no file is read on the controller: upload with sw on your own machine, or on the Templates page",
                ));
            }
            let v = ctx
                .api
                .post_file(
                    "/templates",
                    &[("name", &name), ("os", &os), ("description", &description)],
                    &file,
                )
                .await?;
            ctx.say(&v, || {
                format!(
                    "template {} uploaded ({})",
                    v["name"].as_str().unwrap_or("?"),
                    show::bytes(v["size_bytes"].as_f64().unwrap_or(0.0))
                )
            });
            Ok(())
        }
        TemplateCmd::Build {
            name,
            suite,
            mirror,
            description,
            wait,
        } => {
            let body = json!({
                "name": name, "suite": suite, "mirror": mirror, "description": description
            });
            let v = ctx
                .api
                .call("POST", "/templates/debian", Some(&body))
                .await?;
            ctx.task(v, wait.wait).await
        }
        TemplateCmd::Delete { template } => {
            let id = ctx
                .resolve("/templates", "name", "template", &template)
                .await?;
            ctx.confirm(&format!("Delete template {template}?")).await?;
            let v = ctx
                .api
                .call("DELETE", &format!("/templates/{id}"), None)
                .await?;
            ctx.say(&v, || format!("template {template} deleted"));
            Ok(())
        }
    }
}
