//! The Redis store against the stores' contract, and what is its own: the
//! feed that other nodes read, upgrades of keys, the durability warning.

use super::test_server::Redis;
use super::*;
use crate::protocol::{Seq, channel_key};
use crate::server::store::contract::{self, send};
use crate::server::store::{Appended, NameClaim, NewMessage, Store};

fn store(redis: &Redis, history: usize) -> RedisStore {
    RedisStore::open(&redis.url(), history).expect("redis answers")
}

/// Reading from the channel creations after `events` (no releases).
fn from<'a>(events: Option<&'a str>, channels: &'a [(String, String, Seq)]) -> ReadFrom<'a> {
    ReadFrom {
        events,
        releases: "$",
        channels,
    }
}

#[test]
fn a_name_given_up_is_told_to_the_nodes_that_started_before() {
    use crate::server::name_key::name_key;
    let redis = Redis::start();
    let store = store(&redis, 10);
    let mut reader = store.connect(Duration::from_secs(5)).unwrap();
    let claim = |token_hash: &[u8]| NameClaim {
        key: name_key("Ada"),
        name: "Ada".into(),
        token_hash: token_hash.to_vec(),
        now: 1,
    };
    store.claim_name(&claim(b"ada's browser"), 1_000).unwrap();
    // A node starting now reads on from here: earlier releases are not its.
    let started = store.latest_release(&mut reader).unwrap();
    assert_eq!(started, "0-0");
    assert!(
        !store
            .release_name(&name_key("Ada"), b"someone else")
            .unwrap()
    );
    assert!(
        store
            .release_name(&name_key("Ada"), b"ada's browser")
            .unwrap()
    );
    let releases = ReadFrom {
        events: Some("$"),
        releases: &started,
        channels: &[],
    };
    let changes = store
        .read_changes(&mut reader, &releases, Duration::from_millis(10))
        .unwrap();
    assert_eq!(
        changes.released,
        [(name_key("Ada"), b"ada's browser".to_vec())]
    );
    let cursor = changes.releases_cursor.unwrap();
    assert_eq!(store.latest_release(&mut reader).unwrap(), cursor);
    // Taken back by the same browser before a node read the release: it holds
    // the name again, and its tabs are rightly there.
    assert!(
        !store
            .holds_now(&mut reader, &name_key("Ada"), b"ada's browser")
            .unwrap()
    );
    store.claim_name(&claim(b"ada's browser"), 1_000).unwrap();
    assert!(
        store
            .holds_now(&mut reader, &name_key("Ada"), b"ada's browser")
            .unwrap()
    );
    assert!(
        !store
            .holds_now(&mut reader, &name_key("Ada"), b"another")
            .unwrap()
    );
}

#[test]
fn channels_are_capped() {
    let redis = Redis::start();
    contract::channels_are_capped(&store(&redis, 10));
}

#[test]
fn channels_that_look_alike_conflict() {
    let redis = Redis::start();
    contract::channels_that_look_alike_conflict(&store(&redis, 10));
}

#[test]
fn messages_are_numbered_and_repeats_stored_once() {
    let redis = Redis::start();
    contract::messages_are_numbered_and_repeats_stored_once(&store(&redis, 10));
}

#[test]
fn history_pages_each_message_once() {
    let redis = Redis::start();
    contract::history_pages_each_message_once(&store(&redis, 3_000), 2_500);
}

#[test]
fn only_the_window_is_kept() {
    let redis = Redis::start();
    contract::only_the_window_is_kept(&store(&redis, 10));
}

#[test]
fn token_hashes_come_back_from_their_hex() {
    let hash = [0x00, 0x9f, 0xff, 0x10];
    assert_eq!(unhex(&hex(&hash)), Some(hash.to_vec()));
    assert_eq!(unhex("abc"), None);
    assert_eq!(unhex("zz"), None);
}

#[test]
fn channels_from_before_the_look_index_are_indexed_at_start() {
    let redis = Redis::start();
    let older = store(&redis, 10);
    older.create_channel("General", 1).unwrap();
    older.create_channel("Rust", 2).unwrap();
    // As older nodes left them: no index of looks, and a look-alike of Rust
    // created after it.
    let mut raw = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let twin = Channel {
        name: "R\u{3c5}st".into(),
        created_at: 3,
    };
    assert_eq!(name_key(&twin.name), name_key("Rust"), "a look-alike");
    redis::pipe()
        .del(CHANNEL_LOOKS)
        .hset(
            CHANNELS,
            channel_key(&twin.name),
            serde_json::to_string(&twin).unwrap(),
        )
        .rpush(CHANNEL_ORDER, channel_key(&twin.name))
        .exec(&mut raw)
        .unwrap();

    let store = store(&redis, 10);
    let exists = |name: &str| Err(StoreError::ChannelExists(name.into()));
    assert_eq!(store.create_channel("G\u{435}neral", 4), exists("General"));
    // Of the two that look alike, the older answers.
    assert_eq!(store.create_channel("Ｒust", 5), exists("Rust"));
    assert_eq!(
        contract::channel_names(&store),
        ["General", "Rust", "R\u{3c5}st"]
    );
}

#[test]
fn names_kept_by_lower_case_are_keyed_by_look_once() {
    use crate::server::name_key::name_key;
    let redis = Redis::start();
    let mut raw = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    // As older nodes kept them: keyed by lower case, and no key version.
    let older = [
        ("ada", "aa|10|Ada"),
        ("\u{430}da", "cc|20|\u{410}da"),
        ("grace", "bb|5|Gr|ace"),
    ];
    for (key, value) in older {
        redis::cmd("HSET")
            .arg(NAMES)
            .arg(key)
            .arg(value)
            .exec(&mut raw)
            .unwrap();
    }
    let store = store(&redis, 10);
    let held = |name: &str, hash: &[u8]| store.holds_name(&name_key(name), hash, 30).unwrap();
    assert_eq!(held("Ada", &[0xcc]), Some("\u{410}da".to_owned()));
    assert_eq!(
        held("Ada", &[0xaa]),
        None,
        "the less recently used look-alike"
    );
    assert_eq!(held("gr|ace", &[0xbb]), Some("Gr|ace".to_owned()));

    // Done once: a name claimed under an old key later is left alone.
    redis::cmd("HSET")
        .arg(NAMES)
        .arg("zoe")
        .arg("dd|40|Zoe")
        .exec(&mut raw)
        .unwrap();
    drop(store);
    let again = RedisStore::open(&redis.url(), 10).unwrap();
    let count: usize = redis::cmd("HLEN").arg(NAMES).query(&mut raw).unwrap();
    assert_eq!(count, 3);
    assert_eq!(
        again.holds_name("zoe", &[0xdd], 50).unwrap(),
        Some("Zoe".to_owned())
    );
}

#[test]
fn names_are_held_by_their_token() {
    let redis = Redis::start();
    contract::names_are_held_by_their_token(&store(&redis, 10));
}

#[test]
fn redis_without_its_append_only_file_is_warned_of() {
    assert_eq!(durability_warning(Some("yes"), Some("always")), None);
    assert_eq!(durability_warning(Some("yes"), Some("everysec")), None);
    for (appendonly, appendfsync, says) in [
        (Some("no"), Some("everysec"), "appendonly no"),
        (Some("yes"), Some("no"), "appendfsync no"),
        (None, None, "CONFIG refused"),
    ] {
        let warning = durability_warning(appendonly, appendfsync).expect("a warning");
        assert!(warning.contains(says), "{warning}");
    }
}

#[test]
fn numbering_goes_on_from_the_stream_when_the_counter_is_lost() {
    let redis = Redis::start();
    let store = store(&redis, 10);
    store.create_channel("General", 1).unwrap();
    store.append((1..=3).map(send).collect()).unwrap();
    store
        .with_connection(|c| redis::cmd("DEL").arg("hearth:seq:general").query::<i64>(c))
        .unwrap();
    let outcomes = store.append(vec![send(4), send(5)]).unwrap();
    let seqs: Vec<Seq> = outcomes
        .iter()
        .map(|o| match o {
            Appended::New { message, .. } => message.seq,
            other => panic!("stored anew, not {other:?}"),
        })
        .collect();
    assert_eq!(seqs, [4, 5]);
    let window = store.load().unwrap().remove(0);
    assert_eq!(window.last_seq, 5);
    assert_eq!(
        window.recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
}

#[test]
fn a_node_behind_by_more_than_a_window_still_reads_every_message() {
    let redis = Redis::start();
    let store = store(&redis, 10);
    let mut reader = store.connect(Duration::from_secs(5)).unwrap();
    store.create_channel("General", 1).unwrap();
    store.append((1..=35).map(send).collect()).unwrap();
    let watched = [("general".to_owned(), "General".to_owned(), 0)];
    let changes = store
        .read_changes(
            &mut reader,
            &from(None, &watched),
            Duration::from_millis(10),
        )
        .unwrap();
    let seqs: Vec<Seq> = changes.messages.iter().map(|(_, m)| m.seq).collect();
    assert_eq!(seqs, (1..=35).collect::<Vec<_>>());
    // Joining still shows one window.
    assert_eq!(store.load().unwrap()[0].recent.len(), 10);
}

#[test]
fn changes_are_read_on_from_the_cursors() {
    let redis = Redis::start();
    let store = store(&redis, 10);
    let mut reader = store.connect(Duration::from_secs(5)).unwrap();
    let general = store.create_channel("General", 1).unwrap();
    let changes = store
        .read_changes(&mut reader, &from(None, &[]), Duration::from_millis(10))
        .unwrap();
    assert_eq!(changes.channels, vec![("general".into(), general.clone())]);
    let cursor = changes.events_cursor.unwrap();
    let send = |client_id: &str| NewMessage {
        channel_key: "general".into(),
        author: "ada".into(),
        text: format!("hello {client_id}"),
        sent_at: 5,
        client_id: client_id.into(),
    };
    store.append(vec![send("a"), send("b"), send("c")]).unwrap();
    let watched = [("general".to_owned(), "General".to_owned(), 1)];
    let changes = store
        .read_changes(
            &mut reader,
            &from(Some(&cursor), &watched),
            Duration::from_millis(10),
        )
        .unwrap();
    assert!(changes.channels.is_empty());
    let seqs: Vec<(String, Seq, String)> = changes
        .messages
        .into_iter()
        .map(|(k, m)| (k, m.seq, m.text))
        .collect();
    assert_eq!(
        seqs,
        vec![
            ("general".into(), 2, "hello b".into()),
            ("general".into(), 3, "hello c".into())
        ]
    );
}
