//! Channels in PostgreSQL: creating one (decided by the database, as any node may
//! create at once) and loading each with its latest messages.

use super::{backend, messages};
use crate::protocol::{Channel, Seq};
use crate::server::name_key::LookAlikes;
use crate::server::store::{ChannelLog, NewChannel, StoreError};
use r2d2_postgres::postgres::Client;

/// Every channel in creation order, with its latest `window` messages: one query,
/// each channel's share read backwards through its primary key.
pub fn load(db: &mut Client, window: usize) -> Result<Vec<ChannelLog>, StoreError> {
    let channels = heads(db)?;
    let rows = db
        .query(
            "SELECT c.key, m.seq, m.author, m.text, m.sent_at, m.client_id
             FROM channels c CROSS JOIN LATERAL (
                 SELECT seq, author, text, sent_at, client_id FROM messages
                 WHERE channel = c.key ORDER BY seq DESC LIMIT $1
             ) m
             ORDER BY c.key, m.seq",
            &[&(window as i64)],
        )
        .map_err(backend)?;
    let place: std::collections::HashMap<String, usize> = channels
        .iter()
        .enumerate()
        .map(|(i, (key, _, _))| (key.clone(), i))
        .collect();
    let mut logs: Vec<ChannelLog> = channels
        .into_iter()
        .map(|(_, channel, last_seq)| ChannelLog {
            channel,
            last_seq,
            recent: Vec::new(),
        })
        .collect();
    for row in rows {
        let key: String = row.get(0);
        if let Some(&i) = place.get(&key) {
            let channel = logs[i].channel.name.clone();
            logs[i].recent.push(messages::from_row(&row, 1, channel));
        }
    }
    Ok(logs)
}

/// Every channel's key, channel and last number, in creation order.
pub fn heads(db: &mut Client) -> Result<Vec<(String, Channel, Seq)>, StoreError> {
    Ok(db
        .query(
            "SELECT key, name, created_at, last_seq FROM channels ORDER BY position",
            &[],
        )
        .map_err(backend)?
        .into_iter()
        .map(|row| {
            let channel = Channel {
                name: row.get(1),
                created_at: row.get(2),
            };
            (row.get(0), channel, row.get::<_, i64>(3) as Seq)
        })
        .collect())
}

/// Creates a channel unless its key or look exists or `max_channels` do. Creations
/// are rare, so they take turns on the whole table: the cap and the looks are then
/// checked against every channel, on every node.
pub fn create(
    db: &mut Client,
    new: &NewChannel,
    max_channels: usize,
) -> Result<Channel, StoreError> {
    let mut tx = db.transaction().map_err(backend)?;
    tx.batch_execute("LOCK TABLE channels IN SHARE ROW EXCLUSIVE MODE")
        .map_err(backend)?;
    let existing: Vec<(String, String)> = tx
        .query("SELECT key, name FROM channels ORDER BY position", &[])
        .map_err(backend)?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    if let Some((_, name)) = existing.iter().find(|(key, _)| *key == new.key) {
        return Err(StoreError::ChannelExists(name.clone()));
    }
    let looks = LookAlikes::of(existing.iter().map(|(_, name)| name.as_str()));
    if let Some(twin) = looks.twin_of_look(&new.look) {
        return Err(StoreError::ChannelExists(twin.to_owned()));
    }
    if existing.len() >= max_channels {
        return Err(StoreError::TooManyChannels(max_channels));
    }
    tx.execute(
        "INSERT INTO channels (key, name, created_at) VALUES ($1, $2, $3)",
        &[&new.key, &new.name, &new.created_at],
    )
    .map_err(backend)?;
    tx.commit().map_err(backend)?;
    Ok(new.channel())
}
