//! What the browser remembers between visits (localStorage). Read only after
//! hydration: the server has no localStorage, and reading it while rendering would
//! make the first client render differ from the server's.

use super::connection::Pending;

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

pub fn save_outbox(outbox: &[Pending]) {
    backend::set(OUTBOX_KEY, &outbox);
}
