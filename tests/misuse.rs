//! Hostile or careless use, end to end: arguments that try to reach other API paths, headers
//! that try to pass for ids, daemon flags that would disable it, output that tries to steer a
//! terminal, a reader that goes away, tools that hang on --meta, schedules whose catch-up would
//! never end, a stop while tools still run. RELIABILITY.md lists what each proves.

mod common;

use common::Backend;

use std::time::Duration;

use common::{Project, http, wait_for};
use serde_json::Value;

fn hostile_arguments_and_headers_change_nothing_they_should_not(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let daemon = project.daemon(&[]);
    let id = project.add(&["keep-me", "--tool", "count", "--at", "now+1h"]);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "github/push",
        "--tool",
        "count",
    ]);

    // A route key is one path segment: it cannot reach another API path.
    for key in [
        format!("../../actions/{id}"),
        format!("..%2F..%2Factions%2F{id}"),
        "..".into(),
    ] {
        let out = project.sdlc(&["orchestrate", "webhook", "rm", &key]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("no webhook route"),
            "{key}: {stderr}"
        );
    }
    assert_eq!(
        project.find(&id)["status"],
        "pending",
        "the action was touched"
    );
    project.sdlc_ok(&["orchestrate", "webhook", "rm", "github/push"]);

    // An empty delivery id is no id: two such deliveries both run.
    project.sdlc_ok(&["orchestrate", "webhook", "add", "hook", "--tool", "count"]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (code, body) = http(
            daemon.addr,
            "POST",
            "/webhooks/hook",
            &[("X-GitHub-Delivery", " ")],
            b"{}",
        );
        assert_eq!(code, 202, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["duplicate"], false, "{body}");
        ids.push(answer["id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        common::wait_for_status(&project, id, "completed", Duration::from_secs(10));
    }
    assert!(daemon.stop().success());
}

fn bad_daemon_settings_are_refused_before_it_starts(backend: Backend) {
    let project = Project::on(backend);
    for (flag, value, expected) in [
        ("--timeout", "0", "longer than zero"),
        ("--timeout", "0s", "longer than zero"),
        ("--tick-rate", "1e-9", "from 0.01 to 86400"),
        ("--keep", "0", "at least a minute"),
        ("--idle-timeout", "0s", "longer than zero"),
        ("--max-connections", "0", "0"),
    ] {
        let out = project.sdlc(&["orchestrate", flag, value, "--listen", "127.0.0.1:0"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(expected),
            "{flag} {value}: {stderr}"
        );
    }
    assert!(
        !project.db_path().exists(),
        "a refused daemon created the database"
    );
}

fn a_run_past_the_grace_period_is_recorded_at_the_stop_and_late_requests_are_answered(
    backend: Backend,
) {
    let project = Project::on(backend);
    project.tool("slow", "sleep 30");
    project.counting_tool("count");
    let daemon = project.daemon(&["--grace", "2s"]);
    let slow = project.add(&["slow", "--tool", "slow"]);
    common::wait_for_status(&project, &slow, "running", Duration::from_secs(10));
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    // During the grace period the daemon still answers: an add lands at once.
    let started = std::time::Instant::now();
    let late = project.add(&["late", "--tool", "count", "--at", "now+1h"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the add waited {:?}",
        started.elapsed()
    );
    assert!(daemon.stop().success());
    let action = project.find(&slow);
    assert_eq!(action["status"], "failed", "{action}");
    assert!(
        action["reason"]
            .as_str()
            .unwrap()
            .contains("stopped by shutdown"),
        "{action}"
    );
    assert_eq!(project.find(&late)["status"], "pending");
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    use std::io::Read;
    let project = Project::new();
    project.counting_tool("count");
    // Bigger than a pipe's buffer, so the command is still writing when the reader goes.
    let input = serde_json::json!({ "pad": "z".repeat(100_000) }).to_string();
    for _ in 0..3 {
        project.add(&[
            "big", "--tool", "count", "--at", "now+1h", "--input", &input,
        ]);
    }
    let mut child = project
        .command(&["orchestrate", "list", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is dropped here.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn stored_text_cannot_steer_the_terminal() {
    // About the redb file (or the terminal): once, on redb.
    let project = Project::new();
    project.tool(
        "loud",
        r#"printf '{"ok":true,"data":{"title":"\033]0;pwned\007\033[2J done \342\200\256olleh"}}'"#,
    );
    let id = project.add(&["loud", "--tool", "loud"]);
    let daemon = project.daemon(&[]);
    common::wait_for_status(&project, &id, "completed", Duration::from_secs(10));
    assert!(daemon.stop().success());
    // On a terminal (script gives the command a pseudo-terminal) nothing raw gets through.
    let sdlc = common::SDLC;
    for args in [
        format!("orchestrate show {id}"),
        format!("orchestrate show {id} --json"),
        "orchestrate list --json".into(),
    ] {
        let out = std::process::Command::new("script")
            .args(["-qec", &format!("{sdlc} {args}"), "/dev/null"])
            .current_dir(project.root())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args}: {text}");
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{args}: raw escape on the terminal: {text:?}"
        );
        assert!(
            !text.contains('\u{202e}'),
            "{args}: raw U+202E on the terminal"
        );
        assert!(
            text.contains("pwned") && text.contains("202e"),
            "{args}: {text:?}"
        );
    }
    // Piped, JSON is JSON: the same text reads back exactly.
    let shown: Value =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "show", &id, "--json"])).unwrap();
    assert!(
        shown["result"].to_string().contains("\\u001b]0;pwned"),
        "{shown}"
    );
    // A reason given to pause is checked like a label.
    let later = project.add(&["later", "--tool", "loud", "--at", "now+1h"]);
    for reason in ["\u{1b}[2Jcleared", "right\u{202e}left"] {
        let out = project.sdlc(&["orchestrate", "pause", &later, "--reason", reason]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("--reason contains control"),
            "{stderr}"
        );
    }
    let out = project.sdlc(&["orchestrate", "add", "x\u{202e}y", "--tool", "loud"]);
    assert!(!out.status.success(), "a label with U+202E was stored");
}

fn tools_whose_meta_hangs_cost_one_timeout_together(backend: Backend) {
    let project = Project::on(backend);
    for name in ["hang-a", "hang-b", "hang-c"] {
        let dir = project.root().join(".sdlc/tools").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tool");
        std::fs::write(&path, "#!/bin/sh\nsleep 60\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    project.counting_tool("fine");
    let started = std::time::Instant::now();
    let out = project.sdlc_ok(&["tool", "list"]);
    let took = started.elapsed();
    // One --meta timeout is 15 s; one after another would be 45 s.
    assert!(took < Duration::from_secs(25), "tool list took {took:?}");
    for name in ["hang-a", "hang-b", "hang-c", "fine"] {
        assert!(out.contains(name), "{out}");
    }
    assert_eq!(out.matches("unreadable").count(), 3, "{out}");
}

fn catch_up_all_from_far_in_the_past_is_bounded_then_back_on_schedule(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let daemon = project.daemon(&["--tick-rate", "1"]);
    for overlap in ["allow", "queue-one"] {
        let label = format!("old-{overlap}");
        project.add(&[
            &label,
            "--tool",
            "count",
            "--every",
            "1s",
            "--at",
            "2020-01-01T00:00:00Z",
            "--catch-up",
            "all",
            "--overlap",
            overlap,
        ]);
        // The replay ends with one record for the slots it did not replay.
        let skipped = wait_for("the bulk skip record", Duration::from_secs(60), || {
            project.list().into_iter().find(|a| {
                a["label"] == label.as_str()
                    && a["status"] == "skipped"
                    && a["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("were not replayed"))
            })
        });
        let reason = skipped["reason"].as_str().unwrap().to_string();
        // Then back on schedule: occurrences due from now on, one a second, not a burst.
        // Counted from the stored occurrences, not from runs, since replayed runs may still
        // be finishing when the skip record appears.
        let started = chrono::Utc::now();
        std::thread::sleep(Duration::from_secs(3));
        let mine: Vec<Value> = project
            .list()
            .into_iter()
            .filter(|a| a["label"] == label.as_str())
            .collect();
        let due = |a: &Value| {
            chrono::DateTime::parse_from_rfc3339(a["due_at"].as_str().unwrap()).unwrap()
        };
        let replayed = mine
            .iter()
            .filter(|a| {
                due(a) < started - chrono::Duration::seconds(60) && a["status"] != "skipped"
            })
            .count();
        assert!(
            replayed <= 100,
            "{overlap}: {replayed} replayed runs: {reason}"
        );
        let on_schedule = mine
            .iter()
            .filter(|a| due(a) >= started - chrono::Duration::seconds(2))
            .count();
        assert!(
            (1..=6).contains(&on_schedule),
            "{overlap}: {on_schedule} occurrences due in the 3 s after the replay"
        );
        let id = skipped["series"].as_str().unwrap().to_string();
        project.sdlc_ok(&["orchestrate", "cancel", &id]);
    }
    assert!(daemon.stop().success());
}

fn a_body_that_is_not_utf8_is_kept_byte_for_byte(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let daemon = project.daemon(&[]);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "raw",
        "--tool",
        "count",
        "--template",
        "{}",
    ]);
    let body: &[u8] = b"\x00\xff\xfe binary \xc3\x28 tail";
    let (code, answer) = http(daemon.addr, "POST", "/webhooks/raw", &[], body);
    assert_eq!(code, 202, "{answer}");
    let id = serde_json::from_str::<Value>(&answer).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    common::wait_for_status(&project, &id, "completed", Duration::from_secs(10));
    assert!(daemon.stop().success());
    // Read back from the file after the daemon is gone: the exact bytes, and text for people.
    let shown: Value =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "show", &id, "--json"])).unwrap();
    let hex_of: String = body.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(shown["raw_payload_hex"], hex_of.as_str(), "{shown}");
    assert!(
        shown["raw_payload"].as_str().unwrap().contains("binary"),
        "{shown}"
    );
}

on_both_backends!(
    hostile_arguments_and_headers_change_nothing_they_should_not,
    bad_daemon_settings_are_refused_before_it_starts,
    a_run_past_the_grace_period_is_recorded_at_the_stop_and_late_requests_are_answered,
    tools_whose_meta_hangs_cost_one_timeout_together,
    catch_up_all_from_far_in_the_past_is_bounded_then_back_on_schedule,
    a_body_that_is_not_utf8_is_kept_byte_for_byte,
);
