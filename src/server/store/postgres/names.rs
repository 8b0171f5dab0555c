//! Held names in PostgreSQL, decided by the database: a claim reads the name's row
//! locked (`FOR UPDATE`) and writes its decision in the same transaction, so two
//! nodes never both give a name away.

use super::backend;
use crate::server::store::{Claimed, NameClaim, StoreError, policy};
use r2d2_postgres::postgres::Client;

/// Gives the name to the claimant as [`policy::decide_claim`] says.
pub fn claim(
    db: &mut Client,
    claim: &NameClaim,
    idle_expiry_ms: i64,
) -> Result<Claimed, StoreError> {
    // A name nobody holds has no row to lock: two first claims at once both find
    // none, and the second's insert finds the first's row and decides again.
    loop {
        let mut tx = db.transaction().map_err(backend)?;
        let held = tx
            .query_opt(
                "SELECT name, token_hash, last_seen FROM names WHERE key = $1 FOR UPDATE",
                &[&claim.key],
            )
            .map_err(backend)?
            .map(|row| {
                (
                    row.get::<_, String>(0),
                    row.get::<_, Vec<u8>>(1),
                    row.get::<_, i64>(2),
                )
            });
        let claimed = policy::decide_claim(
            held.as_ref()
                .map(|(name, hash, seen)| (name.as_str(), hash.as_slice(), *seen)),
            claim,
            idle_expiry_ms,
        )?;
        let written = if held.is_some() {
            tx.execute(
                "UPDATE names SET name = $2, token_hash = $3, last_seen = $4 WHERE key = $1",
                &[&claim.key, &claimed.name, &claim.token_hash, &claim.now],
            )
        } else {
            tx.execute(
                "INSERT INTO names (key, name, token_hash, last_seen) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO NOTHING",
                &[&claim.key, &claimed.name, &claim.token_hash, &claim.now],
            )
        }
        .map_err(backend)?;
        if written == 1 {
            tx.commit().map_err(backend)?;
            return Ok(claimed);
        }
    }
}

/// The name as held, if this token holds the name keyed `key`; notes its use.
pub fn holds(
    db: &mut Client,
    key: &str,
    token_hash: &[u8],
    now: i64,
) -> Result<Option<String>, StoreError> {
    let Some(row) = db
        .query_opt(
            "SELECT name, last_seen FROM names WHERE key = $1 AND token_hash = $2",
            &[&key, &token_hash],
        )
        .map_err(backend)?
    else {
        return Ok(None);
    };
    let last_seen: i64 = row.get(1);
    if now - last_seen >= policy::LAST_SEEN_RESOLUTION_MS {
        db.execute(
            "UPDATE names SET last_seen = $2 WHERE key = $1 AND token_hash = $3",
            &[&key, &now, &token_hash],
        )
        .map_err(backend)?;
    }
    Ok(Some(row.get(0)))
}

/// Frees the name keyed `key` if this token holds it.
pub fn release(db: &mut Client, key: &str, token_hash: &[u8]) -> Result<bool, StoreError> {
    let deleted = db
        .execute(
            "DELETE FROM names WHERE key = $1 AND token_hash = $2",
            &[&key, &token_hash],
        )
        .map_err(backend)?;
    Ok(deleted == 1)
}
