//! The wire types and input rules that the server and the browser share.
//!
//! Everything that crosses the socket or a server function is defined here once,
//! together with the limits that both sides enforce: the browser checks them to give
//! instant feedback, the server checks them again because the browser is untrusted.

mod refusal;
mod room;
mod rules;

pub use refusal::{ApiError, ErrorCode};
pub use room::Room;
pub use rules::{
    ChannelNameError, MessageError, NameError, channel_key, is_invisible, validate_channel_name,
    validate_message, validate_name,
};

use serde::{Deserialize, Serialize};

/// Longest display name, in characters, after trimming.
pub const NAME_MAX_CHARS: usize = 32;
/// Longest channel name, in characters, after trimming.
pub const CHANNEL_NAME_MAX_CHARS: usize = 40;
/// Longest message text, in characters.
pub const MESSAGE_MAX_CHARS: usize = 2_000;
/// Largest WebSocket frame or message the server accepts, in bytes. A maximal message
/// (2,000 four-byte characters, JSON-escaped quotes) plus its envelope fits.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// Longest client-generated send id, in bytes.
pub const CLIENT_ID_MAX_BYTES: usize = 64;
/// Longest name token a client may present, in bytes (the server issues 64 hex digits).
pub const TOKEN_MAX_BYTES: usize = 128;
/// Most names an online list carries: the first ones by name. A room of thousands
/// shows these and a count, so joining it or announcing a change does not cost
/// every member a list of everyone.
pub const ONLINE_LIST_MAX: usize = 100;

/// Per-channel sequence number, assigned by the server when a message is stored.
/// The first message of a channel is number 1.
pub type Seq = u64;

/// A channel as everyone sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// The name as its creator typed it (trimmed, inner spaces collapsed).
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A display name held by this browser, and the secret that proves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameGrant {
    pub name: String,
    pub token: String,
}

/// One stored chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub channel: String,
    pub seq: Seq,
    pub author: String,
    pub text: String,
    /// Milliseconds since the Unix epoch, assigned by the server.
    pub sent_at: i64,
    /// The sender's own id for this send, so the sending tab can match it to its
    /// pending copy whichever of the broadcast and the acknowledgement arrives first.
    pub client_id: String,
}

/// Messages a `history` call returns at most, and by default.
pub const HISTORY_PAGE_MAX: usize = 100;
pub const HISTORY_PAGE_DEFAULT: usize = 50;

/// Which messages of a channel a `history` call asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryRange {
    /// The newest.
    Latest,
    /// Those just older than this number (scrolling up).
    Before(Seq),
    /// Those just newer than this number (scrolling down from an older place).
    After(Seq),
}

/// A page of a channel's messages, oldest first: the same shape the socket
/// delivers them in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub messages: Vec<ChatMessage>,
    /// Whether more are kept beyond this page in the direction asked (older for
    /// `Latest` and `Before`, newer for `After`). `false` going back means the
    /// page begins the channel, or what the store's retention keeps of it.
    pub more: bool,
}

/// Frames a browser sends over `/ws`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Must be the first frame: who is on this connection, with the token that
    /// claiming the name returned, and the version of the channel list the tab
    /// already shows, if any (a tab coming back after a reconnect).
    Hello {
        name: String,
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channels_version: Option<String>,
    },
    /// Enter a channel (leaving the current one). With `since`, only the messages
    /// after that sequence number are replayed.
    Join {
        channel: String,
        #[serde(default)]
        since: Option<Seq>,
    },
    /// Leave the current channel.
    Leave,
    /// Post a message to the channel this connection is in.
    Send {
        channel: String,
        client_id: String,
        text: String,
    },
}

/// Frames the server sends over `/ws`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Answer to `Hello`: the accepted name and every channel, with the list's
    /// version; `channels` is `None` when the hello named that version (the tab has
    /// the list: a crowd coming back after a restart is not sent a thousand
    /// channels each).
    Welcome {
        name: String,
        channels: Option<Vec<Channel>>,
        channels_version: String,
    },
    /// Someone created a channel.
    ChannelCreated { channel: Channel },
    /// Answer to `Join`. When `reset` is true, `history` is the whole kept window and
    /// replaces what the client shows; otherwise it is exactly what came after `since`.
    Joined {
        channel: String,
        history: Vec<ChatMessage>,
        reset: bool,
        /// Who is online, in name order: everyone, or the first `ONLINE_LIST_MAX`.
        online: Vec<String>,
        /// How many people are online, shown or not.
        online_count: usize,
    },
    /// A new message in the channel this connection is in.
    Message { message: ChatMessage },
    /// Changes to the online list since the previous update: who entered it (came
    /// online, or moved up into the first `ONLINE_LIST_MAX` names) and who left it.
    /// Changes are gathered for a moment and sent together (longer in big rooms), so
    /// a room filling up at once costs each member a few frames rather than one per
    /// arrival. With `replace`, `joined` is the whole list and replaces what the
    /// client shows: sent instead of the changes to a connection whose join answer
    /// listed something other than what the room was last told (it joined while
    /// changes waited), as the changes would not apply to its list.
    Presence {
        channel: String,
        joined: Vec<String>,
        left: Vec<String>,
        online_count: usize,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replace: bool,
    },
    /// The send with this client id is stored as number `seq`.
    Ack {
        client_id: String,
        channel: String,
        seq: Seq,
    },
    /// The send with this client id was refused and will never be stored.
    SendFailed {
        client_id: String,
        code: ErrorCode,
        message: String,
    },
    /// A request was refused; `message` is meant for people.
    Error { code: ErrorCode, message: String },
}

/// A message as the tests of both sides need one: number `seq` in "General", by
/// "ada", text "m{seq}", client id "c{seq}".
#[cfg(test)]
pub fn sample_message(seq: Seq) -> ChatMessage {
    ChatMessage {
        channel: "General".into(),
        seq,
        author: "ada".into(),
        text: format!("m{seq}"),
        sent_at: 0,
        client_id: format!("c{seq}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_as_tagged_json() {
        let frame = ClientFrame::Send {
            channel: "general".into(),
            client_id: "c1".into(),
            text: "<b>hi</b>".into(),
        };
        let json = serde_json::to_string(&frame).unwrap();
        assert!(json.contains(r#""type":"send""#));
        assert_eq!(serde_json::from_str::<ClientFrame>(&json).unwrap(), frame);

        let join: ClientFrame =
            serde_json::from_str(r#"{"type":"join","channel":"general"}"#).unwrap();
        assert_eq!(
            join,
            ClientFrame::Join {
                channel: "general".into(),
                since: None
            }
        );

        let server = ServerFrame::Error {
            code: ErrorCode::RoomFull,
            message: "full".into(),
        };
        let json = serde_json::to_string(&server).unwrap();
        for code in [
            ErrorCode::InvalidChannelName,
            ErrorCode::RateLimited,
            ErrorCode::Internal,
        ] {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
        assert!(json.contains(r#""code":"room_full""#));
        assert_eq!(serde_json::from_str::<ServerFrame>(&json).unwrap(), server);
    }
}
