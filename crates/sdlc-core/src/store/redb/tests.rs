//! The store's conformance suite, run on both backends (`on_both!`: each case against a redb
//! file and a PostgreSQL database), and the tests of `ActionDb` that need its file (schema
//! versions, records edited on disk).

use super::*;
use crate::error::StoreError;
use crate::model::ActionStatus;
use crate::model::{
    ActionTrigger, CatchUp, INTERRUPTED_REASON, Overlap, Recurrence, RetryPolicy, SchedulePolicy,
};
use crate::store::{Ingested, ListFilter};
use chrono::TimeZone;
use redb::ReadableDatabase;
use serde_json::json;

fn t(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

fn open() -> (tempfile::TempDir, ActionDb) {
    let dir = tempfile::tempdir().unwrap();
    let db = ActionDb::open(&dir.path().join("orchestrator.db")).unwrap();
    (dir, db)
}

fn scheduled(label: &str, due_ms: i64) -> Action {
    Action::new(
        label,
        "echo",
        json!({}),
        ActionTrigger::Scheduled {
            next_tick_at: t(due_ms),
        },
        t(0),
    )
}

fn ok() -> ActionStatus {
    ActionStatus::Completed {
        result: json!({"ok": true}),
    }
}

#[test]
fn due_keys_sort_by_time_then_id() {
    let a = Uuid::from_u128(u128::MAX);
    let b = Uuid::from_u128(0);
    // Earlier time sorts first even with a larger id.
    assert!(due_key(t(1_000), a) < due_key(t(1_001), b));
    // Same time: id breaks the tie.
    assert!(due_key(t(1_000), b) < due_key(t(1_000), a));
    // Big-endian: 256 ms sorts after 255 ms (little-endian would not).
    assert!(due_key(t(255), a) < due_key(t(256), b));
    assert_eq!(due_key(t(5), a).len(), 24);
}

fn claim_due_takes_only_pending_actions_that_are_due(db: &dyn Store) {
    let past = scheduled("past", 1_000);
    let now_due = scheduled("exactly-now", 5_000);
    let future = scheduled("future", 9_000);
    let finished = scheduled("finished", 500);
    db.insert_many(&[
        past.clone(),
        now_due.clone(),
        future.clone(),
        finished.clone(),
    ])
    .unwrap();
    db.claim_due(t(600), 10).unwrap();
    db.complete(finished.id, ok(), t(700)).unwrap();

    let claimed = db.claim_due(t(5_000), 10).unwrap();
    let labels: Vec<_> = claimed.iter().map(|a| a.label.as_str()).collect();
    assert_eq!(labels, ["past", "exactly-now"]);
    assert!(claimed.iter().all(|a| a.status == ActionStatus::Running));
    assert!(claimed.iter().all(|a| a.attempt == 1));

    // Claimed actions are no longer due; the future one is still waiting.
    assert!(db.claim_due(t(5_000), 10).unwrap().is_empty());
    assert_eq!(db.next_due_at().unwrap(), Some(t(9_000)));
    assert_eq!(
        db.get(future.id).unwrap().unwrap().status,
        ActionStatus::Pending
    );
}

fn an_action_claimed_before_its_due_time_is_claimed_as_of_it(db: &dyn Store) {
    let overdue = scheduled("overdue", 900);
    let soon = scheduled("soon", 1_004);
    let later = scheduled("later", 1_006);
    db.insert_many(&[overdue.clone(), soon.clone(), later.clone()])
        .unwrap();
    let claimed = db
        .settle_claiming_until(Vec::new(), Vec::new(), Vec::new(), t(1_000), t(1_005), 10)
        .unwrap()
        .claimed;
    let got: Vec<_> = claimed
        .iter()
        .map(|a| (a.label.as_str(), a.started_at))
        .collect();
    // The overdue one as of now; the one coming due as of its due time; none beyond.
    assert_eq!(got, [("overdue", Some(t(1_000))), ("soon", Some(t(1_004)))]);
    assert_eq!(db.next_due_at().unwrap(), Some(t(1_006)));

    // Handed back unstarted, it is due at its own time again, its attempt not counted.
    let back = db
        .settle_returning(Vec::new(), vec![soon.id], t(1_001), 0)
        .unwrap();
    assert!(back.claimed.is_empty());
    let soon = db.get(soon.id).unwrap().unwrap();
    assert_eq!(
        (soon.due_at(), soon.attempt, soon.status),
        (t(1_004), 0, ActionStatus::Pending)
    );
}

fn claim_due_respects_the_limit_and_leaves_the_rest_pending(db: &dyn Store) {
    let actions: Vec<_> = (0..5)
        .map(|i| scheduled(&format!("a{i}"), 100 + i))
        .collect();
    db.insert_many(&actions).unwrap();
    let first = db.claim_due(t(1_000), 2).unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].label, "a0");
    assert_eq!(db.claim_due(t(1_000), 10).unwrap().len(), 3);
}

fn finished_history_does_not_stay_in_the_due_range(db: &dyn Store) {
    let many: Vec<_> = (0..200).map(|i| scheduled("old", i)).collect();
    db.insert_many(&many).unwrap();
    let claimed = db.claim_due(t(1_000), 1_000).unwrap();
    let outcomes = claimed.iter().map(|a| (a.id, ok())).collect();
    db.complete_many(outcomes, t(1_000)).unwrap();
    assert_eq!(db.next_due_at().unwrap(), None);
    assert!(
        db.claim_due(t(4_000_000_000_000), 1_000)
            .unwrap()
            .is_empty()
    );
}

fn get_finds_by_id_and_misses_unknown_ids(db: &dyn Store) {
    let action = scheduled("x", 1);
    db.insert(&action).unwrap();
    assert_eq!(db.get(action.id).unwrap(), Some(action.clone()));
    assert_eq!(db.get(Uuid::new_v4()).unwrap(), None);
    assert!(matches!(db.insert(&action), Err(StoreError::Duplicate(_))));
}

fn set_status_refuses_impossible_transitions(db: &dyn Store) {
    let action = scheduled("x", 1);
    db.insert(&action).unwrap();
    let err = db.set_status(action.id, ok(), t(2)).unwrap_err();
    assert!(matches!(
        err,
        StoreError::InvalidTransition {
            from: StatusKind::Pending,
            to: StatusKind::Completed,
            ..
        }
    ));
    db.set_status(action.id, ActionStatus::Running, t(2))
        .unwrap();
    let done = db.set_status(action.id, ok(), t(3)).unwrap();
    assert_eq!(done.finished_at, Some(t(3)));
    let err = db
        .set_status(action.id, ActionStatus::Running, t(4))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot go from completed to running"),
        "{err}"
    );
    assert!(matches!(
        db.set_status(Uuid::new_v4(), ActionStatus::Running, t(4)),
        Err(StoreError::NotFound(_))
    ));
}

fn complete_refuses_an_action_that_is_not_running(db: &dyn Store) {
    let action = scheduled("x", 1);
    db.insert(&action).unwrap();
    assert!(db.complete(action.id, ok(), t(2)).is_err());
    assert_eq!(
        db.get(action.id).unwrap().unwrap().status,
        ActionStatus::Pending
    );
}

fn claiming_a_recurring_occurrence_stores_the_next_in_the_same_commit(db: &dyn Store) {
    let mut action = scheduled("tick", 10_000);
    action.recurrence = Some(Recurrence::Every { interval_ms: 1_000 });
    db.insert(&action).unwrap();
    let claimed = db.claim_due(t(10_000), 10).unwrap();
    assert_eq!(claimed.len(), 1);
    let next = db.series_head(action.id).unwrap().unwrap();
    assert_ne!(
        next.id, action.id,
        "the id `add` printed leads to the next occurrence"
    );
    assert_eq!(next.due_at(), t(11_000));
    assert_eq!(next.series, action.id);
    assert_eq!(next.status, ActionStatus::Pending);
    assert_eq!(db.next_due_at().unwrap(), Some(t(11_000)));
    // A failed run does not stop the series.
    let failed = ActionStatus::Failed {
        reason: "boom".into(),
    };
    db.complete(action.id, failed, t(10_200)).unwrap();
    assert_eq!(db.series_head(action.id).unwrap().unwrap().id, next.id);
}

fn recurring(label: &str, due_ms: i64, interval_ms: u64, policy: SchedulePolicy) -> Action {
    let mut action = scheduled(label, due_ms);
    action.recurrence = Some(Recurrence::Every { interval_ms });
    action.policy = policy;
    action
}

fn policy(overlap: Overlap, catch_up: CatchUp) -> SchedulePolicy {
    SchedulePolicy { overlap, catch_up }
}

fn overlap_skip_records_a_skipped_occurrence_and_moves_on(db: &dyn Store) {
    let first = recurring("r", 1_000, 1_000, policy(Overlap::Skip, CatchUp::Latest));
    db.insert(&first).unwrap();
    db.claim_due(t(1_000), 10).unwrap();
    // The first run is still going when the second slot comes.
    assert!(db.claim_due(t(2_000), 10).unwrap().is_empty());
    let skipped = db
        .list(&ListFilter {
            status: Some(StatusKind::Skipped),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(
        matches!(&skipped[0].status, ActionStatus::Skipped { reason } if reason.contains("still running"))
    );
    assert_eq!(
        db.series_head(first.id).unwrap().unwrap().due_at(),
        t(3_000)
    );
}

fn overlap_queue_one_holds_one_occurrence_until_the_run_ends(db: &dyn Store) {
    let first = recurring(
        "r",
        1_000,
        1_000,
        policy(Overlap::QueueOne, CatchUp::Latest),
    );
    db.insert(&first).unwrap();
    db.claim_due(t(1_000), 10).unwrap();
    assert!(db.claim_due(t(2_000), 10).unwrap().is_empty());
    let held = db.series_head(first.id).unwrap().unwrap();
    assert_eq!(held.queued_behind, Some(first.id));
    assert_eq!(
        db.next_due_at().unwrap(),
        None,
        "a held occurrence is not due"
    );
    // Later slots do not pile up: nothing else is stored while it waits.
    assert!(db.claim_due(t(5_000), 10).unwrap().is_empty());
    assert_eq!(db.list(&ListFilter::default()).unwrap().len(), 2);

    let finished = db.complete(first.id, ok(), t(5_500)).unwrap();
    assert_eq!(finished.released.as_ref().map(|a| a.id), Some(held.id));
    let runs = db.claim_due(t(5_500), 10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, held.id);
    // Back on the grid after it.
    assert_eq!(
        db.series_head(first.id).unwrap().unwrap().due_at(),
        t(6_000)
    );
}

fn overlap_allow_runs_both(db: &dyn Store) {
    let first = recurring("r", 1_000, 1_000, policy(Overlap::Allow, CatchUp::Latest));
    db.insert(&first).unwrap();
    db.claim_due(t(1_000), 10).unwrap();
    assert_eq!(db.claim_due(t(2_000), 10).unwrap().len(), 1);
    assert_eq!(db.count_by_status().unwrap()[1], (StatusKind::Running, 2));
}

#[test]
fn catch_up_policies_after_downtime() {
    for (catch_up, runs, skipped) in [
        (CatchUp::Latest, 1, 0),
        (CatchUp::None, 0, 1),
        (CatchUp::All, 10, 0),
    ] {
        let (_dir, db) = open();
        let first = recurring("r", 1_000, 1_000, policy(Overlap::Allow, catch_up));
        db.insert(&first).unwrap();
        // Back after nine missed slots (2s..10s), at 10.5 s.
        let claimed = db.claim_due(t(10_500), 100).unwrap();
        assert_eq!(claimed.len(), runs, "{catch_up:?}");
        let counts = db.count_by_status().unwrap();
        assert_eq!(counts[5], (StatusKind::Skipped, skipped), "{catch_up:?}");
        // Whatever was replayed, the series is back on the grid, in the future.
        assert_eq!(
            db.series_head(first.id).unwrap().unwrap().due_at(),
            t(11_000),
            "{catch_up:?}"
        );
    }
}

fn a_failed_run_with_retries_left_returns_to_pending_and_records_each_attempt(db: &dyn Store) {
    let mut action = scheduled("flaky", 0);
    action.retry = Some(RetryPolicy {
        retries: 1,
        backoff_ms: 10_000,
        fixed: false,
    });
    db.insert(&action).unwrap();
    let boom = || ActionStatus::Failed {
        reason: "boom".into(),
    };
    db.claim_due(t(0), 1).unwrap();
    let first = db.complete(action.id, boom(), t(100)).unwrap().action;
    assert_eq!(first.status, ActionStatus::Pending);
    let retry_at = first.retry_at.unwrap();
    assert!(retry_at >= t(8_100) && retry_at < t(12_100), "{retry_at}");
    assert!(
        db.claim_due(t(5_000), 1).unwrap().is_empty(),
        "not before the backoff"
    );
    let second = db.claim_due(retry_at, 1).unwrap();
    assert_eq!(second[0].attempt, 2);
    let last = db.complete(action.id, boom(), retry_at).unwrap().action;
    assert!(
        matches!(last.status, ActionStatus::Failed { .. }),
        "no retries left"
    );
    let outcomes: Vec<(u32, &str)> = last
        .attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str()))
        .collect();
    assert_eq!(outcomes, [(1, "failed"), (2, "failed")]);
}

fn an_interrupted_run_is_retried_when_its_policy_allows(db: &dyn Store) {
    let mut action = scheduled("x", 0);
    action.retry = Some(RetryPolicy {
        retries: 2,
        backoff_ms: 1_000,
        fixed: false,
    });
    db.insert(&action).unwrap();
    db.claim_due(t(0), 1).unwrap();
    // Its tool started (on PostgreSQL the mark says so; on redb every claim counts).
    db.mark_started(&[action.id], t(0)).unwrap();
    let report = db.startup_recovery(t(50)).unwrap();
    assert_eq!(report.retried, 1);
    let got = db.get(action.id).unwrap().unwrap();
    assert_eq!(got.status, ActionStatus::Pending);
    assert_eq!(got.attempts[0].outcome, "interrupted");
}

fn pause_resume_and_run_now(db: &dyn Store) {
    let first = recurring("r", 1_000, 1_000, policy(Overlap::Skip, CatchUp::Latest));
    db.insert(&first).unwrap();
    let paused = db
        .pause(first.id, Some("maintenance".into()), t(500))
        .unwrap();
    assert_eq!(
        paused.status,
        ActionStatus::Paused {
            reason: Some("maintenance".into())
        }
    );
    assert!(
        db.claim_due(t(60_000), 10).unwrap().is_empty(),
        "paused never fires"
    );
    assert!(
        db.pause(first.id, None, t(600)).is_ok(),
        "pausing twice is harmless"
    );

    // A manual run fires at once without moving the schedule.
    let manual = db.run_now(first.id, t(61_000)).unwrap();
    assert!(matches!(manual.trigger, ActionTrigger::Manual { .. }));
    assert_eq!(manual.series, first.id);
    let runs = db.claim_due(t(61_000), 10).unwrap();
    assert_eq!(runs.iter().map(|a| a.id).collect::<Vec<_>>(), [manual.id]);
    assert_eq!(db.series_head(first.id).unwrap().unwrap().id, first.id);
    // (A manual run counts for the overlap policy like any run of the series.)
    db.complete(manual.id, ok(), t(61_500)).unwrap();

    db.resume(first.id, t(62_000)).unwrap();
    let err = db.resume(first.id, t(62_000)).unwrap_err();
    assert!(err.to_string().contains("not paused"), "{err}");
    // Missed slots while paused: catch-up latest runs once, then back on the grid.
    assert_eq!(db.claim_due(t(62_000), 10).unwrap().len(), 1);
    assert_eq!(
        db.series_head(first.id).unwrap().unwrap().due_at(),
        t(63_000)
    );
}

fn retention_prunes_old_finished_actions_only(db: &dyn Store) {
    let old: Vec<_> = (0..5).map(|i| scheduled(&format!("old{i}"), i)).collect();
    db.insert_many(&old).unwrap();
    let claimed = db.claim_due(t(10), 10).unwrap();
    db.complete_many(claimed.iter().map(|a| (a.id, ok())).collect(), t(100))
        .unwrap();
    let pending = scheduled("pending", 1_000_000);
    db.insert(&pending).unwrap();
    let recent = scheduled("recent", 200);
    db.insert(&recent).unwrap();
    db.claim_due(t(200), 10).unwrap();
    db.complete(recent.id, ok(), t(5_000)).unwrap();

    assert_eq!(
        db.prune_finished(t(1_000), 3).unwrap(),
        3,
        "bounded per call"
    );
    assert_eq!(db.prune_finished(t(1_000), 100).unwrap(), 2);
    assert_eq!(db.prune_finished(t(1_000), 100).unwrap(), 0);
    let left: Vec<_> = db
        .list(&ListFilter::default())
        .unwrap()
        .into_iter()
        .map(|a| a.label)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&"pending".to_string()) && left.contains(&"recent".to_string()));
}

fn startup_recovery_fails_interrupted_runs_and_keeps_everything_else(db: &dyn Store) {
    let interrupted = scheduled("interrupted", 1);
    let done = scheduled("done", 1);
    let pending = scheduled("pending", 50_000);
    let mut recurring = scheduled("recurring", 1);
    recurring.recurrence = Some(Recurrence::Every {
        interval_ms: 60_000,
    });
    db.insert_many(&[
        interrupted.clone(),
        done.clone(),
        pending.clone(),
        recurring.clone(),
    ])
    .unwrap();
    let claimed: Vec<Uuid> = db
        .claim_due(t(10), 10)
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(claimed.len(), 3);
    db.mark_started(&claimed, t(10)).unwrap();
    db.complete(done.id, ok(), t(20)).unwrap();

    let report = db.startup_recovery(t(30)).unwrap();
    assert_eq!(report.interrupted.len(), 2);
    assert_eq!(report.retried, 0);
    let got = db.get(interrupted.id).unwrap().unwrap();
    assert_eq!(
        got.status,
        ActionStatus::Failed {
            reason: INTERRUPTED_REASON.into()
        }
    );
    assert_eq!(db.get(done.id).unwrap().unwrap().status, ok());
    assert_eq!(
        db.get(pending.id).unwrap().unwrap().status,
        ActionStatus::Pending
    );
    // The next occurrence was stored when the interrupted run was claimed.
    let head = db.series_head(recurring.id).unwrap().unwrap();
    assert_eq!(head.status, ActionStatus::Pending);
    assert_eq!(head.due_at(), t(60_001));
    // A second recovery finds nothing to do.
    assert_eq!(
        db.startup_recovery(t(40)).unwrap(),
        RecoveryReport::default()
    );
}

fn a_claim_handed_back_is_pending_due_at_once_and_not_an_attempt(db: &dyn Store) {
    let first = scheduled("first", 1_000);
    let mut retried = scheduled("retried", 1_000);
    retried.retry = Some(RetryPolicy {
        retries: 2,
        backoff_ms: 1_000,
        fixed: false,
    });
    let mut recurring = scheduled("recurring", 1_000);
    recurring.recurrence = Some(Recurrence::Every {
        interval_ms: 60_000,
    });
    db.insert_many(&[first.clone(), retried.clone(), recurring.clone()])
        .unwrap();
    assert_eq!(db.claim_due(t(1_500), 10).unwrap().len(), 3);
    // The retried one fails once and is claimed again for its second attempt.
    let failed = ActionStatus::Failed {
        reason: "boom".into(),
    };
    db.complete(retried.id, failed, t(1_600)).unwrap();
    let retry_due = db.get(retried.id).unwrap().unwrap().due_at();
    assert_eq!(db.claim_due(retry_due, 10).unwrap().len(), 1);

    let ids = vec![first.id, retried.id, recurring.id];
    let settled = db
        .settle_returning(Vec::new(), ids.clone(), t(5_000), 0)
        .unwrap();
    assert!(settled.claimed.is_empty());
    let first_now = db.get(first.id).unwrap().unwrap();
    assert_eq!(first_now.status, ActionStatus::Pending);
    assert_eq!(first_now.attempt, 0);
    assert_eq!(first_now.started_at, None);
    assert_eq!(first_now.due_at(), t(1_000));
    let retried_now = db.get(retried.id).unwrap().unwrap();
    assert_eq!(retried_now.status, ActionStatus::Pending);
    assert_eq!(retried_now.attempt, 1, "the failed attempt still counts");
    assert_eq!(retried_now.attempts.len(), 1);
    assert!(retried_now.due_at() <= t(5_000));
    // The recurring occurrence's successor stays single: claiming again adds none.
    let recurring_now = db.get(recurring.id).unwrap().unwrap();
    assert_eq!(recurring_now.status, ActionStatus::Pending);
    let again = db.claim_due(t(5_000), 10).unwrap();
    assert_eq!(again.len(), 3, "all three are due at once: {again:?}");
    let occurrences = db
        .list(&ListFilter::default())
        .unwrap()
        .into_iter()
        .filter(|a| a.series == recurring.id)
        .count();
    assert_eq!(occurrences, 2, "the occurrence and one successor");
    // Only a Running action can be handed back.
    assert!(
        db.settle_returning(Vec::new(), vec![Uuid::now_v7()], t(6_000), 0)
            .is_err()
    );
    let counts: u64 = db.count_by_status().unwrap().iter().map(|(_, n)| n).sum();
    assert_eq!(counts, 4);
}

fn recovery_with_the_run_log_proof_hands_back_what_never_started(db: &dyn Store) {
    let ran = scheduled("ran", 1);
    let claimed_only = scheduled("claimed-only", 1);
    db.insert_many(&[ran.clone(), claimed_only.clone()])
        .unwrap();
    assert_eq!(db.claim_due(t(10), 10).unwrap().len(), 2);
    // The tool of `ran` started: marked first (PostgreSQL's proof), and logged (redb's).
    db.mark_started(&[ran.id], t(10)).unwrap();
    let started = std::collections::HashSet::from([ran.id]);
    let report = db.startup_recovery_knowing(t(30), Some(&started)).unwrap();
    assert_eq!(report.interrupted, vec![ran.id]);
    assert_eq!(report.returned, vec![claimed_only.id]);
    assert_eq!(
        db.get(claimed_only.id).unwrap().unwrap().status,
        ActionStatus::Pending
    );
    assert!(matches!(
        db.get(ran.id).unwrap().unwrap().status,
        ActionStatus::Failed { .. }
    ));
}

#[test]
fn recovery_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orchestrator.db");
    let action = scheduled("x", 1);
    {
        let db = ActionDb::open(&path).unwrap();
        db.insert(&action).unwrap();
        db.claim_due(t(5), 10).unwrap();
    }
    let db = ActionDb::open(&path).unwrap();
    assert_eq!(
        db.get(action.id).unwrap().unwrap().status,
        ActionStatus::Running
    );
    assert_eq!(
        db.startup_recovery(t(6)).unwrap().interrupted,
        vec![action.id]
    );
}

fn cancel_and_delete(db: &dyn Store) {
    let a = scheduled("a", 100);
    let b = scheduled("b", 100);
    db.insert_many(&[a.clone(), b.clone()]).unwrap();
    let cancelled = db.cancel(a.id, t(1)).unwrap();
    assert!(
        matches!(cancelled.status, ActionStatus::Canceled { ref reason } if reason.ends_with("before it ran"))
    );
    let err = db.cancel(a.id, t(2)).unwrap_err();
    assert!(err.to_string().contains("only a pending action"), "{err}");
    assert_eq!(
        db.claim_due(t(1_000), 10).unwrap().len(),
        1,
        "only b was still due"
    );
    assert!(db.delete(b.id).is_err(), "b is running");
    db.delete(a.id).unwrap();
    assert_eq!(db.get(a.id).unwrap(), None);
    assert_eq!(db.list(&ListFilter::default()).unwrap().len(), 1);
}

fn list_filters_by_status_and_tool_newest_first(db: &dyn Store) {
    let mut actions = Vec::new();
    for i in 0..6 {
        // a0 is due first, so it is the one claimed below.
        let mut a = scheduled(&format!("a{i}"), if i == 0 { 50 } else { 100 });
        a.updated_at = t(i);
        if i % 2 == 0 {
            a.tool_name = "other".into();
        }
        actions.push(a);
    }
    db.insert_many(&actions).unwrap();
    let first = db.claim_due(t(1_000), 1).unwrap();
    let all = db.list(&ListFilter::default()).unwrap();
    let labels: Vec<_> = all.iter().map(|a| a.label.as_str()).collect();
    // The claimed one was updated last (at 1000 ms), then the rest newest first.
    assert_eq!(first[0].label, "a0");
    assert_eq!(labels[0], "a0");
    assert_eq!(&labels[1..], ["a5", "a4", "a3", "a2", "a1"]);

    let pending = ListFilter {
        status: Some(StatusKind::Pending),
        tool: Some("echo".into()),
        limit: Some(2),
    };
    let got: Vec<_> = db
        .list(&pending)
        .unwrap()
        .into_iter()
        .map(|a| a.label)
        .collect();
    assert_eq!(got, ["a5", "a3"]);
    let counts = db.count_by_status().unwrap();
    assert_eq!(counts[0], (StatusKind::Pending, 5));
    assert_eq!(counts[1], (StatusKind::Running, 1));
}

/// A redb file holding only `meta.schema_version = version`.
fn file_with_schema_version(version: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orchestrator.db");
    let db = redb::Database::create(&path).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(META)
        .unwrap()
        .insert("schema_version", version)
        .unwrap();
    tx.commit().unwrap();
    (dir, path)
}

#[test]
fn a_database_from_a_newer_schema_is_refused() {
    let (_dir, path) = file_with_schema_version(99);
    let err = ActionDb::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { found: 99, .. }));
    assert!(err.to_string().contains("upgrade sdlc"), "{err}");
}

#[test]
fn a_database_from_an_older_schema_is_marked_with_this_one() {
    let (_dir, path) = file_with_schema_version(1);
    drop(ActionDb::open(&path).unwrap());
    let db = redb::Database::open(&path).unwrap();
    let tx = db.begin_read().unwrap();
    let meta = tx.open_table(META).unwrap();
    // So a build older than this one refuses the file instead of misreading split records.
    assert_eq!(
        meta.get("schema_version").unwrap().unwrap().value(),
        SCHEMA_VERSION
    );
}

/// A record this build wrote (`sealed`), as an older or newer `version` would have: the
/// version byte changed, and no checksum (records before `CHECKSUM_SINCE` had none; a newer
/// one is refused by its version before anything else is read).
fn as_version(sealed: Vec<u8>, version: u8) -> Vec<u8> {
    let mut bytes = sealed[..sealed.len() - 4].to_vec();
    bytes[0] = version;
    bytes
}

/// Stores `action` whole in `actions`, marked as written by schema `version` (no index).
fn store_record_of_version(tx: &WriteTransaction, action: &Action, version: u8) {
    let bytes = as_version(encode_json(action.id, action).unwrap(), version);
    tx.open_table(ACTIONS)
        .unwrap()
        .insert(action.id.as_u128(), bytes.as_slice())
        .unwrap();
}

#[test]
fn a_record_from_a_newer_schema_is_refused_not_misread() {
    let (_dir, db) = open();
    let action = scheduled("x", 1);
    db.insert(&action).unwrap();
    {
        let tx = db.begin_write().unwrap();
        store_record_of_version(&tx, &action, SCHEMA_VERSION as u8 + 1);
        tx.commit().unwrap();
    }
    let newer = SCHEMA_VERSION + 1;
    assert!(matches!(
        db.get(action.id),
        Err(StoreError::NewerRecord { found, .. }) if found == newer
    ));
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let (dir, _db) = open();
    let err = ActionDb::open(&dir.path().join("orchestrator.db")).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyOpen { .. }), "{err}");
}

mod webhook_tests {
    use super::*;
    use crate::webhook::{Delivery, WebhookRoute};
    use std::collections::BTreeMap;

    fn route(path: &str) -> WebhookRoute {
        WebhookRoute {
            id: Uuid::new_v4(),
            path: path.into(),
            tool_name: "deploy".into(),
            input_template: r#"{"ref": {{payload.ref}}}"#.into(),
            secret: None,
            created_at: t(0),
        }
    }

    fn delivery(route: &WebhookRoute, delivery_id: Option<&str>, body: &str, at: i64) -> Delivery {
        Delivery {
            id: Uuid::new_v4(),
            route_id: route.id,
            route_path: route.path.clone(),
            tool_name: route.tool_name.clone(),
            input_template: route.input_template.clone(),
            headers: BTreeMap::new(),
            delivery_id: delivery_id.map(str::to_string),
            received_at: t(at),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn routes_have_unique_paths_and_go_by_id_or_path_on_redb() {
        let (_dir, db) = open();
        routes_have_unique_paths_and_go_by_id_or_path(&db);
    }

    #[test]
    fn routes_have_unique_paths_and_go_by_id_or_path_on_postgres() {
        routes_have_unique_paths_and_go_by_id_or_path(&open_pg());
    }

    fn routes_have_unique_paths_and_go_by_id_or_path(db: &dyn Store) {
        let deploy = route("deploy");
        db.insert_route(&deploy).unwrap();
        let err = db.insert_route(&route("deploy")).unwrap_err();
        assert!(matches!(err, StoreError::DuplicatePath(_)), "{err}");
        db.insert_route(&route("other")).unwrap();
        assert_eq!(db.routes().unwrap().len(), 2);
        assert_eq!(db.route_by_path("deploy").unwrap(), Some(deploy.clone()));
        assert_eq!(db.delete_route("/webhooks/deploy").unwrap().id, deploy.id);
        assert_eq!(db.route_by_path("deploy").unwrap(), None);
        let other = db.routes().unwrap().remove(0);
        db.delete_route(&other.id.to_string()).unwrap();
        assert!(matches!(
            db.delete_route("other"),
            Err(StoreError::RouteNotFound(_))
        ));
    }

    #[test]
    fn an_ingested_delivery_becomes_an_action_and_is_claimed_in_one_settle() {
        let (_dir, db) = open();
        let r = route("deploy");
        let d = delivery(&r, None, r#"{"ref":"main"}"#, 1_000);
        let ingested = db.ingest(std::slice::from_ref(&d), t(1_000)).unwrap();
        assert_eq!(
            ingested,
            vec![Ingested {
                id: d.id,
                duplicate: false
            }]
        );
        assert_eq!(db.inbox_len().unwrap(), 1);
        // Not dispatched yet, but seen as the pending action it will become.
        let waiting = db.get(d.id).unwrap().unwrap();
        assert_eq!(waiting.status, ActionStatus::Pending);
        assert_eq!(waiting.tool_input, json!({"ref": "main"}));

        let settled = db.settle(Vec::new(), t(1_001), 10).unwrap();
        assert_eq!(settled.dispatched, 1);
        assert_eq!(settled.claimed.len(), 1);
        assert_eq!(settled.claimed[0].id, d.id);
        assert_eq!(settled.claimed[0].tool_input, json!({"ref": "main"}));
        assert_eq!(db.inbox_len().unwrap(), 0);
        // Dispatched once: a second settle finds nothing.
        let again = db.settle(Vec::new(), t(1_002), 10).unwrap();
        assert_eq!((again.dispatched, again.claimed.len()), (0, 0));
    }

    #[test]
    fn deliveries_beyond_what_a_settle_can_claim_wait_in_the_inbox_seen_as_pending() {
        let (_dir, db) = open();
        let r = route("deploy");
        let deliveries: Vec<Delivery> = (0..5)
            .map(|i| {
                let mut d = delivery(&r, None, &format!(r#"{{"ref":"r{i}"}}"#), 1_000 + i);
                d.headers.insert("x-github-event".into(), "push".into());
                d
            })
            .collect();
        db.ingest(&deliveries, t(1_010)).unwrap();

        // Room for two: two are dispatched (and claimed), three wait.
        let settled = db.settle(Vec::new(), t(1_020), 2).unwrap();
        assert_eq!((settled.dispatched, settled.claimed.len()), (2, 2));
        assert!(settled.inbox_waiting);
        let claimed: Vec<Uuid> = settled.claimed.iter().map(|a| a.id).collect();
        assert_eq!(
            claimed,
            vec![deliveries[0].id, deliveries[1].id],
            "oldest first"
        );
        assert_eq!(db.inbox_len().unwrap(), 3);

        // A waiting delivery reads back whole, by id, as pending.
        let waiting = db.get(deliveries[4].id).unwrap().unwrap();
        assert_eq!(waiting.status, ActionStatus::Pending);
        assert_eq!(waiting.tool_input, json!({"ref": "r4"}));
        assert_eq!(waiting.created_at, t(1_004));
        let ActionTrigger::Webhook {
            raw_payload,
            headers,
            ..
        } = &waiting.trigger
        else {
            panic!("a webhook action: {waiting:?}");
        };
        assert_eq!(raw_payload, r#"{"ref":"r4"}"#);
        assert_eq!(
            headers.get("x-github-event").map(String::as_str),
            Some("push")
        );
        assert_eq!(db.series_head(deliveries[4].id).unwrap(), Some(waiting));

        // Lists and counts see them too, newest first.
        let pending = db
            .list(&ListFilter {
                status: Some(StatusKind::Pending),
                ..ListFilter::default()
            })
            .unwrap();
        let ids: Vec<Uuid> = pending.iter().map(|a| a.id).collect();
        assert_eq!(
            ids,
            vec![deliveries[4].id, deliveries[3].id, deliveries[2].id]
        );
        assert_eq!(db.list(&ListFilter::default()).unwrap().len(), 5);
        let limited = db
            .list(&ListFilter {
                limit: Some(1),
                ..ListFilter::default()
            })
            .unwrap();
        assert_eq!(limited.len(), 1);
        let other_tool = db
            .list(&ListFilter {
                tool: Some("other".into()),
                ..ListFilter::default()
            })
            .unwrap();
        assert!(other_tool.is_empty());
        let counts: BTreeMap<StatusKind, u64> = db.count_by_status().unwrap().into_iter().collect();
        assert_eq!(counts[&StatusKind::Pending], 3);
        assert_eq!(counts[&StatusKind::Running], 2);

        // More room: the rest go, each once.
        let settled = db.settle(Vec::new(), t(1_030), 10).unwrap();
        assert_eq!((settled.dispatched, settled.claimed.len()), (3, 3));
        assert!(!settled.inbox_waiting);
        assert_eq!(db.inbox_len().unwrap(), 0);
        assert_eq!(
            db.get(deliveries[4].id).unwrap().unwrap().status,
            ActionStatus::Running
        );
    }

    #[test]
    fn a_delivery_waiting_in_the_inbox_can_be_cancelled_paused_or_deleted_and_never_runs() {
        let (_dir, db) = open();
        let r = route("deploy");
        let [cancelled, paused, deleted] =
            [0, 1, 2].map(|i| delivery(&r, None, &format!(r#"{{"ref":"r{i}"}}"#), 1_000 + i));
        db.ingest(
            &[cancelled.clone(), paused.clone(), deleted.clone()],
            t(1_010),
        )
        .unwrap();

        let got = db.cancel(cancelled.id, t(1_020)).unwrap();
        assert!(
            matches!(&got.status, ActionStatus::Canceled { reason } if reason.ends_with("before it ran")),
            "{got:?}"
        );
        assert_eq!(db.get(cancelled.id).unwrap(), Some(got));
        let got = db.pause(paused.id, None, t(1_020)).unwrap();
        assert_eq!(got.status.kind(), StatusKind::Paused);
        let got = db.delete(deleted.id).unwrap();
        assert_eq!(got.tool_input, json!({"ref": "r2"}));
        assert_eq!(db.get(deleted.id).unwrap(), None);
        assert_eq!(db.inbox_len().unwrap(), 0);

        let settled = db.settle(Vec::new(), t(1_030), 10).unwrap();
        assert_eq!((settled.dispatched, settled.claimed.len()), (0, 0));
        assert_eq!(
            db.resume(paused.id, t(1_040)).unwrap().status,
            ActionStatus::Pending
        );
        let settled = db.settle(Vec::new(), t(1_050), 10).unwrap();
        let claimed: Vec<Uuid> = settled.claimed.iter().map(|a| a.id).collect();
        assert_eq!(claimed, vec![paused.id]);
    }

    /// The action a delivery becomes, with headers, as the engine would store it.
    fn webhook_action(body: &str) -> Action {
        let r = route("deploy");
        let mut d = delivery(&r, Some("d-1"), body, 1_000);
        d.headers.insert("x-github-event".into(), "push".into());
        crate::webhook::delivery_action(&d, t(1_000))
    }

    fn stored_record(db: &ActionDb, id: Uuid) -> (Vec<u8>, Option<Vec<u8>>) {
        let tx = db.db.begin_read().unwrap();
        let record = tx.open_table(ACTIONS).unwrap();
        let record = record.get(id.as_u128()).unwrap().unwrap().value().to_vec();
        let bodies = tx.open_table(ACTION_BODIES).unwrap();
        let body = bodies
            .get(id.as_u128())
            .unwrap()
            .map(|b| b.value().to_vec());
        (record, body)
    }

    #[test]
    fn a_webhook_actions_body_is_stored_once_apart_and_read_back_whole() {
        let (_dir, db) = open();
        let payload = format!(r#"{{"ref":"main","pad":"{}"}}"#, r#"\"q\""#.repeat(1_000));
        let action = webhook_action(&payload);
        assert_eq!(action.tool_input, json!({"ref": "main"}));
        db.insert(&action).unwrap();
        let (record, body) = stored_record(&db, action.id);
        let body = body.expect("the body is stored apart");
        assert!(
            record.len() < 1_000,
            "the record holds no payload: {} bytes",
            record.len()
        );
        // Repetitive JSON is stored compressed.
        assert!(
            body.len() < payload.len() / 4,
            "{} bytes stored for {}",
            body.len(),
            payload.len()
        );
        assert_eq!(db.get(action.id).unwrap().unwrap(), action);

        // Claimed and finished: the record changes, the body stays as it was.
        let claimed = db.claim_due(t(2_000), 10).unwrap();
        assert_eq!(
            claimed,
            vec![Action {
                status: ActionStatus::Running,
                ..claimed[0].clone()
            }]
        );
        assert_eq!(claimed[0].tool_input, action.tool_input);
        db.complete(action.id, ok(), t(3_000)).unwrap();
        let (_, body_after) = stored_record(&db, action.id);
        assert_eq!(body_after.as_deref(), Some(body.as_slice()));
        let done = db.get(action.id).unwrap().unwrap();
        assert_eq!(done.status, ok());
        assert_eq!(done.trigger, action.trigger);
        let listed = db.list(&ListFilter::default()).unwrap();
        assert_eq!(listed[0].trigger, action.trigger);

        // Deleting the action deletes its body.
        db.delete(action.id).unwrap();
        let tx = db.db.begin_read().unwrap();
        assert!(tx.open_table(ACTION_BODIES).unwrap().is_empty().unwrap());
    }

    #[test]
    fn a_version_1_webhook_record_still_reads_and_moves_its_body_out_when_rewritten() {
        let (_dir, db) = open();
        let action = webhook_action(r#"{"ref":"main"}"#);
        {
            let tx = db.begin_write().unwrap();
            store_record_of_version(&tx, &action, 1);
            tx.open_table(DUE)
                .unwrap()
                .insert(due_key(action.due_at(), action.id), ())
                .unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(db.get(action.id).unwrap().unwrap(), action);
        assert_eq!(
            db.claim_due(t(2_000), 10).unwrap()[0].tool_input,
            action.tool_input
        );
        let (record, body) = stored_record(&db, action.id);
        assert_eq!(record[0], SCHEMA_VERSION as u8);
        assert!(body.is_some(), "the rewrite stored the body apart");
        assert_eq!(db.get(action.id).unwrap().unwrap().trigger, action.trigger);
    }

    /// Overwrites the stored body of `id`.
    fn put_raw_body(db: &ActionDb, id: Uuid, bytes: &[u8]) {
        let tx = db.begin_write().unwrap();
        tx.open_table(ACTION_BODIES)
            .unwrap()
            .insert(id.as_u128(), bytes)
            .unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn a_body_that_does_not_compress_is_stored_as_received() {
        let (_dir, db) = open();
        // Random hex: LZ4 finds nothing to repeat, so compressing would only add bytes.
        let noise: String = (0..40)
            .map(|_| Uuid::new_v4().simple().to_string())
            .collect();
        let payload = format!(r#"{{"sig":"{noise}"}}"#);
        let action = webhook_action(&payload);
        db.insert(&action).unwrap();
        let (_, body) = stored_record(&db, action.id);
        let body = body.unwrap();
        assert!(body.windows(payload.len()).any(|w| w == payload.as_bytes()));
        assert_eq!(db.get(action.id).unwrap().unwrap(), action);
    }

    #[test]
    fn bodies_that_compress_as_far_as_lz4_goes_read_back() {
        // One repeated byte is LZ4's best case (~250:1): the length check on reading must
        // not take it for damage, up to the largest body the daemon accepts by default.
        let (_dir, db) = open();
        for size in [600, 4_096, 100_000, 1_048_576] {
            let action = webhook_action(&format!(r#"{{"pad":"{}"}}"#, "x".repeat(size - 10)));
            db.insert(&action).unwrap();
            let (_, body) = stored_record(&db, action.id);
            assert!(body.unwrap().len() < size / 10 + 200, "{size} compressed");
            assert_eq!(db.get(action.id).unwrap().unwrap(), action, "{size}");
        }
    }

    #[test]
    fn a_body_stored_before_compression_still_reads() {
        let (_dir, db) = open();
        let payload = format!(r#"{{"ref":"main","pad":"{}"}}"#, "x".repeat(2_000));
        let action = webhook_action(&payload);
        db.insert(&action).unwrap();
        // The version-3 form: no codec byte, the content as is.
        let meta = serde_json::to_vec(&json!({
            "tool_input": action.tool_input,
            "headers": {"x-github-event": "push"},
        }))
        .unwrap();
        let old_form = as_version(record::frame(&meta, payload.as_bytes()), 3);
        put_raw_body(&db, action.id, &old_form);
        assert_eq!(db.get(action.id).unwrap().unwrap(), action);
    }

    #[test]
    fn a_damaged_compressed_body_is_an_error_naming_the_body() {
        let (_dir, db) = open();
        let action = webhook_action(&format!(r#"{{"pad":"{}"}}"#, "x".repeat(2_000)));
        db.insert(&action).unwrap();
        let (_, body) = stored_record(&db, action.id);
        let body = body.unwrap();
        assert!(body.len() < 500, "stored compressed: {} bytes", body.len());
        let mut unknown_codec = body.clone();
        unknown_codec[1] = 9;
        let mut huge_length = body.clone();
        huge_length[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut cut = body.clone();
        cut.truncate(body.len() / 2);
        for damaged in [unknown_codec, huge_length, cut] {
            put_raw_body(&db, action.id, &damaged);
            let err = db.get(action.id).unwrap_err().to_string();
            assert!(err.contains("action body"), "{err}");
        }
    }

    #[test]
    fn a_missing_body_is_reported_not_read_as_empty() {
        let (_dir, db) = open();
        let action = webhook_action("{}");
        db.insert(&action).unwrap();
        {
            let tx = db.begin_write().unwrap();
            tx.open_table(ACTION_BODIES)
                .unwrap()
                .remove(action.id.as_u128())
                .unwrap();
            tx.commit().unwrap();
        }
        let err = db.get(action.id).unwrap_err();
        assert!(err.to_string().contains("action_bodies"), "{err}");
    }

    fn inbox_entries(db: &ActionDb) -> Vec<Vec<u8>> {
        let tx = db.db.begin_read().unwrap();
        let inbox = tx.open_table(webhooks::INBOX).unwrap();
        inbox
            .iter()
            .unwrap()
            .map(|entry| entry.unwrap().1.value().to_vec())
            .collect()
    }

    #[test]
    fn an_acknowledged_body_is_stored_once_where_the_action_reads_it() {
        let (_dir, db) = open();
        let r = route("deploy");
        let payload = format!(r#"{{"ref":"main","pad":"{}"}}"#, "x".repeat(4_000));
        let mut d = delivery(&r, Some("d-1"), &payload, 1_000);
        d.headers.insert("x-github-event".into(), "push".into());
        db.ingest(std::slice::from_ref(&d), t(1_000)).unwrap();

        // Acknowledged: the body is already in `action_bodies`; the inbox holds only meta.
        let entries = inbox_entries(&db);
        assert_eq!(entries.len(), 1);
        assert!(
            entries[0].len() < 1_000,
            "the inbox entry holds no body: {} bytes",
            entries[0].len()
        );
        let body_at_ingest = {
            let tx = db.db.begin_read().unwrap();
            let bodies = tx.open_table(ACTION_BODIES).unwrap();
            bodies
                .get(d.id.as_u128())
                .unwrap()
                .unwrap()
                .value()
                .to_vec()
        };
        assert!(
            body_at_ingest.len() < payload.len() / 4,
            "stored compressed: {} bytes",
            body_at_ingest.len()
        );

        // Dispatched: the action reads back whole, and its body was not written again.
        let settled = db.settle(Vec::new(), t(1_001), 10).unwrap();
        assert_eq!(settled.dispatched, 1);
        assert_eq!(settled.claimed[0].tool_input, json!({"ref": "main"}));
        let (record, body) = stored_record(&db, d.id);
        assert!(record.len() < 1_000, "{} bytes", record.len());
        assert_eq!(body.as_deref(), Some(body_at_ingest.as_slice()));
        let mut expected = crate::webhook::delivery_action(&d, t(1_001));
        expected.status = ActionStatus::Running;
        let action = db.get(d.id).unwrap().unwrap();
        assert_eq!(action.trigger, expected.trigger);
        assert_eq!(action.tool_input, expected.tool_input);
        assert_eq!(action.status, expected.status);
    }

    #[test]
    fn a_body_that_is_not_utf8_is_kept_byte_for_byte() {
        let (_dir, db) = open();
        let r = route("deploy");
        let mut d = delivery(&r, None, "", 1_000);
        d.body = b"{\"ref\":\"ma\xffin\"}".to_vec();
        db.ingest(std::slice::from_ref(&d), t(1_000)).unwrap();
        assert_eq!(db.settle(Vec::new(), t(1_001), 10).unwrap().dispatched, 1);
        // The template reads the body as received: not JSON, so the action fails, saying so;
        // the stored payload keeps what could be read.
        let action = db.get(d.id).unwrap().unwrap();
        assert!(
            matches!(action.status, ActionStatus::Failed { ref reason } if reason.contains("not JSON")),
            "{:?}",
            action.status
        );
        let ActionTrigger::Webhook {
            ref raw_payload,
            ref raw_payload_hex,
            ..
        } = action.trigger
        else {
            panic!("{:?}", action.trigger)
        };
        assert_eq!(raw_payload, "{\"ref\":\"ma\u{fffd}in\"}");
        // The exact bytes are kept, and read back.
        assert_eq!(
            hex::decode(raw_payload_hex.as_deref().expect("the bytes are kept")).unwrap(),
            d.body
        );
    }

    #[test]
    fn an_inbox_entry_from_schema_2_still_dispatches_with_its_body() {
        let (_dir, db) = open();
        let r = route("deploy");
        let payload = r#"{"ref":"main"}"#;
        let mut d = delivery(&r, None, payload, 1_000);
        d.headers.insert("x-github-event".into(), "push".into());
        {
            // What a schema-2 build wrote: the meta, then the body as received.
            let meta = serde_json::to_vec(&json!({
                "id": d.id, "route_id": d.route_id, "route_path": d.route_path,
                "tool_name": d.tool_name, "input_template": d.input_template,
                "headers": d.headers, "delivery_id": null, "received_at": d.received_at,
            }))
            .unwrap();
            let entry = as_version(record::frame(&meta, payload.as_bytes()), 2);
            let tx = db.begin_write().unwrap();
            tx.open_table(webhooks::INBOX)
                .unwrap()
                .insert(due_key(d.received_at, d.id), entry.as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let settled = db.settle(Vec::new(), t(1_001), 10).unwrap();
        assert_eq!(settled.dispatched, 1);
        assert_eq!(settled.claimed[0].tool_input, json!({"ref": "main"}));
        let action = db.get(d.id).unwrap().unwrap();
        assert_eq!(
            action.trigger,
            crate::webhook::delivery_action(&d, t(1_001)).trigger
        );
        assert!(stored_record(&db, d.id).1.is_some(), "body stored apart");
    }

    #[test]
    fn the_inbox_survives_a_reopen_and_dispatches_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.db");
        let r = route("deploy");
        let d = delivery(&r, None, "{}", 5);
        {
            let db = ActionDb::open(&path).unwrap();
            db.ingest(std::slice::from_ref(&d), t(5)).unwrap();
        }
        let db = ActionDb::open(&path).unwrap();
        assert_eq!(db.settle(Vec::new(), t(6), 10).unwrap().claimed.len(), 1);
        drop(db);
        let db = ActionDb::open(&path).unwrap();
        assert_eq!(db.settle(Vec::new(), t(7), 10).unwrap().dispatched, 0);
        assert_eq!(db.list(&ListFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn a_repeated_delivery_id_answers_the_first_id_for_a_day() {
        let (_dir, db) = open();
        let r = route("deploy");
        let other_route = route("other");
        let first = delivery(&r, Some("abc"), "{}", 0);
        let repeat = delivery(&r, Some("abc"), "{}", 10);
        let elsewhere = delivery(&other_route, Some("abc"), "{}", 10);
        let got = db
            .ingest(&[first.clone(), repeat, elsewhere.clone()], t(10))
            .unwrap();
        assert_eq!(
            got[0],
            Ingested {
                id: first.id,
                duplicate: false
            }
        );
        assert_eq!(
            got[1],
            Ingested {
                id: first.id,
                duplicate: true
            }
        );
        assert_eq!(
            got[2],
            Ingested {
                id: elsewhere.id,
                duplicate: false
            }
        );
        assert_eq!(db.inbox_len().unwrap(), 2);

        // A day later the id is forgotten (pruned at dispatch) and a delivery runs again.
        let day = 24 * 3600 * 1000;
        db.settle(Vec::new(), t(day + 20), 10).unwrap();
        let late = delivery(&r, Some("abc"), "{}", day + 30);
        let got = db.ingest(std::slice::from_ref(&late), t(day + 30)).unwrap();
        assert_eq!(
            got[0],
            Ingested {
                id: late.id,
                duplicate: false
            }
        );
    }

    #[test]
    fn a_body_the_template_cannot_use_becomes_a_failed_action() {
        let (_dir, db) = open();
        let r = route("deploy");
        let d = delivery(&r, None, "<not json>", 0);
        db.ingest(std::slice::from_ref(&d), t(0)).unwrap();
        let settled = db.settle(Vec::new(), t(1), 10).unwrap();
        assert_eq!(settled.claimed.len(), 0);
        let action = db.get(d.id).unwrap().unwrap();
        assert!(
            matches!(action.status, ActionStatus::Failed { ref reason } if reason.contains("not JSON"))
        );
        assert!(
            matches!(action.trigger, ActionTrigger::Webhook { ref raw_payload, .. } if raw_payload == "<not json>")
        );
    }
}

fn a_clock_stepping_back_an_hour_neither_reruns_nor_double_fires(db: &dyn Store) {
    let once = scheduled("once", 10_000);
    let every = recurring(
        "every",
        10_000,
        1_000,
        policy(Overlap::Skip, CatchUp::Latest),
    );
    db.insert_many(&[once.clone(), every.clone()]).unwrap();
    let ran = db.claim_due(t(10_000), 10).unwrap();
    assert_eq!(ran.len(), 2);
    db.complete_many(ran.iter().map(|a| (a.id, ok())).collect(), t(10_100))
        .unwrap();
    // The wall clock jumps back an hour: nothing finished runs again, nothing fires twice.
    let hour_ago = t(10_100 - 3_600_000);
    assert!(db.claim_due(hour_ago, 10).unwrap().is_empty());
    // When time comes back to the next slot, the recurring action fires once, as scheduled.
    let next = db.claim_due(t(11_000), 10).unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].series, every.id);
    assert_eq!(next[0].scheduled_at(), t(11_000));
    assert_eq!(db.get(once.id).unwrap().unwrap().attempt, 1);
}

fn status_counts_stay_equal_to_what_is_stored(db: &dyn Store) {
    let by_listing = |db: &dyn Store| -> Vec<(StatusKind, u64)> {
        let all = db.list(&ListFilter::default()).unwrap();
        StatusKind::ALL
            .iter()
            .map(|k| {
                (
                    *k,
                    all.iter().filter(|a| a.status.kind() == *k).count() as u64,
                )
            })
            .collect()
    };
    let one_offs: Vec<_> = (0..6).map(|i| scheduled(&format!("o{i}"), i)).collect();
    let series = recurring("r", 0, 1_000, policy(Overlap::Skip, CatchUp::Latest));
    db.insert_many(&one_offs).unwrap();
    db.insert(&series).unwrap();
    let claimed = db.claim_due(t(10), 3).unwrap();
    db.complete(claimed[0].id, ok(), t(20)).unwrap();
    db.cancel(one_offs[5].id, t(30)).unwrap();
    db.pause(one_offs[4].id, None, t(40)).unwrap();
    db.delete(one_offs[4].id).unwrap();
    db.claim_due(t(2_000), 10).unwrap(); // the next occurrence is skipped: the first still runs
    db.prune_finished(t(25), 100).unwrap();
    assert_eq!(db.count_by_status().unwrap(), by_listing(db));
}

fn deleting_the_newest_occurrence_ends_its_series(db: &dyn Store) {
    let a = scheduled("a", 100);
    db.insert(&a).unwrap();
    db.delete(a.id).unwrap();
    assert_eq!(db.series_head(a.id).unwrap(), None);
    assert!(matches!(
        db.cancel(a.id, t(1)),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn an_edit_inside_a_stored_record_is_refused_not_misread() {
    let (_dir, db) = open();
    let action = scheduled("alpha", 1);
    db.insert(&action).unwrap();
    {
        // Still valid JSON, still the same length: only the checksum can tell.
        let tx = db.begin_write().unwrap();
        let mut table = tx.open_table(ACTIONS).unwrap();
        let mut bytes = table
            .get(action.id.as_u128())
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        let at = bytes.windows(5).position(|w| w == b"alpha").unwrap();
        bytes[at] = b'A';
        table.insert(action.id.as_u128(), bytes.as_slice()).unwrap();
        drop(table);
        tx.commit().unwrap();
    }
    match db.get(action.id) {
        Err(StoreError::Corrupt { detail, .. }) => assert!(detail.contains("checksum"), "{detail}"),
        other => panic!("an edited record was read: {other:?}"),
    }
}

fn an_edit_lands_only_on_the_action_it_was_made_from(db: &dyn Store) {
    let action = scheduled("svc", 10_000);
    db.insert(&action).unwrap();
    let seen = db.get(action.id).unwrap().unwrap();
    let mut renamed = seen.clone();
    renamed.label = "renamed".into();
    // Something else changed it first (here a pause): the edit is refused, nothing changes.
    db.pause(action.id, None, t(1_000)).unwrap();
    let err = db.replace_edited(&seen, &renamed, t(2_000)).unwrap_err();
    assert!(matches!(err, StoreError::ChangedMeanwhile { .. }), "{err}");
    let paused = db.get(action.id).unwrap().unwrap();
    assert_eq!(paused.label, "svc");
    // Made from what is stored now, it lands; a running action cannot be edited.
    let mut renamed = paused.clone();
    renamed.label = "renamed".into();
    db.replace_edited(&paused, &renamed, t(3_000)).unwrap();
    assert_eq!(db.get(action.id).unwrap().unwrap().label, "renamed");
    db.resume(action.id, t(4_000)).unwrap();
    let running = db.claim_due(t(10_000), 1).unwrap().remove(0);
    let err = db
        .replace_edited(&running, &running, t(11_000))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotEditable { .. }), "{err}");
}

fn the_change_feed_tells_what_each_commit_changed_once_committed(db: &dyn Store) {
    let quiet = scheduled("before anyone listens", 1_000);
    db.insert(&quiet).unwrap();
    let mut feed = db.changes();
    let a = scheduled("a", 1_000);
    let b = scheduled("b", 2_000);
    db.insert_many(&[a.clone(), b.clone()]).unwrap();
    let batch = feed.try_recv().expect("one batch for the commit");
    let ids: Vec<_> = batch.iter().map(|c| (c.id, c.status)).collect();
    assert_eq!(
        ids,
        vec![
            (a.id, Some(StatusKind::Pending)),
            (b.id, Some(StatusKind::Pending))
        ]
    );
    // A transaction that fails tells nothing.
    assert!(db.insert(&a).is_err());
    db.delete(b.id).unwrap();
    let batch = feed.try_recv().expect("the delete");
    assert_eq!(batch.len(), 1);
    assert_eq!((batch[0].id, batch[0].status), (b.id, None));
    assert!(feed.try_recv().is_err(), "nothing else");
}

#[test]
fn the_recurring_series_are_listed_by_their_heads() {
    let (dir, db) = open();
    let mut every = scheduled("every", 1_000);
    every.recurrence = Some(Recurrence::Every {
        interval_ms: 60_000,
    });
    let once = scheduled("once", 1_000);
    db.insert_many(&[every.clone(), once.clone()]).unwrap();
    let heads = |db: &ActionDb| -> Vec<String> {
        let mut labels: Vec<String> = db
            .recurring_heads()
            .unwrap()
            .into_iter()
            .map(|a| format!("{}:{}", a.label, a.id))
            .collect();
        labels.sort();
        labels
    };
    assert_eq!(heads(&db), vec![format!("every:{}", every.id)]);
    // A run makes the successor the head.
    let claimed = db.claim_due(t(2_000), 10).unwrap();
    assert_eq!(claimed.len(), 2);
    db.complete(every.id, ok(), t(3_000)).unwrap();
    let successor = db.series_head(every.id).unwrap().unwrap();
    assert_ne!(successor.id, every.id);
    assert_eq!(heads(&db), vec![format!("every:{}", successor.id)]);
    // An edit that drops the recurrence takes the series off the list, and back on.
    let mut edited = successor.clone();
    edited.recurrence = None;
    let stored = db.replace_edited(&successor, &edited, t(3_500)).unwrap();
    assert!(heads(&db).is_empty());
    let mut again = stored.clone();
    again.recurrence = Some(Recurrence::Every {
        interval_ms: 60_000,
    });
    db.replace_edited(&stored, &again, t(3_600)).unwrap();
    assert_eq!(heads(&db).len(), 1);
    // Deleting the head ends the series.
    db.delete(successor.id).unwrap();
    assert!(heads(&db).is_empty());
    // A file from before the index (schema 8) gets it at open.
    let mut other = scheduled("other", 9_000);
    other.recurrence = Some(Recurrence::Every { interval_ms: 1_000 });
    db.insert(&other).unwrap();
    {
        let tx = db.db.begin_write().unwrap();
        tx.delete_table(schedules::RECURRING).unwrap();
        tx.open_table(META)
            .unwrap()
            .insert("schema_version", 8)
            .unwrap();
        tx.commit().unwrap();
    }
    drop(db);
    let db = ActionDb::open(&dir.path().join("orchestrator.db")).unwrap();
    assert_eq!(heads(&db), vec![format!("other:{}", other.id)]);
}

fn a_runs_log_is_stored_with_its_outcome_per_attempt_and_pruned_with_it(db: &dyn Store) {
    use crate::logs::{LogLine, encode};
    use crate::store::stored_lines;
    let action = Action {
        retry: Some(crate::model::RetryPolicy {
            retries: 1,
            backoff_ms: 0,
            fixed: true,
        }),
        ..scheduled("logged", 0)
    };
    db.insert(&action).unwrap();
    let log = |text: &str| encode(&[LogLine::note(text)]).unwrap();
    let settle_with_log = |status: ActionStatus, text: &str, at: i64| {
        let work = SettleWork {
            outcomes: vec![(action.id, status)],
            logs: vec![(action.id, log(text).into())],
            ..SettleWork::default()
        };
        db.settle_work(work, t(at), t(at), 0).unwrap()
    };
    assert_eq!(db.claim_due(t(10), 1).unwrap().len(), 1);
    // A partial log of the running attempt, as a node writes it for followers elsewhere.
    db.put_partial_logs(&[(action.id, 1, log("so far"))])
        .unwrap();
    let failed = ActionStatus::Failed {
        reason: "no".into(),
    };
    settle_with_log(failed, "first", 20);
    // A partial write that comes after the outcome never replaces the final log.
    db.put_partial_logs(&[(action.id, 1, log("late"))]).unwrap();
    assert_eq!(db.claim_due(t(1_000), 1).unwrap().len(), 1, "the retry");
    settle_with_log(ok(), "second", 1_100);
    let text = |attempt| {
        let (n, lines) = stored_lines(db, action.id, attempt).unwrap().unwrap();
        (n, String::from_utf8(lines[0].text.clone()).unwrap())
    };
    assert_eq!(text(None), (2, "second".to_string()));
    assert_eq!(text(Some(1)), (1, "first".to_string()));
    assert_eq!(db.prune_finished(t(5_000), 10).unwrap(), 1);
    assert!(
        db.run_log(action.id, None).unwrap().is_none(),
        "gone with the action"
    );
}

fn a_run_reported_from_outside_is_never_claimed_nor_recovered_and_ends_by_its_report(
    db: &dyn Store,
) {
    use crate::external::{ExternalReport, ExternalStart, check, start_action};
    let start = |status: Option<&str>| ExternalStart {
        task: "seo.validate".into(),
        run_id: Some("nightly-2026-12-01".into()),
        status: status.map(str::to_string),
        ..Default::default()
    };
    let running = start_action(&start(None), Some("ci"), t(1_000)).unwrap();
    let queued = start_action(&start(Some("queued")), None, t(1_000)).unwrap();
    db.insert_many(&[running.clone(), queued.clone()]).unwrap();
    // The engine never takes either, and a restart leaves the running one running.
    assert!(db.claim_due(t(100_000), 10).unwrap().is_empty());
    db.startup_recovery_knowing(t(100_000), None).unwrap();
    db.return_unknown_running(&std::collections::HashSet::new(), t(100_000))
        .unwrap();
    assert_eq!(
        db.get(running.id).unwrap().unwrap().status,
        ActionStatus::Running
    );
    assert_eq!(
        db.get(queued.id).unwrap().unwrap().status,
        ActionStatus::Pending
    );
    let report = |status: &str| {
        check(&ExternalReport {
            status: status.into(),
            outputs_uri: Some("https://ci.example/7".into()),
            duration_ms: Some(4_000),
            ..Default::default()
        })
        .unwrap()
    };
    let log = crate::external::stored_log("line one\nline two\n", 1 << 20);
    let done = db
        .report(running.id, &report("succeeded"), log.as_ref(), t(200_000))
        .unwrap();
    let ActionStatus::Completed { result } = &done.status else {
        panic!("{:?}", done.status);
    };
    assert_eq!(result["outputs_uri"], "https://ci.example/7");
    assert_eq!(done.started_at, Some(t(196_000)));
    assert_eq!(done.finished_at, Some(t(200_000)));
    assert_eq!(done.attempts.len(), 1);
    assert!(done.log_excerpt.as_deref().unwrap().contains("line two"));
    assert!(db.run_log(running.id, None).unwrap().is_some());
    // A finished run takes no more reports; a run of the daemon's own takes none.
    let again = db.report(running.id, &report("failed"), None, t(200_001));
    assert!(
        matches!(again, Err(StoreError::NotReportable { .. })),
        "{again:?}"
    );
    let own = scheduled("own", 0);
    db.insert(&own).unwrap();
    let refused = db.report(own.id, &report("completed"), None, t(200_002));
    assert!(
        matches!(refused, Err(StoreError::NotReportable { .. })),
        "{refused:?}"
    );
    // A queued run starts, then waits for a person; the approval ends it.
    let started = db
        .report(queued.id, &report("running"), None, t(300_000))
        .unwrap();
    assert_eq!(started.status, ActionStatus::Running);
    let waiting = db
        .report(queued.id, &report("awaiting_approval"), None, t(301_000))
        .unwrap();
    assert_eq!(waiting.status.kind(), StatusKind::AwaitingApproval);
    let approved = db
        .approve(
            queued.id,
            &crate::model::Decider::named("alice"),
            None,
            t(302_000),
        )
        .unwrap();
    assert_eq!(approved.status.kind(), StatusKind::Completed);
    // Canceling a running one ends it at once: nothing of ours runs it.
    let other = start_action(&start(None), None, t(400_000)).unwrap();
    db.insert(&other).unwrap();
    let canceled = db.cancel(other.id, t(400_500)).unwrap();
    assert_eq!(canceled.status.kind(), StatusKind::Canceled);

    // A failure keeps the link it was reported with (where to read why); a queued report
    // keeps the log it carries.
    let broken = start_action(&start(None), None, t(500_000)).unwrap();
    let waits = start_action(&start(Some("queued")), None, t(500_000)).unwrap();
    db.insert_many(&[broken.clone(), waits.clone()]).unwrap();
    let failed = db
        .report(broken.id, &report("failed"), None, t(501_000))
        .unwrap();
    assert_eq!(failed.status.kind(), StatusKind::Failed);
    let view = crate::view::ActionView::from(&db.get(broken.id).unwrap().unwrap());
    assert_eq!(view.outputs_uri.as_deref(), Some("https://ci.example/7"));
    let queued_log = crate::external::stored_log("waiting for a runner\n", 1 << 20);
    let still = db
        .report(waits.id, &report("queued"), queued_log.as_ref(), t(502_000))
        .unwrap();
    assert_eq!(still.status, ActionStatus::Pending);
    assert!(
        still
            .log_excerpt
            .as_deref()
            .unwrap()
            .contains("waiting for a runner")
    );
    let (_, lines) = crate::store::stored_lines(db, waits.id, None)
        .unwrap()
        .expect("the queued log is kept");
    assert!(
        lines
            .iter()
            .any(|l| String::from_utf8_lossy(&l.text).contains("waiting for a runner")),
        "{lines:?}"
    );
}

/// Runs each scenario on a fresh redb file and on a fresh PostgreSQL database: the store
/// behaves the same on both (the conformance suite).
/// The run groups a scan of every stored action sums to, newest first: what the maintained
/// summaries must equal after any change.
fn groups_by_scan(db: &dyn Store) -> Vec<crate::run_group::RunGroup> {
    use crate::run_group::{Member, RunGroup, Summary};
    let mut sums: std::collections::BTreeMap<String, Summary> = Default::default();
    let all = db.list(&ListFilter::default()).unwrap();
    for action in &all {
        if let Some((run, member)) = Member::of(action) {
            let sum = sums.remove(run);
            sums.insert(run.to_string(), Summary::with(sum, &member));
        }
    }
    let mut groups: Vec<RunGroup> = sums
        .into_iter()
        .map(|(run, s)| RunGroup::new(run, &s))
        .collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.position()));
    groups
}

fn every_group(db: &dyn Store) -> Vec<crate::run_group::RunGroup> {
    db.run_groups(&crate::run_group::GroupFilter::default(), None, 1_000)
        .unwrap()
        .items
}

fn run_groups_sum_their_runs_through_every_change_and_removal(db: &dyn Store) {
    use crate::run_group::{GroupCursor, GroupFilter, GroupState};
    let in_group = |label: &str, run: &str, slot: i64| {
        let mut a = scheduled(label, slot);
        a.run_id = Some(run.to_string());
        a
    };
    // ci-1 has runs due at 10, 20 and 30 s, ci-2 at 40 and 50 s; "lone" is in no group.
    let a1 = in_group("a1", "ci-1", 10_000);
    let a2 = in_group("a2", "ci-1", 20_000);
    let a3 = in_group("a3", "ci-1", 30_000);
    let b1 = in_group("b1", "ci-2", 40_000);
    let b2 = in_group("b2", "ci-2", 50_000);
    db.insert_many(&[a1.clone(), a2.clone(), a3.clone(), b1.clone(), b2.clone()])
        .unwrap();
    db.insert(&scheduled("lone", 5_000)).unwrap();
    let groups = every_group(db);
    assert_eq!(groups, groups_by_scan(db));
    let names: Vec<&str> = groups.iter().map(|g| g.run_id.as_str()).collect();
    assert_eq!(names, ["ci-2", "ci-1"], "newest first run first");
    let ci1 = &groups[1];
    assert_eq!((ci1.total, ci1.counts.pending), (3, 3));
    assert_eq!(ci1.state, GroupState::InProgress);
    assert_eq!(ci1.first_run_at, t(10_000));
    assert_eq!(ci1.first_started_at, None);

    // Two of ci-1 run (claimed at 25 s): one succeeds at 26 s, one fails at 27 s.
    let claimed = db.claim_due(t(25_000), 10).unwrap();
    assert_eq!(claimed.len(), 3, "lone, a1 and a2");
    assert_eq!(every_group(db), groups_by_scan(db));
    assert_eq!(every_group(db)[1].counts.running, 2);
    db.complete(a1.id, ok(), t(26_000)).unwrap();
    let failed = ActionStatus::Failed {
        reason: "exit 1".into(),
    };
    db.complete(a2.id, failed, t(27_000)).unwrap();
    let groups = every_group(db);
    assert_eq!(groups, groups_by_scan(db));
    let ci1 = &groups[1];
    assert_eq!(
        (ci1.counts.completed, ci1.counts.failed, ci1.counts.pending),
        (1, 1, 1)
    );
    assert_eq!(ci1.first_started_at, Some(t(25_000)));
    assert_eq!(ci1.last_ended_at, Some(t(27_000)));

    // Deleting the first run moves the group's first run time to the next one's.
    db.delete(a1.id).unwrap();
    let groups = every_group(db);
    assert_eq!(groups, groups_by_scan(db));
    assert_eq!(groups[1].total, 2);
    assert_eq!(groups[1].first_run_at, t(20_000));

    // The last of ci-1 is canceled: the group has ended, failed (a failure outweighs).
    db.cancel(a3.id, t(28_000)).unwrap();
    let groups = every_group(db);
    assert_eq!(groups, groups_by_scan(db));
    assert_eq!(groups[1].state, GroupState::Failed);

    // Pages of one group each, by cursor; `since` and `until` select by first run time.
    let first = db.run_groups(&GroupFilter::default(), None, 1).unwrap();
    assert_eq!(first.items[0].run_id, "ci-2");
    let cursor = first.next.expect("ci-1 follows");
    let cursor = GroupCursor::parse(&cursor.encode()).unwrap();
    let second = db
        .run_groups(&GroupFilter::default(), Some(cursor), 1)
        .unwrap();
    assert_eq!(second.items[0].run_id, "ci-1");
    assert!(second.next.is_none());
    let recent = GroupFilter {
        since: Some(t(35_000)),
        ..GroupFilter::default()
    };
    let found = db.run_groups(&recent, None, 10).unwrap().items;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].run_id, "ci-2");
    let older = GroupFilter {
        until: Some(t(39_999)),
        ..GroupFilter::default()
    };
    let found = db.run_groups(&older, None, 10).unwrap().items;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].run_id, "ci-1");

    // ci-2 runs and ends, then retention prunes every finished run: ci-1 and ci-2 are gone.
    let claimed = db.claim_due(t(60_000), 10).unwrap();
    db.complete_many(claimed.iter().map(|a| (a.id, ok())).collect(), t(61_000))
        .unwrap();
    assert_eq!(every_group(db), groups_by_scan(db));
    assert_eq!(every_group(db)[0].state, GroupState::Completed);
    db.prune_finished(t(100_000), 100).unwrap();
    assert_eq!(every_group(db), groups_by_scan(db));
    assert!(every_group(db).is_empty(), "{:?}", every_group(db));
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $( #[test] fn $name() { let (_dir, db) = super::open(); super::$name(&db); } )*
        }
        mod on_postgres {
            $( #[test] fn $name() { super::$name(&super::open_pg()); } )*
        }
    };
}

pub(super) fn open_pg() -> crate::store::pg::PgStore {
    let url = sdlc_pgtest::Cluster::shared()
        .expect("the PostgreSQL tests need a server")
        .fresh_database()
        .unwrap();
    crate::store::pg::PgStore::connect(&url, 4).unwrap()
}

on_both!(
    status_counts_stay_equal_to_what_is_stored,
    retention_prunes_old_finished_actions_only,
    claim_due_takes_only_pending_actions_that_are_due,
    an_action_claimed_before_its_due_time_is_claimed_as_of_it,
    claim_due_respects_the_limit_and_leaves_the_rest_pending,
    finished_history_does_not_stay_in_the_due_range,
    get_finds_by_id_and_misses_unknown_ids,
    set_status_refuses_impossible_transitions,
    complete_refuses_an_action_that_is_not_running,
    claiming_a_recurring_occurrence_stores_the_next_in_the_same_commit,
    overlap_skip_records_a_skipped_occurrence_and_moves_on,
    overlap_queue_one_holds_one_occurrence_until_the_run_ends,
    overlap_allow_runs_both,
    a_failed_run_with_retries_left_returns_to_pending_and_records_each_attempt,
    an_interrupted_run_is_retried_when_its_policy_allows,
    pause_resume_and_run_now,
    startup_recovery_fails_interrupted_runs_and_keeps_everything_else,
    a_claim_handed_back_is_pending_due_at_once_and_not_an_attempt,
    recovery_with_the_run_log_proof_hands_back_what_never_started,
    cancel_and_delete,
    list_filters_by_status_and_tool_newest_first,
    a_clock_stepping_back_an_hour_neither_reruns_nor_double_fires,
    deleting_the_newest_occurrence_ends_its_series,
    an_edit_lands_only_on_the_action_it_was_made_from,
    the_change_feed_tells_what_each_commit_changed_once_committed,
    a_runs_log_is_stored_with_its_outcome_per_attempt_and_pruned_with_it,
    a_run_reported_from_outside_is_never_claimed_nor_recovered_and_ends_by_its_report,
    run_groups_sum_their_runs_through_every_change_and_removal,
);
