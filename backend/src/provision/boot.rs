//! What a booting machine asks the controller over HTTP, under `/boot/` (no login: a machine
//! has none). Its iPXE script by MAC: wait for approval, or boot the served image with a fresh
//! one-time join token (a machine that has not joined), or without one (a machine that has). The
//! image's files are served only from an image that checks whole against its manifest.

use super::{image, Provisioner, TOKEN_TTL_SECS};
use crate::audit::{self, Actor, Change};
use crate::error::Result;
use crate::models::now;
use crate::repo::provision::{self as repo, Machine};
use serverware_shared::provision::BootParams;
use serverware_shared::validate;
use sha2::{Digest, Sha256};

/// The script every machine gets first (over TFTP or HTTP): it asks for its own by MAC.
pub fn entry_script(controller_url: &str) -> String {
    format!("#!ipxe\nchain --autofree {controller_url}/boot/mac/${{netX/mac:hexhyp}}\n")
}

fn wait_script(url: &str, mac: &str, why: &str, secs: u32) -> String {
    format!(
        "#!ipxe\necho SERVERware: {why}\nsleep {secs}\nchain --autofree {url}/boot/mac/{}\n",
        mac.replace(':', "-")
    )
}

/// A MAC as iPXE writes it in a path (`52-54-00-…`), in its plain form, or why not.
pub fn mac_of_path(text: &str) -> std::result::Result<String, String> {
    validate::mac_address("mac", &text.replace('-', ":")).map_err(|e| e.message)
}

pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The name a new machine gets: `host-` and the end of its MAC (all of it if that is taken).
pub(super) fn default_name(c: &mut crate::db::DbConn, mac: &str) -> Result<String> {
    let hex: String = mac.chars().filter(|c| *c != ':').collect();
    let short = format!("host-{}", &hex[6..]);
    let taken = |c: &mut crate::db::DbConn, n: &str| -> Result<bool> {
        Ok(repo::name_taken(c, n, mac)? || crate::repo::hosts::name_taken(c, n, None)?)
    };
    if !taken(c, &short)? {
        return Ok(short);
    }
    Ok(format!("host-{hex}"))
}

/// What a machine asking for its script gets to do.
enum Next {
    Wait(String),
    Boot {
        name: String,
        token: Option<String>,
        address: Option<String>,
        gateway: Option<String>,
        /// The image it boots.
        image: String,
    },
}

/// Records the machine (new ones as waiting or approved, as the site allows) and decides. `usable`
/// are the images that check whole; a machine keeps the image it first booted until a re-image
/// picks another; a new one (or one whose image is gone) boots `served`.
fn decide(
    c: &mut crate::db::DbConn,
    mac: &str,
    allow_unapproved: bool,
    usable: &[String],
    served: &str,
) -> Result<(Next, bool)> {
    crate::db::atomic(c, |c| {
        let t = now();
        let (mut m, new) = match repo::find(c, mac)? {
            Some(m) => (m, false),
            None => {
                let m = Machine {
                    mac: mac.to_string(),
                    name: default_name(c, mac)?,
                    state: "waiting".into(),
                    approved: allow_unapproved,
                    address: None,
                    gateway: None,
                    token_sha256: None,
                    token_expires_at: None,
                    host_id: None,
                    stage: "ipxe".into(),
                    message: String::new(),
                    first_seen_at: t,
                    last_seen_at: t,
                    join_host_key: None,
                    join_address: None,
                    image_id: None,
                };
                repo::insert(c, &m)?;
                let what = if allow_unapproved {
                    "may join (the site allows any)"
                } else {
                    "waits for approval"
                };
                audit::record_system(
                    c,
                    &Actor::system("provision"),
                    Change::new(
                        "provision.seen",
                        "machine",
                        0,
                        format!("machine {mac} booted from the network: it {what}"),
                    )
                    .details(serde_json::json!({ "mac": mac })),
                )?;
                (m, true)
            }
        };
        m.last_seen_at = t;
        m.stage = "ipxe".into();
        let image = match &m.image_id {
            Some(i) if usable.contains(i) => i.clone(),
            pinned => {
                if let Some(gone) = pinned {
                    audit::record_system(
                        c,
                        &Actor::system("provision"),
                        Change::new(
                            "provision.image_gone",
                            "machine",
                            0,
                            format!(
                                "{} ({mac}) boots image {}: its image {gone} is gone or does not check whole",
                                m.name, served
                            ),
                        )
                        .details(serde_json::json!({ "mac": mac, "image": gone })),
                    )?;
                }
                served.to_string()
            }
        };
        m.image_id = Some(image.clone());
        // A machine whose join is being finished has used its token: it boots as the host it joined.
        let next = if (m.host_id.is_some() && m.state == "joined") || m.state == "joining" {
            Next::Boot {
                name: m.name.clone(),
                token: None,
                address: m.address.clone(),
                gateway: m.gateway.clone(),
                image,
            }
        } else if !(m.approved || allow_unapproved) {
            m.state = "waiting".into();
            Next::Wait(format!(
                "machine {mac} waits for approval on the controller's Provisioning page"
            ))
        } else {
            let token = new_token();
            m.token_sha256 = Some(token_sha256(&token));
            m.token_expires_at = Some(t + chrono::Duration::seconds(TOKEN_TTL_SECS));
            m.state = "booting".into();
            m.message = String::new();
            Next::Boot {
                name: m.name.clone(),
                token: Some(token),
                address: m.address.clone(),
                gateway: m.gateway.clone(),
                image,
            }
        };
        repo::save(c, &m)?;
        Ok((next, new))
    })
}

/// The iPXE script for the machine with MAC `mac_text` (as in its path).
pub async fn machine_script(p: &std::sync::Arc<Provisioner>, mac_text: &str) -> Result<String> {
    let s = p.settings().await?;
    let url = s.controller_url.clone();
    let mac = match mac_of_path(mac_text) {
        Ok(m) => m,
        Err(e) => return Ok(format!("#!ipxe\necho SERVERware: {e}\nexit 1\n")),
    };
    if !s.enabled {
        return Ok("#!ipxe\necho SERVERware: network boot is off on this site\nexit 1\n".into());
    }
    let usable = p.usable_images().await;
    let Some(served) = p.served_image().await else {
        return Ok(wait_script(
            &url,
            &mac,
            "no host image to serve: run serverware image build on the controller",
            30,
        ));
    };
    let (m2, allow) = (mac.clone(), s.allow_unapproved);
    let (next, _) =
        p.db.run(move |c| decide(c, &m2, allow, &usable, &served))
            .await?;
    p.pins_changed().await;
    let (name, token, address, gateway, image) = match next {
        Next::Wait(why) => return Ok(wait_script(&url, &mac, &why, 15)),
        Next::Boot {
            name,
            token,
            address,
            gateway,
            image,
        } => (name, token, address, gateway, image),
    };
    if token.is_some() {
        super::join::start_task(p, &mac, &name).await;
        p.log(
            &mac,
            format!("iPXE asked for its script: booting image {image} with a join token"),
        )
        .await;
    } else {
        p.log(
            &mac,
            format!("iPXE asked for its script: booting image {image} as host {name}"),
        )
        .await;
    }
    let params = BootParams {
        controller: url.clone(),
        mac: mac.clone(),
        name,
        token,
        address,
        gateway,
    };
    let base = format!("{url}/boot/images/{image}/{}", mac.replace(':', "-"));
    Ok(format!(
        "#!ipxe\necho SERVERware: booting {mac} with host image {id}\n\
         kernel {base}/vmlinuz initrd=initrd.img boot=live fetch={base}/root.squashfs ip=dhcp console=tty0 console=ttyS0,115200 {cmd}\n\
         initrd {base}/initrd.img\nboot\n",
        id = image,
        cmd = params.to_cmdline()
    ))
}

/// The path of file `name` of image `id` for machine `mac_text`, when that image checks whole;
/// the fetch is logged as the machine's stage.
pub async fn image_file(
    p: &std::sync::Arc<Provisioner>,
    id: &str,
    mac_text: &str,
    name: &str,
) -> Option<std::path::PathBuf> {
    if !image::FILES.contains(&name) {
        return None;
    }
    let ok = p
        .images()
        .await
        .into_iter()
        .any(|(i, m)| i == id && m.is_ok());
    if !ok {
        tracing::warn!("image {id} asked for by {mac_text} is not one that checks whole: refused");
        return None;
    }
    if let Ok(mac) = mac_of_path(mac_text) {
        let stage = match name {
            "vmlinuz" => Some(("kernel", "kernel fetched")),
            "root.squashfs" => Some(("root", "root filesystem fetched by the initrd")),
            _ => None,
        };
        if name == "root.squashfs" {
            p.root_fetched(&mac, id);
        }
        if let Some((stage, line)) = stage {
            p.stage(&mac, stage, format!("{line} (image {id})")).await;
        }
    }
    Some(p.images_dir.join(id).join(name))
}
