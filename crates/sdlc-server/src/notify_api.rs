//! `/api/orchestrator` for notifications: `GET /notifications` (`status`, `limit`: newest
//! first, receivers masked) and `POST /notify/test` (a test message to every receiver the
//! daemon has, with each answer).

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use sdlc_core::notify::{DeliveryState, Notification, NotifyEvent, ReceiverKind};

use crate::notify_sender::{TestAnswer, send_tests};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/notifications", get(list))
        .route("/notify/test", post(test))
}

/// One notification as lists show it: its receiver's URL masked.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationView {
    pub id: Uuid,
    pub event: NotifyEvent,
    /// The action (or plan run) it is about.
    pub subject_id: Uuid,
    pub task: String,
    #[serde(default)]
    pub run_id: Option<String>,
    pub kind: ReceiverKind,
    pub receiver: String,
    pub status: DeliveryState,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub next_try_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub sent_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_answer: Option<String>,
}

impl From<&Notification> for NotificationView {
    fn from(n: &Notification) -> NotificationView {
        NotificationView {
            id: n.id,
            event: n.event,
            subject_id: n.subject.id,
            task: n.subject.task.clone(),
            run_id: n.subject.run_id.clone(),
            kind: n.receiver.kind,
            receiver: n.receiver.masked(),
            status: n.state,
            attempts: n.attempts,
            created_at: n.created_at,
            next_try_at: (n.state == DeliveryState::Pending).then_some(n.next_try_at),
            sent_at: n.sent_at,
            last_answer: n.last_answer.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    pub status: Option<String>,
    pub limit: Option<String>,
}

/// Parses `status` and `limit` of a notification list (default 100, at most 10,000).
pub fn check_query(
    status: Option<&str>,
    limit: Option<&str>,
) -> Result<(Option<DeliveryState>, usize), String> {
    let status = status
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse::<DeliveryState>)
        .transpose()?;
    let limit = match limit.map(str::trim).filter(|l| !l.is_empty()) {
        None => 100,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => {
                return Err(format!(
                    "limit '{text}': give a whole number from 1 to 10000"
                ));
            }
        },
    };
    Ok((status, limit))
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/notifications",
    tag = "notifications",
    summary = "The notification outbox, newest first",
    params(NotificationQuery),
    responses(
        (status = 200, description = "Notifications", body = Vec<NotificationView>),
        (status = 400, description = "a bad filter", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<NotificationQuery>,
) -> Result<Json<Vec<NotificationView>>, ApiError> {
    let (status, limit) = check_query(query.status.as_deref(), query.limit.as_deref())
        .map_err(ApiError::bad_request)?;
    let notes = state
        .with_db(move |db| db.list_notifications(status, limit))
        .await?;
    Ok(Json(notes.iter().map(NotificationView::from).collect()))
}

#[utoipa::path(
    post,
    path = "/api/orchestrator/notify/test",
    tag = "notifications",
    summary = "Send a test message to every receiver",
    responses(
        (status = 200, description = "Each receiver's answer", body = Vec<TestAnswer>),
        (status = 422, description = "No receiver is configured", body = crate::error::ErrorBody)
    )
)]
pub(crate) async fn test(State(state): State<AppState>) -> Result<Json<Vec<TestAnswer>>, ApiError> {
    let config = state.with_db(|db| db.notify_config()).await?;
    if config.receivers.is_empty() {
        return Err(ApiError::unprocessable(
            "no receivers are configured: start the daemon with --notify-slack URL or --notify-webhook URL",
        ));
    }
    Ok(Json(
        send_tests(&config.receivers, std::time::Duration::from_secs(10)).await,
    ))
}
