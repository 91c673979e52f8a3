//! *Re-image*: a provisioned host boots into another host image. Its root filesystem comes from
//! the network at every boot and its VPSes live on its own disk, so a re-image is: pin the
//! machine to the image, reboot it, and see it fetch that image's root and come back online.
//! Only a host in maintenance (its VPSes moved away) is re-imaged, unless the operator forces it
//! (what still runs there stops, and starts again with the host).

use super::Provisioner;
use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::repo::provision as repo;
use serverware_shared::provision::ReimageRequest;
use serverware_shared::state::HostStatus;
use serverware_shared::{validate, HostId};
use std::sync::Arc;
use std::time::Duration;

/// How long a re-imaged host has to come back online on its new image.
const BACK_WITHIN: Duration = Duration::from_secs(900);

/// Checks, pins the image, starts the task and reboots the host; the task follows the host
/// back (root of the new image fetched, online) in the background. Returns the task's id.
pub async fn reimage(
    p: &Arc<Provisioner>,
    actor: Actor,
    mac: &str,
    r: ReimageRequest,
) -> Result<serverware_shared::api::TaskResponse> {
    let mac = validate::mac_address("mac", mac)?;
    let usable = p.usable_images().await;
    let image = match r.image.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
        Some(i) if usable.iter().any(|u| u == i) => i.to_string(),
        Some(i) => {
            return Err(Error::invalid(
                "image",
                format!("no image {i} that checks whole on this controller"),
            ))
        }
        None => usable.first().cloned().ok_or_else(|| {
            Error::conflict(Some("image"), "no host image: run serverware image build")
        })?,
    };
    let (m2, img, a, force) = (mac.clone(), image.clone(), actor.clone(), r.force);
    let (name, host, before) =
        p.db.run(move |c| crate::db::atomic(c, |c| pin(c, &m2, &img, &a, force)))
            .await?;
    p.pins_changed().await;
    let (m3, a) = (mac.clone(), actor.clone());
    let row =
        p.db.run(move |c| crate::tasks::insert(c, "host.reimage", "machine", &m3, &a))
            .await?;
    let task = crate::tasks::Task::new(p.db.clone(), p.hub.clone(), actor, &row);
    task.log(format!(
        "re-imaging host {name} ({mac}) from image {} to {image}",
        before.as_deref().unwrap_or("(none)")
    ))
    .await;
    // Its boot stages are logged on this task.
    p.set_task(&mac, task.clone());
    let since = std::time::Instant::now();
    if let Err(e) = crate::hosts::reboot(&p.host_admin, host).await {
        p.take_task(&mac);
        task.finish(&Err(Error::HostUnavailable(format!(
            "the image is set, but the host did not reboot ({}): it boots image {image} at its next reboot",
            e.message()
        ))))
        .await;
        return Ok(task.response());
    }
    task.log(format!("host {name} is rebooting")).await;
    let resp = task.response();
    let p = p.clone();
    tokio::spawn(async move {
        let r = follow(&p, &mac, &name, host, &image, since).await;
        p.take_task(&mac);
        task.finish(&r).await;
    });
    Ok(resp)
}

/// Pins machine `mac` to `image` if it may be re-imaged now: it joined, its host is in
/// maintenance, and nothing runs there (or `force`). Returns its name, host and former image.
fn pin(
    c: &mut crate::db::DbConn,
    mac: &str,
    image: &str,
    actor: &Actor,
    force: bool,
) -> Result<(String, HostId, Option<String>)> {
    let mut m = repo::find(c, mac)?.ok_or_else(|| {
        Error::NotFound(format!("no machine {mac} has booted from this controller"))
    })?;
    let host = match (m.state.as_str(), m.host_id) {
        ("joined", Some(h)) => HostId(h),
        _ => {
            return Err(Error::conflict(
                None,
                format!("{mac} is not a joined host (it is {})", m.state),
            ))
        }
    };
    let h = crate::repo::hosts::find(c, host)?;
    if !h.maintenance {
        return Err(Error::conflict(
            None,
            format!(
                "put host {} in maintenance first: its VPSes are moved away before it reboots",
                h.name
            ),
        ));
    }
    let running = crate::repo::vpses::should_run_on(c, host)?;
    if !running.is_empty() && !force {
        let names: Vec<_> = running.into_iter().map(|(_, n, _)| n).collect();
        return Err(Error::conflict(
            None,
            format!(
                "VPSes still run on host {}: {} (move them, or re-image with force: they stop and start again with the host)",
                h.name,
                names.join(", ")
            ),
        ));
    }
    let before = m.image_id.replace(image.to_string());
    repo::save(c, &m)?;
    audit::record(
        c,
        actor,
        Change::new(
            "provision.reimage",
            "host",
            host.0,
            format!(
                "re-image host {} from image {} to {image}",
                h.name,
                before.as_deref().unwrap_or("(none)")
            ),
        )
        .details(
            serde_json::json!({ "mac": mac, "image": image, "before": before, "force": force }),
        ),
    )?;
    Ok((m.name, host, before))
}

/// Waits for the host to go down, fetch `image`'s root and come back online.
async fn follow(
    p: &Provisioner,
    mac: &str,
    name: &str,
    host: HostId,
    image: &str,
    since: std::time::Instant,
) -> Result<String> {
    let deadline = tokio::time::Instant::now() + BACK_WITHIN;
    let online =
        || p.host_admin.hosts.view(host).and_then(|v| v.status) == Some(HostStatus::Online);
    let mut went_down = false;
    while tokio::time::Instant::now() < deadline {
        let fetched = p.root_fetched_since(mac, image, since);
        if !online() {
            if !went_down {
                p.log(mac, format!("host {name} went down")).await;
            }
            went_down = true;
        } else if fetched && went_down {
            p.proven(image, name);
            return Ok(format!("host {name} is back online on image {image}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(Error::HostUnavailable(format!(
        "host {name} did not come back online on image {image} within {} min",
        BACK_WITHIN.as_secs() / 60
    )))
}
