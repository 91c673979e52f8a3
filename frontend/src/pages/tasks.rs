//! Tasks: every long operation with its progress, kept after it ends; and the progress bar that
//! other pages show for the task they started.

use crate::api;
use crate::charts::fmt_bytes;
use crate::live::Live;
use crate::widgets::ago;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serverware_shared::api::TaskResponse;
use serverware_shared::ws::Topic;

fn bytes_text(t: &TaskResponse) -> String {
    match (t.bytes_done, t.bytes_total) {
        (0, _) => String::new(),
        (d, Some(total)) => format!(" · {} of {}", fmt_bytes(d as f64), fmt_bytes(total as f64)),
        (d, None) => format!(" · {}", fmt_bytes(d as f64)),
    }
}

/// A task's bar: percent, bytes and its newest log line, live.
#[component]
pub fn TaskBar(task: TaskResponse) -> impl IntoView {
    let live = expect_context::<Live>();
    let id = task.id;
    let current = Memo::new(move |_| {
        live.tasks
            .with(|m| m.get(&id).cloned())
            .unwrap_or((task.clone(), None))
    });
    view! {
        <div class="task" data-test="task-progress" data-status=move || current.with(|(t, _)| t.status.clone())>
            <div class="task-head">
                <span>{move || current.with(|(t, _)| format!("{} · task {}", t.kind, t.id))}</span>
                <span class=move || current.with(|(t, _)| format!("badge {}", t.status))>{move || current.with(|(t, _)| t.status.clone())}</span>
            </div>
            <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=move || current.with(|(t, _)| t.progress_pct)>
                <div class=move || current.with(|(t, _)| format!("bar {}", t.status)) style=move || current.with(|(t, _)| format!("width: {}%", t.progress_pct))></div>
            </div>
            <div class="muted task-line">
                {move || current.with(|(t, l)| format!("{} %{}{}", t.progress_pct, bytes_text(t), l.as_ref().map(|l| format!(" — {l}")).unwrap_or_default()))}
            </div>
            <Show when=move || current.with(|(t, _)| t.error.is_some())>
                <div class="field-error" role="alert">{move || current.with(|(t, _)| t.error.clone().unwrap_or_default())}</div>
            </Show>
        </div>
    }
}

#[component]
pub fn TasksPage() -> impl IntoView {
    let live = expect_context::<Live>();
    live.subscribe_while_mounted(vec![Topic::Tasks]);
    let loaded = RwSignal::new(Vec::<TaskResponse>::new());
    let open = RwSignal::new(None::<TaskResponse>);
    Effect::new(move |_| {
        live.generation.get();
        spawn_local(async move {
            if let Ok(t) = api::tasks().await {
                loaded.set(t);
            }
        });
    });
    let list = Signal::derive(move || {
        let mut all: std::collections::BTreeMap<i64, TaskResponse> =
            loaded.get().into_iter().map(|t| (t.id, t)).collect();
        live.tasks.with(|m| {
            for (id, (t, _)) in m {
                all.insert(*id, t.clone());
            }
        });
        all.into_values().rev().collect::<Vec<_>>()
    });
    let show = move |id: i64| {
        spawn_local(async move {
            if let Ok(t) = api::task(id).await {
                open.set(Some(t));
            }
        })
    };
    view! {
        <h1>"Tasks"</h1>
        <Show when=move || open.get().is_some()>
            <section class="card" data-test="task-log">
                <div class="section-head">
                    <h2>{move || open.with(|t| t.as_ref().map(|t| format!("Task {} · {}", t.id, t.kind)).unwrap_or_default())}</h2>
                    <button class="ghost" on:click=move |_| open.set(None)>"Close"</button>
                </div>
                <ol class="log">
                    {move || open.get().and_then(|t| t.log).unwrap_or_default().into_iter().map(|l| view! {
                        <li><span class="muted">{crate::widgets::clock(l.at)}</span>" "{l.line}</li>
                    }).collect_view()}
                </ol>
            </section>
        </Show>
        <section class="card">
            <table class="grid" data-test="tasks">
                <thead><tr><th>"Task"</th><th>"What"</th><th>"Progress"</th><th>"By"</th><th>"Started"</th><th>"Took"</th></tr></thead>
                <tbody>
                    <For each=move || list.get() key=|t| (t.id, t.status.clone(), t.progress_pct) let:t>
                        {
                            let id = t.id;
                            let took = t.finished_at.zip(t.started_at).map(|(f, s)| format!("{:.1} s", (f - s).num_milliseconds() as f64 / 1000.0)).unwrap_or_default();
                            view! {
                                <tr data-task=t.id>
                                    <td><button class="ghost" on:click=move |_| show(id)>{format!("#{}", t.id)}</button></td>
                                    <td>{t.kind.clone()}<div class="muted">{t.target_type.clone().zip(t.target_id.clone()).map(|(a, b)| format!("{a} {b}")).unwrap_or_default()}</div></td>
                                    <td class="wide"><TaskBar task=t.clone()/></td>
                                    <td>{t.created_by.clone()}</td>
                                    <td>{t.started_at.map(|s| ago(s).into_any()).unwrap_or_else(|| "–".into_any())}</td>
                                    <td>{took}</td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
            <Show when=move || list.with(|l| l.is_empty())><p class="muted">"No tasks have run yet. Long operations such as creating or moving a VPS appear here with their progress."</p></Show>
        </section>
    }
}
