use crate::api;
use crate::live::{LinkState, Live};
use crate::pages::{
    dashboard::Dashboard, events::EventsPage, login::Login, settings::SettingsPage, EmptyPage,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::hooks::use_navigate;
use leptos_router::path;
use serverware_shared::api::{PairStatus, SessionResponse};

/// Who is signed in: `None` before the first check, `Some(None)` when nobody is.
#[derive(Clone, Copy)]
pub struct Auth {
    pub session: RwSignal<Option<Option<SessionResponse>>>,
    pub site_name: RwSignal<String>,
}

impl Auth {
    pub fn user(&self) -> Option<SessionResponse> {
        self.session.get().flatten()
    }
    pub fn is_admin(&self) -> bool {
        self.user()
            .is_some_and(|s| s.effective_role == serverware_shared::Role::Admin)
    }
}

#[component]
pub fn App() -> impl IntoView {
    let auth = Auth {
        session: RwSignal::new(None),
        site_name: RwSignal::new("SERVERware".into()),
    };
    let live = Live::new();
    provide_context(auth);
    provide_context(live);
    api::set_on_unauthorized(move || auth.session.set(Some(None)));
    // A controller of a pair that does not lead serves only its standby page.
    let standby = RwSignal::new(None::<PairStatus>);
    let check_standby = move || {
        spawn_local(async move {
            if let Ok(h) = api::health().await {
                if h.status == "standby" {
                    standby.set(h.pair);
                }
            }
        })
    };
    api::set_on_standby(check_standby);
    spawn_local(async move {
        if let Ok(h) = api::health().await {
            if h.status == "standby" {
                standby.set(h.pair);
                return;
            }
        }
        auth.session.set(Some(api::me().await.ok()));
    });
    // The socket runs while someone is signed in; the site name is read once signed in.
    Effect::new(move |_| {
        let signed_in = auth.user().is_some();
        live.set_enabled(signed_in);
        if signed_in {
            spawn_local(async move {
                if let Ok(s) = api::settings().await {
                    auth.site_name.set(s.site_name);
                }
            });
        }
    });

    view! {
        <Router>
            {move || match (standby.get(), auth.session.get()) {
                (Some(s), _) => view! { <Standby status=s/> }.into_any(),
                (None, None) => view! { <div class="splash">"Loading…"</div> }.into_any(),
                (None, Some(None)) => view! { <Login/> }.into_any(),
                (None, Some(Some(_))) => view! { <Shell/> }.into_any(),
            }}
        </Router>
    }
}

/// The standby of a pair: what it is, who leads and a link there. It follows the pair: once
/// this controller leads (a takeover), the page loads the dashboard again.
#[component]
fn Standby(status: PairStatus) -> impl IntoView {
    let status = RwSignal::new(status);
    let poll = move || {
        spawn_local(async move {
            if let Ok(h) = api::health().await {
                match h.pair {
                    Some(p) if h.status == "standby" => status.set(p),
                    _ => {
                        let _ = window().location().reload();
                    }
                }
            }
        })
    };
    if let Ok(timer) = set_interval_with_handle(poll, std::time::Duration::from_secs(2)) {
        on_cleanup(move || timer.clear());
    }
    view! {
        <div class="login-page">
            <div class="card login" data-test="standby">
                <div class="brand big"><span class="logo">"◆"</span>" SERVERware"</div>
                <h2>"Standby controller"</h2>
                <p>
                    <strong>{move || status.get().name}</strong>
                    " is the standby controller of this site's pair: it takes over by itself if the leader fails, and serves nothing until then."
                </p>
                {move || match status.get().leader {
                    Some(l) => view! {
                        <p data-test="leader">"The site is run by "<strong>{l.name.clone()}</strong>"."</p>
                        <a class="primary link-button" href=l.url.clone()>"Open "{l.name}"'s dashboard"</a>
                    }.into_any(),
                    None => view! {
                        <p data-test="leader">"No controller leads at this moment: a takeover takes a few seconds, and this page follows it."</p>
                    }.into_any(),
                }}
            </div>
        </div>
    }
}

#[component]
fn Shell() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let live = expect_context::<Live>();
    // Every page shows the site's incidents and reacts to hosts going and coming (their
    // figures are followed by the pages that show them).
    live.subscribe_while_mounted(vec![
        serverware_shared::ws::Topic::Events,
        serverware_shared::ws::Topic::HostStates,
        serverware_shared::ws::Topic::Inventory,
    ]);
    provide_context(crate::widgets::watch_site(live));
    let navigate = use_navigate();
    let logout = move |_| {
        let navigate = navigate.clone();
        spawn_local(async move {
            let _ = api::logout().await;
            auth.session.set(Some(None));
            navigate("/", Default::default());
        });
    };
    let nav = [
        ("/", "Dashboard"),
        ("/hosts", "Hosts"),
        ("/vpses", "VPSes"),
        ("/templates", "Templates"),
        ("/provisioning", "Provisioning"),
        ("/storage", "Storage"),
        ("/tasks", "Tasks"),
        ("/events", "Events"),
        ("/alerts", "Alerts"),
        ("/sites", "Sites"),
        ("/settings", "Settings"),
    ];
    view! {
        <div class="shell">
            <aside class="sidebar">
                <div class="brand">
                    <span class="logo">"◆"</span>
                    <span class="brand-name">{move || auth.site_name.get()}</span>
                </div>
                <nav>
                    {nav.into_iter().map(|(href, label)| view! { <A href=href exact=href == "/">{label}</A> }).collect_view()}
                </nav>
            </aside>
            <div class="main">
                <header class="topbar">
                    <ConnectionIndicator state=live.state/>
                    <div class="spacer"></div>
                    <span class="who">
                        {move || auth.user().map(|s| format!("{} · {}", s.user.username, s.effective_role)).unwrap_or_default()}
                    </span>
                    <button class="ghost" on:click=logout data-test="logout">"Log out"</button>
                </header>
                <main class="content">
                    <crate::widgets::IncidentBanner/>
                    <Routes fallback=|| view! { <EmptyPage title="Not found" text="There is no page at this address."/> }>
                        <Route path=path!("/") view=Dashboard/>
                        <Route path=path!("/hosts") view=crate::pages::hosts::HostsPage/>
                        <Route path=path!("/hosts/:id") view=crate::pages::host::HostPage/>
                        <Route path=path!("/vpses") view=crate::pages::vps_list::VpsesPage/>
                        <Route path=path!("/vpses/:id") view=crate::pages::vpses::VpsPage/>
                        <Route path=path!("/templates") view=crate::pages::templates::TemplatesPage/>
                        <Route path=path!("/provisioning") view=crate::pages::provision::ProvisionPage/>
                        <Route path=path!("/storage") view=crate::pages::duplo::StoragePage/>
                        <Route path=path!("/tasks") view=crate::pages::tasks::TasksPage/>
                        <Route path=path!("/events") view=EventsPage/>
                        <Route path=path!("/alerts") view=crate::pages::alerts::AlertsPage/>
                        <Route path=path!("/sites") view=crate::pages::sites::SitesPage/>
                        <Route path=path!("/settings") view=SettingsPage/>
                    </Routes>
                </main>
            </div>
            <crate::widgets::Toasts/>
        </div>
    }
}

#[component]
fn ConnectionIndicator(state: RwSignal<LinkState>) -> impl IntoView {
    let (class, label) = (
        move || match state.get() {
            LinkState::Open => "link open",
            LinkState::Connecting => "link connecting",
            LinkState::Offline => "link offline",
        },
        move || match state.get() {
            LinkState::Open => "Live",
            LinkState::Connecting => "Connecting…",
            LinkState::Offline => "Offline — reconnecting",
        },
    );
    view! { <span class=class data-test="link" title="Live updates from the controller"><span class="dot"></span>{label}</span> }
}
