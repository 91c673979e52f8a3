//! `serverware-agent`: started by the controller over SSH, it answers requests on stdin and pushes
//! netRES samples on stdout, one JSON object per line. It needs no open port and keeps no cluster
//! state. It exits when its input ends (the controller went away) or on `shutdown`.

mod drill;
mod firstboot;
mod guard;
mod idmap;
mod journal;
mod lease;
mod lxc;
mod procfs;
mod restore;
mod rootfs;
mod scan;
mod standby;
mod subids;
mod xattr;

use serverware_shared::agent::*;
use std::io::{BufRead, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

enum Input {
    Request(AgentRequestFrame),
    Garbage(String),
    Closed,
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

enum Line {
    Whole,
    TooLong,
    Eof,
}

/// Reads one line into `line` (without its newline), keeping at most `max` bytes: the rest of a
/// longer line is skipped as it arrives, never held.
fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    line.clear();
    let mut too_long = false;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(if line.is_empty() && !too_long {
                Line::Eof
            } else if too_long {
                Line::TooLong
            } else {
                Line::Whole
            });
        }
        let (chunk, end) = match buf.iter().position(|b| *b == b'\n') {
            Some(p) => (&buf[..p], Some(p + 1)),
            None => (buf, None),
        };
        if !too_long && line.len() + chunk.len() <= max {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line.clear();
        }
        let used = end.unwrap_or(buf.len());
        r.consume(used);
        if end.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Whole });
        }
    }
}

/// Frames go out whole, one per line, from the main loop and from VPS operations alike.
#[derive(Clone)]
struct Out(Arc<Mutex<std::io::Stdout>>);

impl Out {
    fn write(&self, frame: &AgentFrame) -> bool {
        match serde_json::to_string(frame) {
            Ok(line) => {
                let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
                writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
            }
            Err(_) => true,
        }
    }
}

/// VPS operations can take seconds (a clean stop waits for the VPS): each runs on its own
/// thread so samples keep flowing, and answers when done.
fn vps_request(request: AgentRequest, journal: &Option<journal::Journal>) -> AgentResponse {
    let done = |r: Result<(), String>| match r {
        Ok(()) => AgentResponse::Ok,
        Err(message) => AgentResponse::Error { message },
    };
    match request {
        AgentRequest::VpsDefine { spec } => done(lxc::define(&spec)),
        AgentRequest::VpsApplyLimits { spec } => done(lxc::apply_limits(&spec)),
        AgentRequest::VpsStart { name } => done(lxc::start(&name)),
        AgentRequest::VpsStop { name, timeout_secs } => match lxc::stop(&name, timeout_secs) {
            Ok(forced) => AgentResponse::Stopped { forced },
            Err(message) => AgentResponse::Error { message },
        },
        AgentRequest::VpsDestroy { name } => {
            if let Some(j) = journal {
                let _ = j.forget(&name);
            }
            done(lxc::destroy(&name))
        }
        AgentRequest::DuploCut { name } => match (journal, lxc::rootfs_of(&name)) {
            (_, Err(message)) => AgentResponse::Error { message },
            (None, Ok(_)) => AgentResponse::DuploCut {
                cut: 0,
                changes: serverware_shared::duplo::Changes::Full {
                    reason: "this host's agent has no change journal (inotify failed)".into(),
                },
            },
            (Some(j), Ok(root)) => match j.cut(&name, &root) {
                Ok((cut, changes)) => AgentResponse::DuploCut { cut, changes },
                Err(message) => AgentResponse::Error { message },
            },
        },
        AgentRequest::DuploAck { name, cut } => done(match journal {
            Some(j) => j.ack(&name, cut),
            None => Ok(()),
        }),
        AgentRequest::DuploForget { name } => done(match journal {
            Some(j) => j.forget(&name),
            None => Ok(()),
        }),
        AgentRequest::VpsFreeze { name, frozen } => done(lxc::freeze(&name, frozen)),
        AgentRequest::DrillNet { drill, probe } => done(match probe {
            Some(p) => drill::up(drill, &p),
            None => drill::down(drill),
        }),
        AgentRequest::DrillCheck { drill, ipv4, ports } => done(drill::check(drill, &ipv4, &ports)),
        AgentRequest::VpsList => AgentResponse::VpsList { vpses: lxc::list() },
        AgentRequest::StandbyList => AgentResponse::Standbys {
            copies: standby::list(),
        },
        AgentRequest::StandbyDrop { vps_id } => done(standby::remove(vps_id)),
        AgentRequest::Lease {
            epoch,
            base_ms,
            ttl_ms,
            ha,
            peers,
            key,
        } => done(
            lease::renew(lease::Renewal {
                epoch,
                base_ms,
                ttl_ms,
                ha,
                peers,
                key: &key,
            })
            .map(|_| ()),
        ),
        other => AgentResponse::Error {
            message: format!("not a VPS request: {other:?}"),
        },
    }
}

/// `rootfs-import NAME [--gzip] [--ids FROM:TO]` and `rootfs-export NAME`: bulk transfers on a
/// channel of their own.
fn bulk(args: &[String]) -> std::process::ExitCode {
    let flag = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
    };
    let r = match (args.first().map(String::as_str), args.get(1)) {
        (Some("rootfs-import"), Some(name)) => {
            let shift = match flag("--ids").map(|s| idmap::Shift::parse(s)) {
                None => Ok(idmap::Shift { from: 0, to: 0 }),
                Some(r) => r,
            };
            shift.and_then(|shift| {
                let resume = args.iter().any(|a| a == "--resume");
                lxc::import(name, args.iter().any(|a| a == "--gzip"), shift, resume).map(|summary| {
                    println!("{summary}");
                })
            })
        }
        (Some("rootfs-export"), Some(name)) => lxc::export(name),
        (Some("console"), Some(name)) => lxc::console(name),
        (Some("guard"), None) => guard::run(),
        (Some("firstboot"), None) => firstboot::run_firstboot(),
        (Some("rootfs-restore"), Some(name)) => {
            let base = match flag("--ids").map(|s| s.parse::<u32>()) {
                None => Ok(0),
                Some(Ok(b)) if b == 0 || serverware_shared::agent::id_base_ok(b) => Ok(b),
                Some(_) => Err("--ids takes the VPS's id base (or 0)".to_string()),
            };
            let seed = match flag("--seed").map(|s| s.parse::<i64>()) {
                None => Ok(None),
                Some(Ok(id)) if id > 0 => Ok(Some(id)),
                Some(_) => Err("--seed takes a VPS id".to_string()),
            };
            base.and_then(|base| seed.and_then(|seed| lxc::restore(name, base, seed)))
        }
        (Some("rootfs-standby"), Some(id)) => {
            let base = match flag("--ids").map(|s| s.parse::<u32>()) {
                None => Ok(0),
                Some(Ok(b)) if b == 0 || serverware_shared::agent::id_base_ok(b) => Ok(b),
                Some(_) => Err("--ids takes the VPS's id base (or 0)".to_string()),
            };
            let cycle = flag("--cycle")
                .and_then(|c| c.parse::<u64>().ok())
                .ok_or_else(|| "--cycle takes the restore point's cycle".to_string());
            match id.parse::<i64>() {
                Ok(id) if id > 0 => base.and_then(|base| {
                    cycle.and_then(|cycle| standby::apply(id, cycle, base))
                }),
                _ => Err("rootfs-standby takes a VPS id".into()),
            }
        }
        (Some("rootfs-scan"), Some(name)) => {
            let base = match flag("--ids").map(|s| s.parse::<u32>()) {
                None => Ok(0),
                Some(Ok(b)) if b == 0 || serverware_shared::agent::id_base_ok(b) => Ok(b),
                Some(_) => Err("--ids takes the VPS's id base (or 0)".to_string()),
            };
            base.and_then(|base| {
                lxc::scan(
                    name,
                    base,
                    args.iter().any(|a| a == "--request"),
                    args.iter().any(|a| a == "--freeze"),
                )
            })
        }
        _ => Err(
            "usage: serverware-agent rootfs-import NAME [--gzip] [--ids FROM:TO] | rootfs-export NAME | rootfs-scan NAME [--ids BASE] [--request] [--freeze] | rootfs-restore NAME [--ids BASE] [--seed ID] | rootfs-standby ID --cycle C [--ids BASE] | console NAME | guard"
                .into(),
        ),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serverware-agent: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version") {
        println!(
            "serverware-agent {} protocol {PROTOCOL_VERSION}",
            serverware_shared::BUILD
        );
        return std::process::ExitCode::SUCCESS;
    }
    if !args.is_empty() {
        return bulk(&args);
    }
    serve();
    std::process::ExitCode::SUCCESS
}

fn serve() {
    // Heartbeats ahead of the VPSes' own work: on a saturated host they come late, not never
    // (a heartbeat missed for long enough is a failover). Set before any thread starts (Linux
    // keeps a nice value per thread, and new threads inherit it). Without privilege it stays.
    // SAFETY: setpriority on this thread; no memory effects.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -5) };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut line = Vec::new();
        loop {
            let msg = match read_line(&mut input, &mut line, MAX_REQUEST_LINE) {
                Ok(Line::Eof) | Err(_) => break,
                Ok(Line::TooLong) => Input::Garbage(format!(
                    "a request line is longer than {} KiB; it was not read",
                    MAX_REQUEST_LINE >> 10
                )),
                Ok(Line::Whole) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(Line::Whole) => match serde_json::from_slice::<AgentRequestFrame>(&line) {
                    Ok(f) => Input::Request(f),
                    Err(e) => Input::Garbage(e.to_string()),
                },
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
        let _ = tx.send(Input::Closed);
    });

    let out = Out(Arc::new(Mutex::new(std::io::stdout())));
    // The guard stops the HA VPSes when netMON's lease runs out, whether this agent lives or not.
    guard::spawn();
    let journal = match journal::Journal::start() {
        Ok(j) => Some(j),
        Err(e) => {
            eprintln!("serverware-agent: no change journal: {e}");
            None
        }
    };
    let interval_ms = Arc::new(std::sync::atomic::AtomicU64::new(1000));
    // Per-VPS figures come from their own thread: slow figures never delay the heartbeat.
    let vps_figures = lxc::figures(interval_ms.clone());
    let mut interval: Option<Duration> = None; // sampling starts after hello
    let mut sampler = procfs::Sampler::new();
    let mut next = Instant::now();
    loop {
        let wait = match interval {
            Some(_) => next.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Input::Request(AgentRequestFrame { id, request })) => {
                let response = match request {
                    AgentRequest::Hello { .. } => {
                        if interval.is_none() {
                            interval = Some(Duration::from_secs(1));
                            sampler = procfs::Sampler::new();
                            next = Instant::now() + Duration::from_secs(1);
                        }
                        AgentResponse::Hello {
                            protocol: PROTOCOL_VERSION,
                            agent_version: serverware_shared::BUILD.into(),
                            hostname: first_line("/proc/sys/kernel/hostname"),
                            kernel: first_line("/proc/sys/kernel/osrelease"),
                            cpu_model: cpu_model(),
                            cpus: std::thread::available_parallelism()
                                .map(|n| n.get() as u32)
                                .unwrap_or(1),
                        }
                    }
                    AgentRequest::SetInterval { millis }
                        if (MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&millis) =>
                    {
                        interval = Some(Duration::from_millis(millis));
                        interval_ms.store(millis, std::sync::atomic::Ordering::Relaxed);
                        next = Instant::now() + Duration::from_millis(millis);
                        AgentResponse::Ok
                    }
                    AgentRequest::SetInterval { .. } => AgentResponse::Error {
                        message: format!(
                            "the interval must be {MIN_INTERVAL_MS}–{MAX_INTERVAL_MS} ms"
                        ),
                    },
                    AgentRequest::Ping => AgentResponse::Pong,
                    AgentRequest::Shutdown => {
                        out.write(&AgentFrame::Response {
                            id,
                            response: AgentResponse::Ok,
                        });
                        return;
                    }
                    vps => {
                        let out = out.clone();
                        let journal = journal.clone();
                        std::thread::spawn(move || {
                            let response = vps_request(vps, &journal);
                            out.write(&AgentFrame::Response { id, response });
                        });
                        continue;
                    }
                };
                if !out.write(&AgentFrame::Response { id, response }) {
                    return;
                }
            }
            Ok(Input::Garbage(e)) => {
                let response = AgentResponse::Error {
                    message: format!("request not understood: {e}"),
                };
                if !out.write(&AgentFrame::Response { id: 0, response }) {
                    return;
                }
            }
            Ok(Input::Closed) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Some(iv) = interval {
            if Instant::now() >= next {
                let mut sample = sampler.sample();
                sample.vpses = vps_figures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if !out.write(&AgentFrame::Sample { sample }) {
                    return;
                }
                // Keep the cadence; after a long stall, start again from now.
                next += iv;
                if next < Instant::now() {
                    next = Instant::now() + iv;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_not_held() {
        let long = "x".repeat(100);
        let input = format!("short\n{long}\nafter\nlast");
        let mut r = std::io::BufReader::with_capacity(7, input.as_bytes());
        let mut line = Vec::new();
        let mut got = Vec::new();
        loop {
            match read_line(&mut r, &mut line, 10).unwrap() {
                Line::Eof => break,
                Line::TooLong => got.push("<too long>".to_string()),
                Line::Whole => got.push(String::from_utf8(line.clone()).unwrap()),
            }
            assert!(line.len() <= 10);
        }
        assert_eq!(got, ["short", "<too long>", "after", "last"]);
    }
}
