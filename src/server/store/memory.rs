//! The in-memory store: the same rules as the durable one, kept nowhere. It holds
//! each channel's window only (its history is that window); repeated sends are
//! recognised while their message is within it.

use super::{Appended, ChannelLog, Claimed, NameClaim, NewChannel, NewMessage, Store, StoreError};
use crate::protocol::{Channel, ChatMessage, HistoryPage, HistoryRange, Seq};
use crate::server::name_key::LookAlikes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

pub struct MemoryStore {
    history: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Channel keys in creation order.
    order: Vec<String>,
    logs: HashMap<String, Log>,
    looks: LookAlikes,
    /// (author, client id) of every message in a window, to its channel and number.
    sends: HashMap<(String, String), (String, Seq)>,
    /// Name key to (name as held, token hash, last used).
    names: HashMap<String, (String, Vec<u8>, i64)>,
}

struct Log {
    channel: Channel,
    last_seq: Seq,
    recent: VecDeque<ChatMessage>,
}

impl MemoryStore {
    pub fn new(history: usize) -> Self {
        Self {
            history: history.max(1),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change below is complete before the next can panic, so the state
        // behind a poisoned lock is consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn load(&self) -> Result<Vec<ChannelLog>, StoreError> {
        let state = self.lock();
        Ok(state
            .order
            .iter()
            .map(|key| {
                let log = &state.logs[key];
                ChannelLog {
                    channel: log.channel.clone(),
                    last_seq: log.last_seq,
                    recent: log.recent.iter().cloned().collect(),
                }
            })
            .collect())
    }

    fn create_channel_within(
        &self,
        new: &NewChannel,
        max_channels: usize,
    ) -> Result<Channel, StoreError> {
        let mut state = self.lock();
        if let Some(existing) = state.logs.get(&new.key) {
            return Err(StoreError::ChannelExists(existing.channel.name.clone()));
        }
        if let Some(twin) = state.looks.twin_of_look(&new.look) {
            return Err(StoreError::ChannelExists(twin.to_owned()));
        }
        if state.logs.len() >= max_channels {
            return Err(StoreError::TooManyChannels(max_channels));
        }
        let channel = new.channel();
        state.looks.add_look(new.look.clone(), &new.name);
        state.order.push(new.key.clone());
        state.logs.insert(
            new.key.clone(),
            Log {
                channel: channel.clone(),
                last_seq: 0,
                recent: VecDeque::new(),
            },
        );
        Ok(channel)
    }

    fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let outcomes = batch
            .into_iter()
            .map(|message| {
                let send = (message.author.clone(), message.client_id.clone());
                if let Some((channel_key, seq)) = state.sends.get(&send) {
                    return Appended::Duplicate {
                        channel_key: channel_key.clone(),
                        seq: *seq,
                        client_id: message.client_id,
                    };
                }
                let Some(log) = state.logs.get_mut(&message.channel_key) else {
                    return Appended::Refused {
                        client_id: message.client_id,
                        error: StoreError::NoSuchChannel(message.channel_key),
                    };
                };
                log.last_seq += 1;
                let stored = ChatMessage {
                    channel: log.channel.name.clone(),
                    seq: log.last_seq,
                    author: message.author,
                    text: message.text,
                    sent_at: message.sent_at,
                    client_id: message.client_id,
                };
                if log.recent.len() == self.history
                    && let Some(dropped) = log.recent.pop_front()
                {
                    state.sends.remove(&(dropped.author, dropped.client_id));
                }
                log.recent.push_back(stored.clone());
                state
                    .sends
                    .insert(send, (message.channel_key.clone(), stored.seq));
                Appended::New {
                    channel_key: message.channel_key,
                    message: stored,
                }
            })
            .collect();
        Ok(outcomes)
    }

    fn claim_name(&self, claim: &NameClaim, idle_expiry_ms: i64) -> Result<Claimed, StoreError> {
        let mut state = self.lock();
        let held = state
            .names
            .get(&claim.key)
            .map(|(name, hash, seen)| (name.as_str(), hash.as_slice(), *seen));
        let claimed = super::policy::decide_claim(held, claim, idle_expiry_ms)?;
        state.names.insert(
            claim.key.clone(),
            (claimed.name.clone(), claim.token_hash.clone(), claim.now),
        );
        Ok(claimed)
    }

    fn holds_name(
        &self,
        key: &str,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut state = self.lock();
        match state.names.get_mut(key) {
            Some((name, hash, last_seen)) if hash.as_slice() == token_hash => {
                *last_seen = now;
                Ok(Some(name.clone()))
            }
            _ => Ok(None),
        }
    }

    fn release_name(&self, key: &str, token_hash: &[u8]) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let held = state
            .names
            .get(key)
            .is_some_and(|(_, hash, _)| hash.as_slice() == token_hash);
        if held {
            state.names.remove(key);
        }
        Ok(held)
    }

    fn history(
        &self,
        channel_key: &str,
        range: HistoryRange,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let mut state = self.lock();
        let log = state
            .logs
            .get_mut(channel_key)
            .ok_or_else(|| StoreError::NoSuchChannel(channel_key.to_owned()))?;
        Ok(super::page_of(log.recent.make_contiguous(), range, limit))
    }

    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use super::*;

    #[test]
    fn channels_that_look_alike_conflict() {
        contract::channels_that_look_alike_conflict(&MemoryStore::new(10));
    }

    #[test]
    fn channels_are_capped() {
        contract::channels_are_capped(&MemoryStore::new(10));
    }

    #[test]
    fn messages_are_numbered_and_repeats_stored_once() {
        contract::messages_are_numbered_and_repeats_stored_once(&MemoryStore::new(10));
    }

    #[test]
    fn only_the_window_is_kept() {
        contract::only_the_window_is_kept(&MemoryStore::new(10));
    }

    #[test]
    fn names_are_held_by_their_token() {
        contract::names_are_held_by_their_token(&MemoryStore::new(10));
    }

    #[test]
    fn history_pages_each_message_once() {
        contract::history_pages_each_message_once(&MemoryStore::new(10_000), 2_500);
    }
}
