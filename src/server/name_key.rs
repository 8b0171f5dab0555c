//! The identity of a name as readers see it: two display names with the same key are
//! the same person, and two channel names with the same key would pass for one
//! channel.
//!
//! Names are shown as typed, so the key must catch what a reader cannot tell apart:
//! other capitals ("ada"), other encodings of the same letters (a precomposed "é"
//! against "e" and a combining accent), compatibility forms (fullwidth "Ａｄａ",
//! a no-break space), runs of spaces, and letters of other scripts drawn the same
//! (Cyrillic "А" for Latin "A"). The last is Unicode's confusable skeleton (UTS #39).
//!
//! Only the server computes keys: the tables would not fit the browser's size budget,
//! and the browser never needs them.

use std::collections::HashMap;
use unicode_normalization::UnicodeNormalization;
use unicode_security::confusable_detection::skeleton;

/// The generation of [`name_key`]: stores written under an older one re-key their
/// names once (version 1 keyed by lower case only).
/// (version 1 keyed by lower case only; version 2 left blanks that look like spaces,
/// such as the empty braille cell, standing after the skeleton).
pub const NAME_KEY_VERSION: u32 = 3;

/// The key under which `name` (already validated) is held.
pub fn name_key(name: &str) -> String {
    let folded: String = name.nfkc().flat_map(char::to_lowercase).collect();
    // The skeleton maps to prototypes of either case ("0" becomes "O"), so it is
    // folded once more; and it maps blanks that look like spaces (U+2800) to spaces,
    // so spaces are collapsed (and trimmed) after it.
    let skeletal: String = skeleton(&folded).flat_map(char::to_lowercase).collect();
    skeletal.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A held name as a store keeps it, with whatever else the store keeps beside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held<T> {
    pub name: String,
    pub last_seen: i64,
    pub record: T,
}

/// Held names under today's keys.
#[derive(Debug, PartialEq, Eq)]
pub struct Rekeyed<T> {
    pub kept: Vec<(String, Held<T>)>,
    /// Names that look like another one held: (the name freed, the name that keeps
    /// the key). Their holders are asked for a name on their next visit.
    pub freed: Vec<(String, String)>,
}

/// Files held names under [`name_key`]. Names once told apart that now share a key
/// look alike, so only one can stay: the one used most recently.
pub fn rekey<T>(held: Vec<Held<T>>) -> Rekeyed<T> {
    let mut by_key: HashMap<String, Held<T>> = HashMap::with_capacity(held.len());
    let mut freed = Vec::new();
    for entry in held {
        let key = name_key(&entry.name);
        match by_key.remove(&key) {
            Some(other) if other.last_seen >= entry.last_seen => {
                freed.push((entry.name, other.name.clone()));
                by_key.insert(key, other);
            }
            Some(other) => {
                freed.push((other.name, entry.name.clone()));
                by_key.insert(key, entry);
            }
            None => {
                by_key.insert(key, entry);
            }
        }
    }
    let mut kept: Vec<_> = by_key.into_iter().collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    Rekeyed { kept, freed }
}

/// The channels there are, by how their names look, so that a new channel cannot pass
/// for one that exists ("G\u{435}neral" in Cyrillic for "General"). Channels keep
/// their stored keys ([`crate::protocol::channel_key`]); this only refuses creations.
#[derive(Debug, Default)]
pub struct LookAlikes {
    /// Name key to the channel's name, as first created.
    by_look: HashMap<String, String>,
}

impl LookAlikes {
    /// Indexes channels oldest first: of two that already look alike (created
    /// before this check), the older answers for both.
    pub fn of<'a>(names_oldest_first: impl IntoIterator<Item = &'a str>) -> Self {
        let mut looks = Self::default();
        for name in names_oldest_first {
            looks.add(name);
        }
        looks
    }

    /// The existing channel `name` would pass for, if any.
    pub fn twin_of(&self, name: &str) -> Option<&str> {
        self.twin_of_look(&name_key(name))
    }

    /// The existing channel whose name has the look `look` ([`name_key`]), if any.
    pub fn twin_of_look(&self, look: &str) -> Option<&str> {
        self.by_look.get(look).map(String::as_str)
    }

    /// Notes a channel just created.
    pub fn add(&mut self, name: &str) {
        self.add_look(name_key(name), name);
    }

    /// Notes a channel just created, whose look was worked out before.
    pub fn add_look(&mut self, look: String, name: &str) {
        self.by_look.entry(look).or_insert_with(|| name.to_owned());
    }
}

/// Tells the operator which held names a re-keying freed, once it is stored.
pub fn report_freed(freed: &[(String, String)]) {
    for (freed, kept) in freed {
        tracing::warn!(%freed, %kept, "two held names look alike; the less recently used was freed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) {
        assert_eq!(
            name_key(a),
            name_key(b),
            "{a:?} and {b:?} should be one person"
        );
    }

    #[test]
    fn capitals_do_not_make_another_person() {
        same("Ada", "aDA");
        same("ÉMILE", "émile");
    }

    #[test]
    fn encodings_of_the_same_letters_are_one_name() {
        same("Jos\u{e9}", "Jose\u{301}");
        same("Ａｄａ", "Ada");
        same("Ada\u{a0}Lovelace", "Ada Lovelace");
        same("Ada   Lovelace", "Ada Lovelace");
    }

    #[test]
    fn blanks_that_look_like_spaces_are_spaces() {
        // The empty braille cell draws nothing, and is no ignorable character.
        same("Ada\u{2800}", "Ada");
        same("Ada\u{2800}Lovelace", "Ada Lovelace");
        same("\u{2800}Ada", "ada");
        assert_eq!(name_key("\u{2800}\u{2800}"), "");
    }

    #[test]
    fn letters_drawn_alike_are_one_name() {
        // Cyrillic А and а, Greek ο.
        same("\u{410}d\u{430}", "Ada");
        same("B\u{3bf}b", "Bob");
        same("b0b", "bob");
        same("Paypal", "PayPa1");
    }

    #[test]
    fn different_names_stay_different() {
        for (a, b) in [
            ("Ada", "Adam"),
            ("José", "Jose"),
            ("Zoë", "Zoe"),
            ("Ada Lovelace", "AdaLovelace"),
            ("Ли", "Ян"),
            ("🔥", "🌊"),
        ] {
            assert_ne!(name_key(a), name_key(b), "{a:?} and {b:?} are two people");
        }
    }

    #[test]
    fn a_channel_is_found_by_any_name_that_looks_like_it() {
        let mut looks = LookAlikes::of(["General", "Rust", "r\u{3bf}st"]);
        looks.add("Off topic");
        assert_eq!(looks.twin_of("G\u{435}neral"), Some("General"));
        assert_eq!(looks.twin_of("ＧＥＮＥＲＡＬ"), Some("General"));
        assert_eq!(looks.twin_of("Off  t\u{43e}pic"), Some("Off topic"));
        // Two that looked alike before the check: the older answers.
        assert_eq!(looks.twin_of("RUST"), Some("Rust"));
        assert_eq!(looks.twin_of("Général"), None);
        assert_eq!(looks.twin_of("Rusty"), None);
    }

    #[test]
    fn rekeying_keeps_the_most_recently_used_of_look_alikes() {
        let held = |name: &str, last_seen| Held {
            name: name.into(),
            last_seen,
            record: format!("token of {name}"),
        };
        let rekeyed = rekey(vec![
            held("Ada", 10),
            held("\u{410}da", 30),
            held("Bob", 5),
            held("B\u{3bf}b", 1),
        ]);
        let kept: Vec<(&str, &str)> = rekeyed
            .kept
            .iter()
            .map(|(key, held)| (key.as_str(), held.record.as_str()))
            .collect();
        assert_eq!(
            kept,
            [("ada", "token of \u{410}da"), ("bob", "token of Bob")]
        );
        assert_eq!(
            rekeyed.freed,
            [
                ("Ada".to_owned(), "\u{410}da".to_owned()),
                ("B\u{3bf}b".to_owned(), "Bob".to_owned())
            ]
        );
    }
}
