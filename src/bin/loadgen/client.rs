//! A Hearth client speaking the real protocol: claim a name over HTTP, then hello,
//! join and send over the WebSocket.

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hearth::protocol::{Channel, ClientFrame, NameGrant, ServerFrame};
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub type Writer = SplitSink<Socket, Message>;
pub type Reader = SplitStream<Socket>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("WebSocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("server refused: {0}")]
    Refused(String),
    #[error("connection closed before {0}")]
    Closed(&'static str),
}

/// Calls a server function as the page does.
async fn call<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    addr: SocketAddr,
    endpoint: &str,
    form: &[(&str, &str)],
) -> Result<T, ClientError> {
    let response = http
        .post(format!("http://{addr}/api/{endpoint}"))
        .form(form)
        .send()
        .await?;
    if response.status().is_success() {
        Ok(response.json().await?)
    } else {
        Err(ClientError::Refused(response.text().await?))
    }
}

pub async fn claim(
    http: &reqwest::Client,
    addr: SocketAddr,
    name: &str,
) -> Result<NameGrant, ClientError> {
    call(http, addr, "claim_name", &[("name", name)]).await
}

pub async fn create_channel(
    http: &reqwest::Client,
    addr: SocketAddr,
    name: &str,
    grant: &NameGrant,
) -> Result<Channel, ClientError> {
    call(
        http,
        addr,
        "create_channel",
        &[
            ("name", name),
            ("as_name", &grant.name),
            ("token", &grant.token),
        ],
    )
    .await
}

pub fn encode(frame: &ClientFrame) -> Message {
    Message::text(serde_json::to_string(frame).expect("client frames serialize"))
}

/// The next frame from the server, skipping control frames; `None` once closed.
pub async fn next_frame(reader: &mut Reader) -> Option<ServerFrame> {
    while let Some(message) = reader.next().await {
        match message.ok()? {
            Message::Text(text) => return serde_json::from_str(&text).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
    None
}

/// Connects, says hello and joins `channel`; returns the split socket.
pub async fn connect_and_join(
    addr: SocketAddr,
    grant: &NameGrant,
    channel: &str,
) -> Result<(Writer, Reader), ClientError> {
    let (writer, reader, _) = join_counting_online(addr, grant, channel).await?;
    Ok((writer, reader))
}

/// Like `connect_and_join`, also returning how many the join said are online.
pub async fn join_counting_online(
    addr: SocketAddr,
    grant: &NameGrant,
    channel: &str,
) -> Result<(Writer, Reader, usize), ClientError> {
    // Small frames must leave at once; see the server's TCP_NODELAY.
    let (socket, _) =
        tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/ws"), None, true).await?;
    let (mut writer, mut reader) = socket.split();
    writer
        .send(encode(&ClientFrame::Hello {
            name: grant.name.clone(),
            token: grant.token.clone(),
        }))
        .await?;
    writer
        .send(encode(&ClientFrame::Join {
            channel: channel.to_owned(),
            since: None,
        }))
        .await?;
    loop {
        match next_frame(&mut reader).await {
            Some(ServerFrame::Joined { online_count, .. }) => {
                return Ok((writer, reader, online_count));
            }
            Some(ServerFrame::Error { message, .. }) => return Err(ClientError::Refused(message)),
            Some(_) => {}
            None => return Err(ClientError::Closed("joining")),
        }
    }
}
