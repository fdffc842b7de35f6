//! `sdlc orchestrate cancel <id>`: cancel a pending action (or a recurring action's next
//! occurrence, which ends the series).

use std::process::ExitCode;

use chrono::Utc;
use sdlc_core::view::ActionView;

use super::{Project, parse_id};

pub async fn run(project: &Project, id: &str) -> anyhow::Result<ExitCode> {
    let id = parse_id(id)?;
    let cancelled: ActionView = project
        .backend()
        .route(
            async |client| client.cancel(id).await,
            |db| db.cancel(id, Utc::now()).map(|a| ActionView::from(&a)),
        )
        .await?;
    outln!("{}", cancelled.id)?;
    eprintln!("cancelled {} ({})", cancelled.id, cancelled.label);
    Ok(ExitCode::SUCCESS)
}
