pub mod alerts;
pub mod console;
pub mod dashboard;
pub mod drills;
pub mod duplo;
pub mod events;
pub mod host;
pub mod hosts;
pub mod login;
pub mod provision;
pub mod settings;
pub mod sites;
pub mod tasks;
pub mod templates;
pub mod vps_list;
pub mod vpses;

use crate::api::ApiError;
use leptos::prelude::*;
use std::collections::BTreeMap;

#[component]
pub fn EmptyPage(title: &'static str, text: &'static str) -> impl IntoView {
    view! {
        <h1>{title}</h1>
        <div class="empty">
            <div class="empty-mark">"∅"</div>
            <p>{text}</p>
        </div>
    }
}

/// Errors of one form, by field; `_form` holds errors that belong to no field.
#[derive(Clone, Copy)]
pub struct FormErrors(pub RwSignal<BTreeMap<String, String>>);

impl FormErrors {
    pub fn new() -> Self {
        FormErrors(RwSignal::new(BTreeMap::new()))
    }
    pub fn clear(&self) {
        self.0.set(BTreeMap::new());
    }
    pub fn set(&self, e: ApiError) {
        let key = e.field().unwrap_or("_form").to_string();
        self.0.update(|m| {
            m.insert(key, e.message());
        });
    }
    /// A message under the form, not about one field.
    pub fn say(&self, message: String) {
        self.0.update(|m| {
            m.insert("_form".into(), message);
        });
    }
    pub fn get(&self, field: &'static str) -> Signal<Option<String>> {
        let m = self.0;
        Signal::derive(move || m.with(|m| m.get(field).cloned()))
    }
}
