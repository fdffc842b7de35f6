//! How values look on the dashboard's pages: times (relative, with the absolute time for a
//! hover), durations, truncated text, pretty JSON, and the table row every action list
//! shares. Pure functions over the stored forms, so the pages' templates only print.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use sdlc_core::StatusKind;
use sdlc_core::model::Action;

/// A time as a page shows it: relative text, the absolute time on hover, and the machine
/// form the page's script keeps the relative text fresh from.
#[derive(Debug, Clone)]
pub struct TimeCell {
    pub iso: String,
    pub abs: String,
    pub rel: String,
}

impl TimeCell {
    pub fn new(at: DateTime<Utc>, now: DateTime<Utc>) -> TimeCell {
        TimeCell {
            iso: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            abs: at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            rel: relative(at, now),
        }
    }
}

/// "in 5 min", "3 s ago", "just now".
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (at - now).num_seconds();
    let span = secs.unsigned_abs();
    if span < 2 {
        return "just now".into();
    }
    let text = match span {
        0..60 => format!("{span} s"),
        60..3600 => format!("{} min", span / 60),
        3600..86400 => format!("{} h", span / 3600),
        _ => format!("{} d", span / 86400),
    };
    if secs > 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// "850 ms", "12.3 s", "4 min 5 s", "10 min", "2 h 30 min".
pub fn duration(ms: i64) -> String {
    let with_rest = |big: i64, big_unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big} {big_unit}")
        } else {
            format!("{big} {big_unit} {small} {small_unit}")
        }
    };
    match ms {
        ..1_000 => format!("{} ms", ms.max(0)),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => with_rest(ms / 60_000, "min", (ms % 60_000) / 1000, "s"),
        _ => with_rest(ms / 3_600_000, "h", (ms % 3_600_000) / 60_000, "min"),
    }
}

/// The first `max` characters of `text`, and whether anything was cut.
pub fn truncate(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((cut, _)) => (format!("{}…", &text[..cut]), true),
        None => (text.to_string(), false),
    }
}

pub fn pretty_json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The last 8 hex digits of an id: its random part (the first ones of a time-ordered id are
/// the same for everything made in the same minutes), enough to tell rows apart at a glance,
/// and what `sdlc orchestrate show <short id>` takes.
pub fn short_id(id: Uuid) -> String {
    id.simple().to_string()[24..].to_string()
}

/// The CSS class of a status: one colour per status on every page.
pub fn status_class(kind: StatusKind) -> &'static str {
    match kind {
        StatusKind::Pending => "st-pending",
        StatusKind::Running => "st-running",
        StatusKind::Completed => "st-completed",
        StatusKind::Failed => "st-failed",
        StatusKind::Paused => "st-paused",
        StatusKind::Skipped => "st-skipped",
        StatusKind::Canceled => "st-canceled",
        StatusKind::AwaitingApproval => "st-awaiting",
    }
}

/// One action as a row of a table.
#[derive(Debug, Clone)]
pub struct ActionRow {
    pub id: String,
    pub short_id: String,
    pub label: String,
    pub tool: String,
    pub status: &'static str,
    pub status_class: &'static str,
    /// Due (pending) or last updated.
    pub when_label: &'static str,
    pub when: TimeCell,
    pub duration: String,
    pub reason: String,
    pub reason_full: String,
    pub reason_cut: bool,
    pub run_id: String,
}

impl ActionRow {
    pub fn of(action: &Action, now: DateTime<Utc>) -> ActionRow {
        let view = sdlc_core::view::ActionView::from(action);
        let kind = action.status.kind();
        let (when_label, when) = if kind == StatusKind::Pending {
            ("due", view.due_at)
        } else {
            ("updated", view.updated_at)
        };
        let reason_full = view.reason.clone().unwrap_or_default();
        let (reason, reason_cut) = truncate(&reason_full, 120);
        ActionRow {
            id: action.id.to_string(),
            short_id: short_id(action.id),
            label: view.label.clone(),
            tool: view.tool_name.clone(),
            status: kind.as_str(),
            status_class: status_class(kind),
            when_label,
            when: TimeCell::new(when, now),
            duration: view.duration_ms.map(duration).unwrap_or_default(),
            reason,
            reason_full,
            reason_cut,
            run_id: view.run_id.clone().unwrap_or_default(),
        }
    }
}

/// Whether a tool-supplied address may be a link on a page: only `http:` and `https:` ones.
/// A tool's `outputs_uri` is text it chose; `javascript:` or `data:` as an `href` would run in
/// the dashboard's origin when clicked, so anything else is shown as text.
pub fn is_web_link(uri: &str) -> bool {
    let lower = uri.to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_relative_both_ways() {
        let now = Utc::now();
        let secs = chrono::Duration::seconds;
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - secs(30), now), "30 s ago");
        assert_eq!(relative(now + secs(300), now), "in 5 min");
        assert_eq!(relative(now - secs(7200), now), "2 h ago");
        assert_eq!(relative(now + secs(3 * 86400), now), "in 3 d");
    }

    #[test]
    fn durations_and_truncation() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(245_000), "4 min 5 s");
        assert_eq!(duration(600_000), "10 min");
        assert_eq!(duration(9_000_000), "2 h 30 min");
        assert_eq!(truncate("héllo", 10), ("héllo".to_string(), false));
        assert_eq!(truncate("héllo", 2), ("hé…".to_string(), true));
    }

    #[test]
    fn only_http_addresses_are_links() {
        assert!(is_web_link("https://ci.example/run/1"));
        assert!(is_web_link("HTTP://ci.example"));
        for text in [
            "javascript:alert(1)",
            "data:text/html,x",
            " javascript:x",
            "//evil.example",
            "file:///etc/passwd",
            " https://x",
        ] {
            assert!(!is_web_link(text), "{text}");
        }
    }
}
