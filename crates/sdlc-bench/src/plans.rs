//! Figure 7, plans: (a) a plan of N independent trivial command steps at `max_concurrency` 8
//! against `xargs -P 8` running the same command N times; (b) a chain of steps, each
//! depending on the previous: the gap from one step's end to the next one's start, from the
//! steps' own clocks; (c) `plan check` of a generated 10,000-step plan, the whole command;
//! (d) a fan-out of 10,000 steps waiting on one, per step, against a chain's per step.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Sizes;
use crate::support::{Daemon, Project, median, percentile, report, sdlc_binary};

/// The plan's and xargs' concurrency (the figure is stated at 8).
const CONCURRENCY: usize = 8;

/// A trivial command step: no input to read, a JSON line out (what the trivial tool does).
const TRIVIAL_STEP: &str = "#!/bin/sh\necho '{\"ok\":true}'\n";

pub async fn run(sizes: &Sizes) -> anyhow::Result<()> {
    independent(sizes).await?;
    chain(sizes).await?;
    check(sizes)?;
    fan_out(sizes).await?;
    Ok(())
}

/// 7d: one step with N dependents (their readiness decided in the commit that records it,
/// then N runs at `max_concurrency` 8) against a chain of trivial steps, each run's stored
/// duration divided by its steps; alternating rounds, medians. A fan-out must cost no more
/// per step than a chain: nothing in a run may grow with its width.
async fn fan_out(sizes: &Sizes) -> anyhow::Result<()> {
    let (n, chained, rounds) = if sizes.quick {
        (500, 50, 1)
    } else {
        (10_000, 1_000, 3)
    };
    let project = Project::new()?;
    let step = project.tool("step", TRIVIAL_STEP)?;
    let mut wide = vec![json!({"id": "root", "command": step})];
    wide.extend((0..n).map(|i| {
        json!({"id": format!("s{i}"), "command": step, "args": [i.to_string()], "depends_on": ["root"]})
    }));
    write_plan(
        &project,
        &json!({"plan_id": "fan", "globals": {"max_concurrency": CONCURRENCY}, "steps": wide}),
    )?;
    let chain: Vec<Value> = (0..chained)
        .map(|i| {
            let mut s = json!({"id": format!("s{i}"), "command": step, "args": [i.to_string()]});
            if i > 0 {
                s["depends_on"] = json!([format!("s{}", i - 1)]);
            }
            s
        })
        .collect();
    write_plan(&project, &json!({"plan_id": "line", "steps": chain}))?;
    let c = CONCURRENCY.to_string();
    let daemon = Daemon::start(&project, &["--tick-rate", "60", "--max-concurrency", &c])?;
    let per_step = |run: &Value, steps: usize| {
        Duration::from_millis(run["duration_ms"].as_u64().unwrap_or(0)) / steps as u32
    };
    let (mut fans, mut chains) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let run = run_through(&daemon, "fan", Duration::from_secs(900)).await?;
        fans.push(per_step(&run, n + 1));
        let run = run_through(&daemon, "line", Duration::from_secs(900)).await?;
        chains.push(per_step(&run, chained));
    }
    daemon.stop()?;
    let (fan, line) = (median(fans), median(chains));
    let ratio = fan.as_secs_f64() / line.as_secs_f64();
    report(
        &format!(
            "7d. fan-out: one step, then {n} steps that wait for it, max_concurrency {CONCURRENCY}"
        ),
        &format!(
            "{:.3} ms a step (run start to end as stored)",
            fan.as_secs_f64() * 1e3
        ),
        &format!(
            "a chain of {chained} of the same steps: {:.3} ms a step; medians of {rounds} alternating rounds",
            line.as_secs_f64() * 1e3
        ),
        Some(ratio),
        "ratio <= 1.0",
        ratio <= 1.0,
    );
    Ok(())
}

fn write_plan(project: &Project, plan: &Value) -> anyhow::Result<()> {
    let dir = project.root().join(".sdlc/plans");
    std::fs::create_dir_all(&dir)?;
    let id = plan["plan_id"].as_str().unwrap_or("p");
    std::fs::write(dir.join(format!("{id}.json")), serde_json::to_vec(plan)?)?;
    Ok(())
}

/// Starts a run of `plan_id` through the API and waits for it to end; returns the run.
async fn run_through(daemon: &Daemon, plan_id: &str, timeout: Duration) -> anyhow::Result<Value> {
    let started = daemon
        .api(
            reqwest::Method::POST,
            &format!("/plans/{plan_id}/runs"),
            Some(json!({"vars": {}})),
        )
        .await?;
    let run_id = started["run_id"].as_str().unwrap_or_default().to_string();
    let deadline = Instant::now() + timeout;
    loop {
        let run = daemon
            .api(reqwest::Method::GET, &format!("/runs/{run_id}"), None)
            .await?;
        if run["status"] != "running" {
            anyhow::ensure!(
                run["status"] == "succeeded",
                "the run ended {}",
                run["status"]
            );
            return Ok(run);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the run did not end within {timeout:?}"
        );
        // Polling only detects the end; the figure comes from the run's stored times.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 7a: N independent steps against xargs.
async fn independent(sizes: &Sizes) -> anyhow::Result<()> {
    let n = if sizes.quick { 100 } else { 1_000 };
    let rounds = if sizes.quick { 1 } else { 5 };
    let project = Project::new()?;
    let step = project.tool("step", TRIVIAL_STEP)?;
    let steps: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("s{i}"), "command": step, "args": [i.to_string()]}))
        .collect();
    write_plan(
        &project,
        &json!({"plan_id": "wide", "globals": {"max_concurrency": CONCURRENCY}, "steps": steps}),
    )?;
    let c = CONCURRENCY.to_string();
    let daemon = Daemon::start(&project, &["--tick-rate", "60", "--max-concurrency", &c])?;
    let (mut ours, mut baseline, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let run = run_through(&daemon, "wide", Duration::from_secs(600)).await?;
        let wall = Duration::from_millis(run["duration_ms"].as_u64().unwrap_or(0));
        let xargs = crate::support::xargs_wall(&step, &[], n, CONCURRENCY)?;
        ratios.push(wall.as_secs_f64() / xargs.as_secs_f64());
        ours.push(wall);
        baseline.push(xargs);
    }
    let cpu_per_step = daemon.cpu_time().as_secs_f64() * 1e6 / (n * rounds) as f64;
    daemon.stop()?;
    let (ours, baseline) = (median(ours), median(baseline));
    let ratio = ours.as_secs_f64() / baseline.as_secs_f64();
    ratios.sort_by(f64::total_cmp);
    report(
        &format!("7a. plan of {n} independent command steps, max_concurrency {CONCURRENCY}"),
        &format!(
            "sdlc {:.3} s ({:.0} steps/s, run start to end as stored; daemon CPU {cpu_per_step:.0} us/step)",
            ours.as_secs_f64(),
            n as f64 / ours.as_secs_f64()
        ),
        &format!(
            "xargs -P {CONCURRENCY} {:.3} s; medians of {rounds} alternating rounds, round ratios {:.2}..{:.2}",
            baseline.as_secs_f64(),
            ratios[0],
            ratios[ratios.len() - 1]
        ),
        Some(ratio),
        "ratio <= 1.15",
        ratio <= 1.15,
    );
    Ok(())
}

/// 7b: a chain; each step writes when it started and when it ends (bash's clock builtin, no
/// extra process), so the gap is measured by the steps themselves.
async fn chain(sizes: &Sizes) -> anyhow::Result<()> {
    let n = if sizes.quick { 20 } else { 200 };
    let project = Project::new()?;
    let log = project.root().join("stamps.log");
    let step = project.tool(
        "stamp",
        &format!(
            "#!/bin/bash\necho \"$1 start $EPOCHREALTIME\" >> {0}\necho \"$1 end $EPOCHREALTIME\" >> {0}\n",
            log.display()
        ),
    )?;
    let steps: Vec<Value> = (0..n)
        .map(|i| {
            let mut s = json!({"id": format!("s{i}"), "command": step, "args": [i.to_string()]});
            if i > 0 {
                s["depends_on"] = json!([format!("s{}", i - 1)]);
            }
            s
        })
        .collect();
    write_plan(&project, &json!({"plan_id": "chain", "steps": steps}))?;
    let daemon = Daemon::start(&project, &["--tick-rate", "60"])?;
    run_through(&daemon, "chain", Duration::from_secs(600)).await?;
    daemon.stop()?;
    let gaps = gaps_in(&std::fs::read_to_string(&log)?, n)?;
    // The baseline: a shell loop running the same steps one after the other.
    std::fs::remove_file(&log)?;
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "for i in $(seq 0 {}); do {} $i; done",
            n - 1,
            step.display()
        ))
        .status()?;
    anyhow::ensure!(status.success(), "the shell loop failed");
    let loop_gaps = gaps_in(&std::fs::read_to_string(&log)?, n)?;
    let (p50, p99) = (percentile(&gaps, 50.0), percentile(&gaps, 99.0));
    report(
        &format!("7b. chain of {n} steps, one step's end to the next one's start"),
        &format!(
            "p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
            gaps[gaps.len() - 1]
        ),
        &format!(
            "a bash loop running the same steps in a row: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&loop_gaps, 50.0),
            percentile(&loop_gaps, 99.0)
        ),
        None,
        "p50 < 2 ms, p99 < 5 ms",
        p50 < 2.0 && p99 < 5.0,
    );
    Ok(())
}

/// The gaps, in milliseconds and sorted, between each step's end and the next one's start
/// in a stamps log (`<i> start|end <epoch seconds>` lines).
fn gaps_in(text: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut starts = vec![0f64; n];
    let mut ends = vec![0f64; n];
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [i, what, at] = parts[..] else { continue };
        let (i, at): (usize, f64) = (i.parse()?, at.parse()?);
        match what {
            "start" => starts[i] = at,
            _ => ends[i] = at,
        }
    }
    let mut gaps: Vec<f64> = (1..n).map(|i| (starts[i] - ends[i - 1]) * 1000.0).collect();
    gaps.sort_by(f64::total_cmp);
    Ok(gaps)
}

/// 7c: `plan check` of a generated plan of 10,000 chained steps, the whole command, median
/// of 5.
fn check(sizes: &Sizes) -> anyhow::Result<()> {
    let n = if sizes.quick { 1_000 } else { 10_000 };
    let project = Project::new()?;
    let steps: Vec<Value> = (0..n)
        .map(|i| {
            let mut s = json!({"id": format!("s{i}"), "command": "true", "args": ["${X}"], "timeout_sec": 5});
            if i > 0 {
                s["depends_on"] = json!([format!("s{}", i - 1)]);
            }
            s
        })
        .collect();
    let plan = json!({"plan_id": "big", "vars": {"X": "1"}, "steps": steps});
    write_plan(&project, &plan)?;
    let file = project.root().join(".sdlc/plans/big.json");
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let out = Command::new(sdlc_binary()?)
            .args(["--root"])
            .arg(project.root())
            .args(["orchestrate", "plan", "check"])
            .arg(&file)
            .output()?;
        times.push(started.elapsed());
        anyhow::ensure!(
            out.status.success(),
            "plan check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let baseline = {
        let started = Instant::now();
        Command::new(sdlc_binary()?).arg("--version").output()?;
        started.elapsed()
    };
    let took = median(times);
    report(
        &format!("7c. plan check of a generated {n}-step plan (whole command)"),
        &format!("{:.1} ms", took.as_secs_f64() * 1000.0),
        &format!(
            "sdlc --version (process start alone) {:.1} ms",
            baseline.as_secs_f64() * 1000.0
        ),
        None,
        "< 100 ms",
        took < Duration::from_millis(100),
    );
    Ok(())
}
