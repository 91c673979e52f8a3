//! Hosts provisioned over the network. A machine set to boot from the network gets iPXE from the
//! controller's boot service (`dnsmasq`, proxy DHCP and TFTP: it never hands out addresses), which
//! asks the controller for its script by MAC (`boot`). An approved machine that has not joined is
//! given a one-time join token on its kernel command line; its first boot (the agent's
//! `firstboot`) prepares the disk, bridge and SSH key and joins with it (`join`); the controller
//! pins the key from that join, installs its own key and the agent, and the host comes online.
//! A machine that joined boots as itself: no token, no join.

pub mod boot;
pub mod dnsmasq;
pub mod image;
pub mod join;
pub mod reimage;

use crate::error::{Error, Result};
use crate::repo::provision::Machine;
use crate::tasks::Task;
use serverware_shared::provision::{ProvisionMachine, ProvisionSettings};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The settings key holding the site's network boot settings (JSON).
const SETTINGS_KEY: &str = "provision";

/// How long a join token is good for after it was handed out.
pub const TOKEN_TTL_SECS: i64 = 30 * 60;

/// An image's check: its manifest, or what is wrong with it.
pub type Checked = std::result::Result<image::Manifest, String>;

/// Network provisioning as a service (wired in `server.rs`).
pub struct Provisioner {
    pub db: crate::db::Db,
    pub hub: Arc<crate::hub::Hub>,
    pub images_dir: PathBuf,
    pub host_admin: Arc<crate::hosts::HostAdmin>,
    /// Each image's check, kept while its files are unchanged (a check reads every byte).
    checked: Mutex<HashMap<String, (image::Stamp, Checked)>>,
    /// The task of each machine on its way to join, by MAC: its stages are logged there.
    tasks: Mutex<HashMap<String, Arc<Task>>>,
    /// The machines whose join is being finished (one finisher each).
    pub(crate) finishing: Mutex<std::collections::HashSet<String>>,
    /// The image whose root each machine fetched last, and when (a re-image waits for it).
    fetched: Mutex<HashMap<String, (String, std::time::Instant)>>,
    pub dnsmasq: dnsmasq::Service,
}

impl Provisioner {
    pub fn new(
        db: crate::db::Db,
        hub: Arc<crate::hub::Hub>,
        images_dir: PathBuf,
        host_admin: Arc<crate::hosts::HostAdmin>,
        run_dir: PathBuf,
        pid_file: PathBuf,
    ) -> Arc<Provisioner> {
        Arc::new(Provisioner {
            db,
            hub,
            images_dir,
            host_admin,
            checked: Default::default(),
            tasks: Default::default(),
            finishing: Default::default(),
            fetched: Default::default(),
            dnsmasq: dnsmasq::Service::new(run_dir, pid_file),
        })
    }

    /// The images, newest first, each checked (cached while its files are unchanged; a check
    /// reads every byte, on a blocking thread).
    pub async fn images(
        self: &Arc<Self>,
    ) -> Vec<(String, std::result::Result<image::Manifest, String>)> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.images_now())
            .await
            .unwrap_or_default()
    }

    fn images_now(&self) -> Vec<(String, std::result::Result<image::Manifest, String>)> {
        let mut out = Vec::new();
        for dir in image::dirs(&self.images_dir) {
            let id = dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let stamp = image::stamp(&dir);
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            let verdict = match checked.get(&id) {
                Some((s, v)) if *s == stamp => v.clone(),
                _ => {
                    let v = image::verify(&dir).map_err(|e| format!("{e:#}"));
                    checked.insert(id.clone(), (stamp, v.clone()));
                    v
                }
            };
            out.push((id, verdict));
        }
        out.sort_by_key(|(_, m)| std::cmp::Reverse(m.as_ref().map(|m| m.built_at).unwrap_or(0)));
        out
    }

    /// The image a new machine gets: the newest that checks whole and that a host has come
    /// online on (a newer one is tried first by re-imaging one host onto it); while no image
    /// has, the newest that checks whole.
    pub async fn served_image(self: &Arc<Self>) -> Option<String> {
        let usable = self.usable_images().await;
        usable
            .iter()
            .find(|id| image::proven(&self.images_dir.join(id)).is_some())
            .or(usable.first())
            .cloned()
    }

    /// Records that host `name` came online on image `id`.
    pub(crate) fn proven(&self, id: &str, name: &str) {
        let what = format!(
            "host {name} came online on it at {}",
            crate::models::now().and_utc().to_rfc3339()
        );
        if let Err(e) = image::mark_proven(&self.images_dir.join(id), &what) {
            tracing::warn!("cannot record that image {id} was booted: {e:#}");
        }
    }

    /// The ids of the images that check whole, newest first.
    pub async fn usable_images(self: &Arc<Self>) -> Vec<String> {
        self.images()
            .await
            .into_iter()
            .filter(|(_, m)| m.is_ok())
            .map(|(id, _)| id)
            .collect()
    }

    /// Tells image builds which images machines boot (they are never pruned).
    pub async fn pins_changed(&self) {
        let dir = self.images_dir.clone();
        let r = self
            .db
            .run(move |c| {
                let mut ids: Vec<String> = crate::repo::provision::all(c)?
                    .into_iter()
                    .filter_map(|m| m.image_id)
                    .collect();
                ids.sort();
                ids.dedup();
                image::write_in_use(&dir, &ids).map_err(Error::Internal)
            })
            .await;
        if let Err(e) = r {
            tracing::warn!("cannot record the images machines boot: {}", e.message());
        }
    }

    pub async fn settings(&self) -> Result<ProvisionSettings> {
        self.db.run(read_settings).await
    }

    /// Logs a stage of machine `mac`'s way in (its task, when it has one).
    pub(crate) async fn log(&self, mac: &str, line: String) {
        let task = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(mac)
            .cloned();
        if let Some(t) = task {
            t.log(line).await;
        }
    }

    /// Records that machine `mac` reached `stage` (if it is known here) and logs `line`.
    pub(crate) async fn stage(&self, mac: &str, stage: &'static str, line: String) {
        let m = mac.to_string();
        let _ = self
            .db
            .run(move |c| {
                if let Some(mut row) = crate::repo::provision::find(c, &m)? {
                    // A host booting again keeps its stage (online is the host list's to say).
                    if row.state != "joined" {
                        row.stage = stage.into();
                    }
                    row.last_seen_at = crate::models::now();
                    crate::repo::provision::save(c, &row)?;
                }
                Ok(())
            })
            .await;
        self.log(mac, line).await;
    }

    /// Records that machine `mac` fetched the root filesystem of image `id`.
    pub(crate) fn root_fetched(&self, mac: &str, id: &str) {
        self.fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(mac.to_string(), (id.to_string(), std::time::Instant::now()));
    }

    /// Whether machine `mac` fetched image `id`'s root after `since`.
    pub(crate) fn root_fetched_since(
        &self,
        mac: &str,
        id: &str,
        since: std::time::Instant,
    ) -> bool {
        self.fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(mac)
            .is_some_and(|(i, t)| i == id && *t >= since)
    }

    pub(crate) fn set_task(&self, mac: &str, task: Arc<Task>) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(mac.to_string(), task);
    }

    pub(crate) fn has_task(&self, mac: &str) -> bool {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(mac)
    }

    pub(crate) fn take_task(&self, mac: &str) -> Option<Arc<Task>> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(mac)
    }
}

pub fn read_settings(c: &mut crate::db::DbConn) -> Result<ProvisionSettings> {
    Ok(crate::repo::settings::get(c, SETTINGS_KEY)?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default())
}

pub fn write_settings(c: &mut crate::db::DbConn, s: &ProvisionSettings) -> Result<()> {
    let v = serde_json::to_string(s).map_err(|e| Error::Internal(e.into()))?;
    crate::repo::settings::put(c, SETTINGS_KEY, &v)
}

pub fn response(m: &Machine) -> ProvisionMachine {
    ProvisionMachine {
        mac: m.mac.clone(),
        name: m.name.clone(),
        state: m.state.clone(),
        approved: m.approved,
        address: m.address.clone(),
        gateway: m.gateway.clone(),
        host_id: m.host_id,
        stage: m.stage.clone(),
        message: m.message.clone(),
        image_id: m.image_id.clone(),
        first_seen_at: m.first_seen_at.and_utc().to_rfc3339(),
        last_seen_at: m.last_seen_at.and_utc().to_rfc3339(),
    }
}

/// Saves the site's network boot settings and (re)starts the boot service with them.
pub async fn set_settings(
    p: &Arc<Provisioner>,
    actor: crate::audit::Actor,
    s: ProvisionSettings,
) -> Result<()> {
    let (s2, actor2) = (s.clone(), actor.clone());
    let r =
        p.db.run(move |c| {
            crate::db::atomic(c, |c| {
                pool_free(c, &s2)?;
                write_settings(c, &s2)?;
                crate::audit::record(
                    c,
                    &actor,
                    crate::audit::Change::new(
                        "provision.settings",
                        "site",
                        0,
                        if s2.enabled {
                            format!("network boot on {} for {}", s2.interface, s2.network)
                        } else {
                            "network boot off".to_string()
                        },
                    ),
                )?;
                Ok(())
            })
        })
        .await;
    if let Err(e @ Error::Conflict { .. }) = &r {
        let why = e.message();
        let _ =
            p.db.run(move |c| {
                crate::audit::record(
                    c,
                    &actor2,
                    crate::audit::Change::new(
                        "provision.settings_refused",
                        "site",
                        0,
                        format!("network boot settings refused: {why}"),
                    )
                    .severity(serverware_shared::api::Severity::Warning),
                )
            })
            .await;
    }
    r?;
    p.start_boot_service(&s).await;
    Ok(())
}

/// The site's DHCP pool in `s` holds no machine's static address (its DHCP server could give
/// that address to another machine).
fn pool_free(c: &mut crate::db::DbConn, s: &ProvisionSettings) -> Result<()> {
    if s.dhcp_pool.is_empty() {
        return Ok(());
    }
    for m in crate::repo::provision::all(c)? {
        if let Some(a) = &m.address {
            if serverware_shared::provision::outside_pool("dhcp_pool", a, &s.dhcp_pool).is_err() {
                return Err(Error::conflict(
                    Some("dhcp_pool"),
                    format!(
                        "machine {} ({}) has the static address {a}, inside the pool {}: the site's DHCP server could give it to another machine",
                        m.name, m.mac, s.dhcp_pool
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl Provisioner {
    /// Runs the boot service as `s` says; each MAC it answers is logged as that machine's stage.
    pub async fn start_boot_service(self: &Arc<Self>, s: &ProvisionSettings) {
        let me = Arc::downgrade(self);
        let rt = tokio::runtime::Handle::current();
        self.dnsmasq
            .apply(s, move |mac| {
                if let Some(p) = me.upgrade() {
                    rt.spawn(async move {
                        p.stage(
                            &mac,
                            "dhcp",
                            "DHCP answered by the boot service (proxy)".into(),
                        )
                        .await
                    });
                }
            })
            .await;
    }
}
