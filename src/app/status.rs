//! The connection banner: connected, connecting or reconnecting.

use super::connection::Chat;
use leptos::prelude::*;

#[component]
pub fn ConnectionStatus() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let status = chat.status;
    view! {
        <div
            class="connection-status"
            data-testid="connection-status"
            data-state=move || status.get().key()
            role="status"
            aria-live="polite"
        >
            <span class="dot" aria-hidden="true"></span>
            <span class="label">{move || status.get().label()}</span>
        </div>
    }
}
