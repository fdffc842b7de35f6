//! `sdlc orchestrate list`: history newest first (by run time), filtered and paged by the
//! history index, as a table, a JSON array, CSV or JSON lines. csv and jsonl without
//! `--limit` stream every match, a page at a time; otherwise the next page's cursor is
//! printed on stderr when more match.

use std::io::Write;
use std::process::ExitCode;

use chrono::Utc;
use sdlc_core::store::Bodies;
use sdlc_core::view::{ActionView, CsvWriter};
use sdlc_server::history_api::{HistoryPageView, HistoryQuery, MAX_PAGE};

use super::Project;
use crate::cli::ListArgs;
use crate::output::action_table;

/// How many a table or a JSON array shows unless `--limit` says otherwise.
const DEFAULT_LIMIT: u64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Csv,
    Jsonl,
}

fn format_of(args: &ListArgs) -> anyhow::Result<Format> {
    if args.json {
        return Ok(Format::Json);
    }
    match args.format.as_deref().map(str::trim) {
        None | Some("table") => Ok(Format::Table),
        Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some("jsonl") => Ok(Format::Jsonl),
        Some(other) => anyhow::bail!("--format {other}: use table, json, csv or jsonl"),
    }
}

pub async fn run(project: &Project, args: ListArgs) -> anyhow::Result<ExitCode> {
    let format = format_of(&args)?;
    if let Some(tool) = &args.tool {
        sdlc_core::tool::validate_name(tool)?;
    }
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
    let mut query = HistoryQuery {
        status: args.status.clone(),
        tool: args.tool.clone(),
        label: args.label.clone(),
        run_id: args.run_id.clone(),
        series: None,
        since: absolute("since", &args.since)?,
        until: absolute("until", &args.until)?,
        limit: None,
        cursor: args.cursor.clone(),
    };
    let streamed = matches!(format, Format::Csv | Format::Jsonl);
    let mut remaining = match args.limit {
        Some(n) => n,
        None if streamed => u64::MAX,
        None => DEFAULT_LIMIT,
    };
    let stdout = std::io::stdout();
    let mut csv = match format {
        Format::Csv => Some(CsvWriter::new(stdout.lock())?),
        _ => None,
    };
    let mut collected: Vec<ActionView> = Vec::new();
    let mut next = None;
    while remaining > 0 {
        query.limit = Some(remaining.min(MAX_PAGE as u64).to_string());
        // Checked here too, so a bad filter reads the same with or without a daemon.
        let request = query
            .check(now, MAX_PAGE, MAX_PAGE)
            .map_err(|e| anyhow::anyhow!("{}", flag_named(&e)))?;
        let page: HistoryPageView = project
            .backend()
            .route_read(
                async |client| client.history_page(&query).await,
                |db| {
                    let page = db.history_page(
                        &request.filter,
                        request.cursor,
                        request.limit,
                        Bodies::With,
                    )?;
                    Ok(HistoryPageView {
                        items: page.items.iter().map(ActionView::from).collect(),
                        next_cursor: page.next.map(|c| c.encode()),
                    })
                },
            )
            .await?;
        remaining = remaining.saturating_sub(page.items.len() as u64);
        match format {
            Format::Csv => {
                let out = csv.as_mut().expect("made for csv");
                for item in &page.items {
                    out.write(item)?;
                }
            }
            Format::Jsonl => {
                let mut out = stdout.lock();
                for item in &page.items {
                    serde_json::to_writer(&mut out, item)?;
                    out.write_all(b"\n")?;
                }
                out.flush()?;
            }
            Format::Table | Format::Json => collected.extend(page.items),
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
        Format::Table => out!("{}", action_table(&collected))?,
        Format::Csv | Format::Jsonl => {}
    }
    if let Some(cursor) = next {
        eprintln!("more match: pass --cursor {cursor} for the next page");
    }
    Ok(ExitCode::SUCCESS)
}

/// A query error as the flag the user typed (`since '...'` -> `--since '...'`).
pub(super) fn flag_named(error: &str) -> String {
    for flag in ["since", "until", "limit"] {
        if error.starts_with(&format!("{flag} ")) {
            return format!("--{error}");
        }
    }
    if error.starts_with("malformed cursor") {
        return format!("--cursor: {error}");
    }
    error.to_string()
}
