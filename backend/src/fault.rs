//! Fault injection for the crash tests: in debug (test) builds, `SERVERWARE_FAULT=KIND:STEP`
//! kills the controller with SIGKILL right after operation KIND (`vps.move` …) recorded STEP, and
//! `SERVERWARE_FAULT=transfer:BYTES` once a root-filesystem transfer has passed BYTES. Release
//! builds have no such setting: the functions are empty there. netDUPLO's commit has two:
//! `duplo:synced` (its chunks durable, its restore point not yet written) and `duplo:committed`
//! (the point written, the journal not yet told).

/// Called after every recorded step.
pub fn point(kind: &str, step: &str) {
    #[cfg(debug_assertions)]
    if let Ok(f) = std::env::var("SERVERWARE_FAULT") {
        if f.split_once(':') == Some((kind, step)) {
            die(&format!("{kind} after step {step}"));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = (kind, step);
}

/// Called as a transfer streams.
pub fn transfer(bytes: u64) {
    #[cfg(debug_assertions)]
    if let Ok(f) = std::env::var("SERVERWARE_FAULT") {
        if let Some(("transfer", n)) = f.split_once(':') {
            if n.parse::<u64>().is_ok_and(|n| bytes >= n) {
                die(&format!("a transfer after {bytes} bytes"));
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = bytes;
}

#[cfg(debug_assertions)]
fn die(at: &str) {
    eprintln!("SERVERWARE_FAULT: killing the controller in {at}");
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();
    // The signal arrives at once; nothing after this point may run.
    loop {
        std::thread::park();
    }
}
