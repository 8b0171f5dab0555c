//! The cluster store: every node keeps its data in one Redis.
//!
//! Each channel's messages are a Redis Stream (`hearth:log:{key}`), capped at ten
//! times the kept history, whose entry ids are the messages' sequence numbers. What
//! must be decided in one place is decided by Lua scripts, which Redis runs
//! atomically: channel-name conflicts, the next number of a channel, repeated sends
//! (remembered for a week) and who holds a name. Nodes learn of each other's messages,
//! channels and names given up by reading the streams (`read_changes`): unlike
//! pub/sub, a node that loses its connection reads on from where it was, so nothing
//! is missed.
//!
//! "Nothing acknowledged is lost" holds as far as Redis keeps what it acknowledged:
//! run it with `appendonly yes` and `appendfsync always` (or `everysec`, accepting
//! the loss of the last second if the Redis machine itself fails).

mod feed;
mod scripts;
mod store;
#[cfg(test)]
pub mod test_server;
#[cfg(test)]
mod tests;

pub use feed::{Changes, PresenceReport, ReadFrom};

use crate::protocol::Channel;
use crate::server::name_key::{Held, NAME_KEY_VERSION, name_key, rekey, report_freed};
use crate::server::store::{Store, StoreError};
use redis::{Connection, RedisError, Script};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const CHANNELS: &str = "hearth:channels";
const CHANNEL_ORDER: &str = "hearth:channel_order";
/// A stream of channel creations, so other nodes learn of new channels.
pub const EVENTS: &str = "hearth:events";
/// A stream of names given up, so every node lets go of the holder's tabs. Apart
/// from [`EVENTS`], so that renames never push channel creations out of the stream
/// before a node that was away has read them.
const RELEASES: &str = "hearth:releases";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for one answer: a Redis that stops answering refuses sends within
/// this time, so the clients keep them and retry.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Live nodes, scored by when each stops counting as alive unless it says so again.
const NODES: &str = "hearth:nodes";

/// The people in one room through one node; it expires unless the node renews it.
fn presence_key(node: &str, room: &str) -> String {
    format!("hearth:presence:{node}:{room}")
}

/// The stream holding a channel's messages.
pub fn log_key(channel_key: &str) -> String {
    format!("hearth:log:{channel_key}")
}

/// Channel keys by the look of their names ([`name_key`]), so that a new channel
/// cannot pass for one that exists.
const CHANNEL_LOOKS: &str = "hearth:channels:looks";

/// How many windows of messages each channel's stream keeps: a node that falls
/// behind (a slow read, a reconnect) still finds the messages it has not read,
/// where a stream of one window lost them once 100 came meanwhile.
const STREAM_WINDOWS: usize = 10;

const NAMES: &str = "hearth:names";
/// The [`NAME_KEY_VERSION`] that [`NAMES`] is keyed by (absent: version 1).
const NAMES_KEYED_BY: &str = "hearth:names:key_version";

pub struct RedisStore {
    client: redis::Client,
    /// One connection for the committer and the blocking calls; reopened after a
    /// failure.
    connection: Mutex<Option<Connection>>,
    history: usize,
    create_channel: Script,
    append: Script,
    claim_name: Script,
    holds_name: Script,
    release_name: Script,
}

impl RedisStore {
    /// Connects once to check the address; later failures reconnect as needed.
    pub fn open(url: &str, history: usize) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let store = Self {
            client,
            connection: Mutex::new(None),
            history: history.max(1),
            create_channel: Script::new(scripts::CREATE_CHANNEL),
            append: Script::new(scripts::APPEND),
            claim_name: Script::new(scripts::CLAIM_NAME),
            holds_name: Script::new(scripts::HOLDS_NAME),
            release_name: Script::new(scripts::RELEASE_NAME),
        };
        store.ping()?;
        store.check_durability();
        store.rekey_names()?;
        store.index_channel_looks()?;
        Ok(store)
    }

    /// Says so, loudly, when Redis does not keep what it acknowledges: Hearth
    /// acknowledges a send once Redis has it, and only the append-only file makes
    /// that survive a Redis restart.
    fn check_durability(&self) {
        let setting = |name: &str| -> Option<String> {
            let pair: Vec<String> = self
                .with_connection(|c| redis::cmd("CONFIG").arg("GET").arg(name).query(c))
                .ok()?;
            pair.into_iter().nth(1)
        };
        let appendonly = setting("appendonly");
        let appendfsync = setting("appendfsync");
        if let Some(warning) = durability_warning(appendonly.as_deref(), appendfsync.as_deref()) {
            tracing::warn!("{warning}");
        }
    }

    /// Re-keys held names once after [`crate::server::name_key::name_key`] changed.
    /// Runs as one transaction that starts over if another node claims a name
    /// meanwhile, so each node may try, and the first to finish does it.
    fn rekey_names(&self) -> Result<(), StoreError> {
        let freed = self.with_connection(|c| {
            redis::transaction(c, &[NAMES, NAMES_KEYED_BY], |c, pipe| {
                let keyed_by: Option<u32> = redis::cmd("GET").arg(NAMES_KEYED_BY).query(c)?;
                if keyed_by.is_some_and(|version| version >= NAME_KEY_VERSION) {
                    return Ok(Some(Vec::new()));
                }
                let stored: HashMap<String, String> = redis::cmd("HGETALL").arg(NAMES).query(c)?;
                let rekeyed = rekey(stored.into_values().filter_map(held_name).collect());
                pipe.del(NAMES).ignore();
                for (key, held) in &rekeyed.kept {
                    pipe.hset(NAMES, key, &held.record).ignore();
                }
                pipe.set(NAMES_KEYED_BY, NAME_KEY_VERSION).ignore();
                let done: Option<()> = pipe.query(c)?;
                Ok(done.map(|()| rekeyed.freed))
            })
        })?;
        report_freed(&freed);
        Ok(())
    }

    /// Builds [`CHANNEL_LOOKS`] afresh: channels from before it existed, or made by
    /// nodes of an older version during a rolling upgrade, or keyed by an older
    /// [`name_key`], are all indexed once a node of this version starts. Of two
    /// channels that already look alike, the older answers for both. One entry per
    /// channel, in one transaction, retried if a channel is created meanwhile.
    fn index_channel_looks(&self) -> Result<(), StoreError> {
        self.with_connection(|c| {
            let watched = [CHANNELS, CHANNEL_ORDER, CHANNEL_LOOKS];
            redis::transaction(c, &watched, |c, pipe| {
                let order: Vec<String> = redis::cmd("LRANGE")
                    .arg(CHANNEL_ORDER)
                    .arg(0)
                    .arg(-1)
                    .query(c)?;
                let stored: HashMap<String, String> =
                    redis::cmd("HGETALL").arg(CHANNELS).query(c)?;
                let mut looks: HashMap<String, &str> = HashMap::with_capacity(order.len());
                for key in &order {
                    let Some(channel) = stored
                        .get(key)
                        .and_then(|json| serde_json::from_str::<Channel>(json).ok())
                    else {
                        continue;
                    };
                    looks.entry(name_key(&channel.name)).or_insert(key);
                }
                pipe.del(CHANNEL_LOOKS).ignore();
                for (look, key) in &looks {
                    pipe.hset(CHANNEL_LOOKS, look, key).ignore();
                }
                pipe.query(c)
            })
        })
    }

    /// A new connection with bounded waits.
    pub fn connect(&self, answer_timeout: Duration) -> Result<Connection, StoreError> {
        let connection = self
            .client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(backend)?;
        connection
            .set_read_timeout(Some(answer_timeout))
            .map_err(backend)?;
        connection
            .set_write_timeout(Some(ANSWER_TIMEOUT))
            .map_err(backend)?;
        Ok(connection)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `work` on the shared connection, dropping the connection if it failed so
    /// the next call starts afresh.
    fn with_connection<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.lock();
        if guard.is_none() {
            *guard = Some(self.connect(ANSWER_TIMEOUT)?);
        }
        let connection = guard.as_mut().expect("connected above");
        work(connection).map_err(|e| {
            *guard = None;
            backend(e)
        })
    }
}

fn backend(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::failed(error)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A stored name ("token hash|last use|name as held"), for re-keying; the whole
/// value is kept as it was.
fn held_name(value: String) -> Option<Held<String>> {
    let mut parts = value.splitn(3, '|');
    let (_hash, last_seen, name) = (parts.next()?, parts.next()?, parts.next()?);
    let (name, last_seen) = (name.to_owned(), last_seen.parse().ok()?);
    Some(Held {
        name,
        last_seen,
        record: value,
    })
}

/// What to tell the operator about Redis's `appendonly` and `appendfsync`
/// settings (`None` when `CONFIG` is refused, as some hosted Redis do).
fn durability_warning(appendonly: Option<&str>, appendfsync: Option<&str>) -> Option<&'static str> {
    match (appendonly, appendfsync) {
        (None, _) | (_, None) => Some(
            "cannot read Redis's persistence settings (CONFIG refused): acknowledged \
             messages survive a Redis restart only with appendonly yes",
        ),
        (Some(on), _) if !on.eq_ignore_ascii_case("yes") => Some(
            "Redis runs without its append-only file (appendonly no): messages acknowledged \
             since its last snapshot are lost if it restarts; run it with appendonly yes",
        ),
        (_, Some(sync)) if sync.eq_ignore_ascii_case("no") => Some(
            "Redis leaves syncing its append-only file to the system (appendfsync no): \
             acknowledged messages can be lost if its machine fails; use always or everysec",
        ),
        _ => None,
    }
}
