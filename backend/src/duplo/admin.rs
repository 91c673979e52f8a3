//! What an operator asks of a VPS's duplication: turn it on or off, run a cycle now.

use super::Duplication;
use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::repo;
use serverware_shared::agent::AgentRequest;
use serverware_shared::VpsId;

/// Turns a VPS's duplication on or off (its restore points stay). Turned off, its host may stop
/// keeping its change journal; the next cycle after it is turned on again compares in full.
pub async fn set_enabled(dup: &Duplication, actor: Actor, id: VpsId, on: bool) -> Result<()> {
    let v = dup
        .db
        .transaction(move |c| {
            let v = crate::vps::load(c, id)?;
            repo::vpses::set_duplo_enabled(c, id, on)?;
            audit::record(
                c,
                &actor,
                Change::new(
                    "vps.duplo",
                    "vps",
                    id,
                    format!(
                        "duplication of {} {}",
                        v.name,
                        if on { "on" } else { "off" }
                    ),
                )
                .details(serde_json::json!({ "enabled": on })),
            )?;
            Ok(v)
        })
        .await?;
    if !on {
        if let Some(conn) = v.host_id.and_then(|h| dup.hosts.conn(h)) {
            let _ = conn
                .agent
                .call(
                    AgentRequest::DuploForget { name: v.name },
                    std::time::Duration::from_secs(10),
                )
                .await;
        }
    }
    Ok(())
}

/// Asks for a cycle of the VPS now (the scheduler starts it at its next pass). Refused when its
/// duplication is off, it is on no host, or its host is not connected.
pub async fn request_now(dup: &Duplication, id: VpsId) -> Result<()> {
    dup.stopping.accepting()?;
    let (v, enabled) = dup
        .db
        .run(move |c| {
            let v = crate::vps::load(c, id)?;
            let enabled = repo::vpses::duplo_enabled(c, id)?;
            Ok((v, enabled))
        })
        .await?;
    if !enabled {
        return Err(Error::conflict(
            Some("enabled"),
            format!("duplication of {} is off; turn it on first", v.name),
        ));
    }
    match v.host_id {
        Some(h) if dup.hosts.connected(h) => {}
        Some(_) => {
            return Err(Error::HostUnavailable(format!(
                "the host of {} is not connected",
                v.name
            )))
        }
        None => return Err(Error::conflict(None, format!("{} is on no host", v.name))),
    }
    dup.duplo.request_now(id);
    Ok(())
}
