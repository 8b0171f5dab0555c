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
//!
//! Here: the hub, its state and lifecycle. Beside it: `registry` (connections:
//! hello, tabs, letting go, pings), `rooms` (channels, joins, sends taken in),
//! `presence` (who is in each room, announced together), `publish` (the committer
//! and the publisher), `fanout` (delivery, cutting off the slow) and `encode` (the
//! frames, serialized once).

mod encode;
mod fanout;
mod presence;
mod publish;
mod registry;
mod rooms;
#[cfg(test)]
mod tests;

pub use encode::encode;
pub use registry::Hello;

use super::metrics::Metrics;
use super::names::Holder;
use super::outbox::Outbox;
use super::store::{Store, StoreError};
use super::window::ChannelWindow;
use crate::protocol::{Channel, Seq, channel_key};
use encode::ChannelList;
use presence::run_ticker;
use publish::{Job, PUBLISH_QUEUE, run_committer, run_publisher};
use rooms::all_channels;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Identifies one WebSocket connection (one browser tab).
pub type ConnId = u64;

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

    /// A page of a channel's history, from the store (which keeps more than the
    /// window in memory). Blocks on the store.
    pub fn history(
        &self,
        channel_key: &str,
        range: crate::protocol::HistoryRange,
        limit: usize,
    ) -> Result<crate::protocol::HistoryPage, StoreError> {
        self.store.history(channel_key, range, limit)
    }

    /// Deletes what the store no longer keeps under `retention`, and forgets it
    /// (and whatever else the setting no longer keeps) from the windows in memory
    /// too. Blocks on the store.
    pub fn prune(
        &self,
        retention: crate::server::store::Retention,
        now_ms: i64,
    ) -> Result<crate::server::store::Pruned, StoreError> {
        let pruned = self.store.prune(retention, now_ms)?;
        let mut state = self.lock();
        for (key, through) in &pruned.through {
            if let Some(window) = state.windows.get_mut(key) {
                window.forget_through(*through);
            }
        }
        // What another node of the cluster pruned first is not in this pass.
        for window in state.windows.values_mut() {
            window.forget_past(retention, now_ms);
        }
        Ok(pruned)
    }

    /// Whether sends can be stored: the committer runs, its last batches did not
    /// all fail, and the store answers (for readiness checks). Blocks on the store.
    pub fn store_ready(&self) -> Result<(), StoreError> {
        self.committer.check()?;
        self.store.ping()
    }
}
