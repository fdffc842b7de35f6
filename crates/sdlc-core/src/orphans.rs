//! Tool processes that outlive a daemon killed with SIGKILL.
//!
//! Each run's tool leads its own process group. The engine keeps a run log beside the
//! database (`<db>.runlog`): a line just before a tool starts, a line when it has started (its
//! pid and its start time from /proc, so a pid the kernel has since given to another process is
//! never mistaken for it) and a line when its group is gone. A run announced but never recorded
//! as started (the daemon died in between) is looked for by its `SDLC_ACTION_ID` in /proc. A start without an end, found at the next start of the daemon,
//! means the daemon died during that run: if that process still lives, it is an orphan, and by
//! default its whole process group is killed so it cannot run beside a new attempt.
//!
//! One append-only file with one small write per start and per end: cheaper than a file per
//! run (which cost 60-100 us of daemon CPU per run, measured). The log is rewritten with just
//! the open runs whenever it grows past a few MiB.
//!
//! What this does not do: decide the action's fate (startup recovery does).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use uuid::Uuid;

/// The run log of the database at `db`.
pub fn run_log_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".runlog");
    db.with_file_name(name)
}

/// A run that started: which process runs an action.
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

/// Past this size the log is rewritten with only the runs still open.
const COMPACT_AT: u64 = 4 * 1024 * 1024;

/// The live run log of a running daemon.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    state: Mutex<LogState>,
}

#[derive(Debug)]
struct LogState {
    file: File,
    bytes: u64,
    open: HashMap<Uuid, (u32, u64)>,
}

impl RunLog {
    /// Starts a fresh log at `path` (call [`reap`] on it first).
    pub fn create(path: &Path) -> std::io::Result<RunLog> {
        let file = File::create(path)?;
        Ok(RunLog {
            path: path.to_path_buf(),
            state: Mutex::new(LogState {
                file,
                bytes: 0,
                open: HashMap::new(),
            }),
        })
    }

    /// Records that `action`'s tool is about to start. If the daemon dies before the start
    /// itself is recorded, the next start finds the tool by its `SDLC_ACTION_ID`.
    pub fn starting(&self, action: Uuid) {
        self.append(&format!("P {action}\n"), |_| {});
    }

    /// Records that `action`'s tool started as process `pid`.
    pub fn started(&self, action: Uuid, pid: u32) {
        let ticks = start_ticks(pid).unwrap_or(0);
        self.append(&format!("S {action} {pid} {ticks}\n"), |open| {
            open.insert(action, (pid, ticks));
        });
    }

    /// Records that `action`'s process group is gone.
    pub fn ended(&self, action: Uuid) {
        self.append(&format!("E {action}\n"), |open| {
            open.remove(&action);
        });
    }

    fn append(&self, line: &str, update: impl FnOnce(&mut HashMap<Uuid, (u32, u64)>)) {
        let mut state = self
            .state
            .lock()
            .expect("the run log lock is never poisoned");
        update(&mut state.open);
        if let Err(err) = state.file.write_all(line.as_bytes()) {
            tracing::warn!(log = %self.path.display(), "could not write the run log: {err}");
            return;
        }
        state.bytes += line.len() as u64;
        if state.bytes > COMPACT_AT {
            self.compact(&mut state);
        }
    }

    /// Rewrites the log with only the open runs (temp file, then rename).
    fn compact(&self, state: &mut LogState) {
        let temp = self.path.with_extension("runlog.tmp");
        let lines: String = state
            .open
            .iter()
            .map(|(action, (pid, ticks))| format!("S {action} {pid} {ticks}\n"))
            .collect();
        let rewritten = std::fs::write(&temp, &lines)
            .and_then(|()| std::fs::rename(&temp, &self.path))
            .and_then(|()| OpenOptions::new().append(true).open(&self.path));
        match rewritten {
            Ok(file) => {
                state.file = file;
                state.bytes = lines.len() as u64;
            }
            Err(err) => {
                tracing::warn!(log = %self.path.display(), "could not compact the run log: {err}")
            }
        }
    }
}

/// Reads a dead daemon's run log at `path`: every run that started and never ended whose
/// process still lives is an orphan; kills (when `kill`) their process groups. The log is
/// left for [`RunLog::create`] to replace.
pub fn reap(path: &Path, kill: bool) -> Vec<Orphan> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut open: HashMap<Uuid, RunRecord> = HashMap::new();
    // Runs announced ("P") whose start was never recorded: the daemon died in between.
    let mut unrecorded: Vec<Uuid> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match (
            fields.next(),
            fields.next().and_then(|id| Uuid::parse_str(id).ok()),
        ) {
            (Some("P"), Some(action)) => unrecorded.push(action),
            (Some("S"), Some(action)) => {
                unrecorded.retain(|a| *a != action);
                let pid = fields.next().and_then(|p| p.parse().ok());
                let ticks = fields.next().and_then(|t| t.parse().ok());
                if let (Some(pid), Some(start_ticks)) = (pid, ticks) {
                    open.insert(
                        action,
                        RunRecord {
                            action,
                            pid,
                            start_ticks,
                        },
                    );
                }
            }
            (Some("E"), Some(action)) => {
                open.remove(&action);
                unrecorded.retain(|a| *a != action);
            }
            _ => {}
        }
    }
    for record in find_by_action_env(&unrecorded) {
        open.insert(record.action, record);
    }
    let mut orphans = Vec::new();
    for record in open.into_values() {
        if record.pid <= 1 || start_ticks(record.pid) != Some(record.start_ticks) {
            continue;
        }
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
    orphans
}

/// Processes whose environment says `SDLC_ACTION_ID=<one of actions>` and that lead their
/// process group (the tool itself, not its children): a scan of /proc, done only for runs
/// whose start was never recorded.
fn find_by_action_env(actions: &[Uuid]) -> Vec<RunRecord> {
    if actions.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted: Vec<(Uuid, Vec<u8>)> = actions
        .iter()
        .map(|a| (*a, format!("SDLC_ACTION_ID={a}").into_bytes()))
        .collect();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let is_leader = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32)))
            .is_ok_and(|group| group.as_raw() as u32 == pid);
        if !is_leader {
            continue;
        }
        for (action, needle) in &wanted {
            if environ
                .split(|b| *b == 0)
                .any(|var| var == needle.as_slice())
                && let Some(start_ticks) = start_ticks(pid)
            {
                found.push(RunRecord {
                    action: *action,
                    pid,
                    start_ticks,
                });
            }
        }
    }
    found
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
    fn a_live_orphan_is_killed_and_ended_or_dead_runs_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = run_log_path(&dir.path().join("orchestrator.db"));
        let log = RunLog::create(&path).unwrap();
        let mut orphan = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let live = Uuid::now_v7();
        log.started(live, orphan.id());
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        log.started(Uuid::now_v7(), gone_pid);
        let finished = Uuid::now_v7();
        log.started(finished, std::process::id());
        log.ended(finished);
        drop(log);

        let found = reap(&path, true);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].record.action, live);
        assert!(found[0].killed);
        let status = orphan.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }

    #[test]
    fn a_start_announced_but_never_recorded_is_found_by_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.runlog");
        let action = Uuid::now_v7();
        let mut orphan = std::process::Command::new("sleep")
            .arg("30")
            .env("SDLC_ACTION_ID", action.to_string())
            .process_group(0)
            .spawn()
            .unwrap();
        // The daemon died between announcing the run and recording its pid.
        std::fs::write(&path, format!("P {action}\n")).unwrap();
        let found = reap(&path, true);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].record.pid, orphan.id());
        let status = orphan.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }

    #[test]
    fn a_reused_pid_is_not_mistaken_for_the_orphan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.runlog");
        // Our own pid, with a start time that is not ours: a different process.
        std::fs::write(
            &path,
            format!("S {} {} 1\n", Uuid::now_v7(), std::process::id()),
        )
        .unwrap();
        assert!(reap(&path, true).is_empty());
    }

    #[test]
    fn the_log_is_compacted_to_the_open_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.runlog");
        let log = RunLog::create(&path).unwrap();
        let open = Uuid::now_v7();
        log.started(open, std::process::id());
        for _ in 0..80_000 {
            let id = Uuid::now_v7();
            log.started(id, 12345);
            log.ended(id);
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < COMPACT_AT + 200, "{size} bytes");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&open.to_string()),
            "the open run survives compaction"
        );
    }
}
