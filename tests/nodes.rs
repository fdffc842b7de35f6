//! Several daemons on one PostgreSQL database: they share one queue, each action runs once,
//! and a node that dies or stops has its runs recovered by the others.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

/// Runs of each label across `projects`' run logs (each project is one node's machine).
fn runs_by_label(projects: &[Project]) -> HashMap<String, usize> {
    let mut runs = HashMap::new();
    for project in projects {
        for line in std::fs::read_to_string(project.runs_log())
            .unwrap_or_default()
            .lines()
        {
            *runs.entry(line.to_string()).or_insert(0) += 1;
        }
    }
    runs
}

#[test]
fn a_daemon_on_postgres_runs_what_a_command_adds() {
    let project = Project::on(Backend::Postgres);
    project.counting_tool("count");
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let id = project.add(&["hello", "--tool", "count"]);
    let done = wait_for_status(&project, &id, "completed", Duration::from_secs(20));
    assert_eq!(done["label"], "hello");
    assert_eq!(project.runs_of("hello"), 1);
    let status = project.sdlc_ok(&["orchestrate", "status"]);
    assert!(status.contains("postgres://"), "{status}");
    assert!(status.contains("nodes:    1"), "{status}");
    let status: serde_json::Value =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "status", "--json"])).unwrap();
    assert_eq!(status["nodes"][0]["alive"], true, "{status}");
    let check = project.sdlc_ok(&["orchestrate", "check"]);
    assert!(check.contains("every record verified"), "{check}");
    assert!(daemon.stop().success());
}

/// `count` actions labelled `prefix-N`, all due at `at`, added through `daemon`'s API from
/// several connections at once (stored in the shared database, seen by every node).
fn add_many(project: &Project, daemon: &Daemon, prefix: &str, count: usize, at: &str) {
    let auth = format!("Bearer {}", daemon.token(project));
    std::thread::scope(|s| {
        for worker in 0..8 {
            let auth = auth.as_str();
            s.spawn(move || {
                for n in (worker..count).step_by(8) {
                    let body = serde_json::json!({
                        "label": format!("{prefix}-{n}"), "tool_name": "count", "at": at,
                    });
                    let (status, answer) = http(
                        daemon.addr,
                        "POST",
                        "/api/orchestrator/actions",
                        &[
                            ("Authorization", auth),
                            ("Content-Type", "application/json"),
                        ],
                        body.to_string().as_bytes(),
                    );
                    assert_eq!(status, 201, "{answer}");
                }
            });
        }
    });
}

#[test]
fn three_nodes_share_2000_actions_due_at_once_and_run_each_exactly_once() {
    let url = fresh_database();
    let nodes: Vec<Project> = (0..3).map(|_| Project::on_database(&url)).collect();
    for node in &nodes {
        node.counting_tool("count");
    }
    let daemons: Vec<Daemon> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| node.daemon(&["--node", &format!("node-{i}"), "--max-concurrency", "8"]))
        .collect();
    // All due at one instant, far enough ahead for the adds to be stored first (on a
    // machine busy with the other tests, 2000 adds have taken up to 20 s).
    let at = (chrono::Utc::now() + chrono::Duration::seconds(40)).to_rfc3339();
    let started = std::time::Instant::now();
    add_many(&nodes[0], &daemons[0], "a", 2000, &at);
    eprintln!("added 2000 in {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(39),
        "adding took {:?}: the actions did not all wait for one instant",
        started.elapsed()
    );
    wait_for("2000 runs", Duration::from_secs(120), || {
        let ran: usize = runs_by_label(&nodes).values().sum();
        (ran >= 2000).then_some(())
    });
    // A tool logs its label before its outcome is committed: wait for the store to say all
    // 2000 completed (after which nothing can run again), then count the starts.
    wait_for("2000 completed", Duration::from_secs(30), || {
        let counts = nodes[1].sdlc_ok(&["orchestrate", "status", "--json"]);
        let status: serde_json::Value = serde_json::from_str(&counts).unwrap();
        (status["actions"]["completed"] == 2000).then_some(())
    });
    let runs = runs_by_label(&nodes);
    assert_eq!(runs.len(), 2000);
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "ran more than once: {twice:?}");
    for (i, node) in nodes.iter().enumerate() {
        let mine = std::fs::read_to_string(node.runs_log()).unwrap_or_default();
        assert!(!mine.is_empty(), "node {i} ran nothing");
    }
    for daemon in daemons {
        assert!(daemon.stop().success());
    }
}

#[test]
fn a_killed_node_s_claims_that_never_started_go_back_to_pending_and_run_once() {
    let url = fresh_database();
    let (a, b) = (Project::on_database(&url), Project::on_database(&url));
    for project in [&a, &b] {
        project.tool(
            "count",
            &format!(
                "echo \"$SDLC_ACTION_LABEL $SDLC_ATTEMPT\" >> {}\nsleep 0.1\necho '{{\"ok\":true}}'",
                project.runs_log().display()
            ),
        );
    }
    // One slot and short runs: a claims actions ahead of its slot, and holds them Running
    // in the database before their tools start.
    let node_a = a.daemon(&["--node", "a", "--lease", "2s", "--max-concurrency", "1"]);
    add_many(&a, &node_a, "job", 40, &chrono::Utc::now().to_rfc3339());
    wait_for("a to claim ahead", Duration::from_secs(30), || {
        let status: serde_json::Value =
            serde_json::from_str(&a.sdlc_ok(&["orchestrate", "status", "--json"])).unwrap();
        (status["actions"]["running"].as_u64() >= Some(3)).then_some(())
    });
    node_a.kill9();

    let node_b = b.daemon(&["--node", "b", "--lease", "2s"]);
    let all = wait_for("every action to end", Duration::from_secs(60), || {
        let all = b.list();
        let ended = all
            .iter()
            .all(|a| matches!(a["status"].as_str(), Some("completed" | "failed")));
        (all.len() == 40 && ended).then_some(all)
    });
    // Only the run in flight when a died (one slot) is interrupted; what a had claimed
    // and never started ran on b as a first attempt.
    let failed: Vec<_> = all.iter().filter(|a| a["status"] == "failed").collect();
    assert!(failed.len() <= 1, "{failed:?}");
    for action in &failed {
        assert!(
            action["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("interrupted")),
            "{action}"
        );
    }
    let returned: usize = node_b
        .stderr()
        .lines()
        .filter(|line| line.contains("recovered the runs of nodes"))
        .filter_map(|line| {
            line.split("returned=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!(
        returned >= 1,
        "no claim ahead was handed back: {}",
        node_b.stderr()
    );
    let runs = runs_by_label(&[a, b]);
    for action in all.iter().filter(|a| a["status"] == "completed") {
        assert_eq!(action["attempt"], 1, "{action}");
        let label = action["label"].as_str().unwrap();
        assert_eq!(runs.get(&format!("{label} 1")), Some(&1), "{action}");
    }
    assert!(node_b.stop().success());
}

/// A tool that logs "label attempt" when it starts, sleeps `secs`, then succeeds.
fn slow_tool(project: &Project, secs: u32) {
    project.tool(
        "slow",
        &format!(
            "echo \"$SDLC_ACTION_LABEL $SDLC_ATTEMPT\" >> {}\nsleep {secs}\necho '{{\"ok\":true}}'",
            project.runs_log().display()
        ),
    );
}

#[test]
fn a_stopped_node_has_its_run_recovered_elsewhere_and_its_late_outcome_is_refused() {
    let url = fresh_database();
    let (a, b) = (Project::on_database(&url), Project::on_database(&url));
    slow_tool(&a, 3);
    slow_tool(&b, 1);
    let node_a = a.daemon(&["--node", "a", "--lease", "2s"]);
    let id = a.add(&["job", "--tool", "slow", "--retries", "1", "--backoff", "1s"]);
    wait_for_status(&a, &id, "running", Duration::from_secs(20));
    let node_b = b.daemon(&["--node", "b", "--lease", "2s"]);

    // a stops (its tool goes on: only the daemon is stopped) and misses its heartbeats: b
    // recovers the run, retries it and completes it.
    node_a.signal(nix::sys::signal::Signal::SIGSTOP);
    let done = wait_for_status(&b, &id, "completed", Duration::from_secs(30));
    assert_eq!(done["attempt"], 2, "{done}");
    let outcomes: Vec<&str> = done["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["interrupted", "completed"], "{done}");
    assert_eq!(b.runs_of("job 2"), 1, "b ran the retry");

    // a comes back: its tool has finished meanwhile; its outcome is refused, and said so.
    node_a.signal(nix::sys::signal::Signal::SIGCONT);
    wait_for(
        "a to refuse its late outcome",
        Duration::from_secs(20),
        || {
            node_a
                .stderr()
                .contains("late outcome refused")
                .then_some(())
        },
    );
    wait_for(
        "a to learn it was presumed dead",
        Duration::from_secs(20),
        || node_a.stderr().contains("lease ran out").then_some(()),
    );
    let after = b.find(&id);
    assert_eq!(after["status"], "completed");
    assert_eq!(after["attempts"].as_array().unwrap().len(), 2, "{after}");
    assert!(node_a.stop().success());
    assert!(node_b.stop().success());
}

/// Posts deliveries to `/webhooks/push` on the `live` nodes in turn, `pause` apart, until
/// `stop` is set (at most 20,000), noting the id of each one acknowledged.
fn post_load(
    live: &std::sync::Mutex<Vec<std::net::SocketAddr>>,
    stop: &std::sync::atomic::AtomicBool,
    acked: &std::sync::Mutex<Vec<String>>,
    pause: Duration,
) {
    let mut n = 0usize;
    while !stop.load(std::sync::atomic::Ordering::Acquire) && n < 20_000 {
        n += 1;
        let addr = {
            let live = live.lock().unwrap();
            live[n % live.len()]
        };
        if let Some((202, body)) = try_post(addr, "/webhooks/push", &format!("{{\"n\":{n}}}")) {
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
            acked
                .lock()
                .unwrap()
                .push(answer["id"].as_str().unwrap().to_string());
        }
        std::thread::sleep(pause);
    }
}

/// POSTs `body` to `path` on `addr`; None when the node does not answer (it was killed).
fn try_post(addr: std::net::SocketAddr, path: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

#[test]
fn killing_a_node_again_and_again_under_load_loses_nothing_acknowledged_and_runs_nothing_twice() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let url = fresh_database();
    let nodes: Vec<Project> = (0..3).map(|_| Project::on_database(&url)).collect();
    for node in &nodes {
        node.tool(
            "count",
            &format!(
                "echo \"$SDLC_ACTION_ID $SDLC_ATTEMPT\" >> {}\nsleep 0.3\necho '{{\"ok\":true}}'",
                node.runs_log().display()
            ),
        );
    }
    let start = |i: usize, incarnation: usize| {
        nodes[i].daemon(&["--node", &format!("n{i}-{incarnation}"), "--lease", "2s"])
    };
    let mut daemons: Vec<Daemon> = (0..3).map(|i| start(i, 0)).collect();
    nodes[0].sdlc_ok(&["orchestrate", "webhook", "add", "push", "--tool", "count"]);
    let tick = nodes[0].add(&["tick", "--tool", "count", "--every", "1s"]);
    let live: Arc<Mutex<Vec<std::net::SocketAddr>>> =
        Arc::new(Mutex::new(daemons.iter().map(|d| d.addr).collect()));

    // Webhooks to every live node in turn, while node 0 is killed and started again.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    std::thread::scope(|s| {
        let load = {
            let (live, stop, acked) = (live.clone(), stop.clone(), acked.clone());
            s.spawn(move || post_load(&live, &stop, &acked, Duration::from_millis(20)))
        };
        for incarnation in 1..=3 {
            // Let node 0 take some of the work under load, then kill it mid-run.
            let runs_before = std::fs::read_to_string(nodes[0].runs_log())
                .unwrap_or_default()
                .lines()
                .count();
            wait_for("load on node 0", Duration::from_secs(60), || {
                let runs = std::fs::read_to_string(nodes[0].runs_log())
                    .unwrap_or_default()
                    .lines()
                    .count();
                (runs >= runs_before + 3 && acked.lock().unwrap().len() >= 40 * incarnation)
                    .then_some(())
            });
            let victim = daemons.remove(0);
            let addr = victim.addr;
            live.lock().unwrap().retain(|a| *a != addr);
            victim.kill9();
            let again = start(0, incarnation);
            live.lock().unwrap().push(again.addr);
            daemons.insert(0, again);
        }
        stop.store(true, Ordering::Release);
        load.join().unwrap();
    });
    let acknowledged = acked.lock().unwrap().clone();
    nodes[1].sdlc_ok(&["orchestrate", "cancel", &tick]);
    assert!(
        acknowledged.len() > 20,
        "only {} acknowledged",
        acknowledged.len()
    );

    // Every acknowledged delivery ends, whoever held it when its node died.
    let finished = |a: &serde_json::Value| {
        matches!(
            a["status"].as_str(),
            Some("completed" | "failed" | "skipped")
        )
    };
    let all = wait_for("every run to end", Duration::from_secs(60), || {
        let all = nodes[2].list();
        let webhook_done = acknowledged.iter().all(|id| {
            all.iter()
                .any(|a| a["id"].as_str() == Some(id.as_str()) && finished(a))
        });
        let none_running = all.iter().all(|a| a["status"] != "running");
        (webhook_done && none_running).then_some(all)
    });
    let interrupted = all
        .iter()
        .filter(|a| {
            a["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("interrupted"))
        })
        .count();
    assert!(
        interrupted > 0,
        "no kill caught a run in flight: nothing was recovered"
    );
    // The only failures: runs interrupted by a kill, and the schedule's last occurrence,
    // cancelled above.
    for action in all.iter().filter(|a| a["status"] == "failed") {
        let reason = action["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("interrupted") || reason.starts_with("cancelled by the user"),
            "{action}"
        );
    }
    // Nothing that completed ran twice: one start of its completed attempt, none after it.
    let mut starts: HashMap<String, usize> = HashMap::new();
    for node in &nodes {
        for line in std::fs::read_to_string(node.runs_log())
            .unwrap_or_default()
            .lines()
        {
            *starts.entry(line.to_string()).or_insert(0) += 1;
        }
    }
    for action in all.iter().filter(|a| a["status"] == "completed") {
        let (id, attempt) = (
            action["id"].as_str().unwrap(),
            action["attempt"].as_u64().unwrap(),
        );
        assert_eq!(
            starts.get(&format!("{id} {attempt}")).copied().unwrap_or(0),
            1,
            "{action}"
        );
        assert!(
            !starts.contains_key(&format!("{id} {}", attempt + 1)),
            "{action}"
        );
    }
    for daemon in daemons {
        assert!(daemon.stop().success());
    }
}

#[test]
fn while_postgres_restarts_ingress_answers_503_and_every_202_is_stored_and_runs() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    // A server of this test's own, to kill and start again.
    let mut cluster = sdlc_pgtest::Cluster::start().expect("a PostgreSQL server");
    let url = cluster.fresh_database().unwrap();
    let project = Project::on_database(&url);
    project.tool(
        "count",
        &format!(
            "echo \"$SDLC_ACTION_ID\" >> {}\necho '{{\"ok\":true}}'",
            project.runs_log().display()
        ),
    );
    let daemon = project.daemon(&["--lease", "30s"]);
    project.sdlc_ok(&["orchestrate", "webhook", "add", "push", "--tool", "count"]);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let others = Arc::new(Mutex::new(Vec::<(u16, String)>::new()));
    std::thread::scope(|s| {
        // Stops the load however this scope ends (a failed wait panics).
        struct StopOnDrop(Arc<AtomicBool>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _stop_load = StopOnDrop(stop.clone());
        let addr = daemon.addr;
        let (stop_load, acked_load, refused_load, others_load) =
            (stop.clone(), acked.clone(), refused.clone(), others.clone());
        s.spawn(move || {
            let mut n = 0;
            while !stop_load.load(Ordering::Acquire) {
                n += 1;
                match try_post(addr, "/webhooks/push", &format!("{{\"n\":{n}}}")) {
                    Some((202, body)) => {
                        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                        acked_load
                            .lock()
                            .unwrap()
                            .push(answer["id"].as_str().unwrap().to_string());
                    }
                    Some((503, _)) => {
                        refused_load.fetch_add(1, Ordering::AcqRel);
                    }
                    Some(other) => others_load.lock().unwrap().push(other),
                    None => others_load.lock().unwrap().push((0, "no answer".into())),
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let count = |n: usize| {
            let acked = &acked;
            move || (acked.lock().unwrap().len() >= n).then_some(())
        };
        wait_for(
            "202s before the restart",
            Duration::from_secs(30),
            count(30),
        );
        cluster.kill();
        wait_for(
            "503s while the server is down",
            Duration::from_secs(60),
            || (refused.load(Ordering::Acquire) >= 3).then_some(()),
        );
        // A command fails, saying why.
        let out = project.sdlc(&["orchestrate", "list"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot connect") || stderr.contains("cannot be reached"),
            "{stderr}"
        );
        cluster.restart().unwrap();
        let before = acked.lock().unwrap().len();
        wait_for(
            "202s after the restart",
            Duration::from_secs(60),
            count(before + 30),
        );
        stop.store(true, Ordering::Release);
    });
    let others = others.lock().unwrap().clone();
    assert!(
        others.is_empty(),
        "answers other than 202 and 503: {others:?}"
    );
    let acked = acked.lock().unwrap().clone();
    // Every acknowledged delivery was stored and runs, once.
    wait_for(
        "every acknowledged delivery to run",
        Duration::from_secs(60),
        || {
            let log = std::fs::read_to_string(project.runs_log()).unwrap_or_default();
            let ran: std::collections::HashSet<&str> = log.lines().collect();
            acked
                .iter()
                .all(|id| ran.contains(id.as_str()))
                .then_some(())
        },
    );
    let log = std::fs::read_to_string(project.runs_log()).unwrap_or_default();
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for line in log.lines() {
        *runs.entry(line).or_insert(0) += 1;
    }
    assert!(runs.values().all(|n| *n == 1), "a delivery ran twice");
    assert!(daemon.stop().success());
}

/// A node paused past its lease again and again under webhook load (SIGSTOP, then SIGCONT)
/// starts nothing the other node took over: every delivery's tool starts at most once, and
/// every acknowledged delivery ends.
#[test]
fn a_node_paused_past_its_lease_again_and_again_starts_no_claim_it_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let url = fresh_database();
    let (a, b) = (Project::on_database(&url), Project::on_database(&url));
    for node in [&a, &b] {
        node.tool(
            "count",
            &format!(
                "echo \"$SDLC_ACTION_ID\" >> {}\nsleep 0.05\necho '{{\"ok\":true}}'",
                node.runs_log().display()
            ),
        );
    }
    let node_a = a.daemon(&["--node", "a", "--lease", "2s"]);
    let node_b = b.daemon(&["--node", "b", "--lease", "2s"]);
    b.sdlc_ok(&["orchestrate", "webhook", "add", "push", "--tool", "count"]);
    let runs_on = |p: &Project| {
        std::fs::read_to_string(p.runs_log())
            .unwrap_or_default()
            .lines()
            .count()
    };
    let a_alive = || {
        let status: serde_json::Value =
            serde_json::from_str(&b.sdlc_ok(&["orchestrate", "status", "--json"])).unwrap();
        status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node"] == "a")
    };

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    std::thread::scope(|s| {
        // Webhooks to b, which never stops; both nodes claim them from the shared queue.
        let load = {
            let (stop, acked) = (stop.clone(), acked.clone());
            let live = Mutex::new(vec![node_b.addr]);
            s.spawn(move || post_load(&live, &stop, &acked, Duration::from_millis(5)))
        };
        for round in 1..=5 {
            let before = runs_on(&a);
            wait_for("a to run some of the load", Duration::from_secs(60), || {
                (runs_on(&a) >= before + 5).then_some(())
            });
            node_a.signal(nix::sys::signal::Signal::SIGSTOP);
            // Paused until b has presumed it dead (and recovered what it held).
            wait_for("b to forget a", Duration::from_secs(30), || {
                (!a_alive()).then_some(())
            });
            node_a.signal(nix::sys::signal::Signal::SIGCONT);
            wait_for("a to join again", Duration::from_secs(30), || {
                (node_a.stderr().matches("lease ran out").count() >= round && a_alive())
                    .then_some(())
            });
        }
        stop.store(true, Ordering::Release);
        load.join().unwrap();
    });
    let acknowledged = acked.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 100,
        "only {} acknowledged",
        acknowledged.len()
    );
    let all = wait_for("every delivery to end", Duration::from_secs(60), || {
        let all = b.list();
        let open: Vec<String> = all
            .iter()
            .filter(|a| !matches!(a["status"].as_str(), Some("completed" | "failed")))
            .map(|a| format!("{} {}", a["id"], a["status"]))
            .collect();
        (open.is_empty() && all.len() >= acknowledged.len()).then_some(all)
    });
    for id in &acknowledged {
        assert!(all.iter().any(|a| a["id"] == id.as_str()), "{id} lost");
    }
    let mut starts: HashMap<String, usize> = HashMap::new();
    for node in [&a, &b] {
        for line in std::fs::read_to_string(node.runs_log())
            .unwrap_or_default()
            .lines()
        {
            *starts.entry(line.to_string()).or_insert(0) += 1;
        }
    }
    let twice: Vec<&String> = starts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(twice.is_empty(), "ran twice: {twice:?}");
    // Each failure is a run a pause caught in flight (recovered as interrupted), never more.
    for action in all.iter().filter(|a| a["status"] == "failed") {
        let reason = action["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("interrupted"), "{action}");
    }
    let paused_refusals = node_a
        .stderr()
        .matches("lease ran out before the tool")
        .count()
        + node_a
            .stderr()
            .matches("no longer this node's claim")
            .count();
    eprintln!(
        "acknowledged {}, started on a {}, on b {}, a's starts refused after a pause {paused_refusals}",
        acknowledged.len(),
        runs_on(&a),
        runs_on(&b)
    );
    assert!(node_a.stop().success());
    assert!(node_b.stop().success());
}

/// The database's password may come from the environment or a file, not the URL: a file that
/// cannot be read is named with the variable that named it.
#[test]
fn the_database_password_can_come_from_a_file() {
    let url = fresh_database();
    let project = Project::on_database(&url);
    let missing = project.root().join("no-such-password");
    let out = project
        .command(&["orchestrate", "list"])
        .env("SDLC_DATABASE_PASSWORD_FILE", &missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("SDLC_DATABASE_PASSWORD_FILE") && stderr.contains("no-such-password"),
        "{stderr}"
    );
    // The test server trusts loopback, so any password from a readable file lets it in.
    let file = project.root().join("password");
    std::fs::write(&file, "s3cret\n").unwrap();
    let out = project
        .command(&["orchestrate", "list"])
        .env("SDLC_DATABASE_PASSWORD_FILE", &file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
