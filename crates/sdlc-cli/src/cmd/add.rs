//! `sdlc orchestrate add`: check a new action and store it; print its id alone on stdout.

use std::process::ExitCode;

use chrono::Utc;
use sdlc_core::service::{DurationSpec, NewAction, prepare_action};

use super::{Project, parse_input};
use crate::cli::AddArgs;

/// The tool's `--input`, or for `--plan` the run's variables (`--var`) as an object.
fn input_of(args: &AddArgs) -> anyhow::Result<serde_json::Value> {
    match (&args.tool, &args.plan) {
        (None, None) => {
            anyhow::bail!("give --tool NAME (a tool to run) or --plan ID (a plan to start)")
        }
        (Some(_), None) if !args.vars.is_empty() => {
            anyhow::bail!("--var goes with --plan: a tool gets its input with --input")
        }
        (_, Some(_)) if args.input != "{}" => {
            anyhow::bail!(
                "--input goes with --tool: a plan gets its variables with --var KEY=VALUE"
            )
        }
        (_, Some(_)) => Ok(serde_json::Value::Object(
            args.vars
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )),
        (Some(_), None) => parse_input(&args.input),
    }
}

pub async fn run(project: &Project, args: AddArgs) -> anyhow::Result<ExitCode> {
    let tool_input = input_of(&args)?;
    let request = NewAction {
        // Chosen here, so that a retry after a broken connection finds the stored action.
        id: Some(uuid::Uuid::now_v7()),
        label: args.label,
        tool_name: args.tool.clone().unwrap_or_default(),
        plan: args.plan.clone(),
        tool_input,
        at: args.at,
        every: args.every.map(DurationSpec::Text),
        timeout: args.timeout.map(DurationSpec::Text),
        cron: args.cron,
        tz: args.tz,
        retries: args.retries,
        backoff: args.backoff.map(DurationSpec::Text),
        overlap: args.overlap,
        catch_up: args.catch_up,
        requires_approval: args.requires_approval,
        approval_timeout: args.approval_timeout.map(DurationSpec::Text),
        run_id: args.run_id,
        notify_on: (!args.notify_on.is_empty()).then_some(args.notify_on),
        no_notify: args.no_notify,
    };
    if let Some(remote) = &project.remote {
        // The daemon there has the tools and plans, and checks the request against them.
        let added = remote.client().add(&request).await.map_err(|err| {
            anyhow::Error::from(err).context(format!("--server {} (SDLC_SERVER)", remote.url))
        })?;
        for warning in added.warnings {
            eprintln!("warning: {warning}");
        }
        outln!("{}", added.id)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Checked here first so a bad request fails the same way with or without a daemon; the
    // daemon checks again when it is the one that stores the action.
    let prepared = prepare_action(&project.root, request.clone(), Utc::now())
        .await
        .map_err(anyhow::Error::msg)?;
    let action = prepared.action;
    let (id, warnings) = project
        .backend()
        .route_retrying(
            async |client| client.add(&request).await.map(|r| (r.id, r.warnings)),
            |db| match db.insert(&action) {
                // A retry of an add the daemon stored before it went away.
                Ok(()) | Err(sdlc_core::StoreError::Duplicate(_)) => {
                    Ok((action.id, prepared.warnings.clone()))
                }
                Err(err) => Err(err),
            },
        )
        .await?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    outln!("{id}")?;
    Ok(ExitCode::SUCCESS)
}
