//! The store: the durable home of every action, behind one interface ([`Store`]) with two
//! backends below it, siblings that never import each other:
//!
//! - [`redb`]: `ActionDb`, the embedded default, one file in `.sdlc/`.
//! - [`pg`]: `PgStore`, PostgreSQL, shared by several daemons (`--db postgres://...`).
//!
//! What both do the same way lives here, written once: the rules of every write operation
//! ([`rules`], [`plans`], [`outbox`], generic over one write transaction, [`txn::Txn`]),
//! the stored form of a record ([`codec`]), the change feed ([`changes`]), and the types the
//! interface speaks (pages, filters, what a settle did). A backend opens a transaction, runs
//! a rule, commits; the rules never see which backend they run on.
//!
//! What this module does not do: decide when things run (the engine does) or validate tool
//! input (the service layer does).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::model::{Action, ActionStatus, StatusKind};

mod api;
pub(crate) mod changes;
pub(crate) mod codec;
pub(crate) mod history;
pub mod outbox;
pub mod pg;
pub(crate) mod plans;
pub mod redb;
pub(crate) mod rules;
mod sessions;
pub(crate) mod txn;

pub use crate::plan::view::counts_json;
pub use api::{Store, guarded};
pub use changes::{Change, Changes};
pub use codec::SCHEMA_VERSION;
pub(crate) use codec::{decode_json, encode_json};
pub use history::{Bodies, HistoryCursor, HistoryFilter, HistoryPage};
pub use plans::{CANCELED_BY_USER, Retried, RunDetail, RunFilter, parse_run_cursor, run_cursor};
pub(crate) use plans::{cached_graph, graph_from};
pub use redb::{ActionDb, integrity, private_file};
pub(crate) use sessions::sort_newest_first;
pub use sessions::{SessionListing, UiSession};

/// Why the database refuses work, for status reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StorageFault {
    /// When the first write failed.
    pub since: DateTime<Utc>,
    /// What failed, as the operating system said it.
    pub detail: String,
    /// The file system holding the database is full (ENOSPC, or nearly no space left).
    pub disk_full: bool,
    /// Failed attempts to reopen the file since.
    pub reopen_attempts: u32,
    /// The file was deleted or replaced while open: it is never reopened at its path (that
    /// would start an empty database); `check_in_place` puts it back instead.
    #[serde(default)]
    pub file_gone: bool,
    /// The file was found damaged: reopening it verifies it first.
    pub damaged: bool,
}

/// How long a delivery id is remembered.
pub(crate) const DEDUPE_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// What storing one delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// The id to answer with: the new delivery's, or the first one's for a repeat.
    pub id: Uuid,
    /// A repeat of a delivery id seen on this route within a day: nothing was stored.
    pub duplicate: bool,
}

/// What one settle records besides claiming.
#[derive(Debug, Default, Clone)]
pub struct SettleWork {
    /// Finished runs and the status each ends in.
    pub outcomes: Vec<(Uuid, ActionStatus)>,
    /// The log excerpt of each finished run (see `tool::log_excerpt`), by action.
    pub excerpts: Vec<(Uuid, Option<String>)>,
    /// The whole log of each finished run that printed anything, in its stored form (see
    /// [`crate::logs`]), by action: stored as the log of the attempt that ended.
    pub logs: Vec<(Uuid, std::sync::Arc<[u8]>)>,
    /// Actions claimed ahead whose tool never started (see [`ActionDb::return_unstarted`]).
    pub returned: Vec<Uuid>,
    /// Claimed actions whose tool could not start for a passing lack of resources: handed
    /// back, due again at the time given.
    pub deferred: Vec<(Uuid, DateTime<Utc>)>,
    /// Actions targeting a plan whose run is ready to store: the run starts, and the action
    /// stays Running until it ends.
    pub plan_starts: Vec<(Uuid, crate::plan::NewRun)>,
    /// How many steps of one run the claim may take.
    pub step_claim: StepClaim,
}

impl SettleWork {
    /// The actions whose claim this work ends: finished, handed back or deferred.
    pub fn ended_claims(&self) -> Vec<Uuid> {
        self.outcomes
            .iter()
            .map(|(id, _)| *id)
            .chain(self.returned.iter().copied())
            .chain(self.deferred.iter().map(|(id, _)| *id))
            .collect()
    }
}

/// Which actions `list` returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<StatusKind>,
    pub tool: Option<String>,
    /// At most this many, newest first. None for all.
    pub limit: Option<usize>,
}

/// What opening the database found.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenReport {
    /// The caller said the last owner did not stop cleanly.
    pub unclean: bool,
    /// The whole file was verified: its last owner died, or it changed since a clean close.
    pub verified: bool,
    /// redb repaired the file (at open, or when its integrity was checked): after a crash it
    /// rebuilds its allocator state from a walk that verifies every page's checksum.
    pub repaired: bool,
}

/// What `startup_recovery` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Actions that were Running: now Failed as interrupted, or Pending for a retry.
    pub interrupted: Vec<Uuid>,
    /// How many of them go back to Pending because their retry policy allows another attempt.
    pub retried: usize,
    /// Actions that were claimed ahead but whose tool never started: Pending again, due at
    /// once, their attempt not counted.
    pub returned: Vec<Uuid>,
    /// The plan runs whose steps were among them (their events changed).
    pub runs: Vec<Uuid>,
}

/// What marking tools as started answers (`Store::mark_starts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartMarks {
    /// Marked: their tools may start, by `start_by`.
    pub marked: Vec<Uuid>,
    /// Still this process's claims, but their lease is too close to its end to start a tool
    /// under it: not marked, to be handed back.
    pub lapsed: Vec<Uuid>,
    /// When the marked claims' leases (the earliest of them), less a margin, run out, on
    /// [`crate::clock::boot_clock`]: a tool not started by then must not start, since another
    /// node may have recovered its claim. None where claims have no lease (redb).
    pub start_by: Option<std::time::Duration>,
}

/// The result of finishing one run.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The action after the run: Completed or Failed, or Pending again when it will be
    /// retried (at `retry_at`).
    pub action: Action,
    /// An occurrence that was queued behind this run (`--overlap queue-one`), now due.
    pub released: Option<Action>,
}

/// What one `settle` call recorded and claimed.
#[derive(Debug, Clone, Default)]
pub struct Settled {
    pub finished: Vec<Finished>,
    pub claimed: Vec<Action>,
    /// Webhook deliveries turned into actions.
    pub dispatched: usize,
    /// More deliveries wait in the inbox than one settle dispatches.
    pub inbox_waiting: bool,
    /// Events of plan runs, in order (committed with the rest).
    pub events: Vec<crate::plan::RunEvent>,
}

/// How many steps of one plan run a settle may claim (see `plan::decide::may_claim`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StepClaim {
    /// Up to the run's `max_concurrency`: each claim is for a free slot.
    #[default]
    WithinLimit,
    /// Up to twice it: the engine claims ahead of its free slots and starts no more than the
    /// limit at once.
    AheadOfSlots,
}

/// Pending and not held behind a running occurrence: in the due index.
pub(crate) fn is_due_indexed(action: &Action) -> bool {
    match action.status.kind() {
        // A run reported from outside starts when its reporter says, never by the engine.
        StatusKind::Pending => action.queued_behind.is_none() && !action.is_external(),
        // Due when its approval times out.
        StatusKind::AwaitingApproval => action
            .approval
            .as_ref()
            .is_some_and(|a| a.deadline.is_some()),
        _ => false,
    }
}

/// Times before 1970 sort first; the index stores milliseconds as unsigned.
pub(crate) fn millis(t: DateTime<Utc>) -> u64 {
    t.timestamp_millis().max(0) as u64
}

/// `timestamp_ms (u64 big-endian) ++ uuid (16 bytes)`: byte order is time order.
pub fn due_key(due: DateTime<Utc>, id: Uuid) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&millis(due).to_be_bytes());
    key[8..].copy_from_slice(id.as_bytes());
    key
}

/// Stable on disk: never renumber.
pub(crate) fn status_byte(kind: StatusKind) -> u8 {
    match kind {
        StatusKind::Pending => 1,
        StatusKind::Running => 2,
        StatusKind::Completed => 3,
        StatusKind::Failed => 4,
        StatusKind::Paused => 5,
        StatusKind::Skipped => 6,
        StatusKind::AwaitingApproval => 7,
        StatusKind::Canceled => 8,
    }
}

/// The id at the end of an index key.
pub(crate) fn id_from_key(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).expect("index keys end with a 16-byte id")
}

/// The stored log of attempt `attempt` of action `id` (the newest one stored when None),
/// decoded: its attempt and lines. None when that attempt printed nothing (or is not over).
pub fn stored_lines(
    db: &dyn Store,
    id: uuid::Uuid,
    attempt: Option<u32>,
) -> Result<Option<(u32, Vec<crate::logs::LogLine>)>, crate::StoreError> {
    let Some(log) = db.run_log(id, attempt)? else {
        return Ok(None);
    };
    let lines = crate::logs::decode(&log.bytes)
        .map_err(|detail| crate::StoreError::Corrupt { id, detail })?;
    Ok(Some((log.attempt, lines)))
}
