//! The SQLite store against the stores' contract, and what is its own: the
//! history kept on disk, the log's size, retries across the two send-id tables, upgrades
//! of files written by older versions.

use super::super::contract::{self, send};
use super::messages::SENDS_MOVED_AT_ONCE;
use super::schema::SCHEMA_VERSION;
use super::*;
use crate::server::name_key::name_key;
use crate::server::store::policy::SEND_ID_RETENTION_MS;
use rusqlite::params;

fn store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path(), 10, Durability::Full).unwrap()
}

/// A new store with a window of 10 and the channel "General".
fn store_with_general(dir: &tempfile::TempDir) -> SqliteStore {
    let store = store(dir);
    store.create_channel("General", 1).unwrap();
    store
}

#[test]
fn channels_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    contract::channels_are_capped(&store(&dir));
}

#[test]
fn channels_that_look_alike_conflict() {
    let dir = tempfile::tempdir().unwrap();
    contract::channels_that_look_alike_conflict(&store(&dir));
}

#[test]
fn messages_are_numbered_and_repeats_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    contract::messages_are_numbered_and_repeats_stored_once(&store(&dir));
}

#[test]
fn retention_prunes_and_numbering_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    contract::retention_prunes_and_numbering_goes_on(&store(&dir));
}

#[test]
fn numbering_survives_pruning_a_channels_newest_message_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = store_with_general(&dir);
        store.append((1..=3).map(send).collect()).unwrap();
        let pruned = store
            .prune(Retention::Days(1), 10 * 24 * 3600 * 1000)
            .unwrap();
        assert_eq!(pruned.messages, 3);
        assert_eq!(rows(&store, "log"), 0);
    }
    let store = store(&dir);
    assert_eq!(store.load().unwrap()[0].last_seq, 3);
    assert_eq!(next_seq(&store, 4), 4);
}

#[test]
fn pruning_by_age_goes_chunk_by_chunk_and_stops_at_the_first_young_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_general(&dir);
    // More than two chunks of old messages, then young ones.
    let old = 12_001;
    for chunk in (1..=old).collect::<Vec<_>>().chunks(1000) {
        store
            .append(chunk.iter().map(|&i| send(i)).collect())
            .unwrap();
    }
    let day = 24 * 3600 * 1000;
    store
        .append(
            (old + 1..=old + 5)
                .map(|i| NewMessage {
                    sent_at: 10 * day,
                    ..send(i)
                })
                .collect(),
        )
        .unwrap();
    let pruned = store.prune(Retention::Days(1), 10 * day + 1000).unwrap();
    assert_eq!(pruned.messages, old as u64);
    assert_eq!(pruned.through, [("general".to_owned(), old as Seq)]);
    assert_eq!(rows_and_oldest(&store), (5, old as Seq + 1));
}

#[test]
fn only_the_window_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    contract::only_the_window_is_kept(&store(&dir));
}

/// The rows in the log and the oldest number among them.
fn rows_and_oldest(store: &SqliteStore) -> (usize, Seq) {
    store
        .lock()
        .db
        .query_row("SELECT count(*), MIN(seq) FROM log", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap()
}

#[test]
fn every_message_is_kept_and_the_window_is_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = store_with_general(&dir);
        for i in 1..=300 {
            next_seq(&store, i);
        }
        assert_eq!(rows_and_oldest(&store), (300, 1));
    }
    let store = store(&dir);
    let log = &store.load().unwrap()[0];
    assert_eq!(log.last_seq, 300);
    assert_eq!(
        log.recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (291..=300).collect::<Vec<_>>()
    );
    let page = store
        .history("general", HistoryRange::Before(11), 50)
        .unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert!(!page.more, "the first message begins the channel");
}

#[test]
fn history_pages_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    contract::history_pages_each_message_once(&store(&dir), 2_500);
}

#[test]
fn a_version_5_file_keeps_its_messages_and_gains_the_index() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = store_with_general(&dir);
        for i in 1..=10 {
            next_seq(&store, i);
        }
        // As version 5 left it: the window's rows, no index by channel.
        let db = &store.lock().db;
        db.execute_batch("DROP INDEX log_by_channel; PRAGMA user_version = 5;")
            .unwrap();
    }
    let store = store(&dir);
    assert_eq!(schema_version(&store), SCHEMA_VERSION);
    let page = store.history("general", HistoryRange::Latest, 50).unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(next_seq(&store, 11), 11);
    let plan: String = store
        .lock()
        .db
        .query_row(
            "EXPLAIN QUERY PLAN SELECT seq FROM log WHERE channel = 'general' AND seq < 5
             ORDER BY seq DESC LIMIT 3",
            [],
            |row| row.get(3),
        )
        .unwrap();
    assert!(plan.contains("log_by_channel"), "{plan}");
}

fn is_repeat_of(outcome: &Appended, expected: Seq) -> bool {
    matches!(outcome, Appended::Duplicate { seq, .. } if *seq == expected)
}

#[test]
fn retries_are_recognised_wherever_their_id_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let sends = 2 * SENDS_MOVED_AT_ONCE as i64 + 5;
    {
        let store = store_with_general(&dir);
        // A retry in the same batch as the send it repeats.
        let outcomes = store.append(vec![send(1), send(1)]).unwrap();
        assert!(is_repeat_of(&outcomes[1], 1));
        for i in 2..=sends {
            next_seq(&store, i);
        }
        // The oldest ids have moved on; the newest wait in store order.
        assert!(rows(&store, "recent_sends") < 2 * SENDS_MOVED_AT_ONCE);
        let moved = rows(&store, "sends");
        assert_eq!(moved + rows(&store, "recent_sends"), sends as usize);
        let retries = store.append(vec![send(1), send(sends)]).unwrap();
        assert!(is_repeat_of(&retries[0], 1));
        assert!(is_repeat_of(&retries[1], sends as Seq));
    }
    let store = store(&dir);
    let retries = store.append(vec![send(1), send(sends)]).unwrap();
    assert!(is_repeat_of(&retries[0], 1));
    assert!(is_repeat_of(&retries[1], sends as Seq));
    assert_eq!(next_seq(&store, sends + 1), sends as Seq + 1);
}

#[test]
fn send_ids_waiting_to_move_stay_few_after_big_batches() {
    const BATCH: i64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_general(&dir);
    for round in 0..5 {
        let batch = (round * BATCH + 1..=(round + 1) * BATCH)
            .map(send)
            .collect();
        store.append(batch).unwrap();
        assert!(
            rows(&store, "recent_sends") < 2 * SENDS_MOVED_AT_ONCE,
            "{} send ids wait after {} batches of {BATCH}",
            rows(&store, "recent_sends"),
            round + 1
        );
        let mirrored = store.lock().recent_sends.len();
        assert_eq!(
            mirrored,
            rows(&store, "recent_sends"),
            "the mirror matches the table"
        );
    }
    let retries = store.append(vec![send(1), send(5 * BATCH)]).unwrap();
    assert!(is_repeat_of(&retries[0], 1));
    assert!(is_repeat_of(&retries[1], 5 * BATCH as Seq));
}

#[test]
fn send_ids_are_forgotten_after_a_week() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_general(&dir);
    let week_later = |i: i64| NewMessage {
        sent_at: SEND_ID_RETENTION_MS + 10,
        ..send(i)
    };
    next_seq(&store, 1);
    for i in 2..=2 * SENDS_MOVED_AT_ONCE as i64 {
        store.append(vec![week_later(i)]).unwrap();
    }
    let outcomes = store.append(vec![week_later(1), week_later(2)]).unwrap();
    assert!(matches!(&outcomes[0], Appended::New { .. }));
    assert!(is_repeat_of(&outcomes[1], 2));
}

#[test]
fn messages_from_a_version_2_file_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Connection::open(dir.path().join("hearth.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE channels (key TEXT PRIMARY KEY, name TEXT NOT NULL,
                 created_at INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE messages (channel TEXT NOT NULL REFERENCES channels(key),
                 seq INTEGER NOT NULL, author TEXT NOT NULL, text TEXT NOT NULL,
                 sent_at INTEGER NOT NULL, client_id TEXT NOT NULL,
                 PRIMARY KEY (channel, seq)) WITHOUT ROWID;
             CREATE TABLE sends (author TEXT NOT NULL, client_id TEXT NOT NULL,
                 channel TEXT NOT NULL, seq INTEGER NOT NULL, sent_at INTEGER NOT NULL,
                 PRIMARY KEY (author, client_id)) WITHOUT ROWID;
             CREATE TABLE names (key TEXT PRIMARY KEY, name TEXT NOT NULL,
                 token_hash BLOB NOT NULL, last_seen INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO channels VALUES ('general', 'General', 1, 0), ('b', 'B', 2, 0);
             INSERT INTO messages VALUES ('general', 2, 'ada', 'm2', 2, 'c2'),
                 ('b', 1, 'bo', 'b1', 1, 'x1'), ('general', 1, 'ada', 'm1', 1, 'c1');
             INSERT INTO sends VALUES ('ada', 'c1', 'general', 1, 1),
                 ('ada', 'c2', 'general', 2, 2), ('bo', 'x1', 'b', 1, 1);
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let store = store(&dir);
    let logs = store.load().unwrap();
    let texts = |i: usize| {
        logs[i]
            .recent
            .iter()
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (logs[0].channel.name.as_str(), logs[0].last_seq),
        ("General", 2)
    );
    assert_eq!(texts(0), ["m1", "m2"]);
    assert_eq!(texts(1), ["b1"]);
    assert_eq!(next_seq(&store, 3), 3);
    assert!(matches!(
        store.append(vec![send(2)]).unwrap()[0],
        Appended::Duplicate { seq: 2, .. }
    ));
}

#[test]
fn names_are_held_by_their_token() {
    let dir = tempfile::tempdir().unwrap();
    contract::names_are_held_by_their_token(&store(&dir));
}

#[test]
fn look_alikes_of_channels_from_before_a_restart_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    store(&dir).create_channel("General", 1).unwrap();
    assert_eq!(
        store(&dir).create_channel("G\u{435}neral", 2),
        Err(StoreError::ChannelExists("General".into()))
    );
}

#[test]
fn everything_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = store_with_general(&dir);
        store.append((1..=3).map(send).collect()).unwrap();
    }
    let store = store(&dir);
    let log = &store.load().unwrap()[0];
    assert_eq!(log.last_seq, 3);
    assert_eq!(log.recent.len(), 3);
    // Numbering continues, and a retry from before the restart is recognised.
    let outcomes = store
        .append(vec![
            NewMessage {
                channel_key: "general".into(),
                author: "ada".into(),
                text: "m2".into(),
                sent_at: 9,
                client_id: "c2".into(),
            },
            NewMessage {
                channel_key: "general".into(),
                author: "ada".into(),
                text: "m4".into(),
                sent_at: 9,
                client_id: "c4".into(),
            },
        ])
        .unwrap();
    assert!(matches!(outcomes[0], Appended::Duplicate { seq: 2, .. }));
    assert!(matches!(&outcomes[1], Appended::New { message, .. } if message.seq == 4));
}

/// How many rows `table` holds.
fn rows(store: &SqliteStore, table: &str) -> usize {
    let count = format!("SELECT count(*) FROM {table}");
    store
        .lock()
        .db
        .query_row(&count, [], |row| row.get(0))
        .unwrap()
}

fn next_seq(store: &SqliteStore, i: i64) -> Seq {
    match &store.append(vec![send(i)]).unwrap()[0] {
        Appended::New { message, .. } => message.seq,
        other => panic!("expected a new message, got {other:?}"),
    }
}

#[test]
fn the_log_stays_small_under_sustained_writes() {
    let dir = tempfile::tempdir().unwrap();
    // No sync per commit, so the commits come faster than the checkpointer.
    let store = SqliteStore::open(dir.path(), 10, Durability::Normal).unwrap();
    store.create_channel("General", 1).unwrap();
    for i in 1..=5_000 {
        store.append(vec![send(i)]).unwrap();
    }
    let log = std::fs::metadata(dir.path().join("hearth.db-wal")).unwrap();
    let page_frame = 4096 + 24;
    assert!(
        log.len() <= 2 * LOG_PAGES_BEFORE_CHECKPOINT as u64 * page_frame,
        "the log reached {} bytes",
        log.len()
    );
    assert_eq!(next_seq(&store, 5_001), 5_001);
}

#[test]
fn a_data_file_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    store(&dir)
        .lock()
        .db
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let error = SqliteStore::open(dir.path(), 10, Durability::Full)
        .err()
        .unwrap();
    assert!(error.to_string().contains("newer Hearth"), "{error}");
    let file = dir.path().join("hearth.db").display().to_string();
    assert!(error.to_string().contains(&file), "names the file: {error}");
}

#[test]
fn numbering_continues_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = store_with_general(&dir);
        for i in 1..=25 {
            store.append(vec![send(i)]).unwrap();
        }
    }
    let store = store(&dir);
    assert_eq!(store.load().unwrap()[0].last_seq, 25);
    assert_eq!(next_seq(&store, 26), 26);
}

#[test]
fn a_number_kept_in_the_channel_row_by_older_versions_still_counts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = store_with_general(&dir);
        store.append(vec![send(1)]).unwrap();
        // Older versions wrote each commit's last number to the channel's row.
        store
            .lock()
            .db
            .execute("UPDATE channels SET last_seq = 40", [])
            .unwrap();
    }
    let store = store(&dir);
    assert_eq!(store.load().unwrap()[0].last_seq, 40);
    assert_eq!(next_seq(&store, 2), 41);
    // Older versions, which would trust the row's number, are kept out.
    assert_eq!(schema_version(&store), SCHEMA_VERSION);
}

/// A store whose file holds these names as schema `version` kept them (key, name,
/// token, last seen), opened again by this version.
fn reopened_with_names_of(
    dir: &tempfile::TempDir,
    version: i64,
    names: &[(&str, &str, &[u8], i64)],
) -> SqliteStore {
    {
        let store = store(dir);
        let db = &store.lock().db;
        for (key, name, token, last_seen) in names {
            db.execute(
                "INSERT INTO names (key, name, token_hash, last_seen) VALUES (?1, ?2, ?3, ?4)",
                params![key, name, token.to_vec(), last_seen],
            )
            .unwrap();
        }
        db.pragma_update(None, "user_version", version).unwrap();
    }
    store(dir)
}

fn schema_version(store: &SqliteStore) -> i64 {
    store
        .lock()
        .db
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
}

#[test]
fn names_kept_by_lower_case_are_keyed_by_look_on_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    // As version 3 kept them: keyed by lower case, so a Cyrillic "А" made another
    // name.
    let store = reopened_with_names_of(
        &dir,
        3,
        &[
            ("ada", "Ada", b"t-ada", 10),
            ("\u{430}da", "\u{410}da", b"t-cyr", 20),
            ("grace", "Grace", b"t-grc", 5),
        ],
    );
    // The more recently used of the look-alikes keeps the name; the other holder
    // is asked for a name again.
    assert_eq!(
        store.holds_name(&name_key("Ada"), b"t-cyr", 30).unwrap(),
        Some("\u{410}da".to_owned())
    );
    assert_eq!(
        store.holds_name(&name_key("Ada"), b"t-ada", 30).unwrap(),
        None
    );
    assert_eq!(
        store.holds_name(&name_key("GRACE"), b"t-grc", 30).unwrap(),
        Some("Grace".to_owned())
    );
    assert_eq!(rows(&store, "names"), 2);
}

#[test]
fn names_keyed_before_blanks_counted_as_spaces_are_keyed_anew_on_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    // As version 4 kept them: an empty braille cell after "Ada" made another key,
    // so two people could be drawn as "Ada".
    let store = reopened_with_names_of(
        &dir,
        4,
        &[
            ("ada", "Ada", b"t-ada", 20),
            ("ada\u{2800}", "Ada\u{2800}", b"t-brl", 10),
        ],
    );
    assert_eq!(
        store.holds_name(&name_key("Ada"), b"t-ada", 30).unwrap(),
        Some("Ada".to_owned())
    );
    assert_eq!(
        store
            .holds_name(&name_key("Ada\u{2800}"), b"t-brl", 30)
            .unwrap(),
        None
    );
    assert_eq!(rows(&store, "names"), 1);
    assert_eq!(schema_version(&store), SCHEMA_VERSION);
}
