//! Several nodes on one PostgreSQL database: claims never overlap, a node presumed dead has
//! its runs recovered by the others, and its late outcome is refused. (What one store does
//! alone is the conformance suite in `store::tests`, run on both backends.)

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Duration;
use serde_json::json;

use super::*;
use crate::model::ActionStatus;

fn fresh() -> String {
    sdlc_pgtest::Cluster::shared()
        .expect("the PostgreSQL tests need a server")
        .fresh_database()
        .unwrap()
}

fn node(url: &str, name: &str, lease_ms: u64, now: DateTime<Utc>) -> PgStore {
    let mut store = PgStore::connect(url, 4).unwrap();
    store.set_lease(std::time::Duration::from_millis(lease_ms));
    store.join(name, now).unwrap();
    store
}

fn due(label: &str, at: DateTime<Utc>) -> Action {
    Action::new(
        label,
        "echo",
        json!({}),
        ActionTrigger::Scheduled { next_tick_at: at },
        at,
    )
}

fn ok() -> ActionStatus {
    ActionStatus::Completed {
        result: json!({"ok": true}),
    }
}

#[test]
fn three_nodes_claiming_at_once_take_every_due_action_exactly_once() {
    let url = fresh();
    let now = Utc::now();
    let actions: Vec<Action> = (0..600)
        .map(|i| due(&format!("a{i}"), now - Duration::seconds(1)))
        .collect();
    let nodes: Vec<Arc<PgStore>> = ["a", "b", "c"]
        .iter()
        .map(|name| Arc::new(node(&url, name, 30_000, now)))
        .collect();
    nodes[0].insert_many(&actions).unwrap();
    let claimers: Vec<_> = nodes
        .iter()
        .map(|store| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let claimed = store.claim_due(now, 10).unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|a| a.id));
                }
            })
        })
        .collect();
    let per_node: Vec<Vec<Uuid>> = claimers.into_iter().map(|h| h.join().unwrap()).collect();
    let all: Vec<Uuid> = per_node.iter().flatten().copied().collect();
    let distinct: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(all.len(), 600, "claimed {} times in all", all.len());
    assert_eq!(distinct.len(), 600, "an action was claimed twice");
    assert_eq!(
        distinct,
        actions.iter().map(|a| a.id).collect::<HashSet<_>>()
    );
    // Each node finishes what it claimed, and nothing else.
    for (store, ids) in nodes.iter().zip(&per_node) {
        let outcomes = ids.iter().map(|id| (*id, ok())).collect();
        assert_eq!(
            store.settle(outcomes, now, 0).unwrap().finished.len(),
            ids.len()
        );
    }
    let counts = nodes[1].count_by_status().unwrap();
    assert!(counts.contains(&(StatusKind::Completed, 600)), "{counts:?}");
}

#[test]
fn a_node_that_stops_renewing_has_its_runs_recovered_and_its_late_outcome_refused() {
    let url = fresh();
    let now = Utc::now();
    let a = node(&url, "a", 1_000, now);
    let b = node(&url, "b", 60_000, now);
    let action = due("x", now);
    a.insert(&action).unwrap();
    assert_eq!(a.claim_due(now, 10).unwrap().len(), 1);
    assert_eq!(a.mark_started(&[action.id], now).unwrap(), vec![action.id]);

    // While a's lease holds, b leaves its run alone, even at b's own start.
    let soon = now + Duration::milliseconds(500);
    assert!(b.recover_expired(soon).unwrap().interrupted.is_empty());
    assert!(
        b.startup_recovery_knowing(soon, None)
            .unwrap()
            .interrupted
            .is_empty()
    );
    // A heartbeat moves the lease on: still a's at 1.2 s.
    assert!(a.heartbeat(soon).unwrap());
    let later = now + Duration::milliseconds(1_200);
    assert!(b.recover_expired(later).unwrap().interrupted.is_empty());

    // a goes quiet; past its lease b recovers the run as interrupted.
    let after = now + Duration::seconds(3);
    let report = b.recover_expired(after).unwrap();
    assert_eq!(report.interrupted, vec![action.id]);
    let stored = b.get(action.id).unwrap().unwrap();
    assert!(
        matches!(&stored.status, ActionStatus::Failed { reason } if reason == crate::model::INTERRUPTED_REASON),
        "{:?}",
        stored.status
    );

    // a comes back and reports its outcome: refused, and what b decided stands.
    let err = a.complete(action.id, ok(), after).unwrap_err();
    assert!(
        matches!(err, StoreError::ClaimLost { id } if id == action.id),
        "{err}"
    );
    assert!(
        err.to_string().contains("no longer this node's claim"),
        "{err}"
    );
    assert_eq!(b.get(action.id).unwrap().unwrap().status, stored.status);
}

#[test]
fn a_late_outcome_is_refused_even_when_the_action_runs_again_elsewhere() {
    let url = fresh();
    let now = Utc::now();
    let a = node(&url, "a", 1_000, now);
    let b = node(&url, "b", 60_000, now);
    let mut action = due("x", now);
    action.retry = Some(crate::model::RetryPolicy {
        retries: 3,
        backoff_ms: 1,
        fixed: true,
    });
    a.insert(&action).unwrap();
    a.claim_due(now, 10).unwrap();
    a.mark_started(&[action.id], now).unwrap();
    let after = now + Duration::seconds(3);
    let report = b.recover_expired(after).unwrap();
    assert_eq!(report.retried, 1, "its policy retries it");
    let again = b.claim_due(after + Duration::seconds(1), 10).unwrap();
    assert_eq!(again.len(), 1, "b runs it again");
    assert_eq!(again[0].attempt, 2);

    // a's outcome for its own attempt must not end b's.
    assert!(matches!(
        a.complete(action.id, ok(), after).unwrap_err(),
        StoreError::ClaimLost { .. }
    ));
    assert_eq!(
        b.get(action.id).unwrap().unwrap().status,
        ActionStatus::Running
    );
    b.complete(action.id, ok(), after + Duration::seconds(2))
        .unwrap();
    let done = b.get(action.id).unwrap().unwrap();
    assert_eq!(done.attempts.len(), 2, "one interrupted, one completed");
}

#[test]
fn a_node_presumed_dead_learns_it_on_its_heartbeat_and_records_only_what_was_not_taken_over() {
    let url = fresh();
    let now = Utc::now();
    let a = node(&url, "a", 1_000, now);
    let b = node(&url, "b", 60_000, now);
    let (taken, kept) = (due("taken", now), due("kept", now));
    a.insert(&taken).unwrap();
    a.claim_due(now, 10).unwrap();
    // b presumes a dead, recovers the claim whose lease ran out and takes it...
    let later = now + Duration::seconds(3);
    let report = b.recover_expired(later).unwrap();
    assert_eq!(report.returned, vec![taken.id], "{report:?}");
    assert_eq!(b.claim_due(later, 10).unwrap().len(), 1);
    // ...while a, not knowing yet, claims another one.
    a.insert(&kept).unwrap();
    assert_eq!(a.claim_due(later, 10).unwrap().len(), 1);
    assert!(!a.heartbeat(later).unwrap(), "its row is gone");
    // What b took over is b's; what a claimed and nobody took over is still a's to record.
    assert!(matches!(
        a.complete(taken.id, ok(), later).unwrap_err(),
        StoreError::ClaimLost { .. }
    ));
    a.complete(kept.id, ok(), later).unwrap();
    assert_eq!(a.get(kept.id).unwrap().unwrap().status, ok());
    b.complete(taken.id, ok(), later).unwrap();
}

#[test]
fn what_a_dead_node_claimed_but_never_started_goes_back_to_pending_unharmed() {
    let url = fresh();
    let now = Utc::now();
    let a = node(&url, "a", 1_000, now);
    let b = node(&url, "b", 60_000, now);
    let actions: Vec<Action> = (0..3).map(|i| due(&format!("x{i}"), now)).collect();
    a.insert_many(&actions).unwrap();
    let claimed: Vec<Uuid> = a.claim_due(now, 10).unwrap().iter().map(|a| a.id).collect();
    assert_eq!(claimed.len(), 3);
    // a starts the tool of one of them (marking it first), then dies.
    let started = claimed[0];
    assert_eq!(a.mark_started(&[started], now).unwrap(), vec![started]);

    let after = now + Duration::seconds(3);
    let report = b.recover_expired(after).unwrap();
    assert_eq!(report.interrupted, vec![started], "{report:?}");
    let mut returned = report.returned.clone();
    returned.sort();
    let mut expected = claimed[1..].to_vec();
    expected.sort();
    assert_eq!(returned, expected, "the two never started");
    for id in &claimed[1..] {
        let stored = b.get(*id).unwrap().unwrap();
        assert_eq!(stored.status, ActionStatus::Pending);
        assert!(
            stored.attempts.is_empty(),
            "no attempt was used: {stored:?}"
        );
    }
    // b takes them and starts them under its own claims; a, back, can start none of them.
    let again: Vec<Uuid> = b
        .claim_due(after, 10)
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(again.len(), 2);
    assert!(a.mark_started(&again, after).unwrap().is_empty());
    assert_eq!(b.mark_started(&again, after).unwrap().len(), 2);
    // Started under b's claim: if b died too, they would count as started.
    b.db().forget_node("b").unwrap();
    let c = node(&url, "c", 60_000, after);
    let report = c.recover_expired(after + Duration::seconds(120)).unwrap();
    assert_eq!(report.interrupted.len(), 2, "{report:?}");
    assert!(report.returned.is_empty(), "{report:?}");
}

fn route(path: &str) -> crate::webhook::WebhookRoute {
    crate::webhook::WebhookRoute {
        id: Uuid::new_v4(),
        path: path.into(),
        tool_name: "deploy".into(),
        input_template: r#"{"ref": {{payload.ref}}}"#.into(),
        secret: None,
        created_at: Utc::now(),
    }
}

fn delivery(
    route: &crate::webhook::WebhookRoute,
    delivery_id: Option<&str>,
    body: &[u8],
    at: DateTime<Utc>,
) -> crate::webhook::Delivery {
    crate::webhook::Delivery {
        id: Uuid::now_v7(),
        route_id: route.id,
        route_path: route.path.clone(),
        tool_name: route.tool_name.clone(),
        input_template: route.input_template.clone(),
        headers: Default::default(),
        delivery_id: delivery_id.map(str::to_string),
        received_at: at,
        body: body.to_vec(),
    }
}

#[test]
fn an_acknowledged_delivery_is_its_action_at_once_and_a_repeated_id_is_refused_for_a_day() {
    let db = PgStore::connect(&fresh(), 2).unwrap();
    let now = Utc::now();
    let r = route("deploy");
    let other = route("other");
    let first = delivery(&r, Some("abc"), br#"{"ref":"main"}"#, now);
    let repeat = delivery(&r, Some("abc"), br#"{"ref":"main"}"#, now);
    let elsewhere = delivery(&other, Some("abc"), br#"{"ref":"x"}"#, now);
    let got = db
        .ingest(&[first.clone(), repeat, elsewhere.clone()], now)
        .unwrap();
    let answers: Vec<(Uuid, bool)> = got.iter().map(|i| (i.id, i.duplicate)).collect();
    assert_eq!(
        answers,
        [(first.id, false), (first.id, true), (elsewhere.id, false)]
    );
    // Stored as actions by the commit that acknowledged them: due at once, nothing waits.
    assert_eq!(db.inbox_len().unwrap(), 0);
    let action = db.get(first.id).unwrap().unwrap();
    assert_eq!(action.status, ActionStatus::Pending);
    assert_eq!(action.tool_input, json!({"ref": "main"}));
    let claimed: HashSet<Uuid> = db
        .claim_due(now, 10)
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(claimed, HashSet::from([first.id, elsewhere.id]));

    // A day later the id is free again.
    let day_later = now + Duration::hours(24) + Duration::seconds(1);
    let late = delivery(&r, Some("abc"), b"{}", day_later);
    let got = db.ingest(std::slice::from_ref(&late), day_later).unwrap();
    assert_eq!((got[0].id, got[0].duplicate), (late.id, false));
}

#[test]
fn a_body_is_kept_byte_for_byte_and_one_the_template_cannot_use_fails_its_action() {
    let db = PgStore::connect(&fresh(), 2).unwrap();
    let now = Utc::now();
    let r = route("deploy");
    let binary = delivery(&r, None, b"{\"ref\":\"ma\xffin\"}", now);
    db.ingest(std::slice::from_ref(&binary), now).unwrap();
    let action = db.get(binary.id).unwrap().unwrap();
    assert!(
        matches!(&action.status, ActionStatus::Failed { reason } if reason.contains("not JSON")),
        "{:?}",
        action.status
    );
    let ActionTrigger::Webhook {
        raw_payload_hex, ..
    } = &action.trigger
    else {
        panic!("{:?}", action.trigger)
    };
    assert_eq!(
        hex::decode(raw_payload_hex.as_deref().unwrap()).unwrap(),
        binary.body
    );
    assert!(db.claim_due(now, 10).unwrap().is_empty(), "it never runs");
}

#[test]
fn two_nodes_receiving_the_same_delivery_id_at_once_store_it_once() {
    let url = fresh();
    let now = Utc::now();
    let r = route("deploy");
    let nodes: Vec<Arc<PgStore>> = (0..4)
        .map(|_| Arc::new(PgStore::connect(&url, 2).unwrap()))
        .collect();
    for round in 0..20 {
        let id = format!("delivery-{round}");
        let copies: Vec<_> = nodes
            .iter()
            .map(|node| {
                let node = node.clone();
                let d = delivery(&r, Some(&id), b"{\"ref\":\"r\"}", now);
                std::thread::spawn(move || node.ingest(std::slice::from_ref(&d), now).unwrap())
            })
            .collect();
        let answers: Vec<_> = copies
            .into_iter()
            .map(|h| h.join().unwrap().remove(0))
            .collect();
        let stored: Vec<_> = answers.iter().filter(|a| !a.duplicate).collect();
        assert_eq!(stored.len(), 1, "round {round}: {answers:?}");
        assert!(answers.iter().all(|a| a.id == stored[0].id), "{answers:?}");
    }
    assert_eq!(nodes[0].list(&ListFilter::default()).unwrap().len(), 20);
}

#[test]
fn a_claim_too_close_to_its_leases_end_is_not_marked_and_a_mark_says_when_to_start_by() {
    let url = fresh();
    let now = Utc::now();
    let a = node(&url, "a", 1_000, now);
    let (early, late) = (due("early", now), due("late", now));
    a.insert_many(&[early.clone(), late.clone()]).unwrap();
    assert_eq!(a.claim_due(now, 10).unwrap().len(), 2);
    // Well within the lease: marked, to start before its end less the margin.
    let marks = a.mark_starts(&[early.id], now).unwrap();
    assert_eq!(marks.marked, vec![early.id]);
    let left = marks.start_by.unwrap() - crate::clock::boot_clock();
    assert!(left <= std::time::Duration::from_millis(750), "{left:?}");
    assert!(left >= std::time::Duration::from_millis(500), "{left:?}");
    // 900 ms into a 1 s lease: held, but not marked; handed back rather than started.
    let marks = a
        .mark_starts(&[late.id], now + Duration::milliseconds(900))
        .unwrap();
    assert!(marks.marked.is_empty(), "{marks:?}");
    assert_eq!(marks.lapsed, vec![late.id]);
}
