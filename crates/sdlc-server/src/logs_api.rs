//! `GET /actions/{id}/log`: the whole log of one run (an action, one of its attempts, or a
//! plan step), as text. `?stream=stdout|stderr` keeps one pipe (the daemon's notes always
//! come), `?tail=N` the last N lines, `?attempt=N` another attempt than the latest.
//! `?follow=1` streams a running run's lines as it prints them and ends with the run.
//!
//! Following: while the run is in flight on this daemon, its live log (`logs::live`) feeds
//! the answer; otherwise (it waits to start, runs on another node, or its outcome is being
//! committed) the answer looks again every `FOLLOW_POLL` and sends what the stored log holds
//! past what was sent (on PostgreSQL a node writes its runs' logs every second while they
//! run), until the action is finished.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use sdlc_core::StatusKind;
use sdlc_core::logs::{LiveLog, LogFilter, LogLine, Stream, to_text};
use sdlc_core::store::stored_lines;

use crate::{ApiError, AppState};

/// How often a follower with no live log here looks at the store again.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Query of `GET /actions/{id}/log`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// `1`: stream the lines of a running run as they come, until it ends.
    pub follow: Option<String>,
    /// `stdout` or `stderr`: only that pipe.
    pub stream: Option<String>,
    /// Only the last N lines (with `follow`, of what is there when the request comes).
    pub tail: Option<usize>,
    /// Which attempt (1 is the first); default the latest.
    pub attempt: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/actions/{id}/log",
    tag = "actions",
    summary = "A run's whole log (stdout and stderr), as text",
    params(("id" = String, Path, description = "The action's id (a UUID)"), LogQuery),
    responses(
        (status = 200, description = "The log's lines, each ended by a newline; header x-sdlc-attempt says whose", content_type = "text/plain", body = String),
        (status = 400, description = "not a UUID, or a bad filter", body = crate::error::ErrorBody),
        (status = 404, description = "no such action", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn action_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad_request(format!("'{id}' is not an action id (a UUID)")))?;
    let filter = LogFilter {
        stream: match query.stream.as_deref() {
            None | Some("" | "both" | "all") => None,
            Some(name) => Some(Stream::parse(name).ok_or_else(|| {
                ApiError::bad_request(format!("stream '{name}': say stdout or stderr"))
            })?),
        },
        tail: query.tail,
    };
    let follow = matches!(query.follow.as_deref(), Some("1" | "true" | "yes"));
    let action = state
        .with_db(move |db| db.get(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no action with id {id}")))?;
    if query
        .attempt
        .is_some_and(|a| a == 0 || a > action.attempt.max(1))
    {
        return Err(ApiError::not_found(format!(
            "action {id} has no attempt {}: it has run {} time(s)",
            query.attempt.unwrap_or(0),
            action.attempt
        )));
    }
    // The attempt in flight, when the one asked for is the current run.
    let current = action.status.kind() == StatusKind::Running
        && query.attempt.is_none_or(|a| a == action.attempt);
    let live = current
        .then(|| state.live_logs().get(id))
        .flatten()
        .filter(|_| action.plan_run.is_none());
    let (lines, attempt, next) = match &live {
        Some(live) => {
            let (lines, next) = live.snapshot();
            (lines, Some(action.attempt), next)
        }
        None if current => (Vec::new(), Some(action.attempt), 0),
        None => {
            let asked = query.attempt;
            match state.with_db(move |db| stored_lines(db, id, asked)).await? {
                Some((attempt, lines)) => {
                    let next = lines.len() as u64;
                    (lines, Some(attempt), next)
                }
                None => (Vec::new(), asked, 0),
            }
        }
    };
    let headers = [
        (
            header::CONTENT_TYPE,
            "text/plain; charset=utf-8".to_string(),
        ),
        (
            header::HeaderName::from_static("x-sdlc-attempt"),
            attempt.map_or_else(String::new, |a| a.to_string()),
        ),
    ];
    let first = to_text(&filter.apply(lines));
    let waiting = matches!(
        action.status.kind(),
        StatusKind::Pending | StatusKind::Running
    );
    if !follow || !(current || (waiting && query.attempt.is_none())) {
        return Ok((headers, first).into_response());
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let follow_filter = LogFilter {
        tail: None,
        ..filter
    };
    tokio::spawn(async move {
        if !first.is_empty() && sender.send(first).await.is_err() {
            return;
        }
        let followed = attempt.unwrap_or(0);
        let _ = follow_log(&state, id, live, next, followed, follow_filter, &sender).await;
    });
    Ok((
        headers,
        Body::new(crate::stream::ChannelBody::new(receiver)),
    )
        .into_response())
}

/// Sends the lines of action `id`'s run past the first `sent` until it ends (see the
/// module's header). Returns when the run ended or the reader went away.
async fn follow_log(
    state: &AppState,
    id: Uuid,
    mut live: Option<Arc<LiveLog>>,
    mut sent: u64,
    mut followed: u32,
    filter: LogFilter,
    sender: &tokio::sync::mpsc::Sender<Vec<u8>>,
) -> Result<(), ()> {
    let send = async |lines: Vec<LogLine>| {
        let text = to_text(&filter.apply(lines));
        if text.is_empty() {
            return Ok(());
        }
        sender.send(text).await.map_err(|_| ())
    };
    loop {
        if let Some(log) = &live {
            tokio::select! {
                () = log.wait_past(sent) => {}
                () = sender.closed() => return Err(()),
            }
            let (lines, next) = log.lines_since(sent);
            sent = next;
            send(lines).await?;
            if log.has_ended() {
                let (rest, _) = log.lines_since(sent);
                return send(rest).await;
            }
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_POLL) => {}
            () = sender.closed() => return Err(()),
        }
        if let Some(found) = state.live_logs().get(id) {
            // It started here meanwhile: its live log has every line from the first.
            followed = found.attempt;
            live = Some(found);
            sent = 0;
            continue;
        }
        let Ok(Some(action)) = state.with_db(move |db| db.get(id)).await else {
            return Ok(());
        };
        let kind = action.status.kind();
        if action.attempt != followed {
            // A retry (or its first run) started: its log begins anew.
            followed = action.attempt;
            sent = 0;
        }
        if action.attempt == 0 {
            continue;
        }
        // Running elsewhere (its node writes what it printed every second), or finished:
        // what is stored past what was sent.
        let attempt = Some(action.attempt);
        let Ok(stored) = state.with_db(move |db| stored_lines(db, id, attempt)).await else {
            return Ok(());
        };
        let lines = stored.map(|(_, lines)| lines).unwrap_or_default();
        let rest: Vec<LogLine> = lines.into_iter().skip(sent as usize).collect();
        sent += rest.len() as u64;
        send(rest).await?;
        if !matches!(kind, StatusKind::Running | StatusKind::Pending) {
            return Ok(());
        }
    }
}
