//! The open room: its title, messages, composer and who is online.

use super::composer::Composer;
use super::connection::Chat;
use super::message_list::MessageList;
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
