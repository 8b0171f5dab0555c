//! The SQLite file's layout and its migrations, each run once at open and
//! recorded in `user_version`, keeping what older versions wrote.

use super::backend;
use crate::server::name_key::{Held, rekey, report_freed};
use crate::server::store::StoreError;
use rusqlite::{Connection, params};

/// The layout this version writes:
/// 2: `channels.last_seq` is no longer kept current (see `ChannelMeta::last_seq`),
/// so a version that trusts it must not open the file.
/// 3: messages live in `log`, and new send ids in `recent_sends`, in the order
/// they were stored.
/// 4: names keyed by look (`name_key` version 2).
/// 5: names keyed anew (`name_key` version 3: blanks that look like spaces are
/// spaces).
/// 6: every message kept, and found by channel and number (`log_by_channel`).
pub const SCHEMA_VERSION: i64 = 6;

pub fn migrate(db: &Connection) -> Result<(), StoreError> {
    let version: i64 = db
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::backend(format!(
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
    // Each change of `name_key` re-keys the names held.
    if version < 4 {
        rekey_names(db, 4)?;
    }
    if version < 5 {
        rekey_names(db, 5)?;
    }
    if version < 6 {
        // Before, only each channel's window was kept; every row there is kept
        // from now on, and a page of history is a range of this index.
        db.execute_batch(
            "BEGIN;
             CREATE INDEX IF NOT EXISTS log_by_channel ON log (channel, seq);
             PRAGMA user_version = 6;
             COMMIT;",
        )
        .map_err(backend)?;
    }
    Ok(())
}

/// Keys every held name anew by [`crate::server::name_key::name_key`] and records
/// `version`: version 4 keyed names by look, no longer by lower case alone; 5 by
/// the look with blanks as spaces.
fn rekey_names(db: &Connection, version: i64) -> Result<(), StoreError> {
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
        .pragma_update(None, "user_version", version)
        .map_err(backend)?;
    transaction.commit().map_err(backend)?;
    report_freed(&rekeyed.freed);
    Ok(())
}
