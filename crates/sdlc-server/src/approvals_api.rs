//! `POST /api/orchestrator/actions/{id}/approve` and `.../reject` with `{"by", "note"}` (both
//! optional): the decision on an action awaiting approval. The approver recorded is what the
//! caller's credentials prove (see `decider`); a named token cannot sign for someone else.

use axum::Json;
use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use sdlc_core::model::Decider;
use sdlc_core::view::ActionView;

use crate::auth::Caller;
use crate::{ApiError, AppState, Verdict};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/actions/{id}/approve", post(approve))
        .route("/actions/{id}/reject", post(reject))
}

/// Body of an approval decision.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// Who decided when the request does not say and no named token made it.
const DEFAULT_APPROVER: &str = "api";

/// The same, for a dashboard session opened with the daemon's own token.
const DASHBOARD_APPROVER: &str = "dashboard";

/// Who is recorded as deciding: a named token's name, whatever the body says (its `by` is
/// kept beside it as `stated_by`); with the daemon's own token, whose holder owns the daemon,
/// the body's `by`, else "api" (or "dashboard" from a page).
fn decider(caller: Option<Caller>, stated: Option<String>) -> Decider {
    match caller {
        Some(Caller {
            name: Some(name), ..
        }) => Decider { name, stated },
        Some(caller) if caller.via_session => {
            Decider::named(stated.unwrap_or_else(|| DASHBOARD_APPROVER.to_string()))
        }
        _ => Decider::named(stated.unwrap_or_else(|| DEFAULT_APPROVER.to_string())),
    }
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/actions/{id}/approve",
    tag = "approvals",
    summary = "Approve an action awaiting approval",
    params(("id" = String, Path, description = "The action's id (a UUID)")),
    request_body(content = Decision, description = "Optional"),
    responses(
        (status = 200, description = "The action", body = ActionView),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such action", body = crate::error::ErrorBody),
        (status = 409, description = "it is not awaiting approval", body = crate::error::ErrorBody),
        (status = 422, description = "a bad body", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn approve(
    state: State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ActionView>, ApiError> {
    decide(
        state,
        caller.map(|Extension(c)| c),
        &id,
        &body,
        Verdict::Approve,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/actions/{id}/reject",
    tag = "approvals",
    summary = "Reject an action awaiting approval",
    params(("id" = String, Path, description = "The action's id (a UUID)")),
    request_body(content = Decision, description = "Optional"),
    responses(
        (status = 200, description = "The action", body = ActionView),
        (status = 400, description = "not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "no such action", body = crate::error::ErrorBody),
        (status = 409, description = "it is not awaiting approval", body = crate::error::ErrorBody),
        (status = 422, description = "a bad body", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn reject(
    state: State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ActionView>, ApiError> {
    decide(
        state,
        caller.map(|Extension(c)| c),
        &id,
        &body,
        Verdict::Reject,
    )
    .await
}

async fn decide(
    State(state): State<AppState>,
    caller: Option<Caller>,
    id: &str,
    body: &[u8],
    verdict: Verdict,
) -> Result<Json<ActionView>, ApiError> {
    let id = Uuid::parse_str(id)
        .map_err(|_| ApiError::bad_request(format!("'{id}' is not an action id (a UUID)")))?;
    let decision: Decision = crate::api_support::optional_json(body)?;
    let stated = decision.by.filter(|by| !by.trim().is_empty());
    if let Some(stated) = &stated {
        sdlc_core::service::check_text("by", stated).map_err(ApiError::unprocessable)?;
    }
    let by = decider(caller, stated);
    if let Some(note) = &decision.note {
        sdlc_core::service::check_text("note", note).map_err(ApiError::unprocessable)?;
    }
    let note = decision.note;
    let now = state.clock().now();
    let action = state
        .with_db(move |db| match verdict {
            Verdict::Approve => db.approve(id, &by, note, now),
            Verdict::Reject => db.reject(id, &by, note, now),
        })
        .await?;
    announce(&state, &action);
    Ok(Json(ActionView::from(&action)))
}

/// A decision on a plan step moves its run on: the engine exports the events and claims
/// what became ready.
fn announce(state: &AppState, action: &sdlc_core::Action) {
    match &action.step {
        Some(step) => state.waker().announce_run(step.run_id),
        None => state.waker().wake(),
    }
}
