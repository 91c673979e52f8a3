//! VPSes: the create form with its progress bar, and a page per VPS with charts and actions
//! (the list is `vps_list`).

use super::tasks::TaskBar;
use super::FormErrors;
use crate::api;
use crate::app::Auth;
use crate::charts::{fmt_bytes, fmt_pct, fmt_rate, LineChart, Series};
use crate::live::{Live, VpsPoint, LIVE_POINTS};
use crate::widgets::FieldError;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};
use serverware_shared::agent::VpsSample;
use serverware_shared::api::*;
use serverware_shared::ws::Topic;
use serverware_shared::{validate, Role};

const MIB: u64 = 1 << 20;

pub(super) fn uptime(secs: u64) -> String {
    match secs {
        0 => "–".into(),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// A VPS as it should be shown now, and its newest figures. The status is the controller's
/// while an operation or a failover is under way, `host offline` once its host stopped
/// answering, and otherwise what its host reports, but only figures pushed well after the VPS
/// was read (`fetched_at`, ms): an older reading could contradict what a task just did.
pub(super) fn with_live(
    v: &VpsResponse,
    live: &Live,
    fetched_at: f64,
) -> (VpsResponse, Option<VpsSample>) {
    let mut v = v.clone();
    let host = v
        .host_id
        .and_then(|h| live.hosts.with(|m| m.get(&h).map(|x| x.status.clone())))
        .filter(|s| !s.is_empty());
    if v.status != "failing over"
        && v.status != "creating"
        && host.as_deref().is_some_and(|s| s != "online")
    {
        v.status = "host offline".into();
        return (v, None);
    }
    let pushed = live.vps_stats.with(|m| {
        m.get(&v.name)
            .filter(|l| Some(l.host_id) == v.host_id)
            .map(|l| (l.sample.clone(), l.history.back().map_or(0.0, |p| p.0)))
    });
    let s = match pushed {
        Some((s, at)) if at > fetched_at + 2000.0 => Some(s),
        _ => v.live.clone(),
    };
    let settled = v.operation.is_none()
        && matches!(
            v.status.as_str(),
            "running" | "stopped" | "frozen" | "missing"
        );
    if let (true, Some(s)) = (settled, &s) {
        v.status = s.state.clone();
    }
    (v, s)
}

/// A badge's class for a status (`failing over` → `failing-over`).
pub fn badge(status: &str) -> String {
    format!("badge {}", status.replace(' ', "-"))
}

pub(super) fn can_operate(auth: &Auth) -> bool {
    auth.user()
        .is_some_and(|s| s.effective_role >= Role::Operator)
}

#[component]
pub(super) fn CreateVps(on_created: Callback<()>) -> impl IntoView {
    let templates = RwSignal::new(Vec::<TemplateResponse>::new());
    let hosts = RwSignal::new(Vec::<HostResponse>::new());
    spawn_local(async move {
        if let Ok(t) = api::templates().await {
            templates.set(t);
        }
        if let Ok(h) = api::hosts().await {
            hosts.set(h);
        }
    });
    let name = RwSignal::new(String::new());
    let ip = RwSignal::new(String::new());
    let memory = RwSignal::new("128".to_string());
    let template = RwSignal::new(String::new());
    let host = RwSignal::new(String::new());
    let start = RwSignal::new(true);
    let privileged = RwSignal::new(false);
    let ha = RwSignal::new(false);
    let priority = RwSignal::new("0".to_string());
    let ports = RwSignal::new(String::new());
    let task = RwSignal::new(None::<TaskResponse>);
    let errors = FormErrors::new();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let n = match validate::vps_name("name", &name.get_untracked()) {
            Ok(n) => n,
            Err(e) => return errors.set(e.into()),
        };
        let addr = match validate::ipv4_address("ipv4", &ip.get_untracked()) {
            Ok(a) => a.to_string(),
            Err(e) => return errors.set(e.into()),
        };
        let mem = match memory.get_untracked().trim().parse::<u64>() {
            Ok(m) => match validate::memory_limit("memory_limit_bytes", m * MIB) {
                Ok(m) => m,
                Err(e) => return errors.set(e.into()),
            },
            Err(_) => {
                return errors.set(
                    validate::ValidationError::new("memory_limit_bytes", "a whole number of MiB")
                        .into(),
                )
            }
        };
        let template_id = template.get_untracked().parse::<i64>().ok().or_else(|| {
            templates.with_untracked(|t| t.iter().find(|t| t.status == "ready").map(|t| t.id))
        });
        let Some(template_id) = template_id else {
            return errors
                .set(validate::ValidationError::new("template_id", "choose a template").into());
        };
        let (ha_priority, check_ports) =
            match validate::ha_settings_text(&priority.get_untracked(), &ports.get_untracked()) {
                Ok(v) => v,
                Err(e) => return errors.set(e.into()),
            };
        let req = CreateVpsRequest {
            name: n,
            template_id,
            host_id: host.get_untracked().parse().ok(),
            ipv4: addr,
            memory_limit_bytes: mem,
            start: start.get_untracked(),
            privileged: privileged.get_untracked(),
            ha_enabled: ha.get_untracked(),
            ha_priority,
            check_ports,
            ..Default::default()
        };
        spawn_local(async move {
            match api::create_vps(&req).await {
                Ok(t) => {
                    task.set(Some(t));
                    name.set(String::new());
                    ip.set(String::new());
                    on_created.run(());
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card">
            <h2>"Create a VPS"</h2>
            <form class="inline" on:submit=submit data-test="create-vps">
                <label>"Name"<input name="vps-name" bind:value=name placeholder="e.g. web-1"/><FieldError message=errors.get("name")/></label>
                <label>"IPv4 address"<input name="vps-ip" bind:value=ip placeholder="10.0.0.50"/><FieldError message=errors.get("ipv4")/></label>
                <label>"Memory (MiB)"<input name="vps-memory" inputmode="numeric" bind:value=memory/><FieldError message=errors.get("memory_limit_bytes")/></label>
                <label>"Template"
                    <select name="vps-template" on:change=move |ev| template.set(event_target_value(&ev))>
                        {move || templates.get().into_iter().filter(|t| t.status == "ready").map(|t| view! { <option value=t.id.to_string()>{format!("{} ({})", t.name, t.os)}</option> }).collect_view()}
                    </select>
                    <FieldError message=errors.get("template_id")/>
                </label>
                <label>"Host"
                    <select name="vps-host" on:change=move |ev| host.set(event_target_value(&ev))>
                        <option value="">"Automatic (most room left)"</option>
                        {move || hosts.get().into_iter().map(|h| view! { <option value=h.id.to_string()>{format!("{} ({})", h.name, h.status)}</option> }).collect_view()}
                    </select>
                    <FieldError message=errors.get("host_id")/>
                </label>
                <label class="check"><input type="checkbox" name="vps-start" bind:checked=start/>"Start it"</label>
                <label class="check" title="Only for templates that cannot run otherwise">
                    <input type="checkbox" name="vps-privileged" bind:checked=privileged/>"Privileged"
                </label>
                <label class="check" title="netMON brings it up on another host when its host is lost, and restarts it when its services stop answering">
                    <input type="checkbox" name="vps-ha" bind:checked=ha/>"High availability"
                </label>
                <Show when=move || ha.get()>
                    <label>"HA priority"<input name="vps-ha-priority" inputmode="numeric" bind:value=priority/><FieldError message=errors.get("ha_priority")/></label>
                    <label>"Checked TCP ports"<input name="vps-check-ports" bind:value=ports placeholder="ICMP only, or e.g. 22, 80"/><FieldError message=errors.get("check_ports")/></label>
                </Show>
                <button type="submit" class="primary">"Create"</button>
            </form>
            <Show when=move || privileged.get()>
                <p class="danger-text" data-test="privileged-warning">
                    "A privileged VPS has no id mapping: root inside it is root on its host. Use it only for a template that cannot run otherwise, and only for someone you trust with the host."
                </p>
            </Show>
            <FieldError message=errors.get("_form")/>
            {move || task.get().map(|t| view! { <TaskBar task=t/> })}
        </section>
    }
}

#[component]
pub fn VpsPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").and_then(|v| v.parse::<i64>().ok()));
    move || match id() {
        Some(id) => view! { <VpsDetail id=id/> }.into_any(),
        None => {
            view! { <super::EmptyPage title="Not found" text="There is no such VPS."/> }.into_any()
        }
    }
}

#[component]
fn VpsDetail(id: i64) -> impl IntoView {
    let auth = expect_context::<Auth>();
    let live = expect_context::<Live>();
    live.subscribe_while_mounted(vec![Topic::Inventory, Topic::Tasks]);
    let vps = RwSignal::new(None::<VpsResponse>);
    // The live figures of its host's VPSes, wherever it runs now.
    super::vps_list::follow_hosts(live, move || {
        vps.with(|v| v.as_ref().and_then(|v| v.host_id).into_iter().collect())
    });
    let fetched = RwSignal::new(0.0f64);
    let missing = RwSignal::new(false);
    let hosts = RwSignal::new(Vec::<HostResponse>::new());
    let task = RwSignal::new(None::<TaskResponse>);
    let notice = RwSignal::new(None::<String>);
    let errors = FormErrors::new();
    let console = RwSignal::new(false);
    let navigate = use_navigate();
    // Reloads overlap when changes come quickly; only the newest one asked for is shown, so
    // a slow answer from before a change never undoes it.
    let asked = StoredValue::new(0u64);
    Effect::new(move |_| {
        live.generation.get();
        live.inventory.get();
        live.host_states.get();
        let n = asked.get_value() + 1;
        asked.set_value(n);
        spawn_local(async move {
            let got = api::vps(id).await;
            if asked.get_value() != n {
                return;
            }
            match got {
                Ok(v) => {
                    fetched.set(js_sys::Date::now());
                    // The failover asked for here is over once it is no longer failing over.
                    if v.status != "failing over"
                        && vps.with_untracked(|o| {
                            o.as_ref().is_some_and(|o| o.status == "failing over")
                        })
                    {
                        notice.set(None);
                    }
                    vps.set(Some(v))
                }
                Err(e) if e.status == 404 => missing.set(true),
                Err(_) => {}
            }
        });
    });
    spawn_local(async move {
        if let Ok(h) = api::hosts().await {
            hosts.set(h);
        }
    });
    let current = Memo::new(move |_| vps.get().map(|v| with_live(&v, &live, fetched.get())));
    let state = move || {
        current.with(|c| {
            c.as_ref()
                .map(|(v, _)| v.status.clone())
                .unwrap_or_default()
        })
    };
    let act = move |action: &'static str| {
        errors.clear();
        notice.set(None);
        spawn_local(async move {
            match api::vps_action(id, action).await {
                Ok(t) => task.set(Some(t)),
                Err(e) => errors.set(e),
            }
        });
    };
    let remove = Callback::new(move |_: ()| {
        let name = vps.with_untracked(|v| v.as_ref().map(|v| v.name.clone()).unwrap_or_default());
        let ok = crate::widgets::confirm(&format!(
            "Delete VPS {name} and its files? This cannot be undone."
        ));
        if ok {
            let navigate = navigate.clone();
            spawn_local(async move {
                match api::delete_vps(id).await {
                    Ok(_) => navigate("/vpses", Default::default()),
                    Err(e) => errors.set(e),
                }
            });
        }
    });
    view! {
        <Show when=move || !missing.get() fallback=|| view! { <super::EmptyPage title="Not found" text="This VPS was deleted or never existed."/> }>
            <div class="page-head">
                <h1>{move || vps.with(|v| v.as_ref().map(|v| v.name.clone()).unwrap_or_else(|| "VPS".into()))}</h1>
                <span data-test="vps-state" class=move || badge(&state())>{state}</span>
                <span class="muted">{move || vps.with(|v| v.as_ref().map(|v| format!("{} on {}", v.ipv4, v.host_name.clone().unwrap_or("no host".into()))).unwrap_or_default())}</span>
            </div>
            <Show when=move || can_operate(&auth)>
                <div class="toolbar actions">
                    <button on:click=move |_| act("start") disabled=move || state() == "running">"Start"</button>
                    <button on:click=move |_| act("stop") disabled=move || state() != "running">"Stop"</button>
                    <button on:click=move |_| act("restart") disabled=move || state() != "running">"Restart"</button>
                    <Show when=move || vps.with(|v| v.as_ref().is_some_and(|v| v.ha_enabled))>
                        <button title="Stop it, duplicate it once more and bring it up on the host with the most room" on:click=move |_| {
                            errors.clear();
                            let (name, host) = vps.with_untracked(|v| v.as_ref().map(|v| (v.name.clone(), v.host_name.clone().unwrap_or_default())).unwrap_or_default());
                            if !crate::widgets::confirm(&format!("Fail over VPS {name}? It is stopped on {host} (its services are down until it answers on another host), duplicated once more, and brought up on the host with the most room.")) {
                                return;
                            }
                            spawn_local(async move {
                                match api::fail_over(&format!("vpses/{id}")).await {
                                    Ok(_) => {
                                        notice.set(Some("Failing over: it is stopped here and comes up on another host.".into()));
                                        live.site_changes.update(|n| *n += 1);
                                    }
                                    Err(e) => errors.set(e),
                                }
                            });
                        }>"Fail over"</button>
                    </Show>
                    <button data-test="open-console" title="A root shell inside the VPS (audited)" on:click=move |_| console.set(true) disabled=move || state() != "running" || console.get()>"Console"</button>
                    <button class="ghost danger" on:click=move |_| remove.run(())>"Delete"</button>
                </div>
            </Show>
            <Show when=move || console.get() && can_operate(&auth)>
                <super::console::Console
                    id=id
                    name=vps.with_untracked(|v| v.as_ref().map(|v| v.name.clone()).unwrap_or_default())
                    on_close=Callback::new(move |_| console.set(false))/>
            </Show>
            <FieldError message=errors.get("_form")/>
            {move || notice.get().map(|n| view! { <p class="notice">{n}</p> })}
            {move || task.get().map(|t| view! { <section class="card"><TaskBar task=t/></section> })}
            <VpsCharts vps=vps/>
            <VpsOverview current=current hosts=hosts/>
            <super::duplo::DuploPanel id=id can_operate=Signal::derive(move || can_operate(&auth)) hosts=hosts/>
            <crate::widgets::Failovers id=id/>
            <Show when=move || vps.with(|v| v.as_ref().is_some_and(|v| v.ha_enabled))>
                <super::drills::Drills id=id can_operate=Signal::derive(move || can_operate(&auth))/>
            </Show>
            <Show when=move || can_operate(&auth)>
                <EditVps id=id vps=vps task=task notice=notice/>
                <CopyMove id=id hosts=hosts task=task/>
            </Show>
        </Show>
    }
}

/// The VPS's pushed samples: CPU, memory, network.
#[component]
fn VpsCharts(vps: RwSignal<Option<VpsResponse>>) -> impl IntoView {
    let live = expect_context::<Live>();
    // Charts from the pushed history.
    let hist = move |f: fn(&VpsPoint) -> Vec<(&'static str, f64)>| {
        Signal::derive(move || {
            let name = vps
                .with(|v| v.as_ref().map(|v| v.name.clone()))
                .unwrap_or_default();
            live.vps_stats.with(|m| {
                let mut out: Vec<Series> = Vec::new();
                if let Some(l) = m.get(&name) {
                    for p in &l.history {
                        for (i, (label, y)) in f(p).into_iter().enumerate() {
                            if out.len() <= i {
                                out.push(Series {
                                    label,
                                    class: ["s0", "s1"][i % 2],
                                    points: Vec::new(),
                                });
                            }
                            out[i].points.push((p.0, y));
                        }
                    }
                }
                out
            })
        })
    };
    let x = Signal::derive(move || {
        let name = vps
            .with(|v| v.as_ref().map(|v| v.name.clone()))
            .unwrap_or_default();
        let end = live
            .vps_stats
            .with(|m| m.get(&name).and_then(|l| l.history.back().map(|p| p.0)))
            .unwrap_or(0.0);
        (end - (LIVE_POINTS as f64 - 1.0) * 1000.0, end)
    });
    let cpu = hist(|p| vec![("cpu", p.1)]);
    let mem = hist(|p| vec![("used", p.2)]);
    let net = hist(|p| vec![("rx", p.3), ("tx", p.4)]);
    view! {
            <div class="chart-grid">
                <LineChart title="CPU (of one CPU)" series=cpu x_range=x format=fmt_pct test_id="vps-chart-cpu"/>
                <LineChart title="Memory" series=mem x_range=x format=fmt_bytes test_id="vps-chart-memory"/>
                <LineChart title="Network" series=net x_range=x format=fmt_rate test_id="vps-chart-network"/>
            </div>
    }
}

/// What the VPS is and how it is doing: its state, limits, HA, services, standby, isolation.
#[component]
fn VpsOverview(
    current: Memo<Option<(VpsResponse, Option<VpsSample>)>>,
    hosts: RwSignal<Vec<HostResponse>>,
) -> impl IntoView {
    view! {
            <section class="card">
                <h2>"Overview"</h2>
                {move || current.get().map(|(v, s)| view! {
                    <table class="grid kv" data-test="vps-info">
                        <tr><th>"Status"</th><td>{v.status.clone()}</td></tr>
                        <tr><th>"Host name"</th><td>{v.hostname.clone()}</td></tr>
                        <tr><th>"Uptime"</th><td>{s.as_ref().map(|s| uptime(s.uptime_secs)).unwrap_or("–".into())}</td></tr>
                        <tr><th>"Context (init PID)"</th><td>{s.as_ref().and_then(|s| s.init_pid).map(|p| p.to_string()).unwrap_or("–".into())}</td></tr>
                        <tr><th>"Processes"</th><td>{s.as_ref().map(|s| s.processes.to_string()).unwrap_or("–".into())}</td></tr>
                        <tr><th>"Memory"</th><td>{format!("{} used of {}", s.as_ref().map(|s| fmt_bytes(s.memory_used as f64)).unwrap_or("–".into()), fmt_bytes(v.memory_limit_bytes as f64))}</td></tr>
                        <tr><th>"CPU"</th><td>{format!("shares {}, limit {}", v.cpu_shares.map(|s| s.to_string()).unwrap_or("default".into()), v.cpu_limit_millis.map(|m| format!("{:.2} CPUs", f64::from(m) / 1000.0)).unwrap_or("none".into()))}</td></tr>
                        <tr><th>"Disk used"</th><td>{s.as_ref().map(|s| fmt_bytes(s.disk_used_bytes as f64)).unwrap_or("–".into())}</td></tr>
                        <tr><th>"Network"</th><td>{s.as_ref().map(|s| format!("{} received, {} sent", fmt_bytes(s.rx_bytes_total as f64), fmt_bytes(s.tx_bytes_total as f64))).unwrap_or("–".into())}</td></tr>
                        <tr><th>"Autostart"</th><td>{if v.autostart { "yes" } else { "no" }}</td></tr>
                        <tr><th>"High availability"</th><td data-test="vps-ha">{if v.ha_enabled {
                            format!("on, priority {}; checks: ICMP{}", v.ha_priority, v.check_ports.iter().map(|p| format!(", TCP {p}")).collect::<String>())
                        } else {
                            "off".to_string()
                        }}</td></tr>
                        <tr><th>"Services"</th><td data-test="vps-services">{match &v.services {
                            Some(h) if h.up => view! { <span class="ok-text">{format!("answering since {}", crate::widgets::clock(h.since))}</span> }.into_any(),
                            Some(h) => view! { <span class="danger-text">{format!("not answering since {}: {}", crate::widgets::clock(h.since), h.detail.clone().unwrap_or_default())}</span> }.into_any(),
                            None => view! { <span>"not checked"</span> }.into_any(),
                        }}</td></tr>
                        <Show when={let ha = v.ha_enabled; move || ha}>
                            <tr><th>"Standby copy"</th><td data-test="vps-standby">{match &v.standby {
                                Some(sb) => {
                                    let host = hosts.get().iter().find(|h| h.id == sb.host_id).map(|h| h.name.clone()).unwrap_or_else(|| format!("host {}", sb.host_id));
                                    match sb.cycle {
                                        Some(c) => format!("on {host}, at restore point {c}: a failover there starts from it"),
                                        None => format!("being made on {host}"),
                                    }
                                }
                                None => "none yet: it needs duplication on, a restore point, and another host with room".to_string(),
                            }}</td></tr>
                        </Show>
                        <tr><th>"Isolation"</th><td data-test="vps-isolation">{match (v.privileged, v.id_base) {
                            (true, _) => view! { <span class="danger-text">"privileged: root in this VPS is root on its host"</span> }.into_any(),
                            (false, Some(b)) => view! { <span>{format!("unprivileged: its ids are {b}–{} on its host", b + 65535)}</span> }.into_any(),
                            (false, None) => view! { <span>"unprivileged"</span> }.into_any(),
                        }}</td></tr>
                    </table>
                })}
            </section>
    }
}

#[component]
fn EditVps(
    id: i64,
    vps: RwSignal<Option<VpsResponse>>,
    task: RwSignal<Option<TaskResponse>>,
    notice: RwSignal<Option<String>>,
) -> impl IntoView {
    let description = RwSignal::new(String::new());
    let ip = RwSignal::new(String::new());
    let memory = RwSignal::new(String::new());
    let shares = RwSignal::new(String::new());
    let ha = RwSignal::new(false);
    let priority = RwSignal::new(String::new());
    let ports = RwSignal::new(String::new());
    let errors = FormErrors::new();
    Effect::new(move |done: Option<bool>| {
        if done == Some(true) {
            return true;
        }
        match vps.get() {
            Some(v) => {
                description.set(v.description);
                ip.set(v.ipv4);
                memory.set((v.memory_limit_bytes as u64 / MIB).to_string());
                shares.set(v.cpu_shares.map(|s| s.to_string()).unwrap_or_default());
                ha.set(v.ha_enabled);
                priority.set(v.ha_priority.to_string());
                ports.set(
                    v.check_ports
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                true
            }
            None => false,
        }
    });
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let addr = match validate::ipv4_address("ipv4", &ip.get_untracked()) {
            Ok(a) => a.to_string(),
            Err(e) => return errors.set(e.into()),
        };
        let mem = match memory
            .get_untracked()
            .trim()
            .parse::<u64>()
            .map(|m| m * MIB)
        {
            Ok(m) => match validate::memory_limit("memory_limit_bytes", m) {
                Ok(m) => m,
                Err(e) => return errors.set(e.into()),
            },
            Err(_) => {
                return errors.set(
                    validate::ValidationError::new("memory_limit_bytes", "a whole number of MiB")
                        .into(),
                )
            }
        };
        let sh = match shares.get_untracked().trim() {
            "" => 0,
            t => match t
                .parse::<u32>()
                .map_err(|_| ())
                .and_then(|v| validate::cpu_shares("cpu_shares", v).map_err(|_| ()))
            {
                Ok(v) => v,
                Err(_) => {
                    return errors.set(
                        validate::ValidationError::new(
                            "cpu_shares",
                            "must be between 2 and 262144 shares",
                        )
                        .into(),
                    )
                }
            },
        };
        let (ha_priority, check_ports) =
            match validate::ha_settings_text(&priority.get_untracked(), &ports.get_untracked()) {
                Ok(v) => v,
                Err(e) => return errors.set(e.into()),
            };
        let req = UpdateVpsRequest {
            description: Some(description.get_untracked()),
            ipv4: Some(addr),
            memory_limit_bytes: Some(mem),
            cpu_shares: Some(sh),
            ha_enabled: Some(ha.get_untracked()),
            ha_priority: Some(ha_priority),
            check_ports: Some(check_ports),
            ..Default::default()
        };
        spawn_local(async move {
            match api::update_vps(id, &req).await {
                Ok(r) => {
                    vps.set(Some(r.vps));
                    notice.set(Some(if r.restart_required {
                        "Saved. The new address takes effect when the VPS restarts.".into()
                    } else {
                        "Saved.".into()
                    }));
                    if let Some(t) = r.task {
                        task.set(Some(t));
                    }
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card">
            <h2>"Edit"</h2>
            <form class="inline" on:submit=save data-test="edit-vps">
                <label>"Description"<input name="vps-description" bind:value=description/><FieldError message=errors.get("description")/></label>
                <label>"IPv4 address"<input name="vps-edit-ip" bind:value=ip/><FieldError message=errors.get("ipv4")/></label>
                <label>"Memory (MiB)"<input name="vps-edit-memory" inputmode="numeric" bind:value=memory/><FieldError message=errors.get("memory_limit_bytes")/></label>
                <label>"CPU shares"<input name="vps-edit-shares" inputmode="numeric" bind:value=shares placeholder="default"/><FieldError message=errors.get("cpu_shares")/></label>
                <label class="check"><input type="checkbox" name="vps-edit-ha" bind:checked=ha/>"High availability"</label>
                <label>"HA priority"<input name="vps-edit-ha-priority" inputmode="numeric" bind:value=priority/><FieldError message=errors.get("ha_priority")/></label>
                <label>"Checked TCP ports"<input name="vps-edit-check-ports" bind:value=ports placeholder="ICMP only"/><FieldError message=errors.get("check_ports")/></label>
                <button type="submit" class="primary">"Save"</button>
            </form>
            <FieldError message=errors.get("_form")/>
        </section>
    }
}

#[component]
fn CopyMove(
    id: i64,
    hosts: RwSignal<Vec<HostResponse>>,
    task: RwSignal<Option<TaskResponse>>,
) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let ip = RwSignal::new(String::new());
    let copy_host = RwSignal::new(String::new());
    let move_host = RwSignal::new(String::new());
    let errors = FormErrors::new();
    let copy = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let n = match validate::vps_name("name", &name.get_untracked()) {
            Ok(n) => n,
            Err(e) => return errors.set(e.into()),
        };
        let a = match validate::ipv4_address("ipv4", &ip.get_untracked()) {
            Ok(a) => a.to_string(),
            Err(e) => return errors.set(e.into()),
        };
        let req = CopyVpsRequest {
            name: n,
            ipv4: a,
            host_id: copy_host.get_untracked().parse().ok(),
            start: false,
        };
        spawn_local(async move {
            match api::copy_vps(id, &req).await {
                Ok(t) => task.set(Some(t)),
                Err(e) => errors.set(e),
            }
        });
    };
    let mv = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let Ok(h) = move_host.get_untracked().parse::<i64>() else {
            return errors.set(
                validate::ValidationError::new("host_id", "choose the host to move to").into(),
            );
        };
        spawn_local(async move {
            match api::move_vps(id, &MoveVpsRequest { host_id: h }).await {
                Ok(t) => task.set(Some(t)),
                Err(e) => errors.set(e),
            }
        });
    };
    let options = move || {
        hosts.get().into_iter().map(|h| view! { <option value=h.id.to_string()>{format!("{} ({})", h.name, h.status)}</option> }).collect_view()
    };
    view! {
        <section class="card">
            <h2>"Copy"</h2>
            <form class="inline" on:submit=copy>
                <label>"New name"<input name="copy-name" bind:value=name/><FieldError message=errors.get("name")/></label>
                <label>"New IPv4 address"<input name="copy-ip" bind:value=ip/><FieldError message=errors.get("ipv4")/></label>
                <label>"Host"<select name="copy-host" on:change=move |ev| copy_host.set(event_target_value(&ev))><option value="">"Same host"</option>{options}</select></label>
                <button type="submit">"Copy"</button>
            </form>
            <h2>"Move"</h2>
            <form class="inline" on:submit=mv>
                <label>"To host"<select name="move-host" on:change=move |ev| move_host.set(event_target_value(&ev))><option value="">"Choose…"</option>{options}</select><FieldError message=errors.get("host_id")/></label>
                <button type="submit">"Move"</button>
            </form>
            <FieldError message=errors.get("_form")/>
        </section>
    }
}
