//! Whole run logs end to end: what a tool prints on stdout and stderr is kept whole (and
//! bounded by --log-cap with its head and tail), per attempt, filtered by pipe and tail,
//! followed live while the tool runs, served by the API, and gone with its action.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::{Backend, Project, http, wait_for_status};

fn logs(project: &Project, args: &[&str]) -> String {
    let mut full = vec!["orchestrate", "logs"];
    full.extend_from_slice(args);
    project.sdlc_ok(&full)
}

fn a_runs_whole_output_is_kept_and_filtered(backend: Backend) {
    let project = Project::on(backend);
    project.tool(
        "chatty",
        "cat > /dev/null\n\
         i=0; while [ $i -lt 500 ]; do echo \"err $i\" >&2; echo \"out $i\"; i=$((i+1)); done\n\
         echo '{\"ok\": true}'",
    );
    let daemon = project.daemon(&[]);
    let id = project.add(&["chatty", "--tool", "chatty"]);
    wait_for_status(&project, &id, "completed", Duration::from_secs(30));

    let all = logs(&project, &[&id]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 1001, "every line of both pipes: {all}");
    // Each pipe keeps its own order (across the two, lines printed together may come in
    // either order).
    let stderr = logs(&project, &[&id, "--stderr"]);
    let expected: Vec<String> = (0..500).map(|i| format!("err {i}")).collect();
    assert_eq!(stderr.lines().collect::<Vec<_>>(), expected);
    let tail = logs(&project, &[&id, "--stdout", "--tail", "2"]);
    assert_eq!(tail, "out 499\n{\"ok\": true}\n");

    // The API answers the same, with the attempt it is.
    let token = daemon.token(&project);
    let auth = format!("Bearer {token}");
    let answer = common::http_answer(
        daemon.addr,
        "GET",
        &format!("/api/orchestrator/actions/{id}/log?stream=stderr&tail=1"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, "err 499\n");
    assert_eq!(answer.header("x-sdlc-attempt"), Some("1"));
    let (status, body) = http(
        daemon.addr,
        "GET",
        &format!("/api/orchestrator/actions/{id}/log?stream=both-ways"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("stdout or stderr"), "{body}");
    drop(daemon);

    // Without a daemon the command reads the database itself.
    assert_eq!(logs(&project, &[&id]), all);
    if backend == Backend::Redb {
        let mode = std::fs::metadata(project.db_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the database (and the logs in it) is its owner's"
        );
    }
}

fn a_log_past_its_cap_keeps_head_and_tail_and_says_what_was_left_out(backend: Backend) {
    let project = Project::on(backend);
    project.tool(
        "flood",
        "cat > /dev/null\n\
         i=0; while [ $i -lt 20000 ]; do echo \"line $i of the flood\" >&2; i=$((i+1)); done\n\
         exit 3",
    );
    let _daemon = project.daemon(&["--log-cap", "16384"]);
    let id = project.add(&["flood", "--tool", "flood"]);
    wait_for_status(&project, &id, "failed", Duration::from_secs(60));
    let log = logs(&project, &[&id]);
    assert!(log.len() < 16384 + 512, "{} bytes kept", log.len());
    assert!(log.starts_with("line 0 of the flood\n"), "{log}");
    assert!(log.contains("line 19999 of the flood\n"), "{log}");
    assert!(
        log.contains("left out here"),
        "the note between head and tail: {log}"
    );
}

fn each_attempt_keeps_its_own_log(backend: Backend) {
    let project = Project::on(backend);
    let marker = project.root().join("attempted");
    project.tool(
        "flaky",
        &format!(
            "cat > /dev/null\n\
             if [ -e {m} ]; then echo second try >&2; echo '{{\"ok\": true}}'; exit 0; fi\n\
             touch {m}; echo first try >&2; exit 1",
            m = marker.display()
        ),
    );
    let _daemon = project.daemon(&[]);
    let id = project.add(&[
        "flaky",
        "--tool",
        "flaky",
        "--retries",
        "1",
        "--backoff",
        "1s",
    ]);
    wait_for_status(&project, &id, "completed", Duration::from_secs(30));
    assert_eq!(
        logs(&project, &[&id, "--stderr"]),
        "second try\n",
        "the latest attempt by default"
    );
    assert_eq!(
        logs(&project, &[&id, "--attempt", "1", "--stderr"]),
        "first try\n"
    );
    let out = project.sdlc(&["orchestrate", "logs", &id, "--attempt", "3"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no attempt 3"), "{err}");
}

fn follow_prints_lines_while_the_tool_runs_and_ends_with_it(backend: Backend) {
    let project = Project::on(backend);
    let go = project.root().join("go-on");
    project.tool(
        "slow",
        &format!(
            "cat > /dev/null\necho started >&2\n\
             while [ ! -e {go} ]; do sleep 0.05; done\n\
             echo finished\necho '{{\"ok\": true}}'",
            go = go.display()
        ),
    );
    let _daemon = project.daemon(&[]);
    let id = project.add(&["slow", "--tool", "slow"]);
    wait_for_status(&project, &id, "running", Duration::from_secs(30));
    let mut follower = project
        .command(&["orchestrate", "logs", &id, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follower.stdout.take().unwrap());
    let mut line = String::new();
    // The tool is still blocked on the file: this line can only have come live.
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    assert_eq!(project.find(&id)["status"], "running");
    std::fs::write(&go, "").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = follower.wait().unwrap();
    assert!(status.success());
    assert_eq!(rest, "finished\n{\"ok\": true}\n");
    assert_eq!(project.find(&id)["status"], "completed");
}

fn a_removed_action_takes_its_log_with_it(backend: Backend) {
    let project = Project::on(backend);
    project.tool(
        "say",
        "cat > /dev/null\necho said >&2\necho '{\"ok\": true}'",
    );
    let daemon = project.daemon(&[]);
    let id = project.add(&["say", "--tool", "say"]);
    wait_for_status(&project, &id, "completed", Duration::from_secs(30));
    assert_eq!(logs(&project, &[&id, "--stderr"]), "said\n");
    let token = daemon.token(&project);
    let auth = format!("Bearer {token}");
    let (status, body) = http(
        daemon.addr,
        "DELETE",
        &format!("/api/orchestrator/actions/{id}"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let out = project.sdlc(&["orchestrate", "logs", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no action with id"));
}

on_both_backends!(
    a_runs_whole_output_is_kept_and_filtered,
    a_log_past_its_cap_keeps_head_and_tail_and_says_what_was_left_out,
    each_attempt_keeps_its_own_log,
    follow_prints_lines_while_the_tool_runs_and_ends_with_it,
    a_removed_action_takes_its_log_with_it,
);
