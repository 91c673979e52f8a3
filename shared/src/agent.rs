//! The protocol between the controller and `serverware-agent`, spoken over the SSH channel's
//! stdin/stdout: one JSON object per line. Requests carry an id that their response repeats;
//! samples are pushed without being asked, multiplexed on the same stream.

use crate::validate::{self, ValidationError};
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// Bumped on every incompatible change; the controller replaces an agent that speaks another.
/// 3: a VPS spec carries its id map (`id_base`); `rootfs-import` shifts ids (`--ids FROM:TO`).
/// 6: standby copies (`StandbyList`, `StandbyDrop`, `rootfs-standby`, `rootfs-restore --seed`).
/// 7: a lease renewal carries `peers` only when they change.
pub const PROTOCOL_VERSION: u32 = 7;

/// An agent's refusal of a lease renewal without `peers` when it holds none of that lease (a
/// new boot, a new epoch): the controller then sends them.
pub const LEASE_PEERS_UNKNOWN: &str =
    "this host holds no peers of this lease: the renewal must carry them";

/// Shortest and longest sampling interval an agent accepts, in milliseconds.
pub const MIN_INTERVAL_MS: u64 = 100;
pub const MAX_INTERVAL_MS: u64 = 60_000;

/// The longest request line an agent reads; a longer one is refused whole, unread.
pub const MAX_REQUEST_LINE: usize = 64 << 10;

/// The longest frame the controller reads from an agent (a sample of a host with many VPSes is
/// far below); a longer one ends the link.
pub const MAX_AGENT_FRAME: usize = 16 << 20;

/// Controller → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRequestFrame {
    pub id: u64,
    #[serde(flatten)]
    pub request: AgentRequest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentRequest {
    /// First request: the agent answers with what it is.
    Hello {
        protocol: u32,
    },
    /// Sample every `millis` (100–60000).
    SetInterval {
        millis: u64,
    },
    Ping,
    /// Stop sampling and exit.
    Shutdown,
    /// Write (or rewrite) a VPS's container configuration; its root filesystem is separate.
    VpsDefine {
        spec: VpsSpec,
    },
    /// Apply a running VPS's memory and CPU limits now (after `VpsDefine` changed them).
    VpsApplyLimits {
        spec: VpsSpec,
    },
    VpsStart {
        name: String,
    },
    /// Stop cleanly; after `timeout_secs` stop by force.
    VpsStop {
        name: String,
        timeout_secs: u32,
    },
    /// Stop if running and remove the container with its root filesystem.
    VpsDestroy {
        name: String,
    },
    /// Pause / resume every process of a VPS (for a consistent copy of a running one).
    VpsFreeze {
        name: String,
        frozen: bool,
    },
    /// Every container on the host, defined or not by the controller.
    VpsList,
    /// netDUPLO: what changed in a VPS's tree since its last acknowledged cycle (its change
    /// journal starts with the first cut). Answered with `DuploCut`.
    DuploCut {
        name: String,
    },
    /// The cycle of cut `cut` landed: the journal forgets what it handed out then.
    DuploAck {
        name: String,
        cut: u64,
    },
    /// Stop keeping a VPS's journal (duplication off, the VPS gone or replaced); the next cut
    /// compares in full.
    DuploForget {
        name: String,
    },
    /// netMON: the standby copies of other hosts' HA VPSes this host keeps (answered with
    /// `Standbys`).
    StandbyList,
    /// Remove the standby copy of VPS `vps_id` (no longer wanted on this host).
    StandbyDrop {
        vps_id: i64,
    },
    /// A failover drill's isolated network on this host (see [`drill_names`]): with `probe`
    /// (`address/prefix`), a bridge with no uplink and a network namespace on it holding that
    /// address, from which [`AgentRequest::DrillCheck`] probes; without, both removed (and the
    /// drill's container must be gone). Both are idempotent.
    DrillNet {
        drill: u64,
        probe: Option<String>,
    },
    /// netMON's checks (an ICMP echo to `ipv4`, then a TCP connect to each port) run from inside
    /// drill `drill`'s network namespace: answered `Ok`, or `Error` naming the first failure.
    DrillCheck {
        drill: u64,
        ipv4: String,
        ports: Vec<u16>,
    },
    /// netMON: the host may run its HA VPSes (`ha`) until `base_ms + ttl_ms` on its own boot
    /// clock (`HostSample::boot_ms`), no longer: its guard stops them when the lease runs out.
    /// `base_ms` is the boot time of the sample the controller last had plus how long it held
    /// it, so the lease counts from no later than the moment the controller granted it, however
    /// late this arrives. `peers` are the other hosts' addresses, whose guards say whether the
    /// controller still renews theirs (cut off, or the controller down: see `guard.rs`); absent,
    /// the lease keeps those it holds (sent when they change; an agent that holds none for this
    /// boot and epoch refuses with [`LEASE_PEERS_UNKNOWN`]). `key` signs what guards tell each
    /// other (hex, 32 bytes).
    Lease {
        epoch: u64,
        base_ms: u64,
        ttl_ms: u64,
        ha: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peers: Option<Vec<String>>,
        key: String,
    },
}

/// The names a failover drill's parts have on its host: (its container, the isolated bridge, the
/// probe's network namespace, the host-side veth of the container, the probe's veth pair).
/// Container names starting with [`DRILL_PREFIX`] are refused for VPSes, so they never meet.
pub fn drill_names(drill: u64) -> DrillNames {
    DrillNames {
        container: format!("{DRILL_PREFIX}{drill}"),
        bridge: format!("swdb{drill}"),
        netns: format!("swdrill{drill}"),
        container_veth: format!("swdv{drill}"),
        probe_veth: (format!("swdp{drill}"), format!("swdq{drill}")),
    }
}

/// See [`drill_names`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillNames {
    pub container: String,
    pub bridge: String,
    pub netns: String,
    pub container_veth: String,
    pub probe_veth: (String, String),
}

/// The start of a drill container's name; no VPS name starts so.
pub const DRILL_PREFIX: &str = "drill-";

/// The largest drill number whose interface names fit Linux's 15 characters.
pub const DRILL_MAX: u64 = 99_999_999_999;

/// The UDP port on which hosts' guards answer each other.
pub const GUARD_PORT: u16 = 7781;

/// What a host's guard does once its lease ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardVerdict {
    /// Stop the HA VPSes: this host is the one cut off (or cannot tell).
    Fence,
    /// Keep them: the controller is down for a majority of the hosts, and the controller moves
    /// VPSes only while it holds the leases of at least half of them ([`may_fail_over`]).
    Hold,
}

/// The guard's rule, given how many hosts the site has (this one included) and, for each peer
/// whose guard answered, whether its lease still holds. Any lease still renewed means the
/// controller is up: fence. A majority that answered with every lease run out means the
/// controller is down: hold. Anything else (alone, a minority): fence.
pub fn guard_verdict(hosts: usize, answers: &[bool]) -> GuardVerdict {
    if answers.iter().any(|v| *v) {
        GuardVerdict::Fence
    } else if (answers.len() + 1) * 2 > hosts {
        GuardVerdict::Hold
    } else {
        GuardVerdict::Fence
    }
}

/// How long a host's lease lasts past the sample it counts from: 3 s, or three of its sampling
/// intervals when they are longer (a lease outlives a late sample or two).
pub fn lease_ttl_ms(sample_interval_ms: u64) -> u64 {
    sample_interval_ms.saturating_mul(3).max(3000)
}

/// A lease counts as *renewed since another's ran out* when its last renewal is at least this
/// much more recent (two fifths of the lease: more than one sampling interval, so leases that
/// stopped being renewed at the same moment, the controller dying, never count; less than what
/// a renewal every interval leaves, so a running controller's leases always do). The controller
/// counts a host among those it renews only while its last acknowledged renewal is younger than
/// this too.
pub fn renewed_slack_ms(ttl_ms: u64) -> u64 {
    ttl_ms * 2 / 5
}

/// A guard whose own lease is of an older epoch than a peer's still-renewed one sees a
/// controller that restarted and renews hosts one by one: it gives it this long to renew its own
/// lease too before it fences. The controller, for a host it has not renewed since it started,
/// waits this much longer before it counts the host as fenced.
pub const RECONNECT_GRACE_MS: u64 = 15_000;

/// The controller's side of that rule: it may count a silent host as fenced (once its lease and
/// a guard's re-check have run out) only while the hosts whose leases it renews are at least
/// half of all. A guard that holds on has a majority of hosts with run-out leases behind it, and
/// two such sets always share a host, so both cannot be true at once.
pub fn may_fail_over(renewed: usize, hosts: usize) -> bool {
    renewed * 2 >= hosts && renewed > 0
}

/// What the controller tells a host about a VPS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct VpsSpec {
    pub name: String,
    pub hostname: String,
    pub ipv4: String,
    pub prefix_len: u8,
    pub gateway: Option<String>,
    /// The host bridge the VPS's interface joins.
    pub bridge: String,
    /// Stable per VPS, so neighbours' ARP caches stay right across restarts and moves.
    pub mac: String,
    /// Host-side name of the VPS's veth (at most 15 characters).
    pub veth: String,
    pub memory_limit_bytes: u64,
    pub cpu_shares: Option<u32>,
    /// CPU time limit in thousandths of a CPU (1500 = one and a half CPUs).
    pub cpu_limit_millis: Option<u32>,
    pub autostart: bool,
    /// The first host id of the VPS's user-namespace mapping (its root); its ids are
    /// `id_base`…`id_base`+[`ID_RANGE`]-1 on the host. None: a privileged VPS, unmapped.
    #[serde(default)]
    pub id_base: Option<u32>,
}

/// How many ids a VPS has: 0–65535, as a Linux system expects.
pub const ID_RANGE: u32 = 65536;

/// The lowest id base the controller gives: the ranges stay clear of the host's own users and of
/// the ranges distributions hand out in /etc/subuid (from 100000).
pub const FIRST_ID_BASE: u32 = 16 * ID_RANGE;

/// Whether `base` can start a VPS's id range: a multiple of [`ID_RANGE`], clear of the host's own
/// ids, and whole below the largest id (`u32::MAX` means "no id").
pub fn id_base_ok(base: u32) -> bool {
    base >= ID_RANGE && base.is_multiple_of(ID_RANGE) && base.checked_add(ID_RANGE).is_some()
}

impl VpsSpec {
    /// Every field checked with the API's rules, exactly as given (nothing trimmed or lowered):
    /// each of them ends up in a container configuration line or a program argument, so a value
    /// that could break a line (a newline, a `=`, a NUL) never gets there. The agent checks this
    /// itself, whatever the controller sent.
    pub fn check(&self) -> Result<(), ValidationError> {
        validate::exact("name", &self.name, validate::resource_name)?;
        validate::exact("hostname", &self.hostname, validate::hostname)?;
        validate::exact("ipv4", &self.ipv4, validate::ipv4_address)?;
        validate::prefix_len("prefix_len", self.prefix_len)?;
        if let Some(gw) = &self.gateway {
            validate::exact("gateway", gw, validate::ipv4_address)?;
        }
        validate::exact("bridge", &self.bridge, validate::interface_name)?;
        validate::exact("mac", &self.mac, validate::mac_address)?;
        if self.veth.is_empty()
            || self.veth.len() > 15
            || !self.veth.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(ValidationError::new(
                "veth",
                "a VPS interface name has 1–15 letters and digits",
            ));
        }
        validate::memory_limit("memory_limit_bytes", self.memory_limit_bytes)?;
        if let Some(s) = self.cpu_shares {
            validate::cpu_shares("cpu_shares", s)?;
        }
        if let Some(m) = self.cpu_limit_millis {
            validate::cpu_limit_millis("cpu_limit_millis", m)?;
        }
        if let Some(b) = self.id_base {
            if !id_base_ok(b) {
                return Err(ValidationError::new(
                    "id_base",
                    format!("{b} cannot start a VPS's id range: a multiple of {ID_RANGE}, at least {ID_RANGE}"),
                ));
            }
        }
        Ok(())
    }
}

/// A container as the host sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VpsState {
    pub name: String,
    /// `running`, `stopped`, `frozen`, `starting`, `stopping` or `unknown`.
    pub state: String,
    pub init_pid: Option<u32>,
}

/// Agent → controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case", try_from = "FrameWire")]
pub enum AgentFrame {
    Response { id: u64, response: AgentResponse },
    Sample { sample: HostSample },
}

/// An [`AgentFrame`] as read: the same JSON, read as one struct. serde reads an internally
/// tagged enum by first copying the whole frame into a generic tree (the tag may come last),
/// then reading that again; a thousand hosts' samples a second made that copy one of the
/// controller's largest costs. A struct is read in one pass, its fields in any order.
#[derive(Deserialize)]
struct FrameWire {
    frame: FrameKind,
    id: Option<u64>,
    response: Option<AgentResponse>,
    sample: Option<HostSample>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FrameKind {
    Response,
    Sample,
}

impl TryFrom<FrameWire> for AgentFrame {
    type Error = &'static str;

    fn try_from(w: FrameWire) -> Result<Self, Self::Error> {
        Ok(match w.frame {
            FrameKind::Response => AgentFrame::Response {
                id: w.id.ok_or("a response frame without its `id`")?,
                response: w
                    .response
                    .ok_or("a response frame without its `response`")?,
            },
            FrameKind::Sample => AgentFrame::Sample {
                sample: w.sample.ok_or("a sample frame without its `sample`")?,
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentResponse {
    Hello {
        protocol: u32,
        agent_version: String,
        hostname: String,
        kernel: String,
        cpu_model: String,
        cpus: u32,
    },
    Ok,
    Pong,
    Error {
        message: String,
    },
    /// Answer of `VpsStop`: whether the clean stop timed out and the VPS was stopped by force.
    Stopped {
        forced: bool,
    },
    VpsList {
        vpses: Vec<VpsState>,
    },
    DuploCut {
        cut: u64,
        changes: crate::duplo::Changes,
    },
    Standbys {
        copies: Vec<StandbyCopy>,
    },
}

/// A standby copy a host keeps: of which VPS, and which of its restore points it holds (None:
/// it is being brought up to date, or was left half-way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyCopy {
    pub vps_id: i64,
    pub cycle: Option<u64>,
}

/// One netRES reading of a host. Rates are per second over the last interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HostSample {
    /// Milliseconds since the Unix epoch, on the host's clock.
    pub taken_at_ms: i64,
    /// Milliseconds since the host booted (its `CLOCK_BOOTTIME`), when it was taken: the clock
    /// its lease counts on.
    #[serde(default)]
    pub boot_ms: u64,
    pub uptime_secs: u64,
    /// 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    /// Per CPU, in the order of /proc/stat.
    pub cpus: Vec<CpuSample>,
    pub interrupts_per_sec: f64,
    pub memory: MemorySample,
    pub filesystems: Vec<FilesystemSample>,
    pub disks: Vec<DiskSample>,
    pub interfaces: Vec<InterfaceSample>,
    /// Every container on the host.
    #[serde(default)]
    pub vpses: Vec<VpsSample>,
}

/// One VPS's figures in a host sample. Network is counted from the VPS's side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VpsSample {
    pub name: String,
    pub state: String,
    /// The container's init, as a PID on the host (the seed's "context").
    pub init_pid: Option<u32>,
    pub uptime_secs: u64,
    pub processes: u32,
    /// Percent of one CPU over the last interval (can exceed 100 on several CPUs).
    pub cpu_pct: f64,
    pub memory_used: u64,
    /// 0 when unlimited.
    pub memory_limit: u64,
    pub rx_bytes_per_sec: f64,
    pub tx_bytes_per_sec: f64,
    pub rx_bytes_total: u64,
    pub tx_bytes_total: u64,
    /// Space used by its root filesystem (refreshed every 30 s).
    pub disk_used_bytes: u64,
}

/// Percentages of the last interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CpuSample {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
    pub idle: f64,
}

impl CpuSample {
    /// Busy share: everything but idle and iowait.
    pub fn busy(&self) -> f64 {
        (100.0 - self.idle - self.iowait).clamp(0.0, 100.0)
    }
}

/// Bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MemorySample {
    pub total: u64,
    pub used: u64,
    pub free: u64,
    pub shared: u64,
    pub buffers: u64,
    pub cached: u64,
    pub swap_total: u64,
    pub swap_used: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FilesystemSample {
    pub mount_point: String,
    pub device: String,
    pub fs_type: String,
    pub size_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub use_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DiskSample {
    pub device: String,
    pub transfers_per_sec: f64,
    pub read_bytes_per_sec: f64,
    pub written_bytes_per_sec: f64,
    pub read_bytes_total: u64,
    pub written_bytes_total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct InterfaceSample {
    pub name: String,
    pub rx_bytes_per_sec: f64,
    pub tx_bytes_per_sec: f64,
    pub rx_bytes_total: u64,
    pub tx_bytes_total: u64,
}

/// The few figures of a sample that lists, the dashboard and the one-minute rollups use.
/// Network counts every interface but loopback; disk IO counts whole disks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HostSummary {
    pub taken_at_ms: i64,
    pub cpus: u32,
    /// Average busy % over all CPUs.
    pub cpu_pct: f64,
    pub load1: f64,
    pub memory_used: u64,
    pub memory_total: u64,
    pub memory_pct: f64,
    pub rx_bytes_per_sec: f64,
    pub tx_bytes_per_sec: f64,
    pub disk_read_bytes_per_sec: f64,
    pub disk_written_bytes_per_sec: f64,
}

impl HostSample {
    /// Average busy % over all CPUs (0 when the host reported none).
    pub fn cpu_pct(&self) -> f64 {
        if self.cpus.is_empty() {
            0.0
        } else {
            self.cpus.iter().map(CpuSample::busy).sum::<f64>() / self.cpus.len() as f64
        }
    }

    pub fn summary(&self) -> HostSummary {
        let nets = self.interfaces.iter().filter(|i| i.name != "lo");
        HostSummary {
            taken_at_ms: self.taken_at_ms,
            cpus: self.cpus.len() as u32,
            cpu_pct: self.cpu_pct(),
            load1: self.load[0],
            memory_used: self.memory.used,
            memory_total: self.memory.total,
            memory_pct: if self.memory.total == 0 {
                0.0
            } else {
                self.memory.used as f64 * 100.0 / self.memory.total as f64
            },
            rx_bytes_per_sec: nets.clone().map(|i| i.rx_bytes_per_sec).sum(),
            tx_bytes_per_sec: nets.map(|i| i.tx_bytes_per_sec).sum(),
            disk_read_bytes_per_sec: self.disks.iter().map(|d| d.read_bytes_per_sec).sum(),
            disk_written_bytes_per_sec: self.disks.iter().map(|d| d.written_bytes_per_sec).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_fences_when_cut_off_and_holds_when_the_controller_is_down() {
        use GuardVerdict::*;
        // Another host still renewed: this one is cut off.
        assert_eq!(guard_verdict(3, &[true, false]), Fence);
        assert_eq!(guard_verdict(3, &[true]), Fence);
        // Nobody answered: alone.
        assert_eq!(guard_verdict(3, &[]), Fence);
        assert_eq!(guard_verdict(2, &[]), Fence);
        // A majority answered and lost the controller too: it is down.
        assert_eq!(guard_verdict(3, &[false]), Hold);
        assert_eq!(guard_verdict(3, &[false, false]), Hold);
        assert_eq!(guard_verdict(2, &[false]), Hold);
        // A minority cannot tell.
        assert_eq!(guard_verdict(5, &[false]), Fence);
        assert_eq!(guard_verdict(4, &[false]), Fence);
        assert_eq!(guard_verdict(4, &[false, false]), Hold);
    }

    /// Whatever the hosts, a guard holding on and the controller failing over never meet: the
    /// hosts behind the one and the hosts renewed by the other always share one.
    #[test]
    fn holding_on_and_failing_over_never_meet() {
        for n in 1..=9usize {
            for renewed in 0..=n {
                for expired in 0..=n {
                    if renewed + expired > n {
                        continue;
                    }
                    // A guard asking `expired - 1` peers, all run out, and no renewed one.
                    let holds = expired >= 1
                        && guard_verdict(n, &vec![false; expired - 1]) == GuardVerdict::Hold;
                    assert!(
                        !(holds && may_fail_over(renewed, n)),
                        "{n} hosts: {renewed} renewed, {expired} holding"
                    );
                }
            }
        }
    }
    #[test]
    fn summary_averages_cpus_and_leaves_out_loopback() {
        let s = HostSample {
            cpus: vec![
                CpuSample {
                    idle: 100.0,
                    ..Default::default()
                },
                CpuSample {
                    user: 50.0,
                    idle: 40.0,
                    iowait: 10.0,
                    ..Default::default()
                },
            ],
            memory: MemorySample {
                total: 1000,
                used: 250,
                ..Default::default()
            },
            interfaces: vec![
                InterfaceSample {
                    name: "lo".into(),
                    rx_bytes_per_sec: 1e9,
                    ..Default::default()
                },
                InterfaceSample {
                    name: "eth0".into(),
                    rx_bytes_per_sec: 10.0,
                    tx_bytes_per_sec: 5.0,
                    ..Default::default()
                },
                InterfaceSample {
                    name: "br0".into(),
                    rx_bytes_per_sec: 1.0,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let m = s.summary();
        assert_eq!((m.cpus, m.cpu_pct, m.memory_pct), (2, 25.0, 25.0));
        assert_eq!((m.rx_bytes_per_sec, m.tx_bytes_per_sec), (11.0, 5.0));
    }

    #[test]
    fn frames_round_trip() {
        let req = AgentRequestFrame {
            id: 7,
            request: AgentRequest::SetInterval { millis: 500 },
        };
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(line, r#"{"id":7,"type":"set_interval","millis":500}"#);
        assert_eq!(
            serde_json::from_str::<AgentRequestFrame>(&line).unwrap(),
            req
        );
        let f = AgentFrame::Response {
            id: 7,
            response: AgentResponse::Ok,
        };
        let line = serde_json::to_string(&f).unwrap();
        assert_eq!(
            line,
            r#"{"frame":"response","id":7,"response":{"type":"ok"}}"#
        );
        assert_eq!(serde_json::from_str::<AgentFrame>(&line).unwrap(), f);
        let s = AgentFrame::Sample {
            sample: HostSample {
                taken_at_ms: 1_700_000_000_000,
                ..Default::default()
            },
        };
        let line = serde_json::to_string(&s).unwrap();
        assert!(
            line.starts_with(r#"{"frame":"sample","sample":{"#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<AgentFrame>(&line).unwrap(), s);
        // The tag may come anywhere; unknown fields are ignored as before.
        let late = r#"{"id":9,"later":1,"response":{"type":"pong"},"frame":"response"}"#;
        assert_eq!(
            serde_json::from_str::<AgentFrame>(late).unwrap(),
            AgentFrame::Response {
                id: 9,
                response: AgentResponse::Pong
            }
        );
        // A frame that lacks what its kind needs, or of no known kind, is refused.
        for bad in [
            r#"{"frame":"response","response":{"type":"ok"}}"#,
            r#"{"frame":"response","id":1}"#,
            r#"{"frame":"sample"}"#,
            r#"{"frame":"gossip","id":1}"#,
            r#"{"id":1,"response":{"type":"ok"}}"#,
        ] {
            assert!(serde_json::from_str::<AgentFrame>(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn good() -> VpsSpec {
        VpsSpec {
            name: "web-1".into(),
            hostname: "web-1".into(),
            ipv4: "10.77.1.50".into(),
            prefix_len: 24,
            gateway: Some("10.77.1.1".into()),
            bridge: "br0".into(),
            mac: "02:53:57:00:00:01".into(),
            veth: "swv1".into(),
            memory_limit_bytes: 64 << 20,
            cpu_shares: Some(512),
            cpu_limit_millis: Some(1500),
            autostart: true,
            id_base: Some(FIRST_ID_BASE),
        }
    }

    #[test]
    fn id_bases_never_reach_the_hosts_own_ids() {
        assert!(id_base_ok(FIRST_ID_BASE));
        assert!(id_base_ok(u32::MAX - ID_RANGE + 1 - ID_RANGE));
        for bad in [0, 1000, ID_RANGE + 1, u32::MAX - ID_RANGE + 1] {
            assert!(!id_base_ok(bad), "{bad}");
            let s = VpsSpec {
                id_base: Some(bad),
                ..good()
            };
            assert_eq!(s.check().unwrap_err().field, "id_base");
        }
    }

    /// Strings that could break a configuration line: some text with a newline, `=`, NUL,
    /// carriage return, space or `#` somewhere in it, or just too long.
    fn breaking() -> impl Strategy<Value = String> {
        prop_oneof![
            (
                ".{0,20}",
                prop::sample::select(vec!['\n', '=', '\0', '\r', ' ', '#', '\t']),
                ".{0,20}"
            )
                .prop_map(|(a, c, b)| format!("{a}{c}{b}")),
            "[a-z]{64,10240}",
        ]
    }

    #[test]
    fn a_good_spec_passes() {
        assert_eq!(good().check(), Ok(()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn no_string_field_accepts_a_line_breaker(field in 0usize..7, v in breaking()) {
            let mut s = good();
            let name = match field {
                0 => { s.name = v.clone(); "name" }
                1 => { s.hostname = v.clone(); "hostname" }
                2 => { s.ipv4 = v.clone(); "ipv4" }
                3 => { s.gateway = Some(v.clone()); "gateway" }
                4 => { s.bridge = v.clone(); "bridge" }
                5 => { s.mac = v.clone(); "mac" }
                _ => { s.veth = v.clone(); "veth" }
            };
            let e = s.check().expect_err("accepted");
            prop_assert_eq!(e.field, name);
        }

        #[test]
        fn whatever_passes_is_one_plain_token(field in 0usize..7, v in any::<String>()) {
            let mut s = good();
            match field {
                0 => s.name = v.clone(),
                1 => s.hostname = v.clone(),
                2 => s.ipv4 = v.clone(),
                3 => s.gateway = Some(v.clone()),
                4 => s.bridge = v.clone(),
                5 => s.mac = v.clone(),
                _ => s.veth = v.clone(),
            }
            if s.check().is_ok() {
                prop_assert!(v.len() <= 63);
                prop_assert!(v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')), "{:?}", v);
            }
        }
    }
}
