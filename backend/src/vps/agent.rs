//! Talking to a VPS's host: its spec as the agent takes it, the host's connection, a call.

use super::VpsRow;
use super::Vpses;
use crate::error::{Error, Result};
use crate::hosts::{Conn, HostRow};
use crate::ssh::SshError;
use serverware_shared::agent::{AgentRequest, AgentResponse, VpsSpec};
use serverware_shared::HostId;
use std::time::Duration;

/// How long a quick agent request may take.
pub(super) const QUICK: Duration = Duration::from_secs(60);

/// The interface name and MAC of a VPS follow from its id, so they stay the same on every host.
pub fn spec(v: &VpsRow, h: &HostRow) -> VpsSpec {
    let id = v.id.get() as u64;
    VpsSpec {
        name: v.name.clone(),
        hostname: v.hostname.clone(),
        ipv4: v.ipv4.clone(),
        prefix_len: h.vps_prefix_len.clamp(8, 30) as u8,
        gateway: h.vps_gateway.clone(),
        bridge: h.vps_bridge.clone(),
        mac: format!(
            "02:53:57:{:02x}:{:02x}:{:02x}",
            (id >> 16) & 0xff,
            (id >> 8) & 0xff,
            id & 0xff
        ),
        veth: format!("swv{id}"),
        memory_limit_bytes: v.memory_limit_bytes.max(0) as u64,
        cpu_shares: v.cpu_shares.map(|s| s.max(2) as u32),
        cpu_limit_millis: v.cpu_limit_millis.map(|m| m.max(1) as u32),
        // An HA VPS is started by the controller only, never by its host on its own: after a
        // failover the host that comes back must not start its stale copy.
        autostart: v.autostart && !v.ha_enabled,
        id_base: v.ids(),
    }
}

pub(super) fn conn(state: &Vpses, host_id: HostId, name: &str) -> Result<Conn, Error> {
    state
        .hosts
        .conn(host_id)
        .ok_or_else(|| Error::conflict(None, format!("host {name} is offline")))
}

pub(super) fn agent_err(e: SshError) -> Error {
    match e {
        SshError::Agent(m) => Error::HostUnavailable(format!("the host refused: {m}")),
        other => Error::HostUnavailable(other.to_string()),
    }
}

pub(super) async fn call(c: &Conn, req: AgentRequest, timeout: Duration) -> Result<AgentResponse> {
    c.agent.call(req, timeout).await.map_err(agent_err)
}
