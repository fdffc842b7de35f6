//! `PgStore`: the action store on PostgreSQL. Every write operation is one transaction that
//! runs the store's own rules (`store::rules`) on a [`PgTxn`], so an action claimed, finished,
//! retried or recurring, a plan run advancing, a notification queued, all behave as on redb.
//! Reads are queries on the columns beside each record.
//!
//! A transaction PostgreSQL aborts for a conflict with another node's (a deadlock between
//! row locks) is run again from the start: it changed nothing, and its rules read afresh.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PgDb;
use super::txn::{PgTxn, fail};
use crate::error::StoreError;
use crate::model::{Action, ActionTrigger, StatusKind};
use crate::plan::{PlanRun, RunEvent};
use crate::store::Store;
use crate::store::changes::{ChangeFeed, Changes};
use crate::store::txn::Txn;
use crate::store::{
    ListFilter, RecoveryReport, RunDetail, RunFilter, SettleWork, Settled, StartMarks, decode_json,
    outbox, rules, status_byte,
};

/// How many times a transaction aborted by a conflict is run again before the error is
/// given to the caller.
const CONFLICT_RETRIES: usize = 8;

/// How long a claim holds without a heartbeat, unless the daemon sets another.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// The store on one PostgreSQL database, shared with other nodes.
pub struct PgStore {
    pub(super) db: PgDb,
    feed: ChangeFeed,
    /// The node this process claims for, once it joined (a daemon); None for a command.
    node: Mutex<Option<String>>,
    lease: chrono::Duration,
    /// The claims this process holds: action id -> claim token. An outcome is recorded only
    /// for an action whose stored claim is still the one this process made.
    claims: Mutex<HashMap<Uuid, Uuid>>,
    /// Set when an operation found PostgreSQL unreachable, until `reopen` reaches it again:
    /// meanwhile the engine holds its outcomes back (as for a redb file that fails).
    fault: Mutex<Option<crate::store::StorageFault>>,
}

impl crate::store::txn::Writes for PgStore {
    type Tx<'a> = PgTxn<'a>;

    fn write<T>(
        &self,
        work: impl FnMut(&mut PgTxn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_if(work, |_| true)
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.db.shown_url())
            .finish()
    }
}

impl PgStore {
    /// Connects (see [`PgDb::connect`]) and migrates the schema.
    pub fn connect(url: &str, connections: u32) -> Result<PgStore, StoreError> {
        Ok(PgStore {
            db: PgDb::connect(url, connections)?,
            feed: ChangeFeed::new(),
            node: Mutex::new(None),
            lease: chrono::Duration::from_std(DEFAULT_LEASE).expect("30 s fits"),
            claims: Mutex::new(HashMap::new()),
            fault: Mutex::new(None),
        })
    }

    /// Sets how long a claim holds without a heartbeat (before `join`).
    pub fn set_lease(&mut self, lease: std::time::Duration) {
        self.lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    }

    /// How long a claim holds without a heartbeat.
    pub fn lease(&self) -> chrono::Duration {
        self.lease
    }

    /// Registers this process as node `node` (see `PgDb::register_node`): from now on its
    /// claims are leased to that node and renewed by [`PgStore::heartbeat`].
    pub fn join(&self, node: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.db.register_node(node, now, now + self.lease)?;
        *lock(&self.node) = Some(node.to_string());
        Ok(())
    }

    /// The node this process claims for, once it joined.
    pub fn node(&self) -> Option<String> {
        lock(&self.node).clone()
    }

    /// Renews the lease of this node and of every claim it holds. Answers false when the
    /// others presumed it dead meanwhile (its row was removed): it must join again. What they
    /// recovered of its claims carries another claim token now, so every outcome this process
    /// still reports for those is refused (`fenced`); a claim whose stored token is still the
    /// one this process made was not taken over (a recovery skips rows locked at that moment,
    /// and claims made after it), stays this process's, and is renewed once it joined again.
    pub fn heartbeat(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let Some(node) = self.node() else {
            return Ok(true);
        };
        let until = now + self.lease;
        if !self.db.heartbeat(&node, now, until)? {
            return Ok(false);
        }
        let mut client = self.db.client()?;
        client
            .execute(
                "UPDATE sdlc_actions SET lease_until = $1 WHERE node = $2 AND status = 2",
                &[&until.timestamp_millis(), &node],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot renew the claims' lease", e))?;
        Ok(true)
    }

    /// Recovers what nodes presumed dead left Running (their claims' and their own leases
    /// run out), as recovery at start does on redb: each is failed as interrupted, or goes
    /// back to Pending when its retry policy allows. Any live node may run this at any time;
    /// two at once recover different actions.
    pub fn recover_expired(&self, now: DateTime<Utc>) -> Result<RecoveryReport, StoreError> {
        self.recover(now, None)
    }

    /// Recovers the claims of nodes presumed dead and, with `own`, every claim left under
    /// this node's name (or, before it joined, under no node): the process that held the
    /// name before is gone, since a live name is refused. A claim whose tool was not marked
    /// started (see [`PgStore::mark_started`]) goes back to Pending.
    fn recover(
        &self,
        now: DateTime<Utc>,
        own: Option<Option<&str>>,
    ) -> Result<RecoveryReport, StoreError> {
        let report = self.write_at(
            now,
            |t| {
                let (expired, marked) = t.expired_claims(now.timestamp_millis(), None)?;
                let mut report = rules::recover_in(t, expired, now, Some(&marked))?;
                if let Some(node) = own {
                    let (left, marked) = t.expired_claims(now.timestamp_millis(), Some(node))?;
                    let mine = rules::recover_in(t, left, now, Some(&marked))?;
                    report.interrupted.extend(mine.interrupted);
                    report.retried += mine.retried;
                    report.returned.extend(mine.returned);
                    report.runs.extend(mine.runs);
                }
                Ok(report)
            },
            |report| !report.interrupted.is_empty() || !report.returned.is_empty(),
        )?;
        for id in &report.interrupted {
            tracing::warn!(action = %id, "recovered a run its node left (dead, or stopped renewing its lease)");
        }
        for id in &report.returned {
            tracing::info!(action = %id, "its node left it claimed but never started its tool: pending again");
        }
        Ok(report)
    }

    /// `work` without what is no longer this process's to record: an outcome or hand-back
    /// for an action whose stored claim is not the one this process made (another node
    /// recovered it while this one was paused or cut off). Logs each one refused.
    fn fenced(&self, t: &mut PgTxn<'_>, work: &SettleWork) -> Result<SettleWork, StoreError> {
        let mut work = work.clone();
        let ids = work.ended_claims();
        if ids.is_empty() {
            return Ok(work);
        }
        let current = t.current_claims(&ids)?;
        let mine = lock(&self.claims);
        // An action that is not Running is left to the rules, which refuse to finish it as
        // on redb, unless this process claimed it: then another node recovered it, and the
        // outcome is late. A Running action is this process's only under its own claim.
        let holds = |id: &Uuid| {
            let held = match (mine.get(id), current.get(id)) {
                (Some(token), Some(stored)) => token == stored,
                (None, None) => true,
                _ => false,
            };
            if !held {
                tracing::warn!(
                    action = %id,
                    "late outcome refused: the action is no longer this node's claim \
                     (another node recovered it after this one stopped renewing its lease)"
                );
            }
            held
        };
        work.outcomes.retain(|(id, _)| holds(id));
        work.returned.retain(|id| holds(id));
        work.deferred.retain(|(id, _)| holds(id));
        work.excerpts.retain(|(id, _)| current.contains_key(id));
        Ok(work)
    }

    /// The database, for the node registry.
    pub fn db(&self) -> &PgDb {
        &self.db
    }

    /// A feed of what each commit of this process changes.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Changes> {
        self.feed.subscribe()
    }

    /// Runs `work` in one transaction and commits it; runs it again when PostgreSQL aborted
    /// it for a conflict with another writer. `changed` says whether what `work` returned
    /// needs a commit (when not, the transaction is rolled back: it wrote nothing).
    fn write_if<T>(
        &self,
        work: impl FnMut(&mut PgTxn<'_>) -> Result<T, StoreError>,
        changed: impl Fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        self.write_at(Utc::now(), work, changed)
    }

    /// `write_if`, with the claims it makes leased from `now` (the time the operation is
    /// given, as every time it records).
    pub(super) fn write_at<T>(
        &self,
        now: DateTime<Utc>,
        mut work: impl FnMut(&mut PgTxn<'_>) -> Result<T, StoreError>,
        changed: impl Fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        let url = self.db.shown_url();
        let mut tries = 0;
        loop {
            tries += 1;
            let mut client = self.db.client()?;
            let tx = client
                .transaction()
                .map_err(|e| fail(url, "cannot begin a transaction", e))?;
            self.feed.begin();
            let mut t = PgTxn::new(tx, url);
            let lease_until = (now + self.lease).timestamp_millis();
            t.claiming_for(self.node(), lease_until);
            let result = work(&mut t);
            let conflicted = t.conflicted;
            match result {
                Ok(value) if changed(&value) => match t.commit() {
                    Ok(claimed) => {
                        lock(&self.claims).extend(claimed);
                        outbox::after_commit();
                        self.feed.committed();
                        return Ok(value);
                    }
                    Err(err) if is_conflict(&err) && tries < CONFLICT_RETRIES => continue,
                    Err(err) => return Err(err),
                },
                // Dropping the transaction rolls it back.
                Ok(value) => return Ok(value),
                Err(_) if conflicted && tries < CONFLICT_RETRIES => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// The action with this id.
    pub fn get(&self, id: Uuid) -> Result<Option<Action>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query("SELECT record FROM sdlc_actions WHERE id = $1", &[&id])
            .map_err(|e| fail(self.db.shown_url(), "cannot read an action", e))?;
        rows.first()
            .map(|row| decode_json(id, row.get(0)))
            .transpose()
    }

    /// The stored log of attempt `attempt` of action `id`, or its newest one.
    pub fn run_log(
        &self,
        id: Uuid,
        attempt: Option<u32>,
    ) -> Result<Option<crate::logs::StoredLog>, StoreError> {
        let attempt = attempt.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT attempt, log FROM sdlc_run_logs
                 WHERE action_id = $1 AND ($2::int4 IS NULL OR attempt = $2)
                 ORDER BY attempt DESC LIMIT 1",
                &[&id, &attempt],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot read a run's log", e))?;
        Ok(rows.first().map(|row| crate::logs::StoredLog {
            attempt: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
            bytes: row.get(1),
        }))
    }

    /// Up to `limit` action ids whose hex digits start or end with `fragment` (a walk of the
    /// ids, for a short id given by hand).
    pub fn ids_matching(&self, fragment: &str, limit: usize) -> Result<Vec<Uuid>, StoreError> {
        if !fragment.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT id FROM sdlc_actions
                 WHERE replace(id::text, '-', '') LIKE $1 || '%'
                    OR replace(id::text, '-', '') LIKE '%' || $1
                 LIMIT $2",
                &[&fragment, &(limit.min(i64::MAX as usize) as i64)],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot look up a short id", e))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Stores what runs still going printed so far (action, attempt, stored form), for
    /// followers on other nodes; never over an attempt's final log.
    pub fn put_partial_logs(&self, logs: &[(Uuid, u32, Vec<u8>)]) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = logs.iter().map(|(id, _, _)| *id).collect();
        let attempts: Vec<i32> = logs
            .iter()
            .map(|(_, attempt, _)| i32::try_from(*attempt).unwrap_or(i32::MAX))
            .collect();
        let bytes: Vec<&[u8]> = logs.iter().map(|(_, _, log)| log.as_slice()).collect();
        let mut client = self.db.client()?;
        client
            .execute(
                // Only for actions still stored and running: a run's final log may have been
                // committed since this snapshot was taken.
                "INSERT INTO sdlc_run_logs (action_id, attempt, log, partial)
                 SELECT r.id, r.attempt, r.log, true
                 FROM unnest($1::uuid[], $2::int4[], $3::bytea[]) AS r(id, attempt, log)
                 JOIN sdlc_actions a ON a.id = r.id AND a.status = 2
                 ON CONFLICT (action_id, attempt) DO UPDATE SET log = excluded.log
                 WHERE sdlc_run_logs.partial",
                &[&ids, &attempts, &bytes],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot store running logs", e))?;
        Ok(())
    }

    /// The newest occurrence of the series `id` belongs to (the action itself for one-offs).
    pub fn series_head(&self, id: Uuid) -> Result<Option<Action>, StoreError> {
        let Some(action) = self.get(id)? else {
            return Ok(None);
        };
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT a.record, a.id FROM sdlc_series s JOIN sdlc_actions a ON a.id = s.head
                 WHERE s.series = $1",
                &[&action.series],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot read a series", e))?;
        match rows.first() {
            Some(row) => Ok(Some(decode_json(row.get(1), row.get(0))?)),
            None => Ok(Some(action)),
        }
    }

    /// The engine's settle (see `ActionDb::settle_work`), in one transaction.
    pub fn settle_work(
        &self,
        work: SettleWork,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        claim_limit: usize,
    ) -> Result<Settled, StoreError> {
        // The tokens the work's outcomes were made under, to forget once they are recorded
        // (a settle may claim the same action again, under a new token).
        let ids = work.ended_claims();
        let before: HashMap<Uuid, Uuid> = {
            let claims = lock(&self.claims);
            ids.iter()
                .filter_map(|id| Some((*id, *claims.get(id)?)))
                .collect()
        };
        let (settled, _) = self.write_at(
            now,
            |t| {
                let work = self.fenced(t, &work)?;
                rules::settle_in(t, work, now, claim_until, claim_limit)
            },
            |(_, changed)| *changed,
        )?;
        let mut claims = lock(&self.claims);
        for (id, token) in before {
            if claims.get(&id) == Some(&token) {
                claims.remove(&id);
            }
        }
        Ok(settled)
    }

    /// Recovery at start (see `ActionDb::startup_recovery_knowing`). The database is shared:
    /// what live nodes run is theirs, so what is recovered is the claims of nodes presumed
    /// dead, and those left under this node's own name by the process that held it before.
    /// Which of them started is what the start marks say: every tool is marked before it
    /// starts (and rows from before the marks count as started), so the run log (`_started`)
    /// adds nothing here.
    pub fn startup_recovery_knowing(
        &self,
        now: DateTime<Utc>,
        _started: Option<&HashSet<Uuid>>,
    ) -> Result<RecoveryReport, StoreError> {
        let node = self.node();
        self.recover(now, Some(node.as_deref()))
    }

    /// Marks the tools of `ids` (claimed by this process) as about to start, in one
    /// statement: each row whose stored claim is still this process's, with more than a
    /// margin of its lease left, gets that claim as its `started_claim`, which is what
    /// recovery of a dead node reads (`now` is the time on the engine's clock, which the
    /// leases are written on). Answers the ids marked, and by when their tools must
    /// have started (the earliest lease's end less the margin, on the boot clock: a node
    /// paused after the mark must not start a tool once the others may have recovered its
    /// claim). A claim still held whose lease is too short is `lapsed` (to be handed back);
    /// the rest were recovered by another node meanwhile, are no longer this process's, and
    /// must not start.
    pub fn mark_starts(&self, ids: &[Uuid], now: DateTime<Utc>) -> Result<StartMarks, StoreError> {
        let (held, tokens): (Vec<Uuid>, Vec<Uuid>) = {
            let claims = lock(&self.claims);
            ids.iter()
                .filter_map(|id| Some((*id, *claims.get(id)?)))
                .unzip()
        };
        let margin = self.start_margin();
        // Read before the statement: the deadline is then no later than the true one. `now`
        // is on the clock the leases were written with (the engine's).
        let asked_on_boot_clock = crate::clock::boot_clock();
        let asked_at = now.timestamp_millis();
        let mut client = self.db.client()?;
        // Every row still held, with its lease end where it was marked (null where the lease
        // is too short). The outer select sees the rows as before the update, whose claim and
        // status it does not change.
        let rows = client
            .query(
                "WITH m AS (SELECT * FROM unnest($1::uuid[], $2::uuid[]) AS m(id, claim)),
                 marked AS (
                     UPDATE sdlc_actions a SET started_claim = m.claim FROM m
                     WHERE a.id = m.id AND a.claim = m.claim AND a.status = 2
                         AND a.lease_until > $3
                     RETURNING a.id, a.lease_until)
                 SELECT a.id, marked.lease_until FROM sdlc_actions a
                 JOIN m ON a.id = m.id AND a.claim = m.claim AND a.status = 2
                 LEFT JOIN marked ON marked.id = a.id",
                &[&held, &tokens, &(asked_at + margin.as_millis() as i64)],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot mark tools as started", e))?;
        let mut marks = StartMarks::default();
        let mut earliest_end: Option<i64> = None;
        for row in &rows {
            let id: Uuid = row.get(0);
            match row.get::<_, Option<i64>>(1) {
                Some(lease_until) => {
                    marks.marked.push(id);
                    earliest_end = Some(earliest_end.map_or(lease_until, |e| e.min(lease_until)));
                }
                None => {
                    tracing::warn!(
                        action = %id,
                        "not started: too little of its claim's lease is left to start it \
                         (this node fell behind renewing it); handed back"
                    );
                    marks.lapsed.push(id);
                }
            }
        }
        if let Some(end) = earliest_end {
            let left = u64::try_from(end - asked_at).unwrap_or(0);
            let left = std::time::Duration::from_millis(left).saturating_sub(margin);
            marks.start_by = Some(asked_on_boot_clock + left);
        }
        let answered: HashSet<Uuid> = marks.marked.iter().chain(&marks.lapsed).copied().collect();
        if answered.len() < ids.len() {
            let mut claims = lock(&self.claims);
            for id in ids.iter().filter(|id| !answered.contains(id)) {
                tracing::warn!(
                    action = %id,
                    "not started: the action is no longer this node's claim \
                     (another node recovered it after this one stopped renewing its lease)"
                );
                claims.remove(id);
            }
        }
        Ok(marks)
    }

    /// How much of a claim's lease must be left to start its tool: a quarter of the lease
    /// (the heartbeat renews it every third, so a node keeping up always has more), covering
    /// the time from the check to the spawn and the clocks of nodes differing a little.
    fn start_margin(&self) -> std::time::Duration {
        (self.lease / 4)
            .to_std()
            .unwrap_or(std::time::Duration::ZERO)
    }

    /// Stores a manual run of the action `id`, due at once, outside its schedule.
    pub fn run_now(&self, id: Uuid, now: DateTime<Utc>) -> Result<Action, StoreError> {
        let source = self.get(id)?.ok_or(StoreError::NotFound(id))?;
        let manual = source.copy_for(ActionTrigger::Manual { requested_at: now }, now);
        self.insert(&manual)?;
        Ok(manual)
    }

    /// Actions matching `filter`, newest (by last update) first.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Action>, StoreError> {
        let limit = filter.limit.unwrap_or(i64::MAX as usize) as i64;
        let status = filter.status.map(|kind| i16::from(status_byte(kind)));
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT id, record FROM sdlc_actions
                 WHERE ($1::int2 IS NULL OR status = $1) AND ($2::text IS NULL OR tool = $2)
                 ORDER BY updated_at DESC, id DESC LIMIT $3",
                &[&status, &filter.tool, &limit],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot list actions", e))?;
        rows.iter()
            .map(|row| decode_json(row.get(0), row.get(1)))
            .collect()
    }

    /// How many actions are stored in each status.
    pub fn count_by_status(&self) -> Result<Vec<(StatusKind, u64)>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT status, count(*) FROM sdlc_actions GROUP BY status",
                &[],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot count actions", e))?;
        Ok(StatusKind::ALL
            .into_iter()
            .map(|kind| {
                let n = rows
                    .iter()
                    .find(|row| row.get::<_, i16>(0) == i16::from(status_byte(kind)))
                    .map_or(0, |row| row.get::<_, i64>(1) as u64);
                (kind, n)
            })
            .collect())
    }

    /// The earliest due time among Pending actions.
    pub fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT min(due_at) FROM sdlc_actions WHERE due_at IS NOT NULL",
                &[],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot read what is due", e))?;
        Ok(rows
            .first()
            .and_then(|row| row.get::<_, Option<i64>>(0))
            .and_then(DateTime::from_timestamp_millis))
    }

    /// A run, its steps and its plan.
    pub fn get_run(&self, run: Uuid) -> Result<Option<RunDetail>, StoreError> {
        // A read-only transaction: the run's rows as one commit left them.
        self.write_if(
            |t| {
                let Some(header) = t.plan_run(run)? else {
                    return Ok(None);
                };
                let steps = t.steps(run)?;
                let graph = t.plan_graph(run)?;
                Ok(Some(RunDetail {
                    run: header,
                    steps,
                    graph,
                }))
            },
            |_| false,
        )
    }

    /// Runs matching `filter`, newest first (see `ActionDb::list_runs`).
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<PlanRun>, StoreError> {
        let limit = filter
            .limit
            .unwrap_or(i64::MAX as usize)
            .min(i64::MAX as usize) as i64;
        let (before_ms, before_id) = match filter.before {
            Some(key) => (
                i64::from_be_bytes(key[..8].try_into().expect("run cursors are 24 bytes")),
                Uuid::from_slice(&key[8..]).expect("run cursors end with an id"),
            ),
            None => (i64::MAX, Uuid::max()),
        };
        let status = filter.status.map(|s| s.as_str());
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT id, record FROM sdlc_plan_runs
                 WHERE ($1::text IS NULL OR plan_id = $1) AND ($2::text IS NULL OR status = $2)
                   AND (created_at, id) < ($3, $4)
                 ORDER BY created_at DESC, id DESC LIMIT $5",
                &[&filter.plan, &status, &before_ms, &before_id, &limit],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot list plan runs", e))?;
        rows.iter()
            .map(|row| decode_json(row.get(0), row.get(1)))
            .collect()
    }

    /// Up to `limit` events of a run after sequence number `after` (all when None).
    pub fn run_events(
        &self,
        run: Uuid,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunEvent>, StoreError> {
        let after = after.map_or(-1, |seq| seq.min(i64::MAX as u64) as i64);
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT record FROM sdlc_run_events WHERE run = $1 AND seq > $2
                 ORDER BY seq LIMIT $3",
                &[&run, &after, &(limit.min(i64::MAX as usize) as i64)],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot read a run's events", e))?;
        rows.iter()
            .map(|row| decode_json(run, row.get(0)))
            .collect()
    }
}

impl PgStore {
    /// True: several daemons and every command write to the database.
    pub fn shared(&self) -> bool {
        true
    }

    /// The database's URL, password masked.
    pub fn location(&self) -> String {
        self.db.shown_url().to_string()
    }

    /// Why the store is taken as down: PostgreSQL could not be reached, since the time
    /// given, until `reopen` reaches it again.
    pub fn fault(&self) -> Option<crate::store::StorageFault> {
        lock(&self.fault).clone()
    }

    /// Reaches PostgreSQL again after a fault (the pool makes new connections as it needs
    /// them): the fault is cleared once a query answers, or, after a full disk, once a write
    /// that needs new space succeeds (rolled back: it only proves there is room).
    pub fn reopen(&self) -> Result<(), StoreError> {
        let disk_full = lock(&self.fault).as_ref().is_some_and(|f| f.disk_full);
        let url = self.db.shown_url();
        let reached = self.db.client().and_then(|mut client| {
            if !disk_full {
                return client
                    .simple_query("SELECT 1")
                    .map(|_| ())
                    .map_err(|e| fail(url, "cannot reach the server", e));
            }
            let mut tx = client
                .transaction()
                .map_err(|e| fail(url, "cannot begin a transaction", e))?;
            tx.execute(
                "INSERT INTO sdlc_space_probe (b) VALUES ($1)",
                &[&space_probe()],
            )
            .map_err(|e| fail(url, "no room yet", e))?;
            // Dropping the transaction rolls the probe back.
            Ok(())
        });
        match reached {
            Ok(()) => {
                if lock(&self.fault).take().is_some() {
                    tracing::info!(db = %self.db.shown_url(), "PostgreSQL answers again");
                }
                Ok(())
            }
            Err(err) => {
                if let Some(fault) = lock(&self.fault).as_mut() {
                    fault.reopen_attempts += 1;
                }
                Err(err)
            }
        }
    }

    /// Notes `err` as the store's fault when it says PostgreSQL cannot be reached or has no
    /// disk space left.
    fn observe(&self, err: &StoreError) {
        let (detail, disk_full) = match err {
            StoreError::PostgresUnreachable { detail, .. } => (detail, false),
            StoreError::PostgresDiskFull { detail, .. } => (detail, true),
            _ => return,
        };
        let mut fault = lock(&self.fault);
        if fault.is_some() {
            return;
        }
        let what = if disk_full {
            "PostgreSQL has no disk space left"
        } else {
            "PostgreSQL cannot be reached"
        };
        tracing::error!(db = %self.db.shown_url(), "{what}: {detail}");
        *fault = Some(crate::store::StorageFault {
            since: Utc::now(),
            detail: detail.clone(),
            disk_full,
            reopen_attempts: 0,
            file_gone: false,
            damaged: false,
        });
    }

    /// Nothing to report: PostgreSQL recovers its own files.
    pub fn open_report(&self) -> crate::store::OpenReport {
        crate::store::OpenReport::default()
    }

    /// None: there is no file to lose.
    pub fn check_in_place(&self) -> Option<crate::store::StorageFault> {
        None
    }

    /// Reads every stored record and checks it decodes (its checksum and version): a row
    /// edited by hand is reported, naming it. Repairs nothing (PostgreSQL keeps its own
    /// pages whole): answers false.
    pub fn verify(&self) -> Result<bool, StoreError> {
        let mut client = self.db.client()?;
        let url = self.db.shown_url();
        let mut after = Uuid::nil();
        loop {
            let rows = client
                .query(
                    "SELECT id, record FROM sdlc_actions WHERE id > $1 ORDER BY id LIMIT 1000",
                    &[&after],
                )
                .map_err(|e| fail(url, "cannot read actions", e))?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.get(0);
            for row in &rows {
                decode_json::<Action>(row.get(0), row.get(1))?;
            }
        }
        for table in ["sdlc_plan_runs", "sdlc_outbox", "sdlc_routes"] {
            let rows = client
                .query(&format!("SELECT id, record FROM {table}"), &[])
                .map_err(|e| fail(url, "cannot read records", e))?;
            for row in &rows {
                decode_json::<serde_json::Value>(row.get(0), row.get(1))?;
            }
        }
        Ok(false)
    }

    /// Runs `work`, noting PostgreSQL found unreachable as the store's fault (no other
    /// containment is needed: nothing here reads memory a file could corrupt).
    pub fn contain(
        &self,
        work: &mut dyn FnMut() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let result = work();
        if let Err(err) = &result {
            self.observe(err);
        }
        result
    }

    /// Every Running action this node claimed that is not in `known` goes back to Pending
    /// (see `ActionDb::return_unknown_running`): a claim whose commit was stored though its
    /// answer was lost (the connection broke), which the heartbeat would otherwise renew
    /// for ever.
    pub fn return_unknown_running(
        &self,
        known: &HashSet<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let node = self.node();
        let returned = self.write_at(
            now,
            |t| {
                let (mine, _) = t.expired_claims(now.timestamp_millis(), Some(node.as_deref()))?;
                let mut returned = Vec::new();
                for id in mine.into_iter().filter(|id| !known.contains(id)) {
                    let old = t.get(id)?.ok_or(StoreError::NotFound(id))?;
                    if old.plan_run.is_some() || old.is_external() {
                        continue;
                    }
                    rules::return_in(t, &old, now, None)?;
                    returned.push(id);
                }
                Ok(returned)
            },
            |returned| !returned.is_empty(),
        )?;
        let mut claims = lock(&self.claims);
        for id in &returned {
            claims.remove(id);
        }
        Ok(returned)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `err` is PostgreSQL aborting a commit for a conflict with another transaction.
fn is_conflict(err: &StoreError) -> bool {
    matches!(err, StoreError::Postgres { detail, .. }
        if detail.contains("(40P01)") || detail.contains("(40001)"))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

/// What the disk-space probe writes: 256 KiB that do not compress (PostgreSQL would shrink a
/// repeated byte to nothing), so storing them needs new pages, as real writes do.
fn space_probe() -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..256 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
