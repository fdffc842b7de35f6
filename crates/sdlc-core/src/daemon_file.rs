//! The file a running daemon publishes beside its database so that other commands can reach
//! it instead of opening the database (which redb would refuse while the daemon holds it).
//!
//! `<db>.daemon.json` holds the daemon's pid, its API address and its secret token. It is
//! created with mode 0600 (the token is a credential), written atomically (temp file and
//! rename), and removed on clean exit. A file whose pid is dead is stale and ignored.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How to reach a running daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    /// Where its HTTP listener accepts connections (a wildcard bind is published as loopback).
    pub addr: SocketAddr,
    pub token: String,
    pub db: PathBuf,
    pub started_at: DateTime<Utc>,
    /// With `--tls-cert`: the hex SHA-256 of the certificate the listener presents, which the
    /// CLI pins (it connects by address, so a name check could not pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_sha256: Option<String>,
}

impl DaemonInfo {
    /// `http://ADDR` or `https://ADDR`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls_sha256.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }
}

/// `<db>.daemon.json`.
pub fn daemon_file_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".daemon.json");
    db.with_file_name(name)
}

/// Publishes `info` for the database at `db`. The returned guard removes the file on drop.
pub fn publish(db: &Path, info: &DaemonInfo) -> std::io::Result<Published> {
    let path = daemon_file_path(db);
    let temp = path.with_extension(format!("tmp.{}", std::process::id()));
    {
        let mut file = crate::private_file::create(&temp)?;
        let json = serde_json::to_vec_pretty(info).map_err(std::io::Error::other)?;
        file.write_all(&json)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, &path)?;
    Ok(Published {
        path,
        pid: info.pid,
    })
}

/// Removes the daemon file when dropped, if it is still ours.
#[derive(Debug)]
pub struct Published {
    path: PathBuf,
    pid: u32,
}

impl Drop for Published {
    fn drop(&mut self) {
        // Only remove the file if it still describes this process.
        if read(&self.path).is_some_and(|info| info.pid == self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn read(path: &Path) -> Option<DaemonInfo> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The daemon serving the database at `db`, if one is published and its process is alive.
pub fn find_live(db: &Path) -> Option<DaemonInfo> {
    read(&daemon_file_path(db)).filter(|info| pid_alive(info.pid))
}

/// Whether a process with this pid exists (signal 0 checks without sending anything).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        // It exists but belongs to someone else.
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn info(db: &Path, pid: u32) -> DaemonInfo {
        DaemonInfo {
            pid,
            addr: "127.0.0.1:7777".parse().unwrap(),
            token: "secret".into(),
            db: db.to_path_buf(),
            started_at: Utc::now(),
            tls_sha256: None,
        }
    }

    #[test]
    fn published_file_is_private_found_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("orchestrator.db");
        let me = info(&db, std::process::id());
        let guard = publish(&db, &me).unwrap();
        let path = daemon_file_path(&db);
        assert_eq!(path, dir.path().join("orchestrator.db.daemon.json"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(find_live(&db), Some(me));
        drop(guard);
        assert!(!path.exists());
        assert_eq!(find_live(&db), None);
    }

    #[test]
    fn a_file_left_by_a_dead_process_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("orchestrator.db");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let guard = publish(&db, &info(&db, dead_pid)).unwrap();
        assert_eq!(find_live(&db), None);
        std::mem::forget(guard);
    }
}
