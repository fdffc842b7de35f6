//! The logs of the runs in flight on this process, for readers that follow them.
//!
//! The engine registers a [`LiveLog`] for each run it starts and hands it to the runner,
//! which feeds it what the run prints; a reader (`logs --follow`, the dashboard) takes the
//! lines past the ones it has and waits for more. The engine removes a run's entry once its
//! outcome (and so its stored log) is committed: a reader that finds no entry reads the
//! stored log, and one that finds neither while the action still runs (another node runs it,
//! or the commit is on its way) looks again shortly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use uuid::Uuid;

use super::{LogCapture, LogLine, Stream};

/// One run's capture, shared between its runner and its readers.
#[derive(Debug)]
pub struct LiveLog {
    /// The attempt of the action this run is.
    pub attempt: u32,
    capture: Mutex<LogCapture>,
    /// How many lines were there when the log was last written to a shared store.
    flushed: std::sync::atomic::AtomicU64,
    /// Woken at each chunk the run prints, and when it ends.
    changed: Notify,
    ended: std::sync::atomic::AtomicBool,
}

impl LiveLog {
    pub fn new(attempt: u32, cap: usize) -> LiveLog {
        LiveLog {
            attempt,
            capture: Mutex::new(LogCapture::new(cap)),
            flushed: std::sync::atomic::AtomicU64::new(0),
            changed: Notify::new(),
            ended: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogCapture> {
        self.capture.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a chunk the run printed on `stream`.
    pub fn push(&self, stream: Stream, chunk: &[u8]) {
        self.lock().push(stream, chunk);
        self.changed.notify_waiters();
    }

    /// Adds a line of the daemon's own.
    pub fn note(&self, text: impl Into<String>) {
        self.lock().note(text);
        self.changed.notify_waiters();
    }

    /// The run ended: its lines are complete. Returns them all (see `LogCapture::lines`).
    pub fn end(&self) -> Vec<LogLine> {
        let lines = {
            let mut capture = self.lock();
            capture.finish_partials();
            if capture.is_empty() {
                Vec::new()
            } else {
                capture.lines()
            }
        };
        self.ended.store(true, std::sync::atomic::Ordering::Release);
        self.changed.notify_waiters();
        lines
    }

    /// Whether the run ended.
    pub fn has_ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every line kept so far, and the number to follow from.
    pub fn snapshot(&self) -> (Vec<LogLine>, u64) {
        let capture = self.lock();
        (capture.lines(), capture.next_seq())
    }

    /// The lines after the first `from` (see `LogCapture::lines_since`).
    pub fn lines_since(&self, from: u64) -> (Vec<LogLine>, u64) {
        self.lock().lines_since(from)
    }

    /// Waits until the run prints more than `from` lines, or ends.
    pub async fn wait_past(&self, from: u64) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a line pushed in between still wakes it.
            changed.as_mut().enable();
            if self.has_ended() || self.lock().next_seq() > from {
                return;
            }
            changed.await;
        }
    }
}

/// Every run in flight on this process with its log.
#[derive(Debug, Default)]
pub struct LiveLogs {
    runs: Mutex<HashMap<Uuid, Arc<LiveLog>>>,
}

impl LiveLogs {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<LiveLog>>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new log for attempt `attempt` of action `id`, bounded by `cap` bytes.
    pub fn start(&self, id: Uuid, attempt: u32, cap: usize) -> Arc<LiveLog> {
        let log = Arc::new(LiveLog::new(attempt, cap));
        self.lock().insert(id, log.clone());
        log
    }

    /// The log of action `id`'s run in flight here, if any.
    pub fn get(&self, id: Uuid) -> Option<Arc<LiveLog>> {
        self.lock().get(&id).cloned()
    }

    /// The runs still going that printed more since the last call: action, attempt and the
    /// stored form of every line kept so far (for a shared store, `put_partial_logs`).
    pub fn take_unflushed(&self) -> Vec<(Uuid, u32, Vec<u8>)> {
        let runs: Vec<(Uuid, Arc<LiveLog>)> = self
            .lock()
            .iter()
            .map(|(id, log)| (*id, log.clone()))
            .collect();
        let mut unflushed = Vec::new();
        for (id, log) in runs {
            if log.has_ended() {
                continue;
            }
            let (lines, next) = log.snapshot();
            let before = log.flushed.swap(next, std::sync::atomic::Ordering::AcqRel);
            if next > before
                && let Some(stored) = super::encode(&lines)
            {
                unflushed.push((id, log.attempt, stored));
            }
        }
        unflushed
    }

    /// Forgets the runs of `ids` (their outcomes and logs are stored).
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
    async fn a_follower_wakes_for_each_line_and_at_the_end() {
        let logs = Arc::new(LiveLogs::default());
        let id = Uuid::new_v4();
        let log = logs.start(id, 1, super::super::DEFAULT_CAP);
        let follower = {
            let log = logs.get(id).unwrap();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut next = 0;
                loop {
                    log.wait_past(next).await;
                    let (lines, after) = log.lines_since(next);
                    seen.extend(lines.into_iter().map(|l| l.text));
                    next = after;
                    if log.has_ended() && log.lines_since(next).0.is_empty() {
                        return seen;
                    }
                }
            })
        };
        log.push(Stream::Stdout, b"one\n");
        tokio::task::yield_now().await;
        log.push(Stream::Stderr, b"two\nthr");
        log.end();
        let seen = follower.await.unwrap();
        assert_eq!(
            seen,
            vec![b"one".to_vec(), b"two".to_vec(), b"thr".to_vec()]
        );
        logs.forget([id]);
        assert!(logs.get(id).is_none());
    }

    #[test]
    fn only_runs_that_printed_more_are_flushed_again() {
        let logs = LiveLogs::default();
        let quiet = Uuid::new_v4();
        let busy = Uuid::new_v4();
        logs.start(quiet, 1, 4096);
        let log = logs.start(busy, 2, 4096);
        log.push(Stream::Stdout, b"one\n");
        let first = logs.take_unflushed();
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].0, first[0].1), (busy, 2));
        assert!(logs.take_unflushed().is_empty(), "nothing new");
        log.push(Stream::Stdout, b"two\n");
        let again = logs.take_unflushed();
        assert_eq!(super::super::decode(&again[0].2).unwrap().len(), 2);
        log.end();
        log.push(Stream::Stdout, b"three\n");
        assert!(
            logs.take_unflushed().is_empty(),
            "an ended run's log is its settle's"
        );
    }
}
