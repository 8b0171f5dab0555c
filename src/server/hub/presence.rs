//! Who is in each room: people arriving and leaving through this node, the people
//! other nodes of a cluster report, and the one shared timer that announces changes
//! per room (and pings every connection).

use super::encode::encode;
use super::fanout::deliver;
use super::rooms::display_name;
use super::{ConnId, Hub, State};
use crate::protocol::{ONLINE_LIST_MAX, ServerFrame};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(super) struct Room {
    /// Every connection in the room, in no particular order: each knows its place
    /// (`Conn::slot`), and one leaving swaps the last into its place.
    pub(super) conns: Vec<ConnId>,
    /// Each person here: presence counts connections, shows people.
    pub(super) people: BTreeMap<Arc<str>, Present>,
    /// People seated per address (each person has one seat, taken from the
    /// address of their first connection here), so one address cannot fill a room.
    seats: HashMap<IpAddr, usize>,
    /// People online in the room through other nodes only (not also here), kept
    /// up to date so that counting the room never walks everyone.
    remote_only: usize,
    /// The list and count the members were last told of.
    announced: Vec<Arc<str>>,
    announced_count: usize,
    /// Connections told a list other than `announced` (they joined while changes
    /// waited): the next update brings them the whole list.
    fresh: Vec<ConnId>,
    /// A big room hears of changes no sooner than this.
    quiet_until: Option<Instant>,
}

/// One person in a room through this node.
pub(super) struct Present {
    /// Their connections in the room.
    conns: usize,
    /// The address their seat counts against.
    seat: IpAddr,
}

/// How long presence changes gather before they are announced together.
pub(super) const PRESENCE_TICK: Duration = Duration::from_millis(50);

/// Each member told of a change costs a write; a room waits this long per member
/// between updates, so no room takes more than about 20,000 presence writes a second
/// (every 50 ms up to 1,000 members, every half second at 10,000).
const PRESENCE_WAIT_PER_MEMBER: Duration = Duration::from_micros(50);

/// Who is online in a room: the first names and how many in all.
pub(super) struct Online {
    pub(super) shown: Vec<Arc<str>>,
    pub(super) count: usize,
}

impl Online {
    pub(super) fn names(&self) -> Vec<String> {
        self.shown.iter().map(|n| n.to_string()).collect()
    }
}

impl Hub {
    /// Tells each room whose online list changed what changed, in one frame; rooms
    /// still quiet after their previous update keep their changes for a later tick.
    pub fn announce_presence(&self) {
        let now = Instant::now();
        let mut guard = self.lock();
        let state = &mut *guard;
        let due: Vec<String> = state
            .presence_changed
            .iter()
            .filter(|key| {
                state
                    .rooms
                    .get(*key)
                    .is_none_or(|room| room.quiet_until.is_none_or(|t| t <= now))
            })
            .cloned()
            .collect();
        for key in due {
            state.presence_changed.remove(&key);
            announce_room(state, &key, now);
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
            if let Some(room) = state.rooms.get_mut(&key)
                && now != before
            {
                room.remote_only = now.iter().filter(|n| !room.people.contains_key(*n)).count();
                state.presence_changed.insert(key.clone());
            }
            if !now.is_empty() {
                state.remote.insert(key, now);
            }
        }
    }
}

/// Sends a room the changes to its online list since its previous update.
fn announce_room(state: &mut State, key: &str, now: Instant) {
    let online = online_in(state, key);
    let display = display_name(state, key);
    let Some(room) = state.rooms.get_mut(key) else {
        return;
    };
    let joined = names_missing_from(&online.shown, &room.announced);
    let left = names_missing_from(&room.announced, &online.shown);
    let changed = !joined.is_empty() || !left.is_empty() || online.count != room.announced_count;
    let members = u32::try_from(room.conns.len()).unwrap_or(u32::MAX);
    let quiet = PRESENCE_WAIT_PER_MEMBER * members;
    room.quiet_until = (quiet > PRESENCE_TICK).then(|| now + quiet);
    let fresh: HashSet<ConnId> = std::mem::take(&mut room.fresh).into_iter().collect();
    room.announced.clone_from(&online.shown);
    room.announced_count = online.count;
    // Those who joined since the previous update get the whole list instead.
    let (told_changes, told_all): (Vec<ConnId>, Vec<ConnId>) =
        room.conns.iter().partition(|id| !fresh.contains(id));
    if changed {
        let frame = encode(&ServerFrame::Presence {
            channel: display.clone(),
            joined,
            left,
            online_count: online.count,
            replace: false,
        });
        deliver(state, &told_changes, &frame);
    }
    if !told_all.is_empty() {
        let frame = encode(&ServerFrame::Presence {
            channel: display,
            joined: online.names(),
            left: Vec::new(),
            online_count: online.count,
            replace: true,
        });
        deliver(state, &told_all, &frame);
    }
}

/// The names of `names` that `other` lacks; both are in name order.
fn names_missing_from(names: &[Arc<str>], other: &[Arc<str>]) -> Vec<String> {
    names
        .iter()
        .filter(|name| other.binary_search(name).is_err())
        .map(|name| name.to_string())
        .collect()
}

/// Everyone in a room, here and on other nodes: the first `ONLINE_LIST_MAX` names
/// and the count.
pub(super) fn online_in(state: &State, key: &str) -> Online {
    let no_one = BTreeMap::new();
    let here = state.rooms.get(key).map_or(&no_one, |room| &room.people);
    let count = online_count(state, key);
    let Some(remote) = state.remote.get(key) else {
        return Online {
            shown: here.keys().take(ONLINE_LIST_MAX).cloned().collect(),
            count,
        };
    };
    let mut here_names = here.keys().peekable();
    let mut remote_names = remote.iter().peekable();
    let mut shown = Vec::new();
    while shown.len() < ONLINE_LIST_MAX {
        let next = match (here_names.peek(), remote_names.peek()) {
            (Some(a), Some(b)) if a < b => here_names.next(),
            (Some(a), Some(b)) if a > b => remote_names.next(),
            (Some(_), Some(_)) => {
                remote_names.next();
                here_names.next()
            }
            (Some(_), None) => here_names.next(),
            (None, _) => remote_names.next(),
        };
        match next {
            Some(name) => shown.push(name.clone()),
            None => break,
        }
    }
    Online { shown, count }
}

/// Notes that a connection was just told `online`: when that is not the list the
/// room's members were last told, the changes the next update carries do not apply
/// to it, so the update brings it the whole list instead.
pub(super) fn note_list_told(state: &mut State, id: ConnId, key: &str, online: &Online) {
    let Some(room) = state.rooms.get_mut(key) else {
        return;
    };
    if online.shown != room.announced || online.count != room.announced_count {
        // Repeats are harmless: the update takes each connection once.
        room.fresh.push(id);
        state.presence_changed.insert(key.to_owned());
    }
}

/// How many people from `address` have a seat in a room through this node; none
/// count against someone who is in it already (their next tab takes no seat).
pub(super) fn seats_taken(state: &State, key: &str, name: &str, address: IpAddr) -> usize {
    let Some(room) = state.rooms.get(key) else {
        return 0;
    };
    if room.people.contains_key(name) {
        return 0;
    }
    room.seats.get(&address).copied().unwrap_or(0)
}

/// Whether `name` is online in a room, here or on another node.
pub(super) fn is_online(state: &State, key: &str, name: &str) -> bool {
    state
        .rooms
        .get(key)
        .is_some_and(|room| room.people.contains_key(name))
        || state.remote.get(key).is_some_and(|r| r.contains(name))
}

/// How many people are online in a room, here and on other nodes.
pub(super) fn online_count(state: &State, key: &str) -> usize {
    match state.rooms.get(key) {
        Some(room) => room.people.len() + room.remote_only,
        None => state.remote.get(key).map_or(0, BTreeSet::len),
    }
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
            hub.ping_everyone().await;
        }
    }
}

pub(super) fn enter_room(state: &mut State, id: ConnId, key: &str) {
    let Some(conn) = state.conns.get_mut(&id) else {
        return;
    };
    conn.room = Some(key.to_owned());
    let (name, address) = (conn.name.clone(), conn.address);
    let remote = state.remote.get(key);
    let room = state.rooms.entry(key.to_owned()).or_insert_with(|| Room {
        remote_only: remote.map_or(0, BTreeSet::len),
        ..Room::default()
    });
    let present = room.people.entry(name.clone()).or_insert_with(|| {
        *room.seats.entry(address).or_insert(0) += 1;
        Present {
            conns: 0,
            seat: address,
        }
    });
    present.conns += 1;
    let arrived = present.conns == 1;
    conn.slot = room.conns.len();
    room.conns.push(id);
    let elsewhere = remote.is_some_and(|r| r.contains(&name));
    if arrived {
        if elsewhere {
            room.remote_only -= 1;
        } else {
            state.presence_changed.insert(key.to_owned());
        }
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
    let slot = conn.slot;
    let Some(room) = state.rooms.get_mut(&key) else {
        return;
    };
    // A scan here made a 10,000-person room emptying at once (a restart, a network
    // failure) cost 50 million comparisons under the hub's lock.
    debug_assert_eq!(room.conns.get(slot), Some(&id), "a connection's slot");
    let slot = if room.conns.get(slot) == Some(&id) {
        Some(slot)
    } else {
        room.conns.iter().position(|&c| c == id)
    };
    if let Some(slot) = slot {
        room.conns.swap_remove(slot);
        if let Some(moved) = room.conns.get(slot)
            && let Some(moved) = state.conns.get_mut(moved)
        {
            moved.slot = slot;
        }
    }
    let Some(present) = room.people.get_mut(&name) else {
        return;
    };
    present.conns -= 1;
    if present.conns > 0 {
        return;
    }
    let seat = present.seat;
    room.people.remove(&name);
    if let Some(seated) = room.seats.get_mut(&seat) {
        *seated -= 1;
        if *seated == 0 {
            room.seats.remove(&seat);
        }
    }
    let elsewhere = state.remote.get(&key).is_some_and(|r| r.contains(&name));
    if room.conns.is_empty() {
        // Nobody is left to tell.
        state.rooms.remove(&key);
    } else if elsewhere {
        room.remote_only += 1;
    } else {
        state.presence_changed.insert(key);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decoded, hub, in_general};
    use super::*;
    use crate::protocol::Room as Shown;
    use crate::server::hub::Registration;

    #[tokio::test]
    async fn leaving_in_any_order_leaves_exactly_the_others_in_the_room() {
        let hub = hub(1_000);
        let regs: Vec<Registration> = (0..60)
            .map(|i| in_general(&hub, &format!("p{i}")))
            .collect();
        // Every third from the front, then every fourth of the rest from the back:
        // removals land at the end, the start and the middle of the list.
        let mut gone: Vec<ConnId> = regs.iter().step_by(3).map(|r| r.id).collect();
        let rest: Vec<ConnId> = regs
            .iter()
            .map(|r| r.id)
            .filter(|id| !gone.contains(id))
            .collect();
        gone.extend(rest.iter().rev().step_by(4));
        for &id in &gone {
            hub.disconnect(id);
        }
        let state = hub.lock();
        let room = &state.rooms["general"];
        let mut present = room.conns.clone();
        present.sort_unstable();
        let mut expected: Vec<ConnId> = regs
            .iter()
            .map(|r| r.id)
            .filter(|id| !gone.contains(id))
            .collect();
        expected.sort_unstable();
        assert_eq!(present, expected);
        for (slot, id) in room.conns.iter().enumerate() {
            assert_eq!(state.conns[id].slot, slot, "connection {id}");
        }
        assert_eq!(room.people.len(), expected.len());
    }

    /// The next presence update queued for `reg`, within a second.
    async fn next_presence(reg: &Registration) -> ServerFrame {
        let wait = async {
            loop {
                let queued = reg.outbound.recv().await;
                if let Some(frame @ ServerFrame::Presence { .. }) = decoded(queued) {
                    return frame;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(1), wait)
            .await
            .expect("a presence update within a second")
    }

    /// What a page shows on the answer to its join.
    fn shown_from(joined: ServerFrame) -> Shown {
        let ServerFrame::Joined {
            online,
            online_count,
            ..
        } = joined
        else {
            panic!("a join answer, not {joined:?}");
        };
        Shown {
            online,
            online_count,
            ..Shown::default()
        }
    }

    /// What the page shows once it has applied every update until `until` holds.
    async fn follow(reg: &Registration, mut shown: Shown, until: impl Fn(&Shown) -> bool) -> Shown {
        while !until(&shown) {
            if let ServerFrame::Presence {
                joined,
                left,
                online_count,
                replace,
                ..
            } = next_presence(reg).await
            {
                shown.apply_presence(joined, &left, online_count, replace);
            }
        }
        shown
    }

    /// Joins General and follows the page's list until `until` holds.
    async fn shown_until(hub: &Hub, reg: &Registration, until: impl Fn(&Shown) -> bool) -> Shown {
        let joined = hub
            .join(reg.id, "General", None)
            .expect("the join is answered");
        follow(reg, shown_from(joined), until).await
    }

    fn person(i: usize) -> String {
        format!("p{i:03}")
    }

    #[tokio::test]
    async fn a_big_room_lists_its_first_names_and_counts_everyone() {
        let hub = hub(1_000);
        let people: Vec<Registration> = (0..150).map(|i| in_general(&hub, &person(i))).collect();
        let zed = hub.connect_detached("zed").unwrap();
        let Ok(ServerFrame::Joined {
            online,
            online_count,
            ..
        }) = hub.join(zed.id, "General", None)
        else {
            panic!("zed gets in");
        };
        assert_eq!(online, (0..ONLINE_LIST_MAX).map(person).collect::<Vec<_>>());
        assert_eq!(online_count, 151);

        // Someone beyond the shown names changes only the count; someone who sorts
        // first enters the list and pushes the last shown name out of it.
        let watcher = &people[0];
        let mut watched = shown_until(&hub, watcher, |s| s.online_count == 151).await;
        hub.disconnect(zed.id);
        let ann = hub.connect_detached("ann").unwrap();
        hub.join(ann.id, "General", None).unwrap();
        while watched.online_count != 151 || watched.online[0] != "ann" {
            if let ServerFrame::Presence {
                joined,
                left,
                online_count,
                replace,
                ..
            } = next_presence(watcher).await
            {
                assert!(!joined.iter().any(|n| n == "zed"), "zed is never listed");
                watched.apply_presence(joined, &left, online_count, replace);
            }
        }
        assert_eq!(watched.online.len(), ONLINE_LIST_MAX);
        assert_eq!(watched.online.last(), Some(&person(98)));
    }

    #[tokio::test]
    async fn a_tab_that_joined_between_updates_ends_up_with_the_true_list() {
        let hub = hub(10);
        let ada = hub.connect_detached("ada").unwrap();
        shown_until(&hub, &ada, |s| s.online == ["ada"]).await;
        // Bob comes and goes between two updates, and Cy's list is taken while he is
        // there: the updates must still take him off Cy's list.
        let bob = hub.connect_detached("bob").unwrap();
        hub.join(bob.id, "General", None).unwrap();
        let cy = hub.connect_detached("cy").unwrap();
        let Ok(ServerFrame::Joined { online, .. }) = hub.join(cy.id, "General", None) else {
            panic!("cy gets in");
        };
        hub.disconnect(bob.id);
        let mut shown = Shown {
            online,
            ..Shown::default()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        while tokio::time::Instant::now() < deadline {
            let Ok(queued) = tokio::time::timeout_at(deadline, cy.outbound.recv()).await else {
                break;
            };
            if let Some(ServerFrame::Presence {
                joined,
                left,
                online_count,
                replace,
                ..
            }) = decoded(queued)
            {
                shown.apply_presence(joined, &left, online_count, replace);
            }
        }
        assert_eq!(shown.online, ["ada", "cy"]);
        assert_eq!(shown.online_count, 2);
    }

    #[tokio::test]
    async fn a_joiner_whose_arrival_reshapes_the_list_still_ends_up_with_the_true_list() {
        let hub = hub(1_000);
        let mut people: Vec<Registration> =
            (1..=101).map(|i| in_general(&hub, &person(i))).collect();
        // Wait until everyone has been announced.
        shown_until(&hub, &people[0], |s| s.online_count == 101).await;
        tokio::time::sleep(PRESENCE_TICK * 2).await;

        // Abe sorts first, so his own arrival pushes p100 off the list he is given;
        // then p050 leaves before the next update.
        let abe = hub.connect_detached("abe").unwrap();
        let joined = hub.join(abe.id, "General", None).unwrap();
        let p050 = people.remove(49);
        hub.disconnect(p050.id);
        let shown = follow(&abe, shown_from(joined), |s| s.online_count == 101).await;
        let mut expected: Vec<String> = std::iter::once("abe".to_string())
            .chain((1..=100).filter(|&i| i != 50).map(person))
            .collect();
        expected.truncate(ONLINE_LIST_MAX);
        // Later updates may still come; the list must already be the true one.
        assert_eq!(shown.online, expected);
    }

    #[tokio::test]
    async fn a_room_opened_here_while_its_people_are_elsewhere_lists_them_and_their_leaving() {
        let hub = hub(10);
        let remote = |names: &[&str]| {
            HashMap::from([(
                "general".to_string(),
                names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>(),
            )])
        };
        // Ada and Bob are in General through another node; Ada opens it here too.
        hub.apply_remote_presence(remote(&["ada", "bob"]));
        let ada = hub.connect_detached("ada").unwrap();
        let shown = shown_from(hub.join(ada.id, "General", None).unwrap());
        assert_eq!(shown.online, ["ada", "bob"]);
        assert_eq!(shown.online_count, 2);
        // Bob leaves on the other node: Ada's page, following updates, drops him.
        hub.apply_remote_presence(remote(&["ada"]));
        let shown = follow(&ada, shown, |s| s.online_count == 1).await;
        assert_eq!(shown.online, ["ada"]);
    }

    #[tokio::test]
    async fn a_room_of_thousands_hears_of_changes_less_often() {
        let hub = hub(20_000);
        let members: Vec<Registration> = (0..10_000)
            .map(|i| in_general(&hub, &format!("m{i:05}")))
            .collect();
        let watcher = &members[0];
        next_presence(watcher).await;
        let heard_at = tokio::time::Instant::now();
        let late = hub.connect_detached("late").unwrap();
        hub.join(late.id, "General", None).unwrap();
        let ServerFrame::Presence { online_count, .. } = next_presence(watcher).await else {
            unreachable!()
        };
        assert_eq!(online_count, 10_001);
        // 10,000 members at 50 µs each: half a second between two updates.
        assert!(heard_at.elapsed() >= Duration::from_millis(400));
    }
}
