//! Hearth: a self-hosted real-time group chat. One crate, built twice: the axum
//! server (feature `ssr`) and the WASM page that hydrates what it renders (feature
//! `hydrate`).
//!
//! # Where things are
//!
//! - [`protocol`]: what both sides share, written once. The frames of the socket
//!   (`mod.rs`), the rules for what people type (`rules`), every refusal with its
//!   code and sentence (`refusal`), and a room as a tab shows it (`room`).
//! - [`api`]: the server functions (claim and release a name, create a channel),
//!   each beside the data it works on.
//! - [`app`]: the page. `chat` is the tab's state and every rule that changes it,
//!   pure and unit-tested; `connection` is the runner that performs the effects
//!   those rules return (its `socket` is the tab's one WebSocket; `storage` is
//!   localStorage; `keys` the keyboard shortcuts; `offline` registers the service
//!   worker); the rest are components, one per file.
//! - [`server`] (server only): configuration, the accept loop and the gate every
//!   request passes, the headers and cached files of the site, the hub that serves
//!   rooms from memory, the WebSocket layer, and the stores (SQLite, memory, Redis).
//!   Its own documentation maps it.
//!
//! The binaries: `main.rs` serves Hearth; `bin/loadgen` (feature `loadgen`) is the
//! load generator the benchmarks use; `bin/wsecho` is an echo server on Hearth's
//! WebSocket layer for the conformance run.
#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod protocol;
#[cfg(feature = "ssr")]
pub mod server;

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
