//! The wire types and input rules that the server and the browser share.
//!
//! Everything that crosses the socket or a server function is defined here once,
//! together with the limits that both sides enforce: the browser checks them to give
//! instant feedback, the server checks them again because the browser is untrusted.

use serde::{Deserialize, Serialize};
use thiserror::Error;

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

/// Why something was refused, for programs; the accompanying text is for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidName,
    InvalidChannelName,
    ChannelExists,
    NoSuchChannel,
    RoomFull,
    InvalidMessage,
    NotInChannel,
    NotIdentified,
    /// The name is held by another browser.
    NameTaken,
    /// The message could not be stored now; it stays pending and is retried.
    Unavailable,
    /// Too many sends too fast; this one is retried after a pause.
    RateLimited,
    BadFrame,
    Internal,
    /// The person holds as many connections (tabs) as one may.
    TooManyTabs,
    /// There are as many channels as there may be.
    TooManyChannels,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidChannelName => "invalid_channel_name",
            ErrorCode::ChannelExists => "channel_exists",
            ErrorCode::NoSuchChannel => "no_such_channel",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::NotInChannel => "not_in_channel",
            ErrorCode::NotIdentified => "not_identified",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::Internal => "internal",
            ErrorCode::TooManyTabs => "too_many_tabs",
            ErrorCode::TooManyChannels => "too_many_channels",
        }
    }

    /// Whether a send refused with this code may succeed if sent again later.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::RateLimited)
    }
}

/// Why a display name was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum NameError {
    #[error("Please enter a display name.")]
    Empty,
    #[error("Names can be at most {NAME_MAX_CHARS} characters.")]
    TooLong,
    #[error("Names cannot contain control or invisible characters.")]
    Invisible,
}

/// Why a channel name was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ChannelNameError {
    #[error("Please enter a channel name.")]
    Empty,
    #[error("Channel names can be at most {CHANNEL_NAME_MAX_CHARS} characters.")]
    TooLong,
    #[error("Channel names may use letters, digits, spaces, '-', '_' and '.' only.")]
    BadCharacter,
}

/// Why a message text was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum MessageError {
    #[error("Messages cannot be empty.")]
    Empty,
    #[error("Messages can be at most {MESSAGE_MAX_CHARS} characters.")]
    TooLong,
    #[error("Messages cannot contain control characters.")]
    ControlCharacter,
}

/// Characters that draw nothing, or break the line, in a name: controls, Unicode's
/// Default_Ignorable_Code_Point (zero-width joiners and spaces, bidirectional
/// overrides, variation selectors, Hangul fillers, musical and shorthand format
/// controls, and whatever Unicode adds to it), and the line and paragraph
/// separators (Zl and Zp, one character each). Allowed in names they let one person
/// pass for another. (Blank look-alikes that Unicode does not call ignorable, such
/// as the empty braille cell, are the server's to catch: it keys names by their
/// confusable skeleton, in which they are spaces.)
pub fn is_invisible(c: char) -> bool {
    use icu_properties::props::{BinaryProperty, DefaultIgnorableCodePoint};
    // No printable ASCII character is ignorable: most names skip the table.
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    c.is_control() || DefaultIgnorableCodePoint::for_char(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Trims a display name and checks it: 1 to 32 characters, nothing invisible.
pub fn validate_name(raw: &str) -> Result<String, NameError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().any(is_invisible) {
        return Err(NameError::Invisible);
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(NameError::TooLong);
    }
    Ok(name.to_owned())
}

/// Trims a channel name, collapses runs of spaces, and checks it.
pub fn validate_channel_name(raw: &str) -> Result<String, ChannelNameError> {
    let name = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        return Err(ChannelNameError::Empty);
    }
    if !name
        .chars()
        .all(|c| (c.is_alphanumeric() && !is_invisible(c)) || matches!(c, ' ' | '-' | '_' | '.'))
    {
        return Err(ChannelNameError::BadCharacter);
    }
    if name.chars().count() > CHANNEL_NAME_MAX_CHARS {
        return Err(ChannelNameError::TooLong);
    }
    Ok(name)
}

/// The identity of a channel name: two names with the same key are the same channel.
/// Callers pass a name that [`validate_channel_name`] accepted. (The server also
/// refuses to create a channel that only looks like one that exists; that check
/// needs Unicode's tables, which stay out of the browser.)
pub fn channel_key(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Checks a message text: not blank, at most 2,000 characters, and no control
/// characters other than newline and tab. Carriage returns are dropped first so
/// Windows line endings are not an error.
pub fn validate_message(raw: &str) -> Result<String, MessageError> {
    let text: String = raw.chars().filter(|&c| c != '\r').collect();
    let text = text.trim_end().to_owned();
    if text.trim().is_empty() {
        return Err(MessageError::Empty);
    }
    if text.chars().count() > MESSAGE_MAX_CHARS {
        return Err(MessageError::TooLong);
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(MessageError::ControlCharacter);
    }
    Ok(text)
}

/// Why `name` was refused: another browser holds it, or a name drawn the same.
pub fn name_taken(name: &str) -> String {
    format!(
        "The name “{name}” is taken by someone else, or looks just like one that is. Please pick another."
    )
}

/// Errors of the server functions, as the browser receives them.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ApiError {
    #[error("{0}")]
    Name(#[from] NameError),
    #[error("{0}")]
    ChannelName(#[from] ChannelNameError),
    #[error("A channel named “{0}” already exists.")]
    ChannelExists(String),
    #[error("{}", name_taken(.0))]
    NameTaken(String),
    #[error("Please choose your display name again.")]
    NotIdentified,
    #[error("The server cannot store this right now; please try again shortly.")]
    Unavailable,
    #[error("You are doing that too often. Please wait a moment and try again.")]
    TooFast,
    #[error(
        "You can create {0} channels an hour, from one person or one address. Please wait before creating another."
    )]
    ChannelsTooFast(u32),
    #[error("This server has reached its limit of {0} channels.")]
    TooManyChannels(usize),
    #[error("Requests from other sites are not accepted.")]
    CrossSite,
    #[error("That request is too large.")]
    TooLarge,
    #[error("That request took too long to arrive.")]
    TooSlow,
    #[error("Too many requests from your address are open at once. Please try again shortly.")]
    Crowded,
    #[error(
        "This server does not answer for the host “{0}”. If you run it, set HEARTH_PUBLIC_URL to the address people open it at."
    )]
    WrongHost(String),
    #[error("The server could not be reached: {0}")]
    Transport(String),
}

impl leptos::server_fn::error::FromServerFnError for ApiError {
    type Encoder = leptos::server_fn::codec::JsonEncoding;

    fn from_server_fn_error(value: leptos::server_fn::error::ServerFnErrorErr) -> Self {
        ApiError::Transport(value.to_string())
    }
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
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  Ada  ").unwrap(), "Ada");
        assert_eq!(validate_name("   "), Err(NameError::Empty));
        assert_eq!(validate_name(&"x".repeat(32)).unwrap().len(), 32);
        assert_eq!(validate_name(&"x".repeat(33)), Err(NameError::TooLong));
        // Characters, not bytes: 32 four-byte emoji are fine.
        assert!(validate_name(&"🔥".repeat(32)).is_ok());
    }

    #[test]
    fn names_cannot_hide_characters() {
        assert_eq!(validate_name("Ada\u{200B}"), Err(NameError::Invisible));
        assert_eq!(validate_name("\u{202E}adA"), Err(NameError::Invisible));
        assert_eq!(validate_name("A\nda"), Err(NameError::Invisible));
        assert!(validate_name("<script>alert(1)</script>").is_ok());
        // Default ignorable by Unicode's own table, beyond any list written here:
        // musical symbol beam and tie controls, shorthand format controls, the
        // Hangul filler, a variation selector, and a line separator.
        for hidden in [
            '\u{1D173}',
            '\u{1D17A}',
            '\u{1BCA0}',
            '\u{1BCA3}',
            '\u{3164}',
            '\u{FE0F}',
            '\u{E0041}',
            '\u{2028}',
        ] {
            assert_eq!(
                validate_name(&format!("A{hidden}da")),
                Err(NameError::Invisible),
                "U+{:04X}",
                hidden as u32
            );
        }
        // Letters of any script, emoji and ordinary spaces stay.
        for visible in ["Zoë", "Ли Ян", "🔥 Fire", "Ada\u{A0}Lovelace"] {
            assert!(validate_name(visible).is_ok(), "{visible:?}");
        }
    }

    #[test]
    fn channel_names_cannot_hide_characters_that_pass_for_letters() {
        // The Hangul filler is a letter that draws nothing.
        assert_eq!(
            validate_channel_name("General\u{3164}"),
            Err(ChannelNameError::BadCharacter)
        );
        assert_eq!(
            validate_channel_name("Gen\u{200B}eral"),
            Err(ChannelNameError::BadCharacter)
        );
    }

    #[test]
    fn channel_names_are_normalized_and_checked() {
        assert_eq!(
            validate_channel_name("  Rust   Talk ").unwrap(),
            "Rust Talk"
        );
        assert_eq!(validate_channel_name(""), Err(ChannelNameError::Empty));
        assert_eq!(
            validate_channel_name("a<b>"),
            Err(ChannelNameError::BadCharacter)
        );
        assert_eq!(
            validate_channel_name(&"c".repeat(41)),
            Err(ChannelNameError::TooLong)
        );
        assert!(validate_channel_name("café-2.0_beta").is_ok());
    }

    #[test]
    fn channel_keys_ignore_case_and_spacing() {
        assert_eq!(channel_key("General"), channel_key("  gENERAL "));
        assert_eq!(channel_key("Rust  Talk"), channel_key("rust talk"));
        assert_ne!(channel_key("rust"), channel_key("rusty"));
    }

    #[test]
    fn messages_are_checked() {
        assert_eq!(validate_message("hi\r\nthere\n").unwrap(), "hi\nthere");
        assert_eq!(validate_message(" \n\t "), Err(MessageError::Empty));
        assert!(validate_message(&"m".repeat(MESSAGE_MAX_CHARS)).is_ok());
        assert_eq!(
            validate_message(&"m".repeat(MESSAGE_MAX_CHARS + 1)),
            Err(MessageError::TooLong)
        );
        assert_eq!(
            validate_message("bell\u{7}"),
            Err(MessageError::ControlCharacter)
        );
    }

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

    #[test]
    fn api_errors_read_as_sentences() {
        let err: ApiError = ChannelNameError::TooLong.into();
        assert_eq!(
            err.to_string(),
            "Channel names can be at most 40 characters."
        );
        assert_eq!(
            ApiError::ChannelExists("General".into()).to_string(),
            "A channel named “General” already exists."
        );
    }
}
