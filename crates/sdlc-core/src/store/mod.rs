//! `ActionDb`: the durable home of every action, on one redb file.
//!
//! Only this module touches redb. Every public operation is one short write (or read)
//! transaction, and every index is maintained by one function (`put`), so the invariants
//! below hold after any commit and, because redb commits atomically, after any crash:
//!
//! - `actions`  id (u128) -> version byte ++ JSON of [`Action`]. Lookup by id never scans.
//! - `due`      due_ms (u64 BE) ++ id (16 bytes) -> (). Holds exactly the Pending actions, so
//!   "what is due" is one range scan whose cost depends on what is due, not on history.
//! - `by_status` status (1 byte) ++ updated_ms (u64 BE) ++ id -> (). Newest-first listing with a
//!   status filter is a reverse range scan.
//! - `series_head` series id -> id of its newest occurrence, so a recurring action can be
//!   addressed by the id `add` printed.
//! - `meta` "schema_version" -> u64. A file written by a newer version is refused.
//!
//! What this module does not do: decide when things run (the engine does) or validate tool
//! input (the service layer does).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::{Action, ActionStatus, StatusKind};

mod webhooks;

pub use webhooks::Ingested;

/// The schema this build writes. Bump it when a stored form changes in a way older code
/// would misread; adding a field with a serde default does not need a bump.
pub const SCHEMA_VERSION: u64 = 1;

/// redb's page cache is bounded so the daemon's memory stays small however much is stored.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Reason recorded on actions that were Running when a daemon died.
pub const INTERRUPTED_REASON: &str = "interrupted: the daemon stopped while this ran";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const ACTIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("actions");
const DUE: TableDefinition<[u8; 24], ()> = TableDefinition::new("due");
const BY_STATUS: TableDefinition<[u8; 25], ()> = TableDefinition::new("by_status");
const SERIES_HEAD: TableDefinition<u128, u128> = TableDefinition::new("series_head");

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
    /// redb had to repair the file: the last process did not close it cleanly.
    pub repaired: bool,
}

/// What `startup_recovery` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Actions that were Running and are now Failed as interrupted.
    pub interrupted: Vec<Uuid>,
    /// Next occurrences scheduled for interrupted recurring actions.
    pub rescheduled: usize,
}

/// The result of finishing one action.
#[derive(Debug, Clone)]
pub struct Finished {
    pub action: Action,
    /// The next occurrence, stored in the same transaction, when the action recurs.
    pub next: Option<Action>,
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
}

/// The action database. Cheap to share behind an `Arc`; redb serialises writers.
pub struct ActionDb {
    db: Database,
    path: PathBuf,
    report: OpenReport,
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
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let repaired = Arc::new(AtomicBool::new(false));
        let flag = repaired.clone();
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .set_repair_callback(move |_| flag.store(true, Ordering::Relaxed))
            .create(path)
            .map_err(|err| match err {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
                    path: path.to_path_buf(),
                },
                redb::DatabaseError::Storage(redb::StorageError::Io(source)) => StoreError::Io {
                    path: path.to_path_buf(),
                    source,
                },
                other => StoreError::Open {
                    path: path.to_path_buf(),
                    detail: other.to_string(),
                },
            })?;
        let store = ActionDb {
            db,
            path: path.to_path_buf(),
            report: OpenReport {
                repaired: repaired.load(Ordering::Relaxed),
            },
        };
        store.init_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn open_report(&self) -> OpenReport {
        self.report
    }

    fn init_schema(&self) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            match found {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
            }
            // Create every table so read transactions never meet a missing one.
            tx.open_table(ACTIONS)?;
            tx.open_table(DUE)?;
            tx.open_table(BY_STATUS)?;
            tx.open_table(SERIES_HEAD)?;
            tx.open_table(webhooks::ROUTES)?;
            tx.open_table(webhooks::ROUTE_PATHS)?;
            tx.open_table(webhooks::INBOX)?;
            tx.open_table(webhooks::DELIVERY_IDS)?;
            tx.open_table(webhooks::DELIVERY_IDS_BY_TIME)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write()?;
        // Saves the allocator state with each commit so reopening after a crash is instant
        // instead of a walk over the whole file.
        tx.set_quick_repair(true);
        Ok(tx)
    }

    /// Stores a new action.
    pub fn insert(&self, action: &Action) -> Result<(), StoreError> {
        self.insert_many(std::slice::from_ref(action))
    }

    /// Stores new actions in one transaction.
    pub fn insert_many(&self, actions: &[Action]) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        for action in actions {
            if get_in(&tx, action.id)?.is_some() {
                return Err(StoreError::Duplicate(action.id));
            }
            put(&tx, None, action)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The action with this id.
    pub fn get(&self, id: Uuid) -> Result<Option<Action>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ACTIONS)?;
        match table.get(id.as_u128())? {
            Some(bytes) => Ok(Some(decode(id, bytes.value())?)),
            None => Ok(None),
        }
    }

    /// The newest occurrence of the series `id` belongs to (the action itself for one-offs).
    pub fn series_head(&self, id: Uuid) -> Result<Option<Action>, StoreError> {
        let Some(action) = self.get(id)? else {
            return Ok(None);
        };
        let tx = self.db.begin_read()?;
        let heads = tx.open_table(SERIES_HEAD)?;
        let head = heads.get(action.series.as_u128())?.map(|v| v.value());
        drop(heads);
        match head {
            Some(head) if head != id.as_u128() => self.get(Uuid::from_u128(head)),
            _ => Ok(Some(action)),
        }
    }

    /// Moves an action to `status`, refusing transitions the lifecycle forbids.
    pub fn set_status(
        &self,
        id: Uuid,
        status: ActionStatus,
        now: DateTime<Utc>,
    ) -> Result<Action, StoreError> {
        let tx = self.begin_write()?;
        let old = get_in(&tx, id)?.ok_or(StoreError::NotFound(id))?;
        let new = transition(&old, status, now)?;
        put(&tx, Some(&old), &new)?;
        tx.commit()?;
        Ok(new)
    }

    /// Claims up to `limit` actions due at or before `now`, earliest first: each becomes
    /// Running (attempt + 1) in one transaction, and is returned.
    pub fn claim_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Action>, StoreError> {
        Ok(self.settle(Vec::new(), now, limit)?.claimed)
    }

    /// The engine's one write per wake-up: turns acknowledged webhook deliveries into
    /// actions, records the outcomes of finished runs (and the next occurrences of recurring
    /// ones), then claims up to `claim_limit` due actions, all in one transaction, so a busy
    /// daemon pays one commit for all of it.
    ///
    /// Fails as a whole if any outcome names an action that is not Running.
    pub fn settle(
        &self,
        outcomes: Vec<(Uuid, ActionStatus)>,
        now: DateTime<Utc>,
        claim_limit: usize,
    ) -> Result<Settled, StoreError> {
        let tx = self.begin_write()?;
        let (dispatched, inbox_waiting) = if claim_limit > 0 {
            webhooks::dispatch_in(&tx, now)?
        } else {
            (0, false)
        };
        let mut finished = Vec::with_capacity(outcomes.len());
        for (id, outcome) in outcomes {
            let old = get_in(&tx, id)?.ok_or(StoreError::NotFound(id))?;
            if old.status.kind() != StatusKind::Running {
                return Err(StoreError::InvalidTransition {
                    id,
                    from: old.status.kind(),
                    to: outcome.kind(),
                });
            }
            finished.push(finish_in(&tx, &old, outcome, now)?);
        }
        let claimed = claim_in(&tx, now, claim_limit)?;
        if finished.is_empty() && claimed.is_empty() && dispatched == 0 {
            // Nothing changed: skip the commit (and its fsync).
            tx.abort()?;
        } else {
            tx.commit()?;
        }
        Ok(Settled {
            finished,
            claimed,
            dispatched,
            inbox_waiting,
        })
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

    /// Records how a Running action ended; for a recurring action, stores its next occurrence
    /// in the same transaction.
    pub fn complete(
        &self,
        id: Uuid,
        outcome: ActionStatus,
        now: DateTime<Utc>,
    ) -> Result<Finished, StoreError> {
        let mut finished = self.complete_many(vec![(id, outcome)], now)?;
        Ok(finished.pop().expect("one outcome gives one result"))
    }

    /// `complete` for many actions in one transaction (one commit for a batch of finished runs).
    /// Fails as a whole if any transition is refused.
    pub fn complete_many(
        &self,
        outcomes: Vec<(Uuid, ActionStatus)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Finished>, StoreError> {
        Ok(self.settle(outcomes, now, 0)?.finished)
    }

    /// Run once at daemon start, before the first tick: every action left Running by a
    /// process that died becomes Failed as interrupted (recurring ones get their next
    /// occurrence). Nothing that finished is touched; nothing Pending is dropped.
    pub fn startup_recovery(&self, now: DateTime<Utc>) -> Result<RecoveryReport, StoreError> {
        let tx = self.begin_write()?;
        let running: Vec<Uuid> = {
            let index = tx.open_table(BY_STATUS)?;
            let (start, end) = status_range(StatusKind::Running);
            let mut ids = Vec::new();
            for entry in index.range(start..=end)? {
                let (key, _) = entry?;
                ids.push(id_from_key(&key.value()[9..]));
            }
            ids
        };
        let mut report = RecoveryReport::default();
        for id in running {
            let old = get_in(&tx, id)?.ok_or(StoreError::NotFound(id))?;
            let failed = ActionStatus::Failed {
                reason: INTERRUPTED_REASON.to_string(),
            };
            let finished = finish_in(&tx, &old, failed, now)?;
            report.interrupted.push(id);
            report.rescheduled += usize::from(finished.next.is_some());
        }
        tx.commit()?;
        Ok(report)
    }

    /// Cancels a Pending action (it becomes Failed with a reason saying so). Given the id of
    /// an earlier occurrence of a recurring action, cancels its pending occurrence, which ends
    /// the series.
    pub fn cancel(&self, id: Uuid, now: DateTime<Utc>) -> Result<Action, StoreError> {
        let target = self.series_head(id)?.ok_or(StoreError::NotFound(id))?;
        if target.status.kind() != StatusKind::Pending {
            return Err(StoreError::NotPending {
                id,
                status: target.status.kind(),
            });
        }
        self.set_status(
            target.id,
            ActionStatus::Failed {
                reason: "cancelled by the user before it ran".to_string(),
            },
            now,
        )
    }

    /// Removes an action that is not Running, with its index entries.
    pub fn delete(&self, id: Uuid) -> Result<Action, StoreError> {
        let tx = self.begin_write()?;
        let old = get_in(&tx, id)?.ok_or(StoreError::NotFound(id))?;
        if old.status.kind() == StatusKind::Running {
            return Err(StoreError::InvalidTransition {
                id,
                from: StatusKind::Running,
                to: StatusKind::Failed,
            });
        }
        unindex(&tx, &old)?;
        tx.open_table(ACTIONS)?.remove(id.as_u128())?;
        tx.commit()?;
        Ok(old)
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
        // Each status's newest `limit` matches, then merged by time: a k-way merge over
        // at most four sorted lists.
        let mut found: Vec<([u8; 25], Action)> = Vec::new();
        for kind in kinds {
            let (start, end) = status_range(kind);
            let mut taken = 0;
            for entry in index.range(start..=end)?.rev() {
                if taken == limit {
                    break;
                }
                let (key, _) = entry?;
                let key = key.value();
                let id = id_from_key(&key[9..]);
                let bytes = actions.get(id.as_u128())?.ok_or(StoreError::NotFound(id))?;
                let action = decode(id, bytes.value())?;
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
        // Newest first across statuses: compare updated_ms then id, ignoring the status byte.
        found.sort_by(|(a, _), (b, _)| b[1..].cmp(&a[1..]));
        found.truncate(limit);
        Ok(found.into_iter().map(|(_, action)| action).collect())
    }

    /// How many actions are stored in each status.
    pub fn count_by_status(&self) -> Result<Vec<(StatusKind, u64)>, StoreError> {
        let tx = self.db.begin_read()?;
        let index = tx.open_table(BY_STATUS)?;
        let mut counts = Vec::new();
        for kind in StatusKind::ALL {
            let (start, end) = status_range(kind);
            let mut n = 0u64;
            for entry in index.range(start..=end)? {
                entry?;
                n += 1;
            }
            counts.push((kind, n));
        }
        Ok(counts)
    }
}

/// Builds the new form of `old` after a transition, or refuses it.
fn transition(
    old: &Action,
    status: ActionStatus,
    now: DateTime<Utc>,
) -> Result<Action, StoreError> {
    if !old.status.can_become(&status) {
        return Err(StoreError::InvalidTransition {
            id: old.id,
            from: old.status.kind(),
            to: status.kind(),
        });
    }
    let mut new = old.clone();
    if status.kind().is_finished() {
        new.finished_at = Some(now);
    }
    new.status = status;
    new.updated_at = now;
    Ok(new)
}

/// Claims up to `limit` due Pending actions inside `tx`, earliest first.
fn claim_in(
    tx: &WriteTransaction,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Action>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let due_ids: Vec<Uuid> = {
        let due = tx.open_table(DUE)?;
        let end = due_key(now, Uuid::max());
        let mut ids = Vec::new();
        for entry in due.range(..=end)?.take(limit) {
            let (key, _) = entry?;
            ids.push(id_from_key(&key.value()[8..]));
        }
        ids
    };
    let mut claimed = Vec::with_capacity(due_ids.len());
    for id in due_ids {
        let old = get_in(tx, id)?.ok_or(StoreError::NotFound(id))?;
        let mut new = transition(&old, ActionStatus::Running, now)?;
        new.attempt += 1;
        new.started_at = Some(now);
        put(tx, Some(&old), &new)?;
        claimed.push(new);
    }
    Ok(claimed)
}

/// Finishes a Running action inside `tx` and stores the next occurrence of a recurring one.
fn finish_in(
    tx: &WriteTransaction,
    old: &Action,
    outcome: ActionStatus,
    now: DateTime<Utc>,
) -> Result<Finished, StoreError> {
    let action = transition(old, outcome, now)?;
    put(tx, Some(old), &action)?;
    let next = if action.status.kind().is_finished() {
        old.next_occurrence(now)
    } else {
        None
    };
    if let Some(next) = &next {
        put(tx, None, next)?;
    }
    Ok(Finished { action, next })
}

fn get_in(tx: &WriteTransaction, id: Uuid) -> Result<Option<Action>, StoreError> {
    let table = tx.open_table(ACTIONS)?;
    let found = table.get(id.as_u128())?;
    match found {
        Some(bytes) => Ok(Some(decode(id, bytes.value())?)),
        None => Ok(None),
    }
}

/// Writes `new` (replacing `old`, when given) and keeps every index in step with it.
/// The one place that knows which indexes an action appears in.
fn put(tx: &WriteTransaction, old: Option<&Action>, new: &Action) -> Result<(), StoreError> {
    if let Some(old) = old {
        unindex(tx, old)?;
    }
    tx.open_table(ACTIONS)?
        .insert(new.id.as_u128(), encode(new)?.as_slice())?;
    tx.open_table(BY_STATUS)?
        .insert(status_key(new.status.kind(), new.updated_at, new.id), ())?;
    if new.status.kind() == StatusKind::Pending {
        tx.open_table(DUE)?
            .insert(due_key(new.due_at(), new.id), ())?;
    }
    if old.is_none() {
        tx.open_table(SERIES_HEAD)?
            .insert(new.series.as_u128(), new.id.as_u128())?;
    }
    Ok(())
}

fn unindex(tx: &WriteTransaction, old: &Action) -> Result<(), StoreError> {
    tx.open_table(BY_STATUS)?
        .remove(status_key(old.status.kind(), old.updated_at, old.id))?;
    if old.status.kind() == StatusKind::Pending {
        tx.open_table(DUE)?.remove(due_key(old.due_at(), old.id))?;
    }
    Ok(())
}

/// Times before 1970 sort first; the index stores milliseconds as unsigned.
fn millis(t: DateTime<Utc>) -> u64 {
    t.timestamp_millis().max(0) as u64
}

/// `timestamp_ms (u64 big-endian) ++ uuid (16 bytes)`: byte order is time order.
pub fn due_key(due: DateTime<Utc>, id: Uuid) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&millis(due).to_be_bytes());
    key[8..].copy_from_slice(id.as_bytes());
    key
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

/// Stable on disk: never renumber.
fn status_byte(kind: StatusKind) -> u8 {
    match kind {
        StatusKind::Pending => 1,
        StatusKind::Running => 2,
        StatusKind::Completed => 3,
        StatusKind::Failed => 4,
    }
}

fn id_from_key(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).expect("index keys end with a 16-byte id")
}

/// Record format: one byte of schema version, then the action as JSON.
fn encode(action: &Action) -> Result<Vec<u8>, StoreError> {
    encode_json(action.id, action)
}

fn decode(id: Uuid, bytes: &[u8]) -> Result<Action, StoreError> {
    decode_json(id, bytes)
}

/// One byte of schema version, then JSON: the form of every JSON record.
fn encode_json<T: serde::Serialize>(id: Uuid, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut bytes = vec![SCHEMA_VERSION as u8];
    serde_json::to_writer(&mut bytes, value).map_err(|err| StoreError::Corrupt {
        id,
        detail: err.to_string(),
    })?;
    Ok(bytes)
}

/// Reads what `encode_json` wrote; refuses a record from a newer schema.
fn decode_json<T: serde::de::DeserializeOwned>(id: Uuid, bytes: &[u8]) -> Result<T, StoreError> {
    let (&version, json) = bytes.split_first().ok_or_else(|| StoreError::Corrupt {
        id,
        detail: "empty record".into(),
    })?;
    if u64::from(version) > SCHEMA_VERSION {
        return Err(StoreError::NewerRecord {
            id,
            found: version.into(),
            supported: SCHEMA_VERSION,
        });
    }
    serde_json::from_slice(json).map_err(|err| StoreError::Corrupt {
        id,
        detail: err.to_string(),
    })
}

#[cfg(test)]
mod tests;
