//! The in-memory store: fast, and gone when the process ends.

use super::{NewMessage, Replay, Store, StoreError};
use crate::protocol::{Channel, ChatMessage, Seq, channel_key};
use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

pub struct MemoryStore {
    history_limit: usize,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    /// Channel keys in creation order, for listing.
    order: Vec<String>,
    logs: HashMap<String, ChannelLog>,
}

struct ChannelLog {
    channel: Channel,
    messages: VecDeque<ChatMessage>,
    last_seq: Seq,
}

impl MemoryStore {
    /// A store that keeps the `history_limit` most recent messages per channel.
    pub fn new(history_limit: usize) -> Self {
        Self {
            history_limit: history_limit.max(1),
            state: RwLock::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock leaves data that is still consistent (every
        // mutation below is a single step), so a poisoned lock is safe to reuse.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn channels(&self) -> Vec<Channel> {
        let state = self.read();
        state
            .order
            .iter()
            .map(|key| state.logs[key].channel.clone())
            .collect()
    }

    fn channel(&self, key: &str) -> Option<Channel> {
        self.read().logs.get(key).map(|log| log.channel.clone())
    }

    fn create_channel(&self, name: &str, created_at: i64) -> Result<Channel, StoreError> {
        let key = channel_key(name);
        let mut state = self.write();
        if let Some(existing) = state.logs.get(&key) {
            return Err(StoreError::ChannelExists(existing.channel.name.clone()));
        }
        let channel = Channel {
            name: name.to_owned(),
            created_at,
        };
        state.order.push(key.clone());
        state.logs.insert(
            key,
            ChannelLog {
                channel: channel.clone(),
                messages: VecDeque::with_capacity(self.history_limit),
                last_seq: 0,
            },
        );
        Ok(channel)
    }

    fn append(&self, key: &str, message: NewMessage) -> Result<ChatMessage, StoreError> {
        let mut state = self.write();
        let log = state
            .logs
            .get_mut(key)
            .ok_or_else(|| StoreError::NoSuchChannel(key.to_owned()))?;
        log.last_seq += 1;
        let stored = ChatMessage {
            channel: log.channel.name.clone(),
            seq: log.last_seq,
            author: message.author,
            text: message.text,
            sent_at: message.sent_at,
            client_id: message.client_id,
        };
        if log.messages.len() == self.history_limit {
            log.messages.pop_front();
        }
        log.messages.push_back(stored.clone());
        Ok(stored)
    }

    fn replay(&self, key: &str, since: Option<Seq>) -> Result<Replay, StoreError> {
        let state = self.read();
        let log = state
            .logs
            .get(key)
            .ok_or_else(|| StoreError::NoSuchChannel(key.to_owned()))?;
        let oldest_kept = log.messages.front().map_or(log.last_seq + 1, |m| m.seq);
        match since {
            // Everything after `since` is still here (and `since` is not from the
            // future, which would mean the client saw a different history).
            Some(since) if since + 1 >= oldest_kept && since <= log.last_seq => Ok(Replay {
                messages: log
                    .messages
                    .iter()
                    .filter(|m| m.seq > since)
                    .cloned()
                    .collect(),
                reset: false,
            }),
            _ => Ok(Replay {
                messages: log.messages.iter().cloned().collect(),
                reset: true,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> NewMessage {
        NewMessage {
            author: "ada".into(),
            text: text.into(),
            sent_at: 1,
            client_id: text.into(),
        }
    }

    fn store_with_messages(limit: usize, count: usize) -> MemoryStore {
        let store = MemoryStore::new(limit);
        store.create_channel("General", 0).unwrap();
        for i in 1..=count {
            store.append("general", message(&format!("m{i}"))).unwrap();
        }
        store
    }

    #[test]
    fn history_keeps_only_the_most_recent() {
        let store = store_with_messages(100, 150);
        let replay = store.replay("general", None).unwrap();
        assert!(replay.reset);
        assert_eq!(replay.messages.len(), 100);
        assert_eq!(replay.messages.first().unwrap().text, "m51");
        assert_eq!(replay.messages.last().unwrap().text, "m150");
        let seqs: Vec<_> = replay.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (51..=150).collect::<Vec<_>>());
    }

    #[test]
    fn names_conflict_case_insensitively() {
        let store = MemoryStore::new(10);
        store.create_channel("General", 0).unwrap();
        assert_eq!(
            store.create_channel("gENERAL", 1),
            Err(StoreError::ChannelExists("General".into()))
        );
        assert_eq!(store.channels().len(), 1);
        assert!(store.channel("general").is_some());
    }

    #[test]
    fn replay_since_gives_exactly_what_followed() {
        let store = store_with_messages(10, 25);
        let replay = store.replay("general", Some(20)).unwrap();
        assert!(!replay.reset);
        let seqs: Vec<_> = replay.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![21, 22, 23, 24, 25]);
        // Up to date: nothing, and no reset.
        let replay = store.replay("general", Some(25)).unwrap();
        assert!(!replay.reset && replay.messages.is_empty());
        // The oldest kept is 16, so since 15 is still exact.
        assert!(!store.replay("general", Some(15)).unwrap().reset);
    }

    #[test]
    fn replay_beyond_the_window_resets() {
        let store = store_with_messages(10, 25);
        let replay = store.replay("general", Some(3)).unwrap();
        assert!(replay.reset);
        assert_eq!(replay.messages.len(), 10);
        // A number the channel never reached also resets.
        assert!(store.replay("general", Some(99)).unwrap().reset);
    }

    #[test]
    fn unknown_channels_are_errors() {
        let store = MemoryStore::new(10);
        assert_eq!(
            store.append("nope", message("x")).unwrap_err(),
            StoreError::NoSuchChannel("nope".into())
        );
        assert!(store.replay("nope", None).is_err());
    }
}
