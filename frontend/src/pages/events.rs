use crate::api;
use crate::live::Live;
use crate::widgets::ago;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serverware_shared::api::{EventKind, EventResponse};
use serverware_shared::ws::Topic;

/// Audit and system events, live: new ones appear at the top as they happen.
#[component]
pub fn EventsPage() -> impl IntoView {
    let live = expect_context::<Live>();
    live.subscribe_while_mounted(vec![Topic::Events]);
    let loaded = RwSignal::new(Vec::<EventResponse>::new());
    let error = RwSignal::new(None::<String>);
    let kind = RwSignal::new(String::new());
    let action = RwSignal::new(String::new());
    let reload = move || {
        let k = match kind.get_untracked().as_str() {
            "audit" => Some(EventKind::Audit),
            "system" => Some(EventKind::System),
            _ => None,
        };
        let a = action.get_untracked();
        spawn_local(async move {
            match api::events(k, &a, 200).await {
                Ok(list) => {
                    error.set(None);
                    loaded.set(list.events)
                }
                Err(e) => error.set(Some(e.message())),
            }
        });
    };
    // Reload on mount, after every reconnect and when a filter changes.
    Effect::new(move |_| {
        live.generation.get();
        kind.get();
        action.get();
        reload();
    });
    let rows = move || {
        let k = kind.get();
        let a = action.get();
        let matches = |e: &EventResponse| {
            (k.is_empty() || e.kind.as_str() == k)
                && (a.is_empty() || e.action == a || (a.ends_with('.') && e.action.starts_with(&a)))
        };
        let mut v: Vec<EventResponse> = live
            .events
            .with(|l| l.iter().filter(|e| matches(e)).cloned().collect());
        for e in loaded.get() {
            if !v.iter().any(|x| x.id == e.id) {
                v.push(e);
            }
        }
        v.sort_by_key(|e| std::cmp::Reverse(e.id));
        v
    };
    view! {
        <h1>"Events"</h1>
        <div class="toolbar">
            <select bind:value=kind aria-label="Kind">
                <option value="">"All kinds"</option>
                <option value="audit">"Audit"</option>
                <option value="system">"System"</option>
            </select>
            <input placeholder="Action, e.g. token. or user.create" bind:value=action aria-label="Action"/>
        </div>
        <Show when=move || error.get().is_some()><div class="field-error">{move || error.get()}</div></Show>
        <table class="grid" data-test="events">
            <thead><tr><th>"When"</th><th>"Who"</th><th>"What"</th><th>"Target"</th><th>"Message"</th></tr></thead>
            <tbody>
                <For each=rows key=|e| e.id let:e>
                    <tr data-action=e.action.clone()>
                        <td>{ago(e.created_at)}</td>
                        <td>{e.actor.clone()}</td>
                        <td><code>{e.action.clone()}</code></td>
                        <td>{
                            let label = match (&e.target_type, &e.target_name, &e.target_id) {
                                (Some(k), Some(n), _) => format!("{k} {n}"),
                                (Some(k), None, Some(id)) => format!("{k} #{id}"),
                                (Some(k), None, None) => k.clone(),
                                _ => String::new(),
                            };
                            match crate::widgets::target_link(&e) {
                                Some(href) => view! { <leptos_router::components::A href=href>{label}</leptos_router::components::A> }.into_any(),
                                None => view! { <span>{label}</span> }.into_any(),
                            }
                        }</td>
                        <td>{e.message.clone()}{crate::widgets::failover_timeline(&e.details).map(|t| view! { <br/><small data-test="failover-timeline">{t}</small> })}</td>
                    </tr>
                </For>
            </tbody>
        </table>
        <Show when=move || rows().is_empty()><p class="muted">"No events match."</p></Show>
    }
}
