//! Figure 3 (and 6): history scale. The cost of one tick's bookkeeping for 1,000 due actions
//! (claim them, then record their results: the engine's two `settle` commits) with no history
//! and with H finished actions stored; start-up time (open + recovery) and
//! `sdlc orchestrate list --status failed` at H; and the daemon's peak RSS while it runs 1,000
//! actions over that database.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use sdlc_core::store::Store;
use sdlc_core::{Action, ActionDb, ActionStatus, ActionTrigger};

use crate::Sizes;
use crate::support::{Project, TRIVIAL_TOOL, median, report, sdlc_binary};
use crate::throughput::daemon_wall;

const DUE_PER_TICK: usize = 1_000;
const ROUNDS: usize = 9;

pub async fn run(sizes: &Sizes) -> anyhow::Result<()> {
    let big = Project::new()?;
    big.tool("trivial", TRIVIAL_TOOL)?;
    let fill_started = Instant::now();
    fill_history(&big, sizes.history)?;
    let fill = fill_started.elapsed();

    // Rounds alternate between the two databases, so a drift of the machine's speed (and
    // the disk still busy after the fill) weighs on both sides alike.
    let empty = Project::new()?;
    let empty_db = ActionDb::open(&empty.db_path())?;
    let db = ActionDb::open(&big.db_path())?;
    let (mut base_costs, mut loaded_costs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        base_costs.push(tick_cost(&empty_db, round)?);
        loaded_costs.push(tick_cost(&db, round)?);
    }
    drop((db, empty_db));
    let (base, loaded) = (median(base_costs), median(loaded_costs));
    let ratio = loaded.as_secs_f64() / base.as_secs_f64();
    report(
        &format!(
            "3a. tick cost, {DUE_PER_TICK} due, {} finished stored",
            sizes.history
        ),
        &format!("{:.2} ms", loaded.as_secs_f64() * 1000.0),
        &format!(
            "the same with none stored {:.2} ms",
            base.as_secs_f64() * 1000.0
        ),
        Some(ratio),
        "ratio <= 1.2",
        ratio <= 1.2,
    );

    let started = Instant::now();
    let db = ActionDb::open(&big.db_path())?;
    db.startup_recovery(Utc::now())?;
    let startup = started.elapsed();
    drop(db);
    let size_mib = std::fs::metadata(big.db_path())?.len() as f64 / (1024.0 * 1024.0);
    println!(
        "3b. start-up (open + recovery) at {} stored: {:.1} ms; database {size_mib:.0} MiB, filled in {:.1} s",
        sizes.history,
        startup.as_secs_f64() * 1000.0,
        fill.as_secs_f64()
    );

    let started = Instant::now();
    let out = Command::new(sdlc_binary()?)
        .args([
            "orchestrate",
            "list",
            "--status",
            "failed",
            "--json",
            "--root",
        ])
        .arg(big.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()?;
    let list_time = started.elapsed();
    anyhow::ensure!(out.status.success(), "list failed");
    let shown = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)?.len();
    println!(
        "3c. sdlc orchestrate list --status failed at {} stored: {:.1} ms for the newest {shown} (whole command: process start, open, read)",
        sizes.history,
        list_time.as_secs_f64() * 1000.0
    );

    let (wall, peak_kib) = daemon_wall(&big, DUE_PER_TICK, &[]).await?;
    report(
        &format!(
            "6. daemon peak RSS running {DUE_PER_TICK} actions over {} stored",
            sizes.history
        ),
        &format!(
            "{} MiB (those runs took {:.2} s)",
            peak_kib / 1024,
            wall.as_secs_f64()
        ),
        "none",
        None,
        "< 64 MiB",
        peak_kib < 64 * 1024,
    );
    Ok(())
}

/// One round: store 1,000 due actions (not timed), then claim them all and record a result
/// for each (timed: what a tick costs the database).
fn tick_cost(db: &ActionDb, round: usize) -> anyhow::Result<Duration> {
    let now = Utc::now();
    let due: Vec<Action> = (0..DUE_PER_TICK)
        .map(|i| {
            Action::new(
                format!("due{round}-{i}"),
                "trivial",
                json!({}),
                ActionTrigger::Scheduled {
                    next_tick_at: now - chrono::Duration::seconds(1),
                },
                now,
            )
        })
        .collect();
    db.insert_many(&due)?;
    let started = Instant::now();
    let claimed = db.settle(Vec::new(), Utc::now(), DUE_PER_TICK)?.claimed;
    anyhow::ensure!(claimed.len() == DUE_PER_TICK, "claimed {}", claimed.len());
    let outcomes = claimed
        .iter()
        .map(|a| {
            (
                a.id,
                ActionStatus::Completed {
                    result: json!({"ok": true}),
                },
            )
        })
        .collect();
    db.settle(outcomes, Utc::now(), 0)?;
    Ok(started.elapsed())
}

/// Stores `n` finished actions (nine in ten completed, one failed), 10,000 per commit.
fn fill_history(project: &Project, n: usize) -> anyhow::Result<()> {
    let db = ActionDb::open(&project.db_path())?;
    let start = Utc::now() - chrono::Duration::days(30);
    let mut i = 0;
    while i < n {
        let batch: Vec<Action> = (i..(i + 10_000).min(n))
            .map(|k| {
                let at = start + chrono::Duration::milliseconds(k as i64 * 2);
                let mut action = Action::new(
                    format!("history-{k}"),
                    "trivial",
                    json!({"k": k}),
                    ActionTrigger::Scheduled { next_tick_at: at },
                    at,
                );
                action.status = if k % 10 == 0 {
                    ActionStatus::Failed {
                        reason: "exited with status 1".into(),
                    }
                } else {
                    ActionStatus::Completed {
                        result: json!({"ok": true, "data": {"k": k}}),
                    }
                };
                action.attempt = 1;
                action.started_at = Some(at);
                action.finished_at = Some(at);
                action
            })
            .collect();
        db.insert_many(&batch)?;
        i += batch.len();
    }
    Ok(())
}
