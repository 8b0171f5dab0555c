//! The read side of a WebSocket: bytes from the client become whole messages.
//!
//! Only a partial frame is kept between reads (nothing while a connection is
//! quiet). Text is checked as it arrives, frame by frame and within a frame still
//! arriving, so bytes that are not UTF-8 end the connection at once rather than once
//! the whole message has come (RFC 6455 section 8.1; Autobahn's cases 6.4.x).

use super::frame::{self, FrameError, Head, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING};
use super::frame::{OP_PONG, OP_TEXT};
use super::outbox::Outbox;
use super::socket::close_code;
use bytes::Bytes;
use std::io;
use tokio::net::TcpStream;

/// The bytes read per system call; a stack buffer, so idle connections hold none.
pub const READ_CHUNK: usize = 4 * 1024;

/// A whole message, or a sign of life, from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary,
    /// The client answered a ping, or pinged (the pong is already queued).
    Alive,
    /// The client closed the connection, with this code if it gave one.
    Close(Option<u16>),
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("text must be UTF-8")]
    NotUtf8,
    #[error("the connection ended")]
    Ended,
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl ReadError {
    /// The close frame that explains the error, when the client is still there to
    /// read one: too big (1009), not UTF-8 (1007), broken framing (1002).
    pub fn close_code(&self) -> Option<(u16, &'static str)> {
        match self {
            ReadError::Frame(FrameError::TooBig) => Some((close_code::SIZE, "message too big")),
            ReadError::Frame(FrameError::Protocol(_)) => {
                Some((close_code::PROTOCOL, "protocol error"))
            }
            ReadError::NotUtf8 => Some((close_code::INVALID, "text must be UTF-8")),
            ReadError::Ended | ReadError::Io(_) => None,
        }
    }
}

/// Whether a peer may close with `code` (RFC 6455 section 7.4): the protocol's
/// codes in use, and those of libraries and applications (3000-4999). 1005, 1006
/// and 1015 stand for "no code" and "no close frame" and are never sent.
fn may_close_with(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// What arrived in a form the caller acts on, with a pong to queue if it was a ping.
#[derive(Debug)]
pub struct Received {
    pub incoming: Incoming,
    pong: Option<Bytes>,
}

impl Received {
    /// Whether the client pinged (and expects a pong).
    pub fn is_ping(&self) -> bool {
        self.pong.is_some()
    }

    /// Queues the pong a ping asked for and returns what arrived.
    pub fn answer_pings(self, outbox: &Outbox) -> Incoming {
        if let Some(pong) = self.pong {
            outbox.push_pong(pong);
        }
        self.incoming
    }
}

/// The read side: a partial frame, if one is half-received, and the fragments of a
/// message sent in pieces.
pub struct Reader {
    partial: Vec<u8>,
    /// Payload bytes of the frame at the front of `partial` already unmasked (and
    /// checked, if it carries text) while the rest of it was still arriving.
    front_done: usize,
    fragments: Option<Fragments>,
    /// The text message arriving, checked as it comes.
    utf8: Utf8Check,
    max_message: usize,
}

struct Fragments {
    binary: bool,
    data: Vec<u8>,
}

impl Reader {
    /// A reader that has already received `early` (bytes the client sent right
    /// behind its upgrade request) and takes messages of up to `max_message` bytes.
    pub fn new(early: &[u8], max_message: usize) -> Self {
        Self {
            partial: early.to_vec(),
            front_done: 0,
            fragments: None,
            utf8: Utf8Check::default(),
            max_message,
        }
    }

    /// Waits for the next whole message. Cancel-safe: everything read so far is
    /// kept in `self`, so this can race other work in a `select!`.
    pub async fn next(&mut self, stream: &TcpStream) -> Result<Received, ReadError> {
        loop {
            if let Some(received) = self.take_buffered()? {
                return Ok(received);
            }
            stream.readable().await?;
            self.read_available(stream)?;
        }
    }

    /// Whether a whole frame has arrived and waits to be taken.
    pub fn holds_whole_frame(&self) -> bool {
        matches!(frame::parse_head(&self.partial, self.max_message),
            Ok(Some(head)) if self.partial.len() >= head.frame_len())
    }

    /// Adds bytes as if read from the socket (for tests and the fuzzer).
    pub fn push(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
    }

    /// Reads what the socket has, through a stack buffer.
    fn read_available(&mut self, stream: &TcpStream) -> Result<(), ReadError> {
        let mut chunk = [0u8; READ_CHUNK];
        match stream.try_read(&mut chunk) {
            Ok(0) => Err(ReadError::Ended),
            Ok(n) => {
                self.push(&chunk[..n]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes whole frames off the front of what has arrived until one completes a
    /// message (or is a control frame); `None` until one does.
    pub fn take_buffered(&mut self) -> Result<Option<Received>, ReadError> {
        let mut consumed = 0;
        let result = loop {
            let Some(head) = frame::parse_head(&self.partial[consumed..], self.max_message)? else {
                break Ok(None);
            };
            let payload_at = consumed + head.header_len;
            let arrived =
                (self.partial.len() - payload_at.min(self.partial.len())).min(head.payload_len);
            let done = if consumed == 0 { self.front_done } else { 0 };
            if let Err(e) = self.unmask_arrived(&head, payload_at, done, arrived) {
                break Err(e);
            }
            if arrived < head.payload_len {
                // After the drain below this frame is at the front.
                self.front_done = arrived;
                break Ok(None);
            }
            self.front_done = 0;
            consumed += head.frame_len();
            match self.take_frame(&head, payload_at) {
                Ok(Some(received)) => break Ok(Some(received)),
                Ok(None) => continue,
                Err(e) => break Err(e),
            }
        };
        self.partial.drain(..consumed);
        if self.partial.is_empty() {
            // Give the memory back between messages: idle connections hold nothing.
            self.partial = Vec::new();
        }
        result
    }

    /// Unmasks the payload bytes of a frame that arrived since `done` of them were,
    /// and checks them if they carry text.
    fn unmask_arrived(
        &mut self,
        head: &Head,
        payload_at: usize,
        done: usize,
        arrived: usize,
    ) -> Result<(), ReadError> {
        let fresh = &mut self.partial[payload_at + done..payload_at + arrived];
        head.unmask_from(done, fresh);
        let carries_text = match head.opcode {
            OP_TEXT => self.fragments.is_none(),
            OP_CONTINUATION => self.fragments.as_ref().is_some_and(|f| !f.binary),
            _ => false,
        };
        if carries_text {
            if head.opcode == OP_TEXT && done == 0 {
                self.utf8 = Utf8Check::default();
            }
            self.utf8.feed(fresh)?;
        }
        Ok(())
    }

    /// Handles one whole, unmasked frame whose payload starts at `at` in `partial`.
    fn take_frame(&mut self, head: &Head, at: usize) -> Result<Option<Received>, ReadError> {
        let payload = &self.partial[at..at + head.payload_len];
        let plain = |incoming| {
            Ok(Some(Received {
                incoming,
                pong: None,
            }))
        };
        match head.opcode {
            OP_PING => Ok(Some(Received {
                incoming: Incoming::Alive,
                pong: Some(frame::pong(payload)),
            })),
            OP_PONG => plain(Incoming::Alive),
            OP_CLOSE => {
                let code = match payload {
                    [] => None,
                    [_] => return Err(FrameError::Protocol("truncated close code").into()),
                    [high, low, reason @ ..] => {
                        let code = u16::from_be_bytes([*high, *low]);
                        if !may_close_with(code) {
                            return Err(FrameError::Protocol("invalid close code").into());
                        }
                        if std::str::from_utf8(reason).is_err() {
                            return Err(ReadError::NotUtf8);
                        }
                        Some(code)
                    }
                };
                plain(Incoming::Close(code))
            }
            OP_TEXT | OP_BINARY if self.fragments.is_some() => {
                Err(FrameError::Protocol("a new message began before the last ended").into())
            }
            OP_TEXT | OP_BINARY if !head.fin => {
                self.fragments = Some(Fragments {
                    binary: head.opcode == OP_BINARY,
                    data: payload.to_vec(),
                });
                Ok(None)
            }
            OP_TEXT => plain(text(payload.to_vec())?),
            OP_BINARY => plain(Incoming::Binary),
            OP_CONTINUATION => {
                let Some(fragments) = self.fragments.as_mut() else {
                    return Err(FrameError::Protocol("continuation of nothing").into());
                };
                if fragments.data.len() + payload.len() > self.max_message {
                    return Err(FrameError::TooBig.into());
                }
                fragments.data.extend_from_slice(payload);
                if !head.fin {
                    return Ok(None);
                }
                let whole = self.fragments.take().expect("checked above");
                if whole.binary {
                    plain(Incoming::Binary)
                } else {
                    plain(text(whole.data)?)
                }
            }
            _ => Err(FrameError::Protocol("unknown opcode").into()),
        }
    }
}

fn text(bytes: Vec<u8>) -> Result<Incoming, ReadError> {
    String::from_utf8(bytes)
        .map(Incoming::Text)
        .map_err(|_| ReadError::NotUtf8)
}

/// UTF-8 checked piece by piece: a character split between two pieces is carried
/// over (at most three bytes of it), anything that cannot begin or continue a
/// character is an error at once.
#[derive(Default)]
struct Utf8Check {
    carry: [u8; 4],
    carried: usize,
}

impl Utf8Check {
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), ReadError> {
        if self.carried > 0 {
            // The carried bytes are the start of a valid character: finish it.
            let width = match self.carry[0] {
                0xF0.. => 4,
                0xE0.. => 3,
                _ => 2,
            };
            let take = (width - self.carried).min(bytes.len());
            self.carry[self.carried..self.carried + take].copy_from_slice(&bytes[..take]);
            self.carried += take;
            bytes = &bytes[take..];
            match std::str::from_utf8(&self.carry[..self.carried]) {
                Ok(_) => self.carried = 0,
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(ReadError::NotUtf8),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            // Cut off in the middle of a character: the rest may follow.
            Err(e) if e.error_len().is_none() => {
                let rest = &bytes[e.valid_up_to()..];
                self.carry[..rest.len()].copy_from_slice(rest);
                self.carried = rest.len();
                Ok(())
            }
            Err(_) => Err(ReadError::NotUtf8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame::put_client_frame(&mut out, opcode, payload, [7, 1, 250, 3]);
        if !fin {
            out[0] &= 0x7F;
        }
        out
    }

    /// Feeds `wire` to a reader in pieces of `size`, taking what completes.
    fn read_in_pieces(wire: &[u8], size: usize) -> Vec<Result<Incoming, String>> {
        let mut reader = Reader::new(&[], 1 << 20);
        let mut out = Vec::new();
        for piece in wire.chunks(size) {
            reader.push(piece);
            loop {
                match reader.take_buffered() {
                    Ok(Some(received)) => out.push(Ok(received.incoming)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        return out;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn text_reads_back_whatever_the_pieces() {
        let text = "héllo wörld 🔥 ✓".repeat(20);
        let bytes = text.as_bytes();
        let mut wire = masked(false, OP_TEXT, &bytes[..7]);
        wire.extend(masked(true, OP_PING, b"p"));
        wire.extend(masked(false, OP_CONTINUATION, &bytes[7..101]));
        wire.extend(masked(true, OP_CONTINUATION, &bytes[101..]));
        wire.extend(masked(true, OP_TEXT, bytes));
        for size in [1, 2, 3, 5, 64, 4096] {
            assert_eq!(
                read_in_pieces(&wire, size),
                [
                    Ok(Incoming::Alive),
                    Ok(Incoming::Text(text.clone())),
                    Ok(Incoming::Text(text.clone()))
                ],
                "pieces of {size}"
            );
        }
    }

    #[test]
    fn bad_text_fails_at_its_first_bad_byte_before_the_message_ends() {
        // Autobahn 6.4.1: a valid fragment, then one that cannot be UTF-8; the
        // last fragment never comes.
        let valid = "κόσμε".as_bytes();
        let mut wire = masked(false, OP_TEXT, valid);
        wire.extend(masked(false, OP_CONTINUATION, &[0xF4, 0x90, 0x80, 0x80]));
        assert_eq!(
            read_in_pieces(&wire, wire.len()),
            [Err("text must be UTF-8".into())]
        );
        // Autobahn 6.4.3: one frame, of which only the bad part has arrived.
        let mut payload = valid.to_vec();
        payload.extend([0xF4, 0x90, 0x80, 0x80]);
        payload.extend(b"edited");
        let whole = masked(true, OP_TEXT, &payload);
        let cut = whole.len() - 6;
        assert_eq!(
            read_in_pieces(&whole[..cut], 4),
            [Err("text must be UTF-8".into())]
        );
        // A character cut between fragments is no error.
        let split = "🔥".as_bytes();
        let mut wire = masked(false, OP_TEXT, &split[..1]);
        wire.extend(masked(false, OP_CONTINUATION, &split[1..3]));
        assert!(read_in_pieces(&wire, 1).is_empty());
        // ... but one that never ends is, once the message does.
        wire.extend(masked(true, OP_CONTINUATION, b""));
        assert_eq!(read_in_pieces(&wire, 3), [Err("text must be UTF-8".into())]);
    }

    #[test]
    fn binary_messages_are_not_checked_as_text() {
        let mut wire = masked(false, OP_BINARY, &[0xFF]);
        wire.extend(masked(true, OP_CONTINUATION, &[0xFE]));
        assert_eq!(read_in_pieces(&wire, 1), [Ok(Incoming::Binary)]);
    }
}
