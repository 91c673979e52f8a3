//! `sw` as a process, where no controller is needed: help, completions, and the exit codes of
//! what goes wrong before the controller answers.

use std::process::Command;

fn sw(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sw"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SERVERWARE_") || k == "XDG_CONFIG_HOME" {
            c.env_remove(k);
        }
    }
    let o = c.envs(env.iter().copied()).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn help_completions_and_exit_codes() {
    let (code, out, _) = sw(&[], &["--help"]);
    assert!(code == 0 && out.contains("Exit codes"), "{out}");
    let (code, out, _) = sw(&[], &["vps", "create", "--help"]);
    assert!(code == 0 && out.contains("--template"), "{out}");
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, _) = sw(&[], &["completions", shell]);
        assert!(
            code == 0 && out.contains("vps") && out.contains("failover"),
            "{shell}: {out}"
        );
    }
    // A wrong command line: 2.
    let (code, _, err) = sw(&[], &["vps", "frobnicate"]);
    assert_eq!(code, 2, "{err}");
    // Not logged in: 4, saying how to.
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = sw(&[("HOME", home.path().to_str().unwrap())], &["vps", "list"]);
    assert!(code == 4 && err.contains("sw login"), "{code}: {err}");
    // Nobody listening: 7.
    let (code, _, err) = sw(
        &[
            ("HOME", "/nonexistent"),
            ("SERVERWARE_URL", "http://127.0.0.1:1"),
            ("SERVERWARE_TOKEN", "x"),
        ],
        &["vps", "list"],
    );
    assert!(
        code == 7 && err.contains("cannot reach the controller"),
        "{code}: {err}"
    );
    // Not a URL: 2.
    let (code, _, err) = sw(
        &[
            ("SERVERWARE_URL", "controller:8080"),
            ("SERVERWARE_TOKEN", "x"),
        ],
        &["vps", "list"],
    );
    assert!(
        code == 2 && err.contains("not a controller URL"),
        "{code}: {err}"
    );
}
