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
    // message by channel and number and by its send (author and client id: a
    // retried send is found there, and can never be stored twice), names held by
    // look.
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
     CREATE UNIQUE INDEX messages_by_send ON messages (author, client_id);
     CREATE TABLE names (
         key        TEXT PRIMARY KEY,
         name       TEXT NOT NULL,
         token_hash BYTEA NOT NULL,
         last_seen  BIGINT NOT NULL
     );
     CREATE TABLE name_keys (version INTEGER NOT NULL);",
    // 2: a batch of sends stored by one call (one round trip, one transaction),
    // as `messages::append` describes: set-based, so each channel's row is
    // updated once per batch, not once per message.
    r"CREATE FUNCTION hearth_append(
         keys text[], authors text[], texts text[], sent_ats bigint[], client_ids text[]
     ) RETURNS TABLE (out_i bigint, out_outcome int, out_key text, out_seq bigint, out_name text)
     LANGUAGE plpgsql AS $$
     BEGIN
         -- The batch's channels, locked in key order: a batch on another node
         -- touching the same channels waits for this one, and never deadlocks.
         PERFORM 1 FROM channels WHERE key = ANY (keys) ORDER BY key FOR UPDATE;
         RETURN QUERY
         WITH batch AS (
             SELECT b.* FROM unnest(keys, authors, texts, sent_ats, client_ids)
                 WITH ORDINALITY AS b (key, author, text, sent_at, client_id, i)
         ), earlier AS (
             -- One primary-key probe per send.
             SELECT b.i, m.channel AS key, m.seq FROM batch b
             CROSS JOIN LATERAL (
                 SELECT messages.channel, messages.seq FROM messages
                 WHERE messages.author = b.author AND messages.client_id = b.client_id
             ) m
         ), fresh AS (
             -- New sends, each once (a retry within the batch is its repeat).
             SELECT DISTINCT ON (b.author, b.client_id) b.* FROM batch b
             WHERE NOT EXISTS (SELECT 1 FROM earlier e WHERE e.i = b.i)
             ORDER BY b.author, b.client_id, b.i
         ), counts AS (
             SELECT f.key, count(*) AS n FROM fresh f GROUP BY f.key
         ), reserved AS (
             UPDATE channels c SET last_seq = c.last_seq + counts.n FROM counts
             WHERE c.key = counts.key
             RETURNING c.key, c.name, c.last_seq - counts.n AS before
         ), numbered AS (
             SELECT f.*, r.name,
                    r.before + row_number() OVER (PARTITION BY f.key ORDER BY f.i) AS seq
             FROM fresh f JOIN reserved r ON r.key = f.key
         ), stored AS (
             INSERT INTO messages (channel, seq, author, text, sent_at, client_id)
             SELECT n.key, n.seq, n.author, n.text, n.sent_at, n.client_id FROM numbered n
         )
         SELECT b.i,
                CASE WHEN e.i IS NOT NULL OR (n.i IS NULL AND r.i IS NOT NULL) THEN 2
                     WHEN n.i IS NOT NULL THEN 1
                     ELSE 0 END,
                coalesce(e.key, n.key, r.key, b.key),
                coalesce(e.seq, n.seq, r.seq, 0)::bigint,
                n.name
         FROM batch b
         LEFT JOIN earlier e ON e.i = b.i
         LEFT JOIN numbered n ON n.i = b.i
         LEFT JOIN numbered r ON e.i IS NULL AND n.i IS NULL
             AND r.author = b.author AND r.client_id = b.client_id
         ORDER BY b.i;
     END $$;",
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
