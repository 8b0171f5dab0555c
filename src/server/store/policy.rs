//! The rules every store applies the same way, written once: who gets a name, how
//! long a send's id is remembered, how often a name's last use is written down.
//! Stores that decide in Rust call these; Redis's scripts receive them as arguments.

use super::{Claimed, NameClaim, StoreError};

/// How long a send's client id is remembered, so a retry is stored once even after
/// its message has left the kept window.
pub const SEND_ID_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// How stale a name's "last used" time may get before a hello writes it anew:
/// names expire after days of disuse, so once an hour is plenty, and most hellos
/// cost a read instead of a durable write.
pub const LAST_SEEN_RESOLUTION_MS: i64 = 3600 * 1000;

/// Who gets a name, given its holder now (name as held, token hash, last use):
/// the same token keeps it, another takes it only once it has gone unused for
/// `idle_expiry_ms`. Stores that decide in Rust call this; Redis's script says the
/// same in Lua.
pub fn decide_claim(
    held: Option<(&str, &[u8], i64)>,
    claim: &NameClaim,
    idle_expiry_ms: i64,
) -> Result<Claimed, StoreError> {
    match held {
        Some((held, hash, _)) if hash == claim.token_hash => Ok(Claimed {
            name: held.to_owned(),
            displaced: None,
        }),
        Some((_, _, last_seen)) if claim.now - last_seen < idle_expiry_ms => {
            Err(StoreError::NameTaken(claim.name.clone()))
        }
        held => Ok(Claimed {
            name: claim.name.clone(),
            displaced: held.map(|(_, hash, _)| hash.to_vec()),
        }),
    }
}
