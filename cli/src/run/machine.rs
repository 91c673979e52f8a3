//! `sw machine …`: machines that boot from the network to become hosts.

use super::Ctx;
use super::Term;
use crate::api::{Exit, Failure, Result};
use crate::args::*;
use crate::show;
use serde_json::json;
use serverware_shared::provision::{ProvisionMachine, ProvisionOverview};

pub(super) async fn machine<T: Term>(ctx: &mut Ctx<'_, T>, c: MachineCmd) -> Result<()> {
    match c {
        MachineCmd::List => {
            let v = ctx.api.get("/provision").await?;
            if ctx.json {
                ctx.print_json(&v["machines"]);
                return Ok(());
            }
            let o: ProvisionOverview = super::parse(&v)?;
            let newest = o.images.iter().find(|i| i.ok).map(|i| i.id.clone());
            let rows: Vec<Vec<String>> = o
                .machines
                .iter()
                .map(|m| {
                    let image = m.image_id.clone().unwrap_or_default();
                    let mark = if newest
                        .as_ref()
                        .is_some_and(|n| !image.is_empty() && *n != image)
                    {
                        " (newer built)"
                    } else {
                        ""
                    };
                    vec![
                        m.mac.clone(),
                        m.name.clone(),
                        m.state.clone(),
                        m.stage.clone(),
                        m.address.clone().unwrap_or_else(|| "DHCP".into()),
                        format!("{image}{mark}"),
                        m.message.clone(),
                    ]
                })
                .collect();
            ctx.term.out(&show::table(
                &["MAC", "NAME", "STATE", "STAGE", "ADDRESS", "IMAGE", "NOTE"],
                &rows,
            ));
            Ok(())
        }
        MachineCmd::Add { mac, approval: a } => {
            let body =
                json!({"mac": mac, "name": a.name, "address": a.address, "gateway": a.gateway});
            let v = ctx
                .api
                .call("POST", "/provision/machines", Some(&body))
                .await?;
            ctx.say(&v, || {
                format!(
                    "machine {mac} added as {}: it joins at its first boot",
                    v["name"].as_str().unwrap_or("?")
                )
            });
            Ok(())
        }
        MachineCmd::Approve { mac, approval: a } => {
            let body = json!({"name": a.name, "address": a.address, "gateway": a.gateway});
            let v = ctx
                .api
                .call(
                    "POST",
                    &format!("/provision/machines/{mac}/approve"),
                    Some(&body),
                )
                .await?;
            ctx.say(&v, || {
                format!(
                    "machine {mac} approved as {}: it joins at its next boot",
                    v["name"].as_str().unwrap_or("?")
                )
            });
            Ok(())
        }
        MachineCmd::Reimage {
            machine,
            image,
            force,
            wait,
        } => {
            let mac = mac_of(ctx, &machine).await?;
            let body = json!({"image": image, "force": force});
            let v = ctx
                .api
                .call(
                    "POST",
                    &format!("/provision/machines/{mac}/reimage"),
                    Some(&body),
                )
                .await?;
            ctx.task(v, wait.wait).await
        }
        MachineCmd::Forget { mac } => {
            ctx.confirm(&format!("Forget machine {mac}?")).await?;
            let v = ctx
                .api
                .call("DELETE", &format!("/provision/machines/{mac}"), None)
                .await?;
            ctx.say(&v, || format!("machine {mac} forgotten"));
            Ok(())
        }
    }
}

/// A machine by MAC or by its (host) name.
async fn mac_of<T: Term>(ctx: &mut Ctx<'_, T>, given: &str) -> Result<String> {
    let v = ctx.api.get("/provision").await?;
    let machines: Vec<ProvisionMachine> = super::parse(&v["machines"])?;
    machines
        .into_iter()
        .find(|m| m.mac.eq_ignore_ascii_case(given) || m.name == given)
        .map(|m| m.mac)
        .ok_or_else(|| Failure::new(Exit::NotFound, format!("no machine '{given}'")))
}
