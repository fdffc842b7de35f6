//! Plan runs on redb (their rules are `store::plans`, for every backend):
//!
//! - `plan_runs`    run id -> the run's header ([`PlanRun`]: status, counts, next event seq).
//! - `plan_specs`   run id -> the plan as it was when the run started (a file edited during a
//!   run does not change it).
//! - `run_steps`    run id ++ step index (u32 BE) -> [`StepState`].
//! - `run_queue`    run id ++ step index -> (): ready steps held by `globals.max_concurrency`,
//!   in plan order.
//! - `run_events`   run id ++ seq (u64 BE) -> [`RunEvent`].
//! - `runs_by_time` created_ms (u64 BE) ++ run id -> (): newest-first listing, keyset paging.
//! - `runs_by_plan` plan id ++ 0 ++ created_ms ++ run id -> (): the same for one plan.
//!
//! The plan tables are opened only by transactions that touch a run, so settling plain
//! actions pays nothing for them.

use std::sync::Arc;

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use uuid::Uuid;

use crate::error::StoreError;
use crate::plan::{PlanGraph, PlanRun, RunEvent, StepState};
use crate::store::decode_json;
use crate::store::plans::{RunDetail, RunFilter, cached_graph, corrupt, graph_from};

pub(super) const PLAN_RUNS: TableDefinition<u128, &[u8]> = TableDefinition::new("plan_runs");
pub(super) const PLAN_SPECS: TableDefinition<u128, &[u8]> = TableDefinition::new("plan_specs");
pub(super) const RUN_STEPS: TableDefinition<[u8; 20], &[u8]> = TableDefinition::new("run_steps");
pub(super) const RUN_QUEUE: TableDefinition<[u8; 20], ()> = TableDefinition::new("run_queue");
pub(super) const RUN_EVENTS: TableDefinition<[u8; 24], &[u8]> = TableDefinition::new("run_events");
pub(super) const RUNS_BY_TIME: TableDefinition<[u8; 24], ()> = TableDefinition::new("runs_by_time");
pub(super) const RUNS_BY_PLAN: TableDefinition<&[u8], ()> = TableDefinition::new("runs_by_plan");

/// The plan tables of one write transaction, opened on first use.
pub(super) struct PlanTables<'tx> {
    pub(super) runs: Table<'tx, u128, &'static [u8]>,
    pub(super) specs: Table<'tx, u128, &'static [u8]>,
    pub(super) steps: Table<'tx, [u8; 20], &'static [u8]>,
    pub(super) queue: Table<'tx, [u8; 20], ()>,
    pub(super) events: Table<'tx, [u8; 24], &'static [u8]>,
    pub(super) by_time: Table<'tx, [u8; 24], ()>,
    pub(super) by_plan: Table<'tx, &'static [u8], ()>,
    /// The events this transaction added, in order, for the export after the commit.
    pub(super) new_events: Vec<RunEvent>,
}

impl<'tx> PlanTables<'tx> {
    pub(super) fn open(tx: &'tx WriteTransaction) -> Result<PlanTables<'tx>, StoreError> {
        Ok(PlanTables {
            runs: tx.open_table(PLAN_RUNS)?,
            specs: tx.open_table(PLAN_SPECS)?,
            steps: tx.open_table(RUN_STEPS)?,
            queue: tx.open_table(RUN_QUEUE)?,
            events: tx.open_table(RUN_EVENTS)?,
            by_time: tx.open_table(RUNS_BY_TIME)?,
            by_plan: tx.open_table(RUNS_BY_PLAN)?,
            new_events: Vec::new(),
        })
    }
}

/// Creates every plan table (so read transactions never meet a missing one).
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    PlanTables::open(tx).map(|_| ())
}

pub(super) fn step_key(run: Uuid, index: u32) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(run.as_bytes());
    key[16..].copy_from_slice(&index.to_be_bytes());
    key
}

pub(super) fn event_key(run: Uuid, seq: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(run.as_bytes());
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// `plan id ++ 0 ++ time_key`: a plan's runs sort together, by time (ids never hold a 0).
pub(super) fn plan_key(plan: &str, time: &[u8; 24]) -> Vec<u8> {
    let mut key = Vec::with_capacity(plan.len() + 25);
    key.extend_from_slice(plan.as_bytes());
    key.push(0);
    key.extend_from_slice(time);
    key
}

/// The plan of run `run`, from the cache or its stored copy.
pub(super) fn graph_of(
    specs: &impl ReadableTable<u128, &'static [u8]>,
    run: Uuid,
) -> Result<Arc<PlanGraph>, StoreError> {
    if let Some(graph) = cached_graph(run) {
        return Ok(graph);
    }
    let bytes = specs
        .get(run.as_u128())?
        .ok_or_else(|| corrupt(run, "the run's plan is missing"))?;
    graph_from(run, bytes.value())
}

pub(super) fn read_run(
    runs: &impl ReadableTable<u128, &'static [u8]>,
    run: Uuid,
) -> Result<Option<PlanRun>, StoreError> {
    runs.get(run.as_u128())?
        .map(|bytes| decode_json(run, bytes.value()))
        .transpose()
}

pub(super) fn read_step(
    steps: &impl ReadableTable<[u8; 20], &'static [u8]>,
    run: Uuid,
    index: u32,
) -> Result<StepState, StoreError> {
    let bytes = steps
        .get(step_key(run, index))?
        .ok_or_else(|| corrupt(run, &format!("step {index} of the run is missing")))?;
    decode_json(run, bytes.value())
}

/// Every step of a run, in plan order.
pub(super) fn read_steps(
    steps: &impl ReadableTable<[u8; 20], &'static [u8]>,
    run: Uuid,
) -> Result<Vec<StepState>, StoreError> {
    let mut all = Vec::new();
    for entry in steps.range(step_key(run, 0)..=step_key(run, u32::MAX))? {
        let (_, bytes) = entry?;
        all.push(decode_json(run, bytes.value())?);
    }
    Ok(all)
}

pub(super) fn read_events(
    events: &impl ReadableTable<[u8; 24], &'static [u8]>,
    run: Uuid,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<RunEvent>, StoreError> {
    let start = after.map_or(0, |seq| seq.saturating_add(1));
    let mut all = Vec::new();
    for entry in events
        .range(event_key(run, start)..=event_key(run, u64::MAX))?
        .take(limit)
    {
        let (_, bytes) = entry?;
        all.push(decode_json(run, bytes.value())?);
    }
    Ok(all)
}

impl super::ActionDb {
    /// A run, its steps and its plan.
    pub fn get_run(&self, run: Uuid) -> Result<Option<RunDetail>, StoreError> {
        let tx = self.db.begin_read()?;
        let runs = tx.open_table(PLAN_RUNS)?;
        let Some(header) = read_run(&runs, run)? else {
            return Ok(None);
        };
        let steps = read_steps(&tx.open_table(RUN_STEPS)?, run)?;
        let graph = graph_of(&tx.open_table(PLAN_SPECS)?, run)?;
        Ok(Some(RunDetail {
            run: header,
            steps,
            graph,
        }))
    }

    /// Runs matching `filter`, newest first. With a plan, through that plan's index, so a
    /// plan's runs are found without reading the others'.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<PlanRun>, StoreError> {
        let tx = self.db.begin_read()?;
        let runs = tx.open_table(PLAN_RUNS)?;
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let mut take = |key: &[u8]| -> Result<bool, StoreError> {
            let id = Uuid::from_slice(&key[key.len() - 16..]).expect("run keys end with an id");
            if let Some(run) = read_run(&runs, id)?
                && filter.status.is_none_or(|s| s == run.status)
            {
                found.push(run);
            }
            Ok(found.len() < limit)
        };
        match &filter.plan {
            Some(plan) => {
                let by_plan = tx.open_table(RUNS_BY_PLAN)?;
                let start = plan_key(plan, &[0u8; 24]);
                let end = plan_key(plan, &filter.before.unwrap_or([0xff; 24]));
                for entry in by_plan.range(start.as_slice()..end.as_slice())?.rev() {
                    if !take(entry?.0.value())? {
                        break;
                    }
                }
            }
            None => {
                let by_time = tx.open_table(RUNS_BY_TIME)?;
                let range = match filter.before {
                    Some(before) => by_time.range(..before)?,
                    None => by_time.range::<[u8; 24]>(..)?,
                };
                for entry in range.rev() {
                    if !take(&entry?.0.value())? {
                        break;
                    }
                }
            }
        }
        Ok(found)
    }

    /// Up to `limit` events of a run after sequence number `after` (all when None).
    pub fn run_events(
        &self,
        run: Uuid,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunEvent>, StoreError> {
        let tx = self.db.begin_read()?;
        read_events(&tx.open_table(RUN_EVENTS)?, run, after, limit)
    }
}

#[cfg(test)]
#[path = "plans_tests.rs"]
mod tests;
