//! `sdlc orchestrate check`: verify every page of the database file against its checksums,
//! through the daemon while one holds the file. Exit 0 when it is sound, 1 (with what to do)
//! when it is damaged.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::json;

use super::Project;

pub async fn run(project: &Project) -> anyhow::Result<ExitCode> {
    let path = &project.db_path;
    let on_postgres = project.pg_url.is_some();
    let elsewhere = on_postgres || project.remote.is_some();
    if !elsewhere && sdlc_core::daemon_file::find_live(path).is_none() && !path.exists() {
        bail!("no database at {}: nothing to check", path.display());
    }
    let started = std::time::Instant::now();
    let answer = project
        .backend()
        .route_read(
            async |client| client.check().await,
            // Opening the file itself walks and verifies it when it cannot be trusted; an
            // explicit check verifies it either way.
            |db| Ok(json!({ "ok": true, "repaired": db.verify()? })),
        )
        .await?;
    let repaired = answer["repaired"] == true;
    outln!(
        "database {}: ok, every {} verified in {} ms{}",
        project.db_shown(),
        if on_postgres { "record" } else { "page" },
        started.elapsed().as_millis(),
        if repaired {
            " (redb rebuilt its allocator state; no data was touched)"
        } else {
            ""
        }
    )?;
    Ok(ExitCode::SUCCESS)
}
