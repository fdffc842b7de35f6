//! `sdlc orchestrate webhook add|list|rm`: manage webhook routes, through the daemon when
//! one runs, on the file otherwise.

use std::process::ExitCode;

use chrono::Utc;
use sdlc_core::service::prepare_route;
use sdlc_core::webhook::{NewRoute, RouteView};

use super::Project;
use crate::cli::WebhookCommand;

pub async fn run(project: &Project, command: WebhookCommand) -> anyhow::Result<ExitCode> {
    match command {
        WebhookCommand::Add {
            path,
            tool,
            plan,
            template,
            secret,
            secret_file,
        } => {
            let secret = match secret_file {
                Some(path) => Some(crate::secret_file::first_line(&path, "--secret-file")?),
                None => secret,
            };
            add(
                project,
                NewRoute {
                    path,
                    tool_name: tool.unwrap_or_default(),
                    plan,
                    input_template: template,
                    secret,
                },
            )
            .await
        }
        WebhookCommand::List { json } => list(project, json).await,
        WebhookCommand::Rm { route } => rm(project, &route).await,
    }
}

async fn add(project: &Project, request: NewRoute) -> anyhow::Result<ExitCode> {
    project.local_only("webhook add")?;
    // Checked here first so bad input fails the same way with or without a daemon.
    let route =
        prepare_route(&project.root, request.clone(), Utc::now()).map_err(anyhow::Error::msg)?;
    let added: RouteView = project
        .backend()
        .route(
            async |client| client.add_route(&request).await,
            |db| db.insert_route(&route).map(|()| RouteView::from(&route)),
        )
        .await?;
    outln!("{}", added.id)?;
    match sdlc_core::model::plan_of_target(&added.tool_name) {
        Some(plan) => eprintln!("POST {} now starts a run of plan '{plan}'", added.url_path),
        None => eprintln!(
            "POST {} now runs tool '{}'",
            added.url_path, added.tool_name
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(project: &Project, json: bool) -> anyhow::Result<ExitCode> {
    let routes: Vec<RouteView> = project
        .backend()
        .route_read(
            async |client| client.list_routes().await,
            |db| {
                db.routes()
                    .map(|routes| routes.iter().map(RouteView::from).collect())
            },
        )
        .await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&routes)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 5]> = routes
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                r.url_path.clone(),
                r.tool_name.clone(),
                if r.signed { "yes" } else { "no" }.to_string(),
                r.input_template.clone(),
            ]
        })
        .collect();
    out!(
        "{}",
        crate::output::table(["ID", "PATH", "TOOL", "SIGNED", "TEMPLATE"], &rows)
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn rm(project: &Project, key: &str) -> anyhow::Result<ExitCode> {
    let removed: RouteView = project
        .backend()
        .route(
            async |client| client.delete_route(key).await,
            |db| db.delete_route(key).map(|r| RouteView::from(&r)),
        )
        .await?;
    outln!("{}", removed.id)?;
    eprintln!("removed {}", removed.url_path);
    Ok(ExitCode::SUCCESS)
}
