//! A booting machine's join, and what operators do with machines: approve, forget.
//!
//! A join is authenticated by the one-time token the controller put on that MAC's command line:
//! it is checked against its SHA-256, used up by the first join that shows it, and good for
//! `TOKEN_TTL_SECS`. Every refusal is an event and changes nothing. The host is recorded only
//! once the controller logged in with its own key on the pinned host key: nothing half-joined
//! appears in the host list.

use super::Provisioner;
use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::models::now;
use crate::repo::provision::{self as repo, Machine};
use crate::tasks::Task;
use serverware_shared::provision::{
    self as sp, ApproveMachineRequest, ProvisionJoinRequest, ProvisionJoinResponse,
};
use serverware_shared::state::HostStatus;
use serverware_shared::validate;
use std::sync::Arc;
use std::time::Duration;

/// Starts the task that shows machine `mac`'s way in, unless it has one.
pub async fn start_task(p: &Provisioner, mac: &str, name: &str) {
    if p.tasks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(mac)
    {
        return;
    }
    let (m, actor) = (mac.to_string(), Actor::system("provision"));
    let a = actor.clone();
    let row =
        p.db.run(move |c| crate::tasks::insert(c, "host.provision", "machine", &m, &a))
            .await;
    if let Ok(row) = row {
        let task = Task::new(p.db.clone(), p.hub.clone(), actor, &row);
        task.log(format!("{name} ({mac}): DHCP answered and iPXE loaded"))
            .await;
        p.set_task(mac, task);
    }
}

/// What a join shows, checked: refused with the reason before anything is looked up.
fn check(req: &ProvisionJoinRequest) -> Result<()> {
    validate::exact("mac", &req.mac, validate::mac_address)?;
    sp::token("token", &req.token)?;
    validate::ipv4_address("address", &req.address)?;
    russh::keys::PublicKey::from_openssh(&req.host_key)
        .map_err(|_| Error::invalid("host_key", "not an OpenSSH public key"))?;
    Ok(())
}

/// Why a join is refused, if it is: the machine is unknown, joined already, has no token
/// outstanding (used, or never handed out), shows another token, or one that expired.
fn refusal(m: Option<&Machine>, req: &ProvisionJoinRequest) -> Option<String> {
    let Some(m) = m else {
        return Some(format!(
            "no machine {} booted from this controller",
            req.mac
        ));
    };
    if m.state == "joined" {
        return Some(format!(
            "{} joined already as host {}: a second machine with its MAC is refused",
            m.mac, m.name
        ));
    }
    let Some(sha) = &m.token_sha256 else {
        return Some(format!(
            "no join token is outstanding for {} (used already, or never handed out)",
            m.mac
        ));
    };
    if *sha != super::boot::token_sha256(&req.token) {
        return Some(format!(
            "the join token shown for {} is not the one it was given",
            m.mac
        ));
    }
    if m.token_expires_at.is_some_and(|e| e < now()) {
        return Some(format!(
            "the join token of {} expired: boot it again for a new one",
            m.mac
        ));
    }
    None
}

/// A machine's join: checked, the token used up, answered with the controller's key; the host
/// is added in the background once its SSH answers.
pub async fn join(
    p: &Arc<Provisioner>,
    req: ProvisionJoinRequest,
) -> Result<ProvisionJoinResponse> {
    if let Err(e) = check(&req) {
        let (mac, why) = (req.mac.clone(), e.message());
        let _ = p.db.run(move |c| refused(c, &mac, &why)).await;
        return Err(e);
    }
    let r = req.clone();
    let outcome =
        p.db.run(move |c| {
            crate::db::atomic(c, |c| {
                let m = repo::find(c, &r.mac)?;
                if let Some(why) = refusal(m.as_ref(), &r) {
                    return Ok(Err(why));
                }
                let mut m = m.expect("checked");
                m.token_sha256 = None;
                m.token_expires_at = None;
                m.state = "joining".into();
                m.stage = "joined".into();
                m.message = format!("joined from {}", r.address);
                m.last_seen_at = now();
                repo::save(c, &m)?;
                Ok(Ok(m))
            })
        })
        .await?;
    let m = match outcome {
        Ok(m) => m,
        Err(why) => {
            let (mac, w) = (req.mac.clone(), why.clone());
            p.db.run(move |c| refused(c, &mac, &w)).await?;
            p.log(&req.mac, format!("join refused: {why}")).await;
            return Err(Error::Forbidden(why));
        }
    };
    p.log(
        &m.mac,
        format!(
            "joined from {} with host key {}",
            req.address,
            key_fingerprint(&req.host_key)
        ),
    )
    .await;
    let (p2, name, mac) = (p.clone(), m.name.clone(), m.mac.clone());
    tokio::spawn(async move { finish(&p2, &mac, &name, &req.address, &req.host_key).await });
    Ok(ProvisionJoinResponse {
        name: m.name,
        controller_key: crate::keys::public_line(&p.host_admin.hosts.controller_key()),
    })
}

fn key_fingerprint(k: &str) -> String {
    russh::keys::PublicKey::from_openssh(k)
        .map(|k| k.fingerprint(russh::keys::HashAlg::Sha256).to_string())
        .unwrap_or_default()
}

fn refused(c: &mut crate::db::DbConn, mac: &str, why: &str) -> Result<()> {
    audit::record_system(
        c,
        &Actor::system("provision"),
        Change::new(
            "provision.join_refused",
            "machine",
            0,
            format!("join refused: {why}"),
        )
        .details(serde_json::json!({ "mac": mac })),
    )?;
    Ok(())
}

/// Adds the host once its SSH answers with the pinned key (the machine starts `sshd` after its
/// join), then waits for it to come online; the machine's record and task follow.
async fn finish(p: &Provisioner, mac: &str, name: &str, address: &str, host_key: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let added = loop {
        match crate::hosts::add_provisioned(&p.host_admin, name, address, host_key).await {
            Ok(h) => break Ok(h),
            Err(e @ (Error::Conflict { .. } | Error::Forbidden(_))) => break Err(e.message()),
            Err(e) if tokio::time::Instant::now() > deadline => break Err(e.message()),
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    };
    let task = p.take_task(mac);
    let host = match added {
        Ok(h) => h,
        Err(why) => {
            let (m, w) = (mac.to_string(), why.clone());
            let _ =
                p.db.run(move |c| set_state(c, &m, "failed", None, &w))
                    .await;
            if let Some(t) = task {
                t.finish(&Err(Error::HostUnavailable(why))).await;
            }
            return;
        }
    };
    let m = mac.to_string();
    let id = serverware_shared::HostId(host.id);
    let _ =
        p.db.run(move |c| set_state(c, &m, "joined", Some(id), ""))
            .await;
    if let Some(t) = &task {
        t.log(format!(
            "host {name} added: key pinned, controller key and agent installed"
        ))
        .await;
    }
    let online = wait_online(p, id).await;
    let (m, stage) = (mac.to_string(), if online { "online" } else { "joined" });
    let _ =
        p.db.run(move |c| {
            if let Some(mut row) = repo::find(c, &m)? {
                row.stage = stage.into();
                repo::save(c, &row)?;
            }
            Ok(())
        })
        .await;
    if let Some(t) = task {
        let r = if online {
            Ok(format!("host {name} is online"))
        } else {
            Err(Error::HostUnavailable(format!(
                "host {name} joined but did not come online"
            )))
        };
        t.finish(&r).await;
    }
}

async fn wait_online(p: &Provisioner, id: serverware_shared::HostId) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while tokio::time::Instant::now() < deadline {
        if p.host_admin.hosts.view(id).and_then(|v| v.status) == Some(HostStatus::Online) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

fn set_state(
    c: &mut crate::db::DbConn,
    mac: &str,
    state: &str,
    host: Option<serverware_shared::HostId>,
    why: &str,
) -> Result<()> {
    crate::db::atomic(c, |c| {
        if let Some(mut m) = repo::find(c, mac)? {
            m.state = state.into();
            m.message = why.into();
            if let Some(h) = host {
                m.host_id = Some(h.0);
            }
            repo::save(c, &m)?;
            if state == "failed" {
                audit::record_system(
                    c,
                    &Actor::system("provision"),
                    Change::new(
                        "provision.failed",
                        "machine",
                        0,
                        format!("{} ({mac}) joined but could not be added: {why}", m.name),
                    )
                    .details(serde_json::json!({ "mac": mac })),
                )?;
            }
        }
        Ok(())
    })
}

/// An operator approves a waiting machine (with the name and address it gets): its next boot
/// (or its iPXE's next ask, while it waits) gets a join token.
pub async fn approve(
    p: &Provisioner,
    actor: Actor,
    mac: &str,
    r: ApproveMachineRequest,
) -> Result<Machine> {
    let mac = validate::mac_address("mac", mac)?;
    let name = r
        .name
        .as_deref()
        .map(|n| validate::resource_name("name", n))
        .transpose()?;
    let address = r
        .address
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .map(|a| sp::cidr("address", a.trim()))
        .transpose()?;
    let gateway = r
        .gateway
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .map(|g| validate::ipv4_address("gateway", g.trim()).map(|g| g.to_string()))
        .transpose()?;
    p.db.run(move |c| {
        crate::db::atomic(c, |c| {
            let mut m = repo::find(c, &mac)?.ok_or_else(|| {
                Error::NotFound(format!("no machine {mac} has booted from this controller"))
            })?;
            if m.state == "joined" {
                return Err(Error::conflict(
                    None,
                    format!("{mac} joined already as host {}", m.name),
                ));
            }
            if let Some(n) = name {
                if repo::name_taken(c, &n, &mac)? || crate::repo::hosts::name_taken(c, &n, None)? {
                    return Err(Error::conflict(
                        Some("name"),
                        format!("the name {n} is taken"),
                    ));
                }
                m.name = n;
            }
            m.approved = true;
            m.address = address;
            m.gateway = gateway;
            if m.state == "waiting" {
                m.state = "approved".into();
            }
            repo::save(c, &m)?;
            audit::record(
                c,
                &actor,
                Change::new(
                    "provision.approve",
                    "machine",
                    0,
                    format!("approved machine {mac} as {}", m.name),
                )
                .details(serde_json::json!({ "mac": mac, "address": m.address })),
            )?;
            Ok(m)
        })
    })
    .await
}

/// Forgets a machine that has not joined (a joined one goes with its host).
pub async fn forget(p: &Provisioner, actor: Actor, mac: &str) -> Result<()> {
    let mac = validate::mac_address("mac", mac)?;
    p.db.run(move |c| {
        crate::db::atomic(c, |c| {
            let m =
                repo::find(c, &mac)?.ok_or_else(|| Error::NotFound(format!("no machine {mac}")))?;
            if m.state == "joined" {
                return Err(Error::conflict(
                    None,
                    format!("{mac} is host {}: remove the host instead", m.name),
                ));
            }
            repo::delete(c, &mac)?;
            audit::record(
                c,
                &actor,
                Change::new(
                    "provision.forget",
                    "machine",
                    0,
                    format!("forgot machine {mac}"),
                ),
            )?;
            Ok(())
        })
    })
    .await
}
