//! The PostgreSQL store against the stores' contract, and what is its own: two
//! stores (two nodes) writing one database at once, reopening, migrations.

use super::super::contract::{self, send};
use super::test_server::Postgres;
use super::*;
use crate::protocol::Seq;
use std::sync::Arc;

/// A store on a new database of the shared test cluster, keeping a window of 10.
fn store() -> (String, PostgresStore) {
    let url = Postgres::shared().database();
    let store = PostgresStore::open(&url, 10).unwrap();
    (url, store)
}

#[test]
fn channels_are_capped() {
    contract::channels_are_capped(&store().1);
}

#[test]
fn channels_that_look_alike_conflict() {
    contract::channels_that_look_alike_conflict(&store().1);
}

#[test]
fn messages_are_numbered_and_repeats_stored_once() {
    contract::messages_are_numbered_and_repeats_stored_once(&store().1);
}

#[test]
fn only_the_window_is_loaded() {
    contract::only_the_window_is_kept(&store().1);
}

#[test]
fn names_are_held_by_their_token() {
    contract::names_are_held_by_their_token(&store().1);
}

#[test]
fn history_pages_each_message_once() {
    contract::history_pages_each_message_once(&store().1, 2_500);
}

#[test]
fn retention_prunes_and_numbering_goes_on() {
    contract::retention_prunes_and_numbering_goes_on(&store().1);
}

#[test]
fn everything_survives_reopening_and_migrating_twice_changes_nothing() {
    let (url, first) = store();
    first.create_channel("General", 1).unwrap();
    first.append((1..=25).map(send).collect()).unwrap();
    drop(first);
    let again = PostgresStore::open(&url, 10).unwrap();
    let log = &again.load().unwrap()[0];
    assert_eq!(log.last_seq, 25);
    assert_eq!(log.recent.len(), 10);
    // A retry from before the reopening is still recognised.
    assert!(matches!(
        &again.append(vec![send(7)]).unwrap()[0],
        Appended::Duplicate { seq: 7, .. }
    ));
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let (url, first) = store();
    first
        .connection()
        .unwrap()
        .execute("UPDATE hearth_schema SET version = version + 1", &[])
        .unwrap();
    let error = PostgresStore::open(&url, 10).err().expect("refused");
    assert!(error.to_string().contains("newer Hearth"), "{error}");
}

/// Two nodes sending to one channel at once: every message numbered once, the
/// numbers without gaps, each node's messages in the order it sent them.
#[test]
fn two_stores_on_one_database_number_without_gaps_or_repeats() {
    let (url, first) = store();
    first.create_channel("General", 1).unwrap();
    let second = PostgresStore::open(&url, 10).unwrap();
    let nodes = [Arc::new(first), Arc::new(second)];
    let threads: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(n, store)| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut seqs: Vec<Seq> = Vec::new();
                for round in 0..50 {
                    let batch = (0..10)
                        .map(|i| NewMessage {
                            client_id: format!("n{n}-{round}-{i}"),
                            ..send(i)
                        })
                        .collect();
                    for outcome in store.append(batch).unwrap() {
                        match outcome {
                            Appended::New { message, .. } => seqs.push(message.seq),
                            other => panic!("{other:?}"),
                        }
                    }
                }
                seqs
            })
        })
        .collect();
    let mut all: Vec<Seq> = Vec::new();
    for thread in threads {
        let seqs = thread.join().unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order per node");
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=1000).collect::<Vec<_>>());
    assert_eq!(nodes[0].load().unwrap()[0].last_seq, 1000);
}

#[test]
fn an_unreachable_database_is_a_clear_error_soon() {
    let started = std::time::Instant::now();
    let error = PostgresStore::open("postgres://hearth@127.0.0.1:1/none", 10)
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("cannot reach PostgreSQL"),
        "{error}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
