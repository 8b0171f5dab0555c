//! What every response says about itself: the Content-Security-Policy (the page's
//! with the hashes of its inline scripts, anything else's allowing nothing), who
//! may frame it, `nosniff`, the referrer policy, HSTS behind `https`, and how long
//! it may be cached: files named by their content for a year, everything else
//! checked again each time, the page with a validator so that checking costs a 304.

use super::assets::Assets;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    STRICT_TRANSPORT_SECURITY, VARY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A page is a few kilobytes; one this large is not Hearth's.
const PAGE_LIMIT: usize = 4 << 20;

/// Files named by their content never change: a year, without asking again.
pub const FOREVER: &str = "public, max-age=31536000, immutable";
/// Anything that may change is asked for again, cheaply where it has a validator.
pub const CHECK_EACH_TIME: &str = "no-cache";
/// Answers about one moment (server functions, health, metrics) are not kept.
pub const NEVER_KEEP: &str = "no-store";

/// The headers' settings, made once.
pub struct SiteHeaders {
    /// `frame-ancestors` and what follows it, ending every policy.
    frame_ancestors: String,
    /// Nobody may frame the chat: old browsers hear it from `X-Frame-Options`.
    deny_frames: bool,
    hsts: bool,
    assets: Arc<Assets>,
}

impl SiteHeaders {
    pub fn new(frame_ancestors: &[String], https: bool, assets: Arc<Assets>) -> Self {
        let sources = if frame_ancestors.is_empty() {
            "'none'".to_owned()
        } else {
            frame_ancestors.join(" ")
        };
        Self {
            frame_ancestors: format!("frame-ancestors {sources}"),
            deny_frames: frame_ancestors.is_empty(),
            hsts: https,
            assets,
        }
    }

    /// The page's policy: its own files, WASM compiled from them, the inline
    /// scripts hydration needs (by hash), its own socket, nothing else.
    fn page_policy(&self, script_hashes: &[String]) -> String {
        let hashes: String = script_hashes
            .iter()
            .map(|hash| format!(" 'sha256-{hash}'"))
            .collect();
        format!(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; \
             style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             manifest-src 'self'; worker-src 'self'; object-src 'none'; \
             base-uri 'none'; form-action 'self'; {}",
            self.frame_ancestors
        )
    }

    /// Anything but a page runs nothing and loads nothing.
    fn other_policy(&self) -> String {
        format!("default-src 'none'; {}", self.frame_ancestors)
    }

    fn cache_policy(&self, path: &str, status: StatusCode) -> &'static str {
        if status.is_success() && self.assets.is_hashed(path) {
            FOREVER
        } else if path.starts_with("/api/")
            || matches!(path, "/healthz" | "/readyz" | "/metrics")
            || !status.is_success() && !status.is_redirection()
        {
            NEVER_KEEP
        } else {
            CHECK_EACH_TIME
        }
    }
}

/// The middleware: runs the request, then says what the response is.
pub async fn apply(State(site): State<Arc<SiteHeaders>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let revalidating = (request.method() == Method::GET)
        .then(|| request.headers().get(IF_NONE_MATCH).cloned())
        .flatten();
    let response = next.run(request).await;
    let is_page = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    let mut response = if is_page {
        page(&site, response, revalidating.as_ref()).await
    } else {
        response
    };
    let status = response.status();
    let headers = response.headers_mut();
    set_if_absent(headers, CONTENT_SECURITY_POLICY, &site.other_policy());
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if site.deny_frames {
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if site.hsts {
        headers.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    // A file served precompressed is one of several encodings of the address
    // (tower-http's `ServeDir` does not say so); a shared cache that kept the
    // brotli copy for a year must not hand it to a client that cannot read it.
    if status.is_success() && !headers.contains_key(VARY) {
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    }
    if !status.is_informational() && !headers.contains_key(CACHE_CONTROL) {
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static(site.cache_policy(&path, status)),
        );
    }
    response
}

/// A page: its policy allows its own inline scripts by hash, and it is validated
/// by a tag of what it shows (the per-response nonce Leptos writes aside), so a
/// visitor coming back is answered 304.
async fn page(
    site: &SiteHeaders,
    response: Response,
    revalidating: Option<&HeaderValue>,
) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(html) = axum::body::to_bytes(body, PAGE_LIMIT).await else {
        tracing::error!("a page over {PAGE_LIMIT} bytes could not be sent");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let text = String::from_utf8_lossy(&html);
    let policy = site.page_policy(&inline_script_hashes(&text));
    set_if_absent(&mut parts.headers, CONTENT_SECURITY_POLICY, &policy);
    if parts.status == StatusCode::OK {
        let tag = page_tag(&text);
        if let Ok(value) = HeaderValue::from_str(&tag) {
            parts.headers.insert(ETAG, value);
        }
        let seen = revalidating
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
        if seen {
            parts.status = StatusCode::NOT_MODIFIED;
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            return Response::from_parts(parts, Body::empty());
        }
    }
    Response::from_parts(parts, Body::from(html))
}

fn set_if_absent(headers: &mut HeaderMap, name: axum::http::HeaderName, value: &str) {
    if !headers.contains_key(&name)
        && let Ok(value) = HeaderValue::from_str(value)
    {
        headers.insert(name, value);
    }
}

/// The base64 SHA-256 of each inline script's text, as a policy names it.
fn inline_script_hashes(html: &str) -> Vec<String> {
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after_name = &rest[start + "<script".len()..];
        let Some(tag_end) = after_name.find('>') else {
            break;
        };
        let attributes = &after_name[..tag_end];
        let content = &after_name[tag_end + 1..];
        let Some(close) = content.find("</script>") else {
            break;
        };
        if !attributes.contains("src=") {
            let digest = Sha256::digest(&content.as_bytes()[..close]);
            hashes.push(base64::engine::general_purpose::STANDARD.encode(digest));
        }
        rest = &content[close..];
    }
    hashes
}

/// A weak tag of what the page shows: its text without the nonce Leptos writes
/// into it afresh for every response (in `nonce` and `crossorigin` attributes).
fn page_tag(html: &str) -> String {
    const NONCE: &str = " nonce=\"";
    let nonce = html.find(NONCE).and_then(|start| {
        let value = &html[start + NONCE.len()..];
        value.find('"').map(|end| &value[..end])
    });
    let mut hasher = Sha256::new();
    match nonce.filter(|n| !n.is_empty()) {
        Some(nonce) => html.split(nonce).for_each(|part| hasher.update(part)),
        None => hasher.update(html),
    }
    let digest = hasher.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "<html><head><link crossorigin=\"AAA\">\
        <script type=\"module\" nonce=\"AAA\">run()</script>\
        <script src=\"/pkg/x.js\"></script><script nonce=\"AAA\">x=[];</script></head></html>";

    #[test]
    fn each_inline_script_is_allowed_by_its_hash_and_no_other() {
        let hashes = inline_script_hashes(PAGE);
        let expected: Vec<String> = ["run()", "x=[];"]
            .iter()
            .map(|s| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s)))
            .collect();
        assert_eq!(hashes, expected);
    }

    #[test]
    fn the_page_tag_ignores_the_nonce_and_nothing_else() {
        let other_nonce = PAGE.replace("AAA", "BBBBBB");
        assert_eq!(page_tag(PAGE), page_tag(&other_nonce));
        assert_ne!(page_tag(PAGE), page_tag(&PAGE.replace("run()", "walk()")));
        assert!(page_tag(PAGE).starts_with("W/\""));
    }

    #[test]
    fn frames_are_refused_unless_sites_are_named() {
        let assets = Arc::new(Assets::default());
        let closed = SiteHeaders::new(&[], false, assets.clone());
        assert!(closed.other_policy().ends_with("frame-ancestors 'none'"));
        assert!(closed.deny_frames);
        let open = SiteHeaders::new(&["https://intranet.example".into()], true, assets);
        assert!(
            open.page_policy(&[])
                .ends_with("frame-ancestors https://intranet.example")
        );
        assert!(!open.deny_frames && open.hsts);
    }
}
