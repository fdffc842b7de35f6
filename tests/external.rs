//! Runs reported from outside end to end, through the real daemon's API: a start recorded
//! as running (`POST /api/orchestrator/actions/external`), its end reported with
//! `PATCH /api/orchestrator/actions/{id}` (status in the seed's words too, outputs_uri, log,
//! duration), found by run id in history, its log read back; a daemon restart leaves it
//! running; bad reports are refused with what was wrong; an approval ends one that waits.
//! The `report` commands, and every command pointed at a daemon by `SDLC_SERVER`.

mod common;

use std::io::{BufRead, Write};

use common::{Backend, Project, http};
use serde_json::{Value, json};

fn call(
    daemon: &common::Daemon,
    token: &str,
    method: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, text) = http(
        daemon.addr,
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn a_run_reported_from_outside_is_tracked_like_any_run(backend: Backend) {
    let project = Project::on(backend);
    let daemon = project.daemon(&["--tick-rate", "0.2"]);
    let token = daemon.token(&project);
    let (status, started) = call(
        &daemon,
        &token,
        "POST",
        "/api/orchestrator/actions/external",
        &json!({"task": "seo.validate", "run_id": "nightly-2026-12-01", "input": {"site": "a"}}),
    );
    assert_eq!(status, 201, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    assert_eq!(started["action"]["status"], "running");
    assert_eq!(started["action"]["trigger"], "external");

    // The daemon never runs it, and a restart leaves it running.
    let daemon = {
        daemon.stop();
        project.daemon(&["--tick-rate", "0.2"])
    };
    let token = daemon.token(&project);
    assert_eq!(project.find(&id)["status"], "running");

    let path = format!("/api/orchestrator/actions/{id}");
    let (status, bad) = call(&daemon, &token, "PATCH", &path, &json!({"status": "done"}));
    assert_eq!(status, 422, "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("status 'done'"),
        "{bad}"
    );
    let (status, done) = call(
        &daemon,
        &token,
        "PATCH",
        &path,
        &json!({
            "status": "succeeded",
            "outputs_uri": "https://ci.example/runs/7",
            "duration_ms": 4200,
            "log": "checking 12 pages\nall good\n"
        }),
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["outputs_uri"], "https://ci.example/runs/7");
    assert_eq!(done["duration_ms"], 4200);

    // Found by its run id, with its log, like any run.
    let listed = project.sdlc_ok(&[
        "orchestrate",
        "list",
        "--run-id",
        "nightly-2026-12-01",
        "--format",
        "jsonl",
    ]);
    assert!(listed.contains(&id), "{listed}");
    let log = project.sdlc_ok(&["orchestrate", "logs", &id]);
    assert!(log.contains("all good"), "{log}");
    let shown = project.sdlc_ok(&["orchestrate", "show", &id]);
    assert!(shown.contains("https://ci.example/runs/7"), "{shown}");

    // An ended run takes no more reports, and a run of the daemon's own takes none.
    let (status, again) = call(
        &daemon,
        &token,
        "PATCH",
        &path,
        &json!({"status": "failed"}),
    );
    assert_eq!(status, 409, "{again}");
    assert!(
        again["error"].as_str().unwrap().contains("ended completed"),
        "{again}"
    );
    project.tool("ok", "cat > /dev/null\necho '{\"ok\": true}'");
    let own = project.add(&["own", "--tool", "ok", "--at", "2099-01-01T00:00:00Z"]);
    let (status, refused) = call(
        &daemon,
        &token,
        "PATCH",
        &format!("/api/orchestrator/actions/{own}"),
        &json!({"status": "completed"}),
    );
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("run by the daemon"),
        "{refused}"
    );

    // A queued run starts, waits for a person, and the approval ends it.
    let (_, queued) = call(
        &daemon,
        &token,
        "POST",
        "/api/orchestrator/actions/external",
        &json!({"task": "dx.integrate", "status": "queued"}),
    );
    let queued_id = queued["id"].as_str().unwrap().to_string();
    assert_eq!(queued["action"]["status"], "pending");
    let queued_path = format!("/api/orchestrator/actions/{queued_id}");
    let (status, _) = call(
        &daemon,
        &token,
        "PATCH",
        &queued_path,
        &json!({"status": "running"}),
    );
    assert_eq!(status, 200);
    let (status, waiting) = call(
        &daemon,
        &token,
        "PATCH",
        &queued_path,
        &json!({"status": "awaiting_approval"}),
    );
    assert_eq!(status, 200, "{waiting}");
    assert_eq!(waiting["status"], "awaiting_approval");
    project.sdlc_ok(&["orchestrate", "approve", &queued_id, "--by", "alice"]);
    assert_eq!(project.find(&queued_id)["status"], "completed");
    drop(daemon);
}

/// `report start|finish|run` from the command line, with no daemon (on the database) and
/// through one: a wrapped command's output is passed through and kept as the run's log, its
/// link found, its status exited with; SIGTERM to the wrapper stops the command and the run
/// ends canceled.
fn the_report_commands_record_runs_and_wrap_a_command(backend: Backend) {
    let project = Project::on(backend);
    let id = project
        .sdlc_ok(&[
            "orchestrate",
            "report",
            "start",
            "seo.validate",
            "--run-id",
            "nightly-7",
        ])
        .trim()
        .to_string();
    assert_eq!(project.find(&id)["status"], "running");
    let mut finish = project.command(&[
        "orchestrate",
        "report",
        "finish",
        &id,
        "--status",
        "succeeded",
        "--outputs-uri",
        "https://ci.example/7",
        "--log",
        "-",
    ]);
    finish
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = finish.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"validated 12 pages\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = project.find(&id);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["outputs_uri"], "https://ci.example/7");
    assert!(
        project
            .sdlc_ok(&["orchestrate", "logs", &id])
            .contains("validated 12 pages")
    );
    let bad = project.sdlc(&["orchestrate", "report", "finish", &id, "--status", "done"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("status 'done'"));

    // Wrapped, through a daemon: the command's status is the exit status.
    let daemon = project.daemon(&["--tick-rate", "0.2"]);
    let ok = project.sdlc(&[
        "orchestrate",
        "report",
        "run",
        "code.review",
        "--run-id",
        "nightly-7",
        "--",
        "sh",
        "-c",
        "echo reviewing; echo outputs_uri=https://ci.example/pr/9; echo warn >&2",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("reviewing"));
    let failing = project.sdlc(&[
        "orchestrate",
        "report",
        "run",
        "dx.integrate",
        "--run-id",
        "nightly-7",
        "--",
        "sh",
        "-c",
        "echo broke >&2; exit 3",
    ]);
    assert_eq!(failing.status.code(), Some(3));
    let runs: Vec<Value> = serde_json::from_str(&project.sdlc_ok(&[
        "orchestrate",
        "list",
        "--run-id",
        "nightly-7",
        "--format",
        "json",
    ]))
    .unwrap();
    let by_label = |label: &str| runs.iter().find(|r| r["label"] == label).unwrap().clone();
    let review = by_label("code.review");
    assert_eq!(review["status"], "completed");
    assert_eq!(review["outputs_uri"], "https://ci.example/pr/9");
    assert_eq!(review["trigger"], "external");
    let integrate = by_label("dx.integrate");
    assert_eq!(integrate["status"], "failed");
    assert_eq!(integrate["reason"], "exited with status 3");
    let log = project.sdlc_ok(&["orchestrate", "logs", integrate["id"].as_str().unwrap()]);
    assert!(log.contains("broke"), "{log}");

    // SIGTERM to the wrapper is passed on; the run ends canceled.
    let mut wrapper = project.command(&[
        "orchestrate",
        "report",
        "run",
        "long",
        "--",
        "sh",
        "-c",
        "trap 'echo stopping; exit 143' TERM; echo started; while true; do sleep 0.05; done",
    ]);
    wrapper
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut wrapper = wrapper.spawn().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(wrapper.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), "started");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(wrapper.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = wrapper.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let long: Vec<Value> = serde_json::from_str(&project.sdlc_ok(&[
        "orchestrate",
        "list",
        "--label",
        "long",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(long[0]["status"], "canceled", "{long:?}");
    assert_eq!(long[0]["reason"], "stopped by SIGTERM");
    drop(daemon);
}

/// From a machine with no `.sdlc/`: `SDLC_SERVER`/`SDLC_TOKEN` point every command at the
/// daemon (reports, add, list, show, status); what needs the project here is refused naming
/// it, and a missing token, a bad address or a wrong token are named too.
fn every_command_goes_to_the_server_sdlc_server_names(backend: Backend) {
    let project = Project::on(backend);
    project.tool("ok", "cat > /dev/null\necho '{\"ok\": true}'");
    let daemon = project.daemon(&["--tick-rate", "0.2"]);
    let token = daemon.token(&project);
    let elsewhere = tempfile::tempdir().unwrap();
    let server = format!("http://{}", daemon.addr);
    let remote = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(common::SDLC);
        command
            .args(args)
            .current_dir(elsewhere.path())
            .env_remove("SDLC_ROOT")
            .env_remove("SDLC_DATABASE_URL")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        common::output_within(command, std::time::Duration::from_secs(60)).unwrap()
    };
    let env = [
        ("SDLC_SERVER", server.as_str()),
        ("SDLC_TOKEN", token.as_str()),
    ];
    let text = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let err = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();

    let run = remote(
        &[
            "orchestrate",
            "report",
            "run",
            "seo.validate",
            "--run-id",
            "night-3",
            "--",
            "echo",
            "hi",
        ],
        &env,
    );
    assert!(run.status.success(), "{}", err(&run));
    let listed = remote(
        &[
            "orchestrate",
            "list",
            "--run-id",
            "night-3",
            "--format",
            "json",
        ],
        &env,
    );
    assert!(listed.status.success(), "{}", err(&listed));
    let runs: Vec<Value> = serde_json::from_str(&text(&listed)).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "completed");
    let id = runs[0]["id"].as_str().unwrap();
    let shown = remote(&["orchestrate", "show", id], &env);
    assert!(text(&shown).contains("seo.validate"), "{}", err(&shown));
    let groups = remote(&["orchestrate", "groups", "--format", "csv"], &env);
    assert!(
        text(&groups).contains("\nnight-3,completed,1,"),
        "{}{}",
        text(&groups),
        err(&groups)
    );
    // An add is checked by the daemon against its project's tools.
    let added = remote(&["orchestrate", "add", "from-afar", "--tool", "ok"], &env);
    assert!(added.status.success(), "{}", err(&added));
    let unknown = remote(&["orchestrate", "add", "x", "--tool", "no-such-tool"], &env);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(err(&unknown).contains("no-such-tool"), "{}", err(&unknown));
    let status = remote(&["orchestrate", "status", "--json"], &env);
    let status: Value = serde_json::from_str(&text(&status)).unwrap();
    assert_eq!(status["daemon"]["server"], server.as_str());
    // Nothing was made here.
    assert!(!elsewhere.path().join(".sdlc").exists());

    let local = remote(&["tool", "list"], &env);
    assert_eq!(local.status.code(), Some(1));
    assert!(
        err(&local).contains("cannot go to --server"),
        "{}",
        err(&local)
    );
    let no_token = remote(
        &["orchestrate", "list"],
        &[("SDLC_SERVER", server.as_str())],
    );
    assert_eq!(no_token.status.code(), Some(1));
    assert!(err(&no_token).contains("SDLC_TOKEN"), "{}", err(&no_token));
    let bad_url = remote(
        &["orchestrate", "list"],
        &[("SDLC_SERVER", "tracker:7711/x"), ("SDLC_TOKEN", "t")],
    );
    assert!(
        err(&bad_url).contains("--server 'tracker:7711/x'"),
        "{}",
        err(&bad_url)
    );
    let wrong = remote(
        &["orchestrate", "list"],
        &[
            ("SDLC_SERVER", server.as_str()),
            ("SDLC_TOKEN", "sdlc_wrong"),
        ],
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        err(&wrong).to_lowercase().contains("token"),
        "{}",
        err(&wrong)
    );
    drop(daemon);
}

/// Run groups: a CI run's tasks reported from outside and a run of the daemon's own under
/// the same run id are summed in one group, for the CLI (table, JSON, CSV, paged) and the
/// API (keyset cursor), newest first; a bad cursor is named.
fn run_groups_sum_the_runs_of_each_run_id_for_the_cli_and_the_api(backend: Backend) {
    let project = Project::on(backend);
    project.tool("ok", "cat > /dev/null\necho '{\"ok\": true}'");
    let daemon = project.daemon(&["--tick-rate", "0.2"]);
    let token = daemon.token(&project);
    let report = |task: &str, run: &str, script: &str| {
        project.sdlc(&[
            "orchestrate",
            "report",
            "run",
            task,
            "--run-id",
            run,
            "--",
            "sh",
            "-c",
            script,
        ])
    };
    assert!(
        report("seo.validate", "gh-101", "echo fine")
            .status
            .success()
    );
    assert_eq!(
        report("code.review", "gh-101", "exit 2").status.code(),
        Some(2)
    );
    let own = project.add(&["dx.integrate", "--tool", "ok", "--run-id", "gh-101"]);
    common::wait_for_status(
        &project,
        &own,
        "completed",
        std::time::Duration::from_secs(20),
    );
    let open = project
        .sdlc_ok(&[
            "orchestrate",
            "report",
            "start",
            "dx.integrate",
            "--run-id",
            "gh-102",
        ])
        .trim()
        .to_string();

    let groups: Vec<Value> =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "groups", "--json"])).unwrap();
    let names: Vec<&str> = groups
        .iter()
        .map(|g| g["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gh-102", "gh-101"], "newest first: {groups:?}");
    let ci = &groups[1];
    assert_eq!(ci["total"], 3, "{ci}");
    assert_eq!(ci["counts"]["completed"], 2, "{ci}");
    assert_eq!(ci["counts"]["failed"], 1, "{ci}");
    assert_eq!(ci["state"], "failed");
    assert!(ci["first_started_at"].is_string() && ci["last_ended_at"].is_string());
    assert_eq!(groups[0]["state"], "in_progress");
    assert_eq!(groups[0]["counts"]["running"], 1);
    assert!(groups[0]["last_ended_at"].is_null());

    // Its report ends the open group's run; the group follows.
    project.sdlc_ok(&[
        "orchestrate",
        "report",
        "finish",
        &open,
        "--status",
        "succeeded",
    ]);
    let table = project.sdlc_ok(&["orchestrate", "groups"]);
    let line = table.lines().find(|l| l.starts_with("gh-102")).unwrap();
    assert!(
        line.contains("completed") && line.contains("1 completed"),
        "{table}"
    );
    let csv = project.sdlc_ok(&["orchestrate", "groups", "--format", "csv"]);
    let mut rows = csv.lines();
    assert!(
        rows.next()
            .unwrap()
            .starts_with("run_id,state,total,pending,running,completed,failed")
    );
    assert!(
        rows.next()
            .unwrap()
            .starts_with("gh-102,completed,1,0,0,1,0"),
        "{csv}"
    );
    assert!(
        rows.next().unwrap().starts_with("gh-101,failed,3,0,0,2,1"),
        "{csv}"
    );

    // The API pages by cursor.
    let (status, first) = call(
        &daemon,
        &token,
        "GET",
        "/api/orchestrator/run-groups?limit=1",
        &json!(null),
    );
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["items"][0]["run_id"], "gh-102");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let (_, second) = call(
        &daemon,
        &token,
        "GET",
        &format!("/api/orchestrator/run-groups?limit=1&cursor={cursor}"),
        &json!(null),
    );
    assert_eq!(second["items"][0]["run_id"], "gh-101", "{second}");
    assert!(second["next_cursor"].is_null());
    let (status, bad) = call(
        &daemon,
        &token,
        "GET",
        "/api/orchestrator/run-groups?cursor=zz",
        &json!(null),
    );
    assert_eq!(status, 400);
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("malformed cursor 'zz'"),
        "{bad}"
    );
    let (_, later) = call(
        &daemon,
        &token,
        "GET",
        "/api/orchestrator/run-groups?since=2999-01-01T00:00:00Z",
        &json!(null),
    );
    assert_eq!(later["items"], json!([]), "{later}");

    // The same from the store when no daemon runs.
    daemon.stop();
    let offline: Vec<Value> = serde_json::from_str(&project.sdlc_ok(&[
        "orchestrate",
        "groups",
        "--json",
        "--limit",
        "1",
    ]))
    .unwrap();
    assert_eq!(offline.len(), 1);
    assert_eq!(offline[0]["run_id"], "gh-102");
}

on_both_backends!(
    every_command_goes_to_the_server_sdlc_server_names,
    a_run_reported_from_outside_is_tracked_like_any_run,
    the_report_commands_record_runs_and_wrap_a_command,
    run_groups_sum_the_runs_of_each_run_id_for_the_cli_and_the_api,
);
