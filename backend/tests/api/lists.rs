//! Lists of a large site: the VPS list paged (`limit`, `after` or `offset`), ordered (`sort`,
//! `desc`) and filtered (`q`, `name`, `host_id`) on the controller's side, with its total and
//! the next page's link; sizes out of bounds refused naming the field; `sw vps list` reads
//! every page.

use crate::support::*;
use crate::vps_lifecycle::get;
use serde_json::Value;

/// `n` VPS rows (on no host, stopped), named vm-0000… with addresses in 10.99.0.0/16.
fn many_vpses(t: &TestController, n: usize) {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "('vm-{i:04}', '', '10.99.{}.{}', 'vm-{i:04}', 67108864, FALSE, FALSE, 'stopped', \
                 '2026-12-04 00:00:00', '2026-12-04 00:00:00', 'stopped', FALSE, FALSE, 0, '')",
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    t.sql(&format!(
        "INSERT INTO vpses (name, description, ipv4, hostname, memory_limit_bytes, autostart, \
         ha_enabled, status, created_at, updated_at, desired_state, privileged, duplo_enabled, \
         ha_priority, check_ports) VALUES {}",
        rows.join(", ")
    ));
}

async fn page(
    t: &TestController,
    c: &reqwest::Client,
    query: &str,
) -> (Vec<String>, u64, Option<String>) {
    list_page(t, c, "vpses", query).await
}

/// A page of `/api/v1/{list}?{query}`: the names on it, the total, the next page's link.
async fn list_page(
    t: &TestController,
    c: &reqwest::Client,
    list: &str,
    query: &str,
) -> (Vec<String>, u64, Option<String>) {
    let r = c
        .get(t.url(&format!("/api/v1/{list}?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{list}?{query}");
    let total = r.headers()["x-total-count"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let next = r
        .headers()
        .get("link")
        .map(|l| l.to_str().unwrap().to_string());
    let list: Vec<Value> = r.json().await.unwrap();
    let names = list
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    (names, total, next)
}

#[actix_web::test]
async fn the_vps_list_pages_and_filters_on_the_controller_and_bounds_what_it_is_asked() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    many_vpses(&t, 1200);

    // Without a page size: every one, by name.
    let (all, total, next) = page(&t, &admin, "").await;
    assert_eq!((all.len(), total, next), (1200, 1200, None));
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);

    // Pages of 500 by their links: 500, 500, 200, each after the last, nothing twice.
    let viewer = t.user_with_role(&admin, "list-viewer", "viewer").await;
    let mut seen: Vec<String> = Vec::new();
    let mut query = "limit=500".to_string();
    let mut pages = 0;
    loop {
        let (names, total, next) = page(&t, &viewer, &query).await;
        assert_eq!(total, 1200);
        pages += 1;
        seen.extend(names);
        match next {
            Some(link) => {
                let q = link
                    .strip_prefix("</api/v1/vpses?")
                    .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                    .unwrap_or_else(|| panic!("not a next link: {link}"));
                query = q.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, all, "the pages are not the list");

    // Filtered on the controller: by part of a name, of an address, by exact name, with paging.
    let (names, total, _) = page(&t, &admin, "q=vm-001").await;
    assert_eq!(total, 10);
    assert_eq!(names.first().map(String::as_str), Some("vm-0010"));
    let (names, total, _) = page(&t, &admin, "q=10.99.4.").await;
    assert_eq!((names.len(), total), (200, 200));
    let (names, total, next) = page(&t, &admin, "q=VM-00&limit=20&after=vm-0080").await;
    assert_eq!(total, 100);
    assert_eq!(names.len(), 19, "{names:?}");
    assert_eq!(next, None);
    let (names, _, _) = page(&t, &admin, "name=vm-0777").await;
    assert_eq!(names, vec!["vm-0777".to_string()]);
    let (names, total, _) = page(&t, &admin, "host_id=1").await;
    assert_eq!((names.len(), total), (0, 0));

    // Ordered on the controller, and a page anywhere in the list (a list that scrolls to a row).
    let (names, total, next) = page(&t, &admin, "sort=ipv4&desc=true&limit=3").await;
    assert_eq!(total, 1200);
    assert_eq!(names, ["vm-1199", "vm-1198", "vm-1197"]);
    assert_eq!(
        next.as_deref(),
        Some("</api/v1/vpses?limit=3&sort=ipv4&desc=true&offset=3>; rel=\"next\"")
    );
    let (names, _, _) = page(&t, &admin, "sort=ipv4&desc=true&limit=3&offset=3").await;
    assert_eq!(names, ["vm-1196", "vm-1195", "vm-1194"]);
    let (names, _, next) = page(&t, &admin, "offset=1195&limit=10").await;
    assert_eq!(
        names,
        ["vm-1195", "vm-1196", "vm-1197", "vm-1198", "vm-1199"]
    );
    assert_eq!(next, None);
    let (names, _, _) = page(&t, &admin, "desc=true&limit=2&q=vm-00").await;
    assert_eq!(names, ["vm-0099", "vm-0098"]);
    // Without text to match, the database counts and pages: the same answers.
    let (names, total, next) = page(&t, &admin, "desc=true&limit=2").await;
    assert_eq!(
        (total, names),
        (1200, vec!["vm-1199".to_string(), "vm-1198".to_string()])
    );
    assert_eq!(
        next.as_deref(),
        Some("</api/v1/vpses?limit=2&desc=true&offset=2>; rel=\"next\"")
    );
    let (names, _, _) = page(&t, &admin, "desc=true&limit=2&offset=2").await;
    assert_eq!(names, ["vm-1197", "vm-1196"]);
    let (names, total, _) = page(&t, &admin, "name=vm-0777&limit=5").await;
    assert_eq!((names, total), (vec!["vm-0777".to_string()], 1));
    let (names, total, next) = page(&t, &admin, "limit=2&after=vm-1197").await;
    assert_eq!((total, next), (1200, None));
    assert_eq!(names, ["vm-1198", "vm-1199"]);
    // Stopped VPSes on no host all have the same status: ties go by name.
    let (names, _, _) = page(&t, &admin, "sort=status&limit=2&offset=10").await;
    assert_eq!(names, ["vm-0010", "vm-0011"]);

    // Asking too much, or nonsense, is refused naming the field; nothing else changes.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=10000000", "limit"),
        (&*format!("q={}", "x".repeat(65)), "q"),
        ("after=not%20a%20name", "after"),
        ("q=%07", "q"),
        ("sort=popularity", "sort"),
        ("after=vm-0001&offset=3", "after"),
        ("after=vm-0001&sort=cpu", "after"),
    ] {
        let r = admin
            .get(t.url(&format!("/api/v1/vpses?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(r, 422, "invalid").await["field"],
            field,
            "{query}"
        );
    }
    // Ten million events at once: refused, not read.
    let r = admin
        .get(t.url("/api/v1/events?limit=10000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "limit");
    let r = admin
        .get(t.url("/api/v1/vpses?limit=-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a negative page size");
    let r = t
        .anon()
        .get(t.url("/api/v1/vpses?limit=10"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        get(&t, &admin, "/api/v1/vpses")
            .await
            .as_array()
            .unwrap()
            .len(),
        1200
    );

    // Hosts page the same way (rows only: nothing answers at their address).
    let rows: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "('h-{i:02}', '', 'root', '127.0.0.1', {}, 'offline', 1000, 60, 5000, \
                 '2026-12-04 00:00:00', '2026-12-04 00:00:00', 'br0', 24, 2, FALSE)",
                i + 1
            )
        })
        .collect();
    t.sql(&format!(
        "INSERT INTO hosts (name, description, ssh_user, address, ssh_port, status, \
         sample_interval_ms, duplo_interval_secs, heartbeat_timeout_ms, created_at, updated_at, \
         vps_bridge, vps_prefix_len, max_transfers, maintenance) VALUES {}",
        rows.join(", ")
    ));
    let (names, total, next) = list_page(&t, &admin, "hosts", "limit=5").await;
    assert_eq!((names.len(), total), (5, 12));
    assert_eq!(
        next.as_deref(),
        Some("</api/v1/hosts?limit=5&after=h-04>; rel=\"next\"")
    );
    let (names, _, next) = list_page(&t, &admin, "hosts", "limit=5&after=h-09").await;
    assert_eq!(
        (names, next),
        (vec!["h-10".to_string(), "h-11".to_string()], None)
    );
    let (names, total, _) = list_page(&t, &admin, "hosts", "q=h-1").await;
    assert_eq!((names.len(), total), (2, 2));
    // The VPS filter matches the name of a VPS's host too.
    t.sql(
        "UPDATE vpses SET host_id = (SELECT id FROM hosts WHERE name = 'h-03') \
         WHERE name IN ('vm-0500', 'vm-0501')",
    );
    let (names, total, _) = page(&t, &admin, "q=H-03").await;
    assert_eq!(
        (names, total),
        (vec!["vm-0500".into(), "vm-0501".into()], 2)
    );
    let r = admin
        .get(t.url("/api/v1/hosts?limit=5000"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "limit");

    // Tasks page newest first, by `before`.
    let rows: Vec<String> = (0..7)
        .map(|i| {
            format!(
                "('vps.start', 'succeeded', 'vps', '{i}', 100, 0, 'admin', \
                 '2026-12-04 00:00:00', '2026-12-04 00:00:01')"
            )
        })
        .collect();
    t.sql(&format!(
        "INSERT INTO tasks (kind, status, target_type, target_id, progress_pct, bytes_done, \
         created_by, created_at, finished_at) VALUES {}",
        rows.join(", ")
    ));
    let mut query = "limit=3&status=succeeded".to_string();
    let mut ids: Vec<i64> = Vec::new();
    loop {
        let r = admin
            .get(t.url(&format!("/api/v1/tasks?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "tasks?{query}");
        let next = r
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        let page: Vec<Value> = r.json().await.unwrap();
        ids.extend(page.iter().map(|t| t["id"].as_i64().unwrap()));
        match next {
            Some(l) => {
                query = l
                    .strip_prefix("</api/v1/tasks?")
                    .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                    .unwrap_or_else(|| panic!("{l}"))
                    .to_string();
                assert!(query.contains("status=succeeded"), "{query}");
            }
            None => break,
        }
    }
    assert_eq!(ids.len(), 7, "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");

    // sw reads every page (500 at a time) and filters on the controller.
    let token = t.token(&admin, "lists", None).await;
    let env = [
        ("HOME", "/nonexistent"),
        ("SERVERWARE_URL", t.base.as_str()),
        ("SERVERWARE_TOKEN", token.as_str()),
    ];
    let o = crate::sw::sw(&env, &["vps", "list"], "").await;
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout.lines().count(), 1201, "a header and every VPS");
    let o = crate::sw::sw(&env, &["vps", "list", "--filter", "vm-11"], "").await;
    assert_eq!(o.stdout.lines().count(), 101, "{o:?}");
    let o = crate::sw::sw(&env, &["vps", "show", "vm-0999"], "").await;
    assert!(o.code == 0 && o.stdout.contains("10.99.3.250"), "{o:?}");
    let o = crate::sw::sw(&env, &["host", "list"], "").await;
    assert!(o.code == 0 && o.stdout.lines().count() == 13, "{o:?}");
    let o = crate::sw::sw(&env, &["vps", "show", "vm-9999"], "").await;
    assert!(
        o.code == 5 && o.stderr.contains("no VPS named 'vm-9999'"),
        "{o:?}"
    );
}
