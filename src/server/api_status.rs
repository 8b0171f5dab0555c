//! How a refusal is answered over HTTP. Server functions answer an error with
//! `500` whatever it was; here each answer gets the status of its code (one table:
//! [`ErrorCode::http_status`]), `Retry-After` when waiting helps, and its code's
//! word in `Hearth-Error`, the same word the socket's error frames carry. The body
//! stays the typed error the page decodes. Every server function's answer is
//! counted by status class.

use super::config::Config;
use super::metrics::Metrics;
use crate::protocol::{ApiError, ErrorCode};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Where server functions are routed.
pub const API_PREFIX: &str = "/api/";

/// The header naming a refusal's code (`name_taken`, `rate_limited`, ...).
pub const ERROR_CODE_HEADER: HeaderName = HeaderName::from_static("hearth-error");

/// Seconds to wait after "the server is busy or restarting": about as long as a
/// node takes to come back, or a cluster's Redis to answer again.
const UNAVAILABLE_RETRY_SECS: u64 = 5;

/// An error body larger than this is not one of Hearth's refusals.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// How long each kind of refusal asks a client to wait, from the configured rates:
/// a token bucket short of a token has one again within one refill interval, so
/// that interval is a wait after which the call is let through.
pub struct RetryAfter {
    /// Calls per minute per address (the gate), and name claims per minute.
    per_minute: u32,
}

impl RetryAfter {
    pub fn new(config: &Config) -> Self {
        Self {
            per_minute: config.api_per_minute.min(config.claims_per_minute).max(1),
        }
    }

    /// Seconds to wait before trying again, for refusals that waiting cures.
    pub fn seconds(&self, error: &ApiError) -> Option<u64> {
        match error {
            ApiError::TooFast => Some(60u64.div_ceil(u64::from(self.per_minute))),
            ApiError::ChannelsTooFast(per_hour) => {
                Some(3600u64.div_ceil(u64::from((*per_hour).max(1))))
            }
            ApiError::Unavailable => Some(UNAVAILABLE_RETRY_SECS),
            // Socket-only limits, and requests crowding the address's share.
            _ if error.code() == ErrorCode::RateLimited => Some(1),
            _ => None,
        }
    }
}

/// Gives `response` the status, `Retry-After` and code of `error`.
pub fn describe(response: &mut Response, error: &ApiError, retry: &RetryAfter) {
    *response.status_mut() =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        ERROR_CODE_HEADER,
        HeaderValue::from_static(error.code().as_str()),
    );
    if let Some(seconds) = retry.seconds(error) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
}

/// What the middleware needs, made once.
pub struct ApiStatus {
    pub retry: RetryAfter,
    pub metrics: Arc<Metrics>,
}

/// Middleware: a server function's error answered with the status of its code.
/// Only server functions' own errors are read (they carry server_fn's error header);
/// the gate's refusals already come described.
pub async fn apply(State(api): State<Arc<ApiStatus>>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with(API_PREFIX) {
        return next.run(request).await;
    }
    let mut response = next.run(request).await;
    if response
        .headers()
        .contains_key(leptos::server_fn::error::SERVER_FN_ERROR_HEADER)
    {
        response = described(response, &api.retry).await;
    }
    api.metrics.api_answer(response.status().as_u16());
    response
}

/// `response` with the status of the error in its body. A body that is not one of
/// Hearth's errors is left as it was.
async fn described(response: Response, retry: &RetryAfter) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, ERROR_BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "a server function's error could not be read");
            return Response::from_parts(parts, Body::empty());
        }
    };
    let error = serde_json::from_slice::<ApiError>(&bytes);
    let mut response = Response::from_parts(parts, Body::from(bytes));
    match error {
        Ok(error) => {
            describe(&mut response, &error, retry);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Err(error) => tracing::warn!(%error, "a server function answered an unknown error"),
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::NameError;

    fn retry(api_per_minute: u32, claims_per_minute: u32) -> RetryAfter {
        RetryAfter::new(&Config {
            api_per_minute,
            claims_per_minute,
            ..Config::default()
        })
    }

    #[test]
    fn waiting_is_asked_for_only_where_it_helps() {
        let retry = retry(120, 30);
        // The slower bucket: a claim refills every 2 s.
        assert_eq!(retry.seconds(&ApiError::TooFast), Some(2));
        // Ten an hour: one every six minutes.
        assert_eq!(retry.seconds(&ApiError::ChannelsTooFast(10)), Some(360));
        assert_eq!(retry.seconds(&ApiError::Unavailable), Some(5));
        assert_eq!(retry.seconds(&ApiError::Crowded), Some(1));
        assert_eq!(retry.seconds(&ApiError::NameTaken("Ada".into())), None);
        assert_eq!(retry.seconds(&ApiError::Name(NameError::Empty)), None);
    }

    #[test]
    fn a_refusal_is_described_by_its_code() {
        let mut response = Response::new(Body::empty());
        describe(&mut response, &ApiError::TooFast, &retry(120, 120));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[ERROR_CODE_HEADER], "rate_limited");
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");

        let mut response = Response::new(Body::empty());
        describe(
            &mut response,
            &ApiError::ChannelExists("General".into()),
            &retry(120, 30),
        );
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[ERROR_CODE_HEADER], "channel_exists");
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
    }
}
