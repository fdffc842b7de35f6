//! The notification outbox: a notification is stored in the transaction of the change that
//! causes it (so a change is never told without having happened, nor happens untold), then a
//! sender outside the tick delivers it and records each answer here.
//!
//! The daemon's receivers and default events are stored too (`notify_config`), so whichever
//! writer makes the change (the engine, an approval through the API, a standalone `plan run`)
//! queues what the daemon was told to send; the next daemon sends what is left.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::{ActionDb, Tables, decode_json, due_key, encode_json, id_from_key};
use crate::error::StoreError;
use crate::notify::{DeliveryState, Notification, NotifyConfig, RetrySchedule};
use crate::store::outbox::{TryOutcome, after_try, mark_notified, reconfigured};

const NOTIFY_CONFIG: TableDefinition<&str, &[u8]> = TableDefinition::new("notify_config");
const OUTBOX: TableDefinition<u128, &[u8]> = TableDefinition::new("outbox");
/// Pending notifications by when their next try is due.
const OUTBOX_DUE: TableDefinition<[u8; 24], ()> = TableDefinition::new("outbox_due");

/// The outbox tables of one write transaction, with the stored settings read once.
pub(super) struct OutboxTables<'tx> {
    outbox: Table<'tx, u128, &'static [u8]>,
    due: Table<'tx, [u8; 24], ()>,
    pub(super) config: Option<NotifyConfig>,
}

impl<'tx> OutboxTables<'tx> {
    pub(super) fn open(tx: &'tx WriteTransaction) -> Result<OutboxTables<'tx>, StoreError> {
        let config = read_config(&tx.open_table(NOTIFY_CONFIG)?)?;
        Ok(OutboxTables {
            outbox: tx.open_table(OUTBOX)?,
            due: tx.open_table(OUTBOX_DUE)?,
            config,
        })
    }

    pub(super) fn put(
        &mut self,
        old: Option<&Notification>,
        new: &Notification,
    ) -> Result<(), StoreError> {
        if let Some(old) = old
            && old.state == DeliveryState::Pending
        {
            self.due.remove(due_key(old.next_try_at, old.id))?;
        }
        self.outbox
            .insert(new.id.as_u128(), encode_json(new.id, new)?.as_slice())?;
        if new.state == DeliveryState::Pending {
            self.due.insert(due_key(new.next_try_at, new.id), ())?;
        }
        Ok(())
    }
}

pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(NOTIFY_CONFIG)?;
    tx.open_table(OUTBOX)?;
    tx.open_table(OUTBOX_DUE)?;
    Ok(())
}

fn read_config(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<NotifyConfig>, StoreError> {
    match table.get("config")? {
        Some(bytes) => Ok(Some(decode_json(Uuid::nil(), bytes.value())?)),
        None => Ok(None),
    }
}

impl ActionDb {
    /// Stores the daemon's notification settings, as a daemon starts. Pending notifications
    /// to a receiver no longer among them are failed ("receiver no longer configured"; returns
    /// how many); the others are due at `now`: a restart tries again at once what was not
    /// acknowledged.
    pub fn set_notify_config(
        &self,
        config: &NotifyConfig,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let tx = self.begin_write()?;
        let mut dropped = 0;
        {
            tx.open_table(NOTIFY_CONFIG)?
                .insert("config", encode_json(Uuid::nil(), config)?.as_slice())?;
            let mut o = OutboxTables::open(&tx)?;
            for old in pending_in(&o)? {
                let Some(new) = reconfigured(&old, config, now) else {
                    continue;
                };
                dropped += usize::from(new.state == DeliveryState::Failed);
                o.put(Some(&old), &new)?;
            }
        }
        self.db.commit(tx)?;
        Ok(dropped)
    }

    /// The notification settings the last daemon stored (none configured when it never did).
    pub fn notify_config(&self) -> Result<NotifyConfig, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(read_config(&tx.open_table(NOTIFY_CONFIG)?)?.unwrap_or_default())
    }

    /// Pending notifications due by `now`, earliest first.
    pub fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let tx = self.db.begin_read()?;
        let due = tx.open_table(OUTBOX_DUE)?;
        let outbox = tx.open_table(OUTBOX)?;
        let mut found = Vec::new();
        for entry in due.range(..=due_key(now, Uuid::max()))?.take(limit) {
            let id = id_from_key(&entry?.0.value()[8..]);
            if let Some(bytes) = outbox.get(id.as_u128())? {
                found.push(decode_json(id, bytes.value())?);
            }
        }
        Ok(found)
    }

    /// When the next pending notification is due.
    pub fn next_notification_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let tx = self.db.begin_read()?;
        let due = tx.open_table(OUTBOX_DUE)?;
        match due.first()? {
            Some((key, _)) => {
                let ms = u64::from_be_bytes(key.value()[..8].try_into().expect("8 bytes"));
                Ok(DateTime::from_timestamp_millis(ms as i64))
            }
            None => Ok(None),
        }
    }

    /// Records the tries of one round, in one transaction: acknowledged ones are sent (and
    /// their action records `notified_at`), refused ones wait for their next try under
    /// `schedule`, or fail after the last. Returns the notifications as they now stand.
    pub fn record_notifications(
        &self,
        tries: &[(Uuid, TryOutcome)],
        schedule: RetrySchedule,
        now: DateTime<Utc>,
    ) -> Result<Vec<Notification>, StoreError> {
        let tx = self.begin_write()?;
        let mut changed = Vec::new();
        {
            let mut t = Tables::open(&tx)?;
            for (id, outcome) in tries {
                let o = t.outbox()?;
                let Some(old) = o
                    .outbox
                    .get(id.as_u128())?
                    .map(|b| decode_json::<Notification>(*id, b.value()))
                    .transpose()?
                else {
                    continue;
                };
                if old.state != DeliveryState::Pending {
                    continue;
                }
                let new = after_try(&old, outcome, schedule, now);
                o.put(Some(&old), &new)?;
                if new.state == DeliveryState::Sent {
                    mark_notified(&mut t, new.subject.id, now)?;
                }
                changed.push(new);
            }
        }
        self.db.commit(tx)?;
        Ok(changed)
    }

    /// Notifications newest first, in `state` when given.
    pub fn list_notifications(
        &self,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let tx = self.db.begin_read()?;
        let outbox = tx.open_table(OUTBOX)?;
        let mut found = Vec::new();
        for entry in outbox.iter()?.rev() {
            if found.len() == limit {
                break;
            }
            let (id, bytes) = entry?;
            let note: Notification = decode_json(Uuid::from_u128(id.value()), bytes.value())?;
            if state.is_none_or(|s| s == note.state) {
                found.push(note);
            }
        }
        Ok(found)
    }

    /// Forgets sent and failed notifications created before `cutoff` (with the finished
    /// actions they were about), at most `limit`.
    pub fn prune_notifications(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let tx = self.begin_write()?;
        let mut pruned = 0;
        {
            let mut outbox = tx.open_table(OUTBOX)?;
            let mut old = Vec::new();
            for entry in outbox.iter()? {
                let (id, bytes) = entry?;
                let note: Notification = decode_json(Uuid::from_u128(id.value()), bytes.value())?;
                if note.created_at >= cutoff || old.len() == limit {
                    break;
                }
                if note.state != DeliveryState::Pending {
                    old.push(id.value());
                }
            }
            for id in old {
                outbox.remove(id)?;
                pruned += 1;
            }
        }
        if pruned > 0 {
            self.db.commit(tx)?;
        } else {
            tx.abort()?;
        }
        Ok(pruned)
    }
}

fn pending_in(o: &OutboxTables<'_>) -> Result<Vec<Notification>, StoreError> {
    let mut found = Vec::new();
    for entry in o.due.iter()? {
        let id = id_from_key(&entry?.0.value()[8..]);
        if let Some(bytes) = o.outbox.get(id.as_u128())? {
            found.push(decode_json(id, bytes.value())?);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, ActionStatus, ActionTrigger, RetryPolicy};
    use crate::notify::{NotifyEvent, Receiver, ReceiverKind};
    use crate::store::Store;
    use serde_json::json;

    fn config(events: &[NotifyEvent]) -> NotifyConfig {
        NotifyConfig {
            receivers: vec![
                Receiver::new(ReceiverKind::Slack, "http://127.0.0.1:9/slack").unwrap(),
                Receiver::new(ReceiverKind::Webhook, "http://127.0.0.1:9/hook").unwrap(),
            ],
            events: events.to_vec(),
            public_url: None,
        }
    }

    fn run_once(db: &dyn Store, action: &Action, outcome: ActionStatus) {
        db.insert(action).unwrap();
        let now = Utc::now();
        let claimed = db.claim_due(now, 10).unwrap();
        assert_eq!(claimed.len(), 1);
        db.complete(action.id, outcome, now).unwrap();
    }

    fn manual(label: &str) -> Action {
        let now = Utc::now();
        Action::new(
            label,
            "t",
            json!({}),
            ActionTrigger::Manual { requested_at: now },
            now,
        )
    }

    /// `open` opens the same store each time (a new daemon on the same database).
    fn a_change_is_queued_once_per_receiver_with_the_change_and_only_when_asked(
        open: &dyn Fn() -> Box<dyn Store>,
    ) {
        let db = open();
        // No daemon settings: nothing is queued.
        run_once(
            &*db,
            &manual("quiet"),
            ActionStatus::Failed { reason: "x".into() },
        );
        assert!(db.list_notifications(None, 10).unwrap().is_empty());

        db.set_notify_config(&config(&NotifyEvent::DEFAULT), Utc::now())
            .unwrap();
        let mut retried = manual("retried");
        retried.retry = Some(RetryPolicy {
            retries: 1,
            backoff_ms: 0,
            fixed: true,
        });
        run_once(
            &*db,
            &retried,
            ActionStatus::Failed {
                reason: "first".into(),
            },
        );
        // Retried: no notification yet.
        assert!(db.list_notifications(None, 10).unwrap().is_empty());
        let now = Utc::now() + chrono::Duration::seconds(1);
        db.claim_due(now, 10).unwrap();
        db.complete(
            retried.id,
            ActionStatus::Failed {
                reason: "second".into(),
            },
            now,
        )
        .unwrap();
        let notes = db.list_notifications(None, 10).unwrap();
        assert_eq!(notes.len(), 2);
        assert!(notes.iter().all(
            |n| n.event == NotifyEvent::Failed && n.subject.reason.as_deref() == Some("second")
        ));

        // Completed is not among the default events; --no-notify silences a failure.
        run_once(
            &*db,
            &manual("fine"),
            ActionStatus::Completed { result: json!({}) },
        );
        let mut silenced = manual("silenced");
        silenced.notify_on = Some(Vec::new());
        run_once(&*db, &silenced, ActionStatus::Failed { reason: "x".into() });
        assert_eq!(db.list_notifications(None, 10).unwrap().len(), 2);

        // Due at once; a refusal waits for the next try, an acknowledgement is final and
        // marks the action.
        let now = Utc::now() + chrono::Duration::seconds(2);
        let due = db.due_notifications(now, 10).unwrap();
        assert_eq!(due.len(), 2);
        let schedule = RetrySchedule::default();
        let tries = vec![
            (due[0].id, TryOutcome::Refused("HTTP 500".into())),
            (due[1].id, TryOutcome::Acknowledged("HTTP 200".into())),
        ];
        db.record_notifications(&tries, schedule, now).unwrap();
        assert_eq!(db.due_notifications(now, 10).unwrap().len(), 0);
        assert_eq!(
            db.next_notification_at()
                .unwrap()
                .map(|t| t.timestamp_millis()),
            Some((now + chrono::Duration::seconds(5)).timestamp_millis())
        );
        assert!(db.get(retried.id).unwrap().unwrap().notified_at.is_some());

        // A new daemon without the refused receiver fails what was left for it.
        drop(db);
        let db = open();
        let mut fewer = config(&NotifyEvent::DEFAULT);
        fewer.receivers.retain(|r| r.id() == due[1].receiver.id());
        assert_eq!(db.set_notify_config(&fewer, Utc::now()).unwrap(), 1);
        let failed = db
            .list_notifications(Some(DeliveryState::Failed), 10)
            .unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(
            failed[0].last_answer.as_deref(),
            Some("receiver no longer configured")
        );
    }

    fn the_last_refusal_fails_the_notification(db: &dyn Store) {
        db.set_notify_config(&config(&[NotifyEvent::AwaitingApproval]), Utc::now())
            .unwrap();
        // A result that asks for a person.
        let gated = manual("gated");
        let asks = json!({"awaiting_approval": true});
        run_once(db, &gated, ActionStatus::Completed { result: asks });
        let due = db.due_notifications(Utc::now(), 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].event, NotifyEvent::AwaitingApproval);
        let schedule = RetrySchedule {
            first: std::time::Duration::from_millis(1),
            give_up_after: std::time::Duration::from_millis(0),
        };
        let tries: Vec<_> = due
            .iter()
            .map(|n| (n.id, TryOutcome::Refused("HTTP 503".into())))
            .collect();
        let after = db
            .record_notifications(&tries, schedule, Utc::now())
            .unwrap();
        assert!(
            after
                .iter()
                .all(|n| n.state == DeliveryState::Failed && n.attempts == 1)
        );
        assert_eq!(db.next_notification_at().unwrap(), None);
    }

    mod on_redb {
        use super::*;

        #[test]
        fn a_change_is_queued_once_per_receiver_with_the_change_and_only_when_asked() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("orchestrator.db");
            super::a_change_is_queued_once_per_receiver_with_the_change_and_only_when_asked(
                &|| Box::new(ActionDb::open(&path).unwrap()),
            );
        }

        #[test]
        fn the_last_refusal_fails_the_notification() {
            let dir = tempfile::tempdir().unwrap();
            let db = ActionDb::open(&dir.path().join("orchestrator.db")).unwrap();
            super::the_last_refusal_fails_the_notification(&db);
        }
    }

    mod on_postgres {
        #[test]
        fn a_change_is_queued_once_per_receiver_with_the_change_and_only_when_asked() {
            let url = sdlc_pgtest::Cluster::shared()
                .expect("the PostgreSQL tests need a server")
                .fresh_database()
                .unwrap();
            super::a_change_is_queued_once_per_receiver_with_the_change_and_only_when_asked(
                &|| Box::new(crate::store::pg::PgStore::connect(&url, 2).unwrap()),
            );
        }

        #[test]
        fn the_last_refusal_fails_the_notification() {
            super::the_last_refusal_fails_the_notification(&crate::store::redb::tests::open_pg());
        }
    }
}
