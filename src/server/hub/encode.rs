//! The hub's frames, serialized once and shared: messages (whose JSON the windows
//! keep), answers to joins (the kept JSON copied in), and welcomes (the channel
//! list kept as JSON, with its version).

use super::State;
use super::rooms::all_channels;
use crate::protocol::{ChatMessage, ServerFrame};
use crate::server::frame;
use crate::server::window::{Kept, Replay};
use bytes::Bytes;
use std::sync::Arc;

/// Every channel as JSON, and its version: the first 8 bytes of its SHA-256, the
/// same on every node for the same list.
#[derive(Clone)]
pub(super) struct ChannelList {
    json: Arc<str>,
    version: Arc<str>,
}

/// The answer to a hello from `name`: their name, the channel list unless the tab
/// shows its version `seen`, and the version; the frame `ServerFrame::Welcome`
/// serializes to (a unit test holds the two equal), with the list spliced in.
pub(super) fn welcome(state: &mut State, name: &str, seen: Option<&str>) -> Bytes {
    let list = match &state.channels_json {
        Some(list) => list.clone(),
        None => {
            use sha2::{Digest, Sha256};
            let json =
                serde_json::to_string(&all_channels(state)).expect("channels always serialize");
            let digest = Sha256::digest(json.as_bytes());
            let version: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            let list = ChannelList {
                json: json.into(),
                version: version.into(),
            };
            state.channels_json = Some(list.clone());
            list
        }
    };
    let name = serde_json::to_string(name).expect("strings always serialize");
    let channels = if seen == Some(&*list.version) {
        "null"
    } else {
        &*list.json
    };
    let version = &list.version;
    let json = format!(
        r#"{{"type":"welcome","name":{name},"channels":{channels},"channels_version":"{version}"}}"#
    );
    frame::text(json.as_bytes())
}

/// Serializes and frames a message once; the bytes are shared by every recipient.
pub fn encode(frame: &ServerFrame) -> Bytes {
    let json = serde_json::to_vec(frame).expect("server frames always serialize");
    frame::text(&json)
}

/// How a `Message` frame's JSON starts; the message's own JSON follows, and then
/// the frame's closing brace.
pub(super) const MESSAGE_PREFIX: &[u8] = br#"{"type":"message","message":"#;

/// Frames a message for its room, and returns with it the message as its channel's
/// window keeps it: its JSON within that frame, so it is encoded once, shared with
/// the frame, and copied into the answers to joins.
pub(super) fn encode_message(message: ChatMessage) -> (Bytes, Kept) {
    let (seq, sent_at) = (message.seq, message.sent_at);
    let json = serde_json::to_vec(&ServerFrame::Message { message })
        .expect("server frames always serialize");
    debug_assert!(json.starts_with(MESSAGE_PREFIX) && json.ends_with(b"}"));
    let framed = frame::text(&json);
    let start = framed.len() - json.len() + MESSAGE_PREFIX.len();
    let kept = Kept {
        seq,
        sent_at,
        json: framed.slice(start..framed.len() - 1),
    };
    (framed, kept)
}

/// Where serde writes a join answer's history when it is empty.
pub(super) const EMPTY_HISTORY: &[u8] = br#""history":[]"#;

/// The answer to a join: everything but the history is serialized, and the kept
/// messages' bytes are copied in where serde wrote an empty history (inside a JSON
/// string quotes are escaped, so the field is the only match). The hub waits while
/// this runs: copying a window costs a small part of encoding it again.
pub(super) fn encode_joined(
    channel: String,
    replay: Replay<'_>,
    online: Vec<String>,
    online_count: usize,
) -> Bytes {
    let rest = serde_json::to_vec(&ServerFrame::Joined {
        channel,
        history: Vec::new(),
        reset: replay.reset,
        online,
        online_count,
    })
    .expect("server frames always serialize");
    let inside = rest
        .windows(EMPTY_HISTORY.len())
        .position(|w| w == EMPTY_HISTORY)
        .expect("a join's answer has a history")
        + EMPTY_HISTORY.len()
        - 1;
    let history: usize = replay.messages.iter().map(|m| m.json.len() + 1).sum();
    let mut json = Vec::with_capacity(rest.len() + history);
    json.extend_from_slice(&rest[..inside]);
    for (i, message) in replay.messages.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(&message.json);
    }
    json.extend_from_slice(&rest[inside..]);
    frame::text(&json)
}
