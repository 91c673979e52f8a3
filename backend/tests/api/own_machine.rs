//! The controller's own machine added like any other host, at `ssh://root@127.0.0.1:<port>`:
//! its samples are this machine's.

use crate::support::*;
use serde_json::{json, Value};
use serverware_testhosts::LoopbackHost;
use std::process::Command;

fn root_fs_size() -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=size", "/"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn mem_total() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[actix_web::test]
async fn the_controllers_own_machine_is_a_host_like_any_other() {
    let local = LoopbackHost::start("loopback-password-1").unwrap();
    let t = TestController::start().await;
    let admin = t.admin().await;
    let probe: Value = admin
        .post(t.url("/api/v1/hosts/probe"))
        .json(&json!({"address": local.ssh_url()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = admin
        .post(t.url("/api/v1/hosts"))
        .json(&json!({"name": "controller", "address": local.ssh_url(), "host_key": probe["host_key"], "password": local.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let h = crate::hosts_api::wait_host(&t, &admin, id, "online with a sample", |h| {
        h["status"] == "online" && h["sample"].is_object()
    })
    .await;
    let s = &h["sample"];
    assert_eq!(s["memory"]["total"].as_u64().unwrap(), mem_total());
    let root = s["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["mount_point"] == "/")
        .expect("the root filesystem");
    assert_eq!(root["size_bytes"].as_u64().unwrap(), root_fs_size());
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let reported = s["uptime_secs"].as_f64().unwrap();
    assert!((uptime - reported).abs() < 120.0, "{uptime} vs {reported}");
    // Adding it changed nothing on the real machine: the controller's key went to the host's
    // private ~/.ssh.
    let real = std::fs::read_to_string("/root/.ssh/authorized_keys").unwrap_or_default();
    let installed = std::fs::read_to_string(local.dir.join("root_ssh/authorized_keys")).unwrap();
    let key = installed
        .split_whitespace()
        .nth(1)
        .expect("the controller's key");
    assert!(!real.contains(key));
}
