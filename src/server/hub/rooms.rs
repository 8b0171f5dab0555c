//! Channels and rooms: creating a channel, joining and leaving rooms (capacity and
//! seats per address), and taking sends in to be stored.

use super::encode::{encode, encode_joined};
use super::fanout::deliver;
use super::presence::{
    enter_room, is_online, leave_room, note_list_told, online_count, online_in, seats_taken,
};
use super::publish::Job;
use super::{ConnId, Hub, State};
use crate::protocol::{
    ApiError, CLIENT_ID_MAX_BYTES, Channel, Seq, ServerFrame, channel_key, validate_channel_name,
    validate_message,
};
#[cfg(test)]
use crate::server::frame;
use crate::server::store::{NewChannel, NewMessage};
use crate::server::window::ChannelWindow;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Hub {
    /// Durably creates a channel and tells every connection about it. Blocks on the
    /// store: call it from a blocking context.
    pub fn create_channel(&self, raw_name: &str, now: i64) -> Result<Channel, ApiError> {
        let name = validate_channel_name(raw_name)?;
        let new = NewChannel::new(&name, now);
        let channel = self
            .store
            .create_channel_within(&new, self.limits.max_channels)?;
        // In a cluster the stream of creations may have brought it here already.
        add_channel(
            &mut self.lock(),
            new.key,
            channel.clone(),
            self.limits.history,
        );
        Ok(channel)
    }

    /// Moves a connection into a channel and returns the frame that answers the join:
    /// the history after `since` (or the whole window) and who is online. Connections
    /// use `join_queued`; tests read the answer here.
    #[cfg(test)]
    pub fn join(
        &self,
        id: ConnId,
        raw_channel: &str,
        since: Option<Seq>,
    ) -> Result<ServerFrame, ApiError> {
        let answer = self.join_locked(&mut self.lock(), id, raw_channel, since)?;
        Ok(serde_json::from_slice(frame::server_payload(&answer)).expect("a joined frame"))
    }

    /// Like `join`, and queues the answer for the connection behind what was queued
    /// for it before (its old room's messages and presence updates), so nothing meant
    /// for the list or history it had arrives after the ones it now gets.
    pub fn join_queued(
        &self,
        id: ConnId,
        raw_channel: &str,
        since: Option<Seq>,
    ) -> Result<(), ApiError> {
        let mut state = self.lock();
        let answer = self.join_locked(&mut state, id, raw_channel, since)?;
        deliver(&mut state, &[id], &answer);
        Ok(())
    }

    fn join_locked(
        &self,
        state: &mut State,
        id: ConnId,
        raw_channel: &str,
        since: Option<Seq>,
    ) -> Result<Bytes, ApiError> {
        let key = channel_key(&validate_channel_name(raw_channel)?);
        let Some(window) = state.windows.get(&key) else {
            return Err(ApiError::NoSuchChannel(raw_channel.trim().to_owned()));
        };
        let display = window.channel.name.clone();
        let Some(conn) = state.conns.get(&id) else {
            // Gone because the server is stopping (`close_all`), or cut off for
            // falling behind, in which case its socket is closing anyway.
            return Err(if self.closing.load(Ordering::Acquire) {
                ApiError::Unavailable
            } else {
                ApiError::NoSuchChannel(display)
            });
        };
        let (name, address) = (conn.name.clone(), conn.address);
        if conn.room.as_deref() != Some(key.as_str()) {
            if !is_online(state, &key, &name)
                && online_count(state, &key) >= self.limits.room_capacity
            {
                return Err(ApiError::RoomFull {
                    channel: display,
                    capacity: self.limits.room_capacity,
                });
            }
            let seats = self.limits.room_seats_per_address;
            if seats_taken(state, &key, &name, address) >= seats {
                return Err(ApiError::SeatsTaken {
                    channel: display,
                    seats,
                });
            }
            leave_room(state, id);
            enter_room(state, id, &key);
        }
        let online = online_in(state, &key);
        note_list_told(state, id, &key, &online);
        let replay = state.windows[&key].replay(since);
        Ok(encode_joined(display, replay, online.names(), online.count))
    }

    /// Takes a connection out of its room, if it is in one.
    pub fn leave(&self, id: ConnId) {
        let mut state = self.lock();
        leave_room(&mut state, id);
    }

    /// Queues a message from a connection for storing. Once stored it is delivered to
    /// the room and acknowledged to the sender; a refusal found then comes back as a
    /// `SendFailed`. Errors here are refusals found at once.
    pub fn send(
        &self,
        id: ConnId,
        raw_channel: &str,
        client_id: String,
        raw_text: &str,
        now: i64,
    ) -> Result<(), ApiError> {
        if client_id.is_empty() || client_id.len() > CLIENT_ID_MAX_BYTES {
            return Err(ApiError::ClientId);
        }
        let text = validate_message(raw_text)?;
        let key = channel_key(raw_channel);
        let author = {
            let state = self.lock();
            // Checked first, under the lock `close_all` sets it under: once it has
            // emptied the rooms, a late send is refused because the server is
            // stopping, not because its sender seems to be in no room.
            if self.closing.load(Ordering::Acquire) {
                return Err(ApiError::Unavailable);
            }
            state
                .conns
                .get(&id)
                .filter(|c| c.room.as_deref() == Some(key.as_str()))
                .map(|c| c.name.to_string())
                .ok_or_else(|| ApiError::NotInChannel(raw_channel.trim().to_owned()))?
        };
        let job = Job::Send {
            conn: id,
            received: Instant::now(),
            message: NewMessage {
                channel_key: key,
                author,
                text,
                sent_at: now,
                client_id,
            },
        };
        self.commits
            .try_send(job)
            .map_err(|_| ApiError::Unavailable)
    }
}

pub(super) fn all_channels(state: &State) -> Vec<Channel> {
    state
        .order
        .iter()
        .map(|key| state.windows[key].channel.clone())
        .collect()
}

/// Adds a channel this node did not know and tells everyone; false if it knew it.
pub(super) fn add_channel(
    state: &mut State,
    key: String,
    channel: Channel,
    history: usize,
) -> bool {
    if state.windows.contains_key(&key) {
        return false;
    }
    state.order.push(key.clone());
    state.channels_json = None;
    state.windows.insert(
        key,
        ChannelWindow::new(channel.clone(), 0, Vec::new(), history),
    );
    let frame = encode(&ServerFrame::ChannelCreated { channel });
    let everyone: Vec<ConnId> = state.conns.keys().copied().collect();
    deliver(state, &everyone, &frame);
    true
}

pub(super) fn display_name(state: &State, key: &str) -> String {
    state
        .windows
        .get(key)
        .map_or_else(|| key.to_owned(), |w| w.channel.name.clone())
}
