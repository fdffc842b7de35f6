//! Plans end to end: the real `sdlc` binary runs plan files from a temporary project, with
//! real processes, a real database and (where it says so) a real daemon.

mod common;

use common::Backend;

use std::time::Duration;

use common::{Project, http, wait_for};
use serde_json::{Value, json};

fn write_plan(project: &Project, id: &str, plan: Value) {
    let dir = project.root().join(".sdlc/plans");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{id}.json")),
        serde_json::to_string_pretty(&plan).unwrap(),
    )
    .unwrap();
}

/// A command step running `script` with `sh -c`.
fn sh(id: &str, script: &str) -> Value {
    json!({"id": id, "command": "sh", "args": ["-c", script]})
}

fn with(mut step: Value, fields: Value) -> Value {
    for (k, v) in fields.as_object().unwrap() {
        step[k] = v.clone();
    }
    step
}

/// `plan run` to its end with no daemon: (exit code, stdout, stderr).
fn run_plan(project: &Project, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["orchestrate", "plan", "run"];
    full.extend_from_slice(args);
    let out = project.sdlc(&full);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn run_id_of(stdout: &str) -> String {
    let id = stdout.lines().next().unwrap_or_default().trim().to_string();
    assert_eq!(id.len(), 36, "the first line is the run id: {stdout}");
    id
}

fn status(project: &Project, run: &str) -> Value {
    let out = project.sdlc_ok(&["orchestrate", "plan", "status", run, "--json"]);
    serde_json::from_str(&out).unwrap()
}

fn step<'a>(detail: &'a Value, id: &str) -> &'a Value {
    detail["steps_detail"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step_id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {detail}"))
}

fn step_statuses(detail: &Value) -> Vec<(String, String)> {
    detail["steps_detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step_id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn log_lines(project: &Project) -> Vec<String> {
    std::fs::read_to_string(project.runs_log())
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn a_one_step_plan_succeeds_without_a_daemon_and_writes_its_event_log(backend: Backend) {
    let project = Project::on(backend);
    write_plan(
        &project,
        "hello",
        json!({"plan_id": "hello", "steps": [sh("say", "echo '{\"greeting\": \"hi\"}'")]}),
    );
    let (code, stdout, stderr) = run_plan(&project, &["hello"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let run = run_id_of(&stdout);
    assert!(stdout.contains("run_completed succeeded"), "{stdout}");
    let detail = status(&project, &run);
    assert_eq!(detail["status"], "succeeded");
    assert_eq!(detail["progress"], 100);
    let action = project.find(step(&detail, "say")["action_id"].as_str().unwrap());
    assert_eq!(action["result"], json!({"greeting": "hi", "exit_code": 0}));
    assert_eq!(action["run_id"], run.as_str());

    // The export: one JSON object a line, in sequence, ending with the run's completion.
    let file = project.root().join(format!(".sdlc/runs/{run}.jsonl"));
    let events: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "run_started",
            "step_ready",
            "step_started",
            "step_succeeded",
            "run_completed"
        ]
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], i as u64);
        assert_eq!(event["run_id"], run.as_str());
        assert!(event["ts"].is_string());
    }
    // The database is the truth: `plan events` works with the file gone.
    std::fs::remove_file(&file).unwrap();
    let out = project.sdlc_ok(&["orchestrate", "plan", "events", &run]);
    assert_eq!(out.lines().count(), 5, "{out}");
}

fn no_step_starts_before_its_dependency_succeeded(backend: Backend) {
    let project = Project::on(backend);
    let log = project.root().join("times.log");
    let stamp = |id: &str| {
        format!(
            "echo \"{id} start $(date +%s%N)\" >> {0}; sleep 0.2; echo \"{id} end $(date +%s%N)\" >> {0}",
            log.display()
        )
    };
    write_plan(
        &project,
        "chain",
        json!({"plan_id": "chain", "steps": [
            with(sh("c", &stamp("c")), json!({"depends_on": ["b"]})),
            with(sh("b", &stamp("b")), json!({"depends_on": ["a"]})),
            sh("a", &stamp("a")),
        ]}),
    );
    let (code, stdout, stderr) = run_plan(&project, &["chain"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&log).unwrap();
    let time = |what: &str| -> u128 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{what} ")))
            .unwrap_or_else(|| panic!("no '{what}' in {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(time("b start") >= time("a end"), "{text}");
    assert!(time("c start") >= time("b end"), "{text}");
}

fn a_timeout_fails_the_step_and_kills_its_process_group(backend: Backend) {
    let project = Project::on(backend);
    let pid_file = project.root().join("child.pid");
    write_plan(
        &project,
        "slow",
        json!({"plan_id": "slow", "steps": [with(
            sh("sleepy", &format!("sleep 10 & echo $! > {}; wait", pid_file.display())),
            json!({"timeout_sec": 1})
        )]}),
    );
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = run_plan(&project, &["slow"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the step was not stopped at 1s"
    );
    let detail = status(&project, &run_id_of(&stdout));
    assert_eq!(detail["status"], "failed");
    let reason = step(&detail, "sleepy")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("timed out after 1s"), "{reason}");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    wait_for("the grandchild to be gone", Duration::from_secs(5), || {
        common::process_gone(pid.trim()).then_some(())
    });
}

fn a_step_failing_twice_succeeds_on_its_third_attempt(backend: Backend) {
    let project = Project::on(backend);
    let count = project.root().join("count");
    let flaky = format!(
        "n=$(cat {0} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {0}; [ $n -ge 3 ]",
        count.display()
    );
    write_plan(
        &project,
        "flaky",
        json!({"plan_id": "flaky", "steps": [with(sh("flaky", &flaky), json!({"retries": 2, "retry_delay_sec": 0.1}))]}),
    );
    let (code, stdout, stderr) = run_plan(&project, &["flaky"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("step_retry").count(), 2, "{stdout}");
    let detail = status(&project, &run_id_of(&stdout));
    assert_eq!(step(&detail, "flaky")["attempt"], 3);
    assert_eq!(step(&detail, "flaky")["status"], "succeeded");
}

fn failure_policies_decide_what_runs(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("mark");
    let mark = |id: &str| json!({"id": id, "tool": "mark"});
    // abort (the default): what has not started is canceled, the run fails.
    write_plan(
        &project,
        "abort",
        json!({"plan_id": "abort", "steps": [
            sh("boom", "echo broken >&2; exit 2"),
            with(mark("after"), json!({"depends_on": ["boom"]})),
        ]}),
    );
    let (code, stdout, _) = run_plan(&project, &["abort"]);
    assert_eq!(code, 1);
    let detail = status(&project, &run_id_of(&stdout));
    assert_eq!(
        step_statuses(&detail),
        [
            ("boom".into(), "failed".into()),
            ("after".into(), "canceled".into())
        ]
    );
    let reason = step(&detail, "boom")["reason"].as_str().unwrap();
    assert!(
        reason.contains("exited with status 2") && reason.contains("broken"),
        "{reason}"
    );
    assert!(
        step(&detail, "after")["reason"]
            .as_str()
            .unwrap()
            .contains("step boom failed")
    );

    // skip_dependents: downstream skipped, the other branch goes on; continue; critical false.
    write_plan(
        &project,
        "mixed",
        json!({"plan_id": "mixed", "steps": [
            with(sh("merge", "exit 1"), json!({"on_failure": "skip_dependents"})),
            with(mark("test"), json!({"depends_on": ["merge"]})),
            with(mark("push"), json!({"depends_on": ["test"]})),
            with(sh("lint", "exit 1"), json!({"critical": false, "on_failure": "continue"})),
            with(mark("report"), json!({"depends_on": ["lint"]})),
            with(sh("docs", "exit 1"), json!({"critical": false, "on_failure": "skip_dependents"})),
            with(mark("publish"), json!({"depends_on": ["docs"]})),
        ]}),
    );
    let (code, stdout, _) = run_plan(&project, &["mixed"]);
    assert_eq!(code, 1, "a critical step failed: {stdout}");
    let detail = status(&project, &run_id_of(&stdout));
    assert_eq!(
        step_statuses(&detail),
        [
            ("merge".into(), "failed".into()),
            ("test".into(), "skipped".into()),
            ("push".into(), "skipped".into()),
            ("lint".into(), "failed".into()),
            ("report".into(), "succeeded".into()),
            ("docs".into(), "failed".into()),
            ("publish".into(), "skipped".into()),
        ]
    );
    assert_eq!(step(&detail, "test")["reason"], "dependency merge failed");
    assert_eq!(project.runs_of("mixed/report"), 1);
    assert_eq!(project.runs_of("mixed/test"), 0);

    // Only non-critical failures: the run succeeds.
    write_plan(
        &project,
        "soft",
        json!({"plan_id": "soft", "steps": [
            with(sh("lint", "exit 1"), json!({"critical": false})),
            mark("build"),
        ]}),
    );
    let (code, stdout, _) = run_plan(&project, &["soft"]);
    assert_eq!(code, 0, "{stdout}");
}

fn bad_plans_name_the_culprit_and_nothing_is_stored(backend: Backend) {
    let project = Project::on(backend);
    write_plan(
        &project,
        "cyclic",
        json!({"plan_id": "cyclic", "steps": [
            with(sh("a", "true"), json!({"depends_on": ["c"]})),
            with(sh("b", "true"), json!({"depends_on": ["a"]})),
            with(sh("c", "true"), json!({"depends_on": ["b"]})),
        ]}),
    );
    let out = project.sdlc(&["orchestrate", "plan", "check", "cyclic"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dependency cycle: a -> b -> c -> a"), "{err}");

    write_plan(
        &project,
        "broken",
        json!({"plan_id": "broken", "steps": [
            with(sh("a", "true"), json!({"depends_on": ["fetc"]})),
            {"id": "b", "tool": "no-such-tool"},
            with(sh("c", "true"), json!({"retries": "two"})),
        ]}),
    );
    let out = project.sdlc(&["orchestrate", "plan", "check", "broken"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("step 'a': depends on 'fetc', which is not a step"),
        "{err}"
    );
    assert!(err.contains("step 'c': invalid type"), "{err}");
    assert!(
        err.contains("has 2 problems"),
        "structure first, then tools: {err}"
    );

    write_plan(
        &project,
        "vars",
        json!({"plan_id": "vars", "steps": [
            json!({"id": "fetch", "command": "echo", "args": ["${REMOTE}", "${BRANCH}"]}),
        ], "vars": {"REMOTE": "origin"}}),
    );
    let out = project.sdlc_ok(&["orchestrate", "plan", "check", "vars"]);
    assert!(out.contains("needs --var BRANCH"), "{out}");
    let (code, _, stderr) = run_plan(&project, &["vars"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("step 'fetch': unknown variable ${BRANCH}")
            && stderr.contains("--var BRANCH="),
        "{stderr}"
    );
    let (code, _, stderr) = run_plan(&project, &["nope"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no plan 'nope'") && stderr.contains("cyclic"),
        "{stderr}"
    );
    let out = project.sdlc(&["orchestrate", "plan", "runs", "--json"]);
    let runs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(runs.is_empty(), "no run was stored: {runs:?}");
}

fn variables_and_results_of_earlier_steps_are_substituted(backend: Backend) {
    let project = Project::on(backend);
    project.tool("echo-input", "cat");
    write_plan(
        &project,
        "subst",
        json!({"plan_id": "subst", "vars": {"REMOTE": "origin", "SCOPE": "unit"}, "steps": [
            sh("version", "echo '{\"version\": \"1.4.2\", \"files\": [\"a.rs\"]}'"),
            {"id": "tag", "command": "echo", "args": ["${REMOTE}", "v${steps.version.result.version}", "$${NOT_A_VAR}"],
             "depends_on": ["version"], "env": {"WHERE": "${SCOPE}"}},
            {"id": "check", "tool": "echo-input", "depends_on": ["tag"],
             "input": {"scope": "${SCOPE}", "files": "${steps.version.result.files}", "branch": "${BRANCH}"}},
        ]}),
    );
    // A misspelt name is refused, naming the ones the plan knows, before anything runs.
    let (code, stdout, stderr) = run_plan(
        &project,
        &[
            "subst",
            "--var",
            "SCOPE=all",
            "--var",
            "BRANCH=main",
            "--var",
            "REMOT=fork",
        ],
    );
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stderr.contains(
            "--var REMOT: the plan has no variable REMOT (it knows BRANCH, REMOTE, SCOPE)"
        ),
        "{stderr}"
    );
    let (code, stdout, stderr) = run_plan(
        &project,
        &["subst", "--var", "SCOPE=all", "--var", "BRANCH=main"],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let detail = status(&project, &run_id_of(&stdout));
    let tag = project.find(step(&detail, "tag")["action_id"].as_str().unwrap());
    assert_eq!(tag["result"]["stdout"], "origin v1.4.2 ${NOT_A_VAR}\n");
    assert_eq!(
        tag["command"]["env"]["WHERE"], "all",
        "--var overrides the plan's vars"
    );
    let check = project.find(step(&detail, "check")["action_id"].as_str().unwrap());
    assert_eq!(
        check["result"],
        json!({"scope": "all", "files": ["a.rs"], "branch": "main"}),
        "a whole-string result reference keeps its JSON type"
    );
}

fn plan_retry_runs_only_what_did_not_succeed(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("mark");
    let gate = project.root().join("fixed");
    write_plan(
        &project,
        "retry",
        json!({"plan_id": "retry", "steps": [
            {"id": "build", "tool": "mark"},
            with(sh("test", &format!("test -f {}", gate.display())), json!({"depends_on": ["build"]})),
            {"id": "push", "tool": "mark", "depends_on": ["test"]},
            {"id": "notify", "tool": "mark"},
        ]}),
    );
    let (code, stdout, _) = run_plan(&project, &["retry"]);
    assert_eq!(code, 1);
    let run = run_id_of(&stdout);
    assert_eq!(project.runs_of("retry/build"), 1);
    assert_eq!(project.runs_of("retry/push"), 0);
    std::fs::write(&gate, "").unwrap();
    let out = project.sdlc(&["orchestrate", "plan", "retry", &run]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("running again: test, push"));
    assert_eq!(project.runs_of("retry/build"), 1, "what succeeded is kept");
    assert_eq!(project.runs_of("retry/notify"), 1);
    assert_eq!(project.runs_of("retry/push"), 1);
    assert_eq!(status(&project, &run)["status"], "succeeded");
    let out = project.sdlc(&["orchestrate", "plan", "retry", &run]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to retry"));
}

fn a_run_through_a_daemon_is_the_daemons_and_the_command_follows_it(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("mark");
    write_plan(
        &project,
        "served",
        json!({"plan_id": "served", "globals": {"max_concurrency": 2}, "steps": [
            {"id": "a", "tool": "mark"}, {"id": "b", "tool": "mark", "depends_on": ["a"]},
            {"id": "c", "tool": "mark", "depends_on": ["a"]},
        ]}),
    );
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let (code, stdout, stderr) = run_plan(&project, &["served"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let run = run_id_of(&stdout);
    assert!(stdout.contains("run_completed succeeded"), "{stdout}");
    assert_eq!(project.runs_of("served/b"), 1);

    // The API: plans by id, runs with a cursor, events as JSON lines.
    let token = daemon.token(&project);
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (code, body) = http(daemon.addr, "GET", "/api/orchestrator/plans", &headers, b"");
    assert_eq!(code, 200, "{body}");
    let plans: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plans[0]["plan_id"], "served");
    assert_eq!(plans[0]["last_run"]["run_id"], run.as_str());
    let (code, body) = http(
        daemon.addr,
        "POST",
        "/api/orchestrator/plans/served/runs",
        &headers,
        b"{\"vars\": {}}",
    );
    assert_eq!(code, 201, "{body}");
    let second = serde_json::from_str::<Value>(&body).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, body) = http(
        daemon.addr,
        "GET",
        &format!("/api/orchestrator/runs/{second}/events?follow=1"),
        &headers,
        b"",
    );
    assert_eq!(code, 200);
    let last: Value = serde_json::from_str(body.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["event"], "run_completed",
        "follow streams to the end: {body}"
    );
    let (code, body) = http(
        daemon.addr,
        "GET",
        "/api/orchestrator/runs?limit=1",
        &headers,
        b"",
    );
    assert_eq!(code, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["runs"][0]["run_id"], second.as_str());
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, body) = http(
        daemon.addr,
        "GET",
        &format!("/api/orchestrator/runs?limit=1&cursor={cursor}"),
        &headers,
        b"",
    );
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["runs"][0]["run_id"], run.as_str());
    assert!(page["next_cursor"].is_null());
    // Only plans of the project, by id: never a path or a body.
    for path in [
        "/api/orchestrator/plans/..%2Fx/runs",
        "/api/orchestrator/plans/missing/runs",
    ] {
        let (code, body) = http(daemon.addr, "POST", path, &headers, b"{}");
        assert_eq!(code, 404, "{path}: {body}");
    }
    let (code, _) = http(daemon.addr, "GET", "/api/orchestrator/runs", &[], b"");
    assert_eq!(code, 401);
    daemon.stop();
}

/// Starts a run of `plan` on a daemon and SIGKILLs the daemon once its step `slow` has
/// logged its start; returns the run's id.
fn start_then_kill_while_slow_runs(project: &Project, plan: &str) -> String {
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let out = project.sdlc_ok(&["orchestrate", "plan", "run", plan, "--detach"]);
    wait_for("the slow step to start", Duration::from_secs(20), || {
        log_lines(project)
            .contains(&"slow".to_string())
            .then_some(())
    });
    daemon.kill9();
    out.trim().to_string()
}

fn a_daemon_killed_mid_plan_resumes_it_and_no_step_runs_twice(backend: Backend) {
    let project = Project::on(backend);
    let once = project.root().join("slow.once");
    let log = project.runs_log();
    let note = |id: &str| format!("echo {id} >> {}", log.display());
    write_plan(
        &project,
        "long",
        json!({"plan_id": "long", "steps": [
            sh("first", &note("first")),
            with(
                sh("slow", &format!("{}; if [ -f {1} ]; then exit 0; fi; touch {1}; sleep 60", note("slow"), once.display())),
                json!({"depends_on": ["first"], "retries": 1})
            ),
            with(sh("last", &note("last")), json!({"depends_on": ["slow"]})),
        ]}),
    );
    let run = start_then_kill_while_slow_runs(&project, "long");
    assert_eq!(status(&project, &run)["status"], "running");
    let daemon = project.daemon(&["--tick-rate", "60"]);
    wait_for("the run to end", Duration::from_secs(30), || {
        (status(&project, &run)["status"] != "running").then_some(())
    });
    let detail = status(&project, &run);
    assert_eq!(detail["status"], "succeeded", "{detail}");
    assert_eq!(
        log_lines(&project),
        ["first", "slow", "slow", "last"],
        "first and last ran once"
    );
    let slow = step(&detail, "slow");
    assert_eq!(
        slow["attempt"], 2,
        "the interrupted attempt counted, then its retry"
    );
    daemon.stop();
}

/// The run's events as the database holds them (the API) and as its file holds them.
fn events_in_db_and_file(
    project: &Project,
    daemon: &common::Daemon,
    run: &str,
) -> (Vec<Value>, Vec<Value>) {
    let token = daemon.token(project);
    let auth = format!("Bearer {token}");
    let (code, body) = http(
        daemon.addr,
        "GET",
        &format!("/api/orchestrator/runs/{run}/events"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(code, 200, "{body}");
    let parse = |text: &str| -> Vec<Value> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let file = project.root().join(format!(".sdlc/runs/{run}.jsonl"));
    (
        parse(&body),
        parse(&std::fs::read_to_string(file).unwrap_or_default()),
    )
}

fn events_committed_by_start_up_recovery_reach_the_event_file(backend: Backend) {
    let project = Project::on(backend);
    let log = project.runs_log();
    write_plan(
        &project,
        "cut",
        json!({"plan_id": "cut", "steps": [
            sh("slow", &format!("echo slow >> {}; sleep 60", log.display())),
            with(sh("after", "true"), json!({"depends_on": ["slow"]})),
        ]}),
    );
    let run = start_then_kill_while_slow_runs(&project, "cut");
    // The next start fails the interrupted step and ends the run, in its recovery's commit.
    let daemon = project.daemon(&["--tick-rate", "60"]);
    wait_for("the run to end", Duration::from_secs(30), || {
        (status(&project, &run)["status"] == "failed").then_some(())
    });
    let (in_db, in_file) = wait_for("the file to catch up", Duration::from_secs(20), || {
        let (db, file) = events_in_db_and_file(&project, &daemon, &run);
        (file.len() >= db.len()).then_some((db, file))
    });
    assert_eq!(
        in_file, in_db,
        "the file holds every event the database holds, in order"
    );
    assert_eq!(in_file.last().unwrap()["event"], "run_completed");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(project.root().join(format!(".sdlc/runs/{run}.jsonl")))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the event file is the owner's only");
    daemon.stop();
}

fn a_plan_linked_from_outside_the_project_is_refused(backend: Backend) {
    let project = Project::on(backend);
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("ran");
    let file = outside.path().join("evil.json");
    std::fs::write(
        &file,
        serde_json::to_string(
            &json!({"plan_id": "evil", "steps": [sh("x", &format!("touch {}", marker.display()))]}),
        )
        .unwrap(),
    )
    .unwrap();
    let plans = project.root().join(".sdlc/plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::os::unix::fs::symlink(&file, plans.join("evil.json")).unwrap();
    let (code, _, stderr) = run_plan(&project, &["evil"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("leads outside the project"), "{stderr}");
    // The API runs plans by id only, and refuses it the same way.
    let daemon = project.daemon(&[]);
    let token = daemon.token(&project);
    let (status, body) = http(
        daemon.addr,
        "POST",
        "/api/orchestrator/plans/evil/runs",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        b"{}",
    );
    assert!((400..500).contains(&status), "{status}: {body}");
    assert!(body.contains("leads outside the project"), "{body}");
    daemon.stop();
    assert!(!marker.exists(), "the linked plan ran");
    // A link that stays inside the project is a plan like any other.
    std::fs::remove_file(plans.join("evil.json")).unwrap();
    let inside = project.root().join("plans-elsewhere");
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::write(
        inside.join("fine.json"),
        serde_json::to_string(&json!({"plan_id": "fine", "steps": [sh("x", "true")]})).unwrap(),
    )
    .unwrap();
    std::os::unix::fs::symlink(inside.join("fine.json"), plans.join("fine.json")).unwrap();
    let (code, stdout, stderr) = run_plan(&project, &["fine"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

fn the_status_of_a_run_of_5000_steps_is_a_bounded_summary(backend: Backend) {
    let project = Project::on(backend);
    // One failing step that the 4,999 others wait for: the run ends at once, every step
    // stored, 4,999 of them canceled.
    let mut steps = vec![sh("gate", "exit 3")];
    for i in 1..5000 {
        steps.push(with(
            sh(&format!("s{i}"), "true"),
            json!({"depends_on": ["gate"]}),
        ));
    }
    write_plan(&project, "wide", json!({"plan_id": "wide", "steps": steps}));
    let (code, stdout, stderr) = run_plan(&project, &["wide"]);
    assert_ne!(code, 0, "{stderr}");
    let run = run_id_of(&stdout);
    let shown = project.sdlc_ok(&["orchestrate", "plan", "status", &run]);
    assert!(shown.len() < 20_000, "{} bytes", shown.len());
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("gate") && l.contains("failed")),
        "{shown}"
    );
    assert!(
        shown.contains("4950 more steps not listed (5000 in all"),
        "{shown}"
    );
    assert!(
        shown.contains("1 failed, 4999 canceled") && shown.contains("--all"),
        "{shown}"
    );
    let all = project.sdlc_ok(&["orchestrate", "plan", "status", &run, "--all"]);
    assert!(all.lines().filter(|l| l.starts_with('s')).count() >= 4999);
    assert!(
        all.len() < 2_000_000,
        "--all is linear in the steps: {} bytes",
        all.len()
    );
}

fn a_schedule_and_a_webhook_route_start_plans(backend: Backend) {
    let project = Project::on(backend);
    project.tool(
        "record",
        &format!(
            // One write per line: the two runs may append at the same moment.
            "line=$(cat); printf '%s\\n' \"$line\" >> {}; echo '{{}}'",
            project.runs_log().display()
        ),
    );
    write_plan(
        &project,
        "deploy",
        json!({"plan_id": "deploy", "steps": [
            {"id": "go", "tool": "record", "input": {"branch": "${BRANCH}"}},
        ]}),
    );
    let err = project.sdlc(&["orchestrate", "add", "x", "--plan", "deploy"]);
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("unknown variable ${BRANCH}"),
        "a schedule without the variables a run needs is refused"
    );
    let id = project.add(&[
        "nightly",
        "--plan",
        "deploy",
        "--var",
        "BRANCH=nightly",
        "--cron",
        "* * * * * *",
    ]);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "deploy",
        "--plan",
        "deploy",
        "--template",
        r#"{"BRANCH": {{payload.ref}}}"#,
    ]);
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let (code, body) = http(
        daemon.addr,
        "POST",
        "/webhooks/deploy",
        &[("Content-Type", "application/json")],
        br#"{"ref": "main"}"#,
    );
    assert_eq!(code, 202, "{body}");
    let lines = wait_for(
        "a scheduled run and the webhook's run",
        Duration::from_secs(20),
        || {
            let lines = log_lines(&project);
            (lines.iter().any(|l| l.contains("\"nightly\""))
                && lines.iter().any(|l| l.contains("\"main\"")))
            .then_some(lines)
        },
    );
    assert!(
        lines.iter().all(|l| l.starts_with("{\"branch\":")),
        "{lines:?}"
    );
    let first = wait_for(
        "the first occurrence to complete",
        Duration::from_secs(20),
        || {
            let action = project.find(&id);
            (action["status"] == "completed").then_some(action)
        },
    );
    let run = first["result"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(first["run_id"], run.as_str());
    assert_eq!(status(&project, &run)["vars"]["BRANCH"], "nightly");
    let out = project.sdlc_ok(&["orchestrate", "plan", "runs", "--plan", "deploy", "--json"]);
    let runs: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(
        runs.iter().any(|r| r["vars"]["BRANCH"] == "main"),
        "{runs:?}"
    );
    daemon.stop();
}

#[test]
fn the_shipped_plans_pass_their_checks_in_this_repository() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let repo = repo.to_str().unwrap();
    for plan in ["nightly", "safe-merge"] {
        let out = std::process::Command::new(common::SDLC)
            .args(["--root", repo, "orchestrate", "plan", "check", plan])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{plan}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn the_safe_merge_plan_merges_a_branch_that_passes_and_leaves_one_that_fails(backend: Backend) {
    let project = Project::on(backend);
    let root = project.root();
    let origin = tempfile::tempdir().unwrap();
    git(origin.path(), &["init", "--bare", "-q", "-b", "main"]);
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.sdlc/plans/safe-merge.json");
    std::fs::create_dir_all(root.join(".sdlc/plans")).unwrap();
    std::fs::copy(&shipped, root.join(".sdlc/plans/safe-merge.json")).unwrap();
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["config", "user.name", "Test"]);
    git(root, &["config", "user.email", "test@example.com"]);
    std::fs::write(
        root.join(".gitignore"),
        ".sdlc/orchestrator.db*\n.sdlc/runs/\n",
    )
    .unwrap();
    std::fs::write(root.join("README.md"), "demo\n").unwrap();
    // The project's test suite, which the plan finds by itself: a branch adding broken.txt
    // fails it.
    std::fs::write(root.join("Makefile"), "test:\n\ttest ! -e broken.txt\n").unwrap();
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "start"]);
    git(
        root,
        &["remote", "add", "origin", origin.path().to_str().unwrap()],
    );
    git(root, &["push", "-q", "origin", "main"]);
    for branch in ["feature", "broken"] {
        git(root, &["checkout", "-q", "-b", branch, "main"]);
        std::fs::write(root.join(format!("{branch}.txt")), branch).unwrap();
        git(root, &["add", "."]);
        git(root, &["commit", "-q", "-m", branch]);
        git(root, &["push", "-q", "origin", branch]);
    }
    git(root, &["checkout", "-q", "main"]);

    let (code, stdout, stderr) = run_plan(&project, &["safe-merge", "--var", "BRANCH=feature"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let merged = git(origin.path(), &["log", "--format=%s", "main"]);
    assert!(merged.starts_with("Merge feature (safe-merge)"), "{merged}");
    assert!(!git(origin.path(), &["ls-tree", "main", "feature.txt"]).is_empty());

    let before = git(origin.path(), &["rev-parse", "main"]);
    git(root, &["reset", "-q", "--hard", "origin/main"]);
    let (code, stdout, _) = run_plan(&project, &["safe-merge", "--var", "BRANCH=broken"]);
    assert_eq!(code, 1, "{stdout}");
    let detail = status(&project, &run_id_of(&stdout));
    assert_eq!(step(&detail, "check")["status"], "failed");
    assert_eq!(step(&detail, "push")["status"], "canceled");
    let check = project.find(step(&detail, "check")["action_id"].as_str().unwrap());
    assert!(
        check["log_excerpt"]
            .as_str()
            .unwrap_or("")
            .contains("test ! -e broken.txt"),
        "the project's own tests ran: {check}"
    );
    assert_eq!(
        git(origin.path(), &["rev-parse", "main"]),
        before,
        "nothing was pushed"
    );
}

fn no_more_steps_of_a_run_than_its_max_concurrency_run_at_once(backend: Backend) {
    let project = Project::on(backend);
    let log = project.runs_log();
    let step = |i: usize| {
        sh(
            &format!("s{i}"),
            &format!(
                "echo start >> {0}; sleep 0.2; echo end >> {0}",
                log.display()
            ),
        )
    };
    write_plan(
        &project,
        "wide",
        json!({"plan_id": "wide", "globals": {"max_concurrency": 2}, "steps": (0..6).map(step).collect::<Vec<_>>()}),
    );
    let daemon = project.daemon(&["--tick-rate", "60", "--max-concurrency", "8"]);
    let (code, stdout, stderr) = run_plan(&project, &["wide"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (mut running, mut most) = (0i32, 0i32);
    for line in log_lines(&project) {
        running += if line == "start" { 1 } else { -1 };
        most = most.max(running);
    }
    assert_eq!(most, 2, "steps ran {most} at once");
    daemon.stop();
}

fn canceling_a_run_cancels_what_has_not_started_and_stops_running_steps(backend: Backend) {
    let project = Project::on(backend);
    let root = project.root().display().to_string();
    write_plan(
        &project,
        "held",
        json!({"plan_id": "held", "steps": [
            sh("hold", &format!("touch {root}/started; while [ ! -f {root}/go ]; do sleep 0.05; done")),
            with(sh("after", "true"), json!({"depends_on": ["hold"]})),
        ]}),
    );
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let run = project
        .sdlc_ok(&["orchestrate", "plan", "run", "held", "--detach"])
        .trim()
        .to_string();
    wait_for("the first step to start", Duration::from_secs(20), || {
        project.root().join("started").exists().then_some(())
    });
    let out = project.sdlc(&["orchestrate", "plan", "cancel", &run]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `plan events --follow` ends with the run: the running step is stopped (SIGTERM), not
    // waited for (nothing writes the file it waits for).
    let out = project.sdlc_ok(&["orchestrate", "plan", "events", &run, "--follow"]);
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "run_completed");
    assert_eq!(last["status"], "canceled");
    assert!(out.contains("\"step_canceled\""), "{out}");
    let detail = status(&project, &run);
    assert_eq!(step(&detail, "after")["status"], "canceled");
    assert_eq!(step(&detail, "after")["reason"], "canceled by the user");
    assert_eq!(step(&detail, "hold")["status"], "canceled");
    let reason = step(&detail, "hold")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.starts_with("canceled by ") && reason.contains("while it ran"),
        "{reason}"
    );
    let out = project.sdlc(&["orchestrate", "plan", "cancel", &run]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has already ended (canceled)"));
    // plan list shows each plan with its last run.
    let listed = project.sdlc_ok(&["orchestrate", "plan", "list", "--json"]);
    let plans: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(plans[0]["last_run"]["status"], "canceled");
    daemon.stop();
}

on_both_backends!(
    a_one_step_plan_succeeds_without_a_daemon_and_writes_its_event_log,
    no_step_starts_before_its_dependency_succeeded,
    a_timeout_fails_the_step_and_kills_its_process_group,
    a_step_failing_twice_succeeds_on_its_third_attempt,
    failure_policies_decide_what_runs,
    bad_plans_name_the_culprit_and_nothing_is_stored,
    variables_and_results_of_earlier_steps_are_substituted,
    plan_retry_runs_only_what_did_not_succeed,
    a_run_through_a_daemon_is_the_daemons_and_the_command_follows_it,
    a_daemon_killed_mid_plan_resumes_it_and_no_step_runs_twice,
    events_committed_by_start_up_recovery_reach_the_event_file,
    a_plan_linked_from_outside_the_project_is_refused,
    the_status_of_a_run_of_5000_steps_is_a_bounded_summary,
    a_schedule_and_a_webhook_route_start_plans,
    the_safe_merge_plan_merges_a_branch_that_passes_and_leaves_one_that_fails,
    no_more_steps_of_a_run_than_its_max_concurrency_run_at_once,
    canceling_a_run_cancels_what_has_not_started_and_stops_running_steps,
);
