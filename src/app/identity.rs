//! Choosing a display name, and showing the chosen one.

use super::chat::Identity;
use super::connection::Chat;
use super::form::submit_handler;
use super::storage;
use crate::api::claim_name;
use crate::protocol::{NAME_MAX_CHARS, validate_name};
use leptos::prelude::*;

/// Asks for a display name; shown on the first visit and when changing names.
#[component]
pub fn NamePrompt() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let previous = storage::saved_name();
    let can_cancel = previous.is_some();
    let draft = RwSignal::new(previous.clone().unwrap_or_default());
    let busy = RwSignal::new(false);

    let submit = submit_handler(chat, draft, busy, validate_name, move |raw| {
        Some(async move {
            match claim_name(raw, storage::saved_token()).await {
                Ok(grant) => chat.become_named(grant),
                Err(e) => chat.show_error(Some(e.to_string())),
            }
        })
    });
    let cancel = move |_| chat.keep_name();

    view! {
        <section class="card name-prompt" aria-labelledby="name-prompt-title">
            <h2 id="name-prompt-title">"Welcome to Hearth"</h2>
            <p class="muted">"Pick a display name. Everyone in the chat will see it next to your messages."</p>
            <form on:submit=submit class="stack">
                <label for="name-input">"Display name"</label>
                <input
                    id="name-input"
                    data-testid="name-input"
                    type="text"
                    autocomplete="nickname"
                    maxlength=NAME_MAX_CHARS * 2
                    placeholder="e.g. Ada"
                    autofocus
                    bind:value=draft
                />
                <div class="row">
                    <button data-testid="name-submit" type="submit" class="primary" disabled=busy>
                        "Start chatting"
                    </button>
                    <Show when=move || can_cancel>
                        <button type="button" class="ghost" on:click=cancel>
                            "Cancel"
                        </button>
                    </Show>
                </div>
            </form>
        </section>
    }
}

/// The name this tab chats as, with a way to change it.
#[component]
pub fn CurrentName() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let name = move || match chat.identity.get() {
        Identity::Named(name) => Some(name),
        _ => None,
    };
    view! {
        <Show when=move || name().is_some()>
            <div class="current-name">
                <span
                    class="avatar"
                    aria-hidden="true"
                    data-initial=move || initial(&name().unwrap_or_default())
                ></span>
                <span data-testid="current-name" class="name">{move || name().unwrap_or_default()}</span>
                <button
                    class="ghost small"
                    data-testid="change-name"
                    on:click=move |_| chat.change_name()
                >
                    "Change"
                </button>
            </div>
        </Show>
    }
}

/// The first letter of a name, for its avatar. Shown through CSS (`data-initial`)
/// so it is not part of the name's text.
pub fn initial(name: &str) -> String {
    name.chars()
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default()
}
