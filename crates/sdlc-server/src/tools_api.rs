//! `/api/orchestrator/tools/{name}`: a tool's `--meta`, and `POST .../run` (`{"input",
//! "timeout_secs"}`): runs it once and answers what it said (`sdlc tool run`), nothing
//! stored. A token holder can already make any tool run by adding an action; this runs it
//! now, bounded by the timeout (60 s unless said, at most 600 s).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use sdlc_core::tool::meta::{ToolMeta, read_meta};
use sdlc_core::tool::tool_script;
use sdlc_core::tool::try_run::{TryAnswer, TryRefused, try_tool};

use crate::{ApiError, AppState};

/// The longest a try may run.
pub const MAX_TRY_SECS: f64 = 600.0;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tools/{name}", get(tool_meta))
        .route("/tools/{name}/run", post(try_run))
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/tools/{name}",
    tag = "tools",
    summary = "A tool's --meta",
    params(("name" = String, Path, description = "The tool's name")),
    responses(
        (status = 200, description = "Its meta", body = ToolMeta),
        (status = 404, description = "no such tool", body = crate::error::ErrorBody),
        (status = 422, description = "its --meta cannot be read", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn tool_meta(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ToolMeta>, ApiError> {
    let script =
        tool_script(state.root(), &name).map_err(|err| ApiError::not_found(err.to_string()))?;
    read_meta(&script, state.root())
        .await
        .map(Json)
        .map_err(ApiError::unprocessable)
}

/// Body of `POST /tools/{name}/run`.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TryRequest {
    #[serde(default = "empty_object")]
    pub input: Value,
    #[serde(default)]
    pub timeout_secs: Option<f64>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/tools/{name}/run",
    tag = "tools",
    summary = "Run a tool once, storing nothing",
    params(("name" = String, Path, description = "The tool's name")),
    request_body(content = TryRequest, description = "Optional"),
    responses(
        (status = 200, description = "Its answer", body = TryAnswer),
        (status = 404, description = "no such tool", body = crate::error::ErrorBody),
        (status = 422, description = "the input is wrong", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn try_run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<TryAnswer>, ApiError> {
    let request: TryRequest = crate::api_support::optional_json(&body)?;
    let secs = request.timeout_secs.unwrap_or(60.0);
    if !(secs > 0.0 && secs <= MAX_TRY_SECS) {
        return Err(ApiError::unprocessable(format!(
            "timeout_secs {secs} must be more than 0 and at most {MAX_TRY_SECS}"
        )));
    }
    try_tool(
        state.root(),
        &name,
        &request.input,
        Duration::from_secs_f64(secs),
    )
    .await
    .map(Json)
    .map_err(|refused| match refused {
        TryRefused::UnknownTool(message) => ApiError::not_found(message),
        TryRefused::BadInput(message) => ApiError::unprocessable(message),
    })
}
