//! `GET /schedules`: every recurring series with its schedule, next due time, last outcome
//! and its last [`STRIP`] outcomes as a strip of coloured marks, [`PER_PAGE`] series a page
//! (sorted by label). Reads the recurring heads (`ActionDb::recurring_heads`) and, for the
//! series shown, one history page each by series.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};

use sdlc_core::StatusKind;
use sdlc_core::model::Action;
use sdlc_core::store::{Bodies, HistoryFilter};

use super::format::{self, TimeCell};
use super::{Chrome, PageResult, done, error_page, page_session, render};
use crate::AppState;

/// Outcomes in a series' strip.
pub const STRIP: usize = 30;
/// Series on one page.
pub const PER_PAGE: usize = 25;

pub struct Mark {
    pub id: String,
    pub status: &'static str,
    pub class: &'static str,
    pub title: String,
}

pub struct SeriesRow {
    pub id: String,
    pub series: String,
    pub label: String,
    pub tool: String,
    pub schedule: String,
    pub status: &'static str,
    pub status_class: &'static str,
    pub next: Option<TimeCell>,
    pub last: Option<Mark>,
    pub last_at: Option<TimeCell>,
    pub strip: Vec<Mark>,
}

#[derive(askama::Template)]
#[template(path = "schedules.html")]
pub struct SchedulesPage {
    pub chrome: Chrome,
    pub rows: Vec<SeriesRow>,
    pub total: usize,
    pub page: usize,
    pub pages: usize,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct SchedulesQuery {
    pub page: Option<usize>,
}

fn mark(action: &Action, now: DateTime<Utc>) -> Mark {
    let kind = action.status.kind();
    let at = action.finished_at.unwrap_or(action.updated_at);
    Mark {
        id: action.id.to_string(),
        status: kind.as_str(),
        class: format::status_class(kind),
        title: format!(
            "{} {} ({})",
            kind.as_str(),
            format::relative(at, now),
            at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    }
}

/// `GET /schedules?page=N`.
pub async fn schedules(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<SchedulesQuery>,
) -> Response {
    done(schedules_page(&state, &headers, &uri, query).await)
}

async fn schedules_page(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    query: SchedulesQuery,
) -> PageResult {
    let session = page_session(state, headers, uri).await?;
    let now = state.clock().now();
    let page = query.page.unwrap_or(1).max(1);
    let (total, shown) = state
        .with_db(move |db| {
            let mut heads = db.recurring_heads()?;
            heads.sort_by(|a, b| (&a.label, a.series).cmp(&(&b.label, b.series)));
            let total = heads.len();
            let mut shown = Vec::new();
            for head in heads.into_iter().skip((page - 1) * PER_PAGE).take(PER_PAGE) {
                let filter = HistoryFilter {
                    series: Some(head.series),
                    ..Default::default()
                };
                let recent = db.history_page(&filter, None, STRIP + 2, Bodies::Without)?;
                shown.push((head, recent.items));
            }
            Ok((total, shown))
        })
        .await
        .map_err(|err| error_page(&err))?;
    let rows = shown
        .iter()
        .map(|(head, recent)| {
            let finished: Vec<&Action> = recent
                .iter()
                .filter(|a| a.status.kind().is_finished())
                .take(STRIP)
                .collect();
            let kind = head.status.kind();
            SeriesRow {
                id: head.id.to_string(),
                series: head.series.to_string(),
                label: head.label.clone(),
                tool: head
                    .plan
                    .as_ref()
                    .map_or(head.tool_name.clone(), |plan| format!("plan {plan}")),
                schedule: super::pages::schedule_text(head),
                status: kind.as_str(),
                status_class: format::status_class(kind),
                next: (kind == StatusKind::Pending).then(|| TimeCell::new(head.due_at(), now)),
                last: finished.first().map(|a| mark(a, now)),
                last_at: finished
                    .first()
                    .map(|a| TimeCell::new(a.finished_at.unwrap_or(a.updated_at), now)),
                // Oldest on the left, as time reads.
                strip: finished.iter().rev().map(|a| mark(a, now)).collect(),
            }
        })
        .collect();
    let page_view = SchedulesPage {
        chrome: Chrome::new("schedules", "Schedules", &session.session.csrf),
        rows,
        total,
        page,
        pages: total.div_ceil(PER_PAGE).max(1),
    };
    Ok(render(&page_view))
}
