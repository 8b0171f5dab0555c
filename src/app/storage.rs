//! What the browser remembers between visits (localStorage). Read only after
//! hydration: the server has no localStorage, and reading it while rendering would
//! make the first client render differ from the server's.

const NAME_KEY: &str = "hearth.name";
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const CHANNEL_KEY: &str = "hearth.channel";

#[cfg(feature = "hydrate")]
mod backend {
    use gloo_storage::{LocalStorage, Storage};

    pub fn get(key: &str) -> Option<String> {
        LocalStorage::get(key).ok()
    }

    pub fn set(key: &str, value: &str) {
        // A full or disabled storage only costs the person their remembered choice.
        let _ = LocalStorage::set(key, value);
    }
}

#[cfg(not(feature = "hydrate"))]
mod backend {
    pub fn get(_key: &str) -> Option<String> {
        None
    }

    pub fn set(_key: &str, _value: &str) {}
}

pub fn saved_name() -> Option<String> {
    backend::get(NAME_KEY).filter(|n| crate::protocol::validate_name(n).is_ok())
}

pub fn save_name(name: &str) {
    backend::set(NAME_KEY, name);
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn saved_channel() -> Option<String> {
    backend::get(CHANNEL_KEY)
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn save_channel(channel: &str) {
    backend::set(CHANNEL_KEY, channel);
}
