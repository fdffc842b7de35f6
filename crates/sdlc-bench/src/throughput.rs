//! Figure 1: N actions due at once, a trivial tool, every result durably stored, from the due
//! time to the last result committed; against `xargs -P C` running the same tool N times with
//! the same concurrency and storing nothing.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use sdlc_core::store::Store;
use sdlc_core::{Action, ActionDb, ActionTrigger, ListFilter, StatusKind};

use crate::Sizes;
use crate::support::{Daemon, Project, TRIVIAL_TOOL, median, report};

/// The daemon's default concurrency on this machine (4 per core, 4..=64), used for both.
pub fn concurrency() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 4).clamp(4, 64)
}

/// Rounds per size: this kind of machine (a shared 2-vCPU VM) moves one run's ratio by about
/// ±0.1, so the figure is the ratio of medians over rounds that alternate daemon and xargs.
fn rounds(sizes: &Sizes, n: usize) -> usize {
    match (sizes.quick, n) {
        (true, _) => 1,
        (false, n) if n <= 1_000 => 5,
        _ => 3,
    }
}

/// Tools at the daemon's own priority (the default, `--tool-nice 10`, lets the daemon's own
/// work win the CPU from the tools it runs): the figure a user opting out would see.
pub const TOOLS_NOT_NICED: &[&str] = &["--tool-nice", "0"];

pub async fn run(sizes: &Sizes) -> anyhow::Result<()> {
    for &n in sizes.throughput {
        figure(sizes, n, &[]).await?;
    }
    if !sizes.quick {
        figure(sizes, sizes.throughput[0], TOOLS_NOT_NICED).await?;
    }
    Ok(())
}

/// Figure 1 for `n` actions, the daemon started with `extra` flags.
async fn figure(sizes: &Sizes, n: usize, extra: &[&str]) -> anyhow::Result<()> {
    let project = Project::new()?;
    let tool = project.tool("trivial", TRIVIAL_TOOL)?;
    let (mut ours, mut baseline, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut peak_kib, mut cpu) = (0, Duration::ZERO);
    for _ in 0..rounds(sizes, n) {
        let (wall, peak, daemon_cpu) = daemon_run(&project, n, extra).await?;
        let xargs = crate::support::xargs_wall(&tool, &["--run"], n, concurrency())?;
        ratios.push(wall.as_secs_f64() / xargs.as_secs_f64());
        ours.push(wall);
        baseline.push(xargs);
        peak_kib = peak_kib.max(peak);
        cpu += daemon_cpu;
    }
    let runs = ours.len();
    let cpu_per_run = cpu.as_secs_f64() * 1e6 / (n * runs) as f64;
    let (ours, baseline) = (median(ours), median(baseline));
    let ratio = ours.as_secs_f64() / baseline.as_secs_f64();
    ratios.sort_by(f64::total_cmp);
    let (runner, runner_cpu) = runner_only(&project, n).await?;
    println!(
        "1b. the same {n} runs through the tool runner alone (no database, no engine): {:.3} s, ratio to xargs {:.2}, CPU of this process {:.0} us/run",
        runner.as_secs_f64(),
        runner.as_secs_f64() / baseline.as_secs_f64(),
        runner_cpu.as_secs_f64() * 1e6 / n as f64
    );
    report(
        &format!(
            "1. throughput n={n} c={}{}",
            concurrency(),
            extra
                .iter()
                .map(|flag| format!(" {flag}"))
                .collect::<String>()
        ),
        &format!(
            "sdlc {:.3} s ({:.0} runs/s, daemon CPU {cpu_per_run:.0} us/run, peak RSS {} MiB)",
            ours.as_secs_f64(),
            n as f64 / ours.as_secs_f64(),
            peak_kib / 1024
        ),
        &format!(
            "xargs -P {} {:.3} s ({:.0} runs/s); medians of {runs} alternating rounds, round ratios {:.2}..{:.2}",
            concurrency(),
            baseline.as_secs_f64(),
            n as f64 / baseline.as_secs_f64(),
            ratios[0],
            ratios[ratios.len() - 1]
        ),
        Some(ratio),
        "ratio <= 1.10",
        ratio <= 1.10,
    );
    Ok(())
}

/// Stores `n` actions of the `trivial` tool due shortly, starts the daemon, and measures from
/// the due time to the last `finished_at` it recorded. Returns that and the daemon's peak RSS.
pub async fn daemon_wall(
    project: &Project,
    n: usize,
    extra: &[&str],
) -> anyhow::Result<(Duration, u64)> {
    let (wall, peak, _) = daemon_run(project, n, extra).await?;
    Ok((wall, peak))
}

/// `daemon_wall`, plus the CPU time the daemon process used.
pub async fn daemon_run(
    project: &Project,
    n: usize,
    extra: &[&str],
) -> anyhow::Result<(Duration, u64, Duration)> {
    // Far enough ahead for the daemon to start and settle first.
    let due = Utc::now() + chrono::Duration::seconds(2);
    {
        let db = ActionDb::open(&project.db_path())?;
        let now = Utc::now();
        let actions: Vec<Action> = (0..n)
            .map(|i| {
                Action::new(
                    format!("t{i}"),
                    "trivial",
                    json!({"i": i}),
                    ActionTrigger::Scheduled { next_tick_at: due },
                    now,
                )
            })
            .collect();
        for chunk in actions.chunks(10_000) {
            db.insert_many(chunk)?;
        }
    }
    let mut args = vec!["--tick-rate", "60"];
    let c = concurrency().to_string();
    args.extend(["--max-concurrency", &c]);
    args.extend_from_slice(extra);
    let daemon = Daemon::start(project, &args)?;
    let already = daemon.completed().await?;
    daemon
        .wait_completed(already + n as u64, Duration::from_secs(600))
        .await?;
    let peak = daemon.peak_rss_kib();
    let cpu = daemon.cpu_time();
    daemon.stop()?;
    let db = ActionDb::open(&project.db_path())?;
    let finished = db.list(&ListFilter {
        status: Some(StatusKind::Completed),
        tool: Some("trivial".into()),
        limit: None,
    })?;
    let last = finished
        .iter()
        .filter(|a| a.due_at() == due)
        .filter_map(|a| a.finished_at)
        .max()
        .ok_or_else(|| anyhow::anyhow!("no run finished"))?;
    Ok(((last - due).to_std()?, peak, cpu))
}

/// The runner alone: `n` runs of the trivial tool, `concurrency()` at a time, in this process.
/// Separates the cost of spawning and capturing from the engine's and the database's.
async fn runner_only(project: &Project, n: usize) -> anyhow::Result<(Duration, Duration)> {
    use sdlc_core::tool::{RunLimits, ToolMode, run_tool, tool_script};
    let script = std::sync::Arc::new(tool_script(project.root(), "trivial")?);
    let root = std::sync::Arc::new(project.root().to_path_buf());
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency()));
    let cpu_before = crate::support::cpu_time_of(std::process::id());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = semaphore.clone().acquire_owned().await?;
        let (script, root) = (script.clone(), root.clone());
        tasks.spawn(async move {
            let run = run_tool(
                &script,
                ToolMode::Run,
                &json!({"i": i}),
                &root,
                &[],
                &RunLimits::default(),
            )
            .await;
            drop(permit);
            run
        });
    }
    while let Some(run) = tasks.join_next().await {
        run?;
    }
    let wall = started.elapsed();
    let cpu = crate::support::cpu_time_of(std::process::id()).saturating_sub(cpu_before);
    Ok((wall, cpu))
}
