//! `Txn`: what the store's rules need of one write transaction. Claiming, finishing,
//! retrying, recurring, plan runs and the outbox are written once, as functions generic over
//! it, and every backend (redb's `Tables`, PostgreSQL's `PgTxn`) provides these primitives: reading and
//! writing an action with its indexes, the due range, the runs of a series, a plan run's
//! header, steps, queue and events, the notification settings and the outbox.
//!
//! The rules are generic rather than behind a trait object, so the redb path compiles to
//! direct calls on its tables, as if written for redb alone.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::{Action, StatusKind};
use crate::notify::{Notification, NotifyConfig};
use crate::plan::{Plan, PlanGraph, PlanRun, RunEvent, StepState};

/// One write transaction of a backend, as the store's rules use it. Nothing is visible to
/// other transactions until the backend commits it.
pub(crate) trait Txn {
    /// The action `id`, with its body.
    fn get(&mut self, id: Uuid) -> Result<Option<Action>, StoreError>;
    /// Writes `new` in place of `old` (the same action as last read; None for a new one),
    /// with every index in step. The change feed and the outbox are the caller's (`put`).
    fn store(&mut self, old: Option<&Action>, new: &Action) -> Result<(), StoreError>;
    /// Writes `new` in place of `old` when nothing indexed differs between them.
    fn store_record(&mut self, old: &Action, new: &Action) -> Result<(), StoreError>;
    /// Stores a webhook action dispatched from the inbox, whose body `ingest` already wrote.
    fn store_dispatched(&mut self, light: &Action) -> Result<(), StoreError>;
    /// Removes `old` with every index entry of it.
    fn remove(&mut self, old: &Action) -> Result<(), StoreError>;
    /// Up to `want` keys of the due index (`due_key`) after `after`, up to `until`, earliest
    /// first.
    fn due(
        &mut self,
        after: Option<[u8; 24]>,
        until: DateTime<Utc>,
        want: usize,
    ) -> Result<Vec<[u8; 24]>, StoreError>;
    /// A run of `series` still going, if any.
    fn running_in_series(&mut self, series: Uuid) -> Result<Option<Uuid>, StoreError>;
    /// The newest scheduled occurrence of `series`.
    fn series_head(&mut self, series: Uuid) -> Result<Option<Uuid>, StoreError>;
    /// Ids of every action in `kind`, oldest update first.
    fn ids_with_status(&mut self, kind: StatusKind) -> Result<Vec<Uuid>, StoreError>;
    /// Turns up to `limit` acknowledged webhook deliveries into actions, oldest first.
    /// Returns how many, and whether more wait.
    fn dispatch_inbox(
        &mut self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(usize, bool), StoreError>;
    /// Dispatches the delivery `id` if it still waits, so a change by id finds its action
    /// (as of `now`, or of its arrival when None).
    fn dispatch_waiting(&mut self, id: Uuid, now: Option<DateTime<Utc>>) -> Result<(), StoreError>;

    /// The header of plan run `run`.
    fn plan_run(&mut self, run: Uuid) -> Result<Option<PlanRun>, StoreError>;
    /// The plan run `run` follows (as it was when the run started).
    fn plan_graph(&mut self, run: Uuid) -> Result<Arc<PlanGraph>, StoreError>;
    /// Writes a run's header.
    fn save_plan_run(&mut self, run: &PlanRun) -> Result<(), StoreError>;
    /// Stores what a new run keeps besides its header and steps: its plan and its places
    /// in the listings.
    fn store_new_run(&mut self, run: &PlanRun, plan: &Plan) -> Result<(), StoreError>;
    /// Step `index` of run `run`.
    fn step(&mut self, run: Uuid, index: u32) -> Result<StepState, StoreError>;
    /// Every step of run `run`, in plan order.
    fn steps(&mut self, run: Uuid) -> Result<Vec<StepState>, StoreError>;
    /// Writes step `index` of run `run`.
    fn set_step(&mut self, run: Uuid, index: u32, state: &StepState) -> Result<(), StoreError>;
    /// Holds a ready step of `run` until the run has a place for it.
    fn queue_step(&mut self, run: Uuid, index: u32) -> Result<(), StoreError>;
    /// Takes a step out of its run's queue.
    fn unqueue_step(&mut self, run: Uuid, index: u32) -> Result<(), StoreError>;
    /// The first step of `run` in its queue, in plan order.
    fn first_queued(&mut self, run: Uuid) -> Result<Option<u32>, StoreError>;
    /// Appends an event to its run's log (and to the events this transaction added).
    fn add_event(&mut self, event: RunEvent) -> Result<(), StoreError>;
    /// The plan runs' events this transaction added, in order.
    fn take_new_events(&mut self) -> Vec<RunEvent>;

    /// The stored notification settings (None when no daemon stored any).
    fn notify_config(&mut self) -> Result<Option<&NotifyConfig>, StoreError>;
    /// Queues a new notification.
    fn add_notification(&mut self, note: &Notification) -> Result<(), StoreError>;

    /// Stores the log of attempt `attempt` of action `id` (see [`crate::logs`]); it goes
    /// when the action is removed.
    fn put_log(&mut self, id: Uuid, attempt: u32, log: &[u8]) -> Result<(), StoreError>;

    /// Tells the node running `action` (its `cancel` set) to stop it, once this commits. On
    /// redb the daemon is the one process and the caller tells its engine itself.
    fn announce_cancel(&mut self, action: &Action) -> Result<(), StoreError>;
}

/// A backend that runs the store's rules in write transactions of its own: the write
/// operations of `Store` that are nothing but a rule are written once over it (`store::api`).
pub(crate) trait Writes {
    type Tx<'a>: Txn;
    /// Runs `work` in one write transaction and commits what it did; an error leaves the
    /// store as it was. `work` may run more than once (PostgreSQL runs a transaction again
    /// after a deadlock), so it must have no effect outside the transaction.
    fn write<T>(
        &self,
        work: impl FnMut(&mut Self::Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
}
