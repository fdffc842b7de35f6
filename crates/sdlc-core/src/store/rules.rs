//! The store's rules, written once for every backend (generic over [`Txn`]): what claiming,
//! finishing, retrying, handing back and recurring do to actions, and the whole of each
//! write operation of the store. A backend opens a transaction, calls one of these, and
//! commits; the rules never see which backend they run on.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::txn::Txn;
use super::{
    Finished, RecoveryReport, SettleWork, Settled, StepClaim, changes, id_from_key, outbox, plans,
};
use crate::error::StoreError;
use crate::external;
use crate::model::{Action, ActionStatus, AttemptRecord, INTERRUPTED_REASON, StatusKind};
use crate::policy::{self, Decision};

/// The action `id` as a change by id (cancel, pause, delete...) finds it inside `tx`: a
/// delivery still waiting in the inbox is dispatched first (as of `now`, or of its arrival
/// when None), so the change applies to its action.
pub(crate) fn to_change(
    t: &mut impl Txn,
    id: Uuid,
    now: Option<DateTime<Utc>>,
) -> Result<Action, StoreError> {
    t.dispatch_waiting(id, now)?;
    t.get(id)?.ok_or(StoreError::NotFound(id))
}

/// Builds the new form of `old` after a transition, or refuses it.
pub(crate) fn transition(
    old: &Action,
    status: ActionStatus,
    now: DateTime<Utc>,
) -> Result<Action, StoreError> {
    if !old.status.can_become(&status) {
        return Err(StoreError::InvalidTransition {
            id: old.id,
            from: old.status.kind(),
            to: status.kind(),
        });
    }
    let mut new = old.clone();
    if status.kind().is_finished() {
        new.finished_at = Some(now);
    }
    if status.kind() != StatusKind::Running {
        // A stop asked of a run is over with the run.
        new.cancel = None;
    }
    new.status = status;
    new.updated_at = now;
    Ok(new)
}

/// Claims up to `limit` Pending actions due by `until` in the transaction of `t`, earliest
/// first; one not yet due at `now` is claimed as of its due time.
///
/// A recurring occurrence meets its policies here: it runs, is skipped, or is held behind a
/// run of its series that is still going, and its successor is stored in this same
/// transaction. Skipped and held occurrences take no slot, so the scan goes on past them, up
/// to a bound that keeps one transaction short. A plan step whose run has as many steps
/// claimed as `steps` allows stays Pending (and due) and is passed over.
/// Returns the claimed actions and how many due ones were skipped or held instead.
pub(crate) fn claim_in(
    t: &mut impl Txn,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: usize,
    steps: StepClaim,
) -> Result<(Vec<Action>, usize), StoreError> {
    let mut claimed = Vec::new();
    let mut set_aside = 0;
    let mut budget = limit.saturating_mul(4).saturating_add(64);
    // Where the scan stands: entries passed over stay in the index.
    let mut after: Option<[u8; 24]> = None;
    while claimed.len() < limit && budget > 0 {
        let want = (limit - claimed.len()).min(budget);
        let due_keys = t.due(after, until, want)?;
        let Some(last) = due_keys.last() else {
            break;
        };
        after = Some(*last);
        budget -= due_keys.len();
        for key in due_keys {
            let id = id_from_key(&key[8..]);
            let old = t.get(id)?.ok_or(StoreError::NotFound(id))?;
            if old.status.kind() == StatusKind::AwaitingApproval {
                // Its approval's deadline, not a run: rejected as of the deadline (within the
                // claim's few milliseconds of lead, as a run is claimed as of its due time).
                time_out_approval(t, &old, now.max(old.due_at()))?;
                set_aside += 1;
                continue;
            }
            if let Some(step) = &old.step
                && !plans::may_claim_step(t, step, steps)?
            {
                continue;
            }
            let at = now.max(old.due_at());
            match apply_policy(t, old, at)? {
                Some(run) => claimed.push(run),
                None => set_aside += 1,
            }
        }
    }
    Ok((claimed, set_aside))
}

/// Handles one due action: claims it (returned), or skips or holds a recurring occurrence.
pub(crate) fn apply_policy(
    t: &mut impl Txn,
    old: Action,
    now: DateTime<Utc>,
) -> Result<Option<Action>, StoreError> {
    // Only a scheduled occurrence whose successor is not yet stored meets the policies;
    // manual runs, webhook deliveries, one-offs and retries simply run.
    if !old.is_scheduled_occurrence() || old.next_scheduled {
        return start_one(t, &old, now, old.next_scheduled);
    }
    let running = t.running_in_series(old.series)?;
    match policy::decide(&old, running, now) {
        Decision::Run {
            next_due,
            catch_up_left,
        } => {
            if needs_approval_first(&old) {
                gate_before_run(t, &old, now, true)?;
                schedule_next(t, &old, next_due, catch_up_left, now)?;
                return Ok(None);
            }
            let mut run = claim_one(t, &old, now)?;
            schedule_next(t, &old, next_due, catch_up_left, now)?;
            run.next_scheduled = true;
            // Indexed fields did not change since `claim_one` stored it: the record only.
            t.store_record(&old, &run)?;
            Ok(Some(run))
        }
        Decision::Skip { reason, next_due } => {
            let mut skipped = transition(&old, ActionStatus::Skipped { reason }, now)?;
            skipped.next_scheduled = true;
            put(t, Some(&old), &skipped)?;
            schedule_next(t, &old, next_due, None, now)?;
            Ok(None)
        }
        Decision::Queue { behind } => {
            let mut held = old.clone();
            held.queued_behind = Some(behind);
            held.updated_at = now;
            put(t, Some(&old), &held)?;
            Ok(None)
        }
    }
}

/// Claims `old`, or (`--requires-approval`, not yet approved) has it wait for a person
/// before its tool runs (None).
fn start_one(
    t: &mut impl Txn,
    old: &Action,
    now: DateTime<Utc>,
    next_scheduled: bool,
) -> Result<Option<Action>, StoreError> {
    if needs_approval_first(old) {
        gate_before_run(t, old, now, next_scheduled)?;
        return Ok(None);
    }
    claim_one(t, old, now).map(Some)
}

/// Whether `action` must wait for a person before its tool runs: it asks for approval
/// (`--requires-approval`; a plan's steps gate with steps of their own) and nobody approved
/// this run yet.
fn needs_approval_first(action: &Action) -> bool {
    action.requires_approval.is_some()
        && action.step.is_none()
        && !action
            .approval
            .as_ref()
            .is_some_and(crate::model::Approval::lets_the_run_start)
}

/// `old`, due, waits for a person before it runs: awaiting approval, with nothing to show but
/// what it will run (approved it runs at once; rejected it fails without running).
fn gate_before_run(
    t: &mut impl Txn,
    old: &Action,
    now: DateTime<Utc>,
    next_scheduled: bool,
) -> Result<(), StoreError> {
    let waiting = ActionStatus::AwaitingApproval {
        result: serde_json::Value::Null,
    };
    let mut new = transition(old, waiting, now)?;
    let mut approval = crate::model::Approval::pending(old.requires_approval.as_ref(), now);
    approval.before_run = true;
    new.approval = Some(approval);
    new.retry_at = None;
    new.next_scheduled = next_scheduled;
    put(t, Some(old), &new)
}

pub(crate) fn claim_one(
    t: &mut impl Txn,
    old: &Action,
    now: DateTime<Utc>,
) -> Result<Action, StoreError> {
    let mut new = transition(old, ActionStatus::Running, now)?;
    new.attempt += 1;
    new.started_at = Some(now);
    new.retry_at = None;
    new.queued_behind = None;
    put(t, Some(old), &new)?;
    if new.step.is_some() {
        plans::step_claimed_in(t, &new, now)?;
    }
    Ok(new)
}

/// Hands a claimed action whose tool never started back to Pending, as if never claimed:
/// the attempt is not counted and it stays due at once (its due time was at or before the
/// claim), or at `later` when given. A recurring occurrence keeps `next_scheduled`: its
/// successor is already stored.
pub(crate) fn return_in(
    t: &mut impl Txn,
    old: &Action,
    now: DateTime<Utc>,
    later: Option<DateTime<Utc>>,
) -> Result<Action, StoreError> {
    if old.status.kind() != StatusKind::Running {
        return Err(StoreError::InvalidTransition {
            id: old.id,
            from: old.status.kind(),
            to: StatusKind::Pending,
        });
    }
    let claimed_at = old.started_at.unwrap_or(now);
    let mut new = transition(old, ActionStatus::Pending, now)?;
    new.attempt = old.attempt.saturating_sub(1);
    new.started_at = old.attempts.last().and_then(|a| a.started_at);
    // A retry (or an occurrence due later than its claim, which cannot happen but costs
    // nothing to keep right) says when it is due again; a first attempt is due at its slot.
    new.retry_at = if later.is_some() {
        later
    } else if old.attempts.is_empty() && old.scheduled_at() <= claimed_at {
        None
    } else {
        Some(claimed_at)
    };
    put(t, Some(old), &new)?;
    if new.step.is_some() {
        plans::step_returned_in(t, &new)?;
    }
    Ok(new)
}

/// Stores the successor of a recurring occurrence, due at `due` (no successor when None),
/// with what is left of a `--catch-up all` replay.
pub(crate) fn schedule_next(
    t: &mut impl Txn,
    occurrence: &Action,
    due: Option<DateTime<Utc>>,
    catch_up_left: Option<u32>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if let Some(due) = due {
        let mut next = occurrence.occurrence_at(due, now);
        next.catch_up_left = catch_up_left;
        put(t, None, &next)?;
    }
    Ok(())
}

/// Records how a Running action's run ended, in the transaction of `t`: Completed or Failed, or back to
/// Pending when it failed with retries left. Every attempt is recorded. An occurrence held
/// behind this run is released.
pub(crate) fn finish_in(
    t: &mut impl Txn,
    old: &Action,
    outcome: ActionStatus,
    now: DateTime<Utc>,
) -> Result<Finished, StoreError> {
    let (label, reason) = match &outcome {
        ActionStatus::Completed { .. } => ("completed", None),
        ActionStatus::Failed { reason } if reason == INTERRUPTED_REASON => {
            ("interrupted", Some(reason.clone()))
        }
        ActionStatus::Failed { reason } => ("failed", Some(reason.clone())),
        ActionStatus::Canceled { reason } => ("canceled", Some(reason.clone())),
        _ => ("ended", None),
    };
    let record = AttemptRecord {
        attempt: old.attempt,
        started_at: old.started_at,
        finished_at: now,
        outcome: label.to_string(),
        reason,
        outputs_uri: None,
    };
    let retry = match &outcome {
        ActionStatus::Failed { .. } => policy::retry_at(old, now),
        _ => None,
    };
    let outcome = awaiting_approval_if_asked(old, outcome);
    let mut action = match retry {
        Some(at) => {
            let mut pending = transition(old, ActionStatus::Pending, now)?;
            pending.retry_at = Some(at);
            pending
        }
        None => transition(old, outcome, now)?,
    };
    if action.status.kind() == StatusKind::AwaitingApproval {
        action.approval = Some(crate::model::Approval::pending(
            old.requires_approval.as_ref(),
            now,
        ));
    }
    action.attempts.push(record);
    put(t, Some(old), &action)?;
    if action.step.is_some() {
        plans::step_action_changed_in(t, &action, now)?;
    }
    let released = release_queued(t, old, now)?;
    Ok(Finished { action, released })
}

/// Rejects an action whose approval nobody gave by its deadline, in the transaction of `t`.
pub(crate) fn time_out_approval(
    t: &mut impl Txn,
    old: &Action,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let reason = crate::model::APPROVAL_TIMED_OUT.to_string();
    let mut new = transition(old, ActionStatus::Failed { reason }, now)?;
    if let Some(approval) = &mut new.approval {
        approval.decide(crate::model::ApprovalState::Rejected, None, None, now);
    }
    put(t, Some(old), &new)?;
    if new.step.is_some() {
        plans::step_action_changed_in(t, &new, now)?;
    }
    Ok(())
}

/// A run that completed waits for a person instead when the action asks for approval, or
/// when its result does (`"awaiting_approval": true` at its top level or in `data`).
pub(crate) fn awaiting_approval_if_asked(action: &Action, outcome: ActionStatus) -> ActionStatus {
    let ActionStatus::Completed { result } = outcome else {
        return outcome;
    };
    let asked = |value: &serde_json::Value| value.get("awaiting_approval") == Some(&true.into());
    let by_result = asked(&result) || result.get("data").is_some_and(asked);
    // Approved before it ran, a run is not asked again; its result may still ask.
    let approved_first = action
        .approval
        .as_ref()
        .is_some_and(crate::model::Approval::lets_the_run_start);
    if (action.requires_approval.is_some() && !approved_first) || by_result {
        ActionStatus::AwaitingApproval { result }
    } else {
        ActionStatus::Completed { result }
    }
}

/// Makes due at once the occurrence (if any) that `--overlap queue-one` held behind `run`.
pub(crate) fn release_queued(
    t: &mut impl Txn,
    run: &Action,
    now: DateTime<Utc>,
) -> Result<Option<Action>, StoreError> {
    let head = t.series_head(run.series)?;
    let Some(head) = head else {
        return Ok(None);
    };
    let Some(held) = t.get(head)? else {
        return Ok(None);
    };
    if held.queued_behind != Some(run.id) || held.status != ActionStatus::Pending {
        return Ok(None);
    }
    let mut due = held.clone();
    due.queued_behind = None;
    due.retry_at = Some(now);
    due.updated_at = now;
    put(t, Some(&held), &due)?;
    Ok(Some(due))
}

/// Writes `new` (replacing `old`, when given) with every index in step with it, tells the
/// change feed, and queues the notifications the change is worth: every change to an action
/// goes through here (or `put_dispatched`).
pub(crate) fn put(t: &mut impl Txn, old: Option<&Action>, new: &Action) -> Result<(), StoreError> {
    t.store(old, new)?;
    changes::note(changes::Change::of(new));
    if let Some(event) = crate::notify::event_of(old, new) {
        let at = new.updated_at;
        let subject = || crate::notify::Subject::of_action(new, at);
        outbox::enqueue_in(t, event, new.notify_on.as_deref(), subject, at)?;
    }
    Ok(())
}

/// Stores a webhook action dispatched from the inbox, whose body `ingest` already wrote.
pub(crate) fn put_dispatched(t: &mut impl Txn, light: &Action) -> Result<(), StoreError> {
    t.store_dispatched(light)?;
    changes::note(changes::Change::of(light));
    Ok(())
}

/// Stores new actions; fails on an id already stored.
pub(crate) fn insert_many_in(t: &mut impl Txn, actions: &[Action]) -> Result<(), StoreError> {
    for action in actions {
        if t.get(action.id)?.is_some() {
            return Err(StoreError::Duplicate(action.id));
        }
        put(t, None, action)?;
    }
    Ok(())
}

/// Finds the newest occurrence of the series `id` belongs to and applies `change` to it, in
/// one transaction, so nothing can run or finish between the look and the change. `change`
/// gives the new form, or None to leave the action as it is.
fn change_series_head_in(
    t: &mut impl Txn,
    id: Uuid,
    now: DateTime<Utc>,
    change: impl FnOnce(&Action) -> Result<Option<Action>, StoreError>,
) -> Result<Action, StoreError> {
    let action = to_change(t, id, Some(now))?;
    let target = match t.series_head(action.series)? {
        Some(head) if head != id => t.get(head)?.unwrap_or(action),
        _ => action,
    };
    let Some(new) = change(&target)? else {
        return Ok(target);
    };
    put(t, Some(&target), &new)?;
    if new.step.is_some() && new.status.kind().is_finished() {
        plans::step_action_changed_in(t, &new, now)?;
    }
    Ok(new)
}

/// Moves an action to `status`, refusing transitions the lifecycle forbids.
pub(crate) fn set_status_in(
    t: &mut impl Txn,
    id: Uuid,
    status: ActionStatus,
    now: DateTime<Utc>,
) -> Result<Action, StoreError> {
    let old = to_change(t, id, Some(now))?;
    let new = transition(&old, status, now)?;
    put(t, Some(&old), &new)?;
    Ok(new)
}

/// The engine's settle (see `ActionDb::settle_work`): `work` recorded, then up to
/// `claim_limit` actions due by `claim_until` claimed. Returns what it did, and whether it
/// changed anything (when not, the backend need not commit).
pub(crate) fn settle_in(
    t: &mut impl Txn,
    work: SettleWork,
    now: DateTime<Utc>,
    claim_until: DateTime<Utc>,
    claim_limit: usize,
) -> Result<(Settled, bool), StoreError> {
    let SettleWork {
        outcomes,
        excerpts,
        logs,
        returned,
        deferred,
        plan_starts,
        step_claim,
    } = work;
    let started_plans = plan_starts.len();
    for (id, new) in &plan_starts {
        let old = t.get(*id)?.ok_or(StoreError::NotFound(*id))?;
        if old.status.kind() != StatusKind::Running {
            return Err(StoreError::InvalidTransition {
                id: *id,
                from: old.status.kind(),
                to: StatusKind::Running,
            });
        }
        let run = plans::start_run_in(t, new, Some(*id), now)?;
        // The run may have ended at once (every step failed to prepare) and finished
        // the action already.
        if let Some(current) = t.get(*id)?
            && current.status.kind() == StatusKind::Running
        {
            let mut parent = current.clone();
            parent.plan_run = Some(run.run_id);
            put(t, Some(&current), &parent)?;
        }
    }
    for id in &returned {
        let old = t.get(*id)?.ok_or(StoreError::NotFound(*id))?;
        return_in(t, &old, now, None)?;
    }
    for (id, due) in &deferred {
        let old = t.get(*id)?.ok_or(StoreError::NotFound(*id))?;
        return_in(t, &old, now, Some(*due))?;
    }
    let (dispatched, inbox_waiting) = if claim_limit > 0 {
        t.dispatch_inbox(now, claim_limit)?
    } else {
        (0, false)
    };
    let mut finished = Vec::with_capacity(outcomes.len());
    let mut excerpts: HashMap<Uuid, Option<String>> = excerpts.into_iter().collect();
    let mut logs: HashMap<Uuid, std::sync::Arc<[u8]>> = logs.into_iter().collect();
    for (id, outcome) in outcomes {
        let mut old = t.get(id)?.ok_or(StoreError::NotFound(id))?;
        if let Some(excerpt) = excerpts.remove(&id) {
            // Not indexed: the record before finishing may carry it.
            old.log_excerpt = excerpt;
        }
        if old.status.kind() != StatusKind::Running {
            return Err(StoreError::InvalidTransition {
                id,
                from: old.status.kind(),
                to: outcome.kind(),
            });
        }
        if let Some(log) = logs.remove(&id) {
            t.put_log(id, old.attempt, &log)?;
        }
        finished.push(finish_in(t, &old, outcome, now)?);
    }
    let (claimed, set_aside) = claim_in(t, now, claim_until.max(now), claim_limit, step_claim)?;
    let events = t.take_new_events();
    let changed = !(finished.is_empty()
        && claimed.is_empty()
        && returned.is_empty()
        && deferred.is_empty()
        && dispatched == 0
        && set_aside == 0
        && started_plans == 0);
    let settled = Settled {
        finished,
        claimed,
        dispatched,
        inbox_waiting,
        events,
    };
    Ok((settled, changed))
}

/// Recovery of the actions left Running by a daemon that died (see
/// `ActionDb::startup_recovery_knowing`): each in `ids` becomes Failed as interrupted, or
/// Pending for a retry; one not in `started` (when given) was never started and goes back
/// to Pending unharmed. An action waiting for its plan run is left to the run's steps.
pub(crate) fn recover_in(
    t: &mut impl Txn,
    ids: Vec<Uuid>,
    now: DateTime<Utc>,
    started: Option<&HashSet<Uuid>>,
) -> Result<RecoveryReport, StoreError> {
    let mut report = RecoveryReport::default();
    for id in ids {
        let old = t.get(id)?.ok_or(StoreError::NotFound(id))?;
        if old.plan_run.is_some() || old.is_external() {
            // Waits for its plan run, which recovery of its steps carries on; or runs
            // elsewhere, and only its reports end it.
            continue;
        }
        // A step's recovery commits events of its run, which its event file must get.
        if let Some(step) = &old.step
            && !report.runs.contains(&step.run_id)
        {
            report.runs.push(step.run_id);
        }
        if started.is_some_and(|started| !started.contains(&id)) {
            return_in(t, &old, now, None)?;
            report.returned.push(id);
            continue;
        }
        let ended = match &old.cancel {
            // Asked to stop, and it did stop with its daemon: what was asked is what it got.
            Some(request) => ActionStatus::Canceled {
                reason: format!("{} (its daemon stopped before it ended)", request.reason()),
            },
            None => ActionStatus::Failed {
                reason: INTERRUPTED_REASON.to_string(),
            },
        };
        let finished = finish_in(t, &old, ended, now)?;
        report.interrupted.push(id);
        report.retried += usize::from(finished.action.status == ActionStatus::Pending);
    }
    Ok(report)
}

/// Every Running action not in `known` goes back to Pending (see
/// `ActionDb::return_unknown_running`). Returns their ids.
pub(crate) fn return_unknown_in(
    t: &mut impl Txn,
    known: &HashSet<Uuid>,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, StoreError> {
    let mut returned = Vec::new();
    for id in t.ids_with_status(StatusKind::Running)? {
        if known.contains(&id) {
            continue;
        }
        let old = t.get(id)?.ok_or(StoreError::NotFound(id))?;
        if old.plan_run.is_some() || old.is_external() {
            continue;
        }
        return_in(t, &old, now, None)?;
        returned.push(id);
    }
    Ok(returned)
}

/// Approves or rejects an action awaiting approval (`decide` gives its new form), with
/// what follows from it for its plan run.
fn decide_approval_in(
    t: &mut impl Txn,
    id: Uuid,
    now: DateTime<Utc>,
    decide: impl FnOnce(&Action) -> Result<Action, StoreError>,
) -> Result<Action, StoreError> {
    let old = to_change(t, id, Some(now))?;
    if old.status.kind() != StatusKind::AwaitingApproval {
        return Err(StoreError::NotAwaitingApproval {
            id,
            status: old.status.kind(),
            approval: old.approval.as_ref().map(|a| a.state),
        });
    }
    let new = decide(&old)?;
    put(t, Some(&old), &new)?;
    if new.step.is_some() {
        plans::step_action_changed_in(t, &new, now)?;
    }
    Ok(new)
}

/// Replaces a pending or paused action by `new`, unless it changed since `seen` was read.
pub(crate) fn replace_edited_in(
    t: &mut impl Txn,
    seen: &Action,
    new: &Action,
    now: DateTime<Utc>,
) -> Result<Action, StoreError> {
    let id = seen.id;
    let current = t.get(id)?.ok_or(StoreError::NotFound(id))?;
    if !matches!(
        current.status.kind(),
        StatusKind::Pending | StatusKind::Paused
    ) {
        return Err(StoreError::NotEditable {
            id,
            status: current.status.kind(),
        });
    }
    if current.updated_at != seen.updated_at || current.status != seen.status {
        return Err(StoreError::ChangedMeanwhile { id });
    }
    let mut stored = new.clone();
    stored.updated_at = now;
    put(t, Some(&current), &stored)?;
    Ok(stored)
}

/// Applies a report to the run `id` reported from outside (see `crate::external`): its start
/// when it was queued, or how it ended, with the log it sent (stored form and excerpt).
pub(crate) fn report_in(
    t: &mut impl Txn,
    id: Uuid,
    checked: &external::CheckedReport,
    log: Option<&crate::external::ReportedLog>,
    now: DateTime<Utc>,
) -> Result<Action, StoreError> {
    let old = t.get(id)?.ok_or(StoreError::NotFound(id))?;
    external::may_report(&old, checked.status)
        .map_err(|detail| StoreError::NotReportable { detail })?;
    let measured_start = checked
        .report
        .duration_ms
        .map(|ms| now - chrono::Duration::milliseconds(ms.min(i64::MAX as u64) as i64));
    let mut running = old.clone();
    if old.status.kind() == StatusKind::Pending {
        if checked.status == external::ReportedStatus::Queued {
            // Still queued; a log sent with it is kept as its first attempt's until a later
            // one replaces it.
            let Some(log) = log else {
                return Ok(old);
            };
            t.put_log(id, 1, &log.stored)?;
            let mut queued = old.clone();
            queued.log_excerpt = log.excerpt.clone();
            queued.updated_at = now;
            t.store_record(&old, &queued)?;
            return Ok(queued);
        }
        running = transition(&old, ActionStatus::Running, now)?;
        running.attempt = 1;
        running.started_at = Some(measured_start.unwrap_or(now));
        put(t, Some(&old), &running)?;
    } else if let Some(at) = measured_start {
        running.started_at = Some(at);
    }
    let attempt = running.attempt.max(1);
    if let Some(log) = log {
        t.put_log(id, attempt, &log.stored)?;
        running.log_excerpt = log.excerpt.clone();
    }
    match external::outcome(checked) {
        // Stored over what is stored now: `running` differs from it only in fields no index
        // reads (its start time, its excerpt).
        Some(outcome) => {
            let ended = finish_in(t, &running, outcome, now)?.action;
            let link = checked.report.outputs_uri.as_ref();
            let has_result = matches!(
                ended.status,
                ActionStatus::Completed { .. } | ActionStatus::AwaitingApproval { .. }
            );
            match link.filter(|_| !has_result) {
                // An end with no result keeps its link on the attempt it ends.
                Some(uri) => {
                    let mut linked = ended.clone();
                    if let Some(last) = linked.attempts.last_mut() {
                        last.outputs_uri = Some(uri.clone());
                    }
                    t.store_record(&ended, &linked)?;
                    Ok(linked)
                }
                None => Ok(ended),
            }
        }
        None if old.status.kind() == StatusKind::Running && running != old => {
            running.updated_at = now;
            put(t, Some(&old), &running)?;
            Ok(running)
        }
        None => Ok(running),
    }
}

/// Removes an action that is not Running and is no unfinished step of a plan run.
pub(crate) fn delete_in(t: &mut impl Txn, id: Uuid) -> Result<Action, StoreError> {
    let old = to_change(t, id, None)?;
    if let Some(step) = old
        .step
        .as_ref()
        .filter(|_| !old.status.kind().is_finished())
    {
        return Err(StoreError::StepOfRun {
            id,
            run: step.run_id,
            step: step.step_id.clone(),
        });
    }
    if old.status.kind() == StatusKind::Running {
        return Err(StoreError::InvalidTransition {
            id,
            from: StatusKind::Running,
            to: StatusKind::Failed,
        });
    }
    t.remove(&old)?;
    changes::note(changes::Change {
        status: None,
        ..changes::Change::of(&old)
    });
    Ok(old)
}

/// Cancels the pending (or paused) occurrence of the series `id` belongs to.
pub(crate) fn cancel_in(
    t: &mut impl Txn,
    id: Uuid,
    by: &str,
    grace_ms: u64,
    now: DateTime<Utc>,
) -> Result<Action, StoreError> {
    let old = to_change(t, id, Some(now))?;
    if old.status.kind() == StatusKind::Running && old.is_external() {
        // Nothing of ours runs it: it ends here, and a later report of it is refused.
        let reason = format!("canceled by {by} (a run reported from outside)");
        return Ok(finish_in(t, &old, ActionStatus::Canceled { reason }, now)?.action);
    }
    if old.status.kind() == StatusKind::Running && old.plan_run.is_none() {
        // Stop the run in flight: its node is told at commit (see `Txn::announce_cancel`)
        // and records it Canceled when its process is gone. A recurring action's series ends
        // with it, as a cancel of its pending occurrence does.
        let mut stopping = old.clone();
        stopping.cancel = Some(crate::model::CancelRequest {
            requested_at: now,
            by: by.to_string(),
            grace_ms,
        });
        stopping.updated_at = now;
        put(t, Some(&old), &stopping)?;
        t.announce_cancel(&stopping)?;
        if old.recurrence.is_some() {
            let ended = change_series_head_in(t, id, now, |target| match target.status.kind() {
                StatusKind::Pending | StatusKind::Paused => {
                    let reason = format!("canceled by {by} before it ran");
                    transition(target, ActionStatus::Canceled { reason }, now).map(Some)
                }
                _ => Ok(None),
            });
            match ended {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        return Ok(stopping);
    }
    change_series_head_in(t, id, now, |target| match target.status.kind() {
        StatusKind::Pending | StatusKind::Paused => {
            let reason = format!("canceled by {by} before it ran");
            transition(target, ActionStatus::Canceled { reason }, now).map(Some)
        }
        status => Err(StoreError::NotPending { id, status }),
    })
}

/// Pauses the pending occurrence of the series `id` belongs to.
pub(crate) fn pause_in(
    t: &mut impl Txn,
    id: Uuid,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<Action, StoreError> {
    change_series_head_in(t, id, now, |target| match target.status.kind() {
        StatusKind::Paused => Ok(None),
        StatusKind::Pending => {
            let mut paused = transition(target, ActionStatus::Paused { reason }, now)?;
            paused.queued_behind = None;
            Ok(Some(paused))
        }
        status => Err(StoreError::NothingToPause { id, status }),
    })
}

/// Resumes the paused occurrence of the series `id` belongs to.
pub(crate) fn resume_in(
    t: &mut impl Txn,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Action, StoreError> {
    change_series_head_in(t, id, now, |target| match target.status.kind() {
        StatusKind::Paused => transition(target, ActionStatus::Pending, now).map(Some),
        status => Err(StoreError::NotPaused { id, status }),
    })
}

/// Approves an action awaiting approval: it completes with the result it waited with.
pub(crate) fn approve_in(
    t: &mut impl Txn,
    id: Uuid,
    by: &crate::model::Decider,
    note: Option<String>,
    now: DateTime<Utc>,
) -> Result<Action, StoreError> {
    decide_approval_in(t, id, now, |old| {
        let ActionStatus::AwaitingApproval { result } = &old.status else {
            unreachable!("checked by decide_approval_in");
        };
        let before_run = old.approval.as_ref().is_some_and(|a| a.before_run);
        let next = if before_run {
            // Approved to run: due at once.
            ActionStatus::Pending
        } else {
            ActionStatus::Completed {
                result: result.clone(),
            }
        };
        let mut new = transition(old, next, now)?;
        if before_run {
            new.retry_at = Some(now);
        }
        if let Some(approval) = &mut new.approval {
            approval.decide(crate::model::ApprovalState::Approved, Some(by), note, now);
        }
        Ok(new)
    })
}

/// Rejects an action awaiting approval: it fails with `rejected by <by>: <note>`.
pub(crate) fn reject_in(
    t: &mut impl Txn,
    id: Uuid,
    by: &crate::model::Decider,
    note: Option<String>,
    now: DateTime<Utc>,
) -> Result<Action, StoreError> {
    decide_approval_in(t, id, now, |old| {
        let name = &by.name;
        let reason = match note.as_deref().filter(|n| !n.trim().is_empty()) {
            Some(note) => format!("rejected by {name}: {note}"),
            None => format!("rejected by {name}"),
        };
        let mut new = transition(old, ActionStatus::Failed { reason }, now)?;
        if let Some(approval) = &mut new.approval {
            approval.decide(crate::model::ApprovalState::Rejected, Some(by), note, now);
        }
        Ok(new)
    })
}
