//! The tick loop: the one place that decides when actions run.
//!
//! One loop, one `select!` over a closed set of events: shutdown, a run finishing, a wake-up
//! (an action was added or a webhook arrived), and a timer set to the earliest due time or
//! the heartbeat (`tick`), whichever is sooner. After every event the loop settles: in one
//! transaction it records the runs that finished and claims due actions, at most as many as
//! there are free slots in the pool (`max_concurrency`). Claiming only what can start keeps
//! "Running" meaning "a process is on it", so a crash never fails actions that never began.
//!
//! Tool runs are tasks in a `JoinSet`; the loop never awaits one, so a slow tool never stops
//! it from ticking. Database work goes through `spawn_blocking` (a commit waits for fsync).
//!
//! Shutdown: stop claiming, give running tools `shutdown_grace`, record what finished; runs
//! still going are killed (their process groups too) and stay Running in the database, to be
//! recovered as interrupted at the next start.

use std::collections::HashMap;
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
use crate::store::{ActionDb, Settled};
use crate::tool::{
    RunLimits, RunRecordAt, ToolMode, outcome_to_status, run_tool_recorded, tool_script,
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
}

/// How many finished actions one pruning pass deletes: small enough that a pass never holds
/// up a tick noticeably, large enough to keep up with any realistic rate of runs.
const PRUNE_BATCH: usize = 1000;
/// Longest pause between pruning passes once the backlog is cleared (a shorter heartbeat
/// prunes once per heartbeat).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Wakes the loop at once (after an action is added or a webhook is stored).
#[derive(Debug, Clone)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        // notify_one stores a permit when the loop is busy, so no wake-up is lost.
        self.0.notify_one();
    }
}

/// What a finished `run` did, for the daemon's last log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSummary {
    pub recovered: usize,
    /// Tool processes a dead daemon left running, found at start.
    pub orphans: usize,
    pub completed: u64,
    pub failed: u64,
    /// Runs still going when the grace period ended (left Running for recovery).
    pub abandoned: usize,
}

/// The tick loop over one database.
pub struct Engine {
    db: Arc<ActionDb>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    notify: Arc<Notify>,
}

/// One run that ended, waiting to be recorded.
struct RunDone {
    id: Uuid,
    status: ActionStatus,
    duration: Duration,
}

/// Bookkeeping for the runs in flight.
struct Pool {
    tasks: JoinSet<RunDone>,
    /// Which action each task runs, so even a panicked task's action gets an outcome.
    ids: HashMap<tokio::task::Id, Uuid>,
    done: Vec<RunDone>,
    /// Where runs are logged while they live (for orphan detection after a crash).
    run_log: Option<Arc<crate::orphans::RunLog>>,
}

impl Pool {
    fn record(&mut self, joined: Result<(tokio::task::Id, RunDone), tokio::task::JoinError>) {
        match joined {
            Ok((task, run)) => {
                self.ids.remove(&task);
                self.done.push(run);
            }
            Err(err) => {
                let Some(id) = self.ids.remove(&err.id()) else {
                    return;
                };
                if err.is_cancelled() {
                    // Cancelled at shutdown: left Running on purpose, recovered at next start.
                    return;
                }
                error!(%id, "a run task panicked: {err}");
                self.done.push(RunDone {
                    id,
                    status: ActionStatus::Failed {
                        reason: format!("internal error while running the tool: {err}"),
                    },
                    duration: Duration::ZERO,
                });
            }
        }
    }

    fn drain_ready(&mut self) {
        while let Some(joined) = self.tasks.try_join_next_with_id() {
            self.record(joined);
        }
    }
}

impl Engine {
    pub fn new(db: Arc<ActionDb>, clock: Arc<dyn Clock>, config: EngineConfig) -> Engine {
        Engine {
            db,
            clock,
            config,
            notify: Arc::new(Notify::new()),
        }
    }

    /// A handle that wakes this engine's loop.
    pub fn waker(&self) -> Waker {
        Waker(self.notify.clone())
    }

    /// Recovers what a dead daemon left Running, then runs the loop until `shutdown`
    /// completes. Returns after recording what finished within the grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<EngineSummary> {
        let mut summary = EngineSummary::default();
        if let Some(path) = &self.config.run_log {
            for orphan in crate::orphans::reap(path, self.config.kill_orphans) {
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
        let run_log = match &self.config.run_log {
            Some(path) => Some(Arc::new(
                crate::orphans::RunLog::create(path)
                    .with_context(|| format!("cannot create the run log {}", path.display()))?,
            )),
            None => None,
        };
        let now = self.clock.now();
        let recovery = self
            .blocking(move |db| db.startup_recovery(now))
            .await
            .context("startup recovery failed")?;
        summary.recovered = recovery.interrupted.len();
        for id in &recovery.interrupted {
            warn!(%id, "action was running when the last daemon stopped: marked failed (interrupted)");
        }

        let max = self.config.max_concurrency.max(1);
        let mut pool = Pool {
            tasks: JoinSet::new(),
            ids: HashMap::new(),
            done: Vec::new(),
            run_log,
        };
        tokio::pin!(shutdown);
        let mut next_prune = Instant::now();
        let mut next_due: Option<DateTime<Utc>> = None;
        loop {
            let free = max - pool.tasks.len();
            let more_ready = self
                .settle(&mut pool, free, &mut summary, &mut next_due)
                .await;
            if let Some(keep) = self.config.retention
                && Instant::now() >= next_prune
            {
                let pause = self.prune(keep).await.min(self.config.tick);
                next_prune = Instant::now() + pause;
            }

            let mut wake_at = self.next_wake(pool.tasks.len() < max, next_due);
            if self.config.retention.is_some() {
                wake_at = wake_at.min(next_prune);
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                // More deliveries than one batch: go round again without waiting.
                _ = std::future::ready(()), if more_ready && pool.tasks.len() < max => {}
                Some(joined) = pool.tasks.join_next_with_id(), if !pool.tasks.is_empty() => {
                    pool.record(joined);
                    pool.drain_ready();
                }
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }

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
        // Aborting drops each run's future, which kills its process group.
        pool.tasks.shutdown().await;
        self.settle(&mut pool, 0, &mut summary, &mut next_due).await;
        Ok(summary)
    }

    /// Dispatches webhook deliveries, records finished runs and claims up to `free` due
    /// actions, starting a run for each. Returns whether more work is ready at once (the
    /// inbox held more than one batch, or every free slot was filled).
    async fn settle(
        &self,
        pool: &mut Pool,
        free: usize,
        summary: &mut EngineSummary,
        next_due_cache: &mut Option<DateTime<Utc>>,
    ) -> bool {
        let outcomes: Vec<(Uuid, ActionStatus)> = pool
            .done
            .iter()
            .map(|run| (run.id, run.status.clone()))
            .collect();
        if outcomes.is_empty() && free == 0 {
            return false;
        }
        let now = self.clock.now();
        let batch = outcomes.clone();
        // The next due time is read in the same trip to the blocking pool: one thread hop
        // per wake-up instead of two.
        let settled = match self
            .blocking(move |db| {
                let settled = db.settle(batch, now, free)?;
                let next_due = db.next_due_at()?;
                Ok((settled, next_due))
            })
            .await
        {
            Ok((settled, next_due)) => {
                *next_due_cache = next_due;
                settled
            }
            Err(err) if !outcomes.is_empty() => {
                // One refused outcome fails the batch: record them one by one instead, so a
                // single bad record cannot hold the others back.
                warn!(
                    "recording {} finished runs together failed ({err:#}); recording one by one",
                    outcomes.len()
                );
                let mut finished = Vec::new();
                for (id, status) in outcomes {
                    match self.blocking(move |db| db.complete(id, status, now)).await {
                        Ok(done) => finished.push(done),
                        Err(err) => error!(%id, "could not record the outcome of a run: {err:#}"),
                    }
                }
                Settled {
                    finished,
                    ..Settled::default()
                }
            }
            Err(err) => {
                error!("could not claim due actions: {err:#}");
                return false;
            }
        };

        let durations: HashMap<Uuid, Duration> = pool
            .done
            .drain(..)
            .map(|run| (run.id, run.duration))
            .collect();
        for finished in &settled.finished {
            let action = &finished.action;
            let duration_ms = durations.get(&action.id).map(|d| d.as_millis() as u64);
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
                ActionStatus::Failed { reason } => {
                    summary.failed += 1;
                    warn!(id = %action.id, label = %action.label, tool = %action.tool_name, outcome = "failed", duration_ms, reason = %reason, "action finished");
                }
                _ => {}
            }
            if let Some(released) = &finished.released {
                info!(id = %released.id, series = %released.series, "queued occurrence released");
            }
        }
        if settled.dispatched > 0 {
            debug!(count = settled.dispatched, "webhook deliveries dispatched");
        }
        for action in settled.claimed {
            let id = action.id;
            let task = pool.tasks.spawn(run_action(
                action,
                self.config.root.clone(),
                self.config.limits,
                pool.run_log.clone(),
            ));
            pool.ids.insert(task.id(), id);
        }
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
            .blocking(move |db| db.prune_finished(cutoff, PRUNE_BATCH))
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

    /// When to wake if nothing else happens: the heartbeat, or the earliest due time when
    /// there is a free slot to start it in.
    fn next_wake(&self, has_free_slot: bool, next_due: Option<DateTime<Utc>>) -> Instant {
        let heartbeat = Instant::now() + self.config.tick;
        let Some(due) = next_due.filter(|_| has_free_slot) else {
            return heartbeat;
        };
        let until_due = (due - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
        heartbeat.min(Instant::now() + until_due)
    }

    async fn blocking<T, F>(&self, work: F) -> anyhow::Result<T>
    where
        F: FnOnce(&ActionDb) -> Result<T, crate::StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.db.clone();
        let result = tokio::task::spawn_blocking(move || work(&db))
            .await
            .context("database task failed")?;
        Ok(result?)
    }
}

/// Runs one claimed action's tool and maps the run to the status it ends in.
async fn run_action(
    action: Action,
    root: PathBuf,
    mut limits: RunLimits,
    run_log: Option<Arc<crate::orphans::RunLog>>,
) -> RunDone {
    let started = std::time::Instant::now();
    let status = match tool_script(&root, &action.tool_name) {
        Err(err) => ActionStatus::Failed {
            reason: err.to_string(),
        },
        Ok(script) => {
            if let Some(ms) = action.timeout_ms {
                limits.timeout = Duration::from_millis(ms);
            }
            let env = [
                ("SDLC_ACTION_ID".to_string(), action.id.to_string()),
                ("SDLC_ACTION_LABEL".to_string(), action.label.clone()),
                ("SDLC_ATTEMPT".to_string(), action.attempt.to_string()),
            ];
            let record_at = run_log.map(|log| RunRecordAt {
                log,
                action: action.id,
            });
            let run = run_tool_recorded(
                &script,
                ToolMode::Run,
                &action.tool_input,
                &root,
                &env,
                &limits,
                record_at.as_ref(),
            )
            .await;
            outcome_to_status(&run)
        }
    };
    RunDone {
        id: action.id,
        status,
        duration: started.elapsed(),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
