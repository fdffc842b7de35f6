//! Named tokens with roles, end to end on both backends: `token add` prints a secret once,
//! each role against one endpoint of each kind (read, operate, administer) answers 200/201 or
//! 403 naming the token and the role it needs, an approval made with a named token records
//! its name, `token list` tells last use and never a secret, and a removed token opens
//! nothing.

mod common;

use std::time::Duration;

use common::{Backend, Project, http, http_answer};
use serde_json::Value;

on_both_backends!(
    each_role_gets_what_it_covers_and_403_for_the_rest,
    tokens_are_listed_without_secrets_and_removed_tokens_open_nothing,
    a_dashboard_session_has_the_role_of_the_token_that_logged_it_in,
    a_session_ends_with_its_token_and_an_approval_records_the_token_not_the_body,
);

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `token add NAME --role ROLE`: its secret, the one line on stdout.
fn add_token(project: &Project, name: &str, role: &str) -> String {
    let out = project.sdlc_ok(&["orchestrate", "token", "add", name, "--role", role]);
    let secret = out.trim().to_string();
    assert!(
        secret.starts_with("sdlc_") && !secret.contains('\n'),
        "{out}"
    );
    secret
}

fn each_role_gets_what_it_covers_and_403_for_the_rest(backend: Backend) {
    let project = Project::on(backend);
    project.tool("echo", r#"cat >/dev/null; printf '{"ok":true}'"#);
    let gated = project.add(&["gated", "--tool", "echo", "--requires-approval"]);
    let daemon = project.daemon(&[]);
    let viewer = add_token(&project, "grafana", "viewer");
    let operator = add_token(&project, "ci-bot", "operator");
    let admin = add_token(&project, "ops.lead", "admin");
    common::wait_for_status(
        &project,
        &gated,
        "awaiting_approval",
        Duration::from_secs(30),
    );

    let call = |token: &str, method: &str, path: &str, body: &str| {
        let auth = bearer(token);
        let mut headers = vec![("Authorization", auth.as_str())];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        http(daemon.addr, method, path, &headers, body.as_bytes())
    };
    let add_body = r#"{"label":"by-token","tool_name":"echo","at":"now+1h"}"#;
    let route_body = |path: &str| format!(r#"{{"path":"{path}","tool_name":"echo"}}"#);

    // Reading: every role.
    for token in [&viewer, &operator, &admin] {
        let (status, body) = call(token, "GET", "/api/orchestrator/actions", "");
        assert_eq!(status, 200, "{body}");
        let (status, body) = call(token, "GET", "/metrics", "");
        assert_eq!(status, 200, "{body}");
        let (status, body) = call(token, "GET", "/api/orchestrator/webhooks/routes", "");
        assert_eq!(status, 200, "{body}");
    }
    // Operating: operator and admin.
    let (status, body) = call(&viewer, "POST", "/api/orchestrator/actions", add_body);
    assert_eq!(status, 403, "{body}");
    let message: Value = serde_json::from_str(&body).unwrap();
    let message = message["error"].as_str().unwrap();
    assert!(
        message.contains("'grafana'")
            && message.contains("viewer")
            && message.contains("needs operator"),
        "{message}"
    );
    for token in [&operator, &admin] {
        let (status, body) = call(token, "POST", "/api/orchestrator/actions", add_body);
        assert_eq!(status, 201, "{body}");
    }
    // Administering: admin only.
    for (token, name) in [(&viewer, "grafana"), (&operator, "ci-bot")] {
        let (status, body) = call(
            token,
            "POST",
            "/api/orchestrator/webhooks/routes",
            &route_body("x"),
        );
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains(name) && body.contains("needs admin"),
            "{body}"
        );
        let (status, body) = call(token, "GET", "/api/orchestrator/tokens", "");
        assert_eq!(status, 403, "{body}");
    }
    let (status, body) = call(
        &admin,
        "POST",
        "/api/orchestrator/webhooks/routes",
        &route_body("deploy"),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(&admin, "GET", "/api/orchestrator/tokens", "");
    assert_eq!(status, 200, "{body}");
    // A wrong token is 401, not 403.
    let (status, _) = call("sdlc_not-a-token", "GET", "/api/orchestrator/actions", "");
    assert_eq!(status, 401);

    // An approval without `by` records the token's name.
    let approve = format!("/api/orchestrator/actions/{gated}/approve");
    for (token, expected) in [(&viewer, 403), (&operator, 200)] {
        let (status, body) = call(token, "POST", &approve, "");
        assert_eq!(status, expected, "{body}");
    }
    let approved = project.find(&gated);
    assert_eq!(approved["approver"], "ci-bot", "{approved}");
    assert!(daemon.stop().success());
}

fn tokens_are_listed_without_secrets_and_removed_tokens_open_nothing(backend: Backend) {
    let project = Project::on(backend);
    // Made without a daemon (on the database itself), used through one.
    let viewer = add_token(&project, "grafana", "viewer");
    let daemon = project.daemon(&[]);
    let operator = add_token(&project, "ci-bot", "operator");
    let auth = bearer(&viewer);
    let (status, body) = http(
        daemon.addr,
        "GET",
        "/api/orchestrator/status",
        &[("Authorization", auth.as_str())],
        b"",
    );
    assert_eq!(status, 200, "{body}");

    // Its use is noted (written beside the request, not in its way).
    let listed = common::wait_for("grafana's last use", Duration::from_secs(30), || {
        let listed: Vec<Value> =
            serde_json::from_str(&project.sdlc_ok(&["orchestrate", "token", "list", "--json"]))
                .unwrap();
        listed
            .iter()
            .any(|t| t["name"] == "grafana" && t["last_used_at"].is_string())
            .then_some(listed)
    });
    let names: Vec<&str> = listed.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ci-bot", "grafana"]);
    let table = project.sdlc_ok(&["orchestrate", "token", "list"]);
    for secret in [&viewer, &operator] {
        assert!(
            !table.contains(secret.as_str())
                && !listed
                    .iter()
                    .any(|t| t.to_string().contains(secret.as_str()))
        );
    }
    assert!(
        table.contains("grafana") && table.contains("viewer") && table.contains("never"),
        "{table}"
    );

    // Mistakes are refused naming what was wrong.
    let out = project.sdlc(&["orchestrate", "token", "add", "grafana", "--role", "viewer"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a token named 'grafana' already exists")
    );
    let out = project.sdlc(&[
        "orchestrate",
        "token",
        "add",
        "bad name",
        "--role",
        "viewer",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a token name"));
    let out = project.sdlc(&["orchestrate", "token", "add", "x", "--role", "root"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin, operator or viewer"));
    let out = project.sdlc(&["orchestrate", "token", "rm", "nobody"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token named 'nobody'"));

    // Removed: it opens nothing (at once through this daemon; a command on a shared database
    // reaches the daemons' caches within seconds).
    project.sdlc_ok(&["orchestrate", "token", "rm", "grafana"]);
    common::wait_for("the removed token refused", Duration::from_secs(30), || {
        let (status, _) = http(
            daemon.addr,
            "GET",
            "/api/orchestrator/status",
            &[("Authorization", auth.as_str())],
            b"",
        );
        (status == 401).then_some(())
    });
    assert!(daemon.stop().success());
}

fn a_dashboard_session_has_the_role_of_the_token_that_logged_it_in(backend: Backend) {
    let project = Project::on(backend);
    project.tool("echo", r#"cat >/dev/null; printf '{"ok":true}'"#);
    let daemon = project.daemon(&[]);
    let id = project.add(&["held", "--tool", "echo", "--at", "now+1h"]);
    let origin = format!("http://{}", daemon.addr);
    let log_in_with = |secret: &str| post_login_form(daemon.addr, secret);
    let session_of = |secret: &str| log_in_with_form(daemon.addr, secret);
    let pause = format!("/api/orchestrator/actions/{id}/pause");
    // Pauses the action from a page logged in with `secret`, as the page's script would.
    let pause_from_a_page_of = |secret: &str| {
        let (cookie, csrf) = session_of(secret);
        let headers = [
            ("Cookie", cookie.as_str()),
            ("Origin", origin.as_str()),
            ("X-CSRF-Token", csrf.as_str()),
        ];
        http_answer(daemon.addr, "POST", &pause, &headers, b"")
    };
    let answer = pause_from_a_page_of(&add_token(&project, "watcher", "viewer"));
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.body.contains("'watcher'") && answer.body.contains("viewer"),
        "{}",
        answer.body
    );
    assert_eq!(project.find(&id)["status"], "pending");

    let answer = pause_from_a_page_of(&add_token(&project, "oncall", "operator"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(project.find(&id)["status"], "paused");
    // A wrong token logs nobody in.
    let refused = log_in_with("sdlc_wrong");
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(daemon.stop().success());
}

#[test]
fn the_daemons_own_token_can_come_from_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let project = Project::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "sdlc_from_the_file_0123456789\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = project.sdlc(&[
        "orchestrate",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        path.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("may be read by others") && stderr.contains("chmod 600"),
        "{stderr}"
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = project.daemon(&["--token-file", path.to_str().unwrap()]);
    assert_eq!(daemon.token(&project), "sdlc_from_the_file_0123456789");
    let (status, body) = http(
        daemon.addr,
        "GET",
        "/api/orchestrator/tokens",
        &[("Authorization", "Bearer sdlc_from_the_file_0123456789")],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    assert!(daemon.stop().success());

    std::fs::write(&path, "\n").unwrap();
    let out = project.sdlc(&[
        "orchestrate",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        path.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is empty"));
}

/// The dashboard's login form posted with `secret`, from our own page.
fn post_login_form(addr: std::net::SocketAddr, secret: &str) -> common::HttpAnswer {
    let origin = format!("http://{addr}");
    let form = format!("token={secret}&next=%2F");
    http_answer(
        addr,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", origin.as_str()),
        ],
        form.as_bytes(),
    )
}

/// A session cookie and the page's CSRF token, after the login form is posted with `secret`.
fn log_in_with_form(addr: std::net::SocketAddr, secret: &str) -> (String, String) {
    let posted = post_login_form(addr, secret);
    assert_eq!(posted.status, 303, "{}", posted.body);
    let cookie = posted
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http_answer(addr, "GET", "/", &[("Cookie", cookie.as_str())], b"");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page
        .body
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    (cookie, csrf)
}

fn a_session_ends_with_its_token_and_an_approval_records_the_token_not_the_body(backend: Backend) {
    let project = Project::on(backend);
    project.tool("echo", r#"cat >/dev/null; printf '{"ok":true}'"#);
    let first = project.add(&["first", "--tool", "echo", "--requires-approval"]);
    let second = project.add(&["second", "--tool", "echo", "--requires-approval"]);
    let daemon = project.daemon(&[]);
    for id in [&first, &second] {
        common::wait_for_status(&project, id, "awaiting_approval", Duration::from_secs(30));
    }
    let origin = format!("http://{}", daemon.addr);
    let oncall = add_token(&project, "oncall", "operator");
    let (cookie, csrf) = log_in_with_form(daemon.addr, &oncall);
    let from_page = |method: &str, path: &str, body: &str| {
        http_answer(
            daemon.addr,
            method,
            path,
            &[
                ("Cookie", cookie.as_str()),
                ("Origin", origin.as_str()),
                ("X-CSRF-Token", csrf.as_str()),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    };

    // The page may say anyone decided: the approver is the token behind its session.
    let answer = from_page(
        "POST",
        &format!("/api/orchestrator/actions/{first}/approve"),
        r#"{"by":"the-cto"}"#,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let approved = project.find(&first);
    assert_eq!(approved["approver"], "oncall", "{approved}");
    assert_eq!(approved["stated_by"], "the-cto", "{approved}");
    // So may a bearer token.
    let (status, body) = http(
        daemon.addr,
        "POST",
        &format!("/api/orchestrator/actions/{second}/reject"),
        &[
            ("Authorization", &bearer(&oncall)),
            ("Content-Type", "application/json"),
        ],
        br#"{"by":"someone-else","note":"not now"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let rejected = project.find(&second);
    assert_eq!(rejected["approver"], "oncall", "{rejected}");
    assert_eq!(
        rejected["reason"], "rejected by oncall: not now",
        "{rejected}"
    );

    // Sessions are listed with the token that opened them, never a secret.
    let listed: Vec<Value> =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "session", "list", "--json"]))
            .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["token"], "oncall");
    assert_eq!(listed[0]["role"], "operator");
    let secret = cookie.split_once('=').unwrap().1;
    assert!(!serde_json::to_string(&listed).unwrap().contains(secret));

    // Removing the token ends its session, pages and API alike: at once through this
    // daemon; on PostgreSQL, where the command writes the database itself, as soon as the
    // daemon hears of it (well within the 5 s its token cache would keep it otherwise).
    project.sdlc_ok(&["orchestrate", "token", "rm", "oncall"]);
    common::wait_for("the session to end", Duration::from_secs(3), || {
        let page = http_answer(daemon.addr, "GET", "/", &[("Cookie", cookie.as_str())], b"");
        (page.status == 303).then_some(())
    });
    let page = http_answer(daemon.addr, "GET", "/", &[("Cookie", cookie.as_str())], b"");
    assert!(
        page.status == 303
            && page
                .header("location")
                .is_some_and(|l| l.starts_with("/login")),
        "{} {:?}",
        page.status,
        page.header("location")
    );
    let answer = from_page("GET", "/api/orchestrator/actions", "");
    assert_eq!(answer.status, 401, "{}", answer.body);
    // A new token of the same name (and another role) does not bring it back.
    let _again = add_token(&project, "oncall", "admin");
    let answer = from_page("GET", "/api/orchestrator/actions", "");
    assert_eq!(answer.status, 401, "{}", answer.body);
    let listed: Vec<Value> =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "session", "list", "--json"]))
            .unwrap();
    assert!(listed.is_empty(), "{listed:?}");

    // An admin ends a live session by a prefix of its id.
    let (cookie, _) = log_in_with_form(daemon.addr, &daemon.token(&project));
    let listed: Vec<Value> =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "session", "list", "--json"]))
            .unwrap();
    let id = listed[0]["id"].as_str().unwrap();
    project.sdlc_ok(&["orchestrate", "session", "rm", &id[..12]]);
    let answer = http_answer(
        daemon.addr,
        "GET",
        "/api/orchestrator/actions",
        &[("Cookie", cookie.as_str())],
        b"",
    );
    assert_eq!(answer.status, 401, "{}", answer.body);
    let out = project.sdlc(&["orchestrate", "session", "rm", &id[..12]]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no live session"));

    // API answers are data: not sniffed, not cached.
    let answer = http_answer(
        daemon.addr,
        "GET",
        "/api/orchestrator/actions",
        &[("Authorization", &bearer(&daemon.token(&project)))],
        b"",
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert!(daemon.stop().success());
}
