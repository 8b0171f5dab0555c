//! The chat in one tab, as plain data, and every rule that changes it: what the
//! server's frames and the person's actions do to it. Each change returns the
//! effects it calls for (frames to send, a channel to remember, retries to
//! schedule), which `connection` performs; nothing here touches the socket, the
//! browser's storage or a timer, so every rule is tested as it is.

use crate::protocol::{Channel, ChatMessage, ClientFrame, ErrorCode, Room, Seq, ServerFrame};
use serde::{Deserialize, Serialize};

/// Who this tab is. `Unknown` until hydration has read localStorage, so the server's
/// render and the first client render agree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Identity {
    #[default]
    Unknown,
    Anonymous,
    Named(String),
}

/// The state of the socket, as the connection banner shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Status {
    /// No name yet, so no socket.
    #[default]
    Idle,
    // The browser's socket reports these; the server's render never connects.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    Connecting,
    Connected,
    /// Connected, but the server cannot store messages now (its store is away);
    /// sends wait and are retried until it can.
    Degraded,
    /// The socket dropped; the next attempt is scheduled.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
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

/// What a change calls for, for `connection` to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send this frame, if the socket is open (what cannot go now is not lost: joins
    /// are redone and pending sends resent after the next welcome).
    Send(ClientFrame),
    /// Join again where this tab was (`ChatState::join_frame`, with the channel the
    /// browser remembers).
    Rejoin,
    /// Remember this channel as the one to open next time.
    SaveChannel(String),
    /// Send this pending message again after a pause (`ChatState::retry`).
    RetryLater(String),
    /// Ask again for what the open room missed, after a pause.
    CatchUpLater,
    /// The server does not accept this browser's token for its name: close the
    /// socket and claim the name again (the server may have lost its data), or ask
    /// for another name, showing this.
    Reclaim(String),
}

/// Why this tab asked to join a room, while the answer is on its way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Joining {
    #[default]
    Nothing,
    /// The person picked a room (or the page opened its remembered one).
    Opening,
    /// The room on screen, after a reconnect: refused, it is no longer this tab's.
    Resuming,
    /// The room on screen missed a message: refused, it is; ask again shortly.
    CatchingUp,
}

/// Everything a tab shows of the chat, and what it is waiting for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatState {
    pub identity: Identity,
    pub status: Status,
    pub channels: Vec<Channel>,
    pub room: Option<Room>,
    pub pending: Vec<Pending>,
    /// The latest problem to show the person, in words.
    pub error: Option<String>,
    /// The join on its way, if any, and what its answer or refusal means.
    joining: Joining,
    /// The version of the channel list shown, which a hello names so that the
    /// welcome need not carry the list again.
    channels_version: Option<String>,
}

impl ChatState {
    pub fn name(&self) -> Option<String> {
        match &self.identity {
            Identity::Named(name) => Some(name.clone()),
            _ => None,
        }
    }

    pub fn current_channel(&self) -> Option<String> {
        self.room.as_ref().map(|r| r.channel.clone())
    }

    /// The hello this tab opens its socket with.
    pub fn hello(&self, name: String, token: String) -> ClientFrame {
        ClientFrame::Hello {
            name,
            token,
            channels_version: self.channels_version.clone(),
        }
    }

    /// Opens a channel (the server answers with its history and who is online).
    pub fn open_channel(&mut self, channel: &str) -> Vec<Effect> {
        self.error = None;
        // A refusal now is of this room; the open one stays.
        self.joining = Joining::Opening;
        vec![Effect::Send(ClientFrame::Join {
            channel: channel.to_owned(),
            since: None,
        })]
    }

    /// Sends a message to the open room; it shows as pending until it comes back.
    pub fn send_message(&mut self, text: String, client_id: String) -> Vec<Effect> {
        let Some(channel) = self.current_channel() else {
            return Vec::new();
        };
        let pending = Pending {
            client_id,
            channel,
            text,
            failed: None,
        };
        let send = send_frame(&pending);
        self.pending.push(pending);
        vec![Effect::Send(send)]
    }

    /// Forgets a send the server refused, or acknowledged.
    pub fn discard(&mut self, client_id: &str) {
        self.pending.retain(|p| p.client_id != client_id);
    }

    /// A pending message's pause is over: it goes again, into its own room only (a
    /// room left meanwhile resends it on return).
    pub fn retry(&self, client_id: &str) -> Vec<Effect> {
        self.pending
            .iter()
            .find(|p| p.client_id == client_id)
            .filter(|p| self.current_channel().as_ref() == Some(&p.channel))
            .map(|p| vec![Effect::Send(send_frame(p))])
            .unwrap_or_default()
    }

    /// Applies one frame from the server.
    pub fn on_frame(&mut self, frame: ServerFrame, joined_with_hello: bool) -> Vec<Effect> {
        match frame {
            ServerFrame::Welcome {
                name,
                channels,
                channels_version,
            } => {
                // The name as the server holds it: after a rename in another tab, this
                // tab reconnected as the new name.
                self.identity = Identity::Named(name);
                self.status = Status::Connected;
                // No list: this tab shows this version of it already.
                if let Some(channels) = channels {
                    self.channels = channels;
                }
                self.channels_version = Some(channels_version);
                if joined_with_hello {
                    Vec::new()
                } else {
                    vec![Effect::Rejoin]
                }
            }
            ServerFrame::ChannelCreated { channel } => {
                if !self.channels.iter().any(|c| c.name == channel.name) {
                    self.channels.push(channel);
                }
                // The list is the new one, whose version the next welcome tells.
                self.channels_version = None;
                Vec::new()
            }
            ServerFrame::Joined {
                channel,
                history,
                reset,
                online,
                online_count,
            } => self.joined(channel, history, reset, online, online_count),
            ServerFrame::Message { message } => {
                self.discard(&message.client_id);
                let Some(room) = self.room.as_mut().filter(|r| r.channel == message.channel) else {
                    return Vec::new();
                };
                if room.misses_one_before(&message) {
                    return self.catch_up();
                }
                room.push(message);
                Vec::new()
            }
            ServerFrame::Presence {
                channel,
                joined,
                left,
                online_count,
                replace,
            } => {
                if let Some(room) = self.room.as_mut().filter(|r| r.channel == channel) {
                    room.apply_presence(joined, &left, online_count, replace);
                }
                Vec::new()
            }
            ServerFrame::Ack { client_id, .. } => {
                // Something was stored: the server can save messages again.
                if self.status == Status::Degraded {
                    self.status = Status::Connected;
                }
                self.discard(&client_id);
                Vec::new()
            }
            ServerFrame::SendFailed {
                client_id,
                code,
                message,
            } => {
                if code.is_retryable() {
                    self.note_delay(code, message);
                    return vec![Effect::RetryLater(client_id)];
                }
                // Refused as sent just as the person moved to another room: it stays
                // pending and goes again when its room is open.
                if code != ErrorCode::NotInChannel
                    && let Some(p) = self.pending.iter_mut().find(|p| p.client_id == client_id)
                {
                    p.failed = Some(message);
                }
                Vec::new()
            }
            ServerFrame::Error {
                code: ErrorCode::NameTaken,
                message,
            } => vec![Effect::Reclaim(message)],
            ServerFrame::Error { code, message } => self.refused(code, message),
        }
    }

    /// A refusal of what this tab asked for.
    fn refused(&mut self, code: ErrorCode, message: String) -> Vec<Effect> {
        let join_refused = matches!(
            code,
            ErrorCode::RoomFull | ErrorCode::NoSuchChannel | ErrorCode::RateLimited
        );
        let joining = self.joining;
        if join_refused {
            self.joining = Joining::Nothing;
        }
        match (code, joining) {
            // Asking for what was missed came too soon after other joins: the room
            // waits a moment, and the person need not know.
            (ErrorCode::RateLimited, Joining::CatchingUp) => return vec![Effect::CatchUpLater],
            // The room on screen could not be rejoined: stop showing it as if it
            // were still live.
            (
                ErrorCode::RoomFull | ErrorCode::NoSuchChannel,
                Joining::Resuming | Joining::CatchingUp,
            ) => {
                self.room = None;
            }
            _ => {}
        }
        if code == ErrorCode::NoSuchChannel
            && self.current_channel().is_none()
            && let Some(first) = self.channels.first().cloned()
        {
            // The remembered channel is gone: fall back to the first one.
            return self.open_channel(&first.name);
        }
        self.error = Some(message);
        Vec::new()
    }

    /// Tells the person why a send waits: they are sending too fast, or the server
    /// cannot store messages now (shown in the connection status until it can).
    pub fn note_delay(&mut self, code: ErrorCode, message: String) {
        match code {
            ErrorCode::Unavailable if self.status == Status::Connected => {
                self.status = Status::Degraded;
            }
            // Say so; the message itself waits and goes out shortly.
            ErrorCode::RateLimited => self.error = Some(message),
            _ => {}
        }
    }

    /// Asks for what the open room missed: the answer to the join carries it and
    /// every message after it (or, when the gap is beyond the kept window, the
    /// window, which replaces what is shown). Not while another join is on its way:
    /// a resume's answer carries the same, and another room's replaces this one.
    /// Messages that come before the answer are in it too.
    pub fn catch_up(&mut self) -> Vec<Effect> {
        if self.joining != Joining::Nothing {
            return Vec::new();
        }
        match self.resume_point() {
            Some((channel, since)) => {
                self.joining = Joining::CatchingUp;
                vec![Effect::Send(ClientFrame::Join { channel, since })]
            }
            None => Vec::new(),
        }
    }

    /// The open room, and the last message it shows: where a resume goes on from.
    fn resume_point(&self) -> Option<(String, Option<Seq>)> {
        self.room
            .as_ref()
            .map(|r| (r.channel.clone(), r.last_seq()))
    }

    /// The join that puts this tab back where it was: the open room from after its
    /// last message, else `saved_channel` (the one the browser remembers), else the
    /// first one. For the caller to send.
    pub fn join_frame(&mut self, saved_channel: Option<String>) -> Option<ClientFrame> {
        let (channel, since, joining) = match self.resume_point() {
            Some((channel, since)) => (channel, since, Joining::Resuming),
            None => (
                saved_channel.or_else(|| self.channels.first().map(|c| c.name.clone()))?,
                None,
                Joining::Opening,
            ),
        };
        self.joining = joining;
        Some(ClientFrame::Join { channel, since })
    }

    fn joined(
        &mut self,
        channel: String,
        history: Vec<ChatMessage>,
        reset: bool,
        online: Vec<String>,
        online_count: usize,
    ) -> Vec<Effect> {
        self.error = None;
        let caught_up = self.joining == Joining::CatchingUp;
        self.joining = Joining::Nothing;
        match &mut self.room {
            Some(room) if room.channel == channel && !reset => {
                for message in history {
                    room.push(message);
                }
                room.online = online;
                room.online_count = online_count;
            }
            room => {
                *room = Some(Room {
                    channel: channel.clone(),
                    messages: history,
                    online,
                    online_count,
                })
            }
        }
        let mut effects = vec![Effect::SaveChannel(channel.clone())];
        // A catch-up changes nothing this tab sent: what is still pending is on its
        // way, and sending it again would only spend its send allowance.
        if !caught_up {
            effects.extend(self.resend_pending(&channel));
        }
        effects
    }

    /// Sends again what this tab still has pending for the room it just joined,
    /// except what the history shows already arrived.
    fn resend_pending(&mut self, channel: &str) -> Vec<Effect> {
        let arrived: Vec<&str> = self
            .room
            .iter()
            .flat_map(|r| r.messages.iter().map(|m| m.client_id.as_str()))
            .collect();
        let arrived: Vec<String> = arrived.into_iter().map(str::to_owned).collect();
        self.pending.retain(|p| !arrived.contains(&p.client_id));
        self.pending
            .iter()
            .filter(|p| p.channel == channel && p.failed.is_none())
            .map(|p| Effect::Send(send_frame(p)))
            .collect()
    }
}

fn send_frame(pending: &Pending) -> ClientFrame {
    ClientFrame::Send {
        channel: pending.channel.clone(),
        client_id: pending.client_id.clone(),
        text: pending.text.clone(),
    }
}

#[cfg(test)]
mod tests;
