//! `sw-testhosts up [N] [--dir DIR]`: a demo cluster of N test hosts for manual use, until Ctrl-C.
//! `sw-testhosts sweep [--all]`: remove what killed runs left behind (or every cluster).

use serverware_testhosts::{sweep, Cluster, ClusterOptions};
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: sw-testhosts up [HOSTS] [--dir DIR] [--password PW] | sw-testhosts sweep [--all]"
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
            let mut it = args.iter().skip(1);
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--dir" => opts.dir = it.next().map(Into::into),
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
            drop(cluster);
            println!("removed");
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}
