//! The build's version: `SERVERWARE_VERSION` when the package command sets it (for example
//! `0.1.0+20261204.e0394d2`), else the workspace's version. Controllers, agents and `sw` report it,
//! and a controller replaces a host's agent whose build differs.
fn main() {
    println!("cargo:rerun-if-env-changed=SERVERWARE_VERSION");
    let version = std::env::var("SERVERWARE_VERSION")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| std::env::var("CARGO_PKG_VERSION").unwrap_or_default());
    println!("cargo:rustc-env=SERVERWARE_BUILD={}", version.trim());
}
