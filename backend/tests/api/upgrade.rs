//! The agent's rollout after a controller upgrade, when the new agent does not come up: the
//! host keeps its old agent (it stays online, its samples never stop), the failure is an event
//! naming the host, and nothing of the new agent is left on it.

use crate::hosts_api::{add, wait_host};
use crate::support::*;
use serde_json::Value;
use serverware_testhosts::{Cluster, ClusterOptions};
use std::time::{Duration, Instant};

#[actix_web::test]
async fn a_new_agent_that_does_not_come_up_leaves_the_old_one_serving() {
    let cluster = Cluster::create(ClusterOptions {
        hosts: 1,
        ..Default::default()
    })
    .unwrap();
    let mut t = TestController::start_process(None).await;
    let admin = t.admin().await;
    let r = add(&t, &admin, "roll-1", &cluster.hosts[0]).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    wait_host(&t, &admin, id, "online", |h| {
        h["status"] == "online" && h["agent_version"] == serverware_shared::BUILD
    })
    .await;

    // The next build's agent says its version but cannot serve.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("serverware-agent");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'serverware-agent {} (a broken build)'; exit 0; fi\necho 'this agent is broken on purpose' >&2\nexit 3\n",
            serverware_shared::BUILD
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    t.set_env("SERVERWARE_AGENT_BIN", &fake.to_string_lossy());
    t.restart(None).await;
    let admin = t.admin().await;

    let ev = events_until(
        &t,
        &admin,
        "action=agent.upgrade_failed",
        120,
        "no agent.upgrade_failed event",
        |l| !l.is_empty(),
    )
    .await;
    let failed = ev["events"][0].clone();
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("roll-1"), "{message}");
    assert!(message.contains("keeps agent"), "{message}");
    assert_eq!(failed["severity"], "error");

    // Still online on its old agent, with fresh samples.
    let before = wait_host(&t, &admin, id, "online on its old agent", |h| {
        h["status"] == "online"
    })
    .await;
    assert_eq!(before["agent_version"], serverware_shared::BUILD);
    let seen = before["last_seen_at"].clone();
    wait_host(&t, &admin, id, "sampled again", |h| {
        h["status"] == "online" && h["last_seen_at"] != seen
    })
    .await;
    // The broken agent was removed; the installed one is still the real build's.
    let bin = cluster.hosts[0].dir.join("data/bin");
    assert!(!bin.join("serverware-agent.new").exists());
    let real =
        std::path::Path::new(env!("CARGO_BIN_EXE_serverware")).with_file_name("serverware-agent");
    assert!(
        std::fs::read(bin.join("serverware-agent")).unwrap() == std::fs::read(real).unwrap(),
        "the host's agent is not the one it ran before"
    );
}

#[actix_web::test]
async fn a_new_agent_is_rolled_out_host_by_host_and_no_host_goes_offline() {
    let cluster = Cluster::create(ClusterOptions {
        hosts: 2,
        ..Default::default()
    })
    .unwrap();
    let mut t = TestController::start_process(None).await;
    let admin = t.admin().await;
    let mut ids = Vec::new();
    for (i, h) in cluster.hosts.iter().enumerate() {
        let r = add(&t, &admin, &format!("roll-{i}"), h).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        wait_host(&t, &admin, id, "online", |h| h["status"] == "online").await;
        ids.push(id);
    }

    // A newer build's agent: the same program with other bytes (what it carries past its end
    // is not run), so its digest differs and it serves.
    let dir = tempfile::tempdir().unwrap();
    let real =
        std::path::Path::new(env!("CARGO_BIN_EXE_serverware")).with_file_name("serverware-agent");
    let mut newer = std::fs::read(&real).unwrap();
    newer.extend_from_slice(b"\0a newer build of the agent");
    let path = dir.path().join("serverware-agent");
    std::fs::write(&path, &newer).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    t.set_env("SERVERWARE_AGENT_BIN", &path.to_string_lossy());
    t.restart(None).await;
    let admin = t.admin().await;

    let ev = events_until(
        &t,
        &admin,
        "limit=200",
        180,
        "not every host was upgraded",
        |l| l.iter().filter(|e| e["action"] == "agent.upgraded").count() == 2,
    )
    .await;
    let events = ev["events"].as_array().unwrap();
    for i in 0..2 {
        assert!(
            events.iter().any(|e| e["action"] == "agent.upgraded"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(&format!("roll-{i}"))),
            "roll-{i} has no agent.upgraded: {ev:#}"
        );
    }
    // Samples went on: no host was lost on the way, and both serve on the new agent's file.
    assert!(
        !events
            .iter()
            .any(|e| e["action"] == "host.offline" || e["action"] == "agent.upgrade_failed"),
        "{ev:#}"
    );
    for (i, id) in ids.iter().enumerate() {
        wait_host(&t, &admin, *id, "online", |h| h["status"] == "online").await;
        // The new file takes the old one's place just after the new agent takes over.
        let bin = cluster.hosts[i].dir.join("data/bin");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::read(bin.join("serverware-agent")).unwrap() != newer
            || bin.join("serverware-agent.new").exists()
        {
            assert!(
                Instant::now() < deadline,
                "roll-{i}'s new agent never took the old one's place"
            );
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
