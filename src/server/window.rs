//! One channel's kept messages in memory: the hot path serves joins and resumes from
//! here without touching the store.
//!
//! Messages are kept as the JSON every recipient was sent, so a join's answer is
//! these bytes copied, not the window encoded again while the hub waits.

use crate::protocol::{Channel, ChatMessage, Seq};
use crate::server::store::Retention;
use bytes::Bytes;
use std::collections::VecDeque;

pub struct ChannelWindow {
    pub channel: Channel,
    last_seq: Seq,
    limit: usize,
    messages: VecDeque<Kept>,
}

/// A kept message: its number, when it was sent (for retention), and its JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub seq: Seq,
    pub sent_at: i64,
    pub json: Bytes,
}

impl Kept {
    /// Encodes a message read from the store (published messages keep the bytes
    /// they were sent as).
    pub fn encode(message: &ChatMessage) -> Self {
        let json = serde_json::to_vec(message).expect("messages always serialize");
        Self {
            seq: message.seq,
            sent_at: message.sent_at,
            json: json.into(),
        }
    }
}

/// What a join is answered with.
#[derive(Debug, PartialEq, Eq)]
pub struct Replay<'a> {
    pub messages: Vec<&'a Kept>,
    /// True when `messages` is the whole window, to replace what the client shows
    /// (no `since`, or `since` is not in the window: too old, or never reached).
    pub reset: bool,
}

impl ChannelWindow {
    pub fn new(channel: Channel, last_seq: Seq, recent: Vec<ChatMessage>, limit: usize) -> Self {
        let limit = limit.max(1);
        let skip = recent.len().saturating_sub(limit);
        Self {
            channel,
            last_seq,
            limit,
            messages: recent.iter().skip(skip).map(Kept::encode).collect(),
        }
    }

    /// The number of the newest message published.
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// Adds a stored message, dropping the oldest beyond the limit. After a gap
    /// (messages that will never come, trimmed before this node read them) the
    /// window starts again, so a resume never skips the gap silently.
    pub fn push(&mut self, message: Kept) {
        if message.seq != self.last_seq + 1 {
            self.messages.clear();
        }
        self.last_seq = self.last_seq.max(message.seq);
        if self.messages.len() == self.limit {
            self.messages.pop_front();
        }
        self.messages.push_back(message);
    }

    /// Drops kept messages numbered `through` or lower: the store no longer keeps
    /// them (retention), so they are shown to nobody who opens the channel now.
    pub fn forget_through(&mut self, through: Seq) {
        while self.messages.front().is_some_and(|m| m.seq <= through) {
            self.messages.pop_front();
        }
    }

    /// Drops kept messages that `retention` no longer keeps as of `now_ms`: in a
    /// cluster another node may have pruned them from the store, which this node's
    /// own pass then does not report.
    pub fn forget_past(&mut self, retention: Retention, now_ms: i64) {
        match retention {
            Retention::All => {}
            Retention::PerChannel(keep) => {
                if let Some(through) = self.last_seq.checked_sub(keep) {
                    self.forget_through(through);
                }
            }
            Retention::Days(_) => {
                let cutoff = retention.cutoff(now_ms).unwrap_or(i64::MIN);
                while self.messages.front().is_some_and(|m| m.sent_at < cutoff) {
                    self.messages.pop_front();
                }
            }
        }
    }

    /// The messages after `since`, or the whole window when that is not possible.
    pub fn replay(&self, since: Option<Seq>) -> Replay<'_> {
        let oldest_kept = self.messages.front().map_or(self.last_seq + 1, |m| m.seq);
        match since {
            // Everything after `since` is still here, and `since` is not from the
            // future (which would mean the client saw another history).
            Some(since) if since.saturating_add(1) >= oldest_kept && since <= self.last_seq => {
                Replay {
                    messages: self.messages.iter().filter(|m| m.seq > since).collect(),
                    reset: false,
                }
            }
            _ => Replay {
                messages: self.messages.iter().collect(),
                reset: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window_with(limit: usize, count: Seq) -> ChannelWindow {
        let channel = Channel {
            name: "General".into(),
            created_at: 0,
        };
        let mut window = ChannelWindow::new(channel, 0, Vec::new(), limit);
        for seq in 1..=count {
            window.push(Kept::encode(&crate::protocol::sample_message(seq)));
        }
        window
    }

    fn seqs(replay: &Replay) -> Vec<Seq> {
        replay.messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn keeps_only_the_most_recent() {
        let window = window_with(100, 150);
        let replay = window.replay(None);
        assert!(replay.reset);
        assert_eq!(seqs(&replay), (51..=150).collect::<Vec<_>>());
        let first: ChatMessage = serde_json::from_slice(&replay.messages[0].json).unwrap();
        assert_eq!(first.text, "m51");
    }

    #[test]
    fn resumes_with_exactly_what_followed() {
        let window = window_with(10, 25);
        let replay = window.replay(Some(20));
        assert!(!replay.reset);
        assert_eq!(seqs(&replay), [21, 22, 23, 24, 25]);
        // Up to date: nothing, and no reset.
        let replay = window.replay(Some(25));
        assert!(!replay.reset && replay.messages.is_empty());
        // The oldest kept is 16, so since 15 is still exact.
        assert!(!window.replay(Some(15)).reset);
    }

    #[test]
    fn a_gap_beyond_the_window_resets() {
        let window = window_with(10, 25);
        let replay = window.replay(Some(3));
        assert!(replay.reset);
        assert_eq!(replay.messages.len(), 10);
        // A number the channel never reached also resets.
        assert!(window.replay(Some(99)).reset);
        // The largest number a client could send is from the future too.
        assert!(window.replay(Some(Seq::MAX)).reset);
    }

    #[test]
    fn an_empty_channel_resumes_from_zero() {
        let window = window_with(10, 0);
        let replay = window.replay(Some(0));
        assert!(!replay.reset && replay.messages.is_empty());
    }

    #[test]
    fn forgetting_pruned_messages_keeps_resumes_exact() {
        let mut window = window_with(10, 25);
        window.forget_through(18);
        assert_eq!(seqs(&window.replay(None)), [19, 20, 21, 22, 23, 24, 25]);
        assert!(!window.replay(Some(18)).reset);
        assert!(window.replay(Some(17)).reset);
        window.forget_through(25);
        assert!(window.replay(None).messages.is_empty());
        assert_eq!(window.last_seq(), 25);
        assert!(!window.replay(Some(25)).reset);
    }

    #[test]
    fn what_retention_no_longer_keeps_is_forgotten_whoever_pruned_it() {
        let day = 24 * 3600 * 1000;
        let mut window = window_with(10, 25);
        window.forget_past(Retention::All, 0);
        assert_eq!(window.replay(None).messages.len(), 10);
        window.forget_past(Retention::PerChannel(7), 0);
        assert_eq!(seqs(&window.replay(None)), (19..=25).collect::<Vec<_>>());
        let channel = window.channel.clone();
        let sent = |seq: Seq, days: i64| ChatMessage {
            sent_at: days * day,
            ..crate::protocol::sample_message(seq)
        };
        let recent = vec![sent(1, 1), sent(2, 2), sent(3, 9)];
        let mut window = ChannelWindow::new(channel, 3, recent, 10);
        window.forget_past(Retention::Days(5), 10 * day);
        assert_eq!(seqs(&window.replay(None)), [3]);
        assert_eq!(window.last_seq(), 3);
    }

    #[test]
    fn a_loaded_window_larger_than_the_limit_is_trimmed() {
        let full: Vec<ChatMessage> = (1..=10).map(crate::protocol::sample_message).collect();
        let channel = Channel {
            name: "General".into(),
            created_at: 0,
        };
        let window = ChannelWindow::new(channel, 10, full, 4);
        assert_eq!(seqs(&window.replay(None)), [7, 8, 9, 10]);
    }
}
