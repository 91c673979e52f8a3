//! The SERVERware dashboard: a client-side rendered Leptos app served by the controller.

mod api;
mod app;
mod charts;
mod live;
mod pages;
mod widgets;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
