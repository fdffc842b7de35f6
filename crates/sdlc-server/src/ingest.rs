//! Group commit for webhook ingress.
//!
//! Every acknowledged request must be durable before its 202, and a durable commit waits
//! for fsync: one commit per request would cap ingress at a few thousand requests per second.
//! Instead, handlers hand their delivery to one writer thread and wait for its answer; the
//! writer takes whatever has queued up (up to `MAX_BATCH`) and stores it in one transaction.
//! Under light load a batch is one request and nothing waits longer than one commit; under
//! heavy load batches grow and the cost per request falls.
//!
//! The writer is a plain thread blocked on the queue rather than an async task that hands
//! each batch to the blocking pool: every request then costs two thread wake-ups (handler to
//! writer, writer to handler) instead of four, which is a measurable share of a request.
//! For the same reason the writer, not each handler, wakes the engine: once per batch that
//! stored something, before any of the batch's requests is answered.

use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot};

use sdlc_core::clock::Clock;
use sdlc_core::engine::Waker;
use sdlc_core::metrics::{Metrics, Writer};
use sdlc_core::store::Ingested;
use sdlc_core::store::Store;
use sdlc_core::webhook::Delivery;

use crate::ApiError;

/// Most deliveries stored in one transaction.
const MAX_BATCH: usize = 256;
/// Requests waiting for the writer; beyond this, handlers wait to enqueue (back-pressure).
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<Ingested, ApiError>>;

/// The handlers' side of the writer.
#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<(Delivery, Reply)>,
}

impl Ingestor {
    /// Starts the writer thread; it ends when every `Ingestor` is dropped. `engine` is woken
    /// after each batch that stored a new delivery.
    pub fn start(
        db: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        engine: Waker,
        metrics: Arc<Metrics>,
    ) -> Ingestor {
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("webhook-writer".into())
            .spawn({
                // Nothing joins this thread: holding the database only while storing a batch
                // lets the daemon's last handle close it cleanly at shutdown.
                let db = Arc::downgrade(&db);
                move || write_batches(&db, clock.as_ref(), &engine, &metrics, rx)
            })
            .expect("the webhook writer thread starts");
        Ingestor { tx }
    }

    /// Stores one delivery durably (in some batch) and returns what the store said.
    pub async fn ingest(&self, delivery: Delivery) -> Result<Ingested, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((delivery, reply))
            .await
            .map_err(|_| ApiError::internal("the webhook writer has stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("the webhook writer dropped a request"))?
    }
}

fn write_batches(
    db: &Weak<dyn Store>,
    clock: &dyn Clock,
    engine: &Waker,
    metrics: &Metrics,
    mut rx: mpsc::Receiver<(Delivery, Reply)>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (deliveries, replies): (Vec<Delivery>, Vec<Reply>) = batch.into_iter().unzip();
        let began = std::time::Instant::now();
        let stored = match db.upgrade() {
            // A panic in the store fails this batch's requests, not every later one.
            Some(db) => {
                match sdlc_core::store::guarded(&*db, |db| db.ingest(&deliveries, clock.now())) {
                    Ok(results) => Ok(results),
                    Err(err) => {
                        if err.is_unavailable() {
                            // The engine owns reopening the file: let it see the fault now.
                            engine.wake();
                        }
                        Err(ApiError::from(err))
                    }
                }
            }
            None => Err(ApiError::unavailable(
                "the daemon is stopping: the database is closed",
            )),
        };
        match stored {
            Ok(results) => {
                metrics.committed(Writer::Ingest, began.elapsed());
                if results.iter().any(|result| !result.duplicate) {
                    engine.wake();
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}
