//! `sdlc orchestrate edit <id>`: change a pending or paused action's label, input or schedule,
//! with the checks of `add` (the daemon checks again when it is the one that stores it).

use std::process::ExitCode;

use chrono::Utc;
use sdlc_core::service::{ActionEdit, DurationSpec, prepare_edit};
use sdlc_core::view::ActionView;
use sdlc_core::{Action, StoreError};

use super::{Project, parse_input};
use crate::cli::EditArgs;

/// What the first trip found: the daemon already stored the edit, or (no daemon) the action
/// as it is, to check the edit against here.
enum Found {
    Edited(Box<ActionView>),
    Current(Box<Action>),
}

pub async fn run(project: &Project, args: EditArgs) -> anyhow::Result<ExitCode> {
    let id = super::action_id(project, &args.id).await?;
    let edit = ActionEdit {
        label: args.label,
        tool_input: args.input.as_deref().map(parse_input).transpose()?,
        at: args.at,
        every: args.every.map(DurationSpec::Text),
        cron: args.cron,
        tz: args.tz,
        timeout: args.timeout.map(DurationSpec::Text),
    };
    if edit.is_empty() {
        anyhow::bail!(
            "nothing to change: give --label, --input, --at, --every, --cron (with --tz) or --timeout"
        );
    }
    let found = project
        .backend()
        .route(
            async |client| {
                client
                    .edit(id, &edit)
                    .await
                    .map(|v| Found::Edited(Box::new(v)))
            },
            |db| {
                db.get(id)?
                    .map(|a| Found::Current(Box::new(a)))
                    .ok_or(StoreError::NotFound(id))
            },
        )
        .await?;
    let edited = match found {
        Found::Edited(view) => *view,
        Found::Current(old) => {
            let now = Utc::now();
            let prepared = prepare_edit(&project.root, &old, edit.clone(), now)
                .await
                .map_err(anyhow::Error::msg)?;
            for warning in &prepared.warnings {
                eprintln!("warning: {warning}");
            }
            let new = prepared.action;
            project
                .backend()
                .route(
                    async |client| client.edit(id, &edit).await,
                    |db| {
                        db.replace_edited(&old, &new, now)
                            .map(|a| ActionView::from(&a))
                    },
                )
                .await?
        }
    };
    outln!("{}", edited.id)?;
    eprintln!(
        "edited {} ({}), due {}",
        edited.id,
        edited.label,
        edited
            .due_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    Ok(ExitCode::SUCCESS)
}
