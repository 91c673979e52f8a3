use crate::api;
use crate::app::Auth;
use crate::widgets::FieldError;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serverware_shared::api::LoginRequest;

#[component]
pub fn Login() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        error.set(None);
        let req = LoginRequest {
            username: username.get_untracked(),
            password: password.get_untracked(),
        };
        spawn_local(async move {
            match api::login(&req).await {
                Ok(s) => auth.session.set(Some(Some(s))),
                Err(e) => error.set(Some(e.message())),
            }
            busy.set(false);
        });
    };
    view! {
        <div class="login-page">
            <form class="card login" on:submit=submit>
                <div class="brand big"><span class="logo">"◆"</span>" SERVERware"</div>
                <p class="muted">"Sign in to manage your hosts and VPSes."</p>
                <label>"User name"
                    <input name="username" autocomplete="username" autofocus=true bind:value=username required=true/>
                </label>
                <label>"Password"
                    <input name="password" type="password" autocomplete="current-password" bind:value=password required=true/>
                </label>
                <FieldError message=error/>
                <button type="submit" class="primary" disabled=move || busy.get()>"Sign in"</button>
            </form>
        </div>
    }
}
