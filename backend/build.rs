//! The package command sets `SERVERWARE_EMBED_DASHBOARD` to the dashboard's build folder; its
//! files are then compiled into the controller, which serves them when no folder is configured.
use std::fmt::Write as _;
use std::path::Path;

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((
                rel,
                p.canonicalize().unwrap().to_string_lossy().into_owned(),
            ));
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=SERVERWARE_EMBED_DASHBOARD");
    let mut files = Vec::new();
    if let Some(dir) = std::env::var_os("SERVERWARE_EMBED_DASHBOARD").filter(|d| !d.is_empty()) {
        let dir = Path::new(&dir);
        assert!(
            dir.join("index.html").is_file(),
            "SERVERWARE_EMBED_DASHBOARD={} holds no index.html: build the dashboard first",
            dir.display()
        );
        println!("cargo:rerun-if-changed={}", dir.display());
        walk(dir, dir, &mut files);
    }
    let mut code = String::from("pub static FILES: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        writeln!(code, "    ({rel:?}, include_bytes!({abs:?})),").unwrap();
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("dashboard.rs");
    std::fs::write(out, code).unwrap();
}
