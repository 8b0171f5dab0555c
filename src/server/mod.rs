//! The server: configuration, the hub, the WebSocket endpoint, the store, and the
//! axum router that ties them to the Leptos pages and server functions.
//!
//! # Where things are
//!
//! A request's way in:
//! - [`config`]: every setting, defined once (file, environment, flag).
//! - [`listen`]: the accept loop: the header deadline, HTTP connections per address,
//!   writes that must make progress, graceful stop.
//! - [`gate`]: what every request passes first: the host it names, the site it comes
//!   from, its address's share, a small body in time.
//! - [`limits`]: token buckets and connection counts, per person and per address.
//! - [`api_status`]: a refusal answered with the HTTP status of its code.
//! - [`operations`] and [`metrics`]: `/healthz`, `/readyz`, `/metrics`.
//!
//! The site around the chat:
//! - [`assets`]: the client's files by their content-hashed names (cargo-leptos's
//!   `hash.txt`), and the shell a visitor needs offline.
//! - [`headers`]: what every response says about itself: the Content-Security-Policy,
//!   framing, `nosniff`, HSTS, how long it may be kept, the page's validator.
//! - [`webapp`]: what makes the page installable: the icons drawn at build time and
//!   the service worker.
//!
//! A connection's life:
//! - [`ws`]: origin check, hello, the frame loop, leaving.
//! - [`socket`], [`reader`], [`frame`]: the WebSocket wire format; text checked as it
//!   arrives; frames built once and shared by every recipient.
//! - [`outbox`]: a connection's bounded queue of outgoing frames, which the hub
//!   writes straight to the socket.
//!
//! The chat itself:
//! - [`hub`]: who is connected (`registry`), rooms and channels (`rooms`), presence
//!   (`presence`), the committer that stores and publishes sends (`publish`), and
//!   delivery (`encode`, `fanout`).
//! - [`window`]: a channel's kept messages in memory, as the bytes they were
//!   published as; joins and resumes are served from it.
//! - [`names`] and [`name_key`]: display names held by token, and when two names
//!   look the same.
//! - [`store`]: where everything is kept: `sqlite` (the default), `postgres` (a
//!   cluster's records, or a single node's), `memory` (tests and benchmarks),
//!   `clustered` (PostgreSQL with each change told on the bus); `policy` holds the
//!   rules all of them share; `retention` what the store keeps, which [`pruner`]
//!   holds it to.
//! - [`bus`]: Redis between a cluster's nodes: what each stored, and presence.
//! - [`cluster`]: a node's membership: the other nodes' messages, channels and
//!   presence, with what the bus lost read from PostgreSQL.

pub mod api_status;
pub mod assets;
pub mod bus;
pub mod cluster;
pub mod config;
pub mod frame;
pub mod gate;
pub mod headers;
pub mod hub;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod name_key;
pub mod names;
pub mod operations;
pub mod outbox;
pub mod pruner;
pub mod reader;
pub mod socket;
pub mod store;
pub mod webapp;
pub mod window;
pub mod ws;

use crate::app::{App, shell};
use assets::Assets;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use bus::RedisBus;
use config::{Config, StoreKind};
use hub::{Hub, HubLimits};
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use limits::Guards;
use metrics::Metrics;
use names::Names;
use std::sync::Arc;
use store::{ClusteredStore, MemoryStore, PostgresStore, SqliteStore, Store, StoreError};

/// The channel every fresh installation starts with, so the first visitor has a room.
pub const FIRST_CHANNEL: &str = "General";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub names: Arc<Names>,
    pub guards: Arc<Guards>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    pub leptos_options: LeptosOptions,
    /// The service worker's text, naming this build's files.
    pub service_worker: bytes::Bytes,
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

/// The store in use: embedded, PostgreSQL, or a cluster's (PostgreSQL, with the
/// bus to the other nodes, which this node also follows).
pub struct OpenedStore {
    pub store: Arc<dyn Store>,
    pub cluster: Option<cluster::ClusterLink>,
}

/// Opens the configured store, with the first channel in place on a new one.
pub fn open_store(config: &Config) -> Result<OpenedStore, StoreError> {
    let opened = match (&config.database_url, &config.redis_url) {
        (Some(database), Some(redis)) => {
            let link = cluster::ClusterLink {
                records: Arc::new(PostgresStore::open(database, config.history)?),
                bus: Arc::new(RedisBus::open(redis, config.history)?),
            };
            OpenedStore {
                store: Arc::new(ClusteredStore {
                    records: link.records.clone(),
                    bus: link.bus.clone(),
                }),
                cluster: Some(link),
            }
        }
        (Some(database), None) => OpenedStore {
            store: Arc::new(PostgresStore::open(database, config.history)?),
            cluster: None,
        },
        // The configuration refuses a bus without records.
        (None, _) => OpenedStore {
            store: match config.store {
                StoreKind::Sqlite => Arc::new(SqliteStore::open(
                    &config.data_dir,
                    config.history,
                    config.durability,
                )?),
                StoreKind::Memory => Arc::new(MemoryStore::new(config.history)),
            },
            cluster: None,
        },
    };
    if opened.store.load()?.is_empty() {
        match opened.store.create_channel(FIRST_CHANNEL, now_ms()) {
            // Another node of the cluster, starting at the same time, made it.
            Ok(_) | Err(StoreError::ChannelExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(opened)
}

/// What `serve` needs besides the router: the hub, to close every connection and
/// store what is queued when the server stops.
pub struct Running {
    pub hub: Arc<Hub>,
    /// This node's place in a cluster, left on a clean stop.
    pub cluster: Option<cluster::Membership>,
    /// The limits, which the accept loop applies too.
    pub guards: Arc<Guards>,
}

/// The whole HTTP surface: pages, server functions, `/ws`, static files.
pub fn router(config: Config) -> Result<(Router, Running), ServeError> {
    let assets = Arc::new(Assets::load(config.asset_hashes.as_deref())?);
    let leptos_options = LeptosOptions::builder()
        .output_name(assets::OUTPUT_NAME)
        .site_root(config.site_root.as_str())
        .site_pkg_dir(assets::PKG_DIR)
        .site_addr(config.site_addr)
        .hash_files(assets.hash_file().is_some())
        .hash_file(
            assets
                .hash_file()
                .map_or("hash.txt".into(), |path| path.to_string_lossy().into()),
        )
        .build();
    let OpenedStore { store, cluster } = open_store(&config)?;
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::start(
        store.clone(),
        HubLimits {
            room_capacity: config.room_capacity,
            history: config.history,
            commit_queue: config.commit_queue,
            ping_interval: config.ping_interval(),
            idle_timeout: config.idle_timeout(),
            max_tabs_per_person: config.max_tabs_per_person,
            room_seats_per_address: config.room_seats_per_address,
            max_channels: config.max_channels,
        },
        metrics.clone(),
    )?;
    let names = Arc::new(Names::new(store, config.name_idle()));
    let membership = cluster
        .map(|link| {
            let hub = Arc::downgrade(&hub);
            cluster::Membership::join(link, hub, names.clone(), config.presence_ttl())
        })
        .transpose()
        .map_err(|e| StoreError::failed(e).at("cannot join the cluster"))?;
    pruner::start(Arc::downgrade(&hub), config.retention)
        .map_err(|e| StoreError::failed(e).at("cannot start pruning"))?;
    let guards = Guards::new(&config);
    let state = AppState {
        hub: hub.clone(),
        names: names.clone(),
        guards: guards.clone(),
        metrics,
        config: Arc::new(config),
        leptos_options: leptos_options.clone(),
        service_worker: webapp::worker_source(&assets.shell()).into(),
    };
    let routes = generate_route_list(App);
    let context_hub = hub.clone();
    let context_metrics = state.metrics.clone();
    let context_guards = guards.clone();
    let context_assets = assets.clone();
    let fallback_assets = assets.clone();
    let site_headers = Arc::new(headers::SiteHeaders::new(
        &state.config.frame_ancestors,
        state
            .config
            .public_url
            .as_ref()
            .is_some_and(|url| url.https),
        assets,
    ));
    let router = Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(operations::healthz))
        .route("/readyz", get(operations::readyz))
        .route("/metrics", get(operations::metrics))
        .route("/sw.js", get(webapp::service_worker))
        .route("/icons/icon-192.png", get(webapp::icon_192))
        .route("/icons/icon-512.png", get(webapp::icon_512))
        .leptos_routes_with_context(
            &state,
            routes,
            move || {
                provide_context(context_hub.clone());
                provide_context(names.clone());
                provide_context(context_guards.clone());
                provide_context(context_metrics.clone());
                provide_context(context_assets.clone());
            },
            move || shell(leptos_options.clone()),
        )
        // Files of the site, precompressed where the build made brotli and gzip
        // copies; any other address is the app's "not found" page.
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(
            move || provide_context(fallback_assets.clone()), shell
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(gate::Gate {
                config: state.config.clone(),
                guards: state.guards.clone(),
                metrics: state.metrics.clone(),
                retry: api_status::RetryAfter::new(&state.config),
            }),
            gate::guard,
        ))
        // Outside the gate, so that its refusals are counted with the rest.
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(api_status::ApiStatus {
                retry: api_status::RetryAfter::new(&state.config),
                metrics: state.metrics.clone(),
            }),
            api_status::apply,
        ))
        .layer(axum::middleware::from_fn_with_state(
            site_headers,
            headers::apply,
        ))
        // What is not precompressed (pages, server functions' answers) is
        // compressed as it is sent; the WebSocket's upgrade has no body to compress.
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state);
    Ok((
        router,
        Running {
            hub,
            cluster: membership,
            guards,
        },
    ))
}

/// Runs Hearth until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let listener = listen::bind(config.site_addr)?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        store = ?config.store,
        postgres = config.database_url.is_some(),
        redis = config.redis_url.is_some(),
        data_dir = %config.data_dir.display(),
        history = config.history,
        capacity = config.room_capacity,
        "starting"
    );
    let limits = listen::ListenLimits {
        header_timeout: config.header_timeout(),
        drain_timeout: std::time::Duration::from_secs(5),
    };
    // Opening the store blocks (PostgreSQL's client, reading SQLite): not on a
    // thread that drives async tasks.
    let (router, running) = tokio::task::block_in_place(|| router(config))?;
    // Tests and scripts wait for this exact line to learn the port.
    println!("hearth listening on http://{addr}");
    let hub = running.hub.clone();
    listen::serve(
        listener,
        router,
        limits,
        running.guards.clone(),
        async move {
            shutdown_signal().await;
            // Every chat connection is told to reconnect, and sends are no longer taken.
            hub.close_all(socket::close_code::RESTART, "server restarting; reconnect");
        },
    )
    .await;
    // Everything accepted before the signal is stored before the process ends.
    running.hub.shutdown().await;
    if let Some(membership) = running.cluster {
        let _ = tokio::task::spawn_blocking(move || membership.leave()).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Assets(#[from] assets::AssetsError),
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
