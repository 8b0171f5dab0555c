//! A bare WebSocket fan-out server: the floor Hearth's benchmarks measure against.
//!
//! It speaks just enough of Socket.IO (Engine.IO v4 over WebSocket) for the load
//! generator's `socketio` dialect: the open packet, the namespace connect,
//! `42["join",room]` and `42["message",{"room":..,"text":..}]`, which it forwards to
//! every member of the room as the very bytes it received (framed once, shared by
//! every recipient). No names, no storage, no validation, no presence: what is left
//! is what any server pays to read a frame and write it to each recipient through
//! tokio on this machine. One task per connection, a bounded queue per connection,
//! queued frames coalesced into one write. Listens on 127.0.0.1:$PORT only.

use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

type Member = mpsc::Sender<Bytes>;
type Rooms = Arc<Mutex<HashMap<String, Vec<Member>>>>;

const QUEUE: usize = 1024;
const MAX_PAYLOAD: usize = 16 * 1024;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3600);
    // The same listen backlog as Hearth's, so a connect storm compares the servers
    // and not tokio's default of 1,024 overflowing.
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(([127, 0, 0, 1], port).into())?;
    let listener = socket.listen(4096)?;
    println!("bare fan-out server listening on {port}");
    let rooms = Rooms::default();
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(serve(stream, rooms.clone()));
    }
}

async fn serve(mut stream: TcpStream, rooms: Rooms) {
    let mut buf = BytesMut::with_capacity(4096);
    if handshake(&mut stream, &mut buf).await.is_err() {
        return;
    }
    let (tx, mut outbound) = mpsc::channel::<Bytes>(QUEUE);
    let mut batch = BytesMut::new();
    loop {
        tokio::select! {
            read = stream.read_buf(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                loop {
                    match next_frame(&mut buf) {
                        Frame::Incomplete => break,
                        Frame::Close => return,
                        Frame::Other => {}
                        Frame::Text(payload) => {
                            if let Some(reply) = on_text(&payload, &rooms, &tx)
                                && stream.write_all(&reply).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            }
            Some(first) = outbound.recv() => {
                batch.extend_from_slice(&first);
                while let Ok(next) = outbound.try_recv() {
                    batch.extend_from_slice(&next);
                }
                if stream.write_all(&batch).await.is_err() {
                    return;
                }
                batch.clear();
            }
        }
    }
}

/// Answers the HTTP upgrade and sends the Engine.IO open packet.
async fn handshake(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<()> {
    let end = loop {
        if stream.read_buf(buf).await? == 0 || buf.len() > 8192 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let request = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.advance(end);
    let key = request
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    let open = br#"0{"sid":"bare","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":16384}"#;
    stream.write_all(&text_frame(open)).await
}

enum Frame {
    Incomplete,
    Text(Vec<u8>),
    Close,
    Other,
}

/// Takes one client frame (always masked) off the front of `buf`.
fn next_frame(buf: &mut BytesMut) -> Frame {
    if buf.len() < 2 {
        return Frame::Incomplete;
    }
    let opcode = buf[0] & 0x0f;
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() < 4 => return Frame::Incomplete,
        126 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 => return Frame::Close,
        short => (short as usize, 2),
    };
    if len > MAX_PAYLOAD {
        return Frame::Close;
    }
    if buf.len() < header + 4 + len {
        return Frame::Incomplete;
    }
    let mask = [
        buf[header],
        buf[header + 1],
        buf[header + 2],
        buf[header + 3],
    ];
    buf.advance(header + 4);
    let mut payload = buf.split_to(len).to_vec();
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    match opcode {
        0x1 => Frame::Text(payload),
        0x8 => Frame::Close,
        _ => Frame::Other,
    }
}

/// Handles one Socket.IO packet; returns a reply for the sender, if any.
fn on_text(payload: &[u8], rooms: &Rooms, me: &Member) -> Option<Bytes> {
    const JOIN: &[u8] = b"42[\"join\",\"";
    const MESSAGE: &[u8] = b"42[\"message\"";
    if payload == b"40" {
        return Some(text_frame(b"40"));
    }
    if let Some(rest) = payload.strip_prefix(JOIN) {
        let room = String::from_utf8_lossy(rest.strip_suffix(b"\"]")?).into_owned();
        let reply = text_frame(format!("42[\"joined\",\"{room}\"]").as_bytes());
        rooms
            .lock()
            .unwrap()
            .entry(room)
            .or_default()
            .push(me.clone());
        return Some(reply);
    }
    if payload.starts_with(MESSAGE) {
        let text = std::str::from_utf8(payload).ok()?;
        let start = text.find("\"room\":\"")? + 8;
        let room = &text[start..start + text[start..].find('"')?];
        let frame = text_frame(payload);
        if let Some(members) = rooms.lock().unwrap().get_mut(room) {
            // Gone members are dropped here; a full queue drops the frame.
            members.retain(|member| {
                !matches!(
                    member.try_send(frame.clone()),
                    Err(mpsc::error::TrySendError::Closed(_))
                )
            });
        }
    }
    None
}

/// An unmasked server text frame.
fn text_frame(payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(payload.len() + 4);
    frame.put_u8(0x81);
    if payload.len() < 126 {
        frame.put_u8(payload.len() as u8);
    } else {
        frame.put_u8(126);
        frame.put_u16(payload.len() as u16);
    }
    frame.put_slice(payload);
    frame.freeze()
}
