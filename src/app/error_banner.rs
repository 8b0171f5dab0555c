//! The latest problem, in words, until dismissed or resolved.

use super::connection::Chat;
use leptos::prelude::*;

#[component]
pub fn ErrorBanner() -> impl IntoView {
    let chat = expect_context::<Chat>();
    view! {
        <Show when=move || chat.error.with(Option::is_some)>
            <div class="error-banner" data-testid="error-banner" role="alert">
                <span>{move || chat.error.get().unwrap_or_default()}</span>
                <button
                    class="icon-button"
                    aria-label="Dismiss"
                    on:click=move |_| chat.show_error(None)
                >
                    "×"
                </button>
            </div>
        </Show>
    }
}
