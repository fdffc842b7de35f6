//! The open redb file and its health.
//!
//! After one failed write (a full disk, say) redb refuses every later one ("Previous I/O
//! error occurred") until the file is closed and opened again. This module notices the first
//! failure, answers every later transaction with [`StoreError::Unavailable`] (saying what
//! failed and where) instead of touching the file, and reopens it on request: the owner of a
//! long-lived database (the daemon's engine) calls [`Handle::reopen`] with a backoff until it
//! succeeds. Reopening goes through redb's repair, so the file is back at its last durable
//! commit; nothing acknowledged is lost, since acknowledgement waits for that commit.
//!
//! What it does not do: decide when to retry (the engine does) or map errors to HTTP (the
//! server does).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

use crate::error::StoreError;

/// redb's page cache is bounded so the daemon's memory stays small however much is stored.
const CACHE_BYTES: usize = 16 * 1024 * 1024;
/// How long a reopen waits for the old handle's last transactions to let go of the file.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Below this much free space on the file's file system, a failed write is reported as a
/// full disk even when redb only says that an earlier write failed; and after a full disk,
/// the file is reopened only once this much is free again (a reopen that succeeds in the last
/// free pages would only fail again at the next write).
const NEARLY_FULL_BYTES: u64 = 1024 * 1024;

/// Why the database refuses work, for status reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StorageFault {
    /// When the first write failed.
    pub since: DateTime<Utc>,
    /// What failed, as the operating system said it.
    pub detail: String,
    /// The file system holding the database is full (ENOSPC, or nearly no space left).
    pub disk_full: bool,
    /// Failed attempts to reopen the file since.
    pub reopen_attempts: u32,
}

/// The redb handle shared by every operation of one [`super::ActionDb`].
pub(super) struct Handle {
    db: RwLock<Option<Arc<Database>>>,
    fault: Mutex<Option<StorageFault>>,
    path: PathBuf,
}

impl Handle {
    pub(super) fn new(db: Database, path: &Path) -> Handle {
        Handle {
            db: RwLock::new(Some(Arc::new(db))),
            fault: Mutex::new(None),
            path: path.to_path_buf(),
        }
    }

    /// The current fault, if the database refuses work.
    pub(super) fn fault(&self) -> Option<StorageFault> {
        self.fault
            .lock()
            .expect("the fault lock is never poisoned")
            .clone()
    }

    pub(super) fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let db = self.current()?;
        db.begin_write().map_err(|err| self.observe(err.into()))
    }

    pub(super) fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        let db = self.current()?;
        db.begin_read().map_err(|err| self.observe(err.into()))
    }

    pub(super) fn commit(&self, tx: WriteTransaction) -> Result<(), StoreError> {
        tx.commit().map_err(|err| self.observe(err.into()))
    }

    /// The open database, or why there is none.
    pub(super) fn current(&self) -> Result<Arc<Database>, StoreError> {
        if let Some(fault) = self.fault() {
            return Err(self.unavailable(&fault));
        }
        self.db
            .read()
            .expect("the handle lock is never poisoned")
            .clone()
            .ok_or_else(|| StoreError::Unavailable {
                path: self.path.clone(),
                detail: "the database is being reopened".into(),
                disk_full: false,
            })
    }

    /// Records `err` as the fault when it is an I/O failure (the file refuses writes from now
    /// on); returns the error to give the caller.
    pub(super) fn observe(&self, err: StoreError) -> StoreError {
        let Some(io_detail) = err.io_failure() else {
            return err;
        };
        let mut fault = self.fault.lock().expect("the fault lock is never poisoned");
        let fault = fault.get_or_insert_with(|| {
            let disk_full = err.is_disk_full() || self.nearly_full();
            tracing::error!(
                db = %self.path.display(),
                disk_full,
                "a write to the database failed ({io_detail}): refusing writes until it reopens"
            );
            StorageFault {
                since: Utc::now(),
                detail: io_detail,
                disk_full,
                reopen_attempts: 0,
            }
        });
        self.unavailable(fault)
    }

    /// Closes the file and opens it again (redb repairs it to its last commit), then runs
    /// `init` on it before any other operation may use it. On success the fault is cleared.
    pub(super) fn reopen(
        &self,
        init: impl FnOnce(&Database) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if let Some(fault) = self.fault()
            && fault.disk_full
            && self.nearly_full()
        {
            let mut fault = self.fault.lock().expect("the fault lock is never poisoned");
            let entry = fault.as_mut().expect("a fault is only cleared by a reopen");
            entry.reopen_attempts += 1;
            return Err(self.unavailable(entry));
        }
        let mut slot = self.db.write().expect("the handle lock is never poisoned");
        // New transactions wait on the lock; the old database closes once the transactions
        // that already hold it end, and only then can the file be opened again.
        drop(slot.take());
        let result = self.open_when_released().and_then(|(db, _)| {
            init(&db)?;
            Ok(db)
        });
        let mut fault = self.fault.lock().expect("the fault lock is never poisoned");
        match result {
            Ok(db) => {
                *slot = Some(Arc::new(db));
                if let Some(old) = fault.take() {
                    tracing::info!(
                        db = %self.path.display(),
                        down_secs = (Utc::now() - old.since).num_seconds(),
                        "the database is open again: writes resume"
                    );
                }
                Ok(())
            }
            Err(err) => {
                let disk_full = err.is_disk_full() || self.nearly_full();
                let entry = fault.get_or_insert_with(|| StorageFault {
                    since: Utc::now(),
                    detail: err.to_string(),
                    disk_full,
                    reopen_attempts: 0,
                });
                entry.reopen_attempts += 1;
                entry.disk_full = disk_full;
                Err(self.unavailable(entry))
            }
        }
    }

    fn open_when_released(&self) -> Result<(Database, bool), StoreError> {
        let deadline = Instant::now() + CLOSE_WAIT;
        loop {
            match open_database(&self.path) {
                Err(StoreError::AlreadyOpen { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => return other,
            }
        }
    }

    fn unavailable(&self, fault: &StorageFault) -> StoreError {
        let detail = if fault.disk_full {
            format!("the disk holding it is full ({})", fault.detail)
        } else {
            format!("a write failed ({})", fault.detail)
        };
        StoreError::Unavailable {
            path: self.path.clone(),
            detail,
            disk_full: fault.disk_full,
        }
    }

    /// Whether the file system holding the database has (almost) no space left.
    fn nearly_full(&self) -> bool {
        let dir = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        nix::sys::statvfs::statvfs(dir).is_ok_and(|stat| {
            stat.blocks_available().saturating_mul(stat.fragment_size()) < NEARLY_FULL_BYTES
        })
    }
}

/// Opens (creating if needed) the redb file at `path`; says whether redb repaired it (after
/// an unclean close it walks the file verifying every page's checksum).
pub(super) fn open_database(path: &Path) -> Result<(Database, bool), StoreError> {
    let repaired = Arc::new(AtomicBool::new(false));
    let flag = repaired.clone();
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .set_repair_callback(move |_| flag.store(true, Ordering::Relaxed))
        .create(path)
        .map_err(|err| match err {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
                path: path.to_path_buf(),
            },
            redb::DatabaseError::Storage(redb::StorageError::Io(source)) => StoreError::Io {
                path: path.to_path_buf(),
                source,
            },
            other => StoreError::Open {
                path: path.to_path_buf(),
                detail: other.to_string(),
            },
        })?;
    Ok((db, repaired.load(Ordering::Relaxed)))
}
