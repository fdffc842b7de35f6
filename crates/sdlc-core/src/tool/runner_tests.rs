//! Runner tests with real shell scripts and real processes.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::model::ActionStatus;
use crate::tool::{outcome_to_status, tool_script};

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn tool(&self, name: &str, body: &str) -> ToolScript {
        let dir = self.root().join(".sdlc/tools").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tool");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        tool_script(self.root(), name).unwrap()
    }

    async fn run(&self, script: &ToolScript, limits: RunLimits) -> ToolRun {
        run_tool(
            script,
            ToolMode::Run,
            &json!({"hello": "world"}),
            self.root(),
            &[],
            &limits,
        )
        .await
    }
}

fn limits(timeout_ms: u64) -> RunLimits {
    RunLimits {
        timeout: Duration::from_millis(timeout_ms),
        ..RunLimits::default()
    }
}

fn failed_reason(status: ActionStatus) -> String {
    match status {
        ActionStatus::Failed { reason } => reason,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn ok_tool_gets_input_on_stdin_root_as_cwd_and_sdlc_root() {
    let project = Project::new();
    let script = project.tool(
        "echo",
        r#"input=$(cat)
printf '{"ok":true,"data":{"input":%s,"cwd":"%s","root":"%s","mode":"%s"}}' "$input" "$(pwd -P)" "$SDLC_ROOT" "$1""#,
    );
    let run = project.run(&script, limits(10_000)).await;
    let ActionStatus::Completed { result } = outcome_to_status(&run) else {
        panic!("{run:?}");
    };
    let root: PathBuf = std::fs::canonicalize(project.root()).unwrap();
    assert_eq!(result["data"]["input"], json!({"hello": "world"}));
    assert_eq!(result["data"]["cwd"], json!(root.to_str().unwrap()));
    assert_eq!(result["data"]["mode"], json!("--run"));
    assert!(!result["data"]["root"].as_str().unwrap().is_empty());
    assert!(run.pid.is_some());
}

#[tokio::test]
async fn ok_false_and_non_zero_exit_fail_with_a_reason() {
    let project = Project::new();
    let script = project.tool("no", r#"echo '{"ok":false,"error":"nothing to deploy"}'"#);
    let run = project.run(&script, limits(10_000)).await;
    assert_eq!(failed_reason(outcome_to_status(&run)), "nothing to deploy");

    let script = project.tool("crash", "echo 'config missing' >&2; exit 7");
    let run = project.run(&script, limits(10_000)).await;
    assert_eq!(
        failed_reason(outcome_to_status(&run)),
        "exited with status 7; stderr: config missing"
    );
}

#[tokio::test]
async fn non_json_output_is_kept_as_text() {
    let project = Project::new();
    let script = project.tool("text", "echo plain words");
    let run = project.run(&script, limits(10_000)).await;
    assert_eq!(
        outcome_to_status(&run),
        ActionStatus::Completed {
            result: json!("plain words")
        }
    );
}

#[tokio::test]
async fn ten_megabytes_of_output_fail_at_the_cap_without_hanging() {
    let project = Project::new();
    let script = project.tool("loud", "head -c 10000000 /dev/zero | tr '\\0' 'a'");
    let run = project.run(&script, limits(20_000)).await;
    assert!(
        matches!(run.exit, ExitKind::StdoutOverflow(_)),
        "{:?}",
        run.exit
    );
    assert_eq!(run.stdout.len(), RunLimits::default().max_stdout);
    assert!(failed_reason(outcome_to_status(&run)).contains("more than 4 MiB"));
}

#[tokio::test]
async fn big_stderr_keeps_only_its_tail_and_does_not_deadlock() {
    let project = Project::new();
    // 1 MB on stderr would fill the pipe if nobody drained it while waiting.
    let script = project.tool(
        "noisy",
        "head -c 1000000 /dev/zero | tr '\\0' 'e' >&2; echo LAST >&2; echo '{\"ok\":true}'",
    );
    let run = project.run(&script, limits(20_000)).await;
    assert!(
        matches!(outcome_to_status(&run), ActionStatus::Completed { .. }),
        "{:?}",
        run.exit
    );
    assert_eq!(run.stderr_tail.len(), RunLimits::default().stderr_tail);
    assert!(run.stderr_tail.ends_with(b"LAST\n"));
    assert!(run.stderr_truncated);
}

#[tokio::test]
async fn a_tool_sleeping_past_its_timeout_is_killed_in_time() {
    let project = Project::new();
    let script = project.tool("sleepy", "sleep 30");
    let run = project.run(&script, limits(500)).await;
    assert!(matches!(run.exit, ExitKind::TimedOut(_)), "{:?}", run.exit);
    assert!(
        run.duration < Duration::from_millis(1_500),
        "{:?}",
        run.duration
    );
    assert!(failed_reason(outcome_to_status(&run)).starts_with("timed out after 0.500s"));
}

#[tokio::test]
async fn a_grandchild_holding_stdout_is_killed_with_the_group() {
    let project = Project::new();
    let marker = project.root().join("grandchild.pid");
    // The tool exits at once, leaving a background sleeper that inherited stdout.
    let script = project.tool(
        "leaky",
        &format!(
            "sleep 30 & echo $! > {}\necho '{{\"ok\":true}}'",
            marker.display()
        ),
    );
    let run = project.run(&script, limits(5_000)).await;
    assert!(run.duration < Duration::from_secs(2), "{:?}", run.duration);
    assert!(matches!(
        outcome_to_status(&run),
        ActionStatus::Completed { .. }
    ));
    assert_grandchild_dead(&marker);

    // Same, but the tool itself also hangs: the timeout kills both.
    let script = project.tool(
        "leaky-hang",
        &format!("sleep 30 & echo $! > {}\nsleep 30", marker.display()),
    );
    let run = project.run(&script, limits(500)).await;
    assert!(matches!(run.exit, ExitKind::TimedOut(_)));
    assert!(
        run.duration < Duration::from_millis(1_500),
        "{:?}",
        run.duration
    );
    assert_grandchild_dead(&marker);
}

fn assert_grandchild_dead(marker: &Path) {
    let pid: i32 = std::fs::read_to_string(marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL is delivered asynchronously: the process may need a moment to leave the run
    // queue, and then lingers as a zombie until init reaps it. Wait (bounded) for either.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        // No /proc entry: gone (reaped). A 'Z' state: dead, waiting to be reaped.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = !state.is_empty()
            && !state
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if !alive {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "grandchild {pid} still runs: {state}"
        );
        std::thread::yield_now();
    }
}

#[tokio::test]
async fn a_tool_killed_by_a_signal_says_which() {
    let project = Project::new();
    let script = project.tool("suicide", "kill -TERM $$");
    let run = project.run(&script, limits(5_000)).await;
    assert_eq!(
        failed_reason(outcome_to_status(&run)),
        "killed by signal 15 (SIGTERM)"
    );
}

#[tokio::test]
async fn a_tool_that_never_reads_stdin_still_completes() {
    let project = Project::new();
    let script = project.tool("deaf", "exec 0<&-; echo '{\"ok\":true}'");
    let big = json!({"blob": "x".repeat(1_000_000)});
    let run = run_tool(
        &script,
        ToolMode::Run,
        &big,
        project.root(),
        &[],
        &limits(5_000),
    )
    .await;
    assert!(
        matches!(outcome_to_status(&run), ActionStatus::Completed { .. }),
        "{run:?}"
    );
}

#[tokio::test]
async fn a_program_that_cannot_start_is_reported() {
    let project = Project::new();
    let mut script = project.tool("gone", "true");
    std::fs::remove_file(&script.program).unwrap();
    script.program = project.root().join("missing");
    let run = project.run(&script, limits(5_000)).await;
    assert!(matches!(run.exit, ExitKind::SpawnFailed(_)));
    assert!(failed_reason(outcome_to_status(&run)).starts_with("could not start the tool"));
}

#[tokio::test]
async fn meta_is_read_and_parsed() {
    let project = Project::new();
    let script = project.tool(
        "described",
        r#"if [ "$1" = "--meta" ]; then echo '{"name":"described","version":"1.0","input_schema":{"type":"object"}}'; fi"#,
    );
    let meta = crate::tool::meta::read_meta(&script, project.root())
        .await
        .unwrap();
    assert_eq!(meta.version.as_deref(), Some("1.0"));
    assert_eq!(meta.input_schema, Some(json!({"type": "object"})));

    let script = project.tool("mute", "echo not json");
    let err = crate::tool::meta::read_meta(&script, project.root())
        .await
        .unwrap_err();
    assert!(
        err.contains("tool 'mute' --meta did not print valid metadata"),
        "{err}"
    );
}

#[tokio::test]
async fn a_tool_file_still_open_for_writing_is_retried_then_reported() {
    let project = Project::new();
    let script = project.tool("busy", "echo '{\"ok\":true}'");
    // Someone is still writing the tool (an editor saving it): exec answers ETXTBSY.
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&script.program)
        .unwrap();
    let run = project.run(&script, limits(5_000)).await;
    let reason = failed_reason(outcome_to_status(&run));
    assert!(reason.contains("Text file busy"), "{reason}");
    // Retried for a while (1 + 2 + 4 + 8 + 16 ms) before giving up.
    assert!(
        run.duration >= Duration::from_millis(31),
        "{:?}",
        run.duration
    );
    drop(writer);
    let run = project.run(&script, limits(5_000)).await;
    assert!(matches!(
        outcome_to_status(&run),
        ActionStatus::Completed { .. }
    ));
}

#[tokio::test]
async fn a_nice_limit_lowers_the_tool_and_its_children() {
    let project = Project::new();
    // stdin is written only after the priority is set: read it first, then ask a child.
    let script = project.tool(
        "nice",
        r#"cat > /dev/null
printf '{"ok":true,"data":{"nice":%s}}' "$(cut -d' ' -f19 /proc/self/stat)""#,
    );
    let nice_of = |run: &ToolRun| match outcome_to_status(run) {
        ActionStatus::Completed { result } => result["data"]["nice"].as_i64().unwrap(),
        other => panic!("{other:?}"),
    };
    let ours: i64 = std::fs::read_to_string("/proc/self/stat")
        .unwrap()
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap();
    let plain = project.run(&script, limits(10_000)).await;
    assert_eq!(nice_of(&plain), ours);
    let niced = RunLimits {
        nice: 7,
        ..limits(10_000)
    };
    let run = project.run(&script, niced).await;
    // Relative to the daemon's own niceness, like nice(1).
    assert_eq!(nice_of(&run), (ours + 7).min(19));
}

#[tokio::test]
async fn a_tool_whose_lease_ran_out_before_its_spawn_is_not_started() {
    let project = Project::new();
    let marker = project.root().join("ran");
    let script = project.tool(
        "late",
        &format!("touch {}\necho '{{\"ok\":true}}'", marker.display()),
    );
    // A deadline already past: the daemon was paused between the start mark and the spawn.
    let lapsed = RunLimits {
        start_by: Some(crate::clock::boot_clock().saturating_sub(Duration::from_millis(1))),
        ..limits(5_000)
    };
    let run = project.run(&script, lapsed).await;
    assert!(
        matches!(&run.exit, ExitKind::Deferred(reason) if reason.contains("lease ran out")),
        "{:?}",
        run.exit
    );
    assert_eq!(run.pid, None);
    assert!(!marker.exists(), "the tool must not have run");
    // With the deadline ahead, the same tool runs.
    let current = RunLimits {
        start_by: Some(crate::clock::boot_clock() + Duration::from_secs(30)),
        ..limits(5_000)
    };
    let run = project.run(&script, current).await;
    assert!(
        matches!(&run.exit, ExitKind::Exited(status) if status.success()),
        "{run:?}"
    );
    assert!(marker.exists());
}
