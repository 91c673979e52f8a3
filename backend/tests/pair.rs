//! Who leads the controller pair, on a real etcd cluster of three (Debian's `etcd`, on loopback):
//! exactly one of two controllers leads and the other names it; a leader cut off from etcd stops
//! leading before its partner can take over (never two leaders, whatever the machine's load);
//! with one etcd member of three lost there is still one leader, never two; a leader that stops
//! hands over at once.

use serverware::pair::{Etcd, Leadership, Options, Role};
use serverware_testhosts::EtcdCluster;
use std::time::Duration;
use tokio::time::Instant;

const KEY: &str = "/serverware/test-site/leader";

fn controller(name: &str, endpoints: Vec<String>) -> Leadership {
    let etcd = Etcd::new(endpoints, Duration::from_secs(1)).unwrap();
    Leadership::start(
        etcd,
        Options {
            name: name.into(),
            url: format!("http://{name}.test"),
            key: KEY.into(),
            members: "/serverware/test-site/members".into(),
            yield_for: Duration::ZERO,
            ttl: Duration::from_secs(3),
        },
    )
}

/// Waits (generously) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn leads(l: &Leadership) -> bool {
    l.role() == Role::Leader && l.is_leader()
}

fn follows(l: &Leadership, leader: &str) -> bool {
    matches!(l.role(), Role::Follower { leader: Some(p) } if p.name == leader && p.url == format!("http://{leader}.test"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leads_the_other_names_it_and_a_cut_off_leader_steps_down_before_the_takeover() {
    let mut etcd = EtcdCluster::start(3).unwrap();
    // Each controller talks to a member of its own (as on its own machine).
    let a = controller("ctl-a", vec![etcd.members[0].client_url.clone()]);
    let b = controller("ctl-b", vec![etcd.members[1].client_url.clone()]);
    until("one of the two leads and the other names it", || {
        (leads(&a) && follows(&b, "ctl-a")) || (leads(&b) && follows(&a, "ctl-b"))
    })
    .await;
    let (leader, other, leader_member, other_name) = if leads(&a) {
        (&a, &b, 0, "ctl-b")
    } else {
        (&b, &a, 1, "ctl-a")
    };

    // Cut the leader off: its own etcd member stops answering. The other two still have a
    // quorum, so the lease runs out there and the partner takes the key.
    etcd.pause(leader_member);
    let mut last_until = leader.leading_until();
    let mut both = 0u32;
    let deadline = Instant::now() + Duration::from_secs(60);
    let took_over = loop {
        if let Some(u) = leader.leading_until() {
            last_until = Some(u);
        }
        if leader.is_leader() && other.is_leader() {
            both += 1;
        }
        if other.is_leader() {
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "the partner never took over");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(both, 0, "both controllers said they lead at once");
    let last_until = last_until.expect("the leader had a lease");
    assert!(
        took_over >= last_until,
        "the partner led {:?} before the old leader's lease could have run out",
        last_until - took_over
    );
    assert!(
        !leader.is_leader(),
        "the cut-off leader still says it leads"
    );

    // Back in touch, the old leader follows the new one.
    etcd.resume(leader_member);
    until("the old leader follows the new one", || {
        follows(leader, other_name)
    })
    .await;
    assert!(leads(other));

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lost_member_of_three_keeps_one_leader_and_a_leader_that_stops_hands_over() {
    let mut etcd = EtcdCluster::start(3).unwrap();
    let a = controller("ctl-a", etcd.endpoints());
    until("ctl-a leads alone", || leads(&a)).await;
    let b = controller("ctl-b", etcd.endpoints());
    until("ctl-b follows ctl-a", || follows(&b, "ctl-a")).await;

    // One member of three gone: still a quorum. Whichever it was, both carry on through the
    // other members; ctl-b never leads while ctl-a does.
    etcd.pause(2);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        assert!(
            !(a.is_leader() && b.is_leader()),
            "two leaders with one member lost"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    until("someone leads with two members of three", || {
        leads(&a) || leads(&b)
    })
    .await;
    etcd.resume(2);

    // The leader stops (a controller shut down): its lease is revoked, the other leads.
    let (stopping, staying, staying_name) = if leads(&a) {
        (a, b, "ctl-b")
    } else {
        (b, a, "ctl-a")
    };
    stopping.stop().await;
    until("the other takes over after a clean stop", || {
        leads(&staying)
    })
    .await;
    // Still only one: a third controller that joins follows it.
    let c = controller("ctl-c", etcd.endpoints());
    until("a newcomer follows the leader", || {
        follows(&c, staying_name)
    })
    .await;
    assert!(!c.is_leader());
    staying.stop().await;
    c.stop().await;
}
