use chrono::{DateTime, Utc};
use leptos::prelude::*;

/// A time as "5 s ago" / "3 min ago" / date, with the exact time on hover.
pub fn ago(t: DateTime<Utc>) -> impl IntoView {
    let secs = (Utc::now() - t).num_seconds().max(0);
    let text = match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86399 => format!("{} h ago", secs / 3600),
        _ => t.format("%Y-%m-%d %H:%M").to_string(),
    };
    view! { <time title=t.to_rfc3339() datetime=t.to_rfc3339()>{text}</time> }
}

/// An error line under a form or next to a field.
#[component]
pub fn FieldError(#[prop(into)] message: Signal<Option<String>>) -> impl IntoView {
    view! {
        <Show when=move || message.get().is_some()>
            <div class="field-error" role="alert">{move || message.get().unwrap_or_default()}</div>
        </Show>
    }
}
