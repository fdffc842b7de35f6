//! `sdlc orchestrate approve|reject <id> [--by NAME] [--note TEXT]`: a person's decision on an
//! action awaiting approval, through the daemon when one runs, on the file otherwise.

use std::process::ExitCode;

use chrono::Utc;
use sdlc_core::model::Decider;
use sdlc_core::view::ActionView;
use sdlc_server::Verdict;

use super::{Project, parse_id};
use crate::cli::DecisionArgs;

pub async fn run(
    project: &Project,
    args: DecisionArgs,
    verdict: Verdict,
) -> anyhow::Result<ExitCode> {
    let id = parse_id(&args.id)?;
    let by = match args.by.filter(|by| !by.trim().is_empty()) {
        Some(by) => by,
        None => os_user(),
    };
    sdlc_core::service::check_text("--by", &by).map_err(anyhow::Error::msg)?;
    if let Some(note) = &args.note {
        sdlc_core::service::check_text("--note", note).map_err(anyhow::Error::msg)?;
    }
    let note = args.note.clone();
    let decided: ActionView = project
        .backend()
        .route(
            async |client| client.decide(id, verdict, &by, note.as_deref()).await,
            |db| {
                let now = Utc::now();
                let action = match verdict {
                    Verdict::Approve => db.approve(id, &Decider::named(&by), note.clone(), now)?,
                    Verdict::Reject => db.reject(id, &Decider::named(&by), note.clone(), now)?,
                };
                Ok(ActionView::from(&action))
            },
        )
        .await?;
    outln!("{}", decided.id)?;
    match verdict {
        Verdict::Approve => eprintln!(
            "approved {} ({}) by {by}: completed",
            decided.id, decided.label
        ),
        Verdict::Reject => eprintln!(
            "rejected {} ({}) by {by}: {}",
            decided.id,
            decided.label,
            decided.reason.as_deref().unwrap_or("failed")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The name of the user running the command: `$USER`, else `$LOGNAME`, else the uid's name.
pub(crate) fn os_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|user| user.name)
        })
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}
