//! `ApiError`: every failed request is answered as `{"error": "<message>"}` with a status
//! that says whose mistake it was. 4xx messages tell the caller what to fix; 5xx details are
//! logged and the caller gets a short message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sdlc_core::StoreError;
use serde_json::json;

/// The body of every error answer, as the OpenAPI document describes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, and what to do about it.
    pub error: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        // The store's message names the file and says what to do; the fault itself was
        // logged once when it happened, so a flood of refused requests does not flood the log.
        if err.is_disk_full() {
            return ApiError::new(StatusCode::INSUFFICIENT_STORAGE, err.to_string());
        }
        if err.is_unavailable() {
            return ApiError::unavailable(err.to_string());
        }
        let status = match &err {
            StoreError::NotFound(_)
            | StoreError::RouteNotFound(_)
            | StoreError::TokenNotFound(_)
            | StoreError::SessionNotFound(_)
            | StoreError::RunNotFound(_)
            | StoreError::NoSuchStep { .. } => StatusCode::NOT_FOUND,
            StoreError::DuplicatePath(_)
            | StoreError::TokenNameTaken(_)
            | StoreError::Duplicate(_)
            | StoreError::InvalidTransition { .. }
            | StoreError::NotPending { .. }
            | StoreError::NotReportable { .. }
            | StoreError::NotEditable { .. }
            | StoreError::ChangedMeanwhile { .. }
            | StoreError::NothingToPause { .. }
            | StoreError::NotPaused { .. }
            | StoreError::RunFinished { .. }
            | StoreError::RunNotFinished { .. }
            | StoreError::NothingToRetry { .. }
            | StoreError::StepOfRun { .. }
            | StoreError::NotAwaitingApproval { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // 503 and 507 say what is wrong with the daemon's storage and what to do; other server
        // errors keep their detail for the log.
        let explained = matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE
        );
        let message = if self.status.is_server_error() && !explained {
            tracing::error!(status = %self.status, "request failed: {}", self.message);
            "internal error: see the daemon's log".to_string()
        } else {
            self.message
        };
        (self.status, Json(json!({ "error": message }))).into_response()
    }
}
