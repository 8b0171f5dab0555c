//! The open room: its title, messages, composer and who is online.

use super::composer::Composer;
use super::connection::Chat;
use super::message_list::{MessageList, PendingItem};
use super::online_list::OnlineList;
use leptos::prelude::*;

#[component]
pub fn RoomView() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let title = move || {
        chat.room
            .with(|room| room.as_ref().map(|r| r.channel.clone()))
    };
    view! {
        <Show
            when=move || title().is_some()
            fallback=|| {
                view! {
                    <section class="card empty-room">
                        <h2>"Pick a channel"</h2>
                        <p class="muted">"Choose a channel from the list, or create a new one."</p>
                        <Outbox />
                    </section>
                }
            }
        >
            <section class="room">
                <header class="room-header">
                    <h2 data-testid="room-title" class="room-title">
                        <span class="hash" aria-hidden="true">"#"</span>
                        {move || title().unwrap_or_default()}
                    </h2>
                </header>
                <div class="room-body">
                    <div class="conversation">
                        <MessageList />
                        <Composer />
                    </div>
                    <OnlineList />
                </div>
            </section>
        </Show>
    }
}

/// What this browser has written and not yet sent, while no room is open (after a
/// reload without a network, say): it goes out when its room opens again.
#[component]
fn Outbox() -> impl IntoView {
    let chat = expect_context::<Chat>();
    view! {
        <Show when=move || chat.pending.with(|p| !p.is_empty())>
            <h3 class="section-title">"Waiting to be sent"</h3>
            <ol class="message-list outbox" aria-label="Waiting to be sent">
                <For
                    each=move || chat.pending.get()
                    key=|p| (p.client_id.clone(), p.failed.clone())
                    children=|p| view! { <PendingItem pending=p /> }
                />
            </ol>
        </Show>
    }
}
