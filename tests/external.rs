//! Runs reported from outside end to end, through the real daemon's API: a start recorded
//! as running (`POST /api/orchestrator/actions/external`), its end reported with
//! `PATCH /api/orchestrator/actions/{id}` (status in the seed's words too, outputs_uri, log,
//! duration), found by run id in history, its log read back; a daemon restart leaves it
//! running; bad reports are refused with what was wrong; an approval ends one that waits.

mod common;

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

on_both_backends!(a_run_reported_from_outside_is_tracked_like_any_run);
