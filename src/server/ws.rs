//! One WebSocket connection's life: origin check, hello, the frame loop, pings, and
//! leaving the hub however the connection ends.

use super::AppState;
use super::hub::{ConnId, Hub, HubError, encode};
use crate::protocol::{ClientFrame, ErrorCode, MAX_FRAME_BYTES, ServerFrame, validate_name};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
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
    State(app): State<AppState>,
) -> Response {
    if !origin_allowed(&headers, &app.config.allowed_origins) {
        return (
            StatusCode::FORBIDDEN,
            "This origin may not open a chat connection.",
        )
            .into_response();
    }
    upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| run(socket, app))
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

async fn run(mut socket: WebSocket, app: AppState) {
    let Some(name) = await_hello(&mut socket, &app).await else {
        return;
    };
    let hub = &app.hub;
    let registration = hub.connect(&name);
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
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { break };
                last_heard = Instant::now();
                match message {
                    Message::Text(text) => {
                        let reply = handle(hub, registration.id, &text);
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
                    if send(&mut socket, Message::Text(bytes)).await.is_err() {
                        break;
                    }
                }
                None => {
                    close(&mut socket, CLOSE_TOO_SLOW, "too far behind; reconnect to catch up").await;
                    break;
                }
            },
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
        Ok(Some(Ok(_))) => {
            close(socket, close_code::POLICY, "say hello first").await;
            return None;
        }
        Ok(_) => return None,
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

/// Answers one frame from an identified connection. Sends are answered later, once
/// stored, through the connection's queue.
fn handle(hub: &Hub, id: ConnId, text: &str) -> Option<ServerFrame> {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => frame,
        Err(e) => {
            return Some(ServerFrame::Error {
                code: ErrorCode::BadFrame,
                message: format!("That message could not be understood: {e}."),
            });
        }
    };
    match frame {
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
    }
}

async fn send_frame(socket: &mut WebSocket, frame: &ServerFrame) -> Result<(), ()> {
    send(socket, Message::Text(encode(frame))).await
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
