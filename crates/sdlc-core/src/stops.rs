//! Stops asked of the runs in flight on this process (`cancel` of a running action).
//!
//! The store records the request on the action (`Action::cancel`); this registry carries it
//! to the run's task: the server (on redb) or the PostgreSQL listener (a request made on any
//! node, see `pg::wake`) calls [`Stops::request`], and the runner, which watches its run's
//! [`StopSignal`], sends the process group SIGTERM and SIGKILL after the grace. A request may
//! come before the run's task watches it (claimed ahead, not started yet): it waits here, and
//! the run then never starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

/// What a stop asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub by: String,
    pub grace: Duration,
}

/// One run's stop, once asked.
#[derive(Debug, Default)]
pub struct StopSignal {
    asked: Mutex<Option<Stop>>,
    notify: Notify,
}

impl StopSignal {
    /// The stop asked, if any.
    pub fn asked(&self) -> Option<Stop> {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until a stop is asked.
    pub async fn wait(&self) -> Stop {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(stop) = self.asked() {
                return stop;
            }
            notified.await;
        }
    }

    fn ask(&self, stop: Stop) {
        self.asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(stop);
        self.notify.notify_waiters();
    }
}

/// How long a request for a run this process never starts is kept (on PostgreSQL every node
/// hears every request).
const UNCLAIMED_KEPT: Duration = Duration::from_secs(60);

/// The stop signals of this process's runs, by action.
#[derive(Debug, Default)]
pub struct Stops {
    runs: Mutex<HashMap<Uuid, (Arc<StopSignal>, Instant)>>,
}

impl Stops {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, (Arc<StopSignal>, Instant)>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the run of action `id` to stop (now, or as soon as it is watched).
    pub fn request(&self, id: Uuid, by: &str, grace: Duration) {
        let mut runs = self.lock();
        // Requests nobody watched for a while are for runs of other nodes.
        runs.retain(|_, (signal, at)| {
            Arc::strong_count(signal) > 1 || at.elapsed() < UNCLAIMED_KEPT
        });
        let (signal, _) = runs
            .entry(id)
            .or_insert_with(|| (Arc::default(), Instant::now()));
        signal.ask(Stop {
            by: by.to_string(),
            grace,
        });
    }

    /// The signal the run of action `id` watches (with a stop already asked, if one was).
    pub fn watch(&self, id: Uuid) -> Arc<StopSignal> {
        self.lock()
            .entry(id)
            .or_insert_with(|| (Arc::default(), Instant::now()))
            .0
            .clone()
    }

    /// Forgets the runs of `ids` (they ended).
    pub fn forget(&self, ids: impl IntoIterator<Item = Uuid>) {
        let mut runs = self.lock();
        for id in ids {
            runs.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_reaches_a_run_asked_before_or_after_it_watches() {
        let stops = Stops::default();
        let early = Uuid::new_v4();
        stops.request(early, "ada", Duration::from_secs(1));
        assert_eq!(stops.watch(early).asked().unwrap().by, "ada");

        let late = Uuid::new_v4();
        let signal = stops.watch(late);
        assert!(signal.asked().is_none());
        let waiting = tokio::spawn(async move { signal.wait().await });
        tokio::task::yield_now().await;
        stops.request(late, "bob", Duration::from_secs(2));
        let stop = waiting.await.unwrap();
        assert_eq!(
            (stop.by.as_str(), stop.grace),
            ("bob", Duration::from_secs(2))
        );
        stops.forget([early, late]);
        assert!(stops.lock().is_empty());
    }
}
