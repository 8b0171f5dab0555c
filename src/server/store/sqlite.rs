//! The embedded store: one SQLite file in WAL mode.
//!
//! Durability: `synchronous = FULL`, so a committed batch survives a power loss, not
//! only a process crash. Its cost is one fsync per commit, and the hub's committer
//! batches every send that arrived while the previous commit ran into the next one
//! (group commit), so the fsync is shared by many messages under load.
//!
//! Messages are appended to one table in the order they are stored, so a commit
//! writes the few pages at its end rather than a page per channel it touches: with
//! a table ordered by channel, each message dirtied two pages (its insert and the
//! delete of its channel's oldest), every one of which SQLite writes whole to the
//! log and checksums. Only the last `history` messages per channel are kept: the
//! store remembers which rows those are and deletes the ones that fell out, in
//! batches, sorted, so the deletes too land on few pages.

use super::recent_sends::{RecentSends, Stored};
use super::{
    Appended, ChannelLog, Claimed, NameClaim, NewChannel, NewMessage, Store, StoreError,
    decide_claim,
};
use crate::protocol::{Channel, ChatMessage, Seq};
use crate::server::name_key::{Held, LookAlikes, rekey, report_freed};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// 2: `channels.last_seq` is no longer kept current (see `ChannelMeta::last_seq`),
/// so a version that trusts it must not open the file.
/// 3: messages live in `log`, and new send ids in `recent_sends`, in the order
/// they were stored.
const SCHEMA_VERSION: i64 = 4;

/// How many rows that fell out of their channel's window wait before they are
/// deleted together: enough that the deletes share pages, few enough that the file
/// holds at most this many rows more than the windows.
const PRUNE_AFTER: usize = 256;

/// Send ids wait in `recent_sends` until twice this many do; then all but this
/// many newest move to `sends`. Usually that is this many at a time: enough that an
/// author's share is a page, few enough that the move stays a small part of one
/// commit. After a big batch it is as many as the batch brought, so the table and
/// its mirror never grow beyond twice this and one batch.
const SENDS_MOVED_AT_ONCE: usize = 128;

/// Send ids are remembered this long, so a retry is recognised even after its
/// message has left the kept window.
const SEND_ID_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// How stale a name's "last used" time may get before a hello refreshes it.
const LAST_SEEN_RESOLUTION_MS: i64 = 3600 * 1000;

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
    /// Each channel's name, last number and kept rows by key, mirrored from the
    /// database so a send needs no read to be numbered or pruned.
    channels: HashMap<String, ChannelMeta>,
    looks: LookAlikes,
    /// Rows that fell out of their channel's window, to be deleted.
    doomed: Vec<i64>,
    /// `recent_sends`, mirrored.
    recent_sends: RecentSends,
}

struct ChannelMeta {
    name: String,
    /// The last number the channel gave out. Commits do not write it to the
    /// channel's row (one page fewer to log and sync per commit): the newest message
    /// is never pruned, so its number is the channel's. The row's `last_seq` still
    /// counts for channels with no messages and for files from before version 2.
    last_seq: Seq,
    /// The `log` ids of the channel's kept messages, oldest first.
    kept: VecDeque<i64>,
}

impl ChannelMeta {
    /// Notes a stored row; the row that falls out of the window, if any, is doomed.
    fn keep(&mut self, id: i64, history: usize, doomed: &mut Vec<i64>) {
        self.kept.push_back(id);
        if self.kept.len() > history {
            doomed.extend(self.kept.pop_front());
        }
    }
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
        // "unable to open database file" or "readonly database" alone does not say
        // which file, and a data directory can be given by flag, variable or file.
        Self::open_file(&path, history, durability).map_err(|error| match error {
            StoreError::Backend(why) => StoreError::Backend(format!("{}: {why}", path.display())),
            other => other,
        })
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
        migrate(&db)?;
        let history = history.max(1);
        let (channels, doomed) = read_channels(&db, history)?;
        let looks = read_looks(&db)?;
        let recent_sends = read_recent_sends(&db)?;
        let stop_checkpoints = Arc::new(AtomicBool::new(false));
        start_checkpointer(path, durability, stop_checkpoints.clone())?;
        Ok(Self {
            history,
            inner: Mutex::new(Inner {
                db,
                channels,
                looks,
                doomed,
                recent_sends,
            }),
            stop_checkpoints,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic mid-transaction rolls the transaction back when it is dropped, but
        // may leave the mirror ahead of the file (`write_batch` changes it before
        // committing, undoing that on errors, not panics). Only the committer thread
        // appends, and a panic there ends it, so no later commit trusts that mirror.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The channels' names, by how they look, oldest first.
fn read_looks(db: &Connection) -> Result<LookAlikes, StoreError> {
    let names = db
        .prepare("SELECT name FROM channels ORDER BY rowid")
        .map_err(backend)?
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(LookAlikes::of(names.iter().map(String::as_str)))
}

/// Each channel with its last number and kept rows, and the rows beyond the windows
/// (left by a restart before they were deleted).
fn read_channels(
    db: &Connection,
    history: usize,
) -> Result<(HashMap<String, ChannelMeta>, Vec<i64>), StoreError> {
    let mut channels = db
        .prepare("SELECT key, name, last_seq FROM channels")
        .map_err(backend)?
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                ChannelMeta {
                    name: row.get(1)?,
                    last_seq: row.get(2)?,
                    kept: VecDeque::new(),
                },
            ))
        })
        .map_err(backend)?
        .collect::<Result<HashMap<String, ChannelMeta>, _>>()
        .map_err(backend)?;
    let mut doomed = Vec::new();
    let mut rows = db
        .prepare("SELECT id, channel, seq FROM log ORDER BY id")
        .map_err(backend)?;
    let mut rows = rows.query([]).map_err(backend)?;
    while let Some(row) = rows.next().map_err(backend)? {
        let (id, key, seq): (i64, String, Seq) = (
            row.get(0).map_err(backend)?,
            row.get(1).map_err(backend)?,
            row.get(2).map_err(backend)?,
        );
        let Some(meta) = channels.get_mut(&key) else {
            doomed.push(id);
            continue;
        };
        meta.last_seq = meta.last_seq.max(seq);
        meta.keep(id, history, &mut doomed);
    }
    Ok((channels, doomed))
}

fn read_recent_sends(db: &Connection) -> Result<RecentSends, StoreError> {
    let mut recent = RecentSends::default();
    let mut rows = db
        .prepare("SELECT id, author, client_id, channel, seq FROM recent_sends ORDER BY id")
        .map_err(backend)?;
    let mut rows = rows.query([]).map_err(backend)?;
    while let Some(row) = rows.next().map_err(backend)? {
        let author: String = row.get(1).map_err(backend)?;
        let client_id: String = row.get(2).map_err(backend)?;
        let stored = Stored {
            channel_key: row.get(3).map_err(backend)?,
            seq: row.get(4).map_err(backend)?,
        };
        recent.insert(row.get(0).map_err(backend)?, &author, &client_id, stored);
    }
    Ok(recent)
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
    if version < 3 {
        db.execute_batch(
            "BEGIN;
             CREATE TABLE log (
                 id        INTEGER PRIMARY KEY,
                 channel   TEXT NOT NULL REFERENCES channels(key),
                 seq       INTEGER NOT NULL,
                 author    TEXT NOT NULL,
                 text      TEXT NOT NULL,
                 sent_at   INTEGER NOT NULL,
                 client_id TEXT NOT NULL
             );
             INSERT INTO log (channel, seq, author, text, sent_at, client_id)
                 SELECT channel, seq, author, text, sent_at, client_id
                 FROM messages ORDER BY channel, seq;
             DROP TABLE messages;
             CREATE TABLE recent_sends (
                 id        INTEGER PRIMARY KEY,
                 author    TEXT NOT NULL,
                 client_id TEXT NOT NULL,
                 channel   TEXT NOT NULL,
                 seq       INTEGER NOT NULL,
                 sent_at   INTEGER NOT NULL
             );
             CREATE INDEX sends_by_time ON sends (sent_at);
             PRAGMA user_version = 3;
             COMMIT;",
        )
        .map_err(backend)?;
    }
    if version < 4 {
        rekey_names(db)?;
    }
    Ok(())
}

/// Version 4 keys names by look (see [`crate::server::name_key::name_key`]), no
/// longer by lower case alone.
fn rekey_names(db: &Connection) -> Result<(), StoreError> {
    let transaction = db.unchecked_transaction().map_err(backend)?;
    let held = transaction
        .prepare("SELECT name, token_hash, last_seen FROM names")
        .map_err(backend)?
        .query_map([], |row| {
            Ok(Held {
                name: row.get(0)?,
                record: row.get::<_, Vec<u8>>(1)?,
                last_seen: row.get(2)?,
            })
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    let rekeyed = rekey(held);
    transaction
        .execute("DELETE FROM names", [])
        .map_err(backend)?;
    for (key, held) in &rekeyed.kept {
        transaction
            .execute(
                "INSERT INTO names (key, name, token_hash, last_seen) VALUES (?1, ?2, ?3, ?4)",
                params![key, held.name, held.record, held.last_seen],
            )
            .map_err(backend)?;
    }
    transaction
        .pragma_update(None, "user_version", 4)
        .map_err(backend)?;
    transaction.commit().map_err(backend)?;
    report_freed(&rekeyed.freed);
    Ok(())
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Vec<ChannelLog>, StoreError> {
        let inner = self.lock();
        let channels = inner
            .db
            .prepare("SELECT key, name, created_at FROM channels ORDER BY rowid")
            .map_err(backend)?
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
        let position: HashMap<&str, usize> = channels
            .iter()
            .enumerate()
            .map(|(i, (key, _))| (key.as_str(), i))
            .collect();
        let mut recent: Vec<Vec<ChatMessage>> = vec![Vec::new(); channels.len()];
        let mut rows = inner
            .db
            .prepare(
                "SELECT id, channel, seq, author, text, sent_at, client_id FROM log ORDER BY id",
            )
            .map_err(backend)?;
        let mut rows = rows.query([]).map_err(backend)?;
        while let Some(row) = rows.next().map_err(backend)? {
            let id: i64 = row.get(0).map_err(backend)?;
            let key: String = row.get(1).map_err(backend)?;
            let Some(&i) = position.get(key.as_str()) else {
                continue;
            };
            // The mirror knows each window: rows older than its oldest kept row
            // are waiting to be deleted.
            let kept_from = inner.channels.get(&key).and_then(|meta| meta.kept.front());
            if kept_from.is_none_or(|&first| id < first) {
                continue;
            }
            recent[i].push(ChatMessage {
                channel: channels[i].1.name.clone(),
                seq: row.get(2).map_err(backend)?,
                author: row.get(3).map_err(backend)?,
                text: row.get(4).map_err(backend)?,
                sent_at: row.get(5).map_err(backend)?,
                client_id: row.get(6).map_err(backend)?,
            });
        }
        Ok(channels
            .into_iter()
            .zip(recent)
            .map(|((key, channel), recent)| ChannelLog {
                // The mirror's number: worked out when the file was opened and kept
                // by every commit since.
                last_seq: inner.channels.get(&key).map_or(0, |meta| meta.last_seq),
                channel,
                recent,
            })
            .collect())
    }

    fn create_channel_within(
        &self,
        new: &NewChannel,
        max_channels: usize,
    ) -> Result<Channel, StoreError> {
        let mut inner = self.lock();
        if let Some(existing) = inner.channels.get(&new.key) {
            return Err(StoreError::ChannelExists(existing.name.clone()));
        }
        if let Some(twin) = inner.looks.twin_of_look(&new.look) {
            return Err(StoreError::ChannelExists(twin.to_owned()));
        }
        if inner.channels.len() >= max_channels {
            return Err(StoreError::TooManyChannels(max_channels));
        }
        inner
            .db
            .execute(
                "INSERT INTO channels (key, name, created_at) VALUES (?1, ?2, ?3)",
                params![new.key, new.name, new.created_at],
            )
            .map_err(backend)?;
        inner.looks.add_look(new.look.clone(), &new.name);
        inner.channels.insert(
            new.key.clone(),
            ChannelMeta {
                name: new.name.clone(),
                last_seq: 0,
                kept: VecDeque::new(),
            },
        );
        Ok(new.channel())
    }

    fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut undo = Undo::default();
        match write_batch(inner, batch, &mut undo) {
            Ok(Written { outcomes, stored }) => {
                for (key, id) in stored {
                    if let Some(meta) = inner.channels.get_mut(&key) {
                        meta.keep(id, self.history, &mut inner.doomed);
                    }
                }
                if let Some(id) = undo.sends_moved_through {
                    inner.recent_sends.forget_through(id);
                }
                Ok(outcomes)
            }
            Err(e) => {
                for (key, seq) in undo.numbers_before {
                    if let Some(meta) = inner.channels.get_mut(&key) {
                        meta.last_seq = seq;
                    }
                }
                inner.doomed.extend(undo.pruned);
                inner.recent_sends.forget_newest(undo.sends_added);
                Err(e)
            }
        }
    }

    fn claim_name(&self, claim: &NameClaim, idle_expiry_ms: i64) -> Result<Claimed, StoreError> {
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
        let held = held
            .as_ref()
            .map(|(name, hash, seen)| (name.as_str(), hash.as_slice(), *seen));
        let claimed = decide_claim(held, claim, idle_expiry_ms)?;
        inner
            .db
            .execute(
                "INSERT INTO names (key, name, token_hash, last_seen) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET
                     name = excluded.name, token_hash = excluded.token_hash,
                     last_seen = excluded.last_seen",
                params![claim.key, claimed.name, claim.token_hash, claim.now],
            )
            .map_err(backend)?;
        Ok(claimed)
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

/// What a failed commit must give back to the mirror.
#[derive(Default)]
struct Undo {
    /// Each touched channel's number before the batch.
    numbers_before: HashMap<String, Seq>,
    /// Rows the batch deleted.
    pruned: Vec<i64>,
    /// Sends the batch noted in `recent_sends`.
    sends_added: usize,
    /// The last `recent_sends` row the batch moved to `sends`, to be forgotten
    /// once committed.
    sends_moved_through: Option<i64>,
}

/// A committed batch: each send's outcome, and the channel and row of each message
/// stored.
struct Written {
    outcomes: Vec<Appended>,
    stored: Vec<(String, i64)>,
}

/// Writes and commits one batch in a single transaction, numbering messages in the
/// mirror as it goes and noting in `undo` what a failure must restore.
fn write_batch(
    inner: &mut Inner,
    batch: Vec<NewMessage>,
    undo: &mut Undo,
) -> Result<Written, StoreError> {
    let tx = inner
        .db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut stored = Vec::with_capacity(batch.len());
    {
        let mut find_send = tx
            .prepare_cached("SELECT channel, seq FROM sends WHERE author = ?1 AND client_id = ?2")
            .map_err(backend)?;
        let mut insert_message = tx
            .prepare_cached(
                "INSERT INTO log (channel, seq, author, text, sent_at, client_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(backend)?;
        let mut insert_send = tx
            .prepare_cached(
                "INSERT INTO recent_sends (author, client_id, channel, seq, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(backend)?;
        for message in batch {
            let earlier = match inner.recent_sends.get(&message.author, &message.client_id) {
                Some(stored) => Some(stored.clone()),
                None => find_send
                    .query_row(params![message.author, message.client_id], |row| {
                        Ok(Stored {
                            channel_key: row.get(0)?,
                            seq: row.get(1)?,
                        })
                    })
                    .optional()
                    .map_err(backend)?,
            };
            if let Some(Stored { channel_key, seq }) = earlier {
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
            undo.numbers_before
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
            stored.push((message.channel_key.clone(), tx.last_insert_rowid()));
            insert_send
                .execute(params![
                    message.author,
                    message.client_id,
                    message.channel_key,
                    seq,
                    message.sent_at
                ])
                .map_err(backend)?;
            inner.recent_sends.insert(
                tx.last_insert_rowid(),
                &message.author,
                &message.client_id,
                Stored {
                    channel_key: message.channel_key.clone(),
                    seq,
                },
            );
            undo.sends_added += 1;
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
        if inner.doomed.len() >= PRUNE_AFTER {
            undo.pruned = std::mem::take(&mut inner.doomed);
            // In the order they were stored, so neighbours share a page.
            undo.pruned.sort_unstable();
            let mut prune = tx
                .prepare_cached("DELETE FROM log WHERE id = ?1")
                .map_err(backend)?;
            for id in &undo.pruned {
                prune.execute([id]).map_err(backend)?;
            }
        }
    }
    let waiting = inner.recent_sends.len();
    if waiting >= 2 * SENDS_MOVED_AT_ONCE
        && let Some(last) = inner
            .recent_sends
            .nth_oldest_id(waiting - SENDS_MOVED_AT_ONCE)
    {
        // Sorted by the destination's key, so each author's share is one run of
        // inserts. A send is never in both tables; `OR IGNORE` keeps a broken rule
        // from failing this and every later commit.
        tx.execute(
            "INSERT OR IGNORE INTO sends (author, client_id, channel, seq, sent_at)
             SELECT author, client_id, channel, seq, sent_at FROM recent_sends
             WHERE id <= ?1 ORDER BY author, client_id",
            [last],
        )
        .map_err(backend)?;
        tx.execute("DELETE FROM recent_sends WHERE id <= ?1", [last])
            .map_err(backend)?;
        undo.sends_moved_through = Some(last);
        // Through the time index: reading the whole table instead, as a prune every
        // thousand commits once did, stalled commits for as long as it took.
        let cutoff = outcomes_time(&outcomes) - SEND_ID_RETENTION_MS;
        tx.execute("DELETE FROM sends WHERE sent_at < ?1", [cutoff])
            .map_err(backend)?;
    }
    tx.commit().map_err(backend)?;
    Ok(Written { outcomes, stored })
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
    use super::super::contract::{self, send};
    use super::*;
    use crate::server::name_key::name_key;

    fn store(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(dir.path(), 10, Durability::Full).unwrap()
    }

    /// A new store with a window of 10 and the channel "General".
    fn store_with_general(dir: &tempfile::TempDir) -> SqliteStore {
        let store = store(dir);
        store.create_channel("General", 1).unwrap();
        store
    }

    #[test]
    fn channels_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        contract::channels_are_capped(&store(&dir));
    }

    #[test]
    fn channels_that_look_alike_conflict() {
        let dir = tempfile::tempdir().unwrap();
        contract::channels_that_look_alike_conflict(&store(&dir));
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
    }

    /// The rows in the log and the oldest number among them.
    fn rows_and_oldest(store: &SqliteStore) -> (usize, Seq) {
        store
            .lock()
            .db
            .query_row("SELECT count(*), MIN(seq) FROM log", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap()
    }

    #[test]
    fn rows_beyond_the_window_are_deleted_not_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_general(&dir);
        let last = 10 + PRUNE_AFTER as i64 + 1;
        for i in 1..=last {
            next_seq(&store, i);
            assert!(rows_and_oldest(&store).0 <= 10 + PRUNE_AFTER);
        }
        // The 256 that fell out first are gone; the window and one more remain.
        let last = last as Seq;
        assert_eq!(rows_and_oldest(&store), (11, last - 10));
        let recent = &store.load().unwrap()[0].recent;
        assert_eq!(recent.first().map(|m| m.seq), Some(last - 9));
        assert_eq!(recent.len(), 10);
    }

    #[test]
    fn rows_left_beyond_the_window_by_a_restart_are_deleted_later() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store_with_general(&dir);
            for i in 1..=110 {
                next_seq(&store, i);
            }
            assert_eq!(rows_and_oldest(&store), (110, 1));
        }
        let store = store(&dir);
        let recent = &store.load().unwrap()[0].recent;
        assert_eq!(
            recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (101..=110).collect::<Vec<_>>()
        );
        // The 100 found at opening count toward the next batch of deletes.
        for i in 111..=10 + PRUNE_AFTER as i64 + 1 {
            next_seq(&store, i);
        }
        assert_eq!(rows_and_oldest(&store).1, PRUNE_AFTER as Seq + 1);
    }

    fn is_repeat_of(outcome: &Appended, expected: Seq) -> bool {
        matches!(outcome, Appended::Duplicate { seq, .. } if *seq == expected)
    }

    #[test]
    fn retries_are_recognised_wherever_their_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sends = 2 * SENDS_MOVED_AT_ONCE as i64 + 5;
        {
            let store = store_with_general(&dir);
            // A retry in the same batch as the send it repeats.
            let outcomes = store.append(vec![send(1), send(1)]).unwrap();
            assert!(is_repeat_of(&outcomes[1], 1));
            for i in 2..=sends {
                next_seq(&store, i);
            }
            // The oldest ids have moved on; the newest wait in store order.
            assert!(rows(&store, "recent_sends") < 2 * SENDS_MOVED_AT_ONCE);
            let moved = rows(&store, "sends");
            assert_eq!(moved + rows(&store, "recent_sends"), sends as usize);
            let retries = store.append(vec![send(1), send(sends)]).unwrap();
            assert!(is_repeat_of(&retries[0], 1));
            assert!(is_repeat_of(&retries[1], sends as Seq));
        }
        let store = store(&dir);
        let retries = store.append(vec![send(1), send(sends)]).unwrap();
        assert!(is_repeat_of(&retries[0], 1));
        assert!(is_repeat_of(&retries[1], sends as Seq));
        assert_eq!(next_seq(&store, sends + 1), sends as Seq + 1);
    }

    #[test]
    fn send_ids_waiting_to_move_stay_few_after_big_batches() {
        const BATCH: i64 = 1_000;
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_general(&dir);
        for round in 0..5 {
            let batch = (round * BATCH + 1..=(round + 1) * BATCH)
                .map(send)
                .collect();
            store.append(batch).unwrap();
            assert!(
                rows(&store, "recent_sends") < 2 * SENDS_MOVED_AT_ONCE,
                "{} send ids wait after {} batches of {BATCH}",
                rows(&store, "recent_sends"),
                round + 1
            );
            let mirrored = store.lock().recent_sends.len();
            assert_eq!(
                mirrored,
                rows(&store, "recent_sends"),
                "the mirror matches the table"
            );
        }
        let retries = store.append(vec![send(1), send(5 * BATCH)]).unwrap();
        assert!(is_repeat_of(&retries[0], 1));
        assert!(is_repeat_of(&retries[1], 5 * BATCH as Seq));
    }

    #[test]
    fn send_ids_are_forgotten_after_a_week() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_general(&dir);
        let week_later = |i: i64| NewMessage {
            sent_at: SEND_ID_RETENTION_MS + 10,
            ..send(i)
        };
        next_seq(&store, 1);
        for i in 2..=2 * SENDS_MOVED_AT_ONCE as i64 {
            store.append(vec![week_later(i)]).unwrap();
        }
        let outcomes = store.append(vec![week_later(1), week_later(2)]).unwrap();
        assert!(matches!(&outcomes[0], Appended::New { .. }));
        assert!(is_repeat_of(&outcomes[1], 2));
    }

    #[test]
    fn messages_from_a_version_2_file_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Connection::open(dir.path().join("hearth.db")).unwrap();
            db.execute_batch(
                "CREATE TABLE channels (key TEXT PRIMARY KEY, name TEXT NOT NULL,
                     created_at INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE messages (channel TEXT NOT NULL REFERENCES channels(key),
                     seq INTEGER NOT NULL, author TEXT NOT NULL, text TEXT NOT NULL,
                     sent_at INTEGER NOT NULL, client_id TEXT NOT NULL,
                     PRIMARY KEY (channel, seq)) WITHOUT ROWID;
                 CREATE TABLE sends (author TEXT NOT NULL, client_id TEXT NOT NULL,
                     channel TEXT NOT NULL, seq INTEGER NOT NULL, sent_at INTEGER NOT NULL,
                     PRIMARY KEY (author, client_id)) WITHOUT ROWID;
                 CREATE TABLE names (key TEXT PRIMARY KEY, name TEXT NOT NULL,
                     token_hash BLOB NOT NULL, last_seen INTEGER NOT NULL) WITHOUT ROWID;
                 INSERT INTO channels VALUES ('general', 'General', 1, 0), ('b', 'B', 2, 0);
                 INSERT INTO messages VALUES ('general', 2, 'ada', 'm2', 2, 'c2'),
                     ('b', 1, 'bo', 'b1', 1, 'x1'), ('general', 1, 'ada', 'm1', 1, 'c1');
                 INSERT INTO sends VALUES ('ada', 'c1', 'general', 1, 1),
                     ('ada', 'c2', 'general', 2, 2), ('bo', 'x1', 'b', 1, 1);
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let store = store(&dir);
        let logs = store.load().unwrap();
        let texts = |i: usize| {
            logs[i]
                .recent
                .iter()
                .map(|m| m.text.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            (logs[0].channel.name.as_str(), logs[0].last_seq),
            ("General", 2)
        );
        assert_eq!(texts(0), ["m1", "m2"]);
        assert_eq!(texts(1), ["b1"]);
        assert_eq!(next_seq(&store, 3), 3);
        assert!(matches!(
            store.append(vec![send(2)]).unwrap()[0],
            Appended::Duplicate { seq: 2, .. }
        ));
    }

    #[test]
    fn names_are_held_by_their_token() {
        let dir = tempfile::tempdir().unwrap();
        contract::names_are_held_by_their_token(&store(&dir));
    }

    #[test]
    fn look_alikes_of_channels_from_before_a_restart_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        store(&dir).create_channel("General", 1).unwrap();
        assert_eq!(
            store(&dir).create_channel("G\u{435}neral", 2),
            Err(StoreError::ChannelExists("General".into()))
        );
    }

    #[test]
    fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store_with_general(&dir);
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

    /// How many rows `table` holds.
    fn rows(store: &SqliteStore, table: &str) -> usize {
        let count = format!("SELECT count(*) FROM {table}");
        store
            .lock()
            .db
            .query_row(&count, [], |row| row.get(0))
            .unwrap()
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
        let file = dir.path().join("hearth.db").display().to_string();
        assert!(error.to_string().contains(&file), "names the file: {error}");
    }

    #[test]
    fn numbering_continues_after_pruning_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store_with_general(&dir);
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
            let store = store_with_general(&dir);
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

    #[test]
    fn names_kept_by_lower_case_are_keyed_by_look_on_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store(&dir);
            let db = &store.lock().db;
            // As version 3 kept them: keyed by lower case, so a Cyrillic "А" made
            // another name.
            for (key, name, token, last_seen) in [
                ("ada", "Ada", b"t-ada", 10),
                ("\u{430}da", "\u{410}da", b"t-cyr", 20),
                ("grace", "Grace", b"t-grc", 5),
            ] {
                db.execute(
                    "INSERT INTO names (key, name, token_hash, last_seen) VALUES (?1, ?2, ?3, ?4)",
                    params![key, name, token.to_vec(), last_seen],
                )
                .unwrap();
            }
            db.pragma_update(None, "user_version", 3).unwrap();
        }
        let store = store(&dir);
        // The more recently used of the look-alikes keeps the name; the other holder
        // is asked for a name again.
        assert_eq!(
            store.holds_name(&name_key("Ada"), b"t-cyr", 30).unwrap(),
            Some("\u{410}da".to_owned())
        );
        assert_eq!(
            store.holds_name(&name_key("Ada"), b"t-ada", 30).unwrap(),
            None
        );
        assert_eq!(
            store.holds_name(&name_key("GRACE"), b"t-grc", 30).unwrap(),
            Some("Grace".to_owned())
        );
        assert_eq!(rows(&store, "names"), 2);
    }
}
