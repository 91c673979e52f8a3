//! What every operation that makes a VPS on a host shares (create, copy, restore, move): its
//! configuration defined before its files arrive, defined again once they are there (the host
//! name written into them), then started if asked. Each kind's saga calls these from its steps
//! of those names; the saga driver records the steps.

use super::agent::{call, spec, QUICK};
use crate::error::Result;
use crate::hosts::{Conn, HostRow};
use crate::repo::vpses::VpsRow;
use serverware_shared::agent::AgentRequest;

/// Defines (or defines again) the VPS on the host.
pub(super) async fn define(c: &Conn, v: &VpsRow, host: &HostRow) -> Result<()> {
    call(
        c,
        AgentRequest::VpsDefine {
            spec: spec(v, host),
        },
        QUICK,
    )
    .await?;
    Ok(())
}

/// Starts the VPS.
pub(super) async fn start(c: &Conn, v: &VpsRow) -> Result<()> {
    call(
        c,
        AgentRequest::VpsStart {
            name: v.name.clone(),
        },
        QUICK,
    )
    .await?;
    Ok(())
}
