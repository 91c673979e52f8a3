use crate::api;
use crate::charts::{fmt_bytes, fmt_rate, Sparkline};
use crate::live::{Live, SPARK_POINTS};
use crate::widgets::ago;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use serverware_shared::agent::HostSummary;
use serverware_shared::api::EventResponse;
use serverware_shared::api::HostResponse;
use serverware_shared::ws::Topic;

/// Each host as shown: its row, its status and its newest summary (a small site).
type HostNow = (HostResponse, String, Option<HostSummary>);

/// A site with more hosts than this shows its totals and health only (the Hosts page lists
/// them); a smaller one shows each host's last minute too.
const SPARK_HOSTS: u64 = 24;

#[component]
pub fn Dashboard() -> impl IntoView {
    let live = expect_context::<Live>();
    let site = expect_context::<crate::widgets::Site>();
    live.subscribe_while_mounted(vec![Topic::Events, Topic::Hosts, Topic::Inventory]);
    let recent = RwSignal::new(Vec::<EventResponse>::new());
    let users = RwSignal::new(None::<usize>);
    let hosts = RwSignal::new(None::<Vec<HostResponse>>);
    // Each host listed only on a small site (a large one is summed up by the controller).
    let small = Memo::new(move |_| {
        site.0
            .with(|h| h.as_ref().map(|h| h.hosts.total <= SPARK_HOSTS))
    });
    Effect::new(move |_| {
        live.generation.get();
        live.inventory.get();
        let small = small.get();
        spawn_local(async move {
            if let Ok(list) = api::events(None, "", 8).await {
                recent.set(list.events);
            }
            if let Ok(u) = api::users().await {
                users.set(Some(u.len()));
            }
            if small != Some(true) {
                hosts.set(None);
                return;
            }
            if let Ok(h) = api::hosts().await {
                for host in h.iter().filter(|h| h.status == "online") {
                    seed_sparkline(live, host.id).await;
                }
                hosts.set(Some(h));
            }
        });
    });
    // Each host's status and newest summary: pushed if anything was pushed, else as loaded.
    let current = Signal::derive(move || {
        let pushed = live.hosts.get();
        hosts
            .get()
            .unwrap_or_default()
            .into_iter()
            .map(|h| {
                let p = pushed.get(&h.id);
                let status = p
                    .map(|p| p.status.clone())
                    .filter(|s| !s.is_empty())
                    .unwrap_or(h.status.clone());
                let summary: Option<HostSummary> = p
                    .and_then(|p| p.summary)
                    .or_else(|| h.sample.as_ref().map(|s| s.summary()));
                (h, status, summary)
            })
            .collect::<Vec<_>>()
    });
    view! {
        <h1>"Dashboard"</h1>
        <SiteHealth/>
        <Totals users=users/>
        <HostSparks current=current/>
        <Show when=move || small.get() == Some(false)>
            <p class="muted" data-test="hosts-summed">{move || site.0.with(|h| h.as_ref().map(|h| format!("{} hosts: the Hosts page lists them.", h.hosts.total)))}</p>
        </Show>
        <RecentEvents recent=recent/>
    }
}

/// A host's last minute of CPU, so that its sparkline is a line at once (unless pushed samples
/// already drew most of it).
async fn seed_sparkline(live: Live, id: i64) {
    if live.hosts.with_untracked(|m| {
        m.get(&id)
            .is_some_and(|l| l.cpu_history.len() >= SPARK_POINTS / 2)
    }) {
        return;
    }
    let Ok(samples) = api::host_samples(id).await else {
        return;
    };
    let seed: std::collections::VecDeque<f64> = samples
        .iter()
        .rev()
        .take(SPARK_POINTS)
        .rev()
        .map(|s| s.summary().cpu_pct)
        .collect();
    live.hosts.update(|m| {
        let l = m.entry(id).or_insert_with(|| crate::live::HostLive {
            status: String::new(),
            last_seen_at: None,
            summary: None,
            cpu_history: Default::default(),
        });
        if l.cpu_history.len() < seed.len() {
            l.cpu_history = seed;
        }
    });
}

/// The site at a glance: health, hosts, HA protection, duplication lag, storage.
#[component]
fn SiteHealth() -> impl IntoView {
    let site = expect_context::<crate::widgets::Site>();
    view! {
        {move || site.0.get().map(|h| {
            let (state, class) = if h.healthy {
                ("Healthy".to_string(), "good")
            } else {
                let n = h.incidents.len();
                (format!("{n} incident{}", if n == 1 { "" } else { "s" }), "bad")
            };
            let ha_class = if h.ha.at_risk.is_empty() { "good" } else { "bad" };
            let risk = h.ha.at_risk.iter().take(3).map(|r| format!("{}: {}", r.name, r.why)).collect::<Vec<_>>().join(" · ");
            let disk = match (h.storage.filesystem_bytes, h.storage.filesystem_free_bytes) {
                (Some(t), Some(f)) if t > 0 => (format!("{:.0} % used", (t - f) as f64 * 100.0 / t as f64), format!("{} free of {}", fmt_bytes(f as f64), fmt_bytes(t as f64))),
                _ => ("–".into(), String::new()),
            };
            view! {
                <div class="health" data-test="site-health">
                    <div class="card stat"><div class="stat-label">"Site"</div><div class=format!("stat-value small {class}") data-test="site-state">{state}</div>
                        <div class="muted">{format!("{} failover(s) in 24 h", h.failovers_24h)}</div></div>
                    <div class="card stat" data-test="total-hosts"><div class="stat-label">"Hosts online"</div>
                        <div class=format!("stat-value small {}", if h.hosts.down > 0 { "bad" } else { "good" })>{format!("{} of {}", h.hosts.online, h.hosts.total)}</div>
                        <div class="muted">{format!("{} down · {} in maintenance", h.hosts.down, h.hosts.maintenance)}</div></div>
                    <div class="card stat" data-test="ha-health"><div class="stat-label">"HA VPSes protected"</div>
                        <div class=format!("stat-value small {ha_class}")>{format!("{} of {}", h.ha.protected, h.ha.total)}</div>
                        <div class="muted">{if risk.is_empty() { "none at risk".to_string() } else { format!("at risk: {risk}") }}</div></div>
                    <div class="card stat" data-test="duplo-health"><div class="stat-label">"Duplication lag"</div>
                        <div class=format!("stat-value small {}", if h.duplication.failing > 0 { "bad" } else { "" })>{h.duplication.max_lag_ms.map(super::duplo::ago).unwrap_or("–".into())}</div>
                        <div class="muted">{format!("worst{} · {} of {} failing{}", h.duplication.max_lag_vps.clone().map(|n| format!(": {n}")).unwrap_or_default(), h.duplication.failing, h.duplication.vpses, match h.duplication.without_point { 0 => String::new(), n => format!(" · {n} with no point yet") })}</div></div>
                    <div class="card stat" data-test="storage-health"><div class="stat-label">"Storage"</div>
                        <div class="stat-value small">{disk.0}</div><div class="muted">{disk.1}</div></div>
                </div>
            }
        })}
    }
}

/// What the online hosts add up to, and the VPS and user counts (the controller's sums).
#[component]
fn Totals(users: RwSignal<Option<usize>>) -> impl IntoView {
    let site = expect_context::<crate::widgets::Site>();
    let t = move || site.0.with(|h| h.as_ref().map(|h| h.totals.clone()));
    view! {
        <div class="cards">
            <div class="card stat" data-test="total-cpu"><div class="stat-label">"CPU"</div>
                <div class="stat-value">{move || t().map(|t| format!("{:.0} %", t.cpu_pct)).unwrap_or("…".into())}</div>
                <div class="muted">{move || t().map(|t| format!("of {} CPUs online", t.cpus)).unwrap_or_default()}</div>
            </div>
            <div class="card stat" data-test="total-memory"><div class="stat-label">"Memory"</div>
                <div class="stat-value">{move || match t() { Some(t) if t.memory_total > 0 => format!("{:.0} %", t.memory_used as f64 * 100.0 / t.memory_total as f64), _ => "–".to_string() }}</div>
                <div class="muted">{move || t().map(|t| format!("{} of {}", fmt_bytes(t.memory_used as f64), fmt_bytes(t.memory_total as f64))).unwrap_or_default()}</div>
            </div>
            <div class="card stat" data-test="total-network"><div class="stat-label">"Network"</div>
                <div class="stat-value small">{move || t().map(|t| fmt_rate(t.rx_bytes_per_sec)).unwrap_or("…".into())}</div>
                <div class="muted">{move || t().map(|t| format!("in · {} out", fmt_rate(t.tx_bytes_per_sec))).unwrap_or_default()}</div>
            </div>
            <div class="card stat" data-test="total-vpses"><div class="stat-label">"VPSes"</div>
                {move || match t() {
                    None => view! { <div class="stat-value">"…"</div> }.into_any(),
                    Some(t) if t.vpses == 0 => view! { <div class="stat-empty">"None yet"</div> }.into_any(),
                    Some(t) => view! { <div class="stat-value">{t.vpses.to_string()}</div><div class="muted">{format!("{} running", t.vpses_running)}</div> }.into_any(),
                }}
            </div>
            <div class="card stat"><div class="stat-label">"Users"</div><div class="stat-value">{move || users.get().map(|n| n.to_string()).unwrap_or("…".into())}</div></div>
        </div>
    }
}

/// Each host with its last minute of CPU.
#[component]
fn HostSparks(current: Signal<Vec<HostNow>>) -> impl IntoView {
    let live = expect_context::<Live>();
    view! {
        <Show when=move || current.with(|c| !c.is_empty())>
            <section class="card">
                <h2>"Hosts"</h2>
                <table class="grid" data-test="host-sparks">
                    <thead><tr><th>"Host"</th><th>"Status"</th><th>"CPU, last minute"</th><th>"CPU"</th><th>"Memory"</th></tr></thead>
                    <tbody>
                        <For each=move || current.get() key=|(h, _, _)| (h.id, h.name.clone()) let:row>
                            {
                                let id = row.0.id;
                                let label = row.0.name.clone();
                                let status = move || live.hosts.with(|m| m.get(&id).map(|h| h.status.clone())).filter(|s| !s.is_empty()).unwrap_or(row.1.clone());
                                let summary = move || live.hosts.with(|m| m.get(&id).and_then(|h| h.summary));
                                let spark = Signal::derive(move || live.hosts.with(|m| m.get(&id).map(|h| h.cpu_history.iter().copied().collect()).unwrap_or_default()));
                                view! {
                                    <tr data-host=row.0.name.clone()>
                                        <td><A href=format!("/hosts/{id}")>{label}</A></td>
                                        <td><span class=move || format!("badge {}", status())>{status.clone()}</span></td>
                                        <td class="spark-cell"><Sparkline values=spark slots=SPARK_POINTS max=100.0/></td>
                                        <td>{move || summary().map(|s| format!("{:.0} %", s.cpu_pct)).unwrap_or("–".into())}</td>
                                        <td>{move || summary().map(|s| format!("{:.0} %", s.memory_pct)).unwrap_or("–".into())}</td>
                                    </tr>
                                }
                            }
                        </For>
                    </tbody>
                </table>
            </section>
        </Show>
    }
}

/// The newest events, pushed ones first.
#[component]
fn RecentEvents(recent: RwSignal<Vec<EventResponse>>) -> impl IntoView {
    let live = expect_context::<Live>();
    // Newest live events first, then what was loaded, without duplicates.
    let shown = move || {
        let mut v: Vec<EventResponse> = live.events.with(|l| l.iter().take(8).cloned().collect());
        for e in recent.get() {
            if !v.iter().any(|x| x.id == e.id) {
                v.push(e);
            }
        }
        v.sort_by_key(|e| std::cmp::Reverse(e.id));
        v.truncate(8);
        v
    };
    view! {
        <section class="card">
            <h2>"Recent events"</h2>
            <ul class="timeline">
                <For each=shown key=|e| e.id let:e>
                    <li><span class=format!("sev {}", e.severity.as_str())></span><span class="msg">{e.message.clone()}</span><span class="meta">{e.actor.clone()}" · "{ago(e.created_at)}</span></li>
                </For>
            </ul>
        </section>
    }
}
