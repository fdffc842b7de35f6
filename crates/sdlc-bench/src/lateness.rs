//! Figure 2: lateness. Actions due at scattered times, daemon at `--tick-rate 60`: how long
//! after its due time each tool actually started (the tool stamps its own start with bash's
//! clock builtin). And for webhooks: from the 202 to the tool's start. The baselines are the
//! documented resolution of the alternatives (cron: a minute; systemd timers: a minute by
//! default; a plain tick loop: the tick), not measured here.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use serde_json::json;

use sdlc_core::store::Store;
use sdlc_core::{Action, ActionDb, ActionTrigger};

use crate::Sizes;
use crate::support::{Daemon, Project, Spread, percentile, report, stamp_tool};

pub async fn run(sizes: &Sizes) -> anyhow::Result<()> {
    scheduled(sizes).await?;
    webhook(sizes).await
}

async fn scheduled(sizes: &Sizes) -> anyhow::Result<()> {
    let project = Project::new()?;
    let stamps = project.root().join("stamps");
    project.tool("stamp", &stamp_tool(&stamps))?;
    let (actions, due) = scattered(sizes);
    ActionDb::open(&project.db_path())?.insert_many(&actions)?;
    let daemon = Daemon::start(&project, &["--tick-rate", "60"])?;
    daemon
        .wait_completed(sizes.lateness_actions as u64, Duration::from_secs(120))
        .await?;
    daemon.stop()?;
    let late = lateness_ms(&stamps, &due)?;
    print_lateness(
        "2a. lateness, scheduled (due -> tool start)",
        &late,
        "cron 60 s, systemd timers 60 s (default AccuracySec), a tick loop: up to its tick (here 60 s)",
    );
    Ok(())
}

/// `sizes.lateness_actions` runs of the `stamp` tool due at pseudo-random times over
/// `sizes.lateness_spread_secs`, from 2 s from now; with each one's due time (seconds since
/// the epoch) by id.
pub(crate) fn scattered(sizes: &Sizes) -> (Vec<Action>, HashMap<String, f64>) {
    let now = Utc::now();
    let start = now + chrono::Duration::seconds(2);
    let mut spread = Spread::new(42);
    let mut due = HashMap::new();
    let actions = (0..sizes.lateness_actions)
        .map(|i| {
            let offset = (spread.next_unit() * sizes.lateness_spread_secs * 1000.0) as i64;
            let at = start + chrono::Duration::milliseconds(offset);
            let action = Action::new(
                format!("l{i}"),
                "stamp",
                json!({}),
                ActionTrigger::Scheduled { next_tick_at: at },
                now,
            );
            due.insert(action.id.to_string(), at.timestamp_micros() as f64 / 1e6);
            action
        })
        .collect();
    (actions, due)
}

async fn webhook(sizes: &Sizes) -> anyhow::Result<()> {
    let project = Project::new()?;
    let stamps = project.root().join("stamps");
    project.tool("stamp", &stamp_tool(&stamps))?;
    let daemon = Daemon::start(&project, &["--tick-rate", "60"])?;
    let url = daemon.add_route("stamp", "stamp").await?;
    let client = reqwest::Client::new();
    let mut acked = HashMap::new();
    for _ in 0..sizes.webhook_requests {
        let response = client.post(&url).body("{}").send().await?;
        let at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
        let answer: serde_json::Value = response.json().await?;
        acked.insert(answer["id"].as_str().unwrap_or_default().to_string(), at);
        // Requests arrive one at a time, as deliveries usually do.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon
        .wait_completed(sizes.webhook_requests as u64, Duration::from_secs(60))
        .await?;
    daemon.stop()?;
    let late = lateness_ms(&stamps, &acked)?;
    print_lateness(
        "2b. lateness, webhook (202 -> tool start)",
        &late,
        "a poller: up to its poll interval",
    );
    Ok(())
}

/// Tool start (from the stamp file) minus the reference time, in ms, sorted.
pub(crate) fn lateness_ms(
    stamps: &std::path::Path,
    reference: &HashMap<String, f64>,
) -> anyhow::Result<Vec<f64>> {
    let text = std::fs::read_to_string(stamps)?;
    let mut late: Vec<f64> = text
        .lines()
        .filter_map(|line| {
            let (id, at) = line.split_once(' ')?;
            let at: f64 = at.parse().ok()?;
            Some((at - reference.get(id)?) * 1000.0)
        })
        .collect();
    anyhow::ensure!(
        late.len() == reference.len(),
        "{} stamps for {} actions",
        late.len(),
        reference.len()
    );
    late.sort_by(f64::total_cmp);
    Ok(late)
}

fn print_lateness(name: &str, late: &[f64], baseline: &str) {
    let p99 = percentile(late, 99.0);
    report(
        name,
        &format!(
            "n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            late.len(),
            percentile(late, 50.0),
            p99,
            percentile(late, 100.0)
        ),
        baseline,
        None,
        "p99 < 5 ms",
        p99 < 5.0,
    );
}
