//! One WebSocket connection's life: origin check, hello, the frame loop, pings, and
//! leaving the hub however the connection ends.

use super::AppState;
use super::hub::{ConnId, Hub, HubError, encode};
use super::limits::{ConnectionSlot, Guards, Refusal, TokenBucket};
use crate::protocol::{ClientFrame, ErrorCode, MAX_FRAME_BYTES, ServerFrame, validate_name};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a new connection has to say who it is.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write may wait on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code (private range) telling the client it fell behind and should resume.
const CLOSE_TOO_SLOW: u16 = 4008;

pub async fn upgrade(
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(app): State<AppState>,
) -> Response {
    if !origin_allowed(&headers, &app.config.allowed_origins) {
        return (
            StatusCode::FORBIDDEN,
            "This origin may not open a chat connection.",
        )
            .into_response();
    }
    let slot = match app.guards.connections.acquire(peer.ip()) {
        Ok(slot) => slot,
        Err(Refusal::TooManyFromAddress) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many chat connections from your address. Close some tabs and try again.",
            )
                .into_response();
        }
        Err(Refusal::ServerFull) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is full. Please try again shortly.",
            )
                .into_response();
        }
    };
    // Never tungstenite's defaults (64 MiB messages, an unbounded write buffer):
    // small reads, no write buffer held while idle, and frames capped at 16 KiB.
    // permessage-deflate is not offered, so nothing is decompressed.
    upgrade
        .read_buffer_size(4 * 1024)
        // Frames gather in a small buffer and leave together at the flush that ends
        // each batch (see `write_queued`).
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(256 * 1024)
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| run(socket, app, slot))
}

/// Browsers always send `Origin` on WebSocket upgrades, so a page on another site is
/// refused unless listed. A request without `Origin` cannot come from a page (only
/// from programs, which could forge any header anyway), so it is allowed.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed.iter().any(|a| a.trim_end_matches('/') == origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

async fn run(mut socket: WebSocket, app: AppState, _slot: ConnectionSlot) {
    let Some(name) = await_hello(&mut socket, &app).await else {
        return;
    };
    let hub = &app.hub;
    let registration = hub.connect(&name);
    let person: Arc<str> = Arc::from(name.as_str());
    // Leaves the hub however this function ends, panics included.
    let _member = Membership {
        hub,
        id: registration.id,
    };
    let mut outbound = registration.outbound;
    let welcome = ServerFrame::Welcome {
        name,
        channels: hub.channels(),
    };
    if send_frame(&mut socket, &welcome).await.is_err() {
        return;
    }

    let mut ping = tokio::time::interval(app.config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_heard = Instant::now();
    let mut sends = SendLimit::new(&app, person);
    let mut stopping = app.stopping.clone();
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let message = match incoming {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        if let Some((code, reason)) = close_for(error) {
                            close(&mut socket, code, reason).await;
                        }
                        break;
                    }
                    None => break,
                };
                last_heard = Instant::now();
                match message {
                    Message::Text(text) => {
                        let reply = match handle(hub, registration.id, &text, &mut sends) {
                            Handled::Reply(reply) => reply,
                            Handled::Flooding => {
                                close(&mut socket, close_code::POLICY, "sending too fast").await;
                                break;
                            }
                        };
                        if let Some(reply) = reply
                            && send_frame(&mut socket, &reply).await.is_err()
                        {
                            break;
                        }
                    }
                    Message::Binary(_) => {
                        close(&mut socket, close_code::UNSUPPORTED, "text frames only").await;
                        break;
                    }
                    Message::Close(_) => break,
                    // tungstenite answers pings itself; a pong is just a sign of life.
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            queued = outbound.recv() => match queued {
                Some(bytes) => {
                    if write_queued(&mut socket, &mut outbound, bytes).await.is_err() {
                        break;
                    }
                }
                None => {
                    close(&mut socket, CLOSE_TOO_SLOW, "too far behind; reconnect to catch up").await;
                    break;
                }
            },
            _ = stopping.changed() => {
                // The client reconnects by itself (to this server when it is back, or
                // to another node) and resumes where it was.
                close(&mut socket, close_code::RESTART, "server restarting; reconnect").await;
                break;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > app.config.idle_timeout {
                    close(&mut socket, close_code::AWAY, "no answer to pings").await;
                    break;
                }
                if send(&mut socket, Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Takes the connection out of the hub when dropped.
struct Membership<'a> {
    hub: &'a Hub,
    id: ConnId,
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        self.hub.disconnect(self.id);
    }
}

/// Waits for the first frame, which must be a hello with a valid name and the token
/// that holds it.
async fn await_hello(socket: &mut WebSocket, app: &AppState) -> Option<String> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(Some(Ok(Message::Binary(_)))) => {
            close(socket, close_code::UNSUPPORTED, "text frames only").await;
            return None;
        }
        Ok(Some(Ok(_))) => {
            close(socket, close_code::POLICY, "say hello first").await;
            return None;
        }
        // Too big, not UTF-8 or broken framing gets the same close before hello as
        // after it: an attacker need not say hello first.
        Ok(Some(Err(error))) => {
            if let Some((code, reason)) = close_for(error) {
                close(socket, code, reason).await;
            }
            return None;
        }
        Ok(None) => return None,
        Err(_) => {
            close(socket, close_code::POLICY, "no hello in time").await;
            return None;
        }
    };
    let refusal = match serde_json::from_str::<ClientFrame>(&text) {
        Ok(ClientFrame::Hello { name, token }) => match validate_name(&name) {
            Ok(name) => match verify_name(app, &name, token).await {
                Ok(held) => return Some(held),
                Err(e) => ServerFrame::Error {
                    code: e.code(),
                    message: e.to_string(),
                },
            },
            Err(e) => ServerFrame::Error {
                code: ErrorCode::InvalidName,
                message: e.to_string(),
            },
        },
        Ok(_) | Err(_) => ServerFrame::Error {
            code: ErrorCode::NotIdentified,
            message: "The first message must be a hello with your name.".into(),
        },
    };
    let _ = send_frame(socket, &refusal).await;
    close(socket, close_code::POLICY, "not identified").await;
    None
}

/// Checks, off the async runtime, that `token` holds `name`; returns the name as
/// held, so one person is one name whatever capitals a tab typed.
async fn verify_name(app: &AppState, name: &str, token: String) -> Result<String, HubError> {
    let names = app.names.clone();
    let owned = name.to_owned();
    tokio::task::spawn_blocking(move || names.verify(&owned, &token, super::now_ms()))
        .await
        .map_err(|_| HubError::Unavailable)??
        .ok_or_else(|| HubError::NameTaken(name.to_owned()))
}

/// What to do after one frame.
enum Handled {
    Reply(Option<ServerFrame>),
    /// The client keeps sending into the rate limit: cut it off.
    Flooding,
}

/// Sends allowed to one connection: its own bucket, and its person's, shared by all
/// their tabs so more tabs do not mean more messages.
struct SendLimit {
    connection: TokenBucket,
    person: Arc<str>,
    guards: Arc<Guards>,
    refused_in_a_row: u32,
}

impl SendLimit {
    fn new(app: &AppState, person: Arc<str>) -> Self {
        let guards = app.guards.clone();
        Self {
            connection: guards.send_bucket(Instant::now()),
            person,
            guards,
            refused_in_a_row: 0,
        }
    }

    /// Whether this send may go ahead now.
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let allowed =
            self.connection.try_take(now) && self.guards.person_sends.try_take(&self.person, now);
        if allowed {
            self.refused_in_a_row = 0;
        } else {
            self.refused_in_a_row += 1;
        }
        allowed
    }

    fn is_flooding(&self) -> bool {
        self.refused_in_a_row >= self.guards.strikes
    }
}

/// Answers one frame from an identified connection. Sends are answered later, once
/// stored, through the connection's queue.
fn handle(hub: &Hub, id: ConnId, text: &str, sends: &mut SendLimit) -> Handled {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => frame,
        Err(e) => {
            return Handled::Reply(Some(ServerFrame::Error {
                code: ErrorCode::BadFrame,
                message: format!("That message could not be understood: {e}."),
            }));
        }
    };
    if let ClientFrame::Send { client_id, .. } = &frame
        && !sends.allow()
    {
        if sends.is_flooding() {
            return Handled::Flooding;
        }
        return Handled::Reply(Some(ServerFrame::SendFailed {
            client_id: client_id.clone(),
            code: ErrorCode::RateLimited,
            message: "You are sending messages too fast. Please slow down.".into(),
        }));
    }
    Handled::Reply(match frame {
        ClientFrame::Hello { .. } => Some(ServerFrame::Error {
            code: ErrorCode::BadFrame,
            message: "This connection already said hello.".into(),
        }),
        ClientFrame::Join { channel, since } => Some(hub.join(id, &channel, since).unwrap_or_else(
            |e| ServerFrame::Error {
                code: e.code(),
                message: e.to_string(),
            },
        )),
        ClientFrame::Leave => {
            hub.leave(id);
            None
        }
        ClientFrame::Send {
            channel,
            client_id,
            text,
        } => hub
            .send(id, &channel, client_id.clone(), &text, super::now_ms())
            .err()
            .map(|e| ServerFrame::SendFailed {
                client_id,
                code: e.code(),
                message: e.to_string(),
            }),
    })
}

/// The close frame that explains why reading failed, when there is one to send:
/// too big (1009), not UTF-8 (1007), or broken framing (1002).
fn close_for(error: axum::Error) -> Option<(u16, &'static str)> {
    let error = error.into_inner().downcast::<tungstenite::Error>().ok()?;
    match *error {
        tungstenite::Error::Capacity(_) => Some((close_code::SIZE, "message too big")),
        tungstenite::Error::Utf8(_) => Some((close_code::INVALID, "text must be UTF-8")),
        tungstenite::Error::Protocol(_) => Some((close_code::PROTOCOL, "protocol error")),
        _ => None,
    }
}

async fn send_frame(socket: &mut WebSocket, frame: &ServerFrame) -> Result<(), ()> {
    send(socket, Message::Text(encode(frame))).await
}

/// Most queued frames written with one flush.
const WRITE_BATCH: usize = 64;

/// Writes `first` and whatever else is already queued, then flushes once: under
/// load one system call carries many frames instead of one each.
async fn write_queued(
    socket: &mut WebSocket,
    outbound: &mut tokio::sync::mpsc::Receiver<Utf8Bytes>,
    first: Utf8Bytes,
) -> Result<(), ()> {
    let batch = async {
        socket.feed(Message::Text(first)).await?;
        for _ in 1..WRITE_BATCH {
            match outbound.try_recv() {
                Ok(next) => socket.feed(Message::Text(next)).await?,
                Err(_) => break,
            }
        }
        socket.flush().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, batch).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Sends with a deadline, so a client that stops reading cannot hold its task forever.
async fn send(socket: &mut WebSocket, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = send(socket, Message::Close(Some(frame))).await;
}
