//! Every channel, live, and the form that creates one.

use super::Drawer;
use super::chat::Identity;
use super::connection::Chat;
use super::form::submit_handler;
use crate::api::create_channel;
use crate::protocol::{CHANNEL_NAME_MAX_CHARS, channel_key, validate_channel_name};
use leptos::prelude::*;

#[component]
pub fn ChannelList() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let drawer = expect_context::<Drawer>();
    let current = move || {
        chat.room
            .with(|room| room.as_ref().map(|r| channel_key(&r.channel)))
    };
    view! {
        <nav class="channels" aria-label="Channels">
            <h2 class="section-title">"Channels"</h2>
            <ul class="room-list" data-testid="room-list">
                <For
                    each=move || chat.channels.get()
                    key=|channel| channel.name.clone()
                    children=move |channel| {
                        let name = channel.name.clone();
                        let key = channel_key(&name);
                        let is_current = move || current().as_deref() == Some(key.as_str());
                        let open = {
                            let name = name.clone();
                            move |_| {
                                chat.open_channel(&name);
                                drawer.close();
                            }
                        };
                        view! {
                            <li>
                                <button
                                    class="room-item"
                                    class:active=is_current.clone()
                                    aria-current=move || is_current().then_some("page")
                                    data-testid="room-item"
                                    data-room=name.clone()
                                    on:click=open
                                >
                                    <span class="hash" aria-hidden="true">"#"</span>
                                    <span class="room-name">{name.clone()}</span>
                                </button>
                            </li>
                        }
                    }
                />
            </ul>
            <Show when=move || matches!(chat.identity.get(), Identity::Named(_))>
                <NewChannelForm />
            </Show>
        </nav>
    }
}

#[component]
fn NewChannelForm() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let drawer = expect_context::<Drawer>();
    let draft = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let submit = submit_handler(chat, draft, busy, validate_channel_name, move |raw| {
        let (as_name, token) = chat.credentials()?;
        Some(async move {
            match create_channel(raw, as_name, token).await {
                Ok(channel) => {
                    draft.set(String::new());
                    chat.open_channel(&channel.name);
                    drawer.close();
                }
                Err(e) => chat.show_error(Some(e.to_string())),
            }
        })
    });
    view! {
        <form class="new-room" on:submit=submit>
            <label class="visually-hidden" for="new-room-input">"New channel name"</label>
            <input
                id="new-room-input"
                data-testid="new-room-input"
                type="text"
                placeholder="New channel"
                maxlength=CHANNEL_NAME_MAX_CHARS * 2
                bind:value=draft
            />
            <button data-testid="new-room-submit" type="submit" class="primary" disabled=busy>
                "Create"
            </button>
        </form>
    }
}
