//! The store on PostgreSQL (`HEARTH_DATABASE_URL`): what a cluster keeps its
//! records in, and what a single node may use instead of SQLite.
//!
//! Every node may write at once, so what SQLite's one writer decides from its
//! mirror in memory is decided here by the database: a batch is one call of a
//! function (`hearth_append`) that numbers each send from its channel's row (locked
//! until the batch commits, so two nodes' batches on one channel number one after
//! the other) and finds repeated sends in `sends`, in one transaction. A send is
//! acknowledged only after its batch has committed (group commit, as on SQLite).
//!
//! The calls block: the hub makes them from its committer thread or from
//! `spawn_blocking`. Connections come from a small pool; one that fails is
//! dropped and another opened on the next call, so a restarted PostgreSQL is used
//! again without a restart of Hearth.

mod channels;
mod messages;
mod names;
mod schema;
#[cfg(test)]
use super::test_port;
#[cfg(test)]
pub mod test_server;
#[cfg(test)]
mod tests;

use super::{
    Appended, ChannelLog, Claimed, NameClaim, NewChannel, NewMessage, Pruned, Retention, Store,
    StoreError,
};
use crate::protocol::{Channel, HistoryPage, HistoryRange};
use r2d2_postgres::PostgresConnectionManager;
use r2d2_postgres::postgres::NoTls;
use std::time::Duration;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Connection = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// Longest wait for a connection, and for the server to answer opening one: a
/// PostgreSQL that is away refuses sends within this time, so clients keep them
/// and retry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest any one statement may run before the server cancels it.
const STATEMENT_TIMEOUT_MS: u32 = 10_000;
/// Connections kept per node: the committer, and reads (history pages, names).
const POOL_SIZE: u32 = 8;

pub struct PostgresStore {
    /// Messages per channel the hub keeps in memory: what `load` returns.
    window: usize,
    /// Taken out on drop: see [`Drop`] below.
    pool: Option<Pool>,
}

pub(super) fn backend(e: r2d2_postgres::postgres::Error) -> StoreError {
    StoreError::failed(e)
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`) and brings
    /// its tables up to this version's layout.
    pub fn open(url: &str, history: usize) -> Result<Self, StoreError> {
        let mut config: r2d2_postgres::postgres::Config = url
            .parse()
            .map_err(|e| StoreError::failed(e).at("the database URL is not valid"))?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .options(&format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"))
            .application_name("hearth");
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            // No round trip to test each connection taken: one that broke fails its
            // call (answered as "busy, try again") and is dropped, not reused.
            .test_on_check_out(false)
            // r2d2 logs each failed attempt itself; the caller is told in one error.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        let store = Self {
            window: history.max(1),
            pool: Some(pool),
        };
        schema::migrate(&mut *store.connection()?)?;
        Ok(store)
    }

    /// Every channel with its last number, in creation order: what a cluster node
    /// compares with what it has published, to find what the bus did not carry.
    pub fn heads(&self) -> Result<Vec<(String, Channel, crate::protocol::Seq)>, StoreError> {
        channels::heads(&mut *self.connection()?)
    }

    fn connection(&self) -> Result<Connection, StoreError> {
        self.pool
            .as_ref()
            .expect("present until dropped")
            .get()
            .map_err(|e| StoreError::failed(e).at("cannot reach PostgreSQL"))
    }
}

/// Each pooled connection runs its own small runtime, which must not be dropped on
/// a thread that drives async tasks (the store may go away on one, with the hub):
/// the pool is dropped on a thread of its own.
impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

impl Store for PostgresStore {
    fn load(&self) -> Result<Vec<ChannelLog>, StoreError> {
        channels::load(&mut *self.connection()?, self.window)
    }

    fn create_channel_within(
        &self,
        channel: &NewChannel,
        max_channels: usize,
    ) -> Result<Channel, StoreError> {
        channels::create(&mut *self.connection()?, channel, max_channels)
    }

    fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        messages::append(&mut *self.connection()?, batch)
    }

    fn claim_name(&self, claim: &NameClaim, idle_expiry_ms: i64) -> Result<Claimed, StoreError> {
        names::claim(&mut *self.connection()?, claim, idle_expiry_ms)
    }

    fn holds_name(
        &self,
        key: &str,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        names::holds(&mut *self.connection()?, key, token_hash, now)
    }

    fn release_name(&self, key: &str, token_hash: &[u8]) -> Result<bool, StoreError> {
        names::release(&mut *self.connection()?, key, token_hash)
    }

    fn history(
        &self,
        channel_key: &str,
        range: HistoryRange,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        messages::history(&mut *self.connection()?, channel_key, range, limit)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.connection()?
            .simple_query("SELECT 1")
            .map_err(backend)?;
        Ok(())
    }

    fn prune(&self, retention: Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        messages::prune(&mut *self.connection()?, retention, now_ms)
    }
}
