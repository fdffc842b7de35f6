//! The notification outbox on PostgreSQL (see `store::outbox`). Several daemons send from
//! one outbox, so taking due notifications claims them: each is held for [`SEND_CLAIM`]
//! (its due time moved on, under `FOR UPDATE SKIP LOCKED`), so one node sends it; if that
//! node dies before recording the answer, the notification is due again when the hold ends
//! and another node sends it (at least once, with its idempotency key).

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PgStore;
use super::txn::{PgTxn, fail, put_notification};
use crate::error::StoreError;
use crate::notify::{DeliveryState, Notification, NotifyConfig, RetrySchedule};
use crate::store::outbox::{TryOutcome, after_try, mark_notified, reconfigured};
use crate::store::{decode_json, encode_json};

/// How long a notification taken to be sent is held by the node that took it.
pub const SEND_CLAIM: Duration = Duration::from_secs(60);

impl PgStore {
    /// Stores the daemon's notification settings (see `ActionDb::set_notify_config`).
    pub fn set_notify_config(
        &self,
        config: &NotifyConfig,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.write_at(
            now,
            |t| {
                let url = t.url();
                t.query_rows(
                    "cannot store the notification settings",
                    "INSERT INTO sdlc_notify_config (record) VALUES ($1)
                     ON CONFLICT (only_row) DO UPDATE SET record = excluded.record",
                    &[&encode_json(Uuid::nil(), config)?],
                )?;
                let mut dropped = 0;
                for old in pending(t)? {
                    let Some(new) = reconfigured(&old, config, now) else {
                        continue;
                    };
                    dropped += usize::from(new.state == DeliveryState::Failed);
                    put_notification(t.client(), url, &new)?;
                }
                Ok(dropped)
            },
            |_| true,
        )
    }

    /// The notification settings the last daemon stored (none configured when it never did).
    pub fn notify_config(&self) -> Result<NotifyConfig, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query("SELECT record FROM sdlc_notify_config", &[])
            .map_err(|e| {
                fail(
                    self.db.shown_url(),
                    "cannot read the notification settings",
                    e,
                )
            })?;
        match rows.first() {
            Some(row) => decode_json(Uuid::nil(), row.get(0)),
            None => Ok(NotifyConfig::default()),
        }
    }

    /// Takes up to `limit` pending notifications due by `now`, earliest first, for this node
    /// to send: each is held from the others for [`SEND_CLAIM`].
    pub fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let held_until = now + chrono::Duration::from_std(SEND_CLAIM).expect("fits");
        self.write_at(
            now,
            |t| {
                let rows = t.query_rows(
                    "cannot take due notifications",
                    "UPDATE sdlc_outbox SET next_try_at = $1
                     WHERE id IN (SELECT id FROM sdlc_outbox
                                  WHERE pending AND next_try_at <= $2
                                  ORDER BY next_try_at, id LIMIT $3
                                  FOR UPDATE SKIP LOCKED)
                     RETURNING id, record",
                    &[
                        &held_until.timestamp_millis(),
                        &now.timestamp_millis(),
                        &(limit.min(i64::MAX as usize) as i64),
                    ],
                )?;
                let mut taken: Vec<Notification> = rows
                    .iter()
                    .map(|row| decode_json(row.get(0), row.get(1)))
                    .collect::<Result<_, _>>()?;
                taken.sort_by_key(|note| (note.next_try_at, note.id));
                Ok(taken)
            },
            |_| true,
        )
    }

    /// When the next pending notification is due (one held by a node counts when its hold
    /// ends).
    pub fn next_notification_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT min(next_try_at) FROM sdlc_outbox WHERE pending",
                &[],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot read the outbox", e))?;
        Ok(rows
            .first()
            .and_then(|row| row.get::<_, Option<i64>>(0))
            .and_then(DateTime::from_timestamp_millis))
    }

    /// Records the tries of one round (see `ActionDb::record_notifications`).
    pub fn record_notifications(
        &self,
        tries: &[(Uuid, TryOutcome)],
        schedule: RetrySchedule,
        now: DateTime<Utc>,
    ) -> Result<Vec<Notification>, StoreError> {
        self.write_at(
            now,
            |t| {
                let url = t.url();
                let mut changed = Vec::new();
                for (id, outcome) in tries {
                    let rows = t.query_rows(
                        "cannot read a notification",
                        "SELECT record FROM sdlc_outbox WHERE id = $1 FOR UPDATE",
                        &[id],
                    )?;
                    let Some(row) = rows.first() else {
                        continue;
                    };
                    let old: Notification = decode_json(*id, row.get(0))?;
                    if old.state != DeliveryState::Pending {
                        continue;
                    }
                    let new = after_try(&old, outcome, schedule, now);
                    put_notification(t.client(), url, &new)?;
                    if new.state == DeliveryState::Sent {
                        mark_notified(t, new.subject.id, now)?;
                    }
                    changed.push(new);
                }
                Ok(changed)
            },
            |_| true,
        )
    }

    /// Notifications newest first, in `state` when given.
    pub fn list_notifications(
        &self,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let pending = state.map(|s| s == DeliveryState::Pending);
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT id, record FROM sdlc_outbox
                 WHERE $1::bool IS NULL OR pending = $1 ORDER BY id DESC",
                &[&pending],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot list notifications", e))?;
        let mut found = Vec::new();
        for row in &rows {
            if found.len() == limit {
                break;
            }
            let note: Notification = decode_json(row.get(0), row.get(1))?;
            if state.is_none_or(|s| s == note.state) {
                found.push(note);
            }
        }
        Ok(found)
    }

    /// Forgets sent and failed notifications created before `cutoff`, at most `limit`.
    pub fn prune_notifications(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut client = self.db.client()?;
        let pruned = client
            .execute(
                "DELETE FROM sdlc_outbox WHERE id IN (
                     SELECT id FROM sdlc_outbox WHERE NOT pending AND created_at < $1
                     ORDER BY id LIMIT $2)",
                &[
                    &cutoff.timestamp_millis(),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot prune notifications", e))?;
        Ok(pruned as usize)
    }
}

/// Every pending notification, locked.
fn pending(t: &mut PgTxn<'_>) -> Result<Vec<Notification>, StoreError> {
    let rows = t.query_rows(
        "cannot read the outbox",
        "SELECT id, record FROM sdlc_outbox WHERE pending ORDER BY next_try_at, id FOR UPDATE",
        &[],
    )?;
    rows.iter()
        .map(|row| decode_json(row.get(0), row.get(1)))
        .collect()
}
