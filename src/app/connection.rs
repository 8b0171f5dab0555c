//! The runner: the chat of this tab as reactive state, and the one place its side
//! effects happen. Frames from the socket and the person's actions go through the
//! pure rules of [`ChatState`]; the effects they return (frames to send, a channel
//! to remember, retries) are performed here. Components read the memos of [`Chat`]
//! and call its methods; they never touch the socket or the state directly.

mod socket;

use super::chat::{ChatState, Effect, Identity, Pending, Status};
use super::storage;
use crate::protocol::{Channel, ClientFrame, NameGrant, Room, ServerFrame};
use leptos::prelude::*;
use std::time::Duration;

/// How long a send the server could not store, or a catch-up asked for too soon,
/// waits before it goes again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// The chat's state, what components read of it, and the handle to its socket;
/// cheap to copy into closures.
#[derive(Clone, Copy)]
pub struct Chat {
    state: RwSignal<ChatState>,
    // Each part of the state a component shows, so that a change to one part
    // re-renders only what shows it.
    pub identity: Memo<Identity>,
    pub status: Memo<Status>,
    pub channels: Memo<Vec<Channel>>,
    pub room: Memo<Option<Room>>,
    pub pending: Memo<Vec<Pending>>,
    /// The latest problem to show the person, in words.
    pub error: Memo<Option<String>>,
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    socket: StoredValue<socket::Slot, socket::SlotStorage>,
}

impl Chat {
    pub fn new() -> Self {
        let state = RwSignal::new(ChatState::default());
        Self {
            state,
            identity: Memo::new(move |_| state.with(|s| s.identity.clone())),
            status: Memo::new(move |_| state.with(|s| s.status)),
            channels: Memo::new(move |_| state.with(|s| s.channels.clone())),
            room: Memo::new(move |_| state.with(|s| s.room.clone())),
            pending: Memo::new(move |_| state.with(|s| s.pending.clone())),
            error: Memo::new(move |_| state.with(|s| s.error.clone())),
            socket: socket::new_slot(),
        }
    }

    /// Applies a rule to the state and performs what it calls for.
    fn change(self, rule: impl FnOnce(&mut ChatState) -> Vec<Effect>) {
        let effects = self.state.try_update(rule).unwrap_or_default();
        self.perform(effects);
    }

    /// Sets part of the state that calls for nothing else.
    fn set(self, change: impl FnOnce(&mut ChatState)) {
        self.state.update(change);
    }

    fn perform(self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send(frame) => socket::send(self, &frame),
                Effect::Rejoin => {
                    if let Some(join) = self.join_frame() {
                        socket::send(self, &join);
                    }
                }
                Effect::SaveChannel(channel) => storage::save_channel(&channel),
                Effect::RetryLater(client_id) => {
                    after(RETRY_AFTER, move || self.change(|s| s.retry(&client_id)));
                }
                Effect::CatchUpLater => {
                    after(RETRY_AFTER, move || self.change(ChatState::catch_up))
                }
                Effect::Reclaim(message) => self.reclaim_name(message),
            }
        }
    }

    /// Reads what the browser remembers and connects if it knows a name. Runs once,
    /// after hydration.
    pub fn start(self) {
        let saved = storage::saved_identity();
        self.set(|s| {
            s.pending = storage::saved_outbox();
            s.identity = match &saved {
                Some((name, _token)) => Identity::Named(name.clone()),
                None => Identity::Anonymous,
            };
        });
        if saved.is_some() {
            socket::open(self);
        }
    }

    /// Takes a name the server granted: remembers it, gives up the previous one if
    /// it was different, and (re)connects as the new one.
    pub fn become_named(self, grant: NameGrant) {
        if let Some((previous, token)) = storage::saved_identity()
            // The server answers a name its holder already has with the spelling
            // held, so any other spelling is another name.
            && previous != grant.name
        {
            leptos::task::spawn_local(async move {
                // Failing to release only keeps the old name reserved until it idles out.
                let _ = crate::api::release_name(previous, token).await;
            });
        }
        storage::save_identity(&grant.name, &grant.token);
        self.set(|s| {
            s.error = None;
            s.identity = Identity::Named(grant.name);
        });
        socket::open(self);
    }

    /// The name server functions act as, with its token.
    pub fn credentials(self) -> Option<(String, String)> {
        storage::saved_identity()
    }

    /// Shows the name prompt again; the current connection stays until a new name
    /// is chosen.
    pub fn change_name(self) {
        self.set(|s| s.identity = Identity::Anonymous);
    }

    /// Closes the name prompt, keeping the name this browser holds.
    pub fn keep_name(self) {
        if let Some(name) = storage::saved_name() {
            self.set(|s| s.identity = Identity::Named(name));
        }
    }

    pub fn name(self) -> Option<String> {
        self.state.with_untracked(ChatState::name)
    }

    /// Shows a problem to the person, in words; `None` dismisses the one shown.
    pub fn show_error(self, error: Option<String>) {
        self.set(|s| s.error = error);
    }

    /// Opens a channel (the server answers with its history and who is online).
    pub fn open_channel(self, channel: &str) {
        self.change(|s| s.open_channel(channel));
    }

    /// Sends a message to the open room; it shows as pending until it comes back.
    pub fn send_message(self, text: String) {
        let client_id = new_client_id();
        self.change(|s| s.send_message(text, client_id));
    }

    /// Forgets a send the server refused.
    pub fn discard(self, client_id: &str) {
        self.set(|s| s.discard(client_id));
    }

    /// Applies one frame from the server. Frames only arrive in the browser.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn apply(self, frame: ServerFrame) {
        let joined_with_hello = socket::joined_with_hello(self);
        self.change(|s| s.on_frame(frame, joined_with_hello));
    }

    /// The hello this tab opens a socket with.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn hello(self, name: String, token: String) -> ClientFrame {
        self.state.with_untracked(|s| s.hello(name, token))
    }

    /// The join that puts this tab back where it was, with the channel the browser
    /// remembers; for the caller to send.
    fn join_frame(self) -> Option<ClientFrame> {
        let saved_channel = storage::saved_channel();
        self.state
            .try_update(|s| s.join_frame(saved_channel))
            .flatten()
    }

    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn set_status(self, status: Status) {
        self.set(|s| s.status = status);
    }

    /// The server does not accept this browser's token for its name: claim it again
    /// (the server may have lost its data), or ask for another name.
    fn reclaim_name(self, message: String) {
        socket::close(self);
        let Some((name, token)) = storage::saved_identity() else {
            self.set(|s| s.identity = Identity::Anonymous);
            return;
        };
        leptos::task::spawn_local(async move {
            match crate::api::claim_name(name, Some(token)).await {
                Ok(grant) => self.become_named(grant),
                Err(_) => self.set(|s| {
                    s.error = Some(message);
                    s.identity = Identity::Anonymous;
                }),
            }
        });
    }
}

impl Default for Chat {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `later` after `delay` in the browser; the server only renders the page.
fn after(delay: Duration, later: impl FnOnce() + 'static) {
    #[cfg(feature = "hydrate")]
    set_timeout(later, delay);
    #[cfg(not(feature = "hydrate"))]
    let _ = (delay, later);
}

/// A random id for one send, unique across tabs and reloads.
fn new_client_id() -> String {
    #[cfg(feature = "hydrate")]
    {
        let mut bytes = [0u8; 12];
        if let Some(crypto) = web_sys::window().and_then(|w| w.crypto().ok()) {
            let _ = crypto.get_random_values_with_u8_array(&mut bytes);
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        String::new()
    }
}
