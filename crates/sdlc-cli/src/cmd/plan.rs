//! `sdlc orchestrate plan ...`: check, list, status, runs, cancel and events of plans. Starting
//! and following a run (`run`, `retry`, `events --follow`) is `plan_follow`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use chrono::Utc;
use uuid::Uuid;

use sdlc_core::plan::view::{PlanListing, RunDetailView, RunSummary};
use sdlc_core::plan::{RunEvent, RunStatus, StepStatus, load};
use sdlc_core::store::{RunFilter, parse_run_cursor, run_cursor};

use super::{Project, plan_follow};
use crate::cli::{DaemonArgs, PlanCommand};
use crate::output::table;

pub async fn run(
    project: &Project,
    daemon: &DaemonArgs,
    command: PlanCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        PlanCommand::Check { plan, vars } => {
            check(project, &plan, vars.into_iter().collect()).await
        }
        PlanCommand::Run {
            plan,
            vars,
            detach,
            json,
            run_id,
            notify_on,
            no_notify,
        } => {
            let vars = vars.into_iter().collect();
            let options = sdlc_core::plan::run::RunOptions {
                run_id,
                notify_on,
                no_notify,
            };
            plan_follow::start(project, daemon, &plan, vars, &options, detach, json).await
        }
        PlanCommand::Retry {
            run_id,
            step,
            detach,
            json,
        } => plan_follow::retry(project, daemon, parse_run_id(&run_id)?, step, detach, json).await,
        PlanCommand::Events { run_id, follow } => {
            plan_follow::events(project, parse_run_id(&run_id)?, follow).await
        }
        PlanCommand::Status { run_id, json, all } => {
            status(project, parse_run_id(&run_id)?, json, all).await
        }
        PlanCommand::List { json } => list(project, json).await,
        PlanCommand::Runs {
            plan,
            status,
            limit,
            cursor,
            json,
        } => runs(project, plan, status, limit as usize, cursor, json).await,
        PlanCommand::Cancel { run_id, grace } => {
            cancel(project, parse_run_id(&run_id)?, grace).await
        }
    }
}

pub fn parse_run_id(text: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(text.trim()).map_err(|_| {
        anyhow::anyhow!(
            "'{text}' is not a run id: run ids are UUIDs as printed by plan run and plan runs"
        )
    })
}

/// `plan check`: a one-line summary and exit 0, or every problem and exit 1.
async fn check(
    project: &Project,
    plan: &str,
    vars: BTreeMap<String, String>,
) -> anyhow::Result<ExitCode> {
    project.local_only("plan check")?;
    let checked = match load::load(&project.root, plan).await {
        Ok((graph, path)) => {
            if vars.is_empty() {
                Ok((graph, path))
            } else {
                sdlc_core::plan::run::new_run(
                    graph.clone(),
                    vars,
                    &path.display().to_string(),
                    Utc::now(),
                )
                .map(|_| (graph, path))
            }
        }
        Err(problems) => Err(problems),
    };
    match checked {
        Ok((graph, path)) => {
            let needs = graph.required_vars();
            let roots = graph.deps.iter().filter(|d| d.is_empty()).count();
            outln!(
                "ok: plan {}{} ({}): {} steps, {} to start with{}",
                graph.plan.plan_id,
                graph
                    .plan
                    .version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default(),
                path.display(),
                graph.len(),
                roots,
                if needs.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; a run needs --var {}",
                        needs.keys().cloned().collect::<Vec<_>>().join(", --var ")
                    )
                }
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            eprintln!("{problems}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn list(project: &Project, json: bool) -> anyhow::Result<ExitCode> {
    project.local_only("plan list")?;
    let mut plans = load::listings(&project.root);
    let has_db =
        sdlc_core::daemon_file::find_live(&project.db_path).is_some() || project.db_path.exists();
    if has_db {
        let ids: Vec<String> = plans.iter().map(|p| p.plan_id.clone()).collect();
        let last: Vec<Option<RunSummary>> = project
            .backend()
            .route_read(
                async |client| {
                    let listed = client.list_plans().await?;
                    Ok(ids
                        .iter()
                        .map(|id| {
                            listed
                                .iter()
                                .find(|p: &&PlanListing| &p.plan_id == id)
                                .and_then(|p| p.last_run.clone())
                        })
                        .collect())
                },
                |db| {
                    ids.iter()
                        .map(|id| {
                            let filter = RunFilter {
                                plan: Some(id.clone()),
                                limit: Some(1),
                                ..RunFilter::default()
                            };
                            Ok(db.list_runs(&filter)?.first().map(RunSummary::from))
                        })
                        .collect()
                },
            )
            .await?;
        for (plan, last) in plans.iter_mut().zip(last) {
            plan.last_run = last;
        }
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&plans)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if plans.is_empty() {
        outln!(
            "no plans in {}: a plan is a JSON file <plan_id>.json there",
            load::plans_dir(&project.root).display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let header = ["PLAN", "VERSION", "STEPS", "LAST RUN", "DESCRIPTION"];
    let mut rows = Vec::new();
    for plan in &plans {
        let last = match (&plan.last_run, plan.problems.is_empty()) {
            (_, false) => format!("INVALID: {}", plan.problems.join("; ")),
            (Some(run), true) => format!(
                "{} {}",
                run.status,
                run.created_at.format("%Y-%m-%d %H:%M:%S")
            ),
            (None, true) => "never".into(),
        };
        rows.push([
            plan.plan_id.clone(),
            plan.version.clone().unwrap_or_default(),
            plan.steps.to_string(),
            last,
            plan.description.clone().unwrap_or_default(),
        ]);
    }
    out!("{}", table(header, &rows))?;
    Ok(ExitCode::SUCCESS)
}

async fn status(project: &Project, run: Uuid, json: bool, all: bool) -> anyhow::Result<ExitCode> {
    let detail: RunDetailView = project
        .backend()
        .route_read(
            async |client| client.get_run(run).await,
            |db| {
                let d = db
                    .get_run(run)?
                    .ok_or(sdlc_core::StoreError::RunNotFound(run))?;
                Ok(RunDetailView::new(&d.run, &d.steps, &d.graph))
            },
        )
        .await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&detail)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let shown = if all { usize::MAX } else { STEPS_SHOWN };
    out!("{}", describe_run(&detail, shown))?;
    Ok(ExitCode::SUCCESS)
}

/// How many steps `plan status` lists without `--all`: a run of thousands of steps is
/// summarised (counts by status, and the steps that need a look first), not printed whole.
const STEPS_SHOWN: usize = 50;

/// How many of a step's dependencies the graph names, and how deep it indents: a fan-in of
/// thousands or a chain of thousands would otherwise print quadratically much.
const DEPENDENCIES_NAMED: usize = 5;
const DEPTH_DRAWN: usize = 12;

/// The run's header, its steps as a table, and the graph drawn as text; at most `shown`
/// steps (failed, awaiting approval, running and retrying ones first, then the rest in plan
/// order) and, past that, how many by status instead of the graph.
pub fn describe_run(detail: &RunDetailView, shown: usize) -> String {
    let run = &detail.run;
    let mut text = format!(
        "run {}  plan {}{}  {}  {}% ({}/{} steps)  {}\n",
        run.run_id,
        run.plan_id,
        run.version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        run.status,
        run.progress,
        run.succeeded + run.failed + run.skipped + run.canceled,
        run.steps,
        run.duration_ms
            .map(|ms| format!("took {}", human_ms(ms)))
            .unwrap_or_else(|| format!("started {}", run.created_at.format("%Y-%m-%d %H:%M:%S"))),
    );
    if let Some(reason) = &run.abort_reason {
        text.push_str(&format!("{reason}\n"));
    }
    let header = ["STEP", "STATUS", "ATTEMPT", "DURATION", "REASON"];
    let mut rows = Vec::new();
    let steps = &detail.steps_detail;
    let bounded = steps.len() > shown;
    let mut order: Vec<usize> = (0..steps.len()).collect();
    if bounded {
        // Those that need a look first; a stable sort keeps plan order within each.
        let urgency = |status: StepStatus| match status {
            StepStatus::Failed => 0,
            StepStatus::AwaitingApproval => 1,
            StepStatus::Running | StepStatus::Retrying => 2,
            _ => 3,
        };
        order.sort_by_key(|&i| urgency(steps[i].status));
        order.truncate(shown);
    }
    for step in order.iter().map(|&i| &steps[i]) {
        rows.push([
            step.step_id.clone(),
            step.status.to_string(),
            step.attempt.to_string(),
            step.duration_ms.map(human_ms).unwrap_or_default(),
            step.reason.clone().unwrap_or_default().replace('\n', " "),
        ]);
    }
    text.push_str(&table(header, &rows));
    if bounded {
        // The run's stored counts, in the order of a step's life.
        let counts: Vec<String> = StepStatus::ALL
            .iter()
            .filter_map(|s| Some(format!("{} {s}", run.counts.get(s.as_str())?)))
            .collect();
        text.push_str(&format!(
            "... {} more steps not listed ({} in all: {}); --all lists every step, --json gives them as data\n",
            steps.len() - shown,
            steps.len(),
            counts.join(", ")
        ));
        return text;
    }
    text.push_str("graph:\n");
    text.push_str(&draw_graph(detail));
    text
}

/// Each step indented by its depth (its longest chain of dependencies), with a mark for its
/// status and, when it has any, the steps it waits for.
fn draw_graph(detail: &RunDetailView) -> String {
    let steps = &detail.steps_detail;
    let index: std::collections::HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.step_id.as_str(), i))
        .collect();
    let mut depth: Vec<Option<usize>> = vec![None; steps.len()];
    fn depth_of(
        i: usize,
        steps: &[sdlc_core::plan::view::StepView],
        index: &std::collections::HashMap<&str, usize>,
        depth: &mut Vec<Option<usize>>,
    ) -> usize {
        if let Some(d) = depth[i] {
            return d;
        }
        // Plans are acyclic (checked before a run is stored), so this ends.
        let d = steps[i]
            .depends_on
            .iter()
            .filter_map(|dep| index.get(dep.as_str()))
            .map(|&j| depth_of(j, steps, index, depth) + 1)
            .max()
            .unwrap_or(0);
        depth[i] = Some(d);
        d
    }
    let mut order: Vec<usize> = (0..steps.len()).collect();
    for i in 0..steps.len() {
        depth_of(i, steps, &index, &mut depth);
    }
    order.sort_by_key(|&i| (depth[i], i));
    let mut text = String::new();
    for i in order {
        let step = &steps[i];
        let d = depth[i].unwrap_or(0);
        let arrow = if d == 0 { "" } else { "└─ " };
        let after = match step.depends_on.len() {
            0 => String::new(),
            n if n > DEPENDENCIES_NAMED => format!(
                "  <- {} and {} more",
                step.depends_on[..DEPENDENCIES_NAMED].join(", "),
                n - DEPENDENCIES_NAMED
            ),
            _ => format!("  <- {}", step.depends_on.join(", ")),
        };
        let deep = if d > DEPTH_DRAWN {
            format!("(depth {d}) ")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "  {}{}{deep}{} {}{after}\n",
            "   ".repeat(d.min(DEPTH_DRAWN).saturating_sub(1)),
            arrow,
            mark(step.status),
            step.step_id
        ));
    }
    text
}

pub fn mark(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Succeeded => "[ok]",
        StepStatus::Failed => "[FAIL]",
        StepStatus::Skipped => "[skip]",
        StepStatus::Canceled => "[cancel]",
        StepStatus::Running => "[run]",
        StepStatus::Retrying => "[retry]",
        StepStatus::AwaitingApproval => "[approve?]",
        StepStatus::Pending | StepStatus::Queued => "[ready]",
        StepStatus::Waiting => "[wait]",
    }
}

async fn runs(
    project: &Project,
    plan: Option<String>,
    status: Option<String>,
    limit: usize,
    cursor: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let parsed_status = status
        .as_deref()
        .map(|s| s.parse::<RunStatus>().map_err(anyhow::Error::msg))
        .transpose()?;
    let before = cursor
        .as_deref()
        .map(|c| parse_run_cursor(c).map_err(anyhow::Error::msg))
        .transpose()?;
    let mut query = vec![("limit", limit.to_string())];
    query.extend(plan.clone().map(|p| ("plan", p)));
    query.extend(status.clone().map(|s| ("status", s)));
    query.extend(cursor.clone().map(|c| ("cursor", c)));
    let (listed, next): (Vec<RunSummary>, Option<String>) = project
        .backend()
        .route_read(
            async |client| {
                let page = client.list_runs(&query).await?;
                Ok((page.runs, page.next_cursor))
            },
            |db| {
                let filter = RunFilter {
                    plan: plan.clone(),
                    status: parsed_status,
                    limit: Some(limit + 1),
                    before,
                };
                let mut found = db.list_runs(&filter)?;
                let next = if found.len() > limit {
                    found.truncate(limit);
                    found.last().map(run_cursor)
                } else {
                    None
                };
                Ok((found.iter().map(RunSummary::from).collect(), next))
            },
        )
        .await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&listed)?)?;
    } else {
        let header = [
            "RUN",
            "PLAN",
            "STATUS",
            "STARTED",
            "DURATION",
            "OK/FAILED/SKIPPED/CANCELED",
        ];
        let mut rows = Vec::new();
        for run in &listed {
            rows.push([
                run.run_id.to_string(),
                run.plan_id.clone(),
                format!("{} {}%", run.status, run.progress),
                run.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                run.duration_ms.map(human_ms).unwrap_or_default(),
                format!(
                    "{}/{}/{}/{}",
                    run.succeeded, run.failed, run.skipped, run.canceled
                ),
            ]);
        }
        out!("{}", table(header, &rows))?;
    }
    if let Some(next) = next {
        eprintln!("more: --cursor {next}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn cancel(
    project: &Project,
    run: Uuid,
    grace: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let by = super::os_user();
    let grace_ms = grace.as_millis() as u64;
    let canceled: RunSummary = project
        .backend()
        .route(
            async |client| client.cancel_run(run, &by, grace_ms).await,
            |db| {
                db.cancel_run_by(run, &by, grace_ms, Utc::now())
                    .map(|(r, _)| RunSummary::from(&r))
            },
        )
        .await?;
    outln!("{}", canceled.run_id)?;
    eprintln!(
        "run {} {}: steps that had not started are canceled{}",
        canceled.run_id,
        canceled.status,
        if canceled.status.is_finished() {
            ""
        } else {
            "; running steps are stopped (SIGTERM, SIGKILL after the grace), then the run ends canceled"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// A run's event as one line a person reads.
pub fn human_event(event: &RunEvent) -> String {
    let detail = &event.detail;
    let text = |key: &str| detail.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let step = event.step_id.clone().unwrap_or_default();
    let time = event.ts.format("%H:%M:%S%.3f");
    match event.event.as_str() {
        "run_started" => format!(
            "{time} run_started   plan {} ({} steps)",
            text("plan_id").unwrap_or_default(),
            detail
                .get("steps")
                .map(|v| v.to_string())
                .unwrap_or_default()
        ),
        "step_started" => format!(
            "{time} step_started  {step} (attempt {})",
            detail
                .get("attempt")
                .map(|v| v.to_string())
                .unwrap_or_default()
        ),
        "step_succeeded" => format!(
            "{time} step_succeeded {step}{}",
            detail
                .get("duration_ms")
                .and_then(|v| v.as_i64())
                .map(|ms| format!(" in {}", human_ms(ms)))
                .unwrap_or_default()
        ),
        "run_completed" => format!(
            "{time} run_completed {} in {}: {}",
            text("status").unwrap_or_default(),
            detail
                .get("duration_ms")
                .and_then(|v| v.as_i64())
                .map(human_ms)
                .unwrap_or_default(),
            detail
                .get("counts")
                .map(|v| v.to_string())
                .unwrap_or_default()
        ),
        other => format!(
            "{time} {other} {step}{}",
            text("reason").map(|r| format!(": {r}")).unwrap_or_default()
        ),
    }
}

pub fn human_ms(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 120_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}
