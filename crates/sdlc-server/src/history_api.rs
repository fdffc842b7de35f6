//! `/api/orchestrator` for history: `GET /actions/paged` (`{"items", "next_cursor"}`, newest
//! first, keyset-paged) and `GET /actions/paged.csv` (the same filters as RFC 4180 CSV, at
//! most `MAX_CSV_ROWS` rows, the next page's cursor in `X-Next-Cursor`), and
//! `GET /actions/paged.jsonl` (the same as JSON lines, one action view per line). Filters: `status`,
//! `tool`, `label`, `run_id`, `series`, `since`, `until` (RFC 3339 or `7d` back), `limit`, `cursor`;
//! every one is served from the history index.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use sdlc_core::StatusKind;
use sdlc_core::store::{Bodies, HistoryCursor, HistoryFilter};
use sdlc_core::view::{ActionView, CsvWriter};

use crate::{ApiError, AppState};

/// A page holds this many actions unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 50;
/// The most one page holds.
pub const MAX_PAGE: usize = 1_000;
/// The most rows one CSV answer holds.
pub const MAX_CSV_ROWS: usize = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/actions/paged", get(paged))
        .route("/actions/paged.csv", get(paged_csv))
        .route("/actions/paged.jsonl", get(paged_jsonl))
}

/// Query of the history endpoints. Strings, so a bad value gets our message.
#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The occurrences of one schedule: its series id (any of its actions' `series`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    /// Only runs due at or after this: their run time (a schedule's slot, a webhook's
    /// arrival, when a manual run was asked), not their creation. RFC 3339, or how long ago
    /// (`7d`, `12h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only runs due at or before this (run time, as `since`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A checked history query.
#[derive(Debug, Clone)]
pub struct HistoryRequest {
    pub filter: HistoryFilter,
    pub cursor: Option<HistoryCursor>,
    pub limit: usize,
}

pub(crate) fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A listing's `since` and `until` (RFC 3339, or how long before `now`), checked together.
pub(crate) fn time_window(
    since: &Option<String>,
    until: &Option<String>,
    now: DateTime<Utc>,
) -> Result<Window, String> {
    let time = |what: &str, value: &Option<String>| {
        given(value)
            .map(|v| sdlc_core::schedule::parse_time_bound(what, v, now))
            .transpose()
    };
    let since = time("since", since)?;
    let until = time("until", until)?;
    if let (Some(since), Some(until)) = (since, until)
        && since > until
    {
        return Err(format!(
            "since ({since}) is after until ({until}): nothing can match"
        ));
    }
    Ok((since, until))
}

/// A listing's page size: `default` when not given, else a whole number from 1 to `max`.
pub(crate) fn page_limit(
    limit: &Option<String>,
    default: usize,
    max: usize,
) -> Result<usize, String> {
    match given(limit) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "limit '{text}': give a whole number from 1 to {max}"
            )),
        },
    }
}

impl HistoryQuery {
    /// Checks every field; `default_limit` and `max_limit` bound `limit`.
    pub fn check(
        &self,
        now: DateTime<Utc>,
        default_limit: usize,
        max_limit: usize,
    ) -> Result<HistoryRequest, String> {
        let status = given(&self.status)
            .map(|s| s.parse::<StatusKind>())
            .transpose()?;
        let (since, until) = time_window(&self.since, &self.until, now)?;
        let limit = page_limit(&self.limit, default_limit, max_limit)?;
        let cursor = given(&self.cursor).map(HistoryCursor::parse).transpose()?;
        let series = given(&self.series)
            .map(|s| {
                uuid::Uuid::parse_str(s)
                    .map_err(|_| format!("series '{s}' is not a series id (a UUID)"))
            })
            .transpose()?;
        Ok(HistoryRequest {
            filter: HistoryFilter {
                status,
                tool: given(&self.tool).map(str::to_string),
                label: given(&self.label).map(str::to_string),
                run_id: given(&self.run_id).map(str::to_string),
                series,
                since,
                until,
            },
            cursor,
            limit,
        })
    }
}

/// Answer of `GET /actions/paged`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryPageView {
    pub items: Vec<ActionView>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/actions/paged",
    tag = "history",
    summary = "A page of the run history",
    params(HistoryQuery),
    responses(
        (status = 200, description = "A page", body = HistoryPageView),
        (status = 400, description = "a bad filter or cursor", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn paged(
    State(state): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryPageView>, ApiError> {
    let request = query
        .check(state.clock().now(), DEFAULT_PAGE, MAX_PAGE)
        .map_err(ApiError::bad_request)?;
    let page = state
        .with_db(move |db| {
            db.history_page(&request.filter, request.cursor, request.limit, Bodies::With)
        })
        .await?;
    Ok(Json(HistoryPageView {
        items: page.items.iter().map(ActionView::from).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// One download's page: up to `MAX_CSV_ROWS` rows, or `limit`.
async fn export_page(
    state: &AppState,
    query: HistoryQuery,
    bodies: Bodies,
) -> Result<sdlc_core::store::HistoryPage, ApiError> {
    let request = query
        .check(state.clock().now(), MAX_CSV_ROWS, MAX_CSV_ROWS)
        .map_err(ApiError::bad_request)?;
    state
        .with_db(move |db| db.history_page(&request.filter, request.cursor, request.limit, bodies))
        .await
}

/// Answers `body` as a download of `content_type`, with the next page's cursor.
fn export_response(
    content_type: &'static str,
    body: Vec<u8>,
    next: Option<HistoryCursor>,
) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(next) = next
        && let Ok(value) = HeaderValue::from_str(&next.encode())
    {
        response.headers_mut().insert("x-next-cursor", value);
    }
    response
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/actions/paged.jsonl",
    tag = "history",
    summary = "The history as JSON lines",
    params(HistoryQuery),
    responses(
        (status = 200, description = "One action a line", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "a bad filter or cursor", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn paged_jsonl(
    State(state): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let page = export_page(&state, query, Bodies::With).await?;
    let mut body = Vec::with_capacity(page.items.len() * 400);
    for action in &page.items {
        serde_json::to_writer(&mut body, &ActionView::from(action))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        body.push(b'\n');
    }
    Ok(export_response(
        "application/x-ndjson; charset=utf-8",
        body,
        page.next,
    ))
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/actions/paged.csv",
    tag = "history",
    summary = "The history as CSV (at most 10,000 rows)",
    params(HistoryQuery),
    responses(
        (status = 200, description = "CSV with a header row", content_type = "text/csv", body = String),
        (status = 400, description = "a bad filter or cursor", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn paged_csv(
    State(state): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let page = export_page(&state, query, Bodies::Without).await?;
    let mut csv = CsvWriter::new(Vec::with_capacity(page.items.len() * 160))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    for action in &page.items {
        csv.write(&ActionView::from(action))
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    let body = csv
        .finish()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(export_response(
        "text/csv; charset=utf-8; header=present",
        body,
        page.next,
    ))
}
