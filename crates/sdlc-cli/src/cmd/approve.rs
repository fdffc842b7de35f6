//! `sdlc orchestrate approve|reject <id> [--by NAME] [--note TEXT]`: a person's decision on an
//! action awaiting approval, through the daemon when one runs, on the file otherwise.

use std::process::ExitCode;

use chrono::Utc;
use sdlc_core::model::Decider;
use sdlc_core::view::ActionView;
use sdlc_server::Verdict;

use super::{Project, os_user};
use crate::cli::DecisionArgs;

pub async fn run(
    project: &Project,
    args: DecisionArgs,
    verdict: Verdict,
) -> anyhow::Result<ExitCode> {
    let id = match &args.step {
        None => super::action_id(project, &args.id).await?,
        Some(step) => step_action(project, &args.id, step).await?,
    };
    let by = match args.by.filter(|by| !by.trim().is_empty()) {
        Some(by) => by,
        None => os_user(),
    };
    sdlc_core::service::check_text("--by", &by).map_err(anyhow::Error::msg)?;
    if let Some(note) = &args.note {
        sdlc_core::service::check_text("--note", note).map_err(anyhow::Error::msg)?;
    }
    let note = args.note.clone();
    let decided: ActionView = project
        .backend()
        .route(
            async |client| client.decide(id, verdict, &by, note.as_deref()).await,
            |db| {
                let now = Utc::now();
                let action = match verdict {
                    Verdict::Approve => db.approve(id, &Decider::named(&by), note.clone(), now)?,
                    Verdict::Reject => db.reject(id, &Decider::named(&by), note.clone(), now)?,
                };
                Ok(ActionView::from(&action))
            },
        )
        .await?;
    outln!("{}", decided.id)?;
    match verdict {
        Verdict::Approve => eprintln!(
            "approved {} ({}) by {by}: completed",
            decided.id, decided.label
        ),
        Verdict::Reject => eprintln!(
            "rejected {} ({}) by {by}: {}",
            decided.id,
            decided.label,
            decided.reason.as_deref().unwrap_or("failed")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The action of step `step` of plan run `run`, the one a decision about the step is about.
async fn step_action(project: &Project, run: &str, step: &str) -> anyhow::Result<uuid::Uuid> {
    let run_id = super::plan::parse_run_id(run)?;
    let steps: Vec<(String, Option<uuid::Uuid>)> = project
        .backend()
        .route_read(
            async |client| {
                let detail = client.get_run(run_id).await?;
                Ok(detail
                    .steps_detail
                    .into_iter()
                    .map(|s| (s.step_id, s.action_id))
                    .collect())
            },
            |db| {
                let detail = db
                    .get_run(run_id)?
                    .ok_or(sdlc_core::StoreError::RunNotFound(run_id))?;
                Ok(detail
                    .steps
                    .into_iter()
                    .map(|s| (s.step_id, s.action))
                    .collect())
            },
        )
        .await?;
    let names: Vec<&str> = steps.iter().map(|(name, _)| name.as_str()).collect();
    match steps.iter().find(|(name, _)| name == step) {
        Some((_, Some(action))) => Ok(*action),
        Some((_, None)) => anyhow::bail!(
            "step {step} of run {run_id} has not started: nothing awaits a decision yet"
        ),
        None => anyhow::bail!(
            "run {run_id} has no step {step}: its steps are {}",
            names.join(", ")
        ),
    }
}
