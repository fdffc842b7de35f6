//! Approval gates end to end: actions and plan steps that wait for a person, approved or
//! rejected through the CLI and the API, with the real binary and a real daemon.

mod common;

use common::Backend;

use std::time::Duration;

use common::{Project, http, wait_for, wait_for_status};
use serde_json::{Value, json};

/// A tool whose result asks for approval, with a pull request to review.
fn review_tool(project: &Project) {
    project.tool(
        "open-pr",
        "cat > /dev/null\necho '{\"ok\": true, \"data\": {\"awaiting_approval\": true, \"pr\": \"https://example.com/pull/123\", \"outputs_uri\": \"https://example.com/pull/123\"}}'",
    );
}

fn fails_with(project: &Project, args: &[&str], text: &str) {
    let out = project.sdlc(args);
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(text), "{args:?}: expected '{text}' in: {err}");
}

fn a_result_asking_for_approval_waits_and_approve_and_reject_decide(backend: Backend) {
    let project = Project::on(backend);
    review_tool(&project);
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let approved = project.add(&["seo.validate", "--tool", "open-pr"]);
    let rejected = project.add(&["code.review", "--tool", "open-pr"]);
    for id in [&approved, &rejected] {
        let waiting = wait_for_status(&project, id, "awaiting_approval", Duration::from_secs(20));
        assert_eq!(waiting["approval_state"], "pending");
        assert_eq!(
            waiting["result"]["data"]["pr"],
            "https://example.com/pull/123"
        );
    }
    let out = project.sdlc_ok(&[
        "orchestrate",
        "approve",
        &approved,
        "--by",
        "alice",
        "--note",
        "lgtm",
    ]);
    assert_eq!(out.trim(), approved);
    let done = project.find(&approved);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["approval_state"], "approved");
    assert_eq!(done["approver"], "alice");
    assert_eq!(done["note"], "lgtm");
    assert!(done["approved_at"].is_string());
    assert_eq!(done["result"]["data"]["pr"], "https://example.com/pull/123");
    assert_eq!(done["outputs_uri"], "https://example.com/pull/123");
    assert!(
        done["duration_ms"].as_i64().is_some_and(|ms| ms >= 0),
        "{done}"
    );
    fails_with(
        &project,
        &["orchestrate", "approve", &approved],
        "already approved",
    );

    project.sdlc_ok(&[
        "orchestrate",
        "reject",
        &rejected,
        "--by",
        "bob",
        "--note",
        "not now",
    ]);
    let failed = project.find(&rejected);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["reason"], "rejected by bob: not now");
    assert_eq!(failed["approval_state"], "rejected");
    assert!(failed["rejected_at"].is_string());
    fails_with(
        &project,
        &["orchestrate", "approve", &rejected],
        "already rejected",
    );

    // Through the API, with who and why in the body.
    let required = project.add(&[
        "deploy",
        "--tool",
        "open-pr",
        "--requires-approval",
        "--at",
        "now",
    ]);
    wait_for_status(
        &project,
        &required,
        "awaiting_approval",
        Duration::from_secs(20),
    );
    let token = daemon.token(&project);
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (code, body) = http(
        daemon.addr,
        "POST",
        &format!("/api/orchestrator/actions/{required}/approve"),
        &headers,
        br#"{"by": "carol", "note": "ship it"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["approver"], "carol");
    assert_eq!(
        view["status"], "pending",
        "approved before it ran: it runs now"
    );
    // Its result asks for approval too: it waits again, after the run.
    let after = wait_for("the result's approval", Duration::from_secs(20), || {
        let action = project.find(&required);
        (action["status"] == "awaiting_approval" && action["attempt"] == 1).then_some(action)
    });
    assert_eq!(after["approval_state"], "pending");
    let (code, body) = http(
        daemon.addr,
        "POST",
        &format!("/api/orchestrator/actions/{required}/reject"),
        &headers,
        b"{}",
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(
        daemon.addr,
        "POST",
        &format!("/api/orchestrator/actions/{required}/reject"),
        &headers,
        b"{}",
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("already rejected"), "{body}");
    daemon.stop();
}

fn requires_approval_holds_a_plain_tool_and_only_waiting_actions_can_be_decided(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("mark");
    let id = project.add(&["gated", "--tool", "mark", "--requires-approval"]);
    let later = project.add(&["later", "--tool", "mark", "--at", "now+1h"]);
    fails_with(
        &project,
        &["orchestrate", "approve", &later],
        "only an action awaiting approval can be approved",
    );
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let waiting = wait_for_status(&project, &id, "awaiting_approval", Duration::from_secs(20));
    assert_eq!(waiting["requires_approval"], true);
    assert_eq!(waiting["attempt"], 0);
    assert_eq!(
        project.runs_of("gated"),
        0,
        "it waits for a person before its tool runs"
    );
    let listed = project.sdlc_ok(&[
        "orchestrate",
        "list",
        "--status",
        "awaiting_approval",
        "--json",
    ]);
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.len(), 1);
    daemon.stop();
    // With no daemon the command decides on the file itself: approved, it is due at once...
    project.sdlc_ok(&["orchestrate", "approve", &id, "--by", "dave"]);
    assert_eq!(project.find(&id)["status"], "pending");
    // ...and runs, once, without asking again.
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let done = wait_for_status(&project, &id, "completed", Duration::from_secs(20));
    assert_eq!(project.runs_of("gated"), 1);
    assert_eq!(done["approver"], "dave");
    // Rejected before it ran, it fails without running.
    let refused = project.add(&["refused", "--tool", "mark", "--requires-approval"]);
    wait_for_status(
        &project,
        &refused,
        "awaiting_approval",
        Duration::from_secs(20),
    );
    project.sdlc_ok(&[
        "orchestrate",
        "reject",
        &refused,
        "--by",
        "dave",
        "--note",
        "not today",
    ]);
    let failed = project.find(&refused);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["reason"], "rejected by dave: not today");
    assert_eq!(project.runs_of("refused"), 0);
    daemon.stop();
}

fn a_plan_gate_waits_for_a_person_before_its_dependents_run(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("mark");
    let dir = project.root().join(".sdlc/plans");
    std::fs::create_dir_all(&dir).unwrap();
    let plan = json!({"plan_id": "release", "steps": [
        {"id": "build", "tool": "mark"},
        {"id": "sign-off", "approval": {"prompt": "ship the build?"}, "depends_on": ["build"]},
        {"id": "deploy", "tool": "mark", "depends_on": ["sign-off"]},
    ]});
    std::fs::write(dir.join("release.json"), plan.to_string()).unwrap();
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let status = |run: &str| -> Value {
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "plan", "status", run, "--json"]))
            .unwrap()
    };
    let gate_of = |detail: &Value| -> Value {
        detail["steps_detail"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step_id"] == "sign-off")
            .unwrap()
            .clone()
    };
    for (verdict, expected) in [("approve", "succeeded"), ("reject", "failed")] {
        let run = project
            .sdlc_ok(&["orchestrate", "plan", "run", "release", "--detach"])
            .trim()
            .to_string();
        let gate = wait_for("the gate to wait", Duration::from_secs(20), || {
            let gate = gate_of(&status(&run));
            (gate["status"] == "awaiting_approval").then_some(gate)
        });
        assert_eq!(gate["kind"], "approval");
        let before = project.runs_of("release/deploy");
        let action = gate["action_id"].as_str().unwrap().to_string();
        assert_eq!(project.find(&action)["approval_state"], "pending");
        // A step named that the run does not have is refused, naming the ones it has.
        let wrong = project.sdlc(&["orchestrate", verdict, &run, "--step", "signoff"]);
        assert!(!wrong.status.success());
        assert!(
            String::from_utf8_lossy(&wrong.stderr)
                .contains("has no step signoff: its steps are build, sign-off, deploy"),
            "{}",
            String::from_utf8_lossy(&wrong.stderr)
        );
        // Decided by the run's id and the step's, as a person reading the run would.
        project.sdlc_ok(&[
            "orchestrate",
            verdict,
            &run,
            "--step",
            "sign-off",
            "--by",
            "erin",
        ]);
        let out = project.sdlc_ok(&["orchestrate", "plan", "events", &run, "--follow"]);
        assert!(out.contains("\"step_awaiting_approval\""), "{out}");
        let detail = status(&run);
        assert_eq!(detail["status"], expected, "{detail}");
        let ran = project.runs_of("release/deploy") - before;
        assert_eq!(
            ran,
            usize::from(verdict == "approve"),
            "deploy runs only when approved"
        );
        if verdict == "reject" {
            assert_eq!(gate_of(&detail)["reason"], "rejected by erin");
        }
    }
    daemon.stop();
}

fn an_approval_nobody_gives_in_time_is_rejected(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("mark");
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let id = project.add(&[
        "gated",
        "--tool",
        "mark",
        "--requires-approval",
        "--approval-timeout",
        "1s",
    ]);
    let waiting = wait_for_status(&project, &id, "awaiting_approval", Duration::from_secs(20));
    let failed = wait_for_status(&project, &id, "failed", Duration::from_secs(20));
    assert_eq!(failed["reason"], "approval timed out");
    assert_eq!(failed["approval_state"], "rejected");
    let waited = chrono::DateTime::parse_from_rfc3339(failed["rejected_at"].as_str().unwrap())
        .unwrap()
        - chrono::DateTime::parse_from_rfc3339(waiting["updated_at"].as_str().unwrap()).unwrap();
    assert!(
        waited >= chrono::Duration::milliseconds(990),
        "rejected after {waited}"
    );
    fails_with(
        &project,
        &["orchestrate", "approve", &id],
        "already rejected",
    );

    let dir = project.root().join(".sdlc/plans");
    std::fs::create_dir_all(&dir).unwrap();
    let plan = json!({"plan_id": "gate", "steps": [
        {"id": "wait", "approval": {"prompt": "go?", "timeout_sec": 0.5}},
        {"id": "after", "tool": "mark", "depends_on": ["wait"]},
    ]});
    std::fs::write(dir.join("gate.json"), plan.to_string()).unwrap();
    let out = project.sdlc(&["orchestrate", "plan", "run", "gate"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the run fails when its gate times out"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("step_failed wait: approval timed out"),
        "{text}"
    );
    assert_eq!(project.runs_of("gate/after"), 0);
    let err = project.sdlc(&[
        "orchestrate",
        "add",
        "x",
        "--tool",
        "mark",
        "--approval-timeout",
        "0s",
    ]);
    assert!(
        String::from_utf8_lossy(&err.stderr)
            .contains("--approval-timeout: must be longer than zero")
    );
    daemon.stop();
}

on_both_backends!(
    a_result_asking_for_approval_waits_and_approve_and_reject_decide,
    requires_approval_holds_a_plain_tool_and_only_waiting_actions_can_be_decided,
    a_plan_gate_waits_for_a_person_before_its_dependents_run,
    an_approval_nobody_gives_in_time_is_rejected,
);
