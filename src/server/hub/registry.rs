//! Who is connected: registering a connection that said hello (its welcome, the
//! cap on one person's tabs), letting connections go (closed, silent, given up
//! names), and the shared ping.

use super::encode::welcome;
use super::fanout::{cut_off, enqueue};
use super::presence::take_out_of_room;
use super::{Conn, ConnId, Hub, State};
use crate::protocol::ApiError;
use crate::server::frame;
use crate::server::name_key::name_key;
use crate::server::names::Holder;
use crate::server::outbox::Outbox;
use crate::server::socket::close_code;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
#[cfg(test)]
use {super::Registration, bytes::Bytes};

/// Connections pinged under one hold of the lock: about a millisecond of socket
/// writes here.
pub(super) const PINGS_PER_TURN: usize = 64;

/// Who said hello, and the channel list their tab shows.
#[derive(Clone, Debug)]
pub struct Hello {
    /// The name as held.
    pub name: String,
    /// The version of the channel list the tab shows, if any.
    pub channels_version: Option<String>,
}

impl Hello {
    /// A hello from a tab that shows no channels yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            channels_version: None,
        }
    }
}

/// Removes connections (their rooms hear of it with the next presence update).
pub(super) fn evict(state: &mut State, gone: Vec<ConnId>) {
    for id in gone {
        take_out_of_room(state, id);
        let Some(conn) = state.conns.remove(&id) else {
            continue;
        };
        if let Some(open) = state.tabs.get_mut(&conn.name) {
            *open -= 1;
            if *open == 0 {
                state.tabs.remove(&conn.name);
            }
        }
    }
}

impl Hub {
    /// Registers a connection for a person who said hello from `address` and
    /// queues its welcome (their name and every channel, unless the tab shows the
    /// list's version `seen` already) ahead of anything else, for the caller to
    /// write. Refused once the server is stopping (`Unavailable`), and for a person
    /// who holds as many tabs as one may.
    pub fn connect(
        &self,
        hello: &Hello,
        holder: Holder,
        address: IpAddr,
        outbox: Arc<Outbox>,
    ) -> Result<ConnId, ApiError> {
        let name = hello.name.as_str();
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        // Checked under the lock, so `close_all` cannot miss a connection.
        if self.closing.load(Ordering::Acquire) {
            return Err(ApiError::Unavailable);
        }
        let tabs = self.limits.max_tabs_per_person;
        let name: Arc<str> = match state.tabs.get_key_value(name) {
            Some((_, &open)) if open >= tabs => return Err(ApiError::TooManyTabs { tabs }),
            Some((held, _)) => held.clone(),
            None => name.into(),
        };
        *state.tabs.entry(name.clone()).or_insert(0) += 1;
        // Not written here: when the client joined in the same packet as its hello,
        // the welcome leaves with the answer, in one write (see `ws::run`).
        outbox.push_own(welcome(
            &mut state,
            &name,
            hello.channels_version.as_deref(),
        ));
        state.conns.insert(
            id,
            Conn {
                name,
                holder,
                address,
                outbox,
                room: None,
                slot: 0,
            },
        );
        Ok(id)
    }

    /// `connect` with no socket behind it: tests read the queue.
    #[cfg(test)]
    pub fn connect_detached(&self, name: &str) -> Option<Registration> {
        self.connect_detached_holding(name, name)
    }

    /// `connect_detached` for the holder of `token`.
    #[cfg(test)]
    pub fn connect_detached_holding(&self, name: &str, token: &str) -> Option<Registration> {
        let outbound = Outbox::detached(16);
        let localhost = IpAddr::from([127, 0, 0, 1]);
        let id = self
            .connect(
                &Hello::new(name),
                Holder::of_token(token),
                localhost,
                outbound.clone(),
            )
            .ok()?;
        // Tests read the welcome through `welcome`, and the rest here.
        let _welcome = outbound.try_recv();
        Some(Registration { id, outbound })
    }

    #[cfg(test)]
    pub fn welcome(&self, name: &str, seen: Option<&str>) -> Bytes {
        welcome(&mut self.lock(), name, seen)
    }

    /// Pings every connection (written straight to the sockets, no task woken), and
    /// lets go of those silent for longer than the idle timeout. A connection too
    /// far behind to take even a ping is cut off. A few dozen at a time, letting the
    /// runtime run in between: 18,000 in one go held every message up for a quarter
    /// of a second.
    pub async fn ping_everyone(&self) {
        let ids: Vec<ConnId> = self.lock().conns.keys().copied().collect();
        for some in ids.chunks(PINGS_PER_TURN) {
            self.ping(some);
            tokio::task::yield_now().await;
        }
    }

    fn ping(&self, ids: &[ConnId]) {
        let mut state = self.lock();
        let idle_timeout = self.limits.idle_timeout;
        let mut silent = Vec::new();
        let mut lagging = Vec::new();
        let State {
            conns, to_flush, ..
        } = &mut *state;
        // Connections gone since the list was taken are skipped.
        for (id, conn) in ids.iter().filter_map(|id| Some((id, conns.get(id)?))) {
            if conn.outbox.quiet_for() > idle_timeout {
                conn.outbox
                    .request_close(close_code::AWAY, "no answer to pings");
                silent.push(*id);
                continue;
            }
            if enqueue(conn, &frame::ping(), to_flush).is_err() {
                lagging.push(*id);
            }
        }
        evict(&mut state, silent);
        cut_off(&mut state, lagging);
    }

    /// Lets go of every connection of `holder` under the name keyed `key`, which they
    /// gave up (here, or through another node): those tabs would otherwise go on
    /// chatting as a name that is someone else's once claimed. Their pages reconnect
    /// as whoever they now are. Connections of whoever holds the name next stay.
    pub fn let_go_of(&self, key: &str, holder: Holder) {
        let mut state = self.lock();
        // Only the holder's own few tabs get their key worked out (a Unicode
        // skeleton); everyone else is passed over by a number.
        let gone: Vec<ConnId> = state
            .conns
            .iter()
            .filter(|(_, conn)| conn.holder == holder && name_key(&conn.name) == key)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            state.conns[id]
                .outbox
                .request_close(close_code::NAME_GIVEN_UP, close_code::NAME_GIVEN_UP_REASON);
        }
        evict(&mut state, gone);
    }

    /// Forgets a connection, taking it out of its room.
    pub fn disconnect(&self, id: ConnId) {
        let mut state = self.lock();
        evict(&mut state, vec![id]);
    }
}
