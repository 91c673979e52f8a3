//! `GET /metrics`: the hosts' netRES figures in the Prometheus text format (version 0.0.4).
//! Authenticated like the API: an API token (`Authorization: Bearer swt_…`) or a session.

use crate::db::Db;
use crate::error::Result;
use crate::hosts::{HostManager, HostView};
use crate::hub::Hub;
use serverware_shared::agent::HostSample;
use serverware_shared::state::HostStatus;
use serverware_shared::HostId;
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes metric families: one HELP and TYPE line each, then its samples.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        if value.is_finite() {
            let _ = writeln!(self.text, " {value}");
        } else {
            let _ = writeln!(self.text, " NaN");
        }
    }
}

/// netDUPLO's own figures since the controller started.
#[derive(Debug, Clone, Copy, Default)]
pub struct DuploFigures {
    /// Cycles that landed a point, that found nothing changed since the newest (and landed
    /// none), and that failed.
    pub landed: u64,
    pub unchanged: u64,
    pub failed: u64,
    /// The trees kept between cycles: estimated bytes, and how many.
    pub trees_bytes: u64,
    pub trees_kept: u64,
}

/// Renders the metrics of the given hosts (id, name, what the controller knows now).
pub fn render(
    hosts: &[(HostId, String, HostView)],
    ws_clients: usize,
    ws_dropped: u64,
    duplo: DuploFigures,
) -> String {
    let mut o = Out {
        text: String::with_capacity(8192),
    };
    controller(&mut o, hosts.len(), ws_clients, ws_dropped);
    duplication(&mut o, duplo);
    host_states(&mut o, hosts);
    let with_sample: Vec<(&str, &HostSample)> = hosts
        .iter()
        .filter_map(|(_, n, v)| v.latest.as_ref().map(|s| (n.as_str(), s)))
        .collect();
    host_figures(&mut o, &with_sample);
    host_storage(&mut o, &with_sample);
    host_network(&mut o, &with_sample);
    o.text
}

/// The controller's own: hosts known, live-socket clients.
fn controller(o: &mut Out, hosts: usize, ws_clients: usize, ws_dropped: u64) {
    o.family(
        "serverware_hosts",
        "gauge",
        "Hosts known to the controller.",
    );
    o.sample("serverware_hosts", &[], hosts as f64);
    o.family(
        "serverware_websocket_clients",
        "gauge",
        "Browsers connected to the live socket.",
    );
    o.sample("serverware_websocket_clients", &[], ws_clients as f64);
    o.family(
        "serverware_websocket_dropped_slow_total",
        "counter",
        "Live-socket clients dropped because they stopped reading.",
    );
    o.sample(
        "serverware_websocket_dropped_slow_total",
        &[],
        ws_dropped as f64,
    );
}

/// Duplication cycles by result, and the memory its trees take.
fn duplication(o: &mut Out, d: DuploFigures) {
    o.family(
        "serverware_duplo_cycles_total",
        "counter",
        "Duplication cycles since the controller started, by result (unchanged: nothing changed since the newest point, so none landed).",
    );
    o.sample(
        "serverware_duplo_cycles_total",
        &[("result", "landed")],
        d.landed as f64,
    );
    o.sample(
        "serverware_duplo_cycles_total",
        &[("result", "unchanged")],
        d.unchanged as f64,
    );
    o.sample(
        "serverware_duplo_cycles_total",
        &[("result", "failed")],
        d.failed as f64,
    );
    o.family(
        "serverware_duplo_trees_bytes",
        "gauge",
        "Memory the VPSes' newest points' trees take between cycles (estimated).",
    );
    o.sample("serverware_duplo_trees_bytes", &[], d.trees_bytes as f64);
    o.family(
        "serverware_duplo_trees_kept",
        "gauge",
        "VPSes whose newest point's tree is kept between cycles.",
    );
    o.sample("serverware_duplo_trees_kept", &[], d.trees_kept as f64);
}

/// Each host: up or not, what its agent reported, when it was last heard.
fn host_states(o: &mut Out, hosts: &[(HostId, String, HostView)]) {
    o.family(
        "serverware_host_up",
        "gauge",
        "1 when the host's agent is streaming samples.",
    );
    for (_, name, v) in hosts {
        let up = if v.status == Some(HostStatus::Online) {
            1.0
        } else {
            0.0
        };
        o.sample(
            "serverware_host_up",
            &[
                ("host", name),
                (
                    "status",
                    v.status.map(|s| s.as_str()).unwrap_or("connecting"),
                ),
            ],
            up,
        );
    }
    o.family(
        "serverware_host_info",
        "gauge",
        "What the host's agent reported when it connected.",
    );
    for (_, name, v) in hosts {
        o.sample(
            "serverware_host_info",
            &[
                ("host", name),
                ("hostname", v.hostname.as_deref().unwrap_or("")),
                ("kernel", v.kernel.as_deref().unwrap_or("")),
                ("cpu_model", v.cpu_model.as_deref().unwrap_or("")),
                ("agent_version", v.agent_version.as_deref().unwrap_or("")),
            ],
            1.0,
        );
    }
    o.family(
        "serverware_host_last_seen_timestamp_seconds",
        "gauge",
        "When the controller last received a sample of the host.",
    );
    for (_, name, v) in hosts {
        if let Some(t) = v.last_seen {
            o.sample(
                "serverware_host_last_seen_timestamp_seconds",
                &[("host", name)],
                t.timestamp_millis() as f64 / 1000.0,
            );
        }
    }
}

/// Uptime, load, CPU, interrupts and memory of each host with a sample.
fn host_figures(o: &mut Out, with_sample: &[(&str, &HostSample)]) {
    o.family("serverware_host_uptime_seconds", "gauge", "Host uptime.");
    for (h, s) in with_sample {
        o.sample(
            "serverware_host_uptime_seconds",
            &[("host", h)],
            s.uptime_secs as f64,
        );
    }
    o.family("serverware_host_load", "gauge", "Load average.");
    for (h, s) in with_sample {
        for (period, v) in ["1m", "5m", "15m"].iter().zip(s.load) {
            o.sample(
                "serverware_host_load",
                &[("host", h), ("period", period)],
                v,
            );
        }
    }
    o.family(
        "serverware_host_cpu_percent",
        "gauge",
        "Share of the last sampling interval each CPU spent in each mode.",
    );
    for (h, s) in with_sample {
        for (i, c) in s.cpus.iter().enumerate() {
            let cpu = i.to_string();
            for (mode, v) in [
                ("user", c.user),
                ("nice", c.nice),
                ("system", c.system),
                ("iowait", c.iowait),
                ("irq", c.irq),
                ("softirq", c.softirq),
                ("idle", c.idle),
            ] {
                o.sample(
                    "serverware_host_cpu_percent",
                    &[("host", h), ("cpu", &cpu), ("mode", mode)],
                    v,
                );
            }
        }
    }
    o.family(
        "serverware_host_interrupts_per_second",
        "gauge",
        "Interrupts per second over the last interval.",
    );
    for (h, s) in with_sample {
        o.sample(
            "serverware_host_interrupts_per_second",
            &[("host", h)],
            s.interrupts_per_sec,
        );
    }
    o.family("serverware_host_memory_bytes", "gauge", "Memory and swap.");
    for (h, s) in with_sample {
        let m = &s.memory;
        for (kind, v) in [
            ("total", m.total),
            ("used", m.used),
            ("free", m.free),
            ("shared", m.shared),
            ("buffers", m.buffers),
            ("cached", m.cached),
            ("swap_total", m.swap_total),
            ("swap_used", m.swap_used),
        ] {
            o.sample(
                "serverware_host_memory_bytes",
                &[("host", h), ("kind", kind)],
                v as f64,
            );
        }
    }
}

/// Filesystems and disks of each host with a sample.
fn host_storage(o: &mut Out, with_sample: &[(&str, &HostSample)]) {
    for (metric, help) in [
        ("serverware_host_filesystem_size_bytes", "Filesystem size."),
        (
            "serverware_host_filesystem_used_bytes",
            "Filesystem space used.",
        ),
        (
            "serverware_host_filesystem_avail_bytes",
            "Filesystem space available to unprivileged users.",
        ),
    ] {
        o.family(metric, "gauge", help);
        for (h, s) in with_sample {
            for f in &s.filesystems {
                let v = match metric {
                    "serverware_host_filesystem_size_bytes" => f.size_bytes,
                    "serverware_host_filesystem_used_bytes" => f.used_bytes,
                    _ => f.available_bytes,
                };
                o.sample(
                    metric,
                    &[
                        ("host", h),
                        ("mountpoint", &f.mount_point),
                        ("device", &f.device),
                        ("fstype", &f.fs_type),
                    ],
                    v as f64,
                );
            }
        }
    }
    for (metric, kind, help) in [
        (
            "serverware_host_disk_read_bytes_total",
            "counter",
            "Bytes read from the disk.",
        ),
        (
            "serverware_host_disk_written_bytes_total",
            "counter",
            "Bytes written to the disk.",
        ),
        (
            "serverware_host_disk_transfers_per_second",
            "gauge",
            "Disk transfers per second over the last interval.",
        ),
    ] {
        o.family(metric, kind, help);
        for (h, s) in with_sample {
            for d in &s.disks {
                let v = match metric {
                    "serverware_host_disk_read_bytes_total" => d.read_bytes_total as f64,
                    "serverware_host_disk_written_bytes_total" => d.written_bytes_total as f64,
                    _ => d.transfers_per_sec,
                };
                o.sample(metric, &[("host", h), ("device", &d.device)], v);
            }
        }
    }
}

/// Network interfaces of each host with a sample.
fn host_network(o: &mut Out, with_sample: &[(&str, &HostSample)]) {
    for (metric, help) in [
        (
            "serverware_host_network_receive_bytes_total",
            "Bytes received.",
        ),
        (
            "serverware_host_network_transmit_bytes_total",
            "Bytes sent.",
        ),
    ] {
        o.family(metric, "counter", help);
        for (h, s) in with_sample {
            for i in &s.interfaces {
                let v = if metric.contains("receive") {
                    i.rx_bytes_total
                } else {
                    i.tx_bytes_total
                };
                o.sample(metric, &[("host", h), ("interface", &i.name)], v as f64);
            }
        }
    }
}

/// The site's metrics now: every host by name with its newest samples, and the live hub's
/// clients.
pub async fn gather(
    db: &Db,
    hosts: &HostManager,
    hub: &Hub,
    duplo: &crate::duplo::Duplo,
) -> Result<String> {
    let rows = db.read(crate::repo::hosts::names).await?;
    let views = hosts.views();
    let hosts: Vec<(HostId, String, HostView)> = rows
        .into_iter()
        .map(|(id, name)| {
            let v = views.get(&id).cloned().unwrap_or_default();
            (id, name, v)
        })
        .collect();
    Ok(render(
        &hosts,
        hub.client_count(),
        hub.dropped_slow(),
        duplo.figures(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serverware_shared::agent::{FilesystemSample, HostSample};

    #[test]
    fn labels_are_escaped_and_every_family_is_typed() {
        let v = HostView {
            status: Some(HostStatus::Online),
            latest: Some(HostSample {
                filesystems: vec![FilesystemSample {
                    mount_point: "/mnt/a \"b\"\\c\nd".into(),
                    size_bytes: 42,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = render(
            &[(HostId(1), "node-1".into(), v)],
            0,
            0,
            DuploFigures::default(),
        );
        assert!(text.contains(
            "serverware_host_filesystem_size_bytes{host=\"node-1\",mountpoint=\"/mnt/a \\\"b\\\"\\\\c\\nd\",device=\"\",fstype=\"\"} 42\n"
        ), "{text}");
        assert!(text.contains("serverware_host_up{host=\"node-1\",status=\"online\"} 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE line"
            );
        }
    }
}
