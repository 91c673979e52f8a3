//! Sites: this site and the organization's other sites on one page. Each other site's health is
//! read by the browser from that site's own controller (`GET /api/v1/site`, with an API token
//! made on that site): this controller does no work for them and never sees their tokens, which
//! are kept in this browser only. A site that is a pair is followed to its leader.

use super::FormErrors;
use crate::api::{self, ApiError};
use crate::app::Auth;
use crate::charts::fmt_bytes;
use crate::widgets::{ago, FieldError};
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serverware_shared::api::SiteHealth;
use serverware_shared::sites::SiteLink;
use serverware_shared::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};

/// Where this browser keeps the other sites (name, URL, token).
const STORE_KEY: &str = "serverware.sites";
/// How often every other site is asked again.
const EVERY_S: u64 = 10;

/// What was last learnt of a site.
#[derive(Clone, PartialEq)]
enum Reading {
    Health {
        health: Box<SiteHealth>,
        /// The controller that answered, when not the one listed (a pair's leader).
        via: Option<String>,
        at: DateTime<Utc>,
    },
    Failed {
        why: String,
        at: DateTime<Utc>,
    },
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.local_storage().ok().flatten())
}

/// The sites kept in this browser; an entry that is not valid (edited by hand) is left out.
fn load_links() -> Vec<SiteLink> {
    let kept: Vec<SiteLink> = storage()
        .and_then(|s| s.get_item(STORE_KEY).ok().flatten())
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default();
    let mut links: Vec<SiteLink> = Vec::new();
    for l in kept {
        if let Ok(l) = l.validate(&links) {
            links.push(l);
        }
    }
    links
}

fn store_links(links: &[SiteLink]) -> Result<(), String> {
    let json = serde_json::to_string(links).map_err(|e| e.to_string())?;
    storage()
        .ok_or("this browser keeps no local storage (private mode?)")?
        .set_item(STORE_KEY, &json)
        .map_err(|_| "this browser refused to keep the list (storage full or disabled)".to_string())
}

/// Why a site's answer is no health, in words.
fn why(e: &ApiError) -> String {
    match e.status {
        401 => format!("the site refused the token: {}", e.message()),
        403 => format!("the token may not read the site: {}", e.message()),
        _ => e.message(),
    }
}

/// Asks a site for its health; a pair's standby is asked where the leader is, and the leader
/// is asked with the same token (a pair shares its users and tokens).
async fn read(link: &SiteLink) -> Reading {
    let at = Utc::now();
    let failed = |why: String| Reading::Failed { why, at };
    match api::remote_site(&link.url, &link.token).await {
        Ok(health) => Reading::Health {
            health: Box::new(health),
            via: None,
            at,
        },
        Err(e) if e.body.error == ErrorCode::Standby => {
            let leader = api::remote_health(&link.url)
                .await
                .ok()
                .and_then(|h| h.pair)
                .and_then(|p| p.leader);
            match leader {
                Some(l) if l.url.trim_end_matches('/') != link.url => {
                    match api::remote_site(l.url.trim_end_matches('/'), &link.token).await {
                        Ok(health) => Reading::Health {
                            health: Box::new(health),
                            via: Some(l.name),
                            at,
                        },
                        Err(e) => failed(format!("{} (asked its leader {})", why(&e), l.name)),
                    }
                }
                _ => failed(
                    "this controller is a pair's standby and no controller leads at this moment"
                        .into(),
                ),
            }
        }
        Err(e) => failed(why(&e)),
    }
}

#[component]
pub fn SitesPage() -> impl IntoView {
    let links = RwSignal::new(load_links());
    let readings = RwSignal::new(BTreeMap::<String, Reading>::new());
    // One question to a site at a time (a site that does not answer is not asked twice).
    let asking = StoredValue::new(BTreeSet::<String>::new());
    let ask = move |link: SiteLink| {
        if !asking
            .try_update_value(|a| a.insert(link.url.clone()))
            .unwrap_or(false)
        {
            return;
        }
        spawn_local(async move {
            let r = read(&link).await;
            asking.update_value(|a| {
                a.remove(&link.url);
            });
            // Removed meanwhile: forget the answer.
            if links.with_untracked(|l| l.iter().any(|x| x.url == link.url)) {
                readings.update(|m| {
                    m.insert(link.url.clone(), r);
                });
            }
        });
    };
    let ask_all = move || links.get_untracked().into_iter().for_each(ask);
    ask_all();
    if let Ok(timer) = set_interval_with_handle(ask_all, std::time::Duration::from_secs(EVERY_S)) {
        on_cleanup(move || timer.clear());
    }
    let remove = Callback::new(move |name: String| {
        let ok = crate::widgets::confirm(&format!(
            "Stop showing site {name} here? Its token stays valid on that site: revoke it there."
        ));
        if !ok {
            return;
        }
        let mut l = links.get_untracked();
        l.retain(|x| x.name != name);
        if store_links(&l).is_ok() {
            links.set(l);
        }
    });
    let added = Callback::new(move |(link, r): (SiteLink, Reading)| {
        readings.update(|m| {
            m.insert(link.url.clone(), r);
        });
        links.update(|l| l.push(link));
    });
    view! {
        <h1>"Sites"</h1>
        <p class="muted">"This site and the organization's other sites. Each site is asked by this browser, with a token made on that site, every "{EVERY_S}" s; the list and the tokens are kept in this browser only."</p>
        <section class="card">
            <table class="grid" data-test="sites">
                <thead><tr><th>"Site"</th><th>"State"</th><th>"Hosts online"</th><th>"HA VPSes protected"</th><th>"Duplication lag"</th><th>"Failovers 24 h"</th><th>"Storage"</th><th>"VPSes running"</th><th>"Checked"</th><th></th></tr></thead>
                <tbody>
                    <ThisSite/>
                    <For each=move || links.get() key=|l| l.url.clone() let:link>
                        {
                            let url = link.url.clone();
                            let reading = Signal::derive(move || readings.with(|m| m.get(&url).cloned()));
                            view! { <OtherSite link=link reading=reading remove=remove/> }
                        }
                    </For>
                </tbody>
            </table>
        </section>
        <AddSite links=links added=added/>
    }
}

/// This site's row: its health as the rest of the dashboard has it.
#[component]
fn ThisSite() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let site = expect_context::<crate::widgets::Site>();
    view! {
        <tr data-site="" data-test="this-site">
            <td><strong>{move || auth.site_name.get()}</strong><div class="muted">"this site"</div></td>
            {move || match site.0.get() {
                Some(h) => health_cells(&h, "").into_any(),
                None => view! { <td colspan="7" class="muted">"Loading…"</td> }.into_any(),
            }}
            <td></td>
            <td></td>
        </tr>
    }
}

#[component]
fn OtherSite(
    link: SiteLink,
    reading: Signal<Option<Reading>>,
    remove: Callback<String>,
) -> impl IntoView {
    let SiteLink { name, url, .. } = link;
    let base = url.clone();
    let gone = name.clone();
    view! {
        <tr data-site=name.clone()>
            <td><a href=url.clone() target="_blank" rel="noopener noreferrer"><strong>{name.clone()}</strong></a>
                <div class="muted">{move || match reading.get() {
                    Some(Reading::Health { via: Some(leader), .. }) => format!("{url} · led by {leader}"),
                    _ => url.clone(),
                }}</div></td>
            {move || match reading.get() {
                None => view! { <td colspan="7" class="muted" data-test="sites-state">"Asking…"</td><td></td> }.into_any(),
                Some(Reading::Failed { why, at }) => view! {
                    <td colspan="7" data-test="sites-state"><span class="badge failed">"Unknown"</span>" "<span class="bad">{why}</span></td>
                    <td>{ago(at)}</td>
                }.into_any(),
                Some(Reading::Health { health, at, .. }) => view! {
                    {health_cells(&health, &base)}
                    <td>{ago(at)}</td>
                }.into_any(),
            }}
            <td><button class="ghost danger" data-test="remove-site" on:click=move |_| remove.run(gone.clone())>"Remove"</button></td>
        </tr>
    }
}

/// A site's health in seven cells; `base` is the site's URL ("" for this site) for its links.
fn health_cells(h: &SiteHealth, base: &str) -> impl IntoView {
    let (state, class) = if h.healthy {
        ("Healthy".to_string(), "good")
    } else {
        let n = h.incidents.len();
        (
            format!("{n} incident{}", if n == 1 { "" } else { "s" }),
            "bad",
        )
    };
    let worst = h
        .incidents
        .first()
        .map(|i| (i.title.clone(), format!("{base}{}", i.link)));
    let storage = match (h.storage.filesystem_bytes, h.storage.filesystem_free_bytes) {
        (Some(t), Some(f)) if t > 0 => format!(
            "{:.0} % used · {} free",
            (t - f) as f64 * 100.0 / t as f64,
            fmt_bytes(f as f64)
        ),
        _ => "–".into(),
    };
    let lag = h
        .duplication
        .max_lag_ms
        .map(super::duplo::ago)
        .unwrap_or("–".into());
    let bad = |b: bool| if b { "bad" } else { "" };
    let (hosts_class, ha_class, duplo_class) = (
        bad(h.hosts.down > 0),
        bad(!h.ha.at_risk.is_empty()),
        bad(h.duplication.failing > 0),
    );
    view! {
        <td data-test="sites-state"><span class=format!("stat-value small {class}")>{state}</span>
            {worst.map(|(title, href)| view! { <div><a href=href target="_blank" rel="noopener noreferrer">{title}</a></div> })}</td>
        <td data-test="sites-hosts" class=hosts_class>{format!("{} of {}", h.hosts.online, h.hosts.total)}
            <div class="muted">{format!("{} down · {} in maintenance", h.hosts.down, h.hosts.maintenance)}</div></td>
        <td data-test="sites-ha" class=ha_class>{format!("{} of {}", h.ha.protected, h.ha.total)}</td>
        <td class=duplo_class>{lag}
            <div class="muted">{format!("{} of {} failing", h.duplication.failing, h.duplication.vpses)}</div></td>
        <td>{h.failovers_24h}</td>
        <td>{storage}</td>
        <td data-test="sites-vpses">{format!("{} of {}", h.totals.vpses_running, h.totals.vpses)}</td>
    }
}

/// Adds a site: checked here (as `sw site add` checks it), then asked once; a site that does
/// not answer with its health is not added, and the form keeps what was typed.
#[component]
fn AddSite(links: RwSignal<Vec<SiteLink>>, added: Callback<(SiteLink, Reading)>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let url = RwSignal::new(String::new());
    let token = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let errors = FormErrors::new();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let asked = SiteLink {
            name: name.get_untracked(),
            url: url.get_untracked(),
            token: token.get_untracked(),
        };
        let link = match asked.validate(&links.get_untracked()) {
            Ok(l) => l,
            Err(e) => return errors.set(e.into()),
        };
        busy.set(true);
        spawn_local(async move {
            let r = read(&link).await;
            busy.set(false);
            if let Reading::Failed { why, .. } = &r {
                return errors.say(format!(
                    "{} did not answer with its health: {why}",
                    link.url
                ));
            }
            let mut all = links.get_untracked();
            all.push(link.clone());
            if let Err(e) = store_links(&all) {
                return errors.say(e);
            }
            added.run((link, r));
            name.set(String::new());
            url.set(String::new());
            token.set(String::new());
        });
    };
    view! {
        <section class="card">
            <h2>"Add a site"</h2>
            <p class="muted">"Make an API token on that site (Settings → API tokens; the viewer role is enough) and paste it here. That site's controller must be reachable from this browser."</p>
            <form class="inline" on:submit=submit data-test="add-site">
                <label>"Name"<input name="site-name" bind:value=name placeholder="lon-1"/><FieldError message=errors.get("name")/></label>
                <label>"Controller URL"<input name="site-url" bind:value=url placeholder="https://sw.lon-1.example.net:8443"/><FieldError message=errors.get("url")/></label>
                <label>"API token"<input name="site-token" type="password" autocomplete="off" bind:value=token placeholder="swt_…"/><FieldError message=errors.get("token")/></label>
                <div><button class="primary" type="submit" disabled=move || busy.get()>{move || if busy.get() { "Asking the site…" } else { "Add site" }}</button></div>
            </form>
            <div data-test="add-site-error"><FieldError message=errors.get("_form")/></div>
        </section>
    }
}
