//! The JSON forms of runs that the API answers and `--json` prints: a run's summary (lists)
//! and its detail (every step, with what the plan says of it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{PlanGraph, PlanRun, RunStatus, StepState, StepStatus};

/// A run in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunSummary {
    pub run_id: Uuid,
    pub plan_id: String,
    #[serde(default)]
    pub version: Option<String>,
    pub status: RunStatus,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub duration_ms: Option<i64>,
    /// Finished steps over all steps, in percent.
    pub progress: u32,
    pub steps: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub skipped: u32,
    pub canceled: u32,
    /// Steps by status (only those with any).
    pub counts: Value,
    #[serde(default)]
    pub vars: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub parent_action: Option<Uuid>,
    #[serde(default)]
    pub abort_reason: Option<String>,
}

impl From<&PlanRun> for RunSummary {
    fn from(run: &PlanRun) -> RunSummary {
        RunSummary {
            run_id: run.run_id,
            plan_id: run.plan_id.clone(),
            version: run.version.clone(),
            status: run.status,
            created_at: run.created_at,
            finished_at: run.finished_at,
            duration_ms: run.duration_ms(),
            progress: run.counts.progress_percent(),
            steps: run.counts.total(),
            succeeded: run.counts.get(StepStatus::Succeeded),
            failed: run.counts.get(StepStatus::Failed),
            skipped: run.counts.get(StepStatus::Skipped),
            canceled: run.counts.get(StepStatus::Canceled),
            counts: counts_json(run),
            vars: run.vars.clone(),
            parent_action: run.parent_action,
            abort_reason: run.abort_reason.clone(),
        }
    }
}

/// One step of a run, with what the plan declares of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepView {
    pub step_id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `tool` or `command`.
    pub kind: String,
    /// The tool's name, or the command line as written in the plan.
    pub target: String,
    pub depends_on: Vec<String>,
    pub critical: bool,
    pub on_failure: String,
    pub status: StepStatus,
    pub attempt: u32,
    #[serde(default)]
    pub duration_ms: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub action_id: Option<Uuid>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
}

/// A run with all its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunDetailView {
    #[serde(flatten)]
    pub run: RunSummary,
    pub steps_detail: Vec<StepView>,
}

impl RunDetailView {
    pub fn new(run: &PlanRun, steps: &[StepState], graph: &PlanGraph) -> RunDetailView {
        let steps_detail = steps
            .iter()
            .enumerate()
            .map(|(i, state)| {
                let spec = graph.step(i);
                let (kind, target) = match (&spec.tool, &spec.command) {
                    (Some(tool), _) => ("tool", tool.clone()),
                    (None, Some(command)) => (
                        "command",
                        std::iter::once(command.as_str())
                            .chain(spec.args.iter().map(String::as_str))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                    (None, None) => ("approval", String::new()),
                };
                StepView {
                    step_id: state.step_id.clone(),
                    name: spec.name.clone(),
                    kind: kind.to_string(),
                    target,
                    depends_on: spec.depends_on.clone(),
                    critical: spec.critical,
                    on_failure: spec.on_failure.as_str().to_string(),
                    status: state.status,
                    attempt: state.attempt,
                    duration_ms: state.duration_ms(),
                    reason: state.reason.clone(),
                    action_id: state.action,
                    started_at: state.started_at,
                    finished_at: state.finished_at,
                }
            })
            .collect();
        RunDetailView {
            run: RunSummary::from(run),
            steps_detail,
        }
    }
}

/// A plan of the project, for `plan list` and `GET /plans`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanListing {
    pub plan_id: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub steps: usize,
    /// Variables a run must be given (no default in the plan).
    #[serde(default)]
    pub needs_vars: Vec<String>,
    /// What is wrong with the file, when it does not pass its checks.
    #[serde(default)]
    pub problems: Vec<String>,
    #[serde(default)]
    pub last_run: Option<RunSummary>,
}

/// The run's step counts by status name, for events and summaries.
pub fn counts_json(run: &PlanRun) -> Value {
    let mut map = serde_json::Map::new();
    for status in StepStatus::ALL {
        let n = run.counts.get(status);
        if n > 0 {
            map.insert(status.as_str().to_string(), serde_json::json!(n));
        }
    }
    Value::Object(map)
}
