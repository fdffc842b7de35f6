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

use chrono::Utc;
use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

use crate::error::StoreError;
use crate::store::StorageFault;

/// redb's page cache is bounded so the daemon's memory stays small however much is stored.
const CACHE_BYTES: usize = 16 * 1024 * 1024;
/// How long a reopen waits for the old handle's last transactions to let go of the file.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Below this much free space on the file's file system, a failed write is reported as a
/// full disk even when redb only says that an earlier write failed; and after a full disk,
/// the file is reopened only once this much is free again (a reopen that succeeds in the last
/// free pages would only fail again at the next write).
const NEARLY_FULL_BYTES: u64 = 1024 * 1024;

/// The redb handle shared by every operation of one [`super::ActionDb`].
pub(super) struct Handle {
    db: RwLock<Option<Arc<Database>>>,
    fault: Mutex<Option<StorageFault>>,
    path: PathBuf,
    /// Device and inode of the file this handle has open, to notice it deleted or replaced.
    identity: Mutex<Option<(u64, u64)>>,
    /// What each commit changed, for whoever listens.
    pub(super) feed: crate::store::changes::ChangeFeed,
}

impl Handle {
    pub(super) fn new(db: Database, path: &Path) -> Handle {
        Handle {
            db: RwLock::new(Some(Arc::new(db))),
            fault: Mutex::new(None),
            path: path.to_path_buf(),
            identity: Mutex::new(file_identity(path)),
            feed: crate::store::changes::ChangeFeed::new(),
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
        self.feed.begin();
        db.begin_write().map_err(|err| self.observe(err.into()))
    }

    pub(super) fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        let db = self.current()?;
        db.begin_read().map_err(|err| self.observe(err.into()))
    }

    pub(super) fn commit(&self, tx: WriteTransaction) -> Result<(), StoreError> {
        tx.commit().map_err(|err| self.observe(err.into()))?;
        crate::store::outbox::after_commit();
        self.feed.committed();
        Ok(())
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
                damaged: matches!(err, StoreError::Damaged { .. }),
                file_gone: false,
            }
        });
        self.unavailable(fault)
    }

    /// Closes the file and opens it again (redb repairs it to its last commit), then runs
    /// `init` on it before any other operation may use it. On success the fault is cleared.
    pub(super) fn reopen(
        &self,
        init: impl FnOnce(&mut Database) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if let Some(fault) = self.fault()
            && (fault.file_gone || (fault.disk_full && self.nearly_full()))
        {
            let mut fault = self.fault.lock().expect("the fault lock is never poisoned");
            let entry = fault.as_mut().expect("a fault is only cleared by a reopen");
            entry.reopen_attempts += 1;
            return Err(self.unavailable(entry));
        }
        self.reopen_now(init)
    }

    /// `reopen` without its guards; the fault stays in force (refusing new transactions)
    /// until the file is open again.
    fn reopen_now(
        &self,
        init: impl FnOnce(&mut Database) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut slot = self.db.write().expect("the handle lock is never poisoned");
        // New transactions wait on the lock; the old database closes once the transactions
        // that already hold it end, and only then can the file be opened again.
        drop(slot.take());
        let result = self.open_when_released().and_then(|(mut db, _)| {
            super::integrity::contained(&self.path, || init(&mut db))?;
            Ok(db)
        });
        let mut fault = self.fault.lock().expect("the fault lock is never poisoned");
        match result {
            Ok(db) => {
                *slot = Some(Arc::new(db));
                *self
                    .identity
                    .lock()
                    .expect("the identity lock is never poisoned") = file_identity(&self.path);
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
                    damaged: matches!(err, StoreError::Damaged { .. }),
                    file_gone: false,
                });
                entry.reopen_attempts += 1;
                entry.disk_full = disk_full;
                Err(self.unavailable(entry))
            }
        }
    }

    /// Whether the file at the path is still the one open. When it was deleted, copies the
    /// open (unlinked) file back to its path and reopens it there, so nothing it held is lost;
    /// when another file took its place, saves ours beside it and refuses writes until a person
    /// decides. Either way it says so loudly. Returns the fault left, if any.
    pub(super) fn check_in_place(
        &self,
        init: impl FnOnce(&mut Database) -> Result<(), StoreError>,
    ) -> Option<StorageFault> {
        let expected = *self
            .identity
            .lock()
            .expect("the identity lock is never poisoned");
        let found = file_identity(&self.path);
        if expected.is_none()
            || found == expected
            || self.fault().is_some_and(|f| f.file_gone && found.is_some())
        {
            return self.fault();
        }
        let replaced = found.is_some();
        let detail = if replaced {
            "the database file was replaced by another file while the daemon had it open"
        } else {
            "the database file was deleted while the daemon had it open"
        };
        tracing::error!(db = %self.path.display(), "{detail}: refusing writes while its content is saved");
        {
            let mut fault = self.fault.lock().expect("the fault lock is never poisoned");
            *fault = Some(StorageFault {
                since: Utc::now(),
                detail: detail.to_string(),
                disk_full: false,
                reopen_attempts: 0,
                damaged: false,
                file_gone: true,
            });
        }
        let saved_at = if replaced {
            let stamp = Utc::now().format("%Y%m%dT%H%M%S");
            PathBuf::from(format!("{}.saved-{stamp}", self.path.display()))
        } else {
            self.path.clone()
        };
        match self.save_open_file(&saved_at) {
            Ok(()) if !replaced => {
                tracing::error!(db = %self.path.display(), "the deleted database was copied back to its path; reopening it there");
                if let Err(err) = self.reopen_now(init) {
                    tracing::error!(db = %self.path.display(), "reopening the restored database failed: {err}");
                }
            }
            Ok(()) => {
                let mut fault = self.fault.lock().expect("the fault lock is never poisoned");
                if let Some(fault) = fault.as_mut() {
                    fault.detail = format!(
                        "{detail}; its content was saved to {}: stop the daemon and put the right file in place",
                        saved_at.display()
                    );
                }
                tracing::error!(db = %self.path.display(), saved = %saved_at.display(), "the database the daemon had open was saved beside the file that replaced it; writes stay refused");
            }
            Err(err) => {
                tracing::error!(db = %self.path.display(), "could not save the open database ({err}): keep this daemon running and copy /proc/{}/fd/* of it by hand", std::process::id());
            }
        }
        self.fault()
    }

    /// Copies the file this handle has open (found through /proc/self/fd, since its path no
    /// longer leads to it) to `to`, with no write in progress: writes are refused by the fault
    /// and a write transaction is held while copying.
    fn save_open_file(&self, to: &Path) -> std::io::Result<()> {
        let db = self
            .db
            .read()
            .expect("the handle lock is never poisoned")
            .clone()
            .ok_or_else(|| std::io::Error::other("the database is not open"))?;
        let quiet = db.begin_write().map_err(std::io::Error::other)?;
        let deleted = format!("{} (deleted)", self.path.display());
        let source = std::fs::read_dir("/proc/self/fd")?
            .flatten()
            .map(|entry| entry.path())
            .find(|fd| {
                std::fs::read_link(fd).is_ok_and(|target| {
                    target == self.path || target.as_os_str() == deleted.as_str()
                })
            })
            .ok_or_else(|| std::io::Error::other("the open file was not found in /proc/self/fd"))?;
        let temp = PathBuf::from(format!("{}.restoring", to.display()));
        {
            let mut from = std::fs::File::open(&source)?;
            let mut out = crate::private_file::create(&temp)?;
            std::io::copy(&mut from, &mut out)?;
            out.sync_all()?;
        }
        if to == self.path && self.path.exists() {
            return Err(std::io::Error::other(
                "another file appeared at the path meanwhile",
            ));
        }
        std::fs::rename(&temp, to)?;
        drop(quiet);
        Ok(())
    }

    /// Closes the file; true when nothing went wrong while it was open (no fault), so its
    /// close can be trusted as clean.
    pub(super) fn close(&self) -> bool {
        let mut slot = self.db.write().expect("the handle lock is never poisoned");
        let db = slot.take();
        let clean = db.is_some() && self.fault().is_none();
        drop(db);
        clean
    }

    fn open_when_released(&self) -> Result<(Database, bool), StoreError> {
        let deadline = Instant::now() + CLOSE_WAIT;
        loop {
            match super::integrity::contained(&self.path, || open_database(&self.path)) {
                Err(StoreError::AlreadyOpen { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => return other,
            }
        }
    }

    fn unavailable(&self, fault: &StorageFault) -> StoreError {
        if fault.damaged {
            return StoreError::Damaged {
                path: self.path.clone(),
                detail: fault.detail.clone(),
            };
        }
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

/// Device and inode of the file at `path` (None when there is none).
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
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
