//! `ActionDb`: the store on one redb file, the embedded default.
//!
//! Only this module and the store's PostgreSQL sibling touch a database. Every public operation is one short write (or read)
//! transaction, and every index is maintained by one function (`put`), so the invariants
//! below hold after any commit and, because redb commits atomically, after any crash:
//!
//! - `actions`  id (u128) -> version byte ++ JSON of [`Action`]. Lookup by id never scans.
//!   A webhook action's input, request body and headers are in `action_bodies`, written once
//!   (the `record` module: the layout of both).
//! - `due`      due_ms (u64 BE) ++ id (16 bytes) -> (). Holds exactly the Pending actions, so
//!   "what is due" is one range scan whose cost depends on what is due, not on history.
//! - `by_status` status (1 byte) ++ updated_ms (u64 BE) ++ id -> (). Newest-first listing with a
//!   status filter is a reverse range scan.
//! - `series_head` series id -> id of its newest scheduled occurrence, so a recurring action
//!   can be addressed by the id `add` printed (manual runs do not move it).
//! - `running_by_series` series id ++ id -> (): the runs of a series in flight, for the
//!   overlap policy.
//! - `status_counts` status byte -> how many actions have it, so counting is not a scan.
//! - `recurring` series id -> (): the series whose head recurs (`schedules`).
//! - `meta` "schema_version" -> u64. A file written by a newer version is refused.
//!
//! Beside them: webhook routes and the inbox (`webhooks`), plans (`plans`), the history index
//! (`history`), the notification outbox (`outbox`), dashboard sessions (`sessions`); and the
//! feed of what each commit changed (`changes`), which is not stored.
//!
//! What this module does not do: decide when things run (the engine does) or validate tool
//! input (the service layer does).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use redb::{
    Database, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::{Action, ActionTrigger, StatusKind};

mod handle;
pub(crate) mod history;
pub mod integrity;
mod logs;
mod outbox;
mod plans;
mod record;
mod run_groups;
mod schedules;
mod sessions;
mod tokens;
mod txn;
mod webhooks;

use handle::Handle;
use record::{ACTION_BODIES, lookup, record_in};

use crate::store::codec::{seal, unseal};
use crate::store::txn::{Txn, Writes};
use crate::store::{
    ListFilter, OpenReport, RecoveryReport, SCHEMA_VERSION, SettleWork, Settled, StartMarks,
    StorageFault, Store, changes, decode_json, due_key, encode_json, id_from_key, is_due_indexed,
    millis, rules, status_byte,
};

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const ACTIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("actions");
const DUE: TableDefinition<[u8; 24], ()> = TableDefinition::new("due");
const BY_STATUS: TableDefinition<[u8; 25], ()> = TableDefinition::new("by_status");
const SERIES_HEAD: TableDefinition<u128, u128> = TableDefinition::new("series_head");
const RUNNING_BY_SERIES: TableDefinition<[u8; 32], ()> = TableDefinition::new("running_by_series");
const STATUS_COUNTS: TableDefinition<u8, u64> = TableDefinition::new("status_counts");

/// The action tables of one write transaction, opened once for all its changes. redb's
/// `open_table` looks the table up by name and checks its types each time: opening them per
/// change (a claim or an outcome touches five or six) was ~7% of the daemon's CPU for short
/// runs. A table cannot be open twice in one transaction, so while a `Tables` lives, every
/// access to these tables goes through it.
pub(crate) struct Tables<'tx> {
    tx: &'tx WriteTransaction,
    /// The plan tables, opened when a change touches a plan run.
    plans: Option<plans::PlanTables<'tx>>,
    /// The notification outbox, opened when a change is worth telling.
    outbox: Option<outbox::OutboxTables<'tx>>,
    /// The run logs, opened when a log is written or an action removed.
    logs: Option<Table<'tx, [u8; 20], &'static [u8]>>,
    actions: Table<'tx, u128, &'static [u8]>,
    bodies: Table<'tx, u128, &'static [u8]>,
    due: Table<'tx, [u8; 24], ()>,
    by_status: Table<'tx, [u8; 25], ()>,
    series_head: Table<'tx, u128, u128>,
    running_by_series: Table<'tx, [u8; 32], ()>,
    counts: Table<'tx, u8, u64>,
    history: Table<'tx, [u8; 33], ()>,
    /// The run groups and their listing order, opened when a change touches a group.
    groups: Option<RunGroupTables<'tx>>,
}

type RunGroupTables<'tx> = (
    Table<'tx, &'static str, [u64; 11]>,
    Table<'tx, (i64, &'static str), ()>,
);

impl<'tx> Tables<'tx> {
    fn open(tx: &'tx WriteTransaction) -> Result<Tables<'tx>, StoreError> {
        Ok(Tables {
            tx,
            plans: None,
            outbox: None,
            logs: None,
            actions: tx.open_table(ACTIONS)?,
            bodies: tx.open_table(ACTION_BODIES)?,
            due: tx.open_table(DUE)?,
            by_status: tx.open_table(BY_STATUS)?,
            series_head: tx.open_table(SERIES_HEAD)?,
            running_by_series: tx.open_table(RUNNING_BY_SERIES)?,
            counts: tx.open_table(STATUS_COUNTS)?,
            history: tx.open_table(history::HISTORY)?,
            groups: None,
        })
    }

    /// The run group tables of this transaction, opened on first use.
    fn groups(&mut self) -> Result<&mut RunGroupTables<'tx>, StoreError> {
        if self.groups.is_none() {
            self.groups = Some((
                self.tx.open_table(run_groups::RUN_GROUPS)?,
                self.tx.open_table(run_groups::RUN_GROUP_ORDER)?,
            ));
        }
        Ok(self.groups.as_mut().expect("opened just above"))
    }

    /// The plan tables of this transaction, opened on first use.
    fn plans(&mut self) -> Result<&mut plans::PlanTables<'tx>, StoreError> {
        if self.plans.is_none() {
            self.plans = Some(plans::PlanTables::open(self.tx)?);
        }
        Ok(self.plans.as_mut().expect("opened just above"))
    }

    /// The run logs table of this transaction, opened on first use.
    fn logs(&mut self) -> Result<&mut Table<'tx, [u8; 20], &'static [u8]>, StoreError> {
        if self.logs.is_none() {
            self.logs = Some(self.tx.open_table(logs::RUN_LOGS)?);
        }
        Ok(self.logs.as_mut().expect("opened just above"))
    }

    /// The outbox tables of this transaction, opened on first use.
    fn outbox(&mut self) -> Result<&mut outbox::OutboxTables<'tx>, StoreError> {
        if self.outbox.is_none() {
            self.outbox = Some(outbox::OutboxTables::open(self.tx)?);
        }
        Ok(self.outbox.as_mut().expect("opened just above"))
    }
}

/// The action database. Cheap to share behind an `Arc`; redb serialises writers.
pub struct ActionDb {
    db: Handle,
    path: PathBuf,
    report: OpenReport,
}

impl Writes for ActionDb {
    type Tx<'a> = Tables<'a>;

    fn write<T>(
        &self,
        mut work: impl FnMut(&mut Tables<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.begin_write()?;
        let value = {
            let mut t = Tables::open(&tx)?;
            work(&mut t)?
        };
        self.db.commit(tx)?;
        Ok(value)
    }
}

impl Drop for ActionDb {
    /// Closes the file and, when nothing went wrong while it was open, marks the close as
    /// clean, so the next open need not verify it.
    fn drop(&mut self) {
        if self.db.close() {
            integrity::write_mark(&self.path);
        }
    }
}

impl std::fmt::Debug for ActionDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionDb")
            .field("path", &self.path)
            .finish()
    }
}

impl ActionDb {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// Fails with [`StoreError::AlreadyOpen`] while another process holds the file, and with
    /// [`StoreError::NewerSchema`] for a file written by a newer version.
    pub fn open(path: &Path) -> Result<ActionDb, StoreError> {
        ActionDb::open_with(path, false)
    }

    /// [`ActionDb::open`], and when `unclean` (the last owner died), a full integrity check
    /// of the file before anything is read: a damaged file is refused with a clear error
    /// rather than read as silently wrong data.
    pub fn open_with(path: &Path, unclean: bool) -> Result<ActionDb, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        // Verified when its last owner died, or when it changed since its last clean close.
        let verify =
            !integrity::is_new(path) && (unclean || !integrity::closed_cleanly_since(path));
        private_file(path)?;
        integrity::remove_mark(path);
        let (mut db, mut was_repaired) =
            integrity::contained(path, || handle::open_database(path))?;
        // redb repairs a file its last owner did not close by walking it and verifying every
        // checksum; only when that did not happen is the file walked here.
        if verify && !was_repaired {
            was_repaired = integrity::verify(&mut db, path)?;
        }
        integrity::contained(path, || init_schema(&db, path))?;
        Ok(ActionDb {
            db: Handle::new(db, path),
            path: path.to_path_buf(),
            report: OpenReport {
                unclean,
                verified: verify,
                repaired: was_repaired,
            },
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// False: the daemon is the file's only writer (commands go through it).
    pub fn shared(&self) -> bool {
        false
    }

    /// The file's path, for messages.
    pub fn location(&self) -> String {
        self.path.display().to_string()
    }

    /// [`ActionDb::guarded`] for the storage interface (see `Store::contain`).
    pub fn contain(
        &self,
        work: &mut dyn FnMut() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.guarded(|_| work())
    }

    /// A feed of what each commit from now on changes (see `changes`). Lagging more than
    /// the feed holds is reported by the receiver as `Lagged`.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<changes::Changes> {
        self.db.feed.subscribe()
    }

    pub fn open_report(&self) -> OpenReport {
        self.report
    }

    /// Why the database refuses writes, while it does (see [`StorageFault`]).
    pub fn fault(&self) -> Option<StorageFault> {
        self.db.fault()
    }

    /// Closes the file and opens it again after a failed write, so that writes resume once
    /// the cause (a full disk) is gone. Fails, leaving the fault in place, while it persists.
    /// Nothing committed is lost: redb repairs the file to its last durable commit.
    pub fn reopen(&self) -> Result<(), StoreError> {
        if self.fault().is_some_and(|fault| fault.damaged) {
            return self.verify().map(|_| ());
        }
        self.db.reopen(|db| init_schema(db, &self.path))
    }

    /// Runs `work` on this database with panics contained ([`integrity::contained`]); an
    /// error that shows the file failing (I/O, damage) becomes the store's fault, as if met
    /// inside it. Long-lived owners (the engine, the server) call the store through this.
    pub fn guarded<T>(
        &self,
        work: impl FnOnce(&ActionDb) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        integrity::contained(&self.path, || work(self)).map_err(|err| match err {
            StoreError::Damaged { .. } => self.db.observe(err),
            other => other,
        })
    }

    /// Notices the file deleted or replaced at its path while open (see
    /// `Handle::check_in_place`): a deleted one is copied back and reopened; a replaced one is
    /// saved beside and writes stay refused. Cheap (one stat) when all is well.
    pub fn check_in_place(&self) -> Option<StorageFault> {
        self.db.check_in_place(|db| init_schema(db, &self.path))
    }

    /// Closes the file, verifies every page of it, and opens it again (what `sdlc orchestrate
    /// check` does while a daemon holds the file). Returns whether redb repaired anything.
    pub fn verify(&self) -> Result<bool, StoreError> {
        let mut repaired = false;
        self.db.reopen(|db| {
            repaired = integrity::verify(db, &self.path)?;
            init_schema(db, &self.path)
        })?;
        Ok(repaired)
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        // Quick repair stays off (redb's default): it would save the allocator state with every
        // commit and add a second fsync, which cost a fifth of the webhook ingest rate, to make
        // reopening after a crash instant. After a crash the file is walked anyway (redb's
        // repair verifies every checksum, see `open_with`), so it would buy nothing here.
        self.db.begin_write()
    }

    /// The action with this id (a webhook delivery still waiting in the inbox shows as the
    /// pending action it will become).
    pub fn get(&self, id: Uuid) -> Result<Option<Action>, StoreError> {
        let tx = self.db.begin_read()?;
        let bodies = tx.open_table(ACTION_BODIES)?;
        match lookup(&tx.open_table(ACTIONS)?, &bodies, id)? {
            Some(action) => Ok(Some(action)),
            None => webhooks::lookup_waiting(&tx.open_table(webhooks::INBOX)?, &bodies, id),
        }
    }

    /// Up to `limit` action ids whose hex digits start or end with `fragment`. A prefix is a
    /// range of the id index; a suffix (the random end of a time-ordered id, which the
    /// dashboard shows) is a walk of the keys, done only for a short id given by hand.
    pub fn ids_matching(&self, fragment: &str, limit: usize) -> Result<Vec<Uuid>, StoreError> {
        let tx = self.db.begin_read()?;
        let actions = tx.open_table(ACTIONS)?;
        let mut found = Vec::new();
        for entry in actions.iter()? {
            let id = Uuid::from_u128(entry?.0.value());
            if crate::model::id_matches(id, fragment) {
                found.push(id);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// The newest occurrence of the series `id` belongs to (the action itself for one-offs).
    pub fn series_head(&self, id: Uuid) -> Result<Option<Action>, StoreError> {
        let tx = self.db.begin_read()?;
        let actions = tx.open_table(ACTIONS)?;
        let bodies = tx.open_table(ACTION_BODIES)?;
        let heads = tx.open_table(SERIES_HEAD)?;
        let read = |id: Uuid| lookup(&actions, &bodies, id);
        let Some(action) = read(id)? else {
            return webhooks::lookup_waiting(&tx.open_table(webhooks::INBOX)?, &bodies, id);
        };
        match heads.get(action.series.as_u128())?.map(|v| v.value()) {
            Some(head) if head != id.as_u128() => Ok(read(Uuid::from_u128(head))?.or(Some(action))),
            _ => Ok(Some(action)),
        }
    }

    /// The engine's settle: `work` recorded, then up to `claim_limit` actions due by
    /// `claim_until` claimed, all in one transaction (see `settle_claiming_until`).
    pub fn settle_work(
        &self,
        work: SettleWork,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        claim_limit: usize,
    ) -> Result<Settled, StoreError> {
        let tx = self.begin_write()?;
        let mut t = Tables::open(&tx)?;
        let (settled, changed) = rules::settle_in(&mut t, work, now, claim_until, claim_limit)?;
        drop(t);
        if changed {
            self.db.commit(tx)?;
        } else {
            // Nothing changed: skip the commit (and its fsync).
            tx.abort()?;
        }
        Ok(settled)
    }

    /// Pending actions due before `until`, soonest first, at most `limit` (what the dashboard
    /// shows as coming up). Reads the due index: its cost is what it returns.
    pub fn due_before(
        &self,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Action>, StoreError> {
        let tx = self.db.begin_read()?;
        let due = tx.open_table(DUE)?;
        let actions = tx.open_table(ACTIONS)?;
        let bodies = tx.open_table(ACTION_BODIES)?;
        let end = due_key(until, Uuid::max());
        let mut found = Vec::new();
        for entry in due.range(..=end)? {
            if found.len() >= limit {
                break;
            }
            let (key, _) = entry?;
            if let Some(action) = lookup(&actions, &bodies, id_from_key(&key.value()[8..]))?
                && action.status.kind() == StatusKind::Pending
            {
                found.push(action);
            }
        }
        Ok(found)
    }

    /// The earliest due time among Pending actions.
    pub fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let tx = self.db.begin_read()?;
        let due = tx.open_table(DUE)?;
        let first = due.first()?;
        Ok(first.map(|(key, _)| {
            let ms =
                u64::from_be_bytes(key.value()[..8].try_into().expect("due keys are 24 bytes"));
            crate::schedule::millis_to_datetime(ms.min(i64::MAX as u64) as i64)
        }))
    }

    /// `startup_recovery` given the dead daemon's complete record of which tools it may have
    /// started (`Some(started)`, from its run log): a Running action not in it was claimed
    /// ahead and never started, so it goes back to Pending unharmed (see `return_in`) instead
    /// of failing as interrupted. With `None` every Running action counts as interrupted.
    pub fn startup_recovery_knowing(
        &self,
        now: DateTime<Utc>,
        started: Option<&std::collections::HashSet<Uuid>>,
    ) -> Result<RecoveryReport, StoreError> {
        self.write(|t| {
            let running = t.ids_with_status(StatusKind::Running)?;
            rules::recover_in(t, running, now, started)
        })
    }

    /// After a reopen (see [`ActionDb::reopen`]): every Running action that is not in `known`
    /// (the runs the caller has in flight or claimed) goes back to Pending, as recovery at
    /// start does for actions claimed but never started. A claim whose commit failed to
    /// answer yet reached the file is the one case this mends. Returns their ids.
    pub fn return_unknown_running(
        &self,
        known: &std::collections::HashSet<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let tx = self.begin_write()?;
        let returned = {
            let mut t = Tables::open(&tx)?;
            rules::return_unknown_in(&mut t, known, now)?
        };
        if returned.is_empty() {
            tx.abort()?;
        } else {
            self.db.commit(tx)?;
        }
        Ok(returned)
    }

    /// Marks the tools of the claimed actions `ids` as about to start; answers those this
    /// process may start. A redb file has one writer, so every claim is this process's, and
    /// its run log (see [`crate::orphans`]) is the record of which tools started: all of
    /// `ids` are answered, with nothing written, and no claim has a lease to run out.
    pub fn mark_starts(&self, ids: &[Uuid], _now: DateTime<Utc>) -> Result<StartMarks, StoreError> {
        Ok(StartMarks {
            marked: ids.to_vec(),
            ..StartMarks::default()
        })
    }

    /// Stores a manual run of the action `id` (any occurrence of its series): same tool,
    /// input and retry policy, due at once, outside the schedule (which does not move).
    pub fn run_now(&self, id: Uuid, now: DateTime<Utc>) -> Result<Action, StoreError> {
        let source = self.get(id)?.ok_or(StoreError::NotFound(id))?;
        let manual = source.copy_for(ActionTrigger::Manual { requested_at: now }, now);
        self.insert(&manual)?;
        Ok(manual)
    }

    /// Deletes up to `limit` finished actions (completed, failed, skipped) last updated before
    /// `cutoff`, oldest first, in one transaction. Returns how many went. The finished steps
    /// of a plan run still going are kept (a later step may read their results); the scan
    /// passes over them, within a bound that keeps one pass short.
    pub fn prune_finished(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        use std::ops::Bound;
        let tx = self.begin_write()?;
        let mut t = Tables::open(&tx)?;
        let mut pruned = 0;
        let mut budget = limit.saturating_mul(4);
        // The groups that lost runs, summed again once at the end.
        let mut regroup = std::collections::BTreeSet::new();
        for kind in [
            StatusKind::Completed,
            StatusKind::Failed,
            StatusKind::Skipped,
            StatusKind::Canceled,
        ] {
            let (start, _) = status_range(kind);
            let end = status_key(kind, cutoff, Uuid::nil());
            let mut after: Option<[u8; 25]> = None;
            while pruned < limit && budget > 0 {
                let old: Vec<([u8; 25], Uuid)> = {
                    let lower = after.map_or(Bound::Included(start), Bound::Excluded);
                    let mut found = Vec::new();
                    let range = t
                        .by_status
                        .range::<[u8; 25]>((lower, Bound::Excluded(end)))?;
                    for entry in range.take((limit - pruned).min(budget)) {
                        let (key, _) = entry?;
                        let key = key.value();
                        found.push((key, id_from_key(&key[9..])));
                    }
                    found
                };
                let Some((last, _)) = old.last() else {
                    break;
                };
                after = Some(*last);
                budget -= old.len();
                for (key, id) in old {
                    let record = record_in(&t, id)?;
                    let step = record.as_ref().and_then(|action| action.step.as_ref());
                    if crate::store::plans::needed_by_running_run(&mut t, step)? {
                        continue;
                    }
                    t.by_status.remove(key)?;
                    count(&mut t, kind, -1)?;
                    let Some(action) = record else {
                        continue;
                    };
                    history::reindex(&mut t, Some(&action), None)?;
                    if let Some(run) = &action.run_id {
                        regroup.insert(run.clone());
                    }
                    t.actions.remove(id.as_u128())?;
                    t.bodies.remove(id.as_u128())?;
                    logs::remove_all(t.logs()?, id)?;
                    forget_head_if(&mut t, action.series, id)?;
                    pruned += 1;
                }
            }
            if pruned == limit || budget == 0 {
                break;
            }
        }
        run_groups::recount_all(&mut t, &regroup)?;
        drop(t);
        if pruned > 0 {
            self.db.commit(tx)?;
        } else {
            tx.abort()?;
        }
        Ok(pruned)
    }

    /// Actions matching `filter`, newest (by last update) first.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Action>, StoreError> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let kinds: Vec<StatusKind> = match filter.status {
            Some(kind) => vec![kind],
            None => StatusKind::ALL.to_vec(),
        };
        let tx = self.db.begin_read()?;
        let index = tx.open_table(BY_STATUS)?;
        let actions = tx.open_table(ACTIONS)?;
        let bodies = tx.open_table(ACTION_BODIES)?;
        // Each status's newest `limit` matches, then merged by time: a k-way merge over
        // at most four sorted lists.
        let mut found: Vec<([u8; 25], Action)> = Vec::new();
        for &kind in &kinds {
            let (start, end) = status_range(kind);
            let mut taken = 0;
            for entry in index.range(start..=end)?.rev() {
                if taken == limit {
                    break;
                }
                let (key, _) = entry?;
                let key = key.value();
                let id = id_from_key(&key[9..]);
                let action = lookup(&actions, &bodies, id)?.ok_or(StoreError::NotFound(id))?;
                if filter
                    .tool
                    .as_deref()
                    .is_some_and(|t| t != action.tool_name)
                {
                    continue;
                }
                taken += 1;
                found.push((key, action));
            }
        }
        // Deliveries waiting in the inbox are pending actions too.
        if kinds.contains(&StatusKind::Pending) {
            found.extend(webhooks::list_waiting(
                &tx.open_table(webhooks::INBOX)?,
                &bodies,
                filter.tool.as_deref(),
                limit,
            )?);
        }
        // Newest first across statuses: compare updated_ms then id, ignoring the status byte.
        found.sort_by(|(a, _), (b, _)| b[1..].cmp(&a[1..]));
        found.truncate(limit);
        Ok(found.into_iter().map(|(_, action)| action).collect())
    }

    /// How many actions are stored in each status (deliveries waiting in the inbox count as
    /// pending: `inbox_len` says how many of those they are).
    pub fn count_by_status(&self) -> Result<Vec<(StatusKind, u64)>, StoreError> {
        let tx = self.db.begin_read()?;
        let counts = tx.open_table(STATUS_COUNTS)?;
        let waiting = tx.open_table(webhooks::INBOX)?.len()?;
        let mut all = Vec::new();
        for kind in StatusKind::ALL {
            let mut n = counts
                .get(status_byte(kind))?
                .map(|v| v.value())
                .unwrap_or(0);
            if kind == StatusKind::Pending {
                n += waiting;
            }
            all.push((kind, n));
        }
        Ok(all)
    }
}

/// Makes sure the file at `path` is readable by its owner only (it holds route secrets and
/// request headers): creates it empty with mode 0600 when missing (redb then initialises it),
/// and tightens a looser existing one, saying so.
pub fn private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(io(err)),
    }
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_file() && mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        tracing::warn!(
            file = %path.display(),
            "the file was readable by others (mode {mode:o}); it holds secrets: now 0600"
        );
    }
    Ok(())
}

/// Checks the schema version and creates every table, in one transaction of `db`.
fn init_schema(db: &Database, path: &Path) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    {
        let mut meta = tx.open_table(META)?;
        let found = meta.get("schema_version")?.map(|v| v.value());
        // Written before the series were indexed (schema 9).
        let series_missing = found.is_some_and(|v| v < 9);
        // Its history index is keyed by creation time (schema 10 keys it by run time).
        let index_by_creation = found.is_some_and(|v| v < 10);
        // Written before the run groups were kept (schema 11).
        let groups_missing = found.is_some_and(|v| v < 11);
        match found {
            Some(found) if found > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema {
                    path: path.to_path_buf(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(found) if found == SCHEMA_VERSION => {}
            // New, or written by an older version: its records keep decoding (each carries
            // its own version), and from now on older builds refuse the file rather than
            // misread the newer records in it.
            _ => {
                meta.insert("schema_version", SCHEMA_VERSION)?;
            }
        }
        if index_by_creation {
            // Built again below from the actions, under the keys this build reads.
            tx.delete_table(history::HISTORY)?;
        }
        // Create every table so read transactions never meet a missing one.
        let mut t = Tables::open(&tx)?;
        rebuild_counts_if_missing(&mut t)?;
        let built = history::rebuild_if_missing(&mut t)?;
        if series_missing {
            schedules::build(&mut t)?;
            if !built {
                history::add_series_keys(&mut t)?;
            }
        }
        if groups_missing {
            run_groups::build(&mut t)?;
        }
        drop(t);
        run_groups::create_tables(&tx)?;
        tx.open_table(webhooks::ROUTES)?;
        tx.open_table(webhooks::ROUTE_PATHS)?;
        tx.open_table(webhooks::INBOX)?;
        tx.open_table(webhooks::DELIVERY_IDS)?;
        tx.open_table(webhooks::DELIVERY_IDS_BY_TIME)?;
        plans::create_tables(&tx)?;
        outbox::create_tables(&tx)?;
        sessions::create_tables(&tx)?;
        tokens::create_tables(&tx)?;
        schedules::create_tables(&tx)?;
        logs::create_tables(&tx)?;
    }
    tx.commit()?;
    Ok(())
}

/// Fills `status_counts` from the status index when it is empty but actions exist (a file
/// written before the counts were kept).
fn rebuild_counts_if_missing(t: &mut Tables<'_>) -> Result<(), StoreError> {
    let counts = &mut t.counts;
    if !counts.is_empty()? || t.actions.is_empty()? {
        return Ok(());
    }
    let index = &t.by_status;
    for kind in StatusKind::ALL {
        let (start, end) = status_range(kind);
        let mut n = 0u64;
        for entry in index.range(start..=end)? {
            entry?;
            n += 1;
        }
        counts.insert(status_byte(kind), n)?;
    }
    Ok(())
}

/// Adds `delta` to the count of `kind`.
fn count(t: &mut Tables<'_>, kind: StatusKind, delta: i64) -> Result<(), StoreError> {
    let counts = &mut t.counts;
    let current = counts
        .get(status_byte(kind))?
        .map(|v| v.value())
        .unwrap_or(0);
    counts.insert(status_byte(kind), current.saturating_add_signed(delta))?;
    Ok(())
}

/// Forgets the head of `series` when it is `id` (that occurrence is gone: the series ended).
fn forget_head_if(t: &mut Tables<'_>, series: Uuid, id: Uuid) -> Result<(), StoreError> {
    let heads = &mut t.series_head;
    let head = heads.get(series.as_u128())?.map(|v| v.value());
    if head == Some(id.as_u128()) {
        heads.remove(series.as_u128())?;
        schedules::forget(t, series)?;
    }
    Ok(())
}

/// Adds `new` to every index it belongs in (`is_new`: it was not stored before).
fn index(t: &mut Tables<'_>, is_new: bool, new: &Action) -> Result<(), StoreError> {
    t.by_status
        .insert(status_key(new.status.kind(), new.updated_at, new.id), ())?;
    count(t, new.status.kind(), 1)?;
    if is_due_indexed(new) {
        t.due.insert(due_key(new.due_at(), new.id), ())?;
    }
    if new.status.kind() == StatusKind::Running {
        t.running_by_series
            .insert(series_key(new.series, new.id), ())?;
    }
    // Manual runs and webhook deliveries never become the head of a schedule.
    if is_new && matches!(new.trigger, ActionTrigger::Scheduled { .. }) {
        t.series_head
            .insert(new.series.as_u128(), new.id.as_u128())?;
    }
    Ok(())
}

fn series_key(series: Uuid, id: Uuid) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(series.as_bytes());
    key[16..].copy_from_slice(id.as_bytes());
    key
}

fn unindex(t: &mut Tables<'_>, old: &Action) -> Result<(), StoreError> {
    t.by_status
        .remove(status_key(old.status.kind(), old.updated_at, old.id))?;
    count(t, old.status.kind(), -1)?;
    if is_due_indexed(old) {
        t.due.remove(due_key(old.due_at(), old.id))?;
    }
    if old.status.kind() == StatusKind::Running {
        t.running_by_series.remove(series_key(old.series, old.id))?;
    }
    Ok(())
}

fn status_key(kind: StatusKind, updated: DateTime<Utc>, id: Uuid) -> [u8; 25] {
    let mut key = [0u8; 25];
    key[0] = status_byte(kind);
    key[1..9].copy_from_slice(&millis(updated).to_be_bytes());
    key[9..].copy_from_slice(id.as_bytes());
    key
}

fn status_range(kind: StatusKind) -> ([u8; 25], [u8; 25]) {
    let mut start = [0u8; 25];
    let mut end = [0xffu8; 25];
    start[0] = status_byte(kind);
    end[0] = status_byte(kind);
    (start, end)
}

#[cfg(test)]
pub(crate) mod tests;
