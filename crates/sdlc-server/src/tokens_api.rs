//! `/api/orchestrator/tokens`: named API tokens (admin only, see `auth`). `GET` lists them
//! (names, roles, created, last used; never a secret), `POST {"name", "role"}` makes one and
//! answers its secret this once, `DELETE /tokens/{name}` removes one. `GET /sessions` lists the
//! live dashboard sessions, `DELETE /sessions/{id}` ends one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use sdlc_core::access::{self, ApiToken, MintedToken, Role};
use sdlc_core::store::SessionListing;

use crate::api_support::JsonBody;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(add))
        .route("/tokens/{name}", delete(remove))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{id}", delete(end_session))
}

/// Body of `POST /tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub role: String,
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/tokens",
    tag = "tokens",
    summary = "Named tokens (never a secret)",
    responses(
        (status = 200, description = "Tokens", body = Vec<ApiToken>)
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<ApiToken>>, ApiError> {
    Ok(Json(state.with_db(|db| db.api_tokens()).await?))
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/tokens",
    tag = "tokens",
    summary = "Make a named token; its secret is answered this once",
    request_body = NewToken,
    responses(
        (status = 201, description = "The token with its secret", body = MintedToken),
        (status = 409, description = "the name is taken", body = crate::error::ErrorBody),
        (status = 422, description = "a bad name or role", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn add(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<MintedToken>), ApiError> {
    let role: Role = request.role.parse().map_err(ApiError::unprocessable)?;
    let name = access::TokenName::parse(&request.name).map_err(ApiError::unprocessable)?;
    let (secret, digest, token) = access::mint(&name, role, state.clock().now());
    let stored = token.clone();
    state
        .with_db(move |db| db.add_api_token(digest, &stored))
        .await?;
    state.token_cache().clear();
    Ok((StatusCode::CREATED, Json(MintedToken { token, secret })))
}

#[utoipa::path(
    delete,
    path = "/api/orchestrator/tokens/{name}",
    tag = "tokens",
    summary = "Remove a named token",
    params(("name" = String, Path, description = "The token's name")),
    responses(
        (status = 200, description = "The removed token", body = ApiToken),
        (status = 404, description = "no such token", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ApiToken>, ApiError> {
    let removed = state.with_db(move |db| db.remove_api_token(&name)).await?;
    state.token_cache().clear();
    Ok(Json(removed))
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/sessions",
    tag = "tokens",
    summary = "Live dashboard sessions (never a secret), newest first",
    responses(
        (status = 200, description = "Sessions", body = Vec<SessionListing>)
    )
)]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
) -> Result<Json<Vec<SessionListing>>, ApiError> {
    let now = state.clock().now();
    let sessions = state.with_db(move |db| db.ui_sessions(now)).await?;
    Ok(Json(
        sessions
            .iter()
            .map(|(key, session)| SessionListing::new(key, session))
            .collect(),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/orchestrator/sessions/{id}",
    tag = "tokens",
    summary = "End a dashboard session (its page must log in again)",
    params(("id" = String, Path, description = "The session's id, as listed")),
    responses(
        (status = 200, description = "The session ended", body = SessionListing),
        (status = 400, description = "not a session id", body = crate::error::ErrorBody),
        (status = 404, description = "no such session", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn end_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SessionListing>, ApiError> {
    let Some(key) = SessionListing::parse_id(&id) else {
        return Err(ApiError::bad_request(format!(
            "'{id}' is not a session id (64 hex digits, as sdlc orchestrate session list shows)"
        )));
    };
    let now = state.clock().now();
    match state.with_db(move |db| db.end_ui_session(key)).await? {
        // An expired session still stored is as good as gone.
        Some(session) if session.expires_at > now => Ok(Json(SessionListing::new(&key, &session))),
        _ => Err(sdlc_core::StoreError::SessionNotFound(id).into()),
    }
}
