//! Messages in PostgreSQL: a batch numbered and stored by one function call, pages
//! of a channel's history, and pruning to the retention setting.

use super::backend;
use crate::protocol::{ChatMessage, HistoryPage, HistoryRange, Seq};
use crate::server::store::retention::{Pruned, Retention, note_gone};
use crate::server::store::{Appended, NewMessage, StoreError};
use r2d2_postgres::postgres::{Client, Row};
use std::collections::HashMap;

/// Messages deleted per statement when pruning, so no transaction grows large.
const PRUNE_CHUNK: i64 = 5_000;

/// A message from a row holding, from column `at`: seq, author, text, sent_at,
/// client_id.
pub fn from_row(row: &Row, at: usize, channel: String) -> ChatMessage {
    ChatMessage {
        channel,
        seq: row.get::<_, i64>(at) as Seq,
        author: row.get(at + 1),
        text: row.get(at + 2),
        sent_at: row.get(at + 3),
        client_id: row.get(at + 4),
    }
}

/// Stores a batch in order, numbering each new message after the last of its
/// channel: all of it commits, or none. One call of `hearth_append` (schema
/// version 2), so a batch costs one round trip and one commit however many sends it
/// holds; inside it, each send is looked up among the stored messages by author and
/// client id (a retry is acknowledged with its number, even one repeated within the
/// batch; unlike SQLite's week of send ids, as long as the message is kept), numbered by
/// its channel's row, which stays locked until the commit (two nodes' batches on
/// one channel number one after the other), and stored.
pub fn append(db: &mut Client, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
    let column =
        |field: fn(&NewMessage) -> &str| -> Vec<&str> { batch.iter().map(field).collect() };
    let sent_at: Vec<i64> = batch.iter().map(|m| m.sent_at).collect();
    let rows = db
        .query(
            "SELECT out_outcome, out_key, out_seq, out_name
             FROM hearth_append($1, $2, $3, $4, $5)",
            &[
                &column(|m| &m.channel_key),
                &column(|m| &m.author),
                &column(|m| &m.text),
                &sent_at,
                &column(|m| &m.client_id),
            ],
        )
        .map_err(backend)?;
    if rows.len() != batch.len() {
        return Err(StoreError::backend(
            "PostgreSQL answered a batch with the wrong count",
        ));
    }
    Ok(batch
        .into_iter()
        .zip(rows)
        .map(|(message, row)| {
            let (outcome, key, seq) = (
                row.get::<_, i32>(0),
                row.get::<_, String>(1),
                row.get::<_, i64>(2) as Seq,
            );
            match outcome {
                1 => Appended::New {
                    channel_key: key,
                    message: ChatMessage {
                        channel: row.get(3),
                        seq,
                        author: message.author,
                        text: message.text,
                        sent_at: message.sent_at,
                        client_id: message.client_id,
                    },
                },
                2 => Appended::Duplicate {
                    channel_key: key,
                    seq,
                    client_id: message.client_id,
                },
                _ => Appended::Refused {
                    client_id: message.client_id,
                    error: StoreError::NoSuchChannel(key),
                },
            }
        })
        .collect())
}

/// A page of the channel's history, oldest first, through the primary key.
pub fn history(
    db: &mut Client,
    channel_key: &str,
    range: HistoryRange,
    limit: usize,
) -> Result<HistoryPage, StoreError> {
    let (newest_first, from) = match range {
        HistoryRange::Latest => (true, i64::MAX),
        HistoryRange::Before(seq) => (true, seq.min(i64::MAX as Seq) as i64),
        HistoryRange::After(seq) => (false, seq.min(i64::MAX as Seq) as i64),
    };
    let sql = if newest_first {
        "SELECT c.name, m.seq, m.author, m.text, m.sent_at, m.client_id
         FROM channels c LEFT JOIN LATERAL (
             SELECT * FROM messages WHERE channel = c.key AND seq < $2
             ORDER BY seq DESC LIMIT $3
         ) m ON true WHERE c.key = $1"
    } else {
        "SELECT c.name, m.seq, m.author, m.text, m.sent_at, m.client_id
         FROM channels c LEFT JOIN LATERAL (
             SELECT * FROM messages WHERE channel = c.key AND seq > $2
             ORDER BY seq LIMIT $3
         ) m ON true WHERE c.key = $1"
    };
    // One more than asked: whether it is there says whether there is more.
    let rows = db
        .query(sql, &[&channel_key, &from, &(limit as i64 + 1)])
        .map_err(backend)?;
    let Some(first) = rows.first() else {
        return Err(StoreError::NoSuchChannel(channel_key.to_owned()));
    };
    let name: String = first.get(0);
    let mut messages: Vec<ChatMessage> = rows
        .iter()
        .filter(|row| row.get::<_, Option<i64>>(1).is_some())
        .map(|row| from_row(row, 1, name.clone()))
        .collect();
    let more = messages.len() > limit;
    messages.truncate(limit);
    if newest_first {
        messages.reverse();
    }
    Ok(HistoryPage { messages, more })
}

/// Deletes what `retention` no longer keeps, a chunk per statement. Each channel's
/// row keeps its last number, so numbering is untouched.
pub fn prune(db: &mut Client, retention: Retention, now_ms: i64) -> Result<Pruned, StoreError> {
    let mut through: HashMap<String, Seq> = HashMap::new();
    let mut deleted = 0u64;
    if retention == Retention::All {
        return Ok(Pruned::default());
    }
    for key in channel_keys(db)? {
        let first_kept = first_kept(db, &key, retention, now_ms)?;
        loop {
            let rows = db
                .query(
                    "DELETE FROM messages WHERE ctid IN (
                         SELECT ctid FROM messages WHERE channel = $1 AND seq < $2
                         ORDER BY seq LIMIT $3
                     ) RETURNING channel, seq",
                    &[&key, &first_kept, &PRUNE_CHUNK],
                )
                .map_err(backend)?;
            for row in &rows {
                note_gone(&mut through, row.get(0), row.get::<_, i64>(1) as Seq);
            }
            deleted += rows.len() as u64;
            if (rows.len() as i64) < PRUNE_CHUNK {
                break;
            }
        }
    }
    Ok(Pruned::of(deleted, through))
}

/// The first number the channel keyed `key` keeps under `retention`: its newest
/// so many, or from its first message sent at or after the cutoff (a channel's
/// messages are numbered in the order they were sent, so one index probe past its
/// old ones finds it; with none young, everything goes).
fn first_kept(
    db: &mut Client,
    key: &str,
    retention: Retention,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let row = match retention {
        Retention::PerChannel(keep) => db.query_one(
            "SELECT last_seq - $2 + 1 FROM channels WHERE key = $1",
            &[&key, &(keep.min(i64::MAX as u64) as i64)],
        ),
        _ => db.query_one(
            "SELECT coalesce(
                 (SELECT seq FROM messages WHERE channel = $1 AND sent_at >= $2
                  ORDER BY seq LIMIT 1),
                 (SELECT last_seq + 1 FROM channels WHERE key = $1))",
            &[&key, &retention.cutoff(now_ms).unwrap_or(i64::MIN)],
        ),
    };
    Ok(row.map_err(backend)?.get(0))
}

fn channel_keys(db: &mut Client) -> Result<Vec<String>, StoreError> {
    Ok(db
        .query("SELECT key FROM channels ORDER BY position", &[])
        .map_err(backend)?
        .into_iter()
        .map(|row| row.get(0))
        .collect())
}
