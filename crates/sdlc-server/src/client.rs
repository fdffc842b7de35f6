//! `DaemonClient`: how CLI commands talk to a running daemon's management API, with the
//! address and token from the daemon's published file.
//!
//! Errors keep the daemon's own message for 4xx answers, so the user sees the same words
//! whether the command went through the daemon or opened the database itself.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use sdlc_core::ListFilter;
use sdlc_core::daemon_file::DaemonInfo;
use sdlc_core::service::NewAction;
use sdlc_core::view::ActionView;
use sdlc_core::webhook::{NewRoute, RouteView};

use sdlc_core::plan::RunEvent;
use sdlc_core::plan::view::{PlanListing, RunDetailView, RunSummary};

use crate::api::AddResponse;
use crate::plans_api::{RunPage, StartResponse};

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request never reached the daemon (connection refused): nothing happened there,
    /// so the caller may safely fall back to opening the database itself.
    #[error("cannot reach the daemon at {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    /// The connection broke after the request was sent: it may or may not have taken effect.
    #[error(
        "the daemon at {addr} stopped answering mid-request ({detail}): check with `sdlc orchestrate list` whether it took effect"
    )]
    Interrupted { addr: String, detail: String },
    /// The daemon answered with an error.
    #[error("{message}")]
    Api { status: u16, message: String },
    /// The daemon answered something this client cannot read.
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
}

/// A person's decision on an action awaiting approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject,
}

/// A client for one daemon.
#[derive(Debug, Clone)]
pub struct DaemonClient {
    base: String,
    token: String,
    http: reqwest::Client,
    /// For answers read as they come (followed logs and events): no overall timeout.
    streaming: reqwest::Client,
}

/// Adding an action may run the tool's `--meta`, which the daemon bounds at 15 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl DaemonClient {
    pub fn new(info: &DaemonInfo) -> DaemonClient {
        DaemonClient::at(&info.base_url(), &info.token, info.tls_sha256.as_deref())
    }

    /// A client for the daemon at `base_url` (`https://host:7711`, as `--server` gives it)
    /// with `token`; over TLS it trusts the web's certificate authorities, or with
    /// `tls_sha256` only the certificate of that SHA-256 fingerprint (a self-signed one).
    pub fn at(base_url: &str, token: &str, tls_sha256: Option<&str>) -> DaemonClient {
        let base_url = base_url.trim_end_matches('/');
        DaemonClient {
            base: format!("{base_url}/api/orchestrator"),
            token: token.to_string(),
            http: DaemonClient::http(tls_sha256, Some(REQUEST_TIMEOUT)),
            streaming: DaemonClient::http(tls_sha256, None),
        }
    }

    /// Where requests go (`<server>/api/orchestrator`), for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// An HTTP client with `timeout` on each request, pinned to `tls_sha256` when given.
    fn http(tls_sha256: Option<&str>, timeout: Option<Duration>) -> reqwest::Client {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .no_proxy();
        let builder = match timeout {
            Some(timeout) => builder.timeout(timeout),
            None => builder,
        };
        // Over TLS, the one certificate the daemon published; a file naming none that cannot
        // be read leaves a client that fails to connect, saying so, like a dead daemon.
        let builder = match tls_sha256.map(crate::tls::pinned_client_config) {
            Some(Ok(config)) => builder.use_preconfigured_tls(config),
            Some(Err(err)) => {
                tracing::warn!("the daemon file's TLS fingerprint: {err}");
                builder.https_only(true)
            }
            None => builder,
        };
        builder
            .build()
            .expect("a client with a timeout, no proxy and a rustls configuration builds")
    }

    /// `POST /ui/login-token`: a one-time dashboard login, `{"token", "expires_at", "path"}`.
    pub async fn login_token(&self) -> Result<serde_json::Value, ClientError> {
        self.call::<(), _>(Method::POST, "/ui/login-token", &[], None)
            .await
    }

    /// `POST /check`: the daemon verifies every page of its database.
    pub async fn check(&self) -> Result<serde_json::Value, ClientError> {
        self.call::<(), _>(Method::POST, "/check", &[], None).await
    }

    /// `GET /status`: counts, inbox depth and the storage's health.
    pub async fn status(&self) -> Result<serde_json::Value, ClientError> {
        self.call::<(), _>(Method::GET, "/status", &[], None).await
    }

    pub async fn add(&self, request: &NewAction) -> Result<AddResponse, ClientError> {
        self.call(Method::POST, "/actions", &[], Some(request))
            .await
    }

    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<ActionView>, ClientError> {
        let mut query = Vec::new();
        if let Some(status) = filter.status {
            query.push(("status", status.to_string()));
        }
        if let Some(tool) = &filter.tool {
            query.push(("tool", tool.clone()));
        }
        if let Some(limit) = filter.limit {
            query.push(("limit", limit.to_string()));
        }
        self.call::<(), _>(Method::GET, "/actions", &query, None)
            .await
    }

    /// One page of history (`GET /actions/paged`).
    pub async fn history_page(
        &self,
        query: &crate::history_api::HistoryQuery,
    ) -> Result<crate::history_api::HistoryPageView, ClientError> {
        let pairs: Vec<(&str, String)> = [
            ("status", &query.status),
            ("tool", &query.tool),
            ("label", &query.label),
            ("run_id", &query.run_id),
            ("since", &query.since),
            ("until", &query.until),
            ("limit", &query.limit),
            ("cursor", &query.cursor),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect();
        self.call::<(), _>(Method::GET, "/actions/paged", &pairs, None)
            .await
    }

    /// One page of run groups (`GET /run-groups`).
    pub async fn run_groups(
        &self,
        query: &crate::groups_api::GroupsQuery,
    ) -> Result<crate::groups_api::GroupPageView, ClientError> {
        let pairs: Vec<(&str, String)> = [
            ("since", &query.since),
            ("until", &query.until),
            ("limit", &query.limit),
            ("cursor", &query.cursor),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect();
        self.call::<(), _>(Method::GET, "/run-groups", &pairs, None)
            .await
    }

    pub async fn notifications(
        &self,
        status: Option<String>,
        limit: Option<usize>,
    ) -> Result<Vec<crate::notify_api::NotificationView>, ClientError> {
        let mut query = Vec::new();
        if let Some(status) = status {
            query.push(("status", status));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        self.call::<(), _>(Method::GET, "/notifications", &query, None)
            .await
    }

    pub async fn notify_test(&self) -> Result<Vec<crate::notify_sender::TestAnswer>, ClientError> {
        self.call::<(), _>(Method::POST, "/notify/test", &[], None)
            .await
    }

    pub async fn get(&self, id: Uuid) -> Result<ActionView, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/actions/{id}"), &[], None)
            .await
    }

    /// `PATCH /actions/{id}`.
    pub async fn edit(
        &self,
        id: Uuid,
        edit: &sdlc_core::service::ActionEdit,
    ) -> Result<ActionView, ClientError> {
        self.call(Method::PATCH, &format!("/actions/{id}"), &[], Some(edit))
            .await
    }

    /// `POST /actions/external`: a run started elsewhere.
    pub async fn external_start(
        &self,
        start: &sdlc_core::external::ExternalStart,
    ) -> Result<crate::external_api::ExternalStarted, ClientError> {
        self.call(Method::POST, "/actions/external", &[], Some(start))
            .await
    }

    /// `PATCH /actions/{id}` with a status: what became of a run reported from outside.
    pub async fn report(
        &self,
        id: Uuid,
        report: &sdlc_core::external::ExternalReport,
    ) -> Result<ActionView, ClientError> {
        self.call(Method::PATCH, &format!("/actions/{id}"), &[], Some(report))
            .await
    }

    /// `GET /actions/short/{fragment}`: the ids (at most two) a short id names.
    pub async fn match_short_id(&self, fragment: &str) -> Result<Vec<Uuid>, ClientError> {
        let answer: serde_json::Value = self
            .call::<(), _>(
                Method::GET,
                &format!("/actions/short/{}", encode_segment(fragment)),
                &[],
                None,
            )
            .await?;
        Ok(answer["ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `POST /actions/{id}/cancel`, by `by`, a running run having `grace_ms` after SIGTERM.
    pub async fn cancel(
        &self,
        id: Uuid,
        by: &str,
        grace_ms: u64,
    ) -> Result<ActionView, ClientError> {
        let body = serde_json::json!({"by": by, "grace": format!("{grace_ms}ms")});
        self.call(
            Method::POST,
            &format!("/actions/{id}/cancel"),
            &[],
            Some(&body),
        )
        .await
    }

    pub async fn pause(&self, id: Uuid, reason: Option<String>) -> Result<ActionView, ClientError> {
        let body = crate::api::PauseRequest { reason };
        self.call(
            Method::POST,
            &format!("/actions/{id}/pause"),
            &[],
            Some(&body),
        )
        .await
    }

    pub async fn resume(&self, id: Uuid) -> Result<ActionView, ClientError> {
        self.call::<(), _>(Method::POST, &format!("/actions/{id}/resume"), &[], None)
            .await
    }

    pub async fn run_now(&self, id: Uuid) -> Result<ActionView, ClientError> {
        self.call::<(), _>(Method::POST, &format!("/actions/{id}/run"), &[], None)
            .await
    }

    pub async fn next_runs(
        &self,
        id: Uuid,
        count: usize,
    ) -> Result<Vec<chrono::DateTime<chrono::Utc>>, ClientError> {
        let query = [("count", count.to_string())];
        self.call::<(), _>(Method::GET, &format!("/actions/{id}/next"), &query, None)
            .await
    }

    pub async fn add_route(&self, request: &NewRoute) -> Result<RouteView, ClientError> {
        self.call(Method::POST, "/webhooks/routes", &[], Some(request))
            .await
    }

    pub async fn list_routes(&self) -> Result<Vec<RouteView>, ClientError> {
        self.call::<(), _>(Method::GET, "/webhooks/routes", &[], None)
            .await
    }

    /// `GET /tokens`: the named tokens.
    pub async fn list_tokens(&self) -> Result<Vec<sdlc_core::access::ApiToken>, ClientError> {
        self.call::<(), _>(Method::GET, "/tokens", &[], None).await
    }

    /// `POST /tokens`: a new named token, with its secret.
    pub async fn add_token(
        &self,
        name: &str,
        role: sdlc_core::access::Role,
    ) -> Result<sdlc_core::access::MintedToken, ClientError> {
        let body = crate::tokens_api::NewToken {
            name: name.to_string(),
            role: role.to_string(),
        };
        self.call(Method::POST, "/tokens", &[], Some(&body)).await
    }

    /// `DELETE /tokens/{name}`.
    pub async fn remove_token(
        &self,
        name: &str,
    ) -> Result<sdlc_core::access::ApiToken, ClientError> {
        self.call::<(), _>(
            Method::DELETE,
            &format!("/tokens/{}", encode_segment(name)),
            &[],
            None,
        )
        .await
    }

    /// `GET /sessions`: the live dashboard sessions.
    pub async fn list_sessions(
        &self,
    ) -> Result<Vec<sdlc_core::store::SessionListing>, ClientError> {
        self.call::<(), _>(Method::GET, "/sessions", &[], None)
            .await
    }

    /// `DELETE /sessions/{id}`.
    pub async fn end_session(
        &self,
        id: &str,
    ) -> Result<sdlc_core::store::SessionListing, ClientError> {
        self.call::<(), _>(
            Method::DELETE,
            &format!("/sessions/{}", encode_segment(id)),
            &[],
            None,
        )
        .await
    }

    /// Removes a route by id or path.
    pub async fn delete_route(&self, id_or_path: &str) -> Result<RouteView, ClientError> {
        let key = id_or_path.trim_start_matches('/');
        if key.is_empty() || key.chars().all(|c| c == '.') {
            return Err(ClientError::Api {
                status: 404,
                message: format!(
                    "no webhook route with id or path '{id_or_path}': see sdlc orchestrate webhook list"
                ),
            });
        }
        self.call::<(), _>(
            Method::DELETE,
            &format!("/webhooks/routes/{}", encode_segment(key)),
            &[],
            None,
        )
        .await
    }

    /// `POST /actions/{id}/approve` or `.../reject`.
    pub async fn decide(
        &self,
        id: Uuid,
        verdict: Verdict,
        by: &str,
        note: Option<&str>,
    ) -> Result<ActionView, ClientError> {
        let verb = match verdict {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        };
        let body = serde_json::json!({ "by": by, "note": note });
        self.call(
            Method::POST,
            &format!("/actions/{id}/{verb}"),
            &[],
            Some(&body),
        )
        .await
    }

    /// `GET /plans`.
    pub async fn list_plans(&self) -> Result<Vec<PlanListing>, ClientError> {
        self.call::<(), _>(Method::GET, "/plans", &[], None).await
    }

    /// `POST /plans/{plan_id}/runs`.
    pub async fn start_run(
        &self,
        plan_id: &str,
        vars: &std::collections::BTreeMap<String, String>,
        options: &sdlc_core::plan::run::RunOptions,
    ) -> Result<StartResponse, ClientError> {
        let mut body = serde_json::json!({ "vars": vars });
        if let (Some(map), Ok(serde_json::Value::Object(extra))) =
            (body.as_object_mut(), serde_json::to_value(options))
        {
            map.extend(extra);
        }
        let path = format!("/plans/{}/runs", encode_segment(plan_id));
        self.call(Method::POST, &path, &[], Some(&body)).await
    }

    /// `GET /runs`.
    pub async fn list_runs(&self, query: &[(&str, String)]) -> Result<RunPage, ClientError> {
        self.call::<(), _>(Method::GET, "/runs", query, None).await
    }

    /// `GET /runs/{run_id}`.
    pub async fn get_run(&self, run: Uuid) -> Result<RunDetailView, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/runs/{run}"), &[], None)
            .await
    }

    /// `POST /runs/{run_id}/cancel`.
    pub async fn cancel_run(
        &self,
        run: Uuid,
        by: &str,
        grace_ms: u64,
    ) -> Result<RunSummary, ClientError> {
        let body = serde_json::json!({"by": by, "grace": format!("{grace_ms}ms")});
        self.call(
            Method::POST,
            &format!("/runs/{run}/cancel"),
            &[],
            Some(&body),
        )
        .await
    }

    /// `POST /runs/{run_id}/retry`.
    pub async fn retry_run(
        &self,
        run: Uuid,
        step: Option<&str>,
    ) -> Result<StartResponse, ClientError> {
        let body = serde_json::json!({ "step": step });
        self.call(
            Method::POST,
            &format!("/runs/{run}/retry"),
            &[],
            Some(&body),
        )
        .await
    }

    /// `GET /runs/{run_id}/events`, each event handed to `each` as it arrives (which says
    /// whether to go on); with `follow`, until the run ends (no overall timeout: a run may
    /// take hours).
    pub async fn run_events(
        &self,
        run: Uuid,
        follow: bool,
        from_seq: u64,
        mut each: impl FnMut(RunEvent) -> bool,
    ) -> Result<(), ClientError> {
        let mut query = vec![("follow", if follow { "1" } else { "0" }.to_string())];
        if let Some(after) = from_seq.checked_sub(1) {
            query.push(("after", after.to_string()));
        }
        let mut response = self
            .open_stream(&format!("/runs/{run}/events"), &query)
            .await?;
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.interrupted(e))? {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let event: RunEvent = serde_json::from_slice(&line).map_err(|err| {
                    ClientError::Protocol(format!("{err}: {}", String::from_utf8_lossy(&line)))
                })?;
                if !each(event) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// `GET /actions/{id}/log` with `query`, each chunk of text handed to `each` as it
    /// arrives (with `follow=1`, until the run ends).
    pub async fn action_log(
        &self,
        id: Uuid,
        query: &[(&str, String)],
        mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), ClientError> {
        let mut response = self
            .open_stream(&format!("/actions/{id}/log"), query)
            .await?;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.interrupted(e))? {
            if each(&chunk).is_err() {
                // The reader went away (a closed pipe): nothing more to print.
                return Ok(());
            }
        }
        Ok(())
    }

    fn interrupted(&self, err: reqwest::Error) -> ClientError {
        ClientError::Interrupted {
            addr: self.base.clone(),
            detail: err.to_string(),
        }
    }

    /// A GET whose answer is read as it comes, with no overall timeout.
    async fn open_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, ClientError> {
        let response = self
            .streaming
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .query(query)
            .send()
            .await
            .map_err(|err| {
                if err.is_connect() {
                    ClientError::Unreachable {
                        addr: self.base.clone(),
                        detail: err.to_string(),
                    }
                } else {
                    self.interrupted(err)
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(|e| self.interrupted(e))?;
            return Err(api_error(status, &bytes));
        }
        Ok(response)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|err| {
            let addr = self.base.clone();
            let detail = err.to_string();
            if err.is_connect() {
                ClientError::Unreachable { addr, detail }
            } else {
                ClientError::Interrupted { addr, detail }
            }
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| ClientError::Interrupted {
                addr: self.base.clone(),
                detail: err.to_string(),
            })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|err| {
                ClientError::Protocol(format!("{err}: {}", String::from_utf8_lossy(&bytes)))
            });
        }
        Err(api_error(status, &bytes))
    }
}

/// `text` as one path segment: every byte but letters, digits, `-`, `_` and `~` is
/// percent-encoded, slashes and dots included, so no argument can climb out of the path the
/// client means (`../../actions/<id>` stays a route key; a URL would resolve its `..`).
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("the daemon answered {status}"));
    ClientError::Api {
        status: status.as_u16(),
        message,
    }
}
