//! `ActionView`: the flat JSON form of an action that the API answers and `list --json` /
//! `show --json` print. Field names are a public contract: add fields, never rename them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::model::{Action, ActionStatus, ActionTrigger, Recurrence, StatusKind};

/// One action, flattened for people and scripts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionView {
    pub id: Uuid,
    pub label: String,
    pub tool_name: String,
    pub tool_input: Value,
    /// One of pending, running, completed, failed.
    pub status: StatusKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `scheduled` or `webhook`.
    pub trigger: String,
    pub due_at: DateTime<Utc>,
    pub recurrence_secs: Option<f64>,
    pub series: Uuid,
    pub attempt: u32,
    pub timeout_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<&Action> for ActionView {
    fn from(action: &Action) -> ActionView {
        let (result, reason) = match &action.status {
            ActionStatus::Completed { result } => (Some(result.clone()), None),
            ActionStatus::Failed { reason } => (None, Some(reason.clone())),
            ActionStatus::Pending | ActionStatus::Running => (None, None),
        };
        let (trigger, route_id, received_at) = match &action.trigger {
            ActionTrigger::Scheduled { .. } => ("scheduled", None, None),
            ActionTrigger::Webhook {
                route_id,
                received_at,
                ..
            } => ("webhook", Some(*route_id), Some(*received_at)),
        };
        ActionView {
            id: action.id,
            label: action.label.clone(),
            tool_name: action.tool_name.clone(),
            tool_input: action.tool_input.clone(),
            status: action.status.kind(),
            result,
            reason,
            trigger: trigger.to_string(),
            due_at: action.due_at(),
            recurrence_secs: action.recurrence.map(|r| match r {
                Recurrence::Every { interval_ms } => interval_ms as f64 / 1000.0,
            }),
            series: action.series,
            attempt: action.attempt,
            timeout_secs: action.timeout_ms.map(|ms| ms as f64 / 1000.0),
            route_id,
            received_at,
            created_at: action.created_at,
            updated_at: action.updated_at,
            started_at: action.started_at,
            finished_at: action.finished_at,
        }
    }
}
