//! The WebSocket wire format (RFC 6455): reading the masked frames a client sends
//! and building the unmasked frames the server sends, and the other way round for
//! the load generator, which is a client.
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
        self.unmask_from(0, payload);
    }

    /// Unmasks part of the payload in place: `part` starts `offset` bytes into it.
    pub fn unmask_from(&self, offset: usize, part: &mut [u8]) {
        for (i, byte) in part.iter_mut().enumerate() {
            *byte ^= self.mask[(offset + i) & 3];
        }
    }
}

/// The value a server answers a handshake's `Sec-WebSocket-Key` with (section 4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut digest = Sha1::new();
    digest.update(key);
    digest.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(digest.finalize())
}

/// Reads the header of a client's frame at the front of `buf`: `Ok(None)` until
/// enough has arrived. A payload longer than `max_payload` is refused from its
/// header alone, so nobody can make the server buffer it.
pub fn parse_head(buf: &[u8], max_payload: usize) -> Result<Option<Head>, FrameError> {
    parse_head_sent_by(buf, max_payload, true)
}

/// Reads the header of a server's frame (unmasked), as a client does.
pub fn parse_server_head(buf: &[u8], max_payload: usize) -> Result<Option<Head>, FrameError> {
    parse_head_sent_by(buf, max_payload, false)
}

/// Clients must mask every frame and servers must mask none (section 5.1).
fn parse_head_sent_by(
    buf: &[u8],
    max_payload: usize,
    masked: bool,
) -> Result<Option<Head>, FrameError> {
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
    if second & 0x80 == 0 && masked {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    if second & 0x80 != 0 && !masked {
        return Err(FrameError::Protocol("server frames must not be masked"));
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
    let mask_len = if masked { 4 } else { 0 };
    let header_len = 2 + length_bytes + mask_len;
    let Some(mask_bytes) = buf.get(header_len - mask_len..header_len) else {
        return Ok(None);
    };
    let mut mask = [0; 4];
    mask[..mask_len].copy_from_slice(mask_bytes);
    Ok(Some(Head {
        fin,
        opcode,
        header_len,
        payload_len: payload_len as usize,
        mask,
    }))
}

/// Writes a whole frame's header: FIN, the opcode, the mask bit and the length.
fn put_head(out: &mut impl BufMut, opcode: u8, masked: bool, len: usize) {
    let mask_bit = if masked { 0x80 } else { 0 };
    out.put_u8(0x80 | opcode);
    match len {
        0..=125 => out.put_u8(mask_bit | len as u8),
        126..=0xFFFF => {
            out.put_u8(mask_bit | 126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(mask_bit | 127);
            out.put_u64(len as u64);
        }
    }
}

/// A whole unmasked frame as the server sends it.
pub fn server_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    put_head(&mut out, opcode, false, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// Appends a whole frame as a client sends it, its payload masked with `mask`.
pub fn put_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    put_head(out, opcode, true, payload.len());
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
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

    /// A client frame, masked as browsers mask them; `fin: false` starts a
    /// fragmented message (or breaks a control frame).
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_client_frame(&mut out, opcode, payload, [0x37, 0xFA, 0x21, 0x3D]);
        if !fin {
            out[0] &= 0x7F;
        }
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
    fn a_server_frame_reads_back_as_a_client_reads_it() {
        for size in [0, 125, 126, 65_536] {
            let payload = vec![b'q'; size];
            let wire = text(&payload);
            let head = parse_server_head(&wire, 100_000).unwrap().unwrap();
            assert_eq!((head.fin, head.opcode), (true, OP_TEXT));
            assert_eq!(head.frame_len(), wire.len(), "size {size}");
            assert_eq!(&wire[head.header_len..], &payload[..]);
        }
        let masked = client_frame(true, OP_TEXT, b"hi");
        assert!(matches!(
            parse_server_head(&masked, 100),
            Err(FrameError::Protocol(_))
        ));
        let unmasked = text(b"hi");
        assert!(matches!(
            parse_head(&unmasked, 100),
            Err(FrameError::Protocol(_))
        ));
    }

    #[test]
    fn the_accept_key_is_the_one_in_the_rfc() {
        // RFC 6455 section 1.3's worked example.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
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
