//! Held names in SQLite: who holds each (by look), with the hash of their token
//! and when they last used it.

use super::backend;
use crate::server::store::{Claimed, NameClaim, StoreError, policy};
use rusqlite::{Connection, OptionalExtension, params};

/// Gives the name to the claimant as [`policy::decide_claim`] says.
pub fn claim(
    db: &Connection,
    claim: &NameClaim,
    idle_expiry_ms: i64,
) -> Result<Claimed, StoreError> {
    let held: Option<(String, Vec<u8>, i64)> = db
        .query_row(
            "SELECT name, token_hash, last_seen FROM names WHERE key = ?1",
            [&claim.key],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
    let held = held
        .as_ref()
        .map(|(name, hash, seen)| (name.as_str(), hash.as_slice(), *seen));
    let claimed = policy::decide_claim(held, claim, idle_expiry_ms)?;
    db.execute(
        "INSERT INTO names (key, name, token_hash, last_seen) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET
                 name = excluded.name, token_hash = excluded.token_hash,
                 last_seen = excluded.last_seen",
        params![claim.key, claimed.name, claim.token_hash, claim.now],
    )
    .map_err(backend)?;
    Ok(claimed)
}

/// The name as held, if this token holds the name keyed `key`; notes its use.
pub fn holds(
    db: &Connection,
    key: &str,
    token_hash: &[u8],
    now: i64,
) -> Result<Option<String>, StoreError> {
    let held: Option<(String, i64)> = db
        .query_row(
            "SELECT name, last_seen FROM names WHERE key = ?1 AND token_hash = ?2",
            params![key, token_hash],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(backend)?;
    let Some((name, last_seen)) = held else {
        return Ok(None);
    };
    if now - last_seen >= policy::LAST_SEEN_RESOLUTION_MS {
        db.execute(
            "UPDATE names SET last_seen = ?2 WHERE key = ?1",
            params![key, now],
        )
        .map_err(backend)?;
    }
    Ok(Some(name))
}

/// Frees the name keyed `key` if this token holds it.
pub fn release(db: &Connection, key: &str, token_hash: &[u8]) -> Result<bool, StoreError> {
    let deleted = db
        .execute(
            "DELETE FROM names WHERE key = ?1 AND token_hash = ?2",
            params![key, token_hash],
        )
        .map_err(backend)?;
    Ok(deleted == 1)
}
