//! What the API's modules share: the JSON body extractor and optional bodies (both answering
//! in the API's error form), inserting an action once under a client-chosen id, and the
//! terms of a cancel (actions and plan runs are canceled alike).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{ApiError, AppState, auth};

/// Stores `action` (201); a repeat of a request already stored (the same client-chosen id,
/// and `same` says it is the same request) answers the stored action (200) instead of
/// failing: clients retry after a broken connection.
pub(crate) async fn insert_once(
    state: &AppState,
    action: sdlc_core::Action,
    same: impl Fn(&sdlc_core::Action, &sdlc_core::Action) -> bool + Send + 'static,
) -> Result<(sdlc_core::Action, StatusCode), ApiError> {
    state
        .with_db(move |db| match db.insert(&action) {
            Ok(()) => Ok((action, StatusCode::CREATED)),
            Err(sdlc_core::StoreError::Duplicate(id)) => {
                let existing = db.get(id)?.ok_or(sdlc_core::StoreError::NotFound(id))?;
                if same(&existing, &action) {
                    Ok((existing, StatusCode::OK))
                } else {
                    Err(sdlc_core::StoreError::Duplicate(id))
                }
            }
            Err(err) => Err(err),
        })
        .await
}

/// Body of `POST /actions/{id}/cancel` (optional).
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CancelRequestBody {
    /// How long a running run has after SIGTERM before SIGKILL, such as `30s` (default 10s).
    #[serde(default)]
    pub grace: Option<String>,
    /// Who cancels, recorded in the reason (a named token's name overrides it).
    #[serde(default)]
    pub by: Option<String>,
}

/// Who cancels and with what grace: a named token's name (else the body's `by`, else "api",
/// or "dashboard" from a page), and the body's grace (default 10 s, at most a day).
pub(crate) fn cancel_terms(
    caller: Option<auth::Caller>,
    request: CancelRequestBody,
) -> Result<(String, u64), ApiError> {
    let by = match caller {
        Some(auth::Caller {
            name: Some(name), ..
        }) => name,
        Some(caller) if caller.via_session => request.by.unwrap_or_else(|| "dashboard".into()),
        _ => request.by.unwrap_or_else(|| "api".into()),
    };
    let grace_ms = match request.grace.as_deref() {
        None => sdlc_core::model::DEFAULT_CANCEL_GRACE_MS,
        Some(text) => {
            let grace = sdlc_core::schedule::parse_duration(text)
                .map_err(|err| ApiError::unprocessable(format!("grace: {err}")))?;
            if grace > std::time::Duration::from_secs(86_400) {
                return Err(ApiError::unprocessable(format!(
                    "grace {text}: at most a day (24h)"
                )));
            }
            grace.as_millis() as u64
        }
    };
    Ok((by, grace_ms))
}

/// `Json<T>` whose rejections are answered in our JSON error form with the parser's reason.
pub struct JsonBody<T>(pub T);

/// A JSON body that may be left out or empty (then the defaults).
pub(crate) fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|err| ApiError::unprocessable(format!("the request body: {err}")))
}

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => {
                let status = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    _ => rejection.status(),
                };
                Err(ApiError::new(
                    status,
                    format!("request body: {}", rejection.body_text()),
                ))
            }
        }
    }
}
