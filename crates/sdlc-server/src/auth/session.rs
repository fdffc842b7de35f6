//! Who may use the dashboard, and how a browser proves it.
//!
//! - `sdlc orchestrate ui` asks the daemon (with the management token) for a one-time login
//!   token, valid [`LOGIN_TOKEN_TTL`]; following `/login?token=...` exchanges it for a session
//!   and redirects to the page without the token in the address bar. The login form also
//!   takes the management token itself.
//! - A session is a random secret in an HttpOnly, SameSite=Strict cookie; the database keeps
//!   only its SHA-256 (`ActionDb::create_ui_session`), so sessions outlive a daemon restart.
//! - A change asked for with the cookie must come from our own origin (`Origin` equal to the
//!   request's host) and carry the session's CSRF token in `X-CSRF-Token`: the cookie alone,
//!   sent by a browser on another site's behalf, changes nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use sdlc_core::store::UiSession;

use crate::{ApiError, AppState};

/// The cookie that carries a session's secret.
pub const SESSION_COOKIE: &str = "sdlc_session";
/// The header a page sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a login token printed by `sdlc orchestrate ui` can be used (once).
pub const LOGIN_TOKEN_TTL: Duration = Duration::minutes(10);
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::hours(12);

/// One-time login tokens not used yet, by their hash, with when they expire.
#[derive(Default)]
pub struct LoginTokens {
    pending: Mutex<HashMap<[u8; 32], DateTime<Utc>>>,
}

impl LoginTokens {
    /// A new token, usable once before `now + LOGIN_TOKEN_TTL`.
    pub fn mint(&self, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        let token = random_secret();
        let expires = now + LOGIN_TOKEN_TTL;
        let mut pending = self.lock();
        pending.retain(|_, at| *at > now);
        pending.insert(digest(&token), expires);
        (token, expires)
    }

    /// Uses up `token`: true when it was minted here and has not expired or been used.
    pub fn redeem(&self, token: &str, now: DateTime<Utc>) -> bool {
        self.lock()
            .remove(&digest(token))
            .is_some_and(|expires| expires > now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], DateTime<Utc>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A session the request's cookie names, with the key it is stored under.
#[derive(Debug, Clone)]
pub struct SessionFound {
    pub key: [u8; 32],
    pub session: UiSession,
    /// Who it stands for, as its token says now (see `auth::session_caller`).
    pub caller: crate::auth::Caller,
}

/// A new random secret (244 random bits, hex).
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The key a secret is stored under.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Starts a session with `caller`'s powers: stores it and returns the `Set-Cookie` value and
/// the session.
pub async fn start(
    state: &AppState,
    caller: &crate::auth::Caller,
) -> Result<(HeaderValue, UiSession), ApiError> {
    let now = state.clock().now();
    let secret = random_secret();
    let session = UiSession {
        csrf: random_secret(),
        created_at: now,
        expires_at: now + SESSION_TTL,
        role: caller.name.as_ref().map(|_| caller.role),
        token_name: caller.name.clone(),
        token_digest: caller.token_digest.map(hex::encode),
    };
    let stored = session.clone();
    let key = digest(&secret);
    state
        .with_db(move |db| db.create_ui_session(key, &stored, now))
        .await?;
    // Over TLS the browser must never send it in clear (to an http:// address of the host).
    let secure = if state.https() { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_TTL.num_seconds()
    );
    let cookie = HeaderValue::from_str(&cookie)
        .map_err(|err| ApiError::internal(format!("session cookie: {err}")))?;
    Ok((cookie, session))
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("sdlc_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// The live session the request's cookie names, if any, and only while the token that opened
/// it still opens the API; one whose token is gone is ended here.
pub async fn find(state: &AppState, headers: &HeaderMap) -> Result<Option<SessionFound>, ApiError> {
    let Some(secret) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let key = digest(&secret);
    let now = state.clock().now();
    let Some(session) = state.with_db(move |db| db.ui_session(key, now)).await? else {
        return Ok(None);
    };
    match crate::auth::session_caller(state, &session).await? {
        Some(caller) => Ok(Some(SessionFound {
            key,
            session,
            caller,
        })),
        None => {
            tracing::info!(
                token = session.token_name.as_deref().unwrap_or("the daemon's"),
                "a dashboard session ended: the token that opened it no longer opens the API"
            );
            state.with_db(move |db| db.end_ui_session(key)).await?;
            Ok(None)
        }
    }
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Methods that change nothing need no CSRF proof.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses a request from another origin: `Origin` must name the host the request was sent
/// to. Browsers send `Origin` with every POST, PATCH and DELETE, so one without it did not
/// come from a page of ours either.
pub fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let same = match (origin, host) {
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        }
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "cross-origin request refused: Origin {} is not this dashboard's ({}); changes are only taken from the dashboard's own pages or with the bearer token",
                origin.unwrap_or("(none)"),
                host.map_or("unknown".to_string(), |h| format!("http://{h}")),
            ),
        ))
    }
}

/// Checks a change asked for with a session: same origin, and the session's CSRF token.
pub fn check_csrf(headers: &HeaderMap, session: &UiSession) -> Result<(), ApiError> {
    check_origin(headers)?;
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if crate::auth::constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "missing or wrong X-CSRF-Token: reload the dashboard page and try again",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_login_token_works_once_and_not_after_it_expires() {
        let tokens = LoginTokens::default();
        let now = Utc::now();
        let (token, _) = tokens.mint(now);
        assert!(!tokens.redeem("guess", now));
        assert!(tokens.redeem(&token, now));
        assert!(!tokens.redeem(&token, now), "used up");
        let (late, expires) = tokens.mint(now);
        assert!(!tokens.redeem(&late, expires), "expired");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[("cookie", "a=1; sdlc_session=abc ; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(
            cookie(&headers(&[("cookie", "sdlc_session=")]), SESSION_COOKIE),
            None
        );
    }

    #[test]
    fn only_our_own_origin_may_change_things() {
        let session = UiSession {
            csrf: "t0k".into(),
            created_at: Utc::now(),
            expires_at: Utc::now(),
            role: None,
            token_name: None,
            token_digest: None,
        };
        let ours = [
            ("host", "127.0.0.1:7000"),
            ("origin", "http://127.0.0.1:7000"),
        ];
        let mut good = ours.to_vec();
        good.push(("x-csrf-token", "t0k"));
        assert!(check_csrf(&headers(&good), &session).is_ok());
        assert!(check_csrf(&headers(&ours), &session).is_err(), "no token");
        let evil = [
            ("host", "127.0.0.1:7000"),
            ("origin", "http://evil.example"),
            ("x-csrf-token", "t0k"),
        ];
        let refused = check_csrf(&headers(&evil), &session).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(refused.message.contains("evil.example"));
        assert!(check_origin(&headers(&[("host", "127.0.0.1:7000")])).is_err());
    }
}
