//! Membership of a cluster: a thread that reads what every node stores in Redis (new
//! channels, new messages) and hands it to this node's hub, which publishes what it
//! has not published yet to its own connections.

use super::hub::Hub;
use super::store::RedisStore;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long one read waits for something new before asking again (which is when a
/// channel created meanwhile joins the streams read).
const BLOCK: Duration = Duration::from_millis(500);
/// Waits between attempts while Redis cannot be reached.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Starts reading the cluster's changes into `hub` until the hub is gone.
pub fn follow(store: Arc<RedisStore>, hub: Weak<Hub>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("hearth-cluster".into())
        .spawn(move || run(&store, &hub))
        .map(drop)
}

fn run(store: &RedisStore, hub: &Weak<Hub>) {
    let mut connection = None;
    let mut events_cursor: Option<String> = None;
    let mut retry = RETRY_FIRST;
    loop {
        let Some(cursors) = hub.upgrade().map(|hub| hub.cursors()) else {
            return;
        };
        if connection.is_none() {
            match store.connect(BLOCK + Duration::from_secs(2)) {
                Ok(opened) => connection = Some(opened),
                Err(error) => {
                    tracing::warn!(%error, "cannot reach Redis; retrying");
                    std::thread::sleep(retry);
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
            }
        }
        let reader = connection.as_mut().expect("connected above");
        match store.read_changes(reader, events_cursor.as_deref(), &cursors, BLOCK) {
            Ok(changes) => {
                retry = RETRY_FIRST;
                if let Some(cursor) = &changes.events_cursor {
                    events_cursor = Some(cursor.clone());
                }
                let Some(hub) = hub.upgrade() else { return };
                hub.apply_changes(changes);
            }
            Err(error) => {
                tracing::warn!(%error, "reading the cluster's changes failed; reconnecting");
                connection = None;
                std::thread::sleep(retry);
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}
