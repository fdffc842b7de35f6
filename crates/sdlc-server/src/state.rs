//! What every handler shares: the database, the project root, the engine's waker, the token,
//! the clock and the webhook body limit.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sdlc_core::ActionDb;
use sdlc_core::clock::Clock;
use sdlc_core::engine::Waker;
use sdlc_core::store::Ingested;
use sdlc_core::webhook::Delivery;

/// Handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<AppStateConfig>,
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
    pub fn new(config: AppStateConfig) -> AppState {
        AppState {
            inner: Arc::new(config),
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

    /// Stores one acknowledged webhook delivery.
    pub async fn ingest(
        &self,
        delivery: Delivery,
        now: DateTime<Utc>,
    ) -> Result<Ingested, crate::ApiError> {
        let mut results = self
            .with_db(move |db| db.ingest(std::slice::from_ref(&delivery), now))
            .await?;
        Ok(results.pop().expect("one delivery gives one result"))
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
