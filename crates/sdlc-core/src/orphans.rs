//! Tool processes that outlive a daemon killed with SIGKILL.
//!
//! Each run's tool leads its own process group. The engine keeps a run log beside the
//! database (`<db>.runlog`): a line just before a tool starts, a line when it has started (its
//! pid and the wall-clock time of the spawn, checked against the start time /proc gives that
//! pid, so a pid the kernel has since given to another process is never mistaken for it) and a
//! line when its group is gone. A run announced but never recorded as started (the daemon died
//! in between) is looked for by its `SDLC_ACTION_ID` in /proc. A start without an end, found at
//! the next start of the daemon, means the daemon died during that run: if that process still lives, it is an orphan, and by
//! default its whole process group is killed so it cannot run beside a new attempt.
//!
//! One append-only file with one small write per start and per end: cheaper than a file per
//! run (which cost 60-100 us of daemon CPU per run, measured). The log is rewritten with just
//! the open runs whenever it grows past a few MiB.
//!
//! The log also proves which claimed actions never started. Its first line names the boot
//! it was written in (`B <boot id>`); the engine writes each `P` line before spawning and
//! never spawns when that write fails. So when the next daemon starts within the same boot
//! (the page cache, and with it every line written, survived the dead process), a Running
//! action with no line in the log certainly never started, and goes back to Pending instead
//! of failing as interrupted. After a reboot (lines may have been lost with the machine) no
//! such proof is claimed. Lines of runs whose outcome is not yet committed survive compaction.
//!
//! What this does not do: decide the action's fate (startup recovery does).

use std::collections::{HashMap, HashSet};
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
    /// When the process started, in milliseconds since the Unix epoch (as the daemon saw it
    /// right after the spawn, or as /proc says).
    pub started_ms: u64,
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
    /// Runs started and not yet ended: pid and start ticks.
    open: HashMap<Uuid, (u32, u64)>,
    /// Runs announced whose outcome is not yet committed (see [`RunLog::settled`]).
    announced: HashSet<Uuid>,
    /// The header line: the boot this log is written in.
    header: String,
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), if the kernel says.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

impl RunLog {
    /// Starts a fresh log at `path` (call [`reap`] on it first).
    pub fn create(path: &Path) -> std::io::Result<RunLog> {
        let mut file = crate::private_file::create(path)?;
        // Without a boot id the log never proves anything did not start (see the header).
        let header = format!("B {}\n", boot_id().unwrap_or_else(|| "unknown".into()));
        file.write_all(header.as_bytes())?;
        Ok(RunLog {
            path: path.to_path_buf(),
            state: Mutex::new(LogState {
                file,
                bytes: header.len() as u64,
                open: HashMap::new(),
                announced: HashSet::new(),
                header,
            }),
        })
    }

    /// Records that `action`'s tool is about to start. If the daemon dies before the start
    /// itself is recorded, the next start finds the tool by its `SDLC_ACTION_ID`. An error
    /// means the line may be missing: the tool must not be started.
    pub fn starting(&self, action: Uuid) -> std::io::Result<()> {
        self.append(&format!("P {action}\n"), |state| {
            state.announced.insert(action);
        })
    }

    /// Forgets runs whose outcomes are committed: their lines need not survive compaction.
    pub fn settled(&self, actions: impl IntoIterator<Item = Uuid>) {
        let mut state = self
            .state
            .lock()
            .expect("the run log lock is never poisoned");
        for action in actions {
            state.announced.remove(&action);
        }
    }

    /// Records that `action`'s tool started as process `pid`.
    /// The time is the clock's, not /proc's: reading /proc/<pid>/stat for every run cost
    /// ~7% of the daemon's CPU at a thousand runs a second (measured); /proc is read only
    /// when a dead daemon's log is checked.
    pub fn started(&self, action: Uuid, pid: u32) {
        let ms = now_ms();
        let _ = self.append(&format!("S {action} {pid} {ms}\n"), |state| {
            state.open.insert(action, (pid, ms));
        });
    }

    /// Records that `action`'s process group is gone.
    pub fn ended(&self, action: Uuid) {
        let _ = self.append(&format!("E {action}\n"), |state| {
            state.open.remove(&action);
        });
    }

    fn append(&self, line: &str, update: impl FnOnce(&mut LogState)) -> std::io::Result<()> {
        let mut state = self
            .state
            .lock()
            .expect("the run log lock is never poisoned");
        update(&mut state);
        if let Err(err) = state.file.write_all(line.as_bytes()) {
            tracing::warn!(log = %self.path.display(), "could not write the run log: {err}");
            return Err(err);
        }
        state.bytes += line.len() as u64;
        if state.bytes > COMPACT_AT {
            self.compact(&mut state);
        }
        Ok(())
    }

    /// Rewrites the log with the header, every run whose outcome is not yet committed and
    /// the open runs' starts (temp file, then rename).
    fn compact(&self, state: &mut LogState) {
        let temp = self.path.with_extension("runlog.tmp");
        let mut lines = state.header.clone();
        for action in state.announced.iter().chain(state.open.keys()) {
            lines.push_str(&format!("P {action}\n"));
        }
        for (action, (pid, ms)) in &state.open {
            lines.push_str(&format!("S {action} {pid} {ms}\n"));
        }
        let rewritten = crate::private_file::create(&temp)
            .and_then(|mut file| file.write_all(lines.as_bytes()))
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

/// A dead daemon's log is never longer than this (it is compacted at `COMPACT_AT`, and the
/// lines of the runs still open are few); what is at the path beyond it is not our log.
const MAX_LOG_READ: u64 = 4 * COMPACT_AT;

/// The text of the log at `path`, if it is a regular file of a sane size: a link, a FIFO, a
/// device (a link to /dev/zero, say) is not read, so start-up can neither hang nor fill memory.
fn read_bounded(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::warn!(log = %path.display(), "the last run log cannot be opened, so it proves nothing: {err}");
            return None;
        }
    };
    let is_regular = file.metadata().is_ok_and(|meta| meta.is_file());
    if !is_regular {
        tracing::warn!(log = %path.display(), "the last run log is not a regular file: ignored");
        return None;
    }
    let mut bytes = Vec::new();
    if file.take(MAX_LOG_READ + 1).read_to_end(&mut bytes).is_err()
        || bytes.len() as u64 > MAX_LOG_READ
    {
        tracing::warn!(log = %path.display(), "the last run log cannot be read whole: ignored");
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// What a dead daemon's run log says.
#[derive(Debug, Default)]
pub struct Reaped {
    /// Its tools still running.
    pub orphans: Vec<Orphan>,
    /// Every action whose tool it may have started, when the log is known complete (written
    /// in this boot); None when nothing can be proved (another boot, no log, no header).
    pub started: Option<HashSet<Uuid>>,
}

/// Reads a dead daemon's run log at `path`: every run that started and never ended whose
/// process still lives is an orphan; kills (when `kill`) their process groups. The log is
/// left for [`RunLog::create`] to replace.
pub fn reap(path: &Path, kill: bool) -> Reaped {
    let Some(text) = read_bounded(path) else {
        return Reaped::default();
    };
    let this_boot = boot_id();
    let complete = text
        .lines()
        .next()
        .and_then(|header| header.strip_prefix("B "))
        .is_some_and(|boot| this_boot.as_deref() == Some(boot));
    let mut started = HashSet::new();
    let mut open: HashMap<Uuid, RunRecord> = HashMap::new();
    // Runs announced ("P") whose start was never recorded: the daemon died in between.
    let mut unrecorded: Vec<Uuid> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let kind = fields.next();
        let action = fields.next().and_then(|id| Uuid::parse_str(id).ok());
        if let Some(action) = action {
            started.insert(action);
        }
        match (kind, action) {
            (Some("P"), Some(action)) if !unrecorded.contains(&action) => unrecorded.push(action),
            (Some("S"), Some(action)) => {
                unrecorded.retain(|a| *a != action);
                let pid = fields.next().and_then(|p| p.parse().ok());
                let ms = fields.next().and_then(|t| t.parse().ok());
                if let (Some(pid), Some(started_ms)) = (pid, ms) {
                    open.insert(
                        action,
                        RunRecord {
                            action,
                            pid,
                            started_ms,
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
        if record.pid <= 1 || !is_same_process(&record) {
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
    Reaped {
        orphans,
        started: complete.then_some(started),
    }
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
                && let Some(started_ms) = process_started_ms(pid)
            {
                found.push(RunRecord {
                    action: *action,
                    pid,
                    started_ms,
                });
            }
        }
    }
    found
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How far the start time /proc gives may be from the one logged: /proc's boot time has a
/// resolution of one second, and the log's time is taken just after the spawn returned.
const SAME_START_TOLERANCE_MS: u64 = 3_000;

/// Whether `record.pid` is still the process the record names (not a reused pid).
fn is_same_process(record: &RunRecord) -> bool {
    process_started_ms(record.pid)
        .is_some_and(|ms| ms.abs_diff(record.started_ms) <= SAME_START_TOLERANCE_MS)
}

/// When process `pid` started, in milliseconds since the Unix epoch: field 22 of
/// /proc/<pid>/stat (clock ticks since boot) plus the boot time of /proc/stat.
fn process_started_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let after_name = stat.rsplit_once(')')?.1;
    let ticks: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)? as u64;
    let boot_secs: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot_secs * 1000 + ticks * 1000 / per_second)
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

        let found = reap(&path, true).orphans;
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
        let found = reap(&path, true).orphans;
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
        // Our own pid, with a start time that is not ours (a minute before it): a different
        // process.
        let ours = process_started_ms(std::process::id()).unwrap();
        std::fs::write(
            &path,
            format!(
                "S {} {} {}\n",
                Uuid::now_v7(),
                std::process::id(),
                ours - 60_000
            ),
        )
        .unwrap();
        assert!(reap(&path, true).orphans.is_empty());
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

    #[test]
    fn a_log_of_this_boot_proves_which_actions_may_have_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.runlog");
        let log = RunLog::create(&path).unwrap();
        let (announced, ran, settled) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        log.starting(announced).unwrap();
        log.starting(ran).unwrap();
        log.started(ran, 12345);
        log.ended(ran);
        log.starting(settled).unwrap();
        log.ended(settled);
        log.settled([settled]);
        drop(log);
        let started = reap(&path, false).started.expect("written in this boot");
        assert!(started.contains(&announced) && started.contains(&ran));
        assert!(!started.contains(&Uuid::now_v7()));
    }

    #[test]
    fn a_log_of_another_boot_or_without_header_proves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.runlog");
        let id = Uuid::now_v7();
        std::fs::write(&path, format!("B 00000000-another-boot\nP {id}\nE {id}\n")).unwrap();
        assert!(reap(&path, false).started.is_none());
        std::fs::write(&path, format!("P {id}\nE {id}\n")).unwrap();
        assert!(reap(&path, false).started.is_none());
        assert!(reap(&dir.path().join("missing"), false).started.is_none());
    }

    #[test]
    fn runs_not_yet_settled_survive_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.runlog");
        let log = RunLog::create(&path).unwrap();
        // Ended, but its outcome is not committed yet: recovery must still see it ran.
        let unsettled = Uuid::now_v7();
        log.starting(unsettled).unwrap();
        log.ended(unsettled);
        for _ in 0..80_000 {
            let id = Uuid::now_v7();
            log.starting(id).unwrap();
            log.ended(id);
            log.settled([id]);
        }
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            (text.len() as u64) < COMPACT_AT,
            "compacted: {} bytes",
            text.len()
        );
        let started = reap(&path, false)
            .started
            .expect("the header survives compaction");
        assert!(started.contains(&unsettled));
    }
}
