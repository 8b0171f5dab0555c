//! Server functions: request/response work the page does over HTTP. Each acts
//! through the hub or the name registry, which block on the store, so they run on
//! the blocking pool. Every call has passed the gate (`server::gate`): this site
//! only, a small body in time, a per-address budget of calls; each function adds the
//! limits of what it does, and checks what it is given before any work.

use crate::protocol::{ApiError, Channel, HistoryPage, NameGrant, Seq};
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
    use crate::server::hub::Hub;
    use crate::server::names::Names;
    counted(
        async move {
            let address = client_address().await?;
            let names = expect_context::<std::sync::Arc<Names>>();
            // Names and tokens of lengths no one holds are refused without a look
            // at the store (`Names::verify`).
            let person = blocking(move || {
                let now = crate::server::now_ms();
                // A store that cannot answer is not a wrong token: the person is
                // told to wait, not to choose their name again.
                names
                    .verify(&as_name, &token, now)?
                    .ok_or(ApiError::NotIdentified)
            })
            .await?;
            // A name that could never be created costs no creation.
            let name = crate::protocol::validate_channel_name(&name)?;
            limit_channel_creations(&person, address)?;
            let hub = expect_context::<std::sync::Arc<Hub>>();
            let created =
                blocking(move || hub.create_channel(&name, crate::server::now_ms())).await;
            // Only a channel made counts towards the person's hour.
            if created.is_err() {
                give_back_channel_creation(&person, address);
            }
            created
        }
        .await,
    )
}

/// Claims a display name for this browser, returning it as it will be shown and the
/// token that proves it. A browser that holds a token presents it to keep it.
#[server(endpoint = "claim_name")]
pub async fn claim_name(name: String, token: Option<String>) -> Result<NameGrant, ApiError> {
    let names = expect_context::<std::sync::Arc<crate::server::names::Names>>();
    let hub = expect_context::<std::sync::Arc<crate::server::hub::Hub>>();
    counted(
        async move {
            crate::protocol::validate_name(&name)?;
            limit_claims().await?;
            blocking(move || {
                let (grant, displaced) = names.claim(&name, token, crate::server::now_ms())?;
                // Taken over after going unused: the holder's open tabs let go of it.
                if let Some(displaced) = displaced {
                    hub.let_go_of(&displaced.key, displaced.holder);
                }
                Ok(grant)
            })
            .await
        }
        .await,
    )
}

/// Gives up a display name so someone else may take it.
#[server(endpoint = "release_name")]
pub async fn release_name(name: String, token: String) -> Result<(), ApiError> {
    let names = expect_context::<std::sync::Arc<crate::server::names::Names>>();
    let hub = expect_context::<std::sync::Arc<crate::server::hub::Hub>>();
    counted(
        async move {
            crate::protocol::validate_name(&name)?;
            limit_claims().await?;
            blocking(move || match names.release(&name, &token) {
                Ok(Some(released)) => {
                    hub.let_go_of(&released.key, released.holder);
                    Ok(())
                }
                Ok(None) => Err(ApiError::NotIdentified),
                Err(_) => Err(ApiError::Unavailable),
            })
            .await
        }
        .await,
    )
}

/// A page of a channel's messages, oldest first, in the shape the socket delivers
/// them: the newest `limit` (50 unless asked, at most 100), or those just older than
/// `before` (scrolling back), or just newer than `after`. `more` says whether the
/// store keeps more beyond the page that way.
#[server(endpoint = "history")]
pub async fn history(
    channel: String,
    before: Option<Seq>,
    after: Option<Seq>,
    limit: Option<usize>,
) -> Result<HistoryPage, ApiError> {
    use crate::protocol::{HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX, HistoryRange};
    counted(
        async move {
            let range = match (before, after) {
                (None, None) => HistoryRange::Latest,
                (Some(seq), None) => HistoryRange::Before(seq),
                (None, Some(seq)) => HistoryRange::After(seq),
                (Some(_), Some(_)) => {
                    return Err(ApiError::BadRequest(
                        "ask for messages before a number or after one, not both".into(),
                    ));
                }
            };
            let limit = limit.unwrap_or(HISTORY_PAGE_DEFAULT);
            if !(1..=HISTORY_PAGE_MAX).contains(&limit) {
                return Err(ApiError::BadRequest(format!(
                    "a page holds 1 to {HISTORY_PAGE_MAX} messages"
                )));
            }
            let name = crate::protocol::validate_channel_name(&channel)?;
            let key = crate::protocol::channel_key(&name);
            let hub = expect_context::<std::sync::Arc<crate::server::hub::Hub>>();
            blocking(move || match hub.history(&key, range, limit) {
                Err(crate::server::store::StoreError::NoSuchChannel(_)) => {
                    Err(ApiError::NoSuchChannel(name))
                }
                page => Ok(page?),
            })
            .await
        }
        .await,
    )
}

/// The address per-address limits count this request under.
#[cfg(feature = "ssr")]
async fn client_address() -> Result<std::net::IpAddr, ApiError> {
    use axum::extract::ConnectInfo;
    let guards = expect_context::<std::sync::Arc<crate::server::limits::Guards>>();
    let (ConnectInfo(peer), headers) =
        leptos_axum::extract::<(ConnectInfo<std::net::SocketAddr>, axum::http::HeaderMap)>()
            .await
            .map_err(|_| ApiError::Unavailable)?;
    Ok(guards.client_address(peer.ip(), &headers))
}

/// Name claims and releases are limited per source address, so one client cannot
/// reserve every name.
#[cfg(feature = "ssr")]
async fn limit_claims() -> Result<(), ApiError> {
    let guards = expect_context::<std::sync::Arc<crate::server::limits::Guards>>();
    let address = client_address().await?;
    if guards.claims.try_take(&address, std::time::Instant::now()) {
        Ok(())
    } else {
        Err(ApiError::TooFast)
    }
}

/// Channel creations are limited per person and per address: each channel is
/// listed to everyone and kept for good.
#[cfg(feature = "ssr")]
fn limit_channel_creations(person: &str, address: std::net::IpAddr) -> Result<(), ApiError> {
    let guards = expect_context::<std::sync::Arc<crate::server::limits::Guards>>();
    let now = std::time::Instant::now();
    if !guards.channels_by_address.try_take(&address, now) {
        return Err(ApiError::ChannelsTooFast(guards.channels_per_hour()));
    }
    if !guards.channels_by_person.try_take(&person.to_owned(), now) {
        guards.channels_by_address.give_back(&address);
        return Err(ApiError::ChannelsTooFast(guards.channels_per_hour()));
    }
    Ok(())
}

/// Returns the tokens of a creation that did not happen (the name exists, the cap
/// is reached, the store is away).
#[cfg(feature = "ssr")]
fn give_back_channel_creation(person: &str, address: std::net::IpAddr) {
    let guards = expect_context::<std::sync::Arc<crate::server::limits::Guards>>();
    guards.channels_by_address.give_back(&address);
    guards.channels_by_person.give_back(&person.to_owned());
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
