//! Every refusal Hearth gives, over HTTP and over the socket, in one table: the code
//! a program reads and the sentence a person reads, each written once, here.

use super::CLIENT_ID_MAX_BYTES;
use super::rules::{ChannelNameError, MessageError, NameError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

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
    /// A request from another site's page.
    CrossSite,
    /// A request naming a host this server does not answer for.
    WrongHost,
    /// A request body over the limit.
    TooLarge,
    /// A request body that did not arrive in time.
    TooSlow,
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
            ErrorCode::CrossSite => "cross_site",
            ErrorCode::WrongHost => "wrong_host",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooSlow => "too_slow",
        }
    }

    /// Whether a send refused with this code may succeed if sent again later.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::RateLimited)
    }
}

/// What was refused and why: the sentence is its text (`Display`), the code its
/// [`ApiError::code`]. Server functions answer with it (the body the page
/// decodes), and the socket sends its code and sentence in `Error` and
/// `SendFailed` frames.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ApiError {
    // What was typed.
    #[error("{0}")]
    Name(#[from] NameError),
    #[error("{0}")]
    ChannelName(#[from] ChannelNameError),
    #[error("{0}")]
    Message(#[from] MessageError),
    #[error("A send needs a client id of 1 to {CLIENT_ID_MAX_BYTES} bytes.")]
    ClientId,
    #[error("That message could not be understood: {0}.")]
    BadFrame(String),
    #[error("This connection already said hello.")]
    AlreadyIdentified,
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
    #[error("Open “{0}” before sending to it.")]
    NotInChannel(String),
    #[error("This room is full ({capacity} people are in “{channel}”). Pick another room.")]
    RoomFull { channel: String, capacity: usize },
    #[error(
        "{seats} people from your network are in “{channel}” already, as many as one network may seat. Pick another room."
    )]
    SeatsTaken { channel: String, seats: usize },
    #[error("This name is open in {tabs} tabs already. Close one and try again.")]
    TooManyTabs { tabs: usize },
    #[error("This server has reached its limit of {0} channels.")]
    TooManyChannels(usize),
    // Too fast.
    #[error("You are sending messages too fast. Please slow down.")]
    SendingTooFast,
    #[error("You are switching rooms too fast. Please wait a moment.")]
    SwitchingTooFast,
    #[error("You are sending too fast. Please wait a moment.")]
    FramesTooFast,
    #[error("You are doing that too often. Please wait a moment and try again.")]
    TooFast,
    #[error(
        "You can create {0} channels an hour, from one person or one address. Please wait before creating another."
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
    // Between the page and the server.
    #[error("The server could not be reached: {0}")]
    Transport(String),
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
            ApiError::Transport(_) => ErrorCode::Internal,
        }
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
        ApiError::Transport(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
