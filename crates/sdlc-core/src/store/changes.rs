//! The change feed: which actions each commit changed, for live views (the dashboard's event
//! stream). A write transaction notes what it changes as it goes (`note`, from `put` and the
//! few writers beside it); the commit publishes the list once it is durable, so a listener
//! never hears of a change that did not happen. Nothing is noted while nobody listens.
//!
//! The notes of the transaction in flight are kept per thread: every write transaction of
//! the store begins and commits on one thread, and redb allows one writer at a time, so a
//! thread's list belongs to the one transaction it has open. Beginning a transaction clears
//! it (what an aborted one noted is dropped).

use std::cell::RefCell;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::model::{Action, StatusKind};

/// Commits a slow listener may fall behind by before it is told it lagged.
const FEED_CAPACITY: usize = 1024;

/// One action changed by a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Change {
    pub id: Uuid,
    /// Its status after the commit; None when the commit deleted it.
    pub status: Option<StatusKind>,
    /// The plan run it is a step of, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_run: Option<Uuid>,
}

impl Change {
    pub fn of(action: &Action) -> Change {
        Change {
            id: action.id,
            status: Some(action.status.kind()),
            plan_run: action.step.as_ref().map(|step| step.run_id),
        }
    }
}

/// The changes of one commit, in the order they were made.
pub type Changes = Arc<[Change]>;

thread_local! {
    /// None while nobody listens: `note` then costs one check.
    static NOTED: RefCell<Option<Vec<Change>>> = const { RefCell::new(None) };
}

/// The publishing side, owned by the database handle.
pub(crate) struct ChangeFeed {
    sender: broadcast::Sender<Changes>,
}

impl ChangeFeed {
    pub(crate) fn new() -> ChangeFeed {
        ChangeFeed {
            sender: broadcast::channel(FEED_CAPACITY).0,
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Changes> {
        self.sender.subscribe()
    }

    /// A write transaction begins on this thread.
    pub(crate) fn begin(&self) {
        let listening = self.sender.receiver_count() > 0;
        NOTED.with(|noted| *noted.borrow_mut() = listening.then(Vec::new));
    }

    /// The transaction begun on this thread committed: tells the listeners what it changed.
    pub(crate) fn committed(&self) {
        let Some(changes) = NOTED.with(|noted| noted.borrow_mut().take()) else {
            return;
        };
        if !changes.is_empty() {
            // No listener left is not an error: the next transaction stops noting.
            let _ = self.sender.send(changes.into());
        }
    }
}

/// Notes a change of the transaction in flight on this thread.
pub(crate) fn note(change: Change) {
    NOTED.with(|noted| {
        if let Some(list) = noted.borrow_mut().as_mut() {
            list.push(change);
        }
    });
}
