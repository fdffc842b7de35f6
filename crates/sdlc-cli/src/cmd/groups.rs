//! `sdlc orchestrate groups`: the runs that share a run id, summed per run id, newest group
//! first (by when its first run was due), as a table, a JSON array or CSV; through the
//! daemon when one runs, else from the store. csv without `--limit` streams every group, a
//! page at a time; otherwise the next page's cursor is printed on stderr when more follow.

use std::io::Write;
use std::process::ExitCode;

use chrono::Utc;
use sdlc_core::run_group::{CSV_COLUMNS, RunGroup, csv_row};
use sdlc_core::view::CsvWriter;
use sdlc_server::groups_api::{GroupPageView, GroupsQuery, MAX_PAGE};

use super::Project;
use super::list::flag_named;
use crate::cli::GroupsArgs;
use crate::output::group_table;

/// How many a table or a JSON array shows unless `--limit` says otherwise.
const DEFAULT_LIMIT: u64 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Csv,
}

fn format_of(args: &GroupsArgs) -> anyhow::Result<Format> {
    if args.json {
        return Ok(Format::Json);
    }
    match args.format.as_deref().map(str::trim) {
        None | Some("table") => Ok(Format::Table),
        Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => anyhow::bail!("--format {other}: use table, json or csv"),
    }
}

pub async fn run(project: &Project, args: GroupsArgs) -> anyhow::Result<ExitCode> {
    let format = format_of(&args)?;
    let now = Utc::now();
    // Relative bounds are fixed once, so every page of one listing has the same ones.
    let absolute = |what: &str, value: &Option<String>| -> anyhow::Result<Option<String>> {
        value
            .as_deref()
            .map(|v| {
                sdlc_core::schedule::parse_time_bound(what, v, now)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .map_err(|e| anyhow::anyhow!("--{e}"))
            })
            .transpose()
    };
    let mut query = GroupsQuery {
        since: absolute("since", &args.since)?,
        until: absolute("until", &args.until)?,
        limit: None,
        cursor: args.cursor.clone(),
    };
    let mut remaining = match args.limit {
        Some(n) => n,
        None if format == Format::Csv => u64::MAX,
        None => DEFAULT_LIMIT,
    };
    let stdout = std::io::stdout();
    let mut csv = match format {
        Format::Csv => Some(CsvWriter::with_columns(stdout.lock(), &CSV_COLUMNS)?),
        _ => None,
    };
    let mut collected: Vec<RunGroup> = Vec::new();
    let mut next = None;
    while remaining > 0 {
        query.limit = Some(remaining.min(MAX_PAGE as u64).to_string());
        // Checked here too, so a bad filter reads the same with or without a daemon.
        let request = query
            .check(now)
            .map_err(|e| anyhow::anyhow!("{}", flag_named(&e)))?;
        let page: GroupPageView = project
            .backend()
            .route_read(
                async |client| client.run_groups(&query).await,
                |db| {
                    let page =
                        db.run_groups(&request.filter, request.cursor.clone(), request.limit)?;
                    Ok(GroupPageView {
                        items: page.items,
                        next_cursor: page.next.map(|c| c.encode()),
                    })
                },
            )
            .await?;
        remaining = remaining.saturating_sub(page.items.len() as u64);
        match csv.as_mut() {
            Some(out) => {
                for group in &page.items {
                    out.write_cells(csv_row(group))?;
                }
            }
            None => collected.extend(page.items),
        }
        next = page.next_cursor;
        match &next {
            Some(cursor) => query.cursor = Some(cursor.clone()),
            None => break,
        }
    }
    if let Some(out) = csv {
        out.finish()?.flush()?;
    }
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&collected)?)?,
        Format::Table => out!("{}", group_table(&collected))?,
        Format::Csv => {}
    }
    if let Some(cursor) = next {
        eprintln!("more groups: pass --cursor {cursor} for the next page");
    }
    Ok(ExitCode::SUCCESS)
}
