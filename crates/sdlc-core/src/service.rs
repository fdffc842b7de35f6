//! Turning a request to add an action (or a webhook route) into a checked record, the same
//! way for the CLI (no daemon running) and for the daemon's API. Everything is refused before
//! anything is stored: a bad label, an unreadable time or duration, an unknown tool, input that
//! fails the tool's `input_schema`, a bad webhook path or a template that can never be JSON.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::plan_target;
use crate::model::{
    Action, ActionTrigger, CatchUp, Overlap, Recurrence, RetryPolicy, SchedulePolicy,
};
use crate::schedule::{check_recurrence, parse_at, parse_duration, slot_after};
use crate::tool::{meta::read_meta, tool_script, validate_input};
use crate::webhook::{DEFAULT_TEMPLATE, NewRoute, WebhookRoute, check_template, normalize_path};

/// A request to add an action, as the CLI sends it and the API accepts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewAction {
    /// The id to give the action, chosen by the client so that a request repeated after a
    /// broken connection cannot store it twice; a new one when absent.
    #[serde(default)]
    pub id: Option<uuid::Uuid>,
    pub label: String,
    /// The tool to run (empty when `plan` is given).
    #[serde(default)]
    pub tool_name: String,
    /// Start a run of this plan (of `.sdlc/plans/`) instead of running a tool; `tool_input`
    /// then holds the run's variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The JSON given to the tool on stdin; `{}` when absent.
    #[serde(default = "empty_object")]
    pub tool_input: Value,
    /// When it is due: `now` (the default), `now+30s`, or RFC 3339.
    #[serde(default)]
    pub at: Option<String>,
    /// Repeat at this interval: seconds as a number, or text such as `5m`.
    #[serde(default)]
    pub every: Option<DurationSpec>,
    /// Limit on one run: seconds as a number, or text such as `30s`.
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
    /// Repeat on a cron schedule (5 fields, or 6 with seconds) instead of `every`.
    #[serde(default)]
    pub cron: Option<String>,
    /// IANA time zone of `cron` (default UTC).
    #[serde(default)]
    pub tz: Option<String>,
    /// Retry a failed run this many times.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Wait before the first retry (doubling after each), default 10s.
    #[serde(default)]
    pub backoff: Option<DurationSpec>,
    /// skip (default), queue-one or allow.
    #[serde(default)]
    pub overlap: Option<String>,
    /// latest (default), none or all.
    #[serde(default)]
    pub catch_up: Option<String>,
    /// A person must approve each run's result before the action completes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requires_approval: bool,
    /// Nobody deciding within this long rejects the run ("approval timed out").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout: Option<DurationSpec>,
    /// A grouping for history (`nightly-{date}`: each occurrence formats its slot's date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The events that notify about this action, instead of the daemon's `--notify-on`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_on: Option<Vec<String>>,
    /// Never notify about this action.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_notify: bool,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A duration as a number of seconds or as text `parse_duration` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DurationSpec {
    Seconds(f64),
    Text(String),
}

impl DurationSpec {
    fn parse(&self, what: &str) -> Result<Duration, InvalidRequest> {
        match self {
            DurationSpec::Seconds(secs) if secs.is_finite() && *secs >= 0.0 => {
                parse_duration(&secs.to_string())
                    .map_err(|e| InvalidRequest(format!("{what}: {e}")))
            }
            DurationSpec::Seconds(secs) => Err(InvalidRequest(format!(
                "{what}: {secs} is not a duration: use a positive number of seconds"
            ))),
            DurationSpec::Text(text) => {
                parse_duration(text).map_err(|e| InvalidRequest(format!("{what}: {e}")))
            }
        }
    }
}

/// Changes to a pending or paused action (`PATCH /actions/{id}`, `edit <id>`): each field
/// given replaces the action's own; the result passes the same checks as `add`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionEdit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_input: Option<Value>,
    /// When it is due (`now+30s`, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
}

impl ActionEdit {
    pub fn is_empty(&self) -> bool {
        self == &ActionEdit::default()
    }
}

/// The edited form of `old`: the request `add` would have needed to make it, with `edit`
/// over it, checked by [`prepare_action`]; the action keeps its id, series, history of
/// attempts, creation time and status.
pub async fn prepare_edit(
    root: &Path,
    old: &Action,
    edit: ActionEdit,
    now: DateTime<Utc>,
) -> Result<Prepared, InvalidRequest> {
    if edit.is_empty() {
        return Err(InvalidRequest(
            "nothing to change: give --label, --input, --at, --every, --cron (with --tz) or --timeout".to_string(),
        ));
    }
    if !matches!(
        old.status.kind(),
        crate::StatusKind::Pending | crate::StatusKind::Paused
    ) {
        return Err(InvalidRequest(format!(
            "action {} is {}; only a pending or paused action can be edited",
            old.id,
            old.status.kind()
        )));
    }
    if old.step.is_some() {
        return Err(InvalidRequest(format!(
            "action {} is a step of plan run {}: edit the plan instead",
            old.id,
            old.step.as_ref().map(|s| s.run_id).unwrap_or_default()
        )));
    }
    let duration = |ms: u64| DurationSpec::Text(format!("{ms}ms"));
    let (mut every, mut cron, mut tz) = match &old.recurrence {
        Some(Recurrence::Every { interval_ms }) => (Some(duration(*interval_ms)), None, None),
        Some(Recurrence::Cron { expr, tz }) => (None, Some(expr.clone()), Some(tz.clone())),
        None => (None, None, None),
    };
    if edit.every.is_some() {
        (every, cron, tz) = (edit.every, None, None);
    }
    if edit.cron.is_some() {
        (every, cron) = (None, edit.cron);
        tz = edit.tz.or(tz);
    } else if edit.tz.is_some() {
        tz = edit.tz;
    }
    let edit_at = edit.at.is_some();
    let request = NewAction {
        id: Some(old.id),
        label: edit.label.unwrap_or_else(|| old.label.clone()),
        tool_name: if old.plan.is_some() {
            String::new()
        } else {
            old.tool_name.clone()
        },
        plan: old.plan.clone(),
        tool_input: edit.tool_input.unwrap_or_else(|| old.tool_input.clone()),
        at: Some(
            edit.at
                .unwrap_or_else(|| old.scheduled_at().max(now).to_rfc3339()),
        ),
        every,
        timeout: edit.timeout.or(old.timeout_ms.map(duration)),
        cron,
        tz,
        retries: old.retry.map(|r| r.retries),
        backoff: old.retry.map(|r| duration(r.backoff_ms)),
        overlap: old
            .recurrence
            .as_ref()
            .map(|_| old.policy.overlap.to_string()),
        catch_up: old
            .recurrence
            .as_ref()
            .map(|_| old.policy.catch_up.to_string()),
        requires_approval: old.requires_approval.is_some(),
        approval_timeout: old
            .requires_approval
            .as_ref()
            .and_then(|a| a.timeout_ms)
            .map(duration),
        run_id: old.run_id_template.clone().or(old.run_id.clone()),
        notify_on: old
            .notify_on
            .as_ref()
            .filter(|events| !events.is_empty())
            .map(|events| events.iter().map(|e| e.to_string()).collect()),
        no_notify: old.notify_on.as_ref().is_some_and(Vec::is_empty),
    };
    let mut prepared = prepare_action(root, request, now).await?;
    let new = &mut prepared.action;
    new.series = old.series;
    new.created_at = old.created_at;
    new.attempt = old.attempt;
    new.attempts = old.attempts.clone();
    new.status = old.status.clone();
    new.queued_behind = old.queued_behind;
    new.next_scheduled = old.next_scheduled;
    new.catch_up_left = old.catch_up_left;
    new.log_excerpt = old.log_excerpt.clone();
    new.notified_at = old.notified_at;
    let ActionTrigger::Scheduled {
        next_tick_at: new_time,
    } = new.trigger
    else {
        unreachable!("prepare_action makes a scheduled trigger");
    };
    new.retry_at = match (&old.trigger, edit_at) {
        // A scheduled action's time is its trigger; a retry it waits for keeps its own time
        // unless the edit moves it.
        (ActionTrigger::Scheduled { .. }, true) => None,
        (ActionTrigger::Scheduled { .. }, false) => old.retry_at,
        // A manual run's or a webhook's trigger says where it came from: it stays, and a new
        // time is held as the due time.
        (_, true) => Some(new_time),
        (_, false) => old.retry_at,
    };
    if !matches!(old.trigger, ActionTrigger::Scheduled { .. }) {
        new.trigger = old.trigger.clone();
    }
    Ok(prepared)
}

/// A request that cannot be accepted; the message says what and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

/// A checked action, ready to store, and anything the user should hear about it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub action: Action,
    pub warnings: Vec<String>,
}

/// Recurring faster than this would mostly measure process start-up.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_LABEL_CHARS: usize = 200;

/// Checks `request` against the project at `root` and builds the action it describes.
pub async fn prepare_action(
    root: &Path,
    request: NewAction,
    now: DateTime<Utc>,
) -> Result<Prepared, InvalidRequest> {
    check_label(&request.label)?;
    let recurrence = recurrence_of(&request, now)?;
    let due = match (&request.at, &recurrence) {
        (Some(spec), _) => parse_at(spec, now).map_err(InvalidRequest)?,
        // A cron action first runs at its first slot; anything else at once.
        (None, Some(cron @ Recurrence::Cron { .. })) => slot_after(cron, now).ok_or_else(|| {
            InvalidRequest("--cron: the expression never fires after now".to_string())
        })?,
        (None, _) => now,
    };
    let policy = policy_of(&request, recurrence.is_some())?;
    let retry = retry_of(&request)?;
    let timeout_ms = match &request.timeout {
        Some(spec) => {
            let timeout = spec.parse("--timeout")?;
            if timeout.is_zero() {
                return Err(InvalidRequest(
                    "--timeout: must be longer than zero".to_string(),
                ));
            }
            Some(timeout.as_millis().max(1) as u64)
        }
        None => None,
    };

    let mut warnings = Vec::new();
    let tool_name = match &request.plan {
        Some(plan) => {
            if !request.tool_name.is_empty() {
                return Err(InvalidRequest(
                    "give --tool or --plan, not both: an action runs a tool or starts a plan"
                        .to_string(),
                ));
            }
            check_plan_target(root, plan, &request.tool_input).await?;
            plan_target(plan)
        }
        None => {
            let script =
                tool_script(root, &request.tool_name).map_err(|e| InvalidRequest(e.to_string()))?;
            match read_meta(&script, root).await {
                Ok(meta) => validate_input(&meta, &request.tool_input).map_err(InvalidRequest)?,
                Err(err) => warnings.push(format!("{err}; the input was not checked")),
            }
            request.tool_name
        }
    };

    let mut action = Action::new(
        request.label,
        tool_name,
        request.tool_input,
        ActionTrigger::Scheduled { next_tick_at: due },
        now,
    );
    action.plan = request.plan;
    let approval_timeout = match &request.approval_timeout {
        Some(spec) => {
            let timeout = spec.parse("--approval-timeout")?;
            if timeout.is_zero() {
                return Err(InvalidRequest(
                    "--approval-timeout: must be longer than zero".to_string(),
                ));
            }
            Some(timeout.as_millis().max(1) as u64)
        }
        None => None,
    };
    if request.requires_approval || approval_timeout.is_some() {
        action.requires_approval = Some(crate::model::ApprovalSpec {
            prompt: None,
            timeout_ms: approval_timeout,
        });
    }
    if let Some(run_id) = &request.run_id {
        let run_id = run_id.trim();
        if crate::model::check_run_id(run_id).map_err(InvalidRequest)? {
            action.run_id_template = Some(run_id.to_string());
            action.run_id = Some(crate::model::format_run_id(
                run_id,
                due,
                recurrence.as_ref(),
            ));
        } else {
            action.run_id = Some(run_id.to_string());
        }
    }
    action.notify_on = match (&request.notify_on, request.no_notify) {
        (Some(_), true) => {
            return Err(InvalidRequest(
                "give --notify-on or --no-notify, not both".to_string(),
            ));
        }
        (Some(events), false) => Some(crate::notify::parse_events(events).map_err(InvalidRequest)?),
        (None, true) => Some(Vec::new()),
        (None, false) => None,
    };
    if let Some(id) = request.id {
        action.id = id;
        action.series = id;
    }
    action.recurrence = recurrence;
    action.timeout_ms = timeout_ms;
    action.policy = policy;
    action.retry = retry;
    Ok(Prepared { action, warnings })
}

/// An action or route may start plan `plan` with `vars`: the plan exists in the project and
/// passes its checks, and every variable it needs is given (or, for a route, may come from
/// the template: `vars` None).
async fn check_plan_target(root: &Path, plan: &str, vars: &Value) -> Result<(), InvalidRequest> {
    if !crate::plan::load::is_plan_id(plan) {
        return Err(InvalidRequest(format!(
            "--plan '{plan}': give the id of a plan in .sdlc/plans/ (actions run plans by id)"
        )));
    }
    let (graph, _) = crate::plan::load::load(root, plan)
        .await
        .map_err(|problems| InvalidRequest(problems.to_string()))?;
    let given = crate::plan::run::vars_from_input(vars).map_err(InvalidRequest)?;
    let mut all = graph.plan.vars.clone();
    all.extend(given);
    let missing = graph.missing_vars(&all);
    if let Some(first) = missing.first() {
        return Err(InvalidRequest(format!("plan {plan}: {first}")));
    }
    Ok(())
}

/// `--every` or `--cron` (with `--tz`), checked.
fn recurrence_of(
    request: &NewAction,
    now: DateTime<Utc>,
) -> Result<Option<Recurrence>, InvalidRequest> {
    if request.tz.is_some() && request.cron.is_none() {
        return Err(InvalidRequest(
            "--tz goes with --cron: it says in which time zone the cron fields are read"
                .to_string(),
        ));
    }
    match (&request.every, &request.cron) {
        (Some(_), Some(_)) => Err(InvalidRequest(
            "give either --every or --cron, not both".to_string(),
        )),
        (Some(spec), None) => {
            let interval = spec.parse("--every")?;
            if interval < MIN_INTERVAL {
                return Err(InvalidRequest(format!(
                    "--every: interval {interval:?} is too short: the minimum is 100ms"
                )));
            }
            Ok(Some(Recurrence::Every {
                interval_ms: interval.as_millis() as u64,
            }))
        }
        (None, Some(expr)) => {
            let tz = request.tz.clone().unwrap_or_else(|| "UTC".to_string());
            let recurrence = Recurrence::Cron {
                expr: expr.trim().to_string(),
                tz: tz.trim().to_string(),
            };
            check_recurrence(&recurrence, now)
                .map_err(|err| InvalidRequest(format!("--cron: {err}")))?;
            Ok(Some(recurrence))
        }
        (None, None) => Ok(None),
    }
}

/// `--overlap` and `--catch-up`: only for recurring actions.
fn policy_of(request: &NewAction, recurring: bool) -> Result<SchedulePolicy, InvalidRequest> {
    if !recurring && (request.overlap.is_some() || request.catch_up.is_some()) {
        return Err(InvalidRequest(
            "--overlap and --catch-up apply to recurring actions: add --every or --cron"
                .to_string(),
        ));
    }
    let overlap = match request.overlap.as_deref() {
        None => Overlap::default(),
        Some("skip") => Overlap::Skip,
        Some("queue-one") => Overlap::QueueOne,
        Some("allow") => Overlap::Allow,
        Some(other) => {
            return Err(InvalidRequest(format!(
                "--overlap: unknown policy '{other}': use skip, queue-one or allow"
            )));
        }
    };
    let catch_up = match request.catch_up.as_deref() {
        None => CatchUp::default(),
        Some("latest") => CatchUp::Latest,
        Some("none") => CatchUp::None,
        Some("all") => CatchUp::All,
        Some(other) => {
            return Err(InvalidRequest(format!(
                "--catch-up: unknown policy '{other}': use latest, none or all"
            )));
        }
    };
    Ok(SchedulePolicy { overlap, catch_up })
}

/// Most retries one action may ask for.
const MAX_RETRIES: u32 = 100;
const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);

/// `--retries` and `--backoff`.
fn retry_of(request: &NewAction) -> Result<Option<RetryPolicy>, InvalidRequest> {
    let Some(retries) = request.retries else {
        if request.backoff.is_some() {
            return Err(InvalidRequest(
                "--backoff goes with --retries: say how many times to retry".to_string(),
            ));
        }
        return Ok(None);
    };
    if retries > MAX_RETRIES {
        return Err(InvalidRequest(format!(
            "--retries: {retries} is too many: at most {MAX_RETRIES}"
        )));
    }
    let backoff = match &request.backoff {
        Some(spec) => spec.parse("--backoff")?,
        None => DEFAULT_BACKOFF,
    };
    if retries == 0 {
        return Ok(None);
    }
    Ok(Some(RetryPolicy {
        retries,
        backoff_ms: backoff.as_millis() as u64,
        fixed: false,
    }))
}

/// Checks a request to add a webhook route and builds the route.
pub fn prepare_route(
    root: &Path,
    request: NewRoute,
    now: DateTime<Utc>,
) -> Result<WebhookRoute, InvalidRequest> {
    let path = normalize_path(&request.path).map_err(InvalidRequest)?;
    let tool_name = match &request.plan {
        Some(plan) => {
            if !request.tool_name.is_empty() {
                return Err(InvalidRequest(
                    "give --tool or --plan, not both: a route runs a tool or starts a plan"
                        .to_string(),
                ));
            }
            if !crate::plan::load::is_plan_id(plan) {
                return Err(InvalidRequest(format!(
                    "--plan '{plan}': give the id of a plan in .sdlc/plans/"
                )));
            }
            crate::plan::load::read(root, plan)
                .map_err(|problems| InvalidRequest(problems.to_string()))?;
            plan_target(plan)
        }
        None => {
            tool_script(root, &request.tool_name).map_err(|e| InvalidRequest(e.to_string()))?;
            request.tool_name.clone()
        }
    };
    let template = request
        .input_template
        .unwrap_or_else(|| DEFAULT_TEMPLATE.to_string());
    check_template(&template).map_err(InvalidRequest)?;
    let secret = match request.secret {
        Some(secret) if secret.is_empty() => {
            return Err(InvalidRequest(
                "--secret is empty: give a secret or leave the route unsigned".to_string(),
            ));
        }
        other => other,
    };
    Ok(WebhookRoute {
        id: uuid::Uuid::new_v4(),
        path,
        tool_name,
        input_template: template,
        secret,
        created_at: now,
    })
}

fn check_label(label: &str) -> Result<(), InvalidRequest> {
    if label.trim().is_empty() {
        return Err(InvalidRequest(
            "label is empty: give the action a name, such as my-service".to_string(),
        ));
    }
    check_text("label", label).map_err(InvalidRequest)
}

/// Checks a short text a person gives an action (a label, a pause reason): at most
/// `MAX_LABEL_CHARS` characters, and no control or text-reordering characters, which would
/// reach the terminal of whoever lists it.
pub fn check_text(what: &str, text: &str) -> Result<(), String> {
    if text.chars().count() > MAX_LABEL_CHARS {
        return Err(format!(
            "{what} is longer than {MAX_LABEL_CHARS} characters"
        ));
    }
    if text.chars().any(|c| c.is_control() || reorders_text(c)) {
        return Err(format!(
            "{what} contains control or text-direction characters (such as a newline or U+202E)"
        ));
    }
    Ok(())
}

/// Characters that reorder how text is shown (bidirectional embeddings, overrides, isolates
/// and marks): harmless to store, but able to disguise what a terminal shows.
pub fn reorders_text(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn project_with_tool(meta: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join(".sdlc/tools/check");
        std::fs::create_dir_all(&tool).unwrap();
        let script = format!(
            "#!/bin/sh\nif [ \"$1\" = --meta ]; then echo '{meta}'; else echo '{{\"ok\":true}}'; fi\n"
        );
        std::fs::write(tool.join("tool"), script).unwrap();
        std::fs::set_permissions(tool.join("tool"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        dir
    }

    fn request(input: Value) -> NewAction {
        NewAction {
            id: None,
            label: "svc".into(),
            tool_name: "check".into(),
            plan: None,
            tool_input: input,
            at: Some("now+5s".into()),
            every: Some(DurationSpec::Text("1m".into())),
            timeout: Some(DurationSpec::Seconds(2.5)),
            cron: None,
            tz: None,
            retries: None,
            backoff: None,
            overlap: None,
            catch_up: None,
            requires_approval: false,
            approval_timeout: None,
            run_id: None,
            notify_on: None,
            no_notify: false,
        }
    }

    #[tokio::test]
    async fn a_run_id_with_a_date_is_formatted_for_each_slot() {
        let dir = project_with_tool(r#"{"name":"check","input_schema":{"type":"object"}}"#);
        let now = Utc::now();
        let mut asked = request(json!({}));
        asked.run_id = Some("nightly-{date}".into());
        asked.cron = Some("30 2 * * *".into());
        asked.every = None;
        asked.at = None;
        let action = prepare_action(dir.path(), asked, now).await.unwrap().action;
        let slot = action.scheduled_at();
        assert_eq!(
            action.run_id.as_deref(),
            Some(format!("nightly-{}", slot.format("%Y-%m-%d")).as_str())
        );
        let next_slot = slot + chrono::Duration::days(1);
        let next = action.occurrence_at(next_slot, now);
        assert_eq!(
            next.run_id.as_deref(),
            Some(format!("nightly-{}", next_slot.format("%Y-%m-%d")).as_str())
        );
        for (bad, says) in [
            ("nightly-{day}", "unknown placeholder {day}"),
            ("nightly-{date", "without its"),
            ("", "200 visible characters"),
        ] {
            let mut asked = request(json!({}));
            asked.run_id = Some(bad.into());
            let err = prepare_action(dir.path(), asked, now).await.unwrap_err();
            assert!(err.0.contains(says), "{bad}: {err}");
        }
        let mut both = request(json!({}));
        both.notify_on = Some(vec!["failed".into()]);
        both.no_notify = true;
        assert!(prepare_action(dir.path(), both, now).await.is_err());
    }

    #[tokio::test]
    async fn a_good_request_becomes_a_pending_action() {
        let dir = project_with_tool(r#"{"name":"check","input_schema":{"type":"object"}}"#);
        let now = Utc::now();
        let prepared = prepare_action(dir.path(), request(json!({})), now)
            .await
            .unwrap();
        let action = prepared.action;
        assert_eq!(action.due_at(), now + chrono::Duration::seconds(5));
        assert_eq!(
            action.recurrence,
            Some(Recurrence::Every {
                interval_ms: 60_000
            })
        );
        assert_eq!(action.timeout_ms, Some(2_500));
        assert!(prepared.warnings.is_empty());
    }

    #[tokio::test]
    async fn cron_retry_and_policies_are_stored() {
        let dir = project_with_tool(r#"{"name":"check"}"#);
        let now = Utc::now();
        let req = NewAction {
            at: None,
            every: None,
            cron: Some("0 2 * * *".into()),
            tz: Some("Europe/Berlin".into()),
            retries: Some(3),
            backoff: Some(DurationSpec::Text("30s".into())),
            overlap: Some("queue-one".into()),
            catch_up: Some("none".into()),
            ..request(json!({}))
        };
        let action = prepare_action(dir.path(), req, now).await.unwrap().action;
        assert!(action.due_at() > now, "first run at the first cron slot");
        assert_eq!(
            action.retry,
            Some(RetryPolicy {
                retries: 3,
                backoff_ms: 30_000,
                fixed: false
            })
        );
        assert_eq!(action.policy.overlap, Overlap::QueueOne);
        assert_eq!(action.policy.catch_up, CatchUp::None);
    }

    #[tokio::test]
    async fn input_failing_the_schema_is_refused() {
        let dir = project_with_tool(
            r#"{"name":"check","input_schema":{"type":"object","required":["scope"]}}"#,
        );
        let err = prepare_action(dir.path(), request(json!({})), Utc::now())
            .await
            .unwrap_err();
        assert!(
            err.0.contains("input_schema") && err.0.contains("scope"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unreadable_meta_is_a_warning_not_a_refusal() {
        let dir = project_with_tool("not json");
        let prepared = prepare_action(dir.path(), request(json!({})), Utc::now())
            .await
            .unwrap();
        assert_eq!(prepared.warnings.len(), 1);
    }

    #[test]
    fn routes_are_checked_before_they_are_stored() {
        let dir = project_with_tool(r#"{"name":"check"}"#);
        let good = NewRoute {
            path: "/webhooks/deploy".into(),
            tool_name: "check".into(),
            plan: None,
            input_template: None,
            secret: Some("s3cret".into()),
        };
        let route = prepare_route(dir.path(), good.clone(), Utc::now()).unwrap();
        assert_eq!(route.path, "deploy");
        assert_eq!(route.input_template, DEFAULT_TEMPLATE);
        let cases = [
            (
                NewRoute {
                    path: "../x".into(),
                    ..good.clone()
                },
                "not valid",
            ),
            (
                NewRoute {
                    tool_name: "nope".into(),
                    ..good.clone()
                },
                "no tool named 'nope'",
            ),
            (
                NewRoute {
                    input_template: Some("\"{{payload}}\"".into()),
                    ..good.clone()
                },
                "never render valid JSON",
            ),
            (
                NewRoute {
                    secret: Some(String::new()),
                    ..good.clone()
                },
                "--secret is empty",
            ),
        ];
        for (request, expected) in cases {
            let err = prepare_route(dir.path(), request, Utc::now()).unwrap_err();
            assert!(err.0.contains(expected), "expected '{expected}' in '{err}'");
        }
    }

    #[tokio::test]
    async fn each_bad_field_is_named() {
        let dir = project_with_tool(r#"{"name":"check"}"#);
        let cases: Vec<(NewAction, &str)> = vec![
            (
                NewAction {
                    label: " ".into(),
                    ..request(json!({}))
                },
                "label is empty",
            ),
            (
                NewAction {
                    tool_name: "nope".into(),
                    ..request(json!({}))
                },
                "no tool named 'nope'",
            ),
            (
                NewAction {
                    tool_name: "../x".into(),
                    ..request(json!({}))
                },
                "invalid tool name",
            ),
            (
                NewAction {
                    at: Some("later".into()),
                    ..request(json!({}))
                },
                "'later'",
            ),
            (
                NewAction {
                    every: Some(DurationSpec::Text("10ms".into())),
                    ..request(json!({}))
                },
                "too short",
            ),
            (
                NewAction {
                    every: Some(DurationSpec::Seconds(-1.0)),
                    ..request(json!({}))
                },
                "--every",
            ),
            (
                NewAction {
                    timeout: Some(DurationSpec::Text("0s".into())),
                    ..request(json!({}))
                },
                "--timeout",
            ),
        ];
        for (req, expected) in cases {
            let err = prepare_action(dir.path(), req, Utc::now())
                .await
                .unwrap_err();
            assert!(err.0.contains(expected), "expected '{expected}' in '{err}'");
        }
    }
}
