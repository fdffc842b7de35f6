//! `/api/orchestrator` for plans: `GET /plans`, `POST /plans/{plan_id}/runs` (`{"vars"}` ->
//! 201 `{"run_id"}`), `GET /runs` (filters `plan`, `status`, `limit`, `cursor`),
//! `GET /runs/{run_id}`, `GET /runs/{run_id}/events` (JSON lines; `?follow=1` streams until
//! the run ends), `POST /runs/{run_id}/cancel`, `POST /runs/{run_id}/retry` (`{"step"}`).
//!
//! Plans are run by id only: the API never accepts a plan body or a path, so a token holder
//! runs what the repository declares and nothing else.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use uuid::Uuid;

use sdlc_core::plan::view::{PlanListing, RunDetailView, RunSummary};
use sdlc_core::plan::{RunEvent, RunStatus, load};
use sdlc_core::store::{RunFilter, parse_run_cursor, run_cursor};

use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/plans", get(list_plans))
        .route("/plans/{plan_id}/runs", post(start_run))
        .route("/runs", get(list_runs))
        .route("/runs/{run_id}", get(get_run))
        .route("/runs/{run_id}/events", get(run_events))
        .route("/runs/{run_id}/cancel", post(cancel_run))
        .route("/runs/{run_id}/retry", post(retry_run))
}

/// Body of `POST /plans/{plan_id}/runs`.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// A grouping for history (`{date}`: the start's date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Events that notify about this run and its steps, instead of the daemon's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify_on: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_notify: bool,
}

/// Answer of `POST /plans/{plan_id}/runs` and `.../retry`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StartResponse {
    pub run_id: Uuid,
    pub run: RunSummary,
    #[serde(default)]
    pub steps: Vec<String>,
    /// The sequence number of this start's first event: follow the run from there.
    #[serde(default)]
    pub first_seq: u64,
}

/// Body of `POST /runs/{run_id}/retry`.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    #[serde(default)]
    pub step: Option<String>,
}

/// Answer of `GET /runs`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunPage {
    pub runs: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/plans",
    tag = "plans",
    summary = "The plans of .sdlc/plans/ with their last run",
    responses(
        (status = 200, description = "Plans", body = Vec<PlanListing>)
    )
)]
pub(crate) async fn list_plans(
    State(state): State<AppState>,
) -> Result<Json<Vec<PlanListing>>, ApiError> {
    let mut plans = load::listings(state.root());
    for plan in &mut plans {
        let filter = RunFilter {
            plan: Some(plan.plan_id.clone()),
            limit: Some(1),
            ..RunFilter::default()
        };
        let last = state.with_db(move |db| db.list_runs(&filter)).await?;
        plan.last_run = last.first().map(RunSummary::from);
    }
    Ok(Json(plans))
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/plans/{plan_id}/runs",
    tag = "plans",
    summary = "Start a run of a plan",
    params(("plan_id" = String, Path, description = "The plan's id")),
    request_body(content = StartRequest, description = "Optional"),
    responses(
        (status = 201, description = "The run", body = StartResponse),
        (status = 404, description = "no such plan", body = crate::error::ErrorBody),
        (status = 422, description = "the plan or its variables are wrong", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn start_run(
    State(state): State<AppState>,
    Path(plan_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<StartResponse>), ApiError> {
    if !load::is_plan_id(&plan_id) {
        return Err(ApiError::not_found(format!(
            "'{plan_id}' is not a plan id: the API runs plans of .sdlc/plans/ by id"
        )));
    }
    let request = crate::api_support::optional_json::<StartRequest>(&body)?;
    let options = sdlc_core::plan::run::RunOptions {
        run_id: request.run_id,
        notify_on: request.notify_on,
        no_notify: request.no_notify,
    };
    let now = state.clock().now();
    let mut new = load::prepare_run(state.root(), &plan_id, request.vars, now)
        .await
        .map_err(|problems| {
            let missing = problems.problems.len() == 1
                && problems.problems[0].message.starts_with("no plan '");
            if missing {
                ApiError::not_found(problems.to_string())
            } else {
                ApiError::unprocessable(problems.to_string())
            }
        })?;
    options
        .apply(&mut new.run)
        .map_err(ApiError::unprocessable)?;
    let run = state.with_db(move |db| db.start_run(&new, now)).await?;
    state.waker().announce_run(run.run_id);
    Ok((
        StatusCode::CREATED,
        Json(StartResponse {
            run_id: run.run_id,
            run: RunSummary::from(&run),
            steps: Vec::new(),
            first_seq: 0,
        }),
    ))
}

/// Query of `GET /runs`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    pub plan: Option<String>,
    pub status: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/runs",
    tag = "plans",
    summary = "Plan runs, newest first",
    params(RunsQuery),
    responses(
        (status = 200, description = "A page of runs", body = RunPage),
        (status = 400, description = "a bad filter or cursor", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn list_runs(
    State(state): State<AppState>,
    Query(query): Query<RunsQuery>,
) -> Result<Json<RunPage>, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<RunStatus>().map_err(ApiError::bad_request)?),
    };
    let limit = match query.limit.as_deref() {
        None | Some("") => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit '{s}': use 1 to 10000")))?,
    };
    let before = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(parse_run_cursor(c).map_err(ApiError::bad_request)?),
    };
    let filter = RunFilter {
        plan: query.plan.filter(|p| !p.is_empty()),
        status,
        limit: Some(limit + 1),
        before,
    };
    let mut runs = state.with_db(move |db| db.list_runs(&filter)).await?;
    let next_cursor = if runs.len() > limit {
        runs.truncate(limit);
        runs.last().map(run_cursor)
    } else {
        None
    };
    Ok(Json(RunPage {
        runs: runs.iter().map(RunSummary::from).collect(),
        next_cursor,
    }))
}

fn parse_run_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text)
        .map_err(|_| ApiError::bad_request(format!("'{text}' is not a run id (a UUID)")))
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/runs/{run_id}",
    tag = "plans",
    summary = "One run with its steps",
    params(("run_id" = String, Path, description = "The run's id (a UUID)")),
    responses(
        (status = 200, description = "The run", body = RunDetailView),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such run", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn get_run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Result<Json<RunDetailView>, ApiError> {
    let id = parse_run_id(&run_id)?;
    let detail = state
        .with_db(move |db| {
            db.get_run(id)?
                .ok_or(sdlc_core::StoreError::RunNotFound(id))
        })
        .await?;
    Ok(Json(RunDetailView::new(
        &detail.run,
        &detail.steps,
        &detail.graph,
    )))
}

/// Query of `GET /runs/{run_id}/events`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    pub follow: Option<String>,
    /// Only events after this sequence number.
    pub after: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/runs/{run_id}/events",
    tag = "plans",
    summary = "A run's events as JSON lines",
    params(("run_id" = String, Path, description = "The run's id (a UUID)"), EventsQuery),
    responses(
        (status = 200, description = "One JSON event a line", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such run", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn run_events(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let id = parse_run_id(&run_id)?;
    let follow = matches!(query.follow.as_deref(), Some("1" | "true" | "yes"));
    // Subscribed before reading, so nothing committed in between is missed.
    let mut live = state.run_events().subscribe();
    let after = query.after;
    let (stored, finished) = state
        .with_db(move |db| {
            let run = db
                .get_run(id)?
                .ok_or(sdlc_core::StoreError::RunNotFound(id))?;
            Ok((
                db.run_events(id, after, usize::MAX)?,
                run.run.status.is_finished(),
            ))
        })
        .await?;
    let lines = |events: &[RunEvent]| {
        let mut text = Vec::new();
        for event in events {
            serde_json::to_writer(&mut text, event).expect("an event always serializes");
            text.push(b'\n');
        }
        text
    };
    let ndjson = [(header::CONTENT_TYPE, "application/x-ndjson")];
    // The run and its events are two reads: the run may have ended between them, and then
    // its last event is among those read (the live feed will not bring it again).
    let finished = finished || stored.iter().any(|e| e.event == "run_completed");
    if !follow || finished {
        return Ok((ndjson, lines(&stored)).into_response());
    }
    let mut next = stored
        .last()
        .map_or(after.map_or(0, |a| a + 1), |e| e.seq + 1);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let db_state = state.clone();
    tokio::spawn(async move {
        if sender.send(lines(&stored)).await.is_err() {
            return;
        }
        loop {
            let event = match live.recv().await {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the live feed: read what was missed from the database.
                    let from = next.checked_sub(1);
                    let Ok(missed) = db_state
                        .with_db(move |db| db.run_events(id, from, usize::MAX))
                        .await
                    else {
                        return;
                    };
                    let done = missed.iter().any(|e| e.event == "run_completed");
                    if let Some(last) = missed.last() {
                        next = last.seq + 1;
                    }
                    if sender.send(lines(&missed)).await.is_err() || done {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            };
            if event.run_id != id || event.seq < next {
                continue;
            }
            next = event.seq + 1;
            let done = event.event == "run_completed";
            if sender
                .send(lines(std::slice::from_ref(&event)))
                .await
                .is_err()
                || done
            {
                return;
            }
        }
    });
    Ok((ndjson, Body::new(crate::stream::ChannelBody::new(receiver))).into_response())
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/runs/{run_id}/cancel",
    tag = "plans",
    summary = "Cancel a run: steps not started are canceled, running ones stopped (SIGTERM, SIGKILL after the grace)",
    params(("run_id" = String, Path, description = "The run's id (a UUID)")),
    request_body(content = crate::api_support::CancelRequestBody, description = "Optional"),
    responses(
        (status = 200, description = "The run", body = RunSummary),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such run", body = crate::error::ErrorBody),
        (status = 409, description = "it ended", body = crate::error::ErrorBody),
        (status = 422, description = "a bad body", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn cancel_run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    caller: Option<axum::extract::Extension<crate::auth::Caller>>,
    body: axum::body::Bytes,
) -> Result<Json<RunSummary>, ApiError> {
    let id = parse_run_id(&run_id)?;
    let request =
        crate::api_support::optional_json::<crate::api_support::CancelRequestBody>(&body)?;
    let (by, grace_ms) = crate::api_support::cancel_terms(caller.map(|c| c.0), request)?;
    let now = state.clock().now();
    let by_stored = by.clone();
    let (run, stopping) = state
        .with_db(move |db| db.cancel_run_by(id, &by_stored, grace_ms, now))
        .await?;
    // The steps it asked to stop, for this daemon's engine to stop them.
    let grace = std::time::Duration::from_millis(grace_ms);
    for action in stopping {
        state.waker().stop(action, &by, grace);
    }
    state.waker().announce_run(id);
    Ok(Json(RunSummary::from(&run)))
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/runs/{run_id}/retry",
    tag = "plans",
    summary = "Retry a run's failed steps",
    params(("run_id" = String, Path, description = "The run's id (a UUID)")),
    request_body(content = RetryRequest, description = "Optional"),
    responses(
        (status = 200, description = "The run", body = StartResponse),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such run or step", body = crate::error::ErrorBody),
        (status = 409, description = "nothing to retry", body = crate::error::ErrorBody),
        (status = 422, description = "a bad body", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn retry_run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<StartResponse>, ApiError> {
    let id = parse_run_id(&run_id)?;
    let step = crate::api_support::optional_json::<RetryRequest>(&body)?.step;
    let now = state.clock().now();
    let retried = state
        .with_db(move |db| db.retry_run(id, step.as_deref(), now))
        .await?;
    state.waker().announce_run(id);
    Ok(Json(StartResponse {
        run_id: id,
        run: RunSummary::from(&retried.run),
        steps: retried.steps,
        first_seq: retried.first_seq,
    }))
}
