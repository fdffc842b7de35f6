//! Running the daemon as a service, end to end: systemd's readiness protocol read from a
//! socket the test binds, JSON logs for log shippers, and what `status` tells an operator.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{Daemon, Project};
use serde_json::Value;

/// Reads one notification datagram, failing the test after `limit`.
fn next_notification(socket: &UnixDatagram, limit: Duration) -> String {
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|err| panic!("no notification from the daemon within {limit:?}: {err}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn a_notify_unit_hears_ready_once_serving_and_stopping_at_shutdown() {
    let project = Project::new();
    project.tool("echo", r#"printf '{"ok":true}'"#);
    // A due action: once READY=1 is heard, the daemon serves commands and runs it.
    let id = project.add(&["echo-once", "--tool", "echo", "--at", "now"]);
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();

    let mut command = project.command(&["orchestrate", "--listen", "127.0.0.1:0"]);
    command.env("NOTIFY_SOCKET", &socket_path);
    let daemon = Daemon::start_command(command);

    let ready = next_notification(&socket, Duration::from_secs(30));
    let lines: Vec<&str> = ready.lines().collect();
    assert!(lines.contains(&"READY=1"), "{ready}");
    assert!(
        lines.contains(&format!("STATUS=listening on {}", daemon.addr).as_str()),
        "{ready}"
    );
    // Once ready, commands are served: the due action ran (or is running) and status answers.
    let status: Value =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "status", "--json"])).unwrap();
    assert_eq!(status["daemon"]["running"], true, "{status}");
    common::wait_for_status(&project, &id, "completed", Duration::from_secs(30));

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let stopping = next_notification(&socket, Duration::from_secs(30));
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    assert!(daemon.stop().success());
}

#[test]
fn a_notify_socket_that_is_gone_is_warned_about_and_the_daemon_serves_on() {
    let project = Project::new();
    let dir = tempfile::tempdir().unwrap();
    let mut command = project.command(&["orchestrate", "--listen", "127.0.0.1:0"]);
    command.env("NOTIFY_SOCKET", dir.path().join("nobody-listens.sock"));
    let daemon = Daemon::start_command(command);
    common::wait_for(
        "the warning about NOTIFY_SOCKET",
        Duration::from_secs(30),
        || daemon.stderr().contains("NOTIFY_SOCKET").then_some(()),
    );
    let status: Value =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "status", "--json"])).unwrap();
    assert_eq!(status["daemon"]["running"], true, "{status}");
    assert!(daemon.stop().success());
}

#[test]
fn json_logs_are_one_object_a_line_with_their_fields_at_the_top() {
    let project = Project::new();
    project.tool(
        "fail",
        r#"printf '{"ok":false,"error":"the disk is full"}'"#,
    );
    let id = project.add(&["broken", "--tool", "fail", "--at", "now"]);
    let daemon = project.daemon(&["--log-format", "json"]);
    common::wait_for_status(&project, &id, "failed", Duration::from_secs(30));
    // The engine logs the failed run after recording it: wait for that line.
    let log = common::wait_for("the failed run in the log", Duration::from_secs(30), || {
        let log = daemon.stderr();
        // Only whole lines: the last one may still be being written.
        let whole = &log[..log.rfind('\n').map_or(0, |at| at + 1)];
        whole
            .contains("the disk is full")
            .then(|| whole.to_string())
    });
    let mut saw_listening = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let record: Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON log line ({err}): {line}"));
        assert!(record["timestamp"].is_string(), "{line}");
        assert!(record["level"].is_string(), "{line}");
        let message = record["message"].as_str().unwrap_or_default();
        saw_listening |= message.contains("listening on http://");
    }
    assert!(saw_listening, "no start-up line in the JSON log:\n{log}");
    assert!(daemon.stop().success());
}

#[test]
fn an_unknown_log_format_is_refused_naming_the_choices() {
    let project = Project::new();
    let out = project.sdlc(&["orchestrate", "--log-format", "xml", "status"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("xml"), "{stderr}");
    assert!(
        stderr.contains("text") && stderr.contains("json"),
        "{stderr}"
    );
}

#[test]
fn status_shows_uptime_and_slots_of_a_running_daemon() {
    let project = Project::new();
    let daemon = project.daemon(&["--max-concurrency", "3"]);
    let status: Value =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "status", "--json"])).unwrap();
    assert_eq!(status["engine"]["max_concurrency"], 3, "{status}");
    assert_eq!(status["engine"]["busy"], 0, "{status}");
    assert!(status["engine"]["uptime_secs"].is_number(), "{status}");
    let text = project.sdlc_ok(&["orchestrate", "status"]);
    assert!(text.contains("uptime:"), "{text}");
    assert!(text.contains("slots:    0 busy of 3"), "{text}");
    assert!(text.contains("inbox:"), "{text}");
    assert!(daemon.stop().success());
}
