//! Login flood benchmark: 200 clients send wrong-password logins as fast as they are answered
//! while a logged-in client polls `GET /api/v1/vpses`. Prints the poll's p50 / p99 without and
//! with the flood. Two floods: one from a single address (the login limiter answers it early),
//! and one from 200 addresses of 127.0.0.0/8 with the limiter loosened, as a botnet that never
//! runs out of addresses would look: every attempt then costs a password check, and the bounded
//! hashing must keep the poll fast. Target: p99 with the flood under 3× without.
//!
//! Usage: login-flood-bench [--clients N] [--seconds S]   (scripts/bench.sh login-flood)

use anyhow::{Context, Result};
use serde_json::json;
use serverware_bench::*;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let clients = arg("--clients", 200)? as usize;
    let seconds = arg("--seconds", 30)?;
    actix_rt::System::new().block_on(run(clients, seconds))
}

/// A client logged in with a session cookie, as the dashboard is.
async fn session(base: &str) -> Result<(awc::Client, String)> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .send_json(&json!({"username": "admin", "password": ADMIN_PW}))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(serverware_shared::SESSION_COOKIE))
        .and_then(|v| v.split(';').next())
        .context("login gave no session")?
        .to_string();
    Ok((client, cookie))
}

/// Polls the VPS list back to back until `until`; each poll's time in ms.
async fn poll(
    base: String,
    client: awc::Client,
    cookie: String,
    until: Instant,
) -> Result<Vec<f64>> {
    let mut times = Vec::new();
    while Instant::now() < until {
        let t0 = Instant::now();
        let mut r = client
            .get(format!("{base}/api/v1/vpses"))
            .insert_header(("cookie", cookie.clone()))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let _ = r.body().await;
        anyhow::ensure!(r.status() == 200, "the poll got {}", r.status());
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(times)
}

/// One flooding client: wrong logins back to back, from `from`, until `until`.
async fn flood(
    base: String,
    from: IpAddr,
    n: usize,
    until: Instant,
    seen: Rc<RefCell<BTreeMap<u16, u64>>>,
) {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().local_address(from))
        .timeout(Duration::from_secs(60))
        .finish();
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        let r = client
            .post(format!("{base}/api/v1/auth/login"))
            .send_json(
                &json!({"username": format!("guess{n}x{i}"), "password": "wrong-password-guess"}),
            )
            .await;
        let status = match r {
            Ok(mut r) => {
                let _ = r.body().await;
                r.status().as_u16()
            }
            Err(_) => 0,
        };
        *seen.borrow_mut().entry(status).or_default() += 1;
    }
}

fn report(label: &str, mut times: Vec<f64>) -> f64 {
    let n = times.len();
    let p50 = pct(&mut times, 50.0);
    let p99 = pct(&mut times, 99.0);
    println!("  {label:<44} polls {n:>5}   p50 {p50:>7.1} ms   p99 {p99:>7.1} ms");
    p99
}

async fn measure(
    ctl: &Controller,
    label: &str,
    clients: usize,
    seconds: u64,
    spread: bool,
) -> Result<()> {
    let base = ctl.url.clone();
    let (client, cookie) = session(&base).await?;
    let quiet = poll(
        base.clone(),
        client.clone(),
        cookie.clone(),
        Instant::now() + Duration::from_secs(10),
    )
    .await?;
    println!("{label}");
    let p99_quiet = report("without the flood", quiet);
    let until = Instant::now() + Duration::from_secs(seconds);
    let seen = Rc::new(RefCell::new(BTreeMap::new()));
    let mut floods = Vec::new();
    for n in 0..clients {
        let from = if spread {
            IpAddr::V4(Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8))
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        floods.push(actix_rt::spawn(flood(
            base.clone(),
            from,
            n,
            until,
            seen.clone(),
        )));
    }
    let loud = poll(base.clone(), client, cookie, until).await?;
    for f in floods {
        let _ = f.await;
    }
    let p99_loud = report(&format!("with {clients} clients flooding"), loud);
    let total: u64 = seen.borrow().values().sum();
    let statuses: Vec<String> = seen
        .borrow()
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    println!(
        "  flood: {total} logins in {seconds} s ({:.0}/s), answers {}",
        total as f64 / seconds as f64,
        statuses.join(", ")
    );
    println!(
        "  p99 with the flood / without: {:.2}× (target under 3×) {}",
        p99_loud / p99_quiet,
        if p99_loud < 3.0 * p99_quiet {
            "ok"
        } else {
            "MISSED"
        }
    );
    Ok(())
}

async fn run(clients: usize, seconds: u64) -> Result<()> {
    println!(
        "login flood benchmark: {clients} clients, {seconds} s, on {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    {
        let ctl = start_controller()?;
        measure(
            &ctl,
            "1) from one address, default login limits:",
            clients,
            seconds,
            false,
        )
        .await?;
    }
    {
        // A botnet: every attempt from a fresh address and name, so that no limit applies and
        // each costs a password check.
        let loose = "[login]\naccount_failures = 1000000\naddress_failures = 1000000\n";
        let ctl = start_controller_with(&[("serverware.toml", loose)])?;
        measure(
            &ctl,
            "2) from 200 addresses, login limits off (every attempt checks a password):",
            clients,
            seconds,
            true,
        )
        .await?;
    }
    Ok(())
}
