//! How actions look on a terminal: the `list` table and the `show` record, and the one way
//! commands write to stdout (`out!`, `outln!`): on a terminal, control and bidirectional
//! characters from stored text (labels, reasons, results) are escaped so they cannot steer
//! it; a closed stdout ends the command quietly.

use std::io::{IsTerminal, Write};

use chrono::{DateTime, Utc};
use sdlc_core::view::ActionView;

/// `print!` for commands: `out!(...)?`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::emit(&format!($($arg)*))
    };
}

/// `println!` for commands: `outln!(...)?`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Stdout was closed by its reader; `main` ends the command quietly on it.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct OutputClosed;

/// Writes `text` to stdout, escaped when stdout is a terminal (see [`escape_for_terminal`]).
pub fn emit(text: &str) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let escaped;
    let text = if stdout.is_terminal() {
        escaped = escape_for_terminal(text);
        escaped.as_str()
    } else {
        text
    };
    let mut lock = stdout.lock();
    match lock.write_all(text.as_bytes()).and_then(|()| lock.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(OutputClosed.into()),
        Err(err) => Err(anyhow::Error::new(err).context("cannot write to stdout")),
    }
}

/// `text` with every control character but newline and tab, and every character that
/// reorders text (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C), written as `\uXXXX`:
/// an escape sequence in a label or a tool's output is shown, not obeyed. The form is also
/// JSON's, so `--json` on a terminal stays valid JSON.
pub fn escape_for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe_on_a_terminal(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn is_unsafe_on_a_terminal(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || sdlc_core::service::reorders_text(c)
}

/// Widest label shown in the table before it is cut.
const LABEL_WIDTH: usize = 32;

/// `ID | LABEL | TOOL | STATUS | UPDATED_AT`.
pub fn action_table(actions: &[ActionView]) -> String {
    let rows: Vec<[String; 7]> = actions
        .iter()
        .map(|a| {
            let due = if a.status == sdlc_core::StatusKind::Pending {
                short_time(a.due_at)
            } else {
                String::new()
            };
            let duration = a
                .duration_ms
                .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                .unwrap_or_default();
            [
                a.id.to_string(),
                cut(&a.label, LABEL_WIDTH),
                a.tool_name.clone(),
                a.status.to_string(),
                due,
                duration,
                short_time(a.updated_at),
            ]
        })
        .collect();
    table(
        [
            "ID",
            "LABEL",
            "TOOL",
            "STATUS",
            "DUE",
            "DURATION",
            "UPDATED_AT",
        ],
        &rows,
    )
}

/// Run groups as a table: each one's state, its runs by status, when its first run was due,
/// when the first started and the last ended.
pub fn group_table(groups: &[sdlc_core::run_group::RunGroup]) -> String {
    let rows: Vec<[String; 7]> = groups
        .iter()
        .map(|g| {
            let c = g.counts;
            let counts: Vec<String> = [
                (c.completed, "completed"),
                (c.failed, "failed"),
                (c.running, "running"),
                (c.pending, "pending"),
                (c.awaiting_approval, "awaiting_approval"),
                (c.paused, "paused"),
                (c.canceled, "canceled"),
                (c.skipped, "skipped"),
            ]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            [
                cut(&g.run_id, LABEL_WIDTH),
                g.state.as_str().to_string(),
                g.total.to_string(),
                counts.join(", "),
                short_time(g.first_run_at),
                g.first_started_at.map(short_time).unwrap_or_default(),
                g.last_ended_at.map(short_time).unwrap_or_default(),
            ]
        })
        .collect();
    table(
        [
            "RUN_ID",
            "STATE",
            "RUNS",
            "BY_STATUS",
            "FIRST_DUE",
            "STARTED",
            "ENDED",
        ],
        &rows,
    )
}

/// A plain-text table, each column as wide as its widest cell.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Every field of one action, for `show`.
pub fn action_record(a: &ActionView) -> String {
    let mut lines = vec![
        field("id", a.id),
        field("label", &a.label),
        field("tool", &a.tool_name),
        field("status", a.status),
    ];
    match a.trigger.as_str() {
        "webhook" => {
            let route = a.route_id.map(|r| r.to_string()).unwrap_or_default();
            lines.push(field("trigger", format!("webhook (route {route})")));
            if let Some(path) = &a.route_path {
                lines.push(field("route_path", format!("/webhooks/{path}")));
            }
            if let Some(received) = a.received_at {
                lines.push(field("received_at", long_time(received)));
            }
            if let Some(delivery) = &a.delivery_id {
                lines.push(field("delivery_id", delivery));
            }
        }
        other => lines.push(field("trigger", other)),
    }
    lines.push(field("due_at", long_time(a.due_at)));
    if a.scheduled_at != a.due_at {
        lines.push(field("scheduled", long_time(a.scheduled_at)));
    }
    if let Some(secs) = a.recurrence_secs {
        lines.push(field(
            "recurrence",
            format!("every {secs}s (series {})", a.series),
        ));
    }
    if let Some(cron) = &a.cron {
        let tz = a.tz.as_deref().unwrap_or("UTC");
        lines.push(field(
            "recurrence",
            format!("cron \"{cron}\" in {tz} (series {})", a.series),
        ));
    }
    if let (Some(overlap), Some(catch_up)) = (a.overlap, a.catch_up) {
        lines.push(field(
            "policy",
            format!("overlap {overlap}, catch-up {catch_up}"),
        ));
    }
    if let Some(retries) = a.retries {
        let backoff = a.backoff_secs.unwrap_or_default();
        lines.push(field(
            "retries",
            format!("{retries} (backoff {backoff}s, doubling)"),
        ));
    }
    if let Some(at) = a.retry_at {
        lines.push(field("retry_at", long_time(at)));
    }
    if let Some(behind) = a.queued_behind {
        lines.push(field("queued", format!("waits for run {behind} to finish")));
    }
    if let Some(secs) = a.timeout_secs {
        lines.push(field("timeout", format!("{secs}s")));
    }
    lines.push(field("attempt", a.attempt));
    if let Some(ms) = a.duration_ms {
        lines.push(field("duration", format!("{:.3}s", ms as f64 / 1000.0)));
    }
    if let Some(run) = &a.run_id {
        lines.push(field("run_id", run));
    }
    if let (Some(run), Some(step)) = (a.plan_run_id, &a.step_id) {
        lines.push(field("step", format!("{step} of plan run {run}")));
    }
    if let Some(uri) = &a.outputs_uri {
        lines.push(field("outputs", uri));
    }
    if let Some(state) = a.approval_state {
        let mut text = state.as_str().to_string();
        if let Some(by) = &a.approver {
            text.push_str(&format!(" by {by}"));
        }
        if let Some(stated) = &a.stated_by {
            text.push_str(&format!(" (for {stated})"));
        }
        if let Some(at) = a.approved_at.or(a.rejected_at) {
            text.push_str(&format!(" at {}", long_time(at)));
        }
        if let Some(note) = &a.note {
            text.push_str(&format!(": \"{note}\""));
        }
        lines.push(field("approval", text));
    } else if a.requires_approval {
        lines.push(field(
            "approval",
            "a person approves each run before it starts",
        ));
    }
    lines.push(field("created_at", long_time(a.created_at)));
    lines.push(field("updated_at", long_time(a.updated_at)));
    if let Some(t) = a.started_at {
        lines.push(field("started_at", long_time(t)));
    }
    if let Some(t) = a.finished_at {
        lines.push(field("finished_at", long_time(t)));
    }
    for attempt in &a.attempts {
        let reason = attempt
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        lines.push(field(
            &format!("attempt {}", attempt.attempt),
            format!(
                "{} at {}{reason}",
                attempt.outcome,
                long_time(attempt.finished_at)
            ),
        ));
    }
    lines.push(format!("input:\n{}", indent(&pretty(&a.tool_input))));
    if let Some(payload) = &a.raw_payload {
        lines.push(format!("payload:\n{}", indent(payload)));
    }
    if let Some(result) = &a.result {
        lines.push(format!("result:\n{}", indent(&pretty(result))));
    }
    if let Some(reason) = &a.reason {
        lines.push(format!("reason:\n{}", indent(reason)));
    }
    if let Some(excerpt) = &a.log_excerpt {
        lines.push(format!(
            "log excerpt (the whole log: sdlc orchestrate logs {}):\n{}",
            a.id,
            indent(excerpt)
        ));
    }
    lines.join("\n") + "\n"
}

fn field(name: &str, value: impl std::fmt::Display) -> String {
    format!("{:<12} {value}", format!("{name}:"))
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width - 1).collect();
    format!("{kept}…")
}

fn short_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn long_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
