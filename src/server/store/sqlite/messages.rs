//! Messages in SQLite: each batch numbered and stored in one transaction (group
//! commit), retries recognised by their send ids, in the order stored so a commit's
//! rows share pages; and pages of a channel's history read back.

use super::{ChannelMeta, Inner, backend};
use crate::protocol::{ChatMessage, HistoryPage, HistoryRange, Seq};
use crate::server::store::recent_sends::{RecentSends, Stored};
use crate::server::store::{Appended, NewMessage, StoreError, policy};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;

/// Send ids wait in `recent_sends` until twice this many do; then all but this
/// many newest move to `sends`. Usually that is this many at a time: enough that an
/// author's share is a page, few enough that the move stays a small part of one
/// commit. After a big batch it is as many as the batch brought, so the table and
/// its mirror never grow beyond twice this and one batch.
pub(super) const SENDS_MOVED_AT_ONCE: usize = 128;

/// Each channel with its last number: its newest message's, or for a channel
/// without messages (or a file from before version 2) the number its row keeps.
pub fn read_channels(db: &Connection) -> Result<HashMap<String, ChannelMeta>, StoreError> {
    let mut channels = db
        .prepare("SELECT key, name, last_seq FROM channels")
        .map_err(backend)?
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
        .map_err(backend)?;
    let mut newest = db
        .prepare("SELECT channel, max(seq) FROM log GROUP BY channel")
        .map_err(backend)?;
    let mut rows = newest.query([]).map_err(backend)?;
    while let Some(row) = rows.next().map_err(backend)? {
        let key: String = row.get(0).map_err(backend)?;
        let seq: Seq = row.get(1).map_err(backend)?;
        if let Some(meta) = channels.get_mut(&key) {
            meta.last_seq = meta.last_seq.max(seq);
        }
    }
    Ok(channels)
}

/// A page of the channel's history, oldest first, through `log_by_channel`.
pub fn history(
    inner: &Inner,
    channel_key: &str,
    range: HistoryRange,
    limit: usize,
) -> Result<HistoryPage, StoreError> {
    let meta = inner
        .channels
        .get(channel_key)
        .ok_or_else(|| StoreError::NoSuchChannel(channel_key.to_owned()))?;
    // One more than asked: whether it is there says whether there is more.
    let (newest_first, from) = match range {
        HistoryRange::Latest => (true, meta.last_seq + 1),
        HistoryRange::Before(seq) => (true, seq),
        HistoryRange::After(seq) => (false, seq),
    };
    let sql = if newest_first {
        NEWEST_BEFORE
    } else {
        OLDEST_AFTER
    };
    let mut messages = inner
        .db
        .prepare_cached(sql)
        .map_err(backend)?
        .query_map(params![channel_key, from, limit as i64 + 1], |row| {
            Ok(ChatMessage {
                channel: meta.name.clone(),
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
    let more = messages.len() > limit;
    messages.truncate(limit);
    if newest_first {
        messages.reverse();
    }
    Ok(HistoryPage { messages, more })
}

/// A channel's messages just older than a number, newest first.
const NEWEST_BEFORE: &str = "SELECT seq, author, text, sent_at, client_id FROM log
     WHERE channel = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3";
/// A channel's messages just newer than a number, oldest first.
const OLDEST_AFTER: &str = "SELECT seq, author, text, sent_at, client_id FROM log
     WHERE channel = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";

pub fn read_recent_sends(db: &Connection) -> Result<RecentSends, StoreError> {
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

/// What a failed commit must give back to the mirror.
#[derive(Default)]
struct Undo {
    /// Each touched channel's number before the batch.
    numbers_before: HashMap<String, Seq>,
    /// Sends the batch noted in `recent_sends`.
    sends_added: usize,
    /// The last `recent_sends` row the batch moved to `sends`, to be forgotten
    /// once committed.
    sends_moved_through: Option<i64>,
}

/// A committed batch: each send's outcome.
struct Written {
    outcomes: Vec<Appended>,
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
        let cutoff = outcomes_time(&outcomes) - policy::SEND_ID_RETENTION_MS;
        tx.execute("DELETE FROM sends WHERE sent_at < ?1", [cutoff])
            .map_err(backend)?;
    }
    tx.commit().map_err(backend)?;
    Ok(Written { outcomes })
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

/// Stores a batch in order, numbering each new message after the last of its
/// channel; on failure the mirror is as it was before the batch.
pub fn append(inner: &mut Inner, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
    let mut undo = Undo::default();
    match write_batch(inner, batch, &mut undo) {
        Ok(Written { outcomes }) => {
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
            inner.recent_sends.forget_newest(undo.sends_added);
            Err(e)
        }
    }
}
