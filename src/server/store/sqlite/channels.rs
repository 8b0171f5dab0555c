//! Channels in SQLite: their rows, the index of their looks, and each one's latest
//! messages as the hub loads them at start.

use super::{ChannelMeta, Inner, backend, messages};
use crate::protocol::{Channel, HistoryRange};
use crate::server::name_key::LookAlikes;
use crate::server::store::{ChannelLog, NewChannel, StoreError};
use rusqlite::{Connection, params};

/// The channels' names, by how they look, oldest first.
pub fn read_looks(db: &Connection) -> Result<LookAlikes, StoreError> {
    let names = db
        .prepare("SELECT name FROM channels ORDER BY rowid")
        .map_err(backend)?
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(LookAlikes::of(names.iter().map(String::as_str)))
}

/// Every channel in creation order, with its latest `window` messages.
pub fn load(inner: &Inner, window: usize) -> Result<Vec<ChannelLog>, StoreError> {
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
    channels
        .into_iter()
        .map(|(key, channel)| {
            let recent = messages::history(inner, &key, HistoryRange::Latest, window)?.messages;
            Ok(ChannelLog {
                // The mirror's number: worked out when the file was opened and
                // kept by every commit since.
                last_seq: inner.channels.get(&key).map_or(0, |meta| meta.last_seq),
                channel,
                recent,
            })
        })
        .collect()
}

/// Creates a channel unless its key or look exists or the cap is reached.
pub fn create(
    inner: &mut Inner,
    new: &NewChannel,
    max_channels: usize,
) -> Result<Channel, StoreError> {
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
        },
    );
    Ok(new.channel())
}
