//! `sdlc tool list` and `sdlc tool run`: see and try tools before scheduling them. Neither
//! touches the database.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use sdlc_core::tool::meta::read_meta;
use sdlc_core::tool::try_run::try_tool;
use sdlc_core::tool::{list_tools, tool_script};

use super::{Project, parse_input};

pub async fn list(project: &Project, json: bool) -> anyhow::Result<ExitCode> {
    let names = list_tools(&project.root);
    // Every tool is asked at once, so one that hangs costs its --meta timeout once, not once
    // per tool after it.
    let mut asking = tokio::task::JoinSet::new();
    for (index, name) in names.iter().enumerate() {
        let root = project.root.clone();
        let name = name.clone();
        asking.spawn(async move {
            let meta = match tool_script(&root, &name) {
                Ok(script) => read_meta(&script, &root).await,
                Err(err) => Err(err.to_string()),
            };
            (index, name, meta)
        });
    }
    let mut described = Vec::with_capacity(names.len());
    while let Some(answer) = asking.join_next().await {
        described.push(answer.context("asking a tool for its --meta failed")?);
    }
    described.sort_by_key(|(index, _, _)| *index);
    let described: Vec<_> = described
        .into_iter()
        .map(|(_, name, meta)| (name, meta))
        .collect();
    if json {
        let items: Vec<Value> = described
            .iter()
            .map(|(name, meta)| match meta {
                Ok(meta) => json!(meta),
                Err(err) => json!({"name": name, "error": err}),
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&items)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if names.is_empty() {
        eprintln!(
            "no tools in {}: add one as .sdlc/tools/<name>/tool (executable) or tool.ts",
            sdlc_core::tool::tools_dir(&project.root).display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let width = names.iter().map(String::len).max().unwrap_or(4).max(4);
    outln!("{:<width$}  {:<8}  DESCRIPTION", "NAME", "VERSION")?;
    for (name, meta) in described {
        let (version, description) = match meta {
            Ok(meta) => (
                meta.version.unwrap_or_default(),
                meta.description.unwrap_or_default(),
            ),
            Err(err) => (String::new(), format!("(unreadable: {err})")),
        };
        outln!("{name:<width$}  {version:<8}  {description}")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(
    project: &Project,
    name: &str,
    input: &str,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let input = parse_input(input)?;
    let answer = try_tool(&project.root, name, &input, timeout)
        .await
        .map_err(|refused| anyhow::anyhow!("{refused}"))?;
    if let Some(warning) = &answer.warning {
        eprintln!("warning: {warning}");
    }
    if let Some(result) = &answer.result {
        outln!("{}", serde_json::to_string_pretty(result)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !answer.stdout.is_empty() {
        outln!("{}", answer.stdout)?;
    }
    eprintln!(
        "error: tool '{name}' failed: {}",
        answer.reason.as_deref().unwrap_or("no reason given")
    );
    Ok(ExitCode::FAILURE)
}
