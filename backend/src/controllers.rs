//! The controllers of a site as an operator sees them (`GET /pair`): who is present, who leads,
//! the etcd members that decide it and whether each answers; and a planned switch-over to the
//! partner, refused with a reason naming the part when it cannot work (no partner present, a
//! partner of another version, a single controller).

use crate::audit::{Actor, Change};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::pair::{Leadership, Member};
use serverware_shared::api::{
    ControllerInfo, DatabaseReplication, DatabaseStandby, EtcdMemberInfo, PairPeer, PairResponse,
    SwitchoverResponse,
};

/// The pair's database, when it keeps one (its record in etcd at `key`): the primary, the
/// synchronous standby, and the standbys the primary (this controller's server) sees.
async fn database(lead: &Leadership, db: &Db, key: &str) -> Result<Option<DatabaseReplication>> {
    let Some(h) = lead.etcd().get(key).await.map_err(etcd_down)? else {
        return Ok(None);
    };
    let rec: crate::pair::postgres::Record = serde_json::from_str(&h.value)
        .map_err(|e| Error::Internal(anyhow::anyhow!("etcd's record of the database: {e}")))?;
    let standbys = db
        .run(|c| match c {
            crate::db::DbConn::Postgres(pg) => {
                crate::repo::replication::standbys(pg).map_err(Error::from)
            }
            crate::db::DbConn::Sqlite(_) => Ok(Vec::new()),
        })
        .await?;
    Ok(Some(DatabaseReplication {
        primary: rec.primary,
        synchronous: rec.sync,
        standbys: standbys
            .into_iter()
            .map(|s| DatabaseStandby {
                name: s.name,
                state: s.state,
                sync_state: s.sync_state,
                lag_bytes: s.lag_bytes,
                replay_lag_ms: s.replay_lag_ms,
            })
            .collect(),
    }))
}

/// The site's controllers; a single controller names only itself. `database_key`: etcd's
/// record of the database, when the pair keeps its own.
pub async fn view(
    lead: Option<&Leadership>,
    db: &Db,
    database_key: Option<&str>,
    store: std::sync::Arc<dyn crate::storage::ObjectStore>,
) -> Result<PairResponse> {
    let Some(lead) = lead else {
        return Ok(PairResponse {
            mode: "single".into(),
            name: String::new(),
            lease_secs: 0,
            controllers: Vec::new(),
            etcd: Vec::new(),
            database: None,
            storage: Vec::new(),
        });
    };
    let me = lead.me().name.clone();
    let present = lead.members().await.map_err(etcd_down)?;
    let controllers = present
        .into_iter()
        .map(|m| ControllerInfo {
            role: if m.name == me && lead.is_leader() {
                "leader".into()
            } else {
                "standby".into()
            },
            name: m.name,
            url: m.url,
            version: m.version,
        })
        .collect();
    let mut etcd = Vec::new();
    for (name, urls) in lead.etcd().members().await.map_err(etcd_down)? {
        let url = urls.first().cloned().unwrap_or_default();
        let healthy = !url.is_empty() && lead.etcd().healthy(&url).await;
        etcd.push(EtcdMemberInfo { name, url, healthy });
    }
    Ok(PairResponse {
        mode: "pair".into(),
        name: me,
        lease_secs: lead.ttl().as_secs(),
        controllers,
        etcd,
        database: match database_key {
            Some(k) => database(lead, db, k).await?,
            None => None,
        },
        storage: tokio::task::spawn_blocking(move || store.nodes())
            .await
            .unwrap_or_default(),
    })
}

/// What a second controller needs to join the pair (its keys and the database password), for
/// an admin; recorded as an event. Only a controller of a pair hands them out.
pub async fn join_secrets(
    lead: Option<&Leadership>,
    data_dir: &std::path::Path,
    db: &Db,
    actor: &Actor,
) -> Result<serverware_shared::api::PairJoinResponse> {
    if lead.is_none() {
        return Err(Error::conflict(
            None,
            "this controller is not one of a pair: configure [pair] first",
        ));
    }
    let read = |name: &str| std::fs::read_to_string(data_dir.join(name)).ok();
    let controller_key = read(crate::keys::KEY_FILE)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("the controller key is not readable")))?;
    let out = serverware_shared::api::PairJoinResponse {
        controller_key,
        ssh_host_key: read(crate::keys::HOST_KEY_FILE),
        postgres_password: read("postgres_password").map(|s| s.trim().to_string()),
        version: serverware_shared::BUILD.into(),
    };
    let actor = actor.clone();
    db.run(move |c| {
        crate::audit::record(
            c,
            &actor,
            Change::new(
                "controller.join",
                "controller",
                "pair",
                "the pair's keys were handed to a joining controller".to_string(),
            ),
        )
    })
    .await?;
    Ok(out)
}

fn etcd_down(e: crate::pair::EtcdError) -> Error {
    Error::HostUnavailable(format!("etcd does not answer: {e}"))
}

/// Hands the site over to the partner: it must be present and run this version. The running
/// operations get their time to end, then this controller gives up its lease and becomes the
/// standby; the partner takes over within about a third of the lease.
pub async fn switch_over(
    lead: Option<&Leadership>,
    db: &Db,
    actor: &Actor,
) -> Result<SwitchoverResponse> {
    let Some(lead) = lead else {
        return Err(Error::conflict(
            None,
            "this controller is not one of a pair: there is nobody to hand the site to",
        ));
    };
    let me = lead.me().clone();
    let present = lead.members().await.map_err(etcd_down)?;
    let partner = pick_partner(&me.name, serverware_shared::BUILD, &present)?;
    let to = PairPeer {
        name: partner.name.clone(),
        url: partner.url.clone(),
    };
    let message = format!(
        "{} hands the site over to {}: running operations end first",
        me.name, partner.name
    );
    let (a, m, details) = (
        actor.clone(),
        message.clone(),
        serde_json::json!({"from": me.name, "to": partner.name}),
    );
    let name = me.name.clone();
    db.run(move |c| {
        crate::audit::record(
            c,
            &a,
            Change::new("controller.switchover", "controller", name, m).details(details),
        )
    })
    .await?;
    lead.request_hand_over();
    Ok(SwitchoverResponse { to, message })
}

/// The partner a switch-over goes to, or why there is none.
fn pick_partner<'a>(me: &str, version: &str, present: &'a [Member]) -> Result<&'a Member> {
    let partner = present.iter().find(|m| m.name != me).ok_or_else(|| {
        Error::conflict(
            None,
            "no standby controller is present to take over (it must be running and reach etcd)",
        )
    })?;
    if partner.version != version {
        return Err(Error::conflict(
            None,
            format!(
                "{} runs version {} and this controller {version}: give both the same version first",
                partner.name, partner.version
            ),
        ));
    }
    Ok(partner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, version: &str) -> Member {
        Member {
            name: name.into(),
            url: format!("http://{name}"),
            version: version.into(),
        }
    }

    #[test]
    fn a_switch_over_needs_a_present_partner_of_the_same_version() {
        let e = pick_partner("a", "1.0", &[m("a", "1.0")]).unwrap_err();
        assert!(
            e.message().contains("no standby controller"),
            "{}",
            e.message()
        );
        let e = pick_partner("a", "1.0", &[m("a", "1.0"), m("b", "0.9")]).unwrap_err();
        assert!(
            e.message().contains("b runs version 0.9"),
            "{}",
            e.message()
        );
        assert_eq!(
            pick_partner("a", "1.0", &[m("b", "1.0"), m("a", "1.0")])
                .unwrap()
                .name,
            "b"
        );
    }
}
