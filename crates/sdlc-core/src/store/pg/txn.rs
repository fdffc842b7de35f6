//! `PgTxn`: one PostgreSQL transaction as the store's rules use it (`store::txn::Txn`), so
//! claiming, finishing, recurring and plan runs behave exactly as on redb.
//!
//! Several daemons write at once, so where redb has one writer this takes row locks: every
//! action, series and plan run the rules read is read `FOR UPDATE` (a second transaction
//! touching it waits, then sees what the first committed), and the due range is read
//! `FOR UPDATE SKIP LOCKED`, so two nodes claiming at once take different actions. What the
//! rules write is kept here and sent at commit (or before a query that must see it) as one
//! statement per table, whatever the number of rows, in id order so that writers lock rows
//! in one order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use postgres::error::SqlState;
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::{Action, ActionTrigger, StatusKind};
use crate::notify::{DeliveryState, Notification, NotifyConfig};
use crate::plan::{Plan, PlanGraph, PlanRun, RunEvent, StepState};
use crate::run_group::{self, Delta, GroupChange};
use crate::store::txn::Txn;
use crate::store::{decode_json, due_key, encode_json, is_due_indexed, millis, status_byte};

/// One open transaction and what it has read and not yet sent.
pub(crate) struct PgTxn<'c> {
    tx: postgres::Transaction<'c>,
    url: &'c str,
    /// Set when PostgreSQL aborted the transaction for a conflict with another (a deadlock,
    /// a serialization failure): the whole transaction may be run again.
    pub(crate) conflicted: bool,
    /// Actions read or written, by id; None for one known to be absent (or removed here).
    actions: HashMap<Uuid, Option<Action>>,
    /// Actions written or removed and not yet sent: true for written, false for removed.
    unsent: BTreeMap<Uuid, bool>,
    /// Series heads read or written (None: the series has none), and those not yet sent.
    heads: HashMap<Uuid, Option<Uuid>>,
    unsent_heads: BTreeMap<Uuid, Option<Uuid>>,
    runs: HashMap<Uuid, PlanRun>,
    unsent_runs: BTreeMap<Uuid, ()>,
    steps: HashMap<(Uuid, u32), StepState>,
    unsent_steps: BTreeMap<(Uuid, u32), ()>,
    unsent_events: Vec<RunEvent>,
    new_events: Vec<RunEvent>,
    notify_config: Option<Option<NotifyConfig>>,
    unsent_notes: Vec<Notification>,
    /// Run logs to store: action, attempt, stored form.
    unsent_logs: Vec<(Uuid, i32, Vec<u8>)>,
    /// The node claims are made for (None: a command, not a daemon), and until when (Unix
    /// ms) they hold unless renewed.
    claimant: Option<String>,
    lease_until: i64,
    /// Actions this transaction claimed, with each claim's token.
    new_claims: HashMap<Uuid, Uuid>,
    /// Whether it stored an action that is due (the nodes are woken when it commits).
    stored_due: bool,
    /// Run group changes not yet sent (`crate::run_group`): deltas to add, groups to sum
    /// again.
    group_deltas: BTreeMap<String, Delta>,
    group_recounts: BTreeSet<String>,
}

impl<'c> PgTxn<'c> {
    pub(crate) fn new(tx: postgres::Transaction<'c>, url: &'c str) -> PgTxn<'c> {
        PgTxn {
            tx,
            url,
            conflicted: false,
            actions: HashMap::new(),
            unsent: BTreeMap::new(),
            heads: HashMap::new(),
            unsent_heads: BTreeMap::new(),
            runs: HashMap::new(),
            unsent_runs: BTreeMap::new(),
            steps: HashMap::new(),
            unsent_steps: BTreeMap::new(),
            unsent_events: Vec::new(),
            new_events: Vec::new(),
            notify_config: None,
            unsent_notes: Vec::new(),
            unsent_logs: Vec::new(),
            claimant: None,
            lease_until: 0,
            new_claims: HashMap::new(),
            stored_due: false,
            group_deltas: BTreeMap::new(),
            group_recounts: BTreeSet::new(),
        }
    }

    /// Claims made in this transaction are `node`'s, held until `lease_until` (Unix ms).
    pub(crate) fn claiming_for(&mut self, node: Option<String>, lease_until: i64) {
        self.claimant = node;
        self.lease_until = lease_until;
    }

    /// The claim token of each of `ids` that is stored Running, its row locked until this
    /// transaction ends (so the claim cannot change before the outcome is recorded).
    pub(crate) fn current_claims(
        &mut self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Uuid>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.send()?;
        let rows = self.query(
            "cannot read claims",
            "SELECT id, claim FROM sdlc_actions WHERE id = ANY($1) AND status = 2
             ORDER BY id FOR UPDATE",
            &[&ids],
        )?;
        Ok(rows
            .iter()
            .filter_map(|row| Some((row.get(0), row.get::<_, Option<Uuid>>(1)?)))
            .collect())
    }

    /// Running actions whose claim ran out at `now_ms` and whose node is not alive (gone
    /// from the registry, or its own lease run out: then it is removed from the registry
    /// here, so that its next heartbeat tells it); or, with `left_by`, every Running action
    /// claimed under that node (None: under no node). Locked for recovery; those another
    /// transaction is recovering are passed over. With them, those whose tool was marked
    /// started under the claim they hold (see `PgStore::mark_started`).
    pub(crate) fn expired_claims(
        &mut self,
        now_ms: i64,
        left_by: Option<Option<&str>>,
    ) -> Result<(Vec<Uuid>, HashSet<Uuid>), StoreError> {
        self.send()?;
        let rows = match left_by {
            None => {
                // The nodes presumed dead go first, in this transaction: a heartbeat racing
                // with it waits for the row, then finds it gone and learns it is dead.
                self.query(
                    "cannot forget dead nodes",
                    "DELETE FROM sdlc_nodes WHERE lease_until < to_timestamp($1::int8 / 1000.0)",
                    &[&now_ms],
                )?;
                self.query(
                    "cannot read expired claims",
                    // (A run reported from outside is Running under no claim: nobody's.)
                    "SELECT a.id FROM sdlc_actions a
                     WHERE a.status = 2 AND a.claim IS NOT NULL AND a.lease_until < $1
                       AND NOT EXISTS (SELECT 1 FROM sdlc_nodes n WHERE n.node = a.node)
                     ORDER BY a.id
                     FOR UPDATE OF a SKIP LOCKED",
                    &[&now_ms],
                )?
            }
            Some(node) => self.query(
                "cannot read the claims left under this node",
                "SELECT id FROM sdlc_actions
                 WHERE status = 2 AND claim IS NOT NULL AND node IS NOT DISTINCT FROM $1
                 ORDER BY id FOR UPDATE SKIP LOCKED",
                &[&node],
            )?,
        };
        let ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
        // Read them here, under the lock just taken.
        let rows = self.query(
            "cannot read expired claims",
            "SELECT id, record, started_claim IS NOT DISTINCT FROM claim
             FROM sdlc_actions WHERE id = ANY($1)",
            &[&ids],
        )?;
        let started = rows
            .iter()
            .filter(|row| row.get::<_, bool>(2))
            .map(|row| row.get(0))
            .collect();
        self.cache_rows(&rows)?;
        Ok((ids, started))
    }

    /// Sends what is left and commits. Returns the actions this transaction claimed, with
    /// each claim's token.
    pub(crate) fn commit(mut self) -> Result<HashMap<Uuid, Uuid>, StoreError> {
        self.send()?;
        if self.stored_due {
            // Delivered to every listening node when (and only if) this commits.
            self.execute(
                "cannot wake the nodes",
                "SELECT pg_notify($1, '')",
                &[&super::wake::CHANNEL],
            )?;
        }
        let url = self.url;
        let claims = std::mem::take(&mut self.new_claims);
        self.tx
            .commit()
            .map_err(|e| fail(url, "cannot commit", e))?;
        Ok(claims)
    }

    /// A PostgreSQL error as the store reports it, noting a conflict with another writer.
    fn fail(&mut self, what: &str, err: postgres::Error) -> StoreError {
        if err.code().is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        }) {
            self.conflicted = true;
        }
        fail(self.url, what, err)
    }

    fn query(
        &mut self,
        what: &str,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        match self.tx.query(sql, params) {
            Ok(rows) => Ok(rows),
            Err(e) => Err(self.fail(what, e)),
        }
    }

    /// The database's URL, password masked.
    pub(crate) fn url(&self) -> &'c str {
        self.url
    }

    /// The transaction itself, for a statement of its own (after `query_rows`, which sends
    /// what the rules wrote so far).
    pub(crate) fn client(&mut self) -> &mut postgres::Transaction<'c> {
        &mut self.tx
    }

    /// A query of this transaction, after what it wrote so far is sent.
    pub(crate) fn query_rows(
        &mut self,
        what: &str,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        self.send()?;
        self.query(what, sql, params)
    }

    fn execute(
        &mut self,
        what: &str,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        match self.tx.execute(sql, params) {
            Ok(n) => Ok(n),
            Err(e) => Err(self.fail(what, e)),
        }
    }

    /// Sends every write kept so far, so that a query sees them.
    fn send(&mut self) -> Result<(), StoreError> {
        self.send_actions()?;
        self.send_groups()?;
        self.send_heads()?;
        self.send_plans()?;
        self.send_notes()?;
        self.send_logs()
    }

    /// Notes what storing `new` in place of `old` does to the run groups.
    fn note_groups(&mut self, old: Option<&Action>, new: Option<&Action>) {
        for change in run_group::changes(old, new) {
            match change {
                GroupChange::Add(run, delta) => {
                    self.group_deltas.entry(run).or_default().merge(&delta)
                }
                GroupChange::Recount(run) => {
                    self.group_recounts.insert(run);
                }
            }
        }
    }

    /// Sends the run group changes (after the actions: a recount reads them).
    fn send_groups(&mut self) -> Result<(), StoreError> {
        let deltas = std::mem::take(&mut self.group_deltas);
        if let Err(e) = super::run_groups::add(&mut self.tx, &deltas) {
            return Err(self.fail("cannot store run groups", e));
        }
        let recounts = std::mem::take(&mut self.group_recounts);
        if let Err(e) = super::run_groups::recount(&mut self.tx, &recounts) {
            return Err(self.fail("cannot sum run groups again", e));
        }
        Ok(())
    }

    fn send_logs(&mut self) -> Result<(), StoreError> {
        if self.unsent_logs.is_empty() {
            return Ok(());
        }
        let unsent = std::mem::take(&mut self.unsent_logs);
        let ids: Vec<Uuid> = unsent.iter().map(|(id, _, _)| *id).collect();
        let attempts: Vec<i32> = unsent.iter().map(|(_, attempt, _)| *attempt).collect();
        let logs: Vec<&[u8]> = unsent.iter().map(|(_, _, log)| log.as_slice()).collect();
        self.execute(
            "cannot store run logs",
            "INSERT INTO sdlc_run_logs (action_id, attempt, log)
             SELECT * FROM unnest($1::uuid[], $2::int4[], $3::bytea[])
             ON CONFLICT (action_id, attempt) DO UPDATE SET log = excluded.log, partial = false",
            &[&ids, &attempts, &logs],
        )?;
        Ok(())
    }

    fn send_actions(&mut self) -> Result<(), StoreError> {
        if self.unsent.is_empty() {
            return Ok(());
        }
        let unsent = std::mem::take(&mut self.unsent);
        let mut row = ActionRows::default();
        let mut removed = Vec::new();
        for (id, written) in unsent {
            match (written, self.actions.get(&id)) {
                (true, Some(Some(action))) => {
                    let claim = self.new_claims.get(&id).copied();
                    row.push(action, claim, self.claimant.as_deref(), self.lease_until)?
                }
                _ => removed.push(id),
            }
        }
        self.stored_due |= row.due.iter().any(Option::is_some);
        if !row.ids.is_empty() {
            self.execute(
                "cannot store actions",
                // A row written Running without a new claim keeps the claim it has (an
                // update of a run in flight); any other status holds none.
                // (`run_ids` goes as one text per row, its ids separated by U+001F: unnest cannot
                // take an array of arrays of different lengths.)
                "INSERT INTO sdlc_actions (id, status, due_at, series, updated_at,
                     created_at, tool, label, run_ids, step_run, recurring, slot,
                     claim, node, lease_until, record, run_at)
                 SELECT id, status, due_at, series, updated_at, created_at, tool, label,
                        CASE WHEN run_ids = '' THEN '{}'::text[]
                             ELSE string_to_array(run_ids, E'\\x1f') END,
                        step_run, recurring, slot, claim, node, lease_until, record, run_at
                 FROM unnest($1::uuid[], $2::int2[], $3::int8[], $4::uuid[],
                             $5::int8[], $6::int8[], $7::text[], $8::text[], $9::text[],
                             $10::uuid[], $11::bool[], $12::int8[], $13::uuid[], $14::text[],
                             $15::int8[], $16::bytea[], $17::int8[])
                      AS r(id, status, due_at, series, updated_at, created_at, tool, label,
                           run_ids, step_run, recurring, slot, claim, node, lease_until,
                           record, run_at)
                 ON CONFLICT (id) DO UPDATE SET
                     status = excluded.status, due_at = excluded.due_at,
                     series = excluded.series, updated_at = excluded.updated_at,
                     created_at = excluded.created_at, tool = excluded.tool,
                     label = excluded.label, run_ids = excluded.run_ids,
                     step_run = excluded.step_run, recurring = excluded.recurring,
                     slot = excluded.slot, run_at = excluded.run_at,
                     claim = CASE WHEN excluded.status <> 2 THEN NULL
                                  ELSE coalesce(excluded.claim, sdlc_actions.claim) END,
                     node = CASE WHEN excluded.status <> 2 THEN NULL
                                 WHEN excluded.claim IS NULL THEN sdlc_actions.node
                                 ELSE excluded.node END,
                     lease_until = CASE WHEN excluded.status <> 2 THEN NULL
                                        WHEN excluded.claim IS NULL THEN sdlc_actions.lease_until
                                        ELSE excluded.lease_until END,
                     record = excluded.record",
                &[
                    &row.ids,
                    &row.statuses,
                    &row.due,
                    &row.series,
                    &row.updated,
                    &row.created,
                    &row.tools,
                    &row.labels,
                    &row.run_ids,
                    &row.step_runs,
                    &row.recurring,
                    &row.slots,
                    &row.claims,
                    &row.nodes,
                    &row.leases,
                    &row.records,
                    &row.run_at,
                ],
            )?;
        }
        if !removed.is_empty() {
            self.execute(
                "cannot remove actions",
                "DELETE FROM sdlc_actions WHERE id = ANY($1)",
                &[&removed],
            )?;
        }
        Ok(())
    }

    fn send_heads(&mut self) -> Result<(), StoreError> {
        if self.unsent_heads.is_empty() {
            return Ok(());
        }
        let unsent = std::mem::take(&mut self.unsent_heads);
        let (mut set, mut heads, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for (series, head) in unsent {
            match head {
                Some(head) => {
                    set.push(series);
                    heads.push(head);
                }
                None => gone.push(series),
            }
        }
        if !set.is_empty() {
            self.execute(
                "cannot store series heads",
                "INSERT INTO sdlc_series (series, head)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[])
                 ON CONFLICT (series) DO UPDATE SET head = excluded.head",
                &[&set, &heads],
            )?;
        }
        if !gone.is_empty() {
            self.execute(
                "cannot forget series heads",
                "DELETE FROM sdlc_series WHERE series = ANY($1)",
                &[&gone],
            )?;
        }
        Ok(())
    }

    fn send_plans(&mut self) -> Result<(), StoreError> {
        if !self.unsent_runs.is_empty() {
            let unsent = std::mem::take(&mut self.unsent_runs);
            let (mut ids, mut plans, mut statuses, mut created, mut records) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for id in unsent.into_keys() {
                let run = &self.runs[&id];
                ids.push(id);
                plans.push(run.plan_id.clone());
                statuses.push(run.status.as_str());
                created.push(millis(run.created_at) as i64);
                records.push(encode_json(id, run)?);
            }
            self.execute(
                "cannot store plan runs",
                "INSERT INTO sdlc_plan_runs (id, plan_id, status, created_at, record)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[],
                                      $5::bytea[])
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                     record = excluded.record",
                &[&ids, &plans, &statuses, &created, &records],
            )?;
        }
        if !self.unsent_steps.is_empty() {
            let unsent = std::mem::take(&mut self.unsent_steps);
            let (mut runs, mut indexes, mut records) = (Vec::new(), Vec::new(), Vec::new());
            for key in unsent.into_keys() {
                runs.push(key.0);
                indexes.push(key.1 as i32);
                records.push(encode_json(key.0, &self.steps[&key])?);
            }
            self.execute(
                "cannot store plan steps",
                "INSERT INTO sdlc_run_steps (run, idx, record)
                 SELECT * FROM unnest($1::uuid[], $2::int4[], $3::bytea[])
                 ON CONFLICT (run, idx) DO UPDATE SET record = excluded.record",
                &[&runs, &indexes, &records],
            )?;
        }
        if !self.unsent_events.is_empty() {
            let unsent = std::mem::take(&mut self.unsent_events);
            let (mut runs, mut seqs, mut records) = (Vec::new(), Vec::new(), Vec::new());
            for event in &unsent {
                runs.push(event.run_id);
                seqs.push(event.seq as i64);
                records.push(encode_json(event.run_id, event)?);
            }
            self.execute(
                "cannot store plan events",
                "INSERT INTO sdlc_run_events (run, seq, record)
                 SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bytea[])",
                &[&runs, &seqs, &records],
            )?;
        }
        Ok(())
    }

    fn send_notes(&mut self) -> Result<(), StoreError> {
        if self.unsent_notes.is_empty() {
            return Ok(());
        }
        let unsent = std::mem::take(&mut self.unsent_notes);
        // Woken by the commit's notification, the nodes' senders find them.
        self.stored_due = true;
        for note in &unsent {
            put_notification(&mut self.tx, self.url, note)?;
        }
        Ok(())
    }

    /// Reads the actions among `rows` (id, record) into the cache; returns their ids.
    fn cache_rows(&mut self, rows: &[postgres::Row]) -> Result<Vec<Uuid>, StoreError> {
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Uuid = row.get(0);
            let record: &[u8] = row.get(1);
            if let std::collections::hash_map::Entry::Vacant(entry) = self.actions.entry(id) {
                entry.insert(Some(decode_json(id, record)?));
            }
            ids.push(id);
        }
        Ok(ids)
    }

    fn written(&mut self, action: &Action) {
        self.actions.insert(action.id, Some(action.clone()));
        self.unsent.insert(action.id, true);
    }
}

/// Writes one notification (new or changed) in `tx`.
pub(crate) fn put_notification(
    tx: &mut impl postgres::GenericClient,
    url: &str,
    note: &Notification,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO sdlc_outbox (id, pending, next_try_at, created_at, record)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET pending = excluded.pending,
             next_try_at = excluded.next_try_at, record = excluded.record",
        &[
            &note.id,
            &(note.state == DeliveryState::Pending),
            &(millis(note.next_try_at) as i64),
            &(millis(note.created_at) as i64),
            &encode_json(note.id, note)?,
        ],
    )
    .map_err(|e| fail(url, "cannot store a notification", e))?;
    Ok(())
}

/// The columns of many action rows, for one `unnest` statement.
#[derive(Default)]
struct ActionRows {
    ids: Vec<Uuid>,
    statuses: Vec<i16>,
    due: Vec<Option<i64>>,
    series: Vec<Uuid>,
    updated: Vec<i64>,
    created: Vec<i64>,
    /// Each action's run time (`store::history`).
    run_at: Vec<i64>,
    tools: Vec<String>,
    labels: Vec<String>,
    run_ids: Vec<String>,
    step_runs: Vec<Option<Uuid>>,
    recurring: Vec<bool>,
    slots: Vec<Option<i64>>,
    claims: Vec<Option<Uuid>>,
    nodes: Vec<Option<String>>,
    leases: Vec<Option<i64>>,
    records: Vec<Vec<u8>>,
}

impl ActionRows {
    /// One row; `claim` is the token of a claim made in this transaction.
    fn push(
        &mut self,
        action: &Action,
        claim: Option<Uuid>,
        node: Option<&str>,
        lease_until: i64,
    ) -> Result<(), StoreError> {
        let running = action.status.kind() == StatusKind::Running && !action.is_external();
        self.claims.push(claim);
        self.nodes
            .push(node.filter(|_| running).map(str::to_string));
        self.leases.push(running.then_some(lease_until));
        self.ids.push(action.id);
        self.statuses
            .push(i16::from(status_byte(action.status.kind())));
        self.due
            .push(is_due_indexed(action).then(|| millis(action.due_at()) as i64));
        self.series.push(action.series);
        self.updated.push(millis(action.updated_at) as i64);
        self.created.push(millis(action.created_at) as i64);
        self.run_at.push(millis(action.scheduled_at()) as i64);
        self.tools.push(action.tool_name.clone());
        self.labels.push(action.label.clone());
        let run_ids: Vec<_> = action.run_ids().collect();
        self.run_ids.push(run_ids.join("\u{1f}"));
        self.step_runs.push(action.step.as_ref().map(|s| s.run_id));
        self.recurring.push(action.recurrence.is_some());
        self.slots.push(match action.trigger {
            ActionTrigger::Scheduled { next_tick_at } => Some(millis(next_tick_at) as i64),
            _ => None,
        });
        self.records.push(encode_json(action.id, action)?);
        Ok(())
    }
}

impl Txn for PgTxn<'_> {
    fn get(&mut self, id: Uuid) -> Result<Option<Action>, StoreError> {
        if let Some(known) = self.actions.get(&id) {
            return Ok(known.clone());
        }
        let rows = self.query(
            "cannot read an action",
            "SELECT id, record FROM sdlc_actions WHERE id = $1 FOR UPDATE",
            &[&id],
        )?;
        if rows.is_empty() {
            self.actions.insert(id, None);
            return Ok(None);
        }
        self.cache_rows(&rows)?;
        Ok(self.actions[&id].clone())
    }

    fn store(&mut self, old: Option<&Action>, new: &Action) -> Result<(), StoreError> {
        // A run reported from outside is nobody's claim: no node runs it or recovers it.
        let claimed = new.status.kind() == StatusKind::Running
            && !new.is_external()
            && old.is_none_or(|old| old.status.kind() != StatusKind::Running);
        if claimed {
            self.new_claims.insert(new.id, Uuid::new_v4());
        }
        // Manual runs and webhook deliveries never become the head of a schedule.
        if old.is_none() && matches!(new.trigger, ActionTrigger::Scheduled { .. }) {
            self.heads.insert(new.series, Some(new.id));
            self.unsent_heads.insert(new.series, Some(new.id));
        }
        self.note_groups(old, Some(new));
        self.written(new);
        Ok(())
    }

    fn store_record(&mut self, _old: &Action, new: &Action) -> Result<(), StoreError> {
        self.written(new);
        Ok(())
    }

    fn store_dispatched(&mut self, light: &Action) -> Result<(), StoreError> {
        self.note_groups(None, Some(light));
        self.written(light);
        Ok(())
    }

    fn remove(&mut self, old: &Action) -> Result<(), StoreError> {
        self.note_groups(Some(old), None);
        self.actions.insert(old.id, None);
        self.unsent.insert(old.id, false);
        if self.series_head(old.series)? == Some(old.id) {
            self.heads.insert(old.series, None);
            self.unsent_heads.insert(old.series, None);
        }
        Ok(())
    }

    fn due(
        &mut self,
        after: Option<[u8; 24]>,
        until: DateTime<Utc>,
        want: usize,
    ) -> Result<Vec<[u8; 24]>, StoreError> {
        self.send()?;
        let (after_ms, after_id) = match after {
            Some(key) => (
                i64::from_be_bytes(key[..8].try_into().expect("due keys are 24 bytes")),
                Uuid::from_slice(&key[8..]).expect("due keys end with an id"),
            ),
            None => (-1, Uuid::nil()),
        };
        let rows = self.query(
            "cannot read what is due",
            "SELECT id, record, due_at FROM sdlc_actions
             WHERE due_at IS NOT NULL AND (due_at, id) > ($1, $2) AND due_at <= $3
             ORDER BY due_at, id LIMIT $4
             FOR UPDATE SKIP LOCKED",
            &[
                &after_ms,
                &after_id,
                &(millis(until) as i64),
                &(want.min(i64::MAX as usize) as i64),
            ],
        )?;
        let ids = self.cache_rows(&rows)?;
        Ok(rows
            .iter()
            .zip(ids)
            .map(|(row, id)| {
                let ms: i64 = row.get(2);
                let at = DateTime::from_timestamp_millis(ms).unwrap_or_default();
                due_key(at, id)
            })
            .collect())
    }

    fn running_in_series(&mut self, series: Uuid) -> Result<Option<Uuid>, StoreError> {
        self.send()?;
        let rows = self.query(
            "cannot read the runs of a series",
            "SELECT id FROM sdlc_actions WHERE series = $1 AND status = $2 ORDER BY id LIMIT 1",
            &[&series, &i16::from(status_byte(StatusKind::Running))],
        )?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    fn series_head(&mut self, series: Uuid) -> Result<Option<Uuid>, StoreError> {
        if let Some(known) = self.heads.get(&series) {
            return Ok(*known);
        }
        let rows = self.query(
            "cannot read a series",
            "SELECT head FROM sdlc_series WHERE series = $1 FOR UPDATE",
            &[&series],
        )?;
        let head = rows.first().map(|row| row.get(0));
        self.heads.insert(series, head);
        Ok(head)
    }

    fn ids_with_status(&mut self, kind: StatusKind) -> Result<Vec<Uuid>, StoreError> {
        self.send()?;
        let rows = self.query(
            "cannot list actions by status",
            "SELECT id FROM sdlc_actions WHERE status = $1 ORDER BY updated_at, id",
            &[&i16::from(status_byte(kind))],
        )?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn dispatch_inbox(
        &mut self,
        _now: DateTime<Utc>,
        _limit: usize,
    ) -> Result<(usize, bool), StoreError> {
        // Deliveries are stored as actions when acknowledged: no inbox waits.
        Ok((0, false))
    }

    fn dispatch_waiting(
        &mut self,
        _id: Uuid,
        _now: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    fn plan_run(&mut self, run: Uuid) -> Result<Option<PlanRun>, StoreError> {
        if let Some(known) = self.runs.get(&run) {
            return Ok(Some(known.clone()));
        }
        let rows = self.query(
            "cannot read a plan run",
            "SELECT record FROM sdlc_plan_runs WHERE id = $1 FOR UPDATE",
            &[&run],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let header: PlanRun = decode_json(run, row.get(0))?;
        self.runs.insert(run, header.clone());
        Ok(Some(header))
    }

    fn plan_graph(&mut self, run: Uuid) -> Result<Arc<PlanGraph>, StoreError> {
        if let Some(graph) = crate::store::cached_graph(run) {
            return Ok(graph);
        }
        let rows = self.query(
            "cannot read a run's plan",
            "SELECT record FROM sdlc_plan_specs WHERE id = $1",
            &[&run],
        )?;
        let row = rows.first().ok_or_else(|| StoreError::Corrupt {
            id: run,
            detail: "the run's plan is missing".to_string(),
        })?;
        crate::store::graph_from(run, row.get(0))
    }

    fn save_plan_run(&mut self, run: &PlanRun) -> Result<(), StoreError> {
        self.runs.insert(run.run_id, run.clone());
        self.unsent_runs.insert(run.run_id, ());
        Ok(())
    }

    fn store_new_run(&mut self, run: &PlanRun, plan: &Plan) -> Result<(), StoreError> {
        let id = run.run_id;
        let spec = encode_json(id, plan)?;
        self.execute(
            "cannot store a run's plan",
            "INSERT INTO sdlc_plan_specs (id, record) VALUES ($1, $2)",
            &[&id, &spec],
        )?;
        self.save_plan_run(run)
    }

    fn step(&mut self, run: Uuid, index: u32) -> Result<StepState, StoreError> {
        if let Some(known) = self.steps.get(&(run, index)) {
            return Ok(known.clone());
        }
        let rows = self.query(
            "cannot read a plan step",
            "SELECT record FROM sdlc_run_steps WHERE run = $1 AND idx = $2",
            &[&run, &(index as i32)],
        )?;
        let row = rows.first().ok_or_else(|| StoreError::Corrupt {
            id: run,
            detail: format!("step {index} of the run is missing"),
        })?;
        let state: StepState = decode_json(run, row.get(0))?;
        self.steps.insert((run, index), state.clone());
        Ok(state)
    }

    fn steps(&mut self, run: Uuid) -> Result<Vec<StepState>, StoreError> {
        let rows = self.query(
            "cannot read a run's steps",
            "SELECT idx, record FROM sdlc_run_steps WHERE run = $1 ORDER BY idx",
            &[&run],
        )?;
        let mut all = BTreeMap::new();
        for row in &rows {
            let index = row.get::<_, i32>(0) as u32;
            let state = match self.steps.get(&(run, index)) {
                Some(known) => known.clone(),
                None => decode_json(run, row.get(1))?,
            };
            all.insert(index, state);
        }
        // Steps of a run stored in this transaction and not yet sent.
        for ((r, index), state) in &self.steps {
            if *r == run {
                all.entry(*index).or_insert_with(|| state.clone());
            }
        }
        Ok(all.into_values().collect())
    }

    fn set_step(&mut self, run: Uuid, index: u32, state: &StepState) -> Result<(), StoreError> {
        self.steps.insert((run, index), state.clone());
        self.unsent_steps.insert((run, index), ());
        Ok(())
    }

    fn queue_step(&mut self, run: Uuid, index: u32) -> Result<(), StoreError> {
        self.execute(
            "cannot queue a plan step",
            "INSERT INTO sdlc_run_queue (run, idx) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&run, &(index as i32)],
        )?;
        Ok(())
    }

    fn unqueue_step(&mut self, run: Uuid, index: u32) -> Result<(), StoreError> {
        self.execute(
            "cannot take a plan step out of its queue",
            "DELETE FROM sdlc_run_queue WHERE run = $1 AND idx = $2",
            &[&run, &(index as i32)],
        )?;
        Ok(())
    }

    fn first_queued(&mut self, run: Uuid) -> Result<Option<u32>, StoreError> {
        let rows = self.query(
            "cannot read a run's queue",
            "SELECT idx FROM sdlc_run_queue WHERE run = $1 ORDER BY idx LIMIT 1",
            &[&run],
        )?;
        Ok(rows.first().map(|row| row.get::<_, i32>(0) as u32))
    }

    fn add_event(&mut self, event: RunEvent) -> Result<(), StoreError> {
        self.unsent_events.push(event.clone());
        self.new_events.push(event);
        Ok(())
    }

    fn take_new_events(&mut self) -> Vec<RunEvent> {
        std::mem::take(&mut self.new_events)
    }

    fn notify_config(&mut self) -> Result<Option<&NotifyConfig>, StoreError> {
        if self.notify_config.is_none() {
            let rows = self.query(
                "cannot read the notification settings",
                "SELECT record FROM sdlc_notify_config",
                &[],
            )?;
            let config = match rows.first() {
                Some(row) => Some(decode_json(Uuid::nil(), row.get(0))?),
                None => None,
            };
            self.notify_config = Some(config);
        }
        Ok(self.notify_config.as_ref().and_then(Option::as_ref))
    }

    fn add_notification(&mut self, note: &Notification) -> Result<(), StoreError> {
        self.unsent_notes.push(note.clone());
        Ok(())
    }

    fn announce_cancel(&mut self, action: &Action) -> Result<(), StoreError> {
        let Some(request) = &action.cancel else {
            return Ok(());
        };
        // Delivered at commit, to every node listening; the one running it stops it.
        let payload = serde_json::json!({
            "id": action.id,
            "by": request.by,
            "grace_ms": request.grace_ms,
        })
        .to_string();
        self.execute(
            "cannot announce a cancel",
            "SELECT pg_notify($1, $2)",
            &[&super::wake::CANCEL_CHANNEL, &payload],
        )?;
        Ok(())
    }

    fn put_log(&mut self, id: Uuid, attempt: u32, log: &[u8]) -> Result<(), StoreError> {
        let attempt = i32::try_from(attempt).unwrap_or(i32::MAX);
        self.unsent_logs.push((id, attempt, log.to_vec()));
        Ok(())
    }
}

/// A PostgreSQL error as the store reports it: naming the database.
pub(crate) fn fail(url: &str, what: &str, err: postgres::Error) -> StoreError {
    super::failed(url, what, err)
}
