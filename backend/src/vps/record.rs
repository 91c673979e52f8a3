//! What a VPS's record says, written: its state, and the dashboards told.

use super::Vpses;
use crate::error::{Error, Result};
use crate::hosts::HostRow;
use crate::repo::vpses::{load_host, VpsRow};
use serverware_shared::state::{DesiredState, ObservedState};
use serverware_shared::ws::{ChangeKind, InventoryChange, ServerMessage};
use serverware_shared::{HostId, VpsId};

pub(crate) fn changed(hub: &crate::hub::Hub, id: VpsId, change: ChangeKind) {
    hub.publish(&ServerMessage::Inventory {
        change: InventoryChange {
            kind: "vps".into(),
            id: id.to_string(),
            change,
        },
    });
}

/// Records what a VPS is now, and optionally what it should be.
pub(super) async fn set_state(
    state: &Vpses,
    id: VpsId,
    observed: ObservedState,
    desired: Option<DesiredState>,
) -> Result<()> {
    state
        .db
        .run(move |c| {
            crate::repo::vpses::set_observed(c, id, observed)?;
            if let Some(d) = desired {
                crate::repo::vpses::set_desired(c, id, d)?;
            }
            Ok(())
        })
        .await?;
    changed(&state.hub, id, ChangeKind::Updated);
    Ok(())
}

/// Host row and name of a placed VPS.
pub(super) async fn host_of(state: &Vpses, v: &VpsRow) -> Result<HostRow> {
    let Some(h) = v.host_id else {
        return Err(Error::conflict(
            None,
            format!("VPS {} is on no host", v.name),
        ));
    };
    state.db.run(move |c| load_host(c, h)).await
}

/// Host rows an operation read once: its steps run between a VPS's stop and its start, where a
/// database turn (the SQLite writers take turns) would add to the downtime.
#[derive(Default)]
pub(super) struct HostRows(std::sync::Mutex<std::collections::HashMap<HostId, HostRow>>);

impl HostRows {
    pub(super) async fn get(&self, state: &Vpses, id: HostId) -> Result<HostRow> {
        let known = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        if let Some(h) = known {
            return Ok(h);
        }
        let h = state.db.run(move |c| load_host(c, id)).await?;
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, h.clone());
        Ok(h)
    }
}
