//! The PostgreSQL side of the store (`--db postgres://...`): the connection pool, the schema
//! and its migrations, the nodes sharing the database (`nodes`). Several daemons share one
//! database; PostgreSQL decides between them.
//!
//! The store's interface is synchronous (the engine and the server call it on blocking
//! threads), so this uses the synchronous `postgres` client, pooled by r2d2.

mod history;
mod migrate;
mod nodes;
mod outbox;
mod run_groups;
mod sessions;
mod store;
mod tokens;
mod txn;
mod wake;
mod webhooks;

pub use migrate::LATEST_SCHEMA;
pub use nodes::NodeInfo;
pub use store::{DEFAULT_LEASE, PgStore};
pub use wake::Wake;

use crate::StoreError;

/// A pool of connections to one database, its schema migrated.
pub struct PgDb {
    /// Always Some until dropped (see `Drop`).
    pool: Option<Pool>,
    config: postgres::Config,
    shown: String,
}

type Pool = r2d2::Pool<r2d2_postgres::PostgresConnectionManager<postgres::NoTls>>;

impl Drop for PgDb {
    /// Closes the pooled connections on a thread of their own: closing one blocks on the
    /// client's own runtime, which would panic on a thread of the daemon's runtime (where
    /// the last owner of the store may well drop it).
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let closing = std::thread::spawn(move || drop(pool));
            let _ = closing.join();
        }
    }
}

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDb").field("url", &self.shown).finish()
    }
}

/// Whether `db` (a `--db` value) names a PostgreSQL database rather than a redb file.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// `url` with its password masked, for messages and logs: the one in the user part
/// (`user:secret@`) and a `password=` parameter.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    let mut shown = match address.split_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://{address}"),
        },
        None => format!("{scheme}://{address}"),
    };
    if let Some(query) = query {
        let params: Vec<&str> = query
            .split('&')
            .map(|param| {
                if param.starts_with("password=") {
                    "password=***"
                } else {
                    param
                }
            })
            .collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

impl PgDb {
    /// Connects to `url` with up to `connections` pooled connections and brings its schema up
    /// to date (see `migrate`). A database written by a newer sdlc is refused.
    pub fn connect(url: &str, connections: u32) -> Result<PgDb, StoreError> {
        let shown = shown_url(url);
        let mut config: postgres::Config = url.parse().map_err(|e| StoreError::Postgres {
            url: shown.clone(),
            detail: format!("not a PostgreSQL URL ({e}): use postgres://USER@HOST/DBNAME"),
        })?;
        if config.get_password().is_none()
            && let Some(password) = password_from_environment(&shown)?
        {
            config.password(password);
        }
        // One connection of its own first: it fails at once with the server's own reason
        // (the pool would retry until its timeout), and it migrates.
        let mut first = config
            .connect(postgres::NoTls)
            .map_err(|e| failed(&shown, "cannot connect", e))?;
        migrate::migrate(&mut first, &shown)?;
        let manager =
            r2d2_postgres::PostgresConnectionManager::new(config.clone(), postgres::NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(connections.max(1))
            .min_idle(Some(0))
            // How long an operation waits for a connection: a server that is down makes
            // every operation wait this long before it fails (webhooks get a 503), so short;
            // the pool's connections are held only for one transaction each.
            .connection_timeout(std::time::Duration::from_secs(2))
            .build_unchecked(manager);
        Ok(PgDb {
            pool: Some(pool),
            config,
            shown,
        })
    }

    /// A connection of its own, outside the pool (for `LISTEN`, which holds it).
    pub(crate) fn dedicated(&self) -> Result<postgres::Client, StoreError> {
        self.config
            .connect(postgres::NoTls)
            .map_err(|e| failed(&self.shown, "cannot connect", e))
    }

    /// The URL, password masked.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// The schema version the database holds.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let mut client = self.client()?;
        migrate::stored_version(&mut *client, &self.shown)?.ok_or_else(|| StoreError::Postgres {
            url: self.shown.clone(),
            detail: "the schema table is missing".to_string(),
        })
    }

    pub(crate) fn client(
        &self,
    ) -> Result<
        r2d2::PooledConnection<r2d2_postgres::PostgresConnectionManager<postgres::NoTls>>,
        StoreError,
    > {
        let pool = self.pool.as_ref().expect("the pool lives as long as PgDb");
        pool.get().map_err(|e| StoreError::PostgresUnreachable {
            url: self.shown.clone(),
            detail: format!("no connection: {e}"),
        })
    }
}

/// A PostgreSQL error as the store reports it: naming the database, and telling a server
/// that cannot be reached (no answer, a broken connection, a server shutting down) from one
/// that refused the statement.
fn failed(url: &str, what: &str, err: postgres::Error) -> StoreError {
    let url = url.to_string();
    match err.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let detail = format!("{what}: {} ({code})", db.message());
            // Class 08: connection exceptions; 57P01-57P03: the server is shutting down or
            // starting up; class 53 but 53100: out of memory or connections, for now.
            if code == "53100" {
                StoreError::PostgresDiskFull { url, detail }
            } else if code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") {
                StoreError::PostgresUnreachable { url, detail }
            } else {
                StoreError::Postgres { url, detail }
            }
        }
        None => StoreError::PostgresUnreachable {
            url,
            detail: format!("{what}: {err}"),
        },
    }
}

/// The variable that may hold the database's password, so it need not be in the URL (where
/// `ps` and shell histories would show it).
pub const PASSWORD_ENV: &str = "SDLC_DATABASE_PASSWORD";
/// The variable that may name a file holding the password on its first line (a secrets mount).
pub const PASSWORD_FILE_ENV: &str = "SDLC_DATABASE_PASSWORD_FILE";

/// The password for a URL that has none: [`PASSWORD_ENV`], else the first line of the file
/// [`PASSWORD_FILE_ENV`] names; none when neither is set.
fn password_from_environment(shown: &str) -> Result<Option<String>, StoreError> {
    if let Ok(password) = std::env::var(PASSWORD_ENV)
        && !password.is_empty()
    {
        return Ok(Some(password));
    }
    let Some(path) = std::env::var_os(PASSWORD_FILE_ENV).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| StoreError::Postgres {
        url: shown.to_string(),
        detail: format!(
            "cannot read the password file {} ({PASSWORD_FILE_ENV}): {e}",
            std::path::Path::new(&path).display()
        ),
    })?;
    Ok(text
        .lines()
        .next()
        .map(|line| line.trim_end().to_string())
        .filter(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests;
