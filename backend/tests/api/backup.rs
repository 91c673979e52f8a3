//! The controller's own backups, with the real `serverware` binary: made from the API and the
//! command line beside a running controller, refused to restore while it runs or when damaged,
//! and restored whole (database and keys) once it is stopped.

use crate::support::*;
use crate::vps_lifecycle::get;
use serde_json::Value;

fn run(t: &TestController, args: &[&str]) -> ProcOut {
    let mut c = t.command(None);
    c.args(args).stdout(std::process::Stdio::piped());
    ProcOut::of(c.output().unwrap())
}

async fn users(t: &TestController) -> Vec<String> {
    let admin = t.admin().await;
    get(t, &admin, "/api/v1/users")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect()
}

#[actix_web::test]
async fn a_backup_restores_the_database_and_the_keys_and_only_when_it_should() {
    let mut t = TestController::start_process(None).await;
    let admin = t.admin().await;
    let viewer = t.user_with_role(&admin, "bea", "viewer").await;

    // Made from the API (admins only) and listed.
    let r = viewer.post(t.url("/api/v1/backups")).send().await.unwrap();
    expect_error(r, 403, "forbidden").await;
    let r = admin.post(t.url("/api/v1/backups")).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let made: Value = r.json().await.unwrap();
    assert_eq!(
        made["database"],
        if t.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    let list = get(&t, &admin, "/api/v1/backups").await;
    assert_eq!(list["backups"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["every_hours"], 24, "{list}");
    let dir = t.data_dir().join("backups");
    let file = dir.join(made["name"].as_str().unwrap());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600,
        "a backup holds keys"
    );
    // And from the command line, beside the running controller.
    let o = run(&t, &["backup"]);
    assert!(o.code == 0 && o.stdout.contains("backed up"), "{o:?}");
    let o = run(&t, &["backup", "list"]);
    assert_eq!(o.stdout.lines().count(), 2, "{o:?}");
    let e = get(&t, &admin, "/api/v1/events?action=controller.backup").await;
    assert_eq!(e["events"].as_array().unwrap().len(), 1, "{e}");

    // A change after the backup.
    t.user_with_role(&admin, "after", "viewer").await;
    let key = t.data_dir().join("controller_ed25519");
    let key_before = std::fs::read(&key).unwrap();

    // Not while the controller runs: refused, nothing changed.
    let o = run(&t, &["restore", file.to_str().unwrap()]);
    assert!(o.code != 0 && o.stderr.contains("stop it first"), "{o:?}");
    assert!(users(&t).await.contains(&"after".to_string()));
    t.terminate().await;

    // A damaged backup, wherever the damage is (a file's bytes, a header, the padding, the
    // frame's checksum at the very end): refused, nothing changed.
    let good = std::fs::read(&file).unwrap();
    let damaged = t.data_dir().join("damaged.tar.zst");
    for at in [
        good.len() / 5,
        good.len() / 3,
        good.len() / 2,
        good.len() * 2 / 3,
        good.len() * 4 / 5,
        good.len() - 1,
    ] {
        let mut bytes = good.clone();
        bytes[at] ^= 0x55;
        std::fs::write(&damaged, &bytes).unwrap();
        let o = run(&t, &["restore", damaged.to_str().unwrap()]);
        assert!(o.code != 0, "damaged at byte {at} of {}: {o:?}", good.len());
    }
    // The machine's key is lost (a new machine, say): the restore brings it back.
    std::fs::remove_file(&key).unwrap();
    let o = run(&t, &["restore", file.to_str().unwrap()]);
    assert!(o.code == 0 && o.stdout.contains("restored"), "{o:?}");
    assert_eq!(std::fs::read(&key).unwrap(), key_before);

    // Started again: the database is the backup's (bea, not the later user), whole.
    t.restart(None).await;
    let names = users(&t).await;
    assert!(names.contains(&"bea".to_string()), "{names:?}");
    assert!(!names.contains(&"after".to_string()), "{names:?}");
    let admin = t.admin().await;
    // New rows go on after the restored ones.
    t.user_with_role(&admin, "carla", "viewer").await;
    t.kill();
}
