//! Messages in PostgreSQL: a batch numbered and stored in one transaction in a
//! handful of round trips whatever its size (arrays in, `unnest` out), pages of a
//! channel's history, and pruning to the retention setting.

use super::backend;
use crate::protocol::{ChatMessage, HistoryPage, HistoryRange, Seq};
use crate::server::store::retention::{Pruned, Retention};
use crate::server::store::{Appended, NewMessage, StoreError, policy};
use r2d2_postgres::postgres::{Client, Row};
use std::collections::{BTreeMap, HashMap};

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

/// What one send of a batch turned out to be, before numbers are known.
enum Plan {
    /// Stored before (in an earlier batch), under this channel and number.
    Earlier(String, Seq),
    /// New: the `n`th new message of its channel in this batch.
    New(usize),
    /// The same author's client id appeared earlier in this batch, at this index.
    Repeat(usize),
}

/// Stores a batch in order, numbering each new message after the last of its
/// channel. All of it commits, or none.
pub fn append(db: &mut Client, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
    let mut tx = db.transaction().map_err(backend)?;
    let authors: Vec<&str> = batch.iter().map(|m| m.author.as_str()).collect();
    let client_ids: Vec<&str> = batch.iter().map(|m| m.client_id.as_str()).collect();
    let earlier: HashMap<(String, String), (String, Seq)> = tx
        .query(
            "SELECT s.author, s.client_id, s.channel, s.seq FROM sends s
             JOIN unnest($1::text[], $2::text[]) AS b (author, client_id)
             USING (author, client_id)",
            &[&authors, &client_ids],
        )
        .map_err(backend)?
        .into_iter()
        .map(|row| {
            (
                (row.get(0), row.get(1)),
                (row.get(2), row.get::<_, i64>(3) as Seq),
            )
        })
        .collect();

    // Which sends are new, and how many numbers each channel needs.
    let mut first_in_batch: HashMap<(&str, &str), usize> = HashMap::new();
    let mut wanted: BTreeMap<&str, usize> = BTreeMap::new();
    let plans: Vec<Plan> = batch
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let id = (m.author.as_str(), m.client_id.as_str());
            if let Some((channel, seq)) = earlier.get(&(id.0.to_owned(), id.1.to_owned())) {
                Plan::Earlier(channel.clone(), *seq)
            } else if let Some(&first) = first_in_batch.get(&id) {
                Plan::Repeat(first)
            } else {
                first_in_batch.insert(id, i);
                let count = wanted.entry(m.channel_key.as_str()).or_default();
                *count += 1;
                Plan::New(*count)
            }
        })
        .collect();

    // One statement per channel reserves its numbers; in key order, so two batches
    // touching the same channels lock them in the same order and never deadlock.
    let mut reserved: HashMap<&str, (String, Seq)> = HashMap::new();
    for (key, count) in &wanted {
        let row = tx
            .query_opt(
                "UPDATE channels SET last_seq = last_seq + $2 WHERE key = $1
                 RETURNING name, last_seq",
                &[key, &(*count as i64)],
            )
            .map_err(backend)?;
        if let Some(row) = row {
            let last = row.get::<_, i64>(1) as Seq;
            reserved.insert(*key, (row.get(0), last - *count as Seq));
        }
    }

    let mut outcomes: Vec<Appended> = Vec::with_capacity(batch.len());
    let mut rows = NewRows::default();
    for (message, plan) in batch.iter().zip(&plans) {
        let outcome = match plan {
            Plan::Earlier(channel_key, seq) => Appended::Duplicate {
                channel_key: channel_key.clone(),
                seq: *seq,
                client_id: message.client_id.clone(),
            },
            Plan::Repeat(first) => match &outcomes[*first] {
                Appended::New {
                    channel_key,
                    message: stored,
                } => Appended::Duplicate {
                    channel_key: channel_key.clone(),
                    seq: stored.seq,
                    client_id: message.client_id.clone(),
                },
                refused => refused.clone(),
            },
            Plan::New(n) => match reserved.get(message.channel_key.as_str()) {
                Some((name, before)) => {
                    let stored = ChatMessage {
                        channel: name.clone(),
                        seq: before + *n as Seq,
                        author: message.author.clone(),
                        text: message.text.clone(),
                        sent_at: message.sent_at,
                        client_id: message.client_id.clone(),
                    };
                    rows.add(&message.channel_key, &stored);
                    Appended::New {
                        channel_key: message.channel_key.clone(),
                        message: stored,
                    }
                }
                None => Appended::Refused {
                    client_id: message.client_id.clone(),
                    error: StoreError::NoSuchChannel(message.channel_key.clone()),
                },
            },
        };
        outcomes.push(outcome);
    }
    rows.insert(&mut tx)?;
    if let Some(newest) = rows.sent_at.iter().max() {
        // Through the time index: only what just passed a week is read.
        tx.execute(
            "DELETE FROM sends WHERE sent_at < $1",
            &[&(newest - policy::SEND_ID_RETENTION_MS)],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)?;
    Ok(outcomes)
}

/// A batch's new messages as columns, inserted with one statement per table.
#[derive(Default)]
struct NewRows {
    channel: Vec<String>,
    seq: Vec<i64>,
    author: Vec<String>,
    text: Vec<String>,
    sent_at: Vec<i64>,
    client_id: Vec<String>,
}

impl NewRows {
    fn add(&mut self, channel_key: &str, message: &ChatMessage) {
        self.channel.push(channel_key.to_owned());
        self.seq.push(message.seq as i64);
        self.author.push(message.author.clone());
        self.text.push(message.text.clone());
        self.sent_at.push(message.sent_at);
        self.client_id.push(message.client_id.clone());
    }

    fn insert(&self, tx: &mut r2d2_postgres::postgres::Transaction<'_>) -> Result<(), StoreError> {
        if self.seq.is_empty() {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO messages (channel, seq, author, text, sent_at, client_id)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[],
                                  $5::bigint[], $6::text[])",
            &[
                &self.channel,
                &self.seq,
                &self.author,
                &self.text,
                &self.sent_at,
                &self.client_id,
            ],
        )
        .map_err(backend)?;
        tx.execute(
            "INSERT INTO sends (author, client_id, channel, seq, sent_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                                  $5::bigint[])",
            &[
                &self.author,
                &self.client_id,
                &self.channel,
                &self.seq,
                &self.sent_at,
            ],
        )
        .map_err(backend)?;
        Ok(())
    }
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
    let mut note = |rows: Vec<Row>| {
        for row in &rows {
            let seq = row.get::<_, i64>(1) as Seq;
            let gone = through.entry(row.get(0)).or_default();
            *gone = (*gone).max(seq);
        }
        deleted += rows.len() as u64;
        rows.len() as i64
    };
    match retention {
        Retention::All => {}
        Retention::Days(_) => {
            let cutoff = retention.cutoff(now_ms).expect("kept by age");
            loop {
                let rows = db
                    .query(
                        "DELETE FROM messages WHERE ctid IN (
                             SELECT ctid FROM messages WHERE sent_at < $1 LIMIT $2
                         ) RETURNING channel, seq",
                        &[&cutoff, &PRUNE_CHUNK],
                    )
                    .map_err(backend)?;
                if note(rows) < PRUNE_CHUNK {
                    break;
                }
            }
        }
        Retention::PerChannel(keep) => {
            let keep = keep.min(i64::MAX as u64) as i64;
            let keys: Vec<String> = db
                .query("SELECT key FROM channels", &[])
                .map_err(backend)?
                .into_iter()
                .map(|row| row.get(0))
                .collect();
            for key in keys {
                loop {
                    let rows = db
                        .query(
                            "DELETE FROM messages WHERE ctid IN (
                                 SELECT m.ctid FROM messages m JOIN channels c
                                     ON c.key = m.channel
                                 WHERE m.channel = $1 AND m.seq <= c.last_seq - $2
                                 ORDER BY m.seq LIMIT $3
                             ) RETURNING channel, seq",
                            &[&key, &keep, &PRUNE_CHUNK],
                        )
                        .map_err(backend)?;
                    if note(rows) < PRUNE_CHUNK {
                        break;
                    }
                }
            }
        }
    }
    let mut through: Vec<_> = through.into_iter().collect();
    through.sort();
    Ok(Pruned {
        messages: deleted,
        through,
    })
}
