//! The reliability suite: each promise of RELIABILITY.md with the test that proves it, against
//! the real binary, real processes and real HTTP on loopback. Bounded in time; CI runs the
//! short version, `SDLC_RELIABILITY_FULL=1` the full one (25 crash rounds instead of 5).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Daemon, Project, http, wait_for, wait_for_status};
use serde_json::{Value, json};

fn full() -> bool {
    std::env::var_os("SDLC_RELIABILITY_FULL").is_some()
}

/// A deterministic spread of numbers (test variety without flakiness from a random seed).
struct Spread(u64);

impl Spread {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn post_webhook(daemon: &Daemon, path: &str, body: &str) -> Option<String> {
    let stream = TcpStream::connect(daemon.addr).ok()?;
    drop(stream);
    let (status, text) = std::panic::catch_unwind(|| {
        http(
            daemon.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    })
    .ok()?;
    if status != 202 {
        return None;
    }
    let answer: Value = serde_json::from_str(&text).ok()?;
    answer["id"].as_str().map(str::to_string)
}

fn starts_by_id(project: &Project) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(project.root().join("starts"))
        .unwrap_or_default()
        .lines()
    {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Promise: crash safety. SIGKILL at varied points of a busy run, many times in a row.
#[test]
fn crash_safety_under_repeated_sigkill() {
    let rounds = if full() { 25 } else { 5 };
    let project = Project::new();
    let starts = project.root().join("starts");
    project.tool(
        "fast",
        &format!(
            "echo \"$SDLC_ACTION_ID\" >> {}\ncat > /dev/null\necho '{{\"ok\":true}}'",
            starts.display()
        ),
    );
    project.tool(
        "slow",
        &format!(
            "echo \"$SDLC_ACTION_ID\" >> {}\ncat > /dev/null\nsleep 0.4\necho '{{\"ok\":true}}'",
            starts.display()
        ),
    );
    project.sdlc_ok(&["orchestrate", "webhook", "add", "hook", "--tool", "fast"]);
    let beat = project.add(&["beat", "--tool", "fast", "--every", "1s"]);

    let mut spread = Spread(0x9e37_79b9_7f4a_7c15);
    let mut added = Vec::new();
    let mut acked = Vec::new();
    let mut failed_adds = 0;
    for _ in 0..rounds {
        let daemon = project.daemon(&["--tick-rate", "1"]);
        let ops = 2 + spread.below(6);
        for op in 0..ops {
            match op % 3 {
                0 | 1 => {
                    let tool = if op % 3 == 0 { "fast" } else { "slow" };
                    let out = project.sdlc(&["orchestrate", "add", "job", "--tool", tool]);
                    if out.status.success() {
                        added.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
                    } else {
                        failed_adds += 1;
                        let stderr = String::from_utf8_lossy(&out.stderr);
                        assert!(!stderr.contains("already open"), "{stderr}");
                    }
                }
                _ => {
                    if let Some(id) = post_webhook(&daemon, "/webhooks/hook", r#"{"n":1}"#) {
                        acked.push(id);
                    }
                }
            }
        }
        // Kill at a varied moment: right away, or while runs are going.
        std::thread::sleep(Duration::from_millis(spread.below(400)));
        daemon.kill9();
    }

    // A last start recovers everything; stop the recurring one and let the rest finish.
    let daemon = project.daemon(&["--tick-rate", "1"]);
    project.sdlc_ok(&["orchestrate", "cancel", &beat]);
    let actions = wait_for("every action to finish", Duration::from_secs(60), || {
        let actions = project.list();
        let busy = actions
            .iter()
            .any(|a| a["status"] == "pending" || a["status"] == "running");
        (!busy).then_some(actions)
    });
    drop(daemon);

    let by_id: HashMap<&str, &Value> = actions
        .iter()
        .map(|a| (a["id"].as_str().unwrap(), a))
        .collect();
    for id in added.iter().chain(&acked) {
        assert!(
            by_id.contains_key(id.as_str()),
            "acknowledged {id} was lost"
        );
    }
    let starts = starts_by_id(&project);
    let twice: Vec<_> = starts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "started more than once: {twice:?}");
    let mut completed = 0;
    let mut interrupted = 0;
    for action in &actions {
        let id = action["id"].as_str().unwrap();
        match action["status"].as_str().unwrap() {
            "completed" => {
                completed += 1;
                assert_eq!(
                    starts.get(id),
                    Some(&1),
                    "completed {id} did not run exactly once"
                );
            }
            "failed" => {
                let reason = action["reason"].as_str().unwrap();
                assert!(reason.contains("interrupted"), "{reason}");
                interrupted += 1;
            }
            // The recurring one, canceled at the end: before it ran, or stopped while it ran.
            "canceled" => {
                let reason = action["reason"].as_str().unwrap();
                assert!(reason.starts_with("canceled by "), "{reason}");
            }
            "skipped" => {}
            other => panic!("unexpected status {other} for {id}"),
        }
    }
    println!(
        "crash safety: {rounds} SIGKILLs, {} actions added ({failed_adds} adds refused while the daemon died), {} webhooks acknowledged, {} actions in all, {completed} completed, {interrupted} interrupted, 0 lost, 0 run twice",
        added.len(),
        acked.len(),
        actions.len()
    );
}

/// Promise: misbehaving tools end as Failed with a reason, and the daemon keeps ticking on time
/// with bounded memory.
#[test]
fn misbehaving_tools_fail_with_reasons_while_the_daemon_keeps_time() {
    let project = Project::new();
    let marker = project.root().join("grandchild.pid");
    let tools = [
        (
            "never-exits",
            "/bin/sleep 1000".to_string(),
            "timed out after 1s",
        ),
        (
            "grandchild",
            format!("/bin/sleep 1000 &\necho $! > {}\nexit 1", marker.display()),
            "exited with status 1",
        ),
        (
            "gigabyte",
            "/usr/bin/head -c 1000000000 /dev/zero".to_string(),
            "more than 4 MiB",
        ),
        (
            "not-utf8",
            "printf '\\377\\376garbage'".to_string(),
            "not UTF-8",
        ),
        (
            "by-signal",
            "kill -SEGV $$".to_string(),
            "killed by signal 11 (SIGSEGV)",
        ),
        (
            "closes-stdin",
            "exec 0<&-\necho 'gave up' >&2\nexit 1".to_string(),
            "exited with status 1; stderr: gave up",
        ),
    ];
    for (name, body, _) in &tools {
        project.tool(name, body);
    }
    // A TypeScript tool, with no runtime on the daemon's PATH.
    let ts = project.root().join(".sdlc/tools/typescript");
    std::fs::create_dir_all(&ts).unwrap();
    std::fs::write(ts.join("tool.ts"), "console.log('{\"ok\":true}')").unwrap();
    project.counting_tool("beat");

    // Added before the daemon starts, by a CLI that has a TypeScript runtime on its PATH: the
    // daemon (which has none) only finds out when it runs it. (Through the daemon, `add`
    // would refuse it up front.)
    let ts_id = project.add(&["typescript", "--tool", "typescript"]);
    let empty_path = tempfile::tempdir().unwrap();
    let mut command = project.command(&[
        "orchestrate",
        "--listen",
        "127.0.0.1:0",
        "--tick-rate",
        "60",
    ]);
    command.env("PATH", empty_path.path());
    let daemon = Daemon::start_command(command);
    let beat = project.add(&["beat", "--tool", "beat", "--every", "1s"]);
    let mut ids = Vec::new();
    for (name, _, _) in &tools {
        ids.push(project.add(&[
            name,
            "--tool",
            name,
            "--timeout",
            "1s",
            "--input",
            &json!({"pad": "x".repeat(100_000)}).to_string(),
        ]));
    }

    for ((_, _, expected), id) in tools.iter().zip(&ids) {
        let action = wait_for_status(&project, id, "failed", Duration::from_secs(20));
        let reason = action["reason"].as_str().unwrap();
        assert!(
            reason.contains(expected),
            "{id}: expected '{expected}' in '{reason}'"
        );
    }
    let action = wait_for_status(&project, &ts_id, "failed", Duration::from_secs(20));
    assert!(
        action["reason"]
            .as_str()
            .unwrap()
            .contains("no runtime was found")
    );
    // The grandchild went with its tool's process group.
    let pid = std::fs::read_to_string(&marker).unwrap().trim().to_string();
    wait_for("the grandchild to die", Duration::from_secs(5), || {
        common::process_gone(&pid.to_string()).then_some(())
    });

    // Meanwhile the heartbeat kept its schedule.
    let actions = project.list();
    let beats: Vec<&Value> = actions
        .iter()
        .filter(|a| a["series"] == beat.as_str() && a["status"] == "completed")
        .collect();
    assert!(beats.len() >= 2, "the heartbeat ran {} times", beats.len());
    for b in &beats {
        let late = common::lateness(b);
        assert!(
            late < chrono::Duration::milliseconds(1000),
            "a heartbeat started {late} late"
        );
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    println!(
        "misbehaving tools: all {} failed with reasons; daemon peak RSS {} MiB",
        tools.len() + 1,
        peak_kib / 1024
    );
    assert!(peak_kib < 128 * 1024, "daemon peak RSS {peak_kib} KiB");
}

/// Promise: hostile HTTP gets clear 4xx, stores nothing, and does not disturb the daemon.
#[test]
fn hostile_http_is_refused_and_harmless() {
    let project = Project::new();
    project.counting_tool("count");
    let daemon = project.daemon(&[]);
    project.sdlc_ok(&["orchestrate", "webhook", "add", "hook", "--tool", "count"]);
    let bearer = format!("Bearer {}", daemon.token(&project));
    let auth = |ct: &'static str| {
        vec![
            ("Authorization", bearer.clone()),
            ("Content-Type", ct.to_string()),
        ]
    };

    // Slow clients: connections that never finish their request.
    let mut stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(daemon.addr).unwrap();
            s.write_all(b"POST /webhooks/hook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
                .unwrap();
            s
        })
        .collect();

    // (method, path, headers, body, expected status)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/orchestrator/actions",
            auth("application/json"),
            b"{\"label\":".to_vec(),
            400,
        ),
        (
            "POST",
            "/api/orchestrator/actions",
            auth("text/plain"),
            b"{}".to_vec(),
            415,
        ),
        (
            "POST",
            "/api/orchestrator/actions",
            auth("application/json"),
            b"[1,2]".to_vec(),
            422,
        ),
        (
            "POST",
            "/api/orchestrator/webhooks/routes",
            auth("application/json"),
            b"{\"path\":1}".to_vec(),
            422,
        ),
        (
            "GET",
            "/api/orchestrator/actions?limit=lots",
            auth("application/json"),
            vec![],
            400,
        ),
        (
            "GET",
            "/api/orchestrator/actions/..%2F..%2Fetc",
            auth("application/json"),
            vec![],
            400,
        ),
        ("POST", "/webhooks/..%2Fhook", vec![], b"{}".to_vec(), 404),
        (
            "POST",
            "/webhooks/hook/../../api/orchestrator/actions",
            vec![],
            b"{}".to_vec(),
            404,
        ),
    ];
    for (method, path, headers, body, expected) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, text) = http(daemon.addr, method, path, &headers, body);
        assert_eq!(status, *expected, "{method} {path}: {text}");
        assert!(
            text.contains("\"error\""),
            "{method} {path}: not a JSON error: {text}"
        );
    }
    // A huge header is refused by the HTTP layer (smaller ones are stored cut to 4 KiB).
    let huge = "x".repeat(1_000_000);
    let huge_status = std::panic::catch_unwind(|| {
        http(
            daemon.addr,
            "POST",
            "/webhooks/hook",
            &[("X-Huge", &huge)],
            b"{}",
        )
        .0
    });
    if let Ok(status) = huge_status {
        assert!(
            (400..500).contains(&status),
            "huge header answered {status}"
        );
    }

    // The daemon still answers at once, while 50 clients stall.
    let started = Instant::now();
    let (status, _) = http(
        daemon.addr,
        "GET",
        "/api/orchestrator/status",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    for s in &mut stalled {
        let _ = s.write_all(b"X-Stall: 1\r\n");
    }
    assert!(
        project.list().is_empty(),
        "a refused request stored something"
    );
    drop(stalled);
}

/// Promise: authority. The token reaches no tool; the published file is private; the default
/// listener is loopback.
#[test]
fn tools_never_see_the_token_and_the_default_listener_is_loopback() {
    let project = Project::new();
    let dump = project.root().join("dump");
    project.tool(
        "dump",
        &format!(
            "env > {0}\necho \"$0 $@\" >> {0}\necho '{{\"ok\":true}}'",
            dump.display()
        ),
    );
    let mut command = project.command(&["orchestrate", "--listen", "127.0.0.1:0"]);
    command.env("SDLC_ORCHESTRATOR_TOKEN", "secret-token-for-the-test");
    let daemon = Daemon::start_command(command);
    let id = project.add(&["dump", "--tool", "dump"]);
    wait_for_status(&project, &id, "completed", Duration::from_secs(10));
    let seen = std::fs::read_to_string(&dump).unwrap();
    assert!(
        !seen.contains("secret-token-for-the-test"),
        "a tool saw the token:\n{seen}"
    );
    assert!(seen.contains("SDLC_ACTION_ID"), "{seen}");
    assert!(daemon.addr.ip().is_loopback());
    drop(daemon);
    // Without --listen, the daemon binds loopback only.
    let out = project.sdlc(&["orchestrate", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:7711"));
}

/// Promise: concurrent clients. 50 processes adding and listing while the daemon runs and
/// restarts: every add lands or fails clearly; nothing is duplicated; no lock errors.
#[test]
fn fifty_clients_across_a_daemon_restart() {
    let project = Project::new();
    project.counting_tool("count");
    let daemon = project.daemon(&[]);
    let children: Vec<_> = (0..50)
        .map(|i| {
            let args: Vec<String> = if i % 5 == 4 {
                vec!["orchestrate".into(), "list".into(), "--json".into()]
            } else {
                vec![
                    "orchestrate".into(),
                    "add".into(),
                    format!("c{i}"),
                    "--tool".into(),
                    "count".into(),
                ]
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            project
                .command(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Restart the daemon while they run.
    assert!(daemon.stop().success());
    let daemon = project.daemon(&[]);
    let mut landed = Vec::new();
    let mut refused = 0;
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !stderr.contains("already open") && !stderr.contains("Cannot acquire lock"),
            "{stderr}"
        );
        if out.status.success() {
            if i % 5 != 4 {
                landed.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
            }
        } else {
            refused += 1;
            eprintln!("refused: {stderr}");
            assert!(
                stderr.starts_with("error: ") && stderr.trim().lines().count() == 1,
                "{stderr}"
            );
        }
    }
    let actions = project.list();
    for id in &landed {
        assert_eq!(
            actions.iter().filter(|a| a["id"] == id.as_str()).count(),
            1,
            "{id}"
        );
    }
    let labels: Vec<&str> = actions
        .iter()
        .map(|a| a["label"].as_str().unwrap())
        .collect();
    let mut unique = labels.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), labels.len(), "an add was stored twice");
    println!(
        "concurrent clients: 40 adds and 10 lists across a restart: {} adds landed, {refused} commands refused with a clear error",
        landed.len()
    );
    drop(daemon);
}

/// Promise: orphans. A tool left running by a SIGKILLed daemon is killed at the next start.
#[test]
fn orphans_of_a_killed_daemon_are_killed_at_the_next_start() {
    let project = Project::new();
    let pid_file = project.root().join("tool.pid");
    project.tool(
        "long",
        &format!("echo $$ > {}\nexec /bin/sleep 1000", pid_file.display()),
    );
    let daemon = project.daemon(&[]);
    let id = project.add(&["long", "--tool", "long"]);
    let pid: i32 = wait_for("the tool to start", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    daemon.kill9();
    let alive = |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    assert!(alive(pid), "the orphan should outlive the daemon");

    let run_log = std::fs::read_to_string(project.root().join(".sdlc/orchestrator.db.runlog"))
        .unwrap_or_default();
    let daemon = project.daemon(&[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !common::process_gone(&pid.to_string()) {
        assert!(
            Instant::now() < deadline,
            "the orphan {pid} was not killed; run log before restart:\n{run_log}\ndaemon:\n{}\nstat: {}",
            daemon.stderr(),
            std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The daemon's report arrives on its stderr a moment after the kill: wait for it.
    wait_for(
        "the daemon to report the orphan",
        Duration::from_secs(5),
        || daemon.stderr().contains("still running").then_some(()),
    );
    // Recovery marks the action after the orphan's kill is reported: wait for that commit.
    let reason = wait_for(
        "the interrupted action to be marked failed",
        Duration::from_secs(10),
        || {
            let action = project.find(&id);
            (action["status"] == "failed").then(|| action["reason"].as_str().map(str::to_string))
        },
    );
    assert!(
        reason
            .as_deref()
            .unwrap_or_default()
            .contains("interrupted"),
        "reason: {reason:?}"
    );
}

/// Promise: claiming ahead never costs a run. The daemon claims short runs ahead of its free
/// slots; killed then, the actions it claimed but never started (no line of theirs in the run
/// log) are handed back at the next start and run once, instead of failing as interrupted.
#[test]
fn actions_claimed_ahead_but_never_started_run_after_a_crash() {
    let project = Project::new();
    let starts = project.root().join("starts");
    project.tool(
        "quick",
        &format!(
            "echo \"$SDLC_ACTION_ID\" >> {}\ncat > /dev/null\nsleep 0.03\necho '{{\"ok\":true}}'",
            starts.display()
        ),
    );
    let ids: Vec<String> = (0..60)
        .map(|i| project.add(&[&format!("job{i}"), "--tool", "quick"]))
        .collect();
    let daemon = project.daemon(&["--max-concurrency", "2"]);
    wait_for("a dozen runs", Duration::from_secs(30), || {
        (starts_by_id(&project).len() >= 12).then_some(())
    });
    daemon.kill9();

    // What the dead daemon left: Running actions, and the runs its log names.
    let run_log =
        std::fs::read_to_string(project.root().join(".sdlc/orchestrator.db.runlog")).unwrap();
    let running: Vec<String> = project
        .list()
        .into_iter()
        .filter(|a| a["status"] == "running")
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    let never_started: Vec<&String> = running
        .iter()
        .filter(|id| !run_log.contains(id.as_str()))
        .collect();
    assert!(
        !never_started.is_empty(),
        "nothing was claimed ahead when the daemon died (running: {running:?})"
    );

    let daemon = project.daemon(&["--max-concurrency", "2"]);
    let actions = wait_for("every action to finish", Duration::from_secs(60), || {
        let actions = project.list();
        let busy = actions
            .iter()
            .any(|a| a["status"] == "pending" || a["status"] == "running");
        (!busy).then_some(actions)
    });
    assert!(
        daemon.stderr().contains("pending again"),
        "{}",
        daemon.stderr()
    );
    drop(daemon);
    let starts = starts_by_id(&project);
    assert!(
        starts.values().all(|n| *n == 1),
        "a tool started twice: {starts:?}"
    );
    let by_id: HashMap<&str, &Value> = actions
        .iter()
        .map(|a| (a["id"].as_str().unwrap(), a))
        .collect();
    for id in &never_started {
        let action = by_id[id.as_str()];
        assert_eq!(action["status"], "completed", "{action}");
        assert_eq!(
            action["attempt"], 1,
            "the handed-back claim is not an attempt: {action}"
        );
    }
    for id in &ids {
        let action = by_id[id.as_str()];
        match action["status"].as_str().unwrap() {
            "completed" => assert_eq!(starts.get(id.as_str()), Some(&1), "{action}"),
            // Only a run that may have started fails as interrupted.
            "failed" => {
                assert!(action["reason"].as_str().unwrap().contains("interrupted"));
                assert!(run_log.contains(id.as_str()), "{action}");
            }
            other => panic!("unexpected status {other}: {action}"),
        }
    }
}

/// Promise: bad environment. Clear errors, non-zero exits, no panic, nothing destroyed.
#[test]
fn bad_environments_give_clear_errors_and_destroy_nothing() {
    // A database from a newer schema.
    let project = Project::new();
    project.counting_tool("count");
    project.add(&["x", "--tool", "count", "--at", "now+1h"]);
    {
        let db = redb::Database::create(project.db_path()).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap()
            .insert("schema_version", 99)
            .unwrap();
        tx.commit().unwrap();
    }
    let out = project.sdlc(&["orchestrate", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("newer sdlc"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A damaged file: refused with a clear error, left in place.
    let project = Project::new();
    project.counting_tool("count");
    project.add(&["x", "--tool", "count", "--at", "now+1h"]);
    let mut bytes = std::fs::read(project.db_path()).unwrap();
    let len = bytes.len();
    for b in bytes.iter_mut().take(512) {
        *b ^= 0xa5;
    }
    std::fs::write(project.db_path(), &bytes).unwrap();
    let out = project.sdlc(&["orchestrate", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.starts_with("error: ") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::metadata(project.db_path()).unwrap().len() as usize,
        len,
        "the file was changed"
    );

    // A database path that cannot be created.
    let out = project.sdlc(&["orchestrate", "list", "--db", "/dev/null/orchestrator.db"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("/dev/null"),
        "{stderr}"
    );

    // A full disk (a small tmpfs, where this machine lets us mount one).
    let project = Project::new();
    project.counting_tool("count");
    let mount = project.root().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        mounted,
        "the full-disk check mounts a small tmpfs: run the suite as root (CI does)"
    );
    let db = mount.join("orchestrator.db");
    let db_arg = db.to_str().unwrap().to_string();
    let big_input = json!({"pad": "y".repeat(60_000)}).to_string();
    let mut stored = 0;
    let mut refusal = String::new();
    for _ in 0..100 {
        let out = project.sdlc(&[
            "orchestrate",
            "add",
            "fill",
            "--tool",
            "count",
            "--at",
            "now+1h",
            "--db",
            &db_arg,
            "--input",
            &big_input,
        ]);
        if out.status.success() {
            stored += 1;
        } else {
            refusal = String::from_utf8_lossy(&out.stderr).to_string();
            break;
        }
    }
    assert!(!refusal.is_empty(), "the disk never filled");
    assert!(
        refusal.contains("No space left") && !refusal.contains("panicked"),
        "{refusal}"
    );
    // What was stored before the disk filled is intact and readable.
    let out = project.sdlc(&["orchestrate", "list", "--json", "--db", &db_arg]);
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let _ = std::process::Command::new("umount").arg(&mount).status();
    assert_eq!(
        listed.len(),
        stored,
        "stored {stored}, listed {}",
        listed.len()
    );
    println!(
        "full disk: {stored} actions stored, then a clear refusal: {}",
        refusal.trim()
    );
}
