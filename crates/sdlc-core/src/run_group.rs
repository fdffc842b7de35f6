//! Run groups: the runs that share a run id (`add --run-id`, `report start --run-id`: one CI
//! run's tasks, the steps of a plan run started with one, a schedule's `{date}` occurrences),
//! summed up for the "recent runs" listing: how many are in each status, when the group's
//! first run was due, when the first started and when the last ended.
//!
//! Each backend keeps one [`Summary`] per run id, changed in the same commit as each of its
//! runs, so a page of groups reads a page of summaries and never their runs. A change that
//! only adds (a new run, a status change, a start, an end) is a [`Delta`]; one that can take
//! an earliest or latest time away (a run removed, its run id or its run time edited) makes
//! the backend sum the group again from the runs it still has ([`Summary::of`]).
//!
//! Groups are listed newest first by when their first run was due (a position that only an
//! earlier run joining can move, so a cursor stays exact while groups fill up).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Action, StatusKind};

/// What one run adds to its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    status: StatusKind,
    run_ms: i64,
    started_ms: Option<i64>,
    ended_ms: Option<i64>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn status_slot(kind: StatusKind) -> usize {
    StatusKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("ALL holds every status")
}

impl Member {
    /// The group `action` belongs to and what it adds; None without a run id.
    pub(crate) fn of(action: &Action) -> Option<(&str, Member)> {
        let run_id = action.run_id.as_deref()?;
        Some((
            run_id,
            Member {
                status: action.status.kind(),
                run_ms: ms(action.scheduled_at()),
                started_ms: action.started_at.map(ms),
                ended_ms: action.finished_at.map(ms),
            },
        ))
    }
}

/// One group as stored: counts by status (in `StatusKind::ALL` order) and its times, Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub counts: [u64; 8],
    pub first_run_ms: i64,
    pub first_started_ms: Option<i64>,
    pub last_ended_ms: Option<i64>,
}

/// An earlier of two optional times.
fn earlier(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn later(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Summary {
    /// The sum of `members`; None when there are none (the group is gone).
    pub(crate) fn of(members: impl IntoIterator<Item = Member>) -> Option<Summary> {
        let mut sum: Option<Summary> = None;
        for m in members {
            let s = sum.get_or_insert(Summary {
                counts: [0; 8],
                first_run_ms: m.run_ms,
                first_started_ms: None,
                last_ended_ms: None,
            });
            s.counts[status_slot(m.status)] += 1;
            s.first_run_ms = s.first_run_ms.min(m.run_ms);
            s.first_started_ms = earlier(s.first_started_ms, m.started_ms);
            s.last_ended_ms = later(s.last_ended_ms, m.ended_ms);
        }
        sum
    }

    /// `current` with one more run.
    pub(crate) fn with(current: Option<Summary>, member: &Member) -> Summary {
        Summary::apply(current, &Delta::joined(member)).expect("it holds the run just added")
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// This summary with `delta` applied; a new group starts from nothing. None when no run
    /// is left (a delta never removes one, so only for a summary that was already wrong).
    pub(crate) fn apply(current: Option<Summary>, delta: &Delta) -> Option<Summary> {
        let mut s = current.unwrap_or(Summary {
            counts: [0; 8],
            first_run_ms: delta.run_ms.unwrap_or(i64::MAX),
            first_started_ms: None,
            last_ended_ms: None,
        });
        for (count, change) in s.counts.iter_mut().zip(delta.counts) {
            *count = count.saturating_add_signed(change);
        }
        if let Some(run) = delta.run_ms {
            s.first_run_ms = s.first_run_ms.min(run);
        }
        s.first_started_ms = earlier(s.first_started_ms, delta.started_ms);
        s.last_ended_ms = later(s.last_ended_ms, delta.ended_ms);
        (s.total() > 0).then_some(s)
    }

    /// The stored form on redb: the counts, then the three times (`i64::MIN` for none).
    pub(crate) fn to_words(self) -> [u64; 11] {
        let mut w = [0u64; 11];
        w[..8].copy_from_slice(&self.counts);
        w[8] = self.first_run_ms as u64;
        w[9] = self.first_started_ms.unwrap_or(i64::MIN) as u64;
        w[10] = self.last_ended_ms.unwrap_or(i64::MIN) as u64;
        w
    }

    pub(crate) fn from_words(w: [u64; 11]) -> Summary {
        let time = |word: u64| Some(word as i64).filter(|t| *t != i64::MIN);
        let mut counts = [0u64; 8];
        counts.copy_from_slice(&w[..8]);
        Summary {
            counts,
            first_run_ms: w[8] as i64,
            first_started_ms: time(w[9]),
            last_ended_ms: time(w[10]),
        }
    }
}

/// A change to one group that only adds: counts moved between statuses, a run time, start or
/// end that may be the group's new earliest or latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delta {
    pub counts: [i64; 8],
    pub run_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
}

impl Delta {
    fn joined(m: &Member) -> Delta {
        let mut d = Delta {
            run_ms: Some(m.run_ms),
            started_ms: m.started_ms,
            ended_ms: m.ended_ms,
            ..Delta::default()
        };
        d.counts[status_slot(m.status)] = 1;
        d
    }

    /// Adds `other` (two changes of one transaction to the same group).
    pub fn merge(&mut self, other: &Delta) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.run_ms = earlier(self.run_ms, other.run_ms);
        self.started_ms = earlier(self.started_ms, other.started_ms);
        self.ended_ms = later(self.ended_ms, other.ended_ms);
    }
}

/// What one stored change of an action does to the groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroupChange {
    Add(String, Delta),
    /// Sum the group again from its runs (after the change is written).
    Recount(String),
}

/// The group changes of `old` replaced by `new` (None for an insert or a removal): none for
/// actions without a run id, and none when nothing the group sums changed.
pub(crate) fn changes(old: Option<&Action>, new: Option<&Action>) -> Vec<GroupChange> {
    let was = old.and_then(Member::of);
    let is = new.and_then(Member::of);
    match (was, is) {
        (None, None) => Vec::new(),
        (None, Some((run, m))) => vec![GroupChange::Add(run.to_string(), Delta::joined(&m))],
        (Some((run, _)), None) => vec![GroupChange::Recount(run.to_string())],
        (Some((old_run, _)), Some((new_run, m))) if old_run != new_run => vec![
            GroupChange::Recount(old_run.to_string()),
            GroupChange::Add(new_run.to_string(), Delta::joined(&m)),
        ],
        (Some((_, before)), Some((run, after))) if before.run_ms != after.run_ms => {
            vec![GroupChange::Recount(run.to_string())]
        }
        (Some((_, before)), Some((run, after))) => {
            if before == after
                || (before.status == after.status
                    && earlier(before.started_ms, after.started_ms) == before.started_ms
                    && later(before.ended_ms, after.ended_ms) == before.ended_ms)
            {
                return Vec::new();
            }
            // The run time goes with every delta (it cannot move the group's first: that
            // is a recount), so a delta can always make the group it is for.
            let mut d = Delta {
                run_ms: Some(after.run_ms),
                started_ms: after.started_ms,
                ended_ms: after.ended_ms,
                ..Delta::default()
            };
            d.counts[status_slot(before.status)] -= 1;
            d.counts[status_slot(after.status)] += 1;
            vec![GroupChange::Add(run.to_string(), d)]
        }
    }
}

/// Where a group stands in the listing: its first run time, then its run id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupPosition {
    pub first_run_ms: i64,
    pub run_id: String,
}

/// Where the next page of groups starts: just below the last group of the page before.
/// Opaque to users: `g1`, the first run time in hex, then the run id in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCursor(pub GroupPosition);

impl GroupCursor {
    pub fn encode(&self) -> String {
        format!(
            "g1{:016x}{}",
            self.0.first_run_ms as u64,
            hex::encode(self.0.run_id.as_bytes())
        )
    }

    pub fn parse(text: &str) -> Result<GroupCursor, String> {
        let bad = || {
            format!(
                "malformed cursor '{}': pass the next_cursor of an earlier page of groups, unchanged",
                text.chars().take(80).collect::<String>()
            )
        };
        let rest = text.strip_prefix("g1").ok_or_else(bad)?;
        if rest.len() < 16 || !rest.is_char_boundary(16) {
            return Err(bad());
        }
        let first = u64::from_str_radix(&rest[..16], 16).map_err(|_| bad())?;
        let run_id = hex::decode(&rest[16..])
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(bad)?;
        Ok(GroupCursor(GroupPosition {
            first_run_ms: first as i64,
            run_id,
        }))
    }
}

/// Which groups a page holds: those whose first run was due in `[since, until]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl GroupFilter {
    pub(crate) fn since_ms(&self) -> i64 {
        self.since.map_or(i64::MIN, ms)
    }

    pub(crate) fn until_ms(&self) -> i64 {
        self.until.map_or(i64::MAX, ms)
    }
}

/// A page of groups, newest first.
#[derive(Debug, Clone, Default)]
pub struct GroupPage {
    pub items: Vec<RunGroup>,
    /// Set when more groups follow the last item.
    pub next: Option<GroupCursor>,
}

/// How many runs of a group are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusCounts {
    pub pending: u64,
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub paused: u64,
    pub skipped: u64,
    pub awaiting_approval: u64,
    pub canceled: u64,
}

/// Where a group stands as a whole, as a CI run's checks read: `in_progress` while any run
/// is not finished (pending, running, paused, awaiting approval), then `failed` if any
/// failed, `canceled` if any was canceled, else `completed` (skipped runs count as done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    InProgress,
    Failed,
    Canceled,
    Completed,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::InProgress => "in_progress",
            GroupState::Failed => "failed",
            GroupState::Canceled => "canceled",
            GroupState::Completed => "completed",
        }
    }
}

/// One group as the API, the CLI and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunGroup {
    pub run_id: String,
    pub state: GroupState,
    /// How many runs it holds.
    pub total: u64,
    pub counts: StatusCounts,
    /// When its first run was due (what the listing is ordered by).
    pub first_run_at: DateTime<Utc>,
    /// When its first run started; null until one did.
    pub first_started_at: Option<DateTime<Utc>>,
    /// When the last of its runs to end ended; null until one did.
    pub last_ended_at: Option<DateTime<Utc>>,
}

fn time_of(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl RunGroup {
    pub fn new(run_id: String, s: &Summary) -> RunGroup {
        let c = s.counts;
        let counts = StatusCounts {
            pending: c[status_slot(StatusKind::Pending)],
            running: c[status_slot(StatusKind::Running)],
            completed: c[status_slot(StatusKind::Completed)],
            failed: c[status_slot(StatusKind::Failed)],
            paused: c[status_slot(StatusKind::Paused)],
            skipped: c[status_slot(StatusKind::Skipped)],
            awaiting_approval: c[status_slot(StatusKind::AwaitingApproval)],
            canceled: c[status_slot(StatusKind::Canceled)],
        };
        let unfinished = counts.pending + counts.running + counts.paused + counts.awaiting_approval;
        let state = if unfinished > 0 {
            GroupState::InProgress
        } else if counts.failed > 0 {
            GroupState::Failed
        } else if counts.canceled > 0 {
            GroupState::Canceled
        } else {
            GroupState::Completed
        };
        RunGroup {
            run_id,
            state,
            total: s.total(),
            counts,
            first_run_at: time_of(s.first_run_ms),
            first_started_at: s.first_started_ms.map(time_of),
            last_ended_at: s.last_ended_ms.map(time_of),
        }
    }

    /// Where it stands in the listing.
    pub fn position(&self) -> GroupPosition {
        GroupPosition {
            first_run_ms: ms(self.first_run_at),
            run_id: self.run_id.clone(),
        }
    }
}

/// The columns of a groups CSV, in order.
pub const CSV_COLUMNS: [&str; 14] = [
    "run_id",
    "state",
    "total",
    "pending",
    "running",
    "completed",
    "failed",
    "paused",
    "skipped",
    "awaiting_approval",
    "canceled",
    "first_run_at",
    "first_started_at",
    "last_ended_at",
];

/// One group as a CSV row, in [`CSV_COLUMNS`] order (the run id made neutral: it is users'
/// text).
pub fn csv_row(g: &RunGroup) -> [String; 14] {
    let time = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    };
    let c = g.counts;
    [
        crate::view::neutral_cell(&g.run_id),
        g.state.as_str().to_string(),
        g.total.to_string(),
        c.pending.to_string(),
        c.running.to_string(),
        c.completed.to_string(),
        c.failed.to_string(),
        c.paused.to_string(),
        c.skipped.to_string(),
        c.awaiting_approval.to_string(),
        c.canceled.to_string(),
        time(Some(g.first_run_at)),
        time(g.first_started_at),
        time(g.last_ended_at),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActionStatus;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn run(run_id: Option<&str>, status: ActionStatus, slot: i64) -> Action {
        let trigger = crate::model::ActionTrigger::Scheduled {
            next_tick_at: at(slot),
        };
        let mut a = Action::new("t", "echo", serde_json::json!({}), trigger, at(0));
        a.run_id = run_id.map(str::to_string);
        a.status = status;
        a
    }

    fn apply_all(summary: Option<Summary>, changes: &[GroupChange]) -> Option<Summary> {
        let mut s = summary;
        for c in changes {
            match c {
                GroupChange::Add(_, d) => s = Summary::apply(s, d),
                GroupChange::Recount(_) => panic!("expected deltas only"),
            }
        }
        s
    }

    #[test]
    fn deltas_follow_a_run_from_pending_to_its_end() {
        let pending = run(Some("ci-1"), ActionStatus::Pending, 10);
        let mut s = apply_all(None, &changes(None, Some(&pending))).unwrap();
        assert_eq!(s.total(), 1);
        assert_eq!(s.first_run_ms, ms(at(10)));
        let mut running = pending.clone();
        running.status = ActionStatus::Running;
        running.started_at = Some(at(11));
        s = apply_all(Some(s), &changes(Some(&pending), Some(&running))).unwrap();
        let mut done = running.clone();
        done.status = ActionStatus::Completed {
            result: serde_json::Value::Null,
        };
        done.finished_at = Some(at(15));
        s = apply_all(Some(s), &changes(Some(&running), Some(&done))).unwrap();
        let group = RunGroup::new("ci-1".into(), &s);
        assert_eq!(group.total, 1);
        assert_eq!(group.counts.completed, 1);
        assert_eq!(group.counts.pending + group.counts.running, 0);
        assert_eq!(group.state, GroupState::Completed);
        assert_eq!(group.first_started_at, Some(at(11)));
        assert_eq!(group.last_ended_at, Some(at(15)));
        // Recorded again unchanged: nothing to write.
        assert!(changes(Some(&done), Some(&done)).is_empty());
    }

    #[test]
    fn what_can_take_a_time_away_recounts() {
        let a = run(Some("ci-1"), ActionStatus::Pending, 10);
        assert_eq!(
            changes(Some(&a), None),
            vec![GroupChange::Recount("ci-1".into())]
        );
        let mut moved = a.clone();
        moved.trigger = crate::model::ActionTrigger::Scheduled {
            next_tick_at: at(20),
        };
        assert_eq!(
            changes(Some(&a), Some(&moved)),
            vec![GroupChange::Recount("ci-1".into())]
        );
        let mut renamed = a.clone();
        renamed.run_id = Some("ci-2".into());
        let c = changes(Some(&a), Some(&renamed));
        assert_eq!(c[0], GroupChange::Recount("ci-1".into()));
        assert!(matches!(&c[1], GroupChange::Add(run, _) if run == "ci-2"));
        assert!(changes(None, Some(&run(None, ActionStatus::Pending, 1))).is_empty());
    }

    #[test]
    fn a_sum_equals_the_deltas_that_built_it() {
        let members: Vec<Action> = (0..5)
            .map(|i| {
                let mut a = run(
                    Some("g"),
                    ActionStatus::Failed { reason: "x".into() },
                    50 - i,
                );
                a.started_at = Some(at(60 + i));
                a.finished_at = Some(at(70 + i));
                a
            })
            .collect();
        let mut by_delta = None;
        for a in &members {
            by_delta = apply_all(by_delta, &changes(None, Some(a)));
        }
        let by_sum = Summary::of(members.iter().map(|a| Member::of(a).unwrap().1));
        assert_eq!(by_delta, by_sum);
        let s = by_sum.unwrap();
        assert_eq!(s.first_run_ms, ms(at(46)));
        assert_eq!(s.first_started_ms, Some(ms(at(60))));
        assert_eq!(s.last_ended_ms, Some(ms(at(74))));
        assert_eq!(Summary::from_words(s.to_words()), s);
        assert_eq!(RunGroup::new("g".into(), &s).state, GroupState::Failed);
    }

    #[test]
    fn a_cursor_reads_back_and_a_bad_one_is_named() {
        let c = GroupCursor(GroupPosition {
            first_run_ms: 1_800_000_000_123,
            run_id: "nightly/ü 7".into(),
        });
        assert_eq!(GroupCursor::parse(&c.encode()).unwrap(), c);
        let err = GroupCursor::parse("h1abc").unwrap_err();
        assert!(err.contains("malformed cursor 'h1abc'"), "{err}");
        assert!(GroupCursor::parse("g1zz").is_err());
    }
}
