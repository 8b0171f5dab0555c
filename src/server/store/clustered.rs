//! A cluster node's store: the records in PostgreSQL, and every change, once
//! committed, told to the other nodes on the bus. Telling is best effort: what was
//! committed stays committed if Redis is away, and the other nodes read it from
//! PostgreSQL instead (`crate::server::cluster`).

use super::{
    Appended, ChannelLog, Claimed, NameClaim, NewChannel, NewMessage, PostgresStore, Pruned,
    Retention, Store, StoreError,
};
use crate::protocol::{Channel, HistoryPage, HistoryRange};
use crate::server::bus::RedisBus;
use std::sync::Arc;

pub struct ClusteredStore {
    pub records: Arc<PostgresStore>,
    pub bus: Arc<RedisBus>,
}

impl Store for ClusteredStore {
    fn load(&self) -> Result<Vec<ChannelLog>, StoreError> {
        self.records.load()
    }

    fn create_channel_within(
        &self,
        channel: &NewChannel,
        max_channels: usize,
    ) -> Result<Channel, StoreError> {
        let created = self.records.create_channel_within(channel, max_channels)?;
        self.bus.announce_channel(&channel.key, &created);
        Ok(created)
    }

    fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        let outcomes = self.records.append(batch)?;
        let stored: Vec<_> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Appended::New {
                    channel_key,
                    message,
                } => Some((channel_key.as_str(), message)),
                _ => None,
            })
            .collect();
        self.bus.publish_messages(&stored);
        Ok(outcomes)
    }

    fn claim_name(&self, claim: &NameClaim, idle_expiry_ms: i64) -> Result<Claimed, StoreError> {
        let claimed = self.records.claim_name(claim, idle_expiry_ms)?;
        if let Some(displaced) = &claimed.displaced {
            self.bus.announce_release(&claim.key, displaced);
        }
        Ok(claimed)
    }

    fn holds_name(
        &self,
        key: &str,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        self.records.holds_name(key, token_hash, now)
    }

    fn release_name(&self, key: &str, token_hash: &[u8]) -> Result<bool, StoreError> {
        let released = self.records.release_name(key, token_hash)?;
        if released {
            self.bus.announce_release(key, token_hash);
        }
        Ok(released)
    }

    fn history(
        &self,
        channel_key: &str,
        range: HistoryRange,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        self.records.history(channel_key, range, limit)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.records.ping()
    }

    fn prune(&self, retention: Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        self.records.prune(retention, now_ms)
    }
}
