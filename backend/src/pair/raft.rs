//! Keeps etcd's own Raft leader off the pair leader's machine. When the machine that holds the
//! pair's lease loses power and etcd's Raft leader was its member too, etcd must first elect
//! anew (one to two election timeouts) and a new etcd leader renews every lease in full, so the
//! dead controller's lease outlives it by that much: the takeover waits. With etcd's leader
//! elsewhere (the partner's member, else the witness's) the lease just runs out. The leader asks
//! etcd to move its Raft leadership (etcd's own `transfer-leadership`, the cluster answering
//! throughout) whenever it finds it on its own machine.

use super::lead::Role;
use super::Etcd;
use std::time::Duration;
use tokio::sync::watch;

/// The host part of a URL (`http://10.0.0.1:8080/x` → `10.0.0.1`).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or(rest);
    match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => rest.rsplit_once(':').map_or(rest, |(h, _)| h),
    }
}

/// A member of etcd: its id, name and client URLs.
pub type RaftMember = (String, String, Vec<String>);

/// Where etcd's Raft leadership could go, if it is on `my_host`'s member: the leading member's
/// client URL and the other members in order of preference (the partner's first).
pub fn targets<'a>(
    members: &'a [RaftMember],
    raft_leader: &str,
    my_host: &str,
    partner_host: Option<&str>,
) -> Option<(String, Vec<&'a RaftMember>)> {
    let on = |m: &RaftMember, host: &str| m.2.iter().any(|u| host_of(u) == host);
    let leading = members.iter().find(|m| m.0 == raft_leader)?;
    if !on(leading, my_host) {
        return None;
    }
    let mut others: Vec<&RaftMember> = members.iter().filter(|m| !on(m, my_host)).collect();
    others.sort_by_key(|m| !partner_host.is_some_and(|p| on(m, p)));
    if others.is_empty() {
        return None;
    }
    Some((leading.2.first()?.clone(), others))
}

/// While this controller leads, looks every 2 s where etcd's Raft leader is and moves it off
/// this machine; ends when `stop` is set.
pub async fn keep_off(
    etcd: Etcd,
    me: super::Member,
    members_prefix: String,
    role: watch::Receiver<Role>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        if !matches!(*role.borrow(), Role::Leader) {
            continue;
        }
        let (Ok(members), Ok(leader)) = (etcd.member_ids().await, etcd.raft_leader().await) else {
            continue;
        };
        let partner = super::setup::present(&etcd, &members_prefix)
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.name != me.name)
            .map(|m| host_of(&m.url).to_string());
        let Some((from, to)) = targets(&members, &leader, host_of(&me.url), partner.as_deref())
        else {
            continue;
        };
        // Only to a member that answers now: a transfer to one cut off stalls etcd until it
        // gives up.
        let mut pick = None;
        for m in to {
            if let Some(url) = m.2.first() {
                if etcd.healthy(url).await {
                    pick = Some((m.0.clone(), m.1.clone()));
                    break;
                }
            }
        }
        let Some((to, name)) = pick else {
            continue;
        };
        match etcd.transfer_raft(&from, &to).await {
            Ok(()) => tracing::info!(
                "etcd's Raft leader was on this machine: moved to member {name}, so that a power-off here needs no etcd election"
            ),
            Err(e) => tracing::debug!("cannot move etcd's Raft leader to {name}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, name: &str, url: &str) -> RaftMember {
        (id.into(), name.into(), vec![url.into()])
    }

    #[test]
    fn the_raft_leader_moves_off_this_machine_to_the_partner_first() {
        let ms = [
            m("11", "m0", "http://10.0.0.1:2379"),
            m("22", "m1", "http://10.0.0.2:2379"),
            m("33", "m2", "http://10.0.0.3:2379"),
        ];
        let names = |t: Option<(String, Vec<&RaftMember>)>| {
            t.map(|(from, to)| (from, to.iter().map(|m| m.1.clone()).collect::<Vec<_>>()))
        };
        // Not on this machine: left alone.
        assert_eq!(
            names(targets(&ms, "22", "10.0.0.1", Some("10.0.0.2"))),
            None
        );
        // On it: the partner's member first, then the others.
        assert_eq!(
            names(targets(&ms, "11", "10.0.0.1", Some("10.0.0.3"))),
            Some((
                "http://10.0.0.1:2379".into(),
                vec!["m2".into(), "m1".into()]
            ))
        );
        assert_eq!(
            names(targets(&ms, "11", "10.0.0.1", None)),
            Some((
                "http://10.0.0.1:2379".into(),
                vec!["m1".into(), "m2".into()]
            ))
        );
        assert_eq!(host_of("http://[fd00::1]:2379"), "fd00::1");
        assert_eq!(host_of("https://ctl-a:8080/x"), "ctl-a");
    }
}
