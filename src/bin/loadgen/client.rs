//! A Hearth client speaking the real protocol: claim a name over HTTP, then hello,
//! join and send over the WebSocket.

use super::wire::{self, Socket};
use hearth::protocol::{Channel, ClientFrame, NameGrant, ServerFrame};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("WebSocket: {0}")]
    Ws(#[from] std::io::Error),
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

pub fn encode(frame: &ClientFrame) -> String {
    serde_json::to_string(frame).expect("client frames serialize")
}

/// The next frame from the server; `None` once closed or on a frame that does not
/// decode.
pub async fn next_frame(socket: &mut Socket) -> Option<ServerFrame> {
    let text = socket.next_text().await.ok()??;
    serde_json::from_str(text).ok()
}

/// Connects from 127.0.0.1, says hello and joins `channel`.
pub async fn connect_and_join(
    addr: SocketAddr,
    grant: &NameGrant,
    channel: &str,
) -> Result<Socket, ClientError> {
    let (socket, _) = join_counting_online(addr, grant, channel).await?;
    Ok(socket)
}

/// Like `connect_and_join`, also returning how many the join said are online.
pub async fn join_counting_online(
    addr: SocketAddr,
    grant: &NameGrant,
    channel: &str,
) -> Result<(Socket, usize), ClientError> {
    let mut socket = wire::connect(addr, IpAddr::V4(Ipv4Addr::LOCALHOST), "/ws").await?;
    say_hello_and_join(&mut socket, grant, channel, None).await?;
    loop {
        match next_frame(&mut socket).await {
            Some(ServerFrame::Joined { online_count, .. }) => return Ok((socket, online_count)),
            Some(ServerFrame::Error { message, .. }) => return Err(ClientError::Refused(message)),
            Some(_) => {}
            None => return Err(ClientError::Closed("joining")),
        }
    }
}

/// The version of the server's channel list, as a welcome tells it.
pub async fn channels_version(addr: SocketAddr, grant: &NameGrant) -> Result<String, ClientError> {
    let mut socket = wire::connect(addr, IpAddr::V4(Ipv4Addr::LOCALHOST), "/ws").await?;
    let hello = encode(&ClientFrame::Hello {
        name: grant.name.clone(),
        token: grant.token.clone(),
        channels_version: None,
    });
    socket.send_texts(&[&hello]).await?;
    loop {
        match next_frame(&mut socket).await {
            Some(ServerFrame::Welcome {
                channels_version, ..
            }) => return Ok(channels_version),
            Some(ServerFrame::Error { message, .. }) => return Err(ClientError::Refused(message)),
            Some(_) => {}
            None => return Err(ClientError::Closed("saying hello")),
        }
    }
}

/// Sends the two frames that open a Hearth session in `channel`, in one write; a
/// tab coming back names the version of the channel list it shows.
pub async fn say_hello_and_join(
    socket: &mut Socket,
    grant: &NameGrant,
    channel: &str,
    channels_version: Option<&str>,
) -> Result<(), ClientError> {
    let hello = encode(&ClientFrame::Hello {
        name: grant.name.clone(),
        token: grant.token.clone(),
        channels_version: channels_version.map(str::to_owned),
    });
    let join = encode(&ClientFrame::Join {
        channel: channel.to_owned(),
        since: None,
    });
    socket.send_texts(&[&hello, &join]).await?;
    Ok(())
}
