//! Writing a message: Enter sends, Shift+Enter starts a new line.

use super::connection::Chat;
use crate::protocol::{MESSAGE_MAX_CHARS, validate_message};
use leptos::prelude::*;

/// How close to the limit the character counter appears.
const COUNTER_FROM: usize = MESSAGE_MAX_CHARS - 200;

#[component]
pub fn Composer() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let draft = RwSignal::new(String::new());
    let length = move || draft.with(|text| text.chars().count());

    let send = move || {
        let raw = draft.get_untracked();
        if raw.trim().is_empty() {
            return;
        }
        match validate_message(&raw) {
            Ok(text) => {
                chat.send_message(text);
                draft.set(String::new());
            }
            // Keep the draft so nothing typed is lost.
            Err(e) => chat.show_error(Some(e.to_string())),
        }
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            send();
        }
    };

    view! {
        <form
            class="composer"
            on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                send();
            }
        >
            <label class="visually-hidden" for="composer-input">"Message"</label>
            <textarea
                id="composer-input"
                data-testid="composer-input"
                rows="1"
                placeholder="Write a message… (Enter to send, Shift+Enter for a new line)"
                bind:value=draft
                on:keydown=on_keydown
            ></textarea>
            <Show when=move || { length() > COUNTER_FROM }>
                <span class="counter" class:over=move || { length() > MESSAGE_MAX_CHARS }>
                    {move || format!("{}/{MESSAGE_MAX_CHARS}", length())}
                </span>
            </Show>
            <button
                data-testid="composer-send"
                type="submit"
                class="primary"
                disabled=move || draft.with(|t| t.trim().is_empty())
            >
                "Send"
            </button>
        </form>
    }
}
