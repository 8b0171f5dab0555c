//! The bus between a cluster's nodes: Redis carries what one node stored to the
//! others (messages, channel creations, names given up) and who is online through
//! each node. It keeps nothing that exists nowhere else: the records are in
//! PostgreSQL, and a node that finds a gap in what the bus carried (Redis
//! restarted, lost its tail, or was unreachable) reads the missing messages from
//! there (`cluster`).
//!
//! Each channel's messages go on a Redis Stream (`hearth:log:{key}`), capped at ten
//! windows, whose entry ids are the messages' numbers (`{seq}-1`), so a node reads
//! on from the last number it published, whatever Redis forgot meanwhile. Unlike
//! pub/sub, a node that loses its connection reads on from where it was.

mod feed;
#[cfg(test)]
use crate::server::store::test_port;
#[cfg(test)]
pub mod test_server;
#[cfg(test)]
mod tests;

pub use feed::{Changes, PresenceReport, ReadFrom};

use crate::protocol::{Channel, ChatMessage};
use crate::server::store::StoreError;
use redis::{Connection, RedisError, Script};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A stream of channel creations, so other nodes learn of new channels.
pub const EVENTS: &str = "hearth:events";
/// A stream of names given up, so every node lets go of the holder's tabs. Apart
/// from [`EVENTS`], so that renames never push channel creations out of the stream
/// before a node that was away has read them.
const RELEASES: &str = "hearth:releases";
/// Entries kept in [`EVENTS`] and [`RELEASES`].
const EVENTS_KEPT: usize = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed publish, how long this node leaves the bus alone: the other nodes
/// read what it stores meanwhile from PostgreSQL, and sends are not held up by a
/// Redis that does not answer.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Live nodes, scored by when each stops counting as alive unless it says so again.
const NODES: &str = "hearth:nodes";

/// The people in one room through one node; it expires unless the node renews it.
fn presence_key(node: &str, room: &str) -> String {
    format!("hearth:presence:{node}:{room}")
}

/// The stream carrying a channel's messages.
pub fn log_key(channel_key: &str) -> String {
    format!("hearth:log:{channel_key}")
}

/// How many windows of messages each channel's stream keeps: a node that falls
/// behind (a slow read, a reconnect) still finds most of what it has not read
/// there, and reads the rest from PostgreSQL.
const STREAM_WINDOWS: usize = 10;

/// Adds each message to its channel's stream under its number. A number at or
/// below the stream's newest is skipped, not an error: another node published a
/// later message first (its batch committed just after this one), and readers
/// fill such a gap from PostgreSQL.
const PUBLISH: &str = r"
local cap = ARGV[1]
for i = 2, #ARGV, 5 do
  redis.pcall('XADD', KEYS[(i - 2) / 5 + 1], 'MAXLEN', '~', cap, ARGV[i] .. '-1',
    'a', ARGV[i + 1], 't', ARGV[i + 2], 's', ARGV[i + 3], 'c', ARGV[i + 4])
end
return 0
";

pub struct RedisBus {
    client: redis::Client,
    /// One connection for publishing; reopened after a failure.
    connection: Mutex<Option<Connection>>,
    /// When publishing failed last, to rest from it for a moment.
    failed_at: Mutex<Option<Instant>>,
    window: usize,
    publish: Script,
}

impl RedisBus {
    /// Connects once to check the address; later failures reconnect as needed.
    pub fn open(url: &str, window: usize) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let bus = Self {
            client,
            connection: Mutex::new(None),
            failed_at: Mutex::new(None),
            window: window.max(1),
            publish: Script::new(PUBLISH),
        };
        bus.with_connection(|c| redis::cmd("PING").query::<String>(c))
            .map_err(|e| e.at("cannot reach Redis"))?;
        Ok(bus)
    }

    /// Tells the other nodes of stored messages (key of each message's channel).
    pub fn publish_messages(&self, messages: &[(&str, &ChatMessage)]) {
        if messages.is_empty() {
            return;
        }
        self.announce("messages", |c| {
            let mut call = self.publish.prepare_invoke();
            for (key, _) in messages {
                call.key(log_key(key));
            }
            call.arg(self.window * STREAM_WINDOWS);
            for (_, m) in messages {
                call.arg(m.seq)
                    .arg(&m.author)
                    .arg(&m.text)
                    .arg(m.sent_at)
                    .arg(&m.client_id);
            }
            call.invoke::<i64>(c).map(|_| ())
        });
    }

    /// Tells the other nodes of a channel created here.
    pub fn announce_channel(&self, key: &str, channel: &Channel) {
        self.announce("a new channel", |c| {
            event(EVENTS)
                .arg("channel")
                .arg(key)
                .arg("name")
                .arg(&channel.name)
                .arg("created_at")
                .arg(channel.created_at)
                .query::<String>(c)
                .map(|_| ())
        });
    }

    /// Tells the other nodes that the holder of `token_hash` no longer holds the
    /// name keyed `key`, so they let go of its tabs.
    pub fn announce_release(&self, key: &str, token_hash: &[u8]) {
        self.announce("a name given up", |c| {
            event(RELEASES)
                .arg("released")
                .arg(key)
                .arg("holder")
                .arg(hex(token_hash))
                .query::<String>(c)
                .map(|_| ())
        });
    }

    /// Runs `work` unless the bus failed a moment ago; a failure is logged, not
    /// returned: what was stored is stored, and the other nodes find it in
    /// PostgreSQL.
    fn announce(&self, what: &str, work: impl FnOnce(&mut Connection) -> Result<(), RedisError>) {
        let mut failed_at = self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        if failed_at.is_some_and(|at| at.elapsed() < REST_AFTER_FAILURE) {
            return;
        }
        match self.with_connection(work) {
            Ok(()) => *failed_at = None,
            Err(error) => {
                if failed_at.is_none() {
                    tracing::warn!(%error, "could not tell the other nodes of {what}; they read it from PostgreSQL");
                }
                *failed_at = Some(Instant::now());
            }
        }
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

/// An entry for `stream` (of [`EVENTS_KEPT`]), its fields to be added.
fn event(stream: &str) -> redis::Cmd {
    let mut add = redis::cmd("XADD");
    add.arg(stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(EVENTS_KEPT)
        .arg("*");
    add
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
