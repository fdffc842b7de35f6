//! One file per command; `run` resolves the project and dispatches.

mod add;
mod approve;
mod cancel;
mod check;
mod config;
mod daemon;
mod edit;
mod groups;
mod list;
mod logs;
pub(crate) mod node;
mod notify;
mod plan;
mod plan_follow;
mod reference;
mod report;
mod schedule;
mod session;
mod show;
mod status;
mod token;
mod tool;
mod ui;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use uuid::Uuid;

use crate::backend::Backend;
use crate::cli::{Cli, Command, OrchestrateCommand, ToolCommand};

/// What every command needs to know about where it works.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    /// The redb file (the default), or where this project's daemon publishes itself when
    /// the data is on PostgreSQL.
    pub db_path: PathBuf,
    /// `--db postgres://...`: the data is on this PostgreSQL database.
    pub pg_url: Option<String>,
    /// `--server URL --token T`: every command goes to that daemon's API.
    pub remote: Option<crate::backend::Remote>,
}

impl Project {
    fn resolve(cli: &Cli) -> anyhow::Result<Project> {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let remote = crate::backend::Remote::from_cli(cli)?;
        let root = match sdlc_core::project::find_root(cli.root.as_deref(), &cwd) {
            Ok(root) => root,
            // A remote daemon has the project; here there may be none.
            Err(_) if remote.is_some() => cwd,
            Err(err) => return Err(anyhow::Error::msg(err)),
        };
        let pg_url = cli
            .db
            .as_deref()
            .filter(|db| sdlc_core::store::pg::is_postgres_url(db))
            .map(str::to_string);
        let db_path = match &cli.db {
            Some(db) if pg_url.is_none() => {
                std::path::absolute(db).with_context(|| format!("bad --db path {db}"))?
            }
            _ => sdlc_core::project::default_db_path(&root),
        };
        Ok(Project {
            root,
            db_path,
            pg_url,
            remote,
        })
    }

    pub fn backend(&self) -> Backend {
        Backend::new(
            self.db_path.clone(),
            self.pg_url.clone(),
            self.remote.clone(),
        )
    }

    /// The daemon to talk to: the `--server` one, else the one serving this database here.
    pub fn daemon_client(&self) -> Option<sdlc_server::DaemonClient> {
        match &self.remote {
            Some(remote) => Some(remote.client()),
            None => sdlc_core::daemon_file::find_live(&self.db_path)
                .map(|info| sdlc_server::DaemonClient::new(&info)),
        }
    }

    /// Refuses a command that works on this machine's `.sdlc/` when `--server` is given.
    pub fn local_only(&self, what: &str) -> anyhow::Result<()> {
        if let Some(remote) = &self.remote {
            anyhow::bail!(
                "{what} works on this machine's .sdlc/ and cannot go to --server {} (SDLC_SERVER): run it where the project is, or without --server",
                remote.url
            );
        }
        Ok(())
    }

    /// Where the data is, for messages: the file, or the URL with its password masked.
    pub fn db_shown(&self) -> String {
        match &self.pg_url {
            Some(url) => sdlc_core::store::pg::shown_url(url),
            None => self.db_path.display().to_string(),
        }
    }
}

/// Runs the command `cli` names; the exit code is decided here and in `main` only.
pub async fn run(cli: Cli, settings: crate::config::Settings) -> anyhow::Result<ExitCode> {
    // These describe the command line itself: they need no project.
    match &cli.command {
        Command::Completions { shell } => return reference::completions(*shell),
        Command::Man { markdown } => return reference::man(*markdown),
        Command::Openapi => return reference::openapi(),
        _ => {}
    }
    let project = Project::resolve(&cli)?;
    match cli.command {
        Command::Orchestrate(args) => match args.command {
            None => {
                project.local_only("the daemon")?;
                daemon::run(&project, &args.daemon).await
            }
            Some(OrchestrateCommand::Add(add)) => add::run(&project, *add).await,
            Some(OrchestrateCommand::List(list)) => list::run(&project, list).await,
            Some(OrchestrateCommand::Groups(args)) => groups::run(&project, args).await,
            Some(OrchestrateCommand::Show { id, json }) => show::run(&project, &id, json).await,
            Some(OrchestrateCommand::Cancel { id, grace }) => {
                cancel::run(&project, &id, grace).await
            }
            Some(OrchestrateCommand::Edit(args)) => edit::run(&project, args).await,
            Some(OrchestrateCommand::Logs(args)) => logs::run(&project, &args).await,
            Some(OrchestrateCommand::Check) => check::run(&project).await,
            Some(OrchestrateCommand::Config { json }) => {
                project.local_only("config")?;
                config::run(&project, &settings, json)
            }
            Some(OrchestrateCommand::Notifications {
                status,
                limit,
                json,
            }) => notify::list(&project, status, limit, json).await,
            Some(OrchestrateCommand::Ui { open }) => ui::run(&project, open).await,
            Some(OrchestrateCommand::Notify {
                command: crate::cli::NotifyCommand::Test { json },
            }) => notify::test(&project, json).await,
            Some(OrchestrateCommand::Approve(args)) => {
                approve::run(&project, args, sdlc_server::Verdict::Approve).await
            }
            Some(OrchestrateCommand::Reject(args)) => {
                approve::run(&project, args, sdlc_server::Verdict::Reject).await
            }
            Some(OrchestrateCommand::Status { json }) => status::run(&project, json).await,
            Some(OrchestrateCommand::Webhook { command }) => webhook::run(&project, command).await,
            Some(OrchestrateCommand::Report { command }) => report::run(&project, command).await,
            Some(OrchestrateCommand::Token { command }) => token::run(&project, command).await,
            Some(OrchestrateCommand::Session { command }) => session::run(&project, command).await,
            Some(OrchestrateCommand::Plan { command }) => {
                plan::run(&project, &args.daemon, command).await
            }
            Some(OrchestrateCommand::Pause { id, reason }) => {
                schedule::pause(&project, &id, reason).await
            }
            Some(OrchestrateCommand::Resume { id }) => schedule::resume(&project, &id).await,
            Some(OrchestrateCommand::Run { id }) => schedule::run_now(&project, &id).await,
            Some(OrchestrateCommand::Next { id, count }) => {
                schedule::next(&project, &id, usize::from(count)).await
            }
        },
        // Answered above, before the project was looked for.
        Command::Completions { shell } => reference::completions(shell),
        Command::Man { markdown } => reference::man(markdown),
        Command::Openapi => reference::openapi(),
        Command::Tool { command } => match project.local_only("sdlc tool").map(|()| command)? {
            ToolCommand::List { json } => tool::list(&project, json).await,
            ToolCommand::Run {
                name,
                input,
                timeout,
            } => tool::run(&project, &name, &input, timeout).await,
        },
    }
}

/// Parses an action id given on the command line.
pub fn parse_id(text: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(text.trim()).map_err(|_| {
        anyhow::anyhow!("'{text}' is not an action id: ids are UUIDs as printed by add and list, or 6 or more hex digits of one's start or end")
    })
}

/// The action `text` names: a whole id, or a short one (6 to 31 hex digits of the start or
/// the end of an id, such as the dashboard shows) that names exactly one action.
pub async fn action_id(project: &Project, text: &str) -> anyhow::Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(text.trim()) {
        return Ok(id);
    }
    let Some(fragment) = sdlc_core::model::short_id_fragment(text) else {
        return parse_id(text);
    };
    let found = project
        .backend()
        .route_read(
            async |client| client.match_short_id(&fragment).await,
            |db| db.ids_matching(&fragment, 2),
        )
        .await?;
    match found.as_slice() {
        [id] => Ok(*id),
        [] => anyhow::bail!("no action id starts or ends with '{text}': see sdlc orchestrate list"),
        [a, b, ..] => anyhow::bail!(
            "'{text}' names more than one action ({a}, {b}, ...): give more of the id"
        ),
    }
}

/// Parses JSON given with --input.
pub fn parse_input(text: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|err| anyhow::anyhow!("--input is not valid JSON ({err}): {text}"))
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
