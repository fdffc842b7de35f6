//! The dashboard: HTML pages rendered here from the store (askama templates, compiled into
//! the binary from `crates/sdlc-server/templates/`), one stylesheet and one script of our own
//! (`assets/`), served by the daemon at `/`. Nothing is fetched from elsewhere.
//!
//! - [`session`]: login tokens, session cookies, the CSRF checks.
//! - [`events`]: the Server-Sent Events stream the pages update themselves from.
//! - `pages`: overview, runs (the history) and one action.
//! - `schedules`, `hooks` (webhooks), `plans` (plans and plan runs), `tools`: the other pages.
//! - `graph`: a plan's DAG as SVG.
//! - `format`: how times, durations and rows look.
//! - `assets`: the stylesheet and the script.
//!
//! A page is whole HTML; the script swaps the page's live regions (`data-live`) for the same
//! regions of a fresh copy of the page when an event says something they show changed, and
//! sends the changes a user asks for to the JSON API with the session's CSRF token.

mod assets;
pub mod events;
mod format;
mod graph;
mod groups;
mod hooks;
mod pages;
mod plans;
mod schedules;
pub mod tools;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::auth::session;
use crate::{ApiError, AppState};

/// Changes with every build, so browsers never keep a stale script or stylesheet.
pub const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The dashboard's routes (pages, login, logout, assets).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/runs", get(pages::runs))
        .route("/runs/find", get(pages::find))
        .route("/groups", get(groups::groups))
        .route("/actions/{id}", get(pages::action))
        .route("/schedules", get(schedules::schedules))
        .route("/webhooks", get(hooks::webhooks))
        .route("/plans", get(plans::plans))
        .route("/plans/{plan_id}", get(plans::plan))
        .route("/plan-runs/{run_id}", get(plans::plan_run))
        .route("/tools", get(tools::tools))
        .route("/login", get(login_page).post(login_form))
        .route("/logout", axum::routing::post(logout))
        .route("/assets/{name}", get(assets::serve))
}

/// What every page's frame shows.
pub struct Chrome {
    pub title: String,
    pub page: &'static str,
    pub csrf: String,
    pub version: &'static str,
    pub nav: Vec<NavLink>,
}

pub struct NavLink {
    pub href: &'static str,
    pub text: &'static str,
    pub current: bool,
}

const PAGES: [(&str, &str, &str); 7] = [
    ("overview", "/", "Overview"),
    ("runs", "/runs", "Runs"),
    ("groups", "/groups", "Groups"),
    ("schedules", "/schedules", "Schedules"),
    ("webhooks", "/webhooks", "Webhooks"),
    ("plans", "/plans", "Plans"),
    ("tools", "/tools", "Tools"),
];

impl Chrome {
    pub fn new(page: &'static str, title: impl Into<String>, csrf: &str) -> Chrome {
        Chrome {
            title: title.into(),
            page,
            csrf: csrf.to_string(),
            version: ASSET_VERSION,
            nav: PAGES
                .iter()
                .map(|(name, href, text)| NavLink {
                    href,
                    text,
                    current: *name == page,
                })
                .collect(),
        }
    }
}

/// A rendered page, or the answer that replaces it (a redirect to the login).
pub type PageResult = Result<Response, Response>;

/// The answer of a page handler, whichever way it went.
pub fn done(result: PageResult) -> Response {
    result.unwrap_or_else(|response| response)
}

/// The session of a page request; without one, a redirect to the login that comes back here.
pub async fn page_session(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<session::SessionFound, Response> {
    match session::find(state, headers).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => {
            let back = uri
                .path_and_query()
                .map_or("/".to_string(), |pq| pq.as_str().to_string());
            let target = format!("/login?next={}", urlencode(&back));
            Err(Redirect::to(&target).into_response())
        }
        Err(err) => Err(error_page(&err)),
    }
}

/// What every page may load and do: only our own script and stylesheet (inline style
/// attributes for the timeline's bars), never framed by another site, no referrer sent to other sites (a page's own Origin must still
/// reach us: `no-referrer` would make a form's Origin `null`).
const PAGE_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("cache-control", "no-store"),
];

/// Renders `template` as the page's answer.
pub fn render(template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => with_page_headers(Html(html).into_response()),
        Err(err) => error_page(&ApiError::internal(format!("page template: {err}"))),
    }
}

fn with_page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in PAGE_HEADERS {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

/// A failure shown as a small page that says what happened.
pub fn error_page(err: &ApiError) -> Response {
    let message = if err.status.is_server_error() {
        tracing::error!(status = %err.status, "page failed: {}", err.message);
        if err.status == StatusCode::SERVICE_UNAVAILABLE
            || err.status == StatusCode::INSUFFICIENT_STORAGE
        {
            err.message.clone()
        } else {
            "internal error: see the daemon's log".to_string()
        }
    } else {
        err.message.clone()
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status}</title>\
         <link rel=\"stylesheet\" href=\"/assets/app.css?v={ASSET_VERSION}\"></head>\
         <body><main id=\"main\"><h1>{status}</h1><p class=\"error\">{}</p><p><a href=\"/\">Overview</a></p></main></body></html>",
        html_escape(&message),
        status = err.status,
    );
    with_page_headers((err.status, Html(body)).into_response())
}

pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Percent-encodes a query value.
pub fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[derive(askama::Template)]
#[template(path = "login.html")]
struct LoginPage {
    version: &'static str,
    next: String,
    error: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    pub token: Option<String>,
    pub next: Option<String>,
}

/// Where to go after logging in: only a path on this site (never another origin). Browsers
/// drop tabs and newlines from a `Location` and read `\\` as `/`, so `/\t/evil.example`
/// would leave the site: a path with any byte outside printable ASCII, or a backslash, is
/// refused whole rather than cleaned, and what is left may not start with `//`.
fn safe_next(next: Option<&str>) -> String {
    let same_site = |path: &str| {
        path.starts_with('/')
            && !path.starts_with("//")
            && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    };
    match next {
        Some(path) if same_site(path) => path.to_string(),
        _ => "/".to_string(),
    }
}

fn login_form_page(status: StatusCode, next: String, error: &str) -> Response {
    let page = LoginPage {
        version: ASSET_VERSION,
        next,
        error: error.to_string(),
    };
    (status, render(&page)).into_response()
}

/// `GET /login`: with `?token=` (the address `sdlc orchestrate ui` prints), logs in and
/// redirects without the token; without, the form.
async fn login_page(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Response {
    let next = safe_next(query.next.as_deref());
    match query
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        // Only a one-time token in an address: the management token would stay in the
        // browser's history.
        Some(token) => log_in(&state, token, next, false).await,
        None => login_form_page(StatusCode::OK, next, ""),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    pub token: String,
    #[serde(default)]
    pub next: Option<String>,
}

/// `POST /login`: the form, from our own page only.
async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    if let Err(err) = session::check_origin(&headers) {
        return login_form_page(err.status, next, &err.message);
    }
    log_in(&state, form.token.trim(), next, true).await
}

/// Starts a session for a one-time login token (the daemon's own powers), or, from the form,
/// the management token or a named token (that token's role).
async fn log_in(state: &AppState, token: &str, next: String, tokens_too: bool) -> Response {
    let now = state.clock().now();
    let one_time = state
        .login_tokens()
        .redeem(token, now)
        .then(crate::auth::Caller::daemon);
    let caller = match one_time {
        Some(caller) => Some(caller),
        None if tokens_too => match crate::auth::token_caller(state, token).await {
            Ok(caller) => caller,
            Err(err) => return error_page(&err),
        },
        None => None,
    };
    let Some(caller) = caller else {
        return login_form_page(
            StatusCode::UNAUTHORIZED,
            next,
            "That token is not valid: login tokens work once, for 10 minutes. Run `sdlc orchestrate ui` for a new one.",
        );
    };
    match session::start(state, &caller).await {
        Ok((cookie, _)) => (
            StatusCode::SEE_OTHER,
            [(SET_COOKIE, cookie)],
            [(LOCATION, next)],
        )
            .into_response(),
        Err(err) => error_page(&err),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /logout`: ends the session (the form carries its CSRF token).
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let found = match session::find(&state, &headers).await {
        Ok(found) => found,
        Err(err) => return error_page(&err),
    };
    if let Some(found) = found {
        let checked = session::check_origin(&headers).and_then(|()| {
            if crate::auth::constant_time_eq(form.csrf.as_bytes(), found.session.csrf.as_bytes()) {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "logout needs the page's CSRF token: use the Log out button",
                ))
            }
        });
        if let Err(err) = checked {
            return error_page(&err);
        }
        let key = found.key;
        if let Err(err) = state.with_db(move |db| db.end_ui_session(key)).await {
            return error_page(&err);
        }
    }
    (
        StatusCode::SEE_OTHER,
        [(SET_COOKIE, session::clear_cookie())],
        [(LOCATION, "/login".to_string())],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/runs?status=failed")),
            "/runs?status=failed"
        );
        assert_eq!(safe_next(Some("//evil.example/x")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        for hidden in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/x",
            "/ /x",
            "/\u{7f}/x",
            "/é",
        ] {
            assert_eq!(safe_next(Some(hidden)), "/", "{hidden:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
