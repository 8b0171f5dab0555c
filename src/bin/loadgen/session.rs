//! One chat connection in either dialect the load generator speaks: Hearth's own
//! protocol, or Socket.IO (Engine.IO v4 over WebSocket) for the peer servers. Both
//! join a room, publish a text to it, and receive what the room publishes.

use super::client::{self, ClientError};
use super::wire::{self, Socket};
use hearth::protocol::{ClientFrame, NameGrant};
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    Hearth,
    #[value(name = "socketio")]
    SocketIo,
}

/// Connects and joins `room`; returns once the server confirmed the join.
pub async fn join(
    dialect: Dialect,
    addr: SocketAddr,
    source: IpAddr,
    grant: &NameGrant,
    room: &str,
    channels_version: Option<&str>,
) -> Result<Socket, ClientError> {
    match dialect {
        Dialect::Hearth => {
            let mut socket = wire::connect(addr, source, "/ws").await?;
            client::say_hello_and_join(&mut socket, grant, room, channels_version).await?;
            wait_for(&mut socket, "\"type\":\"joined\"").await?;
            Ok(socket)
        }
        Dialect::SocketIo => {
            let mut socket =
                wire::connect(addr, source, "/socket.io/?EIO=4&transport=websocket").await?;
            wait_for(&mut socket, "0{").await?;
            socket.send_text("40").await?;
            wait_for(&mut socket, "40").await?;
            let join = serde_json::json!(["join", room]);
            socket.send_text(&format!("42{join}")).await?;
            wait_for(&mut socket, "\"joined\"").await?;
            Ok(socket)
        }
    }
}

/// Reads until a text frame containing `marker`.
async fn wait_for(socket: &mut Socket, marker: &str) -> Result<(), ClientError> {
    while let Some(text) = socket.next_text().await? {
        if text.starts_with(marker) || text.contains(marker) {
            return Ok(());
        }
        if text.contains("\"type\":\"error\"") {
            return Err(ClientError::Refused(text.to_owned()));
        }
    }
    Err(ClientError::Closed("the join was confirmed"))
}

/// The frame that publishes `text` to `room`.
pub fn publish(dialect: Dialect, room: &str, client_id: &str, text: &str) -> String {
    match dialect {
        Dialect::Hearth => client::encode(&ClientFrame::Send {
            channel: room.to_owned(),
            client_id: client_id.to_owned(),
            text: text.to_owned(),
        }),
        Dialect::SocketIo => {
            let event = serde_json::json!(["message", { "room": room, "text": text }]);
            format!("42{event}")
        }
    }
}

/// What a received frame means to the load generator.
pub enum Received<'a> {
    /// A published text (the payload the publisher wrote).
    Text(&'a str),
    /// An Engine.IO ping, which must be answered or the peer drops the connection.
    Ping,
    Other,
}

/// Finds the published text in a frame without decoding all of it: the load
/// generator must stay cheaper than the server it measures.
pub fn classify(dialect: Dialect, frame: &str) -> Received<'_> {
    if dialect == Dialect::SocketIo && frame == "2" {
        return Received::Ping;
    }
    let is_message = match dialect {
        Dialect::Hearth => frame.starts_with("{\"type\":\"message\""),
        Dialect::SocketIo => frame.starts_with("42[\"message\""),
    };
    if !is_message {
        return Received::Other;
    }
    const FIELD: &str = "\"text\":\"";
    match frame.find(FIELD) {
        Some(start) => {
            let rest = &frame[start + FIELD.len()..];
            Received::Text(&rest[..rest.find('"').unwrap_or(rest.len())])
        }
        None => Received::Other,
    }
}

/// The Engine.IO answer to a ping.
pub const PONG: &str = "3";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_found_in_both_dialects() {
        let hearth = r#"{"type":"message","message":{"channel":"r","seq":3,"author":"a","text":"123 r 7 xx","sent_at":1,"client_id":"c"}}"#;
        assert!(matches!(
            classify(Dialect::Hearth, hearth),
            Received::Text("123 r 7 xx")
        ));
        let socketio = r#"42["message",{"room":"r","text":"123 r 7 xx"}]"#;
        assert!(matches!(
            classify(Dialect::SocketIo, socketio),
            Received::Text("123 r 7 xx")
        ));
        assert!(matches!(classify(Dialect::SocketIo, "2"), Received::Ping));
        assert!(matches!(
            classify(Dialect::Hearth, r#"{"type":"ack"}"#),
            Received::Other
        ));
    }
}
