//! Stopping runs end to end: `cancel` of a running action sends its process group SIGTERM
//! (a tool that cleans up ends at once) and SIGKILL after --grace (grandchildren too); the
//! run ends `canceled`, a status of its own in list, CSV and metrics; `plan cancel` stops a
//! running step the same way; a pending action canceled never runs.

mod common;

use std::time::Duration;

use common::{Backend, Project, http, process_gone, wait_for, wait_for_status};

fn a_running_tool_is_sent_sigterm_and_ends_canceled(backend: Backend) {
    let project = Project::on(backend);
    let cleaned = project.root().join("cleaned-up");
    project.tool(
        "polite",
        &format!(
            "cat > /dev/null\n\
             trap 'echo cleaning up >&2; touch {c}; exit 143' TERM\n\
             echo working >&2\n\
             while true; do sleep 0.05; done",
            c = cleaned.display()
        ),
    );
    let daemon = project.daemon(&[]);
    let id = project.add(&["polite", "--tool", "polite"]);
    wait_for("the tool to start", Duration::from_secs(30), || {
        project
            .sdlc_ok(&["orchestrate", "logs", &id])
            .contains("working")
            .then_some(())
    });
    let out = project.sdlc(&["orchestrate", "cancel", &id, "--grace", "30s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGTERM sent"));
    let done = wait_for_status(&project, &id, "canceled", Duration::from_secs(20));
    assert!(cleaned.exists(), "the tool's TERM trap ran");
    let reason = done["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("canceled by ") && reason.ends_with("while it ran"),
        "{reason}"
    );
    assert!(
        !reason.contains("SIGKILL"),
        "it stopped within the grace: {reason}"
    );
    let log = project.sdlc_ok(&["orchestrate", "logs", &id]);
    assert!(log.contains("SIGTERM sent to its process group"), "{log}");
    assert!(log.contains("cleaning up"), "{log}");

    // A status of its own: listed, exported and counted as canceled, not failed.
    let listed = project.sdlc_ok(&["orchestrate", "list", "--status", "canceled", "--json"]);
    assert!(listed.contains(&id), "{listed}");
    let failed = project.sdlc_ok(&["orchestrate", "list", "--status", "failed", "--json"]);
    assert!(!failed.contains(&id), "{failed}");
    let csv = project.sdlc_ok(&["orchestrate", "list", "--format", "csv"]);
    assert!(
        csv.lines()
            .any(|l| l.contains(&id) && l.contains(",canceled,")),
        "{csv}"
    );
    let token = daemon.token(&project);
    let (status, metrics) = http(
        daemon.addr,
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(status, 200);
    assert!(
        metrics.contains("sdlc_runs_total{tool=\"polite\",outcome=\"canceled\"} 1"),
        "{metrics}"
    );
    // Over: asking again is refused, saying why.
    let again = project.sdlc(&["orchestrate", "cancel", &id]);
    assert!(!again.status.success());
}

fn a_tool_that_ignores_sigterm_is_killed_with_its_children_after_the_grace(backend: Backend) {
    let project = Project::on(backend);
    let pids = project.root().join("pids");
    project.tool(
        "stubborn",
        &format!(
            "cat > /dev/null\ntrap '' TERM\n\
             sh -c 'trap \"\" TERM; while true; do sleep 0.05; done' &\n\
             echo $! > {p}\n\
             while true; do sleep 0.05; done",
            p = pids.display()
        ),
    );
    let _daemon = project.daemon(&[]);
    let id = project.add(&["stubborn", "--tool", "stubborn"]);
    let child = wait_for("the grandchild's pid", Duration::from_secs(30), || {
        std::fs::read_to_string(&pids)
            .ok()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
    });
    project.sdlc_ok(&["orchestrate", "cancel", &id, "--grace", "1s"]);
    let done = wait_for_status(&project, &id, "canceled", Duration::from_secs(20));
    let reason = done["reason"].as_str().unwrap();
    assert!(reason.contains("SIGKILL"), "{reason}");
    wait_for("the grandchild to be gone", Duration::from_secs(10), || {
        process_gone(&child).then_some(())
    });
    let log = project.sdlc_ok(&["orchestrate", "logs", &id]);
    assert!(log.contains("SIGKILL sent"), "{log}");
}

fn plan_cancel_stops_a_running_step(backend: Backend) {
    let project = Project::on(backend);
    let root = project.root().display().to_string();
    std::fs::create_dir_all(project.root().join(".sdlc/plans")).unwrap();
    std::fs::write(
        project.root().join(".sdlc/plans/held.json"),
        serde_json::json!({"plan_id": "held", "steps": [
            {"id": "hold", "command": "sh", "args": ["-c", format!("touch {root}/started; while true; do sleep 0.05; done")]},
            {"id": "after", "command": "true", "depends_on": ["hold"]},
        ]})
        .to_string(),
    )
    .unwrap();
    let _daemon = project.daemon(&[]);
    let started = project.sdlc_ok(&["orchestrate", "add", "held", "--plan", "held"]);
    let parent = started.trim().to_string();
    let started_file = project.root().join("started");
    wait_for("the step to start", Duration::from_secs(30), || {
        started_file.exists().then_some(())
    });
    let run = wait_for("the run id", Duration::from_secs(10), || {
        project.find(&parent)["plan_run_id"]
            .as_str()
            .map(str::to_string)
    });
    project.sdlc_ok(&["orchestrate", "plan", "cancel", &run, "--grace", "5s"]);
    let detail = wait_for("the run to end", Duration::from_secs(30), || {
        let out = project.sdlc_ok(&["orchestrate", "plan", "status", &run, "--json"]);
        let detail: serde_json::Value = serde_json::from_str(&out).unwrap();
        (detail["status"] == "canceled").then_some(detail)
    });
    let steps = detail["steps_detail"].as_array().unwrap();
    let hold = steps.iter().find(|s| s["step_id"] == "hold").unwrap();
    assert_eq!(hold["status"], "canceled", "{detail}");
    let after = steps.iter().find(|s| s["step_id"] == "after").unwrap();
    assert_eq!(after["status"], "canceled", "{detail}");
    let action = project.find(hold["action_id"].as_str().unwrap());
    assert_eq!(action["status"], "canceled");
}

fn a_pending_action_canceled_never_runs(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let id = project.add(&["later", "--tool", "count", "--at", "now+1h"]);
    project.sdlc_ok(&["orchestrate", "cancel", &id]);
    let canceled = project.find(&id);
    assert_eq!(canceled["status"], "canceled");
    assert!(
        canceled["reason"]
            .as_str()
            .unwrap()
            .ends_with("before it ran")
    );
    assert_eq!(project.runs_of("later"), 0);
}

on_both_backends!(
    a_running_tool_is_sent_sigterm_and_ends_canceled,
    a_tool_that_ignores_sigterm_is_killed_with_its_children_after_the_grace,
    plan_cancel_stops_a_running_step,
    a_pending_action_canceled_never_runs,
);
