//! `sdlc orchestrate show <id>`: one action in full (or as JSON).

use std::process::ExitCode;

use anyhow::anyhow;
use sdlc_core::view::ActionView;

use super::Project;
use crate::output::action_record;

pub async fn run(project: &Project, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let id = super::action_id(project, id).await?;
    let found: Option<ActionView> = project
        .backend()
        .route_read(
            async |client| match client.get(id).await {
                Ok(view) => Ok(Some(view)),
                Err(sdlc_server::ClientError::Api { status: 404, .. }) => Ok(None),
                Err(err) => Err(err),
            },
            |db| db.get(id).map(|found| found.as_ref().map(ActionView::from)),
        )
        .await?;
    let action =
        found.ok_or_else(|| anyhow!("no action with id {id}: see sdlc orchestrate list"))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&action)?)?;
    } else {
        out!("{}", action_record(&action))?;
    }
    Ok(ExitCode::SUCCESS)
}
