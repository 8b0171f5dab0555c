//! The hub without sockets: connections registered detached, their queues read
//! as a client would read its socket.

use super::encode::{encode_joined, encode_message};
use super::presence::online_count;
use super::registry::PINGS_PER_TURN;
use super::*;
use crate::protocol::{ApiError, ChatMessage, ErrorCode, MessageError, ServerFrame};
use crate::server::frame;
use crate::server::name_key::name_key;
use crate::server::socket::close_code;
use crate::server::store::MemoryStore;
use crate::server::window::{Kept, Replay};
use bytes::Bytes;
use std::net::IpAddr;
use std::time::Instant;

pub(super) fn hub(capacity: usize) -> Arc<Hub> {
    hub_with_idle_timeout(capacity, Duration::from_secs(45))
}

/// A connection with no socket, in General.
pub(super) fn in_general(hub: &Hub, name: &str) -> Registration {
    let reg = hub.connect_detached(name).unwrap();
    hub.join(reg.id, "General", None).unwrap();
    reg
}

fn hub_with_idle_timeout(capacity: usize, idle_timeout: Duration) -> Arc<Hub> {
    hub_limited(HubLimits {
        idle_timeout,
        ..limits(capacity)
    })
}

/// Limits for a test hub: these, and no others that a test does not name.
fn limits(capacity: usize) -> HubLimits {
    HubLimits {
        room_capacity: capacity,
        history: 100,
        commit_queue: 16,
        ping_interval: Duration::from_secs(15),
        idle_timeout: Duration::from_secs(45),
        max_tabs_per_person: usize::MAX,
        room_seats_per_address: usize::MAX,
        max_channels: usize::MAX,
    }
}

/// A hub with General, within `limits`.
fn hub_limited(limits: HubLimits) -> Arc<Hub> {
    let store = Arc::new(MemoryStore::new(100));
    store.create_channel("General", 0).unwrap();
    hub_on(store, limits)
}

/// A hub on `store`, which holds General.
fn hub_on(store: Arc<dyn Store>, limits: HubLimits) -> Arc<Hub> {
    Hub::start(store, limits, Arc::default()).unwrap()
}

/// The server frame in a queued frame, if it is one (not a ping).
pub(super) fn decoded(queued: Bytes) -> Option<ServerFrame> {
    serde_json::from_slice(frame::server_payload(&queued)).ok()
}

#[test]
fn a_join_answer_is_what_serde_writes_with_the_kept_bytes_copied_in() {
    // Quotes, backslashes, other scripts and the history field's own name in the
    // texts and in a name on the list that follows it.
    let messages: Vec<ChatMessage> = (1..=3)
        .map(|seq| ChatMessage {
            text: format!("\"history\":[] {seq} ünï \\ \n ok"),
            ..crate::protocol::sample_message(seq)
        })
        .collect();
    let kept: Vec<Kept> = messages
        .iter()
        .map(|message| encode_message(message.clone()).1)
        .collect();
    for (message, kept) in messages.iter().zip(&kept) {
        let decoded: ChatMessage = serde_json::from_slice(&kept.json).unwrap();
        assert_eq!(&decoded, message);
    }
    let online = vec!["\"history\":[]".to_owned(), "Ada".to_owned()];
    for (since, history) in [(None, &messages[..]), (Some(1), &messages[1..])] {
        let replay = Replay {
            messages: kept
                .iter()
                .filter(|k| since.is_none_or(|s| k.seq > s))
                .collect(),
            reset: since.is_none(),
        };
        let answer = encode_joined("General".into(), replay, online.clone(), 7);
        let serde = encode(&ServerFrame::Joined {
            channel: "General".into(),
            history: history.to_vec(),
            reset: since.is_none(),
            online: online.clone(),
            online_count: 7,
        });
        assert_eq!(answer, serde);
    }
    let empty = Replay {
        messages: Vec::new(),
        reset: false,
    };
    assert_eq!(
        encode_joined("General".into(), empty, vec![], 0),
        encode(&ServerFrame::Joined {
            channel: "General".into(),
            history: vec![],
            reset: false,
            online: vec![],
            online_count: 0,
        })
    );
}

#[tokio::test]
async fn the_welcome_names_the_person_and_every_channel_as_it_is_now() {
    let hub = hub(10);
    let welcome = |name: &str, seen: Option<&str>| decoded(hub.welcome(name, seen));
    let name = "Ada \"the first\" \\ Lovelace";
    let Some(ServerFrame::Welcome {
        channels_version: first_version,
        ..
    }) = welcome(name, None)
    else {
        panic!("a welcome frame");
    };
    assert_eq!(
        welcome(name, None),
        Some(ServerFrame::Welcome {
            name: name.into(),
            channels: Some(hub.channels()),
            channels_version: first_version.clone(),
        })
    );
    // A tab that shows this list is not sent it again.
    assert_eq!(
        welcome(name, Some(&first_version)),
        Some(ServerFrame::Welcome {
            name: name.into(),
            channels: None,
            channels_version: first_version.clone(),
        })
    );
    hub.create_channel("Random", 5).unwrap();
    let Some(ServerFrame::Welcome {
        channels: Some(channels),
        channels_version,
        ..
    }) = welcome("bob", Some(&first_version))
    else {
        panic!("a welcome with the list, which changed");
    };
    assert_ne!(channels_version, first_version);
    let names: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["General", "Random"]);
}

#[tokio::test]
async fn sends_and_joins_after_the_server_began_stopping_are_refused_as_unavailable() {
    let hub = hub(10);
    let ada = hub.connect_detached("ada").unwrap();
    hub.join(ada.id, "General", None).unwrap();
    hub.close_all(1012, "restarting");
    assert!(matches!(
        hub.send(ada.id, "General", "c1".into(), "hello", 1),
        Err(ApiError::Unavailable)
    ));
    assert!(matches!(
        hub.join(ada.id, "General", None),
        Err(ApiError::Unavailable)
    ));
}

/// Sends one message as `who` and waits for its answer.
async fn answer_to_send(hub: &Hub, who: &Registration, client_id: &str) -> ServerFrame {
    hub.send(who.id, "General", client_id.into(), "hello", 1)
        .unwrap();
    loop {
        if let Some(frame) = decoded(who.outbound.recv().await)
            && matches!(
                frame,
                ServerFrame::Ack { .. } | ServerFrame::SendFailed { .. }
            )
        {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_node_whose_sends_cannot_be_stored_is_not_ready() {
    let store = Arc::new(crate::server::store::faulty::Faulty::new(100));
    store.create_channel("General", 0).unwrap();
    let hub = hub_on(store.clone(), limits(10));
    let ada = in_general(&hub, "ada");
    assert!(hub.store_ready().is_ok());

    store.failing.store(true, Ordering::Relaxed);
    for i in 0..3 {
        let answer = answer_to_send(&hub, &ada, &format!("f{i}")).await;
        assert!(
            matches!(
                answer,
                ServerFrame::SendFailed {
                    code: ErrorCode::Unavailable,
                    ..
                }
            ),
            "{answer:?}"
        );
    }
    let not_ready = hub.store_ready().unwrap_err().to_string();
    assert!(not_ready.contains("the last 3 attempts"), "{not_ready}");

    // Storing works again: so does the node.
    store.failing.store(false, Ordering::Relaxed);
    let answer = answer_to_send(&hub, &ada, "f0").await;
    assert!(matches!(answer, ServerFrame::Ack { .. }), "{answer:?}");
    assert!(hub.store_ready().is_ok());

    // The committer dies: the node says so, for good.
    store.panicking.store(true, Ordering::Relaxed);
    hub.send(ada.id, "General", "p1".into(), "hello", 1)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while hub.store_ready().is_ok() {
        assert!(
            Instant::now() < deadline,
            "still ready after the committer died"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dead = hub.store_ready().unwrap_err().to_string();
    assert!(dead.contains("not being stored"), "{dead}");
}

#[tokio::test]
async fn pings_reach_everyone_however_many_turns_they_take() {
    let hub = hub(10);
    let everyone: Vec<Registration> = (0..PINGS_PER_TURN + 3)
        .map(|i| hub.connect_detached(&format!("p{i}")).unwrap())
        .collect();
    hub.ping_everyone().await;
    for registration in &everyone {
        let got: Vec<Bytes> = std::iter::from_fn(|| registration.outbound.try_recv()).collect();
        assert!(got.contains(&frame::ping()), "{got:?}");
    }
}

#[tokio::test]
async fn pings_reach_everyone_and_a_silent_client_is_let_go() {
    use crate::server::outbox::Signal;
    let hub = hub_with_idle_timeout(10, Duration::from_millis(50));
    let quiet = in_general(&hub, "quiet");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lively = in_general(&hub, "lively");
    hub.ping_everyone().await;
    // Behind a presence update from the background ticker, perhaps.
    let lively_got: Vec<Bytes> = std::iter::from_fn(|| lively.outbound.try_recv()).collect();
    assert!(lively_got.contains(&frame::ping()), "{lively_got:?}");
    assert_eq!(
        quiet.outbound.take_signal(),
        Some(Signal::Close(close_code::AWAY, "no answer to pings"))
    );
    while let Some(queued) = quiet.outbound.try_recv() {
        assert_ne!(queued, frame::ping(), "the silent client is not pinged");
    }
    // Gone from the room, so the room's messages no longer go to it.
    assert_eq!(online_count(&hub.lock(), "general"), 1);
}

#[tokio::test]
async fn a_connection_too_far_behind_is_cut_off_and_told_why() {
    use crate::server::outbox::Signal;
    let hub = hub(10);
    // Nothing is written for a detached connection: like a client that stopped
    // reading, its queue only grows.
    let slow = in_general(&hub, "slow");
    for i in 0..20 {
        hub.create_channel(&format!("Room {i}"), 0).unwrap();
    }
    assert_eq!(
        slow.outbound.take_signal(),
        Some(Signal::Close(
            close_code::TOO_SLOW,
            "too far behind; reconnect to catch up"
        ))
    );
    assert_eq!(hub.census(), (0, 0));
}

#[tokio::test]
async fn giving_up_a_name_lets_go_of_that_holders_tabs_under_it_only() {
    use crate::server::outbox::Signal;
    let hub = hub(10);
    let ada = hub.connect_detached_holding("Ada", "browser-1").unwrap();
    let ada_again = hub.connect_detached_holding("Ada", "browser-1").unwrap();
    // The same browser under its new name, and whoever holds "Ada" next (a
    // cluster hears of the release a moment after the name is free).
    let renamed = hub.connect_detached_holding("Ada L", "browser-1").unwrap();
    let next_holder = hub.connect_detached_holding("Ada", "browser-2").unwrap();
    for reg in [&ada, &ada_again, &renamed, &next_holder] {
        hub.join(reg.id, "General", None).unwrap();
    }
    hub.let_go_of(&name_key("Ada"), Holder::of_token("browser-1"));
    for gone in [&ada, &ada_again] {
        assert_eq!(
            gone.outbound.take_signal(),
            Some(Signal::Close(
                close_code::NAME_GIVEN_UP,
                close_code::NAME_GIVEN_UP_REASON
            ))
        );
    }
    for stays in [&renamed, &next_holder] {
        assert_eq!(stays.outbound.take_signal(), None);
    }
    assert_eq!(hub.census(), (2, 1));
}

/// `connect_detached` from `address`.
fn connect_from(hub: &Hub, name: &str, address: [u8; 4]) -> Result<ConnId, ApiError> {
    hub.connect(
        &Hello::new(name),
        Holder::of_token(name),
        IpAddr::from(address),
        Outbox::detached(16),
    )
}

#[tokio::test]
async fn one_address_seats_only_its_share_of_a_room() {
    let hub = hub_limited(HubLimits {
        room_seats_per_address: 2,
        ..limits(10)
    });
    let home = [198, 51, 100, 7];
    let ada = connect_from(&hub, "ada", home).unwrap();
    let bob = connect_from(&hub, "bob", home).unwrap();
    let cy = connect_from(&hub, "cy", home).unwrap();
    hub.join(ada, "General", None).unwrap();
    hub.join(bob, "General", None).unwrap();
    assert_eq!(
        hub.join(cy, "General", None).err(),
        Some(ApiError::SeatsTaken {
            channel: "General".into(),
            seats: 2
        })
    );
    // Another tab of someone seated takes no seat; someone elsewhere gets one.
    let ada_again = connect_from(&hub, "ada", home).unwrap();
    assert!(hub.join(ada_again, "General", None).is_ok());
    let di = connect_from(&hub, "di", [203, 0, 113, 9]).unwrap();
    assert!(hub.join(di, "General", None).is_ok());
    // A seat is given back when its person leaves, not when one tab does.
    hub.disconnect(ada);
    assert!(hub.join(cy, "General", None).is_err());
    hub.disconnect(ada_again);
    assert!(hub.join(cy, "General", None).is_ok());
}

#[tokio::test]
async fn one_person_holds_only_so_many_tabs() {
    let hub = hub_limited(HubLimits {
        max_tabs_per_person: 2,
        ..limits(10)
    });
    let here = [127, 0, 0, 1];
    let first = connect_from(&hub, "ada", here).unwrap();
    connect_from(&hub, "ada", here).unwrap();
    assert_eq!(
        connect_from(&hub, "ada", here).err(),
        Some(ApiError::TooManyTabs { tabs: 2 })
    );
    assert!(connect_from(&hub, "bob", here).is_ok());
    hub.disconnect(first);
    assert!(connect_from(&hub, "ada", here).is_ok());
}

#[tokio::test]
async fn capacity_counts_people_not_tabs() {
    let hub = hub(2);
    let ada = hub.connect_detached("ada").unwrap();
    let ada_again = hub.connect_detached("ada").unwrap();
    let bob = hub.connect_detached("bob").unwrap();
    let cy = hub.connect_detached("cy").unwrap();
    for reg in [&ada, &ada_again, &bob] {
        hub.join(reg.id, "General", None).unwrap();
    }
    assert!(matches!(
        hub.join(cy.id, "general", None),
        Err(ApiError::RoomFull { capacity: 2, .. })
    ));
    hub.disconnect(bob.id);
    assert!(hub.join(cy.id, "General", None).is_ok());
}

/// Presence frames this connection has queued, decoded.
fn presence_frames(reg: &Registration) -> Vec<(Vec<String>, Vec<String>)> {
    let mut frames = Vec::new();
    while let Some(queued) = reg.outbound.try_recv() {
        if let Some(ServerFrame::Presence { joined, left, .. }) = decoded(queued) {
            frames.push((joined, left));
        }
    }
    frames
}

#[tokio::test]
async fn presence_changes_are_announced_together() {
    let hub = hub(10);
    let ada = hub.connect_detached("ada").unwrap();
    hub.join(ada.id, "General", None).unwrap();
    hub.announce_presence();
    presence_frames(&ada);
    let bob = hub.connect_detached("bob").unwrap();
    let cy = hub.connect_detached("cy").unwrap();
    let di = hub.connect_detached("di").unwrap();
    for reg in [&bob, &cy, &di] {
        hub.join(reg.id, "General", None).unwrap();
    }
    // Di is gone before anyone was told she came: she is never announced.
    hub.disconnect(di.id);
    hub.announce_presence();
    let frames = presence_frames(&ada);
    // The background announcer may have split the arrivals across two frames.
    let mut joined: Vec<String> = frames.iter().flat_map(|(j, _)| j.clone()).collect();
    joined.sort();
    let left: Vec<String> = frames.iter().flat_map(|(_, l)| l.clone()).collect();
    assert!(frames.len() <= 2, "{frames:?}");
    if frames.len() == 1 {
        assert_eq!(joined, ["bob", "cy"]);
        assert!(left.is_empty());
    }
    hub.disconnect(bob.id);
    hub.announce_presence();
    let frames = presence_frames(&ada);
    assert_eq!(frames, [(vec![], vec!["bob".to_string()])]);
}

#[tokio::test]
async fn sends_are_checked_before_they_are_queued() {
    let hub = hub(10);
    let ada = hub.connect_detached("ada").unwrap();
    assert_eq!(
        hub.send(ada.id, "General", "c1".into(), "hi", 0),
        Err(ApiError::NotInChannel("General".into()))
    );
    hub.join(ada.id, "General", None).unwrap();
    assert_eq!(
        hub.send(ada.id, "General", String::new(), "hi", 0),
        Err(ApiError::ClientId)
    );
    assert_eq!(
        hub.send(ada.id, "General", "c1".into(), "  ", 0),
        Err(ApiError::Message(MessageError::Empty))
    );
    assert_eq!(hub.send(ada.id, "General", "c1".into(), "hi", 0), Ok(()));
}

#[tokio::test]
async fn a_stored_message_is_delivered_then_acknowledged() {
    let hub = hub(10);
    let ada = hub.connect_detached("ada").unwrap();
    hub.join(ada.id, "General", None).unwrap();
    hub.send(ada.id, "General", "c1".into(), "hi", 5).unwrap();
    hub.shutdown().await;
    // The shared ticker may announce Ada's own arrival at any moment; what this
    // test is about is the order of everything else.
    let mut frames = Vec::new();
    while let Some(queued) = ada.outbound.try_recv() {
        match decoded(queued) {
            Some(ServerFrame::Presence { .. }) => {}
            Some(frame) => frames.push(frame),
            None => {}
        }
    }
    assert_eq!(frames.len(), 2, "{frames:?}");
    let (message, ack) = (frames[0].clone(), frames[1].clone());
    assert!(
        matches!(message, ServerFrame::Message { message } if message.seq == 1 && message.text == "hi")
    );
    assert_eq!(
        ack,
        ServerFrame::Ack {
            client_id: "c1".into(),
            channel: "General".into(),
            seq: 1
        }
    );
    // After shutdown nothing more is taken.
    assert_eq!(
        hub.send(ada.id, "General", "c2".into(), "late", 6),
        Err(ApiError::Unavailable)
    );
}
