//! The load generator's own WebSocket client: one socket, one buffer, frames read
//! in place. A load generator that costs more per message than the server it
//! measures shows its own limits, not the server's; this one has no lock between a
//! reading and a writing half, no per-read buffer clearing and no copy of a frame
//! it only looks at.

use base64::Engine;
use hearth::server::frame::{self, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT};
use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// What a connection keeps between reads; it grows only for a larger frame.
const INBOX_START: usize = 4 * 1024;
/// The largest message accepted (a join's history is tens of KiB).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// The longest handshake answer accepted.
const MAX_HANDSHAKE: usize = 16 * 1024;

/// A client WebSocket over one TCP connection.
pub struct Socket {
    stream: TcpStream,
    /// Bytes received; `inbox[read_from..filled]` are not yet parsed.
    inbox: Vec<u8>,
    read_from: usize,
    filled: usize,
    /// A fragmented text message, gathered until its last frame.
    message: Vec<u8>,
    /// Whether the fragments arriving belong to a text message (binary ones are
    /// skipped).
    gathering_text: bool,
    /// Bytes to send; `outbox[written..]` have not left yet.
    outbox: Vec<u8>,
    written: usize,
    /// State of the generator the masks come from.
    mask_state: u32,
}

/// What the next frame in the inbox amounts to.
enum Parsed {
    /// A whole text message, in the inbox at this range.
    Text(std::ops::Range<usize>),
    /// A whole text message, gathered from fragments into `message`.
    Gathered,
    /// The server closed the connection.
    Closed,
    /// A control frame (answered if it was a ping) or a fragment: read on.
    Handled,
    /// Only part of a frame has arrived.
    Partial,
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Opens a WebSocket from `source` (a loopback address, so many connections can
/// share one server port) to `path` on `addr`.
pub async fn connect(addr: SocketAddr, source: IpAddr, path: &str) -> io::Result<Socket> {
    let socket = TcpSocket::new_v4()?;
    reserve_port_at_connect(&socket)?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(addr).await?;
    // Small frames must leave at once; see the server's TCP_NODELAY.
    stream.set_nodelay(true)?;
    let mut seed = [0u8; 16];
    getrandom::fill(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
    let mut socket = Socket {
        stream,
        inbox: vec![0; INBOX_START],
        read_from: 0,
        filled: 0,
        message: Vec::new(),
        gathering_text: false,
        outbox: Vec::new(),
        written: 0,
        mask_state: u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]) | 1,
    };
    socket.handshake(addr, path, &seed).await?;
    Ok(socket)
}

/// Binding to a source address normally picks a free port at `bind`, which means
/// searching every port bound on that address; with tens of thousands of
/// connections (and the last run's in TIME_WAIT) that search dominated the connect
/// storm. `IP_BIND_ADDRESS_NO_PORT` defers the choice to `connect`, which only
/// needs the whole four-tuple to be unique.
#[expect(unsafe_code, reason = "setsockopt has no safe binding in std or tokio")]
fn reserve_port_at_connect(socket: &TcpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let enable: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a pointer to an int of the given size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const enable).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Socket {
    /// The opening handshake (RFC 6455 section 4.1); bytes after the answer's
    /// header are the first frames and stay in the inbox.
    async fn handshake(
        &mut self,
        addr: SocketAddr,
        path: &str,
        nonce: &[u8; 16],
    ) -> io::Result<()> {
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        self.stream.write_all(request.as_bytes()).await?;
        let header_end = loop {
            if let Some(at) = self.inbox[..self.filled]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                break at + 4;
            }
            if self.filled == MAX_HANDSHAKE {
                return Err(invalid("the handshake answer is too long"));
            }
            if self.fill(MAX_HANDSHAKE).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the handshake",
                ));
            }
        };
        let header = std::str::from_utf8(&self.inbox[..header_end])
            .map_err(|_| invalid("the handshake answer is not text"))?;
        let mut lines = header.split("\r\n");
        let status = lines.next().unwrap_or_default();
        if !status.starts_with("HTTP/1.1 101") {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("the server answered the upgrade with {status:?}"),
            ));
        }
        let expected = frame::accept_key(key.as_bytes());
        let accepted = lines
            .filter_map(|line| line.split_once(':'))
            .any(|(name, value)| {
                name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
            });
        if !accepted {
            return Err(invalid("the server's Sec-WebSocket-Accept does not match"));
        }
        self.read_from = header_end;
        Ok(())
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send_texts(&[text]).await
    }

    /// Sends several text messages in one write.
    pub async fn send_texts(&mut self, texts: &[&str]) -> io::Result<()> {
        for text in texts {
            self.queue(OP_TEXT, text.as_bytes());
        }
        self.flush().await
    }

    /// Sends a close frame (normal closure) and stops sending.
    pub async fn close(&mut self) -> io::Result<()> {
        self.queue(OP_CLOSE, &1000u16.to_be_bytes());
        self.flush().await?;
        self.stream.shutdown().await
    }

    /// The next text message; `None` once the server has closed. Pings are
    /// answered on the way. Cancel-safe: everything read or half-written is kept in
    /// the socket, so it can be raced against other work in `select!`.
    pub async fn next_text(&mut self) -> io::Result<Option<&str>> {
        loop {
            self.flush().await?;
            match self.parse_next()? {
                Parsed::Text(range) => {
                    return std::str::from_utf8(&self.inbox[range])
                        .map(Some)
                        .map_err(|_| invalid("a text message is not UTF-8"));
                }
                Parsed::Gathered => {
                    return std::str::from_utf8(&self.message)
                        .map(Some)
                        .map_err(|_| invalid("a text message is not UTF-8"));
                }
                Parsed::Closed => return Ok(None),
                Parsed::Handled => {}
                Parsed::Partial => {
                    if self.fill(MAX_MESSAGE).await? == 0 {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Takes the next whole frame off the inbox.
    fn parse_next(&mut self) -> io::Result<Parsed> {
        let unread = &self.inbox[self.read_from..self.filled];
        let Some(head) =
            frame::parse_server_head(unread, MAX_MESSAGE).map_err(|e| invalid_frame(&e))?
        else {
            return Ok(Parsed::Partial);
        };
        if unread.len() < head.frame_len() {
            self.make_room(head.frame_len())?;
            return Ok(Parsed::Partial);
        }
        let payload = self.read_from + head.header_len..self.read_from + head.frame_len();
        self.read_from += head.frame_len();
        match head.opcode {
            OP_TEXT if head.fin => Ok(Parsed::Text(payload)),
            OP_TEXT => {
                self.message.clear();
                self.message.extend_from_slice(&self.inbox[payload]);
                self.gathering_text = true;
                Ok(Parsed::Handled)
            }
            frame::OP_BINARY => {
                self.gathering_text = false;
                Ok(Parsed::Handled)
            }
            OP_CONTINUATION if self.gathering_text => {
                self.message.extend_from_slice(&self.inbox[payload]);
                if self.message.len() > MAX_MESSAGE {
                    return Err(invalid("a message is too big"));
                }
                Ok(if head.fin {
                    Parsed::Gathered
                } else {
                    Parsed::Handled
                })
            }
            OP_CLOSE => Ok(Parsed::Closed),
            OP_PING => {
                let ping = self.inbox[payload].to_vec();
                self.queue(frame::OP_PONG, &ping);
                Ok(Parsed::Handled)
            }
            // Pongs and binary messages mean nothing to the load generator.
            _ => Ok(Parsed::Handled),
        }
    }

    /// Makes the inbox able to hold a frame of `frame_len` bytes from `read_from`.
    fn make_room(&mut self, frame_len: usize) -> io::Result<()> {
        if frame_len > MAX_MESSAGE + 14 {
            return Err(invalid("a frame is too big"));
        }
        if self.read_from + frame_len > self.inbox.len() {
            self.compact();
            if frame_len > self.inbox.len() {
                self.inbox.resize(frame_len.next_power_of_two(), 0);
            }
        }
        Ok(())
    }

    /// Moves unparsed bytes to the front of the inbox.
    fn compact(&mut self) {
        self.inbox.copy_within(self.read_from..self.filled, 0);
        self.filled -= self.read_from;
        self.read_from = 0;
    }

    /// Reads what has arrived (at most up to `limit` bytes held); 0 at the end.
    async fn fill(&mut self, limit: usize) -> io::Result<usize> {
        if self.read_from == self.filled {
            self.read_from = 0;
            self.filled = 0;
        } else if self.filled == self.inbox.len() {
            self.compact();
        }
        if self.filled == self.inbox.len() {
            let grown = (self.inbox.len() * 2).min(limit.max(self.inbox.len()));
            if grown == self.inbox.len() {
                return Err(invalid("the server sent more than fits"));
            }
            self.inbox.resize(grown, 0);
        }
        let read = self.stream.read(&mut self.inbox[self.filled..]).await?;
        self.filled += read;
        Ok(read)
    }

    /// Appends a masked frame to the outbox.
    fn queue(&mut self, opcode: u8, payload: &[u8]) {
        if self.written == self.outbox.len() {
            self.outbox.clear();
            self.written = 0;
        }
        // xorshift32: masks need not be secret here, only present (section 5.3).
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        frame::put_client_frame(&mut self.outbox, opcode, payload, x.to_le_bytes());
    }

    /// Writes the outbox out; cancel-safe, as progress is kept after every write.
    async fn flush(&mut self) -> io::Result<()> {
        while self.written < self.outbox.len() {
            let sent = self.stream.write(&self.outbox[self.written..]).await?;
            if sent == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.written += sent;
        }
        Ok(())
    }
}

fn invalid_frame(error: &frame::FrameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that accepts one handshake (answering with `accept`, or the right
    /// key when `None`) and then writes `frames`; returns what the client sent
    /// after the handshake.
    async fn serve_once(
        accept: Option<&'static str>,
        frames: Vec<u8>,
    ) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            let request = String::from_utf8(request).unwrap();
            let key = request
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap();
            let answer = accept.map_or_else(|| frame::accept_key(key.as_bytes()), str::to_owned);
            // The first frames go out in the same write as the answer, as servers do.
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {answer}\r\n\r\n"
            )
            .into_bytes();
            out.extend_from_slice(&frames);
            stream.write_all(&out).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut sent = Vec::new();
            let _ = stream.read_to_end(&mut sent).await;
            sent
        });
        (addr, server)
    }

    fn localhost() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    /// Unmasks every frame a client sent: (opcode, payload) pairs.
    fn client_frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(head) = frame::parse_head(wire, 1 << 20).unwrap() {
            let mut payload = wire[head.header_len..head.frame_len()].to_vec();
            head.unmask(&mut payload);
            out.push((head.opcode, payload));
            wire = &wire[head.frame_len()..];
        }
        out
    }

    #[tokio::test]
    async fn texts_arrive_whole_and_pings_are_answered() {
        let big = "b".repeat(70_000);
        let mut frames = Vec::new();
        frames.extend_from_slice(&frame::text(b"first"));
        frames.extend_from_slice(&frame::server_frame(OP_PING, b"hi"));
        frames.extend_from_slice(&frame::text(big.as_bytes()));
        // A message in two fragments.
        let mut part = frame::text(b"frag").to_vec();
        part[0] &= 0x7F;
        frames.extend_from_slice(&part);
        frames.extend_from_slice(&frame::server_frame(OP_CONTINUATION, b"mented"));
        frames.extend_from_slice(&frame::close(1000, "bye"));
        let (addr, server) = serve_once(None, frames).await;

        let mut socket = connect(addr, localhost(), "/ws").await.unwrap();
        assert_eq!(socket.next_text().await.unwrap(), Some("first"));
        assert_eq!(socket.next_text().await.unwrap(), Some(big.as_str()));
        assert_eq!(socket.next_text().await.unwrap(), Some("fragmented"));
        socket.send_text("hello").await.unwrap();
        assert_eq!(socket.next_text().await.unwrap(), None);
        socket.close().await.unwrap();

        let sent = client_frames(&server.await.unwrap());
        assert_eq!(
            sent,
            vec![
                (frame::OP_PONG, b"hi".to_vec()),
                (OP_TEXT, b"hello".to_vec()),
                (OP_CLOSE, 1000u16.to_be_bytes().to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn a_wrong_accept_key_is_refused() {
        let (addr, _server) = serve_once(Some("bm90IHRoZSBrZXk="), Vec::new()).await;
        let error = connect(addr, localhost(), "/ws").await.err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    /// The error connecting gives when the server reads the upgrade request, writes
    /// `answer` and closes.
    async fn error_when_answered_with(answer: &'static [u8]) -> io::Error {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 512];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(answer).await;
        });
        connect(addr, localhost(), "/ws").await.err().unwrap()
    }

    #[tokio::test]
    async fn a_server_closing_mid_handshake_is_an_error_not_a_wait() {
        let error = error_when_answered_with(b"HTTP/1.1 101 Switching").await;
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_refused_upgrade_says_what_the_server_answered() {
        let error =
            error_when_answered_with(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        assert!(error.to_string().contains("400"), "{error}");
    }
}
