//! Server functions: request/response work the page does over HTTP.

use crate::protocol::{ApiError, Channel};
use leptos::prelude::*;

/// Every channel, oldest first.
#[server(endpoint = "channels")]
pub async fn list_channels() -> Result<Vec<Channel>, ApiError> {
    let hub = expect_context::<std::sync::Arc<crate::server::hub::Hub>>();
    Ok(hub.store().channels())
}

/// Creates a channel; everyone connected sees it appear.
#[server(endpoint = "create_channel")]
pub async fn create_channel(name: String) -> Result<Channel, ApiError> {
    use crate::server::hub::HubError;
    let hub = expect_context::<std::sync::Arc<crate::server::hub::Hub>>();
    hub.create_channel(&name, crate::server::now_ms())
        .map_err(|e| match e {
            HubError::ChannelName(e) => ApiError::ChannelName(e),
            HubError::ChannelExists(name) => ApiError::ChannelExists(name),
            other => ApiError::Transport(other.to_string()),
        })
}

/// Checks a display name and returns it as it will be shown.
#[server(endpoint = "claim_name")]
pub async fn claim_name(name: String) -> Result<String, ApiError> {
    Ok(crate::protocol::validate_name(&name)?)
}
