//! One host: its netRES report as tables, live charts that move with every sample, history
//! charts from the one-minute rollups, and edit / re-key / remove.

use super::FormErrors;
use crate::api;
use crate::app::Auth;
use crate::charts::{fmt_bytes, fmt_load, fmt_pct, fmt_rate, LineChart, Series};
use crate::live::{push_sample, Live, LIVE_POINTS};
use crate::widgets::{ago, FieldError};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};
use serverware_shared::agent::HostSample;
use serverware_shared::api::*;
use serverware_shared::ws::Topic;
use serverware_shared::{validate, Role};
use std::collections::VecDeque;

#[component]
pub fn HostPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").and_then(|v| v.parse::<i64>().ok()));
    // A new id mounts a new page, with its own subscription.
    move || match id() {
        Some(id) => view! { <HostDetail id=id/> }.into_any(),
        None => {
            view! { <super::EmptyPage title="Not found" text="There is no such host."/> }.into_any()
        }
    }
}

fn uptime(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d} d {h} h {m} min")
    } else {
        format!("{h} h {m} min")
    }
}

#[component]
fn HostDetail(id: i64) -> impl IntoView {
    let auth = expect_context::<Auth>();
    let live = expect_context::<Live>();
    live.subscribe_while_mounted(vec![Topic::Hosts, Topic::Inventory, Topic::Host(id)]);
    let host = RwSignal::new(None::<HostResponse>);
    let missing = RwSignal::new(false);

    // Reloads overlap when changes come quickly; only the newest one asked for is shown.
    let asked = StoredValue::new(0u64);
    let load = move || {
        let n = asked.get_value() + 1;
        asked.set_value(n);
        spawn_local(async move {
            let got = api::host(id).await;
            if asked.get_value() != n {
                return;
            }
            match got {
                Ok(h) => host.set(Some(h)),
                Err(e) if e.status == 404 => missing.set(true),
                Err(_) => {}
            }
        })
    };
    Effect::new(move |_| {
        live.generation.get();
        live.inventory.get();
        load();
    });
    // Seed the live charts with what the controller kept, then let pushed samples extend them.
    Effect::new(move |_| {
        live.generation.get();
        spawn_local(async move {
            if let Ok(recent) = api::host_samples(id).await {
                live.samples.update(|m| {
                    let ring = m.entry(id).or_default();
                    let mut merged: VecDeque<HostSample> = VecDeque::new();
                    for s in recent.into_iter().chain(ring.drain(..)) {
                        push_sample(&mut merged, s);
                    }
                    *ring = merged;
                });
            }
        });
    });
    let ring = Memo::new(move |_| {
        live.samples
            .with(|m| m.get(&id).cloned().unwrap_or_default())
    });
    let latest = Memo::new(move |_| {
        ring.with(|r| r.back().cloned())
            .or_else(|| host.with(|h| h.as_ref().and_then(|h| h.sample.clone())))
    });
    let status = move || {
        live.hosts
            .with(|m| m.get(&id).map(|h| h.status.clone()))
            .filter(|s| !s.is_empty())
            .or_else(|| host.with(|h| h.as_ref().map(|h| h.status.clone())))
            .unwrap_or_default()
    };
    let can_edit = move || {
        auth.user()
            .is_some_and(|s| s.effective_role >= Role::Operator)
    };

    view! {
        <Show when=move || !missing.get() fallback=|| view! { <super::EmptyPage title="Not found" text="This host was removed or never existed."/> }>
            <div class="page-head">
                <h1>{move || host.with(|h| h.as_ref().map(|h| h.name.clone()).unwrap_or_else(|| "Host".into()))}</h1>
                <span data-test="host-status" class=move || format!("badge {}", status())>{status}</span>
                <Show when=move || host.with(|h| h.as_ref().is_some_and(|h| h.maintenance))>
                    <span class="badge maintenance" data-test="maintenance-badge" title="Nothing is placed on it; netMON does not fail it over">"maintenance"</span>
                </Show>
                <span class="muted">{move || host.with(|h| h.as_ref().map(|h| h.description.clone()).unwrap_or_default())}</span>
            </div>
            <Show when=move || status() == "key_mismatch">
                <Rekey id=id host=host/>
            </Show>
            <LiveCharts host=host ring=ring/>
            <Report host=host latest=latest/>
            <HistoryCharts id=id/>
            <Show when=can_edit>
                <EditHost id=id host=host/>
            </Show>
        </Show>
    }
}

/// The host's samples as they arrive: CPU, memory, network and disk IO.
#[component]
fn LiveCharts(
    host: RwSignal<Option<HostResponse>>,
    ring: Memo<VecDeque<HostSample>>,
) -> impl IntoView {
    // Live charts: x is the sample time, the window as long as LIVE_POINTS intervals.
    let x_live = Signal::derive(move || {
        let interval = host.with(|h| h.as_ref().map(|h| h.sample_interval_ms).unwrap_or(1000));
        let end = ring.with(|r| r.back().map(|s| s.taken_at_ms)).unwrap_or(0) as f64;
        (end - (LIVE_POINTS as f64 - 1.0) * f64::from(interval), end)
    });
    let live_series = move |f: fn(&HostSample) -> Vec<(&'static str, f64)>| {
        Signal::derive(move || {
            ring.with(|r| {
                let mut out: Vec<Series> = Vec::new();
                for s in r {
                    for (i, (label, v)) in f(s).into_iter().enumerate() {
                        if out.len() <= i {
                            out.push(Series {
                                label,
                                class: ["s0", "s1", "s2", "s3"][i % 4],
                                points: Vec::new(),
                            });
                        }
                        out[i].points.push((s.taken_at_ms as f64, v));
                    }
                }
                out
            })
        })
    };
    let cpu = live_series(|s| {
        let n = s.cpus.len().max(1) as f64;
        let avg = |f: fn(&serverware_shared::agent::CpuSample) -> f64| {
            s.cpus.iter().map(f).sum::<f64>() / n
        };
        vec![
            ("busy", s.cpu_pct()),
            ("user", avg(|c| c.user + c.nice)),
            ("system", avg(|c| c.system + c.irq + c.softirq)),
            ("iowait", avg(|c| c.iowait)),
        ]
    });
    let mem = live_series(|s| {
        let t = s.memory.total.max(1) as f64;
        vec![
            ("used", s.memory.used as f64 * 100.0 / t),
            (
                "cached",
                (s.memory.cached + s.memory.buffers) as f64 * 100.0 / t,
            ),
        ]
    });
    let net = live_series(|s| {
        let m = s.summary();
        vec![("rx", m.rx_bytes_per_sec), ("tx", m.tx_bytes_per_sec)]
    });
    let disk = live_series(|s| {
        let m = s.summary();
        vec![
            ("read", m.disk_read_bytes_per_sec),
            ("write", m.disk_written_bytes_per_sec),
        ]
    });

    view! {
    <div class="chart-grid" data-test="live-charts">
                <LineChart title="CPU" series=cpu x_range=x_live fixed_max=100.0 format=fmt_pct test_id="chart-cpu"/>
                <LineChart title="Memory" series=mem x_range=x_live fixed_max=100.0 format=fmt_pct test_id="chart-memory"/>
                <LineChart title="Network" series=net x_range=x_live format=fmt_rate test_id="chart-network"/>
                <LineChart title="Disk IO" series=disk x_range=x_live format=fmt_rate test_id="chart-disk"/>
            </div>
    }
}

/// The host's one-minute rollups over the chosen span.
#[component]
fn HistoryCharts(id: i64) -> impl IntoView {
    let live = expect_context::<Live>();
    let hours = RwSignal::new(1i64);
    let history = RwSignal::new(Vec::<HostRollup>::new());
    let load_history = move || {
        let h = hours.get_untracked();
        spawn_local(async move {
            if let Ok(r) = api::host_history(id, h).await {
                history.set(r);
            }
        });
    };
    Effect::new(move |_| {
        hours.get();
        live.generation.get();
        load_history();
    });
    // The history's newest minute grows: refresh it every minute while the page is open.
    if let Ok(timer) = set_interval_with_handle(load_history, std::time::Duration::from_secs(60)) {
        on_cleanup(move || timer.clear());
    }

    // History charts: x is the minute.
    let x_hist = Signal::derive(move || {
        let now = chrono::Utc::now().timestamp_millis() as f64;
        (now - hours.get() as f64 * 3_600_000.0, now)
    });
    let hist = move |f: fn(&HostRollup) -> [(&'static str, f64); 2]| {
        Signal::derive(move || {
            history.with(|h| {
                let mut out: Vec<Series> = Vec::new();
                for r in h {
                    for (i, (label, v)) in f(r).into_iter().enumerate() {
                        if out.len() <= i {
                            out.push(Series {
                                label,
                                class: ["s1", "s0"][i],
                                points: Vec::new(),
                            });
                        }
                        // A minute is drawn across its whole width, so lone minutes show.
                        let t = r.minute.timestamp_millis() as f64;
                        out[i].points.push((t, v));
                        out[i].points.push((t + 60_000.0, v));
                    }
                }
                out
            })
        })
    };
    let h_cpu = hist(|r| [("max", r.cpu_max), ("avg", r.cpu_avg)]);
    let h_mem = hist(|r| [("max", r.memory_max), ("avg", r.memory_avg)]);
    let h_net = hist(|r| [("rx max", r.rx_max), ("rx avg", r.rx_avg)]);
    let h_disk = hist(|r| {
        [
            ("write max", r.disk_write_max),
            ("write avg", r.disk_write_avg),
        ]
    });

    view! {
    <section class="card">
                <div class="section-head">
                    <h2>"History"</h2>
                    <div class="segmented">
                        {[(1, "1 h"), (24, "24 h"), (168, "7 d"), (720, "30 d")].into_iter().map(|(h, label)| view! {
                            <button class:active=move || hours.get() == h on:click=move |_| hours.set(h)>{label}</button>
                        }).collect_view()}
                    </div>
                </div>
                <p class="muted">"One-minute averages and maxima, kept for the retention period set in Settings."</p>
                <div class="chart-grid" data-test="history-charts">
                    <LineChart title="CPU" series=h_cpu x_range=x_hist fixed_max=100.0 format=fmt_pct test_id="history-cpu"/>
                    <LineChart title="Memory" series=h_mem x_range=x_hist fixed_max=100.0 format=fmt_pct test_id="history-memory"/>
                    <LineChart title="Network receive" series=h_net x_range=x_hist format=fmt_rate test_id="history-network"/>
                    <LineChart title="Disk write" series=h_disk x_range=x_hist format=fmt_rate test_id="history-disk"/>
                </div>
            </section>
    }
}

#[component]
fn Report(host: RwSignal<Option<HostResponse>>, latest: Memo<Option<HostSample>>) -> impl IntoView {
    let info = move || {
        host.get().map(|h| {
        let s = latest.get();
        view! {
            <table class="grid kv" data-test="host-info">
                <tr><th>"Address"</th><td><code>{h.address.clone()}</code></td></tr>
                <tr><th>"Host key"</th><td><code>{h.fingerprint.clone().unwrap_or_default()}</code></td></tr>
                <tr><th>"Hostname"</th><td>{h.hostname.clone().unwrap_or("–".into())}</td></tr>
                <tr><th>"Kernel"</th><td>{h.kernel.clone().unwrap_or("–".into())}</td></tr>
                <tr><th>"CPU model"</th><td>{h.cpu_model.clone().unwrap_or("–".into())}</td></tr>
                <tr><th>"CPUs"</th><td>{s.as_ref().map(|s| s.cpus.len().to_string()).unwrap_or("–".into())}</td></tr>
                <tr><th>"Uptime"</th><td>{s.as_ref().map(|s| uptime(s.uptime_secs)).unwrap_or("–".into())}</td></tr>
                <tr><th>"Load (1, 5, 15 min)"</th><td data-test="load">{s.as_ref().map(|s| format!("{} {} {}", fmt_load(s.load[0]), fmt_load(s.load[1]), fmt_load(s.load[2]))).unwrap_or("–".into())}</td></tr>
                <tr><th>"Interrupts"</th><td>{s.as_ref().map(|s| format!("{:.0}/s", s.interrupts_per_sec)).unwrap_or("–".into())}</td></tr>
                <tr><th>"VPSes"</th><td>{h.vps_count}</td></tr>
                <tr><th>"Agent"</th><td>{h.agent_version.clone().unwrap_or("–".into())}" · every "{h.sample_interval_ms}" ms"</td></tr>
                <tr><th>"Maintenance"</th><td data-test="host-maintenance">{if h.maintenance { "yes: nothing is placed on it, no failover" } else { "no" }}</td></tr>
                <tr><th>"Duplication"</th><td data-test="host-duplo-interval">{if h.duplo_interval_secs <= 1 { "continuous (every second)".to_string() } else { format!("every {} s", h.duplo_interval_secs) }}</td></tr>
                <tr><th>"Last seen"</th><td>{h.last_seen_at.map(|t| ago(t).into_any()).unwrap_or_else(|| "never".into_any())}</td></tr>
            </table>
        }
    })
    };
    let tables = move || {
        latest.get().map(|s| -> AnyView {
        let m = s.memory.clone();
        view! {
            <section class="card">
                <h2>"CPUs"</h2>
                <table class="grid num" data-test="cpus">
                    <thead><tr><th>"CPU"</th><th>"user %"</th><th>"nice %"</th><th>"system %"</th><th>"iowait %"</th><th>"irq %"</th><th>"softirq %"</th><th>"idle %"</th></tr></thead>
                    <tbody>{s.cpus.iter().enumerate().map(|(i, c)| view! {
                        <tr><td>{i}</td><td>{format!("{:.1}", c.user)}</td><td>{format!("{:.1}", c.nice)}</td><td>{format!("{:.1}", c.system)}</td><td>{format!("{:.1}", c.iowait)}</td><td>{format!("{:.1}", c.irq)}</td><td>{format!("{:.1}", c.softirq)}</td><td>{format!("{:.1}", c.idle)}</td></tr>
                    }).collect_view()}</tbody>
                </table>
                <h2>"Memory"</h2>
                <table class="grid num" data-test="memory">
                    <thead><tr><th></th><th>"total"</th><th>"used"</th><th>"free"</th><th>"shared"</th><th>"buffers"</th><th>"cached"</th></tr></thead>
                    <tbody>
                        <tr><td>"Memory"</td><td>{fmt_bytes(m.total as f64)}</td><td>{fmt_bytes(m.used as f64)}</td><td>{fmt_bytes(m.free as f64)}</td><td>{fmt_bytes(m.shared as f64)}</td><td>{fmt_bytes(m.buffers as f64)}</td><td>{fmt_bytes(m.cached as f64)}</td></tr>
                        <tr><td>"Swap"</td><td>{fmt_bytes(m.swap_total as f64)}</td><td>{fmt_bytes(m.swap_used as f64)}</td><td>{fmt_bytes(m.swap_total.saturating_sub(m.swap_used) as f64)}</td><td></td><td></td><td></td></tr>
                    </tbody>
                </table>
                <h2>"Filesystems"</h2>
                <table class="grid num" data-test="filesystems">
                    <thead><tr><th>"Mounted on"</th><th>"Device"</th><th>"Type"</th><th>"Size"</th><th>"Used"</th><th>"Available"</th><th>"Use %"</th></tr></thead>
                    <tbody>{s.filesystems.iter().map(|f| view! {
                        <tr data-mount=f.mount_point.clone()><td><code>{f.mount_point.clone()}</code></td><td>{f.device.clone()}</td><td>{f.fs_type.clone()}</td><td>{fmt_bytes(f.size_bytes as f64)}</td><td>{fmt_bytes(f.used_bytes as f64)}</td><td>{fmt_bytes(f.available_bytes as f64)}</td><td>{format!("{:.0} %", f.use_pct)}</td></tr>
                    }).collect_view()}</tbody>
                </table>
                <h2>"Disks"</h2>
                <table class="grid num" data-test="disks">
                    <thead><tr><th>"Device"</th><th>"Transfers/s"</th><th>"Read/s"</th><th>"Written/s"</th><th>"Read total"</th><th>"Written total"</th></tr></thead>
                    <tbody>{s.disks.iter().map(|d| view! {
                        <tr><td>{d.device.clone()}</td><td>{format!("{:.1}", d.transfers_per_sec)}</td><td>{fmt_rate(d.read_bytes_per_sec)}</td><td>{fmt_rate(d.written_bytes_per_sec)}</td><td>{fmt_bytes(d.read_bytes_total as f64)}</td><td>{fmt_bytes(d.written_bytes_total as f64)}</td></tr>
                    }).collect_view()}</tbody>
                </table>
                <h2>"Network interfaces"</h2>
                <table class="grid num" data-test="interfaces">
                    <thead><tr><th>"Interface"</th><th>"Receive"</th><th>"Send"</th><th>"Received total"</th><th>"Sent total"</th></tr></thead>
                    <tbody>{s.interfaces.iter().map(|i| view! {
                        <tr><td>{i.name.clone()}</td><td>{fmt_rate(i.rx_bytes_per_sec)}</td><td>{fmt_rate(i.tx_bytes_per_sec)}</td><td>{fmt_bytes(i.rx_bytes_total as f64)}</td><td>{fmt_bytes(i.tx_bytes_total as f64)}</td></tr>
                    }).collect_view()}</tbody>
                </table>
            </section>
        }.into_any()
    })
    };
    view! {
        <section class="card"><h2>"Overview"</h2>{info}</section>
        {move || tables().unwrap_or_else(|| view! { <section class="card"><p class="muted" data-test="no-sample">"No sample yet: the report appears when the host's agent is connected."</p></section> }.into_any())}
    }
}

#[component]
fn EditHost(id: i64, host: RwSignal<Option<HostResponse>>) -> impl IntoView {
    let f = HostFields::default();
    let saved = RwSignal::new(false);
    let errors = FormErrors::new();
    let navigate = use_navigate();
    // Fill the form once the host is loaded.
    Effect::new(move |done: Option<bool>| {
        if done == Some(true) {
            return true;
        }
        match host.get() {
            Some(h) => {
                f.fill(h);
                true
            }
            None => false,
        }
    });
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        saved.set(false);
        let req = match f.request() {
            Ok(r) => r,
            Err(e) => return errors.set(e.into()),
        };
        spawn_local(async move {
            match api::update_host(id, &req).await {
                Ok(h) => {
                    host.set(Some(h));
                    saved.set(true);
                }
                Err(e) => errors.set(e),
            }
        });
    };
    let remove = move |_| {
        let label = host.with_untracked(|h| h.as_ref().map(|h| h.name.clone()).unwrap_or_default());
        let ok = crate::widgets::confirm(&format!(
            "Remove host {label}? The controller disconnects from it."
        ));
        if ok {
            let navigate = navigate.clone();
            spawn_local(async move {
                match api::delete_host(id).await {
                    Ok(()) => navigate("/hosts", Default::default()),
                    Err(e) => errors.set(e),
                }
            });
        }
    };
    view! {
        <section class="card">
            <h2>"Edit host"</h2>
            <form class="inline" on:submit=save data-test="edit-host">
                <label>"Name"<input name="edit-name" bind:value=f.name/><FieldError message=errors.get("name")/></label>
                <label>"Description"<input name="edit-description" bind:value=f.description/><FieldError message=errors.get("description")/></label>
                <label>"Sample every (ms)"<input name="edit-interval" inputmode="numeric" bind:value=f.interval/><FieldError message=errors.get("sample_interval_ms")/></label>
                <label>"Memory for VPSes (MiB)"<input name="edit-cap-memory" inputmode="numeric" bind:value=f.cap_mem placeholder=move || host.with(|h| h.as_ref().map(|h| format!("{} reported", h.capacity.memory_bytes >> 20)).unwrap_or_default())/><FieldError message=errors.get("capacity_memory_bytes")/></label>
                <label>"CPUs for VPSes"<input name="edit-cap-cpus" inputmode="numeric" bind:value=f.cap_cpus placeholder=move || host.with(|h| h.as_ref().map(|h| format!("{} reported", h.capacity.cpu_millis / 1000)).unwrap_or_default())/><FieldError message=errors.get("capacity_cpus")/></label>
                <label>"Disk for VPSes (GiB)"<input name="edit-cap-disk" inputmode="numeric" bind:value=f.cap_disk placeholder=move || host.with(|h| h.as_ref().map(|h| format!("{} reported", h.capacity.disk_bytes >> 30)).unwrap_or_default())/><FieldError message=errors.get("capacity_disk_bytes")/></label>
                <label>"Transfers at once"<input name="edit-max-transfers" inputmode="numeric" bind:value=f.transfers/><FieldError message=errors.get("max_transfers")/></label>
                <label>"Duplicate VPSes every (s)"<input name="edit-duplo-interval" inputmode="numeric" bind:value=f.duplo title="netDUPLO: 1 is continuous, at most 86400"/><FieldError message=errors.get("duplo_interval_secs")/></label>
                <label>"VPS gateway"<input name="edit-gateway" bind:value=f.gateway placeholder="none"/><FieldError message=errors.get("vps_gateway")/></label>
                <button type="submit" class="primary">"Save"</button>
                <Show when=move || saved.get()><span class="ok saved">"Saved"</span></Show>
            </form>
            <FieldError message=errors.get("_form")/>
            <HostNetmon id=id host=host errors=errors/>
            <button class="ghost danger" on:click=remove>"Remove host"</button>
        </section>
    }
}

/// The edit form's fields, as typed.
#[derive(Clone, Copy, Default)]
struct HostFields {
    name: RwSignal<String>,
    description: RwSignal<String>,
    interval: RwSignal<String>,
    cap_mem: RwSignal<String>,
    cap_cpus: RwSignal<String>,
    cap_disk: RwSignal<String>,
    gateway: RwSignal<String>,
    transfers: RwSignal<String>,
    duplo: RwSignal<String>,
}

impl HostFields {
    /// As the host is now (declared capacities stay empty: what the host reports).
    fn fill(&self, h: HostResponse) {
        self.name.set(h.name);
        self.description.set(h.description);
        self.interval.set(h.sample_interval_ms.to_string());
        self.gateway.set(h.vps_gateway.clone().unwrap_or_default());
        self.transfers.set(h.max_transfers.to_string());
        self.duplo.set(h.duplo_interval_secs.to_string());
    }

    /// The edit the fields ask for, checked as the controller checks it.
    fn request(&self) -> Result<UpdateHostRequest, validate::ValidationError> {
        let n = validate::resource_name("name", &self.name.get_untracked())?;
        let ms = match self.interval.get_untracked().trim().parse::<u32>() {
            Ok(v) => validate::sample_interval_ms("sample_interval_ms", v)?,
            Err(_) => {
                return Err(validate::ValidationError::new(
                    "sample_interval_ms",
                    "must be a whole number of milliseconds",
                ))
            }
        };
        // Empty: as the host reports (0 clears a declared value).
        let num = |v: RwSignal<String>,
                   field: &'static str|
         -> Result<Option<u64>, validate::ValidationError> {
            let t = v.get_untracked();
            let t = t.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse::<u64>().map(Some).map_err(|_| {
                validate::ValidationError::new(
                    field,
                    "a whole number, or empty for what the host reports",
                )
            })
        };
        let (mem, cpus, disk) = match (
            num(self.cap_mem, "capacity_memory_bytes"),
            num(self.cap_cpus, "capacity_cpus"),
            num(self.cap_disk, "capacity_disk_bytes"),
        ) {
            (Ok(m), Ok(c), Ok(d)) => (m, c, d),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(e),
        };
        let max_transfers = match self.transfers.get_untracked().trim().parse::<u32>() {
            Ok(v) => validate::max_transfers("max_transfers", v)?,
            Err(_) => {
                return Err(validate::ValidationError::new(
                    "max_transfers",
                    "must be a whole number",
                ))
            }
        };
        let duplo_secs = match self.duplo.get_untracked().trim().parse::<u32>() {
            Ok(v) => validate::duplo_interval_secs("duplo_interval_secs", v)?,
            Err(_) => {
                return Err(validate::ValidationError::new(
                    "duplo_interval_secs",
                    "must be a whole number of seconds (1 is continuous)",
                ))
            }
        };
        Ok(UpdateHostRequest {
            max_transfers: Some(max_transfers),
            duplo_interval_secs: Some(duplo_secs),
            name: Some(n),
            description: Some(self.description.get_untracked()),
            sample_interval_ms: Some(ms),
            capacity_memory_bytes: Some(mem.map(|m| m << 20).unwrap_or(0)),
            capacity_cpus: Some(cpus.unwrap_or(0) as u32),
            capacity_disk_bytes: Some(disk.map(|d| d << 30).unwrap_or(0)),
            vps_gateway: Some(self.gateway.get_untracked()),
            ..Default::default()
        })
    }
}

/// netMON's side of a host: maintenance (its VPSes moved away, their progress shown) and
/// failing its HA VPSes over now.
#[component]
fn HostNetmon(id: i64, host: RwSignal<Option<HostResponse>>, errors: FormErrors) -> impl IntoView {
    let live = expect_context::<Live>();
    live.subscribe_while_mounted(vec![Topic::Tasks]);
    // The moves that entering maintenance started: their progress shows by its button.
    let moves_after = RwSignal::new(None::<i64>);
    let moves = move || {
        moves_after.get().map(|after| {
            live.tasks.with(|m| {
                m.values()
                    .filter(|(t, _)| t.id > after && t.kind == "vps.move")
                    .map(|(t, _)| t.clone())
                    .collect::<Vec<_>>()
            })
        })
    };
    view! {
            <div class="toolbar actions" data-test="host-netmon">
                <button title="Moves its VPSes to other hosts; nothing is placed on it and netMON never fails it over until it leaves maintenance" on:click=move |_| {
                    let on = !host.with_untracked(|h| h.as_ref().is_some_and(|h| h.maintenance));
                    let label = host.with_untracked(|h| h.as_ref().map(|h| h.name.clone()).unwrap_or_default());
                    errors.clear();
                    spawn_local(async move {
                        if on {
                            let on_it = vpses_on(id, false).await;
                            let what = if on_it.is_empty() { "No VPS is on it.".to_string() } else { format!("Its VPSes are moved to other hosts one at a time, each stopped while it moves: {}.", on_it.join(", ")) };
                            if !crate::widgets::confirm(&format!("Put host {label} in maintenance? {what} Nothing is placed on it until it leaves maintenance.")) {
                                return;
                            }
                        }
                        let req = UpdateHostRequest { maintenance: Some(on), ..Default::default() };
                        if on {
                            let newest = api::tasks().await.ok().and_then(|t| t.iter().map(|t| t.id).max()).unwrap_or(0);
                            moves_after.set(Some(newest));
                        }
                        match api::update_host(id, &req).await {
                            Ok(h) => host.set(Some(h)),
                            Err(e) => errors.set(e),
                        }
                    });
                }>{move || if host.with(|h| h.as_ref().is_some_and(|h| h.maintenance)) { "Leave maintenance" } else { "Enter maintenance" }}</button>
                <button title="netMON takes every HA VPS of this host to other hosts now" on:click=move |_| {
                    errors.clear();
                    let label = host.with_untracked(|h| h.as_ref().map(|h| h.name.clone()).unwrap_or_default());
                    spawn_local(async move {
                        let ha = vpses_on(id, true).await;
                        if ha.is_empty() {
                            errors.say(format!("Host {label} has no HA VPS that should run."));
                            return;
                        }
                        if !crate::widgets::confirm(&format!("Fail over the HA VPSes of host {label} now? Each is stopped here (down until it answers on another host), duplicated once more and brought up elsewhere: {}.", ha.join(", "))) {
                            return;
                        }
                        if let Err(e) = api::fail_over(&format!("hosts/{id}")).await {
                            errors.set(e);
                        }
                    });
                }>"Fail over its HA VPSes"</button>
            </div>
            {move || moves().map(|ts| view! {
                <div data-test="maintenance-moves">
                    {if ts.is_empty() { Some(view! { <p class="muted">"Moving its VPSes away…"</p> }) } else { None }}
                    {ts.into_iter().map(|t| view! { <super::tasks::TaskBar task=t/> }).collect_view()}
                </div>
            })}
    }
}

/// The names of the VPSes on host `id` that should run (only the HA ones if `ha`).
async fn vpses_on(id: i64, ha: bool) -> Vec<String> {
    let q = serverware_shared::api::VpsListQuery {
        host_id: Some(id),
        ..Default::default()
    };
    api::vps_page(&q)
        .await
        .map(|(v, _)| v)
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.host_id == Some(id) && (!ha || v.ha_enabled))
        .filter(|v| v.desired_state == serverware_shared::state::DesiredState::Running)
        .map(|v| v.name)
        .collect()
}

/// After a host's key changed: probe it again, show the new fingerprint, pin it when confirmed.
#[component]
fn Rekey(id: i64, host: RwSignal<Option<HostResponse>>) -> impl IntoView {
    let probed = RwSignal::new(None::<ProbeHostResponse>);
    let errors = FormErrors::new();
    let probe = move |_| {
        errors.clear();
        let Some(address) = host.with_untracked(|h| h.as_ref().map(|h| h.address.clone())) else {
            return;
        };
        spawn_local(async move {
            match api::probe_host(&ProbeHostRequest { address }).await {
                Ok(p) => probed.set(Some(p)),
                Err(e) => errors.set(e),
            }
        });
    };
    let pin = move |_| {
        let Some(p) = probed.get_untracked() else {
            return;
        };
        let req = UpdateHostRequest {
            host_key: Some(p.host_key),
            ..Default::default()
        };
        spawn_local(async move {
            match api::update_host(id, &req).await {
                Ok(h) => {
                    host.set(Some(h));
                    probed.set(None);
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card warning-card">
            <h2>"The host presents a different key"</h2>
            <p>"The controller refuses to connect: the host's SSH key is not the one confirmed when it was added. If the host was reinstalled, check its new key on the host and pin it; otherwise, find out who answers at this address."</p>
            <Show when=move || probed.get().is_some() fallback=move || view! { <button on:click=probe>"Read the host's key"</button> }>
                <p>"Key now presented: " <code data-test="new-fingerprint">{move || probed.get().map(|p| p.fingerprint).unwrap_or_default()}</code></p>
                <button class="primary" on:click=pin>"Trust this key"</button>
                " "
                <button class="ghost" on:click=move |_| probed.set(None)>"Cancel"</button>
            </Show>
            <FieldError message=errors.get("host_key")/>
            <FieldError message=errors.get("address")/>
            <FieldError message=errors.get("_form")/>
        </section>
    }
}
