//! End-to-end tests of milestone 2: webhook routes, ingress over real HTTP on loopback, and
//! dispatch by the real daemon.

mod common;

use common::Backend;

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Daemon, Project, http, wait_for, wait_for_status};
use serde_json::{Value, json};

fn post(addr: SocketAddr, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let (status, text) = http(addr, "POST", path, &all, body.as_bytes());
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn api_get(daemon: &Daemon, project: &Project, path: &str) -> Value {
    let bearer = format!("Bearer {}", daemon.token(project));
    let (status, body) = http(daemon.addr, "GET", path, &[("Authorization", &bearer)], b"");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn api_actions(daemon: &Daemon, project: &Project) -> Vec<Value> {
    serde_json::from_value(api_get(daemon, project, "/api/orchestrator/actions")).unwrap()
}

fn time(action: &Value, field: &str) -> DateTime<Utc> {
    action[field].as_str().unwrap().parse().unwrap()
}

/// A tool that appends the `n` of its input to runs.log (so runs can be counted per request).
fn numbered_tool(project: &Project) {
    project.tool(
        "numbered",
        &format!(
            "n=$(python3 -c 'import json,sys; print(json.load(sys.stdin)[\"n\"])')\necho \"n$n\" >> {}\necho '{{\"ok\":true}}'",
            project.runs_log().display()
        ),
    );
}

/// The milestone's acceptance test.
fn milestone_two_acceptance(backend: Backend) {
    let project = Project::on(backend);
    project.quality_check("checks:\n  - name: ok\n    command: \"true\"\n");
    // A one-minute tick: the run must come from the wake-up, well within one tick.
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let out = project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "/webhooks/deploy",
        "--tool",
        "quality-check",
        "--template",
        "{}",
    ]);
    let route_id = out.trim().to_string();

    let (status, answer) = post(
        daemon.addr,
        "/webhooks/deploy",
        r#"{"ref":"main","by":"ci"}"#,
        &[],
    );
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();

    let action = wait_for(
        "the webhook action completed",
        Duration::from_secs(10),
        || {
            api_actions(&daemon, &project)
                .into_iter()
                .find(|a| a["id"] == id.as_str() && a["status"] == "completed")
        },
    );
    assert_eq!(action["trigger"], "webhook");
    assert_eq!(action["route_id"], route_id.as_str());
    assert_eq!(action["route_path"], "deploy");
    assert_eq!(action["raw_payload"], r#"{"ref":"main","by":"ci"}"#);
    assert_eq!(action["tool_input"], json!({}));
    assert_eq!(action["result"]["ok"], true);
    let waited = time(&action, "started_at") - time(&action, "received_at");
    assert!(
        waited < chrono::Duration::seconds(2),
        "ran {waited} after arrival with a 60 s tick"
    );

    // The same action through the CLI, and the route in the listing.
    let shown = project.find(&id);
    assert_eq!(shown["status"], "completed");
    let routes: Vec<Value> =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "webhook", "list", "--json"]))
            .unwrap();
    assert_eq!(routes[0]["url_path"], "/webhooks/deploy");
    assert_eq!(routes[0]["signed"], false);
}

fn refused_requests_store_nothing(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let daemon = project.daemon(&["--max-body", "1000"]);
    project.sdlc_ok(&["orchestrate", "webhook", "add", "open", "--tool", "count"]);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "signed",
        "--tool",
        "count",
        "--secret",
        "s3cret",
    ]);

    let small = r#"{"a":1}"#;
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
    // (path, body, headers, expected status)
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, u16);
    let cases: Vec<Case> = vec![
        ("/webhooks/unknown", small.into(), vec![], 404),
        (
            "/webhooks/../api/orchestrator/actions",
            small.into(),
            vec![],
            404,
        ),
        ("/webhooks/open%2F..%2Fx", small.into(), vec![], 404),
        ("/webhooks/%6Fpen", small.into(), vec![], 404),
        ("/webhooks/open", big.clone(), vec![], 413),
        ("/webhooks/signed", small.into(), vec![], 401),
        (
            "/webhooks/signed",
            small.into(),
            vec![("X-Hub-Signature-256", "sha256=00".into())],
            401,
        ),
        (
            "/webhooks/signed",
            small.into(),
            vec![(
                "X-Hub-Signature-256",
                sdlc_server::webhooks::sign("wrong", small.as_bytes()),
            )],
            401,
        ),
    ];
    for (path, body, headers, expected) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, answer) = post(daemon.addr, path, body, &headers);
        assert_eq!(status, *expected, "{path}: {answer}");
        assert!(
            answer["error"].is_string(),
            "{path}: errors are JSON: {answer}"
        );
    }
    // A GET on a webhook path is not ingress.
    assert_eq!(http(daemon.addr, "GET", "/webhooks/open", &[], b"").0, 405);

    let status = api_get(&daemon, &project, "/api/orchestrator/status");
    assert_eq!(status["webhook_inbox"], 0);
    assert!(
        api_actions(&daemon, &project).is_empty(),
        "a refused request was stored"
    );

    // A route's secret may come from a private file instead of argv.
    let secret_file = project.root().join("hook-secret");
    std::fs::write(&secret_file, "from-a-file\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "filed",
        "--tool",
        "count",
        "--secret-file",
        secret_file.to_str().unwrap(),
    ]);
    let (status, answer) = post(daemon.addr, "/webhooks/filed", small, &[]);
    assert_eq!(status, 401, "{answer}");
    let signature = sdlc_server::webhooks::sign("from-a-file", small.as_bytes());
    let (status, answer) = post(
        daemon.addr,
        "/webhooks/filed",
        small,
        &[("X-Hub-Signature-256", &signature)],
    );
    assert_eq!(status, 202, "{answer}");

    // The correctly signed request goes through.
    let signature = sdlc_server::webhooks::sign("s3cret", small.as_bytes());
    let (status, answer) = post(
        daemon.addr,
        "/webhooks/signed",
        small,
        &[("X-Hub-Signature-256", &signature)],
    );
    assert_eq!(status, 202, "{answer}");
    wait_for("one run", Duration::from_secs(10), || {
        (project.runs_of("webhook:signed") == 1).then_some(())
    });
}

fn a_repeated_delivery_runs_once(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let daemon = project.daemon(&[]);
    project.sdlc_ok(&["orchestrate", "webhook", "add", "push", "--tool", "count"]);
    let delivery = [("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")];
    let (_, first) = post(daemon.addr, "/webhooks/push", "{}", &delivery);
    let (status, second) = post(daemon.addr, "/webhooks/push", "{}", &delivery);
    assert_eq!(status, 202);
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["duplicate"], true);
    // A different delivery id is a different delivery.
    let (_, third) = post(
        daemon.addr,
        "/webhooks/push",
        "{}",
        &[("X-GitHub-Delivery", "other")],
    );
    assert_ne!(third["id"], first["id"]);
    wait_for("two runs", Duration::from_secs(10), || {
        let done = api_actions(&daemon, &project)
            .iter()
            .filter(|a| a["status"] == "completed")
            .count();
        (done == 2).then_some(())
    });
    assert_eq!(project.runs_of("webhook:push"), 2);
}

/// A tool `capture` that copies its input to the returned file.
fn capture_tool(project: &Project) -> std::path::PathBuf {
    let stdin_copy = project.root().join("stdin.json");
    project.tool(
        "capture",
        &format!("cat > {}\necho '{{\"ok\":true}}'", stdin_copy.display()),
    );
    stdin_copy
}

/// The input `capture` was given, once it has run (at most 10 s).
fn captured_input(stdin_copy: &std::path::Path) -> Value {
    wait_for("the tool read its input", Duration::from_secs(10), || {
        std::fs::read_to_string(stdin_copy)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
    })
}

fn payload_fields_and_headers_reach_the_tool_as_json(backend: Backend) {
    let project = Project::on(backend);
    let stdin_copy = capture_tool(&project);
    let daemon = project.daemon(&[]);
    project.sdlc_ok(&[
        "orchestrate", "webhook", "add", "github/push", "--tool", "capture", "--template",
        r#"{"ref": {{payload.ref}}, "head": {{payload.commits.0.id}}, "event": {{headers.x-github-event}}, "raw": {{payload}}}"#,
    ]);
    let body = r#"{"ref":"refs/heads/main","commits":[{"id":"abc123"}]}"#;
    let (status, _) = post(
        daemon.addr,
        "/webhooks/github/push",
        body,
        &[("X-GitHub-Event", "push")],
    );
    assert_eq!(status, 202);
    let got = captured_input(&stdin_copy);
    assert_eq!(
        got,
        json!({"ref": "refs/heads/main", "head": "abc123", "event": "push", "raw": body})
    );

    // A body the template cannot read fails the action with the reason; the daemon goes on.
    let (_, answer) = post(daemon.addr, "/webhooks/github/push", "not json", &[]);
    let id = answer["id"].as_str().unwrap().to_string();
    let failed = wait_for_status(&project, &id, "failed", Duration::from_secs(10));
    assert!(
        failed["reason"].as_str().unwrap().contains("not JSON"),
        "{failed}"
    );
}

/// Bodies are stored compressed: a large one must still reach the tool byte for byte, and
/// read back the same from the stored action after the daemon restarts.
fn a_large_body_reaches_the_tool_byte_for_byte_and_reads_back_after_a_restart(backend: Backend) {
    let project = Project::on(backend);
    let stdin_copy = capture_tool(&project);
    let daemon = project.daemon(&[]);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "big",
        "--tool",
        "capture",
        "--template",
        r#"{"raw": {{payload}}}"#,
    ]);
    let commits: Vec<String> = (0..400)
        .map(|i| format!(r#"{{"id":"c{i:04}","message":"fix \u00e9t\u00e9 {i}","url":"https://example.com/c/{i}"}}"#))
        .collect();
    let body = format!(
        r#"{{"ref":"refs/heads/main","commits":[{}]}}"#,
        commits.join(",")
    );
    assert!(body.len() > 30_000);
    let (status, answer) = post(daemon.addr, "/webhooks/big", &body, &[]);
    assert_eq!(status, 202);
    let id = answer["id"].as_str().unwrap().to_string();
    let got = captured_input(&stdin_copy);
    assert_eq!(got, json!({"raw": body}));
    wait_for_status(&project, &id, "completed", Duration::from_secs(10));
    drop(daemon);

    // Stopped: the CLI reads the stored action from the file.
    let shown: Value =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "show", &id, "--json"])).unwrap();
    assert_eq!(shown["raw_payload"], json!(body), "{shown}");
}

fn route_management_over_the_api(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let daemon = project.daemon(&[]);
    let bearer = format!("Bearer {}", daemon.token(&project));
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let add = |body: &str| {
        http(
            daemon.addr,
            "POST",
            "/api/orchestrator/webhooks",
            &headers,
            body.as_bytes(),
        )
    };

    let (status, body) =
        add(r#"{"path":"/webhooks/deploy","tool_name":"count","input_template":"{}"}"#);
    assert_eq!(status, 201, "{body}");
    let route: Value = serde_json::from_str(&body).unwrap();
    let (status, body) = add(r#"{"path":"deploy","tool_name":"count"}"#);
    assert_eq!(status, 409, "{body}");
    let (status, body) = add(r#"{"path":"x","tool_name":"nope"}"#);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("no tool named 'nope'"), "{body}");
    let (status, body) =
        add(r#"{"path":"y","tool_name":"count","input_template":"{\"a\": \"{{payload}}\"}"}"#);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("never render valid JSON"), "{body}");
    // Without the token nothing is learned or changed.
    let (status, _) = http(
        daemon.addr,
        "GET",
        "/api/orchestrator/webhooks/routes",
        &[],
        b"",
    );
    assert_eq!(status, 401);

    let listed = api_get(&daemon, &project, "/api/orchestrator/webhooks/routes");
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let path = format!(
        "/api/orchestrator/webhooks/routes/{}",
        route["id"].as_str().unwrap()
    );
    let (status, _) = http(
        daemon.addr,
        "DELETE",
        &path,
        &[("Authorization", bearer.as_str())],
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(post(daemon.addr, "/webhooks/deploy", "{}", &[]).0, 404);

    // The CLI's rm by path works with the daemon down, too.
    project.sdlc_ok(&["orchestrate", "webhook", "add", "later", "--tool", "count"]);
    assert!(daemon.stop().success());
    project.sdlc_ok(&["orchestrate", "webhook", "rm", "/webhooks/later"]);
    let routes = project.sdlc_ok(&["orchestrate", "webhook", "list", "--json"]);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&routes).unwrap().len(),
        0
    );
}

/// Also: a delivery waiting in the inbox shows (by id, in lists, in counts) as pending.
#[test]
fn an_acknowledged_delivery_survives_sigkill_before_dispatch_and_runs_once() {
    // About the redb file (or the terminal): once, on redb.
    let project = Project::new();
    numbered_tool(&project);
    project.tool(
        "blocker",
        &format!("echo blocker >> {}\nsleep 5", project.runs_log().display()),
    );
    // One slot, taken by the blocker: the next delivery stays in the inbox, undispatched.
    let daemon = project.daemon(&["--max-concurrency", "1"]);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "block",
        "--tool",
        "blocker",
    ]);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "work",
        "--tool",
        "numbered",
        "--template",
        r#"{"n": {{payload.n}}}"#,
    ]);
    assert_eq!(post(daemon.addr, "/webhooks/block", "{}", &[]).0, 202);
    wait_for("blocker running", Duration::from_secs(10), || {
        (project.runs_of("blocker") == 1).then_some(())
    });
    let (status, answer) = post(daemon.addr, "/webhooks/work", r#"{"n": 7}"#, &[]);
    assert_eq!(status, 202);
    let id = answer["id"].as_str().unwrap().to_string();
    let status = api_get(&daemon, &project, "/api/orchestrator/status");
    assert_eq!(status["webhook_inbox"], 1);
    // Waiting in the inbox, it is already the pending action it will become.
    assert_eq!(status["actions"]["pending"], 1);
    let shown: Value =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "show", &id, "--json"])).unwrap();
    assert_eq!(shown["status"], "pending", "{shown}");
    assert_eq!(shown["tool_input"], json!({"n": 7}));
    assert!(
        api_actions(&daemon, &project)
            .iter()
            .any(|a| a["id"] == id.as_str())
    );
    daemon.kill9();

    let daemon = project.daemon(&[]);
    let action = wait_for_status(&project, &id, "completed", Duration::from_secs(15));
    assert_eq!(action["tool_input"], json!({"n": 7}));
    assert_eq!(project.runs_of("n7"), 1);
    // The blocker was interrupted, not re-run.
    assert_eq!(project.runs_of("blocker"), 1);
    drop(daemon);
}

fn five_hundred_concurrent_posts_are_all_stored_and_all_run(backend: Backend) {
    let project = Project::on(backend);
    project.tool("sink", "cat > /dev/null\necho '{\"ok\":true}'");
    let daemon = project.daemon(&[]);
    project.sdlc_ok(&["orchestrate", "webhook", "add", "load", "--tool", "sink"]);
    let addr = daemon.addr;
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4000));
    let threads: Vec<_> = (0..20)
        .map(|t| {
            let body = body.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let delivery = format!("{t}-{i}");
                        let (status, answer) = post(
                            addr,
                            "/webhooks/load",
                            &body,
                            &[("X-Delivery-Id", &delivery)],
                        );
                        assert_eq!(status, 202, "{answer}");
                        answer["id"].as_str().unwrap().to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 500);
    wait_for("500 completed runs", Duration::from_secs(60), || {
        let actions = api_actions(&daemon, &project);
        let completed = actions
            .iter()
            .filter(|a| a["status"] == "completed")
            .count();
        (completed == 500).then_some(())
    });
}

/// The webhook writer lives on its own thread; a clean stop must still close the database, so
/// the next open needs no repair walk (slow on a large file, and a sign the stop was unclean).
fn a_clean_stop_after_webhook_traffic_leaves_a_closed_database(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let daemon = project.daemon(&[]);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "hook",
        "--tool",
        "count",
        "--template",
        "{}",
    ]);
    for _ in 0..20 {
        assert_eq!(post(daemon.addr, "/webhooks/hook", "{}", &[]).0, 202);
    }
    wait_for("all 20 ran", Duration::from_secs(10), || {
        (project.runs_of("webhook:hook") == 20).then_some(())
    });
    assert!(daemon.stop().success());

    let repaired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = repaired.clone();
    let db = redb::Database::builder()
        .set_repair_callback(move |_| flag.store(true, std::sync::atomic::Ordering::SeqCst))
        .create(project.db_path())
        .unwrap();
    drop(db);
    assert!(
        !repaired.load(std::sync::atomic::Ordering::SeqCst),
        "the daemon's clean stop left the database needing repair"
    );
}

on_both_backends!(
    milestone_two_acceptance,
    refused_requests_store_nothing,
    a_repeated_delivery_runs_once,
    payload_fields_and_headers_reach_the_tool_as_json,
    a_large_body_reaches_the_tool_byte_for_byte_and_reads_back_after_a_restart,
    route_management_over_the_api,
    five_hundred_concurrent_posts_are_all_stored_and_all_run,
    a_clean_stop_after_webhook_traffic_leaves_a_closed_database,
);
