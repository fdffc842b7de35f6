//! Files for their owner only: the database's companions (run log, daemon file, clean-close
//! mark, a restored copy) hold what ran, tokens and secrets, so each is created mode 0600.
//!
//! What it does not do: tighten the database itself (`store::private_file` does, since redb
//! opens that one).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Creates `path` anew for writing, readable by its owner only, replacing whatever was there
/// without following it: a symbolic link left at the path is removed, not written through.
pub fn create(path: &Path) -> std::io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}
