//! Membership of a cluster. One thread reads what every node stores in Redis (new
//! channels, new messages, names given up) and hands it to this node's hub, which
//! publishes what it has not published yet to its own connections and lets go of
//! tabs under names given up. Another keeps the cluster's
//! presence: every second it writes who is in each room through this node (with a
//! time to live, so a node that dies drops out by itself) and reads who is there
//! through the others.

use super::hub::Hub;
use super::names::{Holder, Names};
use super::store::{PresenceReport, ReadFrom, RedisStore, StoreError};
use redis::Connection;
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long one read waits for something new before asking again (which is when a
/// channel created meanwhile joins the streams read).
const BLOCK: Duration = Duration::from_millis(500);
/// Waits between attempts while Redis cannot be reached.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Most time between two presence updates.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);

/// This node's place in the cluster.
pub struct Membership {
    store: Arc<RedisStore>,
    node: String,
    hub: Weak<Hub>,
}

impl Membership {
    /// Joins the cluster: follows its changes and shares presence until the hub is
    /// gone. A node unheard of for `presence_ttl` drops out of presence.
    pub fn join(
        store: Arc<RedisStore>,
        hub: Weak<Hub>,
        names: Arc<Names>,
        presence_ttl: Duration,
    ) -> std::io::Result<Self> {
        let node = node_id();
        tracing::info!(%node, "joining the cluster");
        let (reader, reader_hub) = (store.clone(), hub.clone());
        std::thread::Builder::new()
            .name("hearth-cluster".into())
            .spawn(move || follow(&reader, &reader_hub, &names))?;
        let (sharer, sharer_hub, sharer_node) = (store.clone(), hub.clone(), node.clone());
        std::thread::Builder::new()
            .name("hearth-presence".into())
            .spawn(move || share_presence(&sharer, &sharer_hub, &sharer_node, presence_ttl))?;
        Ok(Self { store, node, hub })
    }

    /// Leaves the cluster's presence at once, for a clean stop. Blocks on Redis.
    pub fn leave(&self) {
        let rooms = self.hub.upgrade().map(|hub| hub.channel_keys());
        if let Err(error) = self
            .store
            .forget_node(&self.node, &rooms.unwrap_or_default())
        {
            tracing::warn!(%error, "could not leave the cluster's presence; it expires");
        }
    }
}

/// A random name for this node's run.
fn node_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Keeps this node's presence in Redis and takes in the other nodes'.
fn share_presence(store: &RedisStore, hub: &Weak<Hub>, node: &str, ttl: Duration) {
    let every = PRESENCE_EVERY.min(ttl / 3);
    let mut connection = None;
    let mut written: HashSet<String> = HashSet::new();
    let mut synced_at = Instant::now();
    // While Redis cannot be reached, the other nodes' people are shown as last
    // heard of, until that is older than they would be kept in Redis itself.
    let forget_others_if_stale = |synced_at: Instant, rooms: &[String]| {
        if synced_at.elapsed() >= ttl
            && let Some(hub) = hub.upgrade()
        {
            hub.apply_remote_presence(rooms.iter().map(|r| (r.clone(), BTreeSet::new())).collect());
        }
    };
    loop {
        std::thread::sleep(every);
        let Some((here, rooms)) = hub
            .upgrade()
            .map(|hub| (hub.local_presence(), hub.channel_keys()))
        else {
            return;
        };
        let link = match connected(&mut connection, store, Duration::from_secs(2)) {
            Ok(link) => link,
            Err(error) => {
                tracing::warn!(%error, "cannot reach Redis for presence; retrying");
                forget_others_if_stale(synced_at, &rooms);
                continue;
            }
        };
        let now: HashSet<String> = here.iter().map(|(room, _)| room.clone()).collect();
        let left: Vec<String> = written.difference(&now).cloned().collect();
        let report = PresenceReport {
            node,
            here: &here,
            left_rooms: &left,
            ttl,
            now_ms: super::now_ms(),
        };
        match store.sync_presence(link, &report, &rooms) {
            Ok(elsewhere) => {
                written = now;
                synced_at = Instant::now();
                let Some(hub) = hub.upgrade() else { return };
                hub.apply_remote_presence(elsewhere);
            }
            Err(error) => {
                tracing::warn!(%error, "sharing presence failed; reconnecting");
                connection = None;
                forget_others_if_stale(synced_at, &rooms);
            }
        }
    }
}

/// The thread's own connection, opened (with `answer_timeout`) if it has none.
fn connected<'a>(
    connection: &'a mut Option<Connection>,
    store: &RedisStore,
    answer_timeout: Duration,
) -> Result<&'a mut Connection, StoreError> {
    if connection.is_none() {
        *connection = Some(store.connect(answer_timeout)?);
    }
    Ok(connection.as_mut().expect("opened above"))
}

/// Reads what the cluster stores into the hub.
fn follow(store: &RedisStore, hub: &Weak<Hub>, names: &Names) {
    let mut connection = None;
    let mut events_cursor: Option<String> = None;
    let mut releases_cursor: Option<String> = None;
    let mut retry = RETRY_FIRST;
    loop {
        let Some(cursors) = hub.upgrade().map(|hub| hub.cursors()) else {
            return;
        };
        let read =
            connected(&mut connection, store, BLOCK + Duration::from_secs(2)).and_then(|reader| {
                let releases = match &releases_cursor {
                    Some(cursor) => cursor.clone(),
                    None => releases_cursor
                        .insert(store.latest_release(reader)?)
                        .clone(),
                };
                let from = ReadFrom {
                    events: events_cursor.as_deref(),
                    releases: &releases,
                    channels: &cursors,
                };
                Ok((store.read_changes(reader, &from, BLOCK)?, reader))
            });
        match read {
            Ok((mut changes, reader)) => {
                retry = RETRY_FIRST;
                if let Some(cursor) = changes.events_cursor.take() {
                    events_cursor = Some(cursor);
                }
                if let Some(cursor) = changes.releases_cursor.take() {
                    releases_cursor = Some(cursor);
                }
                let Some(hub) = hub.upgrade() else { return };
                let released = std::mem::take(&mut changes.released);
                let_go_of_released(store, reader, &hub, names, released);
                hub.apply_changes(changes);
            }
            Err(error) => {
                tracing::warn!(%error, "reading the cluster's changes failed; reconnecting");
                connection = None;
                std::thread::sleep(retry);
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Names given up through any node: each token is checked afresh, and its tabs
/// here under that name are let go of, to reconnect as whoever they now are;
/// unless the browser has taken the name back since.
fn let_go_of_released(
    store: &RedisStore,
    reader: &mut Connection,
    hub: &Hub,
    names: &Names,
    released: Vec<(String, Vec<u8>)>,
) {
    for (key, token_hash) in released {
        // Unknown when Redis does not answer: letting go costs a reconnect at most.
        if store.holds_now(reader, &key, &token_hash).unwrap_or(false) {
            continue;
        }
        names.forget(&key, &token_hash);
        hub.let_go_of(&key, Holder::of_hash(&token_hash));
    }
}
