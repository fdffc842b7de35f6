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

use super::{
    ActionDb, Finished, ListFilter, RecoveryReport, Retried, RunDetail, RunFilter, SettleWork,
    Settled,
};
use crate::error::StoreError;
use crate::model::{Action, ActionStatus, StatusKind};
use crate::pg::PgStore;
use crate::plan::{NewRun, PlanRun, RunEvent};

macro_rules! store_interface {
    (
        $( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*
        provided { $($provided:item)* }
    ) => {
        /// The storage interface (see the module's header).
        pub trait Store: Send + Sync + std::fmt::Debug {
            $( $(#[$doc])* fn $name(&self $(, $arg: $ty)*) -> $ret; )*
            $($provided)*
        }

        impl Store for ActionDb {
            $( fn $name(&self $(, $arg: $ty)*) -> $ret { ActionDb::$name(self $(, $arg)*) } )*
        }

        impl Store for PgStore {
            $( fn $name(&self $(, $arg: $ty)*) -> $ret { PgStore::$name(self $(, $arg)*) } )*
        }
    };
}

store_interface! {
    /// Stores a new action.
    fn insert(&self, action: &Action) -> Result<(), StoreError>;
    /// Stores new actions in one transaction.
    fn insert_many(&self, actions: &[Action]) -> Result<(), StoreError>;
    /// A feed of what each commit from now on changes.
    fn changes(&self) -> tokio::sync::broadcast::Receiver<super::Changes>;
    /// The action with this id.
    fn get(&self, id: Uuid) -> Result<Option<Action>, StoreError>;
    /// The newest occurrence of the series `id` belongs to.
    fn series_head(&self, id: Uuid) -> Result<Option<Action>, StoreError>;
    /// Moves an action to `status`, refusing transitions the lifecycle forbids.
    fn set_status(&self, id: Uuid, status: ActionStatus, now: DateTime<Utc>)
        -> Result<Action, StoreError>;
    /// Claims up to `limit` actions due by `now`.
    fn claim_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Action>, StoreError>;
    /// Records outcomes, then claims, in one transaction.
    fn settle(&self, outcomes: Vec<(Uuid, ActionStatus)>, now: DateTime<Utc>, claim_limit: usize)
        -> Result<Settled, StoreError>;
    /// The engine's settle.
    fn settle_work(&self, work: SettleWork, now: DateTime<Utc>, claim_until: DateTime<Utc>,
        claim_limit: usize) -> Result<Settled, StoreError>;
    /// Records how a Running action ended.
    fn complete(&self, id: Uuid, outcome: ActionStatus, now: DateTime<Utc>)
        -> Result<Finished, StoreError>;
    /// Recovers what a dead daemon left Running.
    fn startup_recovery_knowing(&self, now: DateTime<Utc>, started: Option<&HashSet<Uuid>>)
        -> Result<RecoveryReport, StoreError>;
    /// Cancels the pending occurrence of a series.
    fn cancel(&self, id: Uuid, now: DateTime<Utc>) -> Result<Action, StoreError>;
    /// Pauses the pending occurrence of a series.
    fn pause(&self, id: Uuid, reason: Option<String>, now: DateTime<Utc>)
        -> Result<Action, StoreError>;
    /// Resumes a paused action.
    fn resume(&self, id: Uuid, now: DateTime<Utc>) -> Result<Action, StoreError>;
    /// Approves an action awaiting approval.
    fn approve(&self, id: Uuid, by: &str, note: Option<String>, now: DateTime<Utc>)
        -> Result<Action, StoreError>;
    /// Rejects an action awaiting approval.
    fn reject(&self, id: Uuid, by: &str, note: Option<String>, now: DateTime<Utc>)
        -> Result<Action, StoreError>;
    /// Stores a manual run of an action, outside its schedule.
    fn run_now(&self, id: Uuid, now: DateTime<Utc>) -> Result<Action, StoreError>;
    /// Replaces a pending or paused action by its edited form.
    fn replace_edited(&self, seen: &Action, new: &Action, now: DateTime<Utc>)
        -> Result<Action, StoreError>;
    /// Removes an action that is not Running.
    fn delete(&self, id: Uuid) -> Result<Action, StoreError>;
    /// Actions matching `filter`, newest first.
    fn list(&self, filter: &ListFilter) -> Result<Vec<Action>, StoreError>;
    /// How many actions are stored in each status.
    fn count_by_status(&self) -> Result<Vec<(StatusKind, u64)>, StoreError>;
    /// The earliest due time among Pending actions.
    fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Stores a new plan run and starts its first steps.
    fn start_run(&self, new: &NewRun, now: DateTime<Utc>) -> Result<PlanRun, StoreError>;
    /// Cancels a running plan run.
    fn cancel_run(&self, run: Uuid, now: DateTime<Utc>) -> Result<PlanRun, StoreError>;
    /// Runs again what did not succeed in a finished plan run.
    fn retry_run(&self, run: Uuid, only: Option<&str>, now: DateTime<Utc>)
        -> Result<Retried, StoreError>;
    /// A plan run, its steps and its plan.
    fn get_run(&self, run: Uuid) -> Result<Option<RunDetail>, StoreError>;
    /// Plan runs matching `filter`, newest first.
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<PlanRun>, StoreError>;
    /// Events of a plan run after sequence number `after`.
    fn run_events(&self, run: Uuid, after: Option<u64>, limit: usize)
        -> Result<Vec<RunEvent>, StoreError>;

    provided {
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
