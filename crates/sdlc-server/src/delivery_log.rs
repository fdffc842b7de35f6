//! The last webhook requests and what became of each (accepted with its action, duplicate,
//! refused by signature, too large, no route...), so "why did my webhook not fire?" has an
//! answer. In memory and bounded ([`KEPT`]): refused requests are never written to the
//! database (a flood of them must not cost disk), and accepted ones are stored as actions.
//! A daemon restart starts an empty log. `GET /api/orchestrator/webhooks/deliveries`.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Requests kept, over all routes.
pub const KEPT: usize = 1000;

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Accepted,
    Duplicate,
    /// 401: the route's secret did not sign it.
    RejectedSignature,
    /// 413: over --max-body.
    TooLarge,
    /// 404: no route at that path.
    NoRoute,
    /// 400: the body could not be read.
    BadRequest,
    /// 503 or 507: the database refused to store it.
    Unavailable,
    Error,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Accepted => "accepted",
            DeliveryOutcome::Duplicate => "duplicate",
            DeliveryOutcome::RejectedSignature => "rejected_signature",
            DeliveryOutcome::TooLarge => "too_large",
            DeliveryOutcome::NoRoute => "no_route",
            DeliveryOutcome::BadRequest => "bad_request",
            DeliveryOutcome::Unavailable => "unavailable",
            DeliveryOutcome::Error => "error",
        }
    }

    /// The outcome of a refusal with `status`.
    pub fn of_refusal(status: StatusCode) -> DeliveryOutcome {
        match status.as_u16() {
            401 => DeliveryOutcome::RejectedSignature,
            413 => DeliveryOutcome::TooLarge,
            404 => DeliveryOutcome::NoRoute,
            400 => DeliveryOutcome::BadRequest,
            503 | 507 => DeliveryOutcome::Unavailable,
            _ => DeliveryOutcome::Error,
        }
    }
}

/// One request to `/webhooks/...`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryRecord {
    pub received_at: DateTime<Utc>,
    /// The path as requested (below `/webhooks/`), whether or not a route has it.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_id: Option<Uuid>,
    pub outcome: DeliveryOutcome,
    /// The HTTP status it was answered with.
    pub status: u16,
    /// The action it became (for a duplicate: the first delivery's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    pub body_bytes: usize,
    /// Why it was refused, as the sender was told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Default)]
pub struct DeliveryLog {
    records: Mutex<VecDeque<DeliveryRecord>>,
}

impl DeliveryLog {
    pub fn record(&self, record: DeliveryRecord) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() == KEPT {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// The newest first, at most `limit`, only for `path` when given.
    pub fn recent(&self, path: Option<&str>, limit: usize) -> Vec<DeliveryRecord> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records
            .iter()
            .rev()
            .filter(|r| path.is_none_or(|p| r.path == p))
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str, outcome: DeliveryOutcome) -> DeliveryRecord {
        DeliveryRecord {
            received_at: Utc::now(),
            path: path.into(),
            route_id: None,
            outcome,
            status: 202,
            action_id: None,
            delivery_id: None,
            body_bytes: 0,
            detail: None,
        }
    }

    #[test]
    fn the_log_keeps_the_newest_and_filters_by_path() {
        let log = DeliveryLog::default();
        for n in 0..KEPT + 5 {
            let path = if n % 2 == 0 { "a" } else { "b" };
            log.record(record(path, DeliveryOutcome::Accepted));
        }
        log.record(record("a", DeliveryOutcome::NoRoute));
        let all = log.recent(None, usize::MAX);
        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0].outcome, DeliveryOutcome::NoRoute, "newest first");
        let b = log.recent(Some("b"), 10);
        assert_eq!(b.len(), 10);
        assert!(b.iter().all(|r| r.path == "b"));
        assert_eq!(
            DeliveryOutcome::of_refusal(StatusCode::UNAUTHORIZED),
            DeliveryOutcome::RejectedSignature
        );
    }
}
