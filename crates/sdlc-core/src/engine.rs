//! The tick loop: the one place that decides when actions run.
//!
//! One loop, one `select!` over a closed set of events: shutdown, a run finishing, a wake-up
//! (an action was added or a webhook arrived), and a timer set to the earliest due time or
//! the heartbeat (`tick`), whichever is sooner. After an event the loop settles: in one
//! transaction it records the runs that finished and claims due actions for the free slots
//! of the pool (`max_concurrency`).
//!
//! Claiming ahead. While runs are short (they average under `SHORT_RUN`), a commit per
//! finished run is most of the daemon's cost, and a freed slot would wait for it before its
//! next start. So the loop also claims up to `4 × max_concurrency` actions *ahead* into a
//! ready queue: a freed slot starts the next one at once, and outcomes and claims are committed
//! in batches (when half the ready queue is used, an outcome has waited `OUTCOME_WINDOW`, or
//! the last run ended with nothing ready to start). A wake-up (webhook, new action) while
//! there is no room (see `Pool::has_room`) waits for that batch too: under a burst of
//! webhooks it would otherwise cost a commit per request. An action claimed ahead is Running
//! in the database before its tool starts; if the daemon dies then, the run log proves it
//! never started (see [`crate::orphans`]; on a store several nodes share, the start mark
//! each tool waits for, see `start_gate`) and recovery hands it back to Pending instead of
//! failing it. One that waits longer than `READY_MAX_WAIT` (the runs turned long) is handed
//! back at once. With long runs, or with no such proof, nothing is claimed ahead.
//!
//! Claiming early. An action coming due within `CLAIM_LEAD` is claimed at once, as of its due
//! time, and waits in the ready queue until then (the last `PRECISE_WAIT` slept on the loop's
//! thread): the claim's commit is behind it when it comes due, so its tool starts on time
//! rather than a commit late. Without that proof nothing is claimed early.
//!
//! Tool runs are tasks in a `JoinSet`; the loop never awaits one, so a slow tool never stops
//! it from ticking. Database work goes through `spawn_blocking` (a commit waits for fsync).
//! The daemon runs the loop on a thread of its own with a single-threaded runtime, so the
//! loop and its runs' tasks wake each other without crossing threads.
//!
//! Shutdown: stop claiming, give running tools `shutdown_grace`, record what finished; runs
//! still going are killed (their process groups too) and recorded as failed ("stopped by
//! shutdown", or pending again when their retry policy allows).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::clock::Clock;
use crate::model::{Action, ActionStatus};
use crate::plan::export::EventExport;
use crate::plan::{NewRun, RunEvent};
use crate::store::{SettleWork, Settled, StepClaim, Store};
use crate::tool::{
    RunLimits, RunRecordAt, RunWatch, ToolMode, command_outcome, find_program, log_excerpt,
    outcome_to_status, run_command_recorded, run_tool_recorded, tool_script,
};

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The project root: tools are found under it and run from it.
    pub root: PathBuf,
    /// The heartbeat: the longest the loop sleeps without checking for due work.
    pub tick: Duration,
    /// How many tools may run at once.
    pub max_concurrency: usize,
    /// Limits of one run; an action's own timeout replaces `limits.timeout`.
    pub limits: RunLimits,
    /// How long running tools may finish after shutdown is asked for.
    pub shutdown_grace: Duration,
    /// Finished actions older than this are deleted (None keeps everything).
    pub retention: Option<Duration>,
    /// The run log (see [`crate::orphans`]); None: runs are not logged, no orphan detection.
    pub run_log: Option<PathBuf>,
    /// At start, kill the process groups of tools a dead daemon left running (else only
    /// report them).
    pub kill_orphans: bool,
    /// Where plan runs' event logs are written (`<run_id>.jsonl`); None: not written.
    pub runs_dir: Option<PathBuf>,
    /// The most bytes of a run's output its stored log keeps (see [`crate::logs`]); 0: no
    /// logs are kept.
    pub log_cap: usize,
}

/// How many finished actions one pruning pass deletes: small enough that a pass never holds
/// up a tick noticeably, large enough to keep up with any realistic rate of runs.
const PRUNE_BATCH: usize = 1000;
/// Longest pause between pruning passes once the backlog is cleared (a shorter heartbeat
/// prunes once per heartbeat).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Runs shorter than this on average make claiming ahead worth it (see the module header).
const SHORT_RUN: Duration = Duration::from_millis(250);
/// Actions claimed ahead per slot while runs are short. The queue is refilled at half, so
/// one commit covers up to `2 × max_concurrency` finished runs and as many claims (fewer when
/// `OUTCOME_WINDOW` closes first). Each commit costs an fsync, whose kernel work on a virtual
/// disk is ~0.3 ms of CPU: for 2,000 short runs at 8 slots, 2 per slot made ~238 commits and
/// 4 per slot ~160, with ~9% less daemon CPU (8 A/B pairs); 8 per slot made no fewer (the
/// outcome window decides then). With 1 per slot: 1,898 commits for 10,000 runs.
const LOOKAHEAD_PER_SLOT: usize = 4;
/// The longest an action claimed ahead waits for a slot before it is handed back.
const READY_MAX_WAIT: Duration = Duration::from_secs(1);
/// The longest a finished run's outcome waits for others to share its commit. 20 ms rather
/// than 10: 2,000 short runs at 8 slots took ~123 commits instead of ~163, with less daemon
/// CPU in each of 4 A/B pairs (~6%); an outcome is visible (and safe from a crash) 20 ms
/// after its tool ended at worst, which no caller can tell from a run's own length.
const OUTCOME_WINDOW: Duration = Duration::from_millis(20);
/// tokio's timer fires on whole-millisecond ticks of its own clock, so a sleep until a due
/// time ends up to a millisecond or two late. The loop wakes this much early instead and
/// sleeps the rest on its own thread, with nanosecond precision.
const PRECISE_WAIT: Duration = Duration::from_millis(2);
/// Actions due this soon are claimed now: the claim's commit (an fsync, ~1-2 ms, longer in
/// its tail) is then done before they come due, and each starts at its due time instead of
/// a commit after it. The loop holds them in the ready queue until then.
const CLAIM_LEAD: Duration = Duration::from_millis(5);

/// A run whose tool could not start for a passing lack of resources (see
/// [`crate::tool::runner::ExitKind::Deferred`]) is tried again this much later.
const DEFER_DELAY: Duration = Duration::from_secs(1);
/// After a write to the database failed, the first attempt to reopen it waits this long, and
/// each failed one doubles the wait up to `REOPEN_MAX_WAIT`: a full disk is not freed in
/// milliseconds, and each attempt walks the file.
const REOPEN_FIRST_WAIT: Duration = Duration::from_millis(500);
const REOPEN_MAX_WAIT: Duration = Duration::from_secs(10);

/// Reason recorded on a run killed because it outlasted the shutdown grace period.
pub const STOPPED_REASON: &str =
    "stopped by shutdown: the tool was still running when the daemon's --grace ran out";

/// How often the loop checks that the database file is still at its path (a stat).
const FILE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How many of the newest finished runs have their event files checked at start (a run that
/// ended just before a kill is among the newest; older ones were exported by a daemon that
/// lived on after them).
const RECENT_RUNS_CAUGHT_UP: usize = 256;

/// Wakes the loop at once (after an action is added or a webhook is stored).
#[derive(Debug, Clone)]
pub struct Waker {
    notify: Arc<Notify>,
    runs: Arc<std::sync::Mutex<Vec<Uuid>>>,
    stops: Arc<crate::stops::Stops>,
}

impl Waker {
    pub fn wake(&self) {
        // notify_one stores a permit when the loop is busy, so no wake-up is lost.
        self.notify.notify_one();
    }

    /// Whether runs were announced that the loop has not exported yet.
    fn has_announced_runs(&self) -> bool {
        !self
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Asks the run of action `id` in flight here (or about to start) to stop: SIGTERM to
    /// its process group, SIGKILL after `grace`. The store holds the request already.
    pub fn stop(&self, id: Uuid, by: &str, grace: Duration) {
        self.stops.request(id, by, grace);
    }

    /// Wakes the loop and has it export the new events of plan run `run` (started,
    /// canceled or retried outside the loop).
    pub fn announce_run(&self, run: Uuid) {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(run);
        self.wake();
    }
}

/// What a finished `run` did, for the daemon's last log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSummary {
    pub recovered: usize,
    /// Actions a dead daemon had claimed ahead but never started: back to Pending.
    pub returned: usize,
    /// Tool processes a dead daemon left running, found at start.
    pub orphans: usize,
    pub completed: u64,
    pub failed: u64,
    /// Runs still going when the grace period ended (killed, recorded as stopped by shutdown).
    pub abandoned: usize,
    /// Trips to the database that recorded outcomes or claimed (each at most one commit).
    pub commits: u64,
    /// Turns of the loop: an idle daemon, or one whose slots are all busy, should barely turn.
    pub wakeups: u64,
}

/// The tick loop over one database.
pub struct Engine {
    db: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    waker: Waker,
    export: std::sync::Mutex<EventExport>,
    stats: Arc<crate::engine_stats::EngineStats>,
    metrics: Arc<crate::metrics::Metrics>,
    live_logs: Arc<crate::logs::LiveLogs>,
}

/// One run that ended, waiting to be recorded.
struct RunDone {
    id: Uuid,
    status: ActionStatus,
    duration: Duration,
    /// The tool never started for a passing lack of resources: hand it back, try later.
    deferred: bool,
    /// The action targets a plan and its run is ready to store (the action stays Running).
    plan_start: Option<NewRun>,
    /// The action is a plan step: recording its outcome may make the next steps ready.
    is_step: bool,
    /// The first and last lines of what the run printed (see `tool::log_excerpt`).
    log_excerpt: Option<String>,
    /// Everything it printed, in its stored form (see [`crate::logs`]); None when nothing.
    /// Shared, so that the settle's work and a record one by one after a refused batch take
    /// it without copying.
    log: Option<Arc<[u8]>>,
    /// Never started: the claim became another node's first (see [`crate::start_gate`]).
    /// Nothing is recorded for it.
    lost: bool,
}

impl RunDone {
    /// A run of `id` that ended in `status` (not deferred, no plan to start, not a step).
    fn ended(id: Uuid, status: ActionStatus, duration: Duration) -> RunDone {
        RunDone {
            id,
            status,
            duration,
            deferred: false,
            plan_start: None,
            is_step: false,
            log_excerpt: None,
            log: None,
            lost: false,
        }
    }
}

/// When the loop next tries to reopen a database that refuses writes.
struct Reopen {
    at: Instant,
    wait: Duration,
}

/// What the loop carries from one turn to the next.
struct Turn {
    next_prune: Instant,
    /// The next due time the store reported, as of the last settle.
    next_due: Option<DateTime<Utc>>,
    /// The last settle left more deliveries in the inbox than one batch.
    more_ready: bool,
    /// Whether the last event can wait for a batch: runs finishing, or a wake-up while
    /// every slot is busy and the ready queue is above its refill mark (what it brought can
    /// only start when a slot frees).
    batchable: bool,
    /// A wake-up said work may be waiting (a webhook delivery in the inbox, a new action)
    /// that no settle has looked at yet.
    work_announced: bool,
    /// Set while the database refuses writes (see `store::redb::handle`).
    reopen: Option<Reopen>,
    file_checked: Instant,
}

/// Bookkeeping for the runs in flight.
struct Pool {
    tasks: JoinSet<RunDone>,
    /// Which action each task runs, so even a panicked task's action gets an outcome.
    ids: HashMap<tokio::task::Id, Uuid>,
    done: Vec<RunDone>,
    /// When the oldest outcome in `done` arrived.
    first_done_at: Option<Instant>,
    /// Actions claimed ahead, waiting for a slot, with when they were claimed.
    ready: VecDeque<(Action, Instant)>,
    /// Moving average of recent run times: decides whether to claim ahead.
    average_run: Option<Duration>,
    /// Where runs are logged while they live (for orphan detection after a crash).
    run_log: Option<Arc<crate::orphans::RunLog>>,
    /// On a shared store, what each tool waits for before it starts.
    start_gate: Option<crate::start_gate::StartGate>,
    /// Events settles committed, still to be exported (in order).
    new_events: Vec<RunEvent>,
    /// The plan run of each task running a plan step, and how many of each run's steps run:
    /// no more than its `max_concurrency` start at once.
    step_tasks: HashMap<tokio::task::Id, Uuid>,
    steps_running: HashMap<Uuid, u32>,
}

impl Pool {
    fn record(&mut self, joined: Result<(tokio::task::Id, RunDone), tokio::task::JoinError>) {
        let task = match &joined {
            Ok((task, _)) => *task,
            Err(err) => err.id(),
        };
        if let Some(run) = self.step_tasks.remove(&task)
            && let Some(n) = self.steps_running.get_mut(&run)
        {
            *n -= 1;
            if *n == 0 {
                self.steps_running.remove(&run);
            }
        }
        match joined {
            Ok((task, run)) => {
                self.ids.remove(&task);
                if run.lost {
                    // Never started, its claim another node's now: nothing to record.
                    return;
                }
                // An average over the last ~8 runs.
                self.average_run = Some(match self.average_run {
                    Some(average) => (average * 7 + run.duration) / 8,
                    None => run.duration,
                });
                self.first_done_at.get_or_insert_with(Instant::now);
                self.done.push(run);
            }
            Err(err) => {
                let Some(id) = self.ids.remove(&err.id()) else {
                    return;
                };
                if err.is_cancelled() {
                    // Cancelled at shutdown: `run` records these as stopped by shutdown.
                    return;
                }
                error!(%id, "a run task panicked: {err}");
                self.first_done_at.get_or_insert_with(Instant::now);
                let reason = format!("internal error while running the tool: {err}");
                self.done.push(RunDone::ended(
                    id,
                    ActionStatus::Failed { reason },
                    Duration::ZERO,
                ));
            }
        }
    }

    fn drain_finished(&mut self) {
        while let Some(joined) = self.tasks.try_join_next_with_id() {
            self.record(joined);
        }
    }

    /// How many actions to keep claimed ahead of free slots (see the module header).
    fn lookahead(&self, max: usize) -> usize {
        match self.average_run {
            Some(average) if average < SHORT_RUN && self.starts_provable() => {
                max * LOOKAHEAD_PER_SLOT
            }
            _ => 0,
        }
    }

    /// Whether recovery after a crash can tell a claimed action that never started from one
    /// that ran: the run log says so, or (on a shared store) the start marks.
    fn starts_provable(&self) -> bool {
        self.run_log.is_some() || self.start_gate.is_some()
    }

    /// Whether due work would be claimed now: a slot is idle, or the ready queue is down to
    /// its refill mark (settling for less would cost a commit per run).
    fn has_room(&self, max: usize) -> bool {
        self.tasks.len() < max || self.ready.len() <= self.lookahead(max) / 2
    }

    /// How many more actions a settle would claim: one per free slot, plus the lookahead,
    /// less what the ready queue already holds.
    fn claimable(&self, max: usize) -> usize {
        (max - self.tasks.len() + self.lookahead(max)).saturating_sub(self.ready.len())
    }

    /// Every action the loop holds: running, claimed ahead, or finished but not recorded.
    fn known_ids(&self) -> std::collections::HashSet<Uuid> {
        self.ids
            .values()
            .copied()
            .chain(self.ready.iter().map(|(action, _)| action.id))
            .chain(self.done.iter().map(|run| run.id))
            .collect()
    }

    /// Whether `action` may start now as far as its plan run's `max_concurrency` goes.
    fn run_has_place(steps_running: &HashMap<Uuid, u32>, action: &Action) -> bool {
        match &action.step {
            Some(step) => step
                .limit
                .is_none_or(|limit| steps_running.get(&step.run_id).copied().unwrap_or(0) < limit),
            None => true,
        }
    }

    /// Whether plan runs' events wait to be exported.
    fn has_events(&self) -> bool {
        !self.new_events.is_empty()
    }

    /// No run is going and none is claimed ahead.
    fn idle(&self) -> bool {
        self.tasks.is_empty() && self.ready.is_empty()
    }

    /// How long before its due time an action is claimed: `CLAIM_LEAD`, or nothing without
    /// proof of starts (recovery could not tell an action claimed early from one that ran).
    fn claim_lead(&self) -> Duration {
        if self.starts_provable() {
            CLAIM_LEAD
        } else {
            Duration::ZERO
        }
    }

    /// The due time of the next action in the ready queue (later than now only when it was
    /// claimed ahead of its due time).
    fn first_ready_due(&self) -> Option<DateTime<Utc>> {
        self.ready.front().map(|(action, _)| action.due_at())
    }

    /// Removes the actions claimed ahead that waited too long for a slot.
    fn take_stale(&mut self, now: Instant) -> Vec<(Action, Instant)> {
        let mut stale = Vec::new();
        while let Some((_, claimed)) = self.ready.front() {
            if now.duration_since(*claimed) < READY_MAX_WAIT {
                break;
            }
            stale.extend(self.ready.pop_front());
        }
        stale
    }
}

impl Engine {
    pub fn new(db: Arc<dyn Store>, clock: Arc<dyn Clock>, config: EngineConfig) -> Engine {
        let export = EventExport::new(config.runs_dir.clone());
        let stats = Arc::new(crate::engine_stats::EngineStats::new(
            clock.now(),
            config.max_concurrency.max(1),
        ));
        Engine {
            db,
            clock,
            config,
            stats,
            metrics: Arc::default(),
            live_logs: Arc::default(),
            waker: Waker {
                notify: Arc::new(Notify::new()),
                runs: Arc::default(),
                stops: Arc::default(),
            },
            export: std::sync::Mutex::new(export),
        }
    }

    /// A handle that wakes this engine's loop.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// What the loop is doing (busy slots, last commit), updated as it turns.
    pub fn stats(&self) -> Arc<crate::engine_stats::EngineStats> {
        self.stats.clone()
    }

    /// What the loop counts for `/metrics` (runs, lateness, commits, plan runs).
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.metrics.clone()
    }

    /// The logs of the runs in flight, for readers that follow them.
    pub fn live_logs(&self) -> Arc<crate::logs::LiveLogs> {
        self.live_logs.clone()
    }

    /// Where the plan runs' events are published as the loop exports them.
    pub fn run_events(&self) -> tokio::sync::broadcast::Sender<RunEvent> {
        self.lock_export().sender()
    }

    fn lock_export(&self) -> std::sync::MutexGuard<'_, EventExport> {
        self.export.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Exports the events the last settles committed, and those of the runs announced
    /// through the waker (read back from the database, as is any gap before a settle's).
    async fn export_runs(&self, pool: &mut Pool) {
        let mut by_run: Vec<(Uuid, Vec<RunEvent>)> = Vec::new();
        for event in pool.new_events.drain(..) {
            match by_run.iter_mut().find(|(run, _)| *run == event.run_id) {
                Some((_, events)) => events.push(event),
                None => by_run.push((event.run_id, vec![event])),
            }
        }
        let announced =
            std::mem::take(&mut *self.waker.runs.lock().unwrap_or_else(|e| e.into_inner()));
        for run in announced {
            if !by_run.iter().any(|(r, _)| *r == run) {
                by_run.push((run, Vec::new()));
            }
        }
        for (run, events) in by_run {
            let after = self.lock_export().exported_up_to(run);
            let expected = after.map_or(0, |seq| seq + 1);
            let contiguous = events.first().is_some_and(|first| first.seq == expected);
            if contiguous {
                self.count_finished_runs(&events);
                self.lock_export().export(run, &events);
                continue;
            }
            match self
                .blocking(move |db| db.run_events(run, after, usize::MAX))
                .await
            {
                Ok(events) => {
                    self.count_finished_runs(&events);
                    self.lock_export().export(run, &events);
                }
                Err(err) => warn!(%run, "could not read the run's events to export: {err:#}"),
            }
        }
    }

    /// Announces, for the loop's first export, the runs whose event files lag behind the
    /// database: those whose steps start-up recovery just moved on (an interrupted step, the
    /// run's end), and, among the newest runs, any a daemon killed between a commit and its
    /// export left behind (a run that ended just before the kill is among the newest). An
    /// older unfinished run is brought up to date by its next event, whose export reads what
    /// is missing from the database. Costs one bounded listing and a file tail per listed run.
    async fn catch_up_event_files(&self, recovered: &[Uuid]) {
        for run in recovered {
            self.waker.announce_run(*run);
        }
        let Some(dir) = self.config.runs_dir.clone() else {
            return;
        };
        let listed = self
            .blocking(|db| {
                db.list_runs(&crate::store::RunFilter {
                    limit: Some(RECENT_RUNS_CAUGHT_UP),
                    ..Default::default()
                })
            })
            .await;
        match listed {
            Ok(runs) => {
                for run in runs.iter().filter(|run| {
                    crate::plan::export::next_in_file(&crate::plan::export::file_of(
                        &dir, run.run_id,
                    )) < run.next_seq
                }) {
                    self.waker.announce_run(run.run_id);
                }
            }
            Err(err) => {
                warn!("could not list the runs whose event files to bring up to date: {err:#}")
            }
        }
    }

    /// Counts the plan runs that `events` (each exported once) end.
    fn count_finished_runs(&self, events: &[RunEvent]) {
        for event in events.iter().filter(|e| e.event == "run_completed") {
            let status = event.detail.get("status").and_then(|s| s.as_str());
            self.metrics.plan_run_finished(status.unwrap_or("unknown"));
        }
    }

    /// Recovers what a dead daemon left Running, then runs the loop until `shutdown`
    /// completes. Returns after recording what finished within the grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<EngineSummary> {
        let mut summary = EngineSummary::default();
        let run_log = self.recover_at_start(&mut summary).await?;
        let mut pool = self.new_pool(run_log)?;
        let log_flusher = (self.db.shared() && self.config.log_cap > 0).then(|| {
            tokio::spawn(flush_live_logs(self.db.clone(), self.live_logs.clone())).abort_handle()
        });
        let _stop_flusher = AbortOnDrop(log_flusher);
        self.stats.set_ready();
        let max = self.config.max_concurrency.max(1);
        tokio::pin!(shutdown);
        let mut turn = Turn {
            next_prune: Instant::now(),
            next_due: None,
            more_ready: false,
            batchable: false,
            work_announced: false,
            reopen: None,
            file_checked: Instant::now(),
        };
        loop {
            summary.wakeups += 1;
            let storage_down = self
                .take_turn(&mut pool, &mut turn, &mut summary, max)
                .await;
            let room = pool.has_room(max);
            let wake_at = self.wake_at(&pool, &mut turn, storage_down, room, max);
            turn.batchable = false;
            self.stats.set_load(pool.tasks.len(), pool.ready.len());
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                // More deliveries than one batch: go round again without waiting.
                _ = std::future::ready(()), if turn.more_ready && room => {}
                Some(joined) = pool.tasks.join_next_with_id(), if !pool.tasks.is_empty() => {
                    pool.record(joined);
                    pool.drain_finished();
                    turn.batchable = true;
                }
                _ = self.waker.notify.notified() => {
                    // Under a burst of webhooks every request wakes the loop; with no room
                    // for what they bring, settling on each would be a commit per request.
                    turn.work_announced = true;
                    turn.batchable = !room;
                }
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
        self.shut_down(pool, turn, summary).await
    }

    /// Kills what a daemon that died left running (`--kill-orphans`), recovers its claims
    /// (Running actions fail as interrupted or retry; claimed but never started go back to
    /// Pending), brings the runs' event files up to date, and starts this daemon's run log.
    async fn recover_at_start(
        &self,
        summary: &mut EngineSummary,
    ) -> anyhow::Result<Option<Arc<crate::orphans::RunLog>>> {
        let mut started_by_dead_daemon = None;
        if let Some(path) = &self.config.run_log {
            let reaped = crate::orphans::reap(path, self.config.kill_orphans);
            started_by_dead_daemon = reaped.started;
            for orphan in reaped.orphans {
                let record = &orphan.record;
                warn!(
                    action = %record.action,
                    pid = record.pid,
                    killed = orphan.killed,
                    "a tool started by a daemon that died was still running{}",
                    if orphan.killed { "; its process group was killed" } else { "; left running (--keep-orphans)" }
                );
                summary.orphans += 1;
            }
        }
        let now = self.clock.now();
        // Recovery commits before the new run log replaces the old one: the old log is the
        // proof of which claimed actions never started.
        let recovery = self
            .blocking(move |db| db.startup_recovery_knowing(now, started_by_dead_daemon.as_ref()))
            .await
            .context("startup recovery failed")?;
        summary.recovered = recovery.interrupted.len();
        summary.returned = recovery.returned.len();
        for id in &recovery.interrupted {
            warn!(%id, "action was running when the last daemon stopped: marked failed (interrupted)");
        }
        for id in &recovery.returned {
            info!(%id, "action was claimed but not started when the last daemon stopped: pending again");
        }
        self.catch_up_event_files(&recovery.runs).await;
        Ok(match &self.config.run_log {
            Some(path) => Some(Arc::new(
                crate::orphans::RunLog::create(path)
                    .with_context(|| format!("cannot create the run log {}", path.display()))?,
            )),
            None => None,
        })
    }

    /// The pool of running tools, empty, with the start gate a shared store needs.
    fn new_pool(&self, run_log: Option<Arc<crate::orphans::RunLog>>) -> anyhow::Result<Pool> {
        let start_gate = if self.db.shared() {
            Some(
                crate::start_gate::StartGate::new(self.db.clone(), self.clock.clone())
                    .context("cannot start the start gate's thread")?,
            )
        } else {
            None
        };
        Ok(Pool {
            tasks: JoinSet::new(),
            ids: HashMap::new(),
            done: Vec::new(),
            first_done_at: None,
            ready: VecDeque::new(),
            average_run: None,
            run_log,
            start_gate,
            new_events: Vec::new(),
            step_tasks: HashMap::new(),
            steps_running: HashMap::new(),
        })
    }

    /// One turn of the loop: checks the file, starts what is ready, settles when it is time
    /// (outcomes waiting, work due, claims held too long), exports plan events, prunes.
    /// Returns whether the database refuses writes.
    async fn take_turn(
        &self,
        pool: &mut Pool,
        turn: &mut Turn,
        summary: &mut EngineSummary,
        max: usize,
    ) -> bool {
        // No wake-up of its own: at least once a heartbeat, at most once a second.
        if turn.file_checked.elapsed() >= FILE_CHECK_EVERY.min(self.config.tick) {
            turn.file_checked = Instant::now();
            let _ = self.blocking(|db| Ok(db.check_in_place())).await;
        }
        let storage_down = self.storage_down(pool, &mut turn.reopen).await;
        if pool.tasks.len() < max {
            self.wait_precisely_for(pool.first_ready_due());
        }
        self.start_ready(pool, max);
        let lookahead = pool.lookahead(max);
        let claim = pool.claimable(max);
        let now = Instant::now();
        let stale = pool.take_stale(now);
        let claim_until = self.clock.now() + pool.claim_lead();
        let work_due = turn.more_ready
            || turn.work_announced
            || turn.next_due.is_some_and(|due| due <= claim_until);
        let settle_now = !storage_down
            && (!turn.batchable
            || !stale.is_empty()
            || pool.done.len() >= (lookahead / 2).max(1)
            // The last run ended and none is waiting to start: no outcome can come to
            // share the commit, so waiting out the window would only delay these.
            || (!pool.done.is_empty() && pool.idle())
            // A plan step ended with a slot free and nothing claimed to fill it: its
            // outcome may make the next steps ready, which only the settle can tell.
            || (pool.done.iter().any(|run| run.is_step)
                && pool.tasks.len() < max
                && pool.ready.is_empty())
            || pool
                .first_done_at
                .is_some_and(|at| now.duration_since(at) >= OUTCOME_WINDOW)
            || (work_due && pool.has_room(max)));
        if storage_down {
            // What was claimed ahead stays in line; nothing is handed back until the
            // database takes writes again.
            for entry in stale.into_iter().rev() {
                pool.ready.push_front(entry);
            }
        } else if settle_now {
            turn.more_ready = self
                .settle(pool, claim, claim_until, stale, summary, &mut turn.next_due)
                .await;
            turn.work_announced = false;
            self.start_ready(pool, max);
        }
        if pool.has_events() || self.waker.has_announced_runs() {
            // Runs just started spawn their processes first: the export is not on the
            // path from one step's end to the next one's start.
            tokio::task::yield_now().await;
            self.export_runs(pool).await;
        }
        if let Some(keep) = self.config.retention
            && !storage_down
            && Instant::now() >= turn.next_prune
        {
            let pause = self.prune(keep).await.min(self.config.tick);
            turn.next_prune = Instant::now() + pause;
        }
        storage_down
    }

    /// When the loop must wake next if nothing else wakes it: the next due action a claim
    /// could take, the next prune, the end of the outcome window, the due time of a claimed
    /// action, a claim held too long; while the database is down, only the next reopen.
    fn wake_at(
        &self,
        pool: &Pool,
        turn: &mut Turn,
        storage_down: bool,
        room: bool,
        max: usize,
    ) -> Instant {
        // Wake for the next due action only when a claim could take it. With every slot
        // busy and nothing to claim ahead (long runs), or the places taken by actions
        // claimed early, it would find nothing to claim, and the loop would turn on every
        // timer tick until a slot frees (a finished run wakes the loop anyway).
        let can_claim = pool.claimable(max) > 0;
        let mut wake_at = self.next_wake(room && can_claim, turn.next_due, pool.claim_lead());
        if self.config.retention.is_some() {
            wake_at = wake_at.min(turn.next_prune);
        }
        if let Some(at) = pool.first_done_at {
            wake_at = wake_at.min(at + OUTCOME_WINDOW);
        }
        if pool.tasks.len() < max
            && let Some(due) = pool.first_ready_due()
        {
            wake_at = wake_at.min(self.precise_wake_for(due));
        }
        if let Some((_, claimed)) = pool.ready.front()
            && !storage_down
        {
            wake_at = wake_at.min(*claimed + READY_MAX_WAIT);
        }
        if storage_down {
            // Due times, waiting outcomes and claims held too long all lie in the past
            // while nothing can be settled: only the next attempt to reopen (or a run
            // ending, or a wake-up) is worth a turn of the loop.
            turn.more_ready = false;
            wake_at = turn
                .reopen
                .as_ref()
                .map_or(Instant::now() + self.config.tick, |reopen| reopen.at);
            // An action claimed before the fault still starts at its due time.
            if pool.tasks.len() < max
                && let Some(due) = pool.first_ready_due()
            {
                wake_at = wake_at.min(self.precise_wake_for(due));
            }
        }
        wake_at
    }

    /// Stops: waits up to the grace period for running tools, fails what is still running
    /// (or retries it, as its policy allows), hands back what never started, and records it
    /// all in one last settle.
    async fn shut_down(
        &self,
        mut pool: Pool,
        mut turn: Turn,
        mut summary: EngineSummary,
    ) -> anyhow::Result<EngineSummary> {
        info!(
            running = pool.tasks.len(),
            grace_secs = self.config.shutdown_grace.as_secs_f64(),
            "shutting down: no new runs; waiting for running tools"
        );
        let deadline = Instant::now() + self.config.shutdown_grace;
        while !pool.tasks.is_empty() {
            tokio::select! {
                Some(joined) = pool.tasks.join_next_with_id() => pool.record(joined),
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        summary.abandoned = pool.tasks.len();
        // Runs past the grace period are recorded as failed now (or pending again, as their
        // retry policy allows), rather than left Running for the next start to find.
        let stopped: Vec<Uuid> = pool.ids.values().copied().collect();
        // Aborting drops each run's future, which kills its process group.
        pool.tasks.shutdown().await;
        for id in stopped {
            let reason = STOPPED_REASON.to_string();
            pool.done.push(RunDone::ended(
                id,
                ActionStatus::Failed { reason },
                Duration::ZERO,
            ));
        }
        let unstarted: Vec<(Action, Instant)> = pool.ready.drain(..).collect();
        if turn.reopen.is_some() {
            // One last try, so that what finished is recorded if the disk has room again.
            let _ = self.blocking(|db| db.reopen()).await;
        }
        let now = self.clock.now();
        self.settle(
            &mut pool,
            0,
            now,
            unstarted,
            &mut summary,
            &mut turn.next_due,
        )
        .await;
        self.export_runs(&mut pool).await;
        Ok(summary)
    }

    /// Whether the database refuses writes (after a failed one: a full disk, say). While it
    /// does, the loop neither settles nor prunes, so nothing is lost and nothing is logged
    /// per turn; it tries to reopen the file with a growing wait, and once that succeeds it
    /// hands back what a failed commit may have claimed without telling it, as at start.
    async fn storage_down(&self, pool: &mut Pool, reopen: &mut Option<Reopen>) -> bool {
        if self.db.fault().is_none() {
            *reopen = None;
            return false;
        }
        let Some(next) = reopen else {
            *reopen = Some(Reopen {
                at: Instant::now() + REOPEN_FIRST_WAIT,
                wait: REOPEN_FIRST_WAIT,
            });
            return true;
        };
        if Instant::now() < next.at {
            return true;
        }
        match self.blocking(|db| db.reopen()).await {
            Ok(()) => {
                *reopen = None;
                let known = pool.known_ids();
                let now = self.clock.now();
                match self
                    .blocking(move |db| db.return_unknown_running(&known, now))
                    .await
                {
                    Ok(returned) if !returned.is_empty() => {
                        info!(
                            count = returned.len(),
                            "claims of a failed commit handed back"
                        );
                    }
                    Ok(_) => {}
                    Err(err) => warn!("could not check for claims of a failed commit: {err:#}"),
                }
                self.db.fault().is_some()
            }
            Err(err) => {
                next.wait = (next.wait * 2).min(REOPEN_MAX_WAIT);
                next.at = Instant::now() + next.wait;
                warn!(
                    retry_in_secs = next.wait.as_secs_f64(),
                    "the database still refuses writes: {err:#}"
                );
                true
            }
        }
    }

    /// Starts runs of actions claimed ahead while the pool has free slots, none before its
    /// due time (see `CLAIM_LEAD`).
    fn start_ready(&self, pool: &mut Pool, max: usize) {
        while pool.tasks.len() < max {
            let now = self.clock.now();
            // The first one its plan run has a place for (plan steps may be claimed ahead of
            // their run's places, see `StepClaim`).
            let steps_running = &pool.steps_running;
            let Some(index) = pool
                .ready
                .iter()
                .position(|(action, _)| Pool::run_has_place(steps_running, action))
            else {
                break;
            };
            if pool.ready[index].0.due_at() > now {
                break;
            }
            let Some((action, _)) = pool.ready.remove(index) else {
                break;
            };
            let id = action.id;
            let step_run = action.step.as_ref().map(|step| step.run_id);
            let task = pool.tasks.spawn(run_action(
                action,
                self.config.root.clone(),
                self.config.limits,
                pool.start_gate.clone(),
                StartWatch {
                    metrics: self.metrics.clone(),
                    clock: self.clock.clone(),
                    run_log: pool.run_log.clone(),
                    logs: (self.config.log_cap > 0)
                        .then(|| (self.live_logs.clone(), self.config.log_cap)),
                    stops: self.waker.stops.clone(),
                },
            ));
            pool.ids.insert(task.id(), id);
            if let Some(run) = step_run {
                pool.step_tasks.insert(task.id(), run);
                *pool.steps_running.entry(run).or_insert(0) += 1;
            }
        }
    }

    /// Dispatches webhook deliveries, records finished runs, hands back `returned` (claimed
    /// ahead, never started) and claims up to `claim` actions due by `claim_until` into the
    /// ready queue. Returns whether more work is ready at once (the inbox held more than one
    /// batch).
    async fn settle(
        &self,
        pool: &mut Pool,
        claim: usize,
        claim_until: DateTime<Utc>,
        returned: Vec<(Action, Instant)>,
        summary: &mut EngineSummary,
        next_due_cache: &mut Option<DateTime<Utc>>,
    ) -> bool {
        let outcomes: Vec<(Uuid, ActionStatus)> = pool
            .done
            .iter()
            .filter(|run| !run.deferred && run.plan_start.is_none())
            .map(|run| (run.id, run.status.clone()))
            .collect();
        let excerpts: Vec<(Uuid, Option<String>)> = pool
            .done
            .iter()
            .filter(|run| !run.deferred && run.plan_start.is_none())
            .map(|run| (run.id, run.log_excerpt.clone()))
            .collect();
        let logs: Vec<(Uuid, Arc<[u8]>)> = pool
            .done
            .iter()
            .filter(|run| !run.deferred && run.plan_start.is_none())
            .filter_map(|run| Some((run.id, run.log.clone()?)))
            .collect();
        let plan_starts: Vec<(Uuid, NewRun)> = pool
            .done
            .iter()
            .filter_map(|run| Some((run.id, run.plan_start.clone()?)))
            .collect();
        let retry_at = self.clock.now()
            + chrono::Duration::from_std(DEFER_DELAY).expect("the defer delay is small");
        let deferred: Vec<(Uuid, DateTime<Utc>)> = pool
            .done
            .iter()
            .filter(|run| run.deferred)
            .map(|run| (run.id, retry_at))
            .collect();
        if outcomes.is_empty()
            && claim == 0
            && returned.is_empty()
            && deferred.is_empty()
            && plan_starts.is_empty()
        {
            return false;
        }
        pool.first_done_at = None;
        summary.commits += 1;
        let now = self.clock.now();
        let batch = outcomes.clone();
        let deferred_again = deferred.clone();
        let returned_ids: Vec<Uuid> = returned.iter().map(|(action, _)| action.id).collect();
        // The next due time is read in the same trip to the blocking pool: one thread hop
        // per wake-up instead of two.
        let starts_again = plan_starts.clone();
        // Claiming ahead (short runs), a plan's steps may be claimed past its places too:
        // they wait here for one, and a freed place starts the next without a commit.
        let step_claim = if pool.lookahead(self.config.max_concurrency.max(1)) > 0 {
            StepClaim::AheadOfSlots
        } else {
            StepClaim::WithinLimit
        };
        let commit_began = Instant::now();
        let settled = match self
            .blocking(move |db| {
                let work = SettleWork {
                    outcomes: batch,
                    excerpts,
                    logs,
                    returned: returned_ids,
                    deferred,
                    plan_starts,
                    step_claim,
                };
                let settled = db.settle_work(work, now, claim_until, claim)?;
                let next_due = db.next_due_at()?;
                Ok((settled, next_due))
            })
            .await
        {
            Ok((settled, next_due)) => {
                self.stats.committed(now);
                self.metrics
                    .committed(crate::metrics::Writer::Engine, commit_began.elapsed());
                *next_due_cache = next_due;
                if !returned.is_empty() {
                    debug!(count = returned.len(), "actions claimed ahead handed back");
                }
                settled
            }
            Err(_) if self.db.fault().is_some() => {
                // The database refuses writes: keep everything for the settle after it
                // reopens (`storage_down`); the outcomes wait in `done`.
                for entry in returned.into_iter().rev() {
                    pool.ready.push_front(entry);
                }
                if !pool.done.is_empty() {
                    pool.first_done_at = Some(Instant::now());
                }
                return false;
            }
            Err(err) if !outcomes.is_empty() || !returned.is_empty() => {
                // Not handed back: they are still claimed, so they stay in line to run.
                for entry in returned.into_iter().rev() {
                    pool.ready.push_front(entry);
                }
                // One refused outcome fails the batch: record them one by one instead, so a
                // single bad record cannot hold the others back.
                warn!(
                    "recording {} finished runs together failed ({err:#}); recording one by one",
                    outcomes.len()
                );
                self.record_one_by_one(pool, outcomes, starts_again, deferred_again, now)
                    .await
            }
            Err(err) => {
                error!("could not claim due actions: {err:#}");
                return false;
            }
        };

        self.take_settled(pool, settled, summary)
    }

    /// Records what one settle's batch held, each in a commit of its own, after the batch
    /// was refused: a single bad record cannot hold the others back.
    async fn record_one_by_one(
        &self,
        pool: &mut Pool,
        outcomes: Vec<(Uuid, ActionStatus)>,
        starts_again: Vec<(Uuid, NewRun)>,
        deferred_again: Vec<(Uuid, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> Settled {
        let mut finished = Vec::new();
        for (id, status) in outcomes {
            // The excerpt and the log are still with the run in `done`.
            let run = pool.done.iter().find(|run| run.id == id);
            let work = SettleWork {
                outcomes: vec![(id, status)],
                excerpts: run
                    .map(|r| (id, r.log_excerpt.clone()))
                    .into_iter()
                    .collect(),
                logs: run
                    .and_then(|r| Some((id, r.log.clone()?)))
                    .into_iter()
                    .collect(),
                ..SettleWork::default()
            };
            match self
                .blocking(move |db| db.settle_work(work, now, now, 0))
                .await
            {
                Ok(done) if done.finished.is_empty() => {
                    error!(%id, "could not record the outcome of a run: {}", crate::StoreError::ClaimLost { id });
                }
                Ok(done) => finished.extend(done.finished),
                Err(err) => error!(%id, "could not record the outcome of a run: {err:#}"),
            }
        }
        for (id, new) in starts_again {
            let start = move |db: &dyn Store| {
                let work = SettleWork {
                    plan_starts: vec![(id, new)],
                    ..SettleWork::default()
                };
                db.settle_work(work, now, now, 0)
            };
            match self.blocking(start).await {
                Ok(settled) => pool.new_events.extend(settled.events),
                Err(err) => {
                    error!(%id, "could not start the plan run of an action: {err:#}");
                    let failed = ActionStatus::Failed {
                        reason: format!("could not store the plan run: {err:#}"),
                    };
                    if let Err(err) = self.blocking(move |db| db.complete(id, failed, now)).await {
                        error!(%id, "could not record the outcome of a run: {err:#}");
                    }
                }
            }
        }
        for (id, at) in deferred_again {
            let hand_back = move |db: &dyn Store| {
                db.settle_claiming_until(Vec::new(), Vec::new(), vec![(id, at)], now, now, 0)
            };
            if let Err(err) = self.blocking(hand_back).await {
                error!(%id, "could not hand back a run that did not start: {err:#}");
            }
        }
        Settled {
            finished,
            ..Settled::default()
        }
    }

    /// Takes in what a settle recorded: the finished runs leave the pool (their logs and
    /// stops are the store's now), are counted and logged, and what it claimed joins the
    /// ready queue. Returns whether more work is ready at once.
    fn take_settled(
        &self,
        pool: &mut Pool,
        mut settled: Settled,
        summary: &mut EngineSummary,
    ) -> bool {
        let durations: HashMap<Uuid, Duration> = pool
            .done
            .drain(..)
            .map(|run| (run.id, run.duration))
            .collect();
        // Their outcomes and logs are stored (or were refused): readers read the store now.
        self.live_logs.forget(durations.keys().copied());
        self.waker.stops.forget(durations.keys().copied());
        if let Some(log) = &pool.run_log {
            log.settled(settled.finished.iter().map(|f| f.action.id));
        }
        pool.new_events.append(&mut settled.events);
        for finished in &settled.finished {
            let action = &finished.action;
            let duration = durations.get(&action.id).copied();
            let duration_ms = duration.map(|d| d.as_millis() as u64);
            if let Some(outcome) = run_outcome(&action.status) {
                self.metrics
                    .run_finished(&action.tool_name, outcome, duration);
            }
            log_finished(action, duration_ms, summary);
            if let Some(released) = &finished.released {
                info!(id = %released.id, series = %released.series, "queued occurrence released");
            }
        }
        if settled.dispatched > 0 {
            debug!(count = settled.dispatched, "webhook deliveries dispatched");
        }
        let claimed_at = Instant::now();
        pool.ready.extend(
            settled
                .claimed
                .into_iter()
                .map(|action| (action, claimed_at)),
        );
        settled.inbox_waiting
    }

    /// Deletes one batch of finished actions older than `keep`; returns how long to wait
    /// before the next pass (at once while a backlog remains).
    async fn prune(&self, keep: Duration) -> Duration {
        let Ok(keep) = chrono::Duration::from_std(keep) else {
            return PRUNE_EVERY;
        };
        let cutoff = self.clock.now() - keep;
        match self
            .blocking(move |db| {
                // Notifications about what is pruned go with it (pending ones stay).
                db.prune_notifications(cutoff, PRUNE_BATCH)?;
                db.prune_finished(cutoff, PRUNE_BATCH)
            })
            .await
        {
            Ok(pruned) if pruned == PRUNE_BATCH => {
                debug!(pruned, "pruned finished actions; more remain");
                Duration::from_millis(100)
            }
            Ok(pruned) => {
                if pruned > 0 {
                    info!(pruned, "pruned finished actions past --keep");
                }
                PRUNE_EVERY
            }
            Err(err) => {
                error!("could not prune finished actions: {err:#}");
                PRUNE_EVERY
            }
        }
    }

    /// When to wake if nothing else happens: the heartbeat, or `lead` before the earliest due
    /// time when there is a free slot to start it in.
    fn next_wake(
        &self,
        has_free_slot: bool,
        next_due: Option<DateTime<Utc>>,
        lead: Duration,
    ) -> Instant {
        let heartbeat = Instant::now() + self.config.tick;
        let Some(due) = next_due.filter(|_| has_free_slot) else {
            return heartbeat;
        };
        let until_due = (due - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
        heartbeat.min(Instant::now() + until_due.saturating_sub(lead))
    }

    /// Just before `due` (an action claimed ahead of it): `wait_precisely_for` does the rest.
    fn precise_wake_for(&self, due: DateTime<Utc>) -> Instant {
        let until_due = (due - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
        Instant::now() + until_due.saturating_sub(PRECISE_WAIT)
    }

    /// When `due` (of an action claimed ahead of it) is at most `PRECISE_WAIT` away, sleeps
    /// until it on this thread. That holds up the loop's thread for under `PRECISE_WAIT`,
    /// about what a commit does. In the daemon that thread is the engine's own (the server
    /// runs elsewhere); the runs' tasks on it only wait to read pipes, which buffer 64 KiB.
    fn wait_precisely_for(&self, due: Option<DateTime<Utc>>) {
        let Some(due) = due else { return };
        if let Ok(until_due) = (due - self.clock.now()).to_std()
            && until_due <= PRECISE_WAIT
        {
            std::thread::sleep(until_due);
        }
    }

    async fn blocking<T, F>(&self, work: F) -> anyhow::Result<T>
    where
        F: FnOnce(&dyn Store) -> Result<T, crate::StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.db.clone();
        let result = tokio::task::spawn_blocking(move || crate::store::guarded(&*db, work))
            .await
            .context("database task failed")?;
        Ok(result?)
    }
}

/// How often, on a shared store, what runs in flight printed is written for followers on
/// other nodes.
const LOG_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// On a shared store: every `LOG_FLUSH_EVERY`, writes the logs of the runs in flight that
/// printed more since (a reader on another node follows them from the store).
async fn flush_live_logs(db: Arc<dyn Store>, logs: Arc<crate::logs::LiveLogs>) {
    loop {
        tokio::time::sleep(LOG_FLUSH_EVERY).await;
        let unflushed = logs.take_unflushed();
        if unflushed.is_empty() {
            continue;
        }
        let db = db.clone();
        let written = tokio::task::spawn_blocking(move || db.put_partial_logs(&unflushed)).await;
        if let Ok(Err(err)) = written {
            debug!("could not write the logs of runs in flight: {err}");
        }
    }
}

/// Aborts a task when dropped (the log flusher, when the loop ends).
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// The word `/metrics` counts a recorded run under (None: not the end of a run).
fn run_outcome(status: &ActionStatus) -> Option<&'static str> {
    match status {
        ActionStatus::Completed { .. } => Some("completed"),
        ActionStatus::Failed { .. } => Some("failed"),
        // Recorded as failed, pending again for its retry.
        ActionStatus::Pending => Some("retrying"),
        ActionStatus::AwaitingApproval { .. } => Some("awaiting_approval"),
        ActionStatus::Canceled { .. } => Some("canceled"),
        _ => None,
    }
}

/// What watches a run: `/metrics` (how late its tool started), the run log (for orphan
/// detection), and its live log.
struct StartWatch {
    metrics: Arc<crate::metrics::Metrics>,
    clock: Arc<dyn Clock>,
    run_log: Option<Arc<crate::orphans::RunLog>>,
    /// Where the run's live log goes, and its cap (None: no logs kept).
    logs: Option<(Arc<crate::logs::LiveLogs>, usize)>,
    /// Where a stop asked of the run comes from.
    stops: Arc<crate::stops::Stops>,
}

/// Runs one claimed action's tool and maps the run to the status it ends in.
async fn run_action(
    action: Action,
    root: PathBuf,
    mut limits: RunLimits,
    start_gate: Option<crate::start_gate::StartGate>,
    watch: StartWatch,
) -> RunDone {
    if let Some(plan_id) = &action.plan {
        // Starting a plan run only reads the plan: nothing to mark, doing it again is safe.
        return prepare_plan_run(&action, plan_id, &root, std::time::Instant::now()).await;
    }
    if let Some(gate) = start_gate {
        use crate::start_gate::Admission;
        match gate.admit(action.id).await {
            Admission::Start(start_by) => limits.start_by = start_by,
            Admission::Lost => {
                return RunDone {
                    lost: true,
                    ..RunDone::ended(action.id, ActionStatus::Running, Duration::ZERO)
                };
            }
            Admission::Failed(reason) => {
                warn!(id = %action.id, "not started: its start could not be marked ({reason}); trying again shortly");
                return RunDone {
                    deferred: true,
                    is_step: action.step.is_some(),
                    ..RunDone::ended(action.id, ActionStatus::Failed { reason }, Duration::ZERO)
                };
            }
        }
    }
    watch
        .metrics
        .run_started(watch.clock.now() - action.due_at());
    let stop = watch.stops.watch(action.id);
    if let Some(asked) = stop.asked() {
        // Asked to stop before its tool started (claimed ahead): it never starts.
        let reason = format!("canceled by {} before it ran", asked.by);
        return RunDone {
            is_step: action.step.is_some(),
            ..RunDone::ended(action.id, ActionStatus::Canceled { reason }, Duration::ZERO)
        };
    }
    let log = watch
        .logs
        .as_ref()
        .map(|(logs, cap)| logs.start(action.id, action.attempt, *cap));
    let started = std::time::Instant::now();
    let mut deferred = false;
    let mut excerpt = None;
    if let Some(ms) = action.timeout_ms {
        limits.timeout = Duration::from_millis(ms);
    }
    let mut env = vec![
        ("SDLC_ACTION_ID".to_string(), action.id.to_string()),
        ("SDLC_ACTION_LABEL".to_string(), action.label.clone()),
        ("SDLC_ATTEMPT".to_string(), action.attempt.to_string()),
    ];
    if let Some(step) = &action.step {
        env.push(("SDLC_RUN_ID".to_string(), step.run_id.to_string()));
        env.push(("SDLC_STEP_ID".to_string(), step.step_id.clone()));
    }
    let run_watch = RunWatch {
        record: watch.run_log.map(|log| RunRecordAt {
            log,
            action: action.id,
        }),
        log: log.clone(),
        stop: Some(stop.clone()),
    };
    if let Some(command) = &action.command {
        let status = match command_place(command, &root) {
            Err(reason) => ActionStatus::Failed { reason },
            Ok((program, cwd)) => {
                env.extend(command.env.iter().map(|(k, v)| (k.clone(), v.clone())));
                let run = run_command_recorded(
                    &program,
                    &command.args,
                    &cwd,
                    &root,
                    &env,
                    &limits,
                    &run_watch,
                )
                .await;
                if let crate::tool::runner::ExitKind::Deferred(reason) = &run.exit {
                    warn!(id = %action.id, command = %command.program, "the command could not start for now ({reason}); trying again shortly");
                    deferred = true;
                }
                excerpt = log_excerpt(&run, true);
                note_exit(log.as_deref(), &run.exit);
                command_outcome(&run)
            }
        };
        return RunDone {
            deferred,
            is_step: action.step.is_some(),
            log_excerpt: excerpt,
            log: end_log(log.as_deref(), deferred),
            ..RunDone::ended(action.id, status, started.elapsed())
        };
    }
    let status = match tool_script(&root, &action.tool_name) {
        Err(err) => ActionStatus::Failed {
            reason: err.to_string(),
        },
        Ok(script) => {
            let run = run_tool_recorded(
                &script,
                ToolMode::Run,
                &action.tool_input,
                &root,
                &env,
                &limits,
                &run_watch,
            )
            .await;
            if let crate::tool::runner::ExitKind::Deferred(reason) = &run.exit {
                warn!(id = %action.id, tool = %action.tool_name, "the tool could not start for now ({reason}); trying again shortly");
                deferred = true;
            }
            excerpt = log_excerpt(&run, false);
            note_exit(log.as_deref(), &run.exit);
            outcome_to_status(&run)
        }
    };
    RunDone {
        deferred,
        is_step: action.step.is_some(),
        log_excerpt: excerpt,
        log: end_log(log.as_deref(), deferred),
        ..RunDone::ended(action.id, status, started.elapsed())
    }
}

/// Adds to a run's log how the daemon ended it, when it did (timeout, too much output) or
/// the run never started.
fn note_exit(log: Option<&crate::logs::LiveLog>, exit: &crate::tool::runner::ExitKind) {
    use crate::tool::runner::ExitKind;
    let Some(log) = log else { return };
    match exit {
        ExitKind::Exited(_) | ExitKind::Deferred(_) => {}
        ExitKind::Canceled { killed, .. } => {
            if *killed {
                log.note("[sdlc: still running when the grace ran out: SIGKILL sent]");
            }
        }
        ExitKind::TimedOut(limit) => log.note(format!(
            "[sdlc: killed after its timeout of {}]",
            crate::tool::runner::human_duration(*limit)
        )),
        ExitKind::StdoutOverflow(cap) => log.note(format!(
            "[sdlc: killed: it printed more than {cap} bytes on stdout]"
        )),
        ExitKind::SpawnFailed(reason) => log.note(format!("[sdlc: did not start: {reason}]")),
    }
}

/// Ends a run's live log: its stored form, unless the run never started (deferred: it runs
/// again, and its log is that run's).
fn end_log(log: Option<&crate::logs::LiveLog>, deferred: bool) -> Option<Arc<[u8]>> {
    let lines = log?.end();
    if deferred {
        return None;
    }
    crate::logs::encode(&lines).map(Arc::from)
}

/// The program (absolute) and working directory of a command step, or why it cannot run.
fn command_place(
    command: &crate::plan::CommandSpec,
    root: &std::path::Path,
) -> Result<(PathBuf, PathBuf), String> {
    let cwd = match &command.cwd {
        Some(dir) => root.join(dir),
        None => root.to_path_buf(),
    };
    if !cwd.is_dir() {
        return Err(format!(
            "cwd '{}' is not a folder of the project ({})",
            command.cwd.as_deref().unwrap_or("."),
            cwd.display()
        ));
    }
    let program = if command.program.contains('/') && !command.program.starts_with('/') {
        cwd.join(&command.program).display().to_string()
    } else {
        command.program.clone()
    };
    let found = find_program(&program, std::env::var_os("PATH").as_ref()).ok_or_else(|| {
        format!(
            "command '{}' not found{}: install it or give its path",
            command.program,
            if program.contains('/') {
                ""
            } else {
                " on PATH"
            }
        )
    })?;
    Ok((found, cwd))
}

/// For an action that targets a plan: reads and checks the plan as the project has it now,
/// with the action's input as the variables, ready for the settle to store (or a failure
/// saying what was wrong with it).
async fn prepare_plan_run(
    action: &Action,
    plan_id: &str,
    root: &std::path::Path,
    started: std::time::Instant,
) -> RunDone {
    let prepared = match crate::plan::run::vars_from_input(&action.tool_input) {
        Ok(vars) => crate::plan::load::prepare_run(root, plan_id, vars, chrono::Utc::now())
            .await
            .map_err(|problems| format!("could not start the plan: {problems}")),
        Err(reason) => Err(reason),
    };
    match prepared {
        Ok(new) => RunDone {
            plan_start: Some(new),
            ..RunDone::ended(action.id, ActionStatus::Running, started.elapsed())
        },
        Err(reason) => RunDone::ended(
            action.id,
            ActionStatus::Failed { reason },
            started.elapsed(),
        ),
    }
}

/// Logs how one run ended, and counts it in `summary`.
fn log_finished(action: &Action, duration_ms: Option<u64>, summary: &mut EngineSummary) {
    match &action.status {
        ActionStatus::Pending => {
            let retry_at = action.retry_at.map(|t| t.to_rfc3339());
            let reason = action
                .attempts
                .last()
                .and_then(|a| a.reason.clone())
                .unwrap_or_default();
            warn!(id = %action.id, label = %action.label, tool = %action.tool_name, outcome = "failed", attempt = action.attempt, retry_at, duration_ms, reason = %reason, "action failed; will retry");
        }
        ActionStatus::Completed { .. } => {
            summary.completed += 1;
            info!(id = %action.id, label = %action.label, tool = %action.tool_name, outcome = "completed", duration_ms, "action finished");
        }
        ActionStatus::AwaitingApproval { .. } => {
            info!(id = %action.id, label = %action.label, tool = %action.tool_name, outcome = "awaiting_approval", duration_ms, "action awaits approval");
        }
        ActionStatus::Failed { reason } => {
            summary.failed += 1;
            warn!(id = %action.id, label = %action.label, tool = %action.tool_name, outcome = "failed", duration_ms, reason = %reason, "action finished");
        }
        ActionStatus::Canceled { reason } => {
            info!(id = %action.id, label = %action.label, tool = %action.tool_name, outcome = "canceled", duration_ms, reason = %reason, "action finished");
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
