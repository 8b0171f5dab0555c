//! Membership of a cluster. One thread reads what every node tells the bus (new
//! channels, new messages, names given up) and hands it to this node's hub, which
//! publishes what it has not published yet to its own connections and lets go of
//! tabs under names given up. The bus may lose what it carries (Redis restarted,
//! lost its tail, or cannot be reached), so the same thread fills every gap in a
//! channel's numbers from PostgreSQL, and every few seconds compares each channel's
//! last number there with what this node has published: a message PostgreSQL
//! acknowledged is never hidden by Redis. Another thread keeps the cluster's
//! presence: every second it writes who is in each room through this node (with a
//! time to live, so a node that dies drops out by itself) and reads who is there
//! through the others.

use super::bus::{Changes, PresenceReport, ReadFrom, RedisBus};
use super::hub::Hub;
use super::names::{Holder, Names};
use super::store::{PostgresStore, Store, StoreError};
use crate::protocol::{ChatMessage, HistoryRange, Seq};
use redis::Connection;
use std::collections::{BTreeSet, HashMap, HashSet};
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

/// How often each channel's last number in PostgreSQL is compared with what this
/// node published: the longest a message the bus lost without a later one (which
/// would show the gap at once) waits to be shown here.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);
/// Most messages read from PostgreSQL to fill one gap; past that, the newest
/// this many stand for the channel (the window in memory starts again, and pages
/// asking for older messages get them from the store).
const MOST_FILLED: Seq = 1000;

/// The two shared services a node of a cluster uses.
#[derive(Clone)]
pub struct ClusterLink {
    /// The system of record.
    pub records: Arc<PostgresStore>,
    /// How the nodes tell each other of changes, and share presence.
    pub bus: Arc<RedisBus>,
}

/// This node's place in the cluster.
pub struct Membership {
    bus: Arc<RedisBus>,
    node: String,
    hub: Weak<Hub>,
}

impl Membership {
    /// Joins the cluster: follows its changes and shares presence until the hub is
    /// gone. A node unheard of for `presence_ttl` drops out of presence.
    pub fn join(
        link: ClusterLink,
        hub: Weak<Hub>,
        names: Arc<Names>,
        presence_ttl: Duration,
    ) -> std::io::Result<Self> {
        let node = node_id();
        tracing::info!(%node, "joining the cluster");
        let (reader, reader_hub) = (link.clone(), hub.clone());
        std::thread::Builder::new()
            .name("hearth-cluster".into())
            .spawn(move || follow(&reader, &reader_hub, &names))?;
        let (sharer, sharer_hub, sharer_node) = (link.bus.clone(), hub.clone(), node.clone());
        std::thread::Builder::new()
            .name("hearth-presence".into())
            .spawn(move || share_presence(&sharer, &sharer_hub, &sharer_node, presence_ttl))?;
        Ok(Self {
            bus: link.bus,
            node,
            hub,
        })
    }

    /// Leaves the cluster's presence at once, for a clean stop. Blocks on Redis.
    pub fn leave(&self) {
        let rooms = self.hub.upgrade().map(|hub| hub.channel_keys());
        if let Err(error) = self.bus.forget_node(&self.node, &rooms.unwrap_or_default()) {
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
fn share_presence(bus: &RedisBus, hub: &Weak<Hub>, node: &str, ttl: Duration) {
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
        let link = match connected(&mut connection, bus, Duration::from_secs(2)) {
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
        match bus.sync_presence(link, &report, &rooms) {
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
    bus: &RedisBus,
    answer_timeout: Duration,
) -> Result<&'a mut Connection, StoreError> {
    if connection.is_none() {
        *connection = Some(bus.connect(answer_timeout)?);
    }
    Ok(connection.as_mut().expect("opened above"))
}

/// Reads what the cluster stores into the hub: from the bus as it comes, with its
/// gaps filled from PostgreSQL, and from PostgreSQL alone while the bus is away.
fn follow(link: &ClusterLink, hub: &Weak<Hub>, names: &Names) {
    let mut connection = None;
    let mut events_cursor: Option<String> = None;
    let mut releases_cursor: Option<String> = None;
    let mut retry = RETRY_FIRST;
    let mut reconciled_at: Option<Instant> = None;
    loop {
        let Some(cursors) = hub.upgrade().map(|hub| hub.cursors()) else {
            return;
        };
        if reconciled_at.is_none_or(|at| at.elapsed() >= RECONCILE_EVERY) {
            match catch_up(&link.records, &cursors) {
                Ok(changes) => {
                    reconciled_at = Some(Instant::now());
                    let Some(hub) = hub.upgrade() else { return };
                    hub.apply_changes(changes);
                    // Read the bus on from what that published.
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "comparing with PostgreSQL failed; will try again");
                    reconciled_at = Some(Instant::now());
                }
            }
        }
        let read = connected(&mut connection, &link.bus, BLOCK + Duration::from_secs(2)).and_then(
            |reader| {
                let releases = match &releases_cursor {
                    Some(cursor) => cursor.clone(),
                    None => releases_cursor
                        .insert(link.bus.latest_release(reader)?)
                        .clone(),
                };
                let from = ReadFrom {
                    events: events_cursor.as_deref(),
                    releases: &releases,
                    channels: &cursors,
                };
                link.bus.read_changes(reader, &from, BLOCK)
            },
        );
        match read {
            Ok(mut changes) => {
                retry = RETRY_FIRST;
                if let Some(cursor) = changes.events_cursor.take() {
                    events_cursor = Some(cursor);
                }
                if let Some(cursor) = changes.releases_cursor.take() {
                    releases_cursor = Some(cursor);
                }
                if let Err(error) = fill_gaps(&link.records, &cursors, &mut changes) {
                    // Published as far as it is whole; the rest on the next try.
                    tracing::warn!(%error, "reading a gap from PostgreSQL failed");
                    reconciled_at = None;
                }
                let Some(hub) = hub.upgrade() else { return };
                let released = std::mem::take(&mut changes.released);
                let_go_of_released(&link.records, &hub, names, released);
                hub.apply_changes(changes);
            }
            Err(error) => {
                tracing::warn!(%error, "reading the bus failed; reconnecting");
                connection = None;
                std::thread::sleep(retry);
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// What PostgreSQL holds that this node has not published: channels it does not
/// know, and each channel's messages after its last published number.
fn catch_up(
    records: &PostgresStore,
    cursors: &[(String, String, Seq)],
) -> Result<Changes, StoreError> {
    let published = published(cursors);
    let mut changes = Changes::default();
    for (key, channel, last) in records.heads()? {
        let after = match published.get(key.as_str()) {
            Some(&after) => after,
            None => {
                changes.channels.push((key.clone(), channel));
                0
            }
        };
        if last > after {
            let missing = read_after(records, &key, after, last)?;
            changes
                .messages
                .extend(missing.into_iter().map(|m| (key.clone(), m)));
        }
    }
    Ok(changes)
}

/// Each channel's last published number, by key.
fn published(cursors: &[(String, String, Seq)]) -> HashMap<String, Seq> {
    cursors
        .iter()
        .map(|(key, _, last)| (key.clone(), *last))
        .collect()
}

/// Puts the messages the bus skipped before those it carried. Where a gap cannot
/// be read (PostgreSQL away), that channel's messages from the gap on are left for
/// the next read: published past a gap, the missing ones would never be shown.
fn fill_gaps(
    records: &PostgresStore,
    cursors: &[(String, String, Seq)],
    changes: &mut Changes,
) -> Result<(), StoreError> {
    let mut last = published(cursors);
    let carried = std::mem::take(&mut changes.messages);
    let mut filled: Vec<(String, ChatMessage)> = Vec::with_capacity(carried.len());
    let mut stalled: HashMap<String, StoreError> = HashMap::new();
    for (key, message) in carried {
        if stalled.contains_key(&key) {
            continue;
        }
        let before = last.get(&key).copied().unwrap_or(0);
        if message.seq > before + 1 {
            match read_after(records, &key, before, message.seq - 1) {
                Ok(missing) => filled.extend(missing.into_iter().map(|m| (key.clone(), m))),
                Err(error) => {
                    stalled.insert(key, error);
                    continue;
                }
            }
        }
        last.insert(key.clone(), before.max(message.seq));
        filled.push((key, message));
    }
    changes.messages = filled;
    stalled.into_values().next().map_or(Ok(()), Err)
}

/// The channel's messages after `after` through `through`, in order; when more
/// than [`MOST_FILLED`] are missing, the newest that many.
fn read_after(
    records: &PostgresStore,
    key: &str,
    after: Seq,
    through: Seq,
) -> Result<Vec<ChatMessage>, StoreError> {
    let missing = through - after;
    let range = if missing > MOST_FILLED {
        HistoryRange::Before(through + 1)
    } else {
        HistoryRange::After(after)
    };
    let page = records.history(key, range, missing.min(MOST_FILLED) as usize)?;
    Ok(page
        .messages
        .into_iter()
        .filter(|m| m.seq > after && m.seq <= through)
        .collect())
}

/// Names given up through any node: each token is checked afresh, and its tabs
/// here under that name are let go of, to reconnect as whoever they now are;
/// unless the browser has taken the name back since.
fn let_go_of_released(
    records: &PostgresStore,
    hub: &Hub,
    names: &Names,
    released: Vec<(String, Vec<u8>)>,
) {
    for (key, token_hash) in released {
        // Unknown when PostgreSQL does not answer: letting go costs a reconnect at
        // most.
        let now = super::now_ms();
        if matches!(records.holds_name(&key, &token_hash, now), Ok(Some(_))) {
            continue;
        }
        names.forget(&key, &token_hash);
        hub.let_go_of(&key, Holder::of_hash(&token_hash));
    }
}
