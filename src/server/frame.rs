//! The WebSocket wire format (RFC 6455), server side: reading the masked frames a
//! client sends, and building the unmasked frames the server sends.
//!
//! Hearth frames each outgoing message once: the bytes built here (header and
//! payload together) are shared by every recipient and written to each socket as
//! they are, with no per-recipient copy or re-framing.

use bytes::{BufMut, Bytes, BytesMut};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest payload a control frame may carry.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Why a client's bytes are not an acceptable frame.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message too big")]
    TooBig,
    #[error("{0}")]
    Protocol(&'static str),
}

/// A frame's header, read before its payload has all arrived.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub fin: bool,
    pub opcode: u8,
    /// Bytes of header, mask key included.
    pub header_len: usize,
    pub payload_len: usize,
    mask: [u8; 4],
}

impl Head {
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }

    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }

    /// Unmasks the payload in place.
    pub fn unmask(&self, payload: &mut [u8]) {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= self.mask[i & 3];
        }
    }
}

/// Reads the header at the front of `buf`: `Ok(None)` until enough has arrived. A
/// payload longer than `max_payload` is refused from its header alone, so nobody
/// can make the server buffer it.
pub fn parse_head(buf: &[u8], max_payload: usize) -> Result<Option<Head>, FrameError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        // No extension is ever negotiated, so no reserved bit may be set.
        return Err(FrameError::Protocol("reserved bits set"));
    }
    let opcode = first & 0x0F;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(FrameError::Protocol("unknown opcode"));
    }
    let fin = first & 0x80 != 0;
    if second & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let (length_bytes, payload_len) = match second & 0x7F {
        126 => {
            let Some(raw) = buf.get(2..4) else {
                return Ok(None);
            };
            (2, u64::from(u16::from_be_bytes([raw[0], raw[1]])))
        }
        127 => {
            let Some(raw) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut eight = [0u8; 8];
            eight.copy_from_slice(raw);
            (8, u64::from_be_bytes(eight))
        }
        short => (0, u64::from(short)),
    };
    let is_control = opcode & 0x8 != 0;
    if is_control && (!fin || payload_len > MAX_CONTROL_PAYLOAD as u64) {
        return Err(FrameError::Protocol(
            "control frames must be short and whole",
        ));
    }
    if payload_len > max_payload as u64 {
        return Err(FrameError::TooBig);
    }
    let header_len = 2 + length_bytes + 4;
    let Some(mask) = buf.get(header_len - 4..header_len) else {
        return Ok(None);
    };
    Ok(Some(Head {
        fin,
        opcode,
        header_len,
        payload_len: payload_len as usize,
        mask: [mask[0], mask[1], mask[2], mask[3]],
    }))
}

/// A whole unmasked frame as the server sends it.
pub fn server_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.put_u8(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => out.put_u8(len as u8),
        len @ 126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        len => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
    out.put_slice(payload);
    out.freeze()
}

pub fn text(payload: &[u8]) -> Bytes {
    server_frame(OP_TEXT, payload)
}

/// A ping with no payload; the same bytes serve every connection.
pub fn ping() -> Bytes {
    Bytes::from_static(&[0x80 | OP_PING, 0])
}

pub fn pong(payload: &[u8]) -> Bytes {
    server_frame(OP_PONG, payload)
}

/// A close frame with its code and a short reason.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    payload.truncate(MAX_CONTROL_PAYLOAD);
    server_frame(OP_CLOSE, &payload)
}

/// The payload of a frame built by `server_frame` (for tests and tools that read
/// what the server queued).
pub fn server_payload(frame: &[u8]) -> &[u8] {
    let start = match frame.get(1).map(|b| b & 0x7F) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return &[],
    };
    frame.get(start..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame, masked as browsers mask them.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            len @ 0..=125 => out.push(0x80 | len as u8),
            len @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    #[test]
    fn a_masked_text_frame_reads_back_as_sent() {
        for size in [0, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            let mut wire = client_frame(true, OP_TEXT, &payload);
            let head = parse_head(&wire, 100_000).unwrap().unwrap();
            assert_eq!((head.fin, head.opcode), (true, OP_TEXT));
            assert_eq!(head.frame_len(), wire.len(), "size {size}");
            let body = &mut wire[head.header_len..];
            head.unmask(body);
            assert_eq!(body, &payload[..]);
        }
    }

    #[test]
    fn a_header_waits_until_it_has_all_arrived() {
        let wire = client_frame(true, OP_TEXT, &[b'x'; 300]);
        for cut in 0..8 {
            assert_eq!(parse_head(&wire[..cut], 1000), Ok(None), "cut at {cut}");
        }
        assert!(parse_head(&wire[..8], 1000).unwrap().is_some());
    }

    #[test]
    fn oversized_frames_are_refused_from_the_header_alone() {
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(parse_head(&header, 16 * 1024), Err(FrameError::TooBig));
        let wire = client_frame(true, OP_TEXT, &[b'x'; 16 * 1024 + 1]);
        assert_eq!(parse_head(&wire, 16 * 1024), Err(FrameError::TooBig));
    }

    #[test]
    fn broken_frames_are_protocol_errors() {
        let unmasked = [0x81, 0x02, b'h', b'i'];
        let reserved = client_frame(true, OP_TEXT | 0x40, b"hi");
        let unknown = client_frame(true, 0x3, b"hi");
        let split_ping = client_frame(false, OP_PING, b"");
        let long_ping = client_frame(true, OP_PING, &[0; 126]);
        for wire in [&unmasked[..], &reserved, &unknown, &split_ping, &long_ping] {
            assert!(
                matches!(parse_head(wire, 1000), Err(FrameError::Protocol(_))),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn server_frames_carry_their_length_and_payload() {
        for size in [0, 125, 126, 65_535, 65_536] {
            let payload = vec![b'z'; size];
            let frame = text(&payload);
            assert_eq!(frame[0], 0x81);
            assert_eq!(server_payload(&frame), &payload[..], "size {size}");
        }
        let close = close(1008, "sending too fast");
        assert_eq!(close[0], 0x88);
        assert_eq!(&server_payload(&close)[..2], &1008u16.to_be_bytes());
        assert_eq!(&server_payload(&close)[2..], b"sending too fast");
    }
}
