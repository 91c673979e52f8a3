//! A VPS's console: a root shell inside it, in a terminal in the browser (xterm.js, loaded on
//! first use by `console.js`) over the console WebSocket. Operators only (the controller checks
//! it too); closed with its card, its page, or the user's session. Resizes with the window;
//! copy is the terminal's selection, paste the browser's own.

use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen]
extern "C" {
    type ConsoleHandle;
    #[wasm_bindgen(js_namespace = swConsole, js_name = open)]
    fn console_open(
        el: &web_sys::HtmlElement,
        path: &str,
        on_status: &js_sys::Function,
    ) -> ConsoleHandle;
    #[wasm_bindgen(method)]
    fn close(this: &ConsoleHandle);
}

#[component]
pub fn Console(id: i64, name: String, on_close: Callback<()>) -> impl IntoView {
    let el = NodeRef::<leptos::html::Div>::new();
    let status = RwSignal::new("connecting…".to_string());
    let handle = StoredValue::new_local(None::<ConsoleHandle>);
    Effect::new(move |_| {
        let Some(div) = el.get() else { return };
        if handle.with_value(|h| h.is_some()) {
            return;
        }
        let cb = Closure::<dyn FnMut(String, String)>::new(move |state: String, why: String| {
            let _ = status.try_set(if state == "open" {
                "connected".to_string()
            } else {
                format!("closed: {why}")
            });
        });
        let h = console_open(
            &div,
            &format!("/api/v1/vpses/{id}/console"),
            cb.as_ref().unchecked_ref(),
        );
        // Called by the page's script for as long as the terminal lives; a few bytes per console.
        cb.forget();
        handle.set_value(Some(h));
    });
    on_cleanup(move || {
        handle.with_value(|h| {
            if let Some(h) = h {
                h.close()
            }
        })
    });
    view! {
        <section class="card console-card">
            <div class="card-title">
                <h2>"Console"</h2>
                <span class="muted">{format!("root on {name}: every session is audited")}</span>
                <span class="muted" data-test="console-status">{move || status.get()}</span>
                <button class="ghost" on:click=move |_| on_close.run(())>"Close"</button>
            </div>
            <div class="console" data-test="console" node_ref=el></div>
        </section>
    }
}
