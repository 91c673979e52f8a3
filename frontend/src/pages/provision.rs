//! Provisioning: machines that boot from the network become hosts. The boot service's settings,
//! the host images (only one that checks whole is served), and the machines seen booting, with
//! *Approve* for those waiting and where each is on its way (DHCP, iPXE, kernel, joined, online);
//! the image each boots, and *Re-image* for a joined host (in maintenance) onto another image.

use super::FormErrors;
use crate::api;
use crate::app::Auth;
use crate::charts::fmt_bytes;
use crate::live::Live;
use crate::widgets::FieldError;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serverware_shared::provision::*;
use serverware_shared::ws::Topic;
use serverware_shared::{validate, Role};

#[component]
pub fn ProvisionPage() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let live = expect_context::<Live>();
    live.subscribe_while_mounted(vec![Topic::Inventory, Topic::Tasks]);
    let data = RwSignal::new(None::<ProvisionOverview>);
    let load = move || {
        spawn_local(async move {
            if let Ok(o) = api::provision().await {
                data.set(Some(o));
            }
        })
    };
    Effect::new(move |_| {
        live.generation.get();
        live.inventory.get();
        live.site_changes.get();
        live.host_states.get();
        load();
    });
    let role = move || {
        auth.user()
            .map(|s| s.effective_role)
            .unwrap_or(Role::Viewer)
    };
    view! {
        <h1>"Provisioning"</h1>
        <p class="muted">"A machine set to boot from the network gets the site's host image from this controller, prepares its disk and joins by itself."</p>
        {move || data.get().map(|o| view! {
            <Settings current=o.settings.clone() status=o.boot_service.clone() admin={role() >= Role::Admin} on_done=Callback::new(move |_| load())/>
            <Images images=o.images.clone()/>
            <Show when=move || { role() >= Role::Operator }><AddMachine on_done=Callback::new(move |_| load())/></Show>
            <Machines machines=o.machines.clone() images=o.images.iter().filter(|i| i.ok).map(|i| i.id.clone()).collect() operator={role() >= Role::Operator} admin={role() >= Role::Admin} on_done=Callback::new(move |_| load())/>
        })}
    }
}

#[component]
fn Settings(
    current: ProvisionSettings,
    status: String,
    admin: bool,
    on_done: Callback<()>,
) -> impl IntoView {
    let enabled = RwSignal::new(current.enabled);
    let interface = RwSignal::new(current.interface.clone());
    let network = RwSignal::new(current.network.clone());
    let url = RwSignal::new(current.controller_url.clone());
    let any = RwSignal::new(current.allow_unapproved);
    let pool = RwSignal::new(current.dhcp_pool.clone());
    let errors = FormErrors::new();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let s = ProvisionSettings {
            enabled: enabled.get_untracked(),
            interface: interface.get_untracked(),
            network: network.get_untracked(),
            controller_url: url.get_untracked(),
            allow_unapproved: any.get_untracked(),
            dhcp_pool: pool.get_untracked(),
        };
        let s = match s.check() {
            Ok(s) => s,
            Err(e) => return errors.set(e.into()),
        };
        spawn_local(async move {
            match api::update_provision_settings(&s).await {
                Ok(_) => on_done.run(()),
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card" data-test="boot-settings">
            <h2>"Network boot"</h2>
            <p>"Boot service: "<strong data-test="boot-status">{status}</strong></p>
            <form class="inline" on:submit=submit>
                <label class="check"><input type="checkbox" name="boot-enabled" bind:checked=enabled disabled=!admin/>"On"</label>
                <label>"Interface"<input name="boot-interface" bind:value=interface placeholder="eth1" disabled=!admin/><FieldError message=errors.get("interface")/></label>
                <label>"Hosts' network"<input name="boot-network" bind:value=network placeholder="10.0.0.0/24" disabled=!admin/><FieldError message=errors.get("network")/></label>
                <label title="The range the site's own DHCP server hands out on that network: static addresses for machines are kept out of it">"Site's DHCP pool"<input name="boot-dhcp-pool" bind:value=pool placeholder="10.0.0.100-10.0.0.199" disabled=!admin/><FieldError message=errors.get("dhcp_pool")/></label>
                <label>"Controller URL (as hosts reach it)"<input name="boot-url" bind:value=url placeholder="http://10.0.0.1:8080" disabled=!admin/><FieldError message=errors.get("controller_url")/></label>
                <label class="check"><input type="checkbox" name="boot-any" bind:checked=any disabled=!admin/>"Any machine may join (otherwise approve each)"</label>
                <Show when=move || admin><button type="submit" class="primary">"Save"</button></Show>
            </form>
            <FieldError message=errors.get("_form")/>
        </section>
    }
}

/// A machine added by its MAC before it boots: approved, with its name and static address.
#[component]
fn AddMachine(on_done: Callback<()>) -> impl IntoView {
    let mac = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let address = RwSignal::new(String::new());
    let gateway = RwSignal::new(String::new());
    let errors = FormErrors::new();
    let given = |s: RwSignal<String>| Some(s.get_untracked()).filter(|v| !v.trim().is_empty());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let checked = validate::mac_address("mac", mac.get_untracked().trim())
            .and_then(|_| {
                given(name)
                    .map(|n| validate::resource_name("name", &n))
                    .transpose()
            })
            .and_then(|_| {
                given(address)
                    .map(|a| cidr("address", a.trim()))
                    .transpose()
            })
            .and_then(|_| {
                given(gateway)
                    .map(|g| validate::ipv4_address("gateway", &g))
                    .transpose()
            });
        if let Err(e) = checked {
            return errors.set(e.into());
        }
        let req = AddMachineRequest {
            mac: mac.get_untracked().trim().to_string(),
            approval: ApproveMachineRequest {
                name: given(name),
                address: given(address),
                gateway: given(gateway),
            },
        };
        spawn_local(async move {
            match api::add_machine(&req).await {
                Ok(_) => {
                    for s in [mac, name, address, gateway] {
                        s.set(String::new());
                    }
                    on_done.run(())
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card" data-test="add-machine">
            <h2>"Add a machine by its MAC"</h2>
            <p class="muted">"Approved before it boots: its first network boot joins, with the name and address given here (DHCP when none)."</p>
            <form class="inline" on:submit=submit>
                <label>"MAC"<input name="add-mac" bind:value=mac placeholder="52:54:00:12:34:56"/><FieldError message=errors.get("mac")/></label>
                <label>"Name"<input name="add-name" bind:value=name placeholder="host-123456"/><FieldError message=errors.get("name")/></label>
                <label>"Static address"<input name="add-address" bind:value=address placeholder="DHCP, or 10.0.0.5/24"/><FieldError message=errors.get("address")/></label>
                <label>"Gateway"<input name="add-gateway" bind:value=gateway placeholder="10.0.0.1"/><FieldError message=errors.get("gateway")/></label>
                <button type="submit" class="primary">"Add"</button>
            </form>
            <FieldError message=errors.get("_form")/>
        </section>
    }
}

#[component]
fn Images(images: Vec<ProvisionImage>) -> impl IntoView {
    let empty = images.is_empty();
    view! {
        <section class="card">
            <h2>"Host images"</h2>
            <Show when=move || empty><p class="muted">"No image yet: run "<code>"serverware image build"</code>" on the controller."</p></Show>
            <p class="muted">"Each image is tested when it is built. New machines get the newest one a host has come online on: to roll a newer one out, re-image one host onto it first."</p>
            <table class="grid" data-test="images">
                <thead><tr><th>"Image"</th><th>"Version"</th><th>"Size"</th><th>"Built in"</th><th>"State"</th></tr></thead>
                <tbody>
                    {images.into_iter().map(|i| view! {
                        <tr data-image=i.id.clone()>
                            <td><code>{i.id.clone()}</code></td>
                            <td>{i.version.clone()}</td>
                            <td>{fmt_bytes(i.size_bytes as f64)}</td>
                            <td>{format!("{:.0} s", i.build_secs)}</td>
                            <td>{if i.served { "served to new machines".to_string() } else if i.ok { "checked".to_string() } else { format!("unusable: {}", i.problem.clone().unwrap_or_default()) }}
                                <div class="muted">{i.proven.clone().unwrap_or_else(|| if i.ok { "no host has booted it yet: re-image one host to try it".into() } else { String::new() })}</div></td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

#[component]
fn Machines(
    machines: Vec<ProvisionMachine>,
    /// The images that check whole, newest first.
    images: Vec<String>,
    operator: bool,
    admin: bool,
    on_done: Callback<()>,
) -> impl IntoView {
    let errors = FormErrors::new();
    let started = RwSignal::new(None::<String>);
    view! {
        <section class="card">
            <h2>"Machines"</h2>
            <table class="grid" data-test="machines">
                <thead><tr><th>"MAC"</th><th>"Name"</th><th>"State"</th><th>"Stage"</th><th>"Address"</th><th>"Image"</th><th></th></tr></thead>
                <tbody>
                    {machines.into_iter().map(|m| view! { <Machine m=m images=images.clone() operator=operator admin=admin errors=errors started=started on_done=on_done/> }).collect_view()}
                </tbody>
            </table>
            <FieldError message=errors.get("_form")/>
            <FieldError message=errors.get("name")/>
            <FieldError message=errors.get("address")/>
            <FieldError message=errors.get("image")/>
            {move || started.get().map(|s| view! { <p class="muted" data-test="reimage-started">{s}</p> })}
        </section>
    }
}

#[component]
fn Machine(
    m: ProvisionMachine,
    images: Vec<String>,
    operator: bool,
    admin: bool,
    errors: FormErrors,
    started: RwSignal<Option<String>>,
    on_done: Callback<()>,
) -> impl IntoView {
    let pinned = m.image_id.clone().unwrap_or_default();
    let newer = images
        .first()
        .is_some_and(|n| !pinned.is_empty() && *n != pinned);
    let target = RwSignal::new(images.first().cloned().unwrap_or_default());
    let force = RwSignal::new(false);
    let name = RwSignal::new(m.name.clone());
    let address = RwSignal::new(m.address.clone().unwrap_or_default());
    let mac = m.mac.clone();
    let waiting = m.state == "waiting" && operator;
    let joined = m.state == "joined";
    let approve = {
        let mac = mac.clone();
        move |_| {
            errors.clear();
            let n = match validate::resource_name("name", &name.get_untracked()) {
                Ok(n) => n,
                Err(e) => return errors.set(e.into()),
            };
            let a = address.get_untracked();
            if !a.trim().is_empty() {
                if let Err(e) = cidr("address", a.trim()) {
                    return errors.set(e.into());
                }
            }
            let req = ApproveMachineRequest {
                name: Some(n),
                address: (!a.trim().is_empty()).then_some(a),
                gateway: None,
            };
            let mac = mac.clone();
            spawn_local(async move {
                match api::approve_machine(&mac, &req).await {
                    Ok(_) => on_done.run(()),
                    Err(e) => errors.set(e),
                }
            });
        }
    };
    let reimage = {
        let (mac, name) = (mac.clone(), m.name.clone());
        move |_| {
            errors.clear();
            started.set(None);
            let req = ReimageRequest {
                image: Some(target.get_untracked()).filter(|i| !i.is_empty()),
                force: force.get_untracked(),
            };
            let (mac, name) = (mac.clone(), name.clone());
            spawn_local(async move {
                match api::reimage_machine(&mac, &req).await {
                    Ok(t) => {
                        started.set(Some(format!(
                            "{name} is rebooting into its new image: task {} follows it back online",
                            t.id
                        )));
                        on_done.run(())
                    }
                    Err(e) => errors.set(e),
                }
            });
        }
    };
    let forget = {
        let mac = mac.clone();
        move |_| {
            let mac = mac.clone();
            spawn_local(async move {
                match api::forget_machine(&mac).await {
                    Ok(()) => on_done.run(()),
                    Err(e) => errors.set(e),
                }
            });
        }
    };
    view! {
        <tr data-machine=mac.clone()>
            <td><code>{mac.clone()}</code></td>
            <td>{if waiting { view! { <input name="machine-name" bind:value=name/> }.into_any() } else { view! { <strong>{m.name.clone()}</strong> }.into_any() }}</td>
            <td><span class=format!("badge {}", m.state)>{m.state.clone()}</span><div class="muted">{m.message.clone()}</div></td>
            <td>{m.stage.clone()}</td>
            <td>{if waiting { view! { <input name="machine-address" bind:value=address placeholder="DHCP, or 10.0.0.5/24"/> }.into_any() } else { view! { <span>{m.address.clone().unwrap_or_else(|| "DHCP".into())}</span> }.into_any() }}</td>
            <td><code>{pinned.clone()}</code>{newer.then(|| view! { <div class="muted">"a newer image is built"</div> })}</td>
            <td>
                <Show when=move || waiting><button class="primary" on:click=approve.clone()>"Approve"</button></Show>
                <Show when=move || admin && joined>
                    <select name="reimage-image" title="The image it reboots into" on:change=move |ev| target.set(event_target_value(&ev))>
                        {images.iter().map(|i| view! { <option value=i.clone() selected=*i == target.get_untracked()>{i.clone()}</option> }).collect_view()}
                    </select>
                    <label class="muted" title="Reboot even though VPSes still run there: they stop and start again with it"><input type="checkbox" name="reimage-force" on:change=move |ev| force.set(event_target_checked(&ev))/>" even with VPSes running"</label>
                    <button class="ghost" on:click=reimage.clone() title="Put the host in maintenance first: it reboots into the chosen image">"Re-image"</button>
                </Show>
                <Show when=move || operator && !joined><button class="ghost danger" on:click=forget.clone()>"Forget"</button></Show>
            </td>
        </tr>
    }
}
