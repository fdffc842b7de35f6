//! `GET /metrics`: the Prometheus exposition (see `sdlc_core::metrics`). It takes the same
//! credentials as the management API (Prometheus sends `Authorization: Bearer`), except that
//! with `--metrics-open` a scraper on the same machine (a loopback peer) needs none.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use sdlc_core::metrics::{ScrapeReading, content_type};

use crate::{ApiError, AppState, auth};

/// The path the listener notes the peer's address for (nothing else needs it).
pub const PATH: &str = "/metrics";

pub async fn scrape(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback());
    if !(state.metrics_open() && loopback) {
        auth::authorize(&state, request.method(), PATH, request.headers()).await?;
    }
    // Prometheus asks for OpenMetrics first when it can read it; anything else gets the
    // classic text format.
    let openmetrics = request
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    // A database that cannot be read leaves its gauges out of this scrape, not the scrape.
    let read = state
        .with_db(|db| Ok((db.count_by_status()?, db.inbox_len()?)))
        .await
        .ok();
    let (actions_by_status, inbox_depth) = match read {
        Some((counts, inbox)) => (Some(counts), Some(inbox)),
        None => (None, None),
    };
    let reading = ScrapeReading {
        actions_by_status,
        inbox_depth,
        engine: state
            .engine_stats()
            .map(|stats| stats.snapshot(state.clock().now())),
    };
    let body = state.metrics().encode(&reading, openmetrics);
    Ok(([(CONTENT_TYPE, content_type(openmetrics))], body).into_response())
}
