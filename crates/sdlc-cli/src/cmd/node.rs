//! What a daemon on PostgreSQL does as one node among several, beside its engine: renew its
//! lease (and its claims') every third of it, recover what nodes presumed dead left running,
//! and wake its engine when another node or a command stores something due
//! (`PgStore::listen_for_wakeups`). Each runs on a thread of its own: the PostgreSQL client
//! blocks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::Utc;
use sdlc_core::engine::Waker;
use sdlc_core::store::pg::{PgStore, Wake};
use sdlc_server::AppState;
use tracing::{error, info, warn};

/// The node's threads, until `stop`.
pub struct NodeDuties {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts the duties of node `node` (`pg` joined under that name), waking `waker`'s engine
/// and reloading `server`'s webhook routes (when it serves them) when another node or a command changes them.
pub fn start(pg: Arc<PgStore>, node: String, waker: Waker, server: Option<AppState>) -> NodeDuties {
    let stop = Arc::new(AtomicBool::new(false));
    let renew_every = (pg.lease() / 3)
        .to_std()
        .unwrap_or(Duration::from_secs(10))
        .max(Duration::from_millis(100));
    let mut threads = Vec::new();
    {
        let (pg, stop, waker) = (pg.clone(), stop.clone(), waker.clone());
        threads.push(spawn("node-lease", move || {
            while !sleep_unless_stopped(&stop, renew_every) {
                renew_and_recover(&pg, &node, &waker);
            }
        }));
    }
    {
        let (stop, waker) = (stop.clone(), waker);
        threads.push(spawn("node-wakeups", move || {
            pg.listen_for_wakeups(&stop, |wake| match wake {
                Wake::Due => {
                    waker.wake();
                    sdlc_core::store::outbox::wake_sender();
                }
                Wake::Routes => {
                    if let Some(Err(err)) = server.as_ref().map(AppState::reload_routes) {
                        warn!("cannot reload the webhook routes: {err}");
                    }
                }
                Wake::Tokens => {
                    if let Some(server) = &server {
                        server.token_cache().clear();
                    }
                }
                // Every node hears it; only the one running the action has a run to stop.
                Wake::Cancel { id, by, grace_ms } => {
                    waker.stop(id, &by, std::time::Duration::from_millis(grace_ms));
                }
            });
        }));
    }
    NodeDuties { stop, threads }
}

impl NodeDuties {
    /// Stops the threads and waits for them (each looks at least every few hundred ms).
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// One round: the heartbeat, then recovery of what dead nodes left.
fn renew_and_recover(pg: &PgStore, node: &str, waker: &Waker) {
    let now = Utc::now();
    match pg.heartbeat(now) {
        Ok(true) => {}
        Ok(false) => {
            // Presumed dead while it could not renew (paused, cut off): its claims went to
            // the others, and whatever it still finishes is refused. It joins again to go on.
            error!("this node's lease ran out and the others took over its runs; joining again");
            if let Err(err) = pg.join(node, now) {
                error!("cannot join again: {err}");
            }
        }
        Err(err) => warn!("cannot renew this node's lease: {err}"),
    }
    match pg.recover_expired(now) {
        Ok(report) if !report.interrupted.is_empty() || !report.returned.is_empty() => {
            info!(
                interrupted = report.interrupted.len(),
                retried = report.retried,
                returned = report.returned.len(),
                "recovered the runs of nodes that stopped renewing their lease"
            );
            // The plan runs it moved on have events to export, here as anywhere.
            for run in report.runs {
                waker.announce_run(run);
            }
            waker.wake();
        }
        Ok(_) => {}
        Err(err) => warn!("cannot recover the runs of dead nodes: {err}"),
    }
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .expect("a thread for the node's duties")
}

/// Sleeps `pause` in short steps; true as soon as `stop` is set.
fn sleep_unless_stopped(stop: &AtomicBool, pause: Duration) -> bool {
    let step = Duration::from_millis(100);
    let mut slept = Duration::ZERO;
    while slept < pause {
        if stop.load(Ordering::Acquire) {
            return true;
        }
        std::thread::sleep(step.min(pause - slept));
        slept += step;
    }
    stop.load(Ordering::Acquire)
}
