//! `sdlc orchestrate pause|resume|run|next`: steering an action's schedule. Each takes any
//! id of a recurring action's series (such as the one `add` printed) and acts on its
//! pending occurrence.

use std::process::ExitCode;

use chrono::Utc;
use sdlc_core::view::ActionView;

use super::Project;

pub async fn pause(
    project: &Project,
    id: &str,
    reason: Option<String>,
) -> anyhow::Result<ExitCode> {
    let id = super::action_id(project, id).await?;
    if let Some(reason) = &reason {
        sdlc_core::service::check_text("--reason", reason).map_err(anyhow::Error::msg)?;
    }
    let paused: ActionView = project
        .backend()
        .route(
            async |client| client.pause(id, reason.clone()).await,
            |db| {
                db.pause(id, reason.clone(), Utc::now())
                    .map(|a| ActionView::from(&a))
            },
        )
        .await?;
    outln!("{}", paused.id)?;
    eprintln!(
        "paused {} ({}): it will not fire until resumed",
        paused.id, paused.label
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn resume(project: &Project, id: &str) -> anyhow::Result<ExitCode> {
    let id = super::action_id(project, id).await?;
    let resumed: ActionView = project
        .backend()
        .route(
            async |client| client.resume(id).await,
            |db| db.resume(id, Utc::now()).map(|a| ActionView::from(&a)),
        )
        .await?;
    outln!("{}", resumed.id)?;
    eprintln!(
        "resumed {} ({}), due {}",
        resumed.id,
        resumed.label,
        resumed.due_at.to_rfc3339()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn run_now(project: &Project, id: &str) -> anyhow::Result<ExitCode> {
    let id = super::action_id(project, id).await?;
    let manual: ActionView = project
        .backend()
        .route(
            async |client| client.run_now(id).await,
            |db| db.run_now(id, Utc::now()).map(|a| ActionView::from(&a)),
        )
        .await?;
    outln!("{}", manual.id)?;
    eprintln!(
        "queued a manual run of {} ({}); the schedule is unchanged",
        manual.series, manual.label
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn next(project: &Project, id: &str, count: usize) -> anyhow::Result<ExitCode> {
    let id = super::action_id(project, id).await?;
    let (head, runs) = project
        .backend()
        .route_read(
            async |client| {
                let head = client.get(id).await?;
                let runs = client.next_runs(id, count).await?;
                Ok((head, runs))
            },
            |db| {
                let head = db
                    .series_head(id)?
                    .ok_or(sdlc_core::StoreError::NotFound(id))?;
                let runs = sdlc_core::policy::coming_runs(&head, count);
                Ok((ActionView::from(&head), runs))
            },
        )
        .await?;
    if runs.is_empty() {
        eprintln!(
            "{} ({}) has no coming runs: it is {}",
            head.id, head.label, head.status
        );
        return Ok(ExitCode::SUCCESS);
    }
    let zone = head
        .tz
        .as_deref()
        .and_then(|tz| sdlc_core::schedule::parse_tz(tz).ok());
    for run in runs {
        match zone {
            Some(zone) => outln!(
                "{}  ({})",
                run.to_rfc3339(),
                run.with_timezone(&zone).to_rfc3339()
            )?,
            None => outln!("{}", run.to_rfc3339())?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
