//! PostgreSQL's tables and their migrations: each version's change runs once, in
//! its own transaction, recorded in `hearth_schema`. Nodes starting together take
//! turns (an advisory lock), so each change runs exactly once.

use super::backend;
use crate::server::name_key::{Held, NAME_KEY_VERSION, rekey, report_freed};
use crate::server::store::StoreError;
use r2d2_postgres::postgres::{Client, Transaction};

/// Each version's change, in order: `MIGRATIONS[0]` makes version 1.
const MIGRATIONS: &[&str] = &[
    // 1: channels with their last number (kept current by every batch), every
    // message by channel and number, send ids for a week, names held by look.
    "CREATE TABLE channels (
         position   BIGINT GENERATED ALWAYS AS IDENTITY,
         key        TEXT PRIMARY KEY,
         name       TEXT NOT NULL,
         created_at BIGINT NOT NULL,
         last_seq   BIGINT NOT NULL DEFAULT 0
     );
     CREATE TABLE messages (
         channel   TEXT NOT NULL REFERENCES channels (key),
         seq       BIGINT NOT NULL,
         author    TEXT NOT NULL,
         text      TEXT NOT NULL,
         sent_at   BIGINT NOT NULL,
         client_id TEXT NOT NULL,
         PRIMARY KEY (channel, seq)
     );
     CREATE INDEX messages_by_time ON messages (sent_at);
     CREATE TABLE sends (
         author    TEXT NOT NULL,
         client_id TEXT NOT NULL,
         channel   TEXT NOT NULL,
         seq       BIGINT NOT NULL,
         sent_at   BIGINT NOT NULL,
         PRIMARY KEY (author, client_id)
     );
     CREATE INDEX sends_by_time ON sends (sent_at);
     CREATE TABLE names (
         key        TEXT PRIMARY KEY,
         name       TEXT NOT NULL,
         token_hash BYTEA NOT NULL,
         last_seen  BIGINT NOT NULL
     );
     CREATE TABLE name_keys (version INTEGER NOT NULL);",
];

/// The layout this version writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Any number, the same on every node: the lock migrations take turns with.
const MIGRATION_LOCK: i64 = 0x4845_4152_5448;

pub fn migrate(db: &mut Client) -> Result<(), StoreError> {
    let mut tx = db.transaction().map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(backend)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS hearth_schema (version BIGINT NOT NULL)")
        .map_err(backend)?;
    let version: i64 = tx
        .query_opt("SELECT version FROM hearth_schema", &[])
        .map_err(backend)?
        .map_or(0, |row| row.get(0));
    if version > SCHEMA_VERSION {
        return Err(StoreError::backend(format!(
            "the database was written by a newer Hearth (schema {version})"
        )));
    }
    for (done, change) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(change).map_err(backend)?;
        let now = done as i64 + 1;
        tx.execute("DELETE FROM hearth_schema", &[])
            .map_err(backend)?;
        tx.execute("INSERT INTO hearth_schema (version) VALUES ($1)", &[&now])
            .map_err(backend)?;
    }
    rekey_names_if_needed(&mut tx)?;
    tx.commit().map_err(backend)
}

/// Names are keyed by [`crate::server::name_key::name_key`]; when its version
/// changes, the held names are keyed anew (a new database records today's).
fn rekey_names_if_needed(tx: &mut Transaction<'_>) -> Result<(), StoreError> {
    let keyed_by: Option<i32> = tx
        .query_opt("SELECT version FROM name_keys", &[])
        .map_err(backend)?
        .map(|row| row.get(0));
    let current = NAME_KEY_VERSION as i32;
    if keyed_by == Some(current) {
        return Ok(());
    }
    if keyed_by.is_some() {
        let held = tx
            .query("SELECT name, token_hash, last_seen FROM names", &[])
            .map_err(backend)?
            .into_iter()
            .map(|row| Held {
                name: row.get(0),
                record: row.get::<_, Vec<u8>>(1),
                last_seen: row.get(2),
            })
            .collect();
        let rekeyed = rekey(held);
        tx.execute("DELETE FROM names", &[]).map_err(backend)?;
        for (key, held) in &rekeyed.kept {
            tx.execute(
                "INSERT INTO names (key, name, token_hash, last_seen) VALUES ($1, $2, $3, $4)",
                &[key, &held.name, &held.record, &held.last_seen],
            )
            .map_err(backend)?;
        }
        report_freed(&rekeyed.freed);
    }
    tx.execute("DELETE FROM name_keys", &[]).map_err(backend)?;
    tx.execute("INSERT INTO name_keys (version) VALUES ($1)", &[&current])
        .map_err(backend)?;
    Ok(())
}
