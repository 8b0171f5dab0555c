//! The rules of a tab's chat, frame by frame: what it shows and what it asks for.

use super::*;
use crate::protocol::sample_message as message;

fn joined_in(channel: &str, history: Vec<ChatMessage>, reset: bool) -> ServerFrame {
    ServerFrame::Joined {
        channel: channel.into(),
        history,
        reset,
        online: vec!["ada".into()],
        online_count: 1,
    }
}

fn joined(history: Vec<ChatMessage>, reset: bool) -> ServerFrame {
    joined_in("General", history, reset)
}

fn general_message(seq: Seq) -> ServerFrame {
    ServerFrame::Message {
        message: message(seq),
    }
}

fn pending(client_id: &str, channel: &str) -> Pending {
    Pending {
        client_id: client_id.into(),
        channel: channel.into(),
        text: format!("text of {client_id}"),
        failed: None,
    }
}

fn join(channel: &str, since: Option<Seq>) -> Effect {
    Effect::Send(ClientFrame::Join {
        channel: channel.into(),
        since,
    })
}

fn send(p: &Pending) -> Effect {
    Effect::Send(send_frame(p))
}

fn ack(client_id: &str) -> ServerFrame {
    ServerFrame::Ack {
        client_id: client_id.into(),
        channel: "General".into(),
        seq: 1,
    }
}

fn error(code: ErrorCode, message: &str) -> ServerFrame {
    ServerFrame::Error {
        code,
        message: message.into(),
    }
}

/// A tab showing General, joined as the page opened.
fn in_general(history: Vec<ChatMessage>) -> ChatState {
    let mut chat = ChatState::default();
    chat.on_frame(joined(history, true), true);
    chat
}

fn seqs(chat: &ChatState) -> Vec<Seq> {
    chat.room
        .as_ref()
        .map(|r| r.messages.iter().map(|m| m.seq).collect())
        .unwrap_or_default()
}

#[test]
fn resuming_appends_and_a_reset_replaces() {
    let mut chat = in_general(vec![message(1), message(2)]);
    chat.on_frame(general_message(3), true);
    // A resume that overlaps what is shown adds only what is new.
    chat.on_frame(joined(vec![message(3), message(4)], false), true);
    assert_eq!(seqs(&chat), [1, 2, 3, 4]);
    // The gap was too old: the window replaces what was shown.
    chat.on_frame(joined(vec![message(10), message(11)], true), true);
    assert_eq!(seqs(&chat), [10, 11]);
}

#[test]
fn a_missed_message_is_asked_for_and_never_skipped_silently() {
    let mut chat = in_general(vec![message(1), message(2)]);
    // 3 never came: 4 is not shown after 2; the room asks from 2 on.
    assert_eq!(
        chat.on_frame(general_message(4), true),
        [join("General", Some(2))]
    );
    assert_eq!(seqs(&chat), [1, 2]);
    // What comes before the answer is in the answer, and is not asked for twice.
    assert_eq!(chat.on_frame(general_message(5), true), []);
    chat.on_frame(
        joined(vec![message(3), message(4), message(5)], false),
        true,
    );
    assert_eq!(seqs(&chat), [1, 2, 3, 4, 5]);
    chat.on_frame(general_message(6), true);
    assert_eq!(seqs(&chat), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_catch_up_refused_for_joining_too_often_waits_quietly() {
    let mut chat = in_general(vec![message(1)]);
    chat.on_frame(general_message(3), true);
    let refused = chat.on_frame(
        error(ErrorCode::RateLimited, "You are switching rooms too fast."),
        true,
    );
    // The room stays, nobody is told off, and it asks again after a pause.
    assert_eq!(refused, [Effect::CatchUpLater]);
    assert_eq!(seqs(&chat), [1]);
    assert_eq!(chat.error, None);
    assert_eq!(chat.catch_up(), [join("General", Some(1))]);
}

#[test]
fn a_gap_in_the_room_being_left_does_not_pull_the_tab_back() {
    let mut chat = in_general(vec![message(1)]);
    assert_eq!(chat.open_channel("Rust"), [join("Rust", None)]);
    // No catch-up of General: the join of Rust is on its way.
    assert_eq!(chat.on_frame(general_message(3), true), []);
    let effects = chat.on_frame(joined_in("Rust", vec![], true), true);
    assert_eq!(effects, [Effect::SaveChannel("Rust".into())]);
    assert_eq!(chat.current_channel().as_deref(), Some("Rust"));
}

#[test]
fn a_pending_send_clears_when_it_comes_back_and_shows_refusals() {
    let mut chat = in_general(vec![]);
    chat.pending = vec![pending("c1", "General"), pending("c2", "General")];
    chat.on_frame(general_message(1), true);
    chat.on_frame(
        ServerFrame::SendFailed {
            client_id: "c2".into(),
            code: ErrorCode::InvalidMessage,
            message: "Messages can be at most 2000 characters.".into(),
        },
        true,
    );
    assert_eq!(chat.pending.len(), 1);
    assert_eq!(
        chat.pending[0].failed.as_deref(),
        Some("Messages can be at most 2000 characters.")
    );
}

#[test]
fn a_send_goes_to_the_open_room_and_waits_there_until_acknowledged() {
    let mut chat = ChatState::default();
    assert_eq!(chat.send_message("lost".into(), "c0".into()), []);
    chat.on_frame(joined(vec![], true), true);
    let effects = chat.send_message("hello".into(), "c1".into());
    let sent = Pending {
        text: "hello".into(),
        ..pending("c1", "General")
    };
    assert_eq!(effects, [send(&sent)]);
    assert_eq!(chat.pending, [sent]);
    chat.on_frame(ack("c1"), true);
    assert_eq!(chat.pending, []);
}

#[test]
fn a_send_refused_because_its_room_was_left_stays_pending() {
    let mut chat = in_general(vec![]);
    let left_behind = pending("c1", "Elsewhere");
    chat.pending = vec![left_behind.clone()];
    chat.on_frame(
        ServerFrame::SendFailed {
            client_id: "c1".into(),
            code: ErrorCode::NotInChannel,
            message: "Join the channel first.".into(),
        },
        true,
    );
    // Not marked as failed: it goes again when its room is open.
    assert_eq!(chat.pending, std::slice::from_ref(&left_behind));
    let effects = chat.on_frame(joined_in("Elsewhere", vec![], true), true);
    assert_eq!(
        effects,
        [Effect::SaveChannel("Elsewhere".into()), send(&left_behind)]
    );
}

#[test]
fn joining_resends_what_is_pending_there_except_what_already_arrived() {
    let mut chat = ChatState::default();
    let arrived = ChatMessage {
        client_id: "c1".into(),
        ..message(1)
    };
    chat.pending = vec![
        pending("c1", "General"),
        pending("c2", "General"),
        pending("c3", "Rust"),
        Pending {
            failed: Some("Too long.".into()),
            ..pending("c4", "General")
        },
    ];
    let effects = chat.on_frame(joined(vec![arrived], true), true);
    assert_eq!(
        effects,
        [
            Effect::SaveChannel("General".into()),
            send(&pending("c2", "General"))
        ]
    );
    let left: Vec<&str> = chat.pending.iter().map(|p| p.client_id.as_str()).collect();
    assert_eq!(left, ["c2", "c3", "c4"]);
}

#[test]
fn a_send_the_server_could_not_store_goes_again_into_its_own_room_only() {
    let mut chat = in_general(vec![]);
    chat.send_message("hello".into(), "c1".into());
    let effects = chat.on_frame(
        ServerFrame::SendFailed {
            client_id: "c1".into(),
            code: ErrorCode::Unavailable,
            message: "The server cannot save messages right now.".into(),
        },
        true,
    );
    assert_eq!(effects, [Effect::RetryLater("c1".into())]);
    assert_eq!(chat.retry("c1").len(), 1);
    // Moved on meanwhile: the retry waits for the room's next join.
    chat.on_frame(joined_in("Rust", vec![], true), true);
    assert_eq!(chat.retry("c1"), []);
}

#[test]
fn a_room_that_cannot_be_rejoined_after_a_reconnect_is_no_longer_shown() {
    let mut chat = in_general(vec![message(1)]);
    let room_full = || error(ErrorCode::RoomFull, "This room is full.");
    // Another room refused: the open one stays.
    chat.open_channel("Crowded");
    chat.on_frame(room_full(), true);
    assert_eq!(chat.current_channel().as_deref(), Some("General"));
    // The open room refused on the way back from a reconnect.
    assert_eq!(
        chat.join_frame(None),
        Some(ClientFrame::Join {
            channel: "General".into(),
            since: Some(1)
        })
    );
    chat.on_frame(room_full(), true);
    assert_eq!(chat.current_channel(), None);
    assert_eq!(chat.error.as_deref(), Some("This room is full."));
}

#[test]
fn a_tab_without_a_room_opens_the_remembered_one_or_else_the_first() {
    let mut chat = ChatState::default();
    let welcome = ServerFrame::Welcome {
        name: "ada".into(),
        channels: Some(vec![
            Channel {
                name: "General".into(),
                created_at: 0,
            },
            Channel {
                name: "Rust".into(),
                created_at: 1,
            },
        ]),
        channels_version: "v1".into(),
    };
    assert_eq!(chat.on_frame(welcome, false), [Effect::Rejoin]);
    assert_eq!(chat.identity, Identity::Named("ada".into()));
    assert_eq!(chat.status, Status::Connected);
    let remembered = chat.join_frame(Some("Gone".into()));
    assert_eq!(
        remembered,
        Some(ClientFrame::Join {
            channel: "Gone".into(),
            since: None
        })
    );
    // The remembered channel was deleted: the first one opens instead, quietly.
    let refused = chat.on_frame(error(ErrorCode::NoSuchChannel, "No such channel."), true);
    assert_eq!(refused, [join("General", None)]);
    assert_eq!(chat.error, None);
    assert_eq!(
        chat.join_frame(None),
        Some(ClientFrame::Join {
            channel: "General".into(),
            since: None
        })
    );
}

#[test]
fn a_name_the_server_does_not_accept_is_claimed_again() {
    let mut chat = in_general(vec![]);
    let effects = chat.on_frame(error(ErrorCode::NameTaken, "That name is taken."), true);
    assert_eq!(effects, [Effect::Reclaim("That name is taken.".into())]);
}

#[test]
fn the_status_says_when_the_server_cannot_save_and_when_it_can_again() {
    let mut chat = ChatState {
        status: Status::Connected,
        ..ChatState::default()
    };
    chat.note_delay(ErrorCode::Unavailable, "The server is busy.".into());
    assert_eq!(chat.status, Status::Degraded);
    assert!(chat.status.is_open(), "retries still go out");
    chat.on_frame(ack("c1"), true);
    assert_eq!(chat.status, Status::Connected);
}

#[test]
fn sending_too_fast_is_said_in_words() {
    let mut chat = in_general(vec![]);
    chat.note_delay(ErrorCode::RateLimited, "Slow down a little.".into());
    assert_eq!(chat.error.as_deref(), Some("Slow down a little."));
    assert_eq!(chat.status, Status::Idle);
}

#[test]
fn presence_follows_joins_and_leaves_of_the_open_room_only() {
    let mut chat = in_general(vec![]);
    let presence = |channel: &str, joined: &[&str], left: &[&str], count| ServerFrame::Presence {
        channel: channel.into(),
        joined: joined.iter().map(|n| n.to_string()).collect(),
        left: left.iter().map(|n| n.to_string()).collect(),
        online_count: count,
        replace: false,
    };
    chat.on_frame(presence("General", &["cy", "bo"], &[], 3), true);
    chat.on_frame(presence("Other", &["di"], &[], 9), true);
    // Someone already shown, announced again, is shown once.
    chat.on_frame(presence("General", &["bo"], &["cy"], 2), true);
    let room = chat.room.expect("General is open");
    assert_eq!(
        (room.online, room.online_count),
        (vec!["ada".into(), "bo".into()], 2)
    );
}

#[test]
fn a_whole_list_replaces_the_shown_one_and_big_rooms_keep_their_count() {
    let mut chat = in_general(vec![]);
    chat.on_frame(
        ServerFrame::Presence {
            channel: "General".into(),
            joined: vec!["zed".into(), "bo".into()],
            left: vec![],
            online_count: 5_000,
            replace: true,
        },
        true,
    );
    let room = chat.room.expect("General is open");
    assert_eq!(
        room.online,
        ["bo", "zed"],
        "ada's departure came with the list"
    );
    assert_eq!(room.online_count, 5_000);
}

#[test]
fn errors_are_shown_in_words() {
    let mut chat = in_general(vec![]);
    chat.on_frame(error(ErrorCode::RoomFull, "This room is full."), true);
    assert_eq!(chat.error.as_deref(), Some("This room is full."));
    assert_eq!(chat.status, Status::Idle);
}

#[test]
fn a_welcome_without_the_list_keeps_the_one_shown() {
    let mut chat = ChatState::default();
    let welcome = |channels: Option<Vec<Channel>>, version: &str| ServerFrame::Welcome {
        name: "ada".into(),
        channels,
        channels_version: version.into(),
    };
    let general = Channel {
        name: "General".into(),
        created_at: 0,
    };
    let hello = |chat: &ChatState| chat.hello("ada".into(), "t".into());
    assert_eq!(
        hello(&chat),
        ClientFrame::Hello {
            name: "ada".into(),
            token: "t".into(),
            channels_version: None
        }
    );
    chat.on_frame(welcome(Some(vec![general.clone()]), "v1"), true);
    assert!(
        matches!(hello(&chat), ClientFrame::Hello { channels_version: Some(v), .. } if v == "v1")
    );
    // Back after a reconnect, named "v1": the list stays as shown.
    chat.on_frame(welcome(None, "v1"), true);
    assert_eq!(chat.channels, std::slice::from_ref(&general));
    // A channel created: the next hello names no version, and gets the list.
    chat.on_frame(
        ServerFrame::ChannelCreated {
            channel: Channel {
                name: "Rust".into(),
                created_at: 1,
            },
        },
        true,
    );
    assert_eq!(chat.channels.len(), 2);
    assert!(matches!(
        hello(&chat),
        ClientFrame::Hello {
            channels_version: None,
            ..
        }
    ));
}
