//! Keeps the store within the retention setting: a pass at start, then one every
//! ten minutes, on a thread of its own (pruning blocks on the store).

use super::hub::Hub;
use super::store::Retention;
use std::sync::Weak;
use std::time::Duration;

const EVERY: Duration = Duration::from_secs(600);

/// Starts pruning to `retention`, until the hub is gone; nothing to do for `all`.
pub fn start(hub: Weak<Hub>, retention: Retention) -> std::io::Result<()> {
    if retention == Retention::All {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("hearth-retention".into())
        .spawn(move || {
            loop {
                let Some(hub) = hub.upgrade() else { return };
                match hub.prune(retention, super::now_ms()) {
                    Ok(pruned) if pruned.messages > 0 => tracing::info!(
                        messages = pruned.messages,
                        channels = pruned.through.len(),
                        %retention,
                        "pruned messages past retention"
                    ),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "pruning failed; will try again"),
                }
                drop(hub);
                std::thread::sleep(EVERY);
            }
        })
        .map(|_| ())
}
