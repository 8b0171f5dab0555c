//! The live side of the chat: who is connected, who is in which room, and fan-out.
//!
//! One lock guards membership and the store calls that change history, so the order
//! in which messages are numbered is the order in which every member receives them,
//! and a join sees a history snapshot that lines up exactly with what is queued after
//! it. Everything done under the lock is short and never waits: delivery is a
//! `try_send` of bytes that were serialized once for all recipients.

use super::store::{NewMessage, Store, StoreError};
use crate::protocol::{
    Channel, ChannelNameError, ErrorCode, MessageError, Seq, ServerFrame, channel_key,
    validate_channel_name, validate_message,
};
use axum::extract::ws::Utf8Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;
use tokio::sync::mpsc;

/// Identifies one WebSocket connection (one browser tab).
pub type ConnId = u64;

/// What the hub refuses, in words a person can act on.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HubError {
    #[error("{0}")]
    ChannelName(#[from] ChannelNameError),
    #[error("A channel named “{0}” already exists.")]
    ChannelExists(String),
    #[error("There is no channel named “{0}”.")]
    NoSuchChannel(String),
    #[error("This room is full ({capacity} people are in “{channel}”). Pick another room.")]
    RoomFull { channel: String, capacity: usize },
    #[error("{0}")]
    Message(#[from] MessageError),
    #[error("Open “{0}” before sending to it.")]
    NotInChannel(String),
}

impl HubError {
    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::ChannelName(_) => ErrorCode::InvalidChannelName,
            HubError::ChannelExists(_) => ErrorCode::ChannelExists,
            HubError::NoSuchChannel(_) => ErrorCode::NoSuchChannel,
            HubError::RoomFull { .. } => ErrorCode::RoomFull,
            HubError::Message(_) => ErrorCode::InvalidMessage,
            HubError::NotInChannel(_) => ErrorCode::NotInChannel,
        }
    }
}

impl From<StoreError> for HubError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::ChannelExists(name) => HubError::ChannelExists(name),
            StoreError::NoSuchChannel(name) => HubError::NoSuchChannel(name),
        }
    }
}

/// Limits the hub enforces.
#[derive(Clone, Debug)]
pub struct HubLimits {
    /// Most people (distinct names) in one room at once.
    pub room_capacity: usize,
    /// Frames queued for one connection before it counts as too slow and is cut off.
    pub queue_len: usize,
}

pub struct Hub {
    store: Arc<dyn Store>,
    limits: HubLimits,
    next_conn: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, Conn>,
    rooms: HashMap<String, Room>,
}

struct Conn {
    name: Arc<str>,
    tx: mpsc::Sender<Utf8Bytes>,
    /// Key of the room this connection is in.
    room: Option<String>,
}

#[derive(Default)]
struct Room {
    /// The channel's name as shown, for presence frames.
    display: String,
    conns: Vec<ConnId>,
    /// Connections per person: presence counts connections, shows people.
    people: BTreeMap<Arc<str>, usize>,
}

/// A registered connection: its id and the queue the hub fills for it.
pub struct Registration {
    pub id: ConnId,
    pub outbound: mpsc::Receiver<Utf8Bytes>,
}

impl Hub {
    pub fn new(store: Arc<dyn Store>, limits: HubLimits) -> Self {
        Self {
            store,
            limits,
            next_conn: AtomicU64::new(1),
            state: Mutex::default(),
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change below keeps the state consistent at each step, so the state
        // behind a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection for a person who said hello.
    pub fn connect(&self, name: &str) -> Registration {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, outbound) = mpsc::channel(self.limits.queue_len);
        self.lock().conns.insert(
            id,
            Conn {
                name: name.into(),
                tx,
                room: None,
            },
        );
        Registration { id, outbound }
    }

    /// Forgets a connection, taking it out of its room.
    pub fn disconnect(&self, id: ConnId) {
        let mut state = self.lock();
        evict(&mut state, vec![id]);
    }

    /// Creates a channel and tells every connection about it.
    pub fn create_channel(&self, raw_name: &str, now: i64) -> Result<Channel, HubError> {
        let name = validate_channel_name(raw_name)?;
        let mut state = self.lock();
        let channel = self.store.create_channel(&name, now)?;
        let frame = encode(&ServerFrame::ChannelCreated {
            channel: channel.clone(),
        });
        let everyone: Vec<ConnId> = state.conns.keys().copied().collect();
        deliver(&mut state, &everyone, &frame);
        Ok(channel)
    }

    /// Moves a connection into a channel and returns the frame that answers the join:
    /// the history after `since` (or the whole window) and who is online.
    pub fn join(
        &self,
        id: ConnId,
        raw_channel: &str,
        since: Option<Seq>,
    ) -> Result<ServerFrame, HubError> {
        let key = channel_key(&validate_channel_name(raw_channel)?);
        let mut state = self.lock();
        let channel = self
            .store
            .channel(&key)
            .ok_or_else(|| HubError::NoSuchChannel(raw_channel.trim().to_owned()))?;
        let Some(conn) = state.conns.get(&id) else {
            return Err(HubError::NoSuchChannel(channel.name));
        };
        let name = conn.name.clone();
        if conn.room.as_deref() != Some(key.as_str()) {
            let room = state.rooms.get(&key);
            let present = room.is_some_and(|r| r.people.contains_key(&name));
            let people = room.map_or(0, |r| r.people.len());
            if !present && people >= self.limits.room_capacity {
                return Err(HubError::RoomFull {
                    channel: channel.name,
                    capacity: self.limits.room_capacity,
                });
            }
            leave_room(&mut state, id);
            enter_room(&mut state, id, &key, &channel.name);
        }
        let replay = self.store.replay(&key, since)?;
        let online = state.rooms[&key]
            .people
            .keys()
            .map(|p| p.to_string())
            .collect();
        Ok(ServerFrame::Joined {
            channel: channel.name,
            history: replay.messages,
            reset: replay.reset,
            online,
        })
    }

    /// Takes a connection out of its room, if it is in one.
    pub fn leave(&self, id: ConnId) {
        let mut state = self.lock();
        leave_room(&mut state, id);
    }

    /// Stores a message from a connection and delivers it to everyone in the room.
    pub fn send(
        &self,
        id: ConnId,
        raw_channel: &str,
        client_id: String,
        raw_text: &str,
        now: i64,
    ) -> Result<Seq, HubError> {
        let key = channel_key(raw_channel);
        let mut state = self.lock();
        let conn = state
            .conns
            .get(&id)
            .filter(|c| c.room.as_deref() == Some(key.as_str()))
            .ok_or_else(|| HubError::NotInChannel(raw_channel.trim().to_owned()))?;
        let text = validate_message(raw_text)?;
        let message = self.store.append(
            &key,
            NewMessage {
                author: conn.name.to_string(),
                text,
                sent_at: now,
                client_id,
            },
        )?;
        let seq = message.seq;
        let frame = encode(&ServerFrame::Message { message });
        let members = state.rooms[&key].conns.clone();
        deliver(&mut state, &members, &frame);
        Ok(seq)
    }

    /// How many connections are registered.
    pub fn connection_count(&self) -> usize {
        self.lock().conns.len()
    }
}

/// Serializes a frame once; the result is shared by every recipient.
pub fn encode(frame: &ServerFrame) -> Utf8Bytes {
    serde_json::to_string(frame)
        .expect("server frames always serialize")
        .into()
}

/// Queues `frame` for each target and cuts off any connection whose queue is full
/// (dropping its sender makes its task close the socket, and the client resumes from
/// its last sequence number when it reconnects), so a slow reader never holds back
/// the others and never silently misses a message.
fn deliver(state: &mut State, targets: &[ConnId], frame: &Utf8Bytes) {
    let lagging = queue(state, targets, frame);
    if !lagging.is_empty() {
        tracing::info!(
            count = lagging.len(),
            "cutting off connections that stopped reading"
        );
        evict(state, lagging);
    }
}

/// Queues `frame` for each target, returning the targets whose queue was full.
fn queue(state: &State, targets: &[ConnId], frame: &Utf8Bytes) -> Vec<ConnId> {
    targets
        .iter()
        .filter(|id| {
            state.conns.get(id).is_some_and(|conn| {
                matches!(
                    conn.tx.try_send(frame.clone()),
                    Err(mpsc::error::TrySendError::Full(_))
                )
            })
        })
        .copied()
        .collect()
}

/// Removes connections. Telling a room that someone left can find more connections
/// that stopped reading, so this works through a list rather than recursing.
fn evict(state: &mut State, mut pending: Vec<ConnId>) {
    while let Some(id) = pending.pop() {
        if let Some((targets, frame)) = take_out_of_room(state, id) {
            pending.extend(queue(state, &targets, &frame));
        }
        state.conns.remove(&id);
    }
}

fn enter_room(state: &mut State, id: ConnId, key: &str, display: &str) {
    let Some(conn) = state.conns.get_mut(&id) else {
        return;
    };
    conn.room = Some(key.to_owned());
    let name = conn.name.clone();
    let room = state.rooms.entry(key.to_owned()).or_insert_with(|| Room {
        display: display.to_owned(),
        ..Room::default()
    });
    let count = room.people.entry(name.clone()).or_insert(0);
    *count += 1;
    let arrived = *count == 1;
    let others = room.conns.clone();
    room.conns.push(id);
    if arrived {
        let frame = encode(&ServerFrame::PresenceJoined {
            channel: display.to_owned(),
            name: name.to_string(),
        });
        deliver(state, &others, &frame);
    }
}

fn leave_room(state: &mut State, id: ConnId) {
    if let Some((targets, frame)) = take_out_of_room(state, id) {
        deliver(state, &targets, &frame);
    }
}

/// Takes a connection out of its room. When that was the person's last connection
/// there, returns who must be told and the "left" frame to tell them.
fn take_out_of_room(state: &mut State, id: ConnId) -> Option<(Vec<ConnId>, Utf8Bytes)> {
    let conn = state.conns.get_mut(&id)?;
    let key = conn.room.take()?;
    let name = conn.name.clone();
    let room = state.rooms.get_mut(&key)?;
    room.conns.retain(|&c| c != id);
    let count = room.people.get_mut(&name)?;
    *count -= 1;
    if *count > 0 {
        return None;
    }
    room.people.remove(&name);
    let frame = encode(&ServerFrame::PresenceLeft {
        channel: room.display.clone(),
        name: name.to_string(),
    });
    let targets = room.conns.clone();
    if targets.is_empty() {
        state.rooms.remove(&key);
    }
    Some((targets, frame))
}
