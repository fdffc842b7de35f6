//! The pure decisions of a plan run: which steps become ready, skipped or canceled when a step
//! ends, whether the run is over and how it ended, what a retry runs again. Functions of the
//! graph and the steps' statuses (given as a lookup), as `policy` is for schedules: the store
//! calls them inside the transaction that records the outcome, and tests call them directly.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::spec::{OnFailure, PlanGraph};
pub use crate::model::RunStatus;

/// Where a step of a run is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Some step it depends on has not finished.
    Waiting,
    /// Ready, held back by `globals.max_concurrency`.
    Queued,
    /// Stored as an action, due now.
    Pending,
    Running,
    /// Failed, with a retry scheduled.
    Retrying,
    /// Its run ended well; a person must approve it before its dependents run.
    AwaitingApproval,
    Succeeded,
    Failed,
    Skipped,
    Canceled,
}

impl StepStatus {
    pub const ALL: [StepStatus; 10] = [
        StepStatus::Waiting,
        StepStatus::Queued,
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Retrying,
        StepStatus::AwaitingApproval,
        StepStatus::Succeeded,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Waiting => "waiting",
            StepStatus::Queued => "queued",
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Retrying => "retrying",
            StepStatus::AwaitingApproval => "awaiting_approval",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Canceled => "canceled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded | StepStatus::Failed | StepStatus::Skipped | StepStatus::Canceled
        )
    }

    /// Stored as an action that has not ended: it holds one of the run's concurrency places.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            StepStatus::Pending
                | StepStatus::Running
                | StepStatus::Retrying
                | StepStatus::AwaitingApproval
        )
    }
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What becomes of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Every step it depends on is done with: it may run.
    Ready(usize),
    /// A step it depends on failed (or was skipped): it will not run.
    Skip(usize, String),
}

/// Whether a step ending in `status` aborts the whole run: a critical step that failed with
/// `on_failure: abort`.
pub fn aborts_run(graph: &PlanGraph, step: usize, status: StepStatus) -> bool {
    let spec = graph.step(step);
    status == StepStatus::Failed && spec.critical && spec.on_failure == OnFailure::Abort
}

/// Where step `j` stands given its dependencies' statuses.
pub fn readiness(
    graph: &PlanGraph,
    j: usize,
    status_of: &impl Fn(usize) -> StepStatus,
) -> Option<Change> {
    let mut all_done = true;
    for &d in &graph.deps[j] {
        let dep = graph.step(d);
        match status_of(d) {
            StepStatus::Succeeded => {}
            StepStatus::Failed if dep.on_failure == OnFailure::Continue => {}
            StepStatus::Failed => {
                return Some(Change::Skip(j, format!("dependency {} failed", dep.id)));
            }
            StepStatus::Skipped | StepStatus::Canceled => {
                return Some(Change::Skip(
                    j,
                    format!("dependency {} did not run", dep.id),
                ));
            }
            _ => all_done = false,
        }
    }
    all_done.then_some(Change::Ready(j))
}

/// The steps that can run at the start of a run: those with no dependencies.
pub fn roots(graph: &PlanGraph) -> Vec<usize> {
    (0..graph.len())
        .filter(|&i| graph.deps[i].is_empty())
        .collect()
}

/// After step `finished` ended (as `status_of` now says), what becomes of the steps waiting
/// on it: ready, or skipped, the skips carried on to their own dependents. Only steps
/// downstream of `finished` are looked at, so the cost follows the graph's edges, not its size.
/// The caller handles an abort first (see [`aborts_run`]).
pub fn after_step_finished(
    graph: &PlanGraph,
    finished: usize,
    status_of: &impl Fn(usize) -> StepStatus,
) -> Vec<Change> {
    let mut decided: HashMap<usize, StepStatus> = HashMap::new();
    let mut changes = Vec::new();
    let mut to_look_at: Vec<usize> = graph.dependents[finished].clone();
    while let Some(j) = to_look_at.pop() {
        let now = |i: usize| decided.get(&i).copied().unwrap_or_else(|| status_of(i));
        if now(j) != StepStatus::Waiting {
            continue;
        }
        match readiness(graph, j, &now) {
            Some(Change::Ready(j)) => {
                decided.insert(j, StepStatus::Queued);
                changes.push(Change::Ready(j));
            }
            Some(Change::Skip(j, reason)) => {
                decided.insert(j, StepStatus::Skipped);
                changes.push(Change::Skip(j, reason));
                to_look_at.extend(&graph.dependents[j]);
            }
            None => {}
        }
    }
    // In plan order, so that events and starts follow the file.
    changes.sort_by_key(|change| match change {
        Change::Ready(i) | Change::Skip(i, _) => *i,
    });
    changes
}

/// How many more ready steps of the run may be stored as actions, given how many are
/// `active`: up to twice its `globals.max_concurrency`, so that while some run the engine can
/// already hold the next ones (claimed ahead, see [`may_claim`]); it never starts more than
/// `max_concurrency` of them at once. Unbounded without a limit.
pub fn free_places(graph: &PlanGraph, active: u32) -> usize {
    match graph.plan.globals.max_concurrency {
        Some(max) => max.saturating_mul(2).saturating_sub(active) as usize,
        None => usize::MAX,
    }
}

/// Whether one more step of a run with `limit` (its `max_concurrency`) and `claimed` steps
/// claimed may be claimed: up to the limit, or twice it when the engine claims ahead of its
/// free slots (short runs), when the extra ones wait in its ready queue for the run's places.
pub fn may_claim(limit: Option<u32>, claimed: u32, ahead: bool) -> bool {
    match limit {
        Some(limit) => {
            claimed
                < if ahead {
                    limit.saturating_mul(2)
                } else {
                    limit
                }
        }
        None => true,
    }
}

/// Counts of a run's steps by status, kept with the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCounts {
    #[serde(default)]
    pub by_status: std::collections::BTreeMap<StepStatus, u32>,
    /// Critical steps that finished without succeeding.
    #[serde(default)]
    pub critical_unsucceeded: u32,
}

impl StepCounts {
    pub fn get(&self, status: StepStatus) -> u32 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    pub fn add(&mut self, status: StepStatus, delta: i32) {
        let n = self.by_status.entry(status).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.by_status.remove(&status);
        }
    }

    pub fn active(&self) -> u32 {
        StepStatus::ALL
            .iter()
            .filter(|s| s.is_active())
            .map(|&s| self.get(s))
            .sum()
    }

    pub fn finished(&self) -> u32 {
        StepStatus::ALL
            .iter()
            .filter(|s| s.is_finished())
            .map(|&s| self.get(s))
            .sum()
    }

    pub fn total(&self) -> u32 {
        self.by_status.values().sum()
    }

    /// Finished steps over all steps, in whole percent.
    pub fn progress_percent(&self) -> u32 {
        let total = self.total().max(1);
        self.finished() * 100 / total
    }
}

/// Whether the run is over, and how: canceled when a user canceled it, succeeded when every
/// critical step succeeded, failed otherwise. Running while any step has not finished.
pub fn run_status(counts: &StepCounts, canceled_by_user: bool) -> RunStatus {
    if counts.finished() < counts.total() {
        return RunStatus::Running;
    }
    if canceled_by_user {
        RunStatus::Canceled
    } else if counts.critical_unsucceeded == 0 {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    }
}

/// The steps `plan retry` runs again: every failed, canceled or skipped one; with `only`,
/// that step and every step downstream of it that did not succeed.
pub fn retry_selection(
    graph: &PlanGraph,
    status_of: &impl Fn(usize) -> StepStatus,
    only: Option<usize>,
) -> Vec<usize> {
    let again = |i: usize| {
        matches!(
            status_of(i),
            StepStatus::Failed | StepStatus::Canceled | StepStatus::Skipped
        )
    };
    match only {
        None => graph.order.iter().copied().filter(|&i| again(i)).collect(),
        Some(start) => {
            let mut chosen = vec![false; graph.len()];
            let mut stack = vec![start];
            while let Some(i) = stack.pop() {
                if chosen[i] {
                    continue;
                }
                chosen[i] = true;
                stack.extend(&graph.dependents[i]);
            }
            graph
                .order
                .iter()
                .copied()
                .filter(|&i| chosen[i] && (i == start || again(i)))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::spec::parse;

    /// a -> b -> d, a -> c (c has the given policy), c -> e
    fn graph(c_fields: &str) -> PlanGraph {
        let text = format!(
            r#"{{"plan_id": "p", "steps": [
                {{"id": "a", "command": "true"}},
                {{"id": "b", "command": "true", "depends_on": ["a"]}},
                {{"id": "c", "command": "true", "depends_on": ["a"] {c_fields}}},
                {{"id": "d", "command": "true", "depends_on": ["b"]}},
                {{"id": "e", "command": "true", "depends_on": ["c"]}}
            ]}}"#
        );
        parse(&text, "test").unwrap()
    }

    fn statuses(list: &[StepStatus]) -> impl Fn(usize) -> StepStatus + '_ {
        move |i| list[i]
    }

    use StepStatus::*;

    #[test]
    fn a_finished_step_readies_its_dependents() {
        let g = graph("");
        let now = [Succeeded, Waiting, Waiting, Waiting, Waiting];
        let mut changes = after_step_finished(&g, 0, &statuses(&now));
        changes.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(changes, vec![Change::Ready(1), Change::Ready(2)]);
        assert_eq!(roots(&g), vec![0]);
    }

    #[test]
    fn skip_dependents_skips_downstream_only() {
        let g = graph(r#", "on_failure": "skip_dependents""#);
        let now = [Succeeded, Running, Failed, Waiting, Waiting];
        assert!(!aborts_run(&g, 2, Failed));
        assert_eq!(
            after_step_finished(&g, 2, &statuses(&now)),
            vec![Change::Skip(4, "dependency c failed".into())]
        );
    }

    #[test]
    fn continue_lets_dependents_run_and_abort_aborts() {
        let g = graph(r#", "on_failure": "continue""#);
        let now = [Succeeded, Running, Failed, Waiting, Waiting];
        assert_eq!(
            after_step_finished(&g, 2, &statuses(&now)),
            vec![Change::Ready(4)]
        );
        let g = graph("");
        assert!(aborts_run(&g, 2, Failed));
        let g = graph(r#", "critical": false"#);
        assert!(
            !aborts_run(&g, 2, Failed),
            "a non-critical step never aborts"
        );
        assert_eq!(
            after_step_finished(&g, 2, &statuses(&now)),
            vec![Change::Skip(4, "dependency c failed".into())]
        );
    }

    #[test]
    fn the_run_ends_by_its_critical_steps() {
        let mut counts = StepCounts::default();
        counts.add(Succeeded, 4);
        counts.add(Running, 1);
        assert_eq!(run_status(&counts, false), RunStatus::Running);
        counts.add(Running, -1);
        counts.add(Failed, 1);
        assert_eq!(
            run_status(&counts, false),
            RunStatus::Succeeded,
            "a non-critical failure"
        );
        counts.critical_unsucceeded = 1;
        assert_eq!(run_status(&counts, false), RunStatus::Failed);
        assert_eq!(run_status(&counts, true), RunStatus::Canceled);
        assert_eq!(counts.progress_percent(), 100);
    }

    #[test]
    fn retry_picks_what_did_not_succeed() {
        let g = graph(r#", "on_failure": "skip_dependents""#);
        let now = [Succeeded, Succeeded, Failed, Succeeded, Skipped];
        assert_eq!(retry_selection(&g, &statuses(&now), None), vec![2, 4]);
        assert_eq!(retry_selection(&g, &statuses(&now), Some(1)), vec![1]);
        assert_eq!(retry_selection(&g, &statuses(&now), Some(2)), vec![2, 4]);
    }
}
