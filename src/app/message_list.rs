//! The messages of the open room, oldest first, with this tab's pending sends last.

use super::chat::Pending;
use super::connection::Chat;
use super::time::{full_date, iso, short_time};
use crate::protocol::{ChatMessage, Room, Seq};
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
    let nothing_pending_here = move || {
        let channel = chat
            .room
            .with(|room| room.as_ref().map(|r| r.channel.clone()));
        chat.pending
            .with(|all| !all.iter().any(|p| Some(&p.channel) == channel.as_ref()))
    };
    // A screen reader hears each message as it arrives, and not the history a
    // room opens with.
    let announced = RwSignal::new(String::new());
    Effect::new(move |seen: Option<Option<(String, Seq)>>| {
        let own = chat.name();
        chat.room.with(|room| {
            let room = room.as_ref()?;
            if let Some(words) = announcement(seen.flatten().as_ref(), room, own.as_deref()) {
                announced.set(words);
            }
            Some((room.channel.clone(), room.last_seq().unwrap_or(0)))
        })
    });
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
        <p class="visually-hidden" aria-live="polite" data-testid="announcer">{announced}</p>
        <ol class="message-list" data-testid="message-list" node_ref=list aria-label="Messages">
            <Show when=move || messages().is_empty() && nothing_pending_here()>
                <li class="placeholder">"No messages yet. Say hello!"</li>
            </Show>
            <For
                each=messages
                // Numbers start at 1 in every channel: the channel is part of the
                // key, or a switch would keep the last room's rows with those numbers.
                key=|message| (message.channel.clone(), message.seq)
                children=|message| view! { <MessageItem message /> }
            />
            <PendingItems everywhere=false />
        </ol>
    }
}

/// What is read out for the open room now that it shows `room`, having shown up
/// to `seen` (its channel and last number): the newest message by someone else,
/// if it arrived since. A room just opened is not read out.
fn announcement(seen: Option<&(String, Seq)>, room: &Room, own: Option<&str>) -> Option<String> {
    let (channel, last) = seen?;
    if *channel != room.channel {
        return None;
    }
    let newest = room.messages.last().filter(|m| m.seq > *last)?;
    (Some(newest.author.as_str()) != own).then(|| format!("{}: {}", newest.author, newest.text))
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

/// This tab's sends the server has not shown back yet: those to the open room, or
/// (`everywhere`) to every room.
#[component]
pub fn PendingItems(everywhere: bool) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let pending = move || {
        let channel = chat
            .room
            .with(|room| room.as_ref().map(|r| r.channel.clone()));
        chat.pending.with(|all| {
            all.iter()
                .filter(|p| everywhere || Some(&p.channel) == channel.as_ref())
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    view! {
        <For
            each=pending
            key=|p| (p.client_id.clone(), p.failed.clone())
            children=move |p| view! { <PendingItem pending=p show_channel=everywhere /> }
        />
    }
}

/// A send the server has not shown back yet, or refused; outside its room, it says
/// where it goes.
#[component]
fn PendingItem(pending: Pending, show_channel: bool) -> impl IntoView {
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
                {show_channel
                    .then(|| {
                        view! {
                            <span class="message-time" data-testid="pending-channel">
                                {format!("to #{}", pending.channel)}
                            </span>
                        }
                    })}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sample_message;

    fn room(channel: &str, seqs: &[Seq]) -> Room {
        Room {
            channel: channel.into(),
            messages: seqs.iter().map(|&seq| sample_message(seq)).collect(),
            online: vec![],
            online_count: 0,
        }
    }

    #[test]
    fn only_messages_arriving_in_the_open_room_from_others_are_read_out() {
        let seen = ("General".to_owned(), 2);
        // A room just opened, or switched to: its history is not read.
        assert_eq!(announcement(None, &room("General", &[1, 2]), None), None);
        assert_eq!(
            announcement(Some(&seen), &room("Rust", &[1, 2, 3]), None),
            None
        );
        // Nothing new.
        assert_eq!(
            announcement(Some(&seen), &room("General", &[1, 2]), None),
            None
        );
        // Someone else's message arrives.
        assert_eq!(
            announcement(Some(&seen), &room("General", &[1, 2, 3]), Some("bob")).as_deref(),
            Some("ada: m3")
        );
        // One's own is not read back.
        assert_eq!(
            announcement(Some(&seen), &room("General", &[1, 2, 3]), Some("ada")),
            None
        );
    }
}
