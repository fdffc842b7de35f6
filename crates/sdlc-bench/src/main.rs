//! `sdlc-bench`: the benchmark suite. Each figure is measured beside a baseline in the same
//! run, on the same machine, and printed with their ratio and the target. Benchmarks live
//! here, never in the test suite.
//!
//! Figures (see BENCHMARKS.md for the method of each):
//! - `throughput`: N actions due at once, trivial tool, results durably stored, against
//!   `xargs -P` running the same tool and storing nothing.
//! - `lateness`: tool start minus due time over scattered due times (daemon tick 60 s), and
//!   from a webhook's 202 to its tool's start.
//! - `history`: tick cost with 0 and with many finished actions stored; start-up and
//!   `list --status failed` time; the daemon's peak memory over that database.
//! - `ingest`: durable webhook 202s per second against the same HTTP stack answering without
//!   storing; then whether every acknowledged request ran.
//! - `peer`: against adnanh/webhook under the same `wrk` load: acknowledged rate, and how
//!   many acknowledged requests ran.
//! - `plans`: a plan of independent command steps against `xargs -P 8`; the gap between the
//!   steps of a chain; `plan check` of a 10,000-step plan.
//! - `tracker`: over 1,000,000 stored actions, a filtered history page against an unfiltered
//!   one, the 10,000-row CSV, approving, a page of run groups. `burst`: lateness while 1,000
//!   notifications are sent. `upkeep`: what keeping run groups costs a run.
//! - `nodes`: on PostgreSQL: the store's claim against a bare `SKIP LOCKED` loop, runs with
//!   1, 2 and 3 daemons on one database, lateness with three, webhook ingest beside redb's.
//!
//! Usage: `cargo build --release --bins && target/release/sdlc-bench [--quick] [--only NAME]`.

mod dashboard;
mod history;
mod ingest;
mod lateness;
mod logs;
mod nodes;
mod payload;
mod peer;
mod plans;
mod support;
mod throughput;
mod tracker;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "sdlc-bench",
    about = "Benchmarks of sdlc orchestrate against same-run baselines"
)]
struct Args {
    /// Small sizes, to prove the suite runs (CI); figures are not meaningful
    #[arg(long)]
    quick: bool,
    /// Run only this figure: throughput, lateness, history, ingest, peer, plans, tracker, burst, upkeep, dashboard, nodes, logs
    #[arg(long)]
    only: Option<String>,
}

/// Sizes of a run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub quick: bool,
    pub throughput: &'static [usize],
    pub lateness_actions: usize,
    pub lateness_spread_secs: f64,
    pub webhook_requests: usize,
    pub history: usize,
    pub ingest_secs: u64,
}

const FULL: Sizes = Sizes {
    quick: false,
    throughput: &[1_000, 10_000],
    lateness_actions: 200,
    lateness_spread_secs: 20.0,
    webhook_requests: 200,
    history: 1_000_000,
    ingest_secs: 10,
};

const QUICK: Sizes = Sizes {
    quick: true,
    throughput: &[100],
    lateness_actions: 20,
    lateness_spread_secs: 2.0,
    webhook_requests: 20,
    history: 5_000,
    ingest_secs: 1,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sizes = if args.quick { QUICK } else { FULL };
    let wants = |name: &str| args.only.as_deref().is_none_or(|only| only == name);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "sdlc-bench ({} mode) on {cores} cores, {}",
        if sizes.quick { "quick" } else { "full" },
        std::env::consts::ARCH
    );
    if wants("throughput") {
        throughput::run(&sizes).await?;
    }
    if wants("lateness") {
        lateness::run(&sizes).await?;
    }
    if wants("history") {
        history::run(&sizes).await?;
    }
    if wants("ingest") {
        ingest::run(&sizes).await?;
    }
    if wants("peer") {
        peer::run(&sizes).await?;
    }
    if wants("plans") {
        plans::run(&sizes).await?;
    }
    if wants("tracker") {
        tracker::run(&sizes).await?;
    }
    if wants("burst") {
        tracker::burst(&sizes).await?;
    }
    if wants("upkeep") {
        tracker::upkeep()?;
    }
    if wants("dashboard") {
        dashboard::run(&sizes).await?;
    }
    if wants("nodes") {
        nodes::run(&sizes).await?;
    }
    if wants("logs") {
        logs::run(&sizes).await?;
    }
    Ok(())
}
