//! `sdlc orchestrate list`: actions newest first, as a table or a JSON array.

use std::process::ExitCode;

use sdlc_core::view::ActionView;
use sdlc_core::{ListFilter, StatusKind};

use super::Project;
use crate::cli::ListArgs;
use crate::output::action_table;

pub async fn run(project: &Project, args: ListArgs) -> anyhow::Result<ExitCode> {
    let status = match args.status.as_deref() {
        Some(text) => Some(text.parse::<StatusKind>().map_err(anyhow::Error::msg)?),
        None => None,
    };
    if let Some(tool) = &args.tool {
        sdlc_core::tool::validate_name(tool)?;
    }
    // One more than asked, to tell the user when the list was cut.
    let filter = ListFilter {
        status,
        tool: args.tool,
        limit: Some(args.limit.saturating_add(1)),
    };
    let mut actions: Vec<ActionView> = project
        .backend()
        .route_read(
            async |client| client.list(&filter).await,
            |db| {
                db.list(&filter)
                    .map(|actions| actions.iter().map(ActionView::from).collect())
            },
        )
        .await?;
    let cut = actions.len() > args.limit;
    actions.truncate(args.limit);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&actions)?)?;
    } else {
        out!("{}", action_table(&actions))?;
    }
    if cut {
        eprintln!(
            "note: showing the newest {}; pass --limit N to see more",
            args.limit
        );
    }
    Ok(ExitCode::SUCCESS)
}
