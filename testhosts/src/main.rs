//! `sw-testhosts up [N] [--dir DIR] [--control SOCKET]`: a demo cluster of N test hosts for manual
//! use, until Ctrl-C. With `--control`, a Unix socket takes one command per connection and answers
//! `ok` or `error: …`: `off I` (power host I off), `boot I`, `cut I` (its link only), `mend I`.
//! `sw-testhosts sweep [--all]`: remove what killed runs left behind (or every cluster).

use serverware_testhosts::{sweep, Cluster, ClusterOptions};
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: sw-testhosts up [HOSTS] [--dir DIR] [--password PW] [--control SOCKET] | sw-testhosts sweep [--all]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sweep") => {
            let n = sweep(args.iter().any(|a| a == "--all"));
            println!("removed {n} cluster(s)");
            ExitCode::SUCCESS
        }
        Some("up") => {
            let mut opts = ClusterOptions {
                hosts: 2,
                ..Default::default()
            };
            let mut control: Option<std::path::PathBuf> = None;
            let mut it = args.iter().skip(1);
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--dir" => opts.dir = it.next().map(Into::into),
                    "--control" => match it.next() {
                        Some(p) => control = Some(p.into()),
                        None => return usage(),
                    },
                    "--password" => match it.next() {
                        Some(p) => opts.password = p.clone(),
                        None => return usage(),
                    },
                    n => match n.parse() {
                        Ok(n) => opts.hosts = n,
                        Err(_) => return usage(),
                    },
                }
            }
            let cluster = match Cluster::create(opts) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("sw-testhosts: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            println!(
                "{} test host(s) on bridge {} ({}/24):",
                cluster.hosts.len(),
                cluster.bridge,
                cluster.gateway
            );
            for h in &cluster.hosts {
                println!(
                    "  {:<8} {}  password: {}  disk /srv: {} MiB",
                    h.name,
                    h.ssh_url(),
                    h.password,
                    h.disk_mib
                );
            }
            let cluster = std::sync::Arc::new(std::sync::Mutex::new(Some(cluster)));
            if let Some(path) = &control {
                let _ = std::fs::remove_file(path);
                let listener = match std::os::unix::net::UnixListener::bind(path) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("sw-testhosts: cannot listen on {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                };
                let cluster = cluster.clone();
                std::thread::spawn(move || {
                    for conn in listener.incoming().flatten() {
                        serve(&cluster, conn);
                    }
                });
                println!("control socket: {}", path.display());
            }
            println!("Press Ctrl-C to power them off and remove them.");
            let (tx, rx) = std::sync::mpsc::channel();
            if ctrlc::set_handler(move || {
                let _ = tx.send(());
            })
            .is_err()
            {
                eprintln!("sw-testhosts: cannot catch Ctrl-C");
                return ExitCode::FAILURE;
            }
            let _ = rx.recv();
            // Taken out under the lock: a command under way finishes first.
            let c = cluster.lock().unwrap_or_else(|p| p.into_inner()).take();
            drop(c);
            if let Some(path) = &control {
                let _ = std::fs::remove_file(path);
            }
            println!("removed");
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

/// One control command from `conn`, answered on it.
fn serve(cluster: &std::sync::Mutex<Option<Cluster>>, mut conn: std::os::unix::net::UnixStream) {
    use std::io::{BufRead, Write};
    let mut line = String::new();
    if std::io::BufReader::new(&conn).read_line(&mut line).is_err() {
        return;
    }
    let mut words = line.split_whitespace();
    let (verb, host) = (
        words.next().unwrap_or(""),
        words.next().and_then(|i| i.parse::<usize>().ok()),
    );
    let mut guard = cluster.lock().unwrap_or_else(|p| p.into_inner());
    let Some(c) = guard.as_mut() else {
        let _ = writeln!(conn, "error: the hosts are being removed");
        return;
    };
    let answer = match (verb, host) {
        (_, Some(i)) if i >= c.hosts.len() => Err(anyhow::anyhow!("no host {i}")),
        ("off", Some(i)) => c.power_off(i),
        ("boot", Some(i)) => c.boot(i),
        ("cut", Some(i)) => c.cut_link(i),
        ("mend", Some(i)) => c.restore_link(i),
        _ => Err(anyhow::anyhow!(
            "unknown command {line:?} (off|boot|cut|mend HOST)"
        )),
    };
    let _ = match answer {
        Ok(()) => writeln!(conn, "ok"),
        Err(e) => writeln!(conn, "error: {e:#}"),
    };
}
