//! A run of a plan as it is stored: the run's header (`PlanRun`), one `StepState` per step,
//! and the events (`RunEvent`). Also how a ready step becomes the action that runs it
//! (`step_action`), a pure function of the plan, the run and its dependencies' results.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::decide::{RunStatus, StepCounts, StepStatus};
use super::spec::{PlanGraph, Problem, Problems};
use super::vars::{self, Values};
use crate::model::{Action, ActionTrigger, RetryPolicy};
pub use crate::model::{CommandSpec, StepRef};

/// One run of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRun {
    pub run_id: Uuid,
    pub plan_id: String,
    #[serde(default)]
    pub version: Option<String>,
    /// Where the plan was read from (the file), for people.
    #[serde(default)]
    pub source: String,
    /// The variables of this run: the plan's defaults with `--var` over them.
    pub vars: BTreeMap<String, String>,
    pub status: RunStatus,
    /// A user canceled it (the run ends `canceled` once its running steps end).
    #[serde(default)]
    pub canceled: bool,
    /// Why steps that had not started were canceled (a critical step failed, or a user).
    #[serde(default)]
    pub abort_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: StepCounts,
    /// The sequence number of the next event.
    pub next_seq: u64,
    /// The action (a schedule or a webhook targeting the plan) this run is the run of; it
    /// ends when the run does.
    #[serde(default)]
    pub parent_action: Option<Uuid>,
    /// The user's grouping (`--run-id`) its steps carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_group: Option<String>,
    /// The events that notify about this run and its steps, overriding the daemon's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_on: Option<Vec<crate::model::NotifyEvent>>,
}

impl PlanRun {
    pub fn total_steps(&self) -> u32 {
        self.counts.total()
    }

    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at.map(|end| elapsed_ms(self.created_at, end))
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub step_id: String,
    pub status: StepStatus,
    /// The action that runs it (the latest, after a `plan retry`).
    #[serde(default)]
    pub action: Option<Uuid>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
}

impl StepState {
    /// From the step's first start to its end; None until it has ended (a retried step is
    /// running again: the end of an earlier attempt is not its end).
    pub fn duration_ms(&self) -> Option<i64> {
        if !self.status.is_finished() {
            return None;
        }
        Some(elapsed_ms(self.started_at?, self.finished_at?))
    }
}

/// Milliseconds from `start` to `end`, never negative: a start recorded as of a due time
/// (claimed a few milliseconds early) or a clock stepped back must not show a run that ended
/// before it began.
pub fn elapsed_ms(start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    (end - start).num_milliseconds().max(0)
}

/// One line of a run's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    pub seq: u64,
    pub event: String,
    pub ts: DateTime<Utc>,
    pub run_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// What else the event says (attempt, reason, status, counts...).
    #[serde(flatten)]
    pub detail: serde_json::Map<String, Value>,
}

/// A run about to be stored: its header and its steps, all waiting.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run: PlanRun,
    pub graph: std::sync::Arc<PlanGraph>,
}

/// What a person starting a run may add besides its variables: a grouping for history
/// (`--run-id`, `{date}` formatted as of the start) and which events notify about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify_on: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_notify: bool,
}

impl RunOptions {
    /// Checks the options and sets them on `run`.
    pub fn apply(&self, run: &mut PlanRun) -> Result<(), String> {
        let (group, notify_on) = self.resolve(run.created_at)?;
        run.run_group = group;
        run.notify_on = notify_on;
        Ok(())
    }

    /// Checks the options alone (before a run exists).
    pub fn check(&self) -> Result<(), String> {
        self.resolve(chrono::Utc::now()).map(|_| ())
    }

    /// The run's grouping (formatted for `at`) and events.
    #[allow(clippy::type_complexity)]
    fn resolve(
        &self,
        at: DateTime<Utc>,
    ) -> Result<(Option<String>, Option<Vec<crate::model::NotifyEvent>>), String> {
        let group = match &self.run_id {
            Some(run_id) => {
                let run_id = run_id.trim();
                crate::model::check_run_id(run_id)?;
                Some(crate::model::format_run_id(run_id, at, None))
            }
            None => None,
        };
        let notify_on = match (self.notify_on.is_empty(), self.no_notify) {
            (false, true) => return Err("give --notify-on or --no-notify, not both".to_string()),
            (false, false) => Some(crate::model::parse_events(&self.notify_on)?),
            (true, true) => Some(Vec::new()),
            (true, false) => None,
        };
        Ok((group, notify_on))
    }
}

/// Checks `vars` against what the plan needs and builds the run (nothing stored yet).
/// `vars` override the plan's defaults; a variable no step uses is refused (a typo).
pub fn new_run(
    graph: std::sync::Arc<PlanGraph>,
    given: BTreeMap<String, String>,
    source: &str,
    now: DateTime<Utc>,
) -> Result<NewRun, Problems> {
    let mut problems = Vec::new();
    let known = graph.known_vars();
    for name in given.keys() {
        if !vars::is_var_name(name) {
            problems.push(Problem {
                step: None,
                message: format!(
                    "--var {name}: a variable name uses letters, digits and underscores"
                ),
            });
        } else if !known.contains(name) {
            // A misspelt name would otherwise be dropped without a word, and the run would
            // go on with the plan's default.
            let names: Vec<&str> = known.iter().map(String::as_str).collect();
            problems.push(Problem {
                step: None,
                message: format!(
                    "--var {name}: the plan has no variable {name} ({}); check its spelling",
                    if names.is_empty() {
                        "it uses none".to_string()
                    } else {
                        format!("it knows {}", names.join(", "))
                    }
                ),
            });
        }
    }
    let mut all = graph.plan.vars.clone();
    all.extend(given);
    problems.extend(graph.missing_vars(&all));
    if !problems.is_empty() {
        return Err(Problems {
            origin: source.to_string(),
            problems,
        });
    }
    let mut counts = StepCounts::default();
    counts.add(StepStatus::Waiting, graph.len() as i32);
    let run = PlanRun {
        run_id: Uuid::now_v7(),
        plan_id: graph.plan.plan_id.clone(),
        version: graph.plan.version.clone(),
        source: source.to_string(),
        vars: all,
        status: RunStatus::Running,
        canceled: false,
        abort_reason: None,
        created_at: now,
        finished_at: None,
        counts,
        next_seq: 0,
        run_group: None,
        notify_on: None,
        parent_action: None,
    };
    Ok(NewRun { run, graph })
}

/// The action that runs step `index` of `run`, with `${...}` replaced (`results` gives the
/// result of a step it depends on). Fails, saying why, when a reference cannot be resolved.
pub fn step_action(
    graph: &PlanGraph,
    run: &PlanRun,
    index: usize,
    results: &dyn Fn(&str) -> Option<Value>,
    now: DateTime<Utc>,
) -> Result<Action, String> {
    let step = graph.step(index);
    let values = Values {
        vars: &run.vars,
        results,
    };
    let sub = |text: &str| vars::substitute(text, &values);
    let label = format!("{}/{}", graph.plan.plan_id, step.id);
    let trigger = ActionTrigger::Manual { requested_at: now };
    let mut action = match (&step.tool, &step.command) {
        (Some(tool), _) => {
            let input = match &step.input {
                Some(input) => vars::substitute_json(input, &values)?,
                None => Value::Object(Default::default()),
            };
            Action::new(label, tool.clone(), input, trigger, now)
        }
        (None, Some(command)) => {
            let spec = CommandSpec {
                program: sub(command)?,
                args: step.args.iter().map(|a| sub(a)).collect::<Result<_, _>>()?,
                env: step
                    .env
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), sub(v)?)))
                    .collect::<Result<_, String>>()?,
                cwd: step.cwd.as_deref().map(sub).transpose()?,
            };
            let mut action = Action::new(label, spec.program.clone(), Value::Null, trigger, now);
            action.command = Some(spec);
            action
        }
        (None, None) if step.approval.is_some() => {
            // A gate: nothing runs; it waits for a person from the moment it is ready.
            let mut gate = Action::new(label, "approval", Value::Null, trigger, now);
            gate.status = crate::model::ActionStatus::AwaitingApproval {
                result: Value::Object(Default::default()),
            };
            gate.approval = Some(crate::model::Approval::pending(
                Some(&approval_spec(step)),
                now,
            ));
            gate
        }
        (None, None) => return Err("the step has neither a tool nor a command".to_string()),
    };
    if step.approval.is_some() {
        action.requires_approval = Some(approval_spec(step));
    }
    let timeout = step.timeout_sec.or(graph.plan.globals.default_timeout_sec);
    action.timeout_ms = timeout.map(|secs| ((secs * 1000.0).ceil() as u64).max(1));
    if step.retries > 0 {
        action.retry = Some(RetryPolicy {
            retries: step.retries,
            backoff_ms: (step.retry_delay_sec.unwrap_or(0.0) * 1000.0) as u64,
            fixed: true,
        });
    }
    action.run_id = run.run_group.clone();
    action.notify_on = run.notify_on.clone();
    action.step = Some(StepRef {
        run_id: run.run_id,
        step_id: step.id.clone(),
        index: index as u32,
        limit: graph.plan.globals.max_concurrency,
    });
    Ok(action)
}

/// What a step's `approval` asks, as an action stores it.
fn approval_spec(step: &super::Step) -> crate::model::ApprovalSpec {
    let approval = step.approval.clone().unwrap_or_default();
    crate::model::ApprovalSpec {
        prompt: approval.prompt,
        timeout_ms: approval
            .timeout_sec
            .map(|secs| ((secs * 1000.0).ceil() as u64).max(1)),
    }
}

/// The variables an action targeting a plan carries in its input: an object whose values are
/// strings (numbers and booleans are written as text).
pub fn vars_from_input(input: &Value) -> Result<BTreeMap<String, String>, String> {
    match input {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
                other => Err(format!(
                    "variable {k}: a plan variable is text, not {other}"
                )),
            })
            .collect(),
        other => Err(format!(
            "a plan's variables are a JSON object of names to text, not {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn a_steps_duration_is_never_negative_and_waits_for_its_end() {
        let mut state = StepState {
            step_id: "s".into(),
            status: StepStatus::Succeeded,
            action: None,
            attempt: 2,
            reason: None,
            started_at: Some(at(1_000)),
            finished_at: Some(at(3_500)),
        };
        assert_eq!(state.duration_ms(), Some(2_500));
        // Started as of a due time a little after the recorded end: zero, not negative.
        state.started_at = Some(at(3_502));
        assert_eq!(state.duration_ms(), Some(0));
        // Retrying: the end kept from the failed attempt is not the step's end.
        state.status = StepStatus::Retrying;
        assert_eq!(state.duration_ms(), None);
    }
}
