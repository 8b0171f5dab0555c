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

use super::{Appended, ChannelLog, Claimed, NameClaim, NewChannel, NewMessage, Store, StoreError};
use crate::protocol::{Channel, ChatMessage, Seq};
use crate::server::name_key::{Held, NAME_KEY_VERSION, name_key, rekey, report_freed};
use redis::{Connection, RedisError, Script, Value};
use std::collections::{BTreeSet, HashMap};
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
/// How long a send's client id is remembered, to store a retried send once.
const SENT_REMEMBERED_SECS: u64 = 7 * 24 * 3600;
/// A name's last use is written at most this often.
const LAST_SEEN_RESOLUTION_MS: i64 = 3_600_000;
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

/// KEYS: channels, creation order, events, looks. ARGV: channel key, channel JSON,
/// look key, most channels. Returns 1 and the JSON; 0 and the JSON of the channel
/// that has the key or the look; or 2 when there are as many channels as there
/// may be.
const CREATE_CHANNEL: &str = r"
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {0, existing} end
local twin = redis.call('HGET', KEYS[4], ARGV[3])
local twin_channel = twin and redis.call('HGET', KEYS[1], twin)
if twin_channel then return {0, twin_channel} end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return {2, ''} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'channel', ARGV[1])
return {1, ARGV[2]}
";

/// How many windows of messages each channel's stream keeps: a node that falls
/// behind (a slow read, a reconnect) still finds the messages it has not read,
/// where a stream of one window lost them once 100 came meanwhile.
const STREAM_WINDOWS: usize = 10;

/// ARGV: stream length, seconds to remember a send, then per message its channel key,
/// author, text, time and client id. Returns per message: 1, the new number and the
/// channel's name; 2, the number it was stored under before, and the name; or 0 when
/// the channel does not exist. The name comes back with the numbers so publishing
/// needs no second round trip.
const APPEND: &str = r"
local out = {}
for i = 3, #ARGV, 5 do
  local key, author, text, sent_at, cid = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  local channel = redis.call('HGET', KEYS[1], key)
  if not channel then
    out[#out+1] = {0, 0, ''}
  else
    local name = cjson.decode(channel)['name']
    local sent = 'hearth:sent:' .. key .. ':' .. #author .. ':' .. author .. cid
    local prior = redis.call('GET', sent)
    if prior then
      out[#out+1] = {2, tonumber(prior), name}
    else
      local log, counter = 'hearth:log:' .. key, 'hearth:seq:' .. key
      local seq = redis.call('INCR', counter)
      -- Never behind the stream: a counter lost (evicted, or not yet on disk when
      -- Redis stopped) would reuse numbers, and the add below would fail for ever.
      local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
      if top then
        local newest = tonumber(string.match(top[1], '^(%d+)'))
        if seq <= newest then
          seq = newest + 1
          redis.call('SET', counter, seq)
        end
      end
      redis.call('XADD', log, 'MAXLEN', ARGV[1], seq .. '-1',
        'a', author, 't', text, 's', sent_at, 'c', cid)
      redis.call('SET', sent, seq, 'EX', ARGV[2])
      out[#out+1] = {1, seq, name}
    end
  end
end
return out
";

/// Names are kept as "token hash|last use|name as held". KEYS: names, releases.
/// ARGV: name key, name, token hash, now, idle expiry. Returns 1, the name as held
/// and the token hash of the holder it was taken from (empty if none), or 0. A
/// name taken over is announced as given up by its holder, so every node lets go
/// of their tabs. (The same decision as `decide_claim`.)
const CLAIM_NAME: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
local name = ARGV[2]
local displaced = ''
if current then
  local hash, seen, held = string.match(current, '^([^|]*)|([^|]*)|(.*)$')
  if hash == ARGV[3] then
    name = held
  elseif tonumber(ARGV[4]) - tonumber(seen) < tonumber(ARGV[5]) then
    return {0, held, ''}
  else
    displaced = hash
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'released', ARGV[1], 'holder', hash)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. '|' .. ARGV[4] .. '|' .. name)
return {1, name, displaced}
";

const HOLDS_NAME: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return false end
local hash, seen, held = string.match(current, '^([^|]*)|([^|]*)|(.*)$')
if hash ~= ARGV[2] then return false end
if tonumber(ARGV[3]) - tonumber(seen) >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], ARGV[1], hash .. '|' .. ARGV[3] .. '|' .. held)
end
return held
";

/// KEYS: names, releases. ARGV: name key, token hash. Every node hears of the
/// release (`read_changes`), to let go of the holder's tabs connected to it.
const RELEASE_NAME: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or string.sub(current, 1, #ARGV[2] + 1) ~= ARGV[2] .. '|' then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'released', ARGV[1], 'holder', ARGV[2])
return 1
";

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

/// What other nodes (or this one) added since the cursors.
#[derive(Debug, Default)]
pub struct Changes {
    /// Channels created, by key.
    pub channels: Vec<(String, Channel)>,
    /// Messages stored, by channel key, in order within each channel.
    pub messages: Vec<(String, ChatMessage)>,
    /// Names given up: the name key, and the hash of the token that held it.
    pub released: Vec<(String, Vec<u8>)>,
    /// The last release read, to read on from.
    pub releases_cursor: Option<String>,
    /// The last event read, to read on from.
    pub events_cursor: Option<String>,
}

impl RedisStore {
    /// Connects once to check the address; later failures reconnect as needed.
    pub fn open(url: &str, history: usize) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let store = Self {
            client,
            connection: Mutex::new(None),
            history: history.max(1),
            create_channel: Script::new(CREATE_CHANNEL),
            append: Script::new(APPEND),
            claim_name: Script::new(CLAIM_NAME),
            holds_name: Script::new(HOLDS_NAME),
            release_name: Script::new(RELEASE_NAME),
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

    /// Waits up to `block` for anything new after the cursors: channel creations,
    /// names given up, and each channel's messages.
    pub fn read_changes(
        &self,
        connection: &mut Connection,
        from: &ReadFrom<'_>,
        block: Duration,
    ) -> Result<Changes, StoreError> {
        let mut read = redis::cmd("XREAD");
        read.arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(EVENTS)
            .arg(RELEASES);
        for (key, _, _) in from.channels {
            read.arg(log_key(key));
        }
        read.arg(from.events.unwrap_or("0-0")).arg(from.releases);
        for (_, _, after) in from.channels {
            read.arg(format!("{after}-1"));
        }
        let reply: Value = read.query(connection).map_err(backend)?;
        let mut changes = Changes::default();
        for (stream, entries) in streams(reply) {
            if stream == EVENTS {
                let mut created = Vec::new();
                for (id, fields) in entries {
                    changes.events_cursor = Some(id);
                    if let Some(key) = field(&fields, "channel") {
                        created.push(key);
                    }
                }
                for key in created {
                    let json: Option<String> = redis::cmd("HGET")
                        .arg(CHANNELS)
                        .arg(&key)
                        .query(connection)
                        .map_err(backend)?;
                    if let Some(channel) = json.and_then(|j| serde_json::from_str(&j).ok()) {
                        changes.channels.push((key, channel));
                    }
                }
                continue;
            }
            if stream == RELEASES {
                for (id, fields) in entries {
                    changes.releases_cursor = Some(id);
                    if let (Some(key), Some(holder)) =
                        (field(&fields, "released"), field(&fields, "holder"))
                        && let Some(token_hash) = unhex(&holder)
                    {
                        changes.released.push((key, token_hash));
                    }
                }
                continue;
            }
            let Some(key) = stream.strip_prefix("hearth:log:") else {
                continue;
            };
            let Some((_, name, _)) = from.channels.iter().find(|(k, _, _)| k == key) else {
                continue;
            };
            for (id, fields) in entries {
                if let Some(message) = message_from(name, &id, &fields) {
                    changes.messages.push((key.to_owned(), message));
                }
            }
        }
        Ok(changes)
    }

    /// Where a node that starts now reads releases on from: the names given up
    /// before it started concern no tab of it.
    pub fn latest_release(&self, connection: &mut Connection) -> Result<String, StoreError> {
        let newest: Vec<Value> = redis::cmd("XREVRANGE")
            .arg(RELEASES)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(connection)
            .map_err(backend)?;
        Ok(newest
            .first()
            .and_then(entry)
            .map_or_else(|| "0-0".to_owned(), |(id, _)| id))
    }

    /// Whether `token_hash` holds the name keyed `key` now: a browser may take a
    /// name back before every node has read that it gave it up.
    pub fn holds_now(
        &self,
        connection: &mut Connection,
        key: &str,
        token_hash: &[u8],
    ) -> Result<bool, StoreError> {
        let current: Option<String> = redis::cmd("HGET")
            .arg(NAMES)
            .arg(key)
            .query(connection)
            .map_err(backend)?;
        Ok(current.is_some_and(|held| held.starts_with(&format!("{}|", hex(token_hash)))))
    }
}

/// Where reading the cluster's streams goes on from.
pub struct ReadFrom<'a> {
    /// The last channel creation read; `None` reads them all.
    pub events: Option<&'a str>,
    /// The last name release read ([`RedisStore::latest_release`] at first).
    pub releases: &'a str,
    /// Each channel's key, name and last number published.
    pub channels: &'a [(String, String, Seq)],
}

/// What one node says about its presence.
pub struct PresenceReport<'a> {
    pub node: &'a str,
    /// Who is in each room through this node.
    pub here: &'a [(String, Vec<String>)],
    /// Rooms this node reported before and has nobody in now.
    pub left_rooms: &'a [String],
    /// How long the report holds unless renewed.
    pub ttl: Duration,
    pub now_ms: i64,
}

impl RedisStore {
    /// Publishes who is in each room through the reporting node (replacing what it
    /// said before), keeps the node alive for the report's TTL, and returns who is
    /// in each of `rooms` through the other live nodes. A node that stops renewing
    /// (killed, cut off) drops out of everyone's presence within the TTL.
    pub fn sync_presence(
        &self,
        connection: &mut Connection,
        report: &PresenceReport<'_>,
        rooms: &[String],
    ) -> Result<HashMap<String, BTreeSet<String>>, StoreError> {
        let PresenceReport {
            node,
            here,
            left_rooms,
            ttl,
            now_ms,
        } = *report;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut write = redis::pipe();
        write.atomic();
        write
            .cmd("ZADD")
            .arg(NODES)
            .arg(now_ms.saturating_add(ttl_ms))
            .arg(node)
            .ignore();
        write
            .cmd("ZREMRANGEBYSCORE")
            .arg(NODES)
            .arg("-inf")
            .arg(now_ms)
            .ignore();
        for (room, people) in here.iter() {
            let key = presence_key(node, room);
            write.cmd("DEL").arg(&key).ignore();
            write.cmd("SADD").arg(&key).arg(people).ignore();
            write.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
        }
        for room in left_rooms.iter() {
            write.cmd("DEL").arg(presence_key(node, room)).ignore();
        }
        write
            .cmd("ZRANGEBYSCORE")
            .arg(NODES)
            .arg(now_ms)
            .arg("+inf");
        let (alive,): (Vec<String>,) = write.query(connection).map_err(backend)?;
        let others: Vec<&String> = alive.iter().filter(|n| n.as_str() != node).collect();
        if others.is_empty() || rooms.is_empty() {
            return Ok(rooms.iter().map(|r| (r.clone(), BTreeSet::new())).collect());
        }
        let mut read = redis::pipe();
        for room in rooms {
            read.cmd("SUNION");
            for other in &others {
                read.arg(presence_key(other, room));
            }
        }
        let sets: Vec<BTreeSet<String>> = read.query(connection).map_err(backend)?;
        Ok(rooms.iter().cloned().zip(sets).collect())
    }

    /// Takes `node` out of the cluster's presence at once (a clean stop).
    pub fn forget_node(&self, node: &str, rooms: &[String]) -> Result<(), StoreError> {
        self.with_connection(|c| {
            let mut forget = redis::pipe();
            forget.cmd("ZREM").arg(NODES).arg(node).ignore();
            for room in rooms {
                forget.cmd("DEL").arg(presence_key(node, room)).ignore();
            }
            forget.query::<()>(c)
        })
    }
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

type Entry = (String, Vec<(String, String)>);

/// A stream entry: its id and its fields.
fn entry(value: &Value) -> Option<Entry> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [id, Value::Array(raw)] = parts.as_slice() else {
        return None;
    };
    let fields = raw
        .chunks(2)
        .filter_map(|pair| Some((text(pair.first()?)?, text(pair.get(1)?)?)))
        .collect();
    Some((text(id)?, fields))
}

fn entries(value: &Value) -> Vec<Entry> {
    match value {
        Value::Array(items) => items.iter().filter_map(entry).collect(),
        _ => Vec::new(),
    }
}

/// The streams of an XREAD reply with their entries.
fn streams(reply: Value) -> Vec<(String, Vec<Entry>)> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => {
                    let mut pair = pair.into_iter();
                    Some((pair.next()?, pair.next()?))
                }
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs,
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(name, items)| Some((text(&name)?, entries(&items))))
        .collect()
}

fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// A message from its stream entry (id "seq-1").
fn message_from(channel: &str, id: &str, fields: &[(String, String)]) -> Option<ChatMessage> {
    Some(ChatMessage {
        channel: channel.to_owned(),
        seq: id.split('-').next()?.parse().ok()?,
        author: field(fields, "a")?,
        text: field(fields, "t")?,
        sent_at: field(fields, "s")?.parse().ok()?,
        client_id: field(fields, "c")?,
    })
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

impl Store for RedisStore {
    fn load(&self) -> Result<Vec<ChannelLog>, StoreError> {
        self.with_connection(|c| {
            let order: Vec<String> = redis::cmd("LRANGE")
                .arg(CHANNEL_ORDER)
                .arg(0)
                .arg(-1)
                .query(c)?;
            let mut logs = Vec::with_capacity(order.len());
            for key in order {
                let json: Option<String> = redis::cmd("HGET").arg(CHANNELS).arg(&key).query(c)?;
                let Some(channel) = json.and_then(|j| serde_json::from_str::<Channel>(&j).ok())
                else {
                    continue;
                };
                // Atomic, or a message stored between the two could be in the
                // window and counted after `last_seq` too, and shown twice.
                let (last_seq, newest_first): (Option<Seq>, Value) = redis::pipe()
                    .atomic()
                    .cmd("GET")
                    .arg(format!("hearth:seq:{key}"))
                    .cmd("XREVRANGE")
                    .arg(log_key(&key))
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(self.history)
                    .query(c)?;
                let mut recent: Vec<ChatMessage> = entries(&newest_first)
                    .iter()
                    .filter_map(|(id, fields)| message_from(&channel.name, id, fields))
                    .collect();
                recent.reverse();
                logs.push(ChannelLog {
                    channel,
                    last_seq: last_seq.unwrap_or(0),
                    recent,
                });
            }
            Ok(logs)
        })
    }

    fn create_channel_within(
        &self,
        new: &NewChannel,
        max_channels: usize,
    ) -> Result<Channel, StoreError> {
        let channel = new.channel();
        let json = serde_json::to_string(&channel).map_err(backend)?;
        let (created, stored): (i64, String) = self.with_connection(|c| {
            self.create_channel
                .key(CHANNELS)
                .key(CHANNEL_ORDER)
                .key(EVENTS)
                .key(CHANNEL_LOOKS)
                .arg(&new.key)
                .arg(&json)
                .arg(&new.look)
                .arg(max_channels)
                .invoke(c)
        })?;
        match created {
            1 => return Ok(channel),
            2 => return Err(StoreError::TooManyChannels(max_channels)),
            _ => {}
        }
        let existing: Channel = serde_json::from_str(&stored).map_err(backend)?;
        Err(StoreError::ChannelExists(existing.name))
    }

    fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let results: Vec<(i64, i64, String)> = self.with_connection(|c| {
            let mut call = self.append.key(CHANNELS);
            call.arg(self.history * STREAM_WINDOWS)
                .arg(SENT_REMEMBERED_SECS);
            for m in &batch {
                call.arg(&m.channel_key)
                    .arg(&m.author)
                    .arg(&m.text)
                    .arg(m.sent_at)
                    .arg(&m.client_id);
            }
            call.invoke(c)
        })?;
        if results.len() != batch.len() {
            return Err(backend("Redis answered an append with the wrong count"));
        }
        Ok(batch
            .into_iter()
            .zip(results)
            .map(|(m, (outcome, seq, channel))| {
                let seq = seq.max(0) as Seq;
                match outcome {
                    1 => Appended::New {
                        message: ChatMessage {
                            channel,
                            seq,
                            author: m.author,
                            text: m.text,
                            sent_at: m.sent_at,
                            client_id: m.client_id,
                        },
                        channel_key: m.channel_key,
                    },
                    2 => Appended::Duplicate {
                        channel_key: m.channel_key,
                        seq,
                        client_id: m.client_id,
                    },
                    _ => Appended::Refused {
                        error: StoreError::NoSuchChannel(m.channel_key),
                        client_id: m.client_id,
                    },
                }
            })
            .collect())
    }

    fn claim_name(&self, claim: &NameClaim, idle_expiry_ms: i64) -> Result<Claimed, StoreError> {
        let (granted, name, displaced): (i64, String, String) = self.with_connection(|c| {
            self.claim_name
                .key(NAMES)
                .key(RELEASES)
                .arg(&claim.key)
                .arg(&claim.name)
                .arg(hex(&claim.token_hash))
                .arg(claim.now)
                .arg(idle_expiry_ms)
                .invoke(c)
        })?;
        if granted == 1 {
            Ok(Claimed {
                name,
                displaced: unhex(&displaced).filter(|hash| !hash.is_empty()),
            })
        } else {
            Err(StoreError::NameTaken(claim.name.clone()))
        }
    }

    fn holds_name(
        &self,
        key: &str,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        self.with_connection(|c| {
            self.holds_name
                .key(NAMES)
                .arg(key)
                .arg(hex(token_hash))
                .arg(now)
                .arg(LAST_SEEN_RESOLUTION_MS)
                .invoke(c)
        })
    }

    fn release_name(&self, key: &str, token_hash: &[u8]) -> Result<bool, StoreError> {
        let released: i64 = self.with_connection(|c| {
            self.release_name
                .key(NAMES)
                .key(RELEASES)
                .arg(key)
                .arg(hex(token_hash))
                .invoke(c)
        })?;
        Ok(released == 1)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with_connection(|c| redis::cmd("PING").query::<String>(c).map(drop))
    }
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

#[cfg(test)]
#[path = "../../../tests/common/redis_server.rs"]
#[allow(dead_code)] // The integration tests use all of it; these tests, part.
mod redis_server;

#[cfg(test)]
mod tests {
    use super::redis_server::Redis;
    use super::*;
    use crate::protocol::channel_key;
    use crate::server::store::contract::{self, send};

    fn store(redis: &Redis, history: usize) -> RedisStore {
        RedisStore::open(&redis.url(), history).expect("redis answers")
    }

    /// Reading from the channel creations after `events` (no releases).
    fn from<'a>(events: Option<&'a str>, channels: &'a [(String, String, Seq)]) -> ReadFrom<'a> {
        ReadFrom {
            events,
            releases: "$",
            channels,
        }
    }

    #[test]
    fn a_name_given_up_is_told_to_the_nodes_that_started_before() {
        use crate::server::name_key::name_key;
        let redis = Redis::start();
        let store = store(&redis, 10);
        let mut reader = store.connect(Duration::from_secs(5)).unwrap();
        let claim = |token_hash: &[u8]| NameClaim {
            key: name_key("Ada"),
            name: "Ada".into(),
            token_hash: token_hash.to_vec(),
            now: 1,
        };
        store.claim_name(&claim(b"ada's browser"), 1_000).unwrap();
        // A node starting now reads on from here: earlier releases are not its.
        let started = store.latest_release(&mut reader).unwrap();
        assert_eq!(started, "0-0");
        assert!(
            !store
                .release_name(&name_key("Ada"), b"someone else")
                .unwrap()
        );
        assert!(
            store
                .release_name(&name_key("Ada"), b"ada's browser")
                .unwrap()
        );
        let releases = ReadFrom {
            events: Some("$"),
            releases: &started,
            channels: &[],
        };
        let changes = store
            .read_changes(&mut reader, &releases, Duration::from_millis(10))
            .unwrap();
        assert_eq!(
            changes.released,
            [(name_key("Ada"), b"ada's browser".to_vec())]
        );
        let cursor = changes.releases_cursor.unwrap();
        assert_eq!(store.latest_release(&mut reader).unwrap(), cursor);
        // Taken back by the same browser before a node read the release: it holds
        // the name again, and its tabs are rightly there.
        assert!(
            !store
                .holds_now(&mut reader, &name_key("Ada"), b"ada's browser")
                .unwrap()
        );
        store.claim_name(&claim(b"ada's browser"), 1_000).unwrap();
        assert!(
            store
                .holds_now(&mut reader, &name_key("Ada"), b"ada's browser")
                .unwrap()
        );
        assert!(
            !store
                .holds_now(&mut reader, &name_key("Ada"), b"another")
                .unwrap()
        );
    }

    #[test]
    fn channels_are_capped() {
        let redis = Redis::start();
        contract::channels_are_capped(&store(&redis, 10));
    }

    #[test]
    fn channels_that_look_alike_conflict() {
        let redis = Redis::start();
        contract::channels_that_look_alike_conflict(&store(&redis, 10));
    }

    #[test]
    fn messages_are_numbered_and_repeats_stored_once() {
        let redis = Redis::start();
        contract::messages_are_numbered_and_repeats_stored_once(&store(&redis, 10));
    }

    #[test]
    fn only_the_window_is_kept() {
        let redis = Redis::start();
        contract::only_the_window_is_kept(&store(&redis, 10));
    }

    #[test]
    fn token_hashes_come_back_from_their_hex() {
        let hash = [0x00, 0x9f, 0xff, 0x10];
        assert_eq!(unhex(&hex(&hash)), Some(hash.to_vec()));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn channels_from_before_the_look_index_are_indexed_at_start() {
        let redis = Redis::start();
        let older = store(&redis, 10);
        older.create_channel("General", 1).unwrap();
        older.create_channel("Rust", 2).unwrap();
        // As older nodes left them: no index of looks, and a look-alike of Rust
        // created after it.
        let mut raw = redis::Client::open(redis.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let twin = Channel {
            name: "R\u{3c5}st".into(),
            created_at: 3,
        };
        assert_eq!(name_key(&twin.name), name_key("Rust"), "a look-alike");
        redis::pipe()
            .del(CHANNEL_LOOKS)
            .hset(
                CHANNELS,
                channel_key(&twin.name),
                serde_json::to_string(&twin).unwrap(),
            )
            .rpush(CHANNEL_ORDER, channel_key(&twin.name))
            .exec(&mut raw)
            .unwrap();

        let store = store(&redis, 10);
        let exists = |name: &str| Err(StoreError::ChannelExists(name.into()));
        assert_eq!(store.create_channel("G\u{435}neral", 4), exists("General"));
        // Of the two that look alike, the older answers.
        assert_eq!(store.create_channel("Ｒust", 5), exists("Rust"));
        assert_eq!(
            contract::channel_names(&store),
            ["General", "Rust", "R\u{3c5}st"]
        );
    }

    #[test]
    fn names_kept_by_lower_case_are_keyed_by_look_once() {
        use crate::server::name_key::name_key;
        let redis = Redis::start();
        let mut raw = redis::Client::open(redis.url())
            .unwrap()
            .get_connection()
            .unwrap();
        // As older nodes kept them: keyed by lower case, and no key version.
        let older = [
            ("ada", "aa|10|Ada"),
            ("\u{430}da", "cc|20|\u{410}da"),
            ("grace", "bb|5|Gr|ace"),
        ];
        for (key, value) in older {
            redis::cmd("HSET")
                .arg(NAMES)
                .arg(key)
                .arg(value)
                .exec(&mut raw)
                .unwrap();
        }
        let store = store(&redis, 10);
        let held = |name: &str, hash: &[u8]| store.holds_name(&name_key(name), hash, 30).unwrap();
        assert_eq!(held("Ada", &[0xcc]), Some("\u{410}da".to_owned()));
        assert_eq!(
            held("Ada", &[0xaa]),
            None,
            "the less recently used look-alike"
        );
        assert_eq!(held("gr|ace", &[0xbb]), Some("Gr|ace".to_owned()));

        // Done once: a name claimed under an old key later is left alone.
        redis::cmd("HSET")
            .arg(NAMES)
            .arg("zoe")
            .arg("dd|40|Zoe")
            .exec(&mut raw)
            .unwrap();
        drop(store);
        let again = RedisStore::open(&redis.url(), 10).unwrap();
        let count: usize = redis::cmd("HLEN").arg(NAMES).query(&mut raw).unwrap();
        assert_eq!(count, 3);
        assert_eq!(
            again.holds_name("zoe", &[0xdd], 50).unwrap(),
            Some("Zoe".to_owned())
        );
    }

    #[test]
    fn names_are_held_by_their_token() {
        let redis = Redis::start();
        contract::names_are_held_by_their_token(&store(&redis, 10));
    }

    #[test]
    fn redis_without_its_append_only_file_is_warned_of() {
        assert_eq!(durability_warning(Some("yes"), Some("always")), None);
        assert_eq!(durability_warning(Some("yes"), Some("everysec")), None);
        for (appendonly, appendfsync, says) in [
            (Some("no"), Some("everysec"), "appendonly no"),
            (Some("yes"), Some("no"), "appendfsync no"),
            (None, None, "CONFIG refused"),
        ] {
            let warning = durability_warning(appendonly, appendfsync).expect("a warning");
            assert!(warning.contains(says), "{warning}");
        }
    }

    #[test]
    fn numbering_goes_on_from_the_stream_when_the_counter_is_lost() {
        let redis = Redis::start();
        let store = store(&redis, 10);
        store.create_channel("General", 1).unwrap();
        store.append((1..=3).map(send).collect()).unwrap();
        store
            .with_connection(|c| redis::cmd("DEL").arg("hearth:seq:general").query::<i64>(c))
            .unwrap();
        let outcomes = store.append(vec![send(4), send(5)]).unwrap();
        let seqs: Vec<Seq> = outcomes
            .iter()
            .map(|o| match o {
                Appended::New { message, .. } => message.seq,
                other => panic!("stored anew, not {other:?}"),
            })
            .collect();
        assert_eq!(seqs, [4, 5]);
        let window = store.load().unwrap().remove(0);
        assert_eq!(window.last_seq, 5);
        assert_eq!(
            window.recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn a_node_behind_by_more_than_a_window_still_reads_every_message() {
        let redis = Redis::start();
        let store = store(&redis, 10);
        let mut reader = store.connect(Duration::from_secs(5)).unwrap();
        store.create_channel("General", 1).unwrap();
        store.append((1..=35).map(send).collect()).unwrap();
        let watched = [("general".to_owned(), "General".to_owned(), 0)];
        let changes = store
            .read_changes(
                &mut reader,
                &from(None, &watched),
                Duration::from_millis(10),
            )
            .unwrap();
        let seqs: Vec<Seq> = changes.messages.iter().map(|(_, m)| m.seq).collect();
        assert_eq!(seqs, (1..=35).collect::<Vec<_>>());
        // Joining still shows one window.
        assert_eq!(store.load().unwrap()[0].recent.len(), 10);
    }

    #[test]
    fn changes_are_read_on_from_the_cursors() {
        let redis = Redis::start();
        let store = store(&redis, 10);
        let mut reader = store.connect(Duration::from_secs(5)).unwrap();
        let general = store.create_channel("General", 1).unwrap();
        let changes = store
            .read_changes(&mut reader, &from(None, &[]), Duration::from_millis(10))
            .unwrap();
        assert_eq!(changes.channels, vec![("general".into(), general.clone())]);
        let cursor = changes.events_cursor.unwrap();
        let send = |client_id: &str| NewMessage {
            channel_key: "general".into(),
            author: "ada".into(),
            text: format!("hello {client_id}"),
            sent_at: 5,
            client_id: client_id.into(),
        };
        store.append(vec![send("a"), send("b"), send("c")]).unwrap();
        let watched = [("general".to_owned(), "General".to_owned(), 1)];
        let changes = store
            .read_changes(
                &mut reader,
                &from(Some(&cursor), &watched),
                Duration::from_millis(10),
            )
            .unwrap();
        assert!(changes.channels.is_empty());
        let seqs: Vec<(String, Seq, String)> = changes
            .messages
            .into_iter()
            .map(|(k, m)| (k, m.seq, m.text))
            .collect();
        assert_eq!(
            seqs,
            vec![
                ("general".into(), 2, "hello b".into()),
                ("general".into(), 3, "hello c".into())
            ]
        );
    }
}
