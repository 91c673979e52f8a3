//! A booting machine's join, and what operators do with machines: approve, forget.
//!
//! A join is authenticated by the one-time token the controller put on that MAC's command line:
//! it is checked against its SHA-256, used up by the first join that shows it, and good for
//! `TOKEN_TTL_SECS`. Every refusal is an event and changes nothing. The host is recorded only
//! once the controller logged in with its own key on the pinned host key: nothing half-joined
//! appears in the host list.

use super::{Provisioner, TOKEN_TTL_SECS};
use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::models::now;
use crate::repo::provision::{self as repo, Machine};
use crate::tasks::Task;
use serverware_shared::provision::{
    self as sp, AddMachineRequest, ApproveMachineRequest, ProvisionJoinRequest,
    ProvisionJoinResponse,
};
use serverware_shared::state::HostStatus;
use serverware_shared::validate;
use std::sync::Arc;
use std::time::Duration;

/// Starts the task that shows machine `mac`'s way in, unless it has one. It ends when the
/// machine's host is online, or fails when the join can no longer come (`expire_task`).
pub async fn start_task(p: &Arc<Provisioner>, mac: &str, name: &str) {
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
        let (p, mac) = (Arc::downgrade(p), mac.to_string());
        tokio::spawn(async move { expire_task(p, &mac).await });
    }
}

/// Fails machine `mac`'s task once its join can no longer come: its token expired with no join
/// (a machine that boots again gets a new token, and the task goes on with it). Looked at every
/// 30 s while the task runs; ends with the provisioner.
async fn expire_task(p: std::sync::Weak<Provisioner>, mac: &str) {
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let Some(p) = p.upgrade() else {
            return;
        };
        if !p.has_task(mac) {
            return;
        }
        let m = mac.to_string();
        let Ok(row) = p.db.run(move |c| repo::find(c, &m)).await else {
            continue;
        };
        let expired = row
            .is_some_and(|m| m.state == "booting" && m.token_expires_at.is_some_and(|e| e < now()));
        if expired {
            if let Some(t) = p.take_task(mac) {
                let why = format!(
                    "{mac} did not join before its token expired ({} min): booted again, it gets a new one",
                    TOKEN_TTL_SECS / 60
                );
                t.finish(&Err(Error::HostUnavailable(why))).await;
            }
            return;
        }
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

/// What a join gets.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// The token is good: it is used up now.
    Accept,
    /// The same machine joining again with the token it used (its answer was lost): answered
    /// again, nothing changes.
    Repeat,
    Refuse(String),
}

/// Whether a join is accepted: refused when the machine is unknown, joined already, has no token
/// outstanding (used, or never handed out), shows another token, or one that expired; a token
/// already used is accepted again only from the same machine (same host key and address) while
/// its join is being finished.
fn verdict(m: Option<&Machine>, req: &ProvisionJoinRequest, at: chrono::NaiveDateTime) -> Verdict {
    let Some(m) = m else {
        return Verdict::Refuse(format!(
            "no machine {} booted from this controller",
            req.mac
        ));
    };
    if m.state == "joined" {
        return Verdict::Refuse(format!(
            "{} joined already as host {}: a second machine with its MAC is refused",
            m.mac, m.name
        ));
    }
    let Some(sha) = &m.token_sha256 else {
        return Verdict::Refuse(format!(
            "no join token is outstanding for {} (used already, or never handed out)",
            m.mac
        ));
    };
    if *sha != super::boot::token_sha256(&req.token) {
        return Verdict::Refuse(format!(
            "the join token shown for {} is not the one it was given",
            m.mac
        ));
    }
    if m.state == "joining" {
        let same = m.join_host_key.as_deref() == Some(req.host_key.trim())
            && m.join_address.as_deref() == Some(req.address.as_str());
        return if same {
            Verdict::Repeat
        } else {
            Verdict::Refuse(format!(
                "the join token of {} was used already by another host key or address",
                m.mac
            ))
        };
    }
    if m.token_expires_at.is_none_or(|e| e < at) {
        return Verdict::Refuse(format!(
            "the join token of {} expired: boot it again for a new one",
            m.mac
        ));
    }
    Verdict::Accept
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
                let v = verdict(m.as_ref(), &r, now());
                let Some(mut m) = m.filter(|_| v != Verdict::Repeat) else {
                    return Ok((v, None));
                };
                if let Verdict::Refuse(_) = v {
                    return Ok((v, None));
                }
                // The token stays (as its hash) while the join is finished: only this
                // machine's repeat of it is answered.
                m.token_expires_at = None;
                m.state = "joining".into();
                m.stage = "joined".into();
                m.message = format!("joined from {}", r.address);
                m.join_host_key = Some(r.host_key.trim().to_string());
                m.join_address = Some(r.address.clone());
                m.last_seen_at = now();
                repo::save(c, &m)?;
                if m.address.is_none() {
                    pool_told(c, &m, &r.address)?;
                }
                Ok((v, Some(m)))
            })
        })
        .await?;
    let m = match outcome {
        (Verdict::Refuse(why), _) => {
            let (mac, w) = (req.mac.clone(), why.clone());
            p.db.run(move |c| refused(c, &mac, &w)).await?;
            p.log(&req.mac, format!("join refused: {why}")).await;
            return Err(Error::Forbidden(why));
        }
        (_, Some(m)) => {
            p.log(
                &m.mac,
                format!(
                    "joined from {} with host key {}",
                    req.address,
                    crate::keys::fingerprint(&req.host_key).unwrap_or_default()
                ),
            )
            .await;
            m.name
        }
        (_, None) => {
            p.log(
                &req.mac,
                "the same machine joined again (its answer was lost): answered again".into(),
            )
            .await;
            let mac = req.mac.clone();
            p.db.run(move |c| repo::find(c, &mac))
                .await?
                .map(|m| m.name)
                .unwrap_or_default()
        }
    };
    spawn_finish(p, &req.mac);
    Ok(ProvisionJoinResponse {
        name: m,
        controller_key: crate::keys::public_line(&p.host_admin.hosts.controller_key()),
    })
}

/// Finishes machine `mac`'s join in the background, unless that runs already.
fn spawn_finish(p: &Arc<Provisioner>, mac: &str) {
    if !p
        .finishing
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(mac.to_string())
    {
        return;
    }
    let (p, mac) = (p.clone(), mac.to_string());
    tokio::spawn(async move {
        finish(&p, &mac).await;
        p.finishing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&mac);
    });
}

/// Joins a controller stopped or killed while finishing are finished now (at its start).
pub async fn resume(p: &Arc<Provisioner>) {
    let joining =
        p.db.run(|c| {
            Ok(repo::all(c)?
                .into_iter()
                .filter(|m| m.state == "joining")
                .collect::<Vec<_>>())
        })
        .await
        .unwrap_or_default();
    for m in joining {
        start_task(p, &m.mac, &m.name).await;
        p.log(
            &m.mac,
            "the controller started again: finishing the join".into(),
        )
        .await;
        spawn_finish(p, &m.mac);
    }
}

/// A machine that took `address` from the site's DHCP server outside the pool the settings
/// name: the pool as told is wrong, and static addresses checked against it may not be safe.
fn pool_told(c: &mut crate::db::DbConn, m: &Machine, address: &str) -> Result<()> {
    let pool = super::read_settings(c)?.dhcp_pool;
    if pool.is_empty() || sp::outside_pool("address", address, &pool).is_err() {
        return Ok(());
    }
    audit::record_system(
        c,
        &Actor::system("provision"),
        Change::new(
            "provision.pool_mismatch",
            "machine",
            0,
            format!(
                "{} took {address} from the site's DHCP server, outside its pool as the settings tell it ({pool}): correct the pool on the Provisioning page",
                m.name
            ),
        )
        .severity(serverware_shared::api::Severity::Warning)
        .details(serde_json::json!({ "mac": m.mac, "address": address, "pool": pool })),
    )?;
    Ok(())
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
/// join), then waits for it to come online; the machine's record and task follow. A host added
/// before a crash cut this short is found (same name, same key) and not added twice.
async fn finish(p: &Provisioner, mac: &str) {
    let m2 = mac.to_string();
    let Ok(Some(m)) = p.db.run(move |c| repo::find(c, &m2)).await else {
        return;
    };
    let (Some(key), Some(address)) = (m.join_host_key.clone(), m.join_address.clone()) else {
        return;
    };
    let (name, image) = (m.name.clone(), m.image_id.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let added = loop {
        if let Some(id) = added_before(p, &name, &key).await {
            break Ok(id);
        }
        match crate::hosts::add_provisioned(&p.host_admin, &name, &address, &key).await {
            Ok(h) => break Ok(serverware_shared::HostId(h.id)),
            Err(e @ (Error::Conflict { .. } | Error::Forbidden(_))) => break Err(e.message()),
            Err(e) if tokio::time::Instant::now() > deadline => break Err(e.message()),
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    };
    let task = p.take_task(mac);
    let id = match added {
        Ok(id) => id,
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
    if online {
        if let Some(img) = &image {
            p.proven(img, &name);
        }
    }
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

/// The host named `name` with host key `key`, if the join added it already.
async fn added_before(p: &Provisioner, name: &str, key: &str) -> Option<serverware_shared::HostId> {
    let (n, fp) = (name.to_string(), crate::keys::fingerprint(key)?);
    p.db.run(move |c| {
        Ok(crate::repo::hosts::all(c)?
            .into_iter()
            .find(|h| h.name == n && h.host_key_fingerprint.as_deref() == Some(fp.as_str()))
            .map(|h| h.id))
    })
    .await
    .ok()
    .flatten()
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
            // Only a join being finished ends; a machine forgotten or booted again meanwhile
            // keeps what it is now.
            if m.state != "joining" {
                return Ok(());
            }
            m.state = state.into();
            m.token_sha256 = None;
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

/// An approval's name, static address and gateway, each checked (none given: kept / DHCP).
struct Approval {
    name: Option<String>,
    address: Option<String>,
    gateway: Option<String>,
}

fn approval(r: &ApproveMachineRequest) -> Result<Approval> {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
    };
    Ok(Approval {
        name: r
            .name
            .as_deref()
            .map(|n| validate::resource_name("name", n))
            .transpose()?,
        address: given(&r.address)
            .map(|a| sp::cidr("address", &a))
            .transpose()?,
        gateway: given(&r.gateway)
            .map(|g| validate::ipv4_address("gateway", &g).map(|g| g.to_string()))
            .transpose()?,
    })
}

/// Gives machine `m` the approval `a`: its name (not another machine's or host's) and its
/// static address (checked as `static_address_free` says).
fn apply_approval(c: &mut crate::db::DbConn, m: &mut Machine, a: Approval) -> Result<()> {
    if let Some(addr) = &a.address {
        static_address_free(c, &m.mac, addr)?;
    }
    if let Some(n) = a.name {
        if repo::name_taken(c, &n, &m.mac)? || crate::repo::hosts::name_taken(c, &n, None)? {
            return Err(Error::conflict(
                Some("name"),
                format!("the name {n} is taken"),
            ));
        }
        m.name = n;
    }
    m.approved = true;
    m.address = a.address;
    m.gateway = a.gateway;
    Ok(())
}

/// An approval whose address was refused (outside the boot network, in the site's DHCP pool,
/// someone else's) is an event too: nothing was changed.
async fn address_refused<T>(p: &Provisioner, actor: Actor, mac: String, r: &Result<T>) {
    let Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) = r else {
        return;
    };
    if e.field() != Some("address") {
        return;
    }
    let why = e.message();
    let _ =
        p.db.run(move |c| {
            audit::record(
                c,
                &actor,
                Change::new(
                    "provision.approve_refused",
                    "machine",
                    0,
                    format!("approval of machine {mac} refused: {why}"),
                )
                .severity(serverware_shared::api::Severity::Warning)
                .details(serde_json::json!({ "mac": mac })),
            )
        })
        .await;
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
    let a = approval(&r)?;
    let (mac2, actor2) = (mac.clone(), actor.clone());
    let r = p
        .db
        .run(move |c| {
            crate::db::atomic(c, |c| {
                let mut m = repo::find(c, &mac)?.ok_or_else(|| {
                    Error::NotFound(format!(
                        "no machine {mac} has booted from this controller (add it by its MAC to approve it before it boots)"
                    ))
                })?;
                if m.state == "joined" || m.state == "joining" {
                    return Err(Error::conflict(
                        None,
                        format!("{mac} joined already as host {}", m.name),
                    ));
                }
                apply_approval(c, &mut m, a)?;
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
        .await;
    address_refused(p, actor2, mac2, &r).await;
    r
}

/// An operator adds a machine by its MAC before it ever boots, approved, with the name and the
/// static address it gets: its first boot gets a join token (the site need not allow any
/// machine, and nobody waits at the Provisioning page).
pub async fn add(p: &Provisioner, actor: Actor, r: AddMachineRequest) -> Result<Machine> {
    let mac = validate::mac_address("mac", r.mac.trim())?;
    let a = approval(&r.approval)?;
    let (mac2, actor2) = (mac.clone(), actor.clone());
    let r = p
        .db
        .run(move |c| {
            crate::db::atomic(c, |c| {
                if let Some(m) = repo::find(c, &mac)? {
                    return Err(Error::conflict(
                        Some("mac"),
                        format!(
                            "machine {mac} is known already as {} ({}): approve or forget it on its row",
                            m.name, m.state
                        ),
                    ));
                }
                let t = now();
                let mut m = Machine {
                    mac: mac.clone(),
                    name: super::boot::default_name(c, &mac)?,
                    state: "approved".into(),
                    approved: true,
                    address: None,
                    gateway: None,
                    token_sha256: None,
                    token_expires_at: None,
                    host_id: None,
                    stage: String::new(),
                    message: "added by its MAC: it joins at its first boot".into(),
                    first_seen_at: t,
                    last_seen_at: t,
                    join_host_key: None,
                    join_address: None,
                    image_id: None,
                };
                apply_approval(c, &mut m, a)?;
                repo::insert(c, &m)?;
                audit::record(
                    c,
                    &actor,
                    Change::new(
                        "provision.add",
                        "machine",
                        0,
                        format!("added machine {mac} as {}, approved before it boots", m.name),
                    )
                    .details(serde_json::json!({ "mac": mac, "address": m.address })),
                )?;
                Ok(m)
            })
        })
        .await;
    address_refused(p, actor2, mac2, &r).await;
    r
}

/// A static address for machine `mac`: in the boot network, and no other machine's or host's.
fn static_address_free(c: &mut crate::db::DbConn, mac: &str, a: &str) -> Result<()> {
    let settings = super::read_settings(c)?;
    let net = settings.network.clone();
    if net.is_empty() {
        return Err(Error::invalid(
            "address",
            "set the site's boot network first (Provisioning settings): a static address is in it",
        ));
    }
    sp::static_address_in("address", a, &net)?;
    sp::outside_pool("address", a, &settings.dhcp_pool)?;
    let ip = a.split('/').next().unwrap_or_default();
    let other = repo::all(c)?.into_iter().find(|o| {
        o.mac != mac && o.address.as_deref().and_then(|x| x.split('/').next()) == Some(ip)
    });
    if let Some(o) = other {
        return Err(Error::conflict(
            Some("address"),
            format!("{ip} is assigned to machine {} ({})", o.name, o.mac),
        ));
    }
    if let Some(h) = crate::repo::hosts::all(c)?
        .into_iter()
        .find(|h| h.address == ip)
    {
        return Err(Error::conflict(
            Some("address"),
            format!("{ip} is host {}'s address", h.name),
        ));
    }
    Ok(())
}

/// Forgets a machine that has not joined (a joined one goes with its host).
pub async fn forget(p: &Provisioner, actor: Actor, mac: &str) -> Result<()> {
    let mac = validate::mac_address("mac", mac)?;
    let after = mac.clone();
    p.db.run(move |c| {
        crate::db::atomic(c, |c| {
            let m =
                repo::find(c, &mac)?.ok_or_else(|| Error::NotFound(format!("no machine {mac}")))?;
            if m.state == "joined" || m.state == "joining" {
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
    .await?;
    if let Some(t) = p.take_task(&after) {
        t.finish(&Err(Error::HostUnavailable(format!(
            "machine {after} was forgotten before it joined"
        ))))
        .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl host";

    fn at(secs: i64) -> chrono::NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0)
            .unwrap()
            .naive_utc()
    }

    fn booting(token: &str) -> Machine {
        Machine {
            mac: "52:54:00:12:34:56".into(),
            name: "host-123456".into(),
            state: "booting".into(),
            approved: true,
            address: None,
            gateway: None,
            token_sha256: Some(super::super::boot::token_sha256(token)),
            token_expires_at: Some(at(super::super::TOKEN_TTL_SECS)),
            host_id: None,
            stage: "root".into(),
            message: String::new(),
            first_seen_at: at(0),
            last_seen_at: at(0),
            join_host_key: None,
            join_address: None,
            image_id: Some("abc".into()),
        }
    }

    fn req(token: &str) -> ProvisionJoinRequest {
        ProvisionJoinRequest {
            mac: "52:54:00:12:34:56".into(),
            token: token.into(),
            host_key: KEY.into(),
            address: "10.77.9.20".into(),
        }
    }

    fn refused(v: Verdict, why: &str) {
        match v {
            Verdict::Refuse(w) => assert!(w.contains(why), "{w:?} does not say {why:?}"),
            other => panic!("{other:?}: expected a refusal saying {why:?}"),
        }
    }

    #[test]
    fn a_good_token_joins_once_and_only_its_machine_may_repeat_it() {
        let t = "a".repeat(64);
        let mut m = booting(&t);
        assert_eq!(verdict(Some(&m), &req(&t), at(10)), Verdict::Accept);
        // What join() saves on an accepted join.
        m.state = "joining".into();
        m.token_expires_at = None;
        m.join_host_key = Some(KEY.into());
        m.join_address = Some("10.77.9.20".into());
        // Its answer lost, the same machine asks again: answered again.
        assert_eq!(verdict(Some(&m), &req(&t), at(20)), Verdict::Repeat);
        // Anyone else replaying the token is refused.
        let mut other = req(&t);
        other.address = "10.77.9.21".into();
        refused(verdict(Some(&m), &other, at(20)), "used already");
        // Once joined, nothing joins as it again.
        m.state = "joined".into();
        m.token_sha256 = None;
        refused(verdict(Some(&m), &req(&t), at(30)), "joined already");
    }

    #[test]
    fn unknown_wrong_expired_and_missing_tokens_are_refused() {
        let t = "b".repeat(64);
        refused(verdict(None, &req(&t), at(0)), "no machine");
        let m = booting(&t);
        refused(
            verdict(Some(&m), &req(&"c".repeat(64)), at(0)),
            "not the one",
        );
        refused(
            verdict(Some(&m), &req(&t), at(super::super::TOKEN_TTL_SECS + 1)),
            "expired",
        );
        let mut used = booting(&t);
        used.token_sha256 = None;
        refused(verdict(Some(&used), &req(&t), at(0)), "no join token");
    }
}
