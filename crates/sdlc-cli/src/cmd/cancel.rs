//! `sdlc orchestrate cancel <id>`: stop a running action (SIGTERM to its process group,
//! SIGKILL after `--grace`; it ends canceled), or cancel a pending one (for a recurring
//! action, its next occurrence, which ends the series).

use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use sdlc_core::StatusKind;
use sdlc_core::view::ActionView;

use super::Project;

pub async fn run(project: &Project, id: &str, grace: Duration) -> anyhow::Result<ExitCode> {
    let id = super::action_id(project, id).await?;
    let by = super::os_user();
    let grace_ms = grace.as_millis() as u64;
    let canceled: ActionView = project
        .backend()
        .route(
            async |client| client.cancel(id, &by, grace_ms).await,
            |db| {
                db.cancel_by(id, &by, grace_ms, Utc::now())
                    .map(|a| ActionView::from(&a))
            },
        )
        .await?;
    outln!("{}", canceled.id)?;
    if canceled.status == StatusKind::Running {
        eprintln!(
            "stopping {} ({}): SIGTERM sent to its process group, SIGKILL in {}s if it is still running; it ends canceled",
            canceled.id,
            canceled.label,
            grace.as_secs_f64()
        );
    } else {
        eprintln!("canceled {} ({})", canceled.id, canceled.label);
    }
    Ok(ExitCode::SUCCESS)
}
