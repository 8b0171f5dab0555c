//! The page without a network: registers the service worker (served by the server,
//! `src/server/webapp.rs`) that keeps the page and the client's files, so a visitor
//! whose connection is gone still sees the chat, their name and their unsent
//! messages, and the socket reconnects when the network returns.

/// Registers the worker; a browser without service workers simply goes without.
pub fn keep_the_page() {
    #[cfg(feature = "hydrate")]
    if let Some(window) = web_sys::window() {
        // Failing to register costs only the offline visit.
        let _ = window.navigator().service_worker().register("/sw.js");
    }
}
