//! Owned display names without accounts: claiming a name returns a secret token that
//! later proves it. Tokens are stored only as SHA-256 hashes.

use super::name_key::name_key;
use super::store::{NameClaim, Store};
use crate::protocol::{ApiError, NameGrant, TOKEN_MAX_BYTES, validate_name};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a checked token is trusted without asking the store again: a tab that
/// reconnects (or many tabs of one person) then says hello without a store read.
const VERIFIED_FRESH_MS: i64 = 60_000;
/// Most remembered checks; older ones are dropped first when it fills.
const VERIFIED_MAX: usize = 100_000;
/// While the store is away, a check this recent still lets a tab back in: people
/// reconnecting through a short outage keep reading, but a check from long ago
/// (before the name may have changed hands elsewhere) does not.
const TRUSTED_WHILE_AWAY_MS: i64 = 10 * 60_000;

pub struct Names {
    store: Arc<dyn Store>,
    /// A name unused this long may be claimed by someone else.
    idle_expiry_ms: i64,
    checks: Mutex<Checks>,
    /// Counts the names taken back (claimed anew, or given up here or through
    /// another node), so a connection can tell cheaply whether its check may have
    /// been taken back before the hub knew of it: nearly always, none was.
    taken_back: AtomicU64,
}

/// Recent successful checks, and recent take-backs, by name key.
#[derive(Default)]
struct Checks {
    verified: HashMap<String, Verified>,
    /// When each name was last taken back (the count then, and the time), kept
    /// long enough to outlast any hello under way.
    taken_back: HashMap<String, (u64, Instant)>,
}

/// How long a take-back is remembered: longer than a hello can take.
const TAKE_BACK_REMEMBERED: Duration = Duration::from_secs(120);

/// A name its holder no longer has (given up, or taken over after going unused):
/// its key, and the holder whose open tabs must let go of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LetGo {
    pub key: String,
    pub holder: Holder,
}

/// Who holds a name, as each of their connections remembers it: the first 8 bytes of
/// the token's SHA-256. That tells the holders of one name apart (the one who gave it
/// up, and whoever claims it next) at no allocation per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder(u64);

impl Holder {
    pub fn of_token(token: &str) -> Self {
        Self::of_hash(&hash(token))
    }

    pub fn of_hash(token_hash: &[u8]) -> Self {
        let mut first = [0u8; 8];
        for (to, from) in first.iter_mut().zip(token_hash) {
            *to = *from;
        }
        Self(u64::from_be_bytes(first))
    }
}

struct Verified {
    token_hash: Vec<u8>,
    held: String,
    at: i64,
    /// The take-back count when it was remembered.
    since: u64,
}

impl Names {
    pub fn new(store: Arc<dyn Store>, idle_expiry: std::time::Duration) -> Self {
        Self {
            store,
            idle_expiry_ms: i64::try_from(idle_expiry.as_millis()).unwrap_or(i64::MAX),
            checks: Mutex::default(),
            taken_back: AtomicU64::new(0),
        }
    }

    /// Takes back what was remembered of `key`, if anything, and notes that the
    /// name was taken back: a check of it under way in the store (not remembered
    /// yet) must not be remembered once it ends, nor trusted ([`Names::still_trusts`]).
    fn take_back(&self, key: &str, only_for: Option<&[u8]>) {
        let mut checks = self.checks();
        if checks
            .verified
            .get(key)
            .is_some_and(|entry| only_for.is_none_or(|hash| entry.token_hash == hash))
        {
            checks.verified.remove(key);
        }
        let count = self.taken_back.fetch_add(1, Ordering::AcqRel) + 1;
        let now = Instant::now();
        if checks.taken_back.len() >= VERIFIED_MAX {
            checks
                .taken_back
                .retain(|_, (_, at)| now.duration_since(*at) < TAKE_BACK_REMEMBERED);
        }
        checks.taken_back.insert(key.to_owned(), (count, now));
    }

    /// A mark to pass to [`Names::still_trusts`]: take it before checking a token.
    pub fn mark(&self) -> u64 {
        self.taken_back.load(Ordering::Acquire)
    }

    /// Whether `token` still holds `name` as checked since `mark`: if the name was
    /// taken back meanwhile (given up or taken over as the connection said hello),
    /// only a check remembered after that counts; otherwise the connection
    /// reconnects and is checked afresh. Costs nothing unless a name was taken back.
    pub fn still_trusts(&self, mark: u64, name: &str, token: &str) -> bool {
        if self.mark() == mark {
            return true;
        }
        let key = name_key(name);
        let checks = self.checks();
        match checks.taken_back.get(&key) {
            Some(&(count, _)) if count > mark => checks
                .verified
                .get(&key)
                .is_some_and(|entry| entry.since >= count && entry.token_hash == hash(token)),
            _ => true,
        }
    }

    fn checks(&self) -> std::sync::MutexGuard<'_, Checks> {
        // Plain maps; any state behind a poisoned lock is still a valid cache.
        self.checks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The name as held, if `token` was checked for `name` within the last minute;
    /// `None` means "ask the store" (`verify`), not "refused". Never blocks.
    pub fn verify_recent(&self, name: &str, token: &str, now: i64) -> Option<String> {
        let checks = self.checks();
        let entry = checks.verified.get(&name_key(name))?;
        (now - entry.at < VERIFIED_FRESH_MS && entry.token_hash == hash(token))
            .then(|| entry.held.clone())
    }

    /// Remembers a check made since `mark`, unless its name was taken back
    /// meanwhile (given up or taken over while the store was being asked): the
    /// check may predate that, so the next hello asks the store again.
    fn remember(&self, mark: u64, key: String, token_hash: Vec<u8>, held: &str, now: i64) {
        let mut checks = self.checks();
        if checks
            .taken_back
            .get(&key)
            .is_some_and(|&(count, _)| count > mark)
        {
            return;
        }
        if checks.verified.len() >= VERIFIED_MAX {
            checks
                .verified
                .retain(|_, v| now - v.at < VERIFIED_FRESH_MS);
            if checks.verified.len() >= VERIFIED_MAX {
                checks.verified.clear();
            }
        }
        let since = self.mark();
        checks.verified.insert(
            key,
            Verified {
                token_hash,
                held: held.to_owned(),
                at: now,
                since,
            },
        );
    }

    /// Gives `raw_name` to the caller. A browser that already holds a token presents
    /// it and keeps it; otherwise a new one is issued. Also returns the holder the
    /// name was taken from, when it had gone unused long enough to be taken over.
    /// Blocks on the store.
    pub fn claim(
        &self,
        raw_name: &str,
        token: Option<String>,
        now: i64,
    ) -> Result<(NameGrant, Option<LetGo>), ApiError> {
        let name = validate_name(raw_name)?;
        let token = token
            .filter(|t| !t.is_empty() && t.len() <= TOKEN_MAX_BYTES)
            .unwrap_or_else(new_token);
        let claim = NameClaim {
            key: name_key(&name),
            name: name.clone(),
            token_hash: hash(&token),
            now,
        };
        // Nothing but blanks that look like spaces (empty braille cells): a name
        // that draws nothing.
        if claim.key.is_empty() {
            return Err(crate::protocol::NameError::Invisible.into());
        }
        let claimed = self
            .store
            .claim_name(&claim, self.idle_expiry_ms)
            .map_err(|e| match ApiError::from(e) {
                // As the claimant typed it.
                ApiError::NameTaken(_) => ApiError::NameTaken(name.clone()),
                other => other,
            })?;
        // The name may have changed hands: what was remembered for it no longer
        // holds. Only now: a refused claim must not unsettle the holder, whose
        // reconnects lean on it while the store is away.
        self.take_back(&claim.key, None);
        let displaced = claimed.displaced.map(|hash| LetGo {
            key: claim.key,
            holder: Holder::of_hash(&hash),
        });
        let grant = NameGrant {
            name: claimed.name,
            token,
        };
        Ok((grant, displaced))
    }

    /// The name as held, if `token` holds `name` (marking it used); the spelling
    /// held is the one everyone sees, whatever capitals were typed. Blocks on the
    /// store.
    pub fn verify(&self, name: &str, token: &str, now: i64) -> Result<Option<String>, ApiError> {
        if !is_plausible(name, token) {
            return Ok(None);
        }
        let (key, token_hash) = (name_key(name), hash(token));
        let mark = self.mark();
        match self.store.holds_name(&key, &token_hash, now) {
            Ok(held) => {
                if let Some(held) = &held {
                    self.remember(mark, key, token_hash, held, now);
                }
                Ok(held)
            }
            Err(error) => {
                // The store is away (a cluster's Redis restarting): a token this node
                // checked before still holds its name, so people already here can
                // reconnect and read while sends wait.
                let checks = self.checks();
                match checks.verified.get(&key) {
                    Some(entry)
                        if entry.token_hash == token_hash
                            && now - entry.at < TRUSTED_WHILE_AWAY_MS =>
                    {
                        Ok(Some(entry.held.clone()))
                    }
                    _ => Err(error.into()),
                }
            }
        }
    }

    /// Frees `name` if `token` holds it, and returns its key and the holder whose
    /// tabs must now let go of it; `None` if `token` did not hold it (nothing is
    /// worked out for a name or token that could not be held). Blocks on the store.
    pub fn release(&self, name: &str, token: &str) -> Result<Option<LetGo>, ApiError> {
        if !is_plausible(name, token) {
            return Ok(None);
        }
        let (key, token_hash) = (name_key(name), hash(token));
        if !self.store.release_name(&key, &token_hash)? {
            return Ok(None);
        }
        self.take_back(&key, None);
        Ok(Some(LetGo {
            key,
            holder: Holder::of_hash(&token_hash),
        }))
    }

    /// Forgets that `token_hash` held the name keyed `key`, which its holder gave up
    /// through another node: the token must not say hello here on the strength of
    /// an earlier check.
    pub fn forget(&self, key: &str, token_hash: &[u8]) {
        self.take_back(key, Some(token_hash));
    }
}

/// Whether `token` could hold `name`: a valid name and a token of a length the
/// server issues or accepts. Checked before any key or hash is worked out, so a
/// request with megabytes of either costs nothing.
fn is_plausible(name: &str, token: &str) -> bool {
    !token.is_empty() && token.len() <= TOKEN_MAX_BYTES && validate_name(name).is_ok()
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// 256 random bits from the operating system, as hex.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ApiError;
    use crate::server::store::MemoryStore;
    use std::time::Duration;

    #[test]
    fn a_check_taken_back_while_a_tab_says_hello_is_noticed() {
        let names = Names::new(Arc::new(MemoryStore::new(10)), Duration::from_secs(3600));
        let ada = names.claim("Ada", None, 0).unwrap().0;
        let mark = names.mark();
        assert!(names.verify("Ada", &ada.token, 1).unwrap().is_some());
        assert!(names.still_trusts(mark, "Ada", &ada.token));
        // Someone else's name given up takes nothing of Ada's back.
        let bob = names.claim("Bob", None, 2).unwrap().0;
        assert!(names.verify("Bob", &bob.token, 2).unwrap().is_some());
        assert!(names.release("Bob", &bob.token).unwrap().is_some());
        assert_ne!(names.mark(), mark);
        assert!(names.still_trusts(mark, "Ada", &ada.token));
        assert!(names.release("Ada", &ada.token).unwrap().is_some());
        assert!(!names.still_trusts(mark, "Ada", &ada.token));
    }

    #[test]
    fn claims_of_other_names_do_not_unsettle_a_hello_under_way() {
        let names = Names::new(Arc::new(MemoryStore::new(10)), Duration::from_secs(3600));
        let bo = names.claim("Bo", None, 0).unwrap().0;
        let mark = names.mark();
        assert!(names.verify("Bo", &bo.token, 1).unwrap().is_some());
        // A crowd arriving: each claims a name while Bo's tab says hello.
        for i in 0..3 {
            names.claim(&format!("Cy {i}"), None, 2).unwrap();
        }
        assert_ne!(names.mark(), mark);
        assert!(names.still_trusts(mark, "Bo", &bo.token));
    }

    #[test]
    fn a_check_that_ends_after_the_name_changed_hands_is_not_remembered() {
        let names = Names::new(Arc::new(MemoryStore::new(10)), Duration::from_millis(1_000));
        let old = names.claim("Ada", None, 0).unwrap().0;
        // A tab of the old holder asks the store (which says yes) ...
        let mark = names.mark();
        // ... while another browser takes the name over, before the answer is kept.
        names.claim("Ada", None, 5_000).unwrap();
        names.remember(mark, name_key("Ada"), hash(&old.token), "Ada", 5_000);
        assert_eq!(names.verify_recent("Ada", &old.token, 5_001), None);
        assert!(!names.still_trusts(mark, "Ada", &old.token));
    }

    #[test]
    fn a_name_given_up_elsewhere_is_checked_afresh() {
        let store = Arc::new(MemoryStore::new(10));
        let names = Names::new(store.clone(), Duration::from_secs(3600));
        let grant = names.claim("Ada", None, 0).unwrap().0;
        assert!(names.verify("Ada", &grant.token, 1).unwrap().is_some());
        // Given up through another node: the store no longer has it, and this
        // node's check of a moment ago no longer counts for the token that held it.
        assert!(
            store
                .release_name(&name_key("Ada"), &hash(&grant.token))
                .unwrap()
        );
        names.forget(&name_key("Ada"), &hash("someone else's token"));
        assert!(names.verify_recent("Ada", &grant.token, 2).is_some());
        names.forget(&name_key("Ada"), &hash(&grant.token));
        assert_eq!(names.verify_recent("Ada", &grant.token, 2), None);
        assert_eq!(names.verify("Ada", &grant.token, 3).unwrap(), None);
    }

    #[test]
    fn a_name_is_held_by_the_token_it_returned() {
        let names = Names::new(Arc::new(MemoryStore::new(10)), Duration::from_secs(3600));
        let grant = names.claim("  Ada ", None, 0).unwrap().0;
        assert_eq!(grant.name, "Ada");
        assert_eq!(grant.token.len(), 64);
        assert_eq!(
            names.verify("ada", &grant.token, 1).unwrap().as_deref(),
            Some("Ada")
        );
        assert_eq!(names.verify("Ada", "guess", 1).unwrap(), None);
        assert_eq!(
            names.verify_recent("ADA", &grant.token, 2).as_deref(),
            Some("Ada")
        );
        assert_eq!(names.verify_recent("ada", "guess", 2), None);
        assert_eq!(names.verify_recent("ada", &grant.token, 60_001), None);
        assert_eq!(
            names.claim("ADA", None, 2).map(|(grant, _)| grant),
            Err(ApiError::NameTaken("ADA".into()))
        );
        // Someone else trying the name, or releasing it without its token, does not
        // unsettle the holder's remembered check.
        assert!(names.release("Ada", "guess").unwrap().is_none());
        assert_eq!(
            names.verify_recent("ada", &grant.token, 2).as_deref(),
            Some("Ada")
        );
        // Presenting the token keeps it.
        let again = names.claim("Ada", Some(grant.token.clone()), 3).unwrap().0;
        assert_eq!(again.token, grant.token);
        assert!(names.release("Ada", &grant.token).unwrap().is_some());
        assert_eq!(names.verify_recent("ada", &grant.token, 4), None);
        assert!(names.claim("ADA", None, 4).is_ok());
    }

    #[test]
    fn invalid_names_are_refused_with_the_reason() {
        let names = Names::new(Arc::new(MemoryStore::new(10)), Duration::from_secs(3600));
        assert_eq!(
            names.claim("a\u{200B}b", None, 0).map(|(grant, _)| grant),
            Err(ApiError::Name(crate::protocol::NameError::Invisible))
        );
        // Nothing is worked out for a name or token that could not be held.
        let huge = "\u{FDFA}".repeat(200_000);
        assert_eq!(names.release(&huge, "token").unwrap(), None);
        assert_eq!(names.release("Ada", &"t".repeat(129)).unwrap(), None);
        assert_eq!(names.verify(&huge, "token", 0).unwrap(), None);
    }

    #[test]
    fn a_name_taken_over_after_going_unused_names_the_holder_it_was_taken_from() {
        let names = Names::new(Arc::new(MemoryStore::new(10)), Duration::from_millis(1_000));
        let (first, displaced) = names.claim("Ada", None, 0).unwrap();
        assert_eq!(displaced, None);
        let (_, displaced) = names.claim("ada", None, 5_000).unwrap();
        assert_eq!(
            displaced,
            Some(LetGo {
                key: name_key("Ada"),
                holder: Holder::of_token(&first.token),
            })
        );
    }

    #[test]
    fn while_the_store_is_away_only_a_recent_check_lets_a_tab_back_in() {
        let store = Arc::new(crate::server::store::faulty::Faulty::new(10));
        let names = Names::new(store.clone(), Duration::from_secs(3600));
        let (grant, _) = names.claim("Ada", None, 0).unwrap();
        assert!(names.verify("Ada", &grant.token, 1).unwrap().is_some());
        store.failing.store(true, Ordering::Relaxed);
        // A minute later the check is still good enough to read through an outage.
        assert_eq!(
            names
                .verify("Ada", &grant.token, 60_000)
                .unwrap()
                .as_deref(),
            Some("Ada")
        );
        // Long after it, the name may have changed hands meanwhile: refused until
        // the store can say.
        assert!(
            names
                .verify("Ada", &grant.token, TRUSTED_WHILE_AWAY_MS + 1)
                .is_err()
        );
        assert!(names.verify("Ada", "someone else's", 2).is_err());
    }
}
