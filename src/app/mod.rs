//! The page: one component per file, sharing the chat state through context.

mod channel_list;
mod chat;
mod composer;
mod connection;
mod error_banner;
mod form;
mod identity;
mod keys;
mod message_list;
mod offline;
mod online_list;
mod room;
mod status;
mod storage;
mod time;

use channel_list::ChannelList;
use chat::Identity;
use connection::Chat;
use error_banner::ErrorBanner;
use identity::{CurrentName, NamePrompt};
use leptos::either::Either;
use leptos::either::EitherOf3;
use leptos::prelude::*;
use room::RoomView;
use status::ConnectionStatus;

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <link rel="apple-touch-icon" href="/icons/icon-192.png" />
                <link rel="manifest" href="/manifest.webmanifest" />
                // The browser's own bar takes the colour of the top bar.
                <meta name="theme-color" content="#ffffff" media="(prefers-color-scheme: light)" />
                <meta name="theme-color" content="#211d1a" media="(prefers-color-scheme: dark)" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                // The id lets `cargo leptos watch` swap the stylesheet in place.
                <link id="leptos" rel="stylesheet" href=stylesheet() />
                <title>"Hearth"</title>
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The stylesheet's address: named by its content in a release build.
fn stylesheet() -> String {
    #[cfg(feature = "ssr")]
    if let Some(assets) = use_context::<std::sync::Arc<crate::server::assets::Assets>>() {
        return assets.stylesheet().to_owned();
    }
    "/pkg/hearth.css".to_owned()
}

/// The chat at `/`; any other address that is not a file gets a short notice (the
/// server answers it with status 404). A single page needs no router, and leaving
/// one out keeps the browser's download smaller.
#[component]
pub fn App() -> impl IntoView {
    if requested_path().is_none_or(|path| path == "/") {
        Either::Left(view! { <ChatPage /> })
    } else {
        Either::Right("Page not found.")
    }
}

/// The path of the page being rendered; the server and the browser must agree, so
/// hydration takes the same branch the server rendered.
#[cfg(feature = "ssr")]
fn requested_path() -> Option<String> {
    use_context::<axum::http::request::Parts>().map(|parts| parts.uri.path().to_owned())
}

#[cfg(all(feature = "hydrate", not(feature = "ssr")))]
fn requested_path() -> Option<String> {
    web_sys::window()?.location().pathname().ok()
}

#[cfg(not(any(feature = "ssr", feature = "hydrate")))]
fn requested_path() -> Option<String> {
    None
}

/// On phones the channel list is a drawer over the room; picking a room (or Esc)
/// closes it.
#[derive(Clone, Copy)]
pub struct Drawer(RwSignal<bool>);

impl Drawer {
    pub fn is_open(self) -> bool {
        self.0.get()
    }

    pub fn toggle(self) {
        self.0.update(|open| *open = !*open);
    }

    pub fn close(self) {
        self.0.set(false);
    }
}

/// The whole chat: channels on the side, the open room in the middle.
#[component]
fn ChatPage() -> impl IntoView {
    let chat = Chat::new();
    provide_context(chat);
    // Effects run only in the browser, after hydration: the first moment
    // localStorage and WebSocket exist.
    Effect::new(move |_| {
        chat.start();
        offline::keep_the_page();
    });
    // The outbox follows every change, so a reload or a closed tab loses no send;
    // not before `start` has read the saved one, which would erase it.
    Effect::new(move |_| {
        if chat.identity.with(|i| *i != Identity::Unknown) {
            chat.pending.with(|outbox| storage::save_outbox(outbox));
        }
    });
    let drawer = Drawer(RwSignal::new(false));
    provide_context(drawer);
    keys::install(chat, drawer);

    view! {
        <div class="app" class:drawer-open=move || drawer.is_open()>
            <header class="topbar">
                <button
                    class="icon-button drawer-toggle"
                    aria-label="Channels"
                    aria-expanded=move || if drawer.is_open() { "true" } else { "false" }
                    on:click=move |_| drawer.toggle()
                >
                    "☰"
                </button>
                <h1 class="brand">
                    <span class="brand-mark" aria-hidden="true">"◆"</span>
                    "Hearth"
                </h1>
                <ConnectionStatus />
                <CurrentName />
            </header>
            <aside class="sidebar">
                <ChannelList />
            </aside>
            <main class="main">
                <ErrorBanner />
                {move || match chat.identity.get() {
                    Identity::Unknown => EitherOf3::A(view! { <p class="placeholder">"Loading…"</p> }),
                    Identity::Anonymous => EitherOf3::B(view! { <NamePrompt /> }),
                    Identity::Named(_) => EitherOf3::C(view! { <RoomView /> }),
                }}
            </main>
        </div>
    }
}
