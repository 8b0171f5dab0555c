//! The bus: what one node tells it, another reads on from its cursors; what Redis
//! cannot take is skipped or waited out, never an error for the sender.

use super::test_server::Redis;
use super::*;
use crate::protocol::{Seq, sample_message};

fn bus(redis: &Redis) -> RedisBus {
    RedisBus::open(&redis.url(), 10).expect("redis answers")
}

/// Reading from the channel creations after `events` (no releases).
fn from<'a>(events: Option<&'a str>, channels: &'a [(String, String, Seq)]) -> ReadFrom<'a> {
    ReadFrom {
        events,
        releases: "$",
        channels,
    }
}

fn publish(bus: &RedisBus, seqs: impl IntoIterator<Item = Seq>) {
    let messages: Vec<ChatMessage> = seqs.into_iter().map(sample_message).collect();
    let keyed: Vec<(&str, &ChatMessage)> = messages.iter().map(|m| ("general", m)).collect();
    bus.publish_messages(&keyed);
}

fn read_seqs(bus: &RedisBus, reader: &mut Connection, after: Seq) -> Vec<Seq> {
    let watched = [("general".to_owned(), "General".to_owned(), after)];
    bus.read_changes(
        reader,
        &from(Some("$"), &watched),
        Duration::from_millis(10),
    )
    .unwrap()
    .messages
    .iter()
    .map(|(key, m)| {
        assert_eq!((key.as_str(), m.channel.as_str()), ("general", "General"));
        m.seq
    })
    .collect()
}

#[test]
fn messages_are_read_on_from_each_nodes_cursor() {
    let redis = Redis::start();
    let bus = bus(&redis);
    let mut reader = bus.connect(Duration::from_secs(5)).unwrap();
    publish(&bus, 1..=3);
    assert_eq!(read_seqs(&bus, &mut reader, 0), [1, 2, 3]);
    assert_eq!(read_seqs(&bus, &mut reader, 1), [2, 3]);
    let watched = [("general".to_owned(), "General".to_owned(), 0)];
    let changes = bus
        .read_changes(
            &mut reader,
            &from(Some("$"), &watched),
            Duration::from_millis(10),
        )
        .unwrap();
    assert_eq!(
        changes.messages[1].1,
        sample_message(2),
        "every field carried"
    );
}

#[test]
fn a_number_published_after_a_later_one_is_skipped_for_readers_to_fill() {
    let redis = Redis::start();
    let bus = bus(&redis);
    let mut reader = bus.connect(Duration::from_secs(5)).unwrap();
    // Node B's message 2 reached the bus before node A's message 1.
    publish(&bus, [2]);
    publish(&bus, [1]);
    assert_eq!(read_seqs(&bus, &mut reader, 0), [2]);
    // Nothing failed: the next publish goes through at once.
    publish(&bus, [3, 4]);
    assert_eq!(read_seqs(&bus, &mut reader, 0), [2, 3, 4]);
}

#[test]
fn a_node_behind_by_more_than_a_window_still_reads_every_message() {
    let redis = Redis::start();
    let bus = bus(&redis);
    let mut reader = bus.connect(Duration::from_secs(5)).unwrap();
    publish(&bus, 1..=35);
    assert_eq!(
        read_seqs(&bus, &mut reader, 0),
        (1..=35).collect::<Vec<_>>()
    );
}

#[test]
fn channel_creations_are_read_with_their_names() {
    let redis = Redis::start();
    let bus = bus(&redis);
    let mut reader = bus.connect(Duration::from_secs(5)).unwrap();
    let rust = Channel {
        name: "Rust".into(),
        created_at: 42,
    };
    bus.announce_channel("rust", &rust);
    let changes = bus
        .read_changes(&mut reader, &from(None, &[]), Duration::from_millis(10))
        .unwrap();
    assert_eq!(changes.channels, vec![("rust".to_owned(), rust)]);
    let cursor = changes.events_cursor.unwrap();
    let again = bus
        .read_changes(
            &mut reader,
            &from(Some(&cursor), &[]),
            Duration::from_millis(10),
        )
        .unwrap();
    assert!(again.channels.is_empty(), "read on from the cursor");
}

#[test]
fn a_name_given_up_is_told_to_the_nodes_that_started_before() {
    let redis = Redis::start();
    let bus = bus(&redis);
    let mut reader = bus.connect(Duration::from_secs(5)).unwrap();
    bus.announce_release("ada", b"before");
    // A node starting now reads on from here: earlier releases are not its.
    let started = bus.latest_release(&mut reader).unwrap();
    bus.announce_release("ada", b"ada's browser");
    let releases = ReadFrom {
        events: Some("$"),
        releases: &started,
        channels: &[],
    };
    let changes = bus
        .read_changes(&mut reader, &releases, Duration::from_millis(10))
        .unwrap();
    assert_eq!(
        changes.released,
        [("ada".to_owned(), b"ada's browser".to_vec())]
    );
    assert_eq!(
        bus.latest_release(&mut reader).unwrap(),
        changes.releases_cursor.unwrap()
    );
}

#[test]
fn while_redis_is_away_publishing_gives_up_quickly_and_rests() {
    let mut redis = Redis::start();
    let bus = bus(&redis);
    redis.kill();
    let started = Instant::now();
    publish(&bus, [1]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "bounded by the timeouts"
    );
    let again = Instant::now();
    publish(&bus, [2]);
    assert!(
        again.elapsed() < Duration::from_millis(100),
        "rests after a failure"
    );
    redis.restart();
    std::thread::sleep(REST_AFTER_FAILURE);
    let mut reader = bus.connect(Duration::from_secs(5)).unwrap();
    publish(&bus, [3]);
    assert_eq!(read_seqs(&bus, &mut reader, 0), [3]);
}

#[test]
fn token_hashes_come_back_from_their_hex() {
    let hash = [0x00, 0x9f, 0xff, 0x10];
    assert_eq!(unhex(&hex(&hash)), Some(hash.to_vec()));
    assert_eq!(unhex("abc"), None);
    assert_eq!(unhex("zz"), None);
}
