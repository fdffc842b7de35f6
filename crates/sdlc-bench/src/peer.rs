//! Figure 5: against the peer. adnanh/webhook (Debian package `webhook`) is what a user would
//! otherwise pick to run a command on a webhook. Both get the same load from `wrk -t2 -c16
//! -d10s` (4 KiB JSON bodies) and run the same trivial tool (which appends a line per run to
//! a file); reported for both: acknowledged requests per second, and how many acknowledged
//! requests actually ran the tool once the load stops. Needs `webhook` and `wrk` (installed
//! with apt-get when missing and permitted); skipped otherwise.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::Sizes;
use crate::support::{Daemon, Project, report};

pub async fn run(sizes: &Sizes) -> anyhow::Result<()> {
    if sizes.quick {
        println!("5. against adnanh/webhook: skipped in quick mode");
        return Ok(());
    }
    if !have("webhook") || !have("wrk") {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "webhook", "wrk"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if !have("webhook") || !have("wrk") {
        println!(
            "5. against adnanh/webhook: skipped (the webhook and wrk packages are not installable here)"
        );
        return Ok(());
    }
    let seconds = 10;

    let script_dir = tempfile::tempdir()?;
    let script = script_dir.path().join("post.lua");
    std::fs::write(&script, wrk_script())?;
    let ours = load_ours(&script, seconds, &[]).await?;
    let ours_not_niced = load_ours(&script, seconds, crate::throughput::TOOLS_NOT_NICED).await?;

    // The peer, on a free loopback port.
    let peer_dir = tempfile::tempdir()?;
    let peer_log = peer_dir.path().join("runs");
    let tool = peer_dir.path().join("tool");
    std::fs::write(&tool, counting_tool(&peer_log))?;
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let hooks = peer_dir.path().join("hooks.json");
    std::fs::write(
        &hooks,
        serde_json::to_vec(&json!([{
            "id": "load",
            "execute-command": tool,
            "command-working-directory": peer_dir.path(),
            "include-command-output-in-response": false
        }]))?,
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut peer = Command::new("webhook")
        .args(["-hooks"])
        .arg(&hooks)
        .args(["-ip", "127.0.0.1", "-port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_port(port)?;
    let theirs = wrk(
        &format!("http://127.0.0.1:{port}/hooks/load"),
        &script,
        seconds,
    )?;
    let theirs_ran = settle_count(&peer_log, theirs.acked, Duration::from_secs(120));
    let _ = peer.kill();
    let _ = peer.wait();

    let theirs_rate = theirs.acked as f64 / seconds as f64;
    for (flags, (ours, ours_ran)) in [("", ours), (" --tool-nice 0", ours_not_niced)] {
        let ours_rate = ours.acked as f64 / seconds as f64;
        report(
            &format!("5. against adnanh/webhook 2.8 (wrk -t2 -c16 -d10s, 4 KiB bodies){flags}"),
            &format!(
                "sdlc {ours_rate:.0} acknowledged/s, {ours_ran} of {} ran (every ack durable first)",
                ours.acked
            ),
            &format!(
                "webhook {theirs_rate:.0} acknowledged/s, {theirs_ran} of {} ran",
                theirs.acked
            ),
            Some(ours_rate / theirs_rate),
            "rate ratio >= 1 and every acknowledged request runs",
            // wrk stops counting at its deadline; requests then in flight may still be stored
            // and run, so runs can exceed the acknowledgements wrk saw.
            ours_rate >= theirs_rate && ours_ran >= ours.acked,
        );
    }
    Ok(())
}

/// The load against our daemon (started with `extra` flags): what wrk saw acknowledged, and
/// how many runs the tool logged once they stopped.
async fn load_ours(
    script: &Path,
    seconds: u64,
    extra: &[&str],
) -> anyhow::Result<(WrkResult, u64)> {
    let project = Project::new()?;
    let log = project.root().join("runs");
    project.tool("count", &counting_tool(&log))?;
    let mut args = vec!["--tick-rate", "60"];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&project, &args)?;
    let url = daemon.add_route("load", "count").await?;
    let acked = wrk(&url, script, seconds)?;
    let ran = settle_count(&log, acked.acked, Duration::from_secs(600));
    daemon.stop()?;
    Ok((acked, ran))
}

fn counting_tool(log: &Path) -> String {
    format!(
        "#!/bin/sh\necho run >> {}\ncat > /dev/null\necho '{{\"ok\":true}}'\n",
        log.display()
    )
}

/// wrk posting a 4 KiB push event (in a Lua long string: no escapes are read in it).
fn wrk_script() -> String {
    let body = crate::payload::push_event(4096);
    format!(
        "wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    )
}

struct WrkResult {
    acked: u64,
}

/// Runs wrk and reads how many requests got a 2xx answer.
fn wrk(url: &str, script: &Path, seconds: u64) -> anyhow::Result<WrkResult> {
    let out = Command::new("wrk")
        .args(["-t2", "-c16", &format!("-d{seconds}s"), "-s"])
        .arg(script)
        .arg(url)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let total: u64 = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in")
                .map(|(n, _)| n.trim().parse().ok())
        })
        .flatten()
        .ok_or_else(|| anyhow::anyhow!("cannot read wrk's output: {text}"))?;
    let failed: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    Ok(WrkResult {
        acked: total - failed,
    })
}

/// Lines in `log`, once it stops growing (or reaches `expected`), within `timeout`.
fn settle_count(log: &Path, expected: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    let mut last = (0, Instant::now());
    loop {
        let n = std::fs::read_to_string(log)
            .map(|t| t.lines().count() as u64)
            .unwrap_or(0);
        if n >= expected || Instant::now() > deadline {
            return n;
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the peer did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
