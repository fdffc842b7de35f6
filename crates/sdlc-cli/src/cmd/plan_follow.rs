//! Starting a plan run (`plan run`, `plan retry`) and following it (`plan events --follow`).
//!
//! With a daemon serving the database the run is the daemon's: it is started through the API
//! and followed by its event stream. With none, this command becomes the engine for the
//! length of the run: it opens the database as the daemon would, starts the run, runs the
//! engine (anything else due runs too, as it would under the daemon), and stops when the run
//! ends. Either way the command prints the run id first, then one line per event, and exits 0
//! when the run succeeded, 1 otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use uuid::Uuid;

use sdlc_core::clock::{Clock, SystemClock};
use sdlc_core::engine::Engine;
use sdlc_core::plan::{PlanRun, RunEvent, load};
use sdlc_core::store::{Store, guarded};
use sdlc_server::DaemonClient;

use super::Project;
use super::daemon::{engine_config, run_on_own_thread, shutdown_signal};
use super::plan::human_event;
use crate::backend::open_store_for_daemon;
use crate::cli::DaemonArgs;

/// `plan run`.
pub async fn start(
    project: &Project,
    daemon: &DaemonArgs,
    plan: &str,
    vars: BTreeMap<String, String>,
    options: &sdlc_core::plan::run::RunOptions,
    detach: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    // Checked here first, so a bad option reads the same with or without a daemon.
    options.check().map_err(anyhow::Error::msg)?;
    if let Some(client) = project.daemon_client() {
        if plan.contains('/') || plan.ends_with(".json") {
            anyhow::bail!(
                "a daemon serves {} and runs plans of {} by id only: put the file there as <plan_id>.json and run it by id",
                client.base(),
                load::plans_dir(&project.root).display()
            );
        }
        let started = client.start_run(plan, &vars, options).await?;
        outln!("{}", started.run_id)?;
        if detach {
            return Ok(ExitCode::SUCCESS);
        }
        return follow_through(&client, started.run_id, 0, json).await;
    }
    let mut new = load::prepare_run(&project.root, plan, vars, Utc::now())
        .await
        .map_err(|problems| anyhow::anyhow!("{problems}"))?;
    options.apply(&mut new.run).map_err(anyhow::Error::msg)?;
    run_here(project, daemon, detach, json, move |db| {
        Ok((db.start_run(&new, Utc::now())?, 0))
    })
    .await
}

/// `plan retry`.
pub async fn retry(
    project: &Project,
    daemon: &DaemonArgs,
    run: Uuid,
    step: Option<String>,
    detach: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(client) = project.daemon_client() {
        let retried = client.retry_run(run, step.as_deref()).await?;
        outln!("{}", retried.run_id)?;
        eprintln!("running again: {}", retried.steps.join(", "));
        if detach {
            return Ok(ExitCode::SUCCESS);
        }
        return follow_through(&client, run, retried.first_seq, json).await;
    }
    run_here(project, daemon, detach, json, move |db| {
        let retried = db.retry_run(run, step.as_deref(), Utc::now())?;
        eprintln!("running again: {}", retried.steps.join(", "));
        Ok((retried.run, retried.first_seq))
    })
    .await
}

/// `plan events [--follow]`.
pub async fn events(project: &Project, run: Uuid, follow: bool) -> anyhow::Result<ExitCode> {
    if let Some(client) = project.daemon_client() {
        let mut failed = None;
        client
            .run_events(run, follow, 0, |event| match print_json(&event) {
                // Nothing follows a run's end.
                Ok(()) => event.event != "run_completed",
                Err(err) => {
                    failed = Some(err);
                    false
                }
            })
            .await?;
        return failed.map_or(Ok(ExitCode::SUCCESS), Err);
    }
    let stored = project
        .backend()
        .route_read(
            async |client| {
                let mut all = Vec::new();
                client
                    .run_events(run, false, 0, |event| {
                        all.push(event);
                        true
                    })
                    .await?;
                Ok(all)
            },
            |db| {
                db.get_run(run)?
                    .ok_or(sdlc_core::StoreError::RunNotFound(run))?;
                db.run_events(run, None, usize::MAX)
            },
        )
        .await?;
    for event in &stored {
        print_json(event)?;
    }
    // With no daemon nothing moves a run on: following it would wait forever.
    if follow && stored.last().is_none_or(|e| e.event != "run_completed") {
        eprintln!(
            "no daemon runs this database, so the run does not move on: start the daemon (sdlc orchestrate) to carry it on"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(event: &RunEvent) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string(event)?)
}

/// Prints a run's events: JSON lines, or lines for a person (with the run's progress when
/// stdout is a terminal).
struct Printer {
    json: bool,
    terminal: bool,
    steps: u64,
    finished: u64,
}

impl Printer {
    fn new(json: bool) -> Printer {
        Printer {
            json,
            terminal: std::io::stdout().is_terminal(),
            steps: 0,
            finished: 0,
        }
    }

    /// Prints one event; returns the run's final status once it has ended.
    fn print(&mut self, event: &RunEvent) -> anyhow::Result<Option<String>> {
        match event.event.as_str() {
            "run_started" => {
                self.steps = event
                    .detail
                    .get("steps")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0);
            }
            "step_succeeded" | "step_failed" | "step_skipped" | "step_canceled" => {
                self.finished += 1;
            }
            "run_retried" => {
                let again = event
                    .detail
                    .get("steps")
                    .and_then(|v| v.as_array())
                    .map_or(0, |a| a.len() as u64);
                self.finished = self.finished.saturating_sub(again);
            }
            _ => {}
        }
        if self.json {
            print_json(event)?;
        } else if self.terminal && self.steps > 0 {
            let done = self.finished.min(self.steps);
            let width = 20;
            let filled = (done * width / self.steps) as usize;
            outln!(
                "{}  [{}{}] {done}/{}",
                human_event(event),
                "#".repeat(filled),
                ".".repeat(width as usize - filled),
                self.steps
            )?;
        } else {
            outln!("{}", human_event(event))?;
        }
        Ok((event.event == "run_completed").then(|| {
            event
                .detail
                .get("status")
                .and_then(|v| v.as_str())
                .unwrap_or("failed")
                .to_string()
        }))
    }
}

fn exit_for(status: &str) -> ExitCode {
    if status == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Follows a daemon's run to its end.
async fn follow_through(
    client: &DaemonClient,
    run: Uuid,
    from_seq: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut printer = Printer::new(json);
    let mut outcome: anyhow::Result<Option<String>> = Ok(None);
    client
        .run_events(run, true, from_seq, |event| match printer.print(&event) {
            Ok(None) => true,
            Ok(Some(status)) => {
                outcome = Ok(Some(status));
                false
            }
            Err(err) => {
                outcome = Err(err);
                false
            }
        })
        .await?;
    match outcome? {
        Some(status) => Ok(exit_for(&status)),
        None => anyhow::bail!(
            "the daemon stopped streaming run {run} before it ended: see sdlc orchestrate plan status {run}"
        ),
    }
}

/// Becomes the engine for one run: opens the database, stores the run with `start` (which
/// also gives the sequence number of its first new event), runs the engine until the run ends
/// (or Ctrl-C), printing its events from there.
async fn run_here(
    project: &Project,
    daemon: &DaemonArgs,
    detach: bool,
    json: bool,
    start: impl FnOnce(&dyn Store) -> Result<(PlanRun, u64), sdlc_core::StoreError>,
) -> anyhow::Result<ExitCode> {
    let interrupted = shutdown_signal()?;
    // On PostgreSQL this command is a node for as long as it runs the plan.
    let node = format!("plan-run-{}", std::process::id());
    let opened = open_store_for_daemon(
        &project.db_path,
        project.pg_url.as_deref(),
        &node,
        sdlc_core::store::pg::DEFAULT_LEASE,
    )
    .await?;
    let db = opened.store.clone();
    let (run, first_seq) = tokio::task::block_in_place(|| guarded(&*db, start))?;
    let run_id = run.run_id;
    outln!("{run_id}")?;
    if detach {
        eprintln!("stored; no daemon runs this database: start one (sdlc orchestrate) to run it");
        return Ok(ExitCode::SUCCESS);
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::new(db.clone(), clock, engine_config(project, daemon));
    let duties = opened
        .pg
        .clone()
        .map(|pg| crate::cmd::node::start(pg, node.clone(), engine.waker(), None));
    let mut live = engine.run_events().subscribe();
    engine.waker().announce_run(run_id);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let engine_run = tokio::spawn(run_on_own_thread(engine, async {
        let _ = stopped.await;
    }));
    let mut printer = Printer::new(json);
    let mut next_seq: u64 = first_seq;
    tokio::pin!(interrupted);
    let status = loop {
        let event = tokio::select! {
            () = &mut interrupted => break None,
            event = live.recv() => event,
        };
        let events = match event {
            Ok(event) if event.run_id == run_id => vec![event],
            Ok(_) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                // Printing fell behind the live feed: read what was missed.
                let after = next_seq.checked_sub(1);
                tokio::task::block_in_place(|| db.run_events(run_id, after, usize::MAX))?
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break None,
        };
        let mut ended = None;
        for event in &events {
            if event.seq < next_seq {
                continue;
            }
            next_seq = event.seq + 1;
            if let Some(status) = printer.print(event)? {
                ended = Some(status);
            }
        }
        if ended.is_some() {
            break ended;
        }
    };
    let _ = stop.send(());
    engine_run.await.context("the engine's task failed")??;
    if let Some(duties) = duties {
        duties.stop().await;
    }
    if let Some(pg) = &opened.pg {
        let _ = tokio::task::block_in_place(|| pg.db().forget_node(&node));
    }
    match status {
        Some(status) => Ok(exit_for(&status)),
        None => {
            eprintln!(
                "stopped before run {run_id} ended: it carries on when the daemon (or plan retry) next runs this database"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
