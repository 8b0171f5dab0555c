//! Storing sends and publishing them: the committer thread stores whatever sends are
//! waiting in one batch; the publisher task fans each stored message out in number
//! order and acknowledges it, writing to the recipients' sockets itself, while the
//! committer goes on to store the next batch. In a cluster, messages other nodes
//! stored come in the same way.

use super::encode::{encode, encode_message};
use super::fanout::{broadcast_room, deliver};
use super::rooms::add_channel;
use super::{ConnId, Hub, State};
use crate::protocol::{ApiError, ChatMessage, Seq, ServerFrame};
use crate::server::bus::Changes;
use crate::server::store::{Appended, NewMessage, StoreError};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Most sends stored in one transaction.
const MAX_BATCH: usize = 1024;

/// Batches that fail in a row before this node says it is not ready: one failure
/// may pass (a moment's lock, a blip); three mean people should go elsewhere.
const FAILED_BATCHES_NOT_READY: u32 = 3;

/// How the committer is doing, for readiness: a node that cannot store sends
/// answers them all with "try again", and a balancer should send people elsewhere.
#[derive(Default)]
pub(super) struct CommitterHealth {
    stopped: AtomicBool,
    failed_in_a_row: AtomicU32,
}

impl CommitterHealth {
    /// Notes how storing a batch went.
    fn note_batch(&self, stored: bool) {
        if stored {
            self.failed_in_a_row.store(0, Ordering::Release);
        } else {
            self.failed_in_a_row.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(super) fn check(&self) -> Result<(), StoreError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(StoreError::backend("messages are not being stored"));
        }
        let failed = self.failed_in_a_row.load(Ordering::Acquire);
        if failed >= FAILED_BATCHES_NOT_READY {
            return Err(StoreError::backend(format!(
                "the last {failed} attempts to store messages failed"
            )));
        }
        Ok(())
    }
}

/// Marks the committer stopped however its thread ends, a panic included.
struct StoppedOnExit(Arc<CommitterHealth>);

impl Drop for StoppedOnExit {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
        if std::thread::panicking() {
            tracing::error!("the committer failed; this node stores no more messages");
        }
    }
}

/// A stored message waiting to be published after the ones before it.
pub(super) struct Pending {
    message: ChatMessage,
    /// Acknowledgements to send once it is published.
    acks: Vec<(ConnId, Bytes)>,
}

/// Work for the committer thread.
pub(super) enum Job {
    Send {
        conn: ConnId,
        message: NewMessage,
        /// When the send arrived, to measure how long it takes to reach everyone.
        received: Instant,
    },
    /// Everything queued before this is stored; answer and stop.
    Stop(oneshot::Sender<()>),
}

impl Hub {
    /// Stores one batch (on the committer thread; this blocks).
    fn store_batch(&self, batch: Vec<(ConnId, NewMessage, Instant)>) -> Publish {
        let client_ids: Vec<String> = batch.iter().map(|(_, m, _)| m.client_id.clone()).collect();
        let mut conns = Vec::with_capacity(batch.len());
        let mut received = Vec::with_capacity(batch.len());
        let mut messages = Vec::with_capacity(batch.len());
        for (conn, message, at) in batch {
            conns.push(conn);
            received.push(at);
            messages.push(message);
        }
        let started = Instant::now();
        let result = self.store.append(messages);
        self.metrics
            .store_seconds
            .observe(started.elapsed().as_secs_f64());
        self.committer.note_batch(result.is_ok());
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(error) => {
                self.metrics.store_failures.inc();
                // Nothing of the batch was stored; the senders keep the messages
                // pending and send them again.
                tracing::error!(%error, count = conns.len(), "could not store a batch");
                client_ids
                    .into_iter()
                    .map(|client_id| Appended::Refused {
                        client_id,
                        error: error.clone(),
                    })
                    .collect()
            }
        };
        Publish::Batch {
            conns,
            received,
            outcomes,
        }
    }

    /// Publishes the outcome of each stored send in order: the message to its room,
    /// the answer to its sender. Runs on the publisher task, so that the committer
    /// stores the next batch (mostly waiting on the disk) while this one is written
    /// to the sockets.
    fn publish(&self, conns: Vec<ConnId>, received: Vec<Instant>, outcomes: Vec<Appended>) {
        let mut state = self.lock();
        for ((conn, received), outcome) in conns.into_iter().zip(received).zip(outcomes) {
            let reply = match outcome {
                Appended::New {
                    channel_key,
                    message,
                } => {
                    let ack = encode(&ServerFrame::Ack {
                        client_id: message.client_id.clone(),
                        channel: message.channel.clone(),
                        seq: message.seq,
                    });
                    self.metrics.messages_in.inc();
                    let sent = publish_in_order(
                        &mut state,
                        &channel_key,
                        message,
                        Some((conn, ack)),
                        false,
                    );
                    self.metrics.messages_out.inc_by(sent);
                    // A message held for earlier ones is timed when they arrive, by
                    // the cluster's reader; this times the usual, direct case.
                    if sent > 0 {
                        self.metrics
                            .fanout_seconds
                            .observe(received.elapsed().as_secs_f64());
                    }
                    continue;
                }
                Appended::Duplicate {
                    channel_key,
                    seq,
                    client_id,
                } => ServerFrame::Ack {
                    client_id,
                    channel: state
                        .windows
                        .get(&channel_key)
                        .map_or(channel_key, |w| w.channel.name.clone()),
                    seq,
                },
                Appended::Refused { client_id, error } => {
                    let error = ApiError::from(error);
                    ServerFrame::SendFailed {
                        client_id,
                        code: error.code(),
                        message: error.to_string(),
                    }
                }
            };
            deliver(&mut state, &[conn], &encode(&reply));
        }
    }

    /// Takes in what the cluster's store holds that this node has not published:
    /// channels and messages stored by other nodes (and this node's own, seen
    /// again and skipped). Messages of a channel come in the order they were stored.
    pub fn apply_changes(&self, changes: Changes) {
        let mut state = self.lock();
        for (key, channel) in changes.channels {
            add_channel(&mut state, key, channel, self.limits.history);
        }
        for (key, message) in changes.messages {
            let sent = publish_in_order(&mut state, &key, message, None, true);
            self.metrics.messages_out.inc_by(sent);
        }
    }

    /// Each channel's key, name and last published number: where reading the
    /// cluster's streams goes on from.
    pub fn cursors(&self) -> Vec<(String, String, Seq)> {
        let state = self.lock();
        state
            .order
            .iter()
            .map(|key| {
                let window = &state.windows[key];
                (key.clone(), window.channel.name.clone(), window.last_seq())
            })
            .collect()
    }
}

/// Publishes a stored message once every message before it in its channel is
/// published: in a cluster, a message this node stored can be numbered after one
/// another node stored that this node has not read yet. `ack` goes to the sender
/// when the message is published. `read_in_order` marks a message read from the
/// channel's stream, which comes in order: anything still missing before it was
/// trimmed from the stream and will never come, so waiting stops there. Returns
/// how many copies of messages were queued to connections.
pub(super) fn publish_in_order(
    state: &mut State,
    key: &str,
    message: ChatMessage,
    ack: Option<(ConnId, Bytes)>,
    read_in_order: bool,
) -> u64 {
    let Some(window) = state.windows.get(key) else {
        return 0;
    };
    let seq = message.seq;
    if seq <= window.last_seq() {
        // Published already (this node's own message, read back from the stream).
        if let Some((conn, ack)) = ack {
            deliver(state, &[conn], &ack);
        }
        return 0;
    }
    if seq == window.last_seq() + 1 && !state.pending.contains_key(key) {
        // The usual case (always, on a single node): next in line, nothing waiting.
        return publish_now(state, key, message, ack);
    }
    let waiting = state.pending.entry(key.to_owned()).or_default();
    let entry = waiting.entry(seq).or_insert_with(|| Pending {
        message,
        acks: Vec::new(),
    });
    entry.acks.extend(ack);
    let gap_closed_through = read_in_order.then_some(seq);
    let mut sent = 0;
    loop {
        let Some(waiting) = state.pending.get_mut(key) else {
            return sent;
        };
        let Some(first) = waiting.first_entry() else {
            state.pending.remove(key);
            return sent;
        };
        let last = state.windows[key].last_seq();
        let next = *first.key();
        let ready = next <= last + 1 || gap_closed_through.is_some_and(|through| next <= through);
        if !ready {
            return sent;
        }
        let Pending { message, acks } = first.remove();
        if next > last {
            sent += publish_now(state, key, message, acks);
        } else {
            for (conn, ack) in acks {
                deliver(state, &[conn], &ack);
            }
        }
    }
}

/// Adds a message to its channel's window, queues it for the room, then sends the
/// acknowledgements; returns how many copies were queued.
fn publish_now(
    state: &mut State,
    key: &str,
    message: ChatMessage,
    acks: impl IntoIterator<Item = (ConnId, Bytes)>,
) -> u64 {
    let (frame, kept) = encode_message(message);
    if let Some(window) = state.windows.get_mut(key) {
        window.push(kept);
    }
    let sent = broadcast_room(state, key, &frame);
    for (conn, ack) in acks {
        deliver(state, &[conn], &ack);
    }
    sent
}

/// A stored batch on its way from the committer thread to the publisher task.
pub(super) enum Publish {
    Batch {
        conns: Vec<ConnId>,
        received: Vec<Instant>,
        outcomes: Vec<Appended>,
    },
    /// Everything stored before this is published; answer and stop.
    Stop(oneshot::Sender<()>),
}

/// Stored batches waiting to be published; a full queue holds the committer back.
pub(super) const PUBLISH_QUEUE: usize = 64;

/// How long a busy committer waits for more sends before it commits a batch. It is
/// busy when its last batch held a few sends and took a while to commit (a synced
/// SQLite write, a Redis round trip; never the memory store), and it had not run out
/// of sends since: commits, not sends, then limit the rate, and each costs much the
/// same (whole pages written, one sync) whatever it holds.
const LINGER: Duration = Duration::from_micros(500);
const BUSY_BATCH: usize = 4;
const SLOW_COMMIT: Duration = Duration::from_micros(100);

/// The committer: takes whatever sends are waiting (up to a batch), stores them in
/// one transaction, hands them to the publisher, and repeats. Under load, sends that
/// arrive while one batch commits make up the next, so one fsync serves many
/// messages.
pub(super) fn run_committer(
    hub: Weak<Hub>,
    health: Arc<CommitterHealth>,
    mut jobs: mpsc::Receiver<Job>,
    stored: mpsc::Sender<Publish>,
) {
    let _stopped_on_exit = StoppedOnExit(health);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut busy = false;
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(_) => {
                // Idle: the next send should not wait for company.
                busy = false;
                match jobs.blocking_recv() {
                    Some(job) => job,
                    None => return,
                }
            }
        };
        let mut stop = None;
        let mut next = Some(job);
        let mut lingered = false;
        while let Some(job) = next.take() {
            match job {
                Job::Send {
                    conn,
                    message,
                    received,
                } => batch.push((conn, message, received)),
                Job::Stop(done) => {
                    stop = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = jobs.try_recv().ok();
                if next.is_none() && busy && !lingered {
                    // A moment's wait fills the batch.
                    lingered = true;
                    std::thread::sleep(LINGER);
                    next = jobs.try_recv().ok();
                }
            }
        }
        if !batch.is_empty() {
            let Some(hub) = hub.upgrade() else { return };
            let gathered = batch.len();
            let committing = Instant::now();
            let outcome = hub.store_batch(std::mem::take(&mut batch));
            busy = gathered >= BUSY_BATCH && committing.elapsed() >= SLOW_COMMIT;
            drop(hub);
            if stored.blocking_send(outcome).is_err() {
                return;
            }
        }
        if let Some(done) = stop {
            let _ = stored.blocking_send(Publish::Stop(done));
            return;
        }
    }
}

/// The publisher: delivers what the committer stored, in the order it was stored.
pub(super) async fn run_publisher(hub: Weak<Hub>, mut stored: mpsc::Receiver<Publish>) {
    while let Some(item) = stored.recv().await {
        match item {
            Publish::Batch {
                conns,
                received,
                outcomes,
            } => {
                let Some(hub) = hub.upgrade() else { return };
                hub.publish(conns, received, outcomes);
            }
            Publish::Stop(done) => {
                let _ = done.send(());
                return;
            }
        }
    }
}
