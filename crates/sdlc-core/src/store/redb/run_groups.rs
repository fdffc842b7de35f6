//! Run groups on redb (see `crate::run_group`): one summary per run id in `run_groups`, and
//! `run_group_order` keyed by (first run time, run id) for the newest-first listing. Both
//! change in the transaction that changes a run of the group; an action without a run id
//! touches neither (the tables are opened on first use).

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::record::record_in;
use super::{ActionDb, Tables, decode_json, history};
use crate::error::StoreError;
use crate::model::Action;
use crate::run_group::{
    GroupChange, GroupCursor, GroupFilter, GroupPage, Member, RunGroup, Summary, changes,
};

pub(super) const RUN_GROUPS: TableDefinition<&str, [u64; 11]> = TableDefinition::new("run_groups");
pub(super) const RUN_GROUP_ORDER: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("run_group_order");

pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(RUN_GROUPS)?;
    tx.open_table(RUN_GROUP_ORDER)?;
    Ok(())
}

/// Keeps the groups in step with one change (`old` replaced by `new`; None for an insert or
/// a removal), after the history index took it (a recount reads the group's runs there).
pub(super) fn track(
    t: &mut Tables<'_>,
    old: Option<&Action>,
    new: Option<&Action>,
) -> Result<(), StoreError> {
    for change in changes(old, new) {
        match change {
            GroupChange::Add(run, delta) => {
                let current = read(t, &run)?;
                save(t, &run, current, Summary::apply(current, &delta))?;
            }
            GroupChange::Recount(run) => recount(t, &run)?,
        }
    }
    Ok(())
}

/// Sums groups again from the runs they still have (after actions of theirs were removed).
pub(super) fn recount_all(t: &mut Tables<'_>, runs: &BTreeSet<String>) -> Result<(), StoreError> {
    for run in runs {
        recount(t, run)?;
    }
    Ok(())
}

fn read(t: &mut Tables<'_>, run: &str) -> Result<Option<Summary>, StoreError> {
    Ok(t.groups()?
        .0
        .get(run)?
        .map(|words| Summary::from_words(words.value())))
}

/// Writes `next` in place of `current` (None: the group is gone), its listing key in step.
fn save(
    t: &mut Tables<'_>,
    run: &str,
    current: Option<Summary>,
    next: Option<Summary>,
) -> Result<(), StoreError> {
    if current == next {
        return Ok(());
    }
    let (summaries, order) = t.groups()?;
    let was = current.map(|s| s.first_run_ms);
    let is = next.map(|s| s.first_run_ms);
    if was != is {
        if let Some(first) = was {
            order.remove((first, run))?;
        }
        if let Some(first) = is {
            order.insert((first, run), ())?;
        }
    }
    match next {
        Some(s) => summaries.insert(run, s.to_words())?,
        None => summaries.remove(run)?,
    };
    Ok(())
}

fn recount(t: &mut Tables<'_>, run: &str) -> Result<(), StoreError> {
    let mut members = Vec::new();
    for id in history::ids_under_run(t, run)? {
        if let Some(action) = record_in(t, id)?
            && let Some((of, member)) = Member::of(&action)
            && of == run
        {
            members.push(member);
        }
    }
    let current = read(t, run)?;
    save(t, run, current, Summary::of(members))
}

/// Builds the groups of a file written before they were kept (schema 10 and older): every
/// stored action, once. Summed in memory by run id (one summary per group, not per action).
pub(super) fn build(t: &mut Tables<'_>) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let mut sums: HashMap<String, Summary> = HashMap::new();
    for entry in t.actions.iter()? {
        let (id, bytes) = entry?;
        let action: Action = decode_json(Uuid::from_u128(id.value()), bytes.value())?;
        if let Some((run, member)) = Member::of(&action) {
            let sum = sums.remove(run);
            sums.insert(run.to_string(), Summary::with(sum, &member));
        }
    }
    let groups = sums.len();
    for (run, summary) in sums {
        let current = read(t, &run)?;
        save(t, &run, current, Some(summary))?;
    }
    tracing::info!(
        groups,
        ms = started.elapsed().as_millis() as u64,
        "built the run groups"
    );
    Ok(())
}

impl ActionDb {
    /// Up to `limit` run groups whose first run was due within `filter`, newest first,
    /// after `cursor`.
    pub fn run_groups(
        &self,
        filter: &GroupFilter,
        cursor: Option<GroupCursor>,
        limit: usize,
    ) -> Result<GroupPage, StoreError> {
        let limit = limit.max(1);
        let tx = self.db.begin_read()?;
        let order = tx.open_table(RUN_GROUP_ORDER)?;
        let summaries = tx.open_table(RUN_GROUPS)?;
        let (since, until) = (filter.since_ms(), filter.until_ms());
        let lower = Bound::Included((since, ""));
        let cursor_key = cursor
            .as_ref()
            .map(|c| (c.0.first_run_ms, c.0.run_id.as_str()));
        let mut page = GroupPage::default();
        // Every run id sorts below the one-past-the-end of its time (`until + 1`, "").
        let upper = match cursor_key {
            Some(key) if key.0 <= until => Bound::Excluded(key),
            _ if until == i64::MAX => Bound::Unbounded,
            _ => Bound::Excluded((until + 1, "")),
        };
        for entry in order.range::<(i64, &str)>((lower, upper))?.rev() {
            let (key, _) = entry?;
            let (_, run) = key.value();
            let Some(words) = summaries.get(run)? else {
                continue;
            };
            if page.items.len() == limit {
                let last = page.items.last().expect("limit > 0");
                page.next = Some(GroupCursor(last.position()));
                break;
            }
            page.items.push(RunGroup::new(
                run.to_string(),
                &Summary::from_words(words.value()),
            ));
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActionTrigger;
    use crate::run_group::GroupFilter;
    use crate::store::Store;
    use crate::store::redb::META;

    #[test]
    fn the_groups_of_a_schema_10_file_are_built_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orchestrator.db");
        let db = ActionDb::open(&path).unwrap();
        let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap();
        let runs: Vec<Action> = [("ci-1", 1_000), ("ci-1", 2_000), ("ci-2", 3_000)]
            .into_iter()
            .map(|(run, slot)| {
                let trigger = ActionTrigger::Scheduled {
                    next_tick_at: at(slot),
                };
                let mut a = Action::new("l", "t", serde_json::json!({}), trigger, at(0));
                a.run_id = Some(run.to_string());
                a
            })
            .collect();
        db.insert_many(&runs).unwrap();
        let kept = db
            .run_groups(&GroupFilter::default(), None, 10)
            .unwrap()
            .items;
        assert_eq!(kept.len(), 2);
        // As a schema 10 file holds them: no groups.
        {
            let tx = db.db.begin_write().unwrap();
            tx.delete_table(RUN_GROUPS).unwrap();
            tx.delete_table(RUN_GROUP_ORDER).unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("schema_version", 10)
                .unwrap();
            tx.commit().unwrap();
        }
        drop(db);
        let db = ActionDb::open(&path).unwrap();
        let built = db
            .run_groups(&GroupFilter::default(), None, 10)
            .unwrap()
            .items;
        assert_eq!(built, kept);
        let summed: Vec<(&str, u64)> = built
            .iter()
            .map(|g| (g.run_id.as_str(), g.counts.pending))
            .collect();
        assert_eq!(summed, [("ci-2", 1), ("ci-1", 2)]);
    }
}
