//! `sw-fleetsim`: plays a fleet of hosts for scale tests and benchmarks (see the crate's
//! documentation for what it simulates and what not).
//!
//! ```text
//! SW_FLEETSIM_PASSWORD=… sw-fleetsim --hosts 200 [--first 127.77.0.1] [--port 2200]
//!     [--agent PATH] [--out hosts.json] [--seed N] [--change-every CUTS] [--vps-link swfleet
//!     [--vps-net 10.77.240.0/20]]
//! ```
//!
//! `--change-every CUTS` (default 6): each VPS's log file changes at every CUTS-th netDUPLO
//! cut (1: at every cut, so that every cycle lands a point).
//! It writes the hosts (name, `ssh://root@ADDRESS:PORT`, host key) as JSON to `--out`, prints
//! `ready N`, then reads commands on stdin, one per line: `off I` (host I loses power), `on I`
//! (it boots), `state I` (its containers), `quit`. It ends when its input ends. With
//! `--vps-link NAME`, running VPSes' addresses (in `--vps-net`, default 10.77.240.0/20) answer
//! pings from a network namespace NAME reached by a veth pair NAME (made here, removed at the
//! end; see `net.rs`).

use serverware_fleetsim::{Fleet, Options};
use std::io::Write;
use tokio::io::AsyncBufReadExt;

fn usage() -> ! {
    eprintln!(
        "usage: SW_FLEETSIM_PASSWORD=… sw-fleetsim --hosts N [--first 127.77.0.1] [--port 2200] [--agent PATH] [--out FILE] [--seed N] [--change-every CUTS] [--vps-link NAME [--vps-net A.B.C.D/LEN]]"
    );
    std::process::exit(2)
}

/// Enough descriptors for a listener and a connection per host.
fn raise_open_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read the struct given; results are checked.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .map(|i| args.get(i + 1).cloned().unwrap_or_else(|| usage()))
    };
    let hosts: usize = flag("--hosts")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| usage());
    let first = flag("--first")
        .map(|a| a.parse().unwrap_or_else(|_| usage()))
        .unwrap_or(std::net::Ipv4Addr::new(127, 77, 0, 1));
    let port = flag("--port")
        .map(|p| p.parse().unwrap_or_else(|_| usage()))
        .unwrap_or(2200);
    let seed = flag("--seed")
        .map(|p| p.parse().unwrap_or_else(|_| usage()))
        .unwrap_or(1);
    let change_every = flag("--change-every")
        .map(|p| {
            p.parse()
                .ok()
                .filter(|n| *n >= 1)
                .unwrap_or_else(|| usage())
        })
        .unwrap_or(serverware_fleetsim::DEFAULT_CHANGE_EVERY);
    let password = std::env::var("SW_FLEETSIM_PASSWORD").unwrap_or_default();
    if password.is_empty() {
        anyhow::bail!("set SW_FLEETSIM_PASSWORD: the hosts' root password");
    }
    let agent_sha256 = match flag("--agent") {
        Some(path) => {
            use sha2::Digest;
            let bin = std::fs::read(&path)
                .map_err(|e| anyhow::anyhow!("cannot read the agent {path}: {e}"))?;
            Some(hex::encode(sha2::Sha256::digest(&bin)))
        }
        None => None,
    };
    raise_open_files();
    let net = match flag("--vps-link") {
        Some(link) => Some(serverware_fleetsim::net::Net::start(
            &link,
            &flag("--vps-net").unwrap_or_else(|| "10.77.240.0/20".into()),
        )?),
        None => None,
    };
    let fleet = Fleet::start(Options {
        hosts,
        first,
        port,
        password,
        agent_sha256,
        seed,
        net,
        change_every,
    })
    .await?;
    let described = serde_json::to_string_pretty(&fleet.describe())?;
    match flag("--out") {
        Some(path) => std::fs::write(&path, described)?,
        None => println!("{described}"),
    }
    println!("ready {hosts}");
    std::io::stdout().flush()?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        // Ended by its input, `quit`, SIGTERM or Ctrl-C: the dummy interface goes with it.
        let line = tokio::select! {
            l = lines.next_line() => match l? { Some(l) => l, None => break },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let index = |w: Option<&&str>| w.and_then(|n| n.parse::<usize>().ok());
        let reply = match (words.first().copied(), index(words.get(1))) {
            (Some("off"), Some(i)) if i < hosts => {
                fleet.power_off(i);
                "ok".to_string()
            }
            (Some("on"), Some(i)) if i < hosts => match fleet.power_on(i).await {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("error {e}"),
            },
            (Some("state"), Some(i)) if i < hosts => {
                serde_json::to_string(&fleet.hosts[i].containers())?
            }
            (Some("quit"), _) => break,
            (None, _) => continue,
            _ => format!("error unknown command: {line}"),
        };
        println!("{reply}");
        std::io::stdout().flush()?;
    }
    drop(fleet);
    Ok(())
}
