//! Tool processes that outlive a daemon killed with SIGKILL.
//!
//! Each run's tool leads its own process group. While it runs, the runner keeps a small file
//! `<db>.runs/<action id>` holding the tool's pid and its start time (from /proc, so a pid the
//! kernel has since given to another process is never mistaken for it), and removes the file
//! once the group is gone. A file still there at the next start means the daemon died during
//! that run: if that process still lives, it is an orphan; by default its whole process group
//! is killed so it cannot run beside a new attempt.
//!
//! What this does not do: decide the action's fate (startup recovery does).

use std::path::{Path, PathBuf};

use uuid::Uuid;

/// The folder of run records for the database at `db`.
pub fn runs_dir(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".runs");
    db.with_file_name(name)
}

/// A run record: which process runs an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub action: Uuid,
    pub pid: u32,
    /// The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat).
    pub start_ticks: u64,
}

/// What startup found of a dead daemon's runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub record: RunRecord,
    /// Whether its process group was killed (false: reported only).
    pub killed: bool,
}

/// Writes the record of a run that just started.
pub fn record(dir: &Path, action: Uuid, pid: u32) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let start_ticks = start_ticks(pid).unwrap_or(0);
    let path = dir.join(action.to_string());
    std::fs::write(&path, format!("{pid} {start_ticks}\n"))?;
    Ok(path)
}

/// Reads every leftover record in `dir`, kills (when `kill`) the process groups of those
/// still alive, and removes the records. Records of processes already gone are just removed.
pub fn reap(dir: &Path, kill: bool) -> Vec<Orphan> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut orphans = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if let Some(record) = parse(&path)
            && start_ticks(record.pid) == Some(record.start_ticks)
        {
            if kill {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(record.pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            orphans.push(Orphan {
                record,
                killed: kill,
            });
        }
        let _ = std::fs::remove_file(&path);
    }
    orphans
}

fn parse(path: &Path) -> Option<RunRecord> {
    let action = Uuid::parse_str(path.file_name()?.to_str()?).ok()?;
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let start_ticks: u64 = fields.next()?.parse().ok()?;
    (pid > 1).then_some(RunRecord {
        action,
        pid,
        start_ticks,
    })
}

/// Field 22 of /proc/<pid>/stat: when the process started, in ticks since boot.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_live_orphan_is_killed_and_a_dead_one_only_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let runs = runs_dir(&dir.path().join("orchestrator.db"));
        let mut orphan = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let live = Uuid::new_v4();
        record(&runs, live, orphan.id()).unwrap();
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        record(&runs, Uuid::new_v4(), gone_pid).unwrap();

        let found = reap(&runs, true);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].record.action, live);
        assert!(found[0].killed);
        let status = orphan.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert_eq!(
            std::fs::read_dir(&runs).unwrap().count(),
            0,
            "records are removed"
        );
    }

    #[test]
    fn a_reused_pid_is_not_mistaken_for_the_orphan() {
        let dir = tempfile::tempdir().unwrap();
        let runs = runs_dir(&dir.path().join("orchestrator.db"));
        std::fs::create_dir_all(&runs).unwrap();
        // Our own pid, with a start time that is not ours: a different process.
        let me = std::process::id();
        std::fs::write(runs.join(Uuid::new_v4().to_string()), format!("{me} 1\n")).unwrap();
        assert!(reap(&runs, true).is_empty());
    }
}
