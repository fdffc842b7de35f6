//! The history index: pages of actions, newest first, filtered by status, tool, label, run id
//! and run time, read from one index without scanning the history.
//!
//! An action's run time is the time its trigger gave it: a schedule's slot, a webhook's
//! arrival, when a manual run was asked (`Action::scheduled_at`). It is when the run starts
//! unless it waits (a daemon down, an overlap queued, an approval first), and unlike the
//! creation time it is the run's own: a cron occurrence is created a whole period before its
//! slot. Every action is in `history` under several keys `dimension ++ value hash ++
//! run_ms ++ id`: one under "all", one under its status, its tool, its label, its series (the
//! occurrences of one schedule), and each of its run ids.
//! Running is the exception: a run passes through it between two commits of the engine, so
//! the status key of an action that is running is left out (a claim removes its Pending key,
//! the outcome adds its final one: two index writes a run instead of four), and a page of
//! running actions is read from the status index `by_status`, which holds at most the few
//! hundred the engine has claimed.
//! Within a dimension and value the keys run in run-time order, so a filter is a key range
//! and a page of several filters is the intersection of their ranges, walked from the newest
//! end by leapfrogging (each range seeks to the others' candidate). Run time and id do not
//! change as an action runs, so a cursor (the last key of a page) stays exact while new actions arrive: they
//! sort above it. Values are hashed to fixed-width keys; the record is checked against the
//! filter, so a collision costs a lookup, never a wrong row.

use std::ops::Bound;

use chrono::{DateTime, Utc};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use uuid::Uuid;

use super::record::{ACTION_BODIES, lookup};
use super::{ACTIONS, ActionDb, Tables, decode_json, id_from_key};
use crate::error::StoreError;
use crate::model::{Action, StatusKind};
use crate::store::history::{Position, position, position_of};
use crate::store::{Bodies, HistoryCursor, HistoryFilter, HistoryPage};

pub(super) const HISTORY: TableDefinition<[u8; 33], ()> = TableDefinition::new("history");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    All = 0,
    Status = 1,
    Tool = 2,
    Label = 3,
    Run = 4,
    Series = 5,
}

/// A series id's key value: the low half of the UUID (random bits in v4 and v7 ids).
fn series_value(series: Uuid) -> u64 {
    series.as_u128() as u64
}

/// FNV-1a: stable across builds and platforms (the keys are stored), and cheap.
fn hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn prefix(dim: Dim, value: u64) -> [u8; 9] {
    let mut p = [0u8; 9];
    p[0] = dim as u8;
    p[1..].copy_from_slice(&value.to_be_bytes());
    p
}

fn key(prefix: [u8; 9], position: Position) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[..9].copy_from_slice(&prefix);
    k[9..].copy_from_slice(&position);
    k
}

fn status_value(kind: StatusKind) -> u64 {
    u64::from(super::status_byte(kind))
}

/// The key of `action` under its status; none while it runs (see the module's header).
fn status_key(action: &Action) -> Option<[u8; 33]> {
    let kind = action.status.kind();
    (kind != StatusKind::Running)
        .then(|| key(prefix(Dim::Status, status_value(kind)), position_of(action)))
}

/// Every key `action` is found under.
fn keys_of(action: &Action) -> Vec<[u8; 33]> {
    let at = position_of(action);
    let mut keys = vec![
        key(prefix(Dim::All, 0), at),
        key(prefix(Dim::Tool, hash(&action.tool_name)), at),
        key(prefix(Dim::Label, hash(&action.label)), at),
        key(prefix(Dim::Series, series_value(action.series)), at),
    ];
    keys.extend(status_key(action));
    keys.extend(
        action
            .run_ids()
            .map(|run| key(prefix(Dim::Run, hash(&run)), at)),
    );
    keys
}

/// Keeps the index in step with one change: `old` replaced by `new` (None for an insert or
/// a removal). A status change, the common case, moves one key.
pub(super) fn reindex(
    t: &mut Tables<'_>,
    old: Option<&Action>,
    new: Option<&Action>,
) -> Result<(), StoreError> {
    if let (Some(old), Some(new)) = (old, new)
        && old.id == new.id
        && old.scheduled_at() == new.scheduled_at()
        && old.tool_name == new.tool_name
        && old.label == new.label
        && old.series == new.series
        && old.run_id == new.run_id
        && old.step.as_ref().map(|s| s.run_id) == new.step.as_ref().map(|s| s.run_id)
        && old.plan_run == new.plan_run
    {
        let (was, is) = (status_key(old), status_key(new));
        if was != is {
            if let Some(was) = was {
                t.history.remove(was)?;
            }
            if let Some(is) = is {
                t.history.insert(is, ())?;
            }
        }
        return Ok(());
    }
    let gone = old.map(keys_of).unwrap_or_default();
    let kept = new.map(keys_of).unwrap_or_default();
    for k in gone.iter().filter(|k| !kept.contains(k)) {
        t.history.remove(*k)?;
    }
    for k in kept.iter().filter(|k| !gone.contains(k)) {
        t.history.insert(*k, ())?;
    }
    Ok(())
}

/// The ids of the actions indexed under run id `run`, by run time. Values are hashed: the
/// caller checks each record's run id.
pub(super) fn ids_under_run(t: &Tables<'_>, run: &str) -> Result<Vec<Uuid>, StoreError> {
    let p = prefix(Dim::Run, hash(run));
    let mut ids = Vec::new();
    for entry in t.history.range(key(p, [0; 24])..=key(p, [0xff; 24]))? {
        ids.push(id_from_key(&entry?.0.value()[17..]));
    }
    Ok(ids)
}

/// Builds the index of a file written before it existed (schema 7 and older), or whose index
/// was dropped at open because it was keyed by creation time (schema 9 and older): every
/// stored action, once, when the index is empty but actions are not. Returns whether it
/// built it.
pub(super) fn rebuild_if_missing(t: &mut Tables<'_>) -> Result<bool, StoreError> {
    if !t.history.is_empty()? || t.actions.is_empty()? {
        return Ok(false);
    }
    index_every_action(t, "built the history index", keys_of)?;
    Ok(true)
}

/// Adds the series keys to the index of a file written before they existed (schema 8).
pub(super) fn add_series_keys(t: &mut Tables<'_>) -> Result<(), StoreError> {
    index_every_action(t, "added the series to the history index", |action| {
        let at = position_of(action);
        vec![key(prefix(Dim::Series, series_value(action.series)), at)]
    })
}

/// Inserts `keys(action)` for every stored action. Written as the actions are read (disjoint
/// tables of one transaction): a file of a million actions never holds its keys in memory.
fn index_every_action(
    t: &mut Tables<'_>,
    done: &str,
    keys: impl Fn(&Action) -> Vec<[u8; 33]>,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let mut n = 0u64;
    for entry in t.actions.iter()? {
        let (id, bytes) = entry?;
        let id = Uuid::from_u128(id.value());
        let action: Action = decode_json(id, bytes.value())?;
        for k in keys(&action) {
            t.history.insert(k, ())?;
        }
        n += 1;
    }
    tracing::info!(
        actions = n,
        ms = started.elapsed().as_millis() as u64,
        "{done}"
    );
    Ok(())
}

/// The index ranges whose intersection is the answer.
fn prefixes(filter: &HistoryFilter) -> Vec<[u8; 9]> {
    let mut p = Vec::new();
    if let Some(status) = filter.status {
        p.push(prefix(Dim::Status, status_value(status)));
    }
    if let Some(tool) = &filter.tool {
        p.push(prefix(Dim::Tool, hash(tool)));
    }
    if let Some(label) = &filter.label {
        p.push(prefix(Dim::Label, hash(label)));
    }
    if let Some(run) = &filter.run_id {
        p.push(prefix(Dim::Run, hash(run)));
    }
    if let Some(series) = filter.series {
        p.push(prefix(Dim::Series, series_value(series)));
    }
    if p.is_empty() {
        p.push(prefix(Dim::All, 0));
    }
    p
}

impl ActionDb {
    /// Up to `limit` actions matching `filter`, newest first (by run time), after `cursor`.
    pub fn history_page(
        &self,
        filter: &HistoryFilter,
        cursor: Option<HistoryCursor>,
        limit: usize,
        bodies: Bodies,
    ) -> Result<HistoryPage, StoreError> {
        let limit = limit.max(1);
        if filter.status == Some(StatusKind::Running) {
            return self.running_page(filter, cursor, limit, bodies);
        }
        let tx = self.db.begin_read()?;
        let index = tx.open_table(HISTORY)?;
        let actions = tx.open_table(ACTIONS)?;
        let body_table = tx.open_table(ACTION_BODIES)?;
        let prefixes = prefixes(filter);
        let lowest = position(
            filter.since.unwrap_or(DateTime::<Utc>::MIN_UTC),
            Uuid::nil(),
        );
        let mut upper: Bound<Position> = match (cursor, filter.until) {
            (Some(c), Some(until)) => {
                let cap = position(until, Uuid::max());
                if c.0 <= cap {
                    Bound::Excluded(c.0)
                } else {
                    Bound::Included(cap)
                }
            }
            (Some(c), None) => Bound::Excluded(c.0),
            (None, Some(until)) => Bound::Included(position(until, Uuid::max())),
            (None, None) => Bound::Unbounded,
        };
        // The newest position at or below `upper` in the range of `p`.
        let seek = |p: [u8; 9], upper: Bound<Position>| -> Result<Option<Position>, StoreError> {
            let hi = match upper {
                Bound::Included(at) => Bound::Included(key(p, at)),
                Bound::Excluded(at) => Bound::Excluded(key(p, at)),
                Bound::Unbounded => Bound::Included(key(p, [0xff; 24])),
            };
            let lo = Bound::Included(key(p, lowest));
            match index.range::<[u8; 33]>((lo, hi))?.next_back() {
                Some(entry) => {
                    let k = entry?.0.value();
                    Ok(Some(k[9..].try_into().expect("33-byte key")))
                }
                None => Ok(None),
            }
        };
        let mut page = HistoryPage::default();
        'page: while page.items.len() <= limit {
            let Some(mut candidate) = seek(prefixes[0], upper)? else {
                break;
            };
            let mut agreed = 1;
            let mut next = 1;
            while agreed < prefixes.len() {
                let Some(found) =
                    seek(prefixes[next % prefixes.len()], Bound::Included(candidate))?
                else {
                    break 'page;
                };
                if found == candidate {
                    agreed += 1;
                } else {
                    candidate = found;
                    agreed = 1;
                }
                next += 1;
            }
            upper = Bound::Excluded(candidate);
            let id = id_from_key(&candidate[8..]);
            let action = load(&actions, &body_table, id, bodies)?;
            let Some(action) = action else {
                continue;
            };
            if !filter.matches(&action) {
                continue;
            }
            if page.items.len() == limit {
                let last = page.items.last().expect("limit > 0");
                page.next = Some(HistoryCursor(position_of(last)));
                break;
            }
            page.items.push(action);
        }
        // Deliveries still waiting in the inbox (dispatched within a tick) are the newest
        // pending actions: the first page shows them too, and the cursor, a position, stays
        // right however they shift the page.
        if cursor.is_none() && filter.status.is_none_or(|s| s == StatusKind::Pending) {
            let inbox = tx.open_table(super::webhooks::INBOX)?;
            let waiting =
                super::webhooks::list_waiting(&inbox, &body_table, filter.tool.as_deref(), limit)?;
            let before = page.items.len();
            page.items.extend(
                waiting
                    .into_iter()
                    .map(|(_, a)| a)
                    .filter(|a| filter.matches(a)),
            );
            if page.items.len() > before {
                let more = page.next.is_some();
                page.items
                    .sort_by_key(|a| std::cmp::Reverse(position_of(a)));
                if page.items.len() > limit || more {
                    page.items.truncate(limit);
                    let last = page.items.last().expect("limit > 0");
                    page.next = Some(HistoryCursor(position_of(last)));
                }
            }
        }
        Ok(page)
    }
}

/// The action `id`, with its body or its record alone.
fn load(
    actions: &impl ReadableTable<u128, &'static [u8]>,
    body_table: &impl ReadableTable<u128, &'static [u8]>,
    id: Uuid,
    bodies: Bodies,
) -> Result<Option<Action>, StoreError> {
    match bodies {
        Bodies::With => lookup(actions, body_table, id),
        Bodies::Without => actions
            .get(id.as_u128())?
            .map(|bytes| decode_json::<Action>(id, bytes.value()))
            .transpose(),
    }
}

impl ActionDb {
    /// A page of running actions: every one from the status index (the engine's claims, a
    /// few hundred at most), ordered and cut like any page.
    fn running_page(
        &self,
        filter: &HistoryFilter,
        cursor: Option<HistoryCursor>,
        limit: usize,
        bodies: Bodies,
    ) -> Result<HistoryPage, StoreError> {
        let tx = self.db.begin_read()?;
        let by_status = tx.open_table(super::BY_STATUS)?;
        let actions = tx.open_table(ACTIONS)?;
        let body_table = tx.open_table(ACTION_BODIES)?;
        let (start, end) = super::status_range(StatusKind::Running);
        let mut found = Vec::new();
        for entry in by_status.range(start..=end)? {
            let id = id_from_key(&entry?.0.value()[9..]);
            let action = load(&actions, &body_table, id, bodies)?;
            if let Some(action) = action
                && filter.matches(&action)
                && cursor.is_none_or(|c| position_of(&action) < c.0)
            {
                found.push(action);
            }
        }
        found.sort_by_key(|a| std::cmp::Reverse(position_of(a)));
        let more = found.len() > limit;
        found.truncate(limit);
        let next = more
            .then(|| found.last().map(|a| HistoryCursor(position_of(a))))
            .flatten();
        Ok(HistoryPage { items: found, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionStatus, ActionTrigger};
    use crate::store::Store;
    use chrono::TimeZone;
    use serde_json::json;

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).unwrap()
    }

    /// 600 actions over 6 tools, 4 labels, 3 run ids, created one per ms (some sharing a ms)
    /// with slots in another order (as cron occurrences are created a period early): 250 run
    /// to completion or failure, 50 running, the rest pending.
    fn stored() -> (tempfile::TempDir, ActionDb, Vec<Action>) {
        let dir = tempfile::tempdir().unwrap();
        let db = ActionDb::open(&dir.path().join("orchestrator.db")).unwrap();
        let all = fill(&db);
        (dir, db, all)
    }

    fn fill(db: &dyn Store) -> Vec<Action> {
        let mut all = Vec::new();
        for i in 0..600i64 {
            let created = t(1_000 + i / 2);
            let slot = t(1_000 + (i * 7_919) % 600);
            let mut a = Action::new(
                format!("label-{}", i % 4),
                format!("tool-{}", i % 6),
                json!({"i": i}),
                ActionTrigger::Scheduled { next_tick_at: slot },
                created,
            );
            if i % 5 != 0 {
                a.run_id = Some(format!("run-{}", i % 3));
            }
            all.push(a);
        }
        db.insert_many(&all).unwrap();
        let claimed = db.claim_due(t(5_000), 300).unwrap();
        // The last 50 claimed stay running.
        for (n, a) in claimed.iter().take(250).enumerate() {
            let outcome = if n % 3 == 0 {
                ActionStatus::Failed { reason: "x".into() }
            } else {
                ActionStatus::Completed { result: json!({}) }
            };
            db.complete(a.id, outcome, t(6_000)).unwrap();
        }
        all.iter().map(|a| db.get(a.id).unwrap().unwrap()).collect()
    }

    fn walk(db: &dyn Store, filter: &HistoryFilter, limit: usize) -> Vec<Uuid> {
        let mut ids = Vec::new();
        let mut cursor = None;
        loop {
            let page = db
                .history_page(filter, cursor, limit, Bodies::Without)
                .unwrap();
            assert!(page.items.len() <= limit);
            ids.extend(page.items.iter().map(|a| a.id));
            match page.next {
                Some(next) => cursor = Some(next),
                None => return ids,
            }
        }
    }

    fn every_filter_and_their_combinations_match_a_scan(db: &dyn Store) {
        let all = fill(db);
        let mut newest_first = all.clone();
        newest_first.sort_by_key(|a| std::cmp::Reverse((a.scheduled_at(), a.id)));
        let filters = [
            HistoryFilter::default(),
            HistoryFilter {
                status: Some(StatusKind::Failed),
                ..Default::default()
            },
            HistoryFilter {
                tool: Some("tool-2".into()),
                ..Default::default()
            },
            HistoryFilter {
                label: Some("label-1".into()),
                ..Default::default()
            },
            HistoryFilter {
                run_id: Some("run-0".into()),
                ..Default::default()
            },
            HistoryFilter {
                since: Some(t(1_100)),
                until: Some(t(1_150)),
                ..Default::default()
            },
            HistoryFilter {
                status: Some(StatusKind::Completed),
                tool: Some("tool-1".into()),
                since: Some(t(1_050)),
                ..Default::default()
            },
            HistoryFilter {
                status: Some(StatusKind::Pending),
                label: Some("label-3".into()),
                run_id: Some("run-2".into()),
                until: Some(t(1_250)),
                ..Default::default()
            },
            HistoryFilter {
                tool: Some("no-such-tool".into()),
                ..Default::default()
            },
            HistoryFilter {
                status: Some(StatusKind::Running),
                ..Default::default()
            },
            HistoryFilter {
                status: Some(StatusKind::Running),
                tool: Some("tool-4".into()),
                ..Default::default()
            },
        ];
        for filter in &filters {
            let expected: Vec<Uuid> = newest_first
                .iter()
                .filter(|a| filter.matches(a))
                .map(|a| a.id)
                .collect();
            for limit in [1, 7, 50, 1_000] {
                assert_eq!(walk(db, filter, limit), expected, "{filter:?} by {limit}");
            }
        }
    }

    fn a_cursor_stays_exact_while_actions_arrive_and_change(db: &dyn Store) {
        let all = fill(db);
        let filter = HistoryFilter::default();
        let first = db.history_page(&filter, None, 50, Bodies::Without).unwrap();
        // New actions (newer than everything) and status changes of old ones.
        let fresh: Vec<Action> = (0..100)
            .map(|i| {
                Action::new(
                    "new",
                    "tool-0",
                    json!({}),
                    ActionTrigger::Manual {
                        requested_at: t(9_000),
                    },
                    t(9_000 + i),
                )
            })
            .collect();
        db.insert_many(&fresh).unwrap();
        for a in db.claim_due(t(9_500), 400).unwrap() {
            db.complete(
                a.id,
                ActionStatus::Completed { result: json!({}) },
                t(9_600),
            )
            .unwrap();
        }
        let mut seen: Vec<Uuid> = first.items.iter().map(|a| a.id).collect();
        let mut cursor = first.next;
        while let Some(c) = cursor {
            let page = db
                .history_page(&filter, Some(c), 50, Bodies::Without)
                .unwrap();
            seen.extend(page.items.iter().map(|a| a.id));
            cursor = page.next;
        }
        let mut expected: Vec<&Action> = all.iter().collect();
        expected.sort_by_key(|a| std::cmp::Reverse((a.scheduled_at(), a.id)));
        assert_eq!(seen, expected.iter().map(|a| a.id).collect::<Vec<_>>());
    }

    #[test]
    fn a_file_without_the_index_gets_it_at_open() {
        let (dir, db, all) = stored();
        {
            let tx = db.db.begin_write().unwrap();
            tx.delete_table(HISTORY).unwrap();
            tx.commit().unwrap();
        }
        drop(db);
        let db = ActionDb::open(&dir.path().join("orchestrator.db")).unwrap();
        let filter = HistoryFilter {
            tool: Some("tool-3".into()),
            ..Default::default()
        };
        let expected = all.iter().filter(|a| a.tool_name == "tool-3").count();
        assert_eq!(walk(&db, &filter, 13).len(), expected);
    }

    #[test]
    fn a_series_pages_its_occurrences_and_an_older_file_gets_its_keys_at_open() {
        let (dir, db, all) = stored();
        let mut next = all[0].clone();
        let series = next.series;
        let mut occurrences = vec![next.id];
        for n in 1..=7 {
            next.id = Uuid::now_v7();
            next.created_at = t(9_000 + n);
            db.insert(&next).unwrap();
            occurrences.push(next.id);
        }
        occurrences.reverse();
        let filter = HistoryFilter {
            series: Some(series),
            ..Default::default()
        };
        assert_eq!(walk(&db, &filter, 3), occurrences);
        // A schema 8 file: no series keys, the older version in meta.
        {
            let tx = db.db.begin_write().unwrap();
            {
                let mut index = tx.open_table(HISTORY).unwrap();
                let series_keys: Vec<[u8; 33]> = index
                    .iter()
                    .unwrap()
                    .map(|e| e.unwrap().0.value())
                    .filter(|k| k[0] == Dim::Series as u8)
                    .collect();
                assert!(!series_keys.is_empty());
                for k in series_keys {
                    index.remove(k).unwrap();
                }
                tx.open_table(super::super::META)
                    .unwrap()
                    .insert("schema_version", 8)
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        assert!(walk(&db, &filter, 3).is_empty());
        drop(db);
        let db = ActionDb::open(&dir.path().join("orchestrator.db")).unwrap();
        assert_eq!(walk(&db, &filter, 3), occurrences);
    }

    #[test]
    fn deleting_and_pruning_leave_no_key_behind() {
        let (_dir, db, all) = stored();
        let pending = all
            .iter()
            .find(|a| a.status == ActionStatus::Pending)
            .unwrap();
        db.delete(pending.id).unwrap();
        let pruned = db.prune_finished(t(7_000), 10_000).unwrap();
        assert_eq!(pruned, 250);
        let tx = db.db.begin_read().unwrap();
        let index = tx.open_table(HISTORY).unwrap();
        // 299 pending actions left, each under all, status, tool, label, series and maybe a
        // run; 50 running ones, under all but their status.
        let left = all
            .iter()
            .filter(|a| a.id != pending.id && !a.status.kind().is_finished())
            .map(|a| {
                let status = u64::from(a.status.kind() == StatusKind::Pending);
                4 + status + a.run_ids().count() as u64
            })
            .sum::<u64>();
        assert_eq!(index.len().unwrap(), left);
    }

    fn since_and_until_select_by_run_time_not_creation(db: &dyn Store) {
        // A cron occurrence created an hour before its slot, and a manual run asked between.
        let occurrence = Action::new(
            "nightly",
            "tool-0",
            json!({}),
            ActionTrigger::Scheduled {
                next_tick_at: t(3_600_000),
            },
            t(0),
        );
        let manual = Action::new(
            "manual",
            "tool-0",
            json!({}),
            ActionTrigger::Manual {
                requested_at: t(1_800_000),
            },
            t(1_800_000),
        );
        db.insert_many(&[occurrence.clone(), manual.clone()])
            .unwrap();
        let page = |since: Option<i64>, until: Option<i64>| {
            let filter = HistoryFilter {
                since: since.map(t),
                until: until.map(t),
                ..Default::default()
            };
            walk(db, &filter, 1)
        };
        assert_eq!(page(None, None), vec![occurrence.id, manual.id]);
        assert_eq!(page(Some(3_000_000), None), vec![occurrence.id]);
        assert_eq!(page(None, Some(3_000_000)), vec![manual.id]);
        assert_eq!(page(Some(3_600_000), Some(3_600_000)), vec![occurrence.id]);
        // Once they have run, they are found the same way.
        assert_eq!(db.claim_due(t(3_600_001), 10).unwrap().len(), 2);
        for id in [occurrence.id, manual.id] {
            let done = ActionStatus::Completed { result: json!({}) };
            db.complete(id, done, t(3_600_050)).unwrap();
        }
        assert_eq!(page(Some(3_000_000), None), vec![occurrence.id]);
        let completed = HistoryFilter {
            status: Some(StatusKind::Completed),
            until: Some(t(3_000_000)),
            ..Default::default()
        };
        assert_eq!(walk(db, &completed, 5), vec![manual.id]);
    }

    #[test]
    fn an_index_keyed_by_creation_is_rebuilt_by_run_time_at_open() {
        let (dir, db, all) = stored();
        // As a schema 9 file holds it: the same actions under their creation times.
        {
            let tx = db.db.begin_write().unwrap();
            tx.delete_table(HISTORY).unwrap();
            {
                let mut index = tx.open_table(HISTORY).unwrap();
                for a in &all {
                    let at = position(a.created_at, a.id);
                    index.insert(key(prefix(Dim::All, 0), at), ()).unwrap();
                }
                tx.open_table(super::super::META)
                    .unwrap()
                    .insert("schema_version", 9)
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        drop(db);
        let db = ActionDb::open(&dir.path().join("orchestrator.db")).unwrap();
        let filter = HistoryFilter {
            since: Some(t(1_300)),
            ..Default::default()
        };
        let mut expected: Vec<&Action> = all
            .iter()
            .filter(|a| a.scheduled_at() >= t(1_300))
            .collect();
        expected.sort_by_key(|a| std::cmp::Reverse((a.scheduled_at(), a.id)));
        let expected: Vec<Uuid> = expected.iter().map(|a| a.id).collect();
        assert!(!expected.is_empty());
        assert_eq!(walk(&db, &filter, 17), expected);
        let tool = HistoryFilter {
            tool: Some("tool-3".into()),
            ..Default::default()
        };
        let tool_3 = all.iter().filter(|a| a.tool_name == "tool-3").count();
        assert_eq!(walk(&db, &tool, 13).len(), tool_3);
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let c = HistoryCursor(position(Utc::now(), Uuid::now_v7()));
        assert_eq!(HistoryCursor::parse(&c.encode()), Ok(c));
        for bad in [
            "",
            "h1",
            "h1zz",
            "x1",
            &c.encode()[..20],
            &format!("{}00", c.encode()),
        ] {
            let err = HistoryCursor::parse(bad).unwrap_err();
            assert!(err.contains("malformed cursor"), "{err}");
        }
    }

    #[test]
    fn the_hash_is_fixed() {
        // Stored in keys: it must never change between builds.
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
    }

    /// The scenarios above on a fresh redb file and a fresh PostgreSQL database.
    mod on_redb {
        #[test]
        fn every_filter_and_their_combinations_match_a_scan() {
            let (_dir, db) = super::empty_file();
            super::every_filter_and_their_combinations_match_a_scan(&db);
        }

        #[test]
        fn a_cursor_stays_exact_while_actions_arrive_and_change() {
            let (_dir, db) = super::empty_file();
            super::a_cursor_stays_exact_while_actions_arrive_and_change(&db);
        }

        #[test]
        fn since_and_until_select_by_run_time_not_creation() {
            let (_dir, db) = super::empty_file();
            super::since_and_until_select_by_run_time_not_creation(&db);
        }
    }

    mod on_postgres {
        #[test]
        fn every_filter_and_their_combinations_match_a_scan() {
            let db = crate::store::redb::tests::open_pg();
            super::every_filter_and_their_combinations_match_a_scan(&db);
        }

        #[test]
        fn a_cursor_stays_exact_while_actions_arrive_and_change() {
            let db = crate::store::redb::tests::open_pg();
            super::a_cursor_stays_exact_while_actions_arrive_and_change(&db);
        }

        #[test]
        fn since_and_until_select_by_run_time_not_creation() {
            let db = crate::store::redb::tests::open_pg();
            super::since_and_until_select_by_run_time_not_creation(&db);
        }
    }

    fn empty_file() -> (tempfile::TempDir, ActionDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = ActionDb::open(&dir.path().join("orchestrator.db")).unwrap();
        (dir, db)
    }
}
