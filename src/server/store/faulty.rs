//! A store for tests that fails when told to: the memory store, whose every call
//! fails while `failing` is set (as a cluster's Redis does while it is away), and
//! whose appends panic while `panicking` is set (a committer that dies).

use super::{
    Appended, ChannelLog, Claimed, MemoryStore, NameClaim, NewChannel, NewMessage, Store,
    StoreError,
};
use crate::protocol::{Channel, HistoryPage, HistoryRange};
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Faulty {
    inner: MemoryStore,
    pub failing: AtomicBool,
    pub panicking: AtomicBool,
}

impl Faulty {
    /// A working store keeping `history` messages per channel.
    pub fn new(history: usize) -> Self {
        Self {
            inner: MemoryStore::new(history),
            failing: AtomicBool::new(false),
            panicking: AtomicBool::new(false),
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(StoreError::backend("the disk is full"));
        }
        Ok(())
    }
}

impl Store for Faulty {
    fn load(&self) -> Result<Vec<ChannelLog>, StoreError> {
        self.check()?;
        self.inner.load()
    }
    fn create_channel_within(&self, new: &NewChannel, max: usize) -> Result<Channel, StoreError> {
        self.check()?;
        self.inner.create_channel_within(new, max)
    }
    fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        assert!(!self.panicking.load(Ordering::Relaxed), "the store broke");
        self.check()?;
        self.inner.append(batch)
    }
    fn claim_name(&self, claim: &NameClaim, idle_expiry_ms: i64) -> Result<Claimed, StoreError> {
        self.check()?;
        self.inner.claim_name(claim, idle_expiry_ms)
    }
    fn holds_name(&self, key: &str, hash: &[u8], now: i64) -> Result<Option<String>, StoreError> {
        self.check()?;
        self.inner.holds_name(key, hash, now)
    }
    fn release_name(&self, key: &str, hash: &[u8]) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.release_name(key, hash)
    }
    fn history(
        &self,
        channel_key: &str,
        range: HistoryRange,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        self.check()?;
        self.inner.history(channel_key, range, limit)
    }
    fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
}
