//! Running one tool process: input on stdin, stdout captured (capped), the tail of stderr
//! kept, a deadline after which the whole process group is killed.
//!
//! Why it looks the way it does:
//! - The tool runs in its own process group (`process_group(0)`) so a timeout, or the end of
//!   the run, can kill grandchildren too. After the tool exits, what is left of its group is
//!   killed: a grandchild holding stdout open would otherwise hang the read (systemd's
//!   control-group semantics; a tool that wants a long-lived helper must detach it with setsid).
//! - No `pre_exec` and an absolute program path: both keep std on posix_spawn. With
//!   `pre_exec` std must fork, which costs tens of milliseconds once the daemon is large.
//! - stdout and stderr are drained concurrently with the wait: reading them one after the
//!   other deadlocks as soon as the unread one fills its pipe.
//!
//! This module reports what happened; `outcome` decides what it means for the action.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::ToolScript;

/// Which side of the tool protocol to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolMode {
    Run,
    Meta,
}

impl ToolMode {
    fn flag(self) -> &'static str {
        match self {
            ToolMode::Run => "--run",
            ToolMode::Meta => "--meta",
        }
    }
}

/// Bounds on one run.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    pub timeout: Duration,
    /// A tool printing more than this on stdout is stopped and its run fails.
    pub max_stdout: usize,
    /// How much of the end of stderr is kept.
    pub stderr_tail: usize,
    /// How many steps nicer than the daemon the tool runs, set right after it starts (0: the
    /// daemon's own priority).
    pub nice: u8,
    /// On a shared store, the instant of [`crate::clock::boot_clock`] by which the tool must
    /// have started: checked just before the spawn, and past it the run is not started
    /// (`ExitKind::Deferred`), since its claim's lease may have run out meanwhile.
    pub start_by: Option<Duration>,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            timeout: Duration::from_secs(300),
            max_stdout: 4 * 1024 * 1024,
            stderr_tail: 8 * 1024,
            nice: 0,
            start_by: None,
        }
    }
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitKind {
    /// Exited on its own with a status (code or signal).
    Exited(ExitStatus),
    /// Killed by us at the deadline.
    TimedOut(Duration),
    /// Killed by us after printing more than the stdout cap.
    StdoutOverflow(usize),
    /// Never started, or could not be waited for.
    SpawnFailed(String),
    /// Stopped on request (`cancel`): SIGTERM to its group, and SIGKILL when it outlived the
    /// grace (`killed`).
    Canceled { by: String, killed: bool },
    /// Never started for want of something that comes back by itself: file descriptors,
    /// processes or memory (EMFILE, ENFILE, EAGAIN, ENOMEM), or space for the run log. The
    /// engine tries such a run again shortly instead of failing it.
    Deferred(String),
}

impl ExitKind {
    /// Whether the tool never started for a passing lack of resources.
    pub fn is_deferred(&self) -> bool {
        matches!(self, ExitKind::Deferred(_))
    }
}

/// Errors of a spawn that say the machine is short of something for now, not that the tool
/// is broken.
fn is_passing_shortage(err: &std::io::Error) -> bool {
    use nix::errno::Errno;
    [
        Errno::EMFILE,
        Errno::ENFILE,
        Errno::EAGAIN,
        Errno::ENOMEM,
        Errno::ENOSPC,
    ]
    .iter()
    .any(|errno| err.raw_os_error() == Some(*errno as i32))
}

/// Everything observed about one run.
#[derive(Debug, Clone)]
pub struct ToolRun {
    pub exit: ExitKind,
    pub stdout: Vec<u8>,
    /// The last `RunLimits::stderr_tail` bytes of stderr.
    pub stderr_tail: Vec<u8>,
    /// Whether stderr was longer than what was kept.
    pub stderr_truncated: bool,
    /// The first `STDERR_HEAD` bytes of stderr, when it was longer than its tail (the log
    /// excerpt shows how a run began as well as how it ended).
    pub stderr_head: Vec<u8>,
    pub duration: Duration,
    pub pid: Option<u32>,
}

/// The variable that may hold the daemon's management token; never passed on to tools.
pub const MANAGEMENT_TOKEN_ENV: &str = "SDLC_ORCHESTRATOR_TOKEN";

/// How long to wait for the pipes to close once the process group has been killed. Only a
/// process that left the group (setsid) can hold them open past that.
const PIPE_GRACE: Duration = Duration::from_millis(500);

/// Runs `script` in `mode` with `input` on stdin, from `root`, with `SDLC_ROOT` and `env`
/// set. Never fails: a tool that cannot be started is reported as [`ExitKind::SpawnFailed`].
pub async fn run_tool(
    script: &ToolScript,
    mode: ToolMode,
    input: &Value,
    root: &Path,
    env: &[(String, String)],
    limits: &RunLimits,
) -> ToolRun {
    run_tool_recorded(script, mode, input, root, env, limits, &RunWatch::default()).await
}

/// Makes process `pid` `nice` steps nicer than the daemon (at most 19; its children inherit
/// it). Done from the daemon after the spawn because a `pre_exec` hook would force fork
/// instead of posix_spawn. Failure only costs priority, so it is logged, not fatal.
fn lower_priority(pid: u32, nice: u8) {
    // SAFETY: getpriority and setpriority take plain integers and touch no memory of ours.
    // getpriority may return -1 as a valid niceness; an error then would only make the
    // target one step lower, which setpriority clamps or refuses without harm.
    let ours = unsafe { nix::libc::getpriority(nix::libc::PRIO_PROCESS, 0) };
    let target = (ours + i32::from(nice)).min(19);
    // SAFETY: as above.
    let status =
        unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, pid as nix::libc::id_t, target) };
    if status != 0 {
        tracing::debug!(
            pid,
            target,
            "could not lower the tool's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Where a run is recorded while it lives (see [`crate::orphans`]).
#[derive(Debug, Clone)]
pub struct RunRecordAt {
    pub log: std::sync::Arc<crate::orphans::RunLog>,
    pub action: uuid::Uuid,
}

/// What the engine keeps of a run while it lives, besides its result: its record in the run
/// log, and its whole output for readers that follow it (see [`crate::logs`]).
#[derive(Debug, Clone, Default)]
pub struct RunWatch {
    pub record: Option<RunRecordAt>,
    pub log: Option<std::sync::Arc<crate::logs::LiveLog>>,
    /// Asked to stop, the run's group gets SIGTERM, then SIGKILL after the stop's grace.
    pub stop: Option<std::sync::Arc<crate::stops::StopSignal>>,
}

/// [`run_tool`] that also keeps a run record (pid and start time) while the tool's process
/// group may be alive, so a daemon that dies mid-run leaves a trace its successor can act on,
/// and feeds what it prints to `watch.log`.
pub async fn run_tool_recorded(
    script: &ToolScript,
    mode: ToolMode,
    input: &Value,
    root: &Path,
    env: &[(String, String)],
    limits: &RunLimits,
    watch: &RunWatch,
) -> ToolRun {
    let mut command = tokio::process::Command::new(&script.program);
    command
        .args(&script.args)
        .arg(mode.flag())
        .current_dir(root)
        .env("SDLC_ROOT", root)
        // The daemon's credential is not the tool's business.
        .env_remove(MANAGEMENT_TOKEN_ENV)
        .envs(env.iter().map(|(k, v)| (k, v)));
    let input_bytes = serde_json::to_vec(input).expect("a JSON value always serializes");
    run_process(command, &script.program, input_bytes, limits, watch).await
}

/// Runs a plan's command step: `program` (an absolute path) with `args`, from `cwd`, with
/// `SDLC_ROOT` and `env` set and nothing on stdin; the same caps, timeout, process-group kill
/// and run record as a tool.
pub async fn run_command_recorded(
    program: &Path,
    args: &[String],
    cwd: &Path,
    root: &Path,
    env: &[(String, String)],
    limits: &RunLimits,
    watch: &RunWatch,
) -> ToolRun {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(cwd)
        .env("SDLC_ROOT", root)
        .env_remove(MANAGEMENT_TOKEN_ENV)
        .envs(env.iter().map(|(k, v)| (k, v)));
    run_process(command, program, Vec::new(), limits, watch).await
}

/// Spawns `command` (its program, arguments, directory and environment set), writes
/// `input_bytes` to its stdin, and captures the run.
async fn run_process(
    mut command: tokio::process::Command,
    program: &Path,
    input_bytes: Vec<u8>,
    limits: &RunLimits,
    watch: &RunWatch,
) -> ToolRun {
    let record_at = watch.record.as_ref();
    let log = watch.log.as_deref();
    let started = Instant::now();
    let deadline = started + limits.timeout;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);

    let not_started = |exit: ExitKind| ToolRun {
        exit,
        stdout: Vec::new(),
        stderr_tail: Vec::new(),
        stderr_truncated: false,
        stderr_head: Vec::new(),
        duration: started.elapsed(),
        pid: None,
    };
    let (mut child, mut group) =
        match spawn_recorded(&mut command, program, limits, record_at).await {
            Ok(spawned) => spawned,
            Err(exit) => return not_started(exit),
        };
    let pid = group.pid;

    // Feeding stdin and draining both pipes are futures of this run's own task, polled with
    // the wait below: no task per pipe to spawn, schedule and join for every run.
    let stdin = child.stdin.take();
    let feed_stdin = async move {
        if let Some(mut stdin) = stdin {
            // A tool may exit or close stdin without reading it: that is not our failure.
            let _ = stdin.write_all(&input_bytes).await;
            let _ = stdin.shutdown().await;
        }
    };
    let read_stdout = read_capped(
        child.stdout.take().expect("stdout is piped"),
        limits.max_stdout,
        log,
    );
    let read_stderr = read_tail(
        child.stderr.take().expect("stderr is piped"),
        limits.stderr_tail,
        log,
    );
    tokio::pin!(feed_stdin, read_stdout, read_stderr);

    let mut stdin_fed = false;
    let mut stdout_done: Option<Captured> = None;
    let mut stderr_done: Option<Captured> = None;
    // `biased`, stderr first: when both pipes hold output at once (a fast tool, or a daemon
    // busy elsewhere), the log takes what the tool printed on stderr before its result on
    // stdout, the order of the tool protocol. Order across two pipes is otherwise unknowable.
    // Set once a stop was asked: who asked, and when SIGKILL follows the SIGTERM.
    let mut stopping: Option<(String, Instant)> = None;
    let exit = loop {
        let kill_at = stopping
            .as_ref()
            .map_or(deadline, |(_, at)| (*at).min(deadline));
        tokio::select! {
            biased;
            captured = &mut read_stderr, if stderr_done.is_none() => stderr_done = Some(captured),
            captured = &mut read_stdout, if stdout_done.is_none() => {
                let overflowed = captured.truncated;
                stdout_done = Some(captured);
                if overflowed {
                    kill_group(pid);
                    let _ = child.wait().await;
                    break ExitKind::StdoutOverflow(limits.max_stdout);
                }
            }
            status = child.wait() => break match (status, stopping.take()) {
                (_, Some((by, _))) => ExitKind::Canceled { by, killed: false },
                (Ok(status), None) => ExitKind::Exited(status),
                (Err(err), None) => {
                    ExitKind::SpawnFailed(format!("waiting for the tool failed: {err}"))
                }
            },
            () = &mut feed_stdin, if !stdin_fed => stdin_fed = true,
            stop = stop_asked(watch.stop.as_deref()), if stopping.is_none() => {
                signal_group(pid, nix::sys::signal::Signal::SIGTERM);
                if let Some(log) = log {
                    log.note(format!(
                        "[sdlc: canceled by {}: SIGTERM sent to its process group; SIGKILL in {} if it is still running]",
                        stop.by,
                        human_duration(stop.grace)
                    ));
                }
                stopping = Some((stop.by, Instant::now() + stop.grace));
            }
            _ = tokio::time::sleep_until(kill_at) => {
                kill_group(pid);
                let _ = child.wait().await;
                break match stopping.take() {
                    Some((by, at)) if at <= deadline => ExitKind::Canceled { by, killed: true },
                    _ => ExitKind::TimedOut(limits.timeout),
                };
            }
        }
    };
    // Whatever the tool left behind in its group goes with it.
    group.kill_now();

    // What is still in the pipes, for at most PIPE_GRACE; a pipe still open then (held by a
    // process that left the group) counts as empty, as before.
    let drain_until = Instant::now() + PIPE_GRACE;
    while stdout_done.is_none() || stderr_done.is_none() {
        tokio::select! {
            biased;
            captured = &mut read_stderr, if stderr_done.is_none() => stderr_done = Some(captured),
            captured = &mut read_stdout, if stdout_done.is_none() => stdout_done = Some(captured),
            _ = tokio::time::sleep_until(drain_until) => break,
        }
    }
    let stdout = stdout_done.unwrap_or_default();
    let stderr = stderr_done.unwrap_or_default();
    ToolRun {
        exit,
        stdout: stdout.bytes,
        stderr_tail: stderr.bytes,
        stderr_truncated: stderr.truncated,
        stderr_head: stderr.head,
        duration: started.elapsed(),
        pid,
    }
}

/// Spawns `command` in a process group of its own, recorded in the run log before and after
/// (recovery trusts the log to name every run that may have started), at the lowered
/// priority asked for. A run that must not start answers how it ended instead: deferred (no
/// record could be written, the claim's lease ran out, a passing lack of resources) or
/// failed to spawn.
async fn spawn_recorded(
    command: &mut tokio::process::Command,
    program: &Path,
    limits: &RunLimits,
    record_at: Option<&RunRecordAt>,
) -> Result<(tokio::process::Child, GroupGuard), ExitKind> {
    if let Some(at) = record_at
        && let Err(err) = at.log.starting(at.action)
    {
        // Recovery trusts the log to name every run that may have started: never start one
        // it does not name.
        return Err(ExitKind::Deferred(format!(
            "not started: could not record the run in the run log ({err})"
        )));
    }
    // The last moment before the spawn: a daemon paused (SIGSTOP, a VM frozen) after its
    // start was marked must not start the tool once its claim's lease may be gone.
    if limits
        .start_by
        .is_some_and(|by| crate::clock::boot_clock() >= by)
    {
        if let Some(at) = record_at {
            at.log.ended(at.action);
        }
        return Err(ExitKind::Deferred(LEASE_LAPSED.to_string()));
    }
    let child = match spawn_retrying_busy(command).await {
        Ok(child) => child,
        Err(err) => {
            if let Some(at) = record_at {
                at.log.ended(at.action);
            }
            let reason = format!("{}: {err}", program.display());
            return Err(if is_passing_shortage(&err) {
                ExitKind::Deferred(reason)
            } else {
                ExitKind::SpawnFailed(reason)
            });
        }
    };
    let pid = child.id();
    if let Some(pid) = pid.filter(|_| limits.nice > 0) {
        lower_priority(pid, limits.nice);
    }
    let record = match (record_at, pid) {
        (Some(at), Some(pid)) => {
            at.log.started(at.action, pid);
            Some(at.clone())
        }
        _ => None,
    };
    // If the run's future is dropped mid-run (shutdown), the guard still kills the group.
    Ok((child, GroupGuard { pid, record }))
}

/// How often a spawn refused with "Text file busy" is tried again.
const BUSY_RETRIES: u32 = 5;

/// Spawns `command`, trying again a few times (1, 2, 4, 8, 16 ms apart) when exec answers
/// ETXTBSY: the tool file is still open for writing somewhere, typically because it was just
/// written (an editor saving it, or a forked process that inherited the writer's descriptor for
/// an instant). Any other error is returned at once.
async fn spawn_retrying_busy(
    command: &mut tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Err(err)
                if err.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32)
                    && attempt < BUSY_RETRIES =>
            {
                tokio::time::sleep(Duration::from_millis(1 << attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Why a spawn was not made: the claim's lease ran out before it (see `RunLimits::start_by`).
const LEASE_LAPSED: &str = "not started: its claim's lease ran out before the tool could start (this node was paused or fell behind); handed back";

/// Bytes read from a pipe, and whether some were dropped.
#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
    /// `read_tail` only: the first `STDERR_HEAD` bytes, once more than the tail was read.
    head: Vec<u8>,
}

/// How much of the start of stderr is kept besides its tail.
pub const STDERR_HEAD: usize = 1024;

/// Reads until EOF or until more than `cap` bytes arrived (then stops, marking truncation),
/// handing each chunk to `log` as it comes. Reads straight into the result: most tools print
/// a few hundred bytes, and a zeroed 64 KiB buffer per run cost more than the reading.
async fn read_capped(
    pipe: impl AsyncRead + Unpin,
    cap: usize,
    log: Option<&crate::logs::LiveLog>,
) -> Captured {
    // One byte past the cap tells a tool that printed too much from one that printed exactly
    // `cap` bytes.
    let mut bytes = Vec::new();
    let mut pipe = pipe.take(cap as u64 + 1);
    loop {
        if bytes.capacity() - bytes.len() < 1024 {
            bytes.reserve(bytes.capacity().max(4096));
        }
        let before = bytes.len();
        // A read error ends the output like EOF; what was read before it is kept.
        match pipe.read_buf(&mut bytes).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Some(log) = log {
                    log.push(crate::logs::Stream::Stdout, &bytes[before..]);
                }
            }
        }
    }
    let truncated = bytes.len() > cap;
    bytes.truncate(cap);
    Captured {
        bytes,
        truncated,
        head: Vec::new(),
    }
}

/// Reads until EOF, keeping only the last `keep` bytes (and handing every chunk to `log`).
async fn read_tail(
    mut pipe: impl AsyncRead + Unpin,
    keep: usize,
    log: Option<&crate::logs::LiveLog>,
) -> Captured {
    let mut tail: Vec<u8> = Vec::new();
    let mut truncated = false;
    let mut head = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                return Captured {
                    bytes: tail,
                    truncated,
                    head,
                };
            }
            Ok(n) => {
                if let Some(log) = log {
                    log.push(crate::logs::Stream::Stderr, &chunk[..n]);
                }
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > keep {
                    // Until the first cut the tail still starts at the first byte.
                    if !truncated {
                        head = tail[..STDERR_HEAD.min(tail.len())].to_vec();
                    }
                    let excess = tail.len() - keep;
                    tail.drain(..excess);
                    truncated = true;
                }
            }
        }
    }
}

/// Kills the tool's process group when dropped, unless that was already done, and then
/// removes the run's record.
struct GroupGuard {
    pid: Option<u32>,
    record: Option<RunRecordAt>,
}

impl GroupGuard {
    fn kill_now(&mut self) {
        kill_group(self.pid.take());
        if let Some(record) = self.record.take() {
            record.log.ended(record.action);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Sends SIGKILL to the process group led by `pid`. Errors (the group is already gone) are
/// expected and ignored.
fn kill_group(pid: Option<u32>) {
    signal_group(pid, nix::sys::signal::Signal::SIGKILL);
}

/// Sends `signal` to the process group led by `pid` (errors ignored, as for `kill_group`).
fn signal_group(pid: Option<u32>, signal: nix::sys::signal::Signal) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
}

/// The stop asked of a run, when one is; never ends for a run nobody can stop.
async fn stop_asked(signal: Option<&crate::stops::StopSignal>) -> crate::stops::Stop {
    match signal {
        Some(signal) => signal.wait().await,
        None => std::future::pending().await,
    }
}

/// A duration as messages show it: whole seconds, or seconds to the millisecond.
pub(crate) fn human_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
