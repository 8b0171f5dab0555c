//! Delivery: a frame queued for each recipient (the same bytes for all), and a
//! recipient too far behind cut off rather than holding the others back.

use super::registry::evict;
use super::{Conn, ConnId, State};
use crate::server::outbox::{Full, Outbox};
use crate::server::socket::close_code;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

/// Queues `frame` for each target and cuts off any connection whose queue is full
/// (its task closes the socket, and the client resumes from its last sequence
/// number when it reconnects), so a slow reader never holds back the others and
/// never silently misses a message.
pub(super) fn deliver(state: &mut State, targets: &[ConnId], frame: &Bytes) {
    let lagging = queue(&state.conns, targets, frame, &mut state.to_flush);
    cut_off(state, lagging);
}

/// Queues `frame` for everyone in a room; returns how many were in it.
pub(super) fn broadcast_room(state: &mut State, key: &str, frame: &Bytes) -> u64 {
    let Some(room) = state.rooms.get(key) else {
        return 0;
    };
    let lagging = queue(&state.conns, &room.conns, frame, &mut state.to_flush);
    let recipients = room.conns.len();
    cut_off(state, lagging);
    recipients as u64
}

pub(super) fn cut_off(state: &mut State, lagging: Vec<ConnId>) {
    if !lagging.is_empty() {
        tracing::info!(
            count = lagging.len(),
            "cutting off connections that stopped reading"
        );
        for id in &lagging {
            if let Some(conn) = state.conns.get(id) {
                conn.outbox.request_close(
                    close_code::TOO_SLOW,
                    "too far behind; reconnect to catch up",
                );
            }
        }
        evict(state, lagging);
    }
}

/// Queues `frame` for each target, returning the targets whose queue was full.
/// Outboxes that had nothing waiting are written when the lock is let go.
pub(super) fn queue(
    conns: &HashMap<ConnId, Conn>,
    targets: &[ConnId],
    frame: &Bytes,
    to_flush: &mut Vec<Arc<Outbox>>,
) -> Vec<ConnId> {
    targets
        .iter()
        .filter(|id| {
            conns
                .get(id)
                .is_some_and(|conn| enqueue(conn, frame, to_flush).is_err())
        })
        .copied()
        .collect()
}

/// Queues `frame` for one connection; an outbox that had nothing waiting is written
/// when the lock is let go.
pub(super) fn enqueue(
    conn: &Conn,
    frame: &Bytes,
    to_flush: &mut Vec<Arc<Outbox>>,
) -> Result<(), Full> {
    if conn.outbox.push(frame.clone())? {
        to_flush.push(conn.outbox.clone());
    }
    Ok(())
}
