//! `sdlc orchestrate token add|list|rm`: named API tokens with a role, through the daemon
//! when one runs, on the database otherwise. A new token's secret is printed once, alone on
//! stdout (so `TOKEN=$(sdlc orchestrate token add ci --role operator)` works).

use std::process::ExitCode;

use chrono::Utc;
use sdlc_core::access::{self, ApiToken, MintedToken, Role};

use super::Project;
use crate::cli::TokenCommand;

pub async fn run(project: &Project, command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Add { name, role } => add(project, &name, role).await,
        TokenCommand::List { json } => list(project, json).await,
        TokenCommand::Rm { name } => rm(project, &name).await,
    }
}

async fn add(project: &Project, name: &str, role: Role) -> anyhow::Result<ExitCode> {
    // Checked here first so a bad name fails the same way with or without a daemon.
    let checked = access::TokenName::parse(name).map_err(anyhow::Error::msg)?;
    let minted: MintedToken = project
        .backend()
        .route(
            async |client| client.add_token(name, role).await,
            |db| {
                let (secret, digest, token) = access::mint(&checked, role, Utc::now());
                db.add_api_token(digest, &token)?;
                Ok(MintedToken { token, secret })
            },
        )
        .await?;
    outln!("{}", minted.secret)?;
    eprintln!(
        "token '{}' ({}) made: this is the only time its secret is shown; send it as Authorization: Bearer <token>",
        minted.token.name, minted.token.role
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(project: &Project, json: bool) -> anyhow::Result<ExitCode> {
    let tokens: Vec<ApiToken> = project
        .backend()
        .route_read(
            async |client| client.list_tokens().await,
            |db| db.api_tokens(),
        )
        .await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&tokens)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let when = |t: Option<chrono::DateTime<Utc>>| {
        t.map_or("never".to_string(), |t| {
            t.format("%Y-%m-%d %H:%M:%SZ").to_string()
        })
    };
    let rows: Vec<[String; 4]> = tokens
        .iter()
        .map(|t| {
            [
                t.name.clone(),
                t.role.to_string(),
                when(Some(t.created_at)),
                when(t.last_used_at),
            ]
        })
        .collect();
    out!(
        "{}",
        crate::output::table(["NAME", "ROLE", "CREATED", "LAST USED"], &rows)
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn rm(project: &Project, name: &str) -> anyhow::Result<ExitCode> {
    let removed: ApiToken = project
        .backend()
        .route(
            async |client| client.remove_token(name).await,
            |db| db.remove_api_token(name),
        )
        .await?;
    eprintln!("removed token '{}' ({})", removed.name, removed.role);
    Ok(ExitCode::SUCCESS)
}
