//! One chat connection in either dialect the load generator speaks: Hearth's own
//! protocol, or Socket.IO (Engine.IO v4 over WebSocket) for the peer servers. Both
//! join a room, publish a text to it, and receive what the room publishes.

use super::client::{self, ClientError, Reader, Writer};
use futures_util::{SinkExt, StreamExt};
use hearth::protocol::{ClientFrame, NameGrant};
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    Hearth,
    #[value(name = "socketio")]
    SocketIo,
}

/// Opens a WebSocket from `source` (a loopback address, so many connections can
/// share one server port) to `path` on `addr`.
async fn open_socket(
    addr: SocketAddr,
    source: IpAddr,
    path: &str,
) -> Result<(Writer, Reader), ClientError> {
    let socket = TcpSocket::new_v4().map_err(io)?;
    socket.bind(SocketAddr::new(source, 0)).map_err(io)?;
    let stream = socket.connect(addr).await.map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    // tungstenite zeroes its whole read buffer before every read: at its 128 KiB
    // default that memset was a third of the load generator's time, and a load
    // generator slower than the server measures itself.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{addr}{path}"),
        stream,
        Some(config),
    )
    .await?;
    Ok(ws.split())
}

fn io(e: std::io::Error) -> ClientError {
    ClientError::Ws(e.into())
}

/// Connects and joins `room`; returns once the server confirmed the join.
pub async fn join(
    dialect: Dialect,
    addr: SocketAddr,
    source: IpAddr,
    grant: &NameGrant,
    room: &str,
) -> Result<(Writer, Reader), ClientError> {
    match dialect {
        Dialect::Hearth => {
            let (mut writer, mut reader) = open_socket(addr, source, "/ws").await?;
            writer
                .send(client::encode(&ClientFrame::Hello {
                    name: grant.name.clone(),
                    token: grant.token.clone(),
                }))
                .await?;
            writer
                .send(client::encode(&ClientFrame::Join {
                    channel: room.to_owned(),
                    since: None,
                }))
                .await?;
            wait_for(&mut reader, "\"type\":\"joined\"").await?;
            Ok((writer, reader))
        }
        Dialect::SocketIo => {
            let (mut writer, mut reader) =
                open_socket(addr, source, "/socket.io/?EIO=4&transport=websocket").await?;
            wait_for(&mut reader, "0{").await?;
            writer.send(Message::text("40")).await?;
            wait_for(&mut reader, "40").await?;
            let join = serde_json::json!(["join", room]);
            writer.send(Message::text(format!("42{join}"))).await?;
            wait_for(&mut reader, "\"joined\"").await?;
            Ok((writer, reader))
        }
    }
}

/// Reads until a text frame containing `marker`.
async fn wait_for(reader: &mut Reader, marker: &str) -> Result<(), ClientError> {
    while let Some(message) = reader.next().await {
        if let Message::Text(text) = message? {
            if text.starts_with(marker) || text.contains(marker) {
                return Ok(());
            }
            if text.contains("\"type\":\"error\"") {
                return Err(ClientError::Refused(text.to_string()));
            }
        }
    }
    Err(ClientError::Closed("the join was confirmed"))
}

/// The frame that publishes `text` to `room`.
pub fn publish(dialect: Dialect, room: &str, client_id: &str, text: &str) -> Message {
    match dialect {
        Dialect::Hearth => client::encode(&ClientFrame::Send {
            channel: room.to_owned(),
            client_id: client_id.to_owned(),
            text: text.to_owned(),
        }),
        Dialect::SocketIo => {
            let event = serde_json::json!(["message", { "room": room, "text": text }]);
            Message::text(format!("42{event}"))
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
pub fn pong() -> Message {
    Message::text("3")
}

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
