//! redb's side of [`Txn`]: the primitives the store's rules run on, over the tables of one
//! write transaction ([`Tables`]).

use std::ops::Bound;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use redb::ReadableTable;
use uuid::Uuid;

use super::record::{get_in, remove_in, write_in, write_light_in};
use super::{
    Tables, forget_head_if, history, id_from_key, index, logs, plans, run_groups, schedules,
    status_range, unindex, webhooks,
};
use crate::error::StoreError;
use crate::model::{Action, StatusKind};
use crate::notify::{Notification, NotifyConfig};
use crate::plan::{Plan, PlanGraph, PlanRun, RunEvent, StepState};
use crate::store::txn::Txn;
use crate::store::{due_key, encode_json};

impl Txn for Tables<'_> {
    fn get(&mut self, id: Uuid) -> Result<Option<Action>, StoreError> {
        get_in(self, id)
    }

    fn store(&mut self, old: Option<&Action>, new: &Action) -> Result<(), StoreError> {
        if let Some(old) = old {
            unindex(self, old)?;
        }
        write_in(self, old, new)?;
        history::reindex(self, old, Some(new))?;
        run_groups::track(self, old, Some(new))?;
        index(self, old.is_none(), new)?;
        schedules::track(self, old, new)
    }

    fn store_record(&mut self, old: &Action, new: &Action) -> Result<(), StoreError> {
        write_in(self, Some(old), new)
    }

    fn store_dispatched(&mut self, light: &Action) -> Result<(), StoreError> {
        write_light_in(self, light)?;
        history::reindex(self, None, Some(light))?;
        run_groups::track(self, None, Some(light))?;
        index(self, true, light)
    }

    fn remove(&mut self, old: &Action) -> Result<(), StoreError> {
        unindex(self, old)?;
        history::reindex(self, Some(old), None)?;
        run_groups::track(self, Some(old), None)?;
        remove_in(self, old.id)?;
        logs::remove_all(self.logs()?, old.id)?;
        forget_head_if(self, old.series, old.id)
    }

    fn due(
        &mut self,
        after: Option<[u8; 24]>,
        until: DateTime<Utc>,
        want: usize,
    ) -> Result<Vec<[u8; 24]>, StoreError> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let end = due_key(until, Uuid::max());
        let mut keys = Vec::new();
        for entry in self
            .due
            .range::<[u8; 24]>((lower, Bound::Included(end)))?
            .take(want)
        {
            keys.push(entry?.0.value());
        }
        Ok(keys)
    }

    fn running_in_series(&mut self, series: Uuid) -> Result<Option<Uuid>, StoreError> {
        let mut start = [0u8; 32];
        start[..16].copy_from_slice(series.as_bytes());
        let mut end = [0xffu8; 32];
        end[..16].copy_from_slice(series.as_bytes());
        let first = self.running_by_series.range(start..=end)?.next();
        match first {
            Some(entry) => Ok(Some(id_from_key(&entry?.0.value()[16..]))),
            None => Ok(None),
        }
    }

    fn series_head(&mut self, series: Uuid) -> Result<Option<Uuid>, StoreError> {
        Ok(self
            .series_head
            .get(series.as_u128())?
            .map(|v| Uuid::from_u128(v.value())))
    }

    fn ids_with_status(&mut self, kind: StatusKind) -> Result<Vec<Uuid>, StoreError> {
        let (start, end) = status_range(kind);
        let mut ids = Vec::new();
        for entry in self.by_status.range(start..=end)? {
            let (key, _) = entry?;
            ids.push(id_from_key(&key.value()[9..]));
        }
        Ok(ids)
    }

    fn dispatch_inbox(
        &mut self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(usize, bool), StoreError> {
        webhooks::dispatch_in(self, now, limit)
    }

    fn dispatch_waiting(&mut self, id: Uuid, now: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        webhooks::dispatch_by_id(self, id, now)
    }

    fn plan_run(&mut self, run: Uuid) -> Result<Option<PlanRun>, StoreError> {
        plans::read_run(&self.plans()?.runs, run)
    }

    fn plan_graph(&mut self, run: Uuid) -> Result<Arc<PlanGraph>, StoreError> {
        plans::graph_of(&self.plans()?.specs, run)
    }

    fn save_plan_run(&mut self, run: &PlanRun) -> Result<(), StoreError> {
        let id = run.run_id;
        self.plans()?
            .runs
            .insert(id.as_u128(), encode_json(id, run)?.as_slice())?;
        Ok(())
    }

    fn store_new_run(&mut self, run: &PlanRun, plan: &Plan) -> Result<(), StoreError> {
        let id = run.run_id;
        let p = self.plans()?;
        p.specs
            .insert(id.as_u128(), encode_json(id, plan)?.as_slice())?;
        let time = crate::store::plans::time_key(run.created_at, id);
        p.by_time.insert(time, ())?;
        p.by_plan
            .insert(plans::plan_key(&run.plan_id, &time).as_slice(), ())?;
        Ok(())
    }

    fn step(&mut self, run: Uuid, index: u32) -> Result<StepState, StoreError> {
        plans::read_step(&self.plans()?.steps, run, index)
    }

    fn steps(&mut self, run: Uuid) -> Result<Vec<StepState>, StoreError> {
        plans::read_steps(&self.plans()?.steps, run)
    }

    fn set_step(&mut self, run: Uuid, index: u32, state: &StepState) -> Result<(), StoreError> {
        self.plans()?.steps.insert(
            plans::step_key(run, index),
            encode_json(run, state)?.as_slice(),
        )?;
        Ok(())
    }

    fn queue_step(&mut self, run: Uuid, index: u32) -> Result<(), StoreError> {
        self.plans()?
            .queue
            .insert(plans::step_key(run, index), ())?;
        Ok(())
    }

    fn unqueue_step(&mut self, run: Uuid, index: u32) -> Result<(), StoreError> {
        self.plans()?.queue.remove(plans::step_key(run, index))?;
        Ok(())
    }

    fn first_queued(&mut self, run: Uuid) -> Result<Option<u32>, StoreError> {
        let p = self.plans()?;
        let first = p
            .queue
            .range(plans::step_key(run, 0)..=plans::step_key(run, u32::MAX))?
            .next();
        match first {
            Some(entry) => {
                let key = entry?.0.value();
                let index = key[16..].try_into().expect("step keys are 20 bytes");
                Ok(Some(u32::from_be_bytes(index)))
            }
            None => Ok(None),
        }
    }

    fn add_event(&mut self, event: RunEvent) -> Result<(), StoreError> {
        let run = event.run_id;
        let p = self.plans()?;
        p.events.insert(
            plans::event_key(run, event.seq),
            encode_json(run, &event)?.as_slice(),
        )?;
        p.new_events.push(event);
        Ok(())
    }

    fn take_new_events(&mut self) -> Vec<RunEvent> {
        self.plans
            .as_mut()
            .map(|p| std::mem::take(&mut p.new_events))
            .unwrap_or_default()
    }

    fn notify_config(&mut self) -> Result<Option<&NotifyConfig>, StoreError> {
        Ok(self.outbox()?.config.as_ref())
    }

    fn add_notification(&mut self, note: &Notification) -> Result<(), StoreError> {
        self.outbox()?.put(None, note)
    }

    fn put_log(&mut self, id: Uuid, attempt: u32, log: &[u8]) -> Result<(), StoreError> {
        self.logs()?.insert(logs::key(id, attempt), log)?;
        Ok(())
    }

    fn announce_cancel(&mut self, _action: &Action) -> Result<(), StoreError> {
        Ok(())
    }
}
