//! `sdlc orchestrate notifications` (the outbox, newest first, receivers masked) and
//! `notify test` (a test message to every receiver the daemon was started with).

use std::process::ExitCode;

use sdlc_server::notify_api::{NotificationView, check_query};
use sdlc_server::notify_sender::{TestAnswer, send_tests};

use super::Project;
use crate::output::table;

pub async fn list(
    project: &Project,
    status: Option<String>,
    limit: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let limit_text = limit.to_string();
    let (state, limit) = check_query(status.as_deref(), Some(&limit_text))
        .map_err(|e| anyhow::anyhow!("{}", e.replace("limit '", "--limit '")))?;
    let notes: Vec<NotificationView> = project
        .backend()
        .route_read(
            async |client| client.notifications(status.clone(), Some(limit)).await,
            |db| {
                db.list_notifications(state, limit)
                    .map(|notes| notes.iter().map(NotificationView::from).collect())
            },
        )
        .await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&notes)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 7]> = notes
        .iter()
        .map(|n| {
            [
                n.id.to_string(),
                n.event.to_string(),
                n.task.clone(),
                n.receiver.clone(),
                n.status.as_str().to_string(),
                n.attempts.to_string(),
                n.last_answer.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            [
                "ID",
                "EVENT",
                "TASK",
                "RECEIVER",
                "STATUS",
                "TRIES",
                "LAST_ANSWER"
            ],
            &rows
        )
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Where a test goes: through the daemon, or (none running) straight to the receivers the
/// last daemon stored.
enum TestRoute {
    Answered(Vec<TestAnswer>),
    Send(Vec<sdlc_core::notify::Receiver>),
}

pub async fn test(project: &Project, json: bool) -> anyhow::Result<ExitCode> {
    let route = project
        .backend()
        .route_read(
            async |client| client.notify_test().await.map(TestRoute::Answered),
            |db| db.notify_config().map(|c| TestRoute::Send(c.receivers)),
        )
        .await?;
    let answers = match route {
        TestRoute::Answered(answers) => answers,
        TestRoute::Send(receivers) if receivers.is_empty() => anyhow::bail!(
            "no receivers are configured: start the daemon with --notify-slack URL or --notify-webhook URL"
        ),
        TestRoute::Send(receivers) => {
            send_tests(&receivers, std::time::Duration::from_secs(10)).await
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&answers)?)?;
    } else {
        for a in &answers {
            let verdict = if a.ok { "ok" } else { "FAILED" };
            outln!(
                "{verdict}  {} {}: {}",
                a.kind.as_str(),
                a.receiver,
                a.answer
            )?;
        }
    }
    Ok(if answers.iter().all(|a| a.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
