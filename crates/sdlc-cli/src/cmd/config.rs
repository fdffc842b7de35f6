//! `sdlc orchestrate config`: the settings a daemon started here would use, each with where
//! it came from (default, file, environment, flag), secrets masked.

use std::process::ExitCode;

use serde_json::json;

use super::Project;
use crate::config::Settings;

pub fn run(project: &Project, settings: &Settings, as_json: bool) -> anyhow::Result<ExitCode> {
    // Two settings have no default in their flags: the database is the project's file, and
    // the concurrency depends on the machine.
    let mut entries = settings.entries.clone();
    for setting in entries.iter_mut().filter(|s| s.values.is_empty()) {
        match setting.key.as_str() {
            "db" => setting.values.push(project.db_shown()),
            "max_concurrency" => setting
                .values
                .push(crate::cli::default_concurrency().to_string()),
            _ => {}
        }
    }
    let settings = &Settings {
        file: settings.file.clone(),
        entries,
    };
    if as_json {
        let answer = json!({ "file": settings.file, "settings": settings.entries });
        outln!("{}", serde_json::to_string_pretty(&answer)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    match &settings.file {
        Some(file) => outln!("# file: {}", file.display())?,
        None => outln!(
            "# file: none (.sdlc/{} is read when it exists)",
            crate::config::DEFAULT_FILE
        )?,
    }
    let width = settings
        .entries
        .iter()
        .map(|s| s.key.len())
        .max()
        .unwrap_or(0);
    for setting in &settings.entries {
        let value = match setting.values.as_slice() {
            [] => "(unset)".to_string(),
            [one] => one.clone(),
            many => many.join(", "),
        };
        outln!(
            "{:width$}  {:11}  {value}",
            setting.key,
            setting.origin.as_str()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
