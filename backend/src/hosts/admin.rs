//! Adding, editing and removing hosts: the operator's side of the host list. Adding logs in once
//! with the operator's password or key on the host key they confirmed, installs the controller's
//! key and the agent, proves the controller can log in with its own key, and only then records the
//! host. Front ends (the API, the SSH command line through it) validate nothing themselves: the
//! same checks as the dashboard's run here, from `shared/`.

use super::view::{load_with_vpses, response};
use super::HostRow;
use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::models::now;
use crate::repo::hosts::{self as repo, HostChanges};
use crate::ssh::{probe_host_key, Credentials, Session, SshError};
use serverware_shared::api::{
    CreateHostRequest, HostResponse, ProbeHostResponse, UpdateHostRequest,
};
use serverware_shared::validate::{self, SshAddress};
use serverware_shared::{HostId, VpsId};
use std::sync::Arc;
use std::time::Duration;

/// The operator's side of the host list as a service, handed what it needs when the controller
/// is wired (`server.rs`): a host put into maintenance is evacuated by netMON (`monitor`).
pub struct HostAdmin {
    pub db: crate::db::Db,
    pub hosts: Arc<super::HostManager>,
    pub monitor: Arc<crate::netmon::Monitor>,
    pub stopping: crate::ops::Stopping,
}

impl HostAdmin {
    /// New operations are refused once the controller is stopping.
    pub fn accepting(&self) -> Result<()> {
        self.stopping.accepting()
    }
}

/// What an SSH failure means to the operator who asked, naming the field at fault.
pub fn ssh_error(e: SshError) -> Error {
    match e {
        SshError::Unreachable(t, why) => Error::invalid("address", format!("cannot reach {t}: {why}")),
        SshError::AuthRejected => Error::invalid("password", "the host refused the password or key"),
        SshError::HostKeyMismatch { presented } => Error::conflict(
            Some("host_key"),
            format!("the host now presents a different key ({presented}) than the one confirmed; probe it again"),
        ),
        SshError::Protocol(m) => Error::invalid("address", format!("SSH failed: {m}")),
        SshError::Agent(m) => Error::HostUnavailable(m),
    }
}

/// Reads a host's SSH key so the operator can confirm its fingerprint before adding it.
pub async fn probe(address: &str) -> Result<ProbeHostResponse> {
    let a = validate::ssh_address("address", address)?;
    let key = probe_host_key(&a.host, a.port).await.map_err(ssh_error)?;
    Ok(ProbeHostResponse {
        fingerprint: key.fingerprint,
        host_key: key.openssh,
    })
}

/// A host to add, checked.
struct NewHost {
    name: String,
    description: String,
    address: SshAddress,
    host_key: String,
    fingerprint: String,
    duplo_interval_secs: u32,
    credentials: Credentials,
}

fn check_new(req: CreateHostRequest) -> Result<NewHost> {
    let name = validate::resource_name("name", &req.name)?;
    let description = validate::description("description", &req.description)?;
    let address = validate::ssh_address("address", &req.address)?;
    let duplo_interval_secs = validate::duplo_interval_secs(
        "duplo_interval_secs",
        req.duplo_interval_secs
            .unwrap_or(validate::DEFAULT_DUPLO_INTERVAL_SECS),
    )?;
    if req.host_key.split_whitespace().count() < 2 {
        return Err(Error::invalid(
            "host_key",
            "confirm the host key from the probe first",
        ));
    }
    let fingerprint = crate::keys::fingerprint(&req.host_key)
        .ok_or_else(|| Error::invalid("host_key", "not an OpenSSH public key"))?;
    let credentials = match (&req.password, &req.private_key) {
        (Some(p), None) if !p.is_empty() => Credentials::Password(p.clone()),
        (None, Some(k)) => {
            Credentials::Key(Arc::new(russh::keys::PrivateKey::from_openssh(k).map_err(
                |_| Error::invalid("private_key", "not an unencrypted OpenSSH private key"),
            )?))
        }
        _ => {
            return Err(Error::invalid(
                "password",
                "give either a password or a private key",
            ))
        }
    };
    Ok(NewHost {
        name,
        description,
        address,
        host_key: req.host_key,
        fingerprint,
        duplo_interval_secs,
        credentials,
    })
}

/// Refuses a name or an address that is already a host's.
async fn check_free(admin: &HostAdmin, new: &NewHost) -> Result<()> {
    let (n, addr, port) = (
        new.name.clone(),
        new.address.host.clone(),
        i32::from(new.address.port),
    );
    let (by_name, by_addr) = admin
        .db
        .run(move |c| {
            Ok((
                repo::name_taken(c, &n, None)?,
                repo::address_taken(c, &addr, port)?,
            ))
        })
        .await?;
    if by_name {
        return Err(Error::conflict(
            Some("name"),
            format!("a host named '{}' exists", new.name),
        ));
    }
    if by_addr {
        return Err(Error::conflict(
            Some("address"),
            "this address is already a host",
        ));
    }
    Ok(())
}

async fn close(session: Session) {
    let _ = tokio::time::timeout(Duration::from_secs(2), session.close()).await;
}

/// Logs in with the operator's credentials, installs the controller's key and the agent, and
/// proves the controller can log in with its own key. A key installed but not accepted is taken
/// out again.
async fn bootstrap(admin: &HostAdmin, new: &NewHost) -> Result<()> {
    let a = &new.address;
    let session = Session::connect(&a.host, a.port, &a.user, &new.host_key, &new.credentials)
        .await
        .map_err(ssh_error)?;
    let public = crate::keys::public_line(&admin.hosts.controller_key());
    let install = "umask 077; mkdir -p ~/.ssh && { grep -qxF \"$1\" ~/.ssh/authorized_keys 2>/dev/null || printf '%s\\n' \"$1\" >> ~/.ssh/authorized_keys; }";
    let (code, _, err) = session
        .run("sh", &["-c", install, "sh", &public])
        .await
        .map_err(ssh_error)?;
    if code != 0 {
        close(session).await;
        return Err(Error::invalid(
            "address",
            format!(
                "cannot install the controller's key: {}",
                String::from_utf8_lossy(&err).trim()
            ),
        ));
    }
    let agent = admin.hosts.agent_binary().ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "the agent binary was not found next to the controller"
        ))
    })?;
    // A host that holds this very agent already (added before, or provisioned) is not sent it
    // again: at hundreds of hosts the upload is most of what adding one costs.
    let want = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(agent.as_slice()))
    };
    let (code, out, _) = session
        .run("sha256sum", &[super::AGENT_PATH])
        .await
        .map_err(ssh_error)?;
    let have = String::from_utf8_lossy(&out);
    if code != 0 || have.split_whitespace().next() != Some(want.as_str()) {
        session
            .upload(super::AGENT_PATH, &agent)
            .await
            .map_err(ssh_error)?;
    }
    // The controller will only ever log in with its own key: prove that it does before
    // anything is stored.
    let own = Session::connect(
        &a.host,
        a.port,
        &a.user,
        &new.host_key,
        &Credentials::Key(admin.hosts.controller_key()),
    )
    .await;
    let result = match own {
        Ok(own) => {
            close(own).await;
            Ok(())
        }
        Err(SshError::AuthRejected) => {
            let (_, out, _) =
                session
                    .run("sshd", &["-T"])
                    .await
                    .unwrap_or((1, Vec::new(), Vec::new()));
            let files = String::from_utf8_lossy(&out)
                .lines()
                .find_map(|l| l.strip_prefix("authorizedkeysfile ").map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            // Leave no key behind that nothing uses.
            let remove = "f=~/.ssh/authorized_keys; [ -f \"$f\" ] || exit 0; grep -vxF \"$1\" \"$f\" > \"$f.sw\"; mv \"$f.sw\" \"$f\"";
            let _ = session.run("sh", &["-c", remove, "sh", &public]).await;
            Err(Error::invalid("address", format!(
                "the controller's key was installed in ~/.ssh/authorized_keys but the host does not accept it; its sshd reads keys from: {files} (AuthorizedKeysFile)"
            )))
        }
        Err(other) => Err(Error::invalid(
            "address",
            format!("the controller could not log in with its own key: {other}"),
        )),
    };
    close(session).await;
    result
}

/// Adds a host (see the module's comment); nothing is stored if a step fails. The controller
/// connects to it at once.
pub async fn add(admin: &HostAdmin, actor: Actor, req: CreateHostRequest) -> Result<HostResponse> {
    let new = check_new(req)?;
    add_checked(admin, actor, new).await
}

/// Adds a machine that joined over the network (`provision::join`): the key it announced in
/// its authenticated join is pinned, and the controller logs in with its own key (installed by
/// the machine from the join's answer) to install the agent, as for any host.
pub async fn add_provisioned(
    admin: &HostAdmin,
    name: &str,
    address: &str,
    host_key: &str,
) -> Result<HostResponse> {
    let address = validate::ssh_address("address", &format!("ssh://root@{address}:22"))?;
    let fingerprint = crate::keys::fingerprint(host_key)
        .ok_or_else(|| Error::invalid("host_key", "not an OpenSSH public key"))?;
    let new = NewHost {
        name: validate::resource_name("name", name)?,
        description: "provisioned over the network".into(),
        address,
        host_key: host_key.to_string(),
        fingerprint,
        duplo_interval_secs: validate::DEFAULT_DUPLO_INTERVAL_SECS,
        credentials: Credentials::Key(admin.hosts.controller_key()),
    };
    add_checked(admin, Actor::system("provision"), new).await
}

async fn add_checked(admin: &HostAdmin, actor: Actor, new: NewHost) -> Result<HostResponse> {
    check_free(admin, &new).await?;
    bootstrap(admin, &new).await?;
    let row = admin
        .db
        .run(move |c| {
            crate::db::atomic(c, |c| {
                let t = now();
                let a = &new.address;
                let row = repo::insert(
                    c,
                    repo::NewHostRow {
                        name: &new.name,
                        description: &new.description,
                        ssh_user: &a.user,
                        address: &a.host,
                        ssh_port: i32::from(a.port),
                        host_key_fingerprint: &new.fingerprint,
                        host_key: &new.host_key,
                        status: serverware_shared::state::HostStatus::Connecting,
                        heartbeat_timeout_ms: 3000,
                        duplo_interval_secs: new.duplo_interval_secs as i32,
                        created_at: t,
                        updated_at: t,
                    },
                )?;
                audit::record(
                    c,
                    &actor,
                    Change::new("host.create", "host", row.id, format!("added host {} ({a})", row.name))
                        .details(serde_json::json!({ "name": row.name, "address": a.to_string(), "fingerprint": new.fingerprint })),
                )?;
                Ok(row)
            })
        })
        .await?;
    admin.hosts.spawn(row.clone());
    Ok(response(&row, &admin.hosts, &[]))
}

/// An edit, checked: the columns it sets, and what it says in the audit event.
fn check_edit(req: &UpdateHostRequest) -> Result<HostChanges> {
    let cap_cpus = match req.capacity_cpus {
        Some(c) if c > 4096 => {
            return Err(Error::invalid(
                "capacity_cpus",
                "must be between 0 and 4096",
            ))
        }
        other => other.map(|c| (c > 0).then_some(c as i32)),
    };
    Ok(HostChanges {
        name: req
            .name
            .as_deref()
            .map(|n| validate::resource_name("name", n))
            .transpose()?,
        description: req
            .description
            .as_deref()
            .map(|d| validate::description("description", d))
            .transpose()?,
        sample_interval_ms: req
            .sample_interval_ms
            .map(|v| validate::sample_interval_ms("sample_interval_ms", v).map(|v| v as i32))
            .transpose()?,
        vps_bridge: req
            .vps_bridge
            .as_deref()
            .map(|b| validate::interface_name("vps_bridge", b))
            .transpose()?,
        vps_prefix_len: req
            .vps_prefix_len
            .map(|p| validate::prefix_len("vps_prefix_len", p).map(i32::from))
            .transpose()?,
        vps_gateway: match req.vps_gateway.as_deref().map(str::trim) {
            None => None,
            Some("") => Some(None),
            Some(g) => Some(Some(validate::ipv4_address("vps_gateway", g)?.to_string())),
        },
        max_transfers: req
            .max_transfers
            .map(|v| validate::max_transfers("max_transfers", v).map(|v| v as i32))
            .transpose()?,
        duplo_interval_secs: req
            .duplo_interval_secs
            .map(|v| validate::duplo_interval_secs("duplo_interval_secs", v).map(|v| v as i32))
            .transpose()?,
        maintenance: req.maintenance,
        capacity_memory_bytes: req
            .capacity_memory_bytes
            .map(|m| (m > 0).then_some(m as i64)),
        capacity_cpus: cap_cpus,
        capacity_disk_bytes: req.capacity_disk_bytes.map(|d| (d > 0).then_some(d as i64)),
        host_key: None,
        host_key_fingerprint: None,
    })
}

/// A new key is pinned only if the host presents exactly the key the operator confirmed.
async fn check_new_key(old: &HostRow, key: &str) -> Result<(String, String)> {
    let confirmed = russh::keys::PublicKey::from_openssh(key.trim())
        .map_err(|_| Error::invalid("host_key", "not an OpenSSH public key"))?;
    let presented = probe_host_key(&old.address, old.ssh_port as u16)
        .await
        .map_err(ssh_error)?;
    let fp = confirmed
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string();
    if presented.fingerprint != fp {
        return Err(Error::conflict(
            Some("host_key"),
            format!(
                "the host presents {}, not the key you confirmed ({fp}); probe it again",
                presented.fingerprint
            ),
        ));
    }
    Ok((presented.openssh, fp))
}

fn mib(b: Option<i64>) -> String {
    b.map(|b| format!("{} MiB", b >> 20))
        .unwrap_or("as reported".into())
}

/// What an edit did, for people, against the host as it was. Only what changes is named.
fn describe(old: &HostRow, ch: &HostChanges) -> Vec<String> {
    let mut what = Vec::new();
    if let Some(n) = ch.name.as_ref().filter(|n| **n != old.name) {
        what.push(format!("renamed to {n}"));
    }
    if ch.description.is_some() {
        what.push("description changed".to_string());
    }
    if let Some(ms) = ch.sample_interval_ms {
        what.push(format!("samples every {ms} ms"));
    }
    if let Some(b) = &ch.vps_bridge {
        what.push(format!("VPS bridge {b}"));
    }
    if let Some(p) = ch.vps_prefix_len {
        what.push(format!("VPS prefix /{p}"));
    }
    if let Some(g) = &ch.vps_gateway {
        what.push(format!("VPS gateway {}", g.as_deref().unwrap_or("none")));
    }
    if let Some(n) = ch.max_transfers {
        what.push(format!("{n} transfers at once"));
    }
    if let Some(n) = ch.duplo_interval_secs {
        what.push(format!("VPSes duplicated every {n} s"));
    }
    if let Some(m) = ch.maintenance {
        what.push(if m {
            "into maintenance: its VPSes are moved away".to_string()
        } else {
            "out of maintenance".to_string()
        });
    }
    if let Some(m) = ch.capacity_memory_bytes {
        what.push(format!("memory capacity {}", mib(m)));
    }
    if let Some(n) = ch.capacity_cpus {
        what.push(format!(
            "CPU capacity {}",
            n.map(|n| n.to_string()).unwrap_or("as reported".into())
        ));
    }
    if let Some(d) = ch.capacity_disk_bytes {
        what.push(format!("disk capacity {}", mib(d)));
    }
    if let Some(Some(fp)) = &ch.host_key_fingerprint {
        what.push(format!(
            "host key {} replaced by {fp}",
            old.host_key_fingerprint.as_deref().unwrap_or("(none)")
        ));
    }
    what
}

/// Edits a host: name, description, sampling, VPS network, capacity, duplication interval,
/// maintenance (its VPSes are moved away), or pins its new key after it changed. One update, one
/// audit event naming what changed.
pub async fn edit(
    admin: &Arc<HostAdmin>,
    actor: Actor,
    id: HostId,
    req: UpdateHostRequest,
) -> Result<HostResponse> {
    let mut changes = check_edit(&req)?;
    let (current, _) = admin.db.run(move |c| load_with_vpses(c, id)).await?;
    if let Some(key) = req.host_key.as_deref() {
        let (key, fp) = check_new_key(&current, key).await?;
        changes.host_key = Some(Some(key));
        changes.host_key_fingerprint = Some(Some(fp));
    }
    let rekey = changes.host_key.is_some();
    let ch = changes.clone();
    let audit_actor = actor.clone();
    let (row, all) = admin
        .db
        .run(move |c| {
            crate::db::atomic(c, |c| {
                let (old, _) = load_with_vpses(c, id)?;
                let mut ch = ch;
                // Entering maintenance again, or leaving it twice, is no change.
                ch.maintenance = ch.maintenance.filter(|m| *m != old.maintenance);
                if let Some(n) = ch.name.as_ref().filter(|n| **n != old.name) {
                    if repo::name_taken(c, n, Some(id))? {
                        return Err(Error::conflict(
                            Some("name"),
                            format!("a host named '{n}' exists"),
                        ));
                    }
                }
                let what = describe(&old, &ch);
                repo::update(c, id, &ch)?;
                if !what.is_empty() {
                    audit::record(
                        c,
                        &audit_actor,
                        Change::new(
                            if rekey { "host.rekey" } else { "host.update" },
                            "host",
                            id,
                            format!("host {}: {}", old.name, what.join(", ")),
                        )
                        .details(serde_json::json!({
                            "name": ch.name, "description": ch.description,
                            "sample_interval_ms": ch.sample_interval_ms,
                            "fingerprint": ch.host_key_fingerprint.clone().flatten(),
                        })),
                    )?;
                }
                load_with_vpses(c, id)
            })
        })
        .await?;
    if rekey {
        // Reconnect on the newly pinned key.
        admin.hosts.spawn(row.clone());
    } else if let Some(ms) = changes.sample_interval_ms {
        admin.hosts.set_interval(id, ms as u32);
    }
    if changes.maintenance == Some(true) {
        crate::netmon::evacuate(admin.monitor.clone(), actor, id);
    }
    Ok(response(&row, &admin.hosts, &all))
}

/// Removes a host that runs no VPS; the controller disconnects from it and drops the standby
/// copies it kept there.
pub async fn remove(admin: &HostAdmin, actor: Actor, id: HostId) -> Result<()> {
    admin
        .db
        .run(move |c| {
            crate::db::atomic(c, |c| {
                let (row, _) = load_with_vpses(c, id)?;
                let n = crate::repo::vpses::count_on_host(c, id)?;
                if n > 0 {
                    return Err(Error::conflict(
                        None,
                        format!(
                            "host {} still has {n} VPS(es); move or delete them first",
                            row.name
                        ),
                    ));
                }
                repo::delete(c, id)?;
                crate::repo::provision::forget_host(c, id.0)?;
                audit::record(
                    c,
                    &actor,
                    Change::new(
                        "host.delete",
                        "host",
                        id,
                        format!("removed host {}", row.name),
                    ),
                )?;
                Ok(())
            })
        })
        .await?;
    crate::netmon::standby::clear_host(&admin.monitor, id).await;
    admin.hosts.stop(id);
    Ok(())
}

/// netMON: takes every HA VPS of the host to other hosts now. The VPSes it takes.
pub async fn fail_over(admin: &Arc<HostAdmin>, actor: Actor, id: HostId) -> Result<Vec<VpsId>> {
    admin.accepting()?;
    let (_, all) = admin.db.run(move |c| load_with_vpses(c, id)).await?;
    let ids = all
        .iter()
        .filter(|v| v.host_id == Some(id) && v.ha_enabled)
        .map(|v| v.id)
        .collect();
    let vpses = crate::netmon::request(&admin.monitor, ids, &actor).await?;
    crate::netmon::record_request(&admin.monitor, &actor, &vpses).await;
    Ok(vpses)
}

/// Reboots host `id` (`systemctl reboot` over SSH with the controller's key, on its pinned host
/// key). The connection dropping as the host goes down is the expected end.
pub async fn reboot(admin: &HostAdmin, id: HostId) -> Result<()> {
    let row = admin.db.run(move |c| repo::find(c, id)).await?;
    let key = row.host_key.clone().ok_or_else(|| {
        Error::conflict(None, format!("host {} has no pinned host key", row.name))
    })?;
    let session = Session::connect(
        &row.address,
        row.ssh_port as u16,
        &row.ssh_user,
        &key,
        &Credentials::Key(admin.hosts.controller_key()),
    )
    .await
    .map_err(ssh_error)?;
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        session.run("systemctl", &["reboot"]),
    )
    .await;
    match r {
        Ok(Ok((code, _, err))) if code != 0 && code != 255 => Err(Error::HostUnavailable(format!(
            "host {} did not reboot: {}",
            row.name,
            String::from_utf8_lossy(&err).trim()
        ))),
        // Ran, or the connection went with the host: either way it is going down.
        _ => {
            close(session).await;
            Ok(())
        }
    }
}
