//! Figure 8: the run tracker. Over H stored actions (10 tools, 100 labels, one in ten
//! failed, due over 30 days, each created a period before its slot, in groups of 100 by run
//! id): a filtered history page of 50 (status + tool + since) through the daemon's API,
//! against an unfiltered page; the 10,000-row CSV; approving an action; a page of 50 run
//! groups; the first open of that file as written by a build before schema 10 (the history
//! index rebuilt, the run groups built). What keeping the groups costs a run (`upkeep`,
//! `--only upkeep`: claiming and finishing 1,000 runs of one group against 1,000 of none).
//! And (`burst`) the
//! lateness of scheduled runs (figure 2a's method) while 1,000 notifications are sent,
//! against the same runs with none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use sdlc_core::model::Approval;
use sdlc_core::notify::{NotifyConfig, NotifyEvent, Receiver, ReceiverKind};
use sdlc_core::store::Store;
use sdlc_core::{Action, ActionDb, ActionStatus, ActionTrigger};

use crate::Sizes;
use crate::support::{Daemon, Project, Spread, TRIVIAL_TOOL, percentile, report, stamp_tool};

const TOOLS: usize = 10;
const APPROVALS: usize = 200;
const PAGE_SAMPLES: usize = 300;
const BURST: usize = 1_000;
/// Runs of one run id in the filled history.
const GROUP_SIZE: usize = 100;
/// Alternating runs with and without the burst in figure 8d.
const PAIRS: usize = 4;

pub async fn run(sizes: &Sizes) -> anyhow::Result<()> {
    let project = Project::new()?;
    for t in 0..TOOLS {
        project.tool(&format!("tool-{t}"), TRIVIAL_TOOL)?;
    }
    let started = Instant::now();
    let waiting = fill(&project, sizes.history)?;
    println!(
        "8. {} actions stored in {:.1} s (history index included)",
        sizes.history,
        started.elapsed().as_secs_f64()
    );
    let daemon = Daemon::start(&project, &["--tick-rate", "60"])?;
    pages(&daemon, sizes).await?;
    csv(&daemon).await?;
    approvals(&daemon, &waiting).await?;
    groups(&daemon, sizes).await?;
    daemon.stop()?;
    upgrade(&project, sizes)
}

/// Figure 8f: pages of 50 run groups walked newest first, against the unfiltered history
/// page, alternating halves.
async fn groups(daemon: &Daemon, sizes: &Sizes) -> anyhow::Result<()> {
    let groups = "/run-groups?limit=50";
    let plain = "/actions/paged?limit=50";
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        ours.extend(page_times(daemon, groups, PAGE_SAMPLES / 2).await?);
        base.extend(page_times(daemon, plain, PAGE_SAMPLES / 2).await?);
    }
    ours.sort_by(f64::total_cmp);
    base.sort_by(f64::total_cmp);
    let p99 = percentile(&ours, 99.0);
    report(
        &format!(
            "8f. run groups page of 50, {} stored in groups of {GROUP_SIZE} (request on loopback)",
            sizes.history
        ),
        &format!("p50 {:.2} ms, p99 {p99:.2} ms", percentile(&ours, 50.0)),
        &format!(
            "unfiltered history page p50 {:.2} ms, p99 {:.2} ms",
            percentile(&base, 50.0),
            percentile(&base, 99.0)
        ),
        Some(p99 / percentile(&base, 99.0)),
        "p99 < 20 ms",
        p99 < 20.0,
    );
    Ok(())
}

/// Figure 8g: what keeping run groups costs a run: 1,000 due runs claimed and finished (two
/// commits) when they share a run id, against 1,000 with none, on a store of their own;
/// alternating rounds (which goes first alternates too), medians.
pub fn upkeep() -> anyhow::Result<()> {
    const RUNS: usize = 1_000;
    const ROUNDS: usize = 7;
    let dir = tempfile::tempdir()?;
    let db = ActionDb::open(&dir.path().join("orchestrator.db"))?;
    let round = |grouped: bool, round: usize| -> anyhow::Result<f64> {
        let now = Utc::now();
        let batch: Vec<Action> = (0..RUNS)
            .map(|i| {
                let mut a = Action::new(
                    format!("task-{i}"),
                    "tool-0",
                    json!({}),
                    ActionTrigger::Manual { requested_at: now },
                    now,
                );
                a.run_id = grouped.then(|| format!("ci-{round}"));
                a
            })
            .collect();
        let started = Instant::now();
        db.insert_many(&batch)?;
        let claimed = db.claim_due(now, RUNS)?;
        let outcomes = claimed
            .iter()
            .map(|a| {
                let done = ActionStatus::Completed {
                    result: json!({"ok": true}),
                };
                (a.id, done)
            })
            .collect();
        db.complete_many(outcomes, Utc::now())?;
        anyhow::ensure!(claimed.len() == RUNS, "claimed {} of {RUNS}", claimed.len());
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    };
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        if r % 2 == 0 {
            ours.push(round(true, r)?);
            base.push(round(false, r)?);
        } else {
            base.push(round(false, r)?);
            ours.push(round(true, r)?);
        }
    }
    ours.sort_by(f64::total_cmp);
    base.sort_by(f64::total_cmp);
    let (ours, base) = (percentile(&ours, 50.0), percentile(&base, 50.0));
    report(
        "8g. 1,000 runs of one run group stored, claimed and finished (store only, median of 7 alternating rounds)",
        &format!("{ours:.2} ms"),
        &format!("the same runs with no run id: {base:.2} ms"),
        Some(ours / base),
        "ratio <= 1.20",
        ours / base <= 1.20,
    );
    Ok(())
}

/// Figure 8e: the first open of a file from before schema 10, whose history index is keyed
/// by creation time and is rebuilt from every action by run time.
fn upgrade(project: &Project, sizes: &Sizes) -> anyhow::Result<()> {
    const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    {
        let db = redb::Database::open(project.db_path())?;
        let tx = db.begin_write()?;
        tx.open_table(META)?.insert("schema_version", 9)?;
        tx.commit()?;
    }
    let started = Instant::now();
    let db = ActionDb::open(&project.db_path())?;
    let secs = started.elapsed().as_secs_f64();
    drop(db);
    let again = Instant::now();
    drop(ActionDb::open(&project.db_path())?);
    report(
        &format!(
            "8e. first open of a schema 9 file, {} stored (history index rebuilt by run time, run groups built)",
            sizes.history
        ),
        &format!("{secs:.1} s"),
        &format!(
            "the next open: {:.1} ms",
            again.elapsed().as_secs_f64() * 1000.0
        ),
        None,
        "< 60 s",
        secs < 60.0,
    );
    Ok(())
}

/// Stores `n` finished actions and `APPROVALS` awaiting approval; returns the latter's ids.
pub(crate) fn fill(project: &Project, n: usize) -> anyhow::Result<Vec<uuid::Uuid>> {
    let db = ActionDb::open(&project.db_path())?;
    let start = Utc::now() - chrono::Duration::days(30);
    let step_ms = (30 * 24 * 3600 * 1000 / n.max(1)) as i64;
    let mut spread = Spread::new(7);
    let mut k = 0;
    while k < n {
        let batch: Vec<Action> = (k..(k + 10_000).min(n))
            .map(|i| {
                let at = start + chrono::Duration::milliseconds(i as i64 * step_ms);
                // Each one created a period before its slot, as a schedule's occurrences are:
                // history is ordered and filtered by the slot.
                let created = at - chrono::Duration::milliseconds(step_ms);
                // Tool and outcome drawn independently, as in a mixed history.
                let tool = (spread.next_unit() * TOOLS as f64) as usize;
                let failed = spread.next_unit() < 0.1;
                let mut a = Action::new(
                    format!("label-{}", i % 100),
                    format!("tool-{tool}"),
                    json!({"i": i}),
                    ActionTrigger::Scheduled { next_tick_at: at },
                    created,
                );
                a.run_id = Some(format!("nightly-{}", i / GROUP_SIZE));
                a.status = if failed {
                    ActionStatus::Failed {
                        reason: "exited with status 1".into(),
                    }
                } else {
                    ActionStatus::Completed {
                        result: json!({"ok": true}),
                    }
                };
                a.attempt = 1;
                a.started_at = Some(at);
                a.finished_at = Some(at + chrono::Duration::milliseconds(40));
                a
            })
            .collect();
        db.insert_many(&batch)?;
        k += batch.len();
    }
    let now = Utc::now();
    let waiting: Vec<Action> = (0..APPROVALS)
        .map(|i| {
            let mut a = Action::new(
                format!("review-{i}"),
                "tool-0",
                json!({}),
                ActionTrigger::Manual { requested_at: now },
                now,
            );
            a.status = ActionStatus::AwaitingApproval {
                result: json!({"ok": true}),
            };
            a.attempt = 1;
            a.started_at = Some(now);
            a.approval = Some(Approval::pending(None, now));
            a
        })
        .collect();
    db.insert_many(&waiting)?;
    Ok(waiting.iter().map(|a| a.id).collect())
}

/// Request times of `path` walked page by page (following `next_cursor`, starting over at
/// the end) until `samples` requests were made, in ms, sorted.
async fn page_times(daemon: &Daemon, path: &str, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(samples);
    let mut cursor: Option<String> = None;
    while times.len() < samples {
        let full = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_string(),
        };
        let started = Instant::now();
        let page = daemon.api(reqwest::Method::GET, &full, None).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            page["items"].as_array().is_some_and(|i| !i.is_empty()),
            "{full}: an empty page"
        );
        cursor = page["next_cursor"].as_str().map(str::to_string);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

async fn pages(daemon: &Daemon, sizes: &Sizes) -> anyhow::Result<()> {
    let filtered = "/actions/paged?status=failed&tool=tool-3&since=7d&limit=50";
    let plain = "/actions/paged?limit=50";
    // Alternating halves, so a drift of the machine weighs on both alike.
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        ours.extend(page_times(daemon, filtered, PAGE_SAMPLES / 2).await?);
        base.extend(page_times(daemon, plain, PAGE_SAMPLES / 2).await?);
    }
    ours.sort_by(f64::total_cmp);
    base.sort_by(f64::total_cmp);
    let p99 = percentile(&ours, 99.0);
    report(
        &format!(
            "8a. history page of 50, status+tool+since, {} stored (request on loopback)",
            sizes.history
        ),
        &format!("p50 {:.2} ms, p99 {p99:.2} ms", percentile(&ours, 50.0)),
        &format!(
            "unfiltered page p50 {:.2} ms, p99 {:.2} ms",
            percentile(&base, 50.0),
            percentile(&base, 99.0)
        ),
        Some(p99 / percentile(&base, 99.0)),
        "p99 < 20 ms",
        p99 < 20.0,
    );
    Ok(())
}

async fn csv(daemon: &Daemon) -> anyhow::Result<()> {
    let url = format!(
        "http://{}/api/orchestrator/actions/paged.csv?since=30d",
        daemon.addr
    );
    let client = reqwest::Client::new();
    let token = daemon.token();
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..7 {
        let started = Instant::now();
        let body = client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        rows = body.lines().count() - 1;
    }
    times.sort_by(f64::total_cmp);
    let median = percentile(&times, 50.0);
    report(
        "8b. history CSV (request on loopback)",
        &format!(
            "{rows} rows in {median:.1} ms (median of 7, max {:.1} ms)",
            percentile(&times, 100.0)
        ),
        "none",
        None,
        "10,000 rows < 300 ms",
        rows == 10_000 && median < 300.0,
    );
    Ok(())
}

async fn approvals(daemon: &Daemon, waiting: &[uuid::Uuid]) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(waiting.len());
    for id in waiting {
        let started = Instant::now();
        daemon
            .api(
                reqwest::Method::POST,
                &format!("/actions/{id}/approve"),
                Some(json!({"by": "bench"})),
            )
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let p99 = percentile(&times, 99.0);
    report(
        "8c. approve (request on loopback, committed)",
        &format!(
            "n={} p50 {:.2} ms, p99 {p99:.2} ms",
            times.len(),
            percentile(&times, 50.0)
        ),
        "none",
        None,
        "< 5 ms",
        p99 < 5.0,
    );
    Ok(())
}

/// A receiver answering 200 after `delay` (a remote service's round trip); counts requests.
async fn receiver(delay: Duration) -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(delay).await;
                seen.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, count))
}

/// Figure 2a's lateness (`sizes.lateness_actions` runs due at scattered times over
/// `sizes.lateness_spread_secs`, from 2 s after the start), with `notifications` queued for
/// the receiver at `url` when the daemon starts.
async fn lateness_with(
    sizes: &Sizes,
    url: &str,
    notifications: usize,
    sent: &AtomicU64,
) -> anyhow::Result<Vec<f64>> {
    let project = Project::new()?;
    let stamps = project.root().join("stamps");
    project.tool("stamp", &stamp_tool(&stamps))?;
    project.tool("failing", "#!/bin/sh\ncat > /dev/null\nexit 1\n")?;
    let due = {
        let db = ActionDb::open(&project.db_path())?;
        let receiver = Receiver::new(ReceiverKind::Webhook, url).map_err(anyhow::Error::msg)?;
        db.set_notify_config(
            &NotifyConfig {
                receivers: vec![receiver],
                events: NotifyEvent::DEFAULT.to_vec(),
                public_url: None,
            },
            Utc::now(),
        )?;
        // The burst: failed runs, each queueing one notification.
        let now = Utc::now();
        let failing: Vec<Action> = (0..notifications)
            .map(|i| {
                Action::new(
                    format!("f{i}"),
                    "failing",
                    json!({}),
                    ActionTrigger::Manual { requested_at: now },
                    now,
                )
            })
            .collect();
        db.insert_many(&failing)?;
        let claimed = db.claim_due(now, notifications.max(1))?;
        let outcomes = claimed
            .iter()
            .map(|a| {
                (
                    a.id,
                    ActionStatus::Failed {
                        reason: "exited with status 1".into(),
                    },
                )
            })
            .collect();
        db.settle(outcomes, now, 0)?;
        // The runs are due from 2 s after now: the burst is queued before them.
        let (actions, due) = crate::lateness::scattered(sizes);
        db.insert_many(&actions)?;
        due
    };
    let before = sent.load(Ordering::Relaxed);
    let daemon = Daemon::start(&project, &["--tick-rate", "60", "--notify-webhook", url])?;
    daemon
        .wait_completed(sizes.lateness_actions as u64, Duration::from_secs(60))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent.load(Ordering::Relaxed) < before + notifications as u64 {
        anyhow::ensure!(Instant::now() < deadline, "the burst was not sent in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.stop()?;
    crate::lateness::lateness_ms(&stamps, &due)
}

/// Figure 8d: lateness with and without a burst of notifications, alternating runs, their
/// samples pooled (one run's p99 is two samples: it moves by milliseconds between runs on a
/// shared machine).
pub async fn burst(sizes: &Sizes) -> anyhow::Result<()> {
    let burst = if sizes.quick { 50 } else { BURST };
    // A receiver slow enough that the sender's rounds (64 at a time) span the whole window
    // of due times: every run meets the sender's reads and commits.
    let rounds = burst.div_ceil(64) as f64;
    let delay = Duration::from_secs_f64(sizes.lateness_spread_secs / rounds);
    let (url, sent) = receiver(delay).await?;
    let (mut quiet, mut loud) = (Vec::new(), Vec::new());
    let (mut quiet_runs, mut loud_runs) = (Vec::new(), Vec::new());
    for _ in 0..PAIRS {
        let q = lateness_with(sizes, &url, 0, &sent).await?;
        quiet_runs.push(percentile(&q, 99.0));
        quiet.extend(q);
        let l = lateness_with(sizes, &url, burst, &sent).await?;
        loud_runs.push(percentile(&l, 99.0));
        loud.extend(l);
    }
    quiet.sort_by(f64::total_cmp);
    loud.sort_by(f64::total_cmp);
    let (q, l) = (percentile(&quiet, 99.0), percentile(&loud, 99.0));
    let (quiet, loud) = (quiet_runs, loud_runs);
    report(
        &format!(
            "8d. lateness p99 (2a's method) while {burst} notifications are sent (receiver answers in {} ms)",
            delay.as_millis()
        ),
        &format!("{l:.2} ms over {PAIRS} runs pooled (each run's p99: {loud:.2?})"),
        &format!("no notifications {q:.2} ms (each run's: {quiet:.2?})"),
        None,
        "<= 1 ms more",
        l - q <= 1.0,
    );
    Ok(())
}
