//! Reaching the database from a command that is not the daemon.
//!
//! redb lets one process open the file. While a daemon runs, it owns the file and publishes
//! its address and token beside it; commands then go through its API. Otherwise a command
//! opens the file itself, for the length of one operation only, so it never keeps a daemon
//! from starting. The user never sees which path was taken, nor a lock error:
//! - a daemon that is published but refuses connections (starting or stopping) is retried;
//! - a file held by another process (another command, or a daemon not yet published) is
//!   retried until a deadline, then reported with what to do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sdlc_core::daemon_file::find_live;
use sdlc_core::store::{Store, guarded};
use sdlc_core::{ActionDb, StoreError};
use sdlc_server::{ClientError, DaemonClient};

/// How long a command waits for a busy database or a daemon in transition.
const BUSY_DEADLINE: Duration = Duration::from_secs(15);
/// Pause between two attempts while waiting; short, since the holder is usually a command.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Which failed requests `route_with` sends again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Only requests that never reached the daemon (safe for anything).
    OnlyUnsent,
    /// Also requests cut off mid-way (only for operations that are safe to repeat).
    AlsoInterrupted,
}

/// A daemon elsewhere (`--server URL --token T`): every command goes to its API.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    token: String,
    tls_sha256: Option<String>,
}

impl Remote {
    /// The remote daemon the command line names, if any; refuses a bad URL or a missing token.
    pub fn from_cli(cli: &crate::cli::Cli) -> anyhow::Result<Option<Remote>> {
        let Some(url) = cli
            .server
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            return Ok(None);
        };
        // An origin: scheme, host, port; nothing after it (the API's paths are ours to add).
        let origin = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .map(|rest| rest.trim_end_matches('/'));
        let is_origin = origin.is_some_and(|rest| {
            !rest.is_empty()
                && !rest.contains(['/', '?', '#', '@'])
                && !rest.contains(char::is_whitespace)
        });
        if !is_origin {
            bail!(
                "--server '{url}' (SDLC_SERVER): give the daemon's address, such as https://tracker.internal:7711"
            );
        }
        let Some(token) = cli
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            bail!(
                "--server {url} needs a token: pass --token or set SDLC_TOKEN (a named token from `sdlc orchestrate token add`, or the daemon's own)"
            );
        };
        Ok(Some(Remote {
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            tls_sha256: cli.server_cert_sha256.clone(),
        }))
    }

    pub fn client(&self) -> DaemonClient {
        DaemonClient::at(&self.url, &self.token, self.tls_sha256.as_deref())
    }
}

/// Where a command's database lives.
#[derive(Debug, Clone)]
pub struct Backend {
    pub db_path: PathBuf,
    /// A PostgreSQL database (`--db postgres://...`): commands use it directly, whether
    /// daemons run on it or not (PostgreSQL takes care of concurrent writers).
    pub pg_url: Option<String>,
    /// `--server`: the data is behind that daemon; nothing here is opened.
    pub remote: Option<Remote>,
}

impl Backend {
    pub fn new(db_path: PathBuf, pg_url: Option<String>, remote: Option<Remote>) -> Backend {
        Backend {
            db_path,
            pg_url,
            remote,
        }
    }

    /// Runs `on_store` on the PostgreSQL database, off the async threads (its client blocks
    /// on a runtime of its own).
    fn on_postgres<T>(
        url: &str,
        on_store: impl Fn(&dyn Store) -> Result<T, StoreError>,
    ) -> anyhow::Result<T> {
        tokio::task::block_in_place(|| {
            let store = sdlc_core::store::pg::PgStore::connect(url, 2)?;
            guarded(&store, |db| on_store(db))
        })
        .map_err(anyhow::Error::from)
    }

    /// Runs an operation through the daemon when one serves this database, or directly on
    /// the file otherwise.
    pub async fn route<T>(
        &self,
        through_daemon: impl AsyncFn(&DaemonClient) -> Result<T, ClientError>,
        on_file: impl Fn(&dyn Store) -> Result<T, StoreError>,
    ) -> anyhow::Result<T> {
        self.route_with(Retry::OnlyUnsent, through_daemon, on_file)
            .await
    }

    /// [`Backend::route`] for operations that are safe to repeat (reads, and adds with a
    /// client-chosen id): a request cut off by a daemon going away is sent again, to the next
    /// daemon or to the file.
    pub async fn route_retrying<T>(
        &self,
        through_daemon: impl AsyncFn(&DaemonClient) -> Result<T, ClientError>,
        on_file: impl Fn(&dyn Store) -> Result<T, StoreError>,
    ) -> anyhow::Result<T> {
        self.route_with(Retry::AlsoInterrupted, through_daemon, on_file)
            .await
    }

    /// [`Backend::route_retrying`] for commands that only read: where no database exists yet,
    /// it says so instead of creating one (or its folders).
    pub async fn route_read<T>(
        &self,
        through_daemon: impl AsyncFn(&DaemonClient) -> Result<T, ClientError>,
        on_file: impl Fn(&dyn Store) -> Result<T, StoreError>,
    ) -> anyhow::Result<T> {
        if self.remote.is_none()
            && self.pg_url.is_none()
            && find_live(&self.db_path).is_none()
            && !self.db_path.exists()
        {
            bail!(
                "no database at {}: nothing has been stored there yet (add an action or start the daemon first, or pass --db with the right path)",
                self.db_path.display()
            );
        }
        self.route_retrying(through_daemon, on_file).await
    }

    async fn route_with<T>(
        &self,
        retry: Retry,
        through_daemon: impl AsyncFn(&DaemonClient) -> Result<T, ClientError>,
        on_file: impl Fn(&dyn Store) -> Result<T, StoreError>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + BUSY_DEADLINE;
        if let Some(remote) = &self.remote {
            let client = remote.client();
            loop {
                match through_daemon(&client).await {
                    Err(ClientError::Interrupted { .. })
                        if retry == Retry::AlsoInterrupted && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    Err(err @ ClientError::Unreachable { .. }) => {
                        return Err(anyhow::Error::from(err)
                            .context(format!("--server {} (SDLC_SERVER)", remote.url)));
                    }
                    result => return result.map_err(anyhow::Error::from),
                }
            }
        }
        if let Some(url) = &self.pg_url {
            return Backend::on_postgres(url, on_file);
        }
        loop {
            if let Some(info) = find_live(&self.db_path) {
                match through_daemon(&DaemonClient::new(&info)).await {
                    Err(ClientError::Interrupted { .. })
                        if retry == Retry::AlsoInterrupted && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                    Err(ClientError::Unreachable { .. }) if Instant::now() < deadline => {
                        // Published but not answering: it is starting or stopping.
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                    result => return result.map_err(anyhow::Error::from),
                }
            }
            match open_db(&self.db_path) {
                Ok(db) => return guarded(&db, |db| on_file(db)).map_err(anyhow::Error::from),
                Err(StoreError::AlreadyOpen { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(StoreError::AlreadyOpen { path }) => bail!(
                    "database {} stayed locked by another process for {}s and no daemon is published for it: stop that process, or retry",
                    path.display(),
                    BUSY_DEADLINE.as_secs()
                ),
                Err(err) => return Err(err.into()),
            }
        }
    }
}

fn open_db(path: &Path) -> Result<ActionDb, StoreError> {
    ActionDb::open(path)
}

/// Opens the database for the daemon: refuses when another daemon serves it, and waits a
/// little when a command holds it for one operation.
pub async fn open_for_daemon(path: &Path) -> anyhow::Result<ActionDb> {
    let deadline = Instant::now() + BUSY_DEADLINE;
    loop {
        if let Some(other) = find_live(path) {
            bail!(
                "another sdlc orchestrate (pid {}) is already running on {} (API at {}): stop it first, or pass --db for another database",
                other.pid,
                path.display(),
                other.base_url()
            );
        }
        // A daemon file whose process is gone: the last daemon died, so check the file.
        let unclean = sdlc_core::daemon_file::daemon_file_path(path).exists();
        match ActionDb::open_with(path, unclean) {
            Ok(db) => return Ok(db),
            Err(StoreError::AlreadyOpen { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot open the database {}", path.display()));
            }
        }
    }
}

/// The store a daemon runs on: the redb file (see [`open_for_daemon`]), or the PostgreSQL
/// database, joined as a node.
pub struct DaemonStore {
    pub store: std::sync::Arc<dyn Store>,
    /// The same store when it is PostgreSQL, for what only nodes do (heartbeat, recovery).
    pub pg: Option<std::sync::Arc<sdlc_core::store::pg::PgStore>>,
}

/// Opens what the daemon runs on: the redb file at `path`, or with `pg_url` the PostgreSQL
/// database, joined as node `node` with claims leased for `lease`.
pub async fn open_store_for_daemon(
    path: &Path,
    pg_url: Option<&str>,
    node: &str,
    lease: Duration,
) -> anyhow::Result<DaemonStore> {
    let Some(url) = pg_url else {
        let db = std::sync::Arc::new(open_for_daemon(path).await?);
        return Ok(DaemonStore {
            store: db,
            pg: None,
        });
    };
    // The daemon file is the project's, whichever database it uses.
    if let Some(other) = find_live(path) {
        bail!(
            "another sdlc orchestrate (pid {}) is already running in this project (API at {}): stop it first, or start this one from another folder (--root)",
            other.pid,
            other.base_url()
        );
    }
    let pg = tokio::task::block_in_place(|| -> Result<_, StoreError> {
        let mut store = sdlc_core::store::pg::PgStore::connect(url, 16)?;
        store.set_lease(lease);
        store.join(node, chrono::Utc::now())?;
        Ok(std::sync::Arc::new(store))
    })?;
    Ok(DaemonStore {
        store: pg.clone(),
        pg: Some(pg),
    })
}
