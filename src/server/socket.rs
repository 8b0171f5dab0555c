//! A WebSocket over a TCP stream, kept lean for tens of thousands of idle
//! connections: nothing is buffered while a connection is quiet (reads go through a
//! buffer on the stack and only a partial frame is kept, see `reader`), and outgoing
//! frames go through the connection's `Outbox`, which the hub writes to directly.

use super::frame;
use super::outbox::Outbox;
use super::reader::READ_CHUNK;
pub use super::reader::{Incoming, ReadError, Reader, Received};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Close codes (RFC 6455 section 7.4.1, and one of Hearth's own).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const SIZE: u16 = 1009;
    pub const RESTART: u16 = 1012;
    /// The name this connection chats under was given up (renamed in another tab,
    /// through this node or another): the page reconnects as whoever it now is.
    pub const NAME_GIVEN_UP: u16 = 4001;
    pub const NAME_GIVEN_UP_REASON: &str = "this name was given up";
    /// The client fell behind and should reconnect and resume.
    pub const TOO_SLOW: u16 = 4008;
}

/// How long a closing connection waits for the client to close its side.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Bytes the kernel may hold for a client before it has sent them. Without a cap
/// it takes megabytes from a socket whose client reads nothing (the send buffer
/// grows to `tcp_wmem`'s 4 MiB), so the socket never looks full, the connection
/// goes on reading requests, and the hub encodes answers nobody reads. Bytes in
/// flight do not count, so a client that reads keeps its full throughput.
const UNSENT_LIMIT: u32 = 128 * 1024;

/// Why an upgrade request is refused.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("This address only speaks WebSocket (send Upgrade: websocket).")]
    NotAnUpgrade,
    #[error("Only WebSocket version 13 is supported.")]
    Version,
    #[error("The WebSocket key is missing or malformed.")]
    Key,
}

impl IntoResponse for HandshakeError {
    fn into_response(self) -> Response {
        let status = match self {
            HandshakeError::Version => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = (status, self.to_string()).into_response();
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        response
    }
}

/// Checks an upgrade request (RFC 6455 section 4.2.1) and builds the 101 answer.
pub fn accept(headers: &HeaderMap) -> Result<Response, HandshakeError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NotAnUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(HandshakeError::Version);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|key| {
            base64::engine::general_purpose::STANDARD
                .decode(key)
                .is_ok_and(|raw| raw.len() == 16)
        })
        .ok_or(HandshakeError::Key)?;
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, frame::accept_key(key))
        .body(axum::body::Body::empty())
        .map_err(|_| HandshakeError::Key)
}

/// Sets [`UNSENT_LIMIT`] where the system has it (Linux); elsewhere the kernel's own
/// send buffer limit stands.
fn cap_unsent(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(UNSENT_LIMIT) {
        tracing::warn!(%error, "TCP_NOTSENT_LOWAT refused: unread answers may pile up in the kernel");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (stream, UNSENT_LIMIT);
}

pub struct Socket {
    /// Shared with the outbox, which the hub writes through.
    pub stream: Arc<TcpStream>,
    pub reader: Reader,
    pub outbox: Arc<Outbox>,
}

impl Socket {
    /// Wraps an upgraded stream; `early` holds bytes the client sent right behind its
    /// upgrade request; the hub may queue `queue_limit` frames before the client
    /// counts as too slow.
    pub fn new(stream: TcpStream, early: &[u8], max_message: usize, queue_limit: usize) -> Self {
        cap_unsent(&stream);
        let stream = Arc::new(stream);
        Self {
            outbox: Outbox::new(stream.clone(), queue_limit),
            stream,
            reader: Reader::new(early, max_message),
        }
    }

    /// The next message, answering pings on the way.
    pub async fn recv(&mut self) -> Result<Incoming, ReadError> {
        let incoming = self.reader.next(&self.stream).await?;
        self.outbox.heard();
        Ok(incoming.answer_pings(&self.outbox))
    }

    /// Sends a close frame, lets the client close its side (closing first with
    /// unread data would reset the connection and could lose the close frame), and
    /// ends the connection, all within a bounded time.
    pub async fn close(self, code: u16, reason: &str) {
        self.outbox.push_close(frame::close(code, reason));
        // A deadline for the whole of it: the flush's own timeout counts time without
        // progress, which a client reading a trickle could stretch for hours.
        let _ = tokio::time::timeout(CLOSE_LINGER, self.outbox.flush(CLOSE_LINGER)).await;
        // The hub may still hold the stream through the outbox, so the write side is
        // shut through the descriptor rather than by owning the stream.
        let _ = socket2::SockRef::from(&*self.stream).shutdown(std::net::Shutdown::Write);
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while self.stream.readable().await.is_ok() && !discard_available(&self.stream) {}
        })
        .await;
    }
}

/// Reads and drops what has arrived; `true` once the client has closed its side (or
/// the connection failed). The buffer is on this function's stack, not in the
/// connection's future, which lives as long as the connection.
fn discard_available(stream: &TcpStream) -> bool {
    let mut sink = [0u8; READ_CHUNK];
    loop {
        match stream.try_read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::server::frame::{OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets: (server side, client side).
    pub(in crate::server) async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        assert!(payload.len() < 126);
        out.push(0x80 | payload.len() as u8);
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    #[tokio::test]
    async fn messages_arrive_whole_however_the_bytes_are_split() {
        let (server, mut client) = pair().await;
        let mut socket = Socket::new(server, &masked(true, OP_TEXT, b"early"), 1024, 16);
        let mut wire = masked(false, OP_TEXT, b"hel");
        wire.extend(masked(true, OP_PING, b"p"));
        wire.extend(masked(true, OP_CONTINUATION, "lo \u{1F525}".as_bytes()));
        for byte in &wire {
            client.write_all(&[*byte]).await.unwrap();
        }
        assert_eq!(socket.recv().await.unwrap(), Incoming::Text("early".into()));
        assert_eq!(socket.recv().await.unwrap(), Incoming::Alive);
        assert_eq!(
            socket.recv().await.unwrap(),
            Incoming::Text("hello \u{1F525}".into())
        );
        // The ping was answered with its payload.
        socket.outbox.flush(Duration::from_secs(1)).await.unwrap();
        let mut pong = [0u8; 3];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0x80 | OP_PONG, 1, b'p']);
    }

    #[tokio::test]
    async fn the_kernel_holds_little_unsent_for_a_client() {
        let (server, _client) = pair().await;
        let socket = Socket::new(server, &[], 1024, 16);
        assert_eq!(
            socket2::SockRef::from(&*socket.stream)
                .tcp_notsent_lowat()
                .unwrap(),
            UNSENT_LIMIT
        );
    }

    #[tokio::test]
    async fn closing_takes_bounded_time_even_for_a_client_reading_a_trickle() {
        let (server, mut client) = pair().await;
        // Small buffers, so the client's every read makes room for the server.
        socket2::SockRef::from(&client)
            .set_recv_buffer_size(4096)
            .unwrap();
        socket2::SockRef::from(&server)
            .set_send_buffer_size(4096)
            .unwrap();
        let socket = Socket::new(server, &[], 1024, 4096);
        // 16 MB queued, far beyond what the socket buffers hold.
        let frame = frame::server_frame(OP_TEXT, &[b'x'; 8192]);
        for _ in 0..2048 {
            socket.outbox.push_own(frame.clone());
        }
        let trickle = tokio::spawn(async move {
            let mut chunk = [0u8; 4096];
            loop {
                if matches!(client.read(&mut chunk).await, Ok(0) | Err(_)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let started = std::time::Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(8), socket.close(1000, "")).await;
        assert!(closed.is_ok(), "still closing 8 s later");
        // Up to two lingers: one to write, one for the client to close its side.
        assert!(started.elapsed() <= CLOSE_LINGER * 2 + Duration::from_secs(1));
        trickle.abort();
    }

    #[tokio::test]
    async fn close_frames_carry_their_code() {
        let with_reason = [&1000u16.to_be_bytes()[..], "bye \u{2713}".as_bytes()].concat();
        let cases = [
            (Vec::new(), None),
            (with_reason, Some(1000)),
            (4000u16.to_be_bytes().to_vec(), Some(4000)),
        ];
        for (payload, code) in cases {
            let (server, mut client) = pair().await;
            let mut socket = Socket::new(server, &[], 1024, 16);
            client
                .write_all(&masked(true, OP_CLOSE, &payload))
                .await
                .unwrap();
            assert_eq!(socket.recv().await.unwrap(), Incoming::Close(code));
        }
    }

    #[tokio::test]
    async fn bad_input_is_named_for_its_close_code() {
        let cases: [(Vec<u8>, u16); 7] = [
            (masked(true, OP_TEXT, &[0xFF, 0xFE]), close_code::INVALID),
            (vec![0x81, 0x02, b'h', b'i'], close_code::PROTOCOL),
            (masked(true, OP_CONTINUATION, b"x"), close_code::PROTOCOL),
            // Codes nobody may send: "no code", reserved, below the range.
            (
                masked(true, OP_CLOSE, &1005u16.to_be_bytes()),
                close_code::PROTOCOL,
            ),
            (
                masked(true, OP_CLOSE, &2000u16.to_be_bytes()),
                close_code::PROTOCOL,
            ),
            (
                masked(true, OP_CLOSE, &999u16.to_be_bytes()),
                close_code::PROTOCOL,
            ),
            (
                masked(true, OP_CLOSE, &[0x03, 0xE8, 0xFF]),
                close_code::INVALID,
            ),
        ];
        for (wire, code) in cases {
            let (server, mut client) = pair().await;
            let mut socket = Socket::new(server, &[], 1024, 16);
            client.write_all(&wire).await.unwrap();
            let error = socket.recv().await.unwrap_err();
            assert_eq!(error.close_code().map(|(c, _)| c), Some(code), "{wire:?}");
        }
        let (server, mut client) = pair().await;
        let mut socket = Socket::new(server, &[], 8, 16);
        let mut pieces = masked(false, OP_TEXT, b"12345");
        pieces.extend(masked(true, OP_CONTINUATION, b"6789"));
        client.write_all(&pieces).await.unwrap();
        let error = socket.recv().await.unwrap_err();
        assert_eq!(error.close_code().map(|(c, _)| c), Some(close_code::SIZE));
    }

    #[test]
    fn the_handshake_answers_with_the_accept_key() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        let response = accept(&headers).unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        // The example in RFC 6455 section 1.3.
        assert_eq!(
            response.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert!(matches!(accept(&headers), Err(HandshakeError::Version)));
        headers.remove(header::UPGRADE);
        assert!(matches!(
            accept(&headers),
            Err(HandshakeError::NotAnUpgrade)
        ));
    }
}
