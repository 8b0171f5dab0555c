//! Channels in SQLite: their rows, the index of their looks, and each one's kept
//! window as the hub loads it at start.

use super::{ChannelMeta, Inner, backend};
use crate::protocol::{Channel, ChatMessage};
use crate::server::name_key::LookAlikes;
use crate::server::store::{ChannelLog, NewChannel, StoreError};
use rusqlite::{Connection, params};
use std::collections::{HashMap, VecDeque};

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

/// Every channel in creation order, with its kept window.
pub fn load(inner: &Inner) -> Result<Vec<ChannelLog>, StoreError> {
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
        .prepare("SELECT id, channel, seq, author, text, sent_at, client_id FROM log ORDER BY id")
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
            kept: VecDeque::new(),
        },
    );
    Ok(new.channel())
}
