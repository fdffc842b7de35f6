//! What a finished tool run means for its action: Completed with a result, or Failed with
//! a reason a person can act on (the tool's own `error`, or how it died and the end of its
//! stderr).

use std::os::unix::process::ExitStatusExt;

use serde_json::Value;

use super::runner::{ExitKind, ToolRun, human_duration};
use crate::model::ActionStatus;

/// How much of the end of stderr goes into a failure reason.
const REASON_STDERR_CHARS: usize = 2000;

/// Maps a run to the status its action ends in.
pub fn outcome_to_status(run: &ToolRun) -> ActionStatus {
    let failed = |reason: String| ActionStatus::Failed { reason };
    match &run.exit {
        ExitKind::Canceled { by, killed } => ActionStatus::Canceled {
            reason: format!(
                "canceled by {by} while it ran{}",
                if *killed {
                    ": it outlived the grace after SIGTERM and was killed (SIGKILL)"
                } else {
                    ""
                }
            ),
        },
        ExitKind::SpawnFailed(detail) | ExitKind::Deferred(detail) => {
            failed(format!("could not start the tool: {detail}"))
        }
        ExitKind::TimedOut(limit) => failed(format!(
            "timed out after {}: the tool and its child processes were killed; raise the action's --timeout if it needs longer{}",
            human_duration(*limit),
            stderr_suffix(run)
        )),
        ExitKind::StdoutOverflow(cap) => failed(format!(
            "the tool printed more than {} on stdout and was stopped: write large results to a file and return its path",
            human_bytes(*cap)
        )),
        ExitKind::Exited(status) => match (status.code(), status.signal()) {
            (Some(0), _) => success_status(&run.stdout),
            (Some(code), _) => match tool_error(&run.stdout) {
                Some(error) => failed(format!("{error} (exit status {code})")),
                None => failed(format!("exited with status {code}{}", stderr_suffix(run))),
            },
            (None, Some(signal)) => failed(format!(
                "killed by signal {signal} ({}){}",
                signal_name(signal),
                stderr_suffix(run)
            )),
            (None, None) => failed(format!("ended with {status}{}", stderr_suffix(run))),
        },
    }
}

/// How much of a command step's stdout its result keeps when it printed no JSON object.
const COMMAND_STDOUT_TAIL: usize = 4096;

/// Maps a plan command step's run to a status: exit 0 completes it, with the JSON object it
/// printed (plus `exit_code`) as its result, else `{"exit_code", "stdout"}` (the tail); any
/// other end fails it, as for a tool.
pub fn command_outcome(run: &ToolRun) -> ActionStatus {
    let ExitKind::Exited(status) = &run.exit else {
        return outcome_to_status(run);
    };
    if status.code() != Some(0) {
        return match status.code() {
            Some(code) => ActionStatus::Failed {
                reason: format!("exited with status {code}{}", stderr_suffix(run)),
            },
            None => outcome_to_status(run),
        };
    }
    let text = String::from_utf8_lossy(&run.stdout);
    let result = match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Object(mut map)) => {
            map.insert("exit_code".into(), Value::from(0));
            Value::Object(map)
        }
        _ => {
            let chars: Vec<char> = text.chars().collect();
            let start = chars.len().saturating_sub(COMMAND_STDOUT_TAIL);
            let tail: String = chars[start..].iter().collect();
            serde_json::json!({"exit_code": 0, "stdout": tail})
        }
    };
    ActionStatus::Completed { result }
}

/// Exit 0: JSON output is the result unless it says `"ok": false`; other text is kept as
/// text rather than thrown away; bytes that are not text at all fail the run.
fn success_status(stdout: &[u8]) -> ActionStatus {
    let text = match std::str::from_utf8(stdout) {
        Ok(text) => text,
        Err(err) => {
            return ActionStatus::Failed {
                reason: format!(
                    "the tool printed bytes that are not UTF-8 text (first bad byte at offset {}): tools must print JSON",
                    err.valid_up_to()
                ),
            };
        }
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return ActionStatus::Completed {
            result: Value::Null,
        };
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(value) => {
            if value.get("ok") == Some(&Value::Bool(false)) {
                let reason = tool_error_in(&value).unwrap_or_else(|| {
                    "the tool answered \"ok\": false without an \"error\" message".to_string()
                });
                ActionStatus::Failed { reason }
            } else {
                ActionStatus::Completed { result: value }
            }
        }
        Err(_) => ActionStatus::Completed {
            result: Value::String(trimmed.to_string()),
        },
    }
}

fn tool_error(stdout: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(stdout).ok()?;
    tool_error_in(&value)
}

fn tool_error_in(value: &Value) -> Option<String> {
    match value.get("error")? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn stderr_suffix(run: &ToolRun) -> String {
    let text = String::from_utf8_lossy(&run.stderr_tail);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let chars: Vec<char> = text.chars().collect();
    let start = chars.len().saturating_sub(REASON_STDERR_CHARS);
    let tail: String = chars[start..].iter().collect();
    let marker = if start > 0 || run.stderr_truncated {
        "..."
    } else {
        ""
    };
    format!("; stderr: {marker}{tail}")
}

/// Lines kept from the start and from the end of one stream in a log excerpt.
const EXCERPT_HEAD_LINES: usize = 10;
const EXCERPT_TAIL_LINES: usize = 20;
/// Longest line kept whole in a log excerpt.
const EXCERPT_LINE_CHARS: usize = 200;

/// The run's log excerpt: the first and last lines of its stderr (and, for a command step,
/// of its stdout too), at most about 4 KiB; None when it printed nothing.
pub fn log_excerpt(run: &ToolRun, with_stdout: bool) -> Option<String> {
    let stderr = if run.stderr_truncated {
        let mut joined = String::from_utf8_lossy(&run.stderr_head).into_owned();
        joined.push_str("\n…\n");
        let tail = String::from_utf8_lossy(&run.stderr_tail);
        // The tail starts mid-line: its first line is dropped.
        joined.push_str(tail.split_once('\n').map_or("", |(_, rest)| rest));
        joined
    } else {
        String::from_utf8_lossy(&run.stderr_tail).into_owned()
    };
    let stderr = excerpt_lines(&stderr);
    if !with_stdout {
        return stderr;
    }
    let stdout = excerpt_lines(&String::from_utf8_lossy(&run.stdout));
    match (stdout, stderr) {
        (None, None) => None,
        (Some(out), None) => Some(format!("stdout:\n{out}")),
        (None, Some(err)) => Some(format!("stderr:\n{err}")),
        (Some(out), Some(err)) => Some(format!("stdout:\n{out}\nstderr:\n{err}")),
    }
}

/// The first `EXCERPT_HEAD_LINES` and last `EXCERPT_TAIL_LINES` lines of `text`, each cut
/// to `EXCERPT_LINE_CHARS`; None when it has no visible text.
pub fn excerpt_lines(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    if lines.iter().all(|l| l.trim().is_empty()) {
        return None;
    }
    let cut = |line: &str| -> String {
        if line.chars().count() <= EXCERPT_LINE_CHARS {
            line.to_string()
        } else {
            let kept: String = line.chars().take(EXCERPT_LINE_CHARS).collect();
            format!("{kept}…")
        }
    };
    let keep = EXCERPT_HEAD_LINES + EXCERPT_TAIL_LINES;
    let mut out: Vec<String> = Vec::new();
    if lines.len() <= keep {
        out.extend(lines.iter().map(|l| cut(l)));
    } else {
        out.extend(lines[..EXCERPT_HEAD_LINES].iter().map(|l| cut(l)));
        out.push(format!("… ({} lines) …", lines.len() - keep));
        out.extend(
            lines[lines.len() - EXCERPT_TAIL_LINES..]
                .iter()
                .map(|l| cut(l)),
        );
    }
    Some(out.join("\n"))
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| "unknown signal".to_string())
}

fn human_bytes(n: usize) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{} MiB", n / (1024 * 1024))
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::ExitStatus;
    use std::time::Duration;

    fn run(exit: ExitKind, stdout: &str, stderr: &str) -> ToolRun {
        ToolRun {
            exit,
            stdout: stdout.as_bytes().to_vec(),
            stderr_tail: stderr.as_bytes().to_vec(),
            stderr_truncated: false,
            stderr_head: Vec::new(),
            duration: Duration::ZERO,
            pid: None,
        }
    }

    fn exited(code: i32) -> ExitKind {
        ExitKind::Exited(ExitStatus::from_raw(code << 8))
    }

    fn reason(status: ActionStatus) -> String {
        match status {
            ActionStatus::Failed { reason } => reason,
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn exit_zero_with_json_completes_with_the_whole_answer() {
        let status = outcome_to_status(&run(exited(0), r#"{"ok":true,"data":{"n":1}}"#, ""));
        assert_eq!(
            status,
            ActionStatus::Completed {
                result: serde_json::json!({"ok": true, "data": {"n": 1}})
            }
        );
    }

    #[test]
    fn ok_false_fails_with_the_tools_error() {
        let status = outcome_to_status(&run(exited(0), r#"{"ok":false,"error":"db down"}"#, ""));
        assert_eq!(reason(status), "db down");
        let status = outcome_to_status(&run(exited(0), r#"{"ok":false}"#, ""));
        assert!(reason(status).contains("without an \"error\""));
    }

    #[test]
    fn non_zero_exit_uses_the_error_or_the_stderr_tail() {
        let status = outcome_to_status(&run(exited(3), r#"{"ok":false,"error":"bad"}"#, ""));
        assert_eq!(reason(status), "bad (exit status 3)");
        let status = outcome_to_status(&run(exited(2), "", "line1\nfatal: no config\n"));
        assert_eq!(
            reason(status),
            "exited with status 2; stderr: line1\nfatal: no config"
        );
    }

    #[test]
    fn non_json_output_is_kept_as_text() {
        let status = outcome_to_status(&run(exited(0), "all good\n", ""));
        assert_eq!(
            status,
            ActionStatus::Completed {
                result: Value::String("all good".into())
            }
        );
    }

    #[test]
    fn output_that_is_not_text_fails_the_run() {
        let mut r = run(exited(0), "", "");
        r.stdout = b"ok\xff\xfe".to_vec();
        assert!(
            reason(outcome_to_status(&r)).contains("not UTF-8 text (first bad byte at offset 2)")
        );
    }

    #[test]
    fn signals_timeouts_and_overflow_are_named() {
        let status = outcome_to_status(&run(ExitKind::Exited(ExitStatus::from_raw(9)), "", ""));
        assert_eq!(reason(status), "killed by signal 9 (SIGKILL)");
        let status = outcome_to_status(&run(ExitKind::TimedOut(Duration::from_secs(2)), "", ""));
        assert!(reason(status).starts_with("timed out after 2s"));
        let status = outcome_to_status(&run(ExitKind::StdoutOverflow(4 << 20), "", ""));
        assert!(reason(status).contains("more than 4 MiB"));
    }

    #[test]
    fn long_stderr_is_cut_to_its_end() {
        let stderr = format!("{}END", "x".repeat(5000));
        let r = reason(outcome_to_status(&run(exited(1), "", &stderr)));
        assert!(r.ends_with("END") && r.contains("stderr: ..."));
        assert!(r.len() < 2100);
    }

    #[test]
    fn the_log_excerpt_keeps_the_first_and_last_lines() {
        let stderr: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let r = run(exited(1), "", &stderr);
        let excerpt = log_excerpt(&r, false).unwrap();
        let lines: Vec<&str> = excerpt.lines().collect();
        assert_eq!(lines.len(), 31);
        assert_eq!(lines[0], "line 1");
        assert_eq!(lines[9], "line 10");
        assert_eq!(lines[10], "… (70 lines) …");
        assert_eq!(lines[30], "line 100");
        assert_eq!(log_excerpt(&run(exited(0), "", " \n"), false), None);
        let both = log_excerpt(&run(exited(0), "built\n", "warn\n"), true).unwrap();
        assert_eq!(both, "stdout:\nbuilt\nstderr:\nwarn");
        let long = "x".repeat(5000);
        assert!(
            log_excerpt(&run(exited(1), "", &long), false)
                .unwrap()
                .len()
                < 300
        );
    }
}
