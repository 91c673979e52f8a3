use chrono::{DateTime, Utc};
use leptos::prelude::*;

/// A time as "5 s ago" / "3 min ago" / date, with the exact local time (and its zone) on hover.
pub fn ago(t: DateTime<Utc>) -> impl IntoView {
    let secs = (Utc::now() - t).num_seconds().max(0);
    let text = match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86399 => format!("{} h ago", secs / 3600),
        _ => stamp(t),
    };
    view! { <time title=stamp(t)>{text}</time> }
}

/// The browser's zone as people read it: `UTC`, `UTC+01:00`.
pub fn zone() -> String {
    let off = chrono::Local::now().offset().local_minus_utc();
    if off == 0 {
        "UTC".into()
    } else {
        let (sign, a) = if off < 0 { ('-', -off) } else { ('+', off) };
        format!("UTC{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
    }
}

/// A date and time in the browser's zone, saying which: `2026-12-02 14:05:09 UTC+01:00`.
pub fn stamp(t: DateTime<Utc>) -> String {
    use chrono::Datelike;
    let l = t.with_timezone(&chrono::Local);
    // Written by hand: chrono's strftime machinery costs the dashboard's download dearly.
    format!(
        "{:04}-{:02}-{:02} {}",
        l.year(),
        l.month(),
        l.day(),
        clock(t)
    )
}

/// A time of day in the browser's zone, saying which: `14:05:09 UTC+01:00`.
pub fn clock(t: DateTime<Utc>) -> String {
    use chrono::Timelike;
    let l = t.with_timezone(&chrono::Local);
    format!(
        "{:02}:{:02}:{:02} {}",
        l.hour(),
        l.minute(),
        l.second(),
        zone()
    )
}

/// An error line under a form or next to a field.
#[component]
pub fn FieldError(#[prop(into)] message: Signal<Option<String>>) -> impl IntoView {
    view! {
        <Show when=move || message.get().is_some()>
            <div class="field-error" role="alert">{move || message.get().unwrap_or_default()}</div>
        </Show>
    }
}

/// The site's health as the controller assesses it (`GET /site`), kept current while someone
/// is signed in: re-read after anything that can change it, and every 10 s (lags grow).
#[derive(Clone, Copy)]
pub struct Site(pub RwSignal<Option<serverware_shared::api::SiteHealth>>);

/// Keeps [`Site`] current; one re-read at a time, and one more if something changed meanwhile.
pub fn watch_site(live: crate::live::Live) -> Site {
    let site = Site(RwSignal::new(None));
    let busy = StoredValue::new(false);
    let again = StoredValue::new(false);
    fn load(site: Site, busy: StoredValue<bool>, again: StoredValue<bool>) {
        if busy.get_value() {
            again.set_value(true);
            return;
        }
        busy.set_value(true);
        leptos::task::spawn_local(async move {
            if let Ok(h) = crate::api::site().await {
                site.0.set(Some(h));
            }
            busy.set_value(false);
            if again.get_value() {
                again.set_value(false);
                load(site, busy, again);
            }
        });
    }
    Effect::new(move |_| {
        live.generation.get();
        live.site_changes.get();
        load(site, busy, again);
    });
    if let Ok(timer) = set_interval_with_handle(
        move || load(site, busy, again),
        std::time::Duration::from_secs(10),
    ) {
        on_cleanup(move || timer.clear());
    }
    site
}

/// The incidents of the site, on top of every page: what is wrong, what is being done, and a
/// link to act from.
#[component]
pub fn IncidentBanner() -> impl IntoView {
    let site = expect_context::<Site>();
    let shown = move || {
        site.0
            .with(|s| s.as_ref().map(|s| s.incidents.clone()))
            .unwrap_or_default()
    };
    view! {
        <Show when=move || !shown().is_empty()>
            <section class="incidents" data-test="incident-banner" role="alert">
                {move || shown().into_iter().map(|i| {
                    let sev = i.severity.as_str();
                    view! {
                        <div class=format!("incident {sev}") data-incident=i.key.clone()>
                            <span class=format!("sev {sev}")></span>
                            <div class="incident-text">
                                <strong>{i.title.clone()}</strong>
                                {i.since.map(|t| view! { <span class="muted">" · since "{clock(t)}</span> })}
                                <div>{i.detail.clone()}</div>
                            </div>
                            <leptos_router::components::A href=i.link.clone()>"Open"</leptos_router::components::A>
                        </div>
                    }
                }).collect_view()}
            </section>
        </Show>
    }
}

/// Where an event's target is shown (`/vpses/7`, `/hosts/3`).
pub fn target_link(e: &serverware_shared::api::EventResponse) -> Option<String> {
    let id = e.target_id.as_deref()?;
    match e.target_type.as_deref()? {
        "vps" => Some(format!("/vpses/{id}")),
        "host" => Some(format!("/hosts/{id}")),
        _ => None,
    }
}

/// Live events an operator must see at once, as toasts that go after 15 s or when closed:
/// errors (a host lost, a duplication failing), every failover (done: in the success style),
/// netMON's warnings (a failover that cannot go on), and a lost host's return.
#[component]
pub fn Toasts() -> impl IntoView {
    use serverware_shared::api::Severity;
    let live = expect_context::<crate::live::Live>();
    live.subscribe_while_mounted(vec![serverware_shared::ws::Topic::Events]);
    // (id, message, style, link)
    type Toast = (i64, String, &'static str, Option<String>);
    let shown = RwSignal::new(Vec::<Toast>::new());
    let newest = StoredValue::new(None::<i64>);
    Effect::new(move |_| {
        live.events.with(|evs| {
            let last = newest.get_value();
            let fresh: Vec<Toast> = evs
                .iter()
                .take_while(|e| last.is_none_or(|l| e.id > l))
                .filter(|_| last.is_some())
                .filter_map(|e| {
                    let style = match (e.action.as_str(), e.severity) {
                        ("netmon.failover" | "host.online" | "duplo.cycle_recovered", _) => "ok",
                        ("netmon.warning", _) => "warning",
                        (_, Severity::Error) => "error",
                        _ => return None,
                    };
                    Some((e.id, e.message.clone(), style, target_link(e)))
                })
                .collect();
            if let Some(top) = evs.front() {
                newest.set_value(Some(last.map_or(top.id, |l| l.max(top.id))));
            } else if last.is_none() {
                newest.set_value(Some(0));
            }
            for (id, ..) in &fresh {
                let id = *id;
                set_timeout(
                    move || shown.update(|v| v.retain(|t| t.0 != id)),
                    std::time::Duration::from_secs(15),
                );
            }
            if !fresh.is_empty() {
                shown.update(|v| v.extend(fresh));
            }
        })
    });
    view! {
        <div class="toasts" data-test="toasts">
            {move || shown.get().into_iter().map(|(id, msg, style, link)| view! {
                <div class=format!("toast {style}") role="alert">
                    <p>{msg}</p>
                    {link.map(|l| view! { <leptos_router::components::A href=l>"Open"</leptos_router::components::A> })}
                    <button class="ghost" on:click=move |_| shown.update(|v| v.retain(|t| t.0 != id))>"×"</button>
                </div>
            }).collect_view()}
        </div>
    }
}

/// A failover's timeline (netMON's `netmon.failover` event), from when the host was found lost:
/// "fenced +3.0 s · placed +3.0 s · started +4.2 s · answering +4.5 s".
pub fn failover_timeline(details: &serde_json::Value) -> Option<String> {
    let ms = details.get("ms")?;
    let s = |k: &str| ms.get(k).and_then(|v| v.as_f64()).map(|v| v / 1000.0);
    Some(format!(
        "fenced +{:.1} s · placed +{:.1} s · started +{:.1} s · answering +{:.1} s",
        s("fenced")?,
        s("placed")?,
        s("started")?,
        s("healthy")?
    ))
}

/// A VPS's recent failovers, each with its timeline; a new one appears as it happens.
#[component]
pub fn Failovers(id: i64) -> impl IntoView {
    let live = expect_context::<crate::live::Live>();
    let list = RwSignal::new(Vec::<serverware_shared::api::EventResponse>::new());
    let target = id.to_string();
    // Re-read when a failover of this VPS is pushed (and after a reconnect).
    let seen = Memo::new(move |_| {
        live.events.with(|evs| {
            evs.iter()
                .find(|e| e.action == "netmon.failover" && e.target_id.as_deref() == Some(&target))
                .map(|e| e.id)
        })
    });
    Effect::new(move |_| {
        seen.get();
        live.generation.get();
        leptos::task::spawn_local(async move {
            if let Ok(r) = crate::api::failovers(id).await {
                list.set(r.events);
            }
        });
    });
    view! {
        <Show when=move || !list.get().is_empty()>
            <section class="card" data-test="vps-failovers">
                <h2>"Failovers"</h2>
                <ul>
                    {move || list.get().into_iter().map(|e| view! {
                        <li>{format!("{} — {} ({})", stamp(e.created_at), e.message, e.actor)}
                            <br/><small>{failover_timeline(&e.details).unwrap_or_default()}</small></li>
                    }).collect_view()}
                </ul>
            </section>
        </Show>
    }
}

/// Asks the browser's confirmation; false when refused (or no window).
pub fn confirm(message: &str) -> bool {
    web_sys::window()
        .and_then(|w| w.confirm_with_message(message).ok())
        .unwrap_or(false)
}
