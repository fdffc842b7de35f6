//! Typed errors of the core, for the cases callers branch on.
//!
//! Messages are lowercase, carry no trailing period, and name the thing that was wrong.

use std::path::PathBuf;

use uuid::Uuid;

use crate::model::StatusKind;

/// What can go wrong in [`crate::store::ActionDb`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {} is already open in another process", path.display())]
    AlreadyOpen { path: PathBuf },

    #[error(
        "database {} was written by a newer sdlc (schema {found}; this build reads up to {supported}): upgrade sdlc to open it",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: u64,
        supported: u64,
    },

    #[error(
        "action {id} was written by a newer sdlc (record version {found}; this build reads up to {supported}): upgrade sdlc"
    )]
    NewerRecord {
        id: Uuid,
        found: u64,
        supported: u64,
    },

    #[error(
        "PostgreSQL database {url} was written by a newer sdlc (schema {found}; this build reads up to {supported}): upgrade sdlc to use it"
    )]
    NewerPgSchema {
        url: String,
        found: i64,
        supported: i64,
    },

    #[error(
        "a daemon named '{node}' already holds a live lease on PostgreSQL database {url}: give this one another node name, or wait for that lease to run out"
    )]
    NodeNameTaken { url: String, node: String },

    /// An outcome reported for a claim another node took over (see `pg::PgStore`).
    #[error(
        "action {id} is no longer this node's claim: another node recovered it after this one stopped renewing its lease, so this outcome was not recorded"
    )]
    ClaimLost { id: Uuid },

    /// PostgreSQL cannot be reached (down, restarting, the network cut); `url` has its
    /// password masked. Transient: the daemon goes on when it is back.
    #[error(
        "PostgreSQL database {url} cannot be reached: {detail} (nothing was stored; the daemon goes on once it is back)"
    )]
    PostgresUnreachable { url: String, detail: String },

    /// PostgreSQL's disk is full (SQLSTATE 53100); `url` has its password masked. Like a
    /// full disk under a redb file: the daemon holds its outcomes and goes on once there is
    /// room.
    #[error(
        "PostgreSQL database {url} has no disk space left: {detail} (nothing was stored; free space on the database server's disk, the daemon goes on by itself)"
    )]
    PostgresDiskFull { url: String, detail: String },

    /// PostgreSQL refused; `url` has its password masked.
    #[error("PostgreSQL database {url}: {detail}")]
    Postgres { url: String, detail: String },

    #[error("cannot open database {}: {detail}", path.display())]
    Open { path: PathBuf, detail: String },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("no action with id {0}")]
    NotFound(Uuid),

    #[error("an action with id {0} already exists")]
    Duplicate(Uuid),

    #[error("action {id} cannot go from {from} to {to}")]
    InvalidTransition {
        id: Uuid,
        from: StatusKind,
        to: StatusKind,
    },

    #[error(
        "action {id} is {status}; only a pending action can be cancelled, or a running one stopped"
    )]
    NotPending { id: Uuid, status: StatusKind },

    /// A report that the run cannot take (`crate::external::may_report` says why).
    #[error("{detail}")]
    NotReportable { detail: String },

    #[error("action {id} is {status}; only a pending or paused action can be edited")]
    NotEditable { id: Uuid, status: StatusKind },

    #[error(
        "action {id} changed while it was being edited (it started, or another change landed): show it again and retry"
    )]
    ChangedMeanwhile { id: Uuid },

    #[error("a webhook route with path '{0}' already exists: remove it first or pick another path")]
    DuplicatePath(String),

    #[error("no webhook route with id or path '{0}': see sdlc orchestrate webhook list")]
    RouteNotFound(String),

    #[error("a token named '{0}' already exists: remove it first (token rm) or pick another name")]
    TokenNameTaken(String),

    #[error("no token named '{0}': see sdlc orchestrate token list")]
    TokenNotFound(String),

    #[error(
        "no live session '{0}': it ended or expired (sdlc orchestrate session list shows the live ones)"
    )]
    SessionNotFound(String),

    #[error(
        "action {id} is {status}: only a pending action (or the pending occurrence of a recurring one) can be paused"
    )]
    NothingToPause { id: Uuid, status: StatusKind },

    #[error("action {id} is {status}, not paused")]
    NotPaused { id: Uuid, status: StatusKind },

    #[error("stored action {id} cannot be read: {detail}")]
    Corrupt { id: Uuid, detail: String },

    #[error(
        "the database at {} is damaged: {detail}; stop every sdlc using it, move it aside and restore a backup (sdlc orchestrate check verifies a file)",
        path.display()
    )]
    Damaged { path: PathBuf, detail: String },

    /// The file refuses work after a failed write (see `store::handle`); the daemon reopens
    /// it by itself once the cause is gone.
    #[error(
        "the database {} cannot be written: {detail}; nothing was stored{}",
        path.display(),
        if *disk_full { ": free some space on that disk (the daemon resumes by itself)" } else { "" }
    )]
    Unavailable {
        path: PathBuf,
        detail: String,
        disk_full: bool,
    },

    #[error("action {id} is {status}{}: only an action awaiting approval can be approved or rejected", match approval {
        Some(crate::model::ApprovalState::Approved) => " (already approved)",
        Some(crate::model::ApprovalState::Rejected) => " (already rejected)",
        _ => "",
    })]
    NotAwaitingApproval {
        id: Uuid,
        status: StatusKind,
        approval: Option<crate::model::ApprovalState>,
    },

    #[error("no plan run with id {0}: see sdlc orchestrate plan runs")]
    RunNotFound(Uuid),

    #[error("plan run {run} has already ended ({status}); plan retry runs what did not succeed")]
    RunFinished {
        run: Uuid,
        status: crate::model::RunStatus,
    },

    #[error("plan run {run} is still running: cancel it or wait for it to end before retrying")]
    RunNotFinished { run: Uuid },

    #[error("plan run {run} has no step '{step}'")]
    NoSuchStep { run: Uuid, step: String },

    #[error("plan run {run} has nothing to retry: every step succeeded")]
    NothingToRetry { run: Uuid },

    #[error(
        "action {id} is step '{step}' of plan run {run}: cancel the run with sdlc orchestrate plan cancel {run}"
    )]
    StepOfRun { id: Uuid, run: Uuid, step: String },

    /// Not a `#[source]`: the message already carries redb's, and a chain would say it twice.
    #[error("database error: {0}")]
    Storage(redb::Error),
}

impl From<redb::Error> for StoreError {
    fn from(err: redb::Error) -> Self {
        StoreError::Storage(err)
    }
}

impl StoreError {
    /// Whether the write failed because the disk (or the file system's quota) is full.
    pub fn is_disk_full(&self) -> bool {
        if let StoreError::Unavailable { disk_full, .. } = self {
            return *disk_full;
        }
        if matches!(self, StoreError::PostgresDiskFull { .. }) {
            return true;
        }
        let io = match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Storage(redb::Error::Io(source)) => Some(source),
            _ => None,
        };
        io.is_some_and(|e| {
            e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull
        })
    }
}

impl StoreError {
    /// The operating system's words when this is a failure of the file itself (after which
    /// redb refuses every later write until the file is reopened); None for every other error.
    pub fn io_failure(&self) -> Option<String> {
        match self {
            StoreError::Io { source, .. } => Some(source.to_string()),
            StoreError::Storage(redb::Error::Io(source)) => Some(source.to_string()),
            StoreError::Storage(redb::Error::PreviousIo) => {
                Some("an earlier write to the file failed".to_string())
            }
            StoreError::Damaged { detail, .. } => Some(format!("the file is damaged: {detail}")),
            _ => None,
        }
    }

    /// Whether the database cannot take work now but may once its cause is gone (a full
    /// disk, a file being reopened): callers keep what they meant to store and try later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. }
                | StoreError::Storage(redb::Error::DatabaseClosed)
                | StoreError::PostgresUnreachable { .. }
                | StoreError::PostgresDiskFull { .. }
        ) || self.io_failure().is_some()
    }
}

/// redb has one error type per operation; all of them convert into `redb::Error`.
macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(err: $ty) -> Self {
                StoreError::Storage(err.into())
            }
        }
    )*};
}

from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Why a tool cannot be found or started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error(
        "invalid tool name '{0}': use lowercase letters, digits and hyphens (at most 64, not starting with a hyphen)"
    )]
    InvalidName(String),

    #[error("no tool named '{name}': expected {} or tool.ts beside it{}", dir.join("tool").display(), available_hint(available))]
    NotFound {
        name: String,
        dir: PathBuf,
        available: Vec<String>,
    },

    #[error("tool '{name}' at {} is not executable: run chmod +x on it", path.display())]
    NotExecutable { name: String, path: PathBuf },

    #[error(
        "tool '{name}' is TypeScript ({}) but no runtime was found on PATH: install bun, deno or Node.js (for npx tsx)",
        path.display()
    )]
    NoTypeScriptRuntime { name: String, path: PathBuf },
}

fn available_hint(available: &[String]) -> String {
    if available.is_empty() {
        "; no tools exist yet in .sdlc/tools/".to_string()
    } else {
        format!("; available tools: {}", available.join(", "))
    }
}
