//! Templates: what VPSes are created from. List, upload an archive, build Debian, delete.

use super::tasks::TaskBar;
use super::FormErrors;
use crate::api;
use crate::app::Auth;
use crate::charts::fmt_bytes;
use crate::live::Live;
use crate::widgets::{ago, FieldError};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serverware_shared::api::*;
use serverware_shared::ws::Topic;
use serverware_shared::{validate, Role};
use wasm_bindgen::JsCast;

#[component]
pub fn TemplatesPage() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let live = expect_context::<Live>();
    live.subscribe_while_mounted(vec![Topic::Inventory, Topic::Tasks]);
    let list = RwSignal::new(Vec::<TemplateResponse>::new());
    let load = move || {
        spawn_local(async move {
            if let Ok(t) = api::templates().await {
                list.set(t);
            }
        })
    };
    Effect::new(move |_| {
        live.generation.get();
        live.inventory.get();
        load();
    });
    let can = move || {
        auth.user()
            .is_some_and(|s| s.effective_role >= Role::Operator)
    };
    let errors = FormErrors::new();
    view! {
        <h1>"Templates"</h1>
        <section class="card">
            <table class="grid" data-test="templates">
                <thead><tr><th>"Name"</th><th>"OS"</th><th>"Size"</th><th>"Status"</th><th>"Added"</th><th></th></tr></thead>
                <tbody>
                    <For each=move || list.get() key=|t| (t.id, t.status.clone()) let:t>
                        {
                            let id = t.id;
                            let name = t.name.clone();
                            let remove = move |_| {
                                let ok = crate::widgets::confirm(&format!("Delete template {name}? VPSes made from it keep their files."));
                                if ok {
                                    spawn_local(async move {
                                        match api::delete_template(id).await {
                                            Ok(()) => load(),
                                            Err(e) => errors.set(e),
                                        }
                                    });
                                }
                            };
                            view! {
                                <tr data-template=t.name.clone()>
                                    <td><strong>{t.name.clone()}</strong><div class="muted">{t.description.clone()}</div></td>
                                    <td>{t.os.clone()}</td>
                                    <td>{fmt_bytes(t.size_bytes as f64)}</td>
                                    <td><span class=format!("badge {}", t.status)>{t.status.clone()}</span></td>
                                    <td>{ago(t.created_at)}</td>
                                    <td><Show when=can><button class="ghost danger" on:click=remove.clone()>"Delete"</button></Show></td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
            <FieldError message=errors.get("_form")/>
        </section>
        <Show when=can>
            <Upload on_done=Callback::new(move |_| load())/>
            <Debian/>
        </Show>
    }
}

#[component]
fn Upload(on_done: Callback<()>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let os = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let errors = FormErrors::new();
    let file_input = NodeRef::<leptos::html::Input>::new();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let n = match validate::resource_name("name", &name.get_untracked()) {
            Ok(n) => n,
            Err(e) => return errors.set(e.into()),
        };
        let o = match validate::label("os", &os.get_untracked()) {
            Ok(o) => o,
            Err(e) => return errors.set(e.into()),
        };
        let file = file_input
            .get_untracked()
            .and_then(|i| i.unchecked_into::<web_sys::HtmlInputElement>().files())
            .and_then(|f| f.get(0));
        let Some(file) = file else {
            return errors.set(
                validate::ValidationError::new(
                    "body",
                    "choose a .tar or .tar.gz of a root filesystem",
                )
                .into(),
            );
        };
        busy.set(true);
        spawn_local(async move {
            match api::upload_template(&n, &o, "", file).await {
                Ok(_) => {
                    name.set(String::new());
                    on_done.run(());
                }
                Err(e) => errors.set(e),
            }
            busy.set(false);
        });
    };
    view! {
        <section class="card">
            <h2>"Upload a root filesystem"</h2>
            <form class="inline" on:submit=submit>
                <label>"Name"<input name="template-name" bind:value=name/><FieldError message=errors.get("name")/></label>
                <label>"OS"<input name="template-os" bind:value=os placeholder="e.g. alpine 3.20"/><FieldError message=errors.get("os")/></label>
                <label>"Archive"<input type="file" name="template-file" accept=".tar,.tar.gz,.tgz" node_ref=file_input/><FieldError message=errors.get("body")/></label>
                <button type="submit" class="primary" disabled=move || busy.get()>{move || if busy.get() { "Uploading…" } else { "Upload" }}</button>
            </form>
            <FieldError message=errors.get("_form")/>
        </section>
    }
}

#[component]
fn Debian() -> impl IntoView {
    let name = RwSignal::new("debian-12".to_string());
    let task = RwSignal::new(None::<TaskResponse>);
    let errors = FormErrors::new();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let n = match validate::resource_name("name", &name.get_untracked()) {
            Ok(n) => n,
            Err(e) => return errors.set(e.into()),
        };
        let req = BuildDebianTemplateRequest {
            name: n,
            suite: None,
            mirror: None,
            description: "Debian 12 (bookworm), minbase with systemd".into(),
        };
        spawn_local(async move {
            match api::build_debian(&req).await {
                Ok(t) => task.set(Some(t)),
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card">
            <h2>"Build a Debian template"</h2>
            <p class="muted">"Runs debootstrap on the controller; it needs a reachable Debian mirror and takes a few minutes."</p>
            <form class="inline" on:submit=submit>
                <label>"Name"<input name="debian-name" bind:value=name/><FieldError message=errors.get("name")/></label>
                <button type="submit">"Build"</button>
            </form>
            <FieldError message=errors.get("_form")/>
            {move || task.get().map(|t| view! { <TaskBar task=t/> })}
        </section>
    }
}
