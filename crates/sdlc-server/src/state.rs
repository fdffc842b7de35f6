//! What every handler shares: the database, the project root, the engine's waker, the token,
//! the clock, the webhook body limit, and the dashboard's event hub and login tokens.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use sdlc_core::clock::Clock;
use sdlc_core::engine::Waker;
use sdlc_core::store::Ingested;
use sdlc_core::store::Store;
use sdlc_core::webhook::{Delivery, WebhookRoute};

use sdlc_core::engine_stats::EngineStats;
use sdlc_core::metrics::Metrics;

use crate::auth::session::LoginTokens;
use crate::delivery_log::{DeliveryLog, DeliveryRecord};
use crate::ingest::Ingestor;
use crate::ui::events::{EventHub, HubSources};

/// Handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<AppStateConfig>,
    ingestor: Ingestor,
    /// Webhook routes by path, so ingress reads no database. On redb the daemon owns the
    /// database, so every route change passes through this server and updates the cache
    /// with it; on PostgreSQL a change made elsewhere is notified (`reload_routes`).
    routes: Arc<RwLock<HashMap<String, WebhookRoute>>>,
    events: Arc<EventHub>,
    login_tokens: Arc<LoginTokens>,
    deliveries: Arc<DeliveryLog>,
    tool_metas: Arc<crate::ui::tools::MetaCache>,
    tokens: Arc<crate::auth::TokenCache>,
}

/// Everything the server needs from the daemon that hosts it.
pub struct AppStateConfig {
    pub db: Arc<dyn Store>,
    pub root: PathBuf,
    pub waker: Waker,
    /// The management token: `Authorization: Bearer <token>`.
    pub token: String,
    pub clock: Arc<dyn Clock>,
    /// Largest webhook body accepted, in bytes.
    pub max_body: usize,
    /// The logs of the runs in flight (`Engine::live_logs`).
    pub live_logs: Arc<sdlc_core::logs::LiveLogs>,
    /// The engine's feed of plan runs' events (`Engine::run_events`).
    pub run_events: tokio::sync::broadcast::Sender<sdlc_core::plan::RunEvent>,
    /// The engine's figures for the dashboard (`Engine::stats`); None without an engine.
    pub engine_stats: Option<Arc<EngineStats>>,
    /// What `/metrics` exports (`Engine::metrics`, shared with the engine).
    pub metrics: Arc<Metrics>,
    /// `--metrics-open`: `/metrics` answers a loopback peer without a token.
    pub metrics_open: bool,
    /// Served over TLS (`--tls-cert`): session cookies are `Secure` and every answer carries
    /// `Strict-Transport-Security`.
    pub https: bool,
    /// `--log-cap`: the most a run's log keeps, a reported run's too (0: no logs).
    pub log_cap: usize,
}

impl AppState {
    /// Builds the state, starts the webhook writer thread and (inside a Tokio runtime) the
    /// dashboard's event hub. Fails only if the routes cannot be read from the database.
    pub fn new(config: AppStateConfig) -> Result<AppState, sdlc_core::StoreError> {
        let routes = config
            .db
            .routes()?
            .into_iter()
            .map(|route| (route.path.clone(), route))
            .collect();
        let ingestor = Ingestor::start(
            config.db.clone(),
            config.clock.clone(),
            config.waker.clone(),
            config.metrics.clone(),
        );
        let events = EventHub::new(config.clock.now().timestamp_millis());
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(events.clone().run(HubSources {
                db: config.db.clone(),
                clock: config.clock.clone(),
                stats: config.engine_stats.clone(),
                run_events: config.run_events.clone(),
            }));
        }
        Ok(AppState {
            inner: Arc::new(config),
            ingestor,
            routes: Arc::new(RwLock::new(routes)),
            events,
            login_tokens: Arc::default(),
            deliveries: Arc::default(),
            tool_metas: Arc::default(),
            tokens: Arc::default(),
        })
    }

    /// The route registered at `path` (normalised), from the cache.
    pub fn route(&self, path: &str) -> Option<WebhookRoute> {
        self.routes
            .read()
            .expect("the route cache lock is never poisoned")
            .get(path)
            .cloned()
    }

    /// Reads every route again (another node changed them, on a shared database). Blocks.
    pub fn reload_routes(&self) -> Result<(), sdlc_core::StoreError> {
        let routes = self
            .inner
            .db
            .routes()?
            .into_iter()
            .map(|route| (route.path.clone(), route))
            .collect();
        *self
            .routes
            .write()
            .expect("the route cache lock is never poisoned") = routes;
        Ok(())
    }

    /// Records in the cache a route just stored (`Some`) or removed (`None`).
    pub fn cache_route(&self, path: &str, route: Option<WebhookRoute>) {
        let mut routes = self
            .routes
            .write()
            .expect("the route cache lock is never poisoned");
        match route {
            Some(route) => routes.insert(path.to_string(), route),
            None => routes.remove(path),
        };
    }

    pub fn db(&self) -> &Arc<dyn Store> {
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

    pub fn log_cap(&self) -> usize {
        self.inner.log_cap
    }

    /// The dashboard's event stream.
    pub fn events(&self) -> &Arc<EventHub> {
        &self.events
    }

    /// One-time dashboard login tokens (`sdlc orchestrate ui`).
    pub fn login_tokens(&self) -> &LoginTokens {
        &self.login_tokens
    }

    /// Tools' metas already read, for the dashboard's tools page.
    pub fn tool_metas(&self) -> &crate::ui::tools::MetaCache {
        &self.tool_metas
    }

    /// The last webhook requests and their outcomes.
    /// Named tokens recently looked up (`auth`).
    pub fn token_cache(&self) -> &crate::auth::TokenCache {
        &self.tokens
    }

    pub fn deliveries(&self) -> &DeliveryLog {
        &self.deliveries
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub fn https(&self) -> bool {
        self.inner.https
    }

    pub fn metrics_open(&self) -> bool {
        self.inner.metrics_open
    }

    /// Notes one webhook request (log, metrics), and tells the dashboard when a page listens.
    pub fn record_delivery(&self, record: DeliveryRecord) {
        let route = if record.route_id.is_some() {
            record.path.as_str()
        } else {
            ""
        };
        self.inner
            .metrics
            .delivery(route, record.outcome.as_str(), record.status);
        if self.events.has_clients() {
            self.events.publish(
                "delivery",
                serde_json::to_string(&record).unwrap_or_default(),
            );
        }
        self.deliveries.record(record);
    }

    pub fn engine_stats(&self) -> Option<&Arc<EngineStats>> {
        self.inner.engine_stats.as_ref()
    }

    pub fn live_logs(&self) -> &Arc<sdlc_core::logs::LiveLogs> {
        &self.inner.live_logs
    }

    pub fn run_events(&self) -> &tokio::sync::broadcast::Sender<sdlc_core::plan::RunEvent> {
        &self.inner.run_events
    }

    /// Stores one acknowledged webhook delivery (group-committed with concurrent ones).
    pub async fn ingest(&self, delivery: Delivery) -> Result<Ingested, crate::ApiError> {
        self.ingestor.ingest(delivery).await
    }

    /// Runs blocking database work off the async threads.
    pub async fn with_db<T, F>(&self, work: F) -> Result<T, crate::ApiError>
    where
        F: FnOnce(&dyn Store) -> Result<T, sdlc_core::StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.inner.db.clone();
        let result = tokio::task::spawn_blocking(move || sdlc_core::store::guarded(&*db, work))
            .await
            .map_err(|err| crate::ApiError::internal(format!("database task failed: {err}")))?;
        result.map_err(|err| {
            if err.is_unavailable() {
                // The engine owns reopening the file: let it see the fault now.
                self.inner.waker.wake();
            }
            crate::ApiError::from(err)
        })
    }
}
