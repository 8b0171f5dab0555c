//! Where channels, messages and claimed names are kept. The hub serves from memory
//! and asks the store only to make things durable and to decide what must be decided
//! in one place: channel-name conflicts, sequence numbers, repeated sends, and who
//! holds a name. The embedded SQLite store is the default; the memory store keeps
//! nothing across restarts (tests, benchmarks).
//!
//! Every method blocks; the hub calls them from its committer thread or from
//! `spawn_blocking`, never on the async runtime.

mod clustered;
#[cfg(test)]
pub mod faulty;
mod memory;
pub mod policy;
mod postgres;
mod recent_sends;
pub mod retention;
mod sqlite;
#[cfg(test)]
pub mod test_port;

pub use clustered::ClusteredStore;
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use retention::{Pruned, Retention};
pub use sqlite::{Durability, SqliteStore};

use crate::protocol::{ApiError, Channel, ChatMessage, HistoryPage, HistoryRange, Seq};
use std::sync::Arc;
use thiserror::Error;

/// What a store can refuse or fail at.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("a channel named “{0}” already exists")]
    ChannelExists(String),
    #[error("no channel with key “{0}”")]
    NoSuchChannel(String),
    #[error("the name “{0}” is held by someone else")]
    NameTaken(String),
    #[error("there are {0} channels, as many as there may be")]
    TooManyChannels(usize),
    #[error("storage failed: {0}")]
    Backend(#[source] Failure),
}

impl StoreError {
    /// The store failed, as `what` says.
    pub fn backend(what: impl Into<String>) -> Self {
        StoreError::Backend(Failure {
            what: what.into(),
            source: None,
        })
    }

    /// The store failed with `source` (SQLite's error, Redis's), which is kept.
    pub fn failed(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Failure {
            what: source.to_string(),
            source: Some(Arc::new(source)),
        })
    }

    /// The same error, its words prefixed with where it happened (a file's path).
    pub fn at(self, place: impl std::fmt::Display) -> Self {
        match self {
            StoreError::Backend(failure) => StoreError::Backend(Failure {
                what: format!("{place}: {}", failure.what),
                source: failure.source,
            }),
            other => other,
        }
    }
}

/// How the store itself failed (a disk, a lost connection, a file from a newer
/// version), in words, with the error it came from when there was one.
#[derive(Debug, Clone, Error)]
#[error("{what}")]
pub struct Failure {
    what: String,
    #[source]
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Failures compare by their words: the errors they came from need not compare.
impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        self.what == other.what
    }
}

impl Eq for Failure {}

/// A store's refusal as people read it; a failure of the store itself is logged
/// and read as "busy".
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::ChannelExists(name) => ApiError::ChannelExists(name),
            StoreError::NoSuchChannel(name) => ApiError::NoSuchChannel(name),
            StoreError::NameTaken(name) => ApiError::NameTaken(name),
            StoreError::TooManyChannels(max) => ApiError::TooManyChannels(max),
            StoreError::Backend(e) => {
                tracing::error!(error = %e, "store failed");
                ApiError::Unavailable
            }
        }
    }
}

/// A message as the hub hands it to the store, before it has a number.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// [`crate::protocol::channel_key`] of the channel.
    pub channel_key: String,
    pub author: String,
    pub text: String,
    pub sent_at: i64,
    pub client_id: String,
}

/// What became of one message of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Stored under a new number.
    New {
        channel_key: String,
        message: ChatMessage,
    },
    /// The same author sent this client id before; it is stored once, as `seq`.
    Duplicate {
        channel_key: String,
        seq: Seq,
        client_id: String,
    },
    /// Never stored (e.g. the channel is gone).
    Refused {
        client_id: String,
        error: StoreError,
    },
}

/// A channel as loaded at start: its last number and its kept window, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelLog {
    pub channel: Channel,
    pub last_seq: Seq,
    pub recent: Vec<ChatMessage>,
}

/// A request to hold a display name.
#[derive(Clone, Debug)]
pub struct NameClaim {
    /// [`crate::server::name_key::name_key`] of the name.
    pub key: String,
    pub name: String,
    /// SHA-256 of the token; tokens themselves are never stored.
    pub token_hash: Vec<u8>,
    pub now: i64,
}

/// A channel to create, with its keys worked out before the store is asked (the
/// look is a Unicode skeleton: no work for under the store's lock).
#[derive(Clone, Debug)]
pub struct NewChannel {
    /// Already validated.
    pub name: String,
    /// [`crate::protocol::channel_key`] of the name.
    pub key: String,
    /// [`crate::server::name_key::name_key`] of the name.
    pub look: String,
    pub created_at: i64,
}

impl NewChannel {
    pub fn new(name: &str, created_at: i64) -> Self {
        Self {
            name: name.to_owned(),
            key: crate::protocol::channel_key(name),
            look: crate::server::name_key::name_key(name),
            created_at,
        }
    }

    /// The channel as everyone sees it once created.
    pub fn channel(&self) -> Channel {
        Channel {
            name: self.name.clone(),
            created_at: self.created_at,
        }
    }
}

/// A name given to a claimant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// The name as held: a holder claiming again with other capitals keeps the
    /// spelling it has, so one person is never two.
    pub name: String,
    /// The token hash of the holder whose name this claim took over (unused for
    /// longer than the idle expiry): their open tabs must let go of it.
    pub displaced: Option<Vec<u8>>,
}

pub trait Store: Send + Sync + 'static {
    /// Every channel in creation order, with its kept window.
    fn load(&self) -> Result<Vec<ChannelLog>, StoreError>;

    /// Durably creates a channel with an already validated name, unless a channel
    /// with the same key (or look) exists or there are `max_channels` already;
    /// decided atomically, so two creations at once cannot both pass the cap.
    fn create_channel_within(
        &self,
        channel: &NewChannel,
        max_channels: usize,
    ) -> Result<Channel, StoreError>;

    /// [`Store::create_channel_within`] with no cap.
    fn create_channel(&self, name: &str, created_at: i64) -> Result<Channel, StoreError> {
        self.create_channel_within(&NewChannel::new(name, created_at), usize::MAX)
    }

    /// Durably stores a batch in order, numbering each new message after the last
    /// of its channel and recognising repeated sends. Either the whole batch is
    /// stored, or (on `Err`) none of it.
    fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError>;

    /// Gives the name to the claimant unless another token holds it and used it
    /// within `idle_expiry_ms` ([`policy::decide_claim`]).
    fn claim_name(&self, claim: &NameClaim, idle_expiry_ms: i64) -> Result<Claimed, StoreError>;

    /// The name as held, if this token holds the name with this key; marks it as
    /// used now.
    fn holds_name(
        &self,
        key: &str,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<String>, StoreError>;

    /// Frees the name if this token holds it; returns whether it did.
    fn release_name(&self, key: &str, token_hash: &[u8]) -> Result<bool, StoreError>;

    /// At most `limit` messages of the channel with this key, oldest first, and
    /// whether more are kept beyond them in the direction asked.
    fn history(
        &self,
        channel_key: &str,
        range: HistoryRange,
        limit: usize,
    ) -> Result<HistoryPage, StoreError>;

    /// Whether the store can be used now (for readiness checks).
    fn ping(&self) -> Result<(), StoreError>;

    /// Deletes the messages `retention` no longer keeps, as of `now_ms`, keeping
    /// every channel's numbering. A store that keeps only the window (memory) has
    /// nothing to prune.
    fn prune(&self, retention: Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        let _ = (retention, now_ms);
        Ok(Pruned::default())
    }
}

/// The page `range` asks for out of `kept`, a channel's messages in order: how
/// stores that hold a channel's messages in memory answer [`Store::history`].
pub fn page_of(kept: &[ChatMessage], range: HistoryRange, limit: usize) -> HistoryPage {
    let (from, to, more) = match range {
        HistoryRange::Latest => {
            let from = kept.len().saturating_sub(limit);
            (from, kept.len(), from > 0)
        }
        HistoryRange::Before(seq) => {
            let to = kept.partition_point(|m| m.seq < seq);
            let from = to.saturating_sub(limit);
            (from, to, from > 0)
        }
        HistoryRange::After(seq) => {
            let from = kept.partition_point(|m| m.seq <= seq);
            let to = (from + limit).min(kept.len());
            (from, to, to < kept.len())
        }
    };
    HistoryPage {
        messages: kept[from..to].to_vec(),
        more,
    }
}

/// Behaviour every store must share, run against each implementation.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    fn message(channel_key: &str, author: &str, client_id: &str) -> NewMessage {
        NewMessage {
            channel_key: channel_key.into(),
            author: author.into(),
            text: format!("text of {client_id}"),
            sent_at: 1_000,
            client_id: client_id.into(),
        }
    }

    /// Ada's `i`th message to General, sent at time `i`.
    pub fn send(i: i64) -> NewMessage {
        NewMessage {
            channel_key: "general".into(),
            author: "ada".into(),
            text: format!("m{i}"),
            sent_at: i,
            client_id: format!("c{i}"),
        }
    }

    fn seqs(outcomes: &[Appended]) -> Vec<Seq> {
        outcomes
            .iter()
            .map(|o| match o {
                Appended::New { message, .. } => message.seq,
                Appended::Duplicate { seq, .. } => *seq,
                Appended::Refused { .. } => 0,
            })
            .collect()
    }

    /// The cap on channels holds, and names whose look exists are refused first.
    pub fn channels_are_capped(store: &dyn Store) {
        let create =
            |name: &str, at, max| store.create_channel_within(&NewChannel::new(name, at), max);
        create("General", 1, 2).unwrap();
        create("Rust", 2, 2).unwrap();
        assert_eq!(create("Go", 3, 2), Err(StoreError::TooManyChannels(2)));
        assert_eq!(
            create("rust", 3, 2),
            Err(StoreError::ChannelExists("Rust".into()))
        );
        create("Go", 4, 3).unwrap();
        assert_eq!(channel_names(store), ["General", "Rust", "Go"]);
    }

    /// Other capitals, fullwidth letters or a Cyrillic "е" make no second General.
    pub fn channels_that_look_alike_conflict(store: &dyn Store) {
        store.create_channel("General", 1).unwrap();
        for look_alike in ["gENERAL", "G\u{435}neral", "ＧＥＮＥＲＡＬ"] {
            assert_eq!(
                store.create_channel(look_alike, 2),
                Err(StoreError::ChannelExists("General".into())),
                "{look_alike:?}"
            );
        }
        store.create_channel("Rust", 3).unwrap();
        // Accented letters are letters of their own.
        store.create_channel("Général", 4).unwrap();
        assert_eq!(channel_names(store), ["General", "Rust", "Général"]);
    }

    /// The channels' names, in creation order.
    pub fn channel_names(store: &dyn Store) -> Vec<String> {
        store
            .load()
            .unwrap()
            .into_iter()
            .map(|log| log.channel.name)
            .collect()
    }

    pub fn messages_are_numbered_and_repeats_stored_once(store: &dyn Store) {
        store.create_channel("General", 1).unwrap();
        let first = store
            .append(vec![
                message("general", "ada", "a1"),
                message("general", "bob", "b1"),
                // A retry inside the same batch.
                message("general", "ada", "a1"),
                message("nowhere", "ada", "a2"),
            ])
            .unwrap();
        assert_eq!(seqs(&first), [1, 2, 1, 0]);
        assert!(matches!(first[2], Appended::Duplicate { .. }));
        assert!(matches!(
            &first[3],
            Appended::Refused {
                error: StoreError::NoSuchChannel(_),
                ..
            }
        ));
        // A retry in a later batch, and the same client id from another author.
        let second = store
            .append(vec![
                message("general", "bob", "b1"),
                message("general", "cy", "b1"),
            ])
            .unwrap();
        assert_eq!(seqs(&second), [2, 3]);
        assert!(matches!(second[0], Appended::Duplicate { .. }));
        let log = &store.load().unwrap()[0];
        assert_eq!(log.last_seq, 3);
        assert_eq!(
            log.recent
                .iter()
                .map(|m| m.client_id.as_str())
                .collect::<Vec<_>>(),
            ["a1", "b1", "b1"]
        );
    }

    /// `store` keeps at least `count` messages per channel: paging back from the
    /// newest and forward from the start meets each once, in order.
    pub fn history_pages_each_message_once(store: &dyn Store, count: Seq) {
        store.create_channel("General", 1).unwrap();
        store.create_channel("Other", 1).unwrap();
        for chunk in (1..=count).collect::<Vec<_>>().chunks(97) {
            let batch = chunk
                .iter()
                .flat_map(|i| {
                    [
                        message("general", "ada", &format!("g{i}")),
                        message("other", "ada", &format!("o{i}")),
                    ]
                })
                .collect();
            store.append(batch).unwrap();
        }
        let mut back = Vec::new();
        let mut page = store.history("general", HistoryRange::Latest, 50).unwrap();
        loop {
            assert!(page.messages.iter().all(|m| m.channel == "General"));
            let oldest = page.messages.first().map(|m| m.seq);
            back.splice(0..0, page.messages.iter().map(|m| m.seq));
            if !page.more {
                break;
            }
            let before = oldest.expect("a page with more has messages");
            page = store
                .history("general", HistoryRange::Before(before), 50)
                .unwrap();
        }
        assert_eq!(back, (1..=count).collect::<Vec<_>>());

        let mut forward = Vec::new();
        let mut after = 0;
        loop {
            let page = store
                .history("general", HistoryRange::After(after), 64)
                .unwrap();
            forward.extend(page.messages.iter().map(|m| m.seq));
            after = forward.last().copied().unwrap_or(0);
            if !page.more {
                break;
            }
        }
        assert_eq!(forward, back);

        let edge = store
            .history("general", HistoryRange::Before(1), 50)
            .unwrap();
        assert_eq!(edge, HistoryPage::default());
        assert!(matches!(
            store.history("nowhere", HistoryRange::Latest, 50),
            Err(StoreError::NoSuchChannel(_))
        ));
    }

    fn seqs_of(page: &HistoryPage) -> Vec<Seq> {
        page.messages.iter().map(|m| m.seq).collect()
    }

    /// `store` keeps every message until told otherwise: pruning by age and by
    /// count deletes exactly what is past keeping, says what went, and a channel
    /// whose newest message went on age numbers on from where it was.
    pub fn retention_prunes_and_numbering_goes_on(store: &dyn Store) {
        const DAY: i64 = 24 * 3600 * 1000;
        store.create_channel("General", 1).unwrap();
        store.create_channel("Quiet", 1).unwrap();
        let at = |channel: &str, i: i64, day: i64| NewMessage {
            sent_at: day * DAY,
            ..message(channel, "ada", &format!("{channel}{i}"))
        };
        // Stored in the order sent, as the server's clock stamps them.
        let mut batch: Vec<NewMessage> = (1..=3).map(|i| at("quiet", i, 1)).collect();
        batch.extend((1..=30).map(|i| at("general", i, i)));
        store.append(batch).unwrap();
        assert_eq!(
            store.prune(Retention::All, 45 * DAY).unwrap(),
            Pruned::default()
        );

        // Forty days on day 45: what was sent before day 5 goes.
        let pruned = store.prune(Retention::Days(40), 45 * DAY).unwrap();
        assert_eq!(pruned.messages, 4 + 3);
        assert_eq!(
            pruned.through,
            [("general".to_owned(), 4), ("quiet".to_owned(), 3)]
        );
        let general = store.history("general", HistoryRange::Latest, 100).unwrap();
        assert_eq!(seqs_of(&general), (5..=30).collect::<Vec<_>>());
        assert!(!general.more);
        assert_eq!(
            store.history("quiet", HistoryRange::Latest, 100).unwrap(),
            HistoryPage::default()
        );
        let next = store.append(vec![at("quiet", 4, 45)]).unwrap();
        assert!(matches!(&next[0], Appended::New { message, .. } if message.seq == 4));

        // Ten per channel: General keeps 21..=30; Quiet has one.
        let pruned = store.prune(Retention::PerChannel(10), 45 * DAY).unwrap();
        assert_eq!(pruned.messages, 16);
        assert_eq!(pruned.through, [("general".to_owned(), 20)]);
        let general = store.history("general", HistoryRange::Latest, 100).unwrap();
        assert_eq!(seqs_of(&general), (21..=30).collect::<Vec<_>>());
        let loaded: Vec<Seq> = store.load().unwrap().iter().map(|l| l.last_seq).collect();
        assert_eq!(loaded, [30, 4]);
        // Nothing more to do.
        assert_eq!(
            store
                .prune(Retention::PerChannel(10), 45 * DAY)
                .unwrap()
                .messages,
            0
        );
    }

    /// `store` keeps 10 messages per channel.
    pub fn only_the_window_is_kept(store: &dyn Store) {
        store.create_channel("General", 1).unwrap();
        for i in 1..=25 {
            store
                .append(vec![message("general", "ada", &format!("m{i}"))])
                .unwrap();
        }
        let log = &store.load().unwrap()[0];
        assert_eq!(log.last_seq, 25);
        assert_eq!(
            log.recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (16..=25).collect::<Vec<_>>()
        );
        assert_eq!(log.recent[0].channel, "General");
    }

    pub fn names_are_held_by_their_token(store: &dyn Store) {
        let claim = |name: &str, token: &[u8], now| NameClaim {
            key: crate::server::name_key::name_key(name),
            name: name.into(),
            token_hash: token.to_vec(),
            now,
        };
        let day = 24 * 3600 * 1000;
        assert_eq!(
            store.claim_name(&claim("Ada", b"t1", 0), 30 * day).unwrap(),
            Claimed {
                name: "Ada".into(),
                displaced: None
            }
        );
        // Someone else, even with other capitals, is refused while Ada is active.
        assert_eq!(
            store.claim_name(&claim("ADA", b"t2", day), 30 * day),
            Err(StoreError::NameTaken("ADA".into()))
        );
        assert_eq!(
            store.holds_name("ada", b"t1", 2 * day).unwrap().as_deref(),
            Some("Ada")
        );
        assert_eq!(store.holds_name("ada", b"t2", 2 * day).unwrap(), None);
        // The holder may claim again (e.g. from a new tab), keeping the spelling.
        assert_eq!(
            store
                .claim_name(&claim("aDA", b"t1", 3 * day), 30 * day)
                .unwrap()
                .name,
            "Ada"
        );
        // After 30 idle days the name is free again, and the holder it was taken
        // from is named, so that their open tabs let go of it.
        assert_eq!(
            store
                .claim_name(&claim("Ada", b"t2", 34 * day), 30 * day)
                .unwrap()
                .displaced
                .as_deref(),
            Some(&b"t1"[..])
        );
        assert_eq!(store.holds_name("ada", b"t1", 34 * day).unwrap(), None);
        // Releasing needs the token.
        assert!(!store.release_name("ada", b"t1").unwrap());
        assert!(store.release_name("ada", b"t2").unwrap());
        store
            .claim_name(&claim("Ada", b"t3", 35 * day), 30 * day)
            .unwrap();
    }
}
