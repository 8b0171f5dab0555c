//! What the page's small forms share: check the input at once, send it to the server
//! one submission at a time, and say what went wrong in the error banner.

use super::connection::Chat;
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::future::Future;

/// A submit handler: `check` gives instant feedback on the draft (the server checks
/// again), then `send` starts the request, unless one is still running. `send` may
/// decline by returning `None`.
pub fn submit_handler<E, Fut>(
    chat: Chat,
    draft: RwSignal<String>,
    busy: RwSignal<bool>,
    check: fn(&str) -> Result<String, E>,
    send: impl Fn(String) -> Option<Fut> + Copy + 'static,
) -> impl Fn(leptos::ev::SubmitEvent) + Copy + 'static
where
    E: std::fmt::Display + 'static,
    Fut: Future<Output = ()> + 'static,
{
    move |ev| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let raw = draft.get_untracked();
        if let Err(e) = check(&raw) {
            chat.show_error(Some(e.to_string()));
            return;
        }
        let Some(request) = send(raw) else {
            return;
        };
        busy.set(true);
        spawn_local(async move {
            request.await;
            busy.set(false);
        });
    }
}
