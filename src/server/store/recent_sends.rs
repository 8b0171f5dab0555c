//! The newest send ids, in memory and in the order they were stored.
//!
//! Every send's id must be remembered for days so a retry is recognised, and the
//! table that answers "was this sent?" is ordered by author: each message wrote a
//! page of it of its own, as the authors of one commit land on different pages.
//! New ids are appended to a table in store order instead, mirrored here so a
//! lookup needs no read, and moved into the author-ordered table a chunk at a time,
//! sorted, so one author's sends in a chunk share a page.

use crate::protocol::Seq;
use std::collections::{HashMap, VecDeque};

/// Where a send was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub channel_key: String,
    pub seq: Seq,
}

#[derive(Default)]
pub struct RecentSends {
    by_author: HashMap<String, HashMap<String, Stored>>,
    /// `(row id, author, client id)`, oldest first.
    order: VecDeque<(i64, String, String)>,
}

impl RecentSends {
    pub fn get(&self, author: &str, client_id: &str) -> Option<&Stored> {
        self.by_author.get(author)?.get(client_id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Notes a send stored in row `id`; ids only grow.
    pub fn insert(&mut self, id: i64, author: &str, client_id: &str, stored: Stored) {
        self.by_author
            .entry(author.to_owned())
            .or_default()
            .insert(client_id.to_owned(), stored);
        self.order
            .push_back((id, author.to_owned(), client_id.to_owned()));
    }

    /// The row id of the `n`th oldest send (from 1), if there are that many.
    pub fn nth_oldest_id(&self, n: usize) -> Option<i64> {
        self.order.get(n.checked_sub(1)?).map(|(id, _, _)| *id)
    }

    /// Forgets the sends stored in rows up to `id`, which have moved elsewhere.
    pub fn forget_through(&mut self, id: i64) {
        while self.order.front().is_some_and(|(first, _, _)| *first <= id) {
            if let Some((_, author, client_id)) = self.order.pop_front() {
                self.forget(&author, &client_id);
            }
        }
    }

    /// Forgets the `n` newest sends, whose commit failed.
    pub fn forget_newest(&mut self, n: usize) {
        for _ in 0..n {
            if let Some((_, author, client_id)) = self.order.pop_back() {
                self.forget(&author, &client_id);
            }
        }
    }

    fn forget(&mut self, author: &str, client_id: &str) {
        if let Some(sends) = self.by_author.get_mut(author) {
            sends.remove(client_id);
            if sends.is_empty() {
                self.by_author.remove(author);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: Seq) -> Stored {
        Stored {
            channel_key: "general".into(),
            seq,
        }
    }

    #[test]
    fn sends_are_found_by_author_and_id_until_forgotten() {
        let mut recent = RecentSends::default();
        recent.insert(1, "ada", "c1", stored(1));
        recent.insert(2, "bo", "c1", stored(2));
        recent.insert(3, "ada", "c2", stored(3));
        assert_eq!(recent.get("ada", "c1"), Some(&stored(1)));
        assert_eq!(recent.get("bo", "c1"), Some(&stored(2)));
        assert_eq!(recent.get("bo", "c2"), None);
        assert_eq!(recent.nth_oldest_id(2), Some(2));
        assert_eq!(recent.nth_oldest_id(4), None);

        recent.forget_through(2);
        assert_eq!(
            (recent.get("ada", "c1"), recent.get("bo", "c1")),
            (None, None)
        );
        assert_eq!(recent.get("ada", "c2"), Some(&stored(3)));
        assert_eq!(recent.len(), 1);

        recent.insert(4, "cy", "c9", stored(4));
        recent.forget_newest(1);
        assert_eq!(recent.get("cy", "c9"), None);
        assert_eq!(recent.nth_oldest_id(1), Some(3));
    }
}
