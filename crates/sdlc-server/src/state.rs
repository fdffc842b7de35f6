//! What every handler shares: the database, the project root, the engine's waker, the token,
//! the clock and the webhook body limit.

use std::path::PathBuf;
use std::sync::Arc;

use sdlc_core::ActionDb;
use sdlc_core::clock::Clock;
use sdlc_core::engine::Waker;
use sdlc_core::store::Ingested;
use sdlc_core::webhook::Delivery;

use crate::ingest::Ingestor;

/// Handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<AppStateConfig>,
    ingestor: Ingestor,
}

/// Everything the server needs from the daemon that hosts it.
pub struct AppStateConfig {
    pub db: Arc<ActionDb>,
    pub root: PathBuf,
    pub waker: Waker,
    /// The management token: `Authorization: Bearer <token>`.
    pub token: String,
    pub clock: Arc<dyn Clock>,
    /// Largest webhook body accepted, in bytes.
    pub max_body: usize,
}

impl AppState {
    /// Builds the state and starts the webhook writer task (so: call it inside a runtime).
    pub fn new(config: AppStateConfig) -> AppState {
        let ingestor = Ingestor::start(config.db.clone(), config.clock.clone());
        AppState {
            inner: Arc::new(config),
            ingestor,
        }
    }

    pub fn db(&self) -> &Arc<ActionDb> {
        &self.inner.db
    }

    pub fn root(&self) -> &PathBuf {
        &self.inner.root
    }

    pub fn waker(&self) -> &Waker {
        &self.inner.waker
    }

    pub fn token(&self) -> &str {
        &self.inner.token
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub fn max_body(&self) -> usize {
        self.inner.max_body
    }

    /// Stores one acknowledged webhook delivery (group-committed with concurrent ones).
    pub async fn ingest(&self, delivery: Delivery) -> Result<Ingested, crate::ApiError> {
        self.ingestor.ingest(delivery).await
    }

    /// Runs blocking database work off the async threads.
    pub async fn with_db<T, F>(&self, work: F) -> Result<T, crate::ApiError>
    where
        F: FnOnce(&ActionDb) -> Result<T, sdlc_core::StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|err| crate::ApiError::internal(format!("database task failed: {err}")))?
            .map_err(crate::ApiError::from)
    }
}
