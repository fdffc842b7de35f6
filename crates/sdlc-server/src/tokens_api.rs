//! `/api/orchestrator/tokens`: named API tokens (admin only, see `auth`). `GET` lists them
//! (names, roles, created, last used; never a secret), `POST {"name", "role"}` makes one and
//! answers its secret this once, `DELETE /tokens/{name}` removes one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use sdlc_core::access::{self, ApiToken, MintedToken, Role};

use crate::api::JsonBody;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(add))
        .route("/tokens/{name}", delete(remove))
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
