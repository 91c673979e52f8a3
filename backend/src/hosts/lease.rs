//! netMON's leases on the controller's side: what each host's lease carries, its renewal from
//! every sample that arrives (counted from the sample, not from now), and when it was last
//! renewed and acknowledged. The host's guard stops its HA VPSes when the lease runs out.

use super::{lock, HostManager, Runtime};
use russh::keys::PrivateKey;
use serverware_shared::agent::{AgentRequest, AgentResponse};
use serverware_shared::HostId;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The key that signs what hosts' guards tell each other (hex): derived from the controller's
/// own key, so that it stays the same across restarts and never leaves the controller's hosts.
pub(super) fn lease_key(key: &PrivateKey) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"serverware netMON lease key\0");
    if let Some(k) = key.key_data().ed25519() {
        h.update(k.private.to_bytes());
    }
    hex::encode(h.finalize())
}

/// The epoch of the leases this run of the controller hands out: newer than any handed out
/// before, by this controller or by its partner of a pair (a guard refuses a renewal of an
/// older epoch than the one it holds). The wall clock in milliseconds, or one more than the
/// last epoch recorded when that is ahead (a partner whose clock runs ahead).
pub async fn next_lease_epoch(db: &crate::db::Db) -> crate::error::Result<u64> {
    const KEY: &str = "netmon.lease_epoch";
    db.transaction(|c| {
        let last = crate::repo::settings::get(c, KEY)?
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let now = chrono::Utc::now().timestamp_millis().max(1) as u64;
        let epoch = now.max(last + 1);
        crate::repo::settings::put(c, KEY, &epoch.to_string())?;
        Ok(epoch)
    })
    .await
}

/// What a host's netMON lease carries, as netMON wants it now.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasePlan {
    /// Its HA VPSes, which its guard stops when the lease runs out.
    pub ha: Vec<String>,
    /// Every host's address, this one's too (shared by all the plans of a round: a site of a
    /// thousand hosts has one list, not a thousand); the others' guards are asked whether the
    /// controller is down.
    pub all: Arc<Vec<(HostId, String)>>,
    /// This host, left out of its peers.
    pub own: HostId,
}

impl LeasePlan {
    /// The other hosts' addresses.
    pub fn peers(&self) -> Vec<String> {
        self.all
            .iter()
            .filter(|(id, _)| *id != self.own)
            .map(|(_, a)| a.clone())
            .collect()
    }
}

/// A host's lease, on the controller's side.
#[derive(Debug, Default)]
pub(super) struct LeaseState {
    plan: Option<LeasePlan>,
    /// netMON suspects the host: no more renewals until it says so.
    revoked: bool,
    /// The arrival of the sample the last renewal sent counts from, and of the last one the
    /// host acknowledged.
    renewed: Option<Instant>,
    acked: Option<Instant>,
    /// The peers the host's lease holds (acknowledged): a renewal carries them only when they
    /// changed (a thousand addresses each second to each of a thousand hosts was 15 MB/s).
    peers_held: Option<Arc<Vec<(HostId, String)>>>,
    /// The boot time of the sample the last renewal counted from: less is a reboot (its lease,
    /// peers and all, is gone).
    boot_ms: u64,
}

/// When a host's lease counts from, on the controller's clock (see [`LeaseState`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseTimes {
    pub renewed: Option<Instant>,
    pub acked: Option<Instant>,
    /// The arrival of its newest sample.
    pub heard: Option<Instant>,
    /// When this controller first began a handshake with it (None: still waiting its turn).
    pub first_try: Option<Instant>,
}

impl HostManager {
    /// What the host's lease carries from now on (None: it gets none).
    pub fn set_lease_plan(&self, id: HostId, plan: Option<LeasePlan>) {
        if let Some(rt) = lock(&self.runtimes).get(&id) {
            lock(&rt.lease).plan = plan;
        }
    }

    /// Stops (or resumes) renewing the host's lease.
    pub fn revoke(&self, id: HostId, revoked: bool) {
        if let Some(rt) = lock(&self.runtimes).get(&id) {
            lock(&rt.lease).revoked = revoked;
        }
    }

    /// When the host's lease counts from, and when it was last heard.
    pub fn lease_times(&self, id: HostId) -> LeaseTimes {
        match lock(&self.runtimes).get(&id) {
            Some(rt) => {
                let l = lock(&rt.lease);
                LeaseTimes {
                    renewed: l.renewed,
                    acked: l.acked,
                    heard: *lock(&rt.heard),
                    first_try: *lock(&rt.first_try),
                }
            }
            None => LeaseTimes::default(),
        }
    }

    /// Renews the host's lease from the sample that just arrived (its boot time `boot_ms`, at
    /// `arrived`), unless netMON revoked it or has no plan for it. The lease counts from the
    /// sample, not from now: it runs out on the host by `arrived + LEASE_TTL_MS` at the latest.
    pub(super) fn renew(
        &self,
        rt: &Runtime,
        caller: &crate::ssh::AgentCaller,
        boot_ms: u64,
        arrived: Instant,
        interval_ms: u32,
    ) {
        let (plan, send_peers) = {
            let mut l = lock(&rt.lease);
            match (&l.plan, l.revoked || boot_ms == 0) {
                (Some(p), false) => {
                    let p = p.clone();
                    l.renewed = Some(arrived);
                    if boot_ms < l.boot_ms {
                        l.peers_held = None;
                    }
                    l.boot_ms = boot_ms;
                    let held = l
                        .peers_held
                        .as_ref()
                        .is_some_and(|h| Arc::ptr_eq(h, &p.all) || **h == *p.all);
                    (p, !held)
                }
                _ => return,
            }
        };
        let all = plan.all.clone();
        let request = AgentRequest::Lease {
            epoch: self.lease_epoch,
            base_ms: boot_ms,
            ttl_ms: serverware_shared::agent::lease_ttl_ms(u64::from(interval_ms)),
            peers: send_peers.then(|| plan.peers()),
            ha: plan.ha,
            key: self.lease_key.clone(),
        };
        let (caller, lease) = (caller.clone(), rt.lease.clone());
        tokio::spawn(async move {
            let timeout = Duration::from_millis(3000);
            match caller.call(request, timeout).await {
                Ok(AgentResponse::Ok) => {
                    let mut l = lock(&lease);
                    if l.acked.is_none_or(|t| t < arrived) {
                        l.acked = Some(arrived);
                    }
                    if send_peers {
                        l.peers_held = Some(all);
                    }
                }
                // Refused (a host that holds no peers of this lease among others): the next
                // renewal carries them.
                Ok(AgentResponse::Error { .. }) => lock(&lease).peers_held = None,
                _ => {}
            }
        });
    }
}
