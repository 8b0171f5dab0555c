//! The messages of the open room, oldest first, with this tab's pending sends last.

use super::chat::Pending;
use super::connection::Chat;
use super::time::{full_date, iso, short_time};
use crate::protocol::ChatMessage;
use leptos::prelude::*;

#[component]
pub fn MessageList() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let list = NodeRef::<leptos::html::Ol>::new();
    let messages = move || {
        chat.room.with(|room| {
            room.as_ref()
                .map(|r| r.messages.clone())
                .unwrap_or_default()
        })
    };
    let pending = move || {
        let channel = chat
            .room
            .with(|room| room.as_ref().map(|r| r.channel.clone()));
        chat.pending.with(|all| {
            all.iter()
                .filter(|p| Some(&p.channel) == channel.as_ref())
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    // Follow the conversation: scroll to the newest message when one arrives.
    Effect::new(move |_| {
        chat.room.track();
        chat.pending.track();
        #[cfg(feature = "hydrate")]
        if let Some(list) = list.get() {
            list.set_scroll_top(list.scroll_height());
        }
    });

    view! {
        <ol class="message-list" data-testid="message-list" node_ref=list aria-live="polite">
            <Show when=move || messages().is_empty() && pending().is_empty()>
                <li class="placeholder">"No messages yet. Say hello!"</li>
            </Show>
            <For
                each=messages
                // Numbers start at 1 in every channel: the channel is part of the
                // key, or a switch would keep the last room's rows with those numbers.
                key=|message| (message.channel.clone(), message.seq)
                children=|message| view! { <MessageItem message /> }
            />
            <For
                each=pending
                key=|p| (p.client_id.clone(), p.failed.clone())
                children=|p| view! { <PendingItem pending=p /> }
            />
        </ol>
    }
}

/// One delivered message. Text is rendered as text, never as HTML.
#[component]
fn MessageItem(message: ChatMessage) -> impl IntoView {
    view! {
        <li class="message" data-testid="message" data-seq=message.seq>
            <div class="message-meta">
                <span class="message-author" data-testid="message-author">
                    {message.author}
                </span>
                <time
                    class="message-time"
                    data-testid="message-time"
                    datetime=iso(message.sent_at)
                    title=full_date(message.sent_at)
                >
                    {short_time(message.sent_at)}
                </time>
            </div>
            <p class="message-text" data-testid="message-text">{message.text}</p>
        </li>
    }
}

/// A send the server has not shown back yet, or refused.
#[component]
fn PendingItem(pending: Pending) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let failed = pending.failed.clone();
    let is_failed = failed.is_some();
    let client_id = pending.client_id.clone();
    view! {
        <li
            class="message pending"
            class:failed=is_failed
            data-testid="pending-message"
        >
            <div class="message-meta">
                <span class="message-author">{chat.name().unwrap_or_default()}</span>
                <span class="message-time" data-testid="pending-state">
                    {move || {
                        if is_failed {
                            "not sent"
                        } else if chat.status.get().is_open() {
                            "sending…"
                        } else {
                            "waiting for the connection…"
                        }
                    }}
                </span>
            </div>
            <p class="message-text">{pending.text}</p>
            {failed.map(|reason| {
                view! {
                    <p class="send-error">
                        {reason}
                        <button class="ghost small" on:click=move |_| chat.discard(&client_id)>
                            "Dismiss"
                        </button>
                    </p>
                }
            })}
        </li>
    }
}
