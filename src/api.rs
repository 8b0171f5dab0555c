//! Server functions: request/response work the page does over HTTP. Each acts
//! through the hub or the name registry, which block on the store, so they run on
//! the blocking pool.

use crate::protocol::{ApiError, Channel, NameGrant};
use leptos::prelude::*;

/// Every channel, oldest first.
#[server(endpoint = "channels")]
pub async fn list_channels() -> Result<Vec<Channel>, ApiError> {
    let hub = expect_context::<std::sync::Arc<crate::server::hub::Hub>>();
    Ok(hub.channels())
}

/// Creates a channel as the person holding `as_name`; everyone connected sees it
/// appear.
#[server(endpoint = "create_channel")]
pub async fn create_channel(
    name: String,
    as_name: String,
    token: String,
) -> Result<Channel, ApiError> {
    use crate::server::hub::{Hub, HubError};
    use crate::server::names::Names;
    let hub = expect_context::<std::sync::Arc<Hub>>();
    let names = expect_context::<std::sync::Arc<Names>>();
    counted(limit_claims().await)?;
    counted(
        blocking(move || {
            let now = crate::server::now_ms();
            if names.verify(&as_name, &token, now).ok().flatten().is_none() {
                return Err(ApiError::NotIdentified);
            }
            hub.create_channel(&name, now).map_err(|e| match e {
                HubError::ChannelName(e) => ApiError::ChannelName(e),
                HubError::ChannelExists(name) => ApiError::ChannelExists(name),
                _ => ApiError::Unavailable,
            })
        })
        .await,
    )
}

/// Claims a display name for this browser, returning it as it will be shown and the
/// token that proves it. A browser that holds a token presents it to keep it.
#[server(endpoint = "claim_name")]
pub async fn claim_name(name: String, token: Option<String>) -> Result<NameGrant, ApiError> {
    let names = expect_context::<std::sync::Arc<crate::server::names::Names>>();
    counted(limit_claims().await)?;
    counted(blocking(move || names.claim(&name, token, crate::server::now_ms())).await)
}

/// Gives up a display name so someone else may take it.
#[server(endpoint = "release_name")]
pub async fn release_name(name: String, token: String) -> Result<(), ApiError> {
    let names = expect_context::<std::sync::Arc<crate::server::names::Names>>();
    let hub = expect_context::<std::sync::Arc<crate::server::hub::Hub>>();
    blocking(move || match names.release(&name, &token) {
        Ok(Some((key, holder))) => {
            hub.let_go_of(&key, holder);
            Ok(())
        }
        Ok(None) => Err(ApiError::NotIdentified),
        Err(_) => Err(ApiError::Unavailable),
    })
    .await
}

/// Name claims and channel creations are limited per source address, so one
/// client cannot reserve every name or flood the channel list.
#[cfg(feature = "ssr")]
async fn limit_claims() -> Result<(), ApiError> {
    use axum::extract::ConnectInfo;
    let guards = expect_context::<std::sync::Arc<crate::server::limits::Guards>>();
    let (ConnectInfo(peer), headers) =
        leptos_axum::extract::<(ConnectInfo<std::net::SocketAddr>, axum::http::HeaderMap)>()
            .await
            .map_err(|_| ApiError::Unavailable)?;
    let address = guards.client_address(peer.ip(), &headers);
    if guards.claims.try_take(&address, std::time::Instant::now()) {
        Ok(())
    } else {
        Err(ApiError::TooFast)
    }
}

/// Counts a refusal in the metrics, by reason.
#[cfg(feature = "ssr")]
fn counted<T>(result: Result<T, ApiError>) -> Result<T, ApiError> {
    if let Err(error) = &result {
        expect_context::<std::sync::Arc<crate::server::metrics::Metrics>>().reject_api(error);
    }
    result
}

/// Runs store work on the blocking pool.
#[cfg(feature = "ssr")]
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or(Err(ApiError::Unavailable))
}
