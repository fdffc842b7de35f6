//! `Store`: the storage interface, implemented by the embedded redb file ([`ActionDb`]) and
//! by PostgreSQL ([`PgStore`]), chosen once at start. Both run the same rules
//! (`store::rules`); what each method does is documented on `ActionDb`'s method of the same
//! name.
//!
//! The list of operations is written once, below: the trait and both implementations are
//! generated from it, each method forwarding to the backend's own, so neither backend pays
//! more than one call through the interface per operation.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::outbox::TryOutcome;
use super::txn::Writes;
use super::{
    ActionDb, Bodies, Finished, HistoryCursor, HistoryFilter, HistoryPage, Ingested, ListFilter,
    RecoveryReport, Retried, RunDetail, RunFilter, SettleWork, Settled, StartMarks, UiSession,
};
use super::{OpenReport, StorageFault};
use super::{plans, rules};
use crate::access::ApiToken;
use crate::error::StoreError;
use crate::model::{Action, ActionStatus, Decider, StatusKind};
use crate::notify::{DeliveryState, Notification, NotifyConfig, RetrySchedule};
use crate::plan::{NewRun, PlanRun, RunEvent};
use crate::run_group::{GroupCursor, GroupFilter, GroupPage};
use crate::store::pg::PgStore;
use crate::webhook::{Delivery, WebhookRoute};

macro_rules! store_interface {
    (
        $( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*
        rules {
            $( $(#[$rdoc:meta])* fn $rname:ident(&self $(, $rarg:ident: $rty:ty)*) -> $rret:ty
                = $rule:expr; )*
        }
        provided { $($provided:item)* }
    ) => {
        /// The storage interface (see the module's header).
        pub trait Store: Send + Sync + std::fmt::Debug {
            $( $(#[$doc])* fn $name(&self $(, $arg: $ty)*) -> $ret; )*
            $( $(#[$rdoc])* fn $rname(&self $(, $rarg: $rty)*) -> $rret; )*
            $($provided)*
        }

        impl Store for ActionDb {
            $( fn $name(&self $(, $arg: $ty)*) -> $ret { ActionDb::$name(self $(, $arg)*) } )*
            $( fn $rname(&self $(, $rarg: $rty)*) -> $rret { Writes::write(self, $rule) } )*
        }

        impl Store for PgStore {
            $( fn $name(&self $(, $arg: $ty)*) -> $ret { PgStore::$name(self $(, $arg)*) } )*
            $( fn $rname(&self $(, $rarg: $rty)*) -> $rret { Writes::write(self, $rule) } )*
        }
    };
}

store_interface! {
    /// Whether other processes write to this store while this one runs (PostgreSQL, shared
    /// by nodes and commands): then what a process caches of it may be behind.
    fn shared(&self) -> bool;
    /// Where the data is, for messages and `status`: the file's path, or the database's URL
    /// with its password masked.
    fn location(&self) -> String;
    /// Why the store refuses writes, while it does (a redb file that failed; PostgreSQL
    /// reports its failures per operation instead).
    fn fault(&self) -> Option<StorageFault>;
    /// Reopens the store after a fault (see `ActionDb::reopen`).
    fn reopen(&self) -> Result<(), StoreError>;
    /// Notices the store's file deleted or replaced (see `ActionDb::check_in_place`).
    fn check_in_place(&self) -> Option<StorageFault>;
    /// What opening the store found (a redb file's last owner died, its check).
    fn open_report(&self) -> OpenReport;
    /// Verifies every stored record; whether anything was repaired.
    fn verify(&self) -> Result<bool, StoreError>;
    /// Runs `work` with the backend's containment (see `ActionDb::guarded`); the typed form
    /// is [`guarded`].
    fn contain(&self, work: &mut dyn FnMut() -> Result<(), StoreError>) -> Result<(), StoreError>;
    /// A feed of what each commit from now on changes.
    fn changes(&self) -> tokio::sync::broadcast::Receiver<super::Changes>;
    /// The action with this id.
    fn get(&self, id: Uuid) -> Result<Option<Action>, StoreError>;
    /// Up to `limit` action ids whose 32 hex digits start or end with `fragment` (lower-case
    /// hex): what a short id (`show 3f9a0c12`) means.
    fn ids_matching(&self, fragment: &str, limit: usize) -> Result<Vec<Uuid>, StoreError>;
    /// The stored log of attempt `attempt` of action `id` (the newest one stored when None;
    /// on a shared store, a running attempt's as its node last wrote it).
    fn run_log(&self, id: Uuid, attempt: Option<u32>)
        -> Result<Option<crate::logs::StoredLog>, StoreError>;
    /// Stores what runs in flight printed so far, for readers on other nodes (a shared
    /// store only; see `PgStore::put_partial_logs`).
    fn put_partial_logs(&self, logs: &[(Uuid, u32, Vec<u8>)]) -> Result<(), StoreError>;
    /// The newest occurrence of the series `id` belongs to.
    fn series_head(&self, id: Uuid) -> Result<Option<Action>, StoreError>;
    /// The engine's one write per wake-up: turns acknowledged webhook deliveries into
    /// actions, records `work` (finished runs and the next occurrences of recurring ones,
    /// hand-backs, plan starts), then claims up to `claim_limit` actions due by
    /// `claim_until` (each as of its own due time), all in one transaction. Fails as a whole
    /// if an outcome names an action that is not Running.
    fn settle_work(&self, work: SettleWork, now: DateTime<Utc>, claim_until: DateTime<Utc>,
        claim_limit: usize) -> Result<Settled, StoreError>;
    /// Recovers what a dead daemon left Running.
    fn startup_recovery_knowing(&self, now: DateTime<Utc>, started: Option<&HashSet<Uuid>>)
        -> Result<RecoveryReport, StoreError>;
    /// Marks the tools of claimed actions as about to start, under this process's claims;
    /// answers those it may start (the others were taken over by another node). On a shared
    /// store a tool starts only once this answered: a dead node's claim without the mark
    /// provably never started, and goes back to Pending.
    fn mark_starts(&self, ids: &[Uuid], now: DateTime<Utc>) -> Result<StartMarks, StoreError>;
    /// Stores a manual run of an action, outside its schedule.
    fn run_now(&self, id: Uuid, now: DateTime<Utc>) -> Result<Action, StoreError>;
    /// Actions matching `filter`, newest first.
    fn list(&self, filter: &ListFilter) -> Result<Vec<Action>, StoreError>;
    /// How many actions are stored in each status.
    fn count_by_status(&self) -> Result<Vec<(StatusKind, u64)>, StoreError>;
    /// The earliest due time among Pending actions.
    fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// A plan run, its steps and its plan.
    fn get_run(&self, run: Uuid) -> Result<Option<RunDetail>, StoreError>;
    /// Plan runs matching `filter`, newest first.
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<PlanRun>, StoreError>;
    /// Events of a plan run after sequence number `after`.
    fn run_events(&self, run: Uuid, after: Option<u64>, limit: usize)
        -> Result<Vec<RunEvent>, StoreError>;
    /// Every Running action this process claimed and does not know of (`known`) goes back
    /// to Pending: a claim whose commit failed to answer yet was stored.
    fn return_unknown_running(&self, known: &HashSet<Uuid>, now: DateTime<Utc>)
        -> Result<Vec<Uuid>, StoreError>;
    /// A page of history, newest first.
    fn history_page(&self, filter: &HistoryFilter, cursor: Option<HistoryCursor>, limit: usize,
        bodies: Bodies) -> Result<HistoryPage, StoreError>;
    /// A page of run groups (`crate::run_group`), newest first.
    fn run_groups(&self, filter: &GroupFilter, cursor: Option<GroupCursor>, limit: usize)
        -> Result<GroupPage, StoreError>;
    /// Pending actions due before `until`, soonest first.
    fn due_before(&self, until: DateTime<Utc>, limit: usize) -> Result<Vec<Action>, StoreError>;
    /// The head of every recurring series.
    fn recurring_heads(&self) -> Result<Vec<Action>, StoreError>;
    /// Deletes finished actions last updated before `cutoff`.
    fn prune_finished(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<usize, StoreError>;
    /// Stores a new webhook route.
    fn insert_route(&self, route: &WebhookRoute) -> Result<(), StoreError>;
    /// Every webhook route, by path.
    fn routes(&self) -> Result<Vec<WebhookRoute>, StoreError>;
    /// The webhook route at `path`.
    fn route_by_path(&self, path: &str) -> Result<Option<WebhookRoute>, StoreError>;
    /// Removes a webhook route by id or path.
    fn delete_route(&self, id_or_path: &str) -> Result<WebhookRoute, StoreError>;
    /// Stores acknowledged webhook deliveries in one transaction.
    fn ingest(&self, deliveries: &[Delivery], now: DateTime<Utc>)
        -> Result<Vec<Ingested>, StoreError>;
    /// Deliveries acknowledged and not yet actions.
    fn inbox_len(&self) -> Result<u64, StoreError>;
    /// Stores the daemon's notification settings.
    fn set_notify_config(&self, config: &NotifyConfig, now: DateTime<Utc>)
        -> Result<usize, StoreError>;
    /// The stored notification settings.
    fn notify_config(&self) -> Result<NotifyConfig, StoreError>;
    /// Pending notifications due by `now`, for this process to send.
    fn due_notifications(&self, now: DateTime<Utc>, limit: usize)
        -> Result<Vec<Notification>, StoreError>;
    /// When the next pending notification is due.
    fn next_notification_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Records the tries of one round of notifications.
    fn record_notifications(&self, tries: &[(Uuid, TryOutcome)], schedule: RetrySchedule,
        now: DateTime<Utc>) -> Result<Vec<Notification>, StoreError>;
    /// Notifications newest first.
    fn list_notifications(&self, state: Option<DeliveryState>, limit: usize)
        -> Result<Vec<Notification>, StoreError>;
    /// Forgets sent and failed notifications created before `cutoff`.
    fn prune_notifications(&self, cutoff: DateTime<Utc>, limit: usize)
        -> Result<usize, StoreError>;
    /// Stores a dashboard session.
    fn create_ui_session(&self, key: [u8; 32], session: &UiSession, now: DateTime<Utc>)
        -> Result<(), StoreError>;
    /// The dashboard session under `key`, unless expired.
    fn ui_session(&self, key: [u8; 32], now: DateTime<Utc>)
        -> Result<Option<UiSession>, StoreError>;
    /// Ends a dashboard session.
    fn end_ui_session(&self, key: [u8; 32]) -> Result<Option<UiSession>, StoreError>;
    /// The live dashboard sessions with their keys, newest first.
    fn ui_sessions(&self, now: DateTime<Utc>) -> Result<Vec<([u8; 32], UiSession)>, StoreError>;
    /// Stores a named API token under the digest of its secret (refused when the name is taken).
    fn add_api_token(&self, digest: [u8; 32], token: &ApiToken) -> Result<(), StoreError>;
    /// Every named token, by name.
    fn api_tokens(&self) -> Result<Vec<ApiToken>, StoreError>;
    /// The token whose secret has this digest.
    fn api_token_by_digest(&self, digest: [u8; 32]) -> Result<Option<ApiToken>, StoreError>;
    /// Removes the token named `name`; it no longer opens anything.
    fn remove_api_token(&self, name: &str) -> Result<ApiToken, StoreError>;
    /// Notes that the token with this digest was used at `at`.
    fn touch_api_token(&self, digest: [u8; 32], at: DateTime<Utc>) -> Result<(), StoreError>;

    rules {
        /// Stores a new action.
        fn insert(&self, action: &Action) -> Result<(), StoreError> =
            |t| rules::insert_many_in(t, std::slice::from_ref(action));
        /// Stores new actions in one transaction; refuses an id already stored.
        fn insert_many(&self, actions: &[Action]) -> Result<(), StoreError> =
            |t| rules::insert_many_in(t, actions);
        /// Moves an action to `status`, refusing transitions the lifecycle forbids.
        fn set_status(&self, id: Uuid, status: ActionStatus, now: DateTime<Utc>)
            -> Result<Action, StoreError> = |t| rules::set_status_in(t, id, status.clone(), now);
        /// Cancels an action: a running one is asked to stop (SIGTERM, then SIGKILL after
        /// `grace_ms`; it ends Canceled), a pending one becomes Canceled at once; given an
        /// earlier occurrence of a recurring action, its pending occurrence, which ends the
        /// series (as canceling a running occurrence does too).
        fn cancel_by(&self, id: Uuid, by: &str, grace_ms: u64, now: DateTime<Utc>)
            -> Result<Action, StoreError> = |t| rules::cancel_in(t, id, by, grace_ms, now);
        /// Pauses the pending occurrence of the series `id` belongs to: it never fires
        /// until resumed.
        fn pause(&self, id: Uuid, reason: Option<String>, now: DateTime<Utc>)
            -> Result<Action, StoreError> = |t| rules::pause_in(t, id, reason.clone(), now);
        /// Resumes a paused action: Pending again, due at its own time; missed slots follow
        /// its catch-up policy.
        fn resume(&self, id: Uuid, now: DateTime<Utc>) -> Result<Action, StoreError> =
            |t| rules::resume_in(t, id, now);
        /// Approves an action awaiting approval: it completes with the result it waited
        /// with, and what waited on it goes on, in one transaction.
        fn approve(&self, id: Uuid, by: &Decider, note: Option<String>, now: DateTime<Utc>)
            -> Result<Action, StoreError> = |t| rules::approve_in(t, id, by, note.clone(), now);
        /// Rejects an action awaiting approval: it fails with `rejected by <by>: <note>`.
        fn reject(&self, id: Uuid, by: &Decider, note: Option<String>, now: DateTime<Utc>)
            -> Result<Action, StoreError> = |t| rules::reject_in(t, id, by, note.clone(), now);
        /// Replaces a pending or paused action by `new` (its edited form, checked by
        /// `service::prepare_edit`), unless it changed since `seen` was read.
        fn replace_edited(&self, seen: &Action, new: &Action, now: DateTime<Utc>)
            -> Result<Action, StoreError> = |t| rules::replace_edited_in(t, seen, new, now);
        /// Stores a new plan run and starts its first steps (Pending actions, due now).
        fn start_run(&self, new: &NewRun, now: DateTime<Utc>) -> Result<PlanRun, StoreError> =
            |t| plans::start_run_in(t, new, None, now);
        /// Cancels a running plan run: steps not started are canceled now, running ones are
        /// stopped as `cancel_by` stops an action, and the run ends `canceled` when they have.
        /// Answers the run and the actions it asked to stop.
        fn cancel_run_by(&self, run: Uuid, by: &str, grace_ms: u64, now: DateTime<Utc>)
            -> Result<(PlanRun, Vec<Uuid>), StoreError> = |t| {
                plans::require_run(t, run)?;
                plans::cancel_run_in(t, run, by, grace_ms, now)
            };
        /// Runs again what did not succeed in a finished plan run (or `only` and what
        /// follows it).
        fn retry_run(&self, run: Uuid, only: Option<&str>, now: DateTime<Utc>)
            -> Result<Retried, StoreError> = |t| {
                plans::require_run(t, run)?;
                plans::retry_run_in(t, run, only, now)
            };
        /// Applies a report to a run reported from outside (`crate::external`): it starts,
        /// or ends as the report says, with `log` (its stored form and excerpt) kept as its
        /// log; a run of the daemon's own, or one already ended, is refused.
        fn report(&self, id: Uuid, checked: &crate::external::CheckedReport,
            log: Option<&crate::external::ReportedLog>, now: DateTime<Utc>)
            -> Result<Action, StoreError> = |t| rules::report_in(t, id, checked, log, now);
        /// Removes an action that is not Running, with its index entries.
        fn delete(&self, id: Uuid) -> Result<Action, StoreError> = |t| rules::delete_in(t, id);
    }
    provided {
        /// [`Store::cancel_run_by`] the user, with the default grace.
        fn cancel_run(&self, run: Uuid, now: DateTime<Utc>) -> Result<PlanRun, StoreError> {
            Ok(self
                .cancel_run_by(run, "the user", crate::model::DEFAULT_CANCEL_GRACE_MS, now)?
                .0)
        }

        /// [`Store::cancel_by`] the user, with the default grace.
        fn cancel(&self, id: Uuid, now: DateTime<Utc>) -> Result<Action, StoreError> {
            self.cancel_by(id, "the user", crate::model::DEFAULT_CANCEL_GRACE_MS, now)
        }

        /// The ids [`Store::mark_starts`] marked.
        fn mark_started(&self, ids: &[Uuid], now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
            Ok(self.mark_starts(ids, now)?.marked)
        }

        /// Claims up to `limit` actions due at or before `now`, earliest first: each becomes
        /// Running (attempt + 1) in one transaction, and is returned.
        fn claim_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Action>, StoreError> {
            Ok(self.settle(Vec::new(), now, limit)?.claimed)
        }

        /// Records the outcomes of finished runs, then claims up to `claim_limit` due
        /// actions, in one transaction (see `settle_work`).
        fn settle(
            &self,
            outcomes: Vec<(Uuid, ActionStatus)>,
            now: DateTime<Utc>,
            claim_limit: usize,
        ) -> Result<Settled, StoreError> {
            self.settle_returning(outcomes, Vec::new(), now, claim_limit)
        }

        /// Records how a Running action ended; for a recurring action, stores its next
        /// occurrence in the same transaction. On PostgreSQL an outcome for a claim another
        /// node took over is refused (`StoreError::ClaimLost`).
        fn complete(
            &self,
            id: Uuid,
            outcome: ActionStatus,
            now: DateTime<Utc>,
        ) -> Result<Finished, StoreError> {
            let mut finished = self.settle(vec![(id, outcome)], now, 0)?.finished;
            finished.pop().ok_or(StoreError::ClaimLost { id })
        }

        /// `settle`, also handing back claimed actions whose tool never started.
        fn settle_returning(
            &self,
            outcomes: Vec<(Uuid, ActionStatus)>,
            returned: Vec<Uuid>,
            now: DateTime<Utc>,
            claim_limit: usize,
        ) -> Result<Settled, StoreError> {
            self.settle_claiming_until(outcomes, returned, Vec::new(), now, now, claim_limit)
        }

        /// `settle_returning` that also claims what comes due by `claim_until`, and hands
        /// back `deferred` actions due again at the time given.
        fn settle_claiming_until(
            &self,
            outcomes: Vec<(Uuid, ActionStatus)>,
            returned: Vec<Uuid>,
            deferred: Vec<(Uuid, DateTime<Utc>)>,
            now: DateTime<Utc>,
            claim_until: DateTime<Utc>,
            claim_limit: usize,
        ) -> Result<Settled, StoreError> {
            let work = SettleWork {
                outcomes,
                returned,
                deferred,
                ..SettleWork::default()
            };
            self.settle_work(work, now, claim_until, claim_limit)
        }

        /// `complete` for many actions in one transaction.
        fn complete_many(
            &self,
            outcomes: Vec<(Uuid, ActionStatus)>,
            now: DateTime<Utc>,
        ) -> Result<Vec<Finished>, StoreError> {
            Ok(self.settle(outcomes, now, 0)?.finished)
        }

        /// Recovers what a dead daemon left Running, every such action counted as started.
        fn startup_recovery(&self, now: DateTime<Utc>) -> Result<RecoveryReport, StoreError> {
            self.startup_recovery_knowing(now, None)
        }
    }
}

/// Runs `work` on `db` with the backend's containment (a panic inside a redb read becomes an
/// error naming the file, and a failing file becomes the store's fault). Long-lived owners
/// (the engine, the server) call the store through this.
pub fn guarded<T>(
    db: &dyn Store,
    work: impl FnOnce(&dyn Store) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut work = Some(work);
    let mut value = None;
    db.contain(&mut || {
        let work = work.take().expect("contain runs its work once");
        value = Some(work(db)?);
        Ok(())
    })?;
    Ok(value.expect("contain ran its work"))
}
