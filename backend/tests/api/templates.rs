//! Templates through the API: the built-in one, uploads (checked), duplicates, deletion.

use crate::support::*;
use serde_json::Value;

#[actix_web::test]
async fn templates_are_listed_uploaded_checked_and_deleted() {
    let t = TestController::start().await;
    let admin = t.admin().await;
    let list: Vec<Value> = admin
        .get(t.url("/api/v1/templates"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let minimal = list
        .iter()
        .find(|x| x["name"] == "minimal")
        .expect("the built-in template");
    assert_eq!(
        (minimal["status"].as_str(), minimal["os"].as_str()),
        (Some("ready"), Some("busybox"))
    );
    assert!(minimal["size_bytes"].as_i64().unwrap() > 100_000);
    let archive = std::fs::read(t.data_dir().join("storage/templates/minimal.tar.gz")).unwrap();

    // An uploaded root filesystem becomes a template; the same name again is refused.
    let upload = |name: &str, body: Vec<u8>| {
        admin
            .post(t.url(&format!(
                "/api/v1/templates?name={name}&os=busybox%201.35&description=copy"
            )))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
    };
    let r = upload("mini-2", archive.clone()).await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let up: Value = r.json().await.unwrap();
    assert_eq!(
        (
            up["name"].as_str(),
            up["os"].as_str(),
            up["status"].as_str()
        ),
        (Some("mini-2"), Some("busybox 1.35"), Some("ready"))
    );
    let r = upload("mini-2", archive.clone()).await.unwrap();
    assert_eq!(expect_error(r, 409, "conflict").await["field"], "name");
    // Not an archive, or not a root filesystem: refused, nothing stored.
    let r = upload("junk", b"this is not a tar archive".to_vec())
        .await
        .unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "body");
    let r = upload("bad name", archive.clone()).await.unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "name");
    let r = upload("empty", Vec::new()).await.unwrap();
    assert_eq!(expect_error(r, 422, "invalid").await["field"], "body");
    let list: Vec<Value> = admin
        .get(t.url("/api/v1/templates"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list.iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mini-2", "minimal"]);
    let leftovers: Vec<_> = std::fs::read_dir(t.data_dir().join("storage/templates"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");

    // A viewer reads but does not upload; the built-in one cannot be deleted; others can.
    let viewer = t.user_with_role(&admin, "vic", "viewer").await;
    let r = viewer
        .post(t.url("/api/v1/templates?name=v&os=x"))
        .body(archive.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "forbidden").await;
    let r = admin
        .delete(t.url(&format!("/api/v1/templates/{}", minimal["id"])))
        .send()
        .await
        .unwrap();
    expect_error(r, 409, "conflict").await;
    let r = admin
        .delete(t.url(&format!("/api/v1/templates/{}", up["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!t
        .data_dir()
        .join("storage/templates/mini-2.tar.gz")
        .exists());
}
