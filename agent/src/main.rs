//! `serverware-agent`: started by the controller over SSH, it answers requests on stdin and pushes
//! netRES samples on stdout, one JSON object per line. It needs no open port and keeps no cluster
//! state. It exits when its input ends (the controller went away) or on `shutdown`.

mod procfs;

use serverware_shared::agent::*;
use std::io::{BufRead, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
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

fn write_frame(out: &mut impl Write, frame: &AgentFrame) -> bool {
    match serde_json::to_string(frame) {
        Ok(line) => writeln!(out, "{line}").and_then(|_| out.flush()).is_ok(),
        Err(_) => true,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--version") {
        println!(
            "serverware-agent {} protocol {PROTOCOL_VERSION}",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let msg = match serde_json::from_str::<AgentRequestFrame>(&line) {
                Ok(f) => Input::Request(f),
                Err(e) => Input::Garbage(e.to_string()),
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
        let _ = tx.send(Input::Closed);
    });

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
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
                            agent_version: env!("CARGO_PKG_VERSION").into(),
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
                        write_frame(
                            &mut out,
                            &AgentFrame::Response {
                                id,
                                response: AgentResponse::Ok,
                            },
                        );
                        return;
                    }
                };
                if !write_frame(&mut out, &AgentFrame::Response { id, response }) {
                    return;
                }
            }
            Ok(Input::Garbage(e)) => {
                let response = AgentResponse::Error {
                    message: format!("request not understood: {e}"),
                };
                if !write_frame(&mut out, &AgentFrame::Response { id: 0, response }) {
                    return;
                }
            }
            Ok(Input::Closed) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Some(iv) = interval {
            if Instant::now() >= next {
                let sample = sampler.sample();
                if !write_frame(&mut out, &AgentFrame::Sample { sample }) {
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
