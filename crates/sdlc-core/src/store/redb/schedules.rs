//! The recurring series: `recurring` series id -> (), exactly the series whose head (newest
//! scheduled occurrence, `series_head`) has a recurrence, so the dashboard's schedules page
//! lists them without reading every one-off action's head.
//!
//! Kept by `put` (a new scheduled action becomes its series' head; an edit may add or drop a
//! recurrence) and `forget_head_if` (the head deleted or pruned); built at open for a file
//! written before it existed.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::record::{ACTION_BODIES, lookup};
use super::{ACTIONS, ActionDb, SERIES_HEAD, Tables};
use crate::error::StoreError;
use crate::model::{Action, ActionTrigger};

pub(super) const RECURRING: TableDefinition<u128, ()> = TableDefinition::new("recurring");

pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(RECURRING)?;
    Ok(())
}

/// Keeps `recurring` in step with `new` replacing `old` (None: an insert). Costs nothing
/// unless a recurring series begins or an edit adds or drops its recurrence (a settle's new
/// occurrences write nothing here).
pub(super) fn track(
    t: &mut Tables<'_>,
    old: Option<&Action>,
    new: &Action,
) -> Result<(), StoreError> {
    // Only a series' first occurrence (its id is the series') adds it: later occurrences
    // belong to a series already recorded, and a one-off never recurred.
    let made_head = old.is_none()
        && new.id == new.series
        && matches!(new.trigger, ActionTrigger::Scheduled { .. })
        && new.recurrence.is_some();
    let recurrence_changed =
        old.is_some_and(|old| old.recurrence.is_some() != new.recurrence.is_some());
    if !made_head && !recurrence_changed {
        return Ok(());
    }
    let is_head = made_head
        || t.series_head
            .get(new.series.as_u128())?
            .is_some_and(|head| head.value() == new.id.as_u128());
    if !is_head {
        return Ok(());
    }
    let mut recurring = t.tx.open_table(RECURRING)?;
    if new.recurrence.is_some() {
        recurring.insert(new.series.as_u128(), ())?;
    } else {
        recurring.remove(new.series.as_u128())?;
    }
    Ok(())
}

/// The series `series` lost its head.
pub(super) fn forget(t: &mut Tables<'_>, series: Uuid) -> Result<(), StoreError> {
    t.tx.open_table(RECURRING)?.remove(series.as_u128())?;
    Ok(())
}

/// Fills `recurring` for a file written before it existed (schema 8 and older), at open.
pub(super) fn build(t: &mut Tables<'_>) -> Result<(), StoreError> {
    let mut recurring = t.tx.open_table(RECURRING)?;
    for entry in t.series_head.iter()? {
        let (series, head) = entry?;
        let head = Uuid::from_u128(head.value());
        if let Some(action) = lookup(&t.actions, &t.bodies, head)?
            && action.recurrence.is_some()
        {
            recurring.insert(series.value(), ())?;
        }
    }
    Ok(())
}

impl ActionDb {
    /// The head (newest occurrence) of every recurring series.
    pub fn recurring_heads(&self) -> Result<Vec<Action>, StoreError> {
        let tx = self.db.begin_read()?;
        let recurring = tx.open_table(RECURRING)?;
        let heads = tx.open_table(SERIES_HEAD)?;
        let actions = tx.open_table(ACTIONS)?;
        let bodies = tx.open_table(ACTION_BODIES)?;
        let mut found = Vec::with_capacity(recurring.len()? as usize);
        for entry in recurring.iter()? {
            let series = entry?.0.value();
            let Some(head) = heads.get(series)?.map(|v| Uuid::from_u128(v.value())) else {
                continue;
            };
            if let Some(action) = lookup(&actions, &bodies, head)? {
                found.push(action);
            }
        }
        Ok(found)
    }
}
