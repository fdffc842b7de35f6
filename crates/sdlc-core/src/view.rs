//! `ActionView`: the flat JSON form of an action that the API answers and `list --json` /
//! `show --json` print. Field names are a public contract: add fields, never rename them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::model::{
    Action, ActionStatus, ActionTrigger, AttemptRecord, CatchUp, Overlap, Recurrence, StatusKind,
};

/// One action, flattened for people and scripts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionView {
    pub id: Uuid,
    pub label: String,
    pub tool_name: String,
    pub tool_input: Value,
    /// One of pending, running, completed, failed, paused, skipped.
    pub status: StatusKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `scheduled`, `manual` or `webhook`.
    pub trigger: String,
    pub due_at: DateTime<Utc>,
    /// The schedule slot this occurrence stands for (differs from `due_at` while a retry or a
    /// queued run waits).
    pub scheduled_at: DateTime<Utc>,
    /// For `--every` actions: the interval.
    pub recurrence_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// Overlap policy of a recurring action: skip, queue-one, allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    /// Catch-up policy of a recurring action: latest, none, all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_secs: Option<f64>,
    /// Every finished attempt: attempt number, outcome, reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// Held by `--overlap queue-one` until this run finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_behind: Option<Uuid>,
    pub series: Uuid,
    pub attempt: u32,
    pub timeout_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// The webhook body as text (U+FFFD for bytes that are not UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_payload: Option<String>,
    /// The webhook body's exact bytes in hex, when it was not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_payload_hex: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The grouping the user set (`add --run-id`), else the plan run this action is a step
    /// of, or the run it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The plan run this action is a step of, or the run it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_run_id: Option<Uuid>,
    /// The step of that run it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// The plan it starts a run of (an action targeting a plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// A command step's process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<crate::plan::CommandSpec>,
    /// `pending`, `approved` or `rejected`, once the action waited for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_state: Option<crate::model::ApprovalState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// Who the decision's request said decided, when not the approver its token proves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stated_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The action waits for approval when its run completes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requires_approval: bool,
    /// How long its last run took (to its end, or to when it began awaiting approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// A link the run reported: `outputs_uri` at the top of its result or in `data`, or a
    /// command step's stdout line `outputs_uri: <url>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_uri: Option<String>,
    /// The first and last lines of the last run's stderr (and a command's stdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_excerpt: Option<String>,
    /// When a receiver last acknowledged a notification about this action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<DateTime<Utc>>,
}

/// The link a result reports (see [`ActionView::outputs_uri`]).
pub fn outputs_uri_of(result: &Value) -> Option<String> {
    let field = |value: &Value| {
        value
            .get("outputs_uri")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|uri| !uri.is_empty())
            .map(str::to_string)
    };
    field(result)
        .or_else(|| result.get("data").and_then(field))
        .or_else(|| {
            result
                .get("stdout")
                .and_then(Value::as_str)?
                .lines()
                .find_map(|line| line.trim().strip_prefix("outputs_uri:"))
                .map(str::trim)
                .filter(|uri| !uri.is_empty())
                .map(str::to_string)
        })
}

/// The reason a status carries (failed, skipped, paused).
pub fn reason_of(status: &ActionStatus) -> Option<&str> {
    match status {
        ActionStatus::Failed { reason }
        | ActionStatus::Skipped { reason }
        | ActionStatus::Canceled { reason } => Some(reason),
        ActionStatus::Paused { reason } => reason.as_deref(),
        _ => None,
    }
}

/// The result a status carries (completed, awaiting approval).
pub fn result_of(status: &ActionStatus) -> Option<&Value> {
    match status {
        ActionStatus::Completed { result } | ActionStatus::AwaitingApproval { result } => {
            Some(result)
        }
        _ => None,
    }
}

impl From<&Action> for ActionView {
    fn from(action: &Action) -> ActionView {
        let result = result_of(&action.status).cloned();
        let reason = reason_of(&action.status).map(str::to_string);
        let mut webhook = WebhookFields::default();
        let trigger = match &action.trigger {
            ActionTrigger::Scheduled { .. } => "scheduled",
            ActionTrigger::Manual { .. } => "manual",
            ActionTrigger::Webhook {
                route_id,
                route_path,
                raw_payload,
                raw_payload_hex,
                received_at,
                delivery_id,
                ..
            } => {
                webhook = WebhookFields {
                    route_id: Some(*route_id),
                    route_path: Some(route_path.clone()),
                    received_at: Some(*received_at),
                    delivery_id: delivery_id.clone(),
                    raw_payload: Some(raw_payload.clone()),
                    raw_payload_hex: raw_payload_hex.clone(),
                };
                "webhook"
            }
            ActionTrigger::External { .. } => "external",
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
            scheduled_at: action.scheduled_at(),
            recurrence_secs: match &action.recurrence {
                Some(Recurrence::Every { interval_ms }) => Some(*interval_ms as f64 / 1000.0),
                _ => None,
            },
            cron: match &action.recurrence {
                Some(Recurrence::Cron { expr, .. }) => Some(expr.clone()),
                _ => None,
            },
            tz: match &action.recurrence {
                Some(Recurrence::Cron { tz, .. }) => Some(tz.clone()),
                _ => None,
            },
            overlap: action.recurrence.as_ref().map(|_| action.policy.overlap),
            catch_up: action.recurrence.as_ref().map(|_| action.policy.catch_up),
            retries: action.retry.map(|r| r.retries),
            backoff_secs: action.retry.map(|r| r.backoff_ms as f64 / 1000.0),
            attempts: action.attempts.clone(),
            retry_at: action.retry_at,
            queued_behind: action.queued_behind,
            series: action.series,
            attempt: action.attempt,
            timeout_secs: action.timeout_ms.map(|ms| ms as f64 / 1000.0),
            route_id: webhook.route_id,
            route_path: webhook.route_path,
            received_at: webhook.received_at,
            delivery_id: webhook.delivery_id,
            raw_payload: webhook.raw_payload,
            raw_payload_hex: webhook.raw_payload_hex,
            created_at: action.created_at,
            updated_at: action.updated_at,
            started_at: action.started_at,
            finished_at: action.finished_at,
            run_id: action.run_ids().next().map(|id| id.into_owned()),
            plan_run_id: action.step.as_ref().map(|s| s.run_id).or(action.plan_run),
            step_id: action.step.as_ref().map(|s| s.step_id.clone()),
            plan: action.plan.clone(),
            command: action.command.clone(),
            approval_state: action.approval.as_ref().map(|a| a.state),
            approver: action.approval.as_ref().and_then(|a| a.approver.clone()),
            stated_by: action.approval.as_ref().and_then(|a| a.stated_by.clone()),
            approved_at: action.approval.as_ref().and_then(|a| a.approved_at),
            rejected_at: action.approval.as_ref().and_then(|a| a.rejected_at),
            note: action.approval.as_ref().and_then(|a| a.note.clone()),
            requires_approval: action.requires_approval.is_some(),
            duration_ms: {
                let end = match action.status {
                    ActionStatus::AwaitingApproval { .. } => Some(action.updated_at),
                    // Running again (a retry): the end of an earlier attempt is not its end.
                    _ if !action.status.kind().is_finished() => None,
                    _ => action.finished_at,
                };
                end.zip(action.started_at)
                    .map(|(end, start)| crate::plan::run::elapsed_ms(start, end))
            },
            outputs_uri: match result_of(&action.status) {
                Some(result) => outputs_uri_of(result),
                // A failed, skipped or canceled run reported from outside may link its output.
                None if action.status.kind().is_finished() => {
                    action.attempts.last().and_then(|a| a.outputs_uri.clone())
                }
                None => None,
            },
            log_excerpt: action.log_excerpt.clone(),
            notified_at: action.notified_at,
        }
    }
}

/// The columns of a history CSV (`paged.csv`, `list --format csv`), in order.
pub const CSV_COLUMNS: [&str; 13] = [
    "id",
    "label",
    "tool",
    "run_id",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "duration_ms",
    "outputs_uri",
    "approval_state",
    "approver",
    "reason",
];

/// Writes actions as RFC 4180 CSV: the header row first, then one row per action.
pub struct CsvWriter<W: std::io::Write> {
    out: csv::Writer<W>,
}

impl<W: std::io::Write> CsvWriter<W> {
    pub fn new(out: W) -> std::io::Result<CsvWriter<W>> {
        CsvWriter::with_columns(out, &CSV_COLUMNS)
    }

    /// A writer of other rows than actions' (run groups): `columns` is its header row.
    pub fn with_columns(out: W, columns: &[&str]) -> std::io::Result<CsvWriter<W>> {
        let mut out = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(out);
        out.write_record(columns).map_err(csv_io)?;
        Ok(CsvWriter { out })
    }

    /// One row of cells, already made neutral where they are users' text.
    pub fn write_cells<I, T>(&mut self, cells: I) -> std::io::Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        self.out.write_record(cells).map_err(csv_io)
    }

    pub fn write(&mut self, a: &ActionView) -> std::io::Result<()> {
        let time = |t: Option<DateTime<Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default()
        };
        let text = |t: &Option<String>| neutral_cell(t.as_deref().unwrap_or_default());
        self.out
            .write_record([
                a.id.to_string(),
                neutral_cell(&a.label),
                neutral_cell(&a.tool_name),
                text(&a.run_id),
                a.status.to_string(),
                time(Some(a.created_at)),
                time(a.started_at),
                time(a.finished_at),
                a.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
                text(&a.outputs_uri),
                a.approval_state
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                text(&a.approver),
                text(&a.reason),
            ])
            .map_err(csv_io)
    }

    /// Flushes and hands back the output.
    pub fn finish(self) -> std::io::Result<W> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// A text cell a spreadsheet will not run: one that starts with `=`, `+`, `-`, `@`, a tab or
/// a carriage return is read as a formula by Excel, LibreOffice and Sheets, so it gets a
/// leading `'` (OWASP's advice for CSV injection). Labels, reasons and addresses come from
/// users and tools.
pub fn neutral_cell(text: &str) -> String {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{text}"),
        _ => text.to_string(),
    }
}

fn csv_io(err: csv::Error) -> std::io::Error {
    match err.into_kind() {
        csv::ErrorKind::Io(err) => err,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

#[derive(Default)]
struct WebhookFields {
    route_id: Option<Uuid>,
    route_path: Option<String>,
    received_at: Option<DateTime<Utc>>,
    delivery_id: Option<String>,
    raw_payload: Option<String>,
    raw_payload_hex: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_outputs_link_is_found_where_tools_and_commands_put_it() {
        let pr = "https://example.com/pull/1";
        assert_eq!(
            outputs_uri_of(&json!({"outputs_uri": pr})).as_deref(),
            Some(pr)
        );
        assert_eq!(
            outputs_uri_of(&json!({"data": {"outputs_uri": pr}})).as_deref(),
            Some(pr)
        );
        let stdout = format!("building\noutputs_uri: {pr}\ndone\n");
        assert_eq!(
            outputs_uri_of(&json!({"exit_code": 0, "stdout": stdout})).as_deref(),
            Some(pr)
        );
        assert_eq!(outputs_uri_of(&json!({"outputs_uri": "  "})), None);
        assert_eq!(outputs_uri_of(&json!({"ok": true})), None);
    }

    #[test]
    fn formula_cells_are_neutralised() {
        for formula in ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutral_cell(formula), format!("'{formula}"));
        }
        for plain in ["report, weekly", "a=b", "", "'quoted"] {
            assert_eq!(neutral_cell(plain), plain);
        }
    }
}
