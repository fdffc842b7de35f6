//! `GET /metrics` end to end: the real daemon runs a known sequence of tools, webhook
//! deliveries, a plan and a notification, and the scrape reports exactly those, in the
//! Prometheus text format; without a token it is refused, unless `--metrics-open` and the
//! scraper is on loopback.

mod common;

use common::Backend;

use std::net::SocketAddr;
use std::time::Duration;

use common::receiver::Receiver;
use common::{Project, http, http_answer, wait_for, wait_for_status};
use serde_json::json;

/// The value of the sample `series` (name and labels exactly as exported), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn scrape(addr: SocketAddr, token: &str) -> String {
    let bearer = format!("Bearer {token}");
    let answer = http_answer(addr, "GET", "/metrics", &[("Authorization", &bearer)], b"");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    answer.body
}

fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    http(addr, "POST", path, headers, body.as_bytes()).0
}

fn a_known_sequence_is_counted_exactly(backend: Backend) {
    let project = Project::on(backend);
    project.tool("ok", "cat > /dev/null\necho '{\"ok\": true}'");
    project.tool(
        "bad",
        "cat > /dev/null\necho '{\"ok\": false, \"error\": \"no\"}'",
    );
    let dir = project.root().join(".sdlc/plans");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hello.json"),
        json!({"plan_id": "hello", "steps": [{"id": "say", "command": "true"}]}).to_string(),
    )
    .unwrap();
    let receiver = Receiver::start(0, 200);
    let daemon = project.daemon(&[
        "--tick-rate",
        "60",
        "--max-concurrency",
        "3",
        "--max-body",
        "100",
        "--notify-webhook",
        &receiver.url("hook"),
    ]);
    let token = daemon.token(&project);

    let first = project.add(&["one", "--tool", "ok"]);
    let second = project.add(&["two", "--tool", "ok"]);
    let failed = project.add(&["three", "--tool", "bad"]);
    for id in [&first, &second] {
        wait_for_status(&project, id, "completed", Duration::from_secs(20));
    }
    wait_for_status(&project, &failed, "failed", Duration::from_secs(20));

    project.sdlc_ok(&["orchestrate", "webhook", "add", "push", "--tool", "ok"]);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "signed",
        "--tool",
        "ok",
        "--secret",
        "s3cret",
    ]);
    let delivery = [("X-GitHub-Delivery", "d-1")];
    assert_eq!(post(daemon.addr, "/webhooks/push", &delivery, "{}"), 202);
    assert_eq!(post(daemon.addr, "/webhooks/push", &delivery, "{}"), 202);
    assert_eq!(post(daemon.addr, "/webhooks/signed", &[], "{}"), 401);
    assert_eq!(post(daemon.addr, "/webhooks/nowhere", &[], "{}"), 404);
    let large = "x".repeat(200);
    assert_eq!(post(daemon.addr, "/webhooks/push", &[], &large), 413);

    let out = project.sdlc_ok(&["orchestrate", "plan", "run", "hello", "--detach"]);
    let run = out.lines().next().unwrap().trim().to_string();
    wait_for("the plan run to succeed", Duration::from_secs(20), || {
        let out = project.sdlc_ok(&["orchestrate", "plan", "status", &run, "--json"]);
        let detail: serde_json::Value = serde_json::from_str(&out).unwrap();
        (detail["status"] == "succeeded").then_some(())
    });

    // Everything above has finished: wait for the webhook's run and the notification of
    // the failure, then read the figures.
    let text = wait_for("the counts to settle", Duration::from_secs(20), || {
        let text = scrape(daemon.addr, &token);
        let webhook_run = sample(&text, "sdlc_runs_total{tool=\"ok\",outcome=\"completed\"}");
        let sent = sample(
            &text,
            "sdlc_notifications_total{kind=\"webhook\",outcome=\"sent\"}",
        );
        (webhook_run == Some(3.0) && sent == Some(1.0)).then_some(text)
    });
    let expect = [
        ("sdlc_runs_total{tool=\"bad\",outcome=\"failed\"}", 1.0),
        ("sdlc_run_duration_seconds_count{tool=\"ok\"}", 3.0),
        ("sdlc_run_duration_seconds_count{tool=\"bad\"}", 1.0),
        (
            "sdlc_webhook_deliveries_total{route=\"push\",outcome=\"accepted\",status=\"202\"}",
            1.0,
        ),
        (
            "sdlc_webhook_deliveries_total{route=\"push\",outcome=\"duplicate\",status=\"202\"}",
            1.0,
        ),
        (
            "sdlc_webhook_deliveries_total{route=\"signed\",outcome=\"rejected_signature\",status=\"401\"}",
            1.0,
        ),
        (
            "sdlc_webhook_deliveries_total{route=\"\",outcome=\"no_route\",status=\"404\"}",
            1.0,
        ),
        (
            "sdlc_webhook_deliveries_total{route=\"push\",outcome=\"too_large\",status=\"413\"}",
            1.0,
        ),
        ("sdlc_plan_runs_total{outcome=\"succeeded\"}", 1.0),
        // The two deliveries that reached the store, one commit each (sent one by one).
        ("sdlc_commits_total{writer=\"ingest\"}", 2.0),
        ("sdlc_actions{status=\"failed\"}", 1.0),
        ("sdlc_actions{status=\"running\"}", 0.0),
        ("sdlc_webhook_inbox_depth", 0.0),
        ("sdlc_slots_busy", 0.0),
        ("sdlc_slots_max", 3.0),
        (
            "sdlc_notifications_total{kind=\"webhook\",outcome=\"sent\"}",
            1.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    }
    // Completed: the three ok runs and the plan's step (`plan run` starts the run itself, not
    // through an action).
    assert_eq!(
        sample(&text, "sdlc_actions{status=\"completed\"}"),
        Some(4.0),
        "{text}"
    );
    // Each tool start is in the lateness histogram: the three direct runs, the webhook's and
    // the plan's step.
    assert_eq!(
        sample(&text, "sdlc_run_lateness_seconds_count"),
        Some(5.0),
        "{text}"
    );
    let engine_commits = sample(&text, "sdlc_commits_total{writer=\"engine\"}").unwrap();
    assert!(engine_commits >= 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "sdlc_commit_duration_seconds_count{writer=\"engine\"}"
        ),
        Some(engine_commits)
    );
    assert!(text.contains("sdlc_build_info{version=\""), "{text}");

    // OpenMetrics for a scraper that asks for it.
    let bearer = format!("Bearer {token}");
    let open = http_answer(
        daemon.addr,
        "GET",
        "/metrics",
        &[
            ("Authorization", &bearer),
            (
                "Accept",
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            ),
        ],
        b"",
    );
    assert_eq!(open.status, 200);
    assert!(
        open.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        open.headers
    );
    assert!(open.body.ends_with("# EOF\n"), "{}", open.body);
}

fn a_scrape_needs_the_token_unless_open_to_loopback(backend: Backend) {
    let project = Project::on(backend);
    let daemon = project.daemon(&[]);
    let (status, body) = http(daemon.addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing token"), "{body}");
    let (status, body) = http(
        daemon.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    assert_eq!(status, 401, "{body}");
    drop(daemon);

    let daemon = project.daemon(&["--metrics-open"]);
    let (status, body) = http(daemon.addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("sdlc_actions{status=\"pending\"} 0"),
        "{body}"
    );
    // Open to /metrics only: the API still wants the token.
    let (status, _) = http(daemon.addr, "GET", "/api/orchestrator/actions", &[], b"");
    assert_eq!(status, 401);
}

on_both_backends!(
    a_known_sequence_is_counted_exactly,
    a_scrape_needs_the_token_unless_open_to_loopback,
);
