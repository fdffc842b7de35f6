//! `.sdlc/orchestrator.toml` (or `--config PATH`): the daemon's settings in a file, under the
//! long flags' names in snake_case. Flags and environment variables override the file, which
//! overrides the built-in defaults.
//!
//! The file's values become the defaults of the very clap arguments they name, so they pass
//! through the same parsers as flags do and every precedence rule is clap's own. Each value is
//! checked before the command line is parsed again, so a bad one is an error naming the key
//! and the file before anything starts. What it does not do: decide what a setting means
//! (that is each command's), or apply to commands outside `sdlc orchestrate`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};

/// The file looked for under the project's `.sdlc/` when `--config` is not given.
pub const DEFAULT_FILE: &str = "orchestrator.toml";

/// Global flags the file may hold beside the daemon's own.
const GLOBAL_SETTINGS: &[&str] = &["db", "log_format"];

/// Settings whose values are secrets: shown masked by `sdlc orchestrate config`.
const SECRET_SETTINGS: &[&str] = &["notify_slack", "notify_webhook"];

/// The parsed command line with the file applied, and where each setting came from.
pub struct Parsed {
    pub cli: Cli,
    pub settings: Settings,
}

/// Every daemon setting's effective value and origin, for `sdlc orchestrate config`.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    pub entries: Vec<Setting>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Setting {
    pub key: String,
    /// The values as given (several for a repeatable flag); secrets already masked.
    pub values: Vec<String>,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Default,
    File,
    Environment,
    Flag,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Default => "default",
            Origin::File => "file",
            Origin::Environment => "environment",
            Origin::Flag => "flag",
        }
    }
}

/// Why the command line could not be taken: clap's own error (printed and exited by clap,
/// with its usage), or a problem with the configuration file.
pub enum ParseError {
    CommandLine(clap::Error),
    Config(anyhow::Error),
}

/// Parses `args` (the whole command line), applying the configuration file for `sdlc
/// orchestrate` commands.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, ParseError> {
    let first = Cli::command()
        .try_get_matches_from(&args)
        .map_err(ParseError::CommandLine)?;
    let cli = Cli::from_arg_matches(&first).map_err(ParseError::CommandLine)?;
    if !matches!(cli.command, Command::Orchestrate(_)) {
        return Ok(Parsed {
            cli,
            settings: Settings::default(),
        });
    }
    let file = config_file(&cli).map_err(ParseError::Config)?;
    let table = match &file {
        Some(path) => read_table(path).map_err(ParseError::Config)?,
        None => toml::Table::new(),
    };
    let command =
        with_file_defaults(Cli::command(), &table, file.as_deref()).map_err(ParseError::Config)?;
    let matches = command
        .try_get_matches_from(&args)
        .map_err(ParseError::CommandLine)?;
    let cli = Cli::from_arg_matches(&matches).map_err(ParseError::CommandLine)?;
    let settings = Settings {
        entries: origins(&matches, &table),
        file,
    };
    Ok(Parsed { cli, settings })
}

/// `--config PATH` (which must exist), else `.sdlc/orchestrator.toml` in the project when
/// there is one. Without a project there is no file; the command says what is missing.
fn config_file(cli: &Cli) -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = &cli.config {
        if !path.is_file() {
            bail!(
                "configuration file {} not found: pass --config with an existing file, or leave it out to use .sdlc/{DEFAULT_FILE}",
                path.display()
            );
        }
        return Ok(Some(path.clone()));
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let Ok(root) = sdlc_core::project::find_root(cli.root.as_deref(), &cwd) else {
        return Ok(None);
    };
    let path = root.join(".sdlc").join(DEFAULT_FILE);
    Ok(path.is_file().then_some(path))
}

fn read_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|err| anyhow::anyhow!("configuration file {}: {err}", path.display()))
}

/// The names the file may use, in the order `--help` lists them.
pub fn setting_keys() -> Vec<String> {
    let command = Cli::command();
    let mut keys: Vec<String> = GLOBAL_SETTINGS.iter().map(|k| k.to_string()).collect();
    if let Some(orchestrate) = command.find_subcommand("orchestrate") {
        keys.extend(
            orchestrate
                .get_arguments()
                .filter(|arg| !arg.is_global_set() && arg.get_long().is_some())
                .map(|arg| arg.get_id().to_string())
                .filter(|id| !matches!(id.as_str(), "help" | "version")),
        );
    }
    keys
}

/// `command` with each of the file's values set as the default of the argument it names,
/// after checking it with that argument's own parser.
fn with_file_defaults(
    mut command: clap::Command,
    table: &toml::Table,
    file: Option<&Path>,
) -> anyhow::Result<clap::Command> {
    let keys = setting_keys();
    // Environment variables left out of the checks, so their mistakes are not blamed on the file.
    let without_env = |a: clap::Arg| a.env(None::<&str>);
    let mut checker = Cli::command()
        .mut_args(without_env)
        .mut_subcommand("orchestrate", |o| o.mut_args(without_env));
    let file_name = file.map_or_else(String::new, |f| f.display().to_string());
    for (key, value) in table {
        if !keys.contains(key) {
            let hint = if keys.contains(&key.replace('-', "_")) {
                format!(" (did you mean {}?)", key.replace('-', "_"))
            } else {
                String::new()
            };
            bail!(
                "unknown setting '{key}' in {file_name}{hint}: the settings are the long flags' names in snake_case: {}",
                keys.join(", ")
            );
        }
        let global = GLOBAL_SETTINGS.contains(&key.as_str());
        let arg = if global {
            command.get_arguments().find(|a| a.get_id() == key)
        } else {
            command
                .find_subcommand("orchestrate")
                .and_then(|o| o.get_arguments().find(|a| a.get_id() == key))
        }
        .expect("every setting key names an argument of the command");
        let values = values_of(key, value, arg, &file_name)?;
        for value in values.iter().filter(|_| !is_switch(arg)) {
            let long = arg.get_long().expect("every setting is a long flag");
            check_value(&mut checker, long, value, global).map_err(|reason| {
                anyhow::anyhow!("bad value for '{key}' in {file_name}: {reason}")
            })?;
        }
        let set = |a: clap::Arg| a.default_values(values.clone());
        command = if global {
            command.mut_arg(key, set)
        } else {
            command.mut_subcommand("orchestrate", |o| o.mut_arg(key, set))
        };
    }
    Ok(command)
}

/// Checks one value with its argument's own parser, by parsing with `checker` a command line
/// that gives only it.
fn check_value(
    checker: &mut clap::Command,
    long: &str,
    value: &str,
    global: bool,
) -> Result<(), String> {
    let flag = format!("--{long}={value}");
    let args = if global {
        vec!["sdlc".to_string(), flag, "orchestrate".to_string()]
    } else {
        vec!["sdlc".to_string(), "orchestrate".to_string(), flag]
    };
    checker
        .try_get_matches_from_mut(args)
        .map(|_| ())
        .map_err(|err| clap_reason(&err))
}

/// A TOML value as the strings a flag would be given.
fn values_of(
    key: &str,
    value: &toml::Value,
    arg: &clap::Arg,
    file: &str,
) -> anyhow::Result<Vec<String>> {
    let is_switch = is_switch(arg);
    let repeatable = matches!(arg.get_action(), ArgAction::Append);
    let scalar = |v: &toml::Value| -> anyhow::Result<String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) if is_switch => Ok(b.to_string()),
            toml::Value::Boolean(_) => {
                bail!("bad value for '{key}' in {file}: it takes a value, not true or false")
            }
            other => bail!(
                "bad value for '{key}' in {file}: expected a string or a number, found {}",
                other.type_str()
            ),
        }
    };
    if is_switch && !value.is_bool() {
        bail!("bad value for '{key}' in {file}: expected true or false");
    }
    match value {
        toml::Value::Array(items) if repeatable => items.iter().map(scalar).collect(),
        toml::Value::Array(_) => {
            bail!("bad value for '{key}' in {file}: it takes one value, not a list")
        }
        single => Ok(vec![scalar(single)?]),
    }
}

/// Whether the argument is an on/off flag (`--metrics-open`), given as true or false.
fn is_switch(arg: &clap::Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

/// The reason in a clap error, without its `error:` prefix and usage lines.
fn clap_reason(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// Where each setting's value came from, read off the final parse.
fn origins(matches: &ArgMatches, table: &toml::Table) -> Vec<Setting> {
    let orchestrate = matches.subcommand_matches("orchestrate");
    setting_keys()
        .into_iter()
        .map(|key| {
            let scope = if GLOBAL_SETTINGS.contains(&key.as_str()) {
                Some(matches)
            } else {
                orchestrate
            };
            let source = scope.and_then(|m| m.value_source(&key));
            let origin = match source {
                Some(ValueSource::CommandLine) => Origin::Flag,
                Some(ValueSource::EnvVariable) => Origin::Environment,
                _ if table.contains_key(&key) => Origin::File,
                _ => Origin::Default,
            };
            let values: Vec<String> = scope
                .and_then(|m| m.get_raw(&key))
                .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let values = values.iter().map(|v| masked(&key, v)).collect();
            Setting {
                key,
                values,
                origin,
            }
        })
        .collect()
}

/// A value as it may be shown: receivers' URLs and a database password masked.
fn masked(key: &str, value: &str) -> String {
    if SECRET_SETTINGS.contains(&key) {
        return sdlc_core::notify::mask_url(value);
    }
    if key == "db" && sdlc_core::store::pg::is_postgres_url(value) {
        return sdlc_core::store::pg::shown_url(value);
    }
    value.to_string()
}
