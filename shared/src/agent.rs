//! The protocol between the controller and `serverware-agent`, spoken over the SSH channel's
//! stdin/stdout: one JSON object per line. Requests carry an id that their response repeats;
//! samples are pushed without being asked, multiplexed on the same stream.

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// Bumped on every incompatible change; the controller replaces an agent that speaks another.
pub const PROTOCOL_VERSION: u32 = 1;

/// Shortest and longest sampling interval an agent accepts, in milliseconds.
pub const MIN_INTERVAL_MS: u64 = 100;
pub const MAX_INTERVAL_MS: u64 = 60_000;

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
}

/// Agent → controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum AgentFrame {
    Response { id: u64, response: AgentResponse },
    Sample { sample: HostSample },
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
}

/// One netRES reading of a host. Rates are per second over the last interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HostSample {
    /// Milliseconds since the Unix epoch, on the host's clock.
    pub taken_at_ms: i64,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(serde_json::from_str::<AgentFrame>(&line).unwrap(), f);
    }
}
