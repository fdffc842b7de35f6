//! `sdlc orchestrate report start|finish|run`: runs reported from outside
//! (`sdlc_core::external`), through the daemon when one serves the database, else on it
//! directly. `run` wraps a command: it records the start, passes the command's output
//! through while keeping it as the run's log, and reports the outcome, the duration and the
//! link the output names; it exits with the command's status.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use sdlc_core::external::{self, ExternalReport, ExternalStart};
use sdlc_core::logs::{LogCapture, Stream};
use sdlc_core::view::ActionView;
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use super::Project;
use crate::cli::{ReportCommand, ReportStartArgs};

pub async fn run(project: &Project, command: ReportCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReportCommand::Start {
            task,
            start,
            queued,
        } => {
            let mut request = start_request(task, &start)?;
            if queued {
                request.status = Some("queued".into());
            }
            let id = record_start(project, request).await?;
            outln!("{id}")?;
            Ok(ExitCode::SUCCESS)
        }
        ReportCommand::Finish {
            id,
            status,
            outputs_uri,
            reason,
            log,
            duration,
        } => {
            let id = super::action_id(project, &id).await?;
            let log = match log {
                None => None,
                Some(path) => Some(read_log(&path)?),
            };
            let report = ExternalReport {
                status,
                outputs_uri,
                reason,
                duration_ms: duration.map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64),
                log,
                data: None,
            };
            let view = record_report(project, id, report).await?;
            outln!("{}", view.id)?;
            eprintln!("{} ({}) is {}", view.id, view.label, view.status);
            Ok(ExitCode::SUCCESS)
        }
        ReportCommand::Run {
            task,
            start,
            command,
        } => wrap(project, start_request(task, &start)?, &command).await,
    }
}

fn start_request(task: String, args: &ReportStartArgs) -> anyhow::Result<ExternalStart> {
    let input = args.input.as_deref().map(super::parse_input).transpose()?;
    Ok(ExternalStart {
        task,
        tool: args.tool.clone(),
        run_id: args.run_id.clone(),
        input,
        status: None,
        // Chosen here, so a start sent again after a broken connection is stored once.
        id: Some(Uuid::now_v7()),
    })
}

/// `--log FILE|-`: the whole text, as UTF-8 (bad bytes replaced).
fn read_log(path: &std::path::Path) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the log from standard input")?;
    } else {
        bytes = std::fs::read(path)
            .with_context(|| format!("--log {}: cannot read it", path.display()))?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

async fn record_start(project: &Project, request: ExternalStart) -> anyhow::Result<Uuid> {
    let action = external::start_action(&request, None, Utc::now()).map_err(anyhow::Error::msg)?;
    project
        .backend()
        .route_retrying(
            async |client| client.external_start(&request).await.map(|s| s.id),
            |db| match db.insert(&action) {
                // A start the daemon stored before it went away.
                Ok(()) | Err(sdlc_core::StoreError::Duplicate(_)) => Ok(action.id),
                Err(err) => Err(err),
            },
        )
        .await
}

async fn record_report(
    project: &Project,
    id: Uuid,
    report: ExternalReport,
) -> anyhow::Result<ActionView> {
    // Checked here first so a bad report fails the same way with or without a daemon.
    let checked = external::check(&report).map_err(anyhow::Error::msg)?;
    let log = report
        .log
        .as_deref()
        .and_then(|text| external::stored_log(text, sdlc_core::logs::DEFAULT_CAP));
    project
        .backend()
        .route(
            async |client| client.report(id, &report).await,
            |db| {
                db.report(id, &checked, log.as_ref(), Utc::now())
                    .map(|a| ActionView::from(&a))
            },
        )
        .await
}

/// `report run`: the start, the command with its output passed through and kept, the end.
async fn wrap(
    project: &Project,
    start: ExternalStart,
    command: &[String],
) -> anyhow::Result<ExitCode> {
    let id = record_start(project, start).await?;
    eprintln!("sdlc: reporting {} as {id}", command.join(" "));
    let began = Instant::now();
    let ran = run_passing_output(command).await;
    let duration_ms = began.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
    let (status, reason, code, text) = match ran {
        Ok(Ran {
            exit,
            text,
            stopped_by,
        }) => {
            let code = exit_code(exit);
            let (status, reason) = match (exit.success(), stopped_by) {
                (true, _) => ("completed", None),
                (false, Some(signal)) => ("canceled", Some(format!("stopped by {signal}"))),
                (false, None) => ("failed", Some(failure(exit))),
            };
            (status, reason, code, text)
        }
        Err(err) => {
            let why = format!("cannot start {}: {err:#}", command[0]);
            eprintln!("error: {why}");
            ("failed", Some(why), 127, String::new())
        }
    };
    let report = ExternalReport {
        status: status.into(),
        outputs_uri: external::outputs_uri_in(&text),
        reason,
        duration_ms: Some(duration_ms),
        log: (!text.is_empty()).then_some(text),
        data: None,
    };
    if let Err(err) = record_report(project, id, report).await {
        eprintln!(
            "error: the outcome of {id} could not be recorded ({err:#}); it stays running until `sdlc orchestrate report finish {id} --status {status}`"
        );
    }
    Ok(ExitCode::from(code))
}

/// What the wrapped command did.
struct Ran {
    exit: std::process::ExitStatus,
    /// Its output as kept (bounded as a run's log is).
    text: String,
    /// The signal this process was sent and passed on to it, when one was.
    stopped_by: Option<&'static str>,
}

/// Runs `command` with its stdout and stderr passed through to ours and kept; SIGTERM and
/// SIGINT sent to this process are passed on to it.
async fn run_passing_output(command: &[String]) -> anyhow::Result<Ran> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut stopped_by = None;
    let mut pass_on = |signal: nix::sys::signal::Signal, name: &'static str| {
        stopped_by = Some(name);
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(pid, signal);
        }
    };
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let mut capture = LogCapture::new(sdlc_core::logs::DEFAULT_CAP);
    let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        tokio::select! {
            read = out.read(&mut out_buf), if out_open => match read {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => {
                    let mut stdout = std::io::stdout().lock();
                    let _ = stdout.write_all(&out_buf[..n]).and_then(|()| stdout.flush());
                    capture.push(Stream::Stdout, &out_buf[..n]);
                }
            },
            read = err.read(&mut err_buf), if err_open => match read {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    let _ = std::io::stderr().write_all(&err_buf[..n]);
                    capture.push(Stream::Stderr, &err_buf[..n]);
                }
            },
            _ = term.recv() => pass_on(nix::sys::signal::Signal::SIGTERM, "SIGTERM"),
            _ = int.recv() => pass_on(nix::sys::signal::Signal::SIGINT, "SIGINT"),
        }
    }
    let exit = loop {
        tokio::select! {
            exit = child.wait() => break exit?,
            _ = term.recv() => pass_on(nix::sys::signal::Signal::SIGTERM, "SIGTERM"),
            _ = int.recv() => pass_on(nix::sys::signal::Signal::SIGINT, "SIGINT"),
        }
    };
    capture.finish_partials();
    let text = String::from_utf8_lossy(&sdlc_core::logs::to_text(&capture.lines())).into_owned();
    Ok(Ran {
        exit,
        text,
        stopped_by,
    })
}

/// The status to exit with: the command's own, or 128 + the signal that ended it.
fn exit_code(exit: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (exit.code(), exit.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(signal)) => (128 + signal).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

fn failure(exit: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (exit.code(), exit.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended without a status".to_string(),
    }
}
