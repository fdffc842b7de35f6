//! `GET /groups`: the runs that share a run id, one row per run id (`sdlc_core::run_group`),
//! newest first, with how many runs are in each state, when the first started and the last
//! ended; each row links to the Runs page filtered by its run id. Paged by cursor as
//! `GET /api/orchestrator/run-groups`.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use sdlc_core::StatusKind;
use sdlc_core::run_group::{GroupState, RunGroup};

use super::format::{self, TimeCell};
use super::{Chrome, PageResult, done, error_page, page_session, render, urlencode};
use crate::AppState;
use crate::groups_api::GroupsQuery;

/// One count of a group's runs in a status, as a badge.
pub struct CountBadge {
    pub status: &'static str,
    pub class: &'static str,
    pub count: u64,
}

pub struct GroupRow {
    pub run_id: String,
    /// The Runs page of this group's runs.
    pub runs_href: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub total: u64,
    /// The statuses it has runs in, most telling first.
    pub counts: Vec<CountBadge>,
    pub first_run: TimeCell,
    pub started: Option<TimeCell>,
    pub ended: Option<TimeCell>,
    /// From the first start to the last end, once nothing is left to run.
    pub took: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "groups.html")]
pub struct GroupsPage {
    pub chrome: Chrome,
    pub rows: Vec<GroupRow>,
    pub since: String,
    /// The first page of the same filter.
    pub newest_href: String,
    pub first_page: bool,
    pub next_href: Option<String>,
    pub error: String,
}

fn state_class(state: GroupState) -> &'static str {
    match state {
        GroupState::InProgress => format::status_class(StatusKind::Running),
        GroupState::Failed => format::status_class(StatusKind::Failed),
        GroupState::Canceled => format::status_class(StatusKind::Canceled),
        GroupState::Completed => format::status_class(StatusKind::Completed),
    }
}

impl GroupRow {
    fn of(g: &RunGroup, now: DateTime<Utc>) -> GroupRow {
        let c = g.counts;
        let counts = [
            (StatusKind::Failed, c.failed),
            (StatusKind::AwaitingApproval, c.awaiting_approval),
            (StatusKind::Running, c.running),
            (StatusKind::Pending, c.pending),
            (StatusKind::Paused, c.paused),
            (StatusKind::Canceled, c.canceled),
            (StatusKind::Skipped, c.skipped),
            (StatusKind::Completed, c.completed),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, count)| CountBadge {
            status: kind.as_str(),
            class: format::status_class(kind),
            count,
        })
        .collect();
        let took = match (g.state, g.first_started_at, g.last_ended_at) {
            (GroupState::InProgress, _, _) => None,
            (_, Some(start), Some(end)) => {
                Some(format::duration((end - start).num_milliseconds().max(0)))
            }
            _ => None,
        };
        GroupRow {
            run_id: g.run_id.clone(),
            runs_href: format!("/runs?run_id={}", urlencode(&g.run_id)),
            state: g.state.as_str(),
            state_class: state_class(g.state),
            total: g.total,
            counts,
            first_run: TimeCell::new(g.first_run_at, now),
            started: g.first_started_at.map(|t| TimeCell::new(t, now)),
            ended: g.last_ended_at.map(|t| TimeCell::new(t, now)),
            took,
        }
    }
}

/// `GET /groups?since=&cursor=`.
pub async fn groups(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<GroupsQuery>,
) -> Response {
    done(groups_page(&state, &headers, &uri, query).await)
}

async fn groups_page(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    query: GroupsQuery,
) -> PageResult {
    let session = page_session(state, headers, uri).await?;
    let now = state.clock().now();
    let since = query.since.as_deref().unwrap_or("").trim().to_string();
    let filter = if since.is_empty() {
        String::new()
    } else {
        format!("since={}&", urlencode(&since))
    };
    let mut page = GroupsPage {
        chrome: Chrome::new("groups", "Run groups", &session.session.csrf),
        rows: Vec::new(),
        since,
        newest_href: format!("/groups?{}", filter.trim_end_matches('&')),
        first_page: query.cursor.as_deref().is_none_or(|c| c.trim().is_empty()),
        next_href: None,
        error: String::new(),
    };
    let request = match query.check(now) {
        Ok(request) => request,
        Err(message) => {
            page.error = message;
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
    };
    let found = state
        .with_db(move |db| db.run_groups(&request.filter, request.cursor, request.limit))
        .await
        .map_err(|err| error_page(&err))?;
    page.rows = found.items.iter().map(|g| GroupRow::of(g, now)).collect();
    page.next_href = found
        .next
        .map(|cursor| format!("/groups?{filter}cursor={}", cursor.encode()));
    Ok(render(&page))
}
