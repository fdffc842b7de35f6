//! `sdlc orchestrate session list|rm`: the dashboard's live sessions, through the daemon when
//! one runs, on the database otherwise. A session also ends by itself when the token that
//! opened it stops opening the API (removed, or replaced by one of the same name).

use std::process::ExitCode;

use anyhow::bail;
use chrono::Utc;
use sdlc_core::store::SessionListing;

use super::Project;
use crate::cli::SessionCommand;

pub async fn run(project: &Project, command: SessionCommand) -> anyhow::Result<ExitCode> {
    match command {
        SessionCommand::List { json } => list(project, json).await,
        SessionCommand::Rm { id } => rm(project, &id).await,
    }
}

async fn live(project: &Project) -> anyhow::Result<Vec<SessionListing>> {
    project
        .backend()
        .route_read(
            async |client| client.list_sessions().await,
            |db| {
                let sessions = db.ui_sessions(Utc::now())?;
                Ok(sessions
                    .iter()
                    .map(|(key, session)| SessionListing::new(key, session))
                    .collect())
            },
        )
        .await
}

async fn list(project: &Project, json: bool) -> anyhow::Result<ExitCode> {
    let sessions = live(project).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&sessions)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let when = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let rows: Vec<[String; 5]> = sessions
        .iter()
        .map(|s| {
            [
                s.id[..16].to_string(),
                s.token
                    .clone()
                    .unwrap_or_else(|| "(daemon's token)".to_string()),
                s.role.to_string(),
                when(s.created_at),
                when(s.expires_at),
            ]
        })
        .collect();
    out!(
        "{}",
        crate::output::table(["ID", "TOKEN", "ROLE", "CREATED", "EXPIRES"], &rows)
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn rm(project: &Project, prefix: &str) -> anyhow::Result<ExitCode> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() {
        bail!("no session id given: `sdlc orchestrate session list` shows them");
    }
    let matching: Vec<String> = live(project)
        .await?
        .into_iter()
        .filter(|s| s.id.starts_with(&prefix))
        .map(|s| s.id)
        .collect();
    let id = match matching.as_slice() {
        [one] => one.clone(),
        [] => {
            bail!("no live session '{prefix}': `sdlc orchestrate session list` shows the live ones")
        }
        _ => bail!(
            "'{prefix}' names {} sessions: give more of the id",
            matching.len()
        ),
    };
    let key = SessionListing::parse_id(&id).expect("listed ids are 64 hex digits");
    let ended: SessionListing = project
        .backend()
        .route(
            async |client| client.end_session(&id).await,
            |db| match db.end_ui_session(key)? {
                Some(session) => Ok(SessionListing::new(&key, &session)),
                None => Err(sdlc_core::StoreError::SessionNotFound(id.clone())),
            },
        )
        .await?;
    eprintln!(
        "ended session {} (opened by {})",
        &ended.id[..16],
        ended.token.as_deref().unwrap_or("the daemon's token")
    );
    Ok(ExitCode::SUCCESS)
}
