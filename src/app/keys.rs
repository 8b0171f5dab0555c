//! Keyboard shortcuts for the whole page: Alt+↑ and Alt+↓ open the channel above
//! or below the open one; Esc closes what is open (the channel drawer, a name
//! prompt that can be cancelled, the error banner), one thing at a time.

use super::Drawer;
use super::chat::Identity;
use super::connection::Chat;
use crate::protocol::Channel;
use leptos::prelude::*;

/// The channel `forward` (down the list) or back from `current`, wrapping around;
/// the first or last when none is open.
pub fn step_channel(channels: &[Channel], current: Option<&str>, forward: bool) -> Option<String> {
    let count = channels.len();
    if count == 0 {
        return None;
    }
    let at = current.and_then(|name| channels.iter().position(|c| c.name == name));
    let next = match (at, forward) {
        (Some(i), true) => (i + 1) % count,
        (Some(i), false) => (i + count - 1) % count,
        (None, true) => 0,
        (None, false) => count - 1,
    };
    Some(channels[next].name.clone())
}

/// Listens for the shortcuts on the window, for as long as the page lives.
pub fn install(chat: Chat, drawer: Drawer) {
    #[cfg(feature = "hydrate")]
    {
        let handle = window_event_listener(leptos::ev::keydown, move |event| {
            if handle_key(chat, drawer, &event.key(), event.alt_key()) {
                event.prevent_default();
            }
        });
        on_cleanup(move || handle.remove());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (chat, drawer);
}

/// Does what `key` asks; whether it was a shortcut.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn handle_key(chat: Chat, drawer: Drawer, key: &str, alt: bool) -> bool {
    match key {
        "ArrowUp" | "ArrowDown" if alt => {
            let current = chat
                .room
                .with_untracked(|r| r.as_ref().map(|r| r.channel.clone()));
            let next = chat
                .channels
                .with_untracked(|all| step_channel(all, current.as_deref(), key == "ArrowDown"));
            if let Some(next) = next {
                chat.open_channel(&next);
                drawer.close();
            }
            true
        }
        "Escape" => {
            if drawer.is_open() {
                drawer.close();
            } else if chat.identity.get_untracked() == Identity::Anonymous
                && chat.credentials().is_some()
            {
                chat.keep_name();
            } else if chat.error.with_untracked(Option::is_some) {
                chat.show_error(None);
            } else {
                return false;
            }
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels(names: &[&str]) -> Vec<Channel> {
        names
            .iter()
            .map(|name| Channel {
                name: (*name).into(),
                created_at: 0,
            })
            .collect()
    }

    #[test]
    fn alt_arrows_walk_the_list_and_wrap_around() {
        let all = channels(&["General", "Rust", "Random"]);
        assert_eq!(
            step_channel(&all, Some("General"), true).as_deref(),
            Some("Rust")
        );
        assert_eq!(
            step_channel(&all, Some("Random"), true).as_deref(),
            Some("General")
        );
        assert_eq!(
            step_channel(&all, Some("General"), false).as_deref(),
            Some("Random")
        );
        assert_eq!(step_channel(&all, None, true).as_deref(), Some("General"));
        assert_eq!(step_channel(&all, None, false).as_deref(), Some("Random"));
        assert_eq!(
            step_channel(&all, Some("Gone"), true).as_deref(),
            Some("General")
        );
        assert_eq!(step_channel(&[], Some("General"), true), None);
    }
}
