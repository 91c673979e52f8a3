//! The simulated agent: the real protocol (`shared::agent`, one JSON object per line each way),
//! answered from the host's records instead of LXC and /proc. Samples go out at the interval
//! the controller asks, with figures that move like a busy host's; the lease is kept as the
//! guard keeps it (HA VPSes stop when it runs out).

use crate::server::{Exit, Out};
use crate::{Container, SimHost};
use serverware_shared::agent::*;
use serverware_shared::duplo::{ChangedPath, Changes, PathBytes};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A small deterministic generator for the figures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

const GIB: u64 = 1 << 30;

fn sample(host: &SimHost, rng: &mut Rng, interval: Duration) -> HostSample {
    let boot_ms = host.boot_ms();
    let secs = interval.as_secs_f64();
    let mut s = host.lock();
    // The guard: HA VPSes stop when the lease runs out.
    if let Some((until, ha)) = s.lease.clone() {
        if boot_ms > until {
            for name in ha {
                if let Some(c) = s.containers.get_mut(&name) {
                    host.set_running(c, false);
                }
            }
            s.lease = None;
        }
    }
    let mut vpses = Vec::with_capacity(s.containers.len());
    let mut used = 2 * GIB;
    let mut busy = 3.0;
    for (name, c) in s.containers.iter_mut() {
        let limit = c.spec.as_ref().map_or(0, |sp| sp.memory_limit_bytes);
        let (cpu, mem, rx, tx) = if c.running {
            let cpu = 2.0 + 30.0 * rng.next();
            let mem = (limit.max(256 << 20) as f64 * (0.2 + 0.3 * rng.next())) as u64;
            let (rx, tx) = (20_000.0 * rng.next(), 50_000.0 * rng.next());
            c.rx_total += (rx * secs) as u64;
            c.tx_total += (tx * secs) as u64;
            (cpu, mem, rx, tx)
        } else {
            (0.0, 0, 0.0, 0.0)
        };
        used += mem;
        busy += cpu / 8.0;
        vpses.push(VpsSample {
            name: name.clone(),
            state: if c.running { "running" } else { "stopped" }.into(),
            init_pid: c.running.then_some(c.pid),
            uptime_secs: if c.running {
                c.since.elapsed().as_secs()
            } else {
                0
            },
            processes: if c.running { 12 } else { 0 },
            cpu_pct: cpu,
            memory_used: mem,
            memory_limit: limit,
            rx_bytes_per_sec: rx,
            tx_bytes_per_sec: tx,
            rx_bytes_total: c.rx_total,
            tx_bytes_total: c.tx_total,
            disk_used_bytes: 600 << 20,
        });
    }
    drop(s);
    let busy = busy.min(100.0);
    let total = 64 * GIB;
    let cpus = (0..8)
        .map(|_| {
            let b = (busy * (0.7 + 0.6 * rng.next())).min(100.0);
            CpuSample {
                user: b * 0.7,
                nice: 0.0,
                system: b * 0.25,
                iowait: 0.5,
                irq: 0.0,
                softirq: b * 0.05,
                idle: (100.0 - b - 0.5).max(0.0),
            }
        })
        .collect();
    HostSample {
        taken_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        boot_ms,
        uptime_secs: boot_ms / 1000,
        load: [busy / 12.5, busy / 13.0, busy / 14.0],
        cpus,
        interrupts_per_sec: 2000.0 + 1000.0 * rng.next(),
        memory: MemorySample {
            total,
            used: used.min(total),
            free: total.saturating_sub(used),
            shared: 64 << 20,
            buffers: 256 << 20,
            cached: 4 * GIB,
            swap_total: 0,
            swap_used: 0,
        },
        filesystems: vec![FilesystemSample {
            mount_point: "/var/lib/lxc".into(),
            device: "/dev/sda3".into(),
            fs_type: "ext4".into(),
            size_bytes: 900 * GIB,
            used_bytes: 120 * GIB,
            available_bytes: 780 * GIB,
            use_pct: 13.3,
        }],
        disks: vec![DiskSample {
            device: "sda".into(),
            transfers_per_sec: 40.0 * rng.next(),
            read_bytes_per_sec: 200_000.0 * rng.next(),
            written_bytes_per_sec: 500_000.0 * rng.next(),
            read_bytes_total: boot_ms * 100,
            written_bytes_total: boot_ms * 250,
        }],
        interfaces: vec![InterfaceSample {
            name: "eth0".into(),
            rx_bytes_per_sec: 300_000.0 * rng.next(),
            tx_bytes_per_sec: 500_000.0 * rng.next(),
            rx_bytes_total: boot_ms * 300,
            tx_bytes_total: boot_ms * 500,
        }],
        vpses,
    }
}

fn send(out: &Out, frame: &AgentFrame) -> bool {
    match serde_json::to_string(frame) {
        Ok(mut line) => {
            line.push('\n');
            out.send((false, line.into_bytes())).is_ok()
        }
        Err(_) => true,
    }
}

/// `rootfs-import NAME`: the container gets its root filesystem (the archive was read and
/// dropped).
pub(crate) fn import(host: &SimHost, name: &str) -> Result<(), String> {
    let mut s = host.lock();
    let pid = s.next_pid;
    s.next_pid += 1;
    s.containers
        .entry(name.to_string())
        .or_insert_with(|| Container::new(pid));
    Ok(())
}

fn answer(host: &SimHost, request: AgentRequest) -> AgentResponse {
    let ok = |r: Result<(), String>| match r {
        Ok(()) => AgentResponse::Ok,
        Err(message) => AgentResponse::Error { message },
    };
    let missing = |name: &str| format!("{name} is not a container on this host");
    let mut s = host.lock();
    match request {
        AgentRequest::VpsDefine { spec } => {
            let pid = s.next_pid;
            s.next_pid += 1;
            let c = s
                .containers
                .entry(spec.name.clone())
                .or_insert_with(|| Container::new(pid));
            c.spec = Some(spec);
            AgentResponse::Ok
        }
        AgentRequest::VpsApplyLimits { spec } => ok(match s.containers.get_mut(&spec.name) {
            Some(c) => {
                c.spec = Some(spec);
                Ok(())
            }
            None => Err(missing(&spec.name)),
        }),
        AgentRequest::VpsStart { name } => {
            // As the guard refuses: an HA VPS does not start once its lease ran out.
            let expired = s
                .lease
                .as_ref()
                .is_some_and(|(until, ha)| ha.contains(&name) && host.boot_ms() > *until);
            let pid = s.next_pid;
            s.next_pid += 1;
            ok(match s.containers.get_mut(&name) {
                Some(c) if c.spec.is_none() => Err(format!("{name} has no configuration")),
                Some(_) if expired => Err(format!("{name}: this host's lease ran out")),
                Some(c) => {
                    if !c.running {
                        host.set_running(c, true);
                        c.since = Instant::now();
                        c.pid = pid;
                    }
                    Ok(())
                }
                None => Err(missing(&name)),
            })
        }
        AgentRequest::VpsStop { name, .. } => match s.containers.get_mut(&name) {
            Some(c) => {
                host.set_running(c, false);
                AgentResponse::Stopped { forced: false }
            }
            None => AgentResponse::Error {
                message: missing(&name),
            },
        },
        AgentRequest::VpsDestroy { name } => {
            if let Some(mut c) = s.containers.remove(&name) {
                host.set_running(&mut c, false);
            }
            AgentResponse::Ok
        }
        AgentRequest::VpsFreeze { name, .. } => ok(if s.containers.contains_key(&name) {
            Ok(())
        } else {
            Err(missing(&name))
        }),
        AgentRequest::VpsList => AgentResponse::VpsList {
            vpses: s
                .containers
                .iter()
                .map(|(n, c)| VpsState {
                    name: n.clone(),
                    state: if c.running { "running" } else { "stopped" }.into(),
                    init_pid: c.running.then_some(c.pid),
                })
                .collect(),
        },
        AgentRequest::DuploCut { name } => {
            s.cut += 1;
            let cut = s.cut;
            match s.containers.get_mut(&name) {
                Some(c) => AgentResponse::DuploCut {
                    cut,
                    changes: journal_cut(c, cut, host.change_every),
                },
                None => AgentResponse::Error {
                    message: missing(&name),
                },
            }
        }
        AgentRequest::DuploAck { name, cut } => {
            if let Some(j) = s
                .containers
                .get_mut(&name)
                .and_then(|c| c.journal.as_mut())
                .filter(|j| j.cut == cut)
            {
                j.pending = false;
                j.pending_full = false;
            }
            AgentResponse::Ok
        }
        AgentRequest::DuploForget { name } => {
            if let Some(c) = s.containers.get_mut(&name) {
                c.journal = None;
            }
            AgentResponse::Ok
        }
        AgentRequest::StandbyList => AgentResponse::Standbys {
            copies: s
                .standbys
                .iter()
                .map(|(id, cycle)| StandbyCopy {
                    vps_id: *id,
                    cycle: Some(*cycle),
                })
                .collect(),
        },
        AgentRequest::StandbyDrop { vps_id } => {
            s.standbys.remove(&vps_id);
            AgentResponse::Ok
        }
        AgentRequest::Lease {
            base_ms,
            ttl_ms,
            ha,
            ..
        } => {
            s.lease = Some((base_ms.saturating_add(ttl_ms), ha));
            AgentResponse::Ok
        }
        other => AgentResponse::Error {
            message: format!("not simulated: {other:?}"),
        },
    }
}

/// A cut of a simulated VPS's journal (as the agent's, `agent/src/journal.rs`): full when it
/// starts and until that full compare is acknowledged, else the log file if it changed since
/// the last acknowledged cut, else nothing.
fn journal_cut(c: &mut crate::Container, cut: u64, change_every: u64) -> Changes {
    c.cuts += 1;
    let version = c.cuts / change_every;
    let Some(j) = c.journal.as_mut() else {
        c.journal = Some(crate::SimJournal {
            cut,
            version,
            pending: false,
            pending_full: true,
        });
        return Changes::Full {
            reason: "the journal starts (the simulated agent started, or it was reset)".into(),
        };
    };
    j.cut = cut;
    if j.version != version {
        j.version = version;
        j.pending = true;
    }
    if j.pending_full {
        return Changes::Full {
            reason: "the journal's full compare has not landed yet".into(),
        };
    }
    Changes::Paths {
        paths: if j.pending {
            vec![ChangedPath {
                path: PathBytes(crate::scan::LOG.as_bytes().to_vec()),
                deep: false,
            }]
        } else {
            Vec::new()
        },
    }
}

/// The agent's main loop on one channel, until its input ends, it is told to shut down, or the
/// host loses power.
pub(crate) async fn serve(
    host: Arc<SimHost>,
    mut input: mpsc::UnboundedReceiver<Vec<u8>>,
    out: Out,
    born: u64,
) -> Exit {
    let mut power = host.power.subscribe();
    if *power.borrow_and_update() != born {
        return 1;
    }
    let mut rng = Rng(host.seed | 1);
    let mut buf: Vec<u8> = Vec::new();
    let mut interval: Option<Duration> = None;
    let mut next = tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        tokio::select! {
            _ = power.changed() => return 1,
            _ = tokio::time::sleep_until(next) => {
                let iv = interval.unwrap_or(Duration::from_secs(1));
                let sample = sample(&host, &mut rng, iv);
                if !send(&out, &AgentFrame::Sample { sample }) {
                    return 1;
                }
                next += iv;
                if next < tokio::time::Instant::now() {
                    next = tokio::time::Instant::now() + iv;
                }
            }
            data = input.recv() => {
                let Some(data) = data else { return 0 };
                buf.extend_from_slice(&data);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let (id, response) = match serde_json::from_slice::<AgentRequestFrame>(&line) {
                        Err(e) => (0, AgentResponse::Error { message: format!("request not understood: {e}") }),
                        Ok(AgentRequestFrame { id, request }) => match request {
                            AgentRequest::Hello { .. } => {
                                if interval.is_none() {
                                    interval = Some(Duration::from_secs(1));
                                    next = tokio::time::Instant::now() + Duration::from_secs(1);
                                }
                                (id, AgentResponse::Hello {
                                    protocol: PROTOCOL_VERSION,
                                    agent_version: serverware_shared::BUILD.into(),
                                    hostname: host.name(),
                                    kernel: "6.1.0-28-amd64 (simulated)".into(),
                                    cpu_model: "Simulated CPU @ 2.40GHz".into(),
                                    cpus: 8,
                                })
                            }
                            AgentRequest::SetInterval { millis } if (MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&millis) => {
                                interval = Some(Duration::from_millis(millis));
                                next = tokio::time::Instant::now() + Duration::from_millis(millis);
                                (id, AgentResponse::Ok)
                            }
                            AgentRequest::SetInterval { .. } => (id, AgentResponse::Error {
                                message: format!("the interval must be {MIN_INTERVAL_MS}–{MAX_INTERVAL_MS} ms"),
                            }),
                            AgentRequest::Ping => (id, AgentResponse::Pong),
                            AgentRequest::Shutdown => {
                                send(&out, &AgentFrame::Response { id, response: AgentResponse::Ok });
                                return 0;
                            }
                            other => (id, answer(&host, other)),
                        },
                    };
                    if !send(&out, &AgentFrame::Response { id, response }) {
                        return 1;
                    }
                }
                if buf.len() > MAX_REQUEST_LINE {
                    buf.clear();
                }
            }
        }
    }
}
