//! The embedded store: one SQLite file in WAL mode.
//!
//! Durability: `synchronous = FULL`, so a committed batch survives a power loss, not
//! only a process crash. Its cost is one fsync per commit, and the hub's committer
//! batches every send that arrived while the previous commit ran into the next one
//! (group commit), so the fsync is shared by many messages under load.
//!
//! Messages are appended to one table in the order they are stored, so a commit
//! writes the few pages at its end rather than a page per channel it touches (SQLite
//! writes every dirtied page whole to the log and checksums it). Every message is
//! kept; an index by channel and number (one small entry per message) finds a page
//! of a channel's history, and each channel's latest `history` messages at start.

mod channels;
mod messages;
mod names;
mod retention;
mod schema;
#[cfg(test)]
mod tests;

use super::recent_sends::RecentSends;
use super::{
    Appended, ChannelLog, Claimed, NameClaim, NewChannel, NewMessage, Pruned, Retention, Store,
    StoreError,
};
use crate::protocol::{Channel, HistoryPage, HistoryRange, Seq};
use crate::server::name_key::LookAlikes;
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How much a commit survives, as SQLite's `synchronous` setting.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync on every commit: survives power loss and operating-system crashes.
    #[default]
    Full,
    /// fsync at checkpoints only: survives the process being killed, but the last
    /// commits before a power loss may be lost.
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

pub struct SqliteStore {
    /// Messages per channel the hub keeps in memory: what `load` returns.
    window: usize,
    inner: Mutex<Inner>,
    /// Tells the checkpointer to stop when the store goes away.
    stop_checkpoints: Arc<AtomicBool>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop_checkpoints.store(true, Ordering::Relaxed);
    }
}

pub(super) struct Inner {
    pub(super) db: Connection,
    /// Each channel's name and last number by key, mirrored from the
    /// database so a send needs no read to be numbered or pruned.
    pub(super) channels: HashMap<String, ChannelMeta>,
    pub(super) looks: LookAlikes,
    /// `recent_sends`, mirrored.
    pub(super) recent_sends: RecentSends,
}

pub(super) struct ChannelMeta {
    pub(super) name: String,
    /// The last number the channel gave out. Commits do not write it to the
    /// channel's row (one page fewer to log and sync per commit): the newest message
    /// has it. Pruning (`retention`), which may delete the newest message, writes
    /// it to the row first; the row's `last_seq` also counts for channels with no
    /// messages and for files from before version 2.
    pub(super) last_seq: Seq,
}

pub(super) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::failed(e)
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) `hearth.db` in `dir`.
    pub fn open(dir: &Path, history: usize, durability: Durability) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::failed(e).at(format!("cannot create {}", dir.display())))?;
        let path = dir.join("hearth.db");
        // "unable to open database file" or "readonly database" alone does not say
        // which file, and a data directory can be given by flag, variable or file.
        Self::open_file(&path, history, durability).map_err(|error| error.at(path.display()))
    }

    fn open_file(path: &Path, history: usize, durability: Durability) -> Result<Self, StoreError> {
        let db = Connection::open(path).map_err(backend)?;
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        // A thread of its own copies the log into the database (below), so when
        // traffic is light a commit never waits for a checkpoint. Under sustained
        // writes it never catches up with the newest commit, and SQLite starts the
        // log over only once all of it is copied: the log grew without bound (1.6 GB
        // in 10 s at 20,000 sends/s). So the writer also checkpoints once the log
        // passes this many pages, which keeps it at a few MiB.
        db.pragma_update(None, "wal_autocheckpoint", LOG_PAGES_BEFORE_CHECKPOINT)
            .map_err(backend)?;
        db.pragma_update(None, "synchronous", durability.pragma())
            .map_err(backend)?;
        db.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        db.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
        schema::migrate(&db)?;
        let history = history.max(1);
        let channels = messages::read_channels(&db)?;
        let looks = channels::read_looks(&db)?;
        let recent_sends = messages::read_recent_sends(&db)?;
        let stop_checkpoints = Arc::new(AtomicBool::new(false));
        start_checkpointer(path, durability, stop_checkpoints.clone())?;
        Ok(Self {
            window: history,
            inner: Mutex::new(Inner {
                db,
                channels,
                looks,
                recent_sends,
            }),
            stop_checkpoints,
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic mid-transaction rolls the transaction back when it is dropped, but
        // may leave the mirror ahead of the file (`write_batch` changes it before
        // committing, undoing that on errors, not panics). Only the committer thread
        // appends, and a panic there ends it, so no later commit trusts that mirror.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The log's length (in pages) at which the writer copies it into the database.
pub(super) const LOG_PAGES_BEFORE_CHECKPOINT: i64 = 1000;

/// How often the log is copied into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies the write-ahead log into the database on a second connection, without
/// blocking the writer (a passive checkpoint), so the log stays small.
fn start_checkpointer(
    path: &Path,
    durability: Durability,
    stop: Arc<AtomicBool>,
) -> Result<(), StoreError> {
    let db = Connection::open(path).map_err(backend)?;
    db.pragma_update(None, "synchronous", durability.pragma())
        .map_err(backend)?;
    std::thread::Builder::new()
        .name("hearth-checkpoint".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(CHECKPOINT_EVERY);
                if let Err(e) = db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "checkpoint failed; will try again");
                }
            }
        })
        .map_err(|e| StoreError::failed(e).at("cannot start the checkpointer"))?;
    Ok(())
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Vec<ChannelLog>, StoreError> {
        channels::load(&self.lock(), self.window)
    }

    fn create_channel_within(
        &self,
        new: &NewChannel,
        max_channels: usize,
    ) -> Result<Channel, StoreError> {
        channels::create(&mut self.lock(), new, max_channels)
    }

    fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        messages::append(&mut self.lock(), batch)
    }

    fn claim_name(&self, claim: &NameClaim, idle_expiry_ms: i64) -> Result<Claimed, StoreError> {
        names::claim(&self.lock().db, claim, idle_expiry_ms)
    }

    fn holds_name(
        &self,
        key: &str,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        names::holds(&self.lock().db, key, token_hash, now)
    }

    fn release_name(&self, key: &str, token_hash: &[u8]) -> Result<bool, StoreError> {
        names::release(&self.lock().db, key, token_hash)
    }

    fn history(
        &self,
        channel_key: &str,
        range: HistoryRange,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        messages::history(&self.lock(), channel_key, range, limit)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.lock()
            .db
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(backend)
    }

    fn prune(&self, retention: Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        retention::prune(self, retention, now_ms)
    }
}
