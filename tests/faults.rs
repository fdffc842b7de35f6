//! Faults of the machine and of the network that the daemon must survive without losing
//! anything: a full disk, floods of idle connections, files readable by others, a database
//! file damaged, deleted or absent, a run log that is not a file. Each test
//! makes the fault for real (a size-limited tmpfs, thousands of sockets on loopback) against
//! the real binary. RELIABILITY.md lists what each proves.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Daemon, Project, http, wait_for};
use serde_json::Value;

/// A tmpfs of a given size mounted for one test, unmounted when dropped. Mounting needs root,
/// which CI and the development machines have; elsewhere the test fails saying so.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&path).unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&path)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "this test makes a full disk with a small tmpfs: run it as root (CI does)"
        );
        Tmpfs { path }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Bytes that do not compress (so each stored body takes new pages of the file).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Posts incompressible 64 KiB bodies until one is answered 507, noting the ids of those
/// acknowledged meanwhile; returns the refusal's body. Any other answer fails the test.
fn post_until_refused(
    post: &dyn Fn(&[u8]) -> (u16, String),
    acknowledged: &mut Vec<Value>,
) -> String {
    for seed in 0..400u64 {
        let (code, body) = post(&noise(seed + 1, 64 * 1024));
        match code {
            202 => acknowledged.push(serde_json::from_str::<Value>(&body).unwrap()["id"].clone()),
            507 => return body,
            other => panic!("a webhook on a full disk was answered {other}: {body}"),
        }
    }
    panic!("the disk never filled")
}

fn token_of(db: &Path) -> String {
    let file = format!("{}.daemon.json", db.display());
    let info: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    info["token"].as_str().unwrap().to_string()
}

fn api_status(daemon: &Daemon, token: &str) -> Value {
    let auth = format!("Bearer {token}");
    let (code, body) = http(
        daemon.addr,
        "GET",
        "/api/orchestrator/status",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(code, 200, "status must answer while degraded: {body}");
    serde_json::from_str(&body).unwrap()
}

/// User + system CPU time of process `pid`, in clock ticks (100 a second on Linux).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    field(11) + field(12)
}

/// Fills the file system of `dir` with one file, leaving nothing free.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.raw_os_error() == Some(28) => break,
            Err(err) => panic!("filling the disk failed: {err}"),
        }
    }
    // The last partial chunk, byte by byte, so not even a page is left.
    while file.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
    filler
}

#[test]
fn a_full_disk_degrades_the_daemon_which_resumes_once_space_is_back() {
    let project = Project::new();
    project.counting_tool("count");
    project.tool("slow", "sleep 1\necho '{\"ok\":true}'");
    let disk = Tmpfs::mount(project.root().join("small"), "16m");
    let db = disk.path.join("orchestrator.db");
    let db_arg = db.to_str().unwrap().to_string();
    let daemon = project.daemon(&["--db", &db_arg, "--tick-rate", "1"]);
    let token = token_of(&db);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "hook",
        "--tool",
        "count",
        "--template",
        "{}",
        "--db",
        &db_arg,
    ]);
    project.add(&["beat", "--tool", "count", "--every", "1s", "--db", &db_arg]);
    wait_for(
        "the recurring action to run",
        Duration::from_secs(10),
        || (project.runs_of("beat") >= 1).then_some(()),
    );

    // Acknowledged before and while the disk fills: every one of these must survive.
    let mut acknowledged = Vec::new();
    let post = |body: &[u8]| http(daemon.addr, "POST", "/webhooks/hook", &[], body);
    for i in 0..5 {
        let (code, body) = post(format!("{{\"n\":{i}}}").as_bytes());
        assert_eq!(code, 202, "{body}");
        acknowledged.push(serde_json::from_str::<Value>(&body).unwrap()["id"].clone());
    }
    // A run that ends while the disk is full: its outcome must wait, not be lost.
    let slow = project.add(&["slow", "--tool", "slow", "--db", &db_arg]);
    common::wait_for_status_in(&project, &slow, "running", &db_arg);
    let filler = fill(&disk.path);
    let refusal = post_until_refused(&post, &mut acknowledged);
    assert!(
        refusal.contains("full") && refusal.contains(&db_arg),
        "the refusal must say the disk is full and where: {refusal}"
    );

    // Degraded, and said so: the status API, the status command, later writes.
    let status = api_status(&daemon, &token);
    assert_eq!(status["storage"]["state"], "degraded", "{status}");
    assert_eq!(status["storage"]["disk_full"], true, "{status}");
    let shown = project.sdlc_ok(&["orchestrate", "status", "--db", &db_arg]);
    assert!(shown.contains("DISK FULL"), "{shown}");
    let (code, body) = post(b"{}");
    assert_eq!(code, 507, "{body}");
    let out = project.sdlc(&[
        "orchestrate",
        "add",
        "late",
        "--tool",
        "count",
        "--db",
        &db_arg,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("full"), "{stderr}");

    // While the disk stays full, attempts to reopen fail and change nothing, and the daemon
    // waits for them quietly (a loop turning on stale due times would burn a core).
    let cpu_before = cpu_ticks(daemon.pid());
    let waited = std::time::Instant::now();
    let status = wait_for("two attempts to reopen", Duration::from_secs(10), || {
        let status = api_status(&daemon, &token);
        (status["storage"]["reopen_attempts"].as_u64() >= Some(2)).then_some(status)
    });
    let busy = cpu_ticks(daemon.pid()) - cpu_before;
    let waited = waited.elapsed();
    println!("degraded: {busy} CPU ticks in {waited:?}");
    assert!(
        (busy as f64) < waited.as_secs_f64() * 100.0 * 0.2,
        "the degraded daemon used {busy} CPU ticks in {waited:?}"
    );
    assert_eq!(status["storage"]["state"], "degraded", "{status}");
    let (code, body) = post(b"{}");
    assert_eq!(code, 507, "{body}");

    // Space comes back: the daemon reopens the file by itself and carries on.
    let acknowledged_before_freeing = acknowledged.len();
    std::fs::remove_file(&filler).unwrap();
    let freed = std::time::Instant::now();
    wait_for("the storage to recover", Duration::from_secs(30), || {
        (api_status(&daemon, &token)["storage"]["state"] == "ok").then_some(())
    });
    let recovered_in = freed.elapsed();
    let beats = project.runs_of("beat");
    wait_for(
        "the recurring action to run again",
        Duration::from_secs(10),
        || (project.runs_of("beat") > beats).then_some(()),
    );
    let (code, body) = post(b"{\"after\":true}");
    assert_eq!(code, 202, "{body}");
    acknowledged.push(serde_json::from_str::<Value>(&body).unwrap()["id"].clone());

    // The run that ended meanwhile is recorded.
    let shown = project.sdlc_ok(&["orchestrate", "show", &slow, "--json", "--db", &db_arg]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "completed", "{shown}");

    // Nothing acknowledged is lost, and every one of them runs.
    for id in &acknowledged {
        let id = id.as_str().unwrap();
        wait_for(
            &format!("delivery {id} to run"),
            Duration::from_secs(30),
            || {
                let shown = project.sdlc(&["orchestrate", "show", id, "--json", "--db", &db_arg]);
                let action: Value = serde_json::from_slice(&shown.stdout).ok()?;
                (action["status"] == "completed").then_some(())
            },
        );
    }
    println!(
        "full disk: {acknowledged_before_freeing} deliveries acknowledged before space was freed, all ran; writes resumed {recovered_in:?} after freeing"
    );
    let log = daemon.stderr();
    let refusals = log.matches("could not claim due actions").count();
    assert!(refusals == 0, "the engine logged a failure per tick: {log}");
    assert!(daemon.stop().success());
    let after = project.sdlc_ok(&[
        "orchestrate",
        "list",
        "--json",
        "--limit",
        "100000",
        "--db",
        &db_arg,
    ]);
    let listed: Vec<Value> = serde_json::from_str(&after).unwrap();
    for id in &acknowledged {
        assert!(
            listed.iter().any(|a| &a["id"] == id),
            "{id} lost after the stop"
        );
    }
}

#[test]
fn commands_that_only_read_create_no_database() {
    let project = Project::new();
    let missing = project.root().join("nowhere/deeper/orchestrator.db");
    let missing_arg = missing.to_str().unwrap();
    let id = "6f1c1e3e-0000-4000-8000-000000000000";
    for args in [
        vec!["orchestrate", "list"],
        vec!["orchestrate", "show", id],
        vec!["orchestrate", "next", id],
        vec!["orchestrate", "webhook", "list"],
        vec!["orchestrate", "status"],
    ] {
        let mut with_db = args.clone();
        with_db.extend(["--db", missing_arg]);
        let out = project.sdlc(&with_db);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("no database at {missing_arg}")),
            "{args:?}: {stderr}"
        );
        let out = project.sdlc(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?} on the default path");
    }
    assert!(
        !project.root().join("nowhere").exists(),
        "a read made folders"
    );
    assert!(
        !project.db_path().exists(),
        "a read made the default database"
    );
}

/// The daemon's open file descriptors.
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Whether the peer has closed `stream` (EOF or reset) within `within`.
fn closed_by_peer(stream: &mut TcpStream, within: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // A 408 answer before the close is fine; keep reading to the end.
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn a_flood_of_idle_and_half_sent_connections_does_not_exhaust_the_daemon() {
    const IDLE: usize = 1500;
    const HALF_SENT: usize = 1500;
    const CAP: usize = 400;
    let project = Project::new();
    project.counting_tool("count");
    let daemon = project.daemon(&[
        "--tick-rate",
        "1",
        "--max-connections",
        &CAP.to_string(),
        "--idle-timeout",
        "3s",
        "--request-timeout",
        "3s",
    ]);
    let token = daemon.token(&project);
    project.sdlc_ok(&["orchestrate", "webhook", "add", "hook", "--tool", "count"]);
    project.add(&["beat", "--tool", "count", "--every", "1s"]);
    let rss_before = rss_kib(daemon.pid());

    // Connections that never send a byte, and ones that stop in the middle of their headers
    // or of their body: no token is needed for any of them.
    let mut flood = Vec::new();
    for i in 0..IDLE + HALF_SENT {
        let Ok(mut stream) = TcpStream::connect(daemon.addr) else {
            continue;
        };
        if i >= IDLE {
            let partial: &[u8] = if i % 2 == 0 {
                b"POST /webhooks/hook HTTP/1.1\r\nHost: x\r\nX-Stalled: "
            } else {
                b"POST /webhooks/hook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\":"
            };
            let _ = stream.write_all(partial);
        }
        flood.push(stream);
    }
    assert!(
        flood.len() >= IDLE + HALF_SENT - 10,
        "could not open the flood"
    );

    // Others are still served at once, scheduled runs still run, and the daemon holds no
    // more connections (so no more descriptors) than its cap.
    let beats = project.runs_of("beat");
    for _ in 0..5 {
        let started = std::time::Instant::now();
        api_status(&daemon, &token);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a client waited {:?}",
            started.elapsed()
        );
        let (code, body) = http(daemon.addr, "POST", "/webhooks/hook", &[], b"{}");
        assert_eq!(code, 202, "{body}");
    }
    wait_for(
        "the recurring action to run during the flood",
        Duration::from_secs(10),
        || (project.runs_of("beat") > beats).then_some(()),
    );
    let fds = open_fds(daemon.pid());
    assert!(
        fds < CAP + 100,
        "the daemon holds {fds} descriptors with a cap of {CAP} connections"
    );

    // Every connection of the flood is closed by the daemon: evicted, or timed out.
    let mut still_open = 0;
    for stream in &mut flood {
        if !closed_by_peer(stream, Duration::from_secs(8)) {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "connections left open past the idle timeout");
    let rss_after = rss_kib(daemon.pid());
    println!(
        "flood: {} connections held against a cap of {CAP}; daemon fds {fds}; rss {rss_before} -> {rss_after} KiB",
        flood.len()
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} to {rss_after} KiB"
    );
    assert!(daemon.stop().success());
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_tool_that_cannot_start_for_want_of_descriptors_waits_and_runs_later() {
    let project = Project::new();
    project.tool("slow", "sleep 0.3\necho '{\"ok\":true}'");
    let daemon = project.daemon(&["--max-concurrency", "8"]);
    let ids: Vec<String> = (0..8)
        .map(|i| project.add(&[&format!("s{i}"), "--tool", "slow", "--at", "now+2s"]))
        .collect();
    // Room for about one run at a time (a run holds three pipes, six descriptors while it
    // spawns): the other spawns fail with EMFILE.
    let limit = open_fds(daemon.pid()) + 8;
    let set = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", daemon.pid()))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .unwrap();
    assert!(set.success(), "prlimit failed");
    for id in &ids {
        let action = common::wait_for_status(&project, id, "completed", Duration::from_secs(30));
        assert_eq!(
            action["attempt"], 1,
            "a deferred start counted as an attempt: {action}"
        );
    }
    let log = daemon.stderr();
    let deferred = log.matches("could not start for now").count();
    println!("descriptor limit {limit}: 8 runs completed, {deferred} starts deferred");
    assert!(deferred > 0, "no spawn ran out of descriptors: {log}");
    assert!(daemon.stop().success());
}

#[test]
fn secrets_at_rest_are_for_the_owner_only_and_credentials_are_not_stored() {
    let project = Project::new();
    let stdin_copy = project.root().join("stdin.json");
    project.tool(
        "capture",
        &format!("cat > {}\necho '{{\"ok\":true}}'", stdin_copy.display()),
    );
    let daemon = project.daemon(&[]);
    let db = project.db_path();
    let runlog = PathBuf::from(format!("{}.runlog", db.display()));
    let daemon_file = PathBuf::from(format!("{}.daemon.json", db.display()));
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "gl",
        "--tool",
        "capture",
        "--template",
        r#"{"token": {{headers.x-gitlab-token}}, "event": {{headers.x-gitlab-event}}}"#,
    ]);
    let (code, body) = http(
        daemon.addr,
        "POST",
        "/webhooks/gl",
        &[
            ("X-Gitlab-Token", "glpat-very-secret"),
            ("X-Api-Key", "key-very-secret"),
            ("Proxy-Authorization", "Basic very-secret"),
            ("X-Gitlab-Event", "Push Hook"),
        ],
        b"{}",
    );
    assert_eq!(code, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    common::wait_for_status(&project, &id, "completed", Duration::from_secs(10));
    for file in [&db, &runlog, &daemon_file] {
        assert_eq!(
            mode_of(file),
            0o600,
            "{} is readable by others",
            file.display()
        );
    }
    let input: Value = serde_json::from_slice(&std::fs::read(&stdin_copy).unwrap()).unwrap();
    assert_eq!(input["event"], "Push Hook");
    assert_ne!(
        input["token"], "glpat-very-secret",
        "a template read a credential"
    );
    let shown = project.sdlc_ok(&["orchestrate", "show", &id, "--json"]);
    assert!(
        !shown.contains("very-secret"),
        "a credential is shown: {shown}"
    );
    assert!(daemon.stop().success());
    let file = std::fs::read(&db).unwrap();
    assert!(
        !file.windows(11).any(|w| w == b"very-secret"),
        "a credential is stored in the database file"
    );

    // A file left readable by others is tightened at the next start.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let daemon = project.daemon(&[]);
    assert_eq!(mode_of(&db), 0o600);
    let log = daemon.stderr();
    assert!(log.contains("now 0600"), "{log}");
    let stopped = daemon.stop();
    assert!(stopped.success(), "{stopped}: {log}");
}

#[test]
fn a_run_log_that_is_a_link_or_a_fifo_neither_hangs_nor_floods_the_start() {
    let project = Project::new();
    project.counting_tool("count");
    project.add(&["before", "--tool", "count", "--at", "now+1h"]);
    let runlog = PathBuf::from(format!("{}.runlog", project.db_path().display()));
    std::os::unix::fs::symlink("/dev/zero", &runlog).unwrap();
    let daemon = project.daemon(&[]);
    let id = project.add(&["after", "--tool", "count"]);
    common::wait_for_status(&project, &id, "completed", Duration::from_secs(10));
    assert!(daemon.stop().success());
    assert!(
        !std::fs::symlink_metadata(&runlog)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    std::fs::remove_file(&runlog).unwrap();
    nix::unistd::mkfifo(&runlog, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let daemon = project.daemon(&[]);
    let id = project.add(&["fifo", "--tool", "count"]);
    common::wait_for_status(&project, &id, "completed", Duration::from_secs(10));
    assert!(daemon.stop().success());
}

#[test]
fn a_file_damaged_after_a_clean_stop_is_refused_never_misread() {
    let project = Project::new();
    project.counting_tool("count");
    let mut ids = Vec::new();
    for i in 0..20 {
        let input = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "p".repeat(2_000));
        ids.push(project.add(&[
            &format!("a{i}"),
            "--tool",
            "count",
            "--at",
            "now+1h",
            "--input",
            &input,
        ]));
    }
    let daemon = project.daemon(&[]);
    assert!(daemon.stop().success());
    let db = project.db_path();
    let pristine = std::fs::read(&db).unwrap();
    let listed = |out: &std::process::Output| -> Option<Vec<(String, String)>> {
        let all: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        let mut pairs: Vec<(String, String)> = all
            .iter()
            .map(|a| {
                (
                    a["id"].as_str().unwrap_or("").to_string(),
                    a["tool_input"].to_string(),
                )
            })
            .collect();
        pairs.sort();
        Some(pairs)
    };
    let expected = listed(&project.sdlc(&["orchestrate", "list", "--json"])).unwrap();
    assert_eq!(expected.len(), 20);

    let rounds = if std::env::var_os("SDLC_RELIABILITY_FULL").is_some() {
        40
    } else {
        12
    };
    let (mut refused, mut harmless) = (0, 0);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for round in 0..rounds {
        let mut damaged = pristine.clone();
        // A run of bytes overwritten somewhere in the used part of the file.
        let at = next(damaged.len().min(200_000));
        for offset in at..(at + 1 + next(64)).min(damaged.len()) {
            damaged[offset] ^= 0x5a;
        }
        std::fs::write(&db, &damaged).unwrap();
        let out = project.sdlc(&["orchestrate", "list", "--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!stderr.contains("panicked"), "round {round}: {stderr}");
        if out.status.success() {
            assert_eq!(
                listed(&out).as_ref(),
                Some(&expected),
                "round {round}: a damaged file was misread"
            );
            harmless += 1;
        } else {
            assert!(
                stderr.contains("damaged") || stderr.contains("cannot open"),
                "round {round}: {stderr}"
            );
            let check = project.sdlc(&["orchestrate", "check"]);
            assert_eq!(
                check.status.code(),
                Some(1),
                "round {round}: check passed a damaged file"
            );
            let out = project.sdlc(&["orchestrate", "--listen", "127.0.0.1:0"]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && !stderr.contains("panicked"),
                "round {round}: the daemon took a damaged file: {stderr}"
            );
            refused += 1;
        }
    }
    println!(
        "damaged files: {rounds} corruptions, {refused} refused, {harmless} harmless (outside live pages) and read back exactly"
    );
    assert!(refused > 0, "no corruption was ever detected");
    std::fs::write(&db, &pristine).unwrap();
    let ok = project.sdlc_ok(&["orchestrate", "check"]);
    assert!(ok.contains("ok"), "{ok}");
}

#[test]
fn a_database_deleted_under_the_daemon_is_put_back_and_nothing_is_lost() {
    let project = Project::new();
    project.counting_tool("count");
    let daemon = project.daemon(&["--tick-rate", "1"]);
    let before = project.add(&["before", "--tool", "count", "--at", "now+1h"]);
    let db = project.db_path();
    std::fs::remove_file(&db).unwrap();
    wait_for(
        "the database to be put back",
        Duration::from_secs(10),
        || db.exists().then_some(()),
    );
    let token = daemon.token(&project);
    wait_for("writes to resume", Duration::from_secs(10), || {
        (api_status(&daemon, &token)["storage"]["state"] == "ok").then_some(())
    });
    let after = project.add(&["after", "--tool", "count"]);
    common::wait_for_status(&project, &after, "completed", Duration::from_secs(10));
    let log = daemon.stderr();
    assert!(
        log.contains("deleted while the daemon had it open"),
        "{log}"
    );
    assert!(daemon.stop().success());
    // Both are in the file at the path, after the stop.
    assert_eq!(project.find(&before)["status"], "pending");
    assert_eq!(project.find(&after)["status"], "completed");
}

#[test]
fn a_database_replaced_under_the_daemon_is_saved_beside_it_and_writes_stop() {
    let project = Project::new();
    project.counting_tool("count");
    let daemon = project.daemon(&["--tick-rate", "1"]);
    let token = daemon.token(&project);
    let kept = project.add(&["kept", "--tool", "count", "--at", "now+1h"]);
    let db = project.db_path();
    // Someone puts another file at the path (a different inode).
    let other = project.root().join("other.db");
    std::fs::write(&other, b"not ours").unwrap();
    std::fs::rename(&other, &db).unwrap();
    let status = wait_for("the daemon to notice", Duration::from_secs(10), || {
        let status = api_status(&daemon, &token);
        (status["storage"]["state"] == "degraded").then_some(status)
    });
    assert!(
        status["storage"]["error"]
            .as_str()
            .unwrap()
            .contains("replaced"),
        "{status}"
    );
    let out = project.sdlc(&["orchestrate", "add", "late", "--tool", "count"]);
    assert!(
        !out.status.success(),
        "an add was acknowledged into a replaced database"
    );
    // The replacement is left alone; what the daemon held is saved beside it.
    assert_eq!(std::fs::read(&db).unwrap(), b"not ours");
    let saved = std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("orchestrator.db.saved-"))
        .expect("the open database is saved beside the replacement");
    drop(daemon);
    let shown = project.sdlc_ok(&[
        "orchestrate",
        "show",
        &kept,
        "--json",
        "--db",
        saved.to_str().unwrap(),
    ]);
    assert!(shown.contains("\"pending\""), "{shown}");
}

/// Runs `sql` with psql on the PostgreSQL database at `url`.
fn psql(url: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql (Debian's postgresql-client) runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PostgreSQL's disk filling up: webhooks are answered 507 naming the database and saying the
/// disk is full (never a bare 500), `status` says degraded, and once there is room again the
/// daemon goes on and every acknowledged delivery runs.
#[test]
fn a_full_disk_under_postgres_is_507_and_degraded_then_resumes() {
    let project = Project::new();
    project.counting_tool("count");
    let url = common::fresh_database();
    let name = url.rsplit('/').next().unwrap().to_string();
    // This database's files on a small tmpfs of their own (a tablespace), the server's WAL
    // and other databases where they were: only this database's disk fills.
    let disk = Tmpfs::mount(project.root().join("pgspace"), "16m");
    let chown = std::process::Command::new("chown")
        .args(["postgres:postgres"])
        .arg(&disk.path)
        .status();
    assert!(
        chown.is_ok_and(|s| s.success()),
        "the server runs as postgres"
    );
    let admin = url.replace(&format!("/{name}"), "/postgres");
    psql(
        &admin,
        &format!(
            "CREATE TABLESPACE space_{name} LOCATION '{}'",
            disk.path.display()
        ),
    );
    psql(
        &admin,
        &format!("ALTER DATABASE {name} SET TABLESPACE space_{name}"),
    );

    let daemon = project.daemon(&["--db", &url, "--tick-rate", "1"]);
    let token = daemon.token(&project);
    project.sdlc_ok(&[
        "orchestrate",
        "webhook",
        "add",
        "hook",
        "--tool",
        "count",
        "--template",
        "{}",
        "--db",
        &url,
    ]);
    let post = |body: &[u8]| http(daemon.addr, "POST", "/webhooks/hook", &[], body);
    let mut acknowledged = Vec::new();
    for i in 0..3 {
        let (code, body) = post(format!("{{\"n\":{i}}}").as_bytes());
        assert_eq!(code, 202, "{body}");
        acknowledged.push(serde_json::from_str::<Value>(&body).unwrap()["id"].clone());
    }
    let filler = fill(&disk.path);
    let refusal = post_until_refused(&post, &mut acknowledged);
    assert!(
        refusal.contains("no disk space") && refusal.contains(&name),
        "the refusal must say the disk is full and which database: {refusal}"
    );
    let status = wait_for("status to say degraded", Duration::from_secs(10), || {
        let status = api_status(&daemon, &token);
        (status["storage"]["state"] == "degraded").then_some(status)
    });
    assert_eq!(status["storage"]["disk_full"], true, "{status}");
    // It stays degraded while the disk is full: probing for room does not find any.
    let status = wait_for("an attempt to find room", Duration::from_secs(15), || {
        let status = api_status(&daemon, &token);
        (status["storage"]["reopen_attempts"].as_u64() >= Some(1)).then_some(status)
    });
    assert_eq!(status["storage"]["state"], "degraded", "{status}");

    std::fs::remove_file(&filler).unwrap();
    wait_for("the storage to recover", Duration::from_secs(30), || {
        (api_status(&daemon, &token)["storage"]["state"] == "ok").then_some(())
    });
    let (code, body) = post(b"{\"after\":true}");
    assert_eq!(code, 202, "{body}");
    acknowledged.push(serde_json::from_str::<Value>(&body).unwrap()["id"].clone());
    for id in &acknowledged {
        let id = id.as_str().unwrap();
        wait_for(
            &format!("delivery {id} to run"),
            Duration::from_secs(30),
            || {
                let shown = project.sdlc(&["orchestrate", "show", id, "--json", "--db", &url]);
                let action: Value = serde_json::from_slice(&shown.stdout).ok()?;
                (action["status"] == "completed").then_some(())
            },
        );
    }
    assert!(daemon.stop().success());
    // The tablespace goes with the test's database.
    psql(&admin, &format!("DROP DATABASE {name} WITH (FORCE)"));
    psql(&admin, &format!("DROP TABLESPACE space_{name}"));
}
