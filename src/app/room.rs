//! The open room: its title, messages, composer and who is online.

use super::composer::Composer;
use super::connection::Chat;
use super::message_list::{MessageList, PendingItems};
use super::online_list::OnlineList;
use leptos::either::Either;
use leptos::prelude::*;

#[component]
pub fn RoomView() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let title = move || {
        chat.room
            .with(|room| room.as_ref().map(|r| r.channel.clone()))
    };
    // Switched by hand rather than `<Show fallback>`, whose fallback is an
    // `AnyView` that keeps a second, asynchronous hydration of it in the WASM.
    let open = Memo::new(move |_| chat.room.with(Option::is_some));
    move || {
        if open.get() {
            Either::Left(view! {
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
            })
        } else {
            // Without a connection there is no list to pick from yet.
            let connected = move || chat.status.get().is_open();
            Either::Right(view! {
                <section class="card empty-room">
                    <h2>
                        {move || if connected() { "Pick a channel" } else { "Waiting for the connection" }}
                    </h2>
                    <p class="muted">
                        {move || {
                            if connected() {
                                "Choose a channel from the list, or create a new one."
                            } else {
                                "Hearth reconnects by itself. What you write is kept and sent once it is back."
                            }
                        }}
                    </p>
                    <Outbox />
                </section>
            })
        }
    }
}

/// What this browser has written and not yet sent, while no room is open (after a
/// reload without a network, say): it goes out when its room opens again.
#[component]
fn Outbox() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let waiting = Memo::new(move |_| chat.pending.with(|p| !p.is_empty()));
    move || {
        waiting.get().then(|| {
            view! {
                <h3 class="section-title">"Waiting to be sent"</h3>
                <ol class="message-list outbox" aria-label="Waiting to be sent">
                    <PendingItems everywhere=true />
                </ol>
            }
        })
    }
}
