//! The dashboard in a real browser: Debian's Chromium (`/usr/bin/chromium`, headless) driven
//! by playwright-core from npm (`tests/browser/dashboard.mjs`), against a real daemon with
//! real tools. Each test sets the scene here, runs one scenario, and checks the database.
//!
//! Needs `chromium`, `nodejs` and `npm` (Debian packages); `tests/browser/node_modules` is
//! installed with `npm ci` on first use. Without them the tests fail saying what to install:
//! they are never skipped.
//!
//! Screenshots of each page go to `target/browser-screenshots/`; with
//! `SDLC_UPDATE_SCREENSHOTS=1` also to `docs/screenshots/` (the ones README shows).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{Daemon, Project, wait_for_status};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chromium() -> PathBuf {
    std::env::var_os("SDLC_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Checks the browser and Node are there and installs playwright-core once per test run.
fn prerequisites() -> &'static Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY.get_or_init(|| {
        if !chromium().exists() {
            return Err(format!(
                "{} is missing: install Debian's Chromium (apt-get install chromium), or point SDLC_CHROMIUM at a Chromium binary",
                chromium().display()
            ));
        }
        let node = Command::new("node").arg("--version").output();
        if !node.is_ok_and(|out| out.status.success()) {
            return Err("node is missing: install Node.js and npm (apt-get install nodejs npm)".into());
        }
        let dir = repo().join("tests/browser");
        if !dir.join("node_modules/playwright-core/package.json").exists() {
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .output()
                .map_err(|err| format!("cannot run npm (apt-get install npm): {err}"))?;
            if !out.status.success() {
                return Err(format!(
                    "npm ci in {} failed: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    })
}

fn screenshot_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../browser-screenshots")];
    if std::env::var_os("SDLC_UPDATE_SCREENSHOTS").is_some() {
        dirs.push(repo().join("docs/screenshots"));
    }
    dirs
}

/// Runs `scenario` against `daemon`, logged in through `sdlc orchestrate ui`; its result.
fn scenario(project: &Project, daemon: &Daemon, name: &str, args: Value) -> Value {
    if let Err(missing) = prerequisites() {
        panic!("the browser tests cannot run: {missing}");
    }
    let login = project.sdlc_ok(&["orchestrate", "ui"]);
    let shots = screenshot_dirs();
    let out = Command::new("node")
        .arg(repo().join("tests/browser/dashboard.mjs"))
        .arg(name)
        .env("SDLC_BASE", format!("http://{}", daemon.addr))
        .env("SDLC_LOGIN", login.trim())
        .env("SDLC_TOKEN", daemon.token(project))
        .env("SDLC_SHOTS", &shots[0])
        .env("SDLC_ARGS", args.to_string())
        .env("SDLC_CHROMIUM", chromium())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser scenario {name} failed:\n{stderr}\n{stdout}\ndaemon:\n{}",
        daemon.stderr()
    );
    for extra in &shots[1..] {
        std::fs::create_dir_all(extra).unwrap();
        for entry in std::fs::read_dir(&shots[0]).unwrap().flatten() {
            std::fs::copy(entry.path(), extra.join(entry.file_name())).unwrap();
        }
    }
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|_| panic!("scenario {name} printed {stdout}"))
}

#[test]
fn an_action_runs_and_its_row_turns_completed_without_a_reload() {
    let project = Project::new();
    project.tool(
        "slow-echo",
        "cat > /dev/null\nsleep 1\necho '{\"ok\":true}'",
    );
    let daemon = project.daemon(&[]);
    let seen = scenario(&project, &daemon, "live", json!({ "tool": "slow-echo" }));
    let id = seen["id"].as_str().unwrap();
    // The row was first shown before the run ended, then turned completed in place.
    assert_ne!(seen["first_status"], "completed", "{seen}");
    assert_eq!(project.find(id)["status"], "completed");
}

#[test]
fn an_action_page_shows_its_log_while_it_runs() {
    let project = Project::new();
    let go = project.root().join("go-on");
    project.tool(
        "build",
        &format!(
            "cat > /dev/null\necho 'compiling step 1 <b>bold</b>' >&2\n\
             while [ ! -e {go} ]; do sleep 0.05; done\n\
             echo 'step 2 done'\necho '{{\"ok\": true}}'",
            go = go.display()
        ),
    );
    let daemon = project.daemon(&[]);
    let id = project.add(&["build", "--tool", "build"]);
    wait_for_status(&project, &id, "running", Duration::from_secs(20));
    let seen = scenario(&project, &daemon, "log", json!({ "id": id, "go": go }));
    let live = seen["live"].as_str().unwrap();
    assert!(live.contains("compiling step 1 <b>bold</b>"), "{seen}");
    assert!(
        !live.contains("step 2"),
        "shown before the tool went on: {seen}"
    );
    let whole = seen["whole"].as_str().unwrap();
    assert!(whole.ends_with("step 2 done\n{\"ok\": true}\n"), "{seen}");
    assert_eq!(seen["markup"], 0, "a tool's output is text, never markup");
    assert_eq!(project.find(&id)["status"], "completed");
}

#[test]
fn history_filters_pages_and_downloads_the_csv() {
    let project = Project::new();
    project.counting_tool("echo");
    project.tool(
        "fail",
        "cat > /dev/null\necho '{\"ok\":false,\"error\":\"broke, \\\"badly\\\"\"}'",
    );
    let daemon = project.daemon(&[]);
    let mut ids = Vec::new();
    for n in 0..112 {
        let tool = if n % 10 == 0 { "fail" } else { "echo" };
        ids.push(project.add(&["batch-a", "--tool", tool]));
    }
    project.add(&["other", "--tool", "echo"]);
    for id in &ids {
        let done = wait_for_status_any(&project, id);
        assert!(done == "completed" || done == "failed", "{done}");
    }
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("actions.csv");
    let jsonl_path = dir.path().join("actions.jsonl");
    let seen = scenario(
        &project,
        &daemon,
        "history",
        json!({ "label": "batch-a", "csv": csv_path, "jsonl": jsonl_path }),
    );
    assert_eq!(seen["pages"], json!([50, 50, 12]), "{seen}");
    assert_eq!(seen["total"], 112);
    assert_eq!(seen["failed"], 12);
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "id");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 112);
    let status = header.iter().position(|h| h == "status").unwrap();
    let reason = header.iter().position(|h| h == "reason").unwrap();
    let failed: Vec<_> = rows.iter().filter(|r| &r[status] == "failed").collect();
    assert_eq!(failed.len(), 12);
    assert!(
        failed[0][reason].contains("broke, \"badly\""),
        "{:?}",
        failed[0]
    );
    let lines = std::fs::read_to_string(&jsonl_path).unwrap();
    assert_eq!(lines.lines().count(), 112);
    for line in lines.lines() {
        let action: Value = serde_json::from_str(line).unwrap();
        assert_eq!(action["label"], "batch-a");
    }
}

#[test]
fn a_run_group_turns_completed_live_and_links_to_its_runs() {
    let project = Project::new();
    let daemon = project.daemon(&[]);
    let done = project.sdlc(&[
        "orchestrate",
        "report",
        "run",
        "seo.validate",
        "--run-id",
        "gh-7",
        "--",
        "true",
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let open = project
        .sdlc_ok(&[
            "orchestrate",
            "report",
            "start",
            "code.review",
            "--run-id",
            "gh-7",
        ])
        .trim()
        .to_string();
    let seen = scenario(
        &project,
        &daemon,
        "groups",
        json!({ "run_id": "gh-7", "open": open }),
    );
    assert_eq!(seen["before"], "in_progress", "{seen}");
    assert_eq!(seen["after"], "completed", "{seen}");
    assert_eq!(seen["filter"], "gh-7", "{seen}");
    let runs = seen["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{seen}");
    assert!(runs.iter().any(|id| id == &json!(open)), "{seen}");
}

fn wait_for_status_any(project: &Project, id: &str) -> String {
    common::wait_for("the run to end", Duration::from_secs(60), || {
        let status = project.find(id)["status"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (status == "completed" || status == "failed").then_some(status)
    })
}

#[test]
fn an_awaiting_action_is_approved_from_the_overview_with_a_note() {
    let project = Project::new();
    project.tool(
        "open-pr",
        "cat > /dev/null\necho '{\"ok\": true, \"data\": {\"awaiting_approval\": true, \"outputs_uri\": \"https://example.com/pull/7\"}}'",
    );
    let daemon = project.daemon(&[]);
    let id = project.add(&["seo.validate", "--tool", "open-pr"]);
    wait_for_status(&project, &id, "awaiting_approval", Duration::from_secs(20));
    let seen = scenario(
        &project,
        &daemon,
        "approve",
        json!({ "id": id, "note": "looks right to me" }),
    );
    assert_eq!(seen["approver"], "dashboard");
    let done = project.find(&id);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["approval_state"], "approved");
    assert_eq!(done["approver"], "dashboard");
    assert_eq!(done["note"], "looks right to me");
}

#[test]
fn a_pending_action_is_edited_on_its_page() {
    let project = Project::new();
    project.counting_tool("echo");
    let daemon = project.daemon(&[]);
    let id = project.add(&["before", "--tool", "echo", "--at", "now+2h"]);
    let seen = scenario(
        &project,
        &daemon,
        "edit",
        json!({ "id": id, "label": "after", "input": { "service": "billing" } }),
    );
    assert!(
        seen["refused"].as_str().unwrap().contains("Mars/Olympus"),
        "{seen}"
    );
    let edited = project.find(&id);
    assert_eq!(edited["label"], "after");
    assert_eq!(edited["tool_input"], json!({ "service": "billing" }));
    assert_eq!(edited["recurrence_secs"], 600.0);
    assert_eq!(edited["status"], "pending");
}

#[test]
fn without_a_session_pages_ask_for_the_token_and_cross_origin_posts_are_refused() {
    let project = Project::new();
    project.counting_tool("echo");
    let daemon = project.daemon(&[]);
    let id = project.add(&["keep-me", "--tool", "echo", "--at", "now+2h"]);
    let seen = scenario(&project, &daemon, "guard", json!({ "id": id }));
    assert_eq!(seen["forged"], 403, "{seen}");
    assert!(
        seen["forged_body"]
            .as_str()
            .unwrap()
            .contains("cross-origin"),
        "{seen}"
    );
    // Whatever the other site's page managed to send, nothing was canceled.
    assert_eq!(project.find(&id)["status"], "pending");
}

#[test]
fn a_plan_run_started_from_its_page_reaches_succeeded_live() {
    let project = Project::new();
    let step = |id: &str, deps: &[&str]| {
        json!({
            "id": id,
            "command": "sh",
            "args": ["-c", format!("sleep 1; echo {id} ${{target}} >&2")],
            "depends_on": deps,
        })
    };
    let plan = json!({
        "plan_id": "release",
        "description": "build, test both ways, ship",
        "vars": { "target": "staging" },
        "steps": [step("build", &[]), step("unit", &["build"]), step("e2e", &["build"]), step("ship", &["unit", "e2e"])],
    });
    project.plan("release", &plan);
    let daemon = project.daemon(&[]);
    let seen = scenario(
        &project,
        &daemon,
        "plan",
        json!({ "plan": "release", "target": "production" }),
    );
    // The page saw steps running before they succeeded: it followed the run live.
    let seen_states: Vec<String> = serde_json::from_value(seen["seen"].clone()).unwrap();
    assert!(
        seen_states.iter().any(|s| s.ends_with(":running")),
        "{seen}"
    );
    let run = project.sdlc_ok(&[
        "orchestrate",
        "plan",
        "status",
        seen["run_id"].as_str().unwrap(),
        "--json",
    ]);
    let run: Value = serde_json::from_str(&run).unwrap();
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["vars"]["target"], "production");
}

#[test]
fn a_refused_webhook_request_shows_on_the_webhooks_page() {
    let project = Project::new();
    project.counting_tool("echo");
    let daemon = project.daemon(&[]);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "github/push",
        "--tool",
        "echo",
        "--secret",
        "s3cret",
    ]);
    let seen = scenario(
        &project,
        &daemon,
        "webhooks",
        json!({ "tool": "echo", "signed": "github/push" }),
    );
    assert!(
        seen["previewed"]
            .as_str()
            .unwrap()
            .contains("refs/heads/main"),
        "{seen}"
    );
    assert!(
        seen["why"]
            .as_str()
            .unwrap()
            .contains("X-Hub-Signature-256"),
        "{seen}"
    );
    let id = seen["accepted_id"].as_str().unwrap();
    let action = wait_for_status(&project, id, "completed", Duration::from_secs(20));
    assert_eq!(action["tool_input"], json!({ "ref": "refs/heads/main" }));
}

#[test]
fn a_schedule_shows_its_outcomes_and_a_tool_is_tried_from_its_page() {
    let project = Project::new();
    project.counting_tool("echo");
    project.tool_with_meta(
        "greet",
        r#"{"name":"greet","description":"says hello","input_schema":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}}"#,
        "read input\necho \"{\\\"ok\\\":true,\\\"data\\\":$input}\"",
    );
    let daemon = project.daemon(&[]);
    let id = project.add(&["heartbeat", "--tool", "echo", "--every", "1s"]);
    common::wait_for("three runs", Duration::from_secs(30), || {
        (project.runs_of("heartbeat") >= 3).then_some(())
    });
    let series = project.find(&id)["series"].as_str().unwrap().to_string();
    let seen = scenario(
        &project,
        &daemon,
        "schedules",
        json!({ "series": series, "tool": "greet" }),
    );
    assert!(seen["marks"].as_u64().unwrap() >= 3, "{seen}");
    assert_eq!(seen["answer"]["ok"], true, "{seen}");
    assert_eq!(
        seen["answer"]["result"]["data"]["name"], "dashboard",
        "{seen}"
    );
}
