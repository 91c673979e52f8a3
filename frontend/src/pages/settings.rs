use super::FormErrors;
use crate::api;
use crate::app::Auth;
use crate::live::Live;
use crate::widgets::{ago, FieldError};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serverware_shared::api::*;
use serverware_shared::ws::Topic;
use serverware_shared::{validate, Role};

#[component]
pub fn SettingsPage() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let live = expect_context::<Live>();
    live.subscribe_while_mounted(vec![Topic::Inventory]);
    view! {
        <h1>"Settings"</h1>
        <Tokens/>
        <SshKeys/>
        <Password/>
        <Show when=move || auth.is_admin()>
            <Users/>
            <Site/>
            <RestorePointPolicy/>
            <Controllers/>
            <Backups/>
            <System/>
        </Show>
    }
}

/// The site's controllers (admins): a single controller says so; a pair lists both, who leads,
/// the etcd members and whether each answers, and offers a planned switch-over.
#[component]
fn Controllers() -> impl IntoView {
    let view_of = RwSignal::new(None::<PairResponse>);
    let note = RwSignal::new(None::<String>);
    let load = move || {
        spawn_local(async move {
            match api::pair().await {
                Ok(p) => view_of.set(Some(p)),
                Err(e) => note.set(Some(e.message())),
            }
        })
    };
    load();
    if let Ok(timer) = set_interval_with_handle(load, std::time::Duration::from_secs(5)) {
        on_cleanup(move || timer.clear());
    }
    let switch = move |_| {
        let to = view_of
            .get_untracked()
            .and_then(|p| p.controllers.into_iter().find(|c| c.role == "standby"))
            .map(|c| c.name)
            .unwrap_or_else(|| "the partner".into());
        let ok = crate::widgets::confirm(&format!(
                    "Hand the site over to {to}? Running operations end first; the dashboard moves to {to}."
                ));
        if !ok {
            return;
        }
        spawn_local(async move {
            match api::switchover().await {
                Ok(r) => {
                    note.set(Some(r.message));
                    // This controller becomes the standby: the app shows where to go.
                    let _ = web_sys::window().map(|w| w.location().set_href(&r.to.url));
                }
                Err(e) => note.set(Some(e.message())),
            }
        });
    };
    view! {
        <section class="card" data-test="controllers">
            <h2>"Controllers"</h2>
            {move || match view_of.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(p) if p.mode == "single" => view! {
                    <p class="muted">"A single controller: it is not one of a pair (see the README's “A controller pair”)."</p>
                }.into_any(),
                Some(p) => view! {
                    <table>
                        <thead><tr><th>"Controller"</th><th>"Role"</th><th>"Version"</th><th>"Address"</th></tr></thead>
                        <tbody>
                            {p.controllers.into_iter().map(|c| view! {
                                <tr><td>{c.name}</td><td>{c.role}</td><td>{c.version}</td><td>{c.url}</td></tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    <table>
                        <thead><tr><th>"etcd member"</th><th>"Address"</th><th>"Answers"</th></tr></thead>
                        <tbody>
                            {p.etcd.into_iter().map(|m| view! {
                                <tr><td>{m.name}</td><td>{m.url}</td><td>{if m.healthy { "yes" } else { "no" }}</td></tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    {p.database.map(database_view)}
                    {(!p.storage.is_empty()).then(|| view! {
                        <table data-test="storage-nodes">
                            <thead><tr><th>"Storage node (S3)"</th><th>"Answers"</th><th>"Resync queue"</th></tr></thead>
                            <tbody>
                                {p.storage.into_iter().map(|n| view! {
                                    <tr>
                                        <td>{n.endpoint}</td>
                                        <td>{if n.answers { "yes" } else { "no: it catches up once back" }}</td>
                                        <td>{storage_lag(n.resync_queue, n.resync_errors)}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    })}
                    <p class="muted">{format!("The leader holds a lease of {} s in etcd; if it fails, its partner takes over after at most that long.", p.lease_secs)}</p>
                    <button on:click=switch>"Switch over to the partner"</button>
                }.into_any(),
            }}
            {move || note.get().map(|n| view! { <p data-test="controllers-note">{n}</p> })}
        </section>
    }
}

/// The pair's replicated database: the primary, the standby every commit waits for, and how far
/// each standby is behind.
fn database_view(d: serverware_shared::api::DatabaseReplication) -> impl IntoView {
    let sync = match &d.synchronous {
        Some(s) => format!("every commit waits for {s}'s copy"),
        None => {
            "the primary is alone: no standby may take over until one is synchronous again".into()
        }
    };
    let lag = |s: &serverware_shared::api::DatabaseStandby| match (s.lag_bytes, s.replay_lag_ms) {
        (Some(b), Some(ms)) => format!("{b} bytes, {ms} ms"),
        (Some(b), None) => format!("{b} bytes"),
        _ => "—".into(),
    };
    view! {
        <table data-test="database">
            <thead><tr><th>"Database"</th><th>"State"</th><th>"Replication"</th><th>"Resync queue"</th></tr></thead>
            <tbody>
                <tr><td>{d.primary.clone()}</td><td>"primary"</td><td>{sync}</td><td>"—"</td></tr>
                {d.standbys.iter().map(|s| view! {
                    <tr><td>{s.name.clone()}</td><td>{s.state.clone()}</td><td>{s.sync_state.clone()}</td><td>{lag(s)}</td></tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// The controller's own backups (admins): the newest, where they are and their schedule, and
/// *Back up now*. Restoring is `serverware restore FILE` on the stopped controller.
#[component]
fn Backups() -> impl IntoView {
    let list = RwSignal::new(None::<BackupList>);
    let errors = FormErrors::new();
    let busy = RwSignal::new(false);
    let load = move || {
        spawn_local(async move {
            match api::backups().await {
                Ok(l) => list.set(Some(l)),
                Err(e) => errors.set(e),
            }
        })
    };
    load();
    let now = move |_| {
        errors.clear();
        busy.set(true);
        spawn_local(async move {
            if let Err(e) = api::backup_now().await {
                errors.set(e);
            }
            busy.set(false);
            load();
        });
    };
    view! {
        <section class="card" data-test="backups">
            <h2>"Backups of the controller"</h2>
            {move || list.get().map(|l| view! {
                <p class="muted">{format!(
                    "{} in {}; the newest {} kept. Restore with serverware restore FILE on the stopped controller.",
                    if l.every_hours == 0 { "Only when asked".to_string() } else { format!("Every {} h", l.every_hours) },
                    l.dir, l.keep
                )}</p>
                <table class="grid">
                    <thead><tr><th>"Made"</th><th>"File"</th><th>"Size"</th><th>"Release"</th></tr></thead>
                    <tbody>
                        {l.backups.into_iter().map(|b| view! {
                            <tr>
                                <td>{ago(b.created_at)}</td>
                                <td><code>{b.name}</code></td>
                                <td>{crate::charts::fmt_bytes(b.size_bytes as f64)}</td>
                                <td>{format!("{} ({})", b.version, b.database)}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
            <button class="primary" on:click=now disabled=move || busy.get()>"Back up now"</button>
            <FieldError message=errors.get("_form")/>
        </section>
    }
}

/// The controller's background loops (admins): what each is doing, how often it failed and why.
#[component]
fn System() -> impl IntoView {
    let loops = RwSignal::new(Vec::<LoopStatus>::new());
    let load = move || {
        spawn_local(async move {
            if let Ok(l) = api::system_loops().await {
                loops.set(l);
            }
        })
    };
    load();
    view! {
        <section class="card">
            <h2>"System"</h2>
            <table data-test="loops">
                <thead><tr><th>"Loop"</th><th>"State"</th><th>"Runs"</th><th>"Failures"</th><th>"Last error"</th></tr></thead>
                <tbody>
                    {move || loops.get().into_iter().map(|l| view! {
                        <tr>
                            <td>{l.name}</td>
                            <td>{l.state}</td>
                            <td>{l.runs}</td>
                            <td>{l.failures}</td>
                            <td>{l.last_error.unwrap_or_default()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            <button on:click=move |_| load()>"Refresh"</button>
        </section>
    }
}

fn role_from(s: &str) -> Option<Role> {
    s.parse().ok()
}

#[component]
fn Tokens() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let live = expect_context::<Live>();
    let list = RwSignal::new(Vec::<TokenResponse>::new());
    let name = RwSignal::new(String::new());
    let role = RwSignal::new(String::new());
    let days = RwSignal::new(String::new());
    let created = RwSignal::new(None::<CreatedTokenResponse>);
    let copied = RwSignal::new(false);
    let errors = FormErrors::new();
    let load = move || {
        spawn_local(async move {
            if let Ok(t) = api::tokens(false).await {
                list.set(t)
            }
        })
    };
    Effect::new(move |_| {
        live.generation.get();
        live.inventory.get();
        load();
    });
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let n = match validate::label("name", &name.get_untracked()) {
            Ok(n) => n,
            Err(e) => return errors.set(e.into()),
        };
        let expires_in_days = match days.get_untracked().trim() {
            "" => None,
            d => match d
                .parse::<u32>()
                .ok()
                .and_then(|d| validate::token_expiry_days("expires_in_days", d).ok())
            {
                Some(d) => Some(d),
                None => {
                    return errors.set(
                        validate::ValidationError::new(
                            "expires_in_days",
                            "must be between 1 and 3650 days",
                        )
                        .into(),
                    )
                }
            },
        };
        let req = CreateTokenRequest {
            name: n,
            role: role_from(&role.get_untracked()),
            expires_in_days,
        };
        spawn_local(async move {
            match api::create_token(&req).await {
                Ok(c) => {
                    copied.set(false);
                    created.set(Some(c));
                    name.set(String::new());
                    load();
                }
                Err(e) => errors.set(e),
            }
        });
    };
    let copy = move |_| {
        if let (Some(c), Some(w)) = (created.get_untracked(), web_sys::window()) {
            let _ = w.navigator().clipboard().write_text(&c.secret);
            copied.set(true);
        }
    };
    let revoke = move |id: i64| {
        spawn_local(async move {
            if api::revoke_token(id).await.is_ok() {
                load();
            }
        })
    };
    view! {
        <section class="card">
            <h2>"Your API tokens"</h2>
            <p class="muted">"Send a token as " <code>"Authorization: Bearer …"</code> ". It acts with your role or a lower one."</p>
            <Show when=move || created.get().is_some()>
                <div class="secret" data-test="new-token">
                    <div><strong>"Copy this token now: it will not be shown again."</strong></div>
                    <code data-test="token-secret">{move || created.get().map(|c| c.secret).unwrap_or_default()}</code>
                    <button class="ghost" on:click=copy>{move || if copied.get() { "Copied" } else { "Copy" }}</button>
                    <button class="ghost" on:click=move |_| created.set(None)>"Done"</button>
                </div>
            </Show>
            <form class="inline" on:submit=create>
                <label>"Name"<input name="token-name" bind:value=name placeholder="e.g. monitoring"/>
                    <FieldError message=errors.get("name")/></label>
                <label>"Role"
                    <select name="token-role" bind:value=role>
                        <option value="">{move || format!("My role ({})", auth.user().map(|s| s.effective_role.to_string()).unwrap_or_default())}</option>
                        <option value="viewer">"viewer"</option>
                        <option value="operator">"operator"</option>
                        <option value="admin">"admin"</option>
                    </select>
                    <FieldError message=errors.get("role")/></label>
                <label>"Expires in days"<input name="token-days" bind:value=days placeholder="never" inputmode="numeric"/>
                    <FieldError message=errors.get("expires_in_days")/></label>
                <button type="submit" class="primary">"Create token"</button>
            </form>
            <FieldError message=errors.get("_form")/>
            <table class="grid">
                <thead><tr><th>"Name"</th><th>"Starts with"</th><th>"Role"</th><th>"Created"</th><th>"Last used"</th><th></th></tr></thead>
                <tbody>
                    <For each=move || list.get() key=|t| t.id let:t>
                        <tr>
                            <td>{t.name.clone()}</td><td><code>{t.prefix.clone()}"…"</code></td><td>{t.role.to_string()}</td>
                            <td>{ago(t.created_at)}</td>
                            <td>{t.last_used_at.map(|u| ago(u).into_any()).unwrap_or_else(|| "never".into_any())}</td>
                            <td><button class="danger ghost" on:click=move |_| revoke(t.id)>"Revoke"</button></td>
                        </tr>
                    </For>
                </tbody>
            </table>
        </section>
    }
}

/// Public keys that log in to the controller's SSH command line as this user.
#[component]
fn SshKeys() -> impl IntoView {
    let list = RwSignal::new(Vec::<SshKeyResponse>::new());
    let name = RwSignal::new(String::new());
    let key = RwSignal::new(String::new());
    let errors = FormErrors::new();
    let load = move || {
        spawn_local(async move {
            if let Ok(k) = api::ssh_keys().await {
                list.set(k)
            }
        })
    };
    load();
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let n = match validate::label("name", &name.get_untracked()) {
            Ok(n) => n,
            Err(e) => return errors.set(e.into()),
        };
        if let Err(e) = validate::ssh_public_key("public_key", &key.get_untracked()) {
            return errors.set(e.into());
        }
        let req = AddSshKeyRequest {
            name: n,
            public_key: key.get_untracked(),
        };
        spawn_local(async move {
            match api::add_ssh_key(&req).await {
                Ok(_) => {
                    name.set(String::new());
                    key.set(String::new());
                    load();
                }
                Err(e) => errors.set(e),
            }
        });
    };
    let remove = move |id: i64| {
        spawn_local(async move {
            if api::delete_ssh_key(id).await.is_ok() {
                load();
            }
        })
    };
    view! {
        <section class="card">
            <h2>"Your SSH keys"</h2>
            <p class="muted">"Each key logs in to the controller's SSH command line as you: " <code>"ssh -p 2222 you@controller vps list"</code> "."</p>
            <form class="inline" on:submit=add>
                <label>"Name"<input name="ssh-key-name" bind:value=name placeholder="e.g. laptop"/>
                    <FieldError message=errors.get("name")/></label>
                <label>"Public key"<input name="ssh-key" bind:value=key placeholder="ssh-ed25519 AAAA… (~/.ssh/id_ed25519.pub)"/>
                    <FieldError message=errors.get("public_key")/></label>
                <button type="submit" class="primary">"Add key"</button>
            </form>
            <FieldError message=errors.get("_form")/>
            <table class="grid" data-test="ssh-keys">
                <thead><tr><th>"Name"</th><th>"Type"</th><th>"Fingerprint"</th><th>"Added"</th><th>"Last used"</th><th></th></tr></thead>
                <tbody>
                    <For each=move || list.get() key=|k| k.id let:k>
                        <tr>
                            <td>{k.name.clone()}</td><td>{k.key_type.clone()}</td><td><code>{k.fingerprint.clone()}</code></td>
                            <td>{ago(k.created_at)}</td>
                            <td>{k.last_used_at.map(|u| ago(u).into_any()).unwrap_or_else(|| "never".into_any())}</td>
                            <td><button class="danger ghost" on:click=move |_| remove(k.id)>"Remove"</button></td>
                        </tr>
                    </For>
                </tbody>
            </table>
        </section>
    }
}

#[component]
fn Password() -> impl IntoView {
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let done = RwSignal::new(false);
    let errors = FormErrors::new();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        done.set(false);
        if let Err(e) = validate::new_password("new_password", &new.get_untracked()) {
            return errors.set(e.into());
        }
        let req = ChangePasswordRequest {
            current_password: current.get_untracked(),
            new_password: new.get_untracked(),
        };
        spawn_local(async move {
            match api::change_password(&req).await {
                Ok(()) => {
                    done.set(true);
                    current.set(String::new());
                    new.set(String::new());
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card">
            <h2>"Your password"</h2>
            <form class="inline" on:submit=submit>
                <label>"Current password"<input type="password" autocomplete="current-password" bind:value=current/></label>
                <label>"New password"<input type="password" autocomplete="new-password" bind:value=new/>
                    <FieldError message=errors.get("new_password")/></label>
                <button type="submit" class="primary">"Change password"</button>
            </form>
            <FieldError message=errors.get("_form")/>
            <Show when=move || done.get()><p class="ok">"Password changed. Your other sessions have ended."</p></Show>
        </section>
    }
}

#[component]
fn Users() -> impl IntoView {
    let live = expect_context::<Live>();
    let auth = expect_context::<Auth>();
    let list = RwSignal::new(Vec::<UserResponse>::new());
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let role = RwSignal::new("viewer".to_string());
    let errors = FormErrors::new();
    let row_error = RwSignal::new(None::<String>);
    let load = move || {
        spawn_local(async move {
            if let Ok(u) = api::users().await {
                list.set(u)
            }
        })
    };
    Effect::new(move |_| {
        live.generation.get();
        live.inventory.get();
        load();
    });
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let u = match validate::username("username", &username.get_untracked()) {
            Ok(u) => u,
            Err(e) => return errors.set(e.into()),
        };
        if let Err(e) = validate::new_password("password", &password.get_untracked()) {
            return errors.set(e.into());
        }
        let req = CreateUserRequest {
            username: u,
            password: password.get_untracked(),
            role: role_from(&role.get_untracked()).unwrap_or(Role::Viewer),
        };
        spawn_local(async move {
            match api::create_user(&req).await {
                Ok(_) => {
                    username.set(String::new());
                    password.set(String::new());
                    load();
                }
                Err(e) => errors.set(e),
            }
        });
    };
    let update = move |id: i64, req: UpdateUserRequest| {
        row_error.set(None);
        spawn_local(async move {
            match api::update_user(id, &req).await {
                Ok(_) => load(),
                Err(e) => {
                    row_error.set(Some(e.message()));
                    load();
                }
            }
        });
    };
    let remove = move |u: UserResponse| {
        let ok = crate::widgets::confirm(&format!(
            "Delete user {}? Their sessions and tokens end.",
            u.username
        ));
        if ok {
            spawn_local(async move {
                match api::delete_user(u.id).await {
                    Ok(()) => load(),
                    Err(e) => row_error.set(Some(e.message())),
                }
            });
        }
    };
    view! {
        <section class="card">
            <h2>"Users"</h2>
            <FieldError message=row_error/>
            <table class="grid">
                <thead><tr><th>"User"</th><th>"Role"</th><th>"Status"</th><th>"Last login"</th><th></th></tr></thead>
                <tbody>
                    <For each=move || list.get() key=|u| (u.id, u.role, u.disabled) let:u>
                        {
                            let me = auth.user().map(|s| s.user.id) == Some(u.id);
                            let id = u.id;
                            let disabled = u.disabled;
                            let u2 = u.clone();
                            view! {
                                <tr>
                                    <td>{u.username.clone()}{me.then_some(" (you)")}</td>
                                    <td>
                                        <select on:change=move |ev| {
                                            if let Some(r) = role_from(&event_target_value(&ev)) {
                                                update(id, UpdateUserRequest { role: Some(r), ..Default::default() })
                                            }
                                        }>
                                            {Role::ALL.into_iter().map(|r| view! { <option value=r.as_str() selected=r == u.role>{r.as_str()}</option> }).collect_view()}
                                        </select>
                                    </td>
                                    <td>{if disabled { "disabled" } else { "active" }}</td>
                                    <td>{u.last_login_at.map(|t| ago(t).into_any()).unwrap_or_else(|| "never".into_any())}</td>
                                    <td class="actions">
                                        <button class="ghost" on:click=move |_| update(id, UpdateUserRequest { disabled: Some(!disabled), ..Default::default() })>
                                            {if disabled { "Enable" } else { "Disable" }}
                                        </button>
                                        <button class="ghost danger" disabled=me on:click=move |_| remove(u2.clone())>"Delete"</button>
                                    </td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
            <h3>"Add a user"</h3>
            <form class="inline" on:submit=create>
                <label>"User name"<input name="new-username" bind:value=username/>
                    <FieldError message=errors.get("username")/></label>
                <label>"Password"<input name="new-password" type="password" autocomplete="new-password" bind:value=password/>
                    <FieldError message=errors.get("password")/></label>
                <label>"Role"
                    <select bind:value=role>
                        {Role::ALL.into_iter().map(|r| view! { <option value=r.as_str()>{r.as_str()}</option> }).collect_view()}
                    </select></label>
                <button type="submit" class="primary">"Add user"</button>
            </form>
            <FieldError message=errors.get("_form")/>
        </section>
    }
}

#[component]
fn Site() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let name = RwSignal::new(auth.site_name.get_untracked());
    let retention = RwSignal::new(String::new());
    let history = RwSignal::new(String::new());
    let errors = FormErrors::new();
    let saved = RwSignal::new(false);
    spawn_local(async move {
        if let Ok(s) = api::settings().await {
            retention.set(s.rollup_retention_days.to_string());
            history.set(s.history_retention_days.to_string());
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        saved.set(false);
        let n = match validate::label("site_name", &name.get_untracked()) {
            Ok(n) => n,
            Err(e) => return errors.set(e.into()),
        };
        let days = match retention.get_untracked().trim().parse::<u32>() {
            Ok(d) => match validate::retention_days("rollup_retention_days", d) {
                Ok(d) => d,
                Err(e) => return errors.set(e.into()),
            },
            Err(_) => {
                return errors.set(
                    validate::ValidationError::new(
                        "rollup_retention_days",
                        "must be a whole number of days",
                    )
                    .into(),
                )
            }
        };
        let hist = match history.get_untracked().trim().parse::<u32>() {
            Ok(d) => match validate::retention_days("history_retention_days", d) {
                Ok(d) => d,
                Err(e) => return errors.set(e.into()),
            },
            Err(_) => {
                return errors.set(
                    validate::ValidationError::new(
                        "history_retention_days",
                        "must be a whole number of days",
                    )
                    .into(),
                )
            }
        };
        let req = UpdateSettingsRequest {
            site_name: Some(n),
            rollup_retention_days: Some(days),
            history_retention_days: Some(hist),
            ..Default::default()
        };
        spawn_local(async move {
            match api::update_settings(&req).await {
                Ok(s) => {
                    auth.site_name.set(s.site_name);
                    retention.set(s.rollup_retention_days.to_string());
                    history.set(s.history_retention_days.to_string());
                    saved.set(true);
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card">
            <h2>"Site"</h2>
            <form class="inline" on:submit=submit>
                <label>"Site name"<input name="site-name" bind:value=name/>
                    <FieldError message=errors.get("site_name")/></label>
                <label>"Keep host history (days)"<input name="rollup-retention" inputmode="numeric" bind:value=retention/>
                    <FieldError message=errors.get("rollup_retention_days")/></label>
                <label>"Keep events and finished tasks (days)"<input name="history-retention" inputmode="numeric" bind:value=history/>
                    <FieldError message=errors.get("history_retention_days")/></label>
                <button type="submit" class="primary">"Save"</button>
            </form>
            <Show when=move || saved.get()><p class="ok">"Saved."</p></Show>
        </section>
    }
}

/// A whole number from a form field, checked by the shared rule for that field.
fn number(
    field: &'static str,
    text: &str,
    check: fn(&str, u32) -> Result<u32, validate::ValidationError>,
) -> Result<u32, validate::ValidationError> {
    let n = text
        .trim()
        .parse::<u32>()
        .map_err(|_| validate::ValidationError::new(field, "must be a whole number"))?;
    check(field, n)
}

/// netDUPLO's retention policy: which restore points are kept.
#[component]
fn RestorePointPolicy() -> impl IntoView {
    let last = RwSignal::new(String::new());
    let hourly = RwSignal::new(String::new());
    let daily = RwSignal::new(String::new());
    let drills = RwSignal::new(String::new());
    let errors = FormErrors::new();
    let saved = RwSignal::new(false);
    let show = move |s: SettingsResponse| {
        last.set(s.duplo_keep_last.to_string());
        hourly.set(s.duplo_keep_hourly_days.to_string());
        daily.set(s.duplo_keep_daily_days.to_string());
        drills.set(s.drill_every_days.to_string());
    };
    spawn_local(async move {
        if let Ok(s) = api::settings().await {
            show(s);
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        saved.set(false);
        let parsed = (|| {
            Ok::<_, validate::ValidationError>(UpdateSettingsRequest {
                duplo_keep_last: Some(number(
                    "duplo_keep_last",
                    &last.get_untracked(),
                    validate::duplo_keep_last,
                )?),
                duplo_keep_hourly_days: Some(number(
                    "duplo_keep_hourly_days",
                    &hourly.get_untracked(),
                    validate::duplo_keep_days,
                )?),
                duplo_keep_daily_days: Some(number(
                    "duplo_keep_daily_days",
                    &daily.get_untracked(),
                    validate::duplo_keep_days,
                )?),
                drill_every_days: Some(number(
                    "drill_every_days",
                    &drills.get_untracked(),
                    validate::drill_every_days,
                )?),
                ..Default::default()
            })
        })();
        let req = match parsed {
            Ok(r) => r,
            Err(e) => return errors.set(e.into()),
        };
        spawn_local(async move {
            match api::update_settings(&req).await {
                Ok(s) => {
                    show(s);
                    saved.set(true);
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card" data-test="duplo-policy">
            <h2>"Restore points and drills"</h2>
            <p class="muted">"Each VPS keeps its newest points, then the newest of each hour and of each day for as long as set here; pruning runs every minute. Each HA VPS can also get a failover drill on a schedule (one drill at a time across the site; 0: only when asked)."</p>
            <form class="inline" on:submit=submit>
                <label>"Newest points kept"<input name="keep-last" inputmode="numeric" bind:value=last/>
                    <FieldError message=errors.get("duplo_keep_last")/></label>
                <label>"One an hour for (days)"<input name="keep-hourly" inputmode="numeric" bind:value=hourly/>
                    <FieldError message=errors.get("duplo_keep_hourly_days")/></label>
                <label>"One a day for (days)"<input name="keep-daily" inputmode="numeric" bind:value=daily/>
                    <FieldError message=errors.get("duplo_keep_daily_days")/></label>
                <label>"Drill each HA VPS every (days)"<input name="drill-every" inputmode="numeric" bind:value=drills/>
                    <FieldError message=errors.get("drill_every_days")/></label>
                <button type="submit" class="primary">"Save"</button>
            </form>
            <FieldError message=errors.get("_form")/>
            <Show when=move || saved.get()><p class="ok">"Saved."</p></Show>
        </section>
    }
}

/// A storage node's resync queue, from its metrics: blocks it has to copy or check (some are
/// scheduled ahead, such as deletions' checks), and failed copies waiting to be retried.
fn storage_lag(queue: Option<u64>, errors: Option<u64>) -> String {
    match (queue, errors) {
        (None, _) => "unknown (no metrics)".into(),
        (Some(q), e) => {
            let mut s = format!("{q} blocks");
            if let Some(e) = e.filter(|e| *e > 0) {
                s.push_str(&format!(", {e} failed (retried)"));
            }
            s
        }
    }
}
