//! The start gate: on a store several nodes share (PostgreSQL), a claimed action's tool
//! starts only once the store has marked it started under this process's claim
//! (`Store::mark_starts`). A node that dies leaves proof of what it never started, which
//! the others' recovery hands back to Pending instead of failing it as interrupted; and a
//! node that was presumed dead finds its old claims gone before it starts any of them. The
//! mark also says by when the tool must have started (its claim's lease, less a margin): the
//! runner checks that at the spawn, so a node paused between the mark and the spawn starts
//! nothing the others may have recovered meanwhile.
//!
//! Marks wanted at once go in one statement: the gate's own thread (the store's client
//! blocks) takes every request waiting when it turns, so under load a round trip serves
//! many starts. On a redb file there is no gate: the run log is that proof.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::clock::Clock;
use crate::store::Store;

/// What the gate answers for one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Marked: start the tool, before this instant of the boot clock when one is given (its
    /// claim's lease, less a margin; see `Store::mark_starts`).
    Start(Option<std::time::Duration>),
    /// The claim is another node's now: do not start, record nothing.
    Lost,
    /// The mark could not be written (the store unreachable): the tool must not start.
    Failed(String),
}

/// A handle on the gate; its thread ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct StartGate {
    requests: mpsc::Sender<(Uuid, oneshot::Sender<Admission>)>,
}

impl StartGate {
    /// Starts the gate's thread over `db`.
    pub(crate) fn new(db: Arc<dyn Store>, clock: Arc<dyn Clock>) -> std::io::Result<StartGate> {
        let (requests, incoming) = mpsc::channel();
        std::thread::Builder::new()
            .name("sdlc-start-gate".to_string())
            .spawn(move || serve(&*db, &*clock, &incoming))?;
        Ok(StartGate { requests })
    }

    /// Waits for the mark of action `id`.
    pub(crate) async fn admit(&self, id: Uuid) -> Admission {
        let (reply, answer) = oneshot::channel();
        if self.requests.send((id, reply)).is_err() {
            return Admission::Failed("the start gate has stopped".to_string());
        }
        answer
            .await
            .unwrap_or_else(|_| Admission::Failed("the start gate has stopped".to_string()))
    }
}

/// Marks every request waiting, one batch per store call, until every handle is gone.
fn serve(
    db: &dyn Store,
    clock: &dyn Clock,
    incoming: &mpsc::Receiver<(Uuid, oneshot::Sender<Admission>)>,
) {
    while let Ok(first) = incoming.recv() {
        let mut batch = vec![first];
        batch.extend(incoming.try_iter());
        let ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
        let now = clock.now();
        match crate::store::guarded(db, |db| db.mark_starts(&ids, now)) {
            Ok(marks) => {
                let marked: HashSet<Uuid> = marks.marked.into_iter().collect();
                let lapsed: HashSet<Uuid> = marks.lapsed.into_iter().collect();
                for (id, reply) in batch {
                    let admission = if marked.contains(&id) {
                        Admission::Start(marks.start_by)
                    } else if lapsed.contains(&id) {
                        Admission::Failed(
                            "too little of its claim's lease was left to start it".to_string(),
                        )
                    } else {
                        Admission::Lost
                    };
                    // A run task that is gone (shutdown) needs no answer.
                    let _ = reply.send(admission);
                }
            }
            Err(err) => {
                let reason = format!("{err:#}");
                for (_, reply) in batch {
                    let _ = reply.send(Admission::Failed(reason.clone()));
                }
            }
        }
    }
}
