//! The live side of the chat: who is connected, who is in which room, the kept
//! windows, and fan-out.
//!
//! Sends go through one committer thread that stores them in batches (group commit)
//! and only then publishes them: each stored message is fanned out to its room and
//! acknowledged to its sender, so nothing anyone sees or is acknowledged can be lost
//! by a crash. One lock guards membership and the windows, so a join sees a window
//! that lines up exactly with what is queued after it. Nothing done under the lock
//! waits on a client or a system call: delivery queues bytes serialized once for all
//! recipients in each one's `Outbox` (whose own lock is held only around a queue
//! change or one write), and once the hub's lock is let go the queued frames are
//! written straight to the sockets (see `Locked`).

mod presence;
mod publish;

use super::frame;
use super::metrics::Metrics;
use super::name_key::name_key;
use super::names::Holder;
use super::outbox::{Full, Outbox};
use super::socket::close_code;
use super::store::{NewChannel, NewMessage, Store, StoreError};
use super::window::{ChannelWindow, Kept, Replay};
use crate::protocol::{
    ApiError, CLIENT_ID_MAX_BYTES, Channel, ChatMessage, Seq, ServerFrame, channel_key,
    validate_channel_name, validate_message,
};
use bytes::Bytes;
use presence::{
    enter_room, is_online, leave_room, note_list_told, online_count, online_in, run_ticker,
    seats_taken, take_out_of_room,
};
use publish::{Job, PUBLISH_QUEUE, run_committer, run_publisher};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Connections pinged under one hold of the lock: about a millisecond of socket
/// writes here.
const PINGS_PER_TURN: usize = 64;

/// Identifies one WebSocket connection (one browser tab).
pub type ConnId = u64;

/// A store's refusal as people read it; a failure of the store itself is logged
/// and read as "busy".
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::ChannelExists(name) => ApiError::ChannelExists(name),
            StoreError::NoSuchChannel(name) => ApiError::NoSuchChannel(name),
            StoreError::NameTaken(name) => ApiError::NameTaken(name),
            StoreError::TooManyChannels(max) => ApiError::TooManyChannels(max),
            StoreError::Backend(e) => {
                tracing::error!(error = %e, "store failed");
                ApiError::Unavailable
            }
        }
    }
}

/// Limits the hub enforces.
#[derive(Clone, Debug)]
pub struct HubLimits {
    /// Most people (distinct names) in one room at once.
    pub room_capacity: usize,
    /// Messages kept per channel.
    pub history: usize,
    /// Sends waiting to be stored before new ones are refused as "busy".
    pub commit_queue: usize,
    /// How often every connection is pinged (one shared timer for all of them).
    pub ping_interval: Duration,
    /// How long a client may stay silent (pongs count) before it is let go.
    pub idle_timeout: Duration,
    /// Connections (tabs) one person may hold at once.
    pub max_tabs_per_person: usize,
    /// People from one address who may be in one room at once.
    pub room_seats_per_address: usize,
    /// Most channels there may be.
    pub max_channels: usize,
}

pub struct Hub {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    limits: HubLimits,
    next_conn: AtomicU64,
    state: Mutex<State>,
    commits: mpsc::Sender<Job>,
    committer: Arc<publish::CommitterHealth>,
    closing: AtomicBool,
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, Conn>,
    /// Connections per person (by the name as held).
    tabs: HashMap<Arc<str>, usize>,
    rooms: HashMap<String, presence::Room>,
    /// Rooms with presence changes not yet announced.
    presence_changed: HashSet<String>,
    /// Stored messages waiting for earlier ones, by channel key and number.
    pending: HashMap<String, BTreeMap<Seq, publish::Pending>>,
    /// People in each room through other nodes of the cluster.
    remote: HashMap<String, BTreeSet<Arc<str>>>,
    /// Channel keys in creation order.
    order: Vec<String>,
    windows: HashMap<String, ChannelWindow>,
    /// Every channel as a JSON array, with its version, built on the first hello
    /// after a change: a connect storm would otherwise serialize the whole list
    /// once per connection. Tabs that already show this version are not sent it.
    channels_json: Option<ChannelList>,
    /// Outboxes given their first frame under the lock, written once it is let go.
    to_flush: Vec<Arc<Outbox>>,
}

/// The hub's state, locked; letting it go writes what was queued meanwhile, so the
/// system calls happen outside the lock and each socket gets its frames in one.
struct Locked<'a> {
    guard: Option<MutexGuard<'a, State>>,
}

impl Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let Some(mut state) = self.guard.take() else {
            return;
        };
        let to_flush = std::mem::take(&mut state.to_flush);
        drop(state);
        for outbox in to_flush {
            outbox.flush_now();
        }
    }
}

struct Conn {
    name: Arc<str>,
    holder: Holder,
    /// Where it connects from, as per-address limits count it.
    address: IpAddr,
    outbox: Arc<Outbox>,
    /// Key of the room this connection is in.
    room: Option<String>,
    /// Its place in that room's `conns`, so leaving takes no scan of the room.
    slot: usize,
}

/// A connection registered without a socket, for tests: its id and its queue.
#[cfg(test)]
pub struct Registration {
    pub id: ConnId,
    pub outbound: Arc<Outbox>,
}

impl Hub {
    /// Loads the channels and their windows from the store and starts the committer
    /// (a thread, as storing blocks), the publisher and the ticker (tasks on the
    /// runtime, which must be running).
    pub fn start(
        store: Arc<dyn Store>,
        limits: HubLimits,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, StoreError> {
        let mut state = State::default();
        for log in store.load()? {
            let key = channel_key(&log.channel.name);
            state.order.push(key.clone());
            state.windows.insert(
                key,
                ChannelWindow::new(log.channel, log.last_seq, log.recent, limits.history),
            );
        }
        let (commits, jobs) = mpsc::channel(limits.commit_queue.max(1));
        let ping_interval = limits.ping_interval;
        let hub = Arc::new(Self {
            store,
            metrics,
            limits,
            next_conn: AtomicU64::new(1),
            state: Mutex::new(state),
            commits,
            committer: Arc::default(),
            closing: AtomicBool::new(false),
        });
        let (stored, to_publish) = mpsc::channel(PUBLISH_QUEUE);
        let weak = Arc::downgrade(&hub);
        let health = hub.committer.clone();
        std::thread::Builder::new()
            .name("hearth-committer".into())
            .spawn(move || run_committer(weak, health, jobs, stored))
            .map_err(|e| StoreError::failed(e).at("cannot start the committer"))?;
        tokio::spawn(run_publisher(Arc::downgrade(&hub), to_publish));
        tokio::spawn(run_ticker(Arc::downgrade(&hub), ping_interval));
        Ok(hub)
    }

    fn lock(&self) -> Locked<'_> {
        // Every change below keeps the state consistent at each step, so the state
        // behind a poisoned lock is still usable.
        Locked {
            guard: Some(self.state.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }

    /// Every channel, oldest first.
    pub fn channels(&self) -> Vec<Channel> {
        all_channels(&self.lock())
    }

    /// Registers a connection for a person who said hello from `address` and
    /// queues its welcome (their name and every channel, unless the tab shows the
    /// list's version `seen` already) ahead of anything else, for the caller to
    /// write. Refused once the server is stopping (`Unavailable`), and for a person
    /// who holds as many tabs as one may.
    pub fn connect(
        &self,
        hello: &Hello,
        holder: Holder,
        address: IpAddr,
        outbox: Arc<Outbox>,
    ) -> Result<ConnId, ApiError> {
        let name = hello.name.as_str();
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        // Checked under the lock, so `close_all` cannot miss a connection.
        if self.closing.load(Ordering::Acquire) {
            return Err(ApiError::Unavailable);
        }
        let tabs = self.limits.max_tabs_per_person;
        let name: Arc<str> = match state.tabs.get_key_value(name) {
            Some((_, &open)) if open >= tabs => return Err(ApiError::TooManyTabs { tabs }),
            Some((held, _)) => held.clone(),
            None => name.into(),
        };
        *state.tabs.entry(name.clone()).or_insert(0) += 1;
        // Not written here: when the client joined in the same packet as its hello,
        // the welcome leaves with the answer, in one write (see `ws::run`).
        outbox.push_own(welcome(
            &mut state,
            &name,
            hello.channels_version.as_deref(),
        ));
        state.conns.insert(
            id,
            Conn {
                name,
                holder,
                address,
                outbox,
                room: None,
                slot: 0,
            },
        );
        Ok(id)
    }

    /// `connect` with no socket behind it: tests read the queue.
    #[cfg(test)]
    pub fn connect_detached(&self, name: &str) -> Option<Registration> {
        self.connect_detached_holding(name, name)
    }

    /// `connect_detached` for the holder of `token`.
    #[cfg(test)]
    pub fn connect_detached_holding(&self, name: &str, token: &str) -> Option<Registration> {
        let outbound = Outbox::detached(16);
        let localhost = IpAddr::from([127, 0, 0, 1]);
        let id = self
            .connect(
                &Hello::new(name),
                Holder::of_token(token),
                localhost,
                outbound.clone(),
            )
            .ok()?;
        // Tests read the welcome through `welcome`, and the rest here.
        let _welcome = outbound.try_recv();
        Some(Registration { id, outbound })
    }

    #[cfg(test)]
    pub fn welcome(&self, name: &str, seen: Option<&str>) -> Bytes {
        welcome(&mut self.lock(), name, seen)
    }

    /// Pings every connection (written straight to the sockets, no task woken), and
    /// lets go of those silent for longer than the idle timeout. A connection too
    /// far behind to take even a ping is cut off. A few dozen at a time, letting the
    /// runtime run in between: 18,000 in one go held every message up for a quarter
    /// of a second.
    pub async fn ping_everyone(&self) {
        let ids: Vec<ConnId> = self.lock().conns.keys().copied().collect();
        for some in ids.chunks(PINGS_PER_TURN) {
            self.ping(some);
            tokio::task::yield_now().await;
        }
    }

    fn ping(&self, ids: &[ConnId]) {
        let mut state = self.lock();
        let idle_timeout = self.limits.idle_timeout;
        let mut silent = Vec::new();
        let mut lagging = Vec::new();
        let State {
            conns, to_flush, ..
        } = &mut *state;
        // Connections gone since the list was taken are skipped.
        for (id, conn) in ids.iter().filter_map(|id| Some((id, conns.get(id)?))) {
            if conn.outbox.quiet_for() > idle_timeout {
                conn.outbox
                    .request_close(close_code::AWAY, "no answer to pings");
                silent.push(*id);
                continue;
            }
            if enqueue(conn, &frame::ping(), to_flush).is_err() {
                lagging.push(*id);
            }
        }
        evict(&mut state, silent);
        cut_off(&mut state, lagging);
    }

    /// Stops taking connections and sends, and tells every connection to close with
    /// `code` (the client reconnects, here or to another node, and resumes).
    pub fn close_all(&self, code: u16, reason: &'static str) {
        let mut state = self.lock();
        self.closing.store(true, Ordering::Release);
        for conn in state.conns.values() {
            conn.outbox.request_close(code, reason);
        }
        state.conns.clear();
        state.tabs.clear();
        state.rooms.clear();
    }

    /// Lets go of every connection of `holder` under the name keyed `key`, which they
    /// gave up (here, or through another node): those tabs would otherwise go on
    /// chatting as a name that is someone else's once claimed. Their pages reconnect
    /// as whoever they now are. Connections of whoever holds the name next stay.
    pub fn let_go_of(&self, key: &str, holder: Holder) {
        let mut state = self.lock();
        // Only the holder's own few tabs get their key worked out (a Unicode
        // skeleton); everyone else is passed over by a number.
        let gone: Vec<ConnId> = state
            .conns
            .iter()
            .filter(|(_, conn)| conn.holder == holder && name_key(&conn.name) == key)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            state.conns[id]
                .outbox
                .request_close(close_code::NAME_GIVEN_UP, close_code::NAME_GIVEN_UP_REASON);
        }
        evict(&mut state, gone);
    }

    /// Forgets a connection, taking it out of its room.
    pub fn disconnect(&self, id: ConnId) {
        let mut state = self.lock();
        evict(&mut state, vec![id]);
    }

    /// Durably creates a channel and tells every connection about it. Blocks on the
    /// store: call it from a blocking context.
    pub fn create_channel(&self, raw_name: &str, now: i64) -> Result<Channel, ApiError> {
        let name = validate_channel_name(raw_name)?;
        let new = NewChannel::new(&name, now);
        let channel = self
            .store
            .create_channel_within(&new, self.limits.max_channels)?;
        // In a cluster the stream of creations may have brought it here already.
        add_channel(
            &mut self.lock(),
            new.key,
            channel.clone(),
            self.limits.history,
        );
        Ok(channel)
    }

    /// Moves a connection into a channel and returns the frame that answers the join:
    /// the history after `since` (or the whole window) and who is online. Connections
    /// use `join_queued`; tests read the answer here.
    #[cfg(test)]
    pub fn join(
        &self,
        id: ConnId,
        raw_channel: &str,
        since: Option<Seq>,
    ) -> Result<ServerFrame, ApiError> {
        let answer = self.join_locked(&mut self.lock(), id, raw_channel, since)?;
        Ok(serde_json::from_slice(frame::server_payload(&answer)).expect("a joined frame"))
    }

    /// Like `join`, and queues the answer for the connection behind what was queued
    /// for it before (its old room's messages and presence updates), so nothing meant
    /// for the list or history it had arrives after the ones it now gets.
    pub fn join_queued(
        &self,
        id: ConnId,
        raw_channel: &str,
        since: Option<Seq>,
    ) -> Result<(), ApiError> {
        let mut state = self.lock();
        let answer = self.join_locked(&mut state, id, raw_channel, since)?;
        deliver(&mut state, &[id], &answer);
        Ok(())
    }

    fn join_locked(
        &self,
        state: &mut State,
        id: ConnId,
        raw_channel: &str,
        since: Option<Seq>,
    ) -> Result<Bytes, ApiError> {
        let key = channel_key(&validate_channel_name(raw_channel)?);
        let Some(window) = state.windows.get(&key) else {
            return Err(ApiError::NoSuchChannel(raw_channel.trim().to_owned()));
        };
        let display = window.channel.name.clone();
        let Some(conn) = state.conns.get(&id) else {
            // Gone because the server is stopping (`close_all`), or cut off for
            // falling behind, in which case its socket is closing anyway.
            return Err(if self.closing.load(Ordering::Acquire) {
                ApiError::Unavailable
            } else {
                ApiError::NoSuchChannel(display)
            });
        };
        let (name, address) = (conn.name.clone(), conn.address);
        if conn.room.as_deref() != Some(key.as_str()) {
            if !is_online(state, &key, &name)
                && online_count(state, &key) >= self.limits.room_capacity
            {
                return Err(ApiError::RoomFull {
                    channel: display,
                    capacity: self.limits.room_capacity,
                });
            }
            let seats = self.limits.room_seats_per_address;
            if seats_taken(state, &key, &name, address) >= seats {
                return Err(ApiError::SeatsTaken {
                    channel: display,
                    seats,
                });
            }
            leave_room(state, id);
            enter_room(state, id, &key);
        }
        let online = online_in(state, &key);
        note_list_told(state, id, &key, &online);
        let replay = state.windows[&key].replay(since);
        Ok(encode_joined(display, replay, online.names(), online.count))
    }

    /// Takes a connection out of its room, if it is in one.
    pub fn leave(&self, id: ConnId) {
        let mut state = self.lock();
        leave_room(&mut state, id);
    }

    /// Queues a message from a connection for storing. Once stored it is delivered to
    /// the room and acknowledged to the sender; a refusal found then comes back as a
    /// `SendFailed`. Errors here are refusals found at once.
    pub fn send(
        &self,
        id: ConnId,
        raw_channel: &str,
        client_id: String,
        raw_text: &str,
        now: i64,
    ) -> Result<(), ApiError> {
        if client_id.is_empty() || client_id.len() > CLIENT_ID_MAX_BYTES {
            return Err(ApiError::ClientId);
        }
        let text = validate_message(raw_text)?;
        let key = channel_key(raw_channel);
        let author = {
            let state = self.lock();
            // Checked first, under the lock `close_all` sets it under: once it has
            // emptied the rooms, a late send is refused because the server is
            // stopping, not because its sender seems to be in no room.
            if self.closing.load(Ordering::Acquire) {
                return Err(ApiError::Unavailable);
            }
            state
                .conns
                .get(&id)
                .filter(|c| c.room.as_deref() == Some(key.as_str()))
                .map(|c| c.name.to_string())
                .ok_or_else(|| ApiError::NotInChannel(raw_channel.trim().to_owned()))?
        };
        let job = Job::Send {
            conn: id,
            received: Instant::now(),
            message: NewMessage {
                channel_key: key,
                author,
                text,
                sent_at: now,
                client_id,
            },
        };
        self.commits
            .try_send(job)
            .map_err(|_| ApiError::Unavailable)
    }

    /// Stops taking sends and waits until every queued one is stored and published.
    pub async fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        let (done, stored) = oneshot::channel();
        if self.commits.send(Job::Stop(done)).await.is_ok() {
            let _ = stored.await;
        }
    }

    /// Every channel's key, oldest first.
    pub fn channel_keys(&self) -> Vec<String> {
        self.lock().order.clone()
    }

    /// Connections and occupied rooms, for the metrics.
    pub fn census(&self) -> (usize, usize) {
        let state = self.lock();
        (state.conns.len(), state.rooms.len())
    }

    /// Whether sends can be stored: the committer runs, its last batches did not
    /// all fail, and the store answers (for readiness checks). Blocks on the store.
    pub fn store_ready(&self) -> Result<(), StoreError> {
        self.committer.check()?;
        self.store.ping()
    }
}

/// Who said hello, and the channel list their tab shows.
#[derive(Clone, Debug)]
pub struct Hello {
    /// The name as held.
    pub name: String,
    /// The version of the channel list the tab shows, if any.
    pub channels_version: Option<String>,
}

impl Hello {
    /// A hello from a tab that shows no channels yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            channels_version: None,
        }
    }
}

/// Every channel as JSON, and its version: the first 8 bytes of its SHA-256, the
/// same on every node for the same list.
#[derive(Clone)]
struct ChannelList {
    json: Arc<str>,
    version: Arc<str>,
}

/// The answer to a hello from `name`: their name, the channel list unless the tab
/// shows its version `seen`, and the version; the frame `ServerFrame::Welcome`
/// serializes to (a unit test holds the two equal), with the list spliced in.
fn welcome(state: &mut State, name: &str, seen: Option<&str>) -> Bytes {
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

fn all_channels(state: &State) -> Vec<Channel> {
    state
        .order
        .iter()
        .map(|key| state.windows[key].channel.clone())
        .collect()
}

/// Adds a channel this node did not know and tells everyone; false if it knew it.
fn add_channel(state: &mut State, key: String, channel: Channel, history: usize) -> bool {
    if state.windows.contains_key(&key) {
        return false;
    }
    state.order.push(key.clone());
    state.channels_json = None;
    state.windows.insert(
        key,
        ChannelWindow::new(channel.clone(), 0, Vec::new(), history),
    );
    let frame = encode(&ServerFrame::ChannelCreated { channel });
    let everyone: Vec<ConnId> = state.conns.keys().copied().collect();
    deliver(state, &everyone, &frame);
    true
}

/// Serializes and frames a message once; the bytes are shared by every recipient.
pub fn encode(frame: &ServerFrame) -> Bytes {
    let json = serde_json::to_vec(frame).expect("server frames always serialize");
    frame::text(&json)
}

/// How a `Message` frame's JSON starts; the message's own JSON follows, and then
/// the frame's closing brace.
const MESSAGE_PREFIX: &[u8] = br#"{"type":"message","message":"#;

/// Frames a message for its room, and returns with it the message as its channel's
/// window keeps it: its JSON within that frame, so it is encoded once, shared with
/// the frame, and copied into the answers to joins.
fn encode_message(message: ChatMessage) -> (Bytes, Kept) {
    let seq = message.seq;
    let json = serde_json::to_vec(&ServerFrame::Message { message })
        .expect("server frames always serialize");
    debug_assert!(json.starts_with(MESSAGE_PREFIX) && json.ends_with(b"}"));
    let framed = frame::text(&json);
    let start = framed.len() - json.len() + MESSAGE_PREFIX.len();
    let kept = Kept {
        seq,
        json: framed.slice(start..framed.len() - 1),
    };
    (framed, kept)
}

/// Where serde writes a join answer's history when it is empty.
const EMPTY_HISTORY: &[u8] = br#""history":[]"#;

/// The answer to a join: everything but the history is serialized, and the kept
/// messages' bytes are copied in where serde wrote an empty history (inside a JSON
/// string quotes are escaped, so the field is the only match). The hub waits while
/// this runs: copying a window costs a small part of encoding it again.
fn encode_joined(
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

/// Queues `frame` for each target and cuts off any connection whose queue is full
/// (its task closes the socket, and the client resumes from its last sequence
/// number when it reconnects), so a slow reader never holds back the others and
/// never silently misses a message.
fn deliver(state: &mut State, targets: &[ConnId], frame: &Bytes) {
    let lagging = queue(&state.conns, targets, frame, &mut state.to_flush);
    cut_off(state, lagging);
}

/// Queues `frame` for everyone in a room; returns how many were in it.
fn broadcast_room(state: &mut State, key: &str, frame: &Bytes) -> u64 {
    let Some(room) = state.rooms.get(key) else {
        return 0;
    };
    let lagging = queue(&state.conns, &room.conns, frame, &mut state.to_flush);
    let recipients = room.conns.len();
    cut_off(state, lagging);
    recipients as u64
}

fn cut_off(state: &mut State, lagging: Vec<ConnId>) {
    if !lagging.is_empty() {
        tracing::info!(
            count = lagging.len(),
            "cutting off connections that stopped reading"
        );
        for id in &lagging {
            if let Some(conn) = state.conns.get(id) {
                conn.outbox.request_close(
                    close_code::TOO_SLOW,
                    "too far behind; reconnect to catch up",
                );
            }
        }
        evict(state, lagging);
    }
}

/// Queues `frame` for each target, returning the targets whose queue was full.
/// Outboxes that had nothing waiting are written when the lock is let go.
fn queue(
    conns: &HashMap<ConnId, Conn>,
    targets: &[ConnId],
    frame: &Bytes,
    to_flush: &mut Vec<Arc<Outbox>>,
) -> Vec<ConnId> {
    targets
        .iter()
        .filter(|id| {
            conns
                .get(id)
                .is_some_and(|conn| enqueue(conn, frame, to_flush).is_err())
        })
        .copied()
        .collect()
}

/// Queues `frame` for one connection; an outbox that had nothing waiting is written
/// when the lock is let go.
fn enqueue(conn: &Conn, frame: &Bytes, to_flush: &mut Vec<Arc<Outbox>>) -> Result<(), Full> {
    if conn.outbox.push(frame.clone())? {
        to_flush.push(conn.outbox.clone());
    }
    Ok(())
}

/// Removes connections (their rooms hear of it with the next presence update).
fn evict(state: &mut State, gone: Vec<ConnId>) {
    for id in gone {
        take_out_of_room(state, id);
        let Some(conn) = state.conns.remove(&id) else {
            continue;
        };
        if let Some(open) = state.tabs.get_mut(&conn.name) {
            *open -= 1;
            if *open == 0 {
                state.tabs.remove(&conn.name);
            }
        }
    }
}

fn display_name(state: &State, key: &str) -> String {
    state
        .windows
        .get(key)
        .map_or_else(|| key.to_owned(), |w| w.channel.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ErrorCode, MessageError};
    use crate::server::store::MemoryStore;

    pub(super) fn hub(capacity: usize) -> Arc<Hub> {
        hub_with_idle_timeout(capacity, Duration::from_secs(45))
    }

    /// A connection with no socket, in General.
    pub(super) fn in_general(hub: &Hub, name: &str) -> Registration {
        let reg = hub.connect_detached(name).unwrap();
        hub.join(reg.id, "General", None).unwrap();
        reg
    }

    fn hub_with_idle_timeout(capacity: usize, idle_timeout: Duration) -> Arc<Hub> {
        hub_limited(HubLimits {
            idle_timeout,
            ..limits(capacity)
        })
    }

    /// Limits for a test hub: these, and no others that a test does not name.
    fn limits(capacity: usize) -> HubLimits {
        HubLimits {
            room_capacity: capacity,
            history: 100,
            commit_queue: 16,
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            max_tabs_per_person: usize::MAX,
            room_seats_per_address: usize::MAX,
            max_channels: usize::MAX,
        }
    }

    /// A hub with General, within `limits`.
    fn hub_limited(limits: HubLimits) -> Arc<Hub> {
        let store = Arc::new(MemoryStore::new(100));
        store.create_channel("General", 0).unwrap();
        hub_on(store, limits)
    }

    /// A hub on `store`, which holds General.
    fn hub_on(store: Arc<dyn Store>, limits: HubLimits) -> Arc<Hub> {
        Hub::start(store, limits, Arc::default()).unwrap()
    }

    /// The server frame in a queued frame, if it is one (not a ping).
    pub(super) fn decoded(queued: Bytes) -> Option<ServerFrame> {
        serde_json::from_slice(frame::server_payload(&queued)).ok()
    }

    #[test]
    fn a_join_answer_is_what_serde_writes_with_the_kept_bytes_copied_in() {
        // Quotes, backslashes, other scripts and the history field's own name in the
        // texts and in a name on the list that follows it.
        let messages: Vec<ChatMessage> = (1..=3)
            .map(|seq| ChatMessage {
                text: format!("\"history\":[] {seq} ünï \\ \n ok"),
                ..crate::protocol::sample_message(seq)
            })
            .collect();
        let kept: Vec<Kept> = messages
            .iter()
            .map(|message| encode_message(message.clone()).1)
            .collect();
        for (message, kept) in messages.iter().zip(&kept) {
            let decoded: ChatMessage = serde_json::from_slice(&kept.json).unwrap();
            assert_eq!(&decoded, message);
        }
        let online = vec!["\"history\":[]".to_owned(), "Ada".to_owned()];
        for (since, history) in [(None, &messages[..]), (Some(1), &messages[1..])] {
            let replay = Replay {
                messages: kept
                    .iter()
                    .filter(|k| since.is_none_or(|s| k.seq > s))
                    .collect(),
                reset: since.is_none(),
            };
            let answer = encode_joined("General".into(), replay, online.clone(), 7);
            let serde = encode(&ServerFrame::Joined {
                channel: "General".into(),
                history: history.to_vec(),
                reset: since.is_none(),
                online: online.clone(),
                online_count: 7,
            });
            assert_eq!(answer, serde);
        }
        let empty = Replay {
            messages: Vec::new(),
            reset: false,
        };
        assert_eq!(
            encode_joined("General".into(), empty, vec![], 0),
            encode(&ServerFrame::Joined {
                channel: "General".into(),
                history: vec![],
                reset: false,
                online: vec![],
                online_count: 0,
            })
        );
    }

    #[tokio::test]
    async fn the_welcome_names_the_person_and_every_channel_as_it_is_now() {
        let hub = hub(10);
        let welcome = |name: &str, seen: Option<&str>| decoded(hub.welcome(name, seen));
        let name = "Ada \"the first\" \\ Lovelace";
        let Some(ServerFrame::Welcome {
            channels_version: first_version,
            ..
        }) = welcome(name, None)
        else {
            panic!("a welcome frame");
        };
        assert_eq!(
            welcome(name, None),
            Some(ServerFrame::Welcome {
                name: name.into(),
                channels: Some(hub.channels()),
                channels_version: first_version.clone(),
            })
        );
        // A tab that shows this list is not sent it again.
        assert_eq!(
            welcome(name, Some(&first_version)),
            Some(ServerFrame::Welcome {
                name: name.into(),
                channels: None,
                channels_version: first_version.clone(),
            })
        );
        hub.create_channel("Random", 5).unwrap();
        let Some(ServerFrame::Welcome {
            channels: Some(channels),
            channels_version,
            ..
        }) = welcome("bob", Some(&first_version))
        else {
            panic!("a welcome with the list, which changed");
        };
        assert_ne!(channels_version, first_version);
        let names: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["General", "Random"]);
    }

    #[tokio::test]
    async fn sends_and_joins_after_the_server_began_stopping_are_refused_as_unavailable() {
        let hub = hub(10);
        let ada = hub.connect_detached("ada").unwrap();
        hub.join(ada.id, "General", None).unwrap();
        hub.close_all(1012, "restarting");
        assert!(matches!(
            hub.send(ada.id, "General", "c1".into(), "hello", 1),
            Err(ApiError::Unavailable)
        ));
        assert!(matches!(
            hub.join(ada.id, "General", None),
            Err(ApiError::Unavailable)
        ));
    }

    /// Sends one message as `who` and waits for its answer.
    async fn answer_to_send(hub: &Hub, who: &Registration, client_id: &str) -> ServerFrame {
        hub.send(who.id, "General", client_id.into(), "hello", 1)
            .unwrap();
        loop {
            if let Some(frame) = decoded(who.outbound.recv().await)
                && matches!(
                    frame,
                    ServerFrame::Ack { .. } | ServerFrame::SendFailed { .. }
                )
            {
                return frame;
            }
        }
    }

    #[tokio::test]
    async fn a_node_whose_sends_cannot_be_stored_is_not_ready() {
        let store = Arc::new(crate::server::store::faulty::Faulty::new(100));
        store.create_channel("General", 0).unwrap();
        let hub = hub_on(store.clone(), limits(10));
        let ada = in_general(&hub, "ada");
        assert!(hub.store_ready().is_ok());

        store.failing.store(true, Ordering::Relaxed);
        for i in 0..3 {
            let answer = answer_to_send(&hub, &ada, &format!("f{i}")).await;
            assert!(
                matches!(
                    answer,
                    ServerFrame::SendFailed {
                        code: ErrorCode::Unavailable,
                        ..
                    }
                ),
                "{answer:?}"
            );
        }
        let not_ready = hub.store_ready().unwrap_err().to_string();
        assert!(not_ready.contains("the last 3 attempts"), "{not_ready}");

        // Storing works again: so does the node.
        store.failing.store(false, Ordering::Relaxed);
        let answer = answer_to_send(&hub, &ada, "f0").await;
        assert!(matches!(answer, ServerFrame::Ack { .. }), "{answer:?}");
        assert!(hub.store_ready().is_ok());

        // The committer dies: the node says so, for good.
        store.panicking.store(true, Ordering::Relaxed);
        hub.send(ada.id, "General", "p1".into(), "hello", 1)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while hub.store_ready().is_ok() {
            assert!(
                Instant::now() < deadline,
                "still ready after the committer died"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let dead = hub.store_ready().unwrap_err().to_string();
        assert!(dead.contains("not being stored"), "{dead}");
    }

    #[tokio::test]
    async fn pings_reach_everyone_however_many_turns_they_take() {
        let hub = hub(10);
        let everyone: Vec<Registration> = (0..PINGS_PER_TURN + 3)
            .map(|i| hub.connect_detached(&format!("p{i}")).unwrap())
            .collect();
        hub.ping_everyone().await;
        for registration in &everyone {
            let got: Vec<Bytes> = std::iter::from_fn(|| registration.outbound.try_recv()).collect();
            assert!(got.contains(&frame::ping()), "{got:?}");
        }
    }

    #[tokio::test]
    async fn pings_reach_everyone_and_a_silent_client_is_let_go() {
        use crate::server::outbox::Signal;
        let hub = hub_with_idle_timeout(10, Duration::from_millis(50));
        let quiet = in_general(&hub, "quiet");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lively = in_general(&hub, "lively");
        hub.ping_everyone().await;
        // Behind a presence update from the background ticker, perhaps.
        let lively_got: Vec<Bytes> = std::iter::from_fn(|| lively.outbound.try_recv()).collect();
        assert!(lively_got.contains(&frame::ping()), "{lively_got:?}");
        assert_eq!(
            quiet.outbound.take_signal(),
            Some(Signal::Close(close_code::AWAY, "no answer to pings"))
        );
        while let Some(queued) = quiet.outbound.try_recv() {
            assert_ne!(queued, frame::ping(), "the silent client is not pinged");
        }
        // Gone from the room, so the room's messages no longer go to it.
        assert_eq!(online_count(&hub.lock(), "general"), 1);
    }

    #[tokio::test]
    async fn a_connection_too_far_behind_is_cut_off_and_told_why() {
        use crate::server::outbox::Signal;
        let hub = hub(10);
        // Nothing is written for a detached connection: like a client that stopped
        // reading, its queue only grows.
        let slow = in_general(&hub, "slow");
        for i in 0..20 {
            hub.create_channel(&format!("Room {i}"), 0).unwrap();
        }
        assert_eq!(
            slow.outbound.take_signal(),
            Some(Signal::Close(
                close_code::TOO_SLOW,
                "too far behind; reconnect to catch up"
            ))
        );
        assert_eq!(hub.census(), (0, 0));
    }

    #[tokio::test]
    async fn giving_up_a_name_lets_go_of_that_holders_tabs_under_it_only() {
        use crate::server::outbox::Signal;
        let hub = hub(10);
        let ada = hub.connect_detached_holding("Ada", "browser-1").unwrap();
        let ada_again = hub.connect_detached_holding("Ada", "browser-1").unwrap();
        // The same browser under its new name, and whoever holds "Ada" next (a
        // cluster hears of the release a moment after the name is free).
        let renamed = hub.connect_detached_holding("Ada L", "browser-1").unwrap();
        let next_holder = hub.connect_detached_holding("Ada", "browser-2").unwrap();
        for reg in [&ada, &ada_again, &renamed, &next_holder] {
            hub.join(reg.id, "General", None).unwrap();
        }
        hub.let_go_of(&name_key("Ada"), Holder::of_token("browser-1"));
        for gone in [&ada, &ada_again] {
            assert_eq!(
                gone.outbound.take_signal(),
                Some(Signal::Close(
                    close_code::NAME_GIVEN_UP,
                    close_code::NAME_GIVEN_UP_REASON
                ))
            );
        }
        for stays in [&renamed, &next_holder] {
            assert_eq!(stays.outbound.take_signal(), None);
        }
        assert_eq!(hub.census(), (2, 1));
    }

    /// `connect_detached` from `address`.
    fn connect_from(hub: &Hub, name: &str, address: [u8; 4]) -> Result<ConnId, ApiError> {
        hub.connect(
            &Hello::new(name),
            Holder::of_token(name),
            IpAddr::from(address),
            Outbox::detached(16),
        )
    }

    #[tokio::test]
    async fn one_address_seats_only_its_share_of_a_room() {
        let hub = hub_limited(HubLimits {
            room_seats_per_address: 2,
            ..limits(10)
        });
        let home = [198, 51, 100, 7];
        let ada = connect_from(&hub, "ada", home).unwrap();
        let bob = connect_from(&hub, "bob", home).unwrap();
        let cy = connect_from(&hub, "cy", home).unwrap();
        hub.join(ada, "General", None).unwrap();
        hub.join(bob, "General", None).unwrap();
        assert_eq!(
            hub.join(cy, "General", None).err(),
            Some(ApiError::SeatsTaken {
                channel: "General".into(),
                seats: 2
            })
        );
        // Another tab of someone seated takes no seat; someone elsewhere gets one.
        let ada_again = connect_from(&hub, "ada", home).unwrap();
        assert!(hub.join(ada_again, "General", None).is_ok());
        let di = connect_from(&hub, "di", [203, 0, 113, 9]).unwrap();
        assert!(hub.join(di, "General", None).is_ok());
        // A seat is given back when its person leaves, not when one tab does.
        hub.disconnect(ada);
        assert!(hub.join(cy, "General", None).is_err());
        hub.disconnect(ada_again);
        assert!(hub.join(cy, "General", None).is_ok());
    }

    #[tokio::test]
    async fn one_person_holds_only_so_many_tabs() {
        let hub = hub_limited(HubLimits {
            max_tabs_per_person: 2,
            ..limits(10)
        });
        let here = [127, 0, 0, 1];
        let first = connect_from(&hub, "ada", here).unwrap();
        connect_from(&hub, "ada", here).unwrap();
        assert_eq!(
            connect_from(&hub, "ada", here).err(),
            Some(ApiError::TooManyTabs { tabs: 2 })
        );
        assert!(connect_from(&hub, "bob", here).is_ok());
        hub.disconnect(first);
        assert!(connect_from(&hub, "ada", here).is_ok());
    }

    #[tokio::test]
    async fn capacity_counts_people_not_tabs() {
        let hub = hub(2);
        let ada = hub.connect_detached("ada").unwrap();
        let ada_again = hub.connect_detached("ada").unwrap();
        let bob = hub.connect_detached("bob").unwrap();
        let cy = hub.connect_detached("cy").unwrap();
        for reg in [&ada, &ada_again, &bob] {
            hub.join(reg.id, "General", None).unwrap();
        }
        assert!(matches!(
            hub.join(cy.id, "general", None),
            Err(ApiError::RoomFull { capacity: 2, .. })
        ));
        hub.disconnect(bob.id);
        assert!(hub.join(cy.id, "General", None).is_ok());
    }

    /// Presence frames this connection has queued, decoded.
    fn presence_frames(reg: &Registration) -> Vec<(Vec<String>, Vec<String>)> {
        let mut frames = Vec::new();
        while let Some(queued) = reg.outbound.try_recv() {
            if let Some(ServerFrame::Presence { joined, left, .. }) = decoded(queued) {
                frames.push((joined, left));
            }
        }
        frames
    }

    #[tokio::test]
    async fn presence_changes_are_announced_together() {
        let hub = hub(10);
        let ada = hub.connect_detached("ada").unwrap();
        hub.join(ada.id, "General", None).unwrap();
        hub.announce_presence();
        presence_frames(&ada);
        let bob = hub.connect_detached("bob").unwrap();
        let cy = hub.connect_detached("cy").unwrap();
        let di = hub.connect_detached("di").unwrap();
        for reg in [&bob, &cy, &di] {
            hub.join(reg.id, "General", None).unwrap();
        }
        // Di is gone before anyone was told she came: she is never announced.
        hub.disconnect(di.id);
        hub.announce_presence();
        let frames = presence_frames(&ada);
        // The background announcer may have split the arrivals across two frames.
        let mut joined: Vec<String> = frames.iter().flat_map(|(j, _)| j.clone()).collect();
        joined.sort();
        let left: Vec<String> = frames.iter().flat_map(|(_, l)| l.clone()).collect();
        assert!(frames.len() <= 2, "{frames:?}");
        if frames.len() == 1 {
            assert_eq!(joined, ["bob", "cy"]);
            assert!(left.is_empty());
        }
        hub.disconnect(bob.id);
        hub.announce_presence();
        let frames = presence_frames(&ada);
        assert_eq!(frames, [(vec![], vec!["bob".to_string()])]);
    }

    #[tokio::test]
    async fn sends_are_checked_before_they_are_queued() {
        let hub = hub(10);
        let ada = hub.connect_detached("ada").unwrap();
        assert_eq!(
            hub.send(ada.id, "General", "c1".into(), "hi", 0),
            Err(ApiError::NotInChannel("General".into()))
        );
        hub.join(ada.id, "General", None).unwrap();
        assert_eq!(
            hub.send(ada.id, "General", String::new(), "hi", 0),
            Err(ApiError::ClientId)
        );
        assert_eq!(
            hub.send(ada.id, "General", "c1".into(), "  ", 0),
            Err(ApiError::Message(MessageError::Empty))
        );
        assert_eq!(hub.send(ada.id, "General", "c1".into(), "hi", 0), Ok(()));
    }

    #[tokio::test]
    async fn a_stored_message_is_delivered_then_acknowledged() {
        let hub = hub(10);
        let ada = hub.connect_detached("ada").unwrap();
        hub.join(ada.id, "General", None).unwrap();
        hub.send(ada.id, "General", "c1".into(), "hi", 5).unwrap();
        hub.shutdown().await;
        // The shared ticker may announce Ada's own arrival at any moment; what this
        // test is about is the order of everything else.
        let mut frames = Vec::new();
        while let Some(queued) = ada.outbound.try_recv() {
            match decoded(queued) {
                Some(ServerFrame::Presence { .. }) => {}
                Some(frame) => frames.push(frame),
                None => {}
            }
        }
        assert_eq!(frames.len(), 2, "{frames:?}");
        let (message, ack) = (frames[0].clone(), frames[1].clone());
        assert!(
            matches!(message, ServerFrame::Message { message } if message.seq == 1 && message.text == "hi")
        );
        assert_eq!(
            ack,
            ServerFrame::Ack {
                client_id: "c1".into(),
                channel: "General".into(),
                seq: 1
            }
        );
        // After shutdown nothing more is taken.
        assert_eq!(
            hub.send(ada.id, "General", "c2".into(), "late", 6),
            Err(ApiError::Unavailable)
        );
    }
}
