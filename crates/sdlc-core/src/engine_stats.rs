//! What the engine is doing right now (busy slots, claimed ahead, its last commit, whether
//! start-up recovery is done), for the dashboard's health panel, `/metrics` and readiness.
//! The loop stores plain numbers once per turn; readers take a snapshot without locking
//! anything the loop needs.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Shared between the engine (writer) and status readers.
#[derive(Debug)]
pub struct EngineStats {
    started_at: DateTime<Utc>,
    max_concurrency: usize,
    busy: AtomicUsize,
    claimed_ahead: AtomicUsize,
    commits: AtomicU64,
    /// Milliseconds since the epoch of the last settle's commit; 0 before the first.
    last_commit_ms: AtomicI64,
    /// True once start-up recovery is committed and the loop runs.
    ready: tokio::sync::watch::Sender<bool>,
}

/// One reading of [`EngineStats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub started_at: DateTime<Utc>,
    pub uptime_secs: i64,
    pub busy: usize,
    pub max_concurrency: usize,
    pub claimed_ahead: usize,
    pub commits: u64,
    pub last_commit_at: Option<DateTime<Utc>>,
}

impl EngineStats {
    pub fn new(started_at: DateTime<Utc>, max_concurrency: usize) -> EngineStats {
        EngineStats {
            started_at,
            max_concurrency,
            busy: AtomicUsize::new(0),
            claimed_ahead: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
            last_commit_ms: AtomicI64::new(0),
            ready: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Watches for the engine's start-up recovery to be done (then it turns true, for good).
    pub fn ready(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready.subscribe()
    }

    pub(crate) fn set_ready(&self) {
        self.ready.send_replace(true);
    }

    pub(crate) fn set_load(&self, busy: usize, claimed_ahead: usize) {
        self.busy.store(busy, Ordering::Relaxed);
        self.claimed_ahead.store(claimed_ahead, Ordering::Relaxed);
    }

    pub(crate) fn committed(&self, at: DateTime<Utc>) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.last_commit_ms
            .store(at.timestamp_millis(), Ordering::Relaxed);
    }

    pub fn snapshot(&self, now: DateTime<Utc>) -> StatsSnapshot {
        let last = self.last_commit_ms.load(Ordering::Relaxed);
        StatsSnapshot {
            started_at: self.started_at,
            uptime_secs: (now - self.started_at).num_seconds().max(0),
            busy: self.busy.load(Ordering::Relaxed),
            max_concurrency: self.max_concurrency,
            claimed_ahead: self.claimed_ahead.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            last_commit_at: (last > 0)
                .then(|| DateTime::from_timestamp_millis(last))
                .flatten(),
        }
    }
}
