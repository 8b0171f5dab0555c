//! End-to-end tests of the chat against the real binary: each test starts its own
//! server on an ephemeral port and talks to it over HTTP and WebSocket only.

mod common;

use common::{Client, Server, now_ms, upgrade_with_origin};
use hearth::protocol::Room;
use hearth::protocol::{
    ApiError, Channel, ChannelNameError, ClientFrame, ErrorCode, MESSAGE_MAX_CHARS, NameError,
    NameGrant, ONLINE_LIST_MAX, ServerFrame,
};
use reqwest::StatusCode;

fn names(channels: &[Channel]) -> Vec<&str> {
    channels.iter().map(|c| c.name.as_str()).collect()
}

/// How far a server timestamp may be from the test's clock; both read the same
/// machine's clock, so this only absorbs scheduling delays.
const CLOCK_SLACK_MS: i64 = 5_000;

fn assert_recent(sent_at: i64) {
    let now = now_ms();
    assert!(
        (now - CLOCK_SLACK_MS..=now + CLOCK_SLACK_MS).contains(&sent_at),
        "timestamp {sent_at} is not close to now ({now})"
    );
}

#[tokio::test]
async fn channels_are_created_over_http_and_appear_live() {
    let server = Server::start().await;
    let mut watcher = Client::connect(&server).await;
    let grant = server.claim("Watcher").await;
    let welcome_channels = watcher.hello(&grant.name, &grant.token).await;
    assert_eq!(names(&welcome_channels), ["General"]);

    let (status, listed) = server.call::<Vec<Channel>>("channels", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&listed.unwrap()), ["General"]);

    let (status, created) = server.create_channel("  Rust   Talk ").await;
    assert_eq!(status, StatusCode::OK);
    let created = created.expect("a new channel name is accepted");
    assert_eq!(created.name, "Rust Talk", "names are trimmed and collapsed");
    assert_recent(created.created_at);
    let announced = watcher
        .recv_until("ChannelCreated", |frame| match frame {
            ServerFrame::ChannelCreated { channel } => Some(channel.clone()),
            _ => None,
        })
        .await;
    assert_eq!(announced, created);

    // A refusal answers with the status of its code and the JSON-encoded `ApiError`
    // the page decodes: a channel that exists is a conflict, a bad name unprocessable.
    // Other capitals and spacing make no new channel, nor do letters drawn the same
    // (a Cyrillic "е", fullwidth letters): the refusal names the channel that exists.
    for (attempt, existing) in [
        ("  gENERAL ", "General"),
        ("rust talk", "Rust Talk"),
        ("G\u{435}neral", "General"),
        ("ＲＵＳＴ talk", "Rust Talk"),
    ] {
        let (status, refused) = server.create_channel(attempt).await;
        assert_eq!(status, StatusCode::CONFLICT, "{attempt:?}");
        let err = refused.expect_err(attempt);
        assert_eq!(err, ApiError::ChannelExists(existing.into()), "{attempt:?}");
        assert_eq!(
            err.to_string(),
            format!("A channel named “{existing}” already exists.")
        );
    }

    let too_long = "c".repeat(41);
    for (attempt, why) in [
        ("a<b>", ChannelNameError::BadCharacter),
        ("", ChannelNameError::Empty),
        ("   ", ChannelNameError::Empty),
        (too_long.as_str(), ChannelNameError::TooLong),
    ] {
        let (status, refused) = server.create_channel(attempt).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{attempt:?}");
        assert_eq!(refused, Err(ApiError::ChannelName(why)), "{attempt:?}");
    }

    // A refused name must not have been announced: the next announcement is this one.
    let (_, created) = server.create_channel("Zed").await;
    let created = created.expect("a new channel name is accepted");
    watcher
        .recv_until("ChannelCreated Zed", |frame| match frame {
            ServerFrame::ChannelCreated { channel } if channel == &created => Some(()),
            ServerFrame::ChannelCreated { channel } => {
                panic!("a refused channel was announced: {channel:?}")
            }
            _ => None,
        })
        .await;

    let (_, listed) = server.call::<Vec<Channel>>("channels", &[]).await;
    assert_eq!(names(&listed.unwrap()), ["General", "Rust Talk", "Zed"]);
}

#[tokio::test]
async fn messages_reach_everyone_in_the_room_with_author_time_and_number() {
    let server = Server::start().await;
    let mut ann = server.client("Ann").await;
    let mut ben = server.client("Ben").await;
    assert!(ann.join("General", None).await.history.is_empty());
    ben.join("General", None).await;

    // Markup and emoji must come back verbatim: rendering them safely is the page's job.
    let conversation = [
        ("Ann", "ann-1", "Hello <b>Ben</b> 🔥\nsecond line"),
        ("Ben", "ben-1", "hi Ann & all"),
        ("Ann", "ann-2", "  leading spaces are kept"),
    ];
    let mut last_seq = 0;
    for (author, client_id, text) in conversation {
        let sender = if author == "Ann" { &mut ann } else { &mut ben };
        let seq = sender.say("General", client_id, text).await;
        assert!(
            seq > last_seq,
            "sequence numbers increase: {seq} after {last_seq}"
        );
        last_seq = seq;
        for reader in [&mut ann, &mut ben] {
            let message = reader.recv_message(client_id).await;
            assert_eq!(message.author, author, "seen by {}", reader.name);
            assert_eq!(message.text, text, "seen by {}", reader.name);
            assert_eq!(message.channel, "General");
            assert_eq!(message.seq, seq, "the Ack and the Message agree");
            assert_recent(message.sent_at);
        }
    }
    assert_eq!(last_seq, 3, "the first message of a channel is number 1");

    // A late joiner sees the same conversation, in order.
    let mut cy = server.client("Cy").await;
    let joined = cy.join("general", None).await;
    assert_eq!(joined.channel, "General");
    assert_eq!(joined.seqs(), [1, 2, 3]);
    let texts: Vec<_> = joined.history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, conversation.map(|(_, _, text)| text));
}

/// A returning page says hello, joins its channel and sends what it had pending
/// in one packet, without waiting for the welcome: the answers come in that order.
#[tokio::test]
async fn hello_join_and_send_in_one_packet_are_answered_in_order() {
    let server = Server::start().await;
    let mut ann = server.client("Ann").await;
    ann.join("General", None).await;
    let first = ann.say("General", "ann-1", "are you back?").await;
    let grant = server.claim("Ben").await;
    let mut ben = Client::connect(&server).await;
    ben.send_batch(&[
        ClientFrame::Hello {
            name: grant.name.clone(),
            token: grant.token.clone(),
            channels_version: None,
        },
        ClientFrame::Join {
            channel: "General".into(),
            since: None,
        },
        ClientFrame::Send {
            channel: "General".into(),
            client_id: "ben-1".into(),
            text: "I am".into(),
        },
    ])
    .await;
    match ben.recv().await {
        ServerFrame::Welcome {
            name,
            channels: Some(channels),
            ..
        } => {
            assert_eq!(name, "Ben");
            assert_eq!(names(&channels), ["General"]);
        }
        other => panic!("the welcome comes first, not {other:?}"),
    }
    match ben.recv().await {
        ServerFrame::Joined { history, .. } => {
            let seqs: Vec<_> = history.iter().map(|m| m.seq).collect();
            assert_eq!(seqs, [first], "the room's history comes second");
        }
        other => panic!("the join is answered next, not {other:?}"),
    }
    let seq = ben
        .recv_until("Ben's Ack", |frame| match frame {
            ServerFrame::Ack { client_id, seq, .. } if client_id == "ben-1" => Some(*seq),
            _ => None,
        })
        .await;
    assert_eq!(seq, first + 1);
    assert_eq!(ann.recv_message("ben-1").await.text, "I am");
}

#[tokio::test]
async fn presence_follows_people_joining_and_leaving() {
    let server = Server::start().await;
    let mut ann = server.client("Ann").await;
    assert_eq!(ann.join("General", None).await.online, ["Ann"]);

    let mut ben = server.client("Ben").await;
    let joined = ben.join("General", None).await;
    assert_eq!(joined.online, ["Ann", "Ben"]);
    ann.recv_until("Presence joined Ben", |frame| match frame {
        ServerFrame::Presence {
            channel, joined, ..
        } if joined.iter().any(|n| n == "Ben") => {
            assert_eq!(channel, "General");
            Some(())
        }
        _ => None,
    })
    .await;

    // Closing the tab without a goodbye, as a crashed or killed browser would.
    drop(ben);
    ann.recv_until("Presence left Ben", |frame| match frame {
        ServerFrame::Presence { channel, left, .. } if left.iter().any(|n| n == "Ben") => {
            assert_eq!(channel, "General");
            Some(())
        }
        _ => None,
    })
    .await;
    let mut cy = server.client("Cy").await;
    assert_eq!(cy.join("General", None).await.online, ["Ann", "Cy"]);
}

#[tokio::test]
async fn two_tabs_with_one_name_are_one_person() {
    let server = Server::start().await;
    let mut ann = server.client("Ann").await;
    ann.join("General", None).await;
    let mut ben_tab1 = server.client("Ben").await;
    ben_tab1.join("General", None).await;
    ann.recv_until("Presence joined Ben", |frame| match frame {
        ServerFrame::Presence { joined, .. } if joined.iter().any(|n| n == "Ben") => Some(()),
        _ => None,
    })
    .await;

    let mut ben_tab2 = server.client("Ben").await;
    assert_eq!(ben_tab2.join("General", None).await.online, ["Ann", "Ben"]);
    // Frames to one connection keep their order, so Cy's arrival bounds the wait for
    // a (wrong) second announcement of Ben.
    let mut cy = server.client("Cy").await;
    cy.join("General", None).await;
    ann.recv_until("Presence joined Cy", |frame| match frame {
        ServerFrame::Presence { joined, .. } if joined.iter().any(|n| n == "Ben") => {
            panic!("Ben's second tab was announced as a second arrival")
        }
        ServerFrame::Presence { joined, .. } if joined.iter().any(|n| n == "Cy") => Some(()),
        _ => None,
    })
    .await;

    ben_tab1.close().await;
    cy.say("General", "cy-1", "is Ben still here?").await;
    ann.recv_until("Cy's message", |frame| match frame {
        ServerFrame::Presence { left, .. } if left.iter().any(|n| n == "Ben") => {
            panic!("Ben was shown as gone while his second tab is open")
        }
        ServerFrame::Message { message } if message.client_id == "cy-1" => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(
        server
            .client("Dee")
            .await
            .join("General", None)
            .await
            .online,
        ["Ann", "Ben", "Cy", "Dee"]
    );

    drop(ben_tab2);
    ann.recv_until("Presence left Ben", |frame| match frame {
        ServerFrame::Presence { left, .. } if left.iter().any(|n| n == "Ben") => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn a_full_room_refuses_newcomers_but_not_second_tabs() {
    let server = Server::start_with(&[("HEARTH_ROOM_CAPACITY", "2")]).await;
    let mut ann = server.client("Ann").await;
    ann.join("General", None).await;
    let mut ben = server.client("Ben").await;
    ben.join("General", None).await;
    // Arrivals and departures are announced together; a stay too short to be
    // announced is never announced as a departure either.
    ann.recv_until("Presence joined Ben", |frame| match frame {
        ServerFrame::Presence { joined, .. } if joined.iter().any(|n| n == "Ben") => Some(()),
        _ => None,
    })
    .await;

    let mut cy = server.client("Cy").await;
    cy.send(&ClientFrame::Join {
        channel: "General".into(),
        since: None,
    })
    .await;
    let message = cy
        .recv_until("RoomFull", |frame| match frame {
            ServerFrame::Error {
                code: ErrorCode::RoomFull,
                message,
            } => Some(message.clone()),
            ServerFrame::Joined { .. } => panic!("a third person got into a room for two"),
            _ => None,
        })
        .await;
    assert!(
        message.to_lowercase().contains("full"),
        "the refusal says the room is full: {message:?}"
    );

    // Capacity counts people, so Ann's second tab still gets in.
    let mut ann_tab2 = server.client("Ann").await;
    assert_eq!(ann_tab2.join("General", None).await.online, ["Ann", "Ben"]);

    // The limit is per room: Cy can go elsewhere meanwhile.
    let (_, created) = server.create_channel("Overflow").await;
    created.expect("a new channel name is accepted");
    assert_eq!(cy.join("Overflow", None).await.online, ["Cy"]);

    drop(ben);
    ann.recv_until("Presence left Ben", |frame| match frame {
        ServerFrame::Presence { left, .. } if left.iter().any(|n| n == "Ben") => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(cy.join("General", None).await.online, ["Ann", "Cy"]);
}

/// What a page shows of a room: the `Joined` list, then every presence update.
async fn shown_once(
    client: &mut Client,
    mut shown: Room,
    what: &str,
    until: impl Fn(&Room) -> bool,
) -> Room {
    while !until(&shown) {
        let (joined, left, count, replace) = client
            .recv_until(what, |frame| match frame {
                ServerFrame::Presence {
                    joined,
                    left,
                    online_count,
                    replace,
                    ..
                } => Some((joined.clone(), left.clone(), *online_count, *replace)),
                _ => None,
            })
            .await;
        shown.apply_presence(joined, &left, count, replace);
    }
    shown
}

#[tokio::test]
async fn a_crowded_room_lists_its_first_hundred_names_and_counts_everyone() {
    let server = Server::start_with(&[
        ("HEARTH_CLAIMS_PER_MINUTE", "1000"),
        ("HEARTH_MAX_CONNS_PER_IP", "1000"),
        ("HEARTH_ROOM_CAPACITY", "1000"),
    ])
    .await;
    let crowd = ONLINE_LIST_MAX + 5;
    let mut people = Vec::new();
    for i in 0..crowd {
        let mut person = server.client(&format!("P{i:03}")).await;
        person.join("General", None).await;
        people.push(person);
    }
    let mut zoe = server.client("Zoe").await;
    let joined = zoe.join("General", None).await;
    let first_hundred: Vec<String> = (0..ONLINE_LIST_MAX).map(|i| format!("P{i:03}")).collect();
    assert_eq!(joined.online, first_hundred);
    assert_eq!(joined.online_count, crowd + 1);

    let start = Room {
        online: joined.online,
        online_count: joined.online_count,
        ..Room::default()
    };
    let settled = shown_once(&mut zoe, start, "Zoe's list settling", |room| {
        room.online == first_hundred && room.online_count == crowd + 1
    })
    .await;
    // Abe sorts first: he appears at the top and the last shown name makes room.
    let mut abe = server.client("Abe").await;
    abe.join("General", None).await;
    let shown = shown_once(&mut zoe, settled, "Abe on Zoe's list", |room| {
        room.online_count == crowd + 2
    })
    .await;
    assert_eq!(shown.online.len(), ONLINE_LIST_MAX);
    assert_eq!(shown.online[0], "Abe");
    assert_eq!(shown.online.last().map(String::as_str), Some("P098"));
    // Someone beyond the first hundred leaving changes only the count.
    drop(people.pop());
    let shown = shown_once(&mut zoe, shown, "the count falling", |room| {
        room.online_count == crowd + 1
    })
    .await;
    assert_eq!(shown.online[0], "Abe");
    assert_eq!(shown.online.len(), ONLINE_LIST_MAX);
}

/// People arriving at once, each claiming a name and saying hello without waiting
/// for anyone: claims of other names while a tab says hello must not send it away
/// (one check of a name given up as another said hello once closed the tab).
#[tokio::test]
async fn a_crowd_claiming_names_as_it_says_hello_is_all_let_in() {
    let server = Server::start().await;
    let mut watcher = server.client("Watcher").await;
    watcher.join("General", None).await;
    let mut grants = Vec::new();
    for i in 0..40 {
        grants.push(server.claim(&format!("Arrival {i:02}")).await);
    }
    // Others claiming names all the while.
    let others = async {
        for i in 0..200 {
            server.claim(&format!("Other {i:03}")).await;
        }
    };
    let arrivals = async {
        let mut crowd = Vec::new();
        for grant in grants {
            let mut tab = Client::connect(&server).await;
            tab.send_batch(&[
                ClientFrame::Hello {
                    name: grant.name,
                    token: grant.token,
                    channels_version: None,
                },
                ClientFrame::Join {
                    channel: "General".into(),
                    since: None,
                },
            ])
            .await;
            crowd.push(tab);
        }
        crowd
    };
    let ((), mut crowd) = tokio::join!(others, arrivals);
    for tab in &mut crowd {
        tab.recv_until("Joined", |frame| match frame {
            ServerFrame::Joined { .. } => Some(()),
            _ => None,
        })
        .await;
    }
    let count = watcher
        .recv_until("everyone counted", |frame| match frame {
            ServerFrame::Presence { online_count, .. } if *online_count == 41 => Some(41),
            _ => None,
        })
        .await;
    assert_eq!(count, 41);
}

#[tokio::test]
async fn history_keeps_the_most_recent_window_and_resumes_exactly() {
    let server = Server::start_with(&[("HEARTH_HISTORY", "100")]).await;
    let mut ann = server.client("Ann").await;
    ann.join("General", None).await;
    for i in 1..=150 {
        let seq = ann
            .say("General", &format!("m{i}"), &format!("message {i}"))
            .await;
        assert_eq!(seq, i);
    }

    let check_texts = |joined: &common::Joined| {
        for message in &joined.history {
            assert_eq!(message.text, format!("message {}", message.seq));
            assert_eq!(message.author, "Ann");
        }
    };

    let fresh = server.client("Ben").await.join("General", None).await;
    assert_eq!(fresh.history.len(), 100);
    assert_eq!(fresh.seqs(), (51..=150).collect::<Vec<_>>(), "oldest first");
    assert!(fresh.reset, "a join without `since` gets the whole window");
    check_texts(&fresh);

    let resumed = server.client("Ben").await.join("General", Some(140)).await;
    assert_eq!(resumed.seqs(), (141..=150).collect::<Vec<_>>());
    assert!(!resumed.reset, "everything after 140 is still kept");
    check_texts(&resumed);

    // The oldest kept message is 51, so resuming after 50 is still exact.
    let edge = server.client("Ben").await.join("General", Some(50)).await;
    assert_eq!(edge.seqs(), (51..=150).collect::<Vec<_>>());
    assert!(!edge.reset);

    let up_to_date = server.client("Ben").await.join("General", Some(150)).await;
    assert!(up_to_date.history.is_empty());
    assert!(!up_to_date.reset);

    let too_old = server.client("Ben").await.join("General", Some(10)).await;
    assert!(too_old.reset, "a gap beyond the window must be reported");
    assert_eq!(too_old.seqs(), (51..=150).collect::<Vec<_>>());
    check_texts(&too_old);
}

#[tokio::test]
async fn invalid_names_are_refused_and_the_connection_closed() {
    let server = Server::start().await;
    let too_long = "x".repeat(33);
    for (name, why) in [
        ("", NameError::Empty),
        ("   ", NameError::Empty),
        (too_long.as_str(), NameError::TooLong),
        ("a\u{200B}b", NameError::Invisible),
    ] {
        let mut client = Client::connect(&server).await;
        client
            .send(&ClientFrame::Hello {
                name: name.into(),
                token: "any".into(),
                channels_version: None,
            })
            .await;
        let message = client
            .recv_until("InvalidName", |frame| match frame {
                ServerFrame::Error {
                    code: ErrorCode::InvalidName,
                    message,
                } => Some(message.clone()),
                other => panic!("hello as {name:?} answered with {other:?}"),
            })
            .await;
        assert_eq!(message, why.to_string(), "{name:?}");
        client.expect_closed().await;

        let (status, refused) = server
            .call::<NameGrant>("claim_name", &[("name", name)])
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}");
        assert_eq!(refused, Err(ApiError::Name(why)), "{name:?}");
    }

    let (status, claimed) = server
        .call::<NameGrant>("claim_name", &[("name", "  Ada Lovelace ")])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claimed.unwrap().name, "Ada Lovelace");

    // Anything but a hello first is refused the same way.
    let mut client = Client::connect(&server).await;
    client
        .send(&ClientFrame::Join {
            channel: "General".into(),
            since: None,
        })
        .await;
    client
        .recv_until("NotIdentified", |frame| match frame {
            ServerFrame::Error {
                code: ErrorCode::NotIdentified,
                ..
            } => Some(()),
            other => panic!("a join before hello answered with {other:?}"),
        })
        .await;
    client.expect_closed().await;
}

#[tokio::test]
async fn bad_sends_and_frames_are_refused_without_dropping_the_connection() {
    let server = Server::start().await;
    let mut ann = server.client("Ann").await;
    ann.join("General", None).await;

    let longest = "m".repeat(MESSAGE_MAX_CHARS);
    ann.say("General", "longest", &longest).await;
    ann.send(&ClientFrame::Send {
        channel: "General".into(),
        client_id: "too-long".into(),
        text: format!("{longest}m"),
    })
    .await;
    let message = ann
        .recv_until("SendFailed", |frame| match frame {
            ServerFrame::SendFailed {
                client_id,
                code,
                message,
            } if client_id == "too-long" => {
                assert_eq!(*code, ErrorCode::InvalidMessage);
                Some(message.clone())
            }
            ServerFrame::Ack { client_id, .. } if client_id == "too-long" => {
                panic!("a message over the limit was stored")
            }
            _ => None,
        })
        .await;
    assert!(
        message.contains("2000"),
        "the refusal names the limit: {message:?}"
    );

    for garbage in ["{not json", r#"{"type":"dance"}"#, r#"{"type":"send"}"#] {
        ann.send_raw(garbage).await;
        ann.recv_until("BadFrame", |frame| match frame {
            ServerFrame::Error {
                code: ErrorCode::BadFrame,
                ..
            } => Some(()),
            _ => None,
        })
        .await;
    }

    // Still connected and still in the room: the next send goes through, and the
    // refused one was never delivered.
    let seq = ann.say("General", "after", "still here").await;
    ann.recv_until("Message after", |frame| match frame {
        ServerFrame::Message { message } if message.client_id == "too-long" => {
            panic!("a refused message was delivered")
        }
        ServerFrame::Message { message } if message.client_id == "after" => {
            assert_eq!(message.seq, seq);
            Some(())
        }
        _ => None,
    })
    .await;
    assert_eq!(seq, 2, "refusals take no sequence number");
}

#[tokio::test]
async fn websocket_upgrades_from_foreign_origins_are_refused() {
    let server = Server::start().await;
    assert_eq!(
        upgrade_with_origin(&server, "http://evil.example").await,
        Some(403)
    );
    assert_eq!(
        upgrade_with_origin(&server, &format!("http://{}", server.addr)).await,
        None,
        "the page's own origin is accepted"
    );

    let server =
        Server::start_with(&[("HEARTH_ALLOWED_ORIGINS", "https://chat.example.org")]).await;
    assert_eq!(
        upgrade_with_origin(&server, "https://chat.example.org").await,
        None,
        "a configured origin is accepted"
    );
    assert_eq!(
        upgrade_with_origin(&server, "http://evil.example").await,
        Some(403)
    );
}

#[tokio::test]
async fn the_page_is_served() {
    let server = Server::start().await;
    let response = server
        .http()
        .get(server.url("/"))
        .send()
        .await
        .expect("GET /");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type:?}");
    let body = response.text().await.expect("read the page");
    assert!(body.contains("Hearth"), "{body}");
}

#[tokio::test]
async fn a_retried_send_is_stored_once() {
    let server = Server::start().await;
    let mut ann = server.client("Ann").await;
    ann.join("General", None).await;
    let mut ben = server.client("Ben").await;
    ben.join("General", None).await;

    let first = ann.say("General", "retry-1", "only once").await;
    // The browser retries an unacknowledged send after a reconnect, on a new socket.
    let mut ann_again = server.client("Ann").await;
    ann_again.join("General", Some(first)).await;
    let again = ann_again.say("General", "retry-1", "only once").await;
    assert_eq!(
        again, first,
        "a retry is acknowledged with the original number"
    );

    let next = ann_again.say("General", "retry-2", "next").await;
    assert_eq!(next, first + 1, "a retry takes no number of its own");
    ben.recv_message("retry-1").await;
    ben.recv_until("the next message", |frame| match frame {
        ServerFrame::Message { message } if message.client_id == "retry-1" => {
            panic!("a retried send was delivered twice")
        }
        ServerFrame::Message { message } if message.client_id == "retry-2" => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn operators_see_health_readiness_and_what_happened_in_the_metrics() {
    let server = Server::start().await;
    let get = |path: &str| {
        let request = server.http().get(server.url(path));
        async move {
            let response = request.send().await.expect("GET");
            let status = response.status();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned());
            (status, content_type, response.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, StatusCode::OK);
    assert_eq!(get("/readyz").await.0, StatusCode::OK);

    let mut ada = server.client("Ada").await;
    ada.join("General", None).await;
    let mut bob = server.client("Bob").await;
    bob.join("General", None).await;
    ada.say("General", "m1", "hello").await;
    bob.recv_message("m1").await;
    ada.send_raw("{not json").await;
    ada.recv_until("the bad frame answered", |frame| match frame {
        ServerFrame::Error { code, .. } => Some(*code),
        _ => None,
    })
    .await;

    let (_, refused) = server
        .call::<NameGrant>("claim_name", &[("name", "   ")])
        .await;
    assert!(refused.is_err(), "a blank name is refused");

    let (status, content_type, text) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "Prometheus can scrape it"
    );
    for line in [
        "hearth_connections 2",
        "hearth_rooms 1",
        "hearth_messages_in_total 1",
        "hearth_messages_out_total 2",
        "hearth_rejected_total{reason=\"bad_frame\"} 1",
        "hearth_rejected_total{reason=\"invalid_name\"} 1",
        "hearth_fanout_seconds_count 1",
        "hearth_store_seconds_count 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing from:\n{text}"
        );
    }
}
