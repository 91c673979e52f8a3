use crate::api;
use crate::live::Live;
use crate::widgets::ago;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serverware_shared::api::EventResponse;
use serverware_shared::ws::Topic;

#[component]
pub fn Dashboard() -> impl IntoView {
    let live = expect_context::<Live>();
    live.subscribe_while_mounted(&[Topic::Events]);
    let recent = RwSignal::new(Vec::<EventResponse>::new());
    let users = RwSignal::new(None::<usize>);
    // (hosts, online)
    let hosts = RwSignal::new(None::<(usize, usize)>);
    Effect::new(move |_| {
        live.generation.get();
        live.inventory.get();
        spawn_local(async move {
            if let Ok(list) = api::events(None, "", 8).await {
                recent.set(list.events);
            }
            if let Ok(u) = api::users().await {
                users.set(Some(u.len()));
            }
            if let Ok(h) = api::hosts().await {
                hosts.set(Some((
                    h.len(),
                    h.iter().filter(|h| h.status == "online").count(),
                )));
            }
        });
    });
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
        <h1>"Dashboard"</h1>
        <div class="cards">
            <div class="card stat"><div class="stat-label">"Hosts"</div>
                {move || match hosts.get() {
                    None => view! { <div class="stat-value">"…"</div> }.into_any(),
                    Some((0, _)) => view! { <div class="stat-empty">"None added yet"</div> }.into_any(),
                    Some((n, up)) => view! { <div class="stat-value">{n.to_string()}</div><div class="muted">{format!("{up} online")}</div> }.into_any(),
                }}
            </div>
            <div class="card stat"><div class="stat-label">"VPSes"</div><div class="stat-empty">"None yet"</div></div>
            <div class="card stat"><div class="stat-label">"Users"</div><div class="stat-value">{move || users.get().map(|n| n.to_string()).unwrap_or("…".into())}</div></div>
        </div>
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
