//! The one WebSocket of a tab: opening it with a hello, reconnecting with backoff
//! when it drops, and sending frames while it is open. Frames it receives go to
//! [`Chat`]'s rules. Only the browser has a socket; the server's render has a slot
//! that stays empty.

#[cfg(feature = "hydrate")]
pub use browser::*;
#[cfg(not(feature = "hydrate"))]
pub use server::*;

/// Delay before reconnection attempt `attempt` (1-based): doubling from half a second
/// up to fifteen seconds, with jitter so a restarted server is not hit by every tab
/// at the same instant.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn backoff_ms(attempt: u32, jitter: f64) -> u32 {
    let base = 500u32.saturating_mul(1 << attempt.saturating_sub(1).min(5));
    let capped = base.min(15_000);
    (f64::from(capped) * (0.75 + 0.5 * jitter.clamp(0.0, 1.0))) as u32
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::super::Chat;
    use super::backoff_ms;
    use crate::app::chat::Status;
    use crate::protocol::{ClientFrame, ServerFrame};
    use leptos::prelude::*;
    use std::time::Duration;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;
    use web_sys::{CloseEvent, MessageEvent, WebSocket};

    /// The browser's socket and callbacks live on its one thread.
    pub type SlotStorage = LocalStorage;

    pub fn new_slot() -> StoredValue<Slot, SlotStorage> {
        StoredValue::new_local(Slot::default())
    }

    /// The live socket and the callbacks it holds, kept alive together.
    #[derive(Default)]
    pub struct Slot {
        socket: Option<WebSocket>,
        /// Bumped on every new socket, so callbacks of a replaced one do nothing.
        generation: u32,
        /// This socket joined its channel right behind its hello.
        joined_with_hello: bool,
        attempt: u32,
        callbacks: Vec<Closure<dyn FnMut(JsValueEvent)>>,
    }

    type JsValueEvent = wasm_bindgen::JsValue;

    fn url() -> Option<String> {
        let location = web_sys::window()?.location();
        let scheme = if location.protocol().ok()? == "https:" {
            "wss"
        } else {
            "ws"
        };
        Some(format!("{scheme}://{}/ws", location.host().ok()?))
    }

    /// Replaces any current socket with a new one that says hello as this tab's name.
    pub fn open(chat: Chat) {
        let Some((name, token)) = chat.credentials() else {
            return;
        };
        let Some(url) = url() else { return };
        let generation = chat.socket.with_value(|s| s.generation) + 1;
        close_current(chat);
        let socket = match WebSocket::new(&url) {
            Ok(socket) => socket,
            Err(_) => {
                schedule_reconnect(chat, generation);
                return;
            }
        };
        // While retrying, the banner keeps saying "reconnecting".
        if !matches!(chat.status.get_untracked(), Status::Reconnecting { .. }) {
            chat.set_status(Status::Connecting);
        }

        let hello = serde_json::to_string(&chat.hello(name, token)).unwrap_or_default();
        let on_open = {
            let socket = socket.clone();
            Closure::<dyn FnMut(JsValueEvent)>::new(move |_| {
                if !is_current(chat, generation) || socket.send_with_str(&hello).is_err() {
                    return;
                }
                // A tab that knows its channel joins it now, not a round trip later
                // once the welcome is in: its room shows that much sooner.
                let join = chat
                    .join_frame()
                    .and_then(|j| serde_json::to_string(&j).ok());
                if let Some(join) = join
                    && socket.send_with_str(&join).is_ok()
                {
                    chat.socket.update_value(|s| s.joined_with_hello = true);
                }
            })
        };
        let on_message = Closure::<dyn FnMut(JsValueEvent)>::new(move |event: JsValueEvent| {
            let Ok(event) = event.dyn_into::<MessageEvent>() else {
                return;
            };
            let Some(text) = event.data().as_string() else {
                return;
            };
            if !is_current(chat, generation) {
                return;
            }
            match serde_json::from_str::<ServerFrame>(&text) {
                Ok(frame) => {
                    if matches!(frame, ServerFrame::Welcome { .. }) {
                        chat.socket.update_value(|s| s.attempt = 0);
                    }
                    chat.apply(frame);
                }
                Err(e) => leptos::logging::warn!("unreadable frame from the server: {e}"),
            }
        });
        let on_close = Closure::<dyn FnMut(JsValueEvent)>::new(move |event: JsValueEvent| {
            if !is_current(chat, generation) {
                return;
            }
            if let Ok(event) = event.dyn_into::<CloseEvent>()
                && !event.reason().is_empty()
                && event.code() != 1000
            {
                leptos::logging::log!("connection closed: {} {}", event.code(), event.reason());
            }
            schedule_reconnect(chat, generation);
        });
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        chat.socket.update_value(|slot| {
            slot.socket = Some(socket);
            slot.generation = generation;
            slot.joined_with_hello = false;
            slot.callbacks = vec![on_open, on_message, on_close];
        });
    }

    fn is_current(chat: Chat, generation: u32) -> bool {
        chat.socket
            .try_with_value(|s| s.generation == generation)
            .unwrap_or(false)
    }

    /// Closes the socket for good (until `open` is called again).
    pub fn close(chat: Chat) {
        close_current(chat);
        chat.set_status(Status::Idle);
    }

    fn close_current(chat: Chat) {
        chat.socket.update_value(|slot| {
            slot.generation += 1;
            if let Some(socket) = slot.socket.take() {
                socket.set_onclose(None);
                socket.set_onmessage(None);
                let _ = socket.close();
            }
        });
    }

    fn schedule_reconnect(chat: Chat, generation: u32) {
        let attempt = chat.socket.with_value(|s| s.attempt) + 1;
        chat.socket.update_value(|s| {
            s.attempt = attempt;
            s.socket = None;
        });
        chat.set_status(Status::Reconnecting { attempt });
        let delay = backoff_ms(attempt, js_sys::Math::random());
        set_timeout(
            move || {
                if is_current(chat, generation) {
                    open(chat);
                }
            },
            Duration::from_millis(u64::from(delay)),
        );
    }

    /// Whether this socket joined right behind its hello, so the welcome needs no
    /// join of its own.
    pub fn joined_with_hello(chat: Chat) -> bool {
        chat.socket.with_value(|s| s.joined_with_hello)
    }

    /// Sends a frame if the socket is open. Frames that cannot go now are not lost:
    /// joins are redone and pending sends are resent after the next welcome.
    pub fn send(chat: Chat, frame: &ClientFrame) {
        let Ok(text) = serde_json::to_string(frame) else {
            return;
        };
        chat.socket.with_value(|slot| {
            if let Some(socket) = &slot.socket
                && socket.ready_state() == WebSocket::OPEN
                && chat.status.get_untracked().is_open()
            {
                let _ = socket.send_with_str(&text);
            }
        });
    }
}

/// The server renders the page but never opens a socket.
#[cfg(not(feature = "hydrate"))]
mod server {
    use super::super::Chat;
    use crate::protocol::ClientFrame;

    #[derive(Default)]
    pub struct Slot;

    /// Thread-safe on the server: a page's render may be polled on any of the
    /// runtime's threads, and a value kept for one thread only panics when it is
    /// dropped on another (which killed the connection rendering it).
    pub type SlotStorage = leptos::prelude::SyncStorage;

    pub fn new_slot() -> leptos::prelude::StoredValue<Slot, SlotStorage> {
        leptos::prelude::StoredValue::new(Slot)
    }

    pub fn open(_chat: Chat) {}

    pub fn close(_chat: Chat) {}

    pub fn send(_chat: Chat, _frame: &ClientFrame) {}

    pub fn joined_with_hello(_chat: Chat) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(1, 0.5), 500);
        assert_eq!(backoff_ms(2, 0.5), 1_000);
        assert_eq!(backoff_ms(4, 0.5), 4_000);
        assert_eq!(backoff_ms(50, 0.5), 15_000);
        assert!(backoff_ms(1, 0.0) < backoff_ms(1, 1.0));
    }
}
