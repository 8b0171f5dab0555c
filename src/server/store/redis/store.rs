//! The cluster's records in Redis, as every store keeps them: channels, messages
//! and names, each change made by one script call.

use super::feed::{entries, message_from};
use super::{
    CHANNEL_LOOKS, CHANNEL_ORDER, CHANNELS, EVENTS, NAMES, RELEASES, RedisStore, STREAM_WINDOWS,
    backend, hex, log_key, unhex,
};
use crate::protocol::{Channel, ChatMessage, HistoryPage, HistoryRange, Seq};
use crate::server::store::{
    Appended, ChannelLog, Claimed, NameClaim, NewChannel, NewMessage, Store, StoreError, policy,
};
use redis::Value;

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
                .arg(policy::SEND_ID_RETENTION_MS / 1000);
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
            return Err(StoreError::backend(
                "Redis answered an append with the wrong count",
            ));
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
                .arg(policy::LAST_SEEN_RESOLUTION_MS)
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

    /// From the channel's stream, which keeps its latest `history` messages: until
    /// the cluster keeps its records in a database, that window is its history.
    fn history(
        &self,
        channel_key: &str,
        range: HistoryRange,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        // Entries are numbered `{seq}-1`; one more than asked says whether there is
        // more. Exclusive bounds are Redis 6.2's `(`.
        let (command, from, to) = match range {
            HistoryRange::Latest => ("XREVRANGE", "+".to_owned(), "-".to_owned()),
            HistoryRange::Before(seq) => ("XREVRANGE", format!("({seq}-0"), "-".to_owned()),
            HistoryRange::After(seq) => ("XRANGE", format!("({seq}-1"), "+".to_owned()),
        };
        // The channel and its page in one round trip.
        let (channel, found): (Option<String>, Value) = self.with_connection(|c| {
            redis::pipe()
                .cmd("HGET")
                .arg(CHANNELS)
                .arg(channel_key)
                .cmd(command)
                .arg(log_key(channel_key))
                .arg(from)
                .arg(to)
                .arg("COUNT")
                .arg(limit + 1)
                .query(c)
        })?;
        let Some(channel) = channel.and_then(|j| serde_json::from_str::<Channel>(&j).ok()) else {
            return Err(StoreError::NoSuchChannel(channel_key.to_owned()));
        };
        let mut messages: Vec<ChatMessage> = entries(&found)
            .iter()
            .filter_map(|(id, fields)| message_from(&channel.name, id, fields))
            .collect();
        let more = messages.len() > limit;
        messages.truncate(limit);
        if command == "XREVRANGE" {
            messages.reverse();
        }
        Ok(HistoryPage { messages, more })
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with_connection(|c| redis::cmd("PING").query::<String>(c).map(drop))
    }
}
