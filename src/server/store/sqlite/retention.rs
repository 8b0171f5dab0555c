//! Pruning SQLite's messages to the retention setting, a chunk per transaction so
//! sends (which wait for the same lock) are held up for a few milliseconds at a
//! time, never for the whole pass.
//!
//! Before a chunk is deleted, each channel it touches has its last number written to
//! its row: once a channel's newest message may be gone (kept by age, a channel
//! quiet for longer than that), the row is what keeps its numbers from starting over.

use super::{Inner, SqliteStore, backend};
use crate::protocol::Seq;
use crate::server::store::StoreError;
use crate::server::store::retention::{Pruned, Retention, note_gone};
use rusqlite::{Transaction, params};
use std::collections::HashMap;

/// Messages deleted per transaction.
const CHUNK: i64 = 5_000;

pub fn prune(store: &SqliteStore, retention: Retention, now_ms: i64) -> Result<Pruned, StoreError> {
    let mut through: HashMap<String, Seq> = HashMap::new();
    let mut deleted = 0;
    match retention {
        Retention::All => {}
        Retention::Days(_) => {
            let cutoff = retention.cutoff(now_ms).expect("kept by age");
            loop {
                let (count, done) = prune_older_chunk(&mut store.lock(), cutoff, &mut through)?;
                deleted += count;
                if done {
                    break;
                }
            }
        }
        Retention::PerChannel(keep) => {
            let keys: Vec<String> = store.lock().channels.keys().cloned().collect();
            for key in keys {
                loop {
                    let count = prune_channel_chunk(&mut store.lock(), &key, keep, &mut through)?;
                    deleted += count;
                    if count < CHUNK as u64 {
                        break;
                    }
                }
            }
        }
    }
    Ok(Pruned::of(deleted, through))
}

/// Deletes up to a chunk of the oldest messages sent before `cutoff`; says how many,
/// and whether none older are left. Messages are stored in the order they are
/// sent, so the old ones are the first rows: the pass stops at the first young one.
fn prune_older_chunk(
    inner: &mut Inner,
    cutoff: i64,
    through: &mut HashMap<String, Seq>,
) -> Result<(u64, bool), StoreError> {
    let tx = inner.db.transaction().map_err(backend)?;
    let Some(first) = tx
        .query_row("SELECT min(id) FROM log", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .map_err(backend)?
    else {
        return Ok((0, true));
    };
    let young: Option<i64> = tx
        .query_row(
            "SELECT min(id) FROM log WHERE id >= ?1 AND id < ?2 AND sent_at >= ?3",
            params![first, first + CHUNK, cutoff],
            |row| row.get(0),
        )
        .map_err(backend)?;
    let end = young.unwrap_or(first + CHUNK);
    let count = delete_ids(&tx, &inner.channels, first, end, through)?;
    tx.commit().map_err(backend)?;
    // Done at the first young message, or when no row is left past the chunk.
    let done = young.is_some() || {
        let after: Option<i64> = inner
            .db
            .query_row("SELECT min(id) FROM log", [], |row| row.get(0))
            .map_err(backend)?;
        after.is_none()
    };
    Ok((count, done))
}

/// Deletes rows with ids in `first..end`, noting each channel's newest number gone
/// after writing its last number to its row.
fn delete_ids(
    tx: &Transaction<'_>,
    channels: &HashMap<String, super::ChannelMeta>,
    first: i64,
    end: i64,
    through: &mut HashMap<String, Seq>,
) -> Result<u64, StoreError> {
    let touched = tx
        .prepare("SELECT channel, max(seq) FROM log WHERE id >= ?1 AND id < ?2 GROUP BY channel")
        .map_err(backend)?
        .query_map(params![first, end], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Seq>(1)?))
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    for (key, seq) in touched {
        keep_number(tx, channels, &key)?;
        note_gone(through, key, seq);
    }
    let count = tx
        .execute(
            "DELETE FROM log WHERE id >= ?1 AND id < ?2",
            params![first, end],
        )
        .map_err(backend)?;
    Ok(count as u64)
}

/// Writes the channel's last number (from the mirror) to its row.
fn keep_number(
    tx: &Transaction<'_>,
    channels: &HashMap<String, super::ChannelMeta>,
    key: &str,
) -> Result<(), StoreError> {
    if let Some(meta) = channels.get(key) {
        tx.execute(
            "UPDATE channels SET last_seq = max(last_seq, ?1) WHERE key = ?2",
            params![meta.last_seq, key],
        )
        .map_err(backend)?;
    }
    Ok(())
}

/// Deletes up to a chunk of the channel's messages older than its newest `keep`.
fn prune_channel_chunk(
    inner: &mut Inner,
    key: &str,
    keep: u64,
    through: &mut HashMap<String, Seq>,
) -> Result<u64, StoreError> {
    let Some(last) = inner.channels.get(key).map(|meta| meta.last_seq) else {
        return Ok(0);
    };
    let Some(newest_gone) = last.checked_sub(keep).filter(|&seq| seq > 0) else {
        return Ok(0);
    };
    // Most passes find nothing to delete in most channels: a read through the
    // index says so without a write (and its sync) per channel.
    let any_old: bool = inner
        .db
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM log WHERE channel = ?1 AND seq <= ?2)",
            params![key, newest_gone],
            |row| row.get(0),
        )
        .map_err(backend)?;
    if !any_old {
        return Ok(0);
    }
    let tx = inner.db.transaction().map_err(backend)?;
    keep_number(&tx, &inner.channels, key)?;
    let count = tx
        .execute(
            "DELETE FROM log WHERE id IN
                 (SELECT id FROM log WHERE channel = ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3)",
            params![key, newest_gone, CHUNK],
        )
        .map_err(backend)? as u64;
    tx.commit().map_err(backend)?;
    if count > 0 {
        through.insert(key.to_owned(), newest_gone);
    }
    Ok(count)
}
