//! Runs reported from outside: work that runs elsewhere (a CI job, a script on another
//! machine) and tells the daemon when it starts and how it ended, so it is tracked like any
//! run (history, approvals, notifications, run groups, CSV).
//!
//! An external run is an action whose trigger is `External`. The daemon never runs it, never
//! claims it and never recovers it: only reports change its status (`Store::report`), in the
//! lifecycle of any action (pending → running → completed, failed, skipped, canceled, or
//! awaiting approval, which a person then decides). The words of the seed's task API
//! (`succeeded`, `queued`) are accepted beside ours.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::model::{Action, ActionStatus, ActionTrigger, StatusKind, check_run_id};

/// The most text a report's `reason` keeps.
const MAX_REASON_CHARS: usize = 2_000;
/// The most a task name may be, as a label.
const MAX_TASK_CHARS: usize = 200;

/// A status as a report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedStatus {
    /// Not started yet (`queued`, `pending`).
    Queued,
    Running,
    /// `completed` or `succeeded`.
    Completed,
    Failed,
    Skipped,
    Canceled,
    AwaitingApproval,
}

impl ReportedStatus {
    pub const WORDS: &'static str =
        "queued, running, completed (or succeeded), failed, skipped, canceled, awaiting_approval";

    pub fn parse(text: &str) -> Result<ReportedStatus, String> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "queued" | "pending" => ReportedStatus::Queued,
            "running" | "started" => ReportedStatus::Running,
            "completed" | "succeeded" | "success" => ReportedStatus::Completed,
            "failed" | "failure" => ReportedStatus::Failed,
            "skipped" => ReportedStatus::Skipped,
            "canceled" | "cancelled" => ReportedStatus::Canceled,
            "awaiting_approval" => ReportedStatus::AwaitingApproval,
            other => {
                return Err(format!(
                    "status '{other}': give one of {}",
                    ReportedStatus::WORDS
                ));
            }
        })
    }
}

/// `POST /actions/external`, `sdlc orchestrate report start`: a run that started (or is
/// queued) elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalStart {
    /// What runs, such as `seo.validate`: the run's label, and its tool unless `tool` says.
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The grouping it belongs to, such as `nightly-2026-12-01` (see run groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// What it was given, kept with the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// `running` (the default) or `queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// A client-chosen id, so a start sent again after a broken connection is stored once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
}

/// `PATCH /actions/{id}` with a `status`, `sdlc orchestrate report finish`: what became of
/// an external run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalReport {
    /// One of queued, running, completed (or succeeded), failed, skipped, canceled,
    /// awaiting_approval.
    pub status: String,
    /// A link to what the run produced, kept with a completed or awaiting result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_uri: Option<String>,
    /// Why it failed, was skipped or canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long it ran, when the reporter measured it; otherwise from its start report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// What it printed, kept as the run's log (bounded by the daemon's `--log-cap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// The run's result data (a completed run's `data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// A checked start: the action to store.
pub fn start_action(
    start: &ExternalStart,
    by: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Action, String> {
    let task = start.task.trim();
    if task.is_empty()
        || task.chars().count() > MAX_TASK_CHARS
        || task.chars().any(char::is_control)
    {
        return Err(format!(
            "task '{}': give a name of 1 to {MAX_TASK_CHARS} visible characters, such as seo.validate",
            start.task.chars().take(80).collect::<String>()
        ));
    }
    let tool = start.tool.as_deref().map(str::trim).unwrap_or(task);
    if tool.is_empty() || tool.chars().any(char::is_control) {
        return Err("tool: give a name of visible characters, or leave it out".to_string());
    }
    if let Some(run_id) = &start.run_id
        && check_run_id(run_id)?
    {
        return Err(format!(
            "--run-id '{run_id}': a reported run's grouping is given whole, without placeholders"
        ));
    }
    let status = match start.status.as_deref() {
        None => ReportedStatus::Running,
        Some(text) => ReportedStatus::parse(text)?,
    };
    let mut action = Action::new(
        task,
        tool,
        start.input.clone().unwrap_or(Value::Null),
        ActionTrigger::External {
            reported_at: now,
            reported_by: by.map(str::to_string),
        },
        now,
    );
    if let Some(id) = start.id {
        action.id = id;
        action.series = id;
    }
    action.run_id = start.run_id.clone();
    match status {
        ReportedStatus::Queued => {}
        ReportedStatus::Running => {
            action.status = ActionStatus::Running;
            action.attempt = 1;
            action.started_at = Some(now);
        }
        _ => {
            return Err(
                "status: a run starts running or queued; report how it ended with PATCH /api/orchestrator/actions/{id} (report finish)"
                    .to_string(),
            );
        }
    }
    Ok(action)
}

/// A reported log, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedLog {
    /// `crate::logs`' stored form, bounded as a run's own output is (head, a note of what
    /// was left out, tail).
    pub stored: Vec<u8>,
    /// Its last lines, for the run's `log_excerpt`.
    pub excerpt: Option<String>,
}

/// A reported log bounded by `cap` bytes; None for no text.
pub fn stored_log(text: &str, cap: usize) -> Option<ReportedLog> {
    if text.is_empty() || cap == 0 {
        return None;
    }
    let mut capture = crate::logs::LogCapture::new(cap);
    capture.push(crate::logs::Stream::Stdout, text.as_bytes());
    capture.finish_partials();
    let stored = crate::logs::encode(&capture.lines())?;
    let excerpt = crate::tool::outcome::excerpt_lines(text).map(|e| format!("log:\n{e}"));
    Some(ReportedLog { stored, excerpt })
}

/// The link a command's output names for what it produced: its last line `outputs_uri: URL`
/// or `outputs_uri=URL` (as a GitHub Actions step writes its outputs), or a JSON line with
/// `outputs_uri` at its top or in its `data`.
pub fn outputs_uri_in(text: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let line = line.trim();
        let named = line
            .strip_prefix("outputs_uri:")
            .or_else(|| line.strip_prefix("outputs_uri="))
            .map(|rest| rest.trim().trim_matches('"').to_string());
        named
            .or_else(|| {
                let value: Value = serde_json::from_str(line).ok()?;
                crate::view::outputs_uri_of(&value)
            })
            .filter(|uri| !uri.is_empty() && !uri.contains(char::is_whitespace))
    })
}

/// The checked form of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedReport {
    pub status: ReportedStatus,
    pub report: ExternalReport,
}

/// Checks the fields of `report`; the error says which is malformed.
pub fn check(report: &ExternalReport) -> Result<CheckedReport, String> {
    let status = ReportedStatus::parse(&report.status)?;
    if let Some(uri) = &report.outputs_uri
        && (uri.trim().is_empty() || uri.chars().any(char::is_control) || uri.len() > 2_000)
    {
        return Err("outputs_uri: give a link of up to 2,000 visible characters".to_string());
    }
    let mut report = report.clone();
    if let Some(reason) = &mut report.reason
        && reason.chars().count() > MAX_REASON_CHARS
    {
        *reason = reason.chars().take(MAX_REASON_CHARS).collect();
    }
    Ok(CheckedReport { status, report })
}

/// The outcome status a finishing report gives, with its result.
pub fn outcome(checked: &CheckedReport) -> Option<ActionStatus> {
    let report = &checked.report;
    let reason = |default: &str| {
        report
            .reason
            .clone()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    let result = || {
        let mut result = serde_json::Map::new();
        if let Some(uri) = &report.outputs_uri {
            result.insert("outputs_uri".into(), Value::String(uri.clone()));
        }
        if let Some(data) = &report.data {
            result.insert("data".into(), data.clone());
        }
        Value::Object(result)
    };
    Some(match checked.status {
        ReportedStatus::Queued | ReportedStatus::Running => return None,
        ReportedStatus::Completed => ActionStatus::Completed { result: result() },
        ReportedStatus::AwaitingApproval => ActionStatus::AwaitingApproval { result: result() },
        ReportedStatus::Failed => ActionStatus::Failed {
            reason: reason("reported failed"),
        },
        ReportedStatus::Skipped => ActionStatus::Skipped {
            reason: reason("reported skipped"),
        },
        ReportedStatus::Canceled => ActionStatus::Canceled {
            reason: reason("reported canceled"),
        },
    })
}

/// Whether `old` can take a report of `status`; the refusal says why not (it is not reported
/// from outside, or is past what such a report may change).
pub fn may_report(old: &Action, status: ReportedStatus) -> Result<(), String> {
    if !old.is_external() {
        return Err(format!(
            "action {} is run by the daemon, which records its status itself; only runs reported from outside (report start, POST /api/orchestrator/actions/external) take reports",
            old.id
        ));
    }
    let kind = old.status.kind();
    let allowed = match kind {
        StatusKind::Pending => true,
        StatusKind::Running => status != ReportedStatus::Queued,
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    let what = match kind {
        StatusKind::AwaitingApproval => "it awaits approval: approve or reject it".to_string(),
        StatusKind::Running => "a running run cannot be queued again".to_string(),
        kind => format!("it ended {kind}, and a finished run is never changed"),
    };
    Err(format!(
        "action {} cannot be reported {}: {what}",
        old.id,
        status_word(status)
    ))
}

fn status_word(status: ReportedStatus) -> &'static str {
    match status {
        ReportedStatus::Queued => "queued",
        ReportedStatus::Running => "running",
        ReportedStatus::Completed => "completed",
        ReportedStatus::Failed => "failed",
        ReportedStatus::Skipped => "skipped",
        ReportedStatus::Canceled => "canceled",
        ReportedStatus::AwaitingApproval => "awaiting_approval",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> Action {
        let start = ExternalStart {
            task: "seo.validate".into(),
            run_id: Some("nightly-2026-12-01".into()),
            ..Default::default()
        };
        start_action(&start, Some("ci"), Utc::now()).unwrap()
    }

    #[test]
    fn the_seeds_words_and_ours_are_read() {
        assert_eq!(
            ReportedStatus::parse("succeeded"),
            Ok(ReportedStatus::Completed)
        );
        assert_eq!(ReportedStatus::parse("queued"), Ok(ReportedStatus::Queued));
        assert_eq!(
            ReportedStatus::parse("Awaiting_Approval"),
            Ok(ReportedStatus::AwaitingApproval)
        );
        let err = ReportedStatus::parse("done").unwrap_err();
        assert!(
            err.contains("status 'done'") && err.contains("succeeded"),
            "{err}"
        );
    }

    #[test]
    fn a_start_is_running_and_external() {
        let action = started();
        assert_eq!(action.status, ActionStatus::Running);
        assert!(action.is_external());
        assert_eq!(action.tool_name, "seo.validate");
        assert!(action.started_at.is_some());
        let bad = ExternalStart {
            task: " ".into(),
            ..Default::default()
        };
        assert!(
            start_action(&bad, None, Utc::now())
                .unwrap_err()
                .contains("task")
        );
        let templated = ExternalStart {
            task: "t".into(),
            run_id: Some("nightly-{date}".into()),
            ..Default::default()
        };
        assert!(start_action(&templated, None, Utc::now()).is_err());
    }

    #[test]
    fn reports_follow_the_lifecycle() {
        let action = started();
        assert!(may_report(&action, ReportedStatus::Completed).is_ok());
        assert!(may_report(&action, ReportedStatus::Queued).is_err());
        let mut done = action.clone();
        done.status = ActionStatus::Completed {
            result: Value::Null,
        };
        let Err(why) = may_report(&done, ReportedStatus::Failed) else {
            panic!("a finished run took a report");
        };
        assert!(why.contains("ended completed"), "{why}");
        let own = Action::new(
            "x",
            "x",
            Value::Null,
            ActionTrigger::Manual {
                requested_at: Utc::now(),
            },
            Utc::now(),
        );
        assert!(may_report(&own, ReportedStatus::Completed).is_err());
    }

    #[test]
    fn a_commands_output_names_its_link() {
        let out = "building\noutputs_uri: https://a.example/1\nmore\n";
        assert_eq!(outputs_uri_in(out).as_deref(), Some("https://a.example/1"));
        let gha = "outputs_uri=https://a.example/2\nlater\noutputs_uri=\"https://a.example/3\"";
        assert_eq!(outputs_uri_in(gha).as_deref(), Some("https://a.example/3"));
        let json = r#"{"ok": true, "data": {"outputs_uri": "https://a.example/4"}}"#;
        assert_eq!(outputs_uri_in(json).as_deref(), Some("https://a.example/4"));
        assert_eq!(outputs_uri_in("no link here\noutputs_uri: \n"), None);
    }

    #[test]
    fn a_completed_report_keeps_its_link() {
        let report = ExternalReport {
            status: "succeeded".into(),
            outputs_uri: Some("https://ci.example/run/7".into()),
            ..Default::default()
        };
        let checked = check(&report).unwrap();
        let Some(ActionStatus::Completed { result }) = outcome(&checked) else {
            panic!("not completed");
        };
        assert_eq!(result["outputs_uri"], "https://ci.example/run/7");
        let failed = check(&ExternalReport {
            status: "failed".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            outcome(&failed),
            Some(ActionStatus::Failed {
                reason: "reported failed".into()
            })
        );
    }
}
