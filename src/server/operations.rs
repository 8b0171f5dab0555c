//! Endpoints for operators and load balancers: liveness, readiness, metrics.

use super::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

/// The process is up and serving HTTP.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// The store answers, so this node can take sends: a balancer sends people
/// elsewhere while it does not.
pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let hub = app.hub.clone();
    match tokio::task::spawn_blocking(move || hub.store_ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".to_owned()),
        Ok(Err(error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store cannot be reached: {error}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the readiness check failed\n".to_owned(),
        ),
    }
}

/// Prometheus (OpenMetrics) text.
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let (connections, rooms) = app.hub.census();
    app.metrics.connections.set(connections as i64);
    app.metrics.rooms.set(rooms as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
}
