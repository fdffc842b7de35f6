//! The plans pages: `GET /plans` (every plan of the project, its graph, problems, last run),
//! `GET /plans/{plan_id}` (one plan: graph, a form for its variables that starts a run,
//! recent runs) and `GET /plan-runs/{run_id}` (a run: the graph coloured by step status,
//! updated live, a timeline of the steps, each step's attempts, reason and log excerpt,
//! cancel and retry).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use sdlc_core::plan::view::{PlanListing, RunSummary};
use sdlc_core::plan::{RunStatus, StepStatus, load};
use sdlc_core::store::RunFilter;

use super::format::{self, TimeCell};
use super::graph;
use super::{Chrome, PageResult, done, error_page, page_session, render};
use crate::{ApiError, AppState};

/// Recent runs shown on a plan's page.
const RECENT_RUNS: usize = 20;

pub struct PlanCard {
    pub listing: PlanListing,
    pub graph: String,
    pub last_status: &'static str,
    pub last_class: &'static str,
    pub last_run: String,
    pub last_at: Option<TimeCell>,
}

#[derive(askama::Template)]
#[template(path = "plans.html")]
pub struct PlansPage {
    pub chrome: Chrome,
    pub plans: Vec<PlanCard>,
}

pub fn run_class(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "st-running",
        RunStatus::Succeeded => "st-completed",
        RunStatus::Failed => "st-failed",
        RunStatus::Canceled => "st-skipped",
    }
}

/// `GET /plans`.
pub async fn plans(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    done(plans_page(&state, &headers, &uri).await)
}

async fn plans_page(state: &AppState, headers: &HeaderMap, uri: &Uri) -> PageResult {
    let session = page_session(state, headers, uri).await?;
    let now = state.clock().now();
    let root = state.root().clone();
    let listings = load::listings(&root);
    let ids: Vec<String> = listings.iter().map(|l| l.plan_id.clone()).collect();
    let last_runs = state
        .with_db(move |db| {
            ids.into_iter()
                .map(|plan| {
                    db.list_runs(&RunFilter {
                        plan: Some(plan),
                        limit: Some(1),
                        ..RunFilter::default()
                    })
                    .map(|runs| runs.into_iter().next())
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|err| error_page(&err))?;
    let plans = listings
        .into_iter()
        .zip(last_runs)
        .map(|(listing, last)| {
            let graph = match load::read(&root, &listing.plan_id) {
                Ok((graph, _)) => graph::svg(&graph, &[]),
                Err(_) => String::new(),
            };
            PlanCard {
                graph,
                last_status: last.as_ref().map_or("", |r| r.status.as_str()),
                last_class: last.as_ref().map_or("", |r| run_class(r.status)),
                last_run: last
                    .as_ref()
                    .map(|r| r.run_id.to_string())
                    .unwrap_or_default(),
                last_at: last.as_ref().map(|r| TimeCell::new(r.created_at, now)),
                listing,
            }
        })
        .collect();
    let page = PlansPage {
        chrome: Chrome::new("plans", "Plans", &session.session.csrf),
        plans,
    };
    Ok(render(&page))
}

pub struct VarField {
    pub name: String,
    pub value: String,
    pub required: bool,
}

pub struct RunRow {
    pub id: String,
    pub short_id: String,
    pub status: &'static str,
    pub class: &'static str,
    pub started: TimeCell,
    pub duration: String,
    pub progress: u32,
}

#[derive(askama::Template)]
#[template(path = "plan.html")]
pub struct PlanPage {
    pub chrome: Chrome,
    pub plan_id: String,
    pub description: String,
    pub source: String,
    pub problems: Vec<String>,
    pub graph: String,
    pub vars: Vec<VarField>,
    pub runs: Vec<RunRow>,
}

fn run_row(run: &RunSummary, now: DateTime<Utc>) -> RunRow {
    RunRow {
        id: run.run_id.to_string(),
        short_id: format::short_id(run.run_id),
        status: run.status.as_str(),
        class: run_class(run.status),
        started: TimeCell::new(run.created_at, now),
        duration: run.duration_ms.map(format::duration).unwrap_or_default(),
        progress: run.progress,
    }
}

/// `GET /plans/{plan_id}`.
pub async fn plan(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(plan_id): Path<String>,
) -> Response {
    done(plan_page(&state, &headers, &uri, &plan_id).await)
}

async fn plan_page(state: &AppState, headers: &HeaderMap, uri: &Uri, plan_id: &str) -> PageResult {
    let session = page_session(state, headers, uri).await?;
    if !load::is_plan_id(plan_id) {
        return Err(error_page(&ApiError::not_found(format!(
            "'{plan_id}' is not a plan id: plans are .sdlc/plans/<id>.json"
        ))));
    }
    let now = state.clock().now();
    let (graph, source, problems, vars) = match load::read(state.root(), plan_id) {
        Ok((graph, path)) => {
            let required = graph.required_vars();
            let mut vars: BTreeMap<String, VarField> = graph
                .plan
                .vars
                .iter()
                .map(|(name, value)| {
                    let field = VarField {
                        name: name.clone(),
                        value: value.clone(),
                        required: false,
                    };
                    (name.clone(), field)
                })
                .collect();
            for name in required.keys() {
                vars.entry(name.clone()).or_insert(VarField {
                    name: name.clone(),
                    value: String::new(),
                    required: true,
                });
            }
            let svg = graph::svg(&graph, &[]);
            let description = graph.plan.description.clone().unwrap_or_default();
            (
                (svg, description),
                path.display().to_string(),
                Vec::new(),
                vars.into_values().collect(),
            )
        }
        Err(problems)
            if problems
                .problems
                .iter()
                .any(|p| p.message.starts_with("no plan '")) =>
        {
            return Err(error_page(&ApiError::not_found(problems.to_string())));
        }
        Err(problems) => (
            (String::new(), String::new()),
            problems.origin.clone(),
            problems.problems.iter().map(|p| p.to_string()).collect(),
            Vec::new(),
        ),
    };
    let filter = RunFilter {
        plan: Some(plan_id.to_string()),
        limit: Some(RECENT_RUNS),
        ..RunFilter::default()
    };
    let runs = state
        .with_db(move |db| db.list_runs(&filter))
        .await
        .map_err(|err| error_page(&err))?;
    let page = PlanPage {
        chrome: Chrome::new("plans", plan_id.to_string(), &session.session.csrf),
        plan_id: plan_id.to_string(),
        description: graph.1,
        source,
        problems,
        graph: graph.0,
        vars,
        runs: runs
            .iter()
            .map(|run| run_row(&RunSummary::from(run), now))
            .collect(),
    };
    Ok(render(&page))
}

pub struct StepRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub status: &'static str,
    pub class: &'static str,
    pub attempt: u32,
    pub started: Option<TimeCell>,
    pub duration: String,
    pub reason: String,
    pub action: String,
    pub log_excerpt: String,
    pub attempts: Vec<String>,
    /// Where its bar starts and how long it is on the timeline, in percent of the run.
    pub bar_left: f64,
    pub bar_width: f64,
}

#[derive(askama::Template)]
#[template(path = "plan_run.html")]
pub struct PlanRunPage {
    pub chrome: Chrome,
    pub run: RunSummary,
    pub status_class: &'static str,
    pub started: TimeCell,
    pub finished: Option<TimeCell>,
    pub duration: String,
    pub graph: String,
    pub steps: Vec<StepRow>,
    pub vars: Vec<(String, String)>,
    pub can_cancel: bool,
    pub can_retry: bool,
}

/// `GET /plan-runs/{run_id}`.
pub async fn plan_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(run_id): Path<String>,
) -> Response {
    done(plan_run_page(&state, &headers, &uri, &run_id).await)
}

async fn plan_run_page(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    run_id: &str,
) -> PageResult {
    let session = page_session(state, headers, uri).await?;
    let id = Uuid::parse_str(run_id).map_err(|_| {
        error_page(&ApiError::bad_request(format!(
            "'{run_id}' is not a run id (a UUID)"
        )))
    })?;
    let now = state.clock().now();
    let (detail, actions) = state
        .with_db(move |db| {
            let Some(detail) = db.get_run(id)? else {
                return Ok((None, Vec::new()));
            };
            let actions = detail
                .steps
                .iter()
                .map(|step| match step.action {
                    Some(action) => db.get(action),
                    None => Ok(None),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((Some(detail), actions))
        })
        .await
        .map_err(|err| error_page(&err))?;
    let detail = detail
        .ok_or_else(|| error_page(&ApiError::not_found(format!("no plan run with id {id}"))))?;
    let view = sdlc_core::plan::view::RunDetailView::new(&detail.run, &detail.steps, &detail.graph);
    let run = view.run.clone();
    let statuses: Vec<StepStatus> = detail.steps.iter().map(|s| s.status).collect();
    let start = detail.run.created_at;
    let end = detail.run.finished_at.unwrap_or(now).max(start);
    let span = ((end - start).num_milliseconds().max(1)) as f64;
    let steps = detail
        .steps
        .iter()
        .zip(&view.steps_detail)
        .zip(&actions)
        .map(|((state, spec), action)| {
            let from = state
                .started_at
                .map(|at| (at - start).num_milliseconds() as f64);
            let to = state
                .finished_at
                .or(state.started_at.map(|_| now))
                .map(|at| (at - start).num_milliseconds() as f64);
            let (bar_left, bar_width) = match (from, to) {
                (Some(from), Some(to)) => (
                    (from / span * 100.0).clamp(0.0, 100.0),
                    ((to - from) / span * 100.0).clamp(0.5, 100.0),
                ),
                _ => (0.0, 0.0),
            };
            let action_view = action.as_ref().map(sdlc_core::view::ActionView::from);
            StepRow {
                id: state.step_id.clone(),
                name: spec.name.clone().unwrap_or_default(),
                kind: spec.kind.clone(),
                target: spec.target.clone(),
                status: state.status.as_str(),
                class: graph::step_class(Some(state.status)),
                attempt: state.attempt,
                started: state.started_at.map(|at| TimeCell::new(at, now)),
                duration: state
                    .duration_ms()
                    .map(format::duration)
                    .unwrap_or_default(),
                reason: state.reason.clone().unwrap_or_default(),
                action: state.action.map(|a| a.to_string()).unwrap_or_default(),
                log_excerpt: action_view
                    .as_ref()
                    .and_then(|v| v.log_excerpt.clone())
                    .unwrap_or_default(),
                attempts: action_view
                    .as_ref()
                    .map(|v| {
                        v.attempts
                            .iter()
                            .map(|a| {
                                let why = a
                                    .reason
                                    .as_deref()
                                    .map_or(String::new(), |r| format!(": {r}"));
                                format!("attempt {} {}{why}", a.attempt, a.outcome)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                bar_left,
                bar_width,
            }
        })
        .collect();
    let finished = detail.run.status != RunStatus::Running;
    let page = PlanRunPage {
        chrome: Chrome::new(
            "plans",
            format!("{} run", run.plan_id),
            &session.session.csrf,
        ),
        status_class: run_class(run.status),
        started: TimeCell::new(start, now),
        finished: detail.run.finished_at.map(|at| TimeCell::new(at, now)),
        duration: run.duration_ms.map(format::duration).unwrap_or_default(),
        graph: graph::svg(&detail.graph, &statuses),
        steps,
        vars: detail.run.vars.clone().into_iter().collect(),
        can_cancel: !finished,
        can_retry: finished && detail.run.status != RunStatus::Succeeded,
        run,
    };
    Ok(render(&page))
}
