//! A node's view of the rest of the cluster through the bus: the streams of channel
//! creations, names given up and messages, read on from cursors (`read_changes`),
//! and presence, written and read every second (`sync_presence`).

use super::{EVENTS, NODES, RELEASES, RedisBus, backend, log_key, presence_key, unhex};
use crate::protocol::{Channel, ChatMessage, Seq};
use crate::server::store::StoreError;
use redis::{Connection, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

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

impl RedisBus {
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
                for (id, fields) in entries {
                    changes.events_cursor = Some(id);
                    if let (Some(key), Some(name), Some(created_at)) = (
                        field(&fields, "channel"),
                        field(&fields, "name"),
                        field(&fields, "created_at").and_then(|at| at.parse().ok()),
                    ) {
                        changes.channels.push((key, Channel { name, created_at }));
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
}

/// Where reading the cluster's streams goes on from.
pub struct ReadFrom<'a> {
    /// The last channel creation read; `None` reads them all.
    pub events: Option<&'a str>,
    /// The last name release read ([`RedisBus::latest_release`] at first).
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

impl RedisBus {
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

pub(super) fn entries(value: &Value) -> Vec<Entry> {
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
pub(super) fn message_from(
    channel: &str,
    id: &str,
    fields: &[(String, String)],
) -> Option<ChatMessage> {
    Some(ChatMessage {
        channel: channel.to_owned(),
        seq: id.split('-').next()?.parse().ok()?,
        author: field(fields, "a")?,
        text: field(fields, "t")?,
        sent_at: field(fields, "s")?.parse().ok()?,
        client_id: field(fields, "c")?,
    })
}
