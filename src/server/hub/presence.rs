//! Who is in each room: people arriving and leaving through this node, the people
//! other nodes of a cluster report, and the one shared timer that announces changes
//! per room (and pings every connection).

use super::{ConnId, Hub, State, broadcast_room, display_name, encode};
use crate::protocol::ServerFrame;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

#[derive(Default)]
pub(super) struct Room {
    pub(super) conns: Vec<ConnId>,
    /// Connections per person: presence counts connections, shows people.
    pub(super) people: BTreeMap<Arc<str>, usize>,
    /// People who arrived and left since the last presence update.
    arrived: Vec<Arc<str>>,
    departed: Vec<Arc<str>>,
}

impl Room {
    fn note_arrival(&mut self, name: Arc<str>) {
        // Back before anyone was told they left: nothing changed.
        if let Some(i) = self.departed.iter().position(|n| *n == name) {
            self.departed.swap_remove(i);
        } else {
            self.arrived.push(name);
        }
    }

    fn note_departure(&mut self, name: Arc<str>) {
        if let Some(i) = self.arrived.iter().position(|n| *n == name) {
            self.arrived.swap_remove(i);
        } else {
            self.departed.push(name);
        }
    }
}

/// How long presence changes gather before they are announced together.
pub(super) const PRESENCE_TICK: Duration = Duration::from_millis(50);

impl Hub {
    /// Tells each room with presence changes who arrived and who left, in one frame.
    pub fn announce_presence(&self) {
        let mut state = self.lock();
        let changed: Vec<String> = state.presence_changed.drain().collect();
        for key in changed {
            let display = display_name(&state, &key);
            let Some(room) = state.rooms.get_mut(&key) else {
                continue;
            };
            if room.arrived.is_empty() && room.departed.is_empty() {
                continue;
            }
            let frame = encode(&ServerFrame::Presence {
                channel: display,
                joined: room.arrived.drain(..).map(|n| n.to_string()).collect(),
                left: room.departed.drain(..).map(|n| n.to_string()).collect(),
            });
            broadcast_room(&mut state, &key, &frame);
        }
    }

    /// The people in each room through this node, for the rest of the cluster.
    pub fn local_presence(&self) -> Vec<(String, Vec<String>)> {
        let state = self.lock();
        state
            .rooms
            .iter()
            .filter(|(_, room)| !room.people.is_empty())
            .map(|(key, room)| {
                let people = room.people.keys().map(|p| p.to_string()).collect();
                (key.clone(), people)
            })
            .collect()
    }

    /// Takes in who is in each room through other nodes; the rooms here hear of
    /// anyone who arrived or left with the next presence update.
    pub fn apply_remote_presence(&self, rooms: HashMap<String, BTreeSet<String>>) {
        let mut guard = self.lock();
        let state = &mut *guard;
        for (key, names) in rooms {
            let now: BTreeSet<Arc<str>> = names.into_iter().map(Arc::from).collect();
            let before = state.remote.remove(&key).unwrap_or_default();
            if let Some(room) = state.rooms.get_mut(&key) {
                let mut changed = false;
                for name in now.difference(&before) {
                    if !room.people.contains_key(name) {
                        room.note_arrival(name.clone());
                        changed = true;
                    }
                }
                for name in before.difference(&now) {
                    if !room.people.contains_key(name) {
                        room.note_departure(name.clone());
                        changed = true;
                    }
                }
                if changed {
                    state.presence_changed.insert(key.clone());
                }
            }
            if !now.is_empty() {
                state.remote.insert(key, now);
            }
        }
    }
}

/// Everyone in a room, here and on other nodes, in name order.
pub(super) fn online_in(state: &State, key: &str) -> BTreeSet<Arc<str>> {
    let mut online: BTreeSet<Arc<str>> = state
        .rooms
        .get(key)
        .map(|room| room.people.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(remote) = state.remote.get(key) {
        online.extend(remote.iter().cloned());
    }
    online
}

/// One shared timer for every room and every connection, rather than a timer per
/// connection: presence changes go out every tick, pings every `ping_interval`.
pub(super) async fn run_ticker(hub: Weak<Hub>, ping_interval: Duration) {
    let mut ticks = tokio::time::interval(PRESENCE_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ping = tokio::time::Instant::now();
    loop {
        ticks.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        hub.announce_presence();
        if last_ping.elapsed() >= ping_interval {
            last_ping = tokio::time::Instant::now();
            hub.ping_all();
        }
    }
}

pub(super) fn enter_room(state: &mut State, id: ConnId, key: &str) {
    let Some(conn) = state.conns.get_mut(&id) else {
        return;
    };
    conn.room = Some(key.to_owned());
    let name = conn.name.clone();
    let room = state.rooms.entry(key.to_owned()).or_default();
    let count = room.people.entry(name.clone()).or_insert(0);
    *count += 1;
    room.conns.push(id);
    let elsewhere = state.remote.get(key).is_some_and(|r| r.contains(&name));
    if *count == 1 && !elsewhere {
        room.note_arrival(name);
        state.presence_changed.insert(key.to_owned());
    }
}

pub(super) fn leave_room(state: &mut State, id: ConnId) {
    take_out_of_room(state, id);
}

/// Takes a connection out of its room; when it was the person's last connection
/// there, the room hears that they left with the next presence update.
pub(super) fn take_out_of_room(state: &mut State, id: ConnId) {
    let Some(conn) = state.conns.get_mut(&id) else {
        return;
    };
    let Some(key) = conn.room.take() else {
        return;
    };
    let name = conn.name.clone();
    let Some(room) = state.rooms.get_mut(&key) else {
        return;
    };
    room.conns.retain(|&c| c != id);
    let Some(count) = room.people.get_mut(&name) else {
        return;
    };
    *count -= 1;
    if *count > 0 {
        return;
    }
    room.people.remove(&name);
    let elsewhere = state.remote.get(&key).is_some_and(|r| r.contains(&name));
    if room.conns.is_empty() {
        // Nobody is left to tell.
        state.rooms.remove(&key);
    } else if !elsewhere {
        room.note_departure(name);
        state.presence_changed.insert(key);
    }
}
