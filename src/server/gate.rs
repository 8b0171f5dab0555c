//! What every request passes before it is served: the host it names (DNS
//! rebinding), the site it comes from (for server functions), its address's share of
//! the server, and a body that is small and arrives in time (the headers' deadline
//! is hyper's, and the answer's is the accept loop's). Routes added later are behind
//! the same gate.

use super::api_status::{API_PREFIX, RetryAfter, describe};
use super::config::{Config, PublicUrl};
use super::limits::Guards;
use super::metrics::Metrics;
use crate::protocol::ApiError;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request body taken: server functions carry a name, a token, a channel
/// name. An endpoint that needs more (uploads) gets a route of its own.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the gate needs, shared by every request (one `Arc` to clone each).
pub struct Gate {
    pub config: Arc<Config>,
    pub guards: Arc<Guards>,
    pub metrics: Arc<Metrics>,
    pub retry: RetryAfter,
}

/// The gate itself, as axum middleware in front of every route.
pub async fn guard(State(app): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with(API_PREFIX);
    match admit(&app, request, next, api).await {
        Ok(response) => response,
        Err(error) => {
            app.metrics.reject_api(&error);
            refusal(&error, api, &app.retry)
        }
    }
}

async fn admit(app: &Gate, request: Request, next: Next, api: bool) -> Result<Response, ApiError> {
    let config = &app.config;
    let headers = request.headers();
    if let Some(host) = foreign_host(headers, config.public_url.as_ref()) {
        return Err(ApiError::WrongHost(host));
    }
    if api && !api_call_from_this_site(headers, config) {
        return Err(ApiError::CrossSite);
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let guards = &app.guards;
    let address = peer.map(|peer| (peer, guards.client_address(peer, headers)));
    // A trusted proxy's connections count in the total only (the accept loop), so
    // each forwarded address's share is counted here, per request.
    let _in_flight = match address {
        Some((peer, address)) if guards.is_trusted_proxy(peer) => Some(
            guards
                .proxied_requests
                .acquire(address)
                .map_err(|_| ApiError::Crowded)?,
        ),
        _ => None,
    };
    if api
        && let Some((_, address)) = address
        && !guards.api_calls.try_take(&address, Instant::now())
    {
        return Err(ApiError::TooFast);
    }
    // Once the request is in, the handler runs to its end: cutting it off could
    // answer "unavailable" for a claim or a channel already stored. A client that
    // then leaves the answer unread is dropped by the accept loop.
    let request = buffered(request, config.header_timeout()).await?;
    Ok(next.run(request).await)
}

/// The request with its body read whole: at most [`MAX_BODY_BYTES`], all of it
/// within `deadline` (a body sent a byte at a time is cut off). A body announced
/// as too large is refused before a byte of it is read.
async fn buffered(request: Request, deadline: Duration) -> Result<Request, ApiError> {
    use http_body::Body as _;
    let too_large = || ApiError::TooLarge;
    if request.body().is_end_stream() {
        return Ok(request);
    }
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let (parts, body) = request.into_parts();
    let read = Limited::new(body, MAX_BODY_BYTES).collect();
    let collected = match tokio::time::timeout(deadline, read).await {
        Err(_) => return Err(ApiError::TooSlow),
        Ok(Err(error)) if error.is::<LengthLimitError>() => return Err(too_large()),
        Ok(Err(error)) => {
            tracing::debug!(%error, "a request body could not be read");
            return Err(ApiError::BadRequest("its body could not be read".into()));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    Ok(Request::from_parts(parts, Body::from(collected)))
}

/// The host a request names, if it is one this server must not answer for. A page
/// that rebinds its own DNS name to this server's address sends its own name, so
/// only names the operator gave are answered, and addresses: an IP literal or
/// `localhost` cannot be a rebinding page's name. A request without `Host` cannot
/// come from a browser.
fn foreign_host(headers: &HeaderMap, public: Option<&PublicUrl>) -> Option<String> {
    let raw = headers.get(header::HOST)?;
    let Some(authority) = raw
        .to_str()
        .ok()
        .and_then(|host| host.parse::<axum::http::uri::Authority>().ok())
    else {
        return Some(String::from_utf8_lossy(raw.as_bytes()).into_owned());
    };
    let host = authority.host();
    let answered =
        is_address(host) || public.is_some_and(|public| public.host.eq_ignore_ascii_case(host));
    (!answered).then(|| host.to_ascii_lowercase())
}

/// Whether a host name (no port) is an IP literal or `localhost`.
fn is_address(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok() || host.eq_ignore_ascii_case("localhost")
}

/// Whether a page at `origin` belongs to this site: the configured public address,
/// an origin the operator allowed, or the address the request names (an IP
/// literal or `localhost`; any name but the public one is refused at the gate, and
/// the public one must match with its scheme).
pub fn origin_allowed(origin: &str, headers: &HeaderMap, config: &Config) -> bool {
    if config
        .allowed_origins
        .iter()
        .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    if let Some(public) = &config.public_url
        && public.origin.eq_ignore_ascii_case(origin)
    {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let named = host
        .parse::<axum::http::uri::Authority>()
        .is_ok_and(|authority| !is_address(authority.host()));
    if named && config.public_url.is_some() {
        return false;
    }
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// Browsers always send `Origin` on WebSocket upgrades, so a page on another site is
/// refused unless listed. A request without `Origin` cannot come from a page (only
/// from programs, which could forge any header anyway), so it is allowed.
pub fn socket_from_this_site(headers: &HeaderMap, config: &Config) -> bool {
    origin(headers).is_none_or(|origin| origin_allowed(origin, headers, config))
}

/// A server function is called by this site's page, or by a program. Browsers send
/// `Origin` with every POST (a form posted from another site included), and
/// `Sec-Fetch-Site` with every request; either one naming another site refuses it.
fn api_call_from_this_site(headers: &HeaderMap, config: &Config) -> bool {
    if let Some(origin) = origin(headers) {
        return origin_allowed(origin, headers, config);
    }
    headers
        .get("sec-fetch-site")
        .is_none_or(|site| matches!(site.as_bytes(), b"same-origin" | b"none"))
}

fn origin(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("null"))
}

/// The answer to a refused request, with the status of its code: the typed error
/// the page decodes for a server function, plain words for anything else.
fn refusal(error: &ApiError, api: bool, retry: &RetryAfter) -> Response {
    let mut response = if api {
        let json = serde_json::to_string(error).unwrap_or_default();
        ([(header::CONTENT_TYPE, "application/json")], json).into_response()
    } else {
        error.to_string().into_response()
    };
    describe(&mut response, error, retry);
    // The connection may hold the rest of a body nobody will read, and a refused
    // client gets no connection to keep.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn public(url: &str) -> PublicUrl {
        url.parse().unwrap()
    }

    #[test]
    fn addresses_and_localhost_are_answered_and_other_names_only_when_configured() {
        for host in [
            "127.0.0.1:3000",
            "10.1.2.3",
            "[::1]:3000",
            "localhost:3000",
            "LOCALHOST",
        ] {
            assert_eq!(
                foreign_host(&headers(&[("host", host)]), None),
                None,
                "{host}"
            );
        }
        let evil = headers(&[("host", "evil.example:3000")]);
        assert_eq!(foreign_host(&evil, None), Some("evil.example".into()));
        let chat = public("https://Chat.Example.org");
        assert_eq!(
            foreign_host(&evil, Some(&chat)),
            Some("evil.example".into())
        );
        let ours = headers(&[("host", "chat.example.org")]);
        assert_eq!(foreign_host(&ours, Some(&chat)), None);
        assert_eq!(foreign_host(&ours, None), Some("chat.example.org".into()));
        // A look-alike of localhost is a name like any other.
        let sub = headers(&[("host", "localhost.evil.example")]);
        assert!(foreign_host(&sub, None).is_some());
        assert_eq!(foreign_host(&HeaderMap::new(), None), None);
    }

    #[test]
    fn server_functions_refuse_other_sites_and_serve_programs() {
        let mut config = Config::default();
        let at = |pairs: &[(&'static str, &str)]| {
            let mut all = vec![("host", "127.0.0.1:3000")];
            all.extend_from_slice(pairs);
            headers(&all)
        };
        for ours in [
            at(&[("origin", "http://127.0.0.1:3000")]),
            at(&[("sec-fetch-site", "same-origin")]),
            at(&[("sec-fetch-site", "none")]),
            // A program: neither header.
            at(&[]),
        ] {
            assert!(api_call_from_this_site(&ours, &config), "{ours:?}");
        }
        for theirs in [
            at(&[("origin", "https://evil.example")]),
            at(&[("origin", "null")]),
            at(&[("origin", "http://127.0.0.1:3001")]),
            at(&[("sec-fetch-site", "cross-site")]),
            at(&[("sec-fetch-site", "same-site")]),
        ] {
            assert!(!api_call_from_this_site(&theirs, &config), "{theirs:?}");
        }
        config.allowed_origins = vec!["https://friend.example/".into()];
        assert!(api_call_from_this_site(
            &at(&[("origin", "https://friend.example")]),
            &config
        ));
        config.public_url = Some(public("https://chat.example.org"));
        let proxied = headers(&[
            ("host", "chat.example.org"),
            ("origin", "https://chat.example.org"),
        ]);
        assert!(api_call_from_this_site(&proxied, &config));
        // A plain-HTTP page of the same name is another origin.
        let downgraded = headers(&[
            ("host", "chat.example.org"),
            ("origin", "http://chat.example.org"),
        ]);
        assert!(!api_call_from_this_site(&downgraded, &config));
        // Opened by its address on the machine itself, it still serves its page.
        assert!(api_call_from_this_site(
            &at(&[("origin", "http://127.0.0.1:3000")]),
            &config
        ));
    }

    #[test]
    fn sockets_without_an_origin_are_programs() {
        let config = Config::default();
        assert!(socket_from_this_site(
            &headers(&[("host", "127.0.0.1")]),
            &config
        ));
        assert!(!socket_from_this_site(
            &headers(&[("host", "127.0.0.1"), ("origin", "https://evil.example")]),
            &config
        ));
    }
}
