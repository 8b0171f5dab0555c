//! What makes Hearth an app a phone can install: its icons, drawn at build time
//! from the mark (`build.rs`), and the service worker that keeps the page and the
//! client's files for visits without a network. The manifest naming them is a
//! file of the site (`public/manifest.webmanifest`).

use super::AppState;
use axum::extract::State;
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::IntoResponse;
use sha2::{Digest, Sha256};

const ICON_192: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/icon-192.png"));
const ICON_512: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/icon-512.png"));
const WORKER_TEMPLATE: &str = include_str!("service_worker.js");

pub async fn icon_192() -> impl IntoResponse {
    ([(CONTENT_TYPE, "image/png")], ICON_192)
}

pub async fn icon_512() -> impl IntoResponse {
    ([(CONTENT_TYPE, "image/png")], ICON_512)
}

/// The service worker, naming the files of this build.
pub async fn service_worker(State(state): State<AppState>) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            // The worker fetches the site's files; it runs nothing else.
            (
                CONTENT_SECURITY_POLICY,
                "default-src 'none'; connect-src 'self'",
            ),
        ],
        state.service_worker.clone(),
    )
}

/// The worker's text for this build's files. Its version changes with them, so a
/// new build replaces the kept files as soon as a visitor's browser sees it.
pub fn worker_source(shell: &[&str]) -> String {
    let list = serde_json::to_string(shell).unwrap_or_else(|_| "[]".into());
    let digest = Sha256::new()
        .chain_update(list.as_bytes())
        .chain_update(WORKER_TEMPLATE.as_bytes())
        .finalize();
    let version: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    WORKER_TEMPLATE
        .replace("__VERSION__", &version)
        .replace("__SHELL__", &list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_names_this_builds_files_and_changes_with_them() {
        let one = worker_source(&["/", "/pkg/hearth.A.wasm"]);
        assert!(
            one.contains(r#"const SHELL = ["/","/pkg/hearth.A.wasm"];"#),
            "{one}"
        );
        assert!(!one.contains("__VERSION__") && !one.contains("__SHELL__"));
        let other = worker_source(&["/", "/pkg/hearth.B.wasm"]);
        let version = |source: &str| {
            source
                .lines()
                .find(|l| l.starts_with("const VERSION"))
                .map(str::to_owned)
        };
        assert_ne!(version(&one), version(&other));
    }

    #[test]
    fn the_icons_are_pngs_of_their_sizes() {
        for (png, size) in [(ICON_192, 192u32), (ICON_512, 512)] {
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            // The IHDR chunk: width and height, big-endian, after its length and name.
            assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), size);
            assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), size);
        }
    }
}
