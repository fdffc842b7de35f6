//! Knowing whether the file can be trusted, and containing what happens when it cannot.
//!
//! A clean close leaves a mark beside the file (`<db>.clean`: its size, modification time and
//! inode). Opening a file whose mark is missing or does not match it (the last owner died, or
//! something else wrote to the file since) first walks the whole file verifying redb's page
//! checksums, so a damaged file is refused before anything is read from it or written to it.
//! The mark is removed while the file is open, so a crash can never leave a stale one.
//!
//! redb may panic on a file damaged in ways its checks miss; [`contained`] turns such a panic
//! into [`StoreError::Damaged`], which names the file and says what to do.
//!
//! What it does not do: repair a damaged file (restore a backup; redb's own repair runs at open).

use std::cell::Cell;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use redb::Database;

use crate::error::StoreError;

/// Where the clean-close mark of the database at `db` lives.
pub fn clean_mark_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".clean");
    db.with_file_name(name)
}

/// What the mark records of the file: any write to it changes one of these.
fn fingerprint(db: &Path) -> Option<String> {
    let meta = std::fs::metadata(db).ok()?;
    Some(format!(
        "{} {} {} {}\n",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    ))
}

/// Whether the file at `db` is new or empty (nothing to verify).
pub(super) fn is_new(db: &Path) -> bool {
    std::fs::metadata(db).map_or(true, |meta| meta.len() == 0)
}

/// Whether the file is as its last clean close left it.
pub(super) fn closed_cleanly_since(db: &Path) -> bool {
    let Ok(mark) = std::fs::read_to_string(clean_mark_path(db)) else {
        return false;
    };
    fingerprint(db).is_some_and(|now| now == mark)
}

/// Forgets the mark: from now on the file may change.
pub(super) fn remove_mark(db: &Path) {
    let _ = std::fs::remove_file(clean_mark_path(db));
}

/// Records that the file was closed cleanly just now. Best effort: without a mark, the next
/// open verifies the file, which costs time but never correctness.
pub(super) fn write_mark(db: &Path) {
    use std::io::Write;
    let Some(print) = fingerprint(db) else { return };
    let path = clean_mark_path(db);
    let written =
        crate::private_file::create(&path).and_then(|mut file| file.write_all(print.as_bytes()));
    if let Err(err) = written {
        tracing::debug!(mark = %path.display(), "could not write the clean-close mark: {err}");
    }
}

/// Walks the whole file verifying every checksum; true when redb had to repair something
/// (its allocator state, never data). A file that fails is refused with what to do.
pub(super) fn verify(db: &mut Database, path: &Path) -> Result<bool, StoreError> {
    match contained(path, || Ok(db.check_integrity())) {
        Ok(Ok(true)) => Ok(false),
        Ok(Ok(false)) => Ok(true),
        Ok(Err(err)) => Err(StoreError::Damaged {
            path: path.to_path_buf(),
            detail: format!("it failed its integrity check ({err})"),
        }),
        Err(err) => Err(err),
    }
}

thread_local! {
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is inside [`contained`]: a panic hook can then stay quiet, since
/// the panic becomes an error that says what happened.
pub fn panic_is_contained() -> bool {
    CONTAINING.with(Cell::get)
}

/// Runs `work` on the database at `path`; a panic inside it (redb meeting damage its checks
/// did not catch) becomes [`StoreError::Damaged`].
pub fn contained<T>(
    path: &Path,
    work: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let outer = CONTAINING.with(|flag| flag.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    CONTAINING.with(|flag| flag.set(outer));
    result.unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the storage engine stopped on it".to_string());
        Err(StoreError::Damaged {
            path: path.to_path_buf(),
            detail: format!("reading it failed ({detail})"),
        })
    })
}
