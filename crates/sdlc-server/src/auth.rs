//! The management API's door: every request under `/api/orchestrator` must carry
//! `Authorization: Bearer <token>`, the token the daemon publishes in its 0600 file, or come
//! from a dashboard page: a session cookie, and for a change also the CSRF proof
//! (`ui::session`).

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::{ApiError, AppState};

/// Middleware: lets the request through only with the right bearer token.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    authorize(&state, request.method(), request.headers()).await?;
    Ok(next.run(request).await)
}

/// Checks a request's credentials: the bearer token, or a dashboard session (with its CSRF
/// proof for a change).
pub async fn authorize(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    if presented.is_none()
        && let Some(found) = crate::ui::session::find(state, headers).await?
    {
        if !crate::ui::session::is_safe(method) {
            crate::ui::session::check_csrf(headers, &found.session)?;
        }
        return Ok(());
    }
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), state.token().as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong token: use the token in the daemon's .daemon.json file beside its database",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token: send Authorization: Bearer <token> (the token is in the daemon's .daemon.json file beside its database), or log in to the dashboard with `sdlc orchestrate ui`",
        )),
    }
}

/// Compares without stopping at the first difference, so response time does not reveal
/// how much of a guess was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
