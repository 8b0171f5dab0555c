//! What the browser remembers between visits (localStorage). Read only after
//! hydration: the server has no localStorage, and reading it while rendering would
//! make the first client render differ from the server's.

use super::chat::Pending;
use std::collections::HashSet;

const NAME_KEY: &str = "hearth.name";
const TOKEN_KEY: &str = "hearth.token";
const CHANNEL_KEY: &str = "hearth.channel";
const OUTBOX_KEY: &str = "hearth.outbox";

#[cfg(feature = "hydrate")]
mod backend {
    use gloo_storage::{LocalStorage, Storage};

    pub fn get<T: serde::de::DeserializeOwned>(key: &str) -> Option<T> {
        LocalStorage::get(key).ok()
    }

    pub fn set<T: serde::Serialize>(key: &str, value: &T) {
        // A full or disabled storage only costs the person what would be remembered.
        let _ = LocalStorage::set(key, value);
    }
}

#[cfg(not(feature = "hydrate"))]
mod backend {
    pub fn get<T>(_key: &str) -> Option<T> {
        None
    }

    pub fn set<T>(_key: &str, _value: &T) {}
}

/// The name this browser chats as and the token that holds it.
pub fn saved_identity() -> Option<(String, String)> {
    let name: String = backend::get(NAME_KEY)?;
    let token: String = backend::get(TOKEN_KEY)?;
    crate::protocol::validate_name(&name).ok()?;
    Some((name, token))
}

pub fn saved_name() -> Option<String> {
    saved_identity().map(|(name, _)| name)
}

pub fn saved_token() -> Option<String> {
    backend::get(TOKEN_KEY)
}

pub fn save_identity(name: &str, token: &str) {
    backend::set(NAME_KEY, &name);
    backend::set(TOKEN_KEY, &token);
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn saved_channel() -> Option<String> {
    backend::get(CHANNEL_KEY)
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn save_channel(channel: &str) {
    backend::set(CHANNEL_KEY, &channel);
}

/// Sends not yet acknowledged, so a reload or a closed tab loses none of them.
pub fn saved_outbox() -> Vec<Pending> {
    backend::get(OUTBOX_KEY).unwrap_or_default()
}

/// Saves this tab's outbox beside other tabs' (they share the browser's storage).
pub fn save_outbox(outbox: &[Pending]) {
    thread_local! {
        static OWN_IDS: std::cell::RefCell<HashSet<String>> = Default::default();
    }
    let merged = OWN_IDS.with_borrow_mut(|own_ids| merge_outbox(saved_outbox(), outbox, own_ids));
    backend::set(OUTBOX_KEY, &merged);
}

/// What the stored outbox becomes when a tab saves `own`: entries it never had
/// (another tab's) stay, its own are replaced by their current state, and the ones
/// it had and no longer has (delivered or dismissed) go. Writing `own` alone lost
/// another tab's unsent messages. `own_ids` is every id the tab has had.
fn merge_outbox(
    stored: Vec<Pending>,
    own: &[Pending],
    own_ids: &mut HashSet<String>,
) -> Vec<Pending> {
    own_ids.extend(own.iter().map(|p| p.client_id.clone()));
    let mut merged: Vec<Pending> = stored
        .into_iter()
        .filter(|p| !own_ids.contains(&p.client_id))
        .collect();
    merged.extend(own.iter().cloned());
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(client_id: &str, text: &str) -> Pending {
        Pending {
            client_id: client_id.into(),
            channel: "General".into(),
            text: text.into(),
            failed: None,
        }
    }

    fn ids(outbox: &[Pending]) -> Vec<&str> {
        outbox.iter().map(|p| p.client_id.as_str()).collect()
    }

    #[test]
    fn a_tab_saving_its_outbox_keeps_the_other_tabs_messages() {
        let mut tab_a = HashSet::new();
        let mut tab_b = HashSet::new();
        let stored = merge_outbox(Vec::new(), &[pending("a1", "from A")], &mut tab_a);
        let stored = merge_outbox(stored, &[pending("b1", "from B")], &mut tab_b);
        assert_eq!(ids(&stored), ["a1", "b1"], "B's save keeps A's message");
        // A's message is delivered; B's failed and is shown with its reason.
        let stored = merge_outbox(stored, &[], &mut tab_a);
        assert_eq!(ids(&stored), ["b1"]);
        let failed = Pending {
            failed: Some("too long".into()),
            ..pending("b1", "from B")
        };
        let stored = merge_outbox(stored, std::slice::from_ref(&failed), &mut tab_b);
        assert_eq!(stored, [failed]);
        // B dismisses it; A, which never had it, does not bring it back.
        let stored = merge_outbox(stored, &[], &mut tab_b);
        let stored = merge_outbox(stored, &[pending("a2", "again")], &mut tab_a);
        assert_eq!(ids(&stored), ["a2"]);
    }
}
