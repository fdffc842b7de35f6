//! The notification outbox's rules, for every backend: a notification is stored in the
//! transaction of the change that causes it (so a change is never told without having
//! happened, nor happens untold), then a sender outside the tick delivers it and records each
//! answer. What a try and a restart do to a pending notification is decided here; each
//! backend keeps the outbox in its own tables (`redb::outbox`, `pg::outbox`).

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::txn::Txn;
use crate::error::StoreError;
use crate::notify::{
    DeliveryState, Notification, NotifyConfig, NotifyEvent, RetrySchedule, Subject,
};

/// Set by a transaction that queued a notification, turned into a wake-up of the sender once
/// it commits (redb has one writer at a time, so the flag belongs to the commit in flight).
static QUEUED: AtomicBool = AtomicBool::new(false);
static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Wakes the sender when the transaction just committed queued something.
pub(crate) fn after_commit() {
    if QUEUED.swap(false, Ordering::AcqRel) {
        WAKE.notify_one();
    }
}

/// Wakes the sender of this process: another process (a command, another node on a shared
/// database) may have queued something.
pub fn wake_sender() {
    WAKE.notify_one();
}

/// Resolves when a commit queued a notification (or one was queued since the last wait).
pub async fn queued() {
    WAKE.notified().await
}

/// Queues one notification per receiver for `event`, when the stored settings (or the
/// subject's own `notify_on`) ask for it. `subject` is built only then.
pub(crate) fn enqueue_in(
    t: &mut impl Txn,
    event: NotifyEvent,
    notify_on: Option<&[NotifyEvent]>,
    subject: impl FnOnce() -> Subject,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if notify_on.is_some_and(|events| !events.contains(&event)) {
        return Ok(());
    }
    let Some(config) = t.notify_config()? else {
        return Ok(());
    };
    if config.receivers.is_empty() || (notify_on.is_none() && !config.events.contains(&event)) {
        return Ok(());
    }
    let mut subject = subject();
    subject.link_log(config.public_url.as_deref());
    let notes: Vec<Notification> = config
        .receivers
        .iter()
        .map(|r| Notification::new(event, subject.clone(), r.clone(), now))
        .collect();
    for note in &notes {
        t.add_notification(note)?;
    }
    QUEUED.store(true, Ordering::Release);
    Ok(())
}

/// What one try of a notification got.
#[derive(Debug, Clone)]
pub enum TryOutcome {
    /// 2xx, with the answer.
    Acknowledged(String),
    /// Anything else, or no answer: why.
    Refused(String),
}

/// Records on the action (when it is one, and still stored) that a receiver acknowledged.
/// Only the record changes: nothing indexed does.
pub(crate) fn mark_notified(
    t: &mut impl Txn,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(old) = t.get(id)? else {
        return Ok(());
    };
    let mut new = old.clone();
    new.notified_at = Some(now);
    t.store_record(&old, &new)
}

/// What a pending notification becomes when the daemon starts with `config`: failed when
/// its receiver is no longer configured, due at `now` otherwise (a restart tries again at
/// once what was not acknowledged). None when it stays as it is.
pub(crate) fn reconfigured(
    old: &Notification,
    config: &NotifyConfig,
    now: DateTime<Utc>,
) -> Option<Notification> {
    let mut new = old.clone();
    if config.receivers.iter().any(|r| r.id() == old.receiver.id()) {
        if old.next_try_at <= now {
            return None;
        }
        new.next_try_at = now;
    } else {
        new.state = DeliveryState::Failed;
        new.last_answer = Some("receiver no longer configured".to_string());
    }
    Some(new)
}

/// A pending notification after one try got `outcome`: sent, due again under `schedule`,
/// or failed after the last try.
pub(crate) fn after_try(
    old: &Notification,
    outcome: &TryOutcome,
    schedule: RetrySchedule,
    now: DateTime<Utc>,
) -> Notification {
    let mut new = old.clone();
    new.attempts += 1;
    match outcome {
        TryOutcome::Acknowledged(answer) => {
            new.state = DeliveryState::Sent;
            new.sent_at = Some(now);
            new.last_answer = Some(answer.clone());
        }
        TryOutcome::Refused(answer) => {
            new.last_answer = Some(answer.clone());
            match schedule.next_try(new.attempts, new.created_at, now) {
                Some(at) => new.next_try_at = at,
                None => new.state = DeliveryState::Failed,
            }
        }
    }
    new
}
