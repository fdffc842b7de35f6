//! Plan runs, the store's side, for every backend: every change to a run is made in the
//! transaction of the action change that causes it (a step claimed, a step's outcome, a
//! cancel), with the decisions taken by the pure functions of `plan::decide`. Generic over
//! [`Txn`]; each backend keeps runs, steps, the queue and events in its own tables
//! (`redb::plans`, PostgreSQL's `sdlc_plan_runs` and beside it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::decode_json;
use super::rules::{finish_in, put, transition};
use super::txn::Txn;
use crate::error::StoreError;
use crate::model::{Action, ActionStatus, StatusKind};
use crate::plan::decide::{self, Change, RunStatus, StepStatus};
use crate::plan::view::counts_json;
use crate::plan::{NewRun, Plan, PlanGraph, PlanRun, RunEvent, StepState, run::step_action};

/// Reason given to the steps canceled when a user cancels a run.
pub const CANCELED_BY_USER: &str = "canceled by the user";

/// `created_ms (u64 BE) ++ run id`: the order runs are listed in, and a run cursor's content.
pub(crate) fn time_key(created: DateTime<Utc>, run: Uuid) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&(created.timestamp_millis().max(0) as u64).to_be_bytes());
    key[8..].copy_from_slice(run.as_bytes());
    key
}

/// Parsed plans of runs, by run id. A run's plan never changes once stored, so caching it
/// is always right; it saves parsing the plan on every step outcome.
static GRAPHS: Mutex<Option<HashMap<Uuid, Arc<PlanGraph>>>> = Mutex::new(None);
/// Runs whose graphs are kept; beyond it the cache starts over.
const GRAPHS_KEPT: usize = 256;

fn remember_graph(run: Uuid, graph: Arc<PlanGraph>) {
    let mut cache = GRAPHS.lock().unwrap_or_else(|e| e.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if map.len() >= GRAPHS_KEPT {
        map.clear();
    }
    map.insert(run, graph);
}

/// The plan of run `run`, when its graph is cached.
pub(crate) fn cached_graph(run: Uuid) -> Option<Arc<PlanGraph>> {
    GRAPHS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|map| map.get(&run).cloned())
}

/// The graph of run `run`'s stored plan (`encode_json` of it), built and cached.
pub(crate) fn graph_from(run: Uuid, spec: &[u8]) -> Result<Arc<PlanGraph>, StoreError> {
    let plan: Plan = decode_json(run, spec)?;
    let graph =
        Arc::new(crate::plan::spec::build(plan).map_err(|problems| {
            corrupt(run, &format!("its stored plan is invalid: {problems}"))
        })?);
    remember_graph(run, graph.clone());
    Ok(graph)
}

pub(crate) fn corrupt(id: Uuid, detail: &str) -> StoreError {
    StoreError::Corrupt {
        id,
        detail: detail.to_string(),
    }
}

/// One run being changed inside a transaction: its header and graph, written back by `save`.
struct Open {
    run: PlanRun,
    graph: Arc<PlanGraph>,
}

impl Open {
    fn load(t: &mut impl Txn, run: Uuid) -> Result<Open, StoreError> {
        let header = t
            .plan_run(run)?
            .ok_or_else(|| corrupt(run, "no such plan run"))?;
        let graph = t.plan_graph(run)?;
        Ok(Open { run: header, graph })
    }

    fn id(&self) -> Uuid {
        self.run.run_id
    }

    fn event(
        &mut self,
        t: &mut impl Txn,
        name: &str,
        step: Option<usize>,
        detail: Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let event = RunEvent {
            seq: self.run.next_seq,
            event: name.to_string(),
            ts: now,
            run_id: self.id(),
            step_id: step.map(|i| self.graph.step(i).id.clone()),
            detail: match detail {
                Value::Object(map) => map,
                _ => Default::default(),
            },
        };
        self.run.next_seq += 1;
        t.add_event(event)
    }

    fn step(&self, t: &mut impl Txn, index: usize) -> Result<StepState, StoreError> {
        t.step(self.id(), index as u32)
    }

    /// Writes a step's new state and keeps the run's counts in step with it.
    fn set_step(
        &mut self,
        t: &mut impl Txn,
        index: usize,
        old: StepStatus,
        new: &StepState,
    ) -> Result<(), StoreError> {
        if old != new.status {
            self.run.counts.add(old, -1);
            self.run.counts.add(new.status, 1);
            let critical = self.graph.step(index).critical;
            if critical && old.is_finished() && old != StepStatus::Succeeded {
                self.run.counts.critical_unsucceeded -= 1;
            }
            if critical && new.status.is_finished() && new.status != StepStatus::Succeeded {
                self.run.counts.critical_unsucceeded += 1;
            }
        }
        t.set_step(self.id(), index as u32, new)
    }

    fn save(&self, t: &mut impl Txn) -> Result<(), StoreError> {
        t.save_plan_run(&self.run)
    }
}

/// Stores a new run (its plan, header and steps) and starts its first steps, in the
/// transaction of `t`. `parent` is the action the run belongs to, if any.
pub(crate) fn start_run_in(
    t: &mut impl Txn,
    new: &NewRun,
    parent: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<PlanRun, StoreError> {
    let mut header = new.run.clone();
    header.parent_action = parent;
    if let Some(parent) = parent
        && let Some(action) = t.get(parent)?
    {
        header.run_group = action.run_id.or(header.run_group);
        header.notify_on = action.notify_on.or(header.notify_on);
    }
    let id = header.run_id;
    remember_graph(id, new.graph.clone());
    let mut open = Open {
        run: header,
        graph: new.graph.clone(),
    };
    {
        t.store_new_run(&open.run, &open.graph.plan)?;
        for (i, step) in open.graph.plan.steps.iter().enumerate() {
            let state = StepState {
                step_id: step.id.clone(),
                status: StepStatus::Waiting,
                action: None,
                attempt: 0,
                reason: None,
                started_at: None,
                finished_at: None,
            };
            t.set_step(id, i as u32, &state)?;
        }
        let detail = json!({
            "plan_id": open.run.plan_id,
            "version": open.run.version,
            "vars": open.run.vars,
            "steps": open.graph.len(),
            "parent_action": parent,
        });
        open.event(t, "run_started", None, detail, now)?;
    }
    let ready: Vec<Change> = decide::roots(&open.graph)
        .into_iter()
        .map(Change::Ready)
        .collect();
    advance(t, &mut open, ready, now)?;
    Ok(open.run)
}

/// The run, the index and the state of the step `action` runs (None for an action that is no
/// step), read in the transaction of `t`.
fn load_step(
    t: &mut impl Txn,
    action: &Action,
) -> Result<Option<(Open, usize, StepState)>, StoreError> {
    let Some(step) = &action.step else {
        return Ok(None);
    };
    let open = Open::load(t, step.run_id)?;
    let index = step.index as usize;
    let state = open.step(t, index)?;
    Ok(Some((open, index, state)))
}

/// A step's action was claimed: the step is running (attempt and start recorded).
pub(crate) fn step_claimed_in(
    t: &mut impl Txn,
    action: &Action,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some((mut open, index, mut state)) = load_step(t, action)? else {
        return Ok(());
    };
    let old = state.status;
    state.status = StepStatus::Running;
    state.attempt = action.attempt;
    state.started_at.get_or_insert(now);
    state.reason = None;
    open.set_step(t, index, old, &state)?;
    open.event(
        t,
        "step_started",
        Some(index),
        json!({"attempt": action.attempt, "action_id": action.id}),
        now,
    )?;
    open.save(t)?;
    Ok(())
}

/// Whether the action of `step` may be claimed now (see `decide::may_claim`): its run's
/// claimed steps against its limit.
pub(crate) fn may_claim_step(
    t: &mut impl Txn,
    step: &crate::plan::StepRef,
    claim: super::StepClaim,
) -> Result<bool, StoreError> {
    if step.limit.is_none() {
        return Ok(true);
    }
    let Some(run) = t.plan_run(step.run_id)? else {
        return Ok(true);
    };
    Ok(decide::may_claim(
        step.limit,
        run.counts.get(StepStatus::Running),
        claim == super::StepClaim::AheadOfSlots,
    ))
}

/// Whether a finished action that is `step` belongs to a plan run that has not ended (pruning
/// keeps it: a later step may read its result).
pub(crate) fn needed_by_running_run(
    t: &mut impl Txn,
    step: Option<&crate::plan::StepRef>,
) -> Result<bool, StoreError> {
    let Some(step) = step else {
        return Ok(false);
    };
    Ok(t.plan_run(step.run_id)?
        .is_some_and(|run| !run.status.is_finished()))
}

/// A step's action claimed ahead was handed back unstarted: the step is pending again.
pub(crate) fn step_returned_in(t: &mut impl Txn, action: &Action) -> Result<(), StoreError> {
    let Some((mut open, index, mut state)) = load_step(t, action)? else {
        return Ok(());
    };
    if state.action != Some(action.id) || state.status != StepStatus::Running {
        return Ok(());
    }
    state.status = StepStatus::Pending;
    state.attempt = action.attempt;
    if action.attempt == 0 {
        state.started_at = None;
    }
    open.set_step(t, index, StepStatus::Running, &state)?;
    open.save(t)
}

/// A step's action changed after a run (or was canceled): `action` is its new form. Pending
/// again means a retry is scheduled; Completed or Failed ends the step and decides what
/// follows, all in the transaction of `t`.
pub(crate) fn step_action_changed_in(
    t: &mut impl Txn,
    action: &Action,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some((mut open, index, mut state)) = load_step(t, action)? else {
        return Ok(());
    };
    if state.action != Some(action.id) || state.status.is_finished() {
        // An action of an earlier try of this step (before a `plan retry`): history only.
        return Ok(());
    }
    let old = state.status;
    let reason = action.attempts.last().and_then(|a| a.reason.clone());
    let (status, event) = match &action.status {
        ActionStatus::Pending => {
            state.status = StepStatus::Retrying;
            state.reason = reason.clone();
            open.set_step(t, index, old, &state)?;
            let detail =
                json!({"attempt": action.attempt, "reason": reason, "retry_at": action.retry_at});
            open.event(t, "step_retry", Some(index), detail, now)?;
            open.save(t)?;
            return Ok(());
        }
        ActionStatus::AwaitingApproval { .. } => {
            state.status = StepStatus::AwaitingApproval;
            open.set_step(t, index, old, &state)?;
            let prompt = action.approval.as_ref().and_then(|a| a.prompt.clone());
            let detail =
                json!({"attempt": action.attempt, "action_id": action.id, "prompt": prompt});
            open.event(t, "step_awaiting_approval", Some(index), detail, now)?;
            open.save(t)?;
            return Ok(());
        }
        ActionStatus::Completed { .. } => (StepStatus::Succeeded, "step_succeeded"),
        ActionStatus::Failed { reason } => {
            state.reason = Some(reason.clone());
            (StepStatus::Failed, "step_failed")
        }
        ActionStatus::Canceled { reason } => {
            state.reason = Some(reason.clone());
            (StepStatus::Canceled, "step_canceled")
        }
        _ => return Ok(()),
    };
    state.status = status;
    state.finished_at = Some(now);
    open.set_step(t, index, old, &state)?;
    let detail = json!({
        "attempt": action.attempt,
        "reason": state.reason,
        "duration_ms": state.duration_ms(),
    });
    open.event(t, event, Some(index), detail, now)?;
    let changes = decide_after(t, &mut open, index, status)?;
    advance(t, &mut open, changes, now)
}

/// What the end of step `index` (as `status`) does: an abort cancels what has not started;
/// otherwise its dependents become ready or skipped.
fn decide_after(
    t: &mut impl Txn,
    open: &mut Open,
    index: usize,
    status: StepStatus,
) -> Result<Vec<Change>, StoreError> {
    if open.run.abort_reason.is_some() {
        return Ok(Vec::new());
    }
    if decide::aborts_run(&open.graph, index, status) {
        let reason = format!("run aborted: step {} failed", open.graph.step(index).id);
        open.run.abort_reason = Some(reason);
        return Ok(Vec::new());
    }
    // `after_step_finished` reads statuses through a plain closure, and reading one needs
    // the transaction mutably.
    let t = std::cell::RefCell::new(t);
    let failure = std::cell::RefCell::new(None);
    let status_of = |i: usize| match t.borrow_mut().step(open.id(), i as u32) {
        Ok(state) => state.status,
        Err(err) => {
            failure.borrow_mut().get_or_insert(err);
            StepStatus::Waiting
        }
    };
    let changes = decide::after_step_finished(&open.graph, index, &status_of);
    if let Some(err) = failure.into_inner() {
        return Err(err);
    }
    Ok(changes)
}

/// Applies decisions to a run: skipped steps recorded, ready ones queued; then, if the run
/// is aborting, cancels what has not started; then starts queued steps up to the run's
/// concurrency, and ends the run when every step has finished. A step whose action cannot be
/// built (a `${steps...}` that does not resolve) fails at once, and what that decides is
/// applied in turn.
fn advance(
    t: &mut impl Txn,
    open: &mut Open,
    changes: Vec<Change>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut changes = changes;
    loop {
        {
            for change in changes.drain(..) {
                match change {
                    Change::Ready(i) => {
                        let mut state = open.step(t, i)?;
                        let old = state.status;
                        state.status = StepStatus::Queued;
                        open.set_step(t, i, old, &state)?;
                        t.queue_step(open.id(), i as u32)?;
                        open.event(t, "step_ready", Some(i), json!({}), now)?;
                    }
                    Change::Skip(i, reason) => {
                        let mut state = open.step(t, i)?;
                        let old = state.status;
                        state.status = StepStatus::Skipped;
                        state.reason = Some(reason.clone());
                        state.finished_at = Some(now);
                        open.set_step(t, i, old, &state)?;
                        open.event(t, "step_skipped", Some(i), json!({"reason": reason}), now)?;
                    }
                }
            }
        }
        if open.run.abort_reason.is_some() {
            cancel_unstarted(t, open, now)?;
        }
        match start_queued(t, open, now)? {
            Some((index, reason)) => {
                // The step could not be prepared: it fails, and its failure decides in turn.
                let mut state = open.step(t, index)?;
                let old = state.status;
                state.status = StepStatus::Failed;
                state.reason = Some(reason.clone());
                state.finished_at = Some(now);
                open.set_step(t, index, old, &state)?;
                open.event(
                    t,
                    "step_failed",
                    Some(index),
                    json!({"reason": reason}),
                    now,
                )?;
                changes = decide_after(t, open, index, StepStatus::Failed)?;
            }
            None => break,
        }
    }
    finish_if_done(t, open, now)?;
    open.save(t)?;
    Ok(())
}

/// Starts queued steps, in plan order, while the run has places. Returns the first step that
/// could not be prepared (and stops there), with why.
fn start_queued(
    t: &mut impl Txn,
    open: &mut Open,
    now: DateTime<Utc>,
) -> Result<Option<(usize, String)>, StoreError> {
    loop {
        if open.run.abort_reason.is_some() || open.run.canceled {
            return Ok(None);
        }
        if decide::free_places(&open.graph, open.run.counts.active()) == 0 {
            return Ok(None);
        }
        let Some(next) = t.first_queued(open.id())? else {
            return Ok(None);
        };
        let index = next as usize;
        t.unqueue_step(open.id(), next)?;
        let action = {
            let graph = open.graph.clone();
            let results = step_results(t, open, index)?;
            let lookup = |id: &str| results.get(id).cloned();
            step_action(&graph, &open.run, index, &lookup, now)
        };
        let action = match action {
            Ok(action) => action,
            Err(reason) => return Ok(Some((index, reason))),
        };
        put(t, None, &action)?;
        let mut state = open.step(t, index)?;
        let old = state.status;
        state.action = Some(action.id);
        if action.status.kind() == StatusKind::AwaitingApproval {
            // A gate waits for a person from the start.
            state.status = StepStatus::AwaitingApproval;
            state.started_at = Some(now);
            open.set_step(t, index, old, &state)?;
            let prompt = action.approval.as_ref().and_then(|a| a.prompt.clone());
            let detail = json!({"action_id": action.id, "prompt": prompt});
            open.event(t, "step_awaiting_approval", Some(index), detail, now)?;
        } else {
            state.status = StepStatus::Pending;
            open.set_step(t, index, old, &state)?;
        }
    }
}

/// The results of the steps step `index` depends on (directly or not) that its strings name.
fn step_results(
    t: &mut impl Txn,
    open: &Open,
    index: usize,
) -> Result<HashMap<String, Value>, StoreError> {
    let step = open.graph.step(index);
    let mut wanted = Vec::new();
    for text in crate::plan::spec::step_strings(step) {
        for r in crate::plan::vars::refs(text).unwrap_or_default() {
            if let crate::plan::vars::Ref::StepResult { step, .. } = r {
                wanted.push(step);
            }
        }
    }
    let mut results = HashMap::new();
    for id in wanted {
        let Some(&j) = open.graph.index.get(&id) else {
            continue;
        };
        let action = { open.step(t, j)?.action };
        let Some(action) = action else { continue };
        if let Some(Action {
            status: ActionStatus::Completed { result },
            ..
        }) = t.get(action)?
        {
            results.insert(id, result);
        }
    }
    Ok(results)
}

/// Cancels every step of the run that has not started: waiting and queued ones, and those
/// whose action is stored but not claimed (pending, or waiting for a retry), whose action is
/// failed with the same reason. Running steps finish.
fn cancel_unstarted(
    t: &mut impl Txn,
    open: &mut Open,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let reason = open
        .run
        .abort_reason
        .clone()
        .unwrap_or_else(|| CANCELED_BY_USER.to_string());
    let steps = t.steps(open.id())?;
    for (i, mut state) in steps.into_iter().enumerate() {
        let old = state.status;
        if !matches!(
            old,
            StepStatus::Waiting
                | StepStatus::Queued
                | StepStatus::Pending
                | StepStatus::Retrying
                | StepStatus::AwaitingApproval
        ) {
            continue;
        }
        if let Some(id) = state.action.filter(|_| old.is_active())
            && let Some(action) = t.get(id)?
            && matches!(
                action.status.kind(),
                StatusKind::Pending | StatusKind::AwaitingApproval
            )
        {
            let failed = ActionStatus::Failed {
                reason: reason.clone(),
            };
            let new = transition(&action, failed, now)?;
            put(t, Some(&action), &new)?;
        }
        if old == StepStatus::Queued {
            t.unqueue_step(open.id(), i as u32)?;
        }
        state.status = StepStatus::Canceled;
        state.reason = Some(reason.clone());
        state.finished_at = Some(now);
        open.set_step(t, i, old, &state)?;
        open.event(t, "step_canceled", Some(i), json!({"reason": reason}), now)?;
    }
    Ok(())
}

/// Ends the run when every step has finished: its status, the `run_completed` event, and the
/// action it belongs to (Completed, or Failed with the first failure), all in this transaction.
fn finish_if_done(t: &mut impl Txn, open: &mut Open, now: DateTime<Utc>) -> Result<(), StoreError> {
    if open.run.status.is_finished() {
        return Ok(());
    }
    let status = decide::run_status(&open.run.counts, open.run.canceled);
    if !status.is_finished() {
        return Ok(());
    }
    open.run.status = status;
    open.run.finished_at = Some(now);
    let counts = counts_json(&open.run);
    let detail = json!({
        "status": status,
        "duration_ms": open.run.duration_ms(),
        "counts": counts,
    });
    {
        open.event(t, "run_completed", None, detail, now)?;
    }
    let event = match status {
        RunStatus::Succeeded => Some(crate::notify::NotifyEvent::PlanSucceeded),
        RunStatus::Failed => Some(crate::notify::NotifyEvent::PlanFailed),
        _ => None,
    };
    if let Some(event) = event {
        let reason = match status {
            RunStatus::Failed => first_failure(t, open)?,
            _ => None,
        };
        let notify_on = open.run.notify_on.clone();
        let subject = || crate::notify::Subject::of_run(&open.run, reason, now);
        super::outbox::enqueue_in(t, event, notify_on.as_deref(), subject, now)?;
    }
    let Some(parent) = open.run.parent_action else {
        return Ok(());
    };
    let Some(action) = t.get(parent)? else {
        return Ok(());
    };
    if action.status.kind() != StatusKind::Running {
        return Ok(());
    }
    let outcome = match status {
        RunStatus::Succeeded => ActionStatus::Completed {
            result: json!({"run_id": open.id(), "status": status, "counts": counts}),
        },
        _ => {
            let failure = first_failure(t, open)?;
            ActionStatus::Failed {
                reason: format!(
                    "plan run {} {status}{}",
                    open.id(),
                    failure.map(|f| format!(": {f}")).unwrap_or_default()
                ),
            }
        }
    };
    finish_in(t, &action, outcome, now)?;
    Ok(())
}

/// The first failed step of the run and its reason, for the parent action's failure.
fn first_failure(t: &mut impl Txn, open: &Open) -> Result<Option<String>, StoreError> {
    let steps = t.steps(open.id())?;
    Ok(steps
        .iter()
        .find(|s| s.status == StepStatus::Failed)
        .map(|s| {
            format!(
                "step {} failed: {}",
                s.step_id,
                s.reason.as_deref().unwrap_or("no reason given")
            )
        })
        .or_else(|| open.run.abort_reason.clone()))
}

/// Cancels run `run_id`: steps that have not started are canceled now; running ones are
/// asked to stop as `cancel` stops an action (by `by`, SIGKILL after `grace_ms`), and the
/// run ends `canceled` when they have. Returns the run and the actions asked to stop.
pub(crate) fn cancel_run_in(
    t: &mut impl Txn,
    run_id: Uuid,
    by: &str,
    grace_ms: u64,
    now: DateTime<Utc>,
) -> Result<(PlanRun, Vec<Uuid>), StoreError> {
    let mut open = Open::load(t, run_id)?;
    if open.run.status.is_finished() {
        return Err(StoreError::RunFinished {
            run: run_id,
            status: open.run.status,
        });
    }
    open.run.canceled = true;
    if open.run.abort_reason.is_none() {
        open.run.abort_reason = Some(CANCELED_BY_USER.to_string());
    }
    {
        open.event(t, "run_canceling", None, json!({}), now)?;
    }
    advance(t, &mut open, Vec::new(), now)?;
    let mut stopping = Vec::new();
    for state in t.steps(run_id)? {
        let Some(id) = state.action.filter(|_| state.status == StepStatus::Running) else {
            continue;
        };
        if let Some(action) = t.get(id)?
            && action.status.kind() == crate::model::StatusKind::Running
            && action.cancel.is_none()
        {
            super::rules::cancel_in(t, id, by, grace_ms, now)?;
            stopping.push(id);
        }
    }
    Ok((open.run, stopping))
}

/// Runs again the steps of a finished run that did not succeed (or `only` and what follows
/// it): they wait again, and those whose dependencies are done become ready at once.
pub(crate) fn retry_run_in(
    t: &mut impl Txn,
    run_id: Uuid,
    only: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Retried, StoreError> {
    let mut open = Open::load(t, run_id)?;
    if !open.run.status.is_finished() {
        return Err(StoreError::RunNotFinished { run: run_id });
    }
    let only_index = match only {
        Some(id) => Some(
            *open
                .graph
                .index
                .get(id)
                .ok_or_else(|| StoreError::NoSuchStep {
                    run: run_id,
                    step: id.to_string(),
                })?,
        ),
        None => None,
    };
    let states = t.steps(run_id)?;
    let chosen = decide::retry_selection(&open.graph, &|i| states[i].status, only_index);
    if chosen.is_empty() {
        return Err(StoreError::NothingToRetry { run: run_id });
    }
    open.run.status = RunStatus::Running;
    open.run.finished_at = None;
    open.run.canceled = false;
    open.run.abort_reason = None;
    open.run.parent_action = None;
    let names: Vec<String> = chosen
        .iter()
        .map(|&i| open.graph.step(i).id.clone())
        .collect();
    let mut current: Vec<StepStatus> = states.iter().map(|s| s.status).collect();
    let retried_at;
    {
        for &i in &chosen {
            let mut state = states[i].clone();
            let old = state.status;
            state.status = StepStatus::Waiting;
            state.reason = None;
            state.started_at = None;
            state.finished_at = None;
            state.attempt = 0;
            open.set_step(t, i, old, &state)?;
            current[i] = StepStatus::Waiting;
        }
        retried_at = open.run.next_seq;
        open.event(t, "run_retried", None, json!({"steps": names}), now)?;
    }
    let ready: Vec<Change> = chosen
        .iter()
        .filter_map(|&i| decide::readiness(&open.graph, i, &|j| current[j]))
        .collect();
    advance(t, &mut open, ready, now)?;
    Ok(Retried {
        run: open.run,
        steps: names,
        first_seq: retried_at,
    })
}

/// Refuses a run id that names no run.
pub(crate) fn require_run(t: &mut impl Txn, run: Uuid) -> Result<(), StoreError> {
    match t.plan_run(run)? {
        Some(_) => Ok(()),
        None => Err(StoreError::RunNotFound(run)),
    }
}

/// What `retry_run` started again.
#[derive(Debug, Clone)]
pub struct Retried {
    pub run: PlanRun,
    /// The steps that run again.
    pub steps: Vec<String>,
    /// The sequence number of the retry's first event (`run_retried`): following the run
    /// from there shows this try only.
    pub first_seq: u64,
}

/// Which runs `list_runs` returns.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub plan: Option<String>,
    pub status: Option<RunStatus>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
    /// Keyset paging: only runs older than this cursor (from [`run_cursor`]).
    pub before: Option<[u8; 24]>,
}

/// The cursor that continues a listing after `run`.
pub fn run_cursor(run: &PlanRun) -> String {
    hex::encode(time_key(run.created_at, run.run_id))
}

/// Reads a cursor [`run_cursor`] made.
pub fn parse_run_cursor(text: &str) -> Result<[u8; 24], String> {
    hex::decode(text)
        .ok()
        .and_then(|bytes| <[u8; 24]>::try_from(bytes).ok())
        .ok_or_else(|| format!("cursor '{text}' is not one this daemon gave: start without it"))
}

/// A run with its steps and its plan.
#[derive(Debug, Clone)]
pub struct RunDetail {
    pub run: PlanRun,
    pub steps: Vec<StepState>,
    pub graph: Arc<PlanGraph>,
}
