//! Alerts: where the controller sends word of an incident (a signed webhook, e-mail over SMTP),
//! which incidents each target wants, *Send test*, the incidents alerts were sent for and how each
//! message's delivery went. Operators see it; admins change it.

use super::FormErrors;
use crate::api;
use crate::app::Auth;
use crate::live::Live;
use crate::widgets::{stamp, FieldError};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serverware_shared::alerts::*;
use serverware_shared::Role;
use std::collections::BTreeMap;

#[component]
pub fn AlertsPage() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let live = expect_context::<Live>();
    let data = RwSignal::new(None::<AlertsOverview>);
    let problem = RwSignal::new(None::<String>);
    let load = move || {
        spawn_local(async move {
            match api::alerts().await {
                Ok(o) => {
                    problem.set(None);
                    data.set(Some(o))
                }
                Err(e) => problem.set(Some(e.message())),
            }
        })
    };
    Effect::new(move |_| {
        live.generation.get();
        live.site_changes.get();
        load();
    });
    let admin = move || {
        auth.user()
            .map(|s| s.effective_role >= Role::Admin)
            .unwrap_or(false)
    };
    let editing = RwSignal::new(None::<AlertTarget>);
    // Kept here, not in each row: a reload (after the test itself, or any live change) draws the
    // rows anew, and a result must outlive that.
    let results = RwSignal::new(BTreeMap::<i64, AlertTestResult>::new());
    view! {
        <h1>"Alerts"</h1>
        <p class="muted">"Each incident is told once when it opens and once when it clears, to the targets that want it."</p>
        {move || problem.get().map(|p| view! { <p class="error">{p}</p> })}
        {move || data.get().map(|o| {
            let names: BTreeMap<i64, String> = o.targets.iter().map(|t| (t.id, t.name.clone())).collect();
            view! {
                <Targets targets=o.targets.clone() admin=admin() editing=editing results=results on_done=Callback::new(move |_| load())/>
                {admin().then(|| view! {
                    <TargetForm editing=editing on_done=Callback::new(move |_| load())/>
                    <LagForm minutes=o.lag_threshold_minutes on_done=Callback::new(move |_| load())/>
                })}
                <Incidents incidents=o.incidents.clone()/>
                <Messages messages=o.messages.clone() names=names/>
            }
        })}
    }
}

fn where_to(ch: &AlertChannel) -> String {
    match ch {
        AlertChannel::Webhook { url } => url.clone(),
        AlertChannel::Email {
            smtp_host,
            smtp_port,
            to,
            ..
        } => format!("{} via {smtp_host}:{smtp_port}", to.join(", ")),
    }
}

#[component]
fn Targets(
    targets: Vec<AlertTarget>,
    admin: bool,
    editing: RwSignal<Option<AlertTarget>>,
    results: RwSignal<BTreeMap<i64, AlertTestResult>>,
    on_done: Callback<()>,
) -> impl IntoView {
    let empty = targets.is_empty();
    let errors = FormErrors::new();
    view! {
        <section class="card" data-test="alert-targets">
            <h2>"Targets"</h2>
            {empty.then(|| view! { <p class="muted">"No target yet: nobody is told when a host dies."</p> })}
            <table class="grid">
                <thead><tr><th>"Name"</th><th>"Kind"</th><th>"To"</th><th>"Rules"</th><th>"Delivery"</th><th></th></tr></thead>
                <tbody>
                    {targets.into_iter().map(|t| view! { <Target t=t admin=admin editing=editing errors=errors results=results on_done=on_done/> }).collect_view()}
                </tbody>
            </table>
            <FieldError message=errors.get("_form")/>
        </section>
    }
}

#[component]
fn Target(
    t: AlertTarget,
    admin: bool,
    editing: RwSignal<Option<AlertTarget>>,
    errors: FormErrors,
    results: RwSignal<BTreeMap<i64, AlertTestResult>>,
    on_done: Callback<()>,
) -> impl IntoView {
    let id = t.id;
    let result = move || results.with(|m| m.get(&id).cloned());
    let test = move |_| {
        results.update(|m| {
            m.remove(&id);
        });
        spawn_local(async move {
            match api::test_alert_target(id).await {
                Ok(r) => {
                    results.update(|m| {
                        m.insert(id, r);
                    });
                    on_done.run(())
                }
                Err(e) => errors.set(e),
            }
        });
    };
    let remove = move |_| {
        spawn_local(async move {
            match api::delete_alert_target(id).await {
                Ok(()) => on_done.run(()),
                Err(e) => errors.set(e),
            }
        });
    };
    let edit = {
        let t = t.clone();
        move |_| editing.set(Some(t.clone()))
    };
    let rules = t
        .rules
        .iter()
        .map(|r| r.label())
        .collect::<Vec<_>>()
        .join(", ");
    let delivery = match (&t.last_error, t.pending) {
        (Some(e), n) => format!("failing ({n} waiting): {e}"),
        (None, 0) => "up to date".to_string(),
        (None, n) => format!("{n} waiting"),
    };
    view! {
        <tr data-target=t.name.clone()>
            <td><strong>{t.name.clone()}</strong>{(!t.enabled).then(|| view! { <span class="badge">"off"</span> })}</td>
            <td>{t.channel.kind()}</td>
            <td><code>{where_to(&t.channel)}</code></td>
            <td>{rules}</td>
            <td class:error=t.last_error.is_some()>{delivery}</td>
            <td>
                {admin.then(|| view! {
                    <button class="ghost" on:click=test data-test="send-test">"Send test"</button>
                    <button class="ghost" on:click=edit>"Edit"</button>
                    <button class="ghost danger" on:click=remove>"Remove"</button>
                })}
                {move || result().map(|r| view! {
                    <div class=if r.ok { "ok" } else { "error" } data-test="test-result">
                        {if r.ok { format!("Delivered: {}", r.message) } else { format!("Not delivered: {}", r.message) }}
                    </div>
                })}
            </td>
        </tr>
    }
}

fn security_name(s: SmtpSecurity) -> &'static str {
    match s {
        SmtpSecurity::Starttls => "starttls",
        SmtpSecurity::Tls => "tls",
        SmtpSecurity::None => "none",
    }
}

/// The target form's fields.
#[derive(Clone, Copy)]
struct Fields {
    name: RwSignal<String>,
    kind: RwSignal<String>,
    url: RwSignal<String>,
    secret: RwSignal<String>,
    host: RwSignal<String>,
    port: RwSignal<String>,
    security: RwSignal<String>,
    username: RwSignal<String>,
    from: RwSignal<String>,
    to: RwSignal<String>,
    enabled: RwSignal<bool>,
    rules: RwSignal<Vec<AlertRule>>,
}

impl Fields {
    fn new() -> Fields {
        Fields {
            name: RwSignal::new(String::new()),
            kind: RwSignal::new("webhook".to_string()),
            url: RwSignal::new(String::new()),
            secret: RwSignal::new(String::new()),
            host: RwSignal::new(String::new()),
            port: RwSignal::new("587".to_string()),
            security: RwSignal::new("starttls".to_string()),
            username: RwSignal::new(String::new()),
            from: RwSignal::new(String::new()),
            to: RwSignal::new(String::new()),
            enabled: RwSignal::new(true),
            rules: RwSignal::new(vec![
                AlertRule::HostOffline,
                AlertRule::FailoverDone,
                AlertRule::FailoverFailed,
                AlertRule::VpsNotPlaced,
            ]),
        }
    }

    /// What a target has (its secret stays unless typed again).
    fn fill(&self, t: &AlertTarget) {
        self.name.set(t.name.clone());
        self.enabled.set(t.enabled);
        self.rules.set(t.rules.clone());
        self.secret.set(String::new());
        match &t.channel {
            AlertChannel::Webhook { url } => {
                self.kind.set("webhook".into());
                self.url.set(url.clone());
            }
            AlertChannel::Email {
                smtp_host,
                smtp_port,
                security,
                username,
                from,
                to,
            } => {
                self.kind.set("email".into());
                self.host.set(smtp_host.clone());
                self.port.set(smtp_port.to_string());
                self.security.set(security_name(*security).into());
                self.username.set(username.clone().unwrap_or_default());
                self.from.set(from.clone());
                self.to.set(to.join(", "));
            }
        }
    }

    /// The channel as typed (checked by the request's own check).
    fn channel(&self) -> Result<AlertChannel, serverware_shared::validate::ValidationError> {
        if self.kind.get_untracked() == "webhook" {
            return Ok(AlertChannel::Webhook {
                url: self.url.get_untracked(),
            });
        }
        let port = self
            .port
            .get_untracked()
            .trim()
            .parse::<u16>()
            .map_err(|_| {
                serverware_shared::validate::ValidationError::new(
                    "smtp_port",
                    "a port from 1 to 65535",
                )
            })?;
        Ok(AlertChannel::Email {
            smtp_host: self.host.get_untracked(),
            smtp_port: port,
            security: match self.security.get_untracked().as_str() {
                "tls" => SmtpSecurity::Tls,
                "none" => SmtpSecurity::None,
                _ => SmtpSecurity::Starttls,
            },
            username: Some(self.username.get_untracked()),
            from: self.from.get_untracked(),
            to: self
                .to
                .get_untracked()
                .split([',', ' '])
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect(),
        })
    }
}

#[component]
fn TargetForm(editing: RwSignal<Option<AlertTarget>>, on_done: Callback<()>) -> impl IntoView {
    let f = Fields::new();
    let Fields {
        name,
        kind,
        url,
        secret,
        host,
        port,
        username,
        from,
        to,
        enabled,
        rules,
        ..
    } = f;
    let security = f.security;
    let errors = FormErrors::new();
    // Editing a target fills the form with what it has.
    Effect::new(move |_| {
        if let Some(t) = editing.get() {
            errors.clear();
            f.fill(&t);
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let channel = match f.channel() {
            Ok(c) => c,
            Err(e) => return errors.set(e.into()),
        };
        let editing_now = editing.get_untracked();
        let had = editing_now
            .as_ref()
            .is_some_and(|t| t.secret_set && t.channel.kind() == channel.kind());
        let req = AlertTargetRequest {
            name: name.get_untracked(),
            channel,
            secret: Some(secret.get_untracked()).filter(|s| !s.is_empty()),
            rules: rules.get_untracked(),
            enabled: enabled.get_untracked(),
        };
        let req = match req.check(had) {
            Ok(r) => r,
            Err(e) => return errors.set(e.into()),
        };
        spawn_local(async move {
            let r = match editing_now {
                Some(t) => api::update_alert_target(t.id, &req).await,
                None => api::create_alert_target(&req).await,
            };
            match r {
                Ok(_) => {
                    editing.set(None);
                    name.set(String::new());
                    secret.set(String::new());
                    on_done.run(())
                }
                Err(e) => errors.set(e),
            }
        });
    };
    let webhook = move || kind.get() == "webhook";
    view! {
        <section class="card" data-test="alert-target-form">
            <h2>{move || if editing.get().is_some() { "Change target" } else { "Add a target" }}</h2>
            <form on:submit=submit>
                <div class="inline">
                    <label>"Name"<input name="target-name" bind:value=name placeholder="on-call"/><FieldError message=errors.get("name")/></label>
                    <label>"Kind"
                        <select name="target-kind" on:change=move |ev| kind.set(event_target_value(&ev)) prop:value=move || kind.get()>
                            <option value="webhook">"Webhook"</option>
                            <option value="email">"E-mail (SMTP)"</option>
                        </select>
                    </label>
                    <label class="check"><input type="checkbox" name="target-enabled" bind:checked=enabled/>"On"</label>
                </div>
                <div class:hidden=move || !webhook()>
                    <div class="inline">
                        <label>"URL"<input name="target-url" bind:value=url placeholder="https://hooks.example.com/serverware" size="48"/><FieldError message=errors.get("url")/></label>
                        <label>"Secret (signs each message, 16 characters or more)"<input type="password" name="target-secret" bind:value=secret autocomplete="new-password" placeholder=move || if editing.get().is_some() { "unchanged" } else { "" }/><FieldError message=errors.get("secret")/></label>
                    </div>
                </div>
                <div class:hidden=webhook>
                    <div class="inline">
                        <label>"SMTP server"<input name="smtp-host" bind:value=host placeholder="mail.example.com"/><FieldError message=errors.get("smtp_host")/></label>
                        <label>"Port"<input name="smtp-port" bind:value=port size="5"/><FieldError message=errors.get("smtp_port")/></label>
                        <label>"Security"
                            <select name="smtp-security" on:change=move |ev| security.set(event_target_value(&ev)) prop:value=move || security.get()>
                                <option value="starttls">"STARTTLS (required)"</option>
                                <option value="tls">"TLS (SMTPS)"</option>
                                <option value="none">"None (local relay only)"</option>
                            </select>
                        </label>
                        <label>"User (optional)"<input name="smtp-user" bind:value=username autocomplete="off"/><FieldError message=errors.get("username")/></label>
                        <label>"Password"<input type="password" name="smtp-password" bind:value=secret autocomplete="new-password" placeholder=move || if editing.get().is_some() { "unchanged" } else { "" }/><FieldError message=errors.get("secret")/></label>
                    </div>
                    <div class="inline">
                        <label>"From"<input name="mail-from" bind:value=from placeholder="serverware@example.com"/><FieldError message=errors.get("from")/></label>
                        <label>"To (comma-separated)"<input name="mail-to" bind:value=to placeholder="oncall@example.com" size="40"/><FieldError message=errors.get("to")/></label>
                    </div>
                </div>
                <fieldset class="rules">
                    <legend>"Tell it about"</legend>
                    {AlertRule::ALL.into_iter().map(|r| view! {
                        <label class="check">
                            <input type="checkbox" name=format!("rule-{}", r.as_str())
                                prop:checked=move || rules.get().contains(&r)
                                on:change=move |ev| {
                                    let on = event_target_checked(&ev);
                                    rules.update(|l| { l.retain(|x| *x != r); if on { l.push(r) } });
                                }/>
                            {r.label()}
                        </label>
                    }).collect_view()}
                    <FieldError message=errors.get("rules")/>
                </fieldset>
                <button type="submit" class="primary">{move || if editing.get().is_some() { "Save" } else { "Add target" }}</button>
                <button type="button" class="ghost" class:hidden=move || editing.get().is_none() on:click=move |_| editing.set(None)>"Cancel"</button>
                <FieldError message=errors.get("_form")/>
            </form>
        </section>
    }
}

#[component]
fn LagForm(minutes: u32, on_done: Callback<()>) -> impl IntoView {
    let value = RwSignal::new(minutes.to_string());
    let errors = FormErrors::new();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let Ok(m) = value.get_untracked().trim().parse::<u32>() else {
            return errors.set(
                serverware_shared::validate::ValidationError::new(
                    "lag_threshold_minutes",
                    "a number of minutes",
                )
                .into(),
            );
        };
        let s = match (AlertSettings {
            lag_threshold_minutes: m,
        })
        .check()
        {
            Ok(s) => s,
            Err(e) => return errors.set(e.into()),
        };
        spawn_local(async move {
            match api::update_alert_settings(&s).await {
                Ok(_) => on_done.run(()),
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card">
            <h2>"Duplication lag"</h2>
            <form class="inline" on:submit=submit>
                <label>"A running VPS's newest restore point older than (minutes)"<input name="lag-minutes" bind:value=value size="6"/><FieldError message=errors.get("lag_threshold_minutes")/></label>
                <button type="submit" class="primary">"Save"</button>
            </form>
        </section>
    }
}

#[component]
fn Incidents(incidents: Vec<AlertIncident>) -> impl IntoView {
    let empty = incidents.is_empty();
    view! {
        <section class="card" data-test="alert-incidents">
            <h2>"Incidents told"</h2>
            {empty.then(|| view! { <p class="muted">"None yet."</p> })}
            <table class="grid">
                <thead><tr><th>"Incident"</th><th>"Rule"</th><th>"Opened"</th><th>"Cleared"</th></tr></thead>
                <tbody>
                    {incidents.into_iter().map(|i| view! {
                        <tr class:open=i.cleared_at.is_none()>
                            <td><span class=format!("badge {}", i.severity.as_str())>{i.severity.as_str()}</span>" "{i.title.clone()}</td>
                            <td>{i.rule.label()}</td>
                            <td>{stamp(i.opened_at)}</td>
                            <td>{i.cleared_at.map(stamp).unwrap_or_else(|| "open".into())}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

#[component]
fn Messages(messages: Vec<AlertMessage>, names: BTreeMap<i64, String>) -> impl IntoView {
    view! {
        <section class="card" data-test="alert-messages">
            <h2>"Messages"</h2>
            <table class="grid">
                <thead><tr><th>"When"</th><th>"To"</th><th>"Subject"</th><th>"Delivery"</th></tr></thead>
                <tbody>
                    {messages.into_iter().map(|m| view! {
                        <tr>
                            <td>{stamp(m.created_at)}</td>
                            <td>{names.get(&m.target_id).cloned().unwrap_or_default()}</td>
                            <td>{m.subject.clone()}</td>
                            <td class:error=m.state == "failed">{match m.state.as_str() {
                                "sent" => format!("sent{}", if m.attempts > 1 { format!(" after {} attempts", m.attempts) } else { String::new() }),
                                "failed" => format!("given up: {}", m.last_error.clone().unwrap_or_default()),
                                _ => format!("waiting ({} attempts){}", m.attempts, m.last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()),
                            }}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}
