//! One WebSocket connection's life: origin check, hello, the frame loop, and leaving
//! the hub however the connection ends. (The hub writes what it sends, pings
//! included, straight to the socket; see `outbox`.)

use super::AppState;
use super::hub::{ConnId, Hello, Hub, encode};
use super::limits::{ConnectionSlot, Guards, Refusal, TokenBucket};
use super::listen::WriteDeadline;
use super::metrics::Metrics;
use super::names::Holder;
use super::outbox::{Outbox, Signal};
use super::socket::{self, Incoming, Socket, close_code};
use crate::protocol::{ApiError, ClientFrame, MAX_FRAME_BYTES, ServerFrame, validate_name};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::future::OptionFuture;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long frames may wait on a client that reads nothing at all.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn upgrade(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(app): State<AppState>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    if !super::gate::socket_from_this_site(headers, &app.config) {
        app.metrics.reject("origin");
        return (
            StatusCode::FORBIDDEN,
            "This origin may not open a chat connection.",
        )
            .into_response();
    }
    let switching = match socket::accept(headers) {
        Ok(response) => response,
        Err(refusal) => {
            app.metrics.reject("bad_handshake");
            return refusal.into_response();
        }
    };
    let address = app.guards.client_address(peer.ip(), headers);
    let slot = match app.guards.connections.acquire(address) {
        Ok(slot) => slot,
        Err(Refusal::TooManyFromAddress) => {
            app.metrics.reject("too_many_connections");
            return (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many chat connections from your address. Close some tabs and try again.",
            )
                .into_response();
        }
        Err(Refusal::ServerFull) => {
            app.metrics.reject("server_full");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is full. Please try again shortly.",
            )
                .into_response();
        }
    };
    let upgraded = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgraded.await else {
            return;
        };
        // The accept loop serves plain TCP streams, so the connection comes back as
        // one, with whatever the client sent right behind its request.
        match upgraded.downcast::<TokioIo<WriteDeadline>>() {
            Ok(parts) => {
                let socket = Socket::new(
                    parts.io.into_inner().into_inner(),
                    &parts.read_buf,
                    MAX_FRAME_BYTES,
                    app.config.outbound_queue,
                );
                // The early bytes are copied out: their buffer is hyper's whole 8 KiB
                // read buffer, which would otherwise stay with the connection for life.
                drop(parts.read_buf);
                run(socket, app, address, slot).await;
            }
            Err(_) => tracing::error!("an upgraded connection was not a TCP stream"),
        }
    });
    switching
}

/// How a connection ends: with a close frame, or silently when the client is gone.
enum End {
    Close(u16, &'static str),
    Gone,
}

async fn run(mut socket: Socket, app: AppState, address: IpAddr, _slot: ConnectionSlot) {
    // The hello and the closing handshake are boxed: their state then lives only
    // while they run, and each idle connection's task stays small.
    let mark = app.names.mark();
    let (hello, token) = match Box::pin(await_hello(&mut socket, &app)).await {
        Ok(identified) => identified,
        Err(End::Close(code, reason)) => {
            app.metrics.reject_close(code);
            return Box::pin(socket.close(code, reason)).await;
        }
        Err(End::Gone) => return,
    };
    let hub = &app.hub;
    // The hub queues the welcome and writes it, ahead of anything else it sends.
    let holder = Holder::of_token(&token);
    let id = match hub.connect(&hello, holder, address, socket.outbox.clone()) {
        Ok(id) => id,
        Err(ApiError::Unavailable) => {
            return Box::pin(socket.close(close_code::RESTART, "server restarting; reconnect"))
                .await;
        }
        Err(refused) => {
            app.metrics.reject_code(refused.code());
            socket
                .outbox
                .push_own(encode(&ServerFrame::refusal(&refused)));
            return Box::pin(socket.close(close_code::POLICY, "too many tabs")).await;
        }
    };
    // Leaves the hub however this function ends, panics included.
    let member = Membership { hub, id };
    // A name given up between the check of this token and `connect` let go of the
    // tabs the hub had then, which did not include this one.
    let name = hello.name;
    if !app.names.still_trusts(mark, &name, &token) {
        drop(member);
        let (code, reason) = (close_code::NAME_GIVEN_UP, close_code::NAME_GIVEN_UP_REASON);
        app.metrics.reject_close(code);
        return Box::pin(socket.close(code, reason)).await;
    }
    drop(token);
    let person: Arc<str> = Arc::from(name.as_str());
    // Clients say hello and join in one packet: the welcome then waits for the
    // answer to the join, which `serve` takes first, and both leave in one write.
    // Otherwise it goes now.
    if !socket.reader.holds_whole_frame() && socket.outbox.write_pending().is_err() {
        return;
    }
    let mut connection = Connection {
        hub,
        metrics: &app.metrics,
        id,
        limits: FrameLimits::new(&app, person),
    };
    let end = connection.serve(&mut socket).await;
    // Out of the hub before closing, so nothing more is queued for a closing socket.
    drop(member);
    if let End::Close(code, reason) = end {
        app.metrics.reject_close(code);
        Box::pin(socket.close(code, reason)).await;
    }
}

/// An identified connection's state while it chats.
struct Connection<'a> {
    hub: &'a Hub,
    metrics: &'a Metrics,
    id: ConnId,
    limits: FrameLimits,
}

impl Connection<'_> {
    /// Answers the client's frames until one side ends it. The hub writes what it
    /// sends itself; this task steps in when the socket is full or the hub asks it
    /// to close, so an idle connection costs one parked task.
    async fn serve(&mut self, socket: &mut Socket) -> End {
        let Socket {
            stream,
            reader,
            outbox,
        } = socket;
        loop {
            let waiting = outbox.is_waiting();
            let stalled = outbox.is_stalled();
            let end = tokio::select! {
                // In this order: a frame already read is answered before anything
                // waiting is written, so its answer goes in the same write.
                biased;
                () = outbox.attention() => match outbox.take_signal() {
                    Some(Signal::Close(code, reason)) => Some(End::Close(code, reason)),
                    Some(Signal::Broken) => Some(End::Gone),
                    // The socket filled up: the next turn waits for room.
                    None => None,
                },
                // Nothing more is read while the client leaves what it was sent
                // unread: one that asks without reading cannot pile answers up.
                received = reader.next(stream), if !stalled => match received {
                    Ok(received) => {
                        outbox.heard();
                        if received.is_ping() && !self.limits.allow_ping() {
                            // Not answered: pings take from the send budget too.
                            self.limits.is_flooding().then_some(End::Close(close_code::POLICY, "sending too fast"))
                        } else {
                            let incoming = received.answer_pings(outbox);
                            self.on_incoming(incoming, outbox)
                        }
                    }
                    Err(error) => Some(error.close_code().map_or(End::Gone, |(c, r)| End::Close(c, r))),
                },
                // Boxed, and only while the client is behind: most of the time nothing
                // waits to be written, and an idle connection's task stays small.
                Some(flushed) = OptionFuture::from(waiting.then(|| Box::pin(outbox.flush(WRITE_TIMEOUT)))) => match flushed {
                    Ok(()) => None,
                    Err(_) => Some(End::Gone),
                },
            };
            if let Some(end) = end {
                return end;
            }
            // Answers go now, in one write for all the frames read together; what
            // the socket does not take waits for `flush`.
            if !reader.holds_whole_frame() && outbox.write_pending().is_err() {
                return End::Gone;
            }
        }
    }

    fn on_incoming(&mut self, incoming: Incoming, outbox: &Outbox) -> Option<End> {
        match incoming {
            Incoming::Text(text) => match handle(self.hub, self.id, &text, &mut self.limits) {
                Handled::Reply(reply) => {
                    if let Some(reply) = reply {
                        if let ServerFrame::Error { code, .. }
                        | ServerFrame::SendFailed { code, .. } = &reply
                        {
                            self.metrics.reject_code(*code);
                        }
                        outbox.push_own(encode(&reply));
                    }
                    None
                }
                Handled::Flooding => {
                    self.metrics.reject("flooding");
                    Some(End::Close(close_code::POLICY, "sending too fast"))
                }
            },
            Incoming::Binary => Some(End::Close(close_code::UNSUPPORTED, "text frames only")),
            Incoming::Close(_) => Some(End::Close(close_code::NORMAL, "")),
            Incoming::Alive => None,
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
/// that holds it; returns who said it (with the name as held), and the token.
async fn await_hello(socket: &mut Socket, app: &AppState) -> Result<(Hello, String), End> {
    // One deadline for the whole wait (the header timeout: a hello is the socket's
    // headers), so pings cannot hold an anonymous connection open.
    let deadline = tokio::time::Instant::now() + app.config.header_timeout();
    let text = loop {
        let first = tokio::time::timeout_at(deadline, socket.recv()).await;
        match first {
            Ok(Ok(Incoming::Text(text))) => break text,
            Ok(Ok(Incoming::Alive)) => {
                // The pong goes once the pings read together are answered (it
                // replaces any before it); what the socket does not take goes with
                // the welcome.
                if !socket.reader.holds_whole_frame() && socket.outbox.write_pending().is_err() {
                    return Err(End::Gone);
                }
                continue;
            }
            Ok(Ok(Incoming::Binary)) => {
                return Err(End::Close(close_code::UNSUPPORTED, "text frames only"));
            }
            Ok(Ok(Incoming::Close(_))) => return Err(End::Close(close_code::NORMAL, "")),
            // Too big, not UTF-8 or broken framing gets the same close before hello
            // as after it: an attacker need not say hello first.
            Ok(Err(error)) => {
                return Err(error
                    .close_code()
                    .map_or(End::Gone, |(code, reason)| End::Close(code, reason)));
            }
            Err(_) => {
                app.metrics.reject("no_hello");
                return Err(End::Close(close_code::POLICY, "no hello in time"));
            }
        }
    };
    let refusal = match serde_json::from_str::<ClientFrame>(&text) {
        Ok(ClientFrame::Hello {
            name,
            token,
            channels_version,
        }) => match validate_name(&name) {
            Ok(name) => match verify_name(app, &name, &token).await {
                Ok(held) => {
                    let hello = Hello {
                        name: held,
                        // Versions are 16 hex digits; anything else is no version.
                        channels_version: channels_version.filter(|v| v.len() <= 32),
                    };
                    return Ok((hello, token));
                }
                Err(e) => ServerFrame::refusal(&e),
            },
            Err(e) => ServerFrame::refusal(&e.into()),
        },
        Ok(_) | Err(_) => ServerFrame::refusal(&ApiError::HelloFirst),
    };
    if let ServerFrame::Error { code, .. } = &refusal {
        app.metrics.reject_code(*code);
    }
    socket.outbox.push_own(encode(&refusal));
    Err(End::Close(close_code::POLICY, "not identified"))
}

/// Checks that `token` holds `name` (from memory when it was checked a moment ago,
/// otherwise off the async runtime, in the store); returns the name as
/// held, so one person is one name whatever capitals a tab typed.
async fn verify_name(app: &AppState, name: &str, token: &str) -> Result<String, ApiError> {
    if let Some(held) = app.names.verify_recent(name, token, super::now_ms()) {
        return Ok(held);
    }
    let names = app.names.clone();
    let (owned, token) = (name.to_owned(), token.to_owned());
    tokio::task::spawn_blocking(move || names.verify(&owned, &token, super::now_ms()))
        .await
        .map_err(|_| ApiError::Unavailable)??
        .ok_or_else(|| ApiError::NameTaken(name.to_owned()))
}

/// What to do after one frame.
enum Handled {
    Reply(Option<ServerFrame>),
    /// The client keeps sending into the rate limit: cut it off.
    Flooding,
}

/// What one connection may ask for how fast; every frame takes from a bucket.
/// Room changes (joins and leaves): a bucket of their own, as each takes the hub's
/// lock, and a join is answered with up to a window of history copied while the
/// hub waits. Everything else (sends, and frames it cannot use): its own send
/// bucket, and its person's, shared by all their tabs so more tabs do not mean more.
struct FrameLimits {
    sends: TokenBucket,
    room_changes: TokenBucket,
    person: Arc<str>,
    guards: Arc<Guards>,
    refused_in_a_row: u32,
}

impl FrameLimits {
    fn new(app: &AppState, person: Arc<str>) -> Self {
        let guards = app.guards.clone();
        let now = Instant::now();
        Self {
            sends: guards.send_bucket(now),
            room_changes: guards.room_change_bucket(now),
            person,
            guards,
            refused_in_a_row: 0,
        }
    }

    /// Whether this frame may be answered now.
    fn allow(&mut self, frame: &Result<ClientFrame, serde_json::Error>) -> bool {
        let now = Instant::now();
        let allowed = match frame {
            Ok(ClientFrame::Join { .. } | ClientFrame::Leave) => self.room_changes.try_take(now),
            _ => self.sends.try_take(now) && self.guards.person_sends.try_take(&self.person, now),
        };
        self.note(allowed)
    }

    /// Whether a ping may be answered now: browsers never ping (they answer the
    /// server's), and each pong is a write.
    fn allow_ping(&mut self) -> bool {
        let allowed = self.sends.try_take(Instant::now());
        self.note(allowed)
    }

    fn note(&mut self, allowed: bool) -> bool {
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
fn handle(hub: &Hub, id: ConnId, text: &str, limits: &mut FrameLimits) -> Handled {
    let frame = serde_json::from_str::<ClientFrame>(text);
    if limits.allow(&frame) {
        return Handled::Reply(match frame {
            Ok(frame) => answer(hub, id, frame),
            Err(e) => Some(ServerFrame::refusal(&ApiError::BadFrame(e.to_string()))),
        });
    }
    if limits.is_flooding() {
        return Handled::Flooding;
    }
    let refusal = match &frame {
        Ok(ClientFrame::Send { client_id, .. }) => {
            ServerFrame::send_failed(client_id.clone(), &ApiError::SendingTooFast)
        }
        Ok(ClientFrame::Join { .. } | ClientFrame::Leave) => {
            ServerFrame::refusal(&ApiError::SwitchingTooFast)
        }
        _ => ServerFrame::refusal(&ApiError::FramesTooFast),
    };
    Handled::Reply(Some(refusal))
}

/// Answers a frame within its limits.
fn answer(hub: &Hub, id: ConnId, frame: ClientFrame) -> Option<ServerFrame> {
    match frame {
        ClientFrame::Hello { .. } => Some(ServerFrame::refusal(&ApiError::AlreadyIdentified)),
        // The answer goes through the hub's queue, in order with the rest.
        ClientFrame::Join { channel, since } => hub
            .join_queued(id, &channel, since)
            .err()
            .map(|e| ServerFrame::refusal(&e)),
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
            .map(|e| ServerFrame::send_failed(client_id, &e)),
    }
}
