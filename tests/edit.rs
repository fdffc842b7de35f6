//! Editing a pending action end to end (`edit <id>`, `PATCH /api/orchestrator/actions/{id}`):
//! label, input and schedule change with the checks of `add`, with and without a daemon; what
//! cannot be edited is refused and left as it was.

mod common;

use common::Backend;

use std::time::Duration;

use common::{Project, http, wait_for_status};
use serde_json::{Value, json};

fn fails_with(project: &Project, args: &[&str], text: &str) {
    let out = project.sdlc(args);
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(text), "{args:?}: expected '{text}' in: {err}");
}

fn labelled(project: &Project, label: &str) -> usize {
    let out = project.sdlc_ok(&["orchestrate", "list", "--label", label, "--format", "jsonl"]);
    out.lines().count()
}

fn edit_changes_label_input_and_schedule_with_the_checks_of_add(backend: Backend) {
    let project = Project::on(backend);
    project.tool_with_meta(
        "greet",
        r#"{"name":"greet","input_schema":{"type":"object","required":["who"],"properties":{"who":{"type":"string"}}}}"#,
        "cat",
    );
    // Without a daemon: the command checks and stores the edit itself.
    let id = project.add(&[
        "hello",
        "--tool",
        "greet",
        "--input",
        r#"{"who":"ann"}"#,
        "--at",
        "now+1h",
    ]);
    let out = project.sdlc_ok(&[
        "orchestrate",
        "edit",
        &id,
        "--label",
        "hi",
        "--input",
        r#"{"who":"bob"}"#,
    ]);
    assert_eq!(out.trim(), id);
    let edited = project.find(&id);
    assert_eq!(edited["label"], "hi");
    assert_eq!(edited["tool_input"], json!({"who": "bob"}));
    assert_eq!(edited["status"], "pending");
    assert_eq!(labelled(&project, "hi"), 1);
    assert_eq!(labelled(&project, "hello"), 0);
    // Input that fails the schema is refused, and nothing changes.
    fails_with(
        &project,
        &["orchestrate", "edit", &id, "--input", r#"{"who":1}"#],
        "who",
    );
    fails_with(&project, &["orchestrate", "edit", &id], "nothing to change");
    assert_eq!(project.find(&id)["tool_input"], json!({"who": "bob"}));

    // Through a daemon: moving it to now runs it, with what the edit gave.
    let daemon = project.daemon(&["--tick-rate", "60"]);
    project.sdlc_ok(&["orchestrate", "edit", &id, "--at", "now"]);
    let done = wait_for_status(&project, &id, "completed", Duration::from_secs(20));
    assert_eq!(done["label"], "hi");
    assert_eq!(done["result"], json!({"who": "bob"}));
    fails_with(
        &project,
        &["orchestrate", "edit", &id, "--label", "late"],
        "only a pending or paused action can be edited",
    );

    // A recurring action's next occurrence: its schedule changes, its series stays.
    let series = project.add(&[
        "every",
        "--tool",
        "greet",
        "--input",
        r#"{"who":"c"}"#,
        "--every",
        "1h",
        "--at",
        "now+1h",
    ]);
    project.sdlc_ok(&[
        "orchestrate",
        "edit",
        &series,
        "--cron",
        "0 3 * * *",
        "--tz",
        "Europe/Paris",
    ]);
    let cron = project.find(&series);
    assert_eq!(cron["cron"], "0 3 * * *");
    assert_eq!(cron["tz"], "Europe/Paris");
    assert!(cron["recurrence_secs"].is_null());
    assert_eq!(cron["series"], series.as_str());
    fails_with(
        &project,
        &["orchestrate", "edit", &series, "--cron", "99 * * * *"],
        "--cron",
    );

    // The API: PATCH with the same fields; unknown ones are named.
    let token = daemon.token(&project);
    let auth = format!("Bearer {token}");
    let path = format!("/api/orchestrator/actions/{series}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, body) = http(
        daemon.addr,
        "PATCH",
        &path,
        &headers,
        br#"{"every": "30m"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["recurrence_secs"], 1800.0);
    let (status, body) = http(
        daemon.addr,
        "PATCH",
        &path,
        &headers,
        br#"{"colour": "red"}"#,
    );
    assert!(status == 400 || status == 422, "{status}: {body}");
    assert!(body.contains("colour"), "{body}");
}

on_both_backends!(edit_changes_label_input_and_schedule_with_the_checks_of_add,);
