//! Where channels and messages live. The hub asks the store; the store decides how
//! things are kept (memory now; SQLite and Redis implement the same trait).

mod memory;

pub use memory::MemoryStore;

use crate::protocol::{Channel, ChatMessage, Seq};
use thiserror::Error;

/// What a store can refuse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("a channel named “{0}” already exists")]
    ChannelExists(String),
    #[error("no channel named “{0}”")]
    NoSuchChannel(String),
}

/// A message as the hub hands it to the store, before it has a number.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub author: String,
    pub text: String,
    pub sent_at: i64,
    pub client_id: String,
}

/// What a channel's log gives back for "everything after `since`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    pub messages: Vec<ChatMessage>,
    /// True when the messages are the whole kept window rather than exactly what
    /// followed `since` (no `since`, or `since` fell out of the window).
    pub reset: bool,
}

/// Channels and their most recent messages.
///
/// Channel identity is [`crate::protocol::channel_key`]: creating a channel whose key
/// exists fails, atomically.
pub trait Store: Send + Sync + 'static {
    /// Every channel, oldest first.
    fn channels(&self) -> Vec<Channel>;

    /// The channel with this key, if any.
    fn channel(&self, key: &str) -> Option<Channel>;

    /// Creates a channel with an already validated name.
    fn create_channel(&self, name: &str, created_at: i64) -> Result<Channel, StoreError>;

    /// Stores a message at the end of the channel, giving it the next number and
    /// dropping the oldest beyond the kept window.
    fn append(&self, key: &str, message: NewMessage) -> Result<ChatMessage, StoreError>;

    /// The messages after `since`, or the whole window if that is not possible.
    fn replay(&self, key: &str, since: Option<Seq>) -> Result<Replay, StoreError>;
}
