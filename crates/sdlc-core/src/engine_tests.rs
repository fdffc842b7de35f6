//! Engine tests: a real database, real tool processes, the real loop.
//!
//! They wait for outcomes (bounded polls of the database), never for fixed times.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::Utc;
use serde_json::json;
use tokio::sync::oneshot;

use super::*;
use crate::clock::SystemClock;
use crate::model::INTERRUPTED_REASON;
use crate::model::{ActionTrigger, Recurrence, StatusKind};
use crate::store::{ActionDb, ListFilter};

struct Harness {
    dir: tempfile::TempDir,
    db: Arc<dyn Store>,
}

impl Harness {
    /// A project whose store is a redb file in it.
    fn on_redb() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(ActionDb::open(&dir.path().join(".sdlc/orchestrator.db")).unwrap());
        Harness { dir, db }
    }

    /// A project whose store is a fresh PostgreSQL database.
    fn on_postgres() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = sdlc_pgtest::Cluster::shared()
            .expect("the PostgreSQL tests need a server")
            .fresh_database()
            .unwrap();
        // Off the test's runtime: the PostgreSQL client blocks on a runtime of its own.
        let db = std::thread::spawn(move || crate::store::pg::PgStore::connect(&url, 8).unwrap())
            .join()
            .unwrap();
        Harness {
            dir,
            db: Arc::new(db),
        }
    }

    /// Runs `work` on the store from a thread of its own, as the daemon calls its store
    /// from blocking threads, never from the async ones (where PostgreSQL's client cannot
    /// block).
    fn store<T: Send>(&self, work: impl FnOnce(&dyn Store) -> T + Send) -> T {
        std::thread::scope(|s| s.spawn(|| work(&*self.db)).join().unwrap())
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn tool(&self, name: &str, body: &str) {
        let dir = self.root().join(".sdlc/tools").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tool"), format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(dir.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn config(&self, tick: Duration, max_concurrency: usize) -> EngineConfig {
        EngineConfig {
            root: self.root().to_path_buf(),
            tick,
            max_concurrency,
            limits: RunLimits::default(),
            shutdown_grace: Duration::from_millis(200),
            retention: None,
            run_log: None,
            kill_orphans: true,
            runs_dir: None,
            log_cap: crate::logs::DEFAULT_CAP,
        }
    }

    /// `config` with a run log, as the daemon runs: actions may be claimed ahead and early.
    fn config_with_run_log(&self, tick: Duration, max_concurrency: usize) -> EngineConfig {
        EngineConfig {
            run_log: Some(self.root().join(".sdlc/orchestrator.db.runlog")),
            ..self.config(tick, max_concurrency)
        }
    }

    fn add(&self, label: &str, tool: &str, due_in: chrono::Duration) -> Action {
        let now = Utc::now();
        let action = Action::new(
            label,
            tool,
            json!({}),
            ActionTrigger::Scheduled {
                next_tick_at: now + due_in,
            },
            now,
        );
        self.store(|db| db.insert(&action)).unwrap();
        action
    }

    /// Starts the engine; the returned sender stops it.
    fn start(
        &self,
        config: EngineConfig,
    ) -> (
        Waker,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<EngineSummary>>,
    ) {
        let engine = Engine::new(self.db.clone(), Arc::new(SystemClock), config);
        let waker = engine.waker();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(engine.run(async {
            let _ = stopped.await;
        }));
        (waker, stop, handle)
    }

    /// Waits (at most 10 s) until `check` holds for the stored actions.
    async fn wait_until(&self, what: &str, check: impl Fn(&[Action]) -> bool) -> Vec<Action> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let actions = self.store(|db| db.list(&ListFilter::default())).unwrap();
            if check(&actions) {
                return actions;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {actions:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn count(actions: &[Action], kind: StatusKind) -> usize {
    actions.iter().filter(|a| a.status.kind() == kind).count()
}

async fn actions_due_between_heartbeats_run_at_their_due_time(h: Harness) {
    h.tool("ok", "echo '{\"ok\":true}'");
    h.add("a", "ok", chrono::Duration::milliseconds(100));
    h.add("b", "ok", chrono::Duration::milliseconds(200));
    // A one-minute heartbeat: only the due-time timer can make these run in time.
    let (_waker, stop, handle) = h.start(h.config(Duration::from_secs(60), 4));
    let actions = h
        .wait_until("both completed", |a| count(a, StatusKind::Completed) == 2)
        .await;
    for action in &actions {
        let late = action.started_at.unwrap() - action.due_at();
        assert!(late < chrono::Duration::seconds(5), "started {late} late");
    }
    stop.send(()).unwrap();
    let summary = handle.await.unwrap().unwrap();
    assert_eq!(summary.completed, 2);
}

async fn an_added_action_runs_when_the_loop_is_woken(h: Harness) {
    h.tool("ok", "echo '{\"ok\":true}'");
    let (waker, stop, handle) = h.start(h.config(Duration::from_secs(60), 4));
    // Let the loop reach its sleep with nothing due, then add and wake it.
    h.wait_until("engine idle", |_| true).await;
    h.add("late-add", "ok", chrono::Duration::zero());
    waker.wake();
    h.wait_until("completed", |a| count(a, StatusKind::Completed) == 1)
        .await;
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
}

async fn the_pool_never_runs_more_than_max_concurrency(h: Harness) {
    let log = h.root().join("log");
    // Each run appends "+" when it starts and "-" when it ends.
    h.tool(
        "slow",
        &format!(
            "echo + >> {0}; sleep 0.2; echo - >> {0}; echo '{{\"ok\":true}}'",
            log.display()
        ),
    );
    for i in 0..6 {
        h.add(&format!("s{i}"), "slow", chrono::Duration::zero());
    }
    let (_waker, stop, handle) = h.start(h.config(Duration::from_secs(60), 2));
    h.wait_until("all completed", |a| count(a, StatusKind::Completed) == 6)
        .await;
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
    let mut running = 0;
    let mut peak = 0;
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        running += if line == "+" { 1 } else { -1 };
        peak = peak.max(running);
    }
    assert_eq!(peak, 2);
}

async fn a_recurring_action_keeps_firing_after_a_failed_run(h: Harness) {
    let counter = h.root().join("count");
    // Fails on its first run, succeeds afterwards.
    h.tool(
        "flaky",
        &format!(
            "echo x >> {0}; if [ $(wc -l < {0}) -eq 1 ]; then exit 1; fi; echo '{{\"ok\":true}}'",
            counter.display()
        ),
    );
    let mut action = Action::new(
        "every",
        "flaky",
        json!({}),
        ActionTrigger::Scheduled {
            next_tick_at: Utc::now(),
        },
        Utc::now(),
    );
    action.recurrence = Some(Recurrence::Every { interval_ms: 200 });
    h.store(|db| db.insert(&action)).unwrap();
    let (_waker, stop, handle) = h.start(h.config(Duration::from_secs(60), 2));
    let actions = h
        .wait_until("three runs", |a| {
            count(a, StatusKind::Failed) == 1 && count(a, StatusKind::Completed) >= 2
        })
        .await;
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
    // Every occurrence is due on the original grid: no drift.
    let start = action.due_at().timestamp_millis();
    for occurrence in actions.iter().filter(|a| a.series == action.id) {
        assert_eq!((occurrence.due_at().timestamp_millis() - start) % 200, 0);
    }
}

async fn startup_recovers_runs_a_dead_daemon_left_running(h: Harness) {
    h.tool("ok", "echo '{\"ok\":true}'");
    let stale = h.add("stale", "ok", chrono::Duration::zero());
    // A dead daemon claimed it and started its tool.
    h.store(|db| db.claim_due(Utc::now(), 10)).unwrap();
    h.store(move |db| db.mark_started(&[stale.id], Utc::now()))
        .unwrap();
    let pending = h.add("pending", "ok", chrono::Duration::zero());
    let (_waker, stop, handle) = h.start(h.config(Duration::from_secs(60), 2));
    h.wait_until("pending completed", |a| {
        count(a, StatusKind::Completed) == 1
    })
    .await;
    stop.send(()).unwrap();
    let summary = handle.await.unwrap().unwrap();
    assert_eq!(summary.recovered, 1);
    assert_eq!(
        h.store(|db| db.get(stale.id)).unwrap().unwrap().status,
        ActionStatus::Failed {
            reason: INTERRUPTED_REASON.into()
        }
    );
    assert!(matches!(
        h.store(|db| db.get(pending.id)).unwrap().unwrap().status,
        ActionStatus::Completed { .. }
    ));
}

async fn shutdown_waits_for_quick_runs_and_records_slow_ones_as_stopped(h: Harness) {
    h.tool("quick", "sleep 0.05; echo '{\"ok\":true}'");
    h.tool("forever", "sleep 60");
    let quick = h.add("quick", "quick", chrono::Duration::zero());
    let forever = h.add("forever", "forever", chrono::Duration::zero());
    let mut config = h.config(Duration::from_secs(60), 4);
    config.shutdown_grace = Duration::from_secs(2);
    let (_waker, stop, handle) = h.start(config);
    h.wait_until("both running", |a| count(a, StatusKind::Running) == 2)
        .await;
    stop.send(()).unwrap();
    let summary = handle.await.unwrap().unwrap();
    assert_eq!(summary.abandoned, 1);
    assert!(matches!(
        h.store(|db| db.get(quick.id)).unwrap().unwrap().status,
        ActionStatus::Completed { .. }
    ));
    assert_eq!(
        h.store(|db| db.get(forever.id)).unwrap().unwrap().status,
        ActionStatus::Failed {
            reason: crate::engine::STOPPED_REASON.into()
        }
    );
}

async fn a_missing_tool_fails_the_action_and_the_loop_goes_on(h: Harness) {
    h.tool("ok", "echo '{\"ok\":true}'");
    let missing = h.add("missing", "not-there", chrono::Duration::zero());
    h.add("fine", "ok", chrono::Duration::zero());
    let (_waker, stop, handle) = h.start(h.config(Duration::from_secs(60), 1));
    h.wait_until("both finished", |a| {
        count(a, StatusKind::Completed) == 1 && count(a, StatusKind::Failed) == 1
    })
    .await;
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
    let ActionStatus::Failed { reason } = h.store(|db| db.get(missing.id)).unwrap().unwrap().status
    else {
        panic!()
    };
    assert!(reason.contains("no tool named 'not-there'"), "{reason}");
}

async fn retention_prunes_old_finished_actions_while_running(h: Harness) {
    h.tool("ok", "echo '{\"ok\":true}'");
    let old = h.add("old", "ok", chrono::Duration::zero());
    let later = h.add("later", "ok", chrono::Duration::hours(1));
    // A short heartbeat: pruning passes come once per heartbeat.
    let mut config = h.config(Duration::from_millis(100), 2);
    // Everything finished is older than a millisecond by the time the loop looks again.
    config.retention = Some(Duration::from_millis(1));
    let (_waker, stop, handle) = h.start(config);
    h.wait_until("old ran", |a| {
        a.iter()
            .any(|x| x.id == old.id && x.status.kind() == StatusKind::Completed)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.store(|db| db.get(old.id)).unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the finished action was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        h.store(|db| db.get(later.id)).unwrap().is_some(),
        "pending actions are never pruned"
    );
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
}

/// While every slot is busy, an action that is due waits for a slot without the loop turning
/// for it (it used to wake every millisecond until the slot freed).
async fn a_due_action_waiting_for_a_slot_does_not_keep_the_loop_turning(h: Harness) {
    h.tool("slow", "cat > /dev/null; sleep 1; echo '{\"ok\":true}'");
    h.add("first", "slow", chrono::Duration::zero());
    h.add("second", "slow", chrono::Duration::zero());
    let config = h.config_with_run_log(Duration::from_secs(60), 1);
    let (_waker, stop, handle) = h.start(config);
    h.wait_until("both completed", |a| count(a, StatusKind::Completed) == 2)
        .await;
    stop.send(()).unwrap();
    let summary = handle.await.unwrap().unwrap();
    // ~2 s with a due action queued behind a busy slot for the first second: polling at
    // the timer's 1 ms resolution would turn ~1,000 times; an event-driven loop a handful.
    assert!(summary.wakeups < 100, "{summary:?}");
}

/// Actions are claimed a few milliseconds before they come due (so the claim's commit is
/// done by then), but no tool may start before its action's due time.
async fn no_tool_starts_before_its_due_time(h: Harness) {
    let stamps = h.root().join("stamps");
    h.tool(
        "stamp",
        &format!(
            "echo \"$SDLC_ACTION_ID $(date +%s%N)\" >> {}\ncat > /dev/null\necho '{{\"ok\":true}}'",
            stamps.display()
        ),
    );
    let due: HashMap<Uuid, DateTime<Utc>> = (0..20)
        .map(|i| {
            let action = h.add(
                &format!("s{i}"),
                "stamp",
                chrono::Duration::milliseconds(200 + 37 * i),
            );
            (action.id, action.due_at())
        })
        .collect();
    let config = h.config_with_run_log(Duration::from_secs(60), 4);
    let (_waker, stop, handle) = h.start(config);
    let actions = h
        .wait_until("all completed", |a| count(a, StatusKind::Completed) == 20)
        .await;
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
    let text = std::fs::read_to_string(&stamps).unwrap();
    assert_eq!(text.lines().count(), 20, "{text}");
    for line in text.lines() {
        let (id, nanos) = line.split_once(' ').unwrap();
        let id: Uuid = id.parse().unwrap();
        let started = DateTime::from_timestamp_nanos(nanos.parse().unwrap());
        assert!(
            started >= due[&id],
            "{id} started at {started}, due {}",
            due[&id]
        );
    }
    for action in &actions {
        assert!(action.started_at.unwrap() >= action.due_at(), "{action:#?}");
    }
}

async fn short_runs_are_claimed_ahead_and_shutdown_hands_back_what_never_started(h: Harness) {
    h.tool("quick", "cat > /dev/null; sleep 0.02; echo '{\"ok\":true}'");
    for i in 0..40 {
        h.add(&format!("q{i}"), "quick", chrono::Duration::zero());
    }
    let config = h.config_with_run_log(Duration::from_secs(60), 2);
    let (_waker, stop, handle) = h.start(config);
    // Once runs have finished, more are claimed than the two slots can hold.
    h.wait_until("actions claimed ahead of the free slots", |a| {
        count(a, StatusKind::Completed) >= 2 && count(a, StatusKind::Running) > 2
    })
    .await;
    stop.send(()).unwrap();
    let summary = handle.await.unwrap().unwrap();
    let actions = h.store(|db| db.list(&ListFilter::default())).unwrap();
    assert_eq!(count(&actions, StatusKind::Running), 0, "{actions:#?}");
    assert_eq!(
        count(&actions, StatusKind::Completed) as u64,
        summary.completed
    );
    for action in actions.iter().filter(|a| a.status == ActionStatus::Pending) {
        assert_eq!(action.attempt, 0, "{action:#?}");
        assert!(action.due_at() <= Utc::now());
    }
}

/// Each scenario on both backends: the engine runs the same on redb and PostgreSQL.
mod on_redb {
    #[tokio::test]
    async fn actions_due_between_heartbeats_run_at_their_due_time() {
        super::actions_due_between_heartbeats_run_at_their_due_time(super::Harness::on_redb()).await
    }

    #[tokio::test]
    async fn an_added_action_runs_when_the_loop_is_woken() {
        super::an_added_action_runs_when_the_loop_is_woken(super::Harness::on_redb()).await
    }

    #[tokio::test]
    async fn the_pool_never_runs_more_than_max_concurrency() {
        super::the_pool_never_runs_more_than_max_concurrency(super::Harness::on_redb()).await
    }

    #[tokio::test]
    async fn a_recurring_action_keeps_firing_after_a_failed_run() {
        super::a_recurring_action_keeps_firing_after_a_failed_run(super::Harness::on_redb()).await
    }

    #[tokio::test]
    async fn startup_recovers_runs_a_dead_daemon_left_running() {
        super::startup_recovers_runs_a_dead_daemon_left_running(super::Harness::on_redb()).await
    }

    #[tokio::test]
    async fn shutdown_waits_for_quick_runs_and_records_slow_ones_as_stopped() {
        super::shutdown_waits_for_quick_runs_and_records_slow_ones_as_stopped(
            super::Harness::on_redb(),
        )
        .await
    }

    #[tokio::test]
    async fn a_missing_tool_fails_the_action_and_the_loop_goes_on() {
        super::a_missing_tool_fails_the_action_and_the_loop_goes_on(super::Harness::on_redb()).await
    }

    #[tokio::test]
    async fn retention_prunes_old_finished_actions_while_running() {
        super::retention_prunes_old_finished_actions_while_running(super::Harness::on_redb()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_due_action_waiting_for_a_slot_does_not_keep_the_loop_turning() {
        super::a_due_action_waiting_for_a_slot_does_not_keep_the_loop_turning(
            super::Harness::on_redb(),
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_tool_starts_before_its_due_time() {
        super::no_tool_starts_before_its_due_time(super::Harness::on_redb()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_runs_are_claimed_ahead_and_shutdown_hands_back_what_never_started() {
        super::short_runs_are_claimed_ahead_and_shutdown_hands_back_what_never_started(
            super::Harness::on_redb(),
        )
        .await
    }
}

mod on_postgres {
    #[tokio::test]
    async fn actions_due_between_heartbeats_run_at_their_due_time() {
        super::actions_due_between_heartbeats_run_at_their_due_time(super::Harness::on_postgres())
            .await
    }

    #[tokio::test]
    async fn an_added_action_runs_when_the_loop_is_woken() {
        super::an_added_action_runs_when_the_loop_is_woken(super::Harness::on_postgres()).await
    }

    #[tokio::test]
    async fn the_pool_never_runs_more_than_max_concurrency() {
        super::the_pool_never_runs_more_than_max_concurrency(super::Harness::on_postgres()).await
    }

    #[tokio::test]
    async fn a_recurring_action_keeps_firing_after_a_failed_run() {
        super::a_recurring_action_keeps_firing_after_a_failed_run(super::Harness::on_postgres())
            .await
    }

    #[tokio::test]
    async fn startup_recovers_runs_a_dead_daemon_left_running() {
        super::startup_recovers_runs_a_dead_daemon_left_running(super::Harness::on_postgres()).await
    }

    #[tokio::test]
    async fn shutdown_waits_for_quick_runs_and_records_slow_ones_as_stopped() {
        super::shutdown_waits_for_quick_runs_and_records_slow_ones_as_stopped(
            super::Harness::on_postgres(),
        )
        .await
    }

    #[tokio::test]
    async fn a_missing_tool_fails_the_action_and_the_loop_goes_on() {
        super::a_missing_tool_fails_the_action_and_the_loop_goes_on(super::Harness::on_postgres())
            .await
    }

    #[tokio::test]
    async fn retention_prunes_old_finished_actions_while_running() {
        super::retention_prunes_old_finished_actions_while_running(super::Harness::on_postgres())
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_due_action_waiting_for_a_slot_does_not_keep_the_loop_turning() {
        super::a_due_action_waiting_for_a_slot_does_not_keep_the_loop_turning(
            super::Harness::on_postgres(),
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_tool_starts_before_its_due_time() {
        super::no_tool_starts_before_its_due_time(super::Harness::on_postgres()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_runs_are_claimed_ahead_and_shutdown_hands_back_what_never_started() {
        super::short_runs_are_claimed_ahead_and_shutdown_hands_back_what_never_started(
            super::Harness::on_postgres(),
        )
        .await
    }
}
