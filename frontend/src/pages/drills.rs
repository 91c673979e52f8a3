//! A VPS's failover drills: *Drill now* (operators, HA VPSes) with the drill's progress, and
//! each drill's result with its RTO and RPO, newest first.

use super::FormErrors;
use crate::api;
use crate::widgets::FieldError;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serverware_shared::api::{DrillResponse, TaskResponse};

fn secs(ms: Option<i64>) -> String {
    ms.map(|m| format!("{:.1} s", m as f64 / 1000.0))
        .unwrap_or("–".into())
}

fn result(d: &DrillResponse) -> (String, &'static str) {
    let text = match (d.state.as_str(), &d.message) {
        ("running", _) => "under way".to_string(),
        ("passed", _) => "passed".to_string(),
        (_, Some(m)) => format!("failed: {m}"),
        (s, None) => s.to_string(),
    };
    let text = if !d.cleaned && d.state != "running" {
        format!(
            "{text} (its copy is still on {}, removed once it answers)",
            d.host_name
        )
    } else {
        text
    };
    let class = match d.state.as_str() {
        "passed" => "ok-text",
        "failed" => "danger-text",
        _ => "",
    };
    (text, class)
}

/// The drills card of an HA VPS's page.
#[component]
pub fn Drills(id: i64, can_operate: Signal<bool>) -> impl IntoView {
    let list = RwSignal::new(Vec::<DrillResponse>::new());
    let started = RwSignal::new(None::<TaskResponse>);
    let errors = FormErrors::new();
    let load = move || {
        spawn_local(async move {
            if let Ok(d) = api::drills(id).await {
                list.set(d);
            }
        });
    };
    load();
    // A drill takes a minute or so: its result shows when it ends.
    if let Ok(timer) = set_interval_with_handle(load, std::time::Duration::from_secs(3)) {
        on_cleanup(move || timer.clear());
    }
    let running = move || list.with(|l| l.iter().any(|d| d.state == "running"));
    let drill = move |_| {
        errors.clear();
        spawn_local(async move {
            match api::drill_vps(id).await {
                Ok(t) => {
                    started.set(Some(t));
                    load();
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card" data-test="drills">
            <h2>"Failover drills"</h2>
            <p class="muted">"A drill brings the newest restore point up on another host in a network of its own (the live VPS keeps running and is not touched), runs netMON's checks against it, and removes it. RTO: netMON noticing a lost host, then the restore until the checks pass. RPO: how old the point was."</p>
            <Show when=move || can_operate.get()>
                <div class="toolbar">
                    <button data-test="drill-now" on:click=drill disabled=running>"Drill now"</button>
                </div>
            </Show>
            <FieldError message=errors.get("_form")/>
            {move || started.get().map(|t| view! { <div data-test="drill-progress"><super::tasks::TaskBar task=t/></div> })}
            <Show when=move || !list.with(|l| l.is_empty()) fallback=|| view! { <p class="muted">"No drill yet."</p> }>
                <table class="grid" data-test="drill-list">
                    <thead><tr><th>"Started"</th><th>"On host"</th><th>"Point"</th><th>"Result"</th><th>"RTO"</th><th>"RPO"</th><th>"By"</th></tr></thead>
                    <tbody>
                        {move || list.get().into_iter().map(|d| {
                            let (text, class) = result(&d);
                            view! {
                                <tr>
                                    <td>{crate::widgets::stamp(d.started_at)}</td>
                                    <td>{d.host_name.clone()}</td>
                                    <td>{format!("#{}", d.cycle)}</td>
                                    <td class=class data-test="drill-result">{text}</td>
                                    <td data-test="drill-rto">{secs(d.rto_ms)}</td>
                                    <td data-test="drill-rpo">{secs(d.rpo_ms)}</td>
                                    <td>{d.started_by.clone()}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            </Show>
        </section>
    }
}
