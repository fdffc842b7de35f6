//! End-to-end tests of milestone 1: the `sdlc` binary, a real daemon process, real tools,
//! a real redb file, real HTTP on loopback.

mod common;

use common::Backend;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Project, http, lateness, status_of, wait_for, wait_for_status};
use serde_json::Value;

const QUICK_CONFIG: &str =
    "checks:\n  - name: always\n    command: \"true\"\n  - name: echo\n    command: echo checked\n";

fn time(action: &Value, field: &str) -> DateTime<Utc> {
    action[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {action}"))
        .parse()
        .unwrap()
}

fn by_id(actions: &[Value], id: &str) -> Value {
    actions
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no action {id} in {actions:#?}"))
}

/// README's Quick start as a new user types it, with the demo tool the repository ships.
#[test]
fn the_quick_start_works_with_the_shipped_demo_tool() {
    let project = Project::new();
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.sdlc/tools/hello/tool");
    let dir = project.root().join(".sdlc/tools/hello");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&shipped, dir.join("tool")).unwrap();

    assert!(project.sdlc_ok(&["tool", "list"]).contains("hello"));
    let tried = project.sdlc_ok(&["tool", "run", "hello", "--input", r#"{"name": "Ada"}"#]);
    assert!(tried.contains("Hello, Ada!"), "{tried}");
    let id = project.add(&[
        "greet",
        "--tool",
        "hello",
        "--input",
        r#"{"name": "Ada"}"#,
        "--at",
        "now+1s",
    ]);
    let _daemon = project.daemon(&["--tick-rate", "10"]);
    let done = common::wait_for_status(&project, &id, "completed", Duration::from_secs(20));
    assert_eq!(done["result"]["data"]["greeting"], "Hello, Ada!");
    let shown = project.sdlc_ok(&["orchestrate", "show", &id]);
    assert!(shown.contains("Hello, Ada!"), "{shown}");
    let log = project.sdlc_ok(&["orchestrate", "logs", &id]);
    assert!(log.starts_with("hello: looking up Ada\n"), "{log}");
    assert!(log.contains("hello: done\n"), "{log}");

    let oops = project.add(&["oops", "--tool", "hello", "--input", r#"{"fail": true}"#]);
    let failed = common::wait_for_status(&project, &oops, "failed", Duration::from_secs(20));
    assert!(
        failed["reason"].as_str().unwrap().contains("asked to fail"),
        "{failed}"
    );
    assert!(
        project
            .sdlc_ok(&["orchestrate", "logs", &oops])
            .contains("hello: asked to fail")
    );
    // `show` says why, and how the run went, without --json.
    let why = project.sdlc_ok(&["orchestrate", "show", &oops]);
    assert!(why.contains("reason:\n  asked to fail"), "{why}");
    assert!(
        why.contains("log excerpt (the whole log: sdlc orchestrate logs"),
        "{why}"
    );
    assert!(why.contains("  hello: asked to fail"), "{why}");
    // Short ids: the random end of an id, as the dashboard shows it, names one action; a
    // start shared by both (the first digits of time-ordered ids) is refused as ambiguous.
    let short = &id.replace('-', "")[24..];
    let by_short = project.sdlc_ok(&["orchestrate", "show", short, "--json"]);
    assert!(by_short.contains(&id), "{by_short}");
    assert!(
        project
            .sdlc_ok(&["orchestrate", "logs", short])
            .contains("hello: done")
    );
    let shared = &id[..6];
    assert_eq!(&oops[..6], shared, "made within seconds of each other");
    let ambiguous = project.sdlc(&["orchestrate", "show", shared]);
    assert!(!ambiguous.status.success());
    assert!(
        String::from_utf8_lossy(&ambiguous.stderr).contains("names more than one action"),
        "{}",
        String::from_utf8_lossy(&ambiguous.stderr)
    );
    // The schema the tool declares refuses what it cannot greet.
    let refused = project.sdlc(&[
        "orchestrate",
        "add",
        "bad",
        "--tool",
        "hello",
        "--input",
        r#"{"nme": "x"}"#,
    ]);
    assert!(!refused.status.success());
}

/// The milestone's acceptance test, step by step.
#[test]
fn milestone_one_acceptance() {
    // About the redb file (or the terminal): once, on redb.
    let project = Project::new();
    project.quality_check(QUICK_CONFIG);
    project.counting_tool("count");
    project.tool(
        "slow",
        &format!(
            "echo slow-start >> {}\nsleep 5\necho '{{\"ok\":true}}'",
            project.runs_log().display()
        ),
    );

    // 1. Added with no daemon running: stored directly in the database.
    let first = project.add(&[
        "my-svc",
        "--tool",
        "quality-check",
        "--input",
        "{}",
        "--at",
        "now+5s",
    ]);
    assert_eq!(status_of(&project.list(), "my-svc"), ["pending"]);

    // 2-3. The daemon runs it within 10 s, and its result is stored.
    let daemon = project.daemon(&["--tick-rate", "10"]);
    let done = wait_for("my-svc completed", Duration::from_secs(10), || {
        let actions = project.list();
        let action = by_id(&actions, &first);
        (action["status"] == "completed").then_some(action)
    });
    assert_eq!(done["result"]["ok"], true);
    assert_eq!(done["result"]["data"]["passed"], 2);
    assert_eq!(done["result"]["data"]["checks"][1]["output"], "checked\n");
    assert_eq!(done["tool_name"], "quality-check");
    for field in ["due_at", "created_at", "updated_at"] {
        time(&done, field);
    }

    // 4. Added while the daemon runs: accepted through its API, and run.
    let second = project.add(&["second", "--tool", "count"]);
    wait_for("second completed", Duration::from_secs(10), || {
        (by_id(&project.list(), &second)["status"] == "completed").then_some(())
    });

    // 5. SIGKILL while a slow tool runs, with more work pending; then restart.
    let slow = project.add(&["slow", "--tool", "slow"]);
    wait_for("slow tool started", Duration::from_secs(10), || {
        (project.runs_of("slow-start") == 1).then_some(())
    });
    let later = project.add(&["later", "--tool", "count", "--at", "now+2s"]);
    daemon.kill9();
    assert!(
        project.db_path().with_extension("db.daemon.json").exists(),
        "a killed daemon leaves its file"
    );

    let daemon = project.daemon(&["--tick-rate", "10"]);
    let actions = wait_for("later completed", Duration::from_secs(15), || {
        let actions = project.list();
        (by_id(&actions, &later)["status"] == "completed").then_some(actions)
    });
    let interrupted = by_id(&actions, &slow);
    assert_eq!(interrupted["status"], "failed");
    assert!(
        interrupted["reason"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{interrupted}"
    );
    assert_eq!(by_id(&actions, &first)["status"], "completed");
    // Nothing that completed ran again; the interrupted run was not retried.
    assert_eq!(project.runs_of("second"), 1);
    assert_eq!(project.runs_of("later"), 1);
    assert_eq!(project.runs_of("slow-start"), 1);
    assert!(daemon.stop().success());
    assert!(
        !project.db_path().with_extension("db.daemon.json").exists(),
        "a clean stop removes its file"
    );
}

fn actions_due_100_and_200_ms_ahead_run_within_one_500_ms_tick(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let daemon = project.daemon(&["--tick-rate", "0.5"]);
    let a = project.add(&["a", "--tool", "count", "--at", "now+100ms"]);
    let b = project.add(&["b", "--tool", "count", "--at", "now+200ms"]);
    let actions = wait_for("both completed", Duration::from_secs(10), || {
        let actions = project.list();
        let done = [&a, &b]
            .iter()
            .all(|id| by_id(&actions, id)["status"] == "completed");
        done.then_some(actions)
    });
    for id in [&a, &b] {
        let late = lateness(&by_id(&actions, id));
        assert!(
            late < chrono::Duration::milliseconds(500),
            "{id} started {late} after it was due"
        );
    }
    drop(daemon);
}

fn an_action_due_between_heartbeats_starts_on_time_not_at_the_next_tick(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    // A one-minute heartbeat: only waking at the due time makes this pass.
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let id = project.add(&["timely", "--tool", "count", "--at", "now+1s"]);
    let action = wait_for_status(&project, &id, "completed", Duration::from_secs(10));
    let late = lateness(&action);
    assert!(
        late < chrono::Duration::milliseconds(500),
        "started {late} late"
    );
    drop(daemon);
}

fn tools_run_ten_steps_nicer_than_the_daemon_unless_told_otherwise(backend: Backend) {
    let project = Project::on(backend);
    // The tool's parent is the daemon: field 19 of /proc/<pid>/stat is the niceness.
    project.tool(
        "nice",
        r#"cat > /dev/null
printf '{"ok":true,"data":{"tool":%s,"daemon":%s}}' "$(cut -d' ' -f19 /proc/$$/stat)" "$(cut -d' ' -f19 /proc/$PPID/stat)""#,
    );
    for (flags, steps) in [(&[][..], 10), (&["--tool-nice", "0"][..], 0)] {
        let daemon = project.daemon(flags);
        let id = project.add(&["nice", "--tool", "nice"]);
        let done = wait_for_status(&project, &id, "completed", Duration::from_secs(10));
        let niceness = |who: &str| done["result"]["data"][who].as_i64().unwrap();
        assert_eq!(
            niceness("tool"),
            (niceness("daemon") + steps).min(19),
            "{flags:?}: {done}"
        );
        drop(daemon);
    }
}

fn a_recurring_action_fires_on_schedule_and_survives_a_failed_run(backend: Backend) {
    let project = Project::on(backend);
    let log = project.runs_log();
    // Fails on its second run only.
    project.tool(
        "flaky",
        &format!(
            "echo flaky >> {0}\nif [ $(wc -l < {0}) -eq 2 ]; then echo boom >&2; exit 3; fi\necho '{{\"ok\":true}}'",
            log.display()
        ),
    );
    let daemon = project.daemon(&["--tick-rate", "5"]);
    let first = project.add(&["every", "--tool", "flaky", "--every", "1s"]);
    let actions = wait_for("four runs", Duration::from_secs(15), || {
        let actions = project.list();
        let finished = actions
            .iter()
            .filter(|a| a["status"] == "completed" || a["status"] == "failed")
            .count();
        (finished >= 4).then_some(actions)
    });
    drop(daemon);
    let mut occurrences: Vec<&Value> = actions
        .iter()
        .filter(|a| a["series"] == first.as_str())
        .collect();
    occurrences.sort_by_key(|a| time(a, "due_at"));
    let start = time(occurrences[0], "due_at");
    for (k, occurrence) in occurrences.iter().enumerate() {
        // Due exactly k seconds after the first: no drift.
        assert_eq!(
            time(occurrence, "due_at") - start,
            chrono::Duration::seconds(k as i64)
        );
        if occurrence["status"] != "pending" {
            let late = lateness(occurrence);
            assert!(
                late < chrono::Duration::milliseconds(500),
                "run {k} started {late} late"
            );
        }
    }
    assert_eq!(occurrences[1]["status"], "failed");
    assert!(
        occurrences[1]["reason"]
            .as_str()
            .unwrap()
            .contains("exited with status 3; stderr: boom")
    );
    assert_eq!(
        occurrences[2]["status"], "completed",
        "it kept going after the failure"
    );
    assert_eq!(occurrences[0]["recurrence_secs"], 1.0);

    // Cancelling by the id `add` printed ends the series.
    project.sdlc_ok(&["orchestrate", "cancel", &first]);
    let pending = project
        .list()
        .iter()
        .filter(|a| a["series"] == first.as_str() && a["status"] == "pending")
        .count();
    assert_eq!(pending, 0);
}

fn twenty_concurrent_adds_against_a_running_daemon_all_land_and_run(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let daemon = project.daemon(&["--tick-rate", "10"]);
    let ids = add_concurrently(&project, 20);
    wait_for("20 runs", Duration::from_secs(20), || {
        let actions = project.list();
        let completed = actions
            .iter()
            .filter(|a| a["status"] == "completed")
            .count();
        (completed == 20).then_some(())
    });
    let actions = project.list();
    assert_eq!(actions.len(), 20);
    for id in &ids {
        by_id(&actions, id);
    }
    for i in 0..20 {
        assert_eq!(project.runs_of(&format!("job-{i}")), 1);
    }
    drop(daemon);
}

fn twenty_concurrent_adds_without_a_daemon_all_land(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let ids = add_concurrently(&project, 20);
    let actions = project.list();
    assert_eq!(actions.len(), 20);
    for id in &ids {
        assert_eq!(by_id(&actions, id)["status"], "pending");
    }
}

/// Starts `n` `add` processes at once; returns their ids (asserting all distinct).
fn add_concurrently(project: &Project, n: usize) -> Vec<String> {
    let children: Vec<_> = (0..n)
        .map(|i| {
            project
                .command(&["orchestrate", "add", &format!("job-{i}"), "--tool", "count"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "add failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), n);
    ids
}

#[test]
fn bad_input_is_refused_with_a_one_line_error_and_nothing_is_stored() {
    // About the redb file (or the terminal): once, on redb.
    let project = Project::new();
    project.tool_with_meta(
        "typed",
        r#"{"name":"typed","input_schema":{"type":"object","required":["scope"]}}"#,
        "echo '{\"ok\":true}'",
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "orchestrate",
                "add",
                "x",
                "--tool",
                "typed",
                "--input",
                "{nope",
            ],
            "--input is not valid JSON",
        ),
        (
            vec!["orchestrate", "add", "x", "--tool", "missing"],
            "no tool named 'missing'",
        ),
        (
            vec!["orchestrate", "add", "x", "--tool", "missing"],
            "available tools: typed",
        ),
        (
            vec!["orchestrate", "add", "x", "--tool", "../etc"],
            "invalid tool name '../etc'",
        ),
        (
            vec![
                "orchestrate",
                "add",
                "x",
                "--tool",
                "typed",
                "--input",
                "{}",
            ],
            "input_schema",
        ),
        (
            vec![
                "orchestrate",
                "add",
                "x",
                "--tool",
                "typed",
                "--input",
                r#"{"scope":"a"}"#,
                "--at",
                "tomorrow",
            ],
            "cannot read time 'tomorrow'",
        ),
        (
            vec![
                "orchestrate",
                "add",
                "x",
                "--tool",
                "typed",
                "--input",
                r#"{"scope":"a"}"#,
                "--every",
                "often",
            ],
            "cannot read duration 'often'",
        ),
        (
            vec!["orchestrate", "add", "", "--tool", "typed"],
            "label is empty",
        ),
        (
            vec!["orchestrate", "list", "--status", "done"],
            "unknown status 'done'",
        ),
        (
            vec!["orchestrate", "show", "not-an-id"],
            "'not-an-id' is not an action id",
        ),
        (
            vec![
                "orchestrate",
                "show",
                "6f1c1e3e-0000-4000-8000-000000000000",
            ],
            // Nothing stored yet, and a read creates no database.
            "no database at",
        ),
        (
            vec![
                "orchestrate",
                "cancel",
                "6f1c1e3e-0000-4000-8000-000000000000",
            ],
            "no action with id",
        ),
        (vec!["tool", "run", "missing"], "no tool named 'missing'"),
    ];
    for (args, expected) in cases {
        let out = project.sdlc(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected '{expected}' in: {stderr}"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: not one line: {stderr}"
        );
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    assert!(
        project.list().is_empty(),
        "a refused command stored something"
    );

    // Bad daemon flags are refused by the parser before anything starts.
    for args in [
        ["orchestrate", "--tick-rate", "0"],
        ["orchestrate", "--listen", "nowhere"],
    ] {
        let out = project.sdlc(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn commands_outside_a_project_say_how_to_find_one() {
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::SDLC)
        .args(["orchestrate", "list"])
        .current_dir(empty.path())
        .env_remove("SDLC_ROOT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no .sdlc/ folder") && stderr.contains("--root"),
        "{stderr}"
    );
}

fn a_second_daemon_on_the_same_database_refuses_to_start(backend: Backend) {
    let project = Project::on(backend);
    let daemon = project.daemon(&[]);
    let out = project.sdlc(&["orchestrate", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains(&daemon.pid().to_string()), "{stderr}");
    // The first daemon is unaffected.
    project.counting_tool("count");
    project.add(&["still-works", "--tool", "count"]);
    assert!(daemon.stop().success());
}

fn show_list_and_cancel_work_the_same_with_and_without_a_daemon(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let id = project.add(&[
        "later",
        "--tool",
        "count",
        "--at",
        "now+1h",
        "--input",
        r#"{"k":[1,2]}"#,
    ]);
    let offline = project.find(&id);
    let daemon = project.daemon(&[]);
    let online = project.find(&id);
    assert_eq!(offline, online);
    assert_eq!(online["tool_input"]["k"][1], 2);

    let table = project.sdlc_ok(&["orchestrate", "list"]);
    let header = table.lines().next().unwrap();
    for column in ["ID", "LABEL", "TOOL", "STATUS", "UPDATED_AT"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(table.contains(&id) && table.contains("pending"), "{table}");
    let record = project.sdlc_ok(&["orchestrate", "show", &id]);
    assert!(
        record.contains("\"k\"") && record.contains("status:"),
        "{record}"
    );

    project.sdlc_ok(&["orchestrate", "cancel", &id]);
    let cancelled = project.find(&id);
    assert_eq!(cancelled["status"], "canceled");
    assert!(
        cancelled["reason"]
            .as_str()
            .unwrap()
            .contains("before it ran")
    );
    let canceled = project.sdlc_ok(&["orchestrate", "list", "--status", "canceled", "--json"]);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&canceled).unwrap().len(),
        1
    );
    let again = project.sdlc(&["orchestrate", "cancel", &id]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("only a pending action"));
    drop(daemon);
}

fn the_management_api_needs_the_token(backend: Backend) {
    let project = Project::on(backend);
    let daemon = project.daemon(&[]);
    let token = daemon.token(&project);
    let mode = std::fs::metadata(project.root().join(".sdlc/orchestrator.db.daemon.json")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    let (status, body) = http(daemon.addr, "GET", "/api/orchestrator/actions", &[], b"");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing token"), "{body}");
    let wrong = [("Authorization", "Bearer nope")];
    assert_eq!(
        http(daemon.addr, "GET", "/api/orchestrator/actions", &wrong, b"").0,
        401
    );
    // Unknown routes and methods are refused before anything is learned.
    assert_eq!(
        http(daemon.addr, "PUT", "/api/orchestrator/actions", &[], b"").0,
        401
    );
    assert_eq!(
        http(daemon.addr, "GET", "/api/orchestrator/secret", &[], b"").0,
        401
    );
    // Path variants never reach a handler without the token.
    for variant in [
        "/api/orchestrator/actions/",
        "/api/orchestrator//actions",
        "/api/orchestrator/./actions",
        "//api/orchestrator/actions",
        "/api/orchestrator/actions?status=pending",
        "/API/orchestrator/actions",
    ] {
        let (status, body) = http(daemon.addr, "GET", variant, &[], b"");
        assert!(status == 401 || status == 404, "{variant}: {status} {body}");
        assert!(!body.starts_with('['), "{variant} leaked a listing: {body}");
    }

    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let (status, body) = http(daemon.addr, "GET", "/api/orchestrator/actions", &auth, b"");
    assert_eq!((status, body.as_str()), (200, "[]"));
    let json = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, body) = http(
        daemon.addr,
        "POST",
        "/api/orchestrator/actions",
        &json,
        b"{not json",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"error\""), "{body}");
}

fn the_token_can_be_fixed_by_the_environment(backend: Backend) {
    let project = Project::on(backend);
    let mut command = project.command(&["orchestrate", "--listen", "127.0.0.1:0"]);
    command.env("SDLC_ORCHESTRATOR_TOKEN", "fixed-token-for-test");
    let daemon = common::Daemon::start_command(command);
    assert_eq!(daemon.token(&project), "fixed-token-for-test");
    let auth = [("Authorization", "Bearer fixed-token-for-test")];
    assert_eq!(
        http(daemon.addr, "GET", "/api/orchestrator/status", &auth, b"").0,
        200
    );
}

fn tool_list_and_tool_run_try_tools_before_scheduling(backend: Backend) {
    let project = Project::on(backend);
    project.quality_check(QUICK_CONFIG);
    project.tool("broken", "echo '{\"ok\":false,\"error\":\"disk full\"}'");
    let listing = project.sdlc_ok(&["tool", "list"]);
    assert!(
        listing.contains("quality-check") && listing.contains("1.0.0"),
        "{listing}"
    );
    assert!(listing.contains("broken"), "{listing}");

    let out = project.sdlc_ok(&[
        "tool",
        "run",
        "quality-check",
        "--input",
        r#"{"scope":"echo"}"#,
    ]);
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["data"]["passed"], 1);
    assert_eq!(answer["data"]["checks"][0]["name"], "echo");

    let out = project.sdlc(&["tool", "run", "broken"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("disk full"));
    let out = project.sdlc(&["tool", "run", "quality-check", "--input", r#"{"bogus":1}"#]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("input_schema"));
}

on_both_backends!(
    actions_due_100_and_200_ms_ahead_run_within_one_500_ms_tick,
    an_action_due_between_heartbeats_starts_on_time_not_at_the_next_tick,
    tools_run_ten_steps_nicer_than_the_daemon_unless_told_otherwise,
    a_recurring_action_fires_on_schedule_and_survives_a_failed_run,
    twenty_concurrent_adds_against_a_running_daemon_all_land_and_run,
    twenty_concurrent_adds_without_a_daemon_all_land,
    a_second_daemon_on_the_same_database_refuses_to_start,
    show_list_and_cancel_work_the_same_with_and_without_a_daemon,
    the_management_api_needs_the_token,
    the_token_can_be_fixed_by_the_environment,
    tool_list_and_tool_run_try_tools_before_scheduling,
);
