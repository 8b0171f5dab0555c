//! A room as a tab shows it, and how what the server says changes it: the one copy
//! of these rules, which the page applies and the server's tests check their
//! frames against.

use super::{ChatMessage, Seq};

/// The open room: what it holds and who is in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Room {
    pub channel: String,
    pub messages: Vec<ChatMessage>,
    /// Who is online, in name order: everyone, or the first names of a big room.
    pub online: Vec<String>,
    /// How many people are online, shown or not.
    pub online_count: usize,
}

impl Room {
    /// Applies a presence update: changes to the list, or (with `replace`) the
    /// whole list.
    pub fn apply_presence(
        &mut self,
        joined: Vec<String>,
        left: &[String],
        count: usize,
        replace: bool,
    ) {
        if replace {
            self.online = joined;
        } else {
            self.online.retain(|name| !left.contains(name));
            for name in joined {
                if !self.online.contains(&name) {
                    self.online.push(name);
                }
            }
        }
        self.online.sort();
        self.online_count = count;
    }

    pub fn last_seq(&self) -> Option<Seq> {
        self.messages.last().map(|m| m.seq)
    }

    /// Adds a message unless it is already shown; messages arrive in order.
    pub fn push(&mut self, message: ChatMessage) {
        if self.last_seq().is_none_or(|last| message.seq > last) {
            self.messages.push(message);
        }
    }

    /// Whether `message` comes after one this room has not shown: numbers have no
    /// holes, so one was missed (in a cluster, a node can skip messages it read too
    /// late to find).
    pub fn misses_one_before(&self, message: &ChatMessage) -> bool {
        self.last_seq()
            .is_some_and(|last| message.seq > last.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sample_message as message;

    #[test]
    fn rooms_never_show_a_message_twice() {
        let mut room = Room::default();
        room.push(message(1));
        room.push(message(2));
        room.push(message(2));
        room.push(message(1));
        assert_eq!(
            room.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            [1, 2]
        );
    }
}
