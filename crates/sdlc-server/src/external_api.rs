//! Runs reported from outside (`sdlc_core::external`): `POST /api/orchestrator/actions/external`
//! records one that started elsewhere, and `PATCH /api/orchestrator/actions/{id}` with a
//! `status` reports what became of it (a PATCH without `status` is an edit, `api::edit_action`).

use axum::Json;
use axum::Router;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use sdlc_core::external::{self, ExternalReport, ExternalStart};
use sdlc_core::service::ActionEdit;
use sdlc_core::view::ActionView;

use crate::api_support::JsonBody;
use crate::auth::Caller;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/actions/external", post(start))
}

/// Answer of `POST /actions/external`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExternalStarted {
    pub id: Uuid,
    pub action: ActionView,
}

/// What `PATCH /actions/{id}` takes: a report (with `status`) or an edit (without).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ActionPatch {
    Report(ExternalReport),
    Edit(ActionEdit),
}

impl ActionPatch {
    /// Reads a PATCH body: a report when it has a `status`, else an edit; each refused with
    /// its own message.
    pub fn parse(body: serde_json::Value) -> Result<ActionPatch, ApiError> {
        let bad =
            |err: serde_json::Error| ApiError::unprocessable(format!("the request body: {err}"));
        match body.get("status") {
            Some(_) => serde_json::from_value(body)
                .map(ActionPatch::Report)
                .map_err(bad),
            None => serde_json::from_value(body)
                .map(ActionPatch::Edit)
                .map_err(bad),
        }
    }
}

/// The token's name, when a named token made the request.
fn reporter(caller: Option<Extension<Caller>>) -> Option<String> {
    caller.and_then(|c| c.0.name)
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/actions/external",
    tag = "actions",
    summary = "Record a run that started (or is queued) elsewhere; report its end with PATCH /actions/{id}",
    request_body = ExternalStart,
    responses(
        (status = 201, description = "Recorded, running (or pending when queued)", body = ExternalStarted),
        (status = 200, description = "The same start sent again (same id): the stored run", body = ExternalStarted),
        (status = 409, description = "another action has that id", body = crate::error::ErrorBody),
        (status = 422, description = "a bad body", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    JsonBody(request): JsonBody<ExternalStart>,
) -> Result<(StatusCode, Json<ExternalStarted>), ApiError> {
    let now = state.clock().now();
    let by = reporter(caller);
    let action =
        external::start_action(&request, by.as_deref(), now).map_err(ApiError::unprocessable)?;
    let (action, status) = crate::api_support::insert_once(&state, action, |existing, new| {
        existing.is_external() && existing.label == new.label
    })
    .await?;
    Ok((
        status,
        Json(ExternalStarted {
            id: action.id,
            action: ActionView::from(&action),
        }),
    ))
}

/// Applies `report` to the run `id` (the PATCH with a `status`).
pub(crate) async fn report(
    state: &AppState,
    id: Uuid,
    report: ExternalReport,
) -> Result<Json<ActionView>, ApiError> {
    let checked = external::check(&report).map_err(ApiError::unprocessable)?;
    let log = report
        .log
        .as_deref()
        .and_then(|text| external::stored_log(text, state.log_cap()));
    let now = state.clock().now();
    let action = state
        .with_db(move |db| db.report(id, &checked, log.as_ref(), now))
        .await?;
    Ok(Json(ActionView::from(&action)))
}
