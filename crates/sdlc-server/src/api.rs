//! The management API's handlers for actions, webhook routes, tools and the daemon (the
//! router, with the token check in front of every route, is `routes`):
//!
//! Actions: `GET /actions` (filters `status`, `tool`, `limit`), `POST /actions`,
//! `GET|DELETE /actions/{id}`, `POST /actions/{id}/cancel|pause|resume|run`,
//! `GET /actions/{id}/next?count=N`, `GET /actions/{id}/log` (`logs_api`).
//! Webhook routes: `GET|POST /webhooks/routes` (POST also at `/webhooks`),
//! `DELETE /webhooks/routes/{id or path}`, `GET /webhooks/deliveries` (the last requests and
//! their outcomes), `POST /webhooks/preview` (a template rendered against a
//! sample body). Tools: `GET /tools`, and `tools_api`. Daemon: `GET /status`,
//! `POST /check` (verify the database file). Dashboard: `GET /events` (the live stream),
//! `POST /ui/login-token`. Plans and runs: `plans_api`. Tokens: `tokens_api`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use sdlc_core::service::{NewAction, prepare_action, prepare_route};
use sdlc_core::view::ActionView;
use sdlc_core::webhook::{NewRoute, RouteView};
use sdlc_core::{ListFilter, StatusKind};

use crate::api_support::{CancelRequestBody, JsonBody, cancel_terms, insert_once, optional_json};
use crate::{ApiError, AppState, auth};

/// Query of `GET /actions`. Strings, so a bad value gets our message, not a generic one.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub status: Option<String>,
    pub tool: Option<String>,
    pub limit: Option<String>,
    /// With any of these, the list is a history query (newest by run time).
    pub label: Option<String>,
    pub run_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

impl ListQuery {
    fn to_filter(&self) -> Result<ListFilter, ApiError> {
        let status = match self.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(s.parse::<StatusKind>().map_err(ApiError::bad_request)?),
        };
        let limit = match self.limit.as_deref() {
            None | Some("") => None,
            Some(s) => Some(s.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!("limit '{s}' is not a whole number"))
            })?),
        };
        Ok(ListFilter {
            status,
            tool: self.tool.clone().filter(|t| !t.is_empty()),
            limit,
        })
    }
}

/// Answer of `POST /actions`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AddResponse {
    pub id: Uuid,
    pub action: ActionView,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/actions",
    tag = "actions",
    summary = "List actions, newest first",
    params(ListQuery),
    responses(
        (status = 200, description = "Actions", body = Vec<ActionView>),
        (status = 400, description = "a bad filter", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn list_actions(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ActionView>>, ApiError> {
    let history = [&query.label, &query.run_id, &query.since, &query.until]
        .iter()
        .any(|f| f.as_deref().is_some_and(|v| !v.trim().is_empty()));
    if history {
        let request = crate::history_api::HistoryQuery {
            status: query.status.clone(),
            tool: query.tool.clone(),
            label: query.label.clone(),
            run_id: query.run_id.clone(),
            since: query.since.clone(),
            until: query.until.clone(),
            limit: query.limit.clone(),
            series: None,
            cursor: None,
        }
        .check(state.clock().now(), usize::MAX, usize::MAX)
        .map_err(ApiError::bad_request)?;
        let page = state
            .with_db(move |db| {
                db.history_page(
                    &request.filter,
                    None,
                    request.limit,
                    sdlc_core::store::Bodies::With,
                )
            })
            .await?;
        return Ok(Json(page.items.iter().map(ActionView::from).collect()));
    }
    let filter = query.to_filter()?;
    let actions = state.with_db(move |db| db.list(&filter)).await?;
    Ok(Json(actions.iter().map(ActionView::from).collect()))
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/actions",
    tag = "actions",
    summary = "Add an action (a tool run or a plan start)",
    request_body = NewAction,
    responses(
        (status = 201, description = "Added", body = AddResponse),
        (status = 200, description = "An action with this `id` was added before from the same request: that one", body = AddResponse),
        (status = 409, description = "An action with this `id` exists and is another one", body = crate::error::ErrorBody),
        (status = 422, description = "the request cannot be stored: it names what is wrong", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn add_action(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<NewAction>,
) -> Result<(StatusCode, Json<AddResponse>), ApiError> {
    let now = state.clock().now();
    let prepared = prepare_action(state.root(), request, now)
        .await
        .map_err(|err| ApiError::unprocessable(err.0))?;
    let (action, status) = insert_once(&state, prepared.action, |existing, new| {
        existing.label == new.label && existing.tool_name == new.tool_name
    })
    .await?;
    state.waker().wake();
    Ok((
        status,
        Json(AddResponse {
            id: action.id,
            action: ActionView::from(&action),
            warnings: prepared.warnings,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/actions/{id}",
    tag = "actions",
    summary = "One action",
    params(("id" = String, Path, description = "The action's id (a UUID)")),
    responses(
        (status = 200, description = "The action", body = ActionView),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such action", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn get_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ActionView>, ApiError> {
    let id = parse_id(&id)?;
    let action = state
        .with_db(move |db| db.get(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no action with id {id}")))?;
    Ok(Json(ActionView::from(&action)))
}

/// `PATCH /actions/{id}`: with a `status`, a report on a run reported from outside
/// (`external_api::report`); without, an `ActionEdit`, checked as `add` checks a new action.
#[utoipa::path(
    patch,
    path = "/api/orchestrator/actions/{id}",
    tag = "actions",
    summary = "Change a pending or paused action, or report the status of a run reported from outside",
    params(("id" = String, Path, description = "The action's id (a UUID)")),
    request_body = crate::external_api::ActionPatch,
    responses(
        (status = 200, description = "The action as changed", body = ActionView),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such action", body = crate::error::ErrorBody),
        (status = 409, description = "it started or changed meanwhile; or a report on a run of the daemon's own, or on one that ended", body = crate::error::ErrorBody),
        (status = 422, description = "the change cannot be stored, or a bad status", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn edit_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Json<ActionView>, ApiError> {
    let id = parse_id(&id)?;
    let edit = match crate::external_api::ActionPatch::parse(body)? {
        crate::external_api::ActionPatch::Report(report) => {
            return crate::external_api::report(&state, id, report).await;
        }
        crate::external_api::ActionPatch::Edit(edit) => edit,
    };
    let old = state
        .with_db(move |db| db.get(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no action with id {id}")))?;
    let now = state.clock().now();
    let prepared = sdlc_core::service::prepare_edit(state.root(), &old, edit, now)
        .await
        .map_err(|err| ApiError::unprocessable(err.0))?;
    let new = prepared.action;
    let stored = state
        .with_db(move |db| db.replace_edited(&old, &new, now))
        .await?;
    // The due time may have moved earlier.
    state.waker().wake();
    Ok(Json(ActionView::from(&stored)))
}

/// Answer of `GET /actions/short/{fragment}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShortIdMatches {
    /// The actions whose id starts or ends with the fragment (at most 2: one is an answer,
    /// two say it is ambiguous).
    pub ids: Vec<Uuid>,
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/actions/short/{fragment}",
    tag = "actions",
    summary = "The actions a short id (6 to 31 hex digits of the start or end of an id) names",
    params(("fragment" = String, Path, description = "Hex digits, such as the dashboard's short id")),
    responses(
        (status = 200, description = "At most two matching ids", body = ShortIdMatches),
        (status = 400, description = "not 6 to 31 hex digits", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn match_short_id(
    State(state): State<AppState>,
    Path(fragment): Path<String>,
) -> Result<Json<ShortIdMatches>, ApiError> {
    let fragment = sdlc_core::model::short_id_fragment(&fragment).ok_or_else(|| {
        ApiError::bad_request(format!(
            "'{fragment}' is not a short id: give 6 to 31 hex digits of an id's start or end"
        ))
    })?;
    let ids = state
        .with_db(move |db| db.ids_matching(&fragment, 2))
        .await?;
    Ok(Json(ShortIdMatches { ids }))
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/actions/{id}/cancel",
    tag = "actions",
    summary = "Cancel an action: stop a running run, or a pending one before it runs",
    params(("id" = String, Path, description = "The action's id (a UUID)")),
    request_body(content = CancelRequestBody, description = "Optional"),
    responses(
        (status = 200, description = "The action: canceled, or (running) asked to stop, ending canceled", body = ActionView),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such action", body = crate::error::ErrorBody),
        (status = 409, description = "it is neither pending nor running", body = crate::error::ErrorBody),
        (status = 422, description = "a bad body", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn cancel_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Option<axum::extract::Extension<auth::Caller>>,
    body: axum::body::Bytes,
) -> Result<Json<ActionView>, ApiError> {
    let id = parse_id(&id)?;
    let request = optional_json::<CancelRequestBody>(&body)?;
    let (by, grace_ms) = cancel_terms(caller.map(|c| c.0), request)?;
    let now = state.clock().now();
    let by_stored = by.clone();
    let action = state
        .with_db(move |db| db.cancel_by(id, &by_stored, grace_ms, now))
        .await?;
    if action.cancel.is_some() {
        state
            .waker()
            .stop(id, &by, std::time::Duration::from_millis(grace_ms));
    }
    Ok(Json(ActionView::from(&action)))
}

/// Body of `POST /actions/{id}/pause` (optional).
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PauseRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/actions/{id}/pause",
    tag = "actions",
    summary = "Hold an action",
    params(("id" = String, Path, description = "The action's id (a UUID)")),
    request_body(content = PauseRequest, description = "Optional"),
    responses(
        (status = 200, description = "The paused action", body = ActionView),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such action", body = crate::error::ErrorBody),
        (status = 409, description = "nothing to pause", body = crate::error::ErrorBody),
        (status = 422, description = "a bad body", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn pause_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ActionView>, ApiError> {
    let id = parse_id(&id)?;
    let request: PauseRequest = if body.is_empty() {
        PauseRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| ApiError::unprocessable(format!("request body: {err}")))?
    };
    if let Some(reason) = &request.reason {
        sdlc_core::service::check_text("reason", reason).map_err(ApiError::unprocessable)?;
    }
    let now = state.clock().now();
    let action = state
        .with_db(move |db| db.pause(id, request.reason, now))
        .await?;
    Ok(Json(ActionView::from(&action)))
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/actions/{id}/resume",
    tag = "actions",
    summary = "Release a paused action",
    params(("id" = String, Path, description = "The action's id (a UUID)")),
    responses(
        (status = 200, description = "The resumed action", body = ActionView),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such action", body = crate::error::ErrorBody),
        (status = 409, description = "it is not paused", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn resume_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ActionView>, ApiError> {
    let id = parse_id(&id)?;
    let now = state.clock().now();
    let action = state.with_db(move |db| db.resume(id, now)).await?;
    state.waker().wake();
    Ok(Json(ActionView::from(&action)))
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/actions/{id}/run",
    tag = "actions",
    summary = "Fire one manual run now",
    params(("id" = String, Path, description = "The action's id (a UUID)")),
    responses(
        (status = 201, description = "The new run", body = ActionView),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such action", body = crate::error::ErrorBody),
        (status = 409, description = "it cannot run now", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn run_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ActionView>), ApiError> {
    let id = parse_id(&id)?;
    let now = state.clock().now();
    let action = state.with_db(move |db| db.run_now(id, now)).await?;
    state.waker().wake();
    Ok((StatusCode::CREATED, Json(ActionView::from(&action))))
}

/// Query of `GET /actions/{id}/next`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NextQuery {
    pub count: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/actions/{id}/next",
    tag = "actions",
    summary = "The coming due times",
    params(("id" = String, Path, description = "The action's id (a UUID)"), NextQuery),
    responses(
        (status = 200, description = "Due times, UTC", body = Vec<chrono::DateTime<chrono::Utc>>),
        (status = 400, description = "not a UUID, or a bad count", body = crate::error::ErrorBody),
        (status = 404, description = "no such action", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn next_runs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<NextQuery>,
) -> Result<Json<Vec<chrono::DateTime<chrono::Utc>>>, ApiError> {
    let id = parse_id(&id)?;
    let count = match query.count.as_deref() {
        None | Some("") => 5,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "count '{text}' must be a whole number from 1 to 1000"
                ))
            })?,
    };
    let head = state
        .with_db(move |db| db.series_head(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no action with id {id}")))?;
    Ok(Json(sdlc_core::policy::coming_runs(&head, count)))
}

#[utoipa::path(
    delete,
    path = "/api/orchestrator/actions/{id}",
    tag = "actions",
    summary = "Remove an action that is not running",
    params(("id" = String, Path, description = "The action's id (a UUID)")),
    responses(
        (status = 200, description = "The removed action", body = ActionView),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such action", body = crate::error::ErrorBody),
        (status = 409, description = "it is running", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn delete_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ActionView>, ApiError> {
    let id = parse_id(&id)?;
    let action = state.with_db(move |db| db.delete(id)).await?;
    Ok(Json(ActionView::from(&action)))
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/webhooks/routes",
    tag = "webhooks",
    summary = "Webhook routes",
    responses(
        (status = 200, description = "Routes", body = Vec<RouteView>)
    )
)]
pub(crate) async fn list_routes(
    State(state): State<AppState>,
) -> Result<Json<Vec<RouteView>>, ApiError> {
    let routes = state.with_db(|db| db.routes()).await?;
    Ok(Json(routes.iter().map(RouteView::from).collect()))
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/webhooks/routes",
    tag = "webhooks",
    summary = "Register a webhook route",
    request_body = NewRoute,
    responses(
        (status = 201, description = "The route", body = RouteView),
        (status = 409, description = "the path is taken", body = crate::error::ErrorBody),
        (status = 422, description = "the route cannot be stored", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn add_route(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<NewRoute>,
) -> Result<(StatusCode, Json<RouteView>), ApiError> {
    let route = prepare_route(state.root(), request, state.clock().now())
        .map_err(|err| ApiError::unprocessable(err.0))?;
    let stored = route.clone();
    state.with_db(move |db| db.insert_route(&stored)).await?;
    state.cache_route(&route.path, Some(route.clone()));
    Ok((StatusCode::CREATED, Json(RouteView::from(&route))))
}

#[utoipa::path(
    delete,
    path = "/api/orchestrator/webhooks/routes/{key}",
    tag = "webhooks",
    summary = "Remove a route by id or path",
    params(("key" = String, Path, description = "The route's id or path")),
    responses(
        (status = 200, description = "The removed route", body = RouteView),
        (status = 404, description = "no such route", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn delete_route(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<RouteView>, ApiError> {
    let route = state.with_db(move |db| db.delete_route(&key)).await?;
    state.cache_route(&route.path, None);
    Ok(Json(RouteView::from(&route)))
}

/// Query of `GET /webhooks/deliveries`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    pub path: Option<String>,
    pub limit: Option<String>,
}

/// The last webhook requests, newest first (`delivery_log`): `?path=` one route's,
/// `?limit=` at most that many (100 unless said, at most the log's size).
#[utoipa::path(
    get,
    path = "/api/orchestrator/webhooks/deliveries",
    tag = "webhooks",
    summary = "The last webhook requests and what became of each",
    params(DeliveriesQuery),
    responses(
        (status = 200, description = "Requests, newest first", body = Vec<crate::delivery_log::DeliveryRecord>),
        (status = 400, description = "a bad limit", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<Vec<crate::delivery_log::DeliveryRecord>>, ApiError> {
    let limit = match query
        .limit
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=crate::delivery_log::KEPT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit '{text}' must be a whole number from 1 to {}",
                    crate::delivery_log::KEPT
                ))
            })?,
    };
    let path = query
        .path
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|path| sdlc_core::webhook::normalize_path(path).unwrap_or_else(|_| path.to_string()));
    Ok(Json(state.deliveries().recent(path.as_deref(), limit)))
}

/// Body of `POST /webhooks/preview`: a template and a sample request.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    #[serde(alias = "template")]
    pub input_template: String,
    /// The sample body, as the sender would send it.
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Renders a route's input template against a sample body, as ingress would.
#[utoipa::path(
    post,
    path = "/api/orchestrator/webhooks/preview",
    tag = "webhooks",
    summary = "Render an input template against a sample request",
    request_body = PreviewRequest,
    responses(
        (status = 200, description = "`{\"input\"}`: the rendered input", body = PreviewAnswer),
        (status = 422, description = "the template cannot be rendered", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn preview_template(
    JsonBody(request): JsonBody<PreviewRequest>,
) -> Result<Json<PreviewAnswer>, ApiError> {
    sdlc_core::webhook::check_template(&request.input_template).map_err(ApiError::unprocessable)?;
    let delivery = sdlc_core::webhook::Delivery {
        id: Uuid::nil(),
        route_id: Uuid::nil(),
        route_path: "preview".into(),
        tool_name: String::new(),
        input_template: request.input_template,
        headers: request
            .headers
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect(),
        delivery_id: None,
        received_at: chrono::Utc::now(),
        body: request.body.into_bytes(),
    };
    let input = sdlc_core::webhook::render_input(&delivery).map_err(ApiError::unprocessable)?;
    Ok(Json(PreviewAnswer { input }))
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/tools",
    tag = "tools",
    summary = "The names of the project's tools",
    responses(
        (status = 200, description = "Tool names", body = Vec<String>)
    )
)]
pub(crate) async fn list_tools(State(state): State<AppState>) -> Json<Vec<String>> {
    Json(sdlc_core::tool::list_tools(state.root()))
}

/// `POST /ui/login-token`: a one-time token for the dashboard's login (`sdlc orchestrate ui`).
#[utoipa::path(
    post,
    path = "/api/orchestrator/ui/login-token",
    tag = "daemon",
    summary = "A one-time dashboard login",
    responses(
        (status = 200, description = "The token, its expiry and the login path", body = LoginToken)
    )
)]
pub(crate) async fn login_token(State(state): State<AppState>) -> Json<LoginToken> {
    let (token, expires_at) = state.login_tokens().mint(state.clock().now());
    Json(LoginToken {
        path: format!("/login?token={token}"),
        token,
        expires_at,
    })
}

/// A one-time dashboard login.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginToken {
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Where to send the browser: `/login?token=...`.
    pub path: String,
}

/// A template rendered against a sample request.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewAnswer {
    /// The tool's input as the route would give it.
    pub input: Value,
}

/// Verifies every page of the database (the file is closed and reopened around it, so other
/// requests wait that long).
#[utoipa::path(
    post,
    path = "/api/orchestrator/check",
    tag = "daemon",
    summary = "Verify the database",
    responses(
        (status = 200, description = "What the check found", body = Object),
        (status = 500, description = "the check could not run", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn check(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let started = std::time::Instant::now();
    let repaired = state.with_db(|db| db.verify()).await?;
    Ok(Json(json!({
        "db": state.db().location(),
        "ok": true,
        "repaired": repaired,
        "took_ms": started.elapsed().as_millis() as u64,
    })))
}

/// The daemon's state. Answers even while the database refuses work: `storage` then says
/// why (`state: "degraded"`, with the fault) and the counts it cannot read are null.
#[utoipa::path(
    get,
    path = "/api/orchestrator/status",
    tag = "daemon",
    summary = "The daemon's state: storage, counts, inbox, engine",
    responses(
        (status = 200, description = "Status", body = Object)
    )
)]
pub(crate) async fn status(State(state): State<AppState>) -> Json<Value> {
    let counted = state
        .with_db(|db| Ok((db.count_by_status()?, db.inbox_len()?)))
        .await;
    let (counts, inbox) = match counted {
        Ok((counts, inbox)) => {
            let counts: serde_json::Map<String, Value> = counts
                .into_iter()
                .map(|(kind, n)| (kind.to_string(), json!(n)))
                .collect();
            (json!(counts), json!(inbox))
        }
        Err(_) => (Value::Null, Value::Null),
    };
    let storage = match state.db().fault() {
        None => json!({ "state": "ok" }),
        Some(fault) => json!({
            "state": "degraded",
            "disk_full": fault.disk_full,
            "error": fault.detail,
            "since": fault.since,
            "reopen_attempts": fault.reopen_attempts,
        }),
    };
    let mut answer = json!({
        "pid": std::process::id(),
        "root": state.root(),
        "db": state.db().location(),
        "storage": storage,
        "actions": counts,
        "webhook_inbox": inbox,
    });
    // The engine's own view: how long it has run and how many of its slots are taken.
    if let Some(stats) = state.engine_stats() {
        let now = state.clock().now();
        answer["engine"] = json!(stats.snapshot(now));
    }
    Json(answer)
}

fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text)
        .map_err(|_| ApiError::bad_request(format!("'{text}' is not an action id (a UUID)")))
}
