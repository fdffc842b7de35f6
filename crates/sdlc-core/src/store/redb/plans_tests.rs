//! Plan runs through the store: the decisions committed with the outcomes that cause them.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::model::{Action, ActionStatus};
use crate::plan::decide::RunStatus;
use crate::plan::{StepStatus, run::new_run, spec::parse};
use crate::store::{ActionDb, Store};
use crate::store::{parse_run_cursor, run_cursor};
use chrono::{DateTime, Utc};

fn t(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

fn start(db: &dyn Store, text: &str) -> PlanRun {
    let graph = Arc::new(parse(text, "test").unwrap());
    let new = new_run(graph, BTreeMap::new(), "test", t(1_000)).unwrap();
    db.start_run(&new, t(1_000)).unwrap()
}

fn statuses(db: &dyn Store, run: Uuid) -> Vec<(String, StepStatus)> {
    db.get_run(run)
        .unwrap()
        .unwrap()
        .steps
        .into_iter()
        .map(|s| (s.step_id, s.status))
        .collect()
}

fn claim_one(db: &dyn Store, now: i64) -> Action {
    let mut claimed = db.claim_due(t(now), 10).unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    claimed.pop().unwrap()
}

fn steps_run_in_order_and_an_abort_cancels_what_has_not_started(db: &dyn Store) {
    let run = start(
        db,
        r#"{"plan_id": "p", "globals": {"max_concurrency": 1}, "steps": [
            {"id": "a", "command": "true"},
            {"id": "b", "command": "echo", "args": ["${steps.a.result.v}"], "depends_on": ["a"]},
            {"id": "c", "command": "true", "depends_on": ["a"]},
            {"id": "d", "command": "true", "depends_on": ["c"]}]}"#,
    );
    use StepStatus::*;
    let a = claim_one(db, 2_000);
    assert_eq!(a.step.as_ref().unwrap().step_id, "a");
    assert!(
        db.claim_due(t(2_000), 10).unwrap().is_empty(),
        "b waits for a"
    );
    db.complete(
        a.id,
        ActionStatus::Completed {
            result: json!({"v": 5}),
        },
        t(3_000),
    )
    .unwrap();
    assert_eq!(
        statuses(db, run.run_id),
        vec![
            ("a".into(), Succeeded),
            ("b".into(), Pending),
            ("c".into(), Pending),
            ("d".into(), Waiting)
        ],
        "up to twice max_concurrency are stored as actions; claim_one (one claimed) holds c back"
    );
    let b = claim_one(db, 3_000);
    assert_eq!(b.command.as_ref().unwrap().args, vec!["5".to_string()]);
    db.complete(
        b.id,
        ActionStatus::Failed {
            reason: "boom".into(),
        },
        t(4_000),
    )
    .unwrap();
    let detail = db.get_run(run.run_id).unwrap().unwrap();
    assert_eq!(detail.run.status, RunStatus::Failed);
    assert_eq!(
        statuses(db, run.run_id),
        vec![
            ("a".into(), Succeeded),
            ("b".into(), Failed),
            ("c".into(), Canceled),
            ("d".into(), Canceled)
        ]
    );
    let events: Vec<String> = db
        .run_events(run.run_id, None, 100)
        .unwrap()
        .into_iter()
        .map(|e| {
            format!(
                "{}{}",
                e.event,
                e.step_id.map(|s| format!(":{s}")).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            "run_started",
            "step_ready:a",
            "step_started:a",
            "step_succeeded:a",
            "step_ready:b",
            "step_ready:c",
            "step_started:b",
            "step_failed:b",
            "step_canceled:c",
            "step_canceled:d",
            "run_completed"
        ]
    );
    // Retry runs b, c and d again; a stays done.
    let retried = db.retry_run(run.run_id, None, t(5_000)).unwrap();
    assert_eq!(retried.steps, vec!["b", "c", "d"]);
    assert_eq!(retried.first_seq, 11, "after the first try's 11 events");
    let b = claim_one(db, 5_000);
    assert_eq!(b.step.as_ref().unwrap().step_id, "b");
    db.complete(
        b.id,
        ActionStatus::Completed { result: json!({}) },
        t(6_000),
    )
    .unwrap();
    let c = claim_one(db, 6_000);
    db.complete(
        c.id,
        ActionStatus::Completed { result: json!({}) },
        t(7_000),
    )
    .unwrap();
    let d = claim_one(db, 7_000);
    db.complete(
        d.id,
        ActionStatus::Completed { result: json!({}) },
        t(8_000),
    )
    .unwrap();
    assert_eq!(
        db.get_run(run.run_id).unwrap().unwrap().run.status,
        RunStatus::Succeeded
    );
}

fn skip_dependents_and_continue_and_cancel(db: &dyn Store) {
    let run = start(
        db,
        r#"{"plan_id": "p", "steps": [
            {"id": "a", "command": "true", "on_failure": "skip_dependents"},
            {"id": "b", "command": "true", "depends_on": ["a"]},
            {"id": "c", "command": "true", "depends_on": ["b"]},
            {"id": "lint", "command": "true", "critical": false, "on_failure": "continue"},
            {"id": "after_lint", "command": "true", "depends_on": ["lint"]},
            {"id": "slow", "command": "true"}]}"#,
    );
    let claimed = db.claim_due(t(2_000), 10).unwrap();
    assert_eq!(claimed.len(), 3);
    let id_of = |name: &str| {
        claimed
            .iter()
            .find(|a| a.step.as_ref().unwrap().step_id == name)
            .unwrap()
            .id
    };
    db.complete(
        id_of("a"),
        ActionStatus::Failed { reason: "x".into() },
        t(3_000),
    )
    .unwrap();
    db.complete(
        id_of("lint"),
        ActionStatus::Failed { reason: "y".into() },
        t(3_000),
    )
    .unwrap();
    use StepStatus::*;
    assert_eq!(
        statuses(db, run.run_id),
        vec![
            ("a".into(), Failed),
            ("b".into(), Skipped),
            ("c".into(), Skipped),
            ("lint".into(), Failed),
            ("after_lint".into(), Pending),
            ("slow".into(), Running)
        ]
    );
    db.cancel_run(run.run_id, t(4_000)).unwrap();
    let detail = db.get_run(run.run_id).unwrap().unwrap();
    assert_eq!(detail.run.status, RunStatus::Running, "slow still runs");
    assert_eq!(detail.steps[4].status, Canceled);
    db.complete(
        id_of("slow"),
        ActionStatus::Completed { result: json!({}) },
        t(5_000),
    )
    .unwrap();
    let detail = db.get_run(run.run_id).unwrap().unwrap();
    assert_eq!(detail.run.status, RunStatus::Canceled);
    assert_eq!(detail.run.counts.progress_percent(), 100);
    assert!(db.claim_due(t(6_000), 10).unwrap().is_empty());
}

fn runs_are_listed_newest_first_by_plan_and_status_with_a_cursor(db: &dyn Store) {
    let one =
        |id: &str| format!(r#"{{"plan_id": "{id}", "steps": [{{"id": "a", "command": "true"}}]}}"#);
    let mut started = Vec::new();
    for (i, plan) in ["p", "q", "p", "p"].iter().enumerate() {
        let graph = Arc::new(parse(&one(plan), "test").unwrap());
        let new = new_run(graph, BTreeMap::new(), "test", t(1_000 + i as i64)).unwrap();
        started.push(db.start_run(&new, t(1_000 + i as i64)).unwrap().run_id);
    }
    let list = |filter: RunFilter| -> Vec<Uuid> {
        db.list_runs(&filter)
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect()
    };
    assert_eq!(
        list(RunFilter::default()),
        vec![started[3], started[2], started[1], started[0]]
    );
    let p = |limit, before| RunFilter {
        plan: Some("p".into()),
        limit,
        before,
        ..RunFilter::default()
    };
    assert_eq!(list(p(Some(2), None)), vec![started[3], started[2]]);
    let run = db.get_run(started[2]).unwrap().unwrap().run;
    let cursor = parse_run_cursor(&run_cursor(&run)).unwrap();
    assert_eq!(list(p(None, Some(cursor))), vec![started[0]]);
    assert!(
        list(RunFilter {
            status: Some(RunStatus::Succeeded),
            ..RunFilter::default()
        })
        .is_empty()
    );
    assert_eq!(
        list(RunFilter {
            plan: Some("pq".into()),
            ..RunFilter::default()
        }),
        Vec::<Uuid>::new()
    );
}

#[test]
fn pruning_keeps_the_finished_steps_of_a_run_still_going() {
    let dir = tempfile::tempdir().unwrap();
    let db = ActionDb::open(&dir.path().join("o.db")).unwrap();
    let db = &db;
    let run = start(
        db,
        r#"{"plan_id": "p", "steps": [
            {"id": "a", "command": "true"},
            {"id": "b", "command": "echo", "args": ["${steps.a.result.v}"], "depends_on": ["a"]}]}"#,
    );
    let a = claim_one(db, 2_000);
    db.complete(
        a.id,
        ActionStatus::Completed {
            result: json!({"v": 1}),
        },
        t(3_000),
    )
    .unwrap();
    assert_eq!(
        db.prune_finished(t(10_000), 1_000).unwrap(),
        0,
        "a is kept while the run goes on"
    );
    let b = claim_one(db, 3_000);
    db.complete(
        b.id,
        ActionStatus::Completed { result: json!({}) },
        t(4_000),
    )
    .unwrap();
    assert_eq!(
        db.get_run(run.run_id).unwrap().unwrap().run.status,
        RunStatus::Succeeded
    );
    assert_eq!(
        db.prune_finished(t(10_000), 1_000).unwrap(),
        2,
        "the run ended: both go"
    );
}

/// Each scenario on a fresh redb file and on a fresh PostgreSQL database (the conformance
/// suite, as in `store::tests`).
mod on_redb {
    #[test]
    fn steps_run_in_order_and_an_abort_cancels_what_has_not_started() {
        let dir = tempfile::tempdir().unwrap();
        super::steps_run_in_order_and_an_abort_cancels_what_has_not_started(
            &crate::store::ActionDb::open(&dir.path().join("o.db")).unwrap(),
        );
    }
    #[test]
    fn skip_dependents_and_continue_and_cancel() {
        let dir = tempfile::tempdir().unwrap();
        super::skip_dependents_and_continue_and_cancel(
            &crate::store::ActionDb::open(&dir.path().join("o.db")).unwrap(),
        );
    }
    #[test]
    fn runs_are_listed_newest_first_by_plan_and_status_with_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        super::runs_are_listed_newest_first_by_plan_and_status_with_a_cursor(
            &crate::store::ActionDb::open(&dir.path().join("o.db")).unwrap(),
        );
    }
}

mod on_postgres {
    #[test]
    fn steps_run_in_order_and_an_abort_cancels_what_has_not_started() {
        super::steps_run_in_order_and_an_abort_cancels_what_has_not_started(
            &crate::store::redb::tests::open_pg(),
        );
    }
    #[test]
    fn skip_dependents_and_continue_and_cancel() {
        super::skip_dependents_and_continue_and_cancel(&crate::store::redb::tests::open_pg());
    }
    #[test]
    fn runs_are_listed_newest_first_by_plan_and_status_with_a_cursor() {
        super::runs_are_listed_newest_first_by_plan_and_status_with_a_cursor(
            &crate::store::redb::tests::open_pg(),
        );
    }
}
