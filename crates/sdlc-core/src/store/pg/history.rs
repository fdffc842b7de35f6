//! The read side on PostgreSQL that the redb store answers from its own indexes: history
//! pages (keyset paging on run time and id, as `store::history` pages), what is coming
//! due, the recurring series, retention, and pages of run groups.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PgStore;
use super::run_groups::COUNT_COLUMNS;
use super::txn::fail;
use crate::error::StoreError;
use crate::model::{Action, StatusKind};
use crate::run_group::{GroupCursor, GroupFilter, GroupPage, RunGroup, Summary};
use crate::store::{
    Bodies, DEDUPE_WINDOW_MS, HistoryCursor, HistoryFilter, HistoryPage, decode_json, millis,
    status_byte,
};

impl PgStore {
    /// Up to `limit` actions matching `filter`, newest first (by run time), after `cursor`
    /// (see `ActionDb::history_page`). Records carry their bodies either way.
    pub fn history_page(
        &self,
        filter: &HistoryFilter,
        cursor: Option<HistoryCursor>,
        limit: usize,
        _bodies: Bodies,
    ) -> Result<HistoryPage, StoreError> {
        let limit = limit.max(1);
        let (before_ms, before_id) = match cursor {
            Some(cursor) => cursor.position(),
            None => (i64::MAX, Uuid::max()),
        };
        let status = filter.status.map(|kind| i16::from(status_byte(kind)));
        let since = filter.since.map_or(i64::MIN, |s| millis(s) as i64);
        let until = filter.until.map_or(i64::MAX, |u| millis(u) as i64);
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT id, record FROM sdlc_actions
                 WHERE ($1::int2 IS NULL OR status = $1)
                   AND ($2::text IS NULL OR tool = $2)
                   AND ($3::text IS NULL OR label = $3)
                   AND ($4::text IS NULL OR run_ids @> ARRAY[$4::text])
                   AND ($5::uuid IS NULL OR series = $5)
                   AND run_at >= $6 AND run_at <= $7
                   AND (run_at, id) < ($8, $9)
                 ORDER BY run_at DESC, id DESC LIMIT $10",
                &[
                    &status,
                    &filter.tool,
                    &filter.label,
                    &filter.run_id,
                    &filter.series,
                    &since,
                    &until,
                    &before_ms,
                    &before_id,
                    &(limit.saturating_add(1).min(i64::MAX as usize) as i64),
                ],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot read a history page", e))?;
        let mut items: Vec<Action> = rows
            .iter()
            .map(|row| decode_json(row.get(0), row.get(1)))
            .collect::<Result<_, _>>()?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next = more
            .then(|| items.last().map(HistoryCursor::after))
            .flatten();
        Ok(HistoryPage { items, next })
    }

    /// Pending actions due before `until`, soonest first, at most `limit`.
    pub fn due_before(
        &self,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Action>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT id, record FROM sdlc_actions
                 WHERE due_at IS NOT NULL AND due_at <= $1 AND status = $2
                 ORDER BY due_at, id LIMIT $3",
                &[
                    &(millis(until) as i64),
                    &i16::from(status_byte(StatusKind::Pending)),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot read what is due", e))?;
        rows.iter()
            .map(|row| decode_json(row.get(0), row.get(1)))
            .collect()
    }

    /// The head (newest occurrence) of every recurring series.
    pub fn recurring_heads(&self) -> Result<Vec<Action>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT a.id, a.record FROM sdlc_series s JOIN sdlc_actions a ON a.id = s.head
                 WHERE a.recurring ORDER BY s.series",
                &[],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot list the schedules", e))?;
        rows.iter()
            .map(|row| decode_json(row.get(0), row.get(1)))
            .collect()
    }

    /// Deletes up to `limit` finished actions last updated before `cutoff`, oldest first,
    /// keeping the finished steps of plan runs still going (see `ActionDb::prune_finished`);
    /// and forgets delivery ids older than the de-duplication window. Returns how many
    /// actions went.
    pub fn prune_finished(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        let finished: Vec<i16> = [
            StatusKind::Completed,
            StatusKind::Failed,
            StatusKind::Skipped,
            StatusKind::Canceled,
        ]
        .into_iter()
        .map(|kind| i16::from(status_byte(kind)))
        .collect();
        let url = self.db.shown_url();
        let mut client = self.db.client()?;
        let mut tx = client
            .transaction()
            .map_err(|e| fail(url, "cannot begin a transaction", e))?;
        let rows = tx
            .query(
                "DELETE FROM sdlc_actions WHERE id IN (
                     SELECT a.id FROM sdlc_actions a
                     LEFT JOIN sdlc_plan_runs r ON r.id = a.step_run
                     WHERE a.status = ANY($1) AND a.updated_at < $2
                       AND (r.id IS NULL OR r.status <> 'running')
                     ORDER BY a.updated_at, a.id LIMIT $3
                     FOR UPDATE OF a SKIP LOCKED)
                 RETURNING id, record",
                &[
                    &finished,
                    &(millis(cutoff) as i64),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )
            .map_err(|e| fail(url, "cannot prune finished actions", e))?;
        let gone: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
        // The groups that lost runs are summed again from the runs they still have.
        let regroup: std::collections::BTreeSet<String> = rows
            .iter()
            .filter_map(|row| decode_json::<Action>(row.get(0), row.get(1)).ok())
            .filter_map(|action| action.run_id)
            .collect();
        super::run_groups::recount(&mut tx, &regroup)
            .map_err(|e| fail(url, "cannot sum run groups again", e))?;
        if !gone.is_empty() {
            // A series whose newest occurrence went has ended.
            tx.execute("DELETE FROM sdlc_series WHERE head = ANY($1)", &[&gone])
                .map_err(|e| fail(url, "cannot forget ended series", e))?;
        }
        let window_start = Utc::now().timestamp_millis() - DEDUPE_WINDOW_MS;
        tx.execute(
            "DELETE FROM sdlc_delivery_ids WHERE seen_at < $1",
            &[&window_start],
        )
        .map_err(|e| fail(url, "cannot forget old delivery ids", e))?;
        tx.commit().map_err(|e| fail(url, "cannot commit", e))?;
        Ok(gone.len())
    }
}

impl PgStore {
    /// Up to `limit` run groups whose first run was due within `filter`, newest first,
    /// after `cursor` (see `ActionDb::run_groups`).
    pub fn run_groups(
        &self,
        filter: &GroupFilter,
        cursor: Option<GroupCursor>,
        limit: usize,
    ) -> Result<GroupPage, StoreError> {
        let limit = limit.max(1);
        let (before_ms, before_run) = match &cursor {
            Some(c) => (c.0.first_run_ms, Some(c.0.run_id.as_str())),
            None => (i64::MAX, None),
        };
        let mut client = self.db.client()?;
        let rows = client
            .query(
                &format!(
                    "SELECT run_id, {COUNT_COLUMNS}, first_run_at, first_started_at,
                            last_ended_at
                     FROM sdlc_run_groups
                     WHERE first_run_at >= $1 AND first_run_at <= $2
                       AND ($4::text IS NULL OR (first_run_at, run_id) < ($3, $4::text))
                     ORDER BY first_run_at DESC, run_id DESC LIMIT $5"
                ),
                &[
                    &filter.since_ms(),
                    &filter.until_ms(),
                    &before_ms,
                    &before_run,
                    &(limit.saturating_add(1).min(i64::MAX as usize) as i64),
                ],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot read a page of run groups", e))?;
        let mut items: Vec<RunGroup> = rows
            .iter()
            .map(|row| {
                let mut counts = [0u64; 8];
                for (i, count) in counts.iter_mut().enumerate() {
                    *count = row.get::<_, i64>(i + 1).max(0) as u64;
                }
                let summary = Summary {
                    counts,
                    first_run_ms: row.get(9),
                    first_started_ms: row.get(10),
                    last_ended_ms: row.get(11),
                };
                RunGroup::new(row.get(0), &summary)
            })
            .collect();
        let more = items.len() > limit;
        items.truncate(limit);
        let next = more
            .then(|| items.last().map(|g| GroupCursor(g.position())))
            .flatten();
        Ok(GroupPage { items, next })
    }
}
