//! The dashboard's pages: overview (`/`), runs (`/runs`, the history with filters and keyset
//! paging) and one action (`/actions/{id}`). Each reads what it shows in one trip to the
//! database, bounded by what it shows (never a scan of the history), and renders a template.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use sdlc_core::model::{Action, ActionTrigger, Recurrence};
use sdlc_core::plan::{PlanRun, RunStatus, StepStatus};
use sdlc_core::store::{Bodies, RunFilter, StorageFault};
use sdlc_core::view::ActionView;
use sdlc_core::{ListFilter, StatusKind};

use super::format::{self, ActionRow, TimeCell};
use super::{Chrome, PageResult, done, error_page, page_session, render, urlencode};
use crate::history_api::{DEFAULT_PAGE, HistoryQuery};
use crate::{ApiError, AppState};

/// Lists on the overview hold at most this many.
const OVERVIEW_LIST: usize = 10;

pub struct CountCell {
    pub status: &'static str,
    pub class: &'static str,
    pub n: u64,
}

pub struct AwaitingItem {
    pub row: ActionRow,
    pub outputs_uri: String,
    /// Whether `outputs_uri` may be a link (see `format::is_web_link`).
    pub outputs_link: bool,
}

pub struct RunItem {
    pub id: String,
    pub short_id: String,
    pub plan: String,
    pub started: TimeCell,
    pub done: u32,
    pub failed: u32,
    pub total: u32,
}

pub struct Health {
    pub uptime: String,
    pub busy: String,
    pub max: String,
    pub inbox: u64,
    pub last_commit: Option<TimeCell>,
    pub storage: String,
    pub storage_ok: bool,
}

#[derive(askama::Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub chrome: Chrome,
    pub counts: Vec<CountCell>,
    pub total: u64,
    pub awaiting: Vec<AwaitingItem>,
    pub failures: Vec<ActionRow>,
    pub coming: Vec<ActionRow>,
    pub runs: Vec<RunItem>,
    pub health: Health,
}

/// What the overview reads from the database.
struct OverviewData {
    counts: Vec<(StatusKind, u64)>,
    inbox: u64,
    awaiting: Vec<Action>,
    failures: Vec<Action>,
    coming: Vec<Action>,
    runs: Vec<PlanRun>,
}

fn run_item(run: &PlanRun, now: DateTime<Utc>) -> RunItem {
    let counts = &run.counts;
    let total: u32 = counts.by_status.values().sum();
    let finished: u32 = counts
        .by_status
        .iter()
        .filter(|(status, _)| status.is_finished())
        .map(|(_, n)| n)
        .sum();
    RunItem {
        id: run.run_id.to_string(),
        short_id: format::short_id(run.run_id),
        plan: run.plan_id.clone(),
        started: TimeCell::new(run.created_at, now),
        done: finished,
        failed: counts.get(StepStatus::Failed),
        total,
    }
}

fn storage_text(fault: Option<StorageFault>) -> (String, bool) {
    match fault {
        None => ("ok".to_string(), true),
        Some(fault) => (
            format!(
                "refusing writes since {}: {}",
                fault.since.format("%H:%M:%S UTC"),
                fault.detail
            ),
            false,
        ),
    }
}

/// `GET /`.
pub async fn overview(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    done(overview_page(&state, &headers, &uri).await)
}

async fn overview_page(state: &AppState, headers: &HeaderMap, uri: &Uri) -> PageResult {
    let session = page_session(state, headers, uri).await?;
    let now = state.clock().now();
    let data = state
        .with_db(move |db| {
            Ok(OverviewData {
                counts: db.count_by_status()?,
                inbox: db.inbox_len()?,
                awaiting: db.list(&ListFilter {
                    status: Some(StatusKind::AwaitingApproval),
                    tool: None,
                    limit: Some(OVERVIEW_LIST * 2),
                })?,
                failures: db
                    .history_page(
                        &sdlc_core::store::HistoryFilter {
                            status: Some(StatusKind::Failed),
                            ..Default::default()
                        },
                        None,
                        OVERVIEW_LIST,
                        Bodies::Without,
                    )?
                    .items,
                coming: db.due_before(now + chrono::Duration::hours(1), OVERVIEW_LIST)?,
                runs: db.list_runs(&RunFilter {
                    status: Some(RunStatus::Running),
                    limit: Some(OVERVIEW_LIST),
                    ..Default::default()
                })?,
            })
        })
        .await
        .map_err(|err| error_page(&err))?;
    let total = data.counts.iter().map(|(_, n)| n).sum();
    let counts = StatusKind::ALL
        .iter()
        .map(|kind| CountCell {
            status: kind.as_str(),
            class: format::status_class(*kind),
            n: data
                .counts
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, n)| *n),
        })
        .collect();
    let snapshot = state.engine_stats().map(|stats| stats.snapshot(now));
    let (storage, storage_ok) = storage_text(state.db().fault());
    let health = Health {
        uptime: snapshot.as_ref().map_or("-".into(), |s| {
            format::duration(s.uptime_secs.saturating_mul(1000))
        }),
        busy: snapshot.as_ref().map_or("-".into(), |s| s.busy.to_string()),
        max: snapshot
            .as_ref()
            .map_or("-".into(), |s| s.max_concurrency.to_string()),
        inbox: data.inbox,
        last_commit: snapshot
            .as_ref()
            .and_then(|s| s.last_commit_at)
            .map(|at| TimeCell::new(at, now)),
        storage,
        storage_ok,
    };
    let page = OverviewPage {
        chrome: Chrome::new("overview", "Overview", &session.session.csrf),
        counts,
        total,
        awaiting: data
            .awaiting
            .iter()
            .map(|action| {
                let outputs_uri = ActionView::from(action).outputs_uri.unwrap_or_default();
                AwaitingItem {
                    row: ActionRow::of(action, now),
                    outputs_link: format::is_web_link(&outputs_uri),
                    outputs_uri,
                }
            })
            .collect(),
        failures: data
            .failures
            .iter()
            .map(|a| ActionRow::of(a, now))
            .collect(),
        coming: data.coming.iter().map(|a| ActionRow::of(a, now)).collect(),
        runs: data.runs.iter().map(|run| run_item(run, now)).collect(),
        health,
    };
    Ok(render(&page))
}

/// The filter fields as the form shows them back.
#[derive(Debug, Default)]
pub struct FilterFields {
    pub status: String,
    pub tool: String,
    pub label: String,
    pub run_id: String,
    pub since: String,
    pub until: String,
    pub series: String,
}

#[derive(askama::Template)]
#[template(path = "runs.html")]
pub struct RunsPage {
    pub chrome: Chrome,
    pub statuses: Vec<&'static str>,
    pub filter: FilterFields,
    /// The filter as a query string (no cursor), for downloads and "newest".
    pub query: String,
    pub rows: Vec<ActionRow>,
    pub first_page: bool,
    pub next_href: Option<String>,
    pub error: String,
}

fn field(value: &Option<String>) -> String {
    value.as_deref().unwrap_or("").trim().to_string()
}

/// The query string of the filter's given fields (no limit, no cursor).
fn filter_query(query: &HistoryQuery) -> String {
    let pairs = [
        ("status", &query.status),
        ("tool", &query.tool),
        ("label", &query.label),
        ("run_id", &query.run_id),
        ("series", &query.series),
        ("since", &query.since),
        ("until", &query.until),
    ];
    pairs
        .iter()
        .filter_map(|(name, value)| {
            let value = field(value);
            (!value.is_empty()).then(|| format!("{name}={}", urlencode(&value)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `GET /runs?status=&tool=&label=&run_id=&since=&until=&cursor=`.
pub async fn runs(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<HistoryQuery>,
) -> Response {
    done(runs_page(&state, &headers, &uri, query).await)
}

async fn runs_page(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    query: HistoryQuery,
) -> PageResult {
    let session = page_session(state, headers, uri).await?;
    let now = state.clock().now();
    let filter = FilterFields {
        status: field(&query.status),
        tool: field(&query.tool),
        label: field(&query.label),
        run_id: field(&query.run_id),
        since: field(&query.since),
        until: field(&query.until),
        series: field(&query.series),
    };
    let query_string = filter_query(&query);
    let first_page = field(&query.cursor).is_empty();
    let mut page = RunsPage {
        chrome: Chrome::new("runs", "Runs", &session.session.csrf),
        statuses: StatusKind::ALL.iter().map(|k| k.as_str()).collect(),
        filter,
        query: query_string.clone(),
        rows: Vec::new(),
        first_page,
        next_href: None,
        error: String::new(),
    };
    let request = match query.check(now, DEFAULT_PAGE, crate::history_api::MAX_PAGE) {
        Ok(request) => request,
        Err(message) => {
            page.error = message;
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
    };
    let found = state
        .with_db(move |db| {
            db.history_page(
                &request.filter,
                request.cursor,
                request.limit,
                Bodies::Without,
            )
        })
        .await
        .map_err(|err| error_page(&err))?;
    page.rows = found.items.iter().map(|a| ActionRow::of(a, now)).collect();
    page.next_href = found.next.map(|cursor| {
        let sep = if query_string.is_empty() { "" } else { "&" };
        format!("/runs?{query_string}{sep}cursor={}", cursor.encode())
    });
    Ok(render(&page))
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct FindQuery {
    pub id: Option<String>,
}

/// `GET /runs/find?id=`: the search box; opens the action.
pub async fn find(Query(query): Query<FindQuery>) -> Response {
    let id = query.id.unwrap_or_default();
    match Uuid::parse_str(id.trim()) {
        Ok(id) => Redirect::to(&format!("/actions/{id}")).into_response(),
        Err(_) => error_page(&ApiError::bad_request(format!(
            "'{id}' is not an action id: paste the UUID `sdlc orchestrate add` printed or the Runs page shows"
        ))),
    }
}

pub struct AttemptItem {
    pub attempt: u32,
    pub outcome: String,
    pub class: &'static str,
    pub started: Option<TimeCell>,
    pub finished: TimeCell,
    pub reason: String,
}

/// A coming due time, with its wall-clock time in the schedule's zone.
pub struct ComingTime {
    pub time: TimeCell,
    pub wall: String,
}

/// One action as its page shows it.
pub struct ActionDetail {
    pub id: String,
    pub label: String,
    pub tool: String,
    pub status: &'static str,
    pub status_class: &'static str,
    pub trigger: String,
    pub created: TimeCell,
    pub due: TimeCell,
    pub started: Option<TimeCell>,
    pub finished: Option<TimeCell>,
    pub duration: String,
    pub attempt: u32,
    pub run_id: String,
    pub plan_run: String,
    pub schedule: String,
    pub cron: String,
    pub tz: String,
    pub coming: Vec<ComingTime>,
    pub input: String,
    pub result: String,
    pub reason: String,
    pub log_excerpt: String,
    pub outputs_uri: String,
    pub outputs_link: bool,
    pub approval: String,
    pub approver: String,
    pub note: String,
    pub attempts: Vec<AttemptItem>,
    pub can_run: bool,
    pub can_pause: bool,
    pub can_resume: bool,
    pub can_cancel: bool,
    /// Running: it can be stopped (cancel while it runs).
    pub can_stop: bool,
    pub can_decide: bool,
    pub can_edit: bool,
    pub can_delete: bool,
    /// Its log is shown as it grows (it runs, or waits to).
    pub follow_log: bool,
    /// Whether it ran (or runs): there may be a log to show.
    pub has_run: bool,
}

#[derive(askama::Template)]
#[template(path = "action.html")]
pub struct ActionPage {
    pub chrome: Chrome,
    pub a: ActionDetail,
}

pub fn schedule_text(action: &Action) -> String {
    match (&action.recurrence, &action.trigger) {
        (Some(Recurrence::Every { interval_ms }), _) => {
            format!("every {}", format::duration(*interval_ms as i64))
        }
        (Some(Recurrence::Cron { expr, tz }), _) => format!("cron {expr} ({tz})"),
        (None, ActionTrigger::Scheduled { .. }) => "once".to_string(),
        _ => String::new(),
    }
}

fn attempt_class(outcome: &str) -> &'static str {
    match outcome {
        "completed" => "st-completed",
        "failed" => "st-failed",
        _ => "st-skipped",
    }
}

fn detail(action: &Action, head: Option<&Action>, now: DateTime<Utc>) -> ActionDetail {
    let view = ActionView::from(action);
    let kind = action.status.kind();
    let time = |at: DateTime<Utc>| TimeCell::new(at, now);
    let coming = head
        .map(|head| sdlc_core::policy::coming_runs(head, 5))
        .unwrap_or_default();
    let (cron, tz) = match &action.recurrence {
        Some(Recurrence::Cron { expr, tz }) => (expr.clone(), tz.clone()),
        _ => (String::new(), String::new()),
    };
    ActionDetail {
        id: action.id.to_string(),
        label: view.label.clone(),
        tool: view.tool_name.clone(),
        status: kind.as_str(),
        status_class: format::status_class(kind),
        trigger: view.trigger.clone(),
        created: time(view.created_at),
        due: time(view.due_at),
        started: view.started_at.map(time),
        finished: view.finished_at.map(time),
        duration: view.duration_ms.map(format::duration).unwrap_or_default(),
        attempt: view.attempt,
        run_id: view.run_id.clone().unwrap_or_default(),
        plan_run: view
            .plan_run_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        schedule: schedule_text(action),
        cron,
        tz,
        coming: coming
            .into_iter()
            .map(|at| {
                // A cron's slots read in its own zone; anything else in UTC.
                let zoned = action
                    .recurrence
                    .as_ref()
                    .and_then(|r| match r {
                        Recurrence::Cron { tz, .. } => sdlc_core::schedule::parse_tz(tz).ok(),
                        Recurrence::Every { .. } => None,
                    })
                    .map(|zone| {
                        at.with_timezone(&zone)
                            .format("%Y-%m-%d %H:%M:%S %Z")
                            .to_string()
                    });
                ComingTime {
                    wall: zoned.unwrap_or_else(|| at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
                    time: time(at),
                }
            })
            .collect(),
        input: format::pretty_json(&view.tool_input),
        result: view
            .result
            .as_ref()
            .map(format::pretty_json)
            .unwrap_or_default(),
        reason: view.reason.clone().unwrap_or_default(),
        log_excerpt: view.log_excerpt.clone().unwrap_or_default(),
        outputs_uri: view.outputs_uri.clone().unwrap_or_default(),
        outputs_link: view.outputs_uri.as_deref().is_some_and(format::is_web_link),
        approval: view
            .approval_state
            .map(|state| {
                serde_json::to_value(state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .unwrap_or_default(),
        approver: view.approver.clone().unwrap_or_default(),
        note: view.note.clone().unwrap_or_default(),
        attempts: view
            .attempts
            .iter()
            .rev()
            .map(|record| AttemptItem {
                attempt: record.attempt,
                class: attempt_class(&record.outcome),
                outcome: record.outcome.clone(),
                started: record.started_at.map(time),
                finished: time(record.finished_at),
                reason: record.reason.clone().unwrap_or_default(),
            })
            .collect(),
        can_run: action.step.is_none() && kind != StatusKind::Running,
        can_pause: kind == StatusKind::Pending,
        can_resume: kind == StatusKind::Paused,
        can_cancel: matches!(kind, StatusKind::Pending | StatusKind::Paused),
        can_stop: kind == StatusKind::Running
            && action.plan_run.is_none()
            && action.cancel.is_none(),
        can_decide: kind == StatusKind::AwaitingApproval,
        can_edit: action.step.is_none() && matches!(kind, StatusKind::Pending | StatusKind::Paused),
        can_delete: kind != StatusKind::Running,
        follow_log: matches!(kind, StatusKind::Pending | StatusKind::Running),
        has_run: action.attempt > 0 && action.plan.is_none(),
    }
}

/// `GET /actions/{id}`.
pub async fn action(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    done(action_page(&state, &headers, &uri, &id).await)
}

async fn action_page(state: &AppState, headers: &HeaderMap, uri: &Uri, id: &str) -> PageResult {
    let session = page_session(state, headers, uri).await?;
    let id = Uuid::parse_str(id).map_err(|_| {
        error_page(&ApiError::bad_request(format!(
            "'{id}' is not an action id (a UUID)"
        )))
    })?;
    let now = state.clock().now();
    let (action, head) = state
        .with_db(move |db| Ok((db.get(id)?, db.series_head(id)?)))
        .await
        .map_err(|err| error_page(&err))?;
    let action = action.ok_or_else(|| {
        error_page(&ApiError::not_found(format!(
            "no action with id {id}: it may have been deleted or pruned (see --keep)"
        )))
    })?;
    // The coming times are the series' (its newest occurrence), shown on any of its pages.
    let page = ActionPage {
        chrome: Chrome::new("action", action.label.clone(), &session.session.csrf),
        a: detail(&action, head.as_ref(), now),
    };
    Ok(render(&page))
}
