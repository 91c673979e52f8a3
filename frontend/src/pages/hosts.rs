use super::FormErrors;
use crate::api;
use crate::app::Auth;
use crate::live::Live;
use crate::widgets::{ago, FieldError};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use serverware_shared::agent::HostSummary;
use serverware_shared::api::*;
use serverware_shared::ws::Topic;
use serverware_shared::{validate, Role};

/// A row of the list: what was loaded, updated by what is pushed.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    host: HostResponse,
    status: String,
    last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
    summary: Option<HostSummary>,
}

/// A row's height (px) until the first one drawn is measured.
const ROW_PX: f64 = 45.0;
/// Rows drawn above and below the ones on screen.
const MARGIN: usize = 30;

/// Which rows of `len` to draw for a scrolling box at `top` of `height` px with rows of
/// `row_px`: the ones on screen and a margin around them.
fn drawn(len: usize, top: f64, height: f64, row_px: f64) -> (usize, usize) {
    let px = row_px.max(1.0);
    let first = (top / px).floor().max(0.0) as usize;
    let fit = (height / px).ceil() as usize + 1;
    let end = (first + fit + MARGIN).min(len);
    (first.saturating_sub(MARGIN).min(end), end)
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "–".into())
}

#[component]
pub fn HostsPage() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let live = expect_context::<Live>();
    live.subscribe_while_mounted(vec![Topic::Hosts, Topic::Inventory]);
    let loaded = RwSignal::new(Vec::<HostResponse>::new());
    let version = RwSignal::new(String::new());
    let load = move || {
        spawn_local(async move {
            if let Ok(h) = api::hosts().await {
                loaded.set(h);
            }
            if let Ok(h) = api::health().await {
                version.set(h.version);
            }
        })
    };
    // The list reloads when hosts are added, changed or removed and after a reconnect; status and
    // figures arrive pushed over the live socket.
    Effect::new(move |_| {
        live.generation.get();
        live.inventory.get();
        load();
    });
    // Only the rows on screen (and a margin) are drawn: a site of a thousand hosts scrolls a box
    // as tall as all of them.
    let (top, height, row_px) = (
        RwSignal::new(0.0),
        RwSignal::new(800.0),
        RwSignal::new(ROW_PX),
    );
    let window =
        Memo::new(move |_| drawn(loaded.with(Vec::len), top.get(), height.get(), row_px.get()));
    let list = Signal::derive(move || {
        let pushed = live.hosts.get();
        let (from, to) = window.get();
        loaded
            .with(|all| all[from.min(all.len())..to.min(all.len())].to_vec())
            .into_iter()
            .map(|h| {
                let mut r = Row {
                    status: h.status.clone(),
                    last_seen_at: h.last_seen_at,
                    summary: h.sample.as_ref().map(|s| s.summary()),
                    host: h,
                };
                if let Some(p) = pushed.get(&r.host.id) {
                    if !p.status.is_empty() {
                        r.status = p.status.clone();
                    }
                    r.last_seen_at = p.last_seen_at.or(r.last_seen_at);
                    if p.summary.is_some() {
                        r.summary = p.summary;
                    }
                }
                // A host that does not answer has no figures now, only its last ones.
                if r.status != "online" {
                    r.summary = None;
                }
                r
            })
            .collect::<Vec<_>>()
    });
    let can_edit = move || {
        auth.user()
            .is_some_and(|s| s.effective_role >= Role::Operator)
    };
    view! {
        <h1>"Hosts"</h1>
        <p class="muted" data-test="controller-version">{move || format!("Controller {}: each host's agent version is in its row.", version.get())}</p>
        <Show when=can_edit><AddHost on_added=Callback::new(move |_| load())/></Show>
        <section class="card">
            <div class="vlist" on:scroll=move |ev| {
                use wasm_bindgen::JsCast;
                if let Some(el) = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) {
                    top.set(f64::from(el.scroll_top()));
                    height.set(f64::from(el.client_height()));
                    if let Some(row) = el.query_selector("tr[data-host]").ok().flatten().and_then(|r| r.dyn_into::<web_sys::HtmlElement>().ok()) {
                        let h = f64::from(row.offset_height());
                        if h > 0.0 && (h - row_px.get_untracked()).abs() > 0.5 {
                            row_px.set(h);
                        }
                    }
                }
            }>
            <table class="grid" data-test="hosts">
                <thead><tr><th>"Name"</th><th>"Address"</th><th>"Status"</th><th>"Load"</th><th>"CPU"</th><th>"Memory"</th><th>"VPSes"</th><th>"Agent"</th><th>"Last seen"</th><th></th></tr></thead>
                <tbody>
                    <tr class="spacer"><td colspan="10" style=move || format!("height: {}px", window.get().0 as f64 * row_px.get())></td></tr>
                    <For each=move || list.get() key=|r| (r.host.id, r.host.name.clone(), r.host.description.clone(), r.host.vps_count, r.host.maintenance, r.status.clone(), r.summary.map(|s| s.taken_at_ms)) let:r>
                        {
                            let id = r.host.id;
                            let name = r.host.name.clone();
                            let remove = move |_| {
                                let ok = crate::widgets::confirm(&format!("Remove host {name}? The controller disconnects from it."));
                                if ok { spawn_local(async move { let _ = api::delete_host(id).await; load(); }); }
                            };
                            let s = r.summary;
                            let label = r.host.name.clone();
                            view! {
                                <tr data-host=r.host.name.clone()>
                                    <td class="name-cell"><A href=format!("/hosts/{id}")><strong>{label}</strong></A>" "<span class="muted" title=r.host.description.clone()>{r.host.description.clone()}</span></td>
                                    <td><code>{r.host.address.clone()}</code></td>
                                    <td><span class=format!("badge {}", r.status)>{r.status.clone()}</span>
                                        {r.host.maintenance.then(|| view! { " " <span class="badge maintenance" data-test="maintenance-badge" title="Nothing is placed on it; netMON does not fail it over">"maintenance"</span> })}</td>
                                    <td>{or_dash(s.map(|s| format!("{:.2}", s.load1)))}</td>
                                    <td>{or_dash(s.map(|s| format!("{:.0} %", s.cpu_pct)))}</td>
                                    <td>{or_dash(s.filter(|s| s.memory_total > 0).map(|s| format!("{:.0} %", s.memory_pct)))}</td>
                                    <td>{r.host.vps_count}</td>
                                    <td>{or_dash(r.host.agent_version.clone())}</td>
                                    <td>{r.last_seen_at.map(|t| ago(t).into_any()).unwrap_or_else(|| "never".into_any())}</td>
                                    <td><Show when=can_edit><button class="ghost danger" on:click=remove.clone()>"Remove"</button></Show></td>
                                </tr>
                            }
                        }
                    </For>
                    <tr class="spacer"><td colspan="10" style=move || format!("height: {}px", loaded.with(Vec::len).saturating_sub(window.get().1) as f64 * row_px.get())></td></tr>
                </tbody>
            </table>
            </div>
            <Show when=move || list.with(|l| l.is_empty())><p class="muted">"No hosts yet."</p></Show>
        </section>
    }
}

#[component]
fn AddHost(on_added: Callback<()>) -> impl IntoView {
    let address = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let probed = RwSignal::new(None::<ProbeHostResponse>);
    let busy = RwSignal::new(false);
    let errors = FormErrors::new();
    let probe = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        if let Err(e) = validate::ssh_address("address", &address.get_untracked()) {
            return errors.set(e.into());
        }
        busy.set(true);
        let req = ProbeHostRequest {
            address: address.get_untracked(),
        };
        spawn_local(async move {
            match api::probe_host(&req).await {
                Ok(p) => probed.set(Some(p)),
                Err(e) => errors.set(e),
            }
            busy.set(false);
        });
    };
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let n = match validate::resource_name("name", &name.get_untracked()) {
            Ok(n) => n,
            Err(e) => return errors.set(e.into()),
        };
        let Some(p) = probed.get_untracked() else {
            return;
        };
        busy.set(true);
        let req = CreateHostRequest {
            duplo_interval_secs: None,
            name: n,
            description: description.get_untracked(),
            address: address.get_untracked(),
            host_key: p.host_key,
            password: Some(password.get_untracked()),
            private_key: None,
        };
        spawn_local(async move {
            match api::create_host(&req).await {
                Ok(_) => {
                    probed.set(None);
                    for s in [address, name, description, password] {
                        s.set(String::new());
                    }
                    on_added.run(());
                }
                Err(e) => errors.set(e),
            }
            busy.set(false);
        });
    };
    view! {
        <section class="card">
            <h2>"Add a host"</h2>
            <Show when=move || probed.get().is_none() fallback=move || view! {
                <div class="secret">
                    <div>"Host key of " <code>{move || address.get()}</code> ": " <code data-test="fingerprint">{move || probed.get().map(|p| p.fingerprint).unwrap_or_default()}</code></div>
                    <div class="muted">"Compare it with " <code>"ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"</code> " on the host before you confirm."</div>
                </div>
                <form class="inline" on:submit=add>
                    <label>"Name"<input name="host-name" bind:value=name placeholder="e.g. node-1"/><FieldError message=errors.get("name")/></label>
                    <label>"Description"<input name="host-description" bind:value=description/><FieldError message=errors.get("description")/></label>
                    <label>"Password (used once)"<input name="host-password" type="password" autocomplete="off" bind:value=password/><FieldError message=errors.get("password")/></label>
                    <button type="submit" class="primary" disabled=move || busy.get()>"Confirm key and add host"</button>
                    <button type="button" class="ghost" on:click=move |_| probed.set(None)>"Cancel"</button>
                </form>
                <FieldError message=errors.get("host_key")/>
                <FieldError message=errors.get("address")/>
                <FieldError message=errors.get("_form")/>
            }>
                <form class="inline" on:submit=probe>
                    <label>"SSH address"<input name="host-address" bind:value=address placeholder="ssh://root@10.0.0.5:22"/><FieldError message=errors.get("address")/></label>
                    <button type="submit" class="primary" disabled=move || busy.get()>"Check host key"</button>
                </form>
                <FieldError message=errors.get("_form")/>
            </Show>
        </section>
    }
}
