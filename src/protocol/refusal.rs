//! Every refusal Hearth gives, over HTTP and over the socket, in one table: the code
//! a program reads and the sentence a person reads, each written once, here.

use super::CLIENT_ID_MAX_BYTES;
use super::rules::{ChannelNameError, MessageError, NameError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Defines [`ErrorCode`] from one list of variants and their words on the wire, so
/// the enum, its words and the list of all codes cannot disagree.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $code:ident => $word:literal,)*) => {
        /// Why something was refused, for programs; the accompanying text is for
        /// people. On the wire it is its word (`"room_full"`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[$doc])* $code,)*
        }

        impl ErrorCode {
            /// Every code, in the order listed.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$code,)*];

            /// The code as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$code => $word,)*
                }
            }
        }
    };
}

error_codes! {
    InvalidName => "invalid_name",
    InvalidChannelName => "invalid_channel_name",
    ChannelExists => "channel_exists",
    NoSuchChannel => "no_such_channel",
    RoomFull => "room_full",
    InvalidMessage => "invalid_message",
    NotInChannel => "not_in_channel",
    NotIdentified => "not_identified",
    /// The name is held by another browser.
    NameTaken => "name_taken",
    /// The message could not be stored now; it stays pending and is retried.
    Unavailable => "unavailable",
    /// Too many sends too fast; this one is retried after a pause.
    RateLimited => "rate_limited",
    BadFrame => "bad_frame",
    Internal => "internal",
    /// The person holds as many connections (tabs) as one may.
    TooManyTabs => "too_many_tabs",
    /// There are as many channels as there may be.
    TooManyChannels => "too_many_channels",
    /// A request from another site's page.
    CrossSite => "cross_site",
    /// A request naming a host this server does not answer for.
    WrongHost => "wrong_host",
    /// A request body over the limit.
    TooLarge => "too_large",
    /// A request body that did not arrive in time.
    TooSlow => "too_slow",
    /// A request whose arguments could not be read (missing, misspelt, not text).
    BadRequest => "bad_request",
}

// By hand rather than derived: the words are those of `as_str`, and the browser
// carries one table of them instead of serde's own copy with its matching code.
impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == word)
            .ok_or_else(|| serde::de::Error::unknown_variant(&word, &[]))
    }
}

impl ErrorCode {
    /// Whether a send refused with this code may succeed if sent again later.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::RateLimited)
    }

    /// The HTTP status a refusal with this code is answered with: what a proxy, a
    /// dashboard or a program expects. 4xx is the client's to fix (or, for 429,
    /// to wait out), 5xx the server's. The one table of it.
    pub fn http_status(self) -> u16 {
        match self {
            // What was sent cannot be read.
            ErrorCode::BadFrame | ErrorCode::BadRequest => 400,
            // What was sent breaks a rule of what may be typed.
            ErrorCode::InvalidName | ErrorCode::InvalidChannelName | ErrorCode::InvalidMessage => {
                422
            }
            // No name held with that token: choose it again. (403 rather than 401,
            // which would promise an HTTP authentication scheme Hearth does not have.)
            ErrorCode::NotIdentified => 403,
            ErrorCode::CrossSite => 403,
            ErrorCode::NoSuchChannel => 404,
            // The server's state refuses it: someone holds the name, the channel
            // exists, the room or the server's channel list is full.
            ErrorCode::NameTaken
            | ErrorCode::ChannelExists
            | ErrorCode::NotInChannel
            | ErrorCode::RoomFull
            | ErrorCode::TooManyChannels => 409,
            ErrorCode::TooSlow => 408,
            ErrorCode::TooLarge => 413,
            ErrorCode::WrongHost => 421,
            ErrorCode::RateLimited | ErrorCode::TooManyTabs => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

/// What was refused and why: the sentence is its text (`Display`), the code its
/// [`ApiError::code`]. Server functions answer with it (the body the page
/// decodes), and the socket sends its code and sentence in `Error` and
/// `SendFailed` frames. What only the socket refuses is never read back as an
/// `ApiError` (the page reads the frame's code), so those variants skip
/// deserializing and the page carries no code for them.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ApiError {
    // What was typed.
    #[error("{0}")]
    Name(#[from] NameError),
    #[error("{0}")]
    ChannelName(#[from] ChannelNameError),
    #[error("{0}")]
    Message(#[from] MessageError),
    #[serde(skip_deserializing)]
    #[error("A send needs a client id of 1 to {CLIENT_ID_MAX_BYTES} bytes.")]
    ClientId,
    #[serde(skip_deserializing)]
    #[error("That message could not be understood: {0}.")]
    BadFrame(String),
    #[serde(skip_deserializing)]
    #[error("This connection already said hello.")]
    AlreadyIdentified,
    #[serde(skip_deserializing)]
    #[error("The first message must be a hello with your name.")]
    HelloFirst,
    // Names.
    #[error(
        "The name “{0}” is taken by someone else, or looks just like one that is. Please pick another."
    )]
    NameTaken(String),
    #[error("Please choose your display name again.")]
    NotIdentified,
    // Channels and rooms.
    #[error("A channel named “{0}” already exists.")]
    ChannelExists(String),
    #[error("There is no channel named “{0}”.")]
    NoSuchChannel(String),
    #[serde(skip_deserializing)]
    #[error("Open “{0}” before sending to it.")]
    NotInChannel(String),
    #[serde(skip_deserializing)]
    #[error("This room is full ({capacity} people are in “{channel}”). Pick another room.")]
    RoomFull { channel: String, capacity: usize },
    #[serde(skip_deserializing)]
    #[error(
        "{seats} people from your network are in “{channel}” already, as many as one network may seat. Pick another room."
    )]
    SeatsTaken { channel: String, seats: usize },
    #[serde(skip_deserializing)]
    #[error("This name is open in {tabs} tabs already. Close one and try again.")]
    TooManyTabs { tabs: usize },
    #[error("This server has reached its limit of {0} channels.")]
    TooManyChannels(usize),
    // Too fast.
    #[serde(skip_deserializing)]
    #[error("You are sending messages too fast. Please slow down.")]
    SendingTooFast,
    #[serde(skip_deserializing)]
    #[error("You are switching rooms too fast. Please wait a moment.")]
    SwitchingTooFast,
    #[serde(skip_deserializing)]
    #[error("You are sending too fast. Please wait a moment.")]
    FramesTooFast,
    #[error("You are doing that too often. Please wait a moment and try again.")]
    TooFast,
    #[error(
        "You can create {} an hour, from one person or one address. Please wait before creating another.",
        channels(*.0)
    )]
    ChannelsTooFast(u32),
    #[error("Too many requests from your address are open at once. Please try again shortly.")]
    Crowded,
    // The server.
    #[error("The server is busy or restarting. Please try again shortly.")]
    Unavailable,
    // Requests.
    #[error("Requests from other sites are not accepted.")]
    CrossSite,
    #[error("That request is too large.")]
    TooLarge,
    #[error("That request took too long to arrive.")]
    TooSlow,
    #[error(
        "This server does not answer for the host “{0}”. If you run it, set HEARTH_PUBLIC_URL to the address people open it at."
    )]
    WrongHost(String),
    #[error("That request could not be understood: {0}.")]
    BadRequest(String),
    // Between the page and the server.
    #[error("The server could not be reached: {0}")]
    Transport(String),
}

/// "1 channel", "10 channels".
fn channels(count: u32) -> String {
    if count == 1 {
        "1 channel".into()
    } else {
        format!("{count} channels")
    }
}

impl ApiError {
    /// The code programs read for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Name(_) => ErrorCode::InvalidName,
            ApiError::ChannelName(_) => ErrorCode::InvalidChannelName,
            ApiError::Message(_) => ErrorCode::InvalidMessage,
            ApiError::ClientId | ApiError::BadFrame(_) | ApiError::AlreadyIdentified => {
                ErrorCode::BadFrame
            }
            ApiError::HelloFirst | ApiError::NotIdentified => ErrorCode::NotIdentified,
            ApiError::NameTaken(_) => ErrorCode::NameTaken,
            ApiError::ChannelExists(_) => ErrorCode::ChannelExists,
            ApiError::NoSuchChannel(_) => ErrorCode::NoSuchChannel,
            ApiError::NotInChannel(_) => ErrorCode::NotInChannel,
            ApiError::RoomFull { .. } | ApiError::SeatsTaken { .. } => ErrorCode::RoomFull,
            ApiError::TooManyTabs { .. } => ErrorCode::TooManyTabs,
            ApiError::TooManyChannels(_) => ErrorCode::TooManyChannels,
            ApiError::SendingTooFast
            | ApiError::SwitchingTooFast
            | ApiError::FramesTooFast
            | ApiError::TooFast
            | ApiError::ChannelsTooFast(_)
            | ApiError::Crowded => ErrorCode::RateLimited,
            ApiError::Unavailable => ErrorCode::Unavailable,
            ApiError::CrossSite => ErrorCode::CrossSite,
            ApiError::TooLarge => ErrorCode::TooLarge,
            ApiError::TooSlow => ErrorCode::TooSlow,
            ApiError::WrongHost(_) => ErrorCode::WrongHost,
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::Transport(_) => ErrorCode::Internal,
        }
    }

    /// The HTTP status this refusal is answered with ([`ErrorCode::http_status`]).
    pub fn http_status(&self) -> u16 {
        self.code().http_status()
    }
}

impl super::ServerFrame {
    /// A refusal as the socket sends it: its code and its sentence.
    pub fn refusal(error: &ApiError) -> Self {
        super::ServerFrame::Error {
            code: error.code(),
            message: error.to_string(),
        }
    }

    /// A send refused, as the socket tells its sender.
    pub fn send_failed(client_id: String, error: &ApiError) -> Self {
        super::ServerFrame::SendFailed {
            client_id,
            code: error.code(),
            message: error.to_string(),
        }
    }
}

impl leptos::server_fn::error::FromServerFnError for ApiError {
    type Encoder = leptos::server_fn::codec::JsonEncoding;

    fn from_server_fn_error(value: leptos::server_fn::error::ServerFnErrorErr) -> Self {
        use leptos::server_fn::error::ServerFnErrorErr as E;
        match value {
            // On the server: the request's arguments did not decode. The caller's
            // to fix, not a fault.
            E::Args(why) => ApiError::BadRequest(why),
            E::MissingArg(name) => ApiError::BadRequest(format!("“{name}” is missing")),
            // In the browser: the request did not go, or its answer did not decode.
            other => ApiError::Transport(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_travel_as_their_words() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        assert!(serde_json::from_str::<ErrorCode>("\"no_such_code\"").is_err());
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
        assert!(
            ApiError::ChannelsTooFast(1)
                .to_string()
                .starts_with("You can create 1 channel an hour")
        );
        assert!(
            ApiError::ChannelsTooFast(10)
                .to_string()
                .starts_with("You can create 10 channels an hour")
        );
    }

    #[test]
    fn refusals_are_the_callers_and_faults_the_servers() {
        for &code in ErrorCode::ALL {
            let status = code.http_status();
            let server_fault = matches!(code, ErrorCode::Internal | ErrorCode::Unavailable);
            assert_eq!(status >= 500, server_fault, "{code:?} answers {status}");
            assert!((400..600).contains(&status), "{code:?} answers {status}");
        }
        assert_eq!(ApiError::NameTaken("Ada".into()).http_status(), 409);
        assert_eq!(ApiError::ChannelsTooFast(10).http_status(), 429);
        assert_eq!(ApiError::Name(NameError::Empty).http_status(), 422);
    }

    #[test]
    fn every_refusal_has_its_code_on_the_wire() {
        for (error, code) in [
            (ApiError::NameTaken("Ada".into()), "name_taken"),
            (
                ApiError::SeatsTaken {
                    channel: "General".into(),
                    seats: 20,
                },
                "room_full",
            ),
            (ApiError::SwitchingTooFast, "rate_limited"),
            (ApiError::HelloFirst, "not_identified"),
            (ApiError::CrossSite, "cross_site"),
        ] {
            assert_eq!(error.code().as_str(), code, "{error:?}");
            assert_eq!(
                serde_json::to_string(&error.code()).unwrap(),
                format!("\"{code}\"")
            );
        }
    }
}
