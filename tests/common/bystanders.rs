//! Two people chatting on a server under attack: whatever else happens, their
//! messages are acknowledged and delivered promptly. Every hostile test keeps them
//! beside the attack.

use super::{Client, Dial, RECV_TIMEOUT, Server};
use hearth::protocol::ServerFrame;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A chat round trip on loopback takes milliseconds. This allows for a loaded
/// two-core machine running the other tests at the same time, yet an attack that
/// holds everyone else up still fails the check long before any timeout would.
pub const NORMAL: Duration = Duration::from_secs(1);

/// Two people chatting in General on the attacked server.
pub struct Bystanders {
    pub ann: Client,
    pub ben: Client,
}

impl Bystanders {
    pub async fn arrive(server: &Server) -> Self {
        Self::arrive_dialed(server, &Dial::default(), &Dial::default()).await
    }

    pub async fn arrive_dialed(server: &Server, ann: &Dial, ben: &Dial) -> Self {
        let mut ann = server.client_dialed("Ann", ann).await;
        let mut ben = server.client_dialed("Ben", ben).await;
        ann.join("General", None).await;
        ben.join("General", None).await;
        let mut people = Self { ann, ben };
        people.still_chat().await;
        people
    }

    /// Ann writes to Ben and Ben answers: each is acknowledged and delivered within
    /// `NORMAL`.
    pub async fn still_chat(&mut self) {
        // Unique across a restart too: a reused id would be acknowledged as a retry
        // and not delivered again.
        static EXCHANGES: AtomicUsize = AtomicUsize::new(0);
        let n = EXCHANGES.fetch_add(1, Ordering::Relaxed);
        exchange(&mut self.ann, &mut self.ben, &format!("ann-{n}")).await;
        exchange(&mut self.ben, &mut self.ann, &format!("ben-{n}")).await;
    }

    /// Waits until Ann is told that `name` arrived: a stay too short to be announced
    /// is never announced as a departure either.
    pub async fn see_arrive(&mut self, name: &str) {
        self.ann
            .recv_until(&format!("Presence joined {name}"), |frame| match frame {
                ServerFrame::Presence { joined, .. } if joined.iter().any(|n| n == name) => {
                    Some(())
                }
                _ => None,
            })
            .await;
    }

    /// Waits until Ann is told that `name` left, while Ben keeps reading (reading is
    /// what answers the server's pings). Returns how long that took.
    pub async fn see_leave(&mut self, name: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        let Self { ann, ben } = self;
        let what = format!("Presence left {name}");
        let left = ann.recv_until_within(&what, limit, |frame| match frame {
            ServerFrame::Presence { left, .. } if left.iter().any(|n| n == name) => Some(()),
            ServerFrame::Presence { left, .. } if left.iter().any(|n| n == "Ben" || n == "Ann") => {
                panic!("{left:?} taken for gone while waiting for {name} to leave")
            }
            _ => None,
        });
        tokio::select! {
            () = left => {}
            () = ben.keep_reading(limit + RECV_TIMEOUT) => unreachable!("Ann's wait ends first"),
        }
        started.elapsed()
    }
}

/// One message from `author` to `reader`, acknowledged and delivered within `NORMAL`.
pub async fn exchange(author: &mut Client, reader: &mut Client, client_id: &str) {
    let started = Instant::now();
    let seq = author
        .say_within(
            "General",
            client_id,
            &format!("{client_id}: still here"),
            NORMAL,
        )
        .await;
    let seen = reader
        .recv_until_within(
            &format!("Message {client_id:?}"),
            NORMAL,
            |frame| match frame {
                ServerFrame::Message { message } if message.client_id == client_id => {
                    Some(message.seq)
                }
                _ => None,
            },
        )
        .await;
    assert_eq!(seen, seq, "the Ack and the Message agree");
    let took = started.elapsed();
    assert!(
        took < NORMAL,
        "[{}] -> [{}] took {took:?}",
        author.name,
        reader.name
    );
    // The author's own copy, so that backlogs hold only what tests look for.
    author.recv_message(client_id).await;
}
