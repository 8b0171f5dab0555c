//! The server: configuration, the hub, the WebSocket endpoint, the store, and the
//! axum router that ties them to the Leptos pages and server functions.

pub mod config;
pub mod hub;
pub mod store;
pub mod ws;

use crate::app::{App, shell};
use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use config::Config;
use hub::{Hub, HubLimits};
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use std::sync::Arc;
use store::{MemoryStore, Store};

/// The channel every fresh installation starts with, so the first visitor has a room.
pub const FIRST_CHANNEL: &str = "General";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub config: Arc<Config>,
    pub leptos_options: LeptosOptions,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Builds the hub over a fresh store, with the first channel in place.
pub fn build_hub(config: &Config) -> Arc<Hub> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(config.history));
    if store.channels().is_empty() {
        // Cannot fail: the store is empty and the name is valid.
        let _ = store.create_channel(FIRST_CHANNEL, now_ms());
    }
    Arc::new(Hub::new(
        store,
        HubLimits {
            room_capacity: config.room_capacity,
            queue_len: config.outbound_queue,
        },
    ))
}

/// The whole HTTP surface: pages, server functions, `/ws`, static files.
pub fn router(config: Config) -> Router {
    let leptos_options = LeptosOptions::builder()
        .output_name("hearth")
        .site_root(config.site_root.as_str())
        .site_pkg_dir("pkg")
        .site_addr(config.site_addr)
        .build();
    let hub = build_hub(&config);
    let state = AppState {
        hub: hub.clone(),
        config: Arc::new(config),
        leptos_options: leptos_options.clone(),
    };
    let routes = generate_route_list(App);
    Router::new()
        .route("/ws", get(ws::upgrade))
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(hub.clone()),
            move || shell(leptos_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .with_state(state)
}

/// Runs Hearth until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.site_addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, history = config.history, capacity = config.room_capacity, "starting");
    // Tests and scripts wait for this exact line to learn the port.
    println!("hearth listening on http://{addr}");
    axum::serve(listener, router(config))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
