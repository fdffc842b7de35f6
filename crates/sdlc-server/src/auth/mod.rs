//! The management API's door: every request under `/api/orchestrator` (and `/metrics`) must
//! carry `Authorization: Bearer <token>` or come from a dashboard page (a session cookie, and
//! for a change also the CSRF proof, `auth::session`). The token is the daemon's own (published
//! in its 0600 file: an admin's) or a named token (`sdlc orchestrate token add`), whose role
//! must cover the request (`sdlc_core::access::required_role`): 403 naming both when not.
//!
//! Named tokens are looked up by the digest of what was presented, through a short-lived
//! cache (wrong tokens included, so a flood of bad ones does not reach the database); a
//! token's last use is written at most once a minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use sdlc_core::access::{self, ApiToken, Role};

use crate::{ApiError, AppState};

pub mod session;

/// Who is calling, once their credentials passed; handlers find it in the request's
/// extensions (an approval records the name as its approver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The named token's name; None for the daemon's own token or a session made with it.
    pub name: Option<String>,
    pub role: Role,
    /// The SHA-256 of the named token presented (or of the one that opened the session): what
    /// a session this caller starts is checked against. None for the daemon's own authority.
    pub token_digest: Option<[u8; 32]>,
    /// Whether the request came from a dashboard page (a session) rather than a bearer token.
    pub via_session: bool,
}

impl Caller {
    /// The daemon's own authority, proven by its token (or a one-time login made with it).
    pub fn daemon() -> Caller {
        Caller {
            name: None,
            role: Role::Admin,
            token_digest: None,
            via_session: false,
        }
    }
}

/// Middleware: lets the request through only with credentials whose role covers it.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = authorize(
        &state,
        request.method(),
        request.uri().path(),
        request.headers(),
    )
    .await?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// Checks a request's credentials (the bearer token, or a dashboard session with its CSRF
/// proof for a change) and that their role covers `method` on `path` (below
/// `/api/orchestrator`).
pub async fn authorize(
    state: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let caller = identify(state, method, headers).await?;
    let is_read = matches!(*method, Method::GET | Method::HEAD);
    let needed = access::required_role(is_read, path);
    if caller.role < needed {
        let who = match &caller.name {
            Some(name) => format!("the token '{name}'"),
            None => "the daemon's token".to_string(),
        };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{who} has the role {}; {method} {path} needs {needed}: ask an admin for a token with that role (sdlc orchestrate token add NAME --role {needed})",
                caller.role
            ),
        ));
    }
    Ok(caller)
}

async fn identify(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    if presented.is_none()
        && let Some(found) = crate::auth::session::find(state, headers).await?
    {
        if !crate::auth::session::is_safe(method) {
            crate::auth::session::check_csrf(headers, &found.session)?;
        }
        return Ok(found.caller);
    }
    let Some(presented) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token: send Authorization: Bearer <token> (the daemon's token is in the .daemon.json file beside its database; named tokens come from sdlc orchestrate token add), or log in to the dashboard with `sdlc orchestrate ui`",
        ));
    };
    match token_caller(state, presented).await? {
        Some(caller) => Ok(caller),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong token: use the token in the daemon's .daemon.json file beside its database, or a named token from sdlc orchestrate token add",
        )),
    }
}

/// The caller a presented token stands for: the daemon's own, or a named one.
pub async fn token_caller(state: &AppState, presented: &str) -> Result<Option<Caller>, ApiError> {
    if constant_time_eq(presented.as_bytes(), state.token().as_bytes()) {
        return Ok(Some(Caller::daemon()));
    }
    named_token_caller(state, access::digest(presented)).await
}

/// The caller a stored session stands for: the daemon's owner for a session opened with its
/// authority; for one opened with a named token, that token, while it still exists under the
/// same name (a token removed, or removed and added again, opens no session it opened
/// before). None when that token no longer opens the API.
pub async fn session_caller(
    state: &AppState,
    session: &sdlc_core::store::UiSession,
) -> Result<Option<Caller>, ApiError> {
    let via_session = |caller: Caller| Caller {
        via_session: true,
        ..caller
    };
    // The daemon's own authority: its owner's, whatever token the daemon has now.
    if session.token_name.is_none() {
        return Ok(Some(via_session(Caller::daemon())));
    }
    let Some(digest) = session
        .token_digest
        .as_deref()
        .and_then(sdlc_core::store::SessionListing::parse_id)
    else {
        return Ok(None);
    };
    let caller = named_token_caller(state, digest).await?;
    Ok(caller
        .filter(|caller| caller.name == session.token_name)
        .map(via_session))
}

/// The named token stored under `digest`, through the cache, as a caller.
async fn named_token_caller(
    state: &AppState,
    digest: [u8; 32],
) -> Result<Option<Caller>, ApiError> {
    let now = Instant::now();
    let (token, touch) = match state.token_cache().get(digest, now) {
        Some(cached) => cached,
        None => {
            let token = state
                .with_db(move |db| db.api_token_by_digest(digest))
                .await?;
            (token.clone(), state.token_cache().put(digest, token, now))
        }
    };
    let Some(token) = token else {
        return Ok(None);
    };
    if touch {
        let at = state.clock().now();
        let db = state.db().clone();
        // Bookkeeping only: a failure to note the use must not refuse the request.
        tokio::task::spawn_blocking(move || {
            if let Err(err) = db.touch_api_token(digest, at) {
                tracing::debug!("cannot note a token's use: {err}");
            }
        });
    }
    Ok(Some(Caller {
        name: Some(token.name),
        role: token.role,
        token_digest: Some(digest),
        via_session: false,
    }))
}

/// How long a looked-up token (or the absence of one) is trusted: a token removed by a
/// command on another node of a shared database stops working within this.
const CACHE_TTL: Duration = Duration::from_secs(5);
/// A token's last use is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Entries kept at most; past it the cache starts afresh (wrong guesses cannot grow it).
const CACHE_CAP: usize = 4096;

/// Named tokens by digest, as recently read from the store.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], CacheEntry>>,
}

struct CacheEntry {
    token: Option<ApiToken>,
    fetched: Instant,
    touched: Option<Instant>,
}

impl TokenCache {
    /// The cached lookup, if fresh, and whether its use should be written now.
    fn get(&self, digest: [u8; 32], now: Instant) -> Option<(Option<ApiToken>, bool)> {
        let mut entries = self.lock();
        let entry = entries.get_mut(&digest)?;
        if now.duration_since(entry.fetched) > CACHE_TTL {
            return None;
        }
        let touch = entry.token.is_some()
            && entry
                .touched
                .is_none_or(|at| now.duration_since(at) >= TOUCH_EVERY);
        if touch {
            entry.touched = Some(now);
        }
        Some((entry.token.clone(), touch))
    }

    /// Caches a lookup; whether its use should be written now.
    fn put(&self, digest: [u8; 32], token: Option<ApiToken>, now: Instant) -> bool {
        let mut entries = self.lock();
        if entries.len() >= CACHE_CAP {
            entries.clear();
        }
        let previous_touch = entries.get(&digest).and_then(|e| e.touched);
        let touch = token.is_some()
            && previous_touch.is_none_or(|at| now.duration_since(at) >= TOUCH_EVERY);
        entries.insert(
            digest,
            CacheEntry {
                token,
                fetched: now,
                touched: if touch { Some(now) } else { previous_touch },
            },
        );
        touch
    }

    /// Forgets everything (a token was added or removed here).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], CacheEntry>> {
        self.entries
            .lock()
            .expect("the token cache lock is never poisoned")
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
    use super::*;

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn the_cache_forgets_after_its_ttl_and_touches_once_a_minute() {
        let cache = TokenCache::default();
        let start = Instant::now();
        let token = ApiToken {
            name: "ci".into(),
            role: Role::Operator,
            created_at: chrono::Utc::now(),
            last_used_at: None,
        };
        assert!(cache.get([1; 32], start).is_none());
        assert!(
            cache.put([1; 32], Some(token.clone()), start),
            "first use noted"
        );
        let (found, touch) = cache.get([1; 32], start + Duration::from_secs(1)).unwrap();
        assert_eq!(found, Some(token.clone()));
        assert!(!touch, "not again within a minute");
        assert!(
            cache
                .get([1; 32], start + CACHE_TTL + Duration::from_millis(1))
                .is_none()
        );
        // Fetched again after the TTL: its use was noted under a minute ago.
        assert!(!cache.put([1; 32], Some(token.clone()), start + Duration::from_secs(6)));
        assert!(cache.put(
            [1; 32],
            Some(token),
            start + TOUCH_EVERY + Duration::from_secs(1)
        ));
        // A wrong token is remembered as none, and never touched.
        assert!(!cache.put([2; 32], None, start));
        assert_eq!(cache.get([2; 32], start), Some((None, false)));
    }
}
