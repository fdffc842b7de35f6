//! `sdlc orchestrate ui [--open]`: asks the daemon serving this database for a one-time
//! login token and prints the dashboard's address with it. The token works once, for ten
//! minutes; the browser that follows it gets a session cookie instead.

use std::process::ExitCode;

use anyhow::Context;

use super::Project;

pub async fn run(project: &Project, open: bool) -> anyhow::Result<ExitCode> {
    let Some(client) = project.daemon_client() else {
        anyhow::bail!(
            "no daemon serves {}: the dashboard is part of the daemon, start it with `sdlc orchestrate` (and --db if it is elsewhere), then run `sdlc orchestrate ui` again",
            project.db_path.display()
        );
    };
    let answer = client
        .login_token()
        .await
        .context("could not get a login token from the daemon")?;
    let path = answer
        .get("path")
        .and_then(|p| p.as_str())
        .context("the daemon's answer has no login path: is it an older version?")?;
    let server = client.base().trim_end_matches("/api/orchestrator");
    let url = format!("{server}{path}");
    outln!("{url}")?;
    eprintln!("The address logs in once, within 10 minutes; the browser then keeps a session.");
    if open {
        open_browser(&url)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn open_browser(url: &str) -> anyhow::Result<()> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
        .with_context(|| {
            format!(
                "could not start {opener} to open the dashboard: open the address above yourself"
            )
        })
}
