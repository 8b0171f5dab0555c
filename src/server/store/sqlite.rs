//! The embedded store: one SQLite file in WAL mode.
//!
//! Durability: `synchronous = FULL`, so a committed batch survives a power loss, not
//! only a process crash. Its cost is one fsync per commit, and the hub's committer
//! batches every send that arrived while the previous commit ran into the next one
//! (group commit), so the fsync is shared by many messages under load.
//!
//! Only the last `history` messages per channel are kept; older rows are deleted in
//! the same transaction that adds new ones, so the file stays small.

use super::{Appended, ChannelLog, NameClaim, NewMessage, Store, StoreError};
use crate::protocol::{Channel, ChatMessage, Seq, channel_key};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// 2: `channels.last_seq` is no longer kept current (see `LAST_SEQ`), so a version
/// that trusts it must not open the file.
const SCHEMA_VERSION: i64 = 2;

/// Send ids are remembered this long, so a retry is recognised even after its
/// message has left the kept window.
const SEND_ID_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// How stale a name's "last used" time may get before a hello refreshes it.
const LAST_SEEN_RESOLUTION_MS: i64 = 3600 * 1000;

/// How much a commit survives, as SQLite's `synchronous` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
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
    history: usize,
    inner: Mutex<Inner>,
    /// Tells the checkpointer to stop when the store goes away.
    stop_checkpoints: Arc<AtomicBool>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop_checkpoints.store(true, Ordering::Relaxed);
    }
}

struct Inner {
    db: Connection,
    /// Each channel's name and last number by key, mirrored from the database so a
    /// send needs no read to be numbered. Updated only after a commit.
    channels: HashMap<String, ChannelMeta>,
    batches_since_prune: u32,
}

#[derive(Clone)]
struct ChannelMeta {
    name: String,
    last_seq: Seq,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) `hearth.db` in `dir`.
    pub fn open(dir: &Path, history: usize, durability: Durability) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("hearth.db");
        let db = Connection::open(&path).map_err(backend)?;
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
        migrate(&db)?;
        let channels = {
            let mut statement = db
                .prepare(&format!("SELECT key, name, {LAST_SEQ} FROM channels"))
                .map_err(backend)?;
            statement
                .query_map([], |row| {
                    Ok((
                        row.get(0)?,
                        ChannelMeta {
                            name: row.get(1)?,
                            last_seq: row.get(2)?,
                        },
                    ))
                })
                .map_err(backend)?
                .collect::<Result<HashMap<String, ChannelMeta>, _>>()
                .map_err(backend)?
        };
        let stop_checkpoints = Arc::new(AtomicBool::new(false));
        start_checkpointer(&path, durability, stop_checkpoints.clone())?;
        Ok(Self {
            history: history.max(1),
            inner: Mutex::new(Inner {
                db,
                channels,
                batches_since_prune: 0,
            }),
            stop_checkpoints,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic mid-transaction rolls the transaction back when it is dropped, and
        // the mirror is only updated after a commit, so the state stays consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The log's length (in pages) at which the writer copies it into the database.
const LOG_PAGES_BEFORE_CHECKPOINT: i64 = 1000;

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
        .map_err(|e| StoreError::Backend(format!("cannot start the checkpointer: {e}")))?;
    Ok(())
}

fn migrate(db: &Connection) -> Result<(), StoreError> {
    let version: i64 = db
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "the data file was written by a newer Hearth (schema {version})"
        )));
    }
    if version < 1 {
        db.execute_batch(
            "BEGIN;
             CREATE TABLE channels (
                 key        TEXT PRIMARY KEY,
                 name       TEXT NOT NULL,
                 created_at INTEGER NOT NULL,
                 last_seq   INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE messages (
                 channel   TEXT NOT NULL REFERENCES channels(key),
                 seq       INTEGER NOT NULL,
                 author    TEXT NOT NULL,
                 text      TEXT NOT NULL,
                 sent_at   INTEGER NOT NULL,
                 client_id TEXT NOT NULL,
                 PRIMARY KEY (channel, seq)
             ) WITHOUT ROWID;
             CREATE TABLE sends (
                 author    TEXT NOT NULL,
                 client_id TEXT NOT NULL,
                 channel   TEXT NOT NULL,
                 seq       INTEGER NOT NULL,
                 sent_at   INTEGER NOT NULL,
                 PRIMARY KEY (author, client_id)
             ) WITHOUT ROWID;
             CREATE TABLE names (
                 key        TEXT PRIMARY KEY,
                 name       TEXT NOT NULL,
                 token_hash BLOB NOT NULL,
                 last_seen  INTEGER NOT NULL
             ) WITHOUT ROWID;
             PRAGMA user_version = 1;
             COMMIT;",
        )
        .map_err(backend)?;
    }
    if version < 2 {
        // Nothing to move: loading takes the larger of the row's number and the
        // newest message's. The version only keeps older binaries out.
        db.execute_batch("PRAGMA user_version = 2;")
            .map_err(backend)?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Vec<ChannelLog>, StoreError> {
        let inner = self.lock();
        let mut channels = inner
            .db
            .prepare("SELECT key, name, created_at FROM channels ORDER BY rowid")
            .map_err(backend)?;
        let mut messages = inner
            .db
            .prepare(
                "SELECT seq, author, text, sent_at, client_id FROM messages
                 WHERE channel = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(backend)?;
        let rows = channels
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    Channel {
                        name: row.get(1)?,
                        created_at: row.get(2)?,
                    },
                ))
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        let mut logs = Vec::with_capacity(rows.len());
        for (key, channel) in rows {
            // The mirror's number: worked out once when the file was opened (see
            // `LAST_SEQ`) and kept by every commit since.
            let last_seq = inner.channels.get(&key).map_or(0, |meta| meta.last_seq);
            let mut recent = messages
                .query_map(params![key, self.history as i64], |row| {
                    Ok(ChatMessage {
                        channel: channel.name.clone(),
                        seq: row.get(0)?,
                        author: row.get(1)?,
                        text: row.get(2)?,
                        sent_at: row.get(3)?,
                        client_id: row.get(4)?,
                    })
                })
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            recent.reverse();
            logs.push(ChannelLog {
                channel,
                last_seq,
                recent,
            });
        }
        Ok(logs)
    }

    fn create_channel(&self, name: &str, created_at: i64) -> Result<Channel, StoreError> {
        let key = channel_key(name);
        let mut inner = self.lock();
        if let Some(existing) = inner.channels.get(&key) {
            return Err(StoreError::ChannelExists(existing.name.clone()));
        }
        inner
            .db
            .execute(
                "INSERT INTO channels (key, name, created_at) VALUES (?1, ?2, ?3)",
                params![key, name, created_at],
            )
            .map_err(backend)?;
        inner.channels.insert(
            key,
            ChannelMeta {
                name: name.to_owned(),
                last_seq: 0,
            },
        );
        Ok(Channel {
            name: name.to_owned(),
            created_at,
        })
    }

    fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        // Numbers taken by this batch, with each touched channel's number before it,
        // so a failed commit gives them back.
        let mut before: HashMap<String, Seq> = HashMap::new();
        let result = write_batch(inner, batch, self.history, &mut before);
        if result.is_err() {
            for (key, seq) in before {
                if let Some(meta) = inner.channels.get_mut(&key) {
                    meta.last_seq = seq;
                }
            }
        }
        result
    }

    fn claim_name(&self, claim: &NameClaim, idle_expiry_ms: i64) -> Result<String, StoreError> {
        let inner = self.lock();
        let held: Option<(String, Vec<u8>, i64)> = inner
            .db
            .query_row(
                "SELECT name, token_hash, last_seen FROM names WHERE key = ?1",
                [&claim.key],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(backend)?;
        let name = match held {
            Some((held, hash, _)) if hash == claim.token_hash => held,
            Some((_, _, last_seen)) if claim.now - last_seen < idle_expiry_ms => {
                return Err(StoreError::NameTaken(claim.name.clone()));
            }
            _ => claim.name.clone(),
        };
        inner
            .db
            .execute(
                "INSERT INTO names (key, name, token_hash, last_seen) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET
                     name = excluded.name, token_hash = excluded.token_hash,
                     last_seen = excluded.last_seen",
                params![claim.key, name, claim.token_hash, claim.now],
            )
            .map_err(backend)?;
        Ok(name)
    }

    fn holds_name(
        &self,
        key: &str,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let inner = self.lock();
        let held: Option<(String, i64)> = inner
            .db
            .query_row(
                "SELECT name, last_seen FROM names WHERE key = ?1 AND token_hash = ?2",
                params![key, token_hash],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(backend)?;
        let Some((name, last_seen)) = held else {
            return Ok(None);
        };
        // Names expire after days of disuse, so noting use once an hour is plenty,
        // and most hellos cost a read instead of a durable write.
        if now - last_seen >= LAST_SEEN_RESOLUTION_MS {
            inner
                .db
                .execute(
                    "UPDATE names SET last_seen = ?2 WHERE key = ?1",
                    params![key, now],
                )
                .map_err(backend)?;
        }
        Ok(Some(name))
    }

    fn release_name(&self, key: &str, token_hash: &[u8]) -> Result<bool, StoreError> {
        let inner = self.lock();
        let deleted = inner
            .db
            .execute(
                "DELETE FROM names WHERE key = ?1 AND token_hash = ?2",
                params![key, token_hash],
            )
            .map_err(backend)?;
        Ok(deleted == 1)
    }

    fn ping(&self) -> Result<(), StoreError> {
        let inner = self.lock();
        inner
            .db
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(backend)
    }
}

/// The last number a channel has given out. Commits do not write it to the
/// channel's row (one B-tree page fewer to log and sync per commit): the newest
/// message is never pruned, so its number is the channel's. `last_seq` itself still
/// counts for channels with no messages and for data files from before this.
const LAST_SEQ: &str = "MAX(last_seq, COALESCE(
    (SELECT MAX(seq) FROM messages WHERE messages.channel = channels.key), 0))";

/// Writes and commits one batch in a single transaction, numbering messages in the
/// mirror as it goes and noting in `before` each touched channel's prior number.
fn write_batch(
    inner: &mut Inner,
    batch: Vec<NewMessage>,
    history: usize,
    before: &mut HashMap<String, Seq>,
) -> Result<Vec<Appended>, StoreError> {
    let tx = inner
        .db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut find_send = tx
            .prepare_cached("SELECT channel, seq FROM sends WHERE author = ?1 AND client_id = ?2")
            .map_err(backend)?;
        let mut insert_message = tx
            .prepare_cached(
                "INSERT INTO messages (channel, seq, author, text, sent_at, client_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(backend)?;
        let mut insert_send = tx
            .prepare_cached(
                "INSERT INTO sends (author, client_id, channel, seq, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(backend)?;
        for message in batch {
            let earlier: Option<(String, Seq)> = find_send
                .query_row(params![message.author, message.client_id], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
                .map_err(backend)?;
            if let Some((channel_key, seq)) = earlier {
                outcomes.push(Appended::Duplicate {
                    channel_key,
                    seq,
                    client_id: message.client_id,
                });
                continue;
            }
            let Some(meta) = inner.channels.get_mut(&message.channel_key) else {
                outcomes.push(Appended::Refused {
                    client_id: message.client_id,
                    error: StoreError::NoSuchChannel(message.channel_key),
                });
                continue;
            };
            before
                .entry(message.channel_key.clone())
                .or_insert(meta.last_seq);
            meta.last_seq += 1;
            let seq = meta.last_seq;
            insert_message
                .execute(params![
                    message.channel_key,
                    seq,
                    message.author,
                    message.text,
                    message.sent_at,
                    message.client_id
                ])
                .map_err(backend)?;
            insert_send
                .execute(params![
                    message.author,
                    message.client_id,
                    message.channel_key,
                    seq,
                    message.sent_at
                ])
                .map_err(backend)?;
            outcomes.push(Appended::New {
                channel_key: message.channel_key,
                message: ChatMessage {
                    channel: meta.name.clone(),
                    seq,
                    author: message.author,
                    text: message.text,
                    sent_at: message.sent_at,
                    client_id: message.client_id,
                },
            });
        }
        let mut prune = tx
            .prepare_cached("DELETE FROM messages WHERE channel = ?1 AND seq <= ?2")
            .map_err(backend)?;
        for key in before.keys() {
            let seq = inner.channels[key].last_seq;
            prune
                .execute(params![key, seq.saturating_sub(history as Seq)])
                .map_err(backend)?;
        }
    }
    inner.batches_since_prune += 1;
    if inner.batches_since_prune >= 1000 {
        let cutoff = outcomes_time(&outcomes) - SEND_ID_RETENTION_MS;
        tx.execute("DELETE FROM sends WHERE sent_at < ?1", [cutoff])
            .map_err(backend)?;
        inner.batches_since_prune = 0;
    }
    tx.commit().map_err(backend)?;
    Ok(outcomes)
}

/// The newest send time in a batch, as "now" for pruning without a clock read.
fn outcomes_time(outcomes: &[Appended]) -> i64 {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Appended::New { message, .. } => Some(message.sent_at),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use super::*;

    fn store(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(dir.path(), 10, Durability::Full).unwrap()
    }

    #[test]
    fn channels_conflict_case_insensitively() {
        let dir = tempfile::tempdir().unwrap();
        contract::channels_conflict_case_insensitively(&store(&dir));
    }

    #[test]
    fn messages_are_numbered_and_repeats_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        contract::messages_are_numbered_and_repeats_stored_once(&store(&dir));
    }

    #[test]
    fn only_the_window_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        contract::only_the_window_is_kept(&store(&dir));
        // Old rows are deleted, not merely hidden.
        let rows: i64 = store(&dir)
            .lock()
            .db
            .query_row("SELECT count(*) FROM messages", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 10);
    }

    #[test]
    fn names_are_held_by_their_token() {
        let dir = tempfile::tempdir().unwrap();
        contract::names_are_held_by_their_token(&store(&dir));
    }

    #[test]
    fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store(&dir);
            store.create_channel("General", 1).unwrap();
            store.append((1..=3).map(send).collect()).unwrap();
        }
        let store = store(&dir);
        let log = &store.load().unwrap()[0];
        assert_eq!(log.last_seq, 3);
        assert_eq!(log.recent.len(), 3);
        // Numbering continues, and a retry from before the restart is recognised.
        let outcomes = store
            .append(vec![
                NewMessage {
                    channel_key: "general".into(),
                    author: "ada".into(),
                    text: "m2".into(),
                    sent_at: 9,
                    client_id: "c2".into(),
                },
                NewMessage {
                    channel_key: "general".into(),
                    author: "ada".into(),
                    text: "m4".into(),
                    sent_at: 9,
                    client_id: "c4".into(),
                },
            ])
            .unwrap();
        assert!(matches!(outcomes[0], Appended::Duplicate { seq: 2, .. }));
        assert!(matches!(&outcomes[1], Appended::New { message, .. } if message.seq == 4));
    }

    fn send(i: i64) -> NewMessage {
        NewMessage {
            channel_key: "general".into(),
            author: "ada".into(),
            text: format!("m{i}"),
            sent_at: i,
            client_id: format!("c{i}"),
        }
    }

    fn next_seq(store: &SqliteStore, i: i64) -> Seq {
        match &store.append(vec![send(i)]).unwrap()[0] {
            Appended::New { message, .. } => message.seq,
            other => panic!("expected a new message, got {other:?}"),
        }
    }

    #[test]
    fn the_log_stays_small_under_sustained_writes() {
        let dir = tempfile::tempdir().unwrap();
        // No sync per commit, so the commits come faster than the checkpointer.
        let store = SqliteStore::open(dir.path(), 10, Durability::Normal).unwrap();
        store.create_channel("General", 1).unwrap();
        for i in 1..=5_000 {
            store.append(vec![send(i)]).unwrap();
        }
        let log = std::fs::metadata(dir.path().join("hearth.db-wal")).unwrap();
        let page_frame = 4096 + 24;
        assert!(
            log.len() <= 2 * LOG_PAGES_BEFORE_CHECKPOINT as u64 * page_frame,
            "the log reached {} bytes",
            log.len()
        );
        assert_eq!(next_seq(&store, 5_001), 5_001);
    }

    #[test]
    fn a_data_file_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        store(&dir)
            .lock()
            .db
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let error = SqliteStore::open(dir.path(), 10, Durability::Full)
            .err()
            .unwrap();
        assert!(error.to_string().contains("newer Hearth"), "{error}");
    }

    #[test]
    fn numbering_continues_after_pruning_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store(&dir);
            store.create_channel("General", 1).unwrap();
            for i in 1..=25 {
                store.append(vec![send(i)]).unwrap();
            }
        }
        let store = store(&dir);
        assert_eq!(store.load().unwrap()[0].last_seq, 25);
        assert_eq!(next_seq(&store, 26), 26);
    }

    #[test]
    fn a_number_kept_in_the_channel_row_by_older_versions_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store(&dir);
            store.create_channel("General", 1).unwrap();
            store.append(vec![send(1)]).unwrap();
            // Older versions wrote each commit's last number to the channel's row.
            store
                .lock()
                .db
                .execute("UPDATE channels SET last_seq = 40", [])
                .unwrap();
        }
        let store = store(&dir);
        assert_eq!(store.load().unwrap()[0].last_seq, 40);
        assert_eq!(next_seq(&store, 2), 41);
        // Older versions, which would trust the row's number, are kept out.
        let version: i64 = store
            .lock()
            .db
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }
}
