//! Scenario tests of netMON's decisions on the simulated site ([`super::sim`]): what real hosts
//! make slow or rare, in milliseconds. Every simulated 100 ms checks that no VPS runs twice.

use super::sim::Sim;
use serverware_shared::{HostId, VpsId};

const GB: u64 = 1 << 30;

/// Three hosts, three HA VPSes on node-a.
fn three() -> Sim {
    let mut s = Sim::new(3, 16 * GB);
    for n in ["web-1", "web-2", "pbx-1"] {
        s.add_vps(n, "node-a", GB, 0);
    }
    s
}

/// Lines containing `pat`, in order.
fn lines_with(s: &Sim, pat: &str) -> Vec<String> {
    s.lines().into_iter().filter(|l| l.contains(pat)).collect()
}

/// The position of the first line containing `pat` (panics with the log if none).
fn at(s: &Sim, pat: &str) -> usize {
    s.lines()
        .iter()
        .position(|l| l.contains(pat))
        .unwrap_or_else(|| panic!("no line with {pat:?} in:\n{}", s.log.join("\n")))
}

#[test]
fn a_powered_off_host_s_vpses_answer_elsewhere_within_seconds() {
    let mut s = three();
    s.run(20_000, &[(5_000, "power-off node-a")]);
    for v in ["web-1", "web-2", "pbx-1"] {
        let p = &s.placement()[v];
        assert_eq!(p.len(), 1, "{v}: {p:?}\n{}", s.log.join("\n"));
        assert_ne!(p[0], "node-a");
        let took = s.failover_ms(v, 5_000).expect("a timeline");
        assert!(took <= 6_000, "{v} took {took} ms:\n{}", s.log.join("\n"));
    }
    // Spread by room: not all on one host.
    let on_b = s.placement().values().filter(|h| h[0] == "node-b").count();
    assert!((1..=2).contains(&on_b), "{:?}", s.placement());
    // Suspected before anything was recovered, and one timeline each.
    assert!(at(&s, "suspect node-a") < at(&s, "recover web-1"));
    assert_eq!(lines_with(&s, "failed over").len(), 3);
    // Its services stopped with it, before its heartbeat timeout: nothing was asked of the
    // dead host.
    assert!(lines_with(&s, "restart").is_empty(), "{}", s.log.join("\n"));
    // So too with real hosts' 3 s timeout, twice the services' grace.
    let mut s = three();
    s.heartbeat_timeout_ms = 3000;
    s.run(20_000, &[(5_000, "power-off node-a")]);
    assert!(lines_with(&s, "restart").is_empty(), "{}", s.log.join("\n"));
    assert_eq!(
        lines_with(&s, "failed over").len(),
        3,
        "{}",
        s.log.join("\n")
    );
}

#[test]
fn a_cut_off_host_fences_itself_before_its_vpses_start_elsewhere() {
    let mut s = three();
    s.run(30_000, &[(5_000, "cut node-a"), (20_000, "mend node-a")]);
    for v in ["web-1", "web-2", "pbx-1"] {
        let fenced = at(&s, &format!("node-a fenced itself: stopped {v}"));
        let recovered = at(&s, &format!("recover {v} from node-a"));
        assert!(fenced < recovered, "{}", s.log.join("\n"));
        assert_ne!(s.placement()[v], vec!["node-a".to_string()]);
    }
    // Back: its stale copies are removed, then it is trusted again; nothing started there.
    assert!(at(&s, "clean node-a of") < at(&s, "trust node-a again"));
    assert_eq!(lines_with(&s, "failed over").len(), 3);
}

#[test]
fn a_controller_outage_stops_nothing() {
    let mut s = three();
    s.run(
        90_000,
        &[(5_000, "controller-down"), (65_000, "controller-up")],
    );
    assert!(
        lines_with(&s, "fenced itself").is_empty(),
        "{}",
        s.log.join("\n")
    );
    assert!(lines_with(&s, "recover").is_empty(), "{}", s.log.join("\n"));
    for v in ["web-1", "web-2", "pbx-1"] {
        assert_eq!(s.placement()[v], vec!["node-a".to_string()]);
    }
}

#[test]
fn a_short_blip_is_no_failover_and_a_longer_one_is_forgiven_before_the_lease_ends() {
    let mut s = three();
    // Shorter than the heartbeat timeout: not even suspected.
    s.run(10_000, &[(5_000, "cut node-a"), (5_900, "mend node-a")]);
    assert!(lines_with(&s, "suspect").is_empty(), "{}", s.log.join("\n"));
    // Past the timeout but back before the lease ran out: trusted again, nothing moved.
    s.run(30_000, &[(12_000, "cut node-a"), (13_500, "mend node-a")]);
    assert_eq!(
        lines_with(&s, "suspect node-a").len(),
        1,
        "{}",
        s.log.join("\n")
    );
    assert_eq!(lines_with(&s, "trust node-a again").len(), 1);
    assert!(
        lines_with(&s, "fenced itself").is_empty(),
        "{}",
        s.log.join("\n")
    );
    assert!(lines_with(&s, "recover").is_empty());
}

#[test]
fn two_hosts_lost_at_once() {
    let mut s = Sim::new(4, 16 * GB);
    s.add_vps("a-1", "node-a", GB, 0);
    s.add_vps("a-2", "node-a", GB, 0);
    s.add_vps("b-1", "node-b", GB, 0);
    s.run(
        20_000,
        &[(5_000, "power-off node-a"), (5_000, "power-off node-b")],
    );
    for (v, p) in s.placement() {
        assert_eq!(p.len(), 1, "{v}");
        assert!(p[0] == "node-c" || p[0] == "node-d", "{v} on {p:?}");
    }
}

#[test]
fn the_target_lost_mid_restore_sends_the_vps_to_another() {
    let mut s = three();
    s.restore_ms = 3_000;
    s.run(10_000, &[(5_000, "power-off node-a")]);
    // The first recover of web-1 is under way: its target goes too.
    let line = lines_with(&s, "recover web-1 from node-a")[0].clone();
    let target = line.rsplit(' ').next().unwrap().to_string();
    s.run(30_000, &[(10_200, &format!("power-off {target}"))]);
    let p = &s.placement()["web-1"];
    assert_eq!(p.len(), 1, "{}", s.log.join("\n"));
    assert_ne!(p[0], "node-a");
    assert_ne!(p[0], target);
    assert!(!lines_with(&s, "web-1: bringing it up failed").is_empty());
}

#[test]
fn a_controller_restarted_mid_failover_finishes_it() {
    let mut s = three();
    // Detected near 6.5 s, fenced near 9.5 s: the restart falls mid-recovery.
    s.run(
        30_000,
        &[(5_000, "power-off node-a"), (10_000, "controller-restart")],
    );
    assert_eq!(
        lines_with(&s, "failed over").len(),
        3,
        "{}",
        s.log.join("\n")
    );
    for v in ["web-1", "web-2", "pbx-1"] {
        assert_eq!(s.placement()[v].len(), 1);
        assert_eq!(lines_with(&s, &format!("recover {v} ")).len(), 1);
    }
}

#[test]
fn a_controller_killed_between_decision_and_restore_brings_each_vps_up_once() {
    let mut s = three();
    // Placed near 9.5 s: killed just after, before any restore began.
    s.run(
        30_000,
        &[(5_000, "power-off node-a"), (9_700, "controller-crash")],
    );
    let log = s.log.join("\n");
    assert!(
        s.log.iter().any(|l| {
            let t: u64 = l.split_whitespace().next().unwrap().parse().unwrap();
            t < 9_700 && l.contains(" recover ")
        }),
        "nothing was decided before the kill:\n{log}"
    );
    assert_eq!(lines_with(&s, "failed over").len(), 3, "{log}");
    for v in ["web-1", "web-2", "pbx-1"] {
        assert_eq!(s.placement()[v].len(), 1, "{v}:\n{log}");
        assert_ne!(s.placement()[v][0], "node-a");
    }
    // The host was not suspected anew: the next run knew it fenced.
    assert_eq!(lines_with(&s, "suspect node-a").len(), 1, "{log}");
    // Its failovers kept their detection time: answering within seconds of it.
    for v in ["web-1", "web-2", "pbx-1"] {
        let took = s.failover_ms(v, 5_000).expect("a timeline");
        assert!(took <= 9_000, "{v} took {took} ms:\n{log}");
    }
}

#[test]
fn taken_over_memory_keeps_its_times_on_the_new_clock() {
    use super::decide::{Manager, Params, Resume};
    let mut m = Manager::new(Params::default());
    m.request(1_000, VpsId(7), HostId(1), Some("admin".into()));
    let (m2, resume) = m.clone().taken_over(500, Params::default());
    let json = serde_json::to_value(&m2).unwrap();
    assert_eq!(json["failovers"]["7"]["detected"], 1_500, "{json}");
    assert_eq!(
        resume,
        vec![Resume::Stop {
            vps: VpsId(7),
            host: HostId(1)
        }]
    );
    // Moved before the new clock's start: its start, never earlier.
    let (m3, _) = m.taken_over(-5_000, Params::default());
    let json = serde_json::to_value(&m3).unwrap();
    assert_eq!(json["failovers"]["7"]["detected"], 0, "{json}");
}

#[test]
fn when_room_is_short_priority_decides_and_the_rest_waits() {
    let mut s = Sim::new(2, 4 * GB);
    s.add_vps("low", "node-a", GB, 0);
    s.add_vps("high", "node-a", GB, 10);
    s.add_vps("mid", "node-a", GB, 5);
    // node-b has room for two (4 GB, one VPS there already).
    s.add_vps("there", "node-b", 2 * GB, 0);
    s.run(20_000, &[(5_000, "power-off node-a")]);
    let p = s.placement();
    assert_eq!(p["high"], vec!["node-b".to_string()]);
    assert!(p["low"].is_empty(), "{:?}", p);
    assert!(at(&s, "recover high") < at(&s, "recover mid") || p["mid"].is_empty());
    assert_eq!(
        lines_with(&s, "warn low: no host has room").len(),
        1,
        "{}",
        s.log.join("\n")
    );
}

#[test]
fn a_vps_killed_alone_is_restarted_in_place() {
    let mut s = three();
    s.run(20_000, &[(5_000, "kill web-2")]);
    assert_eq!(s.placement()["web-2"], vec!["node-a".to_string()]);
    assert_eq!(lines_with(&s, "restart web-2 on node-a").len(), 1);
    assert!(lines_with(&s, "recover").is_empty(), "{}", s.log.join("\n"));
    // Restarted within 5 s of the kill.
    let line = &lines_with(&s, "restart web-2")[0];
    let i = s
        .log
        .iter()
        .position(|l| l.ends_with(line.as_str()))
        .unwrap();
    let t: u64 = s.log[i][..6].trim().parse().unwrap();
    assert!(t - 5_000 <= 5_000, "{t}");
}

#[test]
fn a_vps_that_fails_in_place_goes_elsewhere_then_waits_for_an_operator() {
    let mut s = three();
    s.run(400_000, &[(5_000, "break pbx-1")]);
    let log = s.log.join("\n");
    assert!(
        at(&s, "restart pbx-1 on node-a") < at(&s, "stop pbx-1 on node-a"),
        "{log}"
    );
    assert!(at(&s, "stop pbx-1") < at(&s, "recover pbx-1"), "{log}");
    assert_eq!(lines_with(&s, "waits for an operator").len(), 1, "{log}");
    assert!(lines_with(&s, "failed over").is_empty());
}

#[test]
fn a_host_in_maintenance_is_never_failed_over() {
    let mut s = three();
    s.run(
        20_000,
        &[(1_000, "maintenance node-a"), (5_000, "power-off node-a")],
    );
    assert!(lines_with(&s, "recover").is_empty(), "{}", s.log.join("\n"));
}

#[test]
fn a_host_that_flaps_never_runs_a_vps_twice() {
    let mut s = three();
    let mut cmds = Vec::new();
    let mut t = 5_000;
    let mut names = Vec::new();
    for i in 0..20u64 {
        names.push((t, "cut node-a".to_string()));
        names.push((t + 700 + (i % 7) * 600, "mend node-a".to_string()));
        t += 8_000;
    }
    for (t, c) in &names {
        cmds.push((*t, c.as_str()));
    }
    s.run(t + 20_000, &cmds);
    for (v, p) in s.placement() {
        assert_eq!(p.len(), 1, "{v}: {}", s.log.join("\n"));
    }
}

#[test]
fn a_host_back_after_fencing_itself_but_before_any_failover_restarts_its_vpses() {
    let mut s = three();
    // Its lease ran out (it fenced itself) just before the controller would have moved them.
    s.run(30_000, &[(12_000, "cut node-a"), (14_300, "mend node-a")]);
    assert_eq!(
        lines_with(&s, "fenced itself").len(),
        3,
        "{}",
        s.log.join("\n")
    );
    assert!(lines_with(&s, "recover").is_empty(), "{}", s.log.join("\n"));
    for v in ["web-1", "web-2", "pbx-1"] {
        assert_eq!(s.placement()[v], vec!["node-a".to_string()]);
    }
}

#[test]
fn a_host_cut_off_during_a_controller_outage_fences_and_fails_over_once_it_is_back() {
    let mut s = three();
    s.run(
        60_000,
        &[
            (5_000, "controller-down"),
            (10_000, "cut node-a"),
            (30_000, "controller-up"),
        ],
    );
    let log = s.log.join("\n");
    // The others held on through the outage; node-a, alone, fenced.
    assert_eq!(lines_with(&s, "fenced itself").len(), 3, "{log}");
    assert!(lines_with(&s, "node-b fenced").is_empty(), "{log}");
    assert_eq!(lines_with(&s, "failed over").len(), 3, "{log}");
    assert!(
        at(&s, "cmd controller-up") < at(&s, "recover web-1"),
        "{log}"
    );
}

#[test]
fn a_failover_goes_to_the_standby_host_when_it_has_room() {
    // node-c has the most room, but web-1's standby copy is on node-b: web-1 goes there. pbx-1's
    // standby host (node-b) has no room left for it after web-1 and web-2: it goes elsewhere.
    let mut s = Sim::new(3, 16 * GB);
    s.add_vps("filler", "node-b", 11 * GB, 0);
    s.add_vps("web-1", "node-a", 2 * GB, 10);
    s.add_vps("web-2", "node-a", 2 * GB, 5);
    s.add_vps("pbx-1", "node-a", 2 * GB, 0);
    s.standby("web-1", "node-b");
    s.standby("web-2", "node-b");
    s.standby("pbx-1", "node-b");
    s.run(20_000, &[(5_000, "power-off node-a")]);
    let p = s.placement();
    assert_eq!(
        p["web-1"],
        vec!["node-b".to_string()],
        "{}",
        s.log.join("\n")
    );
    assert_eq!(
        p["web-2"],
        vec!["node-b".to_string()],
        "{}",
        s.log.join("\n")
    );
    assert_eq!(
        p["pbx-1"],
        vec!["node-c".to_string()],
        "{}",
        s.log.join("\n")
    );
}

#[test]
fn a_starved_controller_blames_no_host() {
    let mut s = three();
    s.run(
        20_000,
        &[(5_000, "controller-starved"), (7_000, "controller-wakes")],
    );
    assert!(lines_with(&s, "suspect").is_empty(), "{}", s.log.join("\n"));
    assert!(
        lines_with(&s, "fenced itself").is_empty(),
        "{}",
        s.log.join("\n")
    );
    for v in ["web-1", "web-2", "pbx-1"] {
        assert_eq!(s.placement()[v], vec!["node-a".to_string()]);
    }
    // A host that really went silent is still suspected once the controller runs on time.
    let mut s = three();
    s.run(
        20_000,
        &[
            (5_000, "controller-starved"),
            (6_000, "power-off node-a"),
            (7_000, "controller-wakes"),
        ],
    );
    assert!(at(&s, "suspect node-a") > 0);
    assert_eq!(
        lines_with(&s, "failed over").len(),
        3,
        "{}",
        s.log.join("\n")
    );
}

#[test]
fn a_moved_vps_is_not_restarted_while_it_boots_on_its_new_host() {
    // Stopped for the move long past the services' grace, and not answering yet when the move
    // lets go of it: it is starting, not failing.
    let mut s = three();
    s.run(15_000, &[(5_000, "move web-1 node-b")]);
    assert!(lines_with(&s, "restart").is_empty(), "{}", s.log.join("\n"));
    assert!(lines_with(&s, "recover").is_empty(), "{}", s.log.join("\n"));
    assert_eq!(s.placement()["web-1"], vec!["node-b".to_string()]);
    // One that never answers after its move is still restarted, once its start had its time.
    let mut s = three();
    s.run(
        50_000,
        &[(5_000, "break web-2"), (5_000, "move web-2 node-c")],
    );
    let moved = at(&s, "moved web-2 to node-c");
    let restarted = at(&s, "restart web-2");
    assert!(moved < restarted, "{}", s.log.join("\n"));
}

#[test]
fn a_failed_bring_up_on_the_only_other_host_is_tried_again_until_it_works() {
    // Two hosts: node-a dies while node-b cannot bring anything up for a while (storage or
    // its disk failing for a moment). The VPS is tried again on node-b after a pause, and runs
    // there once node-b can; it is never given up on nor left waiting for "room".
    let mut s = Sim::new(2, 16 * GB);
    s.add_vps("pbx-1", "node-a", GB, 0);
    s.run(
        60_000,
        &[
            (1_000, "break-disk node-b"),
            (5_000, "power-off node-a"),
            (20_000, "mend-disk node-b"),
        ],
    );
    let failed = lines_with(&s, "bringing it up failed");
    assert!(failed.len() >= 2, "{}", s.log.join("\n"));
    assert_eq!(
        s.placement()["pbx-1"],
        vec!["node-b".to_string()],
        "{}",
        s.log.join("\n")
    );
    assert_eq!(
        lines_with(&s, "failed over pbx-1").len(),
        1,
        "{}",
        s.log.join("\n")
    );
    assert!(
        lines_with(&s, "no host has room").is_empty(),
        "{}",
        s.log.join("\n")
    );
    // Paused between tries: not one a tick.
    assert!(failed.len() <= 6, "{}", s.log.join("\n"));
}

#[test]
fn a_bring_up_that_keeps_failing_is_given_up_and_said() {
    let mut s = Sim::new(2, 16 * GB);
    s.add_vps("pbx-1", "node-a", GB, 0);
    s.run(
        240_000,
        &[(1_000, "break-disk node-b"), (5_000, "power-off node-a")],
    );
    assert_eq!(
        lines_with(&s, "bringing it up failed").len(),
        6,
        "{}",
        s.log.join("\n")
    );
    assert_eq!(
        lines_with(&s, "waits for an operator").len(),
        1,
        "{}",
        s.log.join("\n")
    );
}
