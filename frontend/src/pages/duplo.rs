//! netDUPLO in the dashboard: a VPS's duplication (last cycle, lag, next cycle, journal, recent
//! cycles) and its restore points with their restore buttons; the Storage page.

use super::FormErrors;
use crate::api;
use crate::charts::fmt_bytes;
use crate::widgets::FieldError;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use serverware_shared::api::*;
use serverware_shared::validate;

pub(crate) fn ago(ms: i64) -> String {
    match ms {
        m if m < 1_000 => format!("{m} ms"),
        m if m < 120_000 => format!("{:.1} s", m as f64 / 1000.0),
        m if m < 7_200_000 => format!("{} min", m / 60_000),
        m => format!("{:.1} h", m as f64 / 3_600_000.0),
    }
}

fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    crate::widgets::stamp(*t)
}

/// The duplication card of a VPS page.
#[component]
pub fn DuploPanel(
    id: i64,
    can_operate: Signal<bool>,
    hosts: RwSignal<Vec<HostResponse>>,
) -> impl IntoView {
    let status = RwSignal::new(None::<DuploStatus>);
    let points = RwSignal::new(Vec::<RestorePoint>::new());
    let errors = FormErrors::new();
    let load = move || {
        spawn_local(async move {
            if let Ok(s) = api::duplo(id).await {
                status.set(Some(s));
            }
            if let Ok(p) = api::restore_points(id).await {
                points.set(p);
            }
        });
    };
    load();
    // Lag and next cycle move every second: refreshed while the page is open.
    if let Ok(timer) = set_interval_with_handle(load, std::time::Duration::from_secs(2)) {
        on_cleanup(move || timer.clear());
    }
    let now = move |_| {
        errors.clear();
        spawn_local(async move {
            match api::duplicate_now(id).await {
                Ok(s) => status.set(Some(s)),
                Err(e) => errors.set(e),
            }
        });
    };
    let toggle = move |_| {
        errors.clear();
        let on = !status.with_untracked(|s| s.as_ref().map(|s| s.enabled).unwrap_or(true));
        spawn_local(async move {
            match api::update_duplo(id, &UpdateDuploRequest { enabled: Some(on) }).await {
                Ok(s) => status.set(Some(s)),
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card" data-test="duplo">
            <h2>"Duplication (netDUPLO)"</h2>
            {move || status.get().map(|s| {
                let state = if !s.enabled {
                    "off".to_string()
                } else if s.running_since.is_some() {
                    "cycle running".to_string()
                } else if s.failures > 0 {
                    format!("failing ({} in a row)", s.failures)
                } else if s.last_cycle.is_some() {
                    "up to date".to_string()
                } else {
                    "waiting for its first cycle".to_string()
                };
                let recent = s.recent.clone();
                let state_class = if s.failures > 0 { "danger-text" } else { "" };
                view! {
                    <table class="grid kv" data-test="duplo-status">
                        <tr><th>"State"</th><td data-test="duplo-state" class=state_class>{state}</td></tr>
                        <tr><th>"Interval"</th><td>{if s.interval_secs <= 1 { "continuous (every second)".to_string() } else { format!("every {} s (set on its host)", s.interval_secs) }}</td></tr>
                        <tr><th>"Last cycle"</th><td data-test="duplo-last">{match (s.last_cycle, s.last_taken_at, s.unchanged_at) {
                            (Some(c), Some(t), Some(u)) => format!("#{c}, read {}; nothing changed since, as of {}", when(&t), when(&u)),
                            (Some(c), Some(t), None) => format!("#{c}, read {}", when(&t)),
                            _ => "none yet".into(),
                        }}</td></tr>
                        <tr><th>"Lag now"</th><td data-test="duplo-lag">{s.lag_ms.map(ago).unwrap_or("–".into())}</td></tr>
                        <tr><th>"Next cycle"</th><td>{match (s.enabled, s.running_since, s.next_in_ms) {
                            (false, _, _) => "–".to_string(),
                            (_, Some(_), _) => "running now".to_string(),
                            (_, _, Some(0)) => "now".to_string(),
                            (_, _, Some(ms)) => format!("in {}", ago(ms)),
                            _ => "–".to_string(),
                        }}</td></tr>
                        <tr><th>"Change journal"</th><td data-test="duplo-journal">{match &s.journal_lost {
                            Some(r) => view! { <span class="warn-text">{format!("not vouching: the last cycle compared everything ({r})")}</span> }.into_any(),
                            None => view! { <span>"kept: cycles read only what changed"</span> }.into_any(),
                        }}</td></tr>
                        {s.last_error.clone().map(|e| view! { <tr><th>"Last error"</th><td class="danger-text" data-test="duplo-error">{e}</td></tr> })}
                        <tr><th>"Restore points"</th><td>{s.points}</td></tr>
                    </table>
                    <h3>"Recent cycles"</h3>
                    <table class="grid" data-test="duplo-cycles">
                        <thead><tr><th>"#"</th><th>"Read at"</th><th>"Kind"</th><th>"Files read"</th><th>"New bytes"</th><th>"Took"</th><th>"Frozen"</th></tr></thead>
                        <tbody>
                            {recent.into_iter().map(|p| view! {
                                <tr>
                                    <td>{p.cycle}</td>
                                    <td>{when(&p.taken_at)}</td>
                                    <td title=p.full_reason.clone().unwrap_or_default()>{if p.full { "full" } else { "changes" }}</td>
                                    <td>{format!("{} of {}", p.entries_read, p.files)}</td>
                                    <td>{fmt_bytes(p.bytes_new as f64)}</td>
                                    <td>{format!("{} ms", p.duration_ms)}</td>
                                    <td>{if p.consistent { format!("{} ms", p.freeze_ms) } else { "no".into() }}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }
            })}
            <Show when=move || can_operate.get()>
                <div class="toolbar">
                    <button data-test="duplo-now" on:click=now disabled=move || status.with(|s| s.as_ref().is_none_or(|s| !s.enabled))>"Duplicate now"</button>
                    <button class="ghost" data-test="duplo-toggle" on:click=toggle>{move || if status.with(|s| s.as_ref().map(|s| s.enabled).unwrap_or(true)) { "Turn duplication off" } else { "Turn duplication on" }}</button>
                </div>
            </Show>
            <FieldError message=errors.get("_form")/>
            <FieldError message=errors.get("enabled")/>
            <RestorePoints id=id points=points can_operate=can_operate hosts=hosts/>
        </section>
    }
}

/// Restore points shown at once.
const PAGE: usize = 10;

#[component]
fn RestorePoints(
    id: i64,
    points: RwSignal<Vec<RestorePoint>>,
    can_operate: Signal<bool>,
    hosts: RwSignal<Vec<HostResponse>>,
) -> impl IntoView {
    let errors = FormErrors::new();
    let chosen = RwSignal::new(None::<u64>);
    // The restore started here: its progress shows where the form was.
    let started = RwSignal::new(None::<TaskResponse>);
    // Newest first, a page at a time: a VPS may have hundreds of points.
    let page = RwSignal::new(0usize);
    let pages = move || points.with(|p| p.len().div_ceil(PAGE).max(1));
    let as_new = RwSignal::new(false);
    let name = RwSignal::new(String::new());
    let ipv4 = RwSignal::new(String::new());
    let host = RwSignal::new(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let Some(cycle) = chosen.get_untracked() else {
            return;
        };
        let host_id = host.get_untracked().parse::<i64>().ok();
        let mut req = RestoreVpsRequest {
            cycle,
            host_id,
            ..Default::default()
        };
        if as_new.get_untracked() {
            match validate::vps_name("name", &name.get_untracked()) {
                Ok(n) => req.name = Some(n),
                Err(e) => return errors.set(e.into()),
            }
            match validate::ipv4_address("ipv4", &ipv4.get_untracked()) {
                Ok(a) => req.ipv4 = Some(a.to_string()),
                Err(e) => return errors.set(e.into()),
            }
        } else {
            let ok = crate::widgets::confirm(&format!(
                        "Replace this VPS's files with restore point {cycle}? It is stopped for it; what changed since is lost."
                    ));
            if !ok {
                return;
            }
        }
        spawn_local(async move {
            match api::restore_vps(id, &req).await {
                Ok(t) => {
                    started.set(Some(t));
                    chosen.set(None);
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <h3>"Restore points"</h3>
        <table class="grid" data-test="restore-points">
            <thead><tr><th>"#"</th><th>"Read at"</th><th>"Files"</th><th>"Size"</th><th></th></tr></thead>
            <tbody>
                {move || points.get().into_iter().skip(page.get().min(pages() - 1) * PAGE).take(PAGE).map(|p| {
                    let c = p.cycle;
                    view! {
                        <tr>
                            <td>{p.cycle}</td>
                            <td>{when(&p.taken_at)}</td>
                            <td>{p.files}</td>
                            <td>{fmt_bytes(p.bytes as f64)}</td>
                            <td><Show when=move || can_operate.get()>
                                <button class="ghost" data-test="restore-button" on:click=move |_| { errors.clear(); started.set(None); chosen.set(Some(c)) }>"Restore…"</button>
                            </Show></td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        <Show when=move || { pages() > 1 }>
            <div class="pager" data-test="points-pager">
                <button class="ghost" disabled=move || page.get() == 0 on:click=move |_| page.update(|p| *p = p.saturating_sub(1))>"Newer"</button>
                <span class="muted">{move || {
                    let n = points.with(|p| p.len());
                    let first = page.get().min(pages() - 1) * PAGE;
                    format!("{}–{} of {n}", first + 1, (first + PAGE).min(n))
                }}</span>
                <button class="ghost" disabled=move || { page.get() + 1 >= pages() } on:click=move |_| page.update(|p| *p += 1)>"Older"</button>
            </div>
        </Show>
        {move || started.get().map(|t| view! { <div data-test="restore-progress"><super::tasks::TaskBar task=t/></div> })}
        {move || chosen.get().map(|c| view! {
            <form class="inline" on:submit=submit data-test="restore-form">
                <strong>{format!("Restore point {c}")}</strong>
                <label><input type="checkbox" name="restore-as-new" bind:checked=as_new/>"as a new VPS"</label>
                <Show when=move || as_new.get()>
                    <label>"Name"<input name="restore-name" bind:value=name/><FieldError message=errors.get("name")/></label>
                    <label>"IPv4"<input name="restore-ipv4" bind:value=ipv4/><FieldError message=errors.get("ipv4")/></label>
                </Show>
                <label>"Host"
                    <select name="restore-host" on:change=move |ev| host.set(event_target_value(&ev))>
                        <option value="">"its own"</option>
                        {move || hosts.get().into_iter().map(|h| view! { <option value=h.id.to_string()>{h.name}</option> }).collect_view()}
                    </select>
                    <FieldError message=errors.get("host_id")/>
                </label>
                <button type="submit" class="primary">"Restore"</button>
                <button type="button" class="ghost" on:click=move |_| chosen.set(None)>"Cancel"</button>
                <FieldError message=errors.get("cycle")/>
                <FieldError message=errors.get("_form")/>
            </form>
        })}
    }
}

/// netDUPLO's storage: use per VPS, what sharing saves, what pruning reclaims, the policy.
#[component]
pub fn StoragePage() -> impl IntoView {
    let report = RwSignal::new(None::<StorageReport>);
    let error = RwSignal::new(None::<String>);
    let load = move || {
        spawn_local(async move {
            match api::storage().await {
                Ok(r) => report.set(Some(r)),
                Err(e) => error.set(Some(e.message())),
            }
        });
    };
    load();
    // Every point adds to the totals: re-read while the page is open.
    if let Ok(timer) = set_interval_with_handle(load, std::time::Duration::from_secs(3)) {
        on_cleanup(move || timer.clear());
    }
    view! {
        <h1>"Storage"</h1>
        {move || error.get().map(|e| view! { <p class="danger-text">{e}</p> })}
        {move || report.get().map(|r| {
            let saved = if r.bytes_logical > 0 {
                format!("{:.1}×", r.bytes_logical as f64 / r.bytes_stored.max(1) as f64)
            } else {
                "–".into()
            };
            view! {
                <section class="card">
                    <table class="grid kv" data-test="storage-summary">
                        <tr><th>"Directory"</th><td>{r.dir.clone()}</td></tr>
                        <tr><th>"Disk"</th><td>{match (r.filesystem_bytes, r.filesystem_free_bytes) {
                            (Some(t), Some(f)) => format!("{} free of {}", fmt_bytes(f as f64), fmt_bytes(t as f64)),
                            _ => "–".into(),
                        }}</td></tr>
                        <tr><th>"Restore points"</th><td>{r.points}</td></tr>
                        <tr><th>"Stored"</th><td data-test="storage-stored" data-chunks=r.chunks_used.to_string() data-bytes=r.bytes_stored.to_string()>{format!("{} in {} chunks, standing for {} of files ({saved} less by sharing chunks and compressing)", fmt_bytes(r.bytes_stored as f64), r.chunks_used, fmt_bytes(r.bytes_logical as f64))}</td></tr>
                        <tr><th>"Pruning"</th><td>{format!("{} reclaimed by the next collection; {} freed by the last{}", fmt_bytes(r.bytes_reclaimable as f64), fmt_bytes(r.bytes_freed_last as f64), r.collected_at.map(|t| format!(" ({})", when(&t))).unwrap_or_default())}</td></tr>
                        <tr><th>"Policy"</th><td>{format!("each VPS's newest {} points, the newest of each hour for {} days and of each day for {} days ", r.keep_last, r.keep_hourly_days, r.keep_daily_days)}" "<A href="/settings">"(change in Settings)"</A></td></tr>
                    </table>
                </section>
                <section class="card">
                    <h2>"Per VPS"</h2>
                    <table class="grid" data-test="storage-vpses">
                        <thead><tr><th>"VPS"</th><th>"Points"</th><th>"Newest point"</th><th>"Added to storage"</th></tr></thead>
                        <tbody>
                            {r.vpses.iter().map(|v| {
                                let label = v.name.clone().unwrap_or(format!("#{} (deleted)", v.vps_id));
                                let href = format!("/vpses/{}", v.vps_id);
                                view! {
                                    <tr>
                                        <td>{if v.name.is_some() { view! { <A href=href>{label}</A> }.into_any() } else { view! { <span>{label}</span> }.into_any() }}</td>
                                        <td>{v.points}</td>
                                        <td>{fmt_bytes(v.newest_bytes as f64)}</td>
                                        <td>{fmt_bytes(v.bytes_added as f64)}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                </section>
            }
        })}
    }
}
