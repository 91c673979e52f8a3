use chrono::{DateTime, Utc};
use leptos::prelude::*;

/// A time as "5 s ago" / "3 min ago" / date, with the exact time on hover.
pub fn ago(t: DateTime<Utc>) -> impl IntoView {
    let secs = (Utc::now() - t).num_seconds().max(0);
    let text = match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86399 => format!("{} h ago", secs / 3600),
        _ => t.format("%Y-%m-%d %H:%M").to_string(),
    };
    view! { <time title=t.to_rfc3339() datetime=t.to_rfc3339()>{text}</time> }
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

/// Error events pushed live while the dashboard is open (a failed duplication cycle, a host
/// gone) and every failover, as toasts that go after 15 s or when closed.
#[component]
pub fn Toasts() -> impl IntoView {
    use serverware_shared::api::Severity;
    let live = expect_context::<crate::live::Live>();
    live.subscribe_while_mounted(vec![serverware_shared::ws::Topic::Events]);
    let shown = RwSignal::new(Vec::<(i64, String)>::new());
    let newest = StoredValue::new(None::<i64>);
    Effect::new(move |_| {
        live.events.with(|evs| {
            let last = newest.get_value();
            let fresh: Vec<(i64, String)> = evs
                .iter()
                .take_while(|e| last.is_none_or(|l| e.id > l))
                // Errors, and every failover (netMON).
                .filter(|e| {
                    (e.severity == Severity::Error || e.action == "netmon.failover")
                        && last.is_some()
                })
                .map(|e| (e.id, e.message.clone()))
                .collect();
            if let Some(top) = evs.front() {
                newest.set_value(Some(last.map_or(top.id, |l| l.max(top.id))));
            } else if last.is_none() {
                newest.set_value(Some(0));
            }
            for (id, _) in &fresh {
                let id = *id;
                set_timeout(
                    move || shown.update(|v| v.retain(|(i, _)| *i != id)),
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
            {move || shown.get().into_iter().map(|(id, msg)| view! {
                <div class="toast" role="alert">
                    <p>{msg}</p>
                    <button class="ghost" on:click=move |_| shown.update(|v| v.retain(|(i, _)| *i != id))>"×"</button>
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

/// A VPS's recent failovers, each with its timeline.
#[component]
pub fn Failovers(id: i64) -> impl IntoView {
    let list = RwSignal::new(Vec::<serverware_shared::api::EventResponse>::new());
    leptos::task::spawn_local(async move {
        if let Ok(r) = crate::api::failovers(id).await {
            list.set(r.events);
        }
    });
    view! {
        <Show when=move || !list.get().is_empty()>
            <section class="card" data-test="vps-failovers">
                <h2>"Failovers"</h2>
                <ul>
                    {move || list.get().into_iter().map(|e| view! {
                        <li>{format!("{} — {}", e.created_at.format("%Y-%m-%d %H:%M:%S"), e.message)}
                            <br/><small>{failover_timeline(&e.details).unwrap_or_default()}</small></li>
                    }).collect_view()}
                </ul>
            </section>
        </Show>
    }
}
