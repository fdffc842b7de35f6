//! Figure 10: the daemon on PostgreSQL (a durable cluster started for the run from the
//! system's server binaries, `fsync` on).
//!
//! - 10a. Claim throughput: the store's own claim (`PgStore::settle`, the rules and a full
//!   row written per action), batches of 100, against a bare `FOR UPDATE SKIP LOCKED` claim
//!   loop over the same table with the same rows, which only flips a status column. Rounds
//!   alternate; the ratio is of medians.
//! - 10b. Trivial runs with 1, 2 and 3 daemons on one database: N actions due at once, from
//!   the due time to the last result recorded; every action completed once (one attempt).
//! - 10c. Lateness (due -> tool start) with three daemons, as figure 2a.
//! - 10d. Durable webhook 202/s on PostgreSQL beside redb's, figure 4's load.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use sdlc_core::store::Store;
use sdlc_core::store::pg::PgStore;
use sdlc_core::{Action, ActionTrigger, ListFilter, StatusKind};

use crate::Sizes;
use crate::support::{Daemon, Project, TRIVIAL_TOOL, median, percentile, report, stamp_tool};

pub async fn run(sizes: &Sizes) -> anyhow::Result<()> {
    let cluster = sdlc_pgtest::Cluster::start_with(true).map_err(anyhow::Error::msg)?;
    claims(sizes, &cluster)?;
    nodes(sizes, &cluster).await?;
    lateness(sizes, &cluster).await?;
    ingest(sizes, &cluster).await
}

/// PostgreSQL calls block on the client's own runtime: off this runtime's threads.
fn blocking<T>(work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    tokio::task::block_in_place(work)
}

fn due_actions(n: usize, tool: &str, at: chrono::DateTime<Utc>) -> Vec<Action> {
    let now = Utc::now();
    (0..n)
        .map(|i| {
            Action::new(
                format!("t{i}"),
                tool,
                json!({"i": i}),
                ActionTrigger::Scheduled { next_tick_at: at },
                now,
            )
        })
        .collect()
}

/// A fresh database holding `n` actions due a second ago, and a store connected to it.
fn filled(cluster: &sdlc_pgtest::Cluster, n: usize) -> anyhow::Result<(String, PgStore)> {
    let url = cluster.fresh_database().map_err(anyhow::Error::msg)?;
    let store = PgStore::connect(&url, 4)?;
    let actions = due_actions(n, "trivial", Utc::now() - chrono::Duration::seconds(1));
    for chunk in actions.chunks(5_000) {
        store.insert_many(chunk)?;
    }
    Ok((url, store))
}

fn claims(sizes: &Sizes, cluster: &sdlc_pgtest::Cluster) -> anyhow::Result<()> {
    let n = if sizes.quick { 500 } else { 10_000 };
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..if sizes.quick { 1 } else { 3 } {
        ours.push(blocking(|| {
            let (_, store) = filled(cluster, n)?;
            let started = Instant::now();
            let mut claimed = 0;
            loop {
                let got = store.settle(Vec::new(), Utc::now(), 100)?.claimed.len();
                if got == 0 {
                    break;
                }
                claimed += got;
            }
            anyhow::ensure!(claimed == n, "claimed {claimed} of {n}");
            Ok(started.elapsed())
        })?);
        bare.push(blocking(|| {
            let (url, store) = filled(cluster, n)?;
            drop(store);
            let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
            let now = Utc::now().timestamp_millis();
            let started = Instant::now();
            let mut claimed = 0;
            loop {
                let rows = client.query(
                    "UPDATE sdlc_actions SET status = 2, due_at = NULL
                     WHERE id IN (SELECT id FROM sdlc_actions
                                  WHERE due_at IS NOT NULL AND due_at <= $1
                                  ORDER BY due_at, id LIMIT 100 FOR UPDATE SKIP LOCKED)
                     RETURNING id",
                    &[&now],
                )?;
                if rows.is_empty() {
                    break;
                }
                claimed += rows.len();
            }
            anyhow::ensure!(claimed == n, "claimed {claimed} of {n}");
            Ok(started.elapsed())
        })?);
    }
    let rounds = ours.len();
    let (ours, bare) = (median(ours), median(bare));
    let (our_rate, bare_rate) = (n as f64 / ours.as_secs_f64(), n as f64 / bare.as_secs_f64());
    let ratio = our_rate / bare_rate;
    report(
        &format!("10a. claim throughput on PostgreSQL, {n} due, batches of 100"),
        &format!("the store's claim {our_rate:.0} claims/s"),
        &format!(
            "a bare FOR UPDATE SKIP LOCKED loop, same table and rows, {bare_rate:.0} claims/s; medians of {rounds} alternating rounds"
        ),
        Some(ratio),
        "ratio >= 0.5",
        ratio >= 0.5,
    );
    Ok(())
}

/// Daemons on `url`, one project each (each node's machine), started with `extra`.
fn start_nodes(
    url: &str,
    count: usize,
    tool: impl Fn(&Project) -> anyhow::Result<()>,
    extra: &[&str],
) -> anyhow::Result<(Vec<Project>, Vec<Daemon>)> {
    let mut projects = Vec::new();
    let mut daemons = Vec::new();
    for i in 0..count {
        let project = Project::new()?;
        tool(&project)?;
        let name = format!("bench-{i}");
        let mut args = vec!["--db", url, "--node", &name, "--tick-rate", "60"];
        args.extend_from_slice(extra);
        daemons.push(Daemon::start(&project, &args)?);
        projects.push(project);
    }
    Ok((projects, daemons))
}

async fn nodes(sizes: &Sizes, cluster: &sdlc_pgtest::Cluster) -> anyhow::Result<()> {
    let n = if sizes.quick { 100 } else { 2_000 };
    let c = crate::throughput::concurrency().to_string();
    let mut rates = Vec::new();
    for count in 1..=3 {
        let url = cluster.fresh_database().map_err(anyhow::Error::msg)?;
        let (_projects, daemons) = start_nodes(
            &url,
            count,
            |p| p.tool("trivial", TRIVIAL_TOOL).map(|_| ()),
            &["--max-concurrency", &c],
        )?;
        let due = Utc::now() + chrono::Duration::seconds(3);
        let store = blocking(|| {
            let store = PgStore::connect(&url, 4)?;
            for chunk in due_actions(n, "trivial", due).chunks(5_000) {
                store.insert_many(chunk)?;
            }
            Ok(store)
        })?;
        daemons[0]
            .wait_completed(n as u64, Duration::from_secs(600))
            .await?;
        for daemon in daemons {
            daemon.stop()?;
        }
        let done = blocking(|| {
            Ok(store.list(&ListFilter {
                status: Some(StatusKind::Completed),
                ..ListFilter::default()
            })?)
        })?;
        anyhow::ensure!(done.len() == n, "{} of {n} completed", done.len());
        let twice = done.iter().filter(|a| a.attempts.len() != 1).count();
        let last = done.iter().filter_map(|a| a.finished_at).max();
        let wall = (last.unwrap_or(due) - due).to_std()?;
        let rate = n as f64 / wall.as_secs_f64();
        println!(
            "10b. {count} node(s), {n} trivial runs due at once, c={c} each: {:.3} s ({rate:.0} runs/s); actions run more than once: {twice}",
            wall.as_secs_f64()
        );
        anyhow::ensure!(twice == 0, "{twice} actions ran more than once");
        rates.push(rate);
    }
    let kept = rates[2] / rates[0];
    report(
        "10b. throughput as nodes are added (3 nodes against 1, one 2-core machine)",
        &format!(
            "3 nodes {:.0} runs/s, 2 nodes {:.0} runs/s",
            rates[2], rates[1]
        ),
        &format!("1 node {:.0} runs/s", rates[0]),
        Some(kept),
        "does not fall (ratio >= 0.9, this machine's noise), no double claims",
        kept >= 0.9,
    );
    Ok(())
}

async fn lateness(sizes: &Sizes, cluster: &sdlc_pgtest::Cluster) -> anyhow::Result<()> {
    let url = cluster.fresh_database().map_err(anyhow::Error::msg)?;
    let stamps = tempfile::NamedTempFile::new()?;
    let stamp = stamp_tool(stamps.path());
    let (_projects, daemons) = start_nodes(&url, 3, |p| p.tool("stamp", &stamp).map(|_| ()), &[])?;
    let (actions, due) = crate::lateness::scattered(sizes);
    blocking(|| Ok(PgStore::connect(&url, 2)?.insert_many(&actions)?))?;
    daemons[0]
        .wait_completed(actions.len() as u64, Duration::from_secs(120))
        .await?;
    for daemon in daemons {
        daemon.stop()?;
    }
    let late = crate::lateness::lateness_ms(stamps.path(), &due)?;
    let p99 = percentile(&late, 99.0);
    report(
        "10c. lateness with three nodes on PostgreSQL (due -> tool start)",
        &format!(
            "p50 {:.2} ms, p99 {p99:.2} ms, max {:.2} ms over {} actions",
            percentile(&late, 50.0),
            late[late.len() - 1],
            late.len()
        ),
        "figure 2a (one daemon on redb)",
        None,
        "p99 < 10 ms",
        p99 < 10.0,
    );
    Ok(())
}

async fn ingest(sizes: &Sizes, cluster: &sdlc_pgtest::Cluster) -> anyhow::Result<()> {
    let duration = Duration::from_secs(sizes.ingest_secs);
    let body = crate::payload::push_event(4096);
    let url = cluster.fresh_database().map_err(anyhow::Error::msg)?;
    let (_projects, daemons) = start_nodes(
        &url,
        1,
        |p| p.tool("trivial", TRIVIAL_TOOL).map(|_| ()),
        &[],
    )?;
    let route = daemons[0].add_route("load", "trivial").await?;
    let on_postgres = crate::ingest::load(&route, &body, duration).await?;
    for daemon in daemons {
        daemon.stop()?;
    }
    let project = Project::new()?;
    project.tool("trivial", TRIVIAL_TOOL)?;
    let daemon = Daemon::start(&project, &["--tick-rate", "60"])?;
    let route = daemon.add_route("load", "trivial").await?;
    let on_redb = crate::ingest::load(&route, &body, duration).await?;
    daemon.stop()?;
    let secs = duration.as_secs_f64();
    report(
        "10d. durable webhook 202/s on PostgreSQL (figure 4's load, runs competing)",
        &format!("{:.0}/s on PostgreSQL", on_postgres as f64 / secs),
        &format!("{:.0}/s on redb, the same run", on_redb as f64 / secs),
        Some(on_postgres as f64 / on_redb as f64),
        "— (beside redb's)",
        true,
    );
    Ok(())
}
