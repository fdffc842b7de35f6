//! The router of `/api/orchestrator/...`: every route of the management API, the token
//! check in front of all of them (`auth`, including unknown paths and methods, so nothing is
//! learned without it), and the answers in JSON for what no route takes.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Router, middleware};

use crate::api::{
    add_action, add_route, cancel_action, check, delete_action, delete_route, edit_action,
    get_action, list_actions, list_deliveries, list_routes, list_tools, login_token,
    match_short_id, next_runs, pause_action, preview_template, resume_action, run_action, status,
};
use crate::{ApiError, AppState, auth};

/// The routes under `/api/orchestrator`, all requiring the token.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/actions", get(list_actions).post(add_action))
        .route(
            "/actions/{id}",
            get(get_action).delete(delete_action).patch(edit_action),
        )
        .route("/actions/{id}/cancel", post(cancel_action))
        .route("/actions/{id}/pause", post(pause_action))
        .route("/actions/{id}/resume", post(resume_action))
        .route("/actions/{id}/run", post(run_action))
        .route("/actions/{id}/next", get(next_runs))
        .route("/actions/{id}/log", get(crate::logs_api::action_log))
        .route("/actions/short/{fragment}", get(match_short_id))
        .route("/webhooks", get(list_routes).post(add_route))
        .route("/webhooks/routes", get(list_routes).post(add_route))
        .route("/webhooks/routes/{*key}", delete(delete_route))
        .route("/webhooks/deliveries", get(list_deliveries))
        .route("/webhooks/preview", post(preview_template))
        .route("/tools", get(list_tools))
        .route("/status", get(status))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route("/check", post(check))
        .route("/events", get(crate::ui::events::stream))
        .route("/ui/login-token", post(login_token))
        .merge(crate::plans_api::routes())
        .merge(crate::approvals_api::routes())
        .merge(crate::external_api::routes())
        .merge(crate::history_api::routes())
        .merge(crate::groups_api::routes())
        .merge(crate::notify_api::routes())
        .merge(crate::tools_api::routes())
        .merge(crate::tokens_api::routes())
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state, auth::require_token))
        .layer(middleware::from_fn(json_errors))
}

/// Every error of the API is JSON: axum's own rejections (a query, path or body it could not
/// read) come as text, and are answered in our `{"error": ...}` form instead, with the same
/// status and reason.
async fn json_errors(request: Request, next: middleware::Next) -> axum::response::Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    // Rejection texts are a line or two; anything longer is not one of them.
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase()
    } else {
        text
    };
    axum::response::IntoResponse::into_response(ApiError::new(status, message))
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("no such API route: see README.md for the management API")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method",
    )
}
