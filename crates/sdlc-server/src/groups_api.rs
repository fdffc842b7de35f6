//! `GET /api/orchestrator/run-groups`: the runs that share a run id, summed per run id
//! (`sdlc_core::run_group`), newest first by when each group's first run was due,
//! keyset-paged (`{"items", "next_cursor"}`). Filters: `since`, `until` (the first run
//! time; RFC 3339 or `7d` back), `limit`, `cursor`.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use sdlc_core::run_group::{GroupCursor, GroupFilter, RunGroup};

use crate::history_api::{given, page_limit, time_window};
use crate::{ApiError, AppState};

/// A page holds this many groups unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 50;
/// The most one page holds.
pub const MAX_PAGE: usize = 1_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/run-groups", get(list))
}

/// Query of `GET /run-groups`. Strings, so a bad value gets our message.
#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupsQuery {
    /// Only groups whose first run was due at or after this. RFC 3339, or how long ago
    /// (`7d`, `12h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only groups whose first run was due at or before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A checked groups query.
#[derive(Debug, Clone)]
pub struct GroupsRequest {
    pub filter: GroupFilter,
    pub cursor: Option<GroupCursor>,
    pub limit: usize,
}

impl GroupsQuery {
    /// Checks every field; `limit` is bounded by [`MAX_PAGE`].
    pub fn check(&self, now: DateTime<Utc>) -> Result<GroupsRequest, String> {
        let (since, until) = time_window(&self.since, &self.until, now)?;
        let limit = page_limit(&self.limit, DEFAULT_PAGE, MAX_PAGE)?;
        let cursor = given(&self.cursor).map(GroupCursor::parse).transpose()?;
        Ok(GroupsRequest {
            filter: GroupFilter { since, until },
            cursor,
            limit,
        })
    }
}

/// Answer of `GET /run-groups`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupPageView {
    pub items: Vec<RunGroup>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/run-groups",
    tag = "history",
    summary = "Runs summed per run id, newest group first",
    params(GroupsQuery),
    responses(
        (status = 200, description = "A page of groups", body = GroupPageView),
        (status = 400, description = "a bad filter or cursor", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<GroupsQuery>,
) -> Result<Json<GroupPageView>, ApiError> {
    let request = query
        .check(state.clock().now())
        .map_err(ApiError::bad_request)?;
    let page = state
        .with_db(move |db| db.run_groups(&request.filter, request.cursor, request.limit))
        .await?;
    Ok(Json(GroupPageView {
        items: page.items,
        next_cursor: page.next.map(|c| c.encode()),
    }))
}
