//! The VPS list of a site of any size: the controller filters, orders and pages it
//! (`GET /vpses?q=&sort=&desc=&offset=&limit=`); the page keeps only the rows on screen and a
//! margin around them (virtualised rows in a scrolling box as tall as the whole list), and
//! follows the live figures of the hosts of those rows only (`vpses:<host>`).

use super::vpses::{badge, can_operate, uptime, with_live, CreateVps};
use crate::api;
use crate::app::Auth;
use crate::charts::fmt_bytes;
use crate::live::Live;
use leptos::html::Div;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use serverware_shared::agent::VpsSample;
use serverware_shared::api::{VpsListQuery, VpsResponse, VpsSort};
use serverware_shared::ws::Topic;
use wasm_bindgen::JsCast;

/// A row's height (px) until the first one shown is measured.
const ROW_PX: f64 = 45.0;
/// Rows read above and below the ones on screen.
const MARGIN: usize = 30;

/// The window of the list the page holds: which rows, from where, of how many.
#[derive(Clone, Copy)]
struct Window {
    rows: RwSignal<Vec<VpsResponse>>,
    start: RwSignal<usize>,
    total: RwSignal<Option<usize>>,
    /// When the rows were read (ms), for [`with_live`].
    fetched: RwSignal<f64>,
    row_px: RwSignal<f64>,
    /// The scrolling box's scroll position and height (px).
    top: RwSignal<f64>,
    height: RwSignal<f64>,
    filter: RwSignal<String>,
    sort: RwSignal<(VpsSort, bool)>,
    /// One read at a time; another after it when something changed meanwhile.
    busy: StoredValue<bool>,
    again: StoredValue<bool>,
}

impl Window {
    fn new() -> Window {
        Window {
            rows: RwSignal::new(Vec::new()),
            start: RwSignal::new(0),
            total: RwSignal::new(None),
            fetched: RwSignal::new(0.0),
            row_px: RwSignal::new(ROW_PX),
            top: RwSignal::new(0.0),
            height: RwSignal::new(800.0),
            filter: RwSignal::new(String::new()),
            sort: RwSignal::new((VpsSort::Name, false)),
            busy: StoredValue::new(false),
            again: StoredValue::new(false),
        }
    }

    /// The first row on screen and how many fit.
    fn on_screen(self) -> (usize, usize) {
        let px = self.row_px.get_untracked().max(1.0);
        let first = (self.top.get_untracked() / px).floor().max(0.0) as usize;
        let fit = (self.height.get_untracked() / px).ceil() as usize + 1;
        (first, fit)
    }

    /// Whether the rows held cover what is on screen.
    fn covers(self) -> bool {
        let (first, fit) = self.on_screen();
        let Some(total) = self.total.get_untracked() else {
            return false;
        };
        let start = self.start.get_untracked();
        let end = start + self.rows.with_untracked(Vec::len);
        let want_end = (first + fit).min(total);
        first.min(total) >= start && want_end <= end
    }

    /// Reads the rows on screen and a margin around them, as filtered and ordered now.
    fn load(self) {
        if self.busy.get_value() {
            self.again.set_value(true);
            return;
        }
        self.busy.set_value(true);
        let (first, fit) = self.on_screen();
        let offset = first.saturating_sub(MARGIN);
        let (sort, desc) = self.sort.get_untracked();
        let q = VpsListQuery {
            limit: Some((fit + 2 * MARGIN).min(1000) as u32),
            offset: Some(offset as u32),
            q: Some(self.filter.get_untracked()),
            sort: Some(sort.as_str().to_string()),
            desc: Some(desc),
            ..Default::default()
        };
        spawn_local(async move {
            if let Ok((rows, total)) = api::vps_page(&q).await {
                self.fetched.set(js_sys::Date::now());
                self.start.set(offset);
                self.rows.set(rows);
                self.total.set(Some(total));
            }
            self.busy.set_value(false);
            if self.again.get_value() {
                self.again.set_value(false);
                self.load();
            }
        });
    }

    /// The scrolling box moved or changed size: its rows are read if not held.
    fn scrolled(self, el: &web_sys::Element) {
        self.top.set(f64::from(el.scroll_top()));
        self.height.set(f64::from(el.client_height()));
        if let Some(row) = el
            .query_selector("tr[data-vps]")
            .ok()
            .flatten()
            .and_then(|r| r.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let h = f64::from(row.offset_height());
            if h > 0.0 && (h - self.row_px.get_untracked()).abs() > 0.5 {
                self.row_px.set(h);
            }
        }
        if !self.covers() {
            self.load();
        }
    }
}

/// Follows the live figures of the VPSes of these hosts (`vpses:<host>`) while mounted.
pub fn follow_hosts(live: Live, hosts: impl Fn() -> Vec<i64> + 'static) {
    let followed = StoredValue::new(Vec::<Topic>::new());
    Effect::new(move |_| {
        let mut now: Vec<Topic> = hosts().into_iter().map(Topic::VpsesOf).collect();
        now.sort();
        now.dedup();
        let before = followed.get_value();
        if now != before {
            live.want(&now);
            live.unwant(&before);
            followed.set_value(now);
        }
    });
    on_cleanup(move || live.unwant(&followed.get_value()));
}

#[component]
pub fn VpsesPage() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let live = expect_context::<Live>();
    live.subscribe_while_mounted(vec![Topic::Inventory, Topic::Tasks]);
    let w = Window::new();
    let scroller = NodeRef::<Div>::new();
    // A new filter or order starts at the top.
    Effect::new(move |_| {
        w.filter.track();
        w.sort.track();
        if let Some(el) = scroller.get_untracked() {
            el.set_scroll_top(0);
        }
        w.top.set(0.0);
        w.load();
    });
    Effect::new(move |prev: Option<()>| {
        live.generation.track();
        live.inventory.track();
        live.host_states.track();
        if prev.is_some() {
            w.load();
        }
    });
    follow_hosts(live, move || {
        w.rows
            .with(|r| r.iter().filter_map(|v| v.host_id).collect())
    });
    let shown = Signal::derive(move || {
        let fetched = w.fetched.get();
        let start = w.start.get();
        w.rows.with(|r| {
            r.iter()
                .enumerate()
                .map(|(i, v)| (start + i, with_live(v, &live, fetched)))
                .collect::<Vec<_>>()
        })
    });
    let above = move || w.start.get() as f64 * w.row_px.get();
    let below = move || {
        let held = w.start.get() + w.rows.with(Vec::len);
        w.total.get().unwrap_or(0).saturating_sub(held) as f64 * w.row_px.get()
    };
    view! {
        <h1>"VPSes"</h1>
        <Show when=move || can_operate(&auth)><CreateVps on_created=Callback::new(move |_| w.load())/></Show>
        <section class="card">
            <div class="toolbar">
                <input name="vps-filter" placeholder="Filter by name, address or host" bind:value=w.filter/>
                <span class="muted" data-test="vps-count">{move || count_text(w)}</span>
            </div>
            <div class="vlist" node_ref=scroller on:scroll=move |ev| {
                if let Some(el) = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) {
                    w.scrolled(&el);
                }
            }>
                <table class="grid" data-test="vpses">
                    <Head sort=w.sort/>
                    <tbody>
                        <tr class="spacer"><td colspan="9" style=move || format!("height: {}px", above())></td></tr>
                        <For each=move || shown.get() key=row_key let:row>
                            <Row v=row.1.0 s=row.1.1/>
                        </For>
                        <tr class="spacer"><td colspan="9" style=move || format!("height: {}px", below())></td></tr>
                    </tbody>
                </table>
            </div>
        </section>
    }
}

/// How many VPSes there are, or match the filter.
fn count_text(w: Window) -> String {
    match (w.total.get(), w.filter.with(|f| f.trim().is_empty())) {
        (None, _) => "…".into(),
        (Some(0), true) => "No VPSes yet.".into(),
        (Some(0), false) => "No VPS matches.".into(),
        (Some(1), true) => "1 VPS".into(),
        (Some(n), true) => format!("{n} VPSes"),
        (Some(n), false) => format!("{n} match"),
    }
}

type Shown = (usize, (VpsResponse, Option<VpsSample>));

/// A row is drawn again when what it shows changes.
#[allow(clippy::type_complexity)]
fn row_key(
    (at, (v, s)): &Shown,
) -> (
    usize,
    i64,
    String,
    Option<i64>,
    Option<(String, u32, u64, Option<u32>, u64, i64)>,
) {
    (
        *at,
        v.id,
        v.status.clone(),
        v.host_id,
        s.clone().map(|s| {
            (
                s.state,
                s.processes,
                s.uptime_secs,
                s.init_pid,
                s.memory_used,
                (s.cpu_pct * 10.0) as i64,
            )
        }),
    )
}

/// The columns, each ordering the list on the controller when clicked (again: the other way).
#[component]
fn Head(sort: RwSignal<(VpsSort, bool)>) -> impl IntoView {
    let head = move |col: Option<VpsSort>, label: &'static str| {
        match col {
        Some(col) => view! {
            <th class="sortable" on:click=move |_| sort.update(|s| *s = if s.0 == col { (col, !s.1) } else { (col, false) })>
                {label}{move || { let (c, desc) = sort.get(); if c == col { if desc { " ▼" } else { " ▲" } } else { "" } }}
            </th>
        }
        .into_any(),
        None => view! { <th>{label}</th> }.into_any(),
    }
    };
    view! {
        <thead><tr>
            {head(Some(VpsSort::Name), "Name")}{head(Some(VpsSort::Ipv4), "IP")}{head(Some(VpsSort::Status), "Status")}
            {head(Some(VpsSort::Uptime), "Uptime")}{head(None, "Context")}{head(Some(VpsSort::Processes), "Processes")}
            {head(Some(VpsSort::Host), "Host")}{head(Some(VpsSort::Cpu), "CPU")}{head(Some(VpsSort::Memory), "Memory")}
        </tr></thead>
    }
}

/// One VPS of the list, with its newest figures.
#[component]
fn Row(v: VpsResponse, s: Option<VpsSample>) -> impl IntoView {
    let state = v.status.clone();
    let running = s.as_ref().filter(|s| s.state == "running");
    let label = v.name.clone();
    view! {
        <tr data-vps=v.name.clone()>
            <td class="name-cell"><A href=format!("/vpses/{}", v.id)><strong>{label}</strong></A>
                {v.privileged.then(|| view! { " " <span class="danger-text" title="root in this VPS is root on its host" data-test="vps-privileged">"privileged"</span> })}
                " "<span class="muted" title=v.description.clone()>{v.description.clone()}</span></td>
            <td><code>{v.ipv4.clone()}</code></td>
            <td><span class=badge(&state) data-test="vps-state">{state.clone()}</span></td>
            <td>{s.as_ref().map(|s| uptime(s.uptime_secs)).unwrap_or("–".into())}</td>
            <td>{s.as_ref().and_then(|s| s.init_pid).map(|p| p.to_string()).unwrap_or("–".into())}</td>
            <td data-test="vps-processes">{running.map(|s| s.processes.to_string()).unwrap_or("–".into())}</td>
            <td>{v.host_name.clone().unwrap_or("–".into())}</td>
            <td data-test="vps-cpu">{running.map(|s| format!("{:.1} %", s.cpu_pct)).unwrap_or("–".into())}</td>
            <td data-test="vps-memory">{running.map(|s| format!("{} / {}", fmt_bytes(s.memory_used as f64), fmt_bytes(v.memory_limit_bytes as f64))).unwrap_or("–".into())}</td>
        </tr>
    }
}
