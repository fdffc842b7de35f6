//! The HTTP side of `sdlc orchestrate`: one listener for webhooks and the management API,
//! and the small client the CLI uses to reach a running daemon.
//!
//! Layout:
//! - [`router`]: `router(state) -> Router`, pure, so tests can drive it on any listener.
//! - [`api`]: `/api/orchestrator/...` handlers (actions, webhook routes, tools).
//! - [`approvals_api`]: approving and rejecting actions that await approval.
//! - [`plans_api`]: `/api/orchestrator/plans` and `/runs` (plans run by id, runs, events).
//! - [`tokens_api`]: named API tokens (add, list, remove).
//! - [`tools_api`]: a tool's meta, and trying it once.
//! - `stream`: a response body fed by a channel (streamed JSON lines).
//! - [`webhooks`]: `POST /webhooks/<path>` ingress (store durably, then 202).
//! - `ingest`: the group-commit writer behind webhook ingress.
//! - [`delivery_log`]: the last webhook requests and what became of each.
//! - [`listener`]: the accept loop: connection cap, idle and request timeouts.
//! - [`tls`]: HTTPS on the listener, and the CLI's pinned client side.
//! - [`auth`]: the bearer-token check every management request passes.
//! - [`metrics_api`]: `GET /metrics`, the Prometheus exposition.
//! - [`openapi`]: the management API's OpenAPI 3.1 document.
//! - [`error`]: `ApiError`, the one error type, answered as JSON.
//! - [`client`]: `DaemonClient`, the CLI's side of the management API.
//! - [`ui`]: the dashboard at `/` (pages, login and sessions, the live event stream).
//!
//! What it does not do: decide when anything runs (the engine in sdlc-core does) or parse
//! command lines (sdlc-cli does).

pub mod api;
mod api_support;
pub mod approvals_api;
pub mod auth;
pub mod client;
pub mod delivery_log;
pub mod error;
pub mod external_api;
pub mod groups_api;
pub mod history_api;
mod ingest;
pub mod listener;
pub mod logs_api;
pub mod metrics_api;
pub mod notify_api;
pub mod notify_sender;
pub mod openapi;
pub mod plans_api;
mod routes;
mod state;
mod stream;
pub mod tls;
pub mod tokens_api;
pub mod tools_api;
pub mod ui;
pub mod webhooks;

use std::future::Future;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use client::{ClientError, DaemonClient, Verdict};
pub use error::ApiError;
pub use listener::ConnectionLimits;
pub use state::{AppState, AppStateConfig};

/// The whole HTTP surface over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/webhooks/{*path}",
            post(webhooks::ingest)
                .fallback(routes::method_not_allowed)
                // The ingress handler enforces --max-body itself, with a JSON 413.
                .layer(DefaultBodyLimit::disable()),
        )
        .route(metrics_api::PATH, get(metrics_api::scrape))
        .nest(
            "/api/orchestrator",
            routes::routes(state.clone()).layer(axum::middleware::map_response(data_headers)),
        )
        .merge(ui::routes())
        .fallback(not_found)
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            transport_headers,
        ))
        .with_state(state)
}

/// API answers are data: never sniffed as another type (a JSON string holding HTML must not
/// render), never kept by a cache (they hold runs, tokens' names, secrets once).
async fn data_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Under `--tls-cert`, every answer tells browsers to use HTTPS only for this host.
async fn transport_headers(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut response: axum::response::Response,
) -> axum::response::Response {
    if state.https() {
        response.headers_mut().insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "not found: webhooks are POST /webhooks/<path>, the API is under /api/orchestrator/, the dashboard is at /",
    )
}

/// Serves `router(state)` on `listener` within `limits` (over TLS when `tls` is given) until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener::serve_with_limits(listener, router(state), limits, tls, shutdown).await
}
