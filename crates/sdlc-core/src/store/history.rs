//! The shared forms of a history page: which actions it holds (`HistoryFilter`), where the
//! next one starts (`HistoryCursor`), and the page itself. Both backends page newest first by
//! run time (`Action::scheduled_at`) then id; redb keys its index by that position
//! (`redb::history`), PostgreSQL orders its rows by it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{due_key, millis};
use crate::model::{Action, StatusKind};

/// The part of a key after its dimension and value: the action's run time, and its id.
pub(crate) type Position = [u8; 24];

pub(crate) fn position(at: DateTime<Utc>, id: Uuid) -> Position {
    due_key(at, id)
}

/// Where `action` stands in the history: its run time and its id. The run time is the time
/// its trigger gave it (`Action::scheduled_at`: a schedule's slot, a webhook's arrival, when
/// a manual run was asked), which is when it starts unless it waits, and which never changes
/// once it runs (only an edit of a pending action moves it).
pub(crate) fn position_of(action: &Action) -> Position {
    position(action.scheduled_at(), action.id)
}

/// Which actions a history page holds. Every field narrows it; none is every action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    pub status: Option<StatusKind>,
    pub tool: Option<String>,
    pub label: Option<String>,
    pub run_id: Option<String>,
    /// The occurrences of one schedule (and its manual runs).
    pub series: Option<Uuid>,
    /// Run time (see the module's header) at or after.
    pub since: Option<DateTime<Utc>>,
    /// Run time at or before.
    pub until: Option<DateTime<Utc>>,
}

impl HistoryFilter {
    pub(crate) fn matches(&self, action: &Action) -> bool {
        self.status.is_none_or(|s| s == action.status.kind())
            && self.tool.as_deref().is_none_or(|t| t == action.tool_name)
            && self.label.as_deref().is_none_or(|l| l == action.label)
            && self
                .run_id
                .as_deref()
                .is_none_or(|r| action.run_ids().any(|id| id == r))
            && self.series.is_none_or(|s| s == action.series)
            && self
                .since
                .is_none_or(|s| millis(action.scheduled_at()) >= millis(s))
            && self
                .until
                .is_none_or(|u| millis(action.scheduled_at()) <= millis(u))
    }
}

/// Where the next page starts: just below the last action of the page before. Opaque to
/// users: `h1` then the position in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor(pub(crate) Position);

impl HistoryCursor {
    pub fn encode(&self) -> String {
        format!("h1{}", hex::encode(self.0))
    }

    /// The cursor just below `action` (the last of a page).
    pub fn after(action: &Action) -> HistoryCursor {
        HistoryCursor(position_of(action))
    }

    /// Where it stands: run time (Unix ms) and id.
    pub fn position(&self) -> (i64, Uuid) {
        let ms = u64::from_be_bytes(self.0[..8].try_into().expect("positions are 24 bytes"));
        (
            ms.min(i64::MAX as u64) as i64,
            Uuid::from_slice(&self.0[8..]).expect("positions end with a 16-byte id"),
        )
    }

    pub fn parse(text: &str) -> Result<HistoryCursor, String> {
        let bad = || {
            format!(
                "malformed cursor '{}': pass the next_cursor of an earlier page, unchanged",
                text.chars().take(80).collect::<String>()
            )
        };
        let hex_part = text.strip_prefix("h1").ok_or_else(bad)?;
        let bytes = hex::decode(hex_part).map_err(|_| bad())?;
        let position: Position = bytes.try_into().map_err(|_| bad())?;
        Ok(HistoryCursor(position))
    }
}

/// One page of history.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub items: Vec<Action>,
    /// Set when more matches follow the last item.
    pub next: Option<HistoryCursor>,
}

/// Whether a page's actions carry their bodies (input, webhook payload): a list shows them,
/// a CSV has no column for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    With,
    Without,
}
