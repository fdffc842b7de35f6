//! The dashboard's HTTP side end to end, with the real binary and a real daemon: login
//! tokens and sessions, CSRF, every page with and without a session, and the event stream
//! (framing, Last-Event-ID, a resync after a daemon restart).

mod common;

use common::Backend;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Daemon, HttpAnswer, Project, http_answer, wait_for, wait_for_status};
use serde_json::Value;

/// Logs in with `sdlc orchestrate ui`'s address; returns the `Cookie` header and the page's
/// CSRF token.
fn log_in(project: &Project, daemon: &Daemon) -> (String, String) {
    let url = project.sdlc_ok(&["orchestrate", "ui"]);
    let path = url
        .trim()
        .strip_prefix(&format!("http://{}", daemon.addr))
        .unwrap_or_else(|| panic!("ui printed {url}"))
        .to_string();
    let answer = http_answer(daemon.addr, "GET", &path, &[], b"");
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.header("location"), Some("/"));
    let set_cookie = answer.header("set-cookie").expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    // The token worked once.
    let again = http_answer(daemon.addr, "GET", &path, &[], b"");
    assert_eq!(again.status, 401, "a used login token: {}", again.body);
    assert!(again.body.contains("sdlc orchestrate ui"), "{}", again.body);
    let page = get(daemon.addr, "/", &cookie);
    assert_eq!(page.status, 200);
    let csrf = page
        .body
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_string();
    (cookie, csrf)
}

fn get(addr: SocketAddr, path: &str, cookie: &str) -> HttpAnswer {
    http_answer(addr, "GET", path, &[("Cookie", cookie)], b"")
}

fn pages_need_a_session_and_every_page_answers_with_one(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("echo");
    let daemon = project.daemon(&[]);
    let id = project.add(&["first", "--tool", "echo"]);
    wait_for_status(&project, &id, "completed", Duration::from_secs(20));
    let pending = project.add(&[
        "later", "--tool", "echo", "--every", "1h", "--at", "now+30m",
    ]);

    project.plan(
        "hello",
        &serde_json::json!({"plan_id": "hello", "steps": [{"id": "say", "command": "true"}]}),
    );

    let paths = [
        "/".to_string(),
        "/runs".to_string(),
        "/runs?status=completed&tool=echo".to_string(),
        "/groups".to_string(),
        "/groups?since=7d".to_string(),
        format!("/actions/{id}"),
        format!("/actions/{pending}"),
        "/schedules".to_string(),
        "/webhooks".to_string(),
        "/plans".to_string(),
        "/plans/hello".to_string(),
        "/tools".to_string(),
    ];
    for path in &paths {
        let answer = http_answer(daemon.addr, "GET", path, &[], b"");
        assert_eq!(answer.status, 303, "{path} without a session");
        let location = answer.header("location").unwrap();
        assert!(location.starts_with("/login?next="), "{path}: {location}");
    }
    let login = http_answer(daemon.addr, "GET", "/login", &[], b"");
    assert_eq!(login.status, 200);
    assert!(login.body.contains("name=\"token\""), "{}", login.body);

    let (cookie, _) = log_in(&project, &daemon);
    for path in &paths {
        let answer = get(daemon.addr, path, &cookie);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert!(answer.body.contains("<main id=\"main\">"), "{path}");
    }
    let overview = get(daemon.addr, "/", &cookie);
    let policy = overview.header("content-security-policy").unwrap();
    assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"));
    assert_eq!(overview.header("referrer-policy"), Some("same-origin"));
    let runs = get(daemon.addr, "/runs?tool=echo", &cookie);
    assert!(
        runs.body.contains(&format!("data-id=\"{id}\"")),
        "{}",
        runs.body
    );
    // A cron's coming times read in its zone.
    let paris = project.add(&[
        "paris",
        "--tool",
        "echo",
        "--cron",
        "0 9 * * *",
        "--tz",
        "Europe/Paris",
    ]);
    let page = get(daemon.addr, &format!("/actions/{paris}"), &cookie);
    assert!(
        page.body.contains("09:00:00 CET") || page.body.contains("09:00:00 CEST"),
        "{}",
        page.body
    );
    let schedules = get(daemon.addr, "/schedules", &cookie);
    assert!(schedules.body.contains("later"), "{}", schedules.body);
    let plan = get(daemon.addr, "/plans/hello", &cookie);
    assert!(plan.body.contains("data-step=\"say\""), "{}", plan.body);
    let action = get(daemon.addr, &format!("/actions/{pending}"), &cookie);
    assert!(action.body.contains("every 1 h<"), "{}", action.body);
    assert!(action.body.contains("Next due times"));
    // Bad input is a page that says what was wrong.
    let bad = get(daemon.addr, "/runs?since=yesterday", &cookie);
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("yesterday"), "{}", bad.body);
    let missing = get(
        daemon.addr,
        "/actions/00000000-0000-0000-0000-000000000000",
        &cookie,
    );
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("no action with id"));
    let assets = http_answer(daemon.addr, "GET", "/assets/app.js", &[], b"");
    assert_eq!(assets.status, 200);
    assert!(
        assets
            .header("content-type")
            .unwrap()
            .contains("javascript")
    );

    // The management token also logs in, through the form, from our own origin only.
    let token = daemon.token(&project);
    let form = format!("token={token}&next=%2Fruns");
    let origin = format!("http://{}", daemon.addr);
    let form_headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", origin.as_str()),
    ];
    // Not in an address, though: it would stay in the browser's history.
    let in_address = http_answer(
        daemon.addr,
        "GET",
        &format!("/login?token={token}"),
        &[],
        b"",
    );
    assert_eq!(in_address.status, 401);
    let posted = http_answer(
        daemon.addr,
        "POST",
        "/login",
        &form_headers,
        form.as_bytes(),
    );
    assert_eq!(posted.status, 303, "{}", posted.body);
    assert_eq!(posted.header("location"), Some("/runs"));
    let evil = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", "http://evil.example"),
    ];
    let refused = http_answer(daemon.addr, "POST", "/login", &evil, form.as_bytes());
    assert_eq!(refused.status, 403, "{}", refused.body);

    // After a login, only a path of this site: not one a browser would read as another
    // origin once it drops a tab or a newline, or reads a backslash as a slash.
    for next in [
        "%2F%09%2Fevil.example",
        "%2F%0A%2Fevil.example",
        "%2F%5Cevil.example",
        "%2F%2Fevil.example",
        "https%3A%2F%2Fevil.example",
    ] {
        let url = project.sdlc_ok(&["orchestrate", "ui"]);
        let path = &url.trim()[url.trim().find("/login").unwrap()..];
        let answer = http_answer(daemon.addr, "GET", &format!("{path}&next={next}"), &[], b"");
        assert_eq!(answer.status, 303, "{next}: {}", answer.body);
        assert_eq!(answer.header("location"), Some("/"), "{next}");
    }
}

fn changes_with_a_session_need_our_origin_and_the_csrf_token_and_logout_ends_it(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("echo");
    let daemon = project.daemon(&[]);
    let id = project.add(&["held", "--tool", "echo", "--at", "now+1h"]);
    let (cookie, csrf) = log_in(&project, &daemon);
    let origin = format!("http://{}", daemon.addr);
    let pause = format!("/api/orchestrator/actions/{id}/pause");

    // Reads need only the cookie.
    let read = get(
        daemon.addr,
        &format!("/api/orchestrator/actions/{id}"),
        &cookie,
    );
    assert_eq!(read.status, 200, "{}", read.body);
    // A change without the CSRF token, or from another origin, is refused and changes nothing.
    for headers in [
        vec![("Cookie", cookie.as_str()), ("Origin", origin.as_str())],
        vec![
            ("Cookie", cookie.as_str()),
            ("Origin", "http://evil.example"),
            ("X-CSRF-Token", csrf.as_str()),
        ],
        vec![("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())],
    ] {
        let answer = http_answer(daemon.addr, "POST", &pause, &headers, b"");
        assert_eq!(answer.status, 403, "{headers:?}: {}", answer.body);
        assert!(answer.body.contains("error"), "{}", answer.body);
    }
    assert_eq!(project.find(&id)["status"], "pending");
    let ours = [
        ("Cookie", cookie.as_str()),
        ("Origin", origin.as_str()),
        ("X-CSRF-Token", csrf.as_str()),
    ];
    let answer = http_answer(daemon.addr, "POST", &pause, &ours, b"");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(project.find(&id)["status"], "paused");
    // The bearer token needs no CSRF proof (it is never sent by a browser on its own).
    let token = daemon.token(&project);
    let bearer = format!("Bearer {token}");
    let resume = format!("/api/orchestrator/actions/{id}/resume");
    let answer = http_answer(
        daemon.addr,
        "POST",
        &resume,
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(answer.status, 200, "{}", answer.body);

    // A session outlives a daemon restart (stored hashed in the database).
    daemon.stop();
    let daemon = project.daemon(&[]);
    assert_eq!(get(daemon.addr, "/", &cookie).status, 200);

    // Logout needs the page's CSRF token, then the cookie is worth nothing.
    let logout_headers = [
        ("Cookie", cookie.as_str()),
        ("Origin", origin.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let origin = format!("http://{}", daemon.addr);
    let logout_headers = [
        logout_headers[0],
        ("Origin", origin.as_str()),
        logout_headers[2],
    ];
    let refused = http_answer(
        daemon.addr,
        "POST",
        "/logout",
        &logout_headers,
        b"csrf=wrong",
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    let form = format!("csrf={csrf}");
    let out = http_answer(
        daemon.addr,
        "POST",
        "/logout",
        &logout_headers,
        form.as_bytes(),
    );
    assert_eq!(out.status, 303, "{}", out.body);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(get(daemon.addr, "/", &cookie).status, 303);
    let api = get(daemon.addr, "/api/orchestrator/actions", &cookie);
    assert_eq!(api.status, 401);
}

/// An open event stream, read one event at a time.
struct EventStream {
    reader: BufReader<TcpStream>,
}

#[derive(Debug, Default)]
struct SseEvent {
    id: String,
    event: String,
    data: String,
}

impl EventStream {
    fn open(addr: SocketAddr, cookie: &str, last_event_id: Option<&str>) -> EventStream {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut request = format!(
            "GET /api/orchestrator/events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n"
        );
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains(" 200 "), "event stream answered {line}");
        let mut saw_type = false;
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line
                .to_ascii_lowercase()
                .starts_with("content-type: text/event-stream")
            {
                saw_type = true;
            }
            if line == "\r\n" {
                break;
            }
        }
        assert!(saw_type, "the stream is text/event-stream");
        EventStream { reader }
    }

    /// The next event (chunked framing undone: chunk-size lines are skipped).
    fn next(&mut self) -> SseEvent {
        let mut event = SseEvent::default();
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.reader.read_line(&mut line).expect("an event in time");
            assert!(n > 0, "the stream ended");
            let text = line.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                if !event.event.is_empty() || !event.data.is_empty() {
                    return event;
                }
                continue;
            }
            if let Some(v) = text
                .strip_prefix("id: ")
                .or_else(|| text.strip_prefix("id:"))
            {
                event.id = v.to_string();
            } else if let Some(v) = text
                .strip_prefix("event: ")
                .or_else(|| text.strip_prefix("event:"))
            {
                event.event = v.to_string();
            } else if let Some(v) = text
                .strip_prefix("data: ")
                .or_else(|| text.strip_prefix("data:"))
            {
                event.data.push_str(v);
            }
            // Chunk sizes, comments (keep-alives) and retry lines carry no event.
        }
    }

    /// Events until one named `name` whose data mentions `needle`.
    fn until(&mut self, name: &str, needle: &str) -> SseEvent {
        for _ in 0..200 {
            let event = self.next();
            if event.event == name && event.data.contains(needle) {
                return event;
            }
        }
        panic!("no {name} event mentioning {needle}");
    }
}

fn the_event_stream_tells_changes_replays_after_a_reconnect_and_resyncs_after_a_restart(
    backend: Backend,
) {
    let project = Project::on(backend);
    project.counting_tool("echo");
    let daemon = project.daemon(&[]);
    let (cookie, _) = log_in(&project, &daemon);
    let without = http_answer(daemon.addr, "GET", "/api/orchestrator/events", &[], b"");
    assert_eq!(without.status, 401);

    let mut events = EventStream::open(daemon.addr, &cookie, None);
    let hello = events.next();
    assert_eq!(hello.event, "hello");
    let boot: Value = serde_json::from_str(&hello.data).unwrap();
    assert!(
        hello.id.starts_with(boot["boot"].as_str().unwrap()),
        "{hello:?}"
    );
    let id = project.add(&["streamed", "--tool", "echo"]);
    let completed = events.until("actions", &format!("\"{id}\",\"status\":\"completed\""));
    let changes: Value = serde_json::from_str(&completed.data).unwrap();
    assert!(changes["changes"].is_array(), "{changes}");
    let stats = events.until("stats", "busy");
    let stats: Value = serde_json::from_str(&stats.data).unwrap();
    assert!(
        stats["engine"]["max_concurrency"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["counts"]["completed"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    drop(events);

    // Reconnecting with the last id seen gets what happened meanwhile, in order.
    let mut events = EventStream::open(daemon.addr, &cookie, Some(&completed.id));
    let second = project.add(&["after-reconnect", "--tool", "echo"]);
    let replayed = events.until("actions", &second);
    let seq = |id: &str| id.rsplit('-').next().unwrap().parse::<u64>().unwrap();
    assert!(seq(&replayed.id) > seq(&completed.id));
    drop(events);
    wait_for_status(&project, &second, "completed", Duration::from_secs(20));

    // After a restart the old id means nothing to the new daemon: it says resync, and the
    // stored session still opens the stream.
    daemon.stop();
    let daemon = project.daemon(&[]);
    let mut events = EventStream::open(daemon.addr, &cookie, Some(&replayed.id));
    let first = events.next();
    assert_eq!(first.event, "resync", "{first:?}");
    assert!(!first.id.starts_with(boot["boot"].as_str().unwrap()));
    let third = project.add(&["after-restart", "--tool", "echo"]);
    events.until("actions", &third);
    wait_for("the run", Duration::from_secs(20), || {
        (project.runs_of("after-restart") == 1).then_some(())
    });
}

fn the_delivery_log_tells_what_became_of_every_webhook_request(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("echo");
    let daemon = project.daemon(&["--max-body", "200"]);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "signed",
        "--tool",
        "echo",
        "--secret",
        "s3cret",
    ]);
    project.sdlc_ok(&["orchestrate", "webhook", "add", "open", "--tool", "echo"]);
    let post = |path: &str, headers: &[(&str, &str)], body: &[u8]| {
        http_answer(daemon.addr, "POST", path, headers, body).status
    };
    assert_eq!(post("/webhooks/signed", &[], b"{}"), 401);
    assert_eq!(post("/webhooks/nowhere", &[], b"{}"), 404);
    assert_eq!(post("/webhooks/open", &[], &[b'x'; 500]), 413);
    let once = [("X-GitHub-Delivery", "d-1")];
    assert_eq!(post("/webhooks/open", &once, b"{}"), 202);
    assert_eq!(post("/webhooks/open", &once, b"{}"), 202);

    let token = daemon.token(&project);
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let list = |query: &str| -> Value {
        let answer = http_answer(
            daemon.addr,
            "GET",
            &format!("/api/orchestrator/webhooks/deliveries{query}"),
            &auth,
            b"",
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        serde_json::from_str(&answer.body).unwrap()
    };
    let all = list("");
    let outcomes: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "duplicate",
            "accepted",
            "too_large",
            "no_route",
            "rejected_signature"
        ]
    );
    let first = &all[1];
    assert_eq!(first["status"], 202);
    assert_eq!(first["delivery_id"], "d-1");
    assert_eq!(
        all[0]["action_id"], first["action_id"],
        "a duplicate names the first"
    );
    let action = first["action_id"].as_str().unwrap();
    wait_for_status(&project, action, "completed", Duration::from_secs(20));
    assert!(
        all[4]["detail"]
            .as_str()
            .unwrap()
            .contains("X-Hub-Signature-256")
    );
    assert_eq!(list("?path=signed").as_array().unwrap().len(), 1);
    assert_eq!(
        list("?path=/webhooks/open&limit=1")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let bad = http_answer(
        daemon.addr,
        "GET",
        "/api/orchestrator/webhooks/deliveries?limit=0",
        &auth,
        b"",
    );
    assert_eq!(bad.status, 400, "{}", bad.body);

    // A template previewed against a sample body, as ingress would render it.
    let json_headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let preview = |body: Value| {
        http_answer(
            daemon.addr,
            "POST",
            "/api/orchestrator/webhooks/preview",
            &json_headers,
            body.to_string().as_bytes(),
        )
    };
    let good = preview(serde_json::json!({
        "input_template": "{\"ref\": {{payload.ref}}, \"event\": {{headers.X-GitHub-Event}}}",
        "body": "{\"ref\": \"main\"}",
        "headers": {"X-GitHub-Event": "push"},
    }));
    assert_eq!(good.status, 200, "{}", good.body);
    let rendered: Value = serde_json::from_str(&good.body).unwrap();
    assert_eq!(
        rendered["input"],
        serde_json::json!({"ref": "main", "event": "push"})
    );
    let quoted = preview(serde_json::json!({"input_template": "{\"ref\": \"{{payload.ref}}\"}"}));
    assert_eq!(quoted.status, 422, "{}", quoted.body);
    let not_json = preview(serde_json::json!({
        "input_template": "{\"ref\": {{payload.ref}}}",
        "body": "not json",
    }));
    assert_eq!(not_json.status, 422);
    assert!(not_json.body.contains("not JSON"), "{}", not_json.body);
}

fn a_tool_is_described_and_tried_once_through_the_api(backend: Backend) {
    let project = Project::on(backend);
    project.tool_with_meta(
        "greet",
        r#"{"name":"greet","version":"1.2.0","input_schema":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}}"#,
        "read input\necho 'greeting' >&2\necho \"{\\\"ok\\\":true,\\\"data\\\":$input}\"",
    );
    project.tool(
        "broken",
        "cat > /dev/null\necho '{\"ok\":false,\"error\":\"no luck\"}'",
    );
    let daemon = project.daemon(&[]);
    let token = daemon.token(&project);
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let call = |method: &str, path: &str, body: &str| {
        http_answer(
            daemon.addr,
            method,
            &format!("/api/orchestrator{path}"),
            &headers,
            body.as_bytes(),
        )
    };
    let meta = call("GET", "/tools/greet", "");
    assert_eq!(meta.status, 200, "{}", meta.body);
    assert!(meta.body.contains("\"1.2.0\""));
    let tried = call("POST", "/tools/greet/run", r#"{"input": {"name": "ada"}}"#);
    assert_eq!(tried.status, 200, "{}", tried.body);
    let answer: Value = serde_json::from_str(&tried.body).unwrap();
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["result"]["data"]["name"], "ada");
    assert!(answer["log_excerpt"].as_str().unwrap().contains("greeting"));
    let refused = call("POST", "/tools/greet/run", r#"{"input": {}}"#);
    assert_eq!(
        refused.status, 422,
        "the schema requires name: {}",
        refused.body
    );
    assert!(refused.body.contains("name"));
    let failed = call("POST", "/tools/broken/run", "");
    let failed: Value = serde_json::from_str(&failed.body).unwrap();
    assert_eq!(failed["ok"], false);
    assert!(
        failed["reason"].as_str().unwrap().contains("no luck"),
        "{failed}"
    );
    assert_eq!(call("POST", "/tools/missing/run", "{}").status, 404);
    assert_eq!(
        call(
            "POST",
            "/tools/greet/run",
            r#"{"input": {"name": "x"}, "timeout_secs": 0}"#
        )
        .status,
        422
    );
    // Nothing was stored.
    assert!(project.list().is_empty());
}

/// The Run groups page: one row per run id with its state and counts, linked to the Runs
/// page filtered by it; a bad filter is named on the page.
fn the_groups_page_shows_each_run_id_and_links_to_its_runs(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("echo");
    let daemon = project.daemon(&[]);
    let ids: Vec<String> = ["a", "b"]
        .iter()
        .map(|label| project.add(&[label, "--tool", "echo", "--run-id", "ci/7 & more"]))
        .collect();
    for id in &ids {
        wait_for_status(&project, id, "completed", Duration::from_secs(20));
    }
    let (cookie, _) = log_in(&project, &daemon);
    let page = get(daemon.addr, "/groups", &cookie);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("data-run-id=\"ci/7 &#38; more\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("href=\"/runs?run_id=ci%2F7%20%26%20more\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("2 completed"), "{}", page.body);
    let runs = get(daemon.addr, "/runs?run_id=ci%2F7%20%26%20more", &cookie);
    for id in &ids {
        assert!(
            runs.body.contains(&format!("data-id=\"{id}\"")),
            "{}",
            runs.body
        );
    }
    let bad = get(daemon.addr, "/groups?since=someday", &cookie);
    assert_eq!(bad.status, 400);
    assert!(
        bad.body
            .contains("since &#39;someday&#39;: give an RFC 3339 time"),
        "{}",
        bad.body
    );
}

on_both_backends!(
    pages_need_a_session_and_every_page_answers_with_one,
    changes_with_a_session_need_our_origin_and_the_csrf_token_and_logout_ends_it,
    the_event_stream_tells_changes_replays_after_a_reconnect_and_resyncs_after_a_restart,
    the_delivery_log_tells_what_became_of_every_webhook_request,
    a_tool_is_described_and_tried_once_through_the_api,
    the_groups_page_shows_each_run_id_and_links_to_its_runs,
);
