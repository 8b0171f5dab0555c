//! How long the store keeps messages (`HEARTH_RETENTION`): every one (the default),
//! those younger than a number of days, or each channel's newest so many.
//!
//! Whatever is pruned, a channel's numbers never start over: the store remembers
//! each channel's last number apart from its messages.

use crate::protocol::Seq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;

const DAY_MS: i64 = 24 * 3600 * 1000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retention {
    /// Every message, for as long as the store exists.
    #[default]
    All,
    /// Messages younger than this many days.
    Days(u32),
    /// Each channel's newest this many messages.
    PerChannel(u64),
}

impl Retention {
    /// Messages sent before this time (ms since the epoch) are past keeping, when
    /// kept by age.
    pub fn cutoff(self, now_ms: i64) -> Option<i64> {
        match self {
            Retention::Days(days) => Some(now_ms - i64::from(days) * DAY_MS),
            _ => None,
        }
    }
}

/// Why a retention setting was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "retention {0:?} must be `all`, a number of days (`90 days`, `90d`) or a number of \
     messages per channel (`100000 messages`), each at least 1"
)]
pub struct NotARetention(pub String);

impl std::str::FromStr for Retention {
    type Err = NotARetention;

    fn from_str(raw: &str) -> Result<Self, NotARetention> {
        let bad = || NotARetention(raw.to_owned());
        let text = raw.trim().to_ascii_lowercase();
        if text == "all" {
            return Ok(Retention::All);
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim();
        let count: u64 = number.parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(bad());
        }
        match unit {
            "d" | "day" | "days" => u32::try_from(count).map(Retention::Days).map_err(|_| bad()),
            "m"
            | "msg"
            | "msgs"
            | "message"
            | "messages"
            | "per channel"
            | "messages per channel" => Ok(Retention::PerChannel(count)),
            // A bare number could be either; saying which is cheap.
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retention::All => f.write_str("all"),
            Retention::Days(days) => write!(f, "{days} days"),
            Retention::PerChannel(count) => write!(f, "{count} messages"),
        }
    }
}

impl Serialize for Retention {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// What one pass of pruning removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Messages deleted.
    pub messages: u64,
    /// For each channel that lost messages, by key: the newest number now gone.
    pub through: Vec<(String, Seq)>,
}

impl Pruned {
    /// The pass's count, and the newest number gone per channel, in key order.
    pub fn of(messages: u64, through: HashMap<String, Seq>) -> Self {
        let mut through: Vec<_> = through.into_iter().collect();
        through.sort();
        Self { messages, through }
    }
}

/// Notes that `seq` of the channel keyed `key` is gone.
pub fn note_gone(through: &mut HashMap<String, Seq>, key: String, seq: Seq) {
    let gone = through.entry(key).or_default();
    *gone = (*gone).max(seq);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_and_writes_back() {
        for (raw, expected) in [
            ("all", Retention::All),
            (" ALL ", Retention::All),
            ("90 days", Retention::Days(90)),
            ("90d", Retention::Days(90)),
            ("1 day", Retention::Days(1)),
            ("100000 messages", Retention::PerChannel(100_000)),
            ("500m", Retention::PerChannel(500)),
            ("500 per channel", Retention::PerChannel(500)),
        ] {
            let read: Retention = raw.parse().unwrap();
            assert_eq!(read, expected, "{raw}");
            assert_eq!(read.to_string().parse::<Retention>().unwrap(), expected);
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_it_may_take() {
        for raw in [
            "",
            "90",
            "0 days",
            "-3 days",
            "ninety days",
            "5 weeks",
            "9999999999d",
        ] {
            let error = raw.parse::<Retention>().unwrap_err();
            assert!(error.to_string().contains("a number of days"), "{raw}");
        }
    }

    #[test]
    fn only_days_have_a_cutoff() {
        assert_eq!(Retention::Days(2).cutoff(3 * DAY_MS), Some(DAY_MS));
        assert_eq!(Retention::All.cutoff(DAY_MS), None);
        assert_eq!(Retention::PerChannel(5).cutoff(DAY_MS), None);
    }
}
