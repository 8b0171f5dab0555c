//! The chat as reactive state: the one WebSocket of this tab, its reconnection, and
//! the signals that components read. Components call methods on [`Chat`]; they never
//! touch the socket.

use super::storage;
use crate::protocol::{
    Channel, ChatMessage, ClientFrame, ErrorCode, NameGrant, Room, Seq, ServerFrame,
};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a send the server could not store waits before it is sent again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Who this tab is. `Unknown` until hydration has read localStorage, so the server's
/// render and the first client render agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Unknown,
    Anonymous,
    Named(String),
}

/// The state of the socket, as the connection banner shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// No name yet, so no socket.
    Idle,
    Connecting,
    Connected,
    /// Connected, but the server cannot store messages now (its store is away);
    /// sends wait and are retried until it can.
    Degraded,
    /// The socket dropped; the next attempt is scheduled.
    Reconnecting {
        attempt: u32,
    },
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Idle => "Not connected",
            Status::Connecting => "Connecting…",
            Status::Connected => "Connected",
            Status::Degraded => "Connected; messages wait until the server can save them",
            Status::Reconnecting { .. } => "Reconnecting…",
        }
    }

    /// A stable word for styling and tests.
    pub fn key(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::Degraded => "degraded",
            Status::Reconnecting { .. } => "reconnecting",
        }
    }

    /// Whether frames can be sent now.
    pub fn is_open(self) -> bool {
        matches!(self, Status::Connected | Status::Degraded)
    }
}

/// A message this browser sent that the server has not acknowledged yet. Kept in
/// localStorage until it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub client_id: String,
    pub channel: String,
    pub text: String,
    /// Why the server refused it; `None` while it is on its way.
    pub failed: Option<String>,
}

/// The chat's state and the handle to its socket; cheap to copy into closures.
#[derive(Clone, Copy)]
pub struct Chat {
    pub identity: RwSignal<Identity>,
    pub status: RwSignal<Status>,
    pub channels: RwSignal<Vec<Channel>>,
    pub room: RwSignal<Option<Room>>,
    pub pending: RwSignal<Vec<Pending>>,
    /// The latest problem to show the person, in words.
    pub error: RwSignal<Option<String>>,
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    socket: StoredValue<socket::Slot, socket::SlotStorage>,
    /// The join on its way, if any, and what its answer or refusal means.
    joining: StoredValue<Joining>,
    /// The version of the channel list shown, which a hello names so that the
    /// welcome need not carry the list again.
    channels_version: StoredValue<Option<String>>,
}

/// Why this tab asked to join a room, while the answer is on its way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Joining {
    Nothing,
    /// The person picked a room (or the page opened its remembered one).
    Opening,
    /// The room on screen, after a reconnect: refused, it is no longer this tab's.
    Resuming,
    /// The room on screen missed a message: refused, it is; ask again shortly.
    CatchingUp,
}

impl Chat {
    pub fn new() -> Self {
        Self {
            identity: RwSignal::new(Identity::Unknown),
            status: RwSignal::new(Status::Idle),
            channels: RwSignal::new(Vec::new()),
            room: RwSignal::new(None),
            pending: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            socket: socket::new_slot(),
            joining: StoredValue::new(Joining::Nothing),
            channels_version: StoredValue::new(None),
        }
    }

    /// Reads what the browser remembers and connects if it knows a name. Runs once,
    /// after hydration.
    pub fn start(self) {
        self.pending.set(storage::saved_outbox());
        match storage::saved_identity() {
            Some((name, _token)) => {
                self.identity.set(Identity::Named(name));
                socket::open(self);
            }
            None => self.identity.set(Identity::Anonymous),
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
        self.identity.set(Identity::Named(grant.name));
        socket::open(self);
    }

    /// The name server functions act as, with its token.
    pub fn credentials(self) -> Option<(String, String)> {
        storage::saved_identity()
    }

    /// Shows the name prompt again; the current connection stays until a new name
    /// is chosen.
    pub fn change_name(self) {
        self.identity.set(Identity::Anonymous);
    }

    pub fn name(self) -> Option<String> {
        match self.identity.get_untracked() {
            Identity::Named(name) => Some(name),
            _ => None,
        }
    }

    pub fn current_channel(self) -> Option<String> {
        self.room
            .with_untracked(|room| room.as_ref().map(|r| r.channel.clone()))
    }

    /// Opens a channel (the server answers with its history and who is online).
    pub fn open_channel(self, channel: &str) {
        self.error.set(None);
        // A refusal now is of this room; the open one stays.
        self.joining.set_value(Joining::Opening);
        socket::send(
            self,
            &ClientFrame::Join {
                channel: channel.to_owned(),
                since: None,
            },
        );
    }

    /// Sends a message to the open room; it shows as pending until it comes back.
    pub fn send_message(self, text: String) {
        let Some(channel) = self.current_channel() else {
            return;
        };
        let pending = Pending {
            client_id: new_client_id(),
            channel,
            text,
            failed: None,
        };
        socket::send(self, &send_frame(&pending));
        self.pending.update(|all| all.push(pending));
    }

    /// Forgets a send the server refused.
    pub fn discard(self, client_id: &str) {
        self.pending
            .update(|all| all.retain(|p| p.client_id != client_id));
    }
}

/// Handling what the server says. Frames only arrive in the browser.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
impl Chat {
    /// Applies one frame from the server to the state.
    fn apply(self, frame: ServerFrame) {
        match frame {
            ServerFrame::Welcome {
                name,
                channels,
                channels_version,
            } => {
                // The name as the server holds it: after a rename in another tab, this
                // tab reconnected as the new name.
                if self
                    .identity
                    .with_untracked(|i| !matches!(i, Identity::Named(held) if *held == name))
                {
                    self.identity.set(Identity::Named(name));
                }
                self.status.set(Status::Connected);
                // No list: this tab shows this version of it already.
                if let Some(channels) = channels {
                    self.channels.set(channels);
                }
                self.channels_version.set_value(Some(channels_version));
                if !socket::joined_with_hello(self) {
                    self.rejoin();
                }
            }
            ServerFrame::ChannelCreated { channel } => {
                self.channels.update(|all| {
                    if !all.iter().any(|c| c.name == channel.name) {
                        all.push(channel);
                    }
                });
                // The list is the new one, whose version the next welcome tells.
                self.channels_version.set_value(None);
            }
            ServerFrame::Joined {
                channel,
                history,
                reset,
                online,
                online_count,
            } => self.joined(channel, history, reset, online, online_count),
            ServerFrame::Message { message } => {
                self.pending
                    .update(|all| all.retain(|p| p.client_id != message.client_id));
                let mut missed = false;
                self.room.update(|room| {
                    if let Some(room) = room.as_mut().filter(|r| r.channel == message.channel) {
                        missed = room.misses_one_before(&message);
                        if !missed {
                            room.push(message);
                        }
                    }
                });
                if missed {
                    self.catch_up();
                }
            }
            ServerFrame::Presence {
                channel,
                joined,
                left,
                online_count,
                replace,
            } => self.with_room(&channel, |room| {
                room.apply_presence(joined, &left, online_count, replace)
            }),
            ServerFrame::Ack { client_id, .. } => {
                // Something was stored: the server can save messages again.
                if self.status.get_untracked() == Status::Degraded {
                    self.status.set(Status::Connected);
                }
                self.discard(&client_id);
            }
            ServerFrame::SendFailed {
                client_id,
                code,
                message,
            } => {
                if code.is_retryable() {
                    self.note_delay(code, message);
                    self.retry_later(client_id);
                } else if code == ErrorCode::NotInChannel {
                    // Sent just as the person moved to another room: it stays
                    // pending and goes again when its room is open.
                } else {
                    self.pending.update(|all| {
                        if let Some(p) = all.iter_mut().find(|p| p.client_id == client_id) {
                            p.failed = Some(message);
                        }
                    });
                }
            }
            ServerFrame::Error {
                code: ErrorCode::NameTaken,
                message,
            } => self.name_refused(message),
            ServerFrame::Error { code, message } => {
                let join_refused = matches!(
                    code,
                    ErrorCode::RoomFull | ErrorCode::NoSuchChannel | ErrorCode::RateLimited
                );
                let joining = self.joining.get_value();
                if join_refused {
                    self.joining.set_value(Joining::Nothing);
                }
                match (code, joining) {
                    // Asking for what was missed came too soon after other joins:
                    // the room waits a moment, and the person need not know.
                    (ErrorCode::RateLimited, Joining::CatchingUp) => {
                        after(RETRY_AFTER, move || self.catch_up());
                        return;
                    }
                    // The room on screen could not be rejoined: stop showing it as
                    // if it were still live.
                    (
                        ErrorCode::RoomFull | ErrorCode::NoSuchChannel,
                        Joining::Resuming | Joining::CatchingUp,
                    ) => {
                        self.room.set(None);
                    }
                    _ => {}
                }
                if code == ErrorCode::NoSuchChannel && self.current_channel().is_none() {
                    // The remembered channel is gone: fall back to the first one.
                    if let Some(first) = self.channels.with_untracked(|c| c.first().cloned()) {
                        self.open_channel(&first.name);
                        return;
                    }
                }
                self.error.set(Some(message));
            }
        }
    }

    /// Tells the person why a send waits: they are sending too fast, or the server
    /// cannot store messages now (shown in the connection status until it can).
    fn note_delay(self, code: ErrorCode, message: String) {
        match code {
            ErrorCode::Unavailable if self.status.get_untracked() == Status::Connected => {
                self.status.set(Status::Degraded);
            }
            // Say so; the message itself waits and goes out shortly.
            ErrorCode::RateLimited => self.error.set(Some(message)),
            _ => {}
        }
    }

    /// Sends a pending message again after a pause (the server could not store it).
    fn retry_later(self, client_id: String) {
        after(RETRY_AFTER, move || {
            let pending = self
                .pending
                .with_untracked(|all| all.iter().find(|p| p.client_id == client_id).cloned());
            // Only into the open room; one left meanwhile resends it on return.
            if let Some(pending) = pending
                && self.current_channel().as_ref() == Some(&pending.channel)
            {
                socket::send(self, &send_frame(&pending));
            }
        });
    }

    /// The server does not accept this browser's token for its name: claim it again
    /// (the server may have lost its data), or ask for another name.
    fn name_refused(self, message: String) {
        socket::close(self);
        let Some((name, token)) = storage::saved_identity() else {
            self.identity.set(Identity::Anonymous);
            return;
        };
        leptos::task::spawn_local(async move {
            match crate::api::claim_name(name, Some(token)).await {
                Ok(grant) => self.become_named(grant),
                Err(_) => {
                    self.error.set(Some(message));
                    self.identity.set(Identity::Anonymous);
                }
            }
        });
    }

    fn with_room(self, channel: &str, change: impl FnOnce(&mut Room)) {
        self.room.update(|room| {
            if let Some(room) = room.as_mut().filter(|r| r.channel == channel) {
                change(room);
            }
        });
    }

    /// Asks for what the open room missed: the answer to the join carries it and
    /// every message after it (or, when the gap is beyond the kept window, the
    /// window, which replaces what is shown). Not while another join is on its way:
    /// a resume's answer carries the same, and another room's replaces this one.
    /// Messages that come before the answer are in it too.
    fn catch_up(self) {
        if self.joining.get_value() != Joining::Nothing {
            return;
        }
        if let Some((channel, since)) = self.resume_point() {
            self.joining.set_value(Joining::CatchingUp);
            socket::send(self, &ClientFrame::Join { channel, since });
        }
    }

    /// The open room, and the last message it shows: where a resume goes on from.
    fn resume_point(self) -> Option<(String, Option<Seq>)> {
        self.room
            .with_untracked(|room| room.as_ref().map(|r| (r.channel.clone(), r.last_seq())))
    }

    /// After (re)connecting: resume the open room from the last message shown, or
    /// open the remembered channel, or the first one.
    fn rejoin(self) {
        if let Some(join) = self.join_frame() {
            socket::send(self, &join);
        }
    }

    /// The join that puts this tab back where it was: the open room from after its
    /// last message, else the channel the browser remembers, else the first one.
    /// For the caller to send.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn join_frame(self) -> Option<ClientFrame> {
        let (channel, since, joining) = match self.resume_point() {
            Some((channel, since)) => (channel, since, Joining::Resuming),
            None => (
                storage::saved_channel().or_else(|| {
                    self.channels
                        .with_untracked(|c| c.first().map(|c| c.name.clone()))
                })?,
                None,
                Joining::Opening,
            ),
        };
        self.joining.set_value(joining);
        Some(ClientFrame::Join { channel, since })
    }

    fn joined(
        self,
        channel: String,
        history: Vec<ChatMessage>,
        reset: bool,
        online: Vec<String>,
        online_count: usize,
    ) {
        storage::save_channel(&channel);
        self.error.set(None);
        let caught_up = self.joining.get_value() == Joining::CatchingUp;
        self.joining.set_value(Joining::Nothing);
        self.room.update(|room| match room {
            Some(room) if room.channel == channel && !reset => {
                for message in history {
                    room.push(message);
                }
                room.online = online;
                room.online_count = online_count;
            }
            _ => {
                *room = Some(Room {
                    channel: channel.clone(),
                    messages: history,
                    online,
                    online_count,
                })
            }
        });
        // A catch-up changes nothing this tab sent: what is still pending is on its
        // way, and sending it again would only spend its send allowance.
        if !caught_up {
            self.resend_pending(&channel);
        }
    }

    /// Sends again what this tab still has pending for the room it just joined,
    /// except what the history shows already arrived.
    fn resend_pending(self, channel: &str) {
        let arrived: Vec<String> = self.room.with_untracked(|room| {
            room.iter()
                .flat_map(|r| r.messages.iter().map(|m| m.client_id.clone()))
                .collect()
        });
        self.pending
            .update(|all| all.retain(|p| !arrived.contains(&p.client_id)));
        let retry: Vec<Pending> = self.pending.with_untracked(|all| {
            all.iter()
                .filter(|p| p.channel == channel && p.failed.is_none())
                .cloned()
                .collect()
        });
        for pending in &retry {
            socket::send(self, &send_frame(pending));
        }
    }
}

impl Default for Chat {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `later` after `delay` in the browser; the server only renders the page, and
/// unit tests run no timers.
fn after(delay: Duration, later: impl FnOnce() + 'static) {
    #[cfg(feature = "hydrate")]
    set_timeout(later, delay);
    #[cfg(not(feature = "hydrate"))]
    let _ = (delay, later);
}

fn send_frame(pending: &Pending) -> ClientFrame {
    ClientFrame::Send {
        channel: pending.channel.clone(),
        client_id: pending.client_id.clone(),
        text: pending.text.clone(),
    }
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

/// Delay before reconnection attempt `attempt` (1-based): doubling from half a second
/// up to fifteen seconds, with jitter so a restarted server is not hit by every tab
/// at the same instant.
pub fn backoff_ms(attempt: u32, jitter: f64) -> u32 {
    let base = 500u32.saturating_mul(1 << attempt.saturating_sub(1).min(5));
    let capped = base.min(15_000);
    (f64::from(capped) * (0.75 + 0.5 * jitter.clamp(0.0, 1.0))) as u32
}

#[cfg(feature = "hydrate")]
mod socket {
    use super::{Chat, Status, backoff_ms};
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
            chat.status.set(Status::Connecting);
        }

        let hello = serde_json::to_string(&ClientFrame::Hello {
            name,
            token,
            channels_version: chat.channels_version.get_value(),
        })
        .unwrap_or_default();
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
        chat.status.set(Status::Idle);
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
        chat.status.set(Status::Reconnecting { attempt });
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
mod socket {
    use super::Chat;
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
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(1, 0.5), 500);
        assert_eq!(backoff_ms(2, 0.5), 1_000);
        assert_eq!(backoff_ms(4, 0.5), 4_000);
        assert_eq!(backoff_ms(50, 0.5), 15_000);
        assert!(backoff_ms(1, 0.0) < backoff_ms(1, 1.0));
    }

    use crate::protocol::sample_message as message;

    fn joined(history: Vec<ChatMessage>, reset: bool) -> ServerFrame {
        ServerFrame::Joined {
            channel: "General".into(),
            history,
            reset,
            online: vec!["ada".into()],
            online_count: 1,
        }
    }

    /// Signals live in an owner's arena, as they do under the page's root.
    fn with_chat(test: impl FnOnce(Chat)) {
        Owner::new().with(|| test(Chat::new()));
    }

    fn seqs(chat: Chat) -> Vec<Seq> {
        chat.room
            .get_untracked()
            .map(|r| r.messages.iter().map(|m| m.seq).collect())
            .unwrap_or_default()
    }

    #[test]
    fn resuming_appends_and_a_reset_replaces() {
        with_chat(|chat| {
            chat.apply(joined(vec![message(1), message(2)], true));
            chat.apply(ServerFrame::Message {
                message: message(3),
            });
            // A resume that overlaps what is shown adds only what is new.
            chat.apply(joined(vec![message(3), message(4)], false));
            assert_eq!(seqs(chat), [1, 2, 3, 4]);
            // The gap was too old: the window replaces what was shown.
            chat.apply(joined(vec![message(10), message(11)], true));
            assert_eq!(seqs(chat), [10, 11]);
        });
    }

    fn general_message(seq: Seq) -> ServerFrame {
        ServerFrame::Message {
            message: message(seq),
        }
    }

    #[test]
    fn a_missed_message_is_asked_for_and_never_skipped_silently() {
        with_chat(|chat| {
            chat.apply(joined(vec![message(1), message(2)], true));
            // 3 never came: 4 is not shown after 2; the room asks from 2 on.
            chat.apply(general_message(4));
            assert_eq!(seqs(chat), [1, 2]);
            assert_eq!(chat.joining.get_value(), Joining::CatchingUp);
            // What comes before the answer is in the answer.
            chat.apply(general_message(5));
            chat.apply(joined(vec![message(3), message(4), message(5)], false));
            assert_eq!(seqs(chat), [1, 2, 3, 4, 5]);
            assert_eq!(chat.joining.get_value(), Joining::Nothing);
            chat.apply(general_message(6));
            assert_eq!(seqs(chat), [1, 2, 3, 4, 5, 6]);
        });
    }

    #[test]
    fn a_catch_up_refused_for_joining_too_often_waits_quietly() {
        with_chat(|chat| {
            chat.apply(joined(vec![message(1)], true));
            chat.apply(general_message(3));
            chat.apply(ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message: "You are switching rooms too fast.".into(),
            });
            // The room stays, nobody is told off, and the next gap may ask again.
            assert_eq!(seqs(chat), [1]);
            assert_eq!(chat.error.get_untracked(), None);
            assert_eq!(chat.joining.get_value(), Joining::Nothing);
            chat.apply(general_message(4));
            assert_eq!(chat.joining.get_value(), Joining::CatchingUp);
        });
    }

    #[test]
    fn a_gap_in_the_room_being_left_does_not_pull_the_tab_back() {
        with_chat(|chat| {
            chat.apply(joined(vec![message(1)], true));
            chat.open_channel("Rust");
            chat.apply(general_message(3));
            // No catch-up of General: the join of Rust is on its way.
            assert_eq!(chat.joining.get_value(), Joining::Opening);
            chat.apply(ServerFrame::Joined {
                channel: "Rust".into(),
                history: vec![],
                reset: true,
                online: vec!["ada".into()],
                online_count: 1,
            });
            assert_eq!(chat.current_channel().as_deref(), Some("Rust"));
            assert_eq!(chat.joining.get_value(), Joining::Nothing);
        });
    }

    #[test]
    fn a_pending_send_clears_when_it_comes_back_and_shows_refusals() {
        with_chat(|chat| {
            chat.apply(joined(vec![], true));
            chat.pending.set(vec![
                Pending {
                    client_id: "c1".into(),
                    channel: "General".into(),
                    text: "m1".into(),
                    failed: None,
                },
                Pending {
                    client_id: "c2".into(),
                    channel: "General".into(),
                    text: "too long".into(),
                    failed: None,
                },
            ]);
            chat.apply(ServerFrame::Message {
                message: message(1),
            });
            chat.apply(ServerFrame::SendFailed {
                client_id: "c2".into(),
                code: ErrorCode::InvalidMessage,
                message: "Messages can be at most 2000 characters.".into(),
            });
            let pending = chat.pending.get_untracked();
            assert_eq!(pending.len(), 1);
            assert_eq!(
                pending[0].failed.as_deref(),
                Some("Messages can be at most 2000 characters.")
            );
        });
    }

    #[test]
    fn a_send_refused_because_its_room_was_left_stays_pending() {
        with_chat(|chat| {
            chat.apply(joined(vec![], true));
            let left_behind = Pending {
                client_id: "c1".into(),
                channel: "Elsewhere".into(),
                text: "sent as the room changed".into(),
                failed: None,
            };
            chat.pending.set(vec![left_behind.clone()]);
            chat.apply(ServerFrame::SendFailed {
                client_id: "c1".into(),
                code: ErrorCode::NotInChannel,
                message: "Join the channel first.".into(),
            });
            // Not marked as failed: it goes again when its room is open.
            assert_eq!(chat.pending.get_untracked(), [left_behind]);
        });
    }

    #[test]
    fn a_room_that_cannot_be_rejoined_after_a_reconnect_is_no_longer_shown() {
        with_chat(|chat| {
            chat.apply(joined(vec![message(1)], true));
            let room_full = || ServerFrame::Error {
                code: ErrorCode::RoomFull,
                message: "This room is full.".into(),
            };
            // Another room refused: the open one stays.
            chat.open_channel("Crowded");
            chat.apply(room_full());
            assert_eq!(chat.current_channel().as_deref(), Some("General"));
            // The open room refused on the way back from a reconnect.
            assert!(chat.join_frame().is_some());
            chat.apply(room_full());
            assert_eq!(chat.current_channel(), None);
            assert_eq!(
                chat.error.get_untracked().as_deref(),
                Some("This room is full.")
            );
        });
    }

    #[test]
    fn the_status_says_when_the_server_cannot_save_and_when_it_can_again() {
        with_chat(|chat| {
            chat.status.set(Status::Connected);
            // What a retryable refusal does before the retry is scheduled.
            chat.note_delay(ErrorCode::Unavailable, "The server is busy.".into());
            assert_eq!(chat.status.get_untracked(), Status::Degraded);
            assert!(
                chat.status.get_untracked().is_open(),
                "retries still go out"
            );
            chat.apply(ServerFrame::Ack {
                client_id: "c1".into(),
                channel: "General".into(),
                seq: 1,
            });
            assert_eq!(chat.status.get_untracked(), Status::Connected);
        });
    }

    #[test]
    fn presence_follows_joins_and_leaves_of_the_open_room_only() {
        with_chat(|chat| {
            chat.apply(joined(vec![], true));
            let presence =
                |channel: &str, joined: &[&str], left: &[&str], count| ServerFrame::Presence {
                    channel: channel.into(),
                    joined: joined.iter().map(|n| n.to_string()).collect(),
                    left: left.iter().map(|n| n.to_string()).collect(),
                    online_count: count,
                    replace: false,
                };
            chat.apply(presence("General", &["cy", "bo"], &[], 3));
            chat.apply(presence("Other", &["di"], &[], 9));
            // Someone already shown, announced again, is shown once.
            chat.apply(presence("General", &["bo"], &["cy"], 2));
            let room = chat.room.get_untracked().unwrap();
            assert_eq!(
                (room.online, room.online_count),
                (vec!["ada".into(), "bo".into()], 2)
            );
        });
    }

    #[test]
    fn a_whole_list_replaces_the_shown_one_and_big_rooms_keep_their_count() {
        with_chat(|chat| {
            chat.apply(joined(vec![], true));
            chat.apply(ServerFrame::Presence {
                channel: "General".into(),
                joined: vec!["zed".into(), "bo".into()],
                left: vec![],
                online_count: 5_000,
                replace: true,
            });
            let room = chat.room.get_untracked().unwrap();
            assert_eq!(
                room.online,
                ["bo", "zed"],
                "ada's departure came with the list"
            );
            assert_eq!(room.online_count, 5_000);
        });
    }

    #[test]
    fn errors_are_shown_in_words() {
        with_chat(|chat| {
            chat.apply(joined(vec![], true));
            chat.apply(ServerFrame::Error {
                code: ErrorCode::RoomFull,
                message: "This room is full.".into(),
            });
            assert_eq!(
                chat.error.get_untracked().as_deref(),
                Some("This room is full.")
            );
            assert_eq!(chat.status.get_untracked(), Status::Idle);
        });
    }

    #[test]
    fn a_welcome_without_the_list_keeps_the_one_shown() {
        with_chat(|chat| {
            let welcome = |channels: Option<Vec<Channel>>, version: &str| ServerFrame::Welcome {
                name: "ada".into(),
                channels,
                channels_version: version.into(),
            };
            let general = Channel {
                name: "General".into(),
                created_at: 0,
            };
            chat.apply(welcome(Some(vec![general.clone()]), "v1"));
            assert_eq!(chat.channels_version.get_value().as_deref(), Some("v1"));
            // Back after a reconnect, named "v1": the list stays as shown.
            chat.apply(welcome(None, "v1"));
            assert_eq!(
                chat.channels.get_untracked(),
                std::slice::from_ref(&general)
            );
            // A channel created: the next hello names no version, and gets the list.
            chat.apply(ServerFrame::ChannelCreated {
                channel: Channel {
                    name: "Rust".into(),
                    created_at: 1,
                },
            });
            assert_eq!(chat.channels.get_untracked().len(), 2);
            assert_eq!(chat.channels_version.get_value(), None);
        });
    }
}
