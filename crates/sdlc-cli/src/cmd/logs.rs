//! `sdlc orchestrate logs <id>`: a run's whole log, from the daemon (which can follow a run
//! as it prints) or from the database (a finished run's stored log; on PostgreSQL a running
//! one is followed by looking again until it ends).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use sdlc_core::StatusKind;
use sdlc_core::logs::{LogFilter, Stream, to_text};
use sdlc_core::model::Action;
use sdlc_core::store::stored_lines;

use super::Project;
use crate::cli::LogsArgs;

/// How often a follower reading the database looks again.
const POLL: Duration = Duration::from_millis(250);

pub async fn run(project: &Project, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let id = super::action_id(project, &args.id).await?;
    let filter = LogFilter {
        stream: if args.stdout {
            Some(Stream::Stdout)
        } else if args.stderr {
            Some(Stream::Stderr)
        } else {
            None
        },
        tail: args.tail,
    };
    let mut query = vec![("follow", if args.follow { "1" } else { "0" }.to_string())];
    if let Some(stream) = filter.stream {
        query.push((
            "stream",
            if stream == Stream::Stdout {
                "stdout"
            } else {
                "stderr"
            }
            .to_string(),
        ));
    }
    if let Some(tail) = args.tail {
        query.push(("tail", tail.to_string()));
    }
    if let Some(attempt) = args.attempt {
        query.push(("attempt", attempt.to_string()));
    }
    let attempt = args.attempt;
    let printer = std::sync::Mutex::new(LinePrinter::default());
    // Through the daemon the answer is printed as it comes; from the database, the action
    // and its stored lines come back to be printed here.
    let from_file = project
        .backend()
        .route_read(
            async |client| {
                client
                    .action_log(id, &query, |chunk| {
                        printer
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .take(chunk)
                    })
                    .await
                    .map(|()| None)
            },
            |db| {
                let Some(action) = db.get(id)? else {
                    return Ok(Some(None));
                };
                let lines = stored_lines(db, id, attempt)?.map(|(_, lines)| lines);
                Ok(Some(Some((action, lines.unwrap_or_default()))))
            },
        )
        .await
        .map_err(|err| match err.downcast_ref::<sdlc_server::ClientError>() {
            Some(sdlc_server::ClientError::Api {
                status: 404,
                message,
            }) if message.starts_with("no action with id") => {
                anyhow!("no action with id {id}: see sdlc orchestrate list")
            }
            _ => err,
        })?;
    printer
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .finish()?;
    let Some(found) = from_file else {
        return Ok(ExitCode::SUCCESS);
    };
    let (action, lines) =
        found.ok_or_else(|| anyhow!("no action with id {id}: see sdlc orchestrate list"))?;
    if let Some(asked) = args.attempt
        && asked > action.attempt.max(1)
    {
        anyhow::bail!(
            "action {id} has no attempt {asked}: it has run {} time(s)",
            action.attempt
        );
    }
    let printed = lines.len();
    out!(
        "{}",
        String::from_utf8_lossy(&to_text(&filter.apply(lines)))
    )?;
    if !args.follow || args.attempt.is_some() || !is_unfinished(&action) {
        return Ok(ExitCode::SUCCESS);
    }
    if project.backend().pg_url.is_none() {
        eprintln!(
            "{id} is {} and no daemon serves this database: start one (sdlc orchestrate) for it to run",
            action.status.kind().as_str()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // On PostgreSQL a node runs it, writing what it printed every second while it runs.
    let follow_filter = LogFilter {
        tail: None,
        ..filter
    };
    let mut printed = printed;
    let mut attempt = action.attempt;
    loop {
        tokio::time::sleep(POLL).await;
        let found = project
            .backend()
            .route_read(
                async |_| Ok(None),
                |db| {
                    let Some(action) = db.get(id)? else {
                        return Ok(None);
                    };
                    let lines = stored_lines(db, id, Some(action.attempt))?;
                    Ok(Some((
                        action,
                        lines.map(|(_, lines)| lines).unwrap_or_default(),
                    )))
                },
            )
            .await?;
        let Some((action, lines)) = found else {
            return Ok(ExitCode::SUCCESS);
        };
        if action.attempt != attempt {
            // A retry (or its first run) started: its log begins anew.
            attempt = action.attempt;
            printed = 0;
        }
        let rest: Vec<_> = lines.into_iter().skip(printed).collect();
        printed += rest.len();
        out!(
            "{}",
            String::from_utf8_lossy(&to_text(&follow_filter.apply(rest)))
        )?;
        if !is_unfinished(&action) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn is_unfinished(action: &Action) -> bool {
    matches!(
        action.status.kind(),
        StatusKind::Pending | StatusKind::Running
    )
}

/// Prints text as it streams in, whole lines at a time (a chunk may end inside a character).
#[derive(Default)]
struct LinePrinter {
    pending: Vec<u8>,
    closed: bool,
}

impl LinePrinter {
    fn take(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.pending.extend_from_slice(chunk);
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let lines: Vec<u8> = self.pending.drain(..=end).collect();
        self.print(&lines)
    }

    fn print(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if crate::output::emit(&String::from_utf8_lossy(bytes)).is_err() {
            self.closed = true;
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if self.closed {
            return Err(crate::output::OutputClosed.into());
        }
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            let _ = self.print(&rest);
        }
        Ok(())
    }
}
