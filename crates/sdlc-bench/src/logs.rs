//! Figure 11: whole run logs. (a) N runs of a tool that prints 100 lines (6 KiB) on stderr,
//! every log kept (the default `--log-cap`), against the same runs with `--log-cap 0`, in
//! alternating rounds: what keeping logs costs per run, and what it stores. (b) Reading a
//! log at the cap (1 MiB of output, head and tail kept) through the API.

use std::time::{Duration, Instant};

use crate::Sizes;
use crate::support::{Daemon, Project, median, report};
use crate::throughput::{concurrency, daemon_run};

/// 100 lines of 60 bytes on stderr, then the result.
const CHATTY_TOOL: &str = "#!/bin/sh\ncat > /dev/null\n\
    i=0; while [ $i -lt 100 ]; do echo \"step $i of the build: compiling module number $i.....\" >&2; i=$((i+1)); done\n\
    echo '{\"ok\":true}'\n";

/// Prints 4 MiB on stderr: past the default cap, so its log is the capped one.
const FLOOD_TOOL: &str = "#!/bin/sh\ncat > /dev/null\n\
    head -c 4194304 /dev/zero | tr '\\0' 'x' | fold -w 99 >&2\necho '{\"ok\":true}'\n";

/// The bytes of every stored log in the project's database.
fn stored_log_bytes(project: &Project) -> anyhow::Result<usize> {
    let db = sdlc_core::ActionDb::open(&project.db_path())?;
    let mut bytes = 0;
    for action in db.list(&sdlc_core::ListFilter::default())? {
        bytes += db
            .run_log(action.id, None)?
            .map_or(0, |log| log.bytes.len());
    }
    Ok(bytes)
}

pub async fn run(sizes: &Sizes) -> anyhow::Result<()> {
    let n = if sizes.quick { 100 } else { 2_000 };
    let rounds = if sizes.quick { 1 } else { 5 };
    let (mut with_logs, mut without, mut stored) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        for cap in ["1048576", "0"] {
            let project = Project::new()?;
            project.tool("trivial", CHATTY_TOOL)?;
            let (wall, _, _) = daemon_run(&project, n, &["--log-cap", cap]).await?;
            if cap == "0" {
                without.push(wall);
            } else {
                with_logs.push(wall);
                stored.push(stored_log_bytes(&project)? as f64 / n as f64);
            }
        }
    }
    let ours = median(with_logs);
    let base = median(without);
    stored.sort_by(f64::total_cmp);
    let per_run = stored[stored.len() / 2];
    let ratio = ours.as_secs_f64() / base.as_secs_f64();
    report(
        &format!(
            "11a. logs kept: n={n} c={} runs printing 100 lines (6 KiB) each",
            concurrency()
        ),
        &format!(
            "logs on {:.3} s ({:.0} runs/s; {:.0} bytes stored per run for a 6,100-byte log)",
            ours.as_secs_f64(),
            n as f64 / ours.as_secs_f64(),
            per_run
        ),
        &format!(
            "--log-cap 0 {:.3} s ({:.0} runs/s); medians of {rounds} alternating rounds",
            base.as_secs_f64(),
            n as f64 / base.as_secs_f64()
        ),
        Some(ratio),
        "ratio <= 1.10",
        ratio <= 1.10,
    );

    // (b) A log at the cap, read whole through the API.
    let project = Project::new()?;
    project.tool("flood", FLOOD_TOOL)?;
    let daemon = Daemon::start(&project, &["--tick-rate", "60"])?;
    let added = daemon
        .api(
            reqwest::Method::POST,
            "/actions",
            Some(serde_json::json!({"label": "flood", "tool_name": "flood"})),
        )
        .await?;
    let id = added["id"].as_str().unwrap_or_default().to_string();
    daemon.wait_completed(1, Duration::from_secs(120)).await?;
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/orchestrator/actions/{id}/log", daemon.addr);
    let mut reads = Vec::new();
    let mut bytes = 0;
    for _ in 0..if sizes.quick { 3 } else { 21 } {
        let started = Instant::now();
        let body = http
            .get(&url)
            .bearer_auth(daemon.token())
            .send()
            .await?
            .bytes()
            .await?;
        reads.push(started.elapsed());
        bytes = body.len();
    }
    daemon.stop()?;
    let read = median(reads);
    report(
        "11b. a log at the cap (4 MiB printed, 1 MiB kept) read through the API",
        &format!(
            "{:.1} ms for {} KiB (median of the reads)",
            read.as_secs_f64() * 1e3,
            bytes / 1024
        ),
        "-",
        None,
        "<= 50 ms",
        read <= Duration::from_millis(50),
    );
    Ok(())
}
