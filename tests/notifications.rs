//! Notifications end to end: real receivers on loopback (a Slack-style one and a generic
//! webhook), the real daemon, its outbox across a kill -9, retries with backoff, and receiver
//! URLs kept secret.

mod common;

use common::Backend;

use std::time::Duration;

use common::receiver::Receiver;
use common::{Project, wait_for, wait_for_status};
use serde_json::{Value, json};

const PR: &str = "https://github.com/o/r/pull/123";
/// A receiver path that stands for a secret, as a Slack webhook URL's path is.
const SECRET_PATH: &str = "services/T000/B000/s3cr3t";

fn review_tool(project: &Project) {
    project.tool(
        "open-pr",
        &format!(
            "cat > /dev/null\necho '{{\"ok\": true, \"data\": {{\"awaiting_approval\": true, \"outputs_uri\": \"{PR}\"}}}}'"
        ),
    );
}

fn notifications(project: &Project, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["orchestrate", "notifications", "--json"];
    full.extend_from_slice(args);
    serde_json::from_str(&project.sdlc_ok(&full)).unwrap()
}

fn awaiting_approval_reaches_slack_with_the_link_and_the_action_records_it(backend: Backend) {
    let project = Project::on(backend);
    review_tool(&project);
    let slack = Receiver::start(0, 200);
    let slack_url = slack.url(SECRET_PATH);
    let daemon = project.daemon(&["-v", "--tick-rate", "60", "--notify-slack", &slack_url]);
    let id = project.add(&["seo.validate", "--tool", "open-pr"]);
    wait_for_status(&project, &id, "awaiting_approval", Duration::from_secs(20));
    let got = wait_for("the Slack message", Duration::from_secs(20), || {
        let got = slack.received();
        (!got.is_empty()).then_some(got)
    });
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, format!("/{SECRET_PATH}"));
    assert_eq!(
        got[0].body,
        json!({"text": format!("Task seo.validate awaiting approval: {PR}")})
    );
    let action = wait_for("notified_at", Duration::from_secs(10), || {
        let action = project.find(&id);
        action["notified_at"].is_string().then_some(action)
    });
    assert_eq!(action["outputs_uri"], PR);

    // Approving completes it; rejecting another fails it, and the rejection is told too.
    project.sdlc_ok(&["orchestrate", "approve", &id, "--by", "alice"]);
    let done = project.find(&id);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["approver"], "alice");
    assert!(done["approved_at"].is_string());
    let other = project.add(&["code.review", "--tool", "open-pr"]);
    wait_for_status(
        &project,
        &other,
        "awaiting_approval",
        Duration::from_secs(20),
    );
    project.sdlc_ok(&[
        "orchestrate",
        "reject",
        &other,
        "--by",
        "bob",
        "--note",
        "too big",
    ]);
    let got = wait_for("the rejection", Duration::from_secs(20), || {
        let got = slack.received();
        (got.len() == 3).then_some(got)
    });
    assert_eq!(
        got[2].body,
        json!({"text": "Task code.review rejected: rejected by bob: too big"})
    );

    // The secret part of the URL is shown nowhere.
    let listed = project.sdlc_ok(&["orchestrate", "notifications"]);
    let json_list = project.sdlc_ok(&["orchestrate", "notifications", "--json"]);
    let test = project.sdlc_ok(&["orchestrate", "notify", "test"]);
    assert!(test.starts_with("ok  slack"), "{test}");
    assert_eq!(slack.received().len(), 4);
    let daemon_logs = daemon.stderr();
    assert!(daemon_logs.contains("notification sent"), "{daemon_logs}");
    daemon.stop();
    // Without a daemon, `notify test` sends to the receivers the last daemon had.
    let out = project
        .command(&["orchestrate", "-vv", "notify", "test"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let offline =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(offline.starts_with("ok  slack"), "{offline}");
    assert_eq!(slack.received().len(), 5);
    for text in [&listed, &json_list, &test, &daemon_logs, &offline] {
        assert!(!text.contains("s3cr3t"), "a receiver URL leaked: {text}");
    }
    assert!(json_list.contains(&format!("http://{}/…", slack.addr)));
}

fn a_failing_action_with_retries_notifies_once_after_its_last_attempt(backend: Backend) {
    let project = Project::on(backend);
    project.tool("flaky", "cat > /dev/null\necho 'boom' >&2\nexit 1");
    let hook = Receiver::start(0, 200);
    let daemon = project.daemon(&[
        "--tick-rate",
        "60",
        "--notify-webhook",
        &hook.url("hook"),
        "--public-url",
        "https://ci.example.com:7711/",
    ]);
    let id = project.add(&[
        "dx.check",
        "--tool",
        "flaky",
        "--retries",
        "2",
        "--backoff",
        "100ms",
    ]);
    let failed = wait_for_status(&project, &id, "failed", Duration::from_secs(30));
    assert_eq!(failed["attempt"], 3);
    let got = wait_for("the failure notice", Duration::from_secs(20), || {
        let got = hook.received();
        (!got.is_empty()).then_some(got)
    });
    // Give a wrongly early notice every chance to have been sent: the outbox is empty.
    wait_for("the outbox to settle", Duration::from_secs(10), || {
        let pending = notifications(&project, &["--status", "pending"]);
        pending.is_empty().then_some(())
    });
    let got_all = hook.received();
    assert_eq!(got_all.len(), 1, "{got_all:?}");
    let body = &got[0].body;
    assert_eq!(body["status"], "failed");
    assert_eq!(body["event"], "failed");
    assert_eq!(body["task"], "dx.check");
    assert_eq!(body["action_id"], id.as_str());
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("exited with status 1")
    );
    assert_eq!(body["log_excerpt"], "boom");
    assert_eq!(
        body["log_url"],
        format!("https://ci.example.com:7711/actions/{id}#log"),
        "the notice links to the run's log"
    );
    assert_eq!(
        got[0].header("idempotency-key"),
        body["id"].as_str(),
        "the Idempotency-Key is the notification's id"
    );
    // --no-notify silences one action; a success is not among the default events.
    let quiet = project.add(&["quiet", "--tool", "flaky", "--no-notify"]);
    wait_for_status(&project, &quiet, "failed", Duration::from_secs(20));
    let all = notifications(&project, &[]);
    assert_eq!(all.len(), 1, "{all:?}");
    drop(daemon);
}

fn a_receiver_that_fails_three_times_gets_the_message_once_acknowledged(backend: Backend) {
    let project = Project::on(backend);
    project.tool("bad", "cat > /dev/null\nexit 2");
    let hook = Receiver::start(3, 200);
    let _daemon = project.daemon(&[
        "--tick-rate",
        "60",
        "--notify-webhook",
        &hook.url("hook"),
        "--notify-backoff",
        "50ms",
    ]);
    let id = project.add(&["svc", "--tool", "bad"]);
    wait_for_status(&project, &id, "failed", Duration::from_secs(20));
    let sent = wait_for(
        "the notification to be sent",
        Duration::from_secs(30),
        || {
            let all = notifications(&project, &["--status", "sent"]);
            (all.len() == 1).then(|| all[0].clone())
        },
    );
    assert_eq!(sent["attempts"], 4);
    assert!(
        sent["last_answer"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 200")
    );
    let got = hook.received();
    assert_eq!(got.len(), 4);
    let keys: Vec<Option<&str>> = got.iter().map(|r| r.header("idempotency-key")).collect();
    assert!(
        keys.iter().all(|k| *k == keys[0] && k.is_some()),
        "{keys:?}"
    );
    assert!(project.find(&id)["notified_at"].is_string());
}

fn a_notification_pending_when_the_daemon_is_killed_is_sent_after_restart_and_a_sent_one_is_not(
    backend: Backend,
) {
    let project = Project::on(backend);
    project.tool("bad", "cat > /dev/null\nexit 2");
    let hook = Receiver::start(0, 200);
    let url = hook.url("hook");
    let args = [
        "--tick-rate",
        "60",
        "--notify-webhook",
        url.as_str(),
        "--notify-backoff",
        "1h",
    ];
    let daemon = project.daemon(&args);
    let first = project.add(&["first", "--tool", "bad"]);
    wait_for(
        "the first notification to be sent",
        Duration::from_secs(20),
        || (notifications(&project, &["--status", "sent"]).len() == 1).then_some(()),
    );
    assert!(project.find(&first)["notified_at"].is_string());
    // From now on the receiver refuses: the next notification stays pending (next try in an
    // hour) when the daemon dies.
    hook.answer(503);
    let second = project.add(&["second", "--tool", "bad"]);
    wait_for_status(&project, &second, "failed", Duration::from_secs(20));
    wait_for("a refused try", Duration::from_secs(20), || {
        let pending = notifications(&project, &["--status", "pending"]);
        (pending.len() == 1 && pending[0]["attempts"] == 1).then_some(())
    });
    daemon.kill9();
    hook.answer(200);
    // The restart tries again at once what was not acknowledged, and only that.
    let _daemon = project.daemon(&args);
    let sent = wait_for(
        "the pending notification to be sent",
        Duration::from_secs(20),
        || {
            let sent = notifications(&project, &["--status", "sent"]);
            (sent.len() == 2).then_some(sent)
        },
    );
    assert!(sent.iter().any(|n| n["subject_id"] == second.as_str()));
    assert!(project.find(&second)["notified_at"].is_string());
    let got = hook.received();
    let about = |id: &str| got.iter().filter(|r| r.body["action_id"] == id).count();
    assert_eq!(
        about(&first),
        1,
        "an acknowledged notification was sent again"
    );
    assert_eq!(
        about(&second),
        2,
        "one refused try, then one after the restart"
    );
}

fn a_plan_gate_and_the_runs_end_notify_and_a_plans_notify_on_reaches_its_steps(backend: Backend) {
    let project = Project::on(backend);
    project.tool("ok", "cat > /dev/null\necho '{\"ok\": true}'");
    std::fs::create_dir_all(project.root().join(".sdlc/plans")).unwrap();
    std::fs::write(
        project.root().join(".sdlc/plans/release.json"),
        json!({"plan_id": "release", "steps": [
            {"id": "build", "tool": "ok"},
            {"id": "gate", "approval": {"prompt": "ship it?"}, "depends_on": ["build"]},
            {"id": "ship", "tool": "ok", "depends_on": ["gate"]}
        ]})
        .to_string(),
    )
    .unwrap();
    let hook = Receiver::start(0, 200);
    let _daemon = project.daemon(&[
        "--tick-rate",
        "60",
        "--notify-webhook",
        &hook.url("hook"),
        "--notify-on",
        "awaiting_approval,plan_failed,plan_succeeded",
    ]);
    // The id of the gate step waiting for approval (one run at a time waits there).
    let waiting_gate = || {
        wait_for("the gate to wait", Duration::from_secs(20), || {
            let out = project.sdlc_ok(&[
                "orchestrate",
                "list",
                "--label",
                "release/gate",
                "--status",
                "awaiting_approval",
                "--format",
                "json",
            ]);
            let out: Vec<Value> = serde_json::from_str(&out).unwrap();
            out.first().map(|a| a["id"].as_str().unwrap().to_string())
        })
    };
    // Under the daemon's events: the gate's wait and the run's end are told.
    let started = project.add(&["nightly-release", "--plan", "release"]);
    let gate = waiting_gate();
    let got = wait_for("the gate's notice", Duration::from_secs(20), || {
        let got = hook.received();
        (got.len() == 1).then_some(got)
    });
    assert_eq!(got[0].body["event"], "awaiting_approval");
    assert_eq!(got[0].body["task"], "release/gate");
    project.sdlc_ok(&["orchestrate", "approve", &gate, "--by", "carol"]);
    wait_for_status(&project, &started, "completed", Duration::from_secs(20));
    let got = wait_for("the run's end", Duration::from_secs(20), || {
        let got = hook.received();
        (got.len() == 2).then_some(got)
    });
    assert_eq!(got[1].body["event"], "plan_succeeded");
    assert_eq!(got[1].body["task"], "release");
    assert_eq!(got[1].body["status"], "succeeded");

    // An action's --notify-on holds for its run's steps too: only the end is told.
    let quiet = project.add(&[
        "quiet-release",
        "--plan",
        "release",
        "--notify-on",
        "plan_succeeded",
    ]);
    let gate = waiting_gate();
    project.sdlc_ok(&["orchestrate", "approve", &gate]);
    wait_for_status(&project, &quiet, "completed", Duration::from_secs(20));
    let got = wait_for("the second run's end", Duration::from_secs(20), || {
        let got = hook.received();
        (got.len() == 3).then_some(got)
    });
    assert_eq!(got[2].body["event"], "plan_succeeded");
}

fn a_run_the_daemons_death_cut_off_is_told_as_interrupted_by_the_next_start(backend: Backend) {
    let project = Project::on(backend);
    project.tool("slow", "cat > /dev/null\nsleep 30\necho '{\"ok\": true}'");
    let hook = Receiver::start(0, 200);
    let url = hook.url("hook");
    let args = [
        "--tick-rate",
        "60",
        "--notify-webhook",
        url.as_str(),
        "--notify-on",
        "interrupted,failed",
    ];
    let daemon = project.daemon(&args);
    let id = project.add(&["long", "--tool", "slow"]);
    wait_for_status(&project, &id, "running", Duration::from_secs(20));
    daemon.kill9();
    let _daemon = project.daemon(&args);
    let got = wait_for("the interruption notice", Duration::from_secs(20), || {
        let got = hook.received();
        (!got.is_empty()).then_some(got)
    });
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body["event"], "interrupted");
    assert_eq!(got[0].body["action_id"], id.as_str());
    assert!(
        got[0].body["reason"]
            .as_str()
            .unwrap()
            .starts_with("interrupted")
    );
}

on_both_backends!(
    awaiting_approval_reaches_slack_with_the_link_and_the_action_records_it,
    a_failing_action_with_retries_notifies_once_after_its_last_attempt,
    a_receiver_that_fails_three_times_gets_the_message_once_acknowledged,
    a_notification_pending_when_the_daemon_is_killed_is_sent_after_restart_and_a_sent_one_is_not,
    a_plan_gate_and_the_runs_end_notify_and_a_plans_notify_on_reaches_its_steps,
    a_run_the_daemons_death_cut_off_is_told_as_interrupted_by_the_next_start,
);

/// A receiver on loopback that reads each request whole, then lets `reply` write the answer.
fn raw_receiver(reply: impl Fn(&mut std::net::TcpStream) + Send + 'static) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            reply(&mut stream);
        }
    });
    addr
}

fn rss_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024
}

/// A receiver that redirects is refused, the redirect not followed (the message and its
/// idempotency key must not go where an answer points); one that answers without end is read
/// a few KiB and costs the daemon no memory. Both are given in a 0600 file, not on argv.
#[test]
fn receivers_that_redirect_or_answer_without_end_are_refused_and_cost_nothing() {
    use std::io::Write;
    let project = Project::new();
    let elsewhere = Receiver::start(0, 200);
    let target = elsewhere.url("stolen");
    let redirecting = raw_receiver(move |stream| {
        let _ = write!(
            stream,
            "HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    });
    let endless = raw_receiver(|stream| {
        // 100 MB announced and sent until the daemon hangs up.
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\nConnection: close\r\n\r\n"
        );
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..1600 {
            if stream.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let file = project.root().join("receivers");
    std::fs::write(
        &file,
        format!("http://{redirecting}/hook\nhttp://{endless}/hook\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file_arg = file.to_str().unwrap();
    // A file others may read is refused, naming it.
    let out = project.sdlc(&[
        "orchestrate",
        "--notify-webhook-file",
        file_arg,
        "--listen",
        "127.0.0.1:0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("chmod 600"),
        "{stderr}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let daemon = project.daemon(&["--notify-webhook-file", file_arg]);
    let before = rss_mib(daemon.pid());
    let out = project.sdlc(&["orchestrate", "notify", "test"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("HTTP 302") && text.contains("not followed"),
        "{text}"
    );
    assert!(elsewhere.received().is_empty(), "the redirect was followed");
    let endless_line = text
        .lines()
        .find(|l| l.contains(&endless.to_string()))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(endless_line.starts_with("ok"), "{text}");
    assert!(
        endless_line.len() < 1000,
        "the answer is cut: {endless_line}"
    );
    let after = rss_mib(daemon.pid());
    assert!(
        after < before + 32,
        "reading the endless answer grew the daemon from {before} to {after} MiB"
    );
    assert!(daemon.stop().success());
}
