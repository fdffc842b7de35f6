//! The action model: what is stored, what the engine runs, what the CLI and API show.
//!
//! An [`Action`] is one firing of a tool: a trigger (when) plus a tool and its input (what).
//! A recurring action is a chain of actions: when one occurrence is claimed to run (or is
//! skipped), the next one is stored as a new Pending action in the same transaction, so every
//! run keeps its own record and the schedule can never be lost. All occurrences of one chain
//! share a `series` id (the id of the first occurrence).
//!
//! This module holds plain data and the rules of status transitions; it does no I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One firing of a tool, as stored in the database.
///
/// Fields added after schema version 1 must carry `#[serde(default)]` so that records
/// written by older versions keep decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub id: Uuid,
    pub label: String,
    pub tool_name: String,
    pub tool_input: Value,
    pub trigger: ActionTrigger,
    pub status: ActionStatus,
    /// When set, finishing this action schedules the next occurrence.
    #[serde(default)]
    pub recurrence: Option<Recurrence>,
    /// The id shared by every occurrence of a recurring action (the first occurrence's id).
    pub series: Uuid,
    /// Per-action limit on one tool run, in milliseconds; the daemon's default applies when
    /// absent.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// How many times this action has been started (0 until the first claim).
    #[serde(default)]
    pub attempt: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the current or last run started.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When the action reached Completed, Failed, Skipped or Canceled.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Overlap and catch-up rules of a recurring action.
    #[serde(default)]
    pub policy: SchedulePolicy,
    /// Retry a failed run this many times, with exponential backoff.
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// Every finished attempt, oldest first.
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    /// When a retry (or a queued occurrence) is due; replaces the trigger's time.
    #[serde(default)]
    pub retry_at: Option<DateTime<Utc>>,
    /// Set on an occurrence held back by `--overlap queue-one` until this run finishes.
    #[serde(default)]
    pub queued_behind: Option<Uuid>,
    /// The schedule has moved past this occurrence: its successor is stored (or it had none).
    #[serde(default)]
    pub next_scheduled: bool,
    /// In a `--catch-up all` replay of missed slots, how many more this replay may run
    /// (None: not catching up). Bounds the replay whatever the gap and the overlap policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_left: Option<u32>,
    /// The step of a plan run this action runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepRef>,
    /// Set on a command step: the process to run instead of a tool (`tool_name` then holds
    /// the program, for lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandSpec>,
    /// Set when the action starts a run of this plan (its `tool_input` holds the variables)
    /// instead of running a tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The plan run this action started; it stays Running until that run ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_run: Option<Uuid>,
    /// A person must approve the run's result before the action completes
    /// (`--requires-approval`, or a plan step's `approval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_approval: Option<ApprovalSpec>,
    /// The approval this action waited for, once it did: pending, approved or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// A grouping the user set (`add --run-id`), as formatted for this occurrence; a plan
    /// step carries the one of the action that started its run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The `--run-id` as given when it has placeholders (`{date}`): each occurrence of a
    /// schedule formats it for its own slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id_template: Option<String>,
    /// The first and last lines of the last run's stderr (and a command's stdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_excerpt: Option<String>,
    /// The events that notify about this action, overriding the daemon's `--notify-on`
    /// (empty: `--no-notify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_on: Option<Vec<NotifyEvent>>,
    /// When a receiver last acknowledged a notification about this action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<DateTime<Utc>>,
    /// Someone asked for the run in flight to stop (`cancel` while it runs): its node sends
    /// its process group SIGTERM, then SIGKILL after the grace, and it ends Canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<CancelRequest>,
}

/// A request to stop a running run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    pub requested_at: DateTime<Utc>,
    /// Who asked (a named token's name, or the person running a command on the file).
    pub by: String,
    /// How long the run has after SIGTERM before SIGKILL.
    pub grace_ms: u64,
}

impl CancelRequest {
    /// The reason a run stopped this way ends with.
    pub fn reason(&self) -> String {
        format!("canceled by {} while it ran", self.by)
    }
}

/// How long a canceled run has after SIGTERM unless the request says.
pub const DEFAULT_CANCEL_GRACE_MS: u64 = 10_000;

/// What an approval asks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalSpec {
    /// Shown to the approver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Nobody deciding within this long rejects it ("approval timed out").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
        }
    }
}

/// Who decides an approval: the name the caller's credentials prove (a named token's name, or
/// the person running a command on the file), and the name the request gave, if another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub name: String,
    pub stated: Option<String>,
}

impl Decider {
    /// A decider whose name is all there is to say.
    pub fn named(name: impl Into<String>) -> Decider {
        Decider {
            name: name.into(),
            stated: None,
        }
    }
}

/// The record of one approval: who decided, when, and what they said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub state: ApprovalState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Who the request said decided, when that is not `approver`: a named token's holder may
    /// say on whose behalf they act, but the approver recorded is the token's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stated_by: Option<String>,
    /// When it began waiting.
    pub requested_at: DateTime<Utc>,
    /// When waiting ends in a rejection if nobody decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// Asked before the run started (`--requires-approval`): approved, the tool runs;
    /// otherwise it was asked of a finished run's result.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub before_run: bool,
}

impl Approval {
    /// An approval asked at `now` under `spec`: pending, due to time out when `spec` says.
    pub fn pending(spec: Option<&ApprovalSpec>, now: DateTime<Utc>) -> Approval {
        let deadline = spec
            .and_then(|spec| spec.timeout_ms)
            .and_then(|ms| chrono::Duration::try_milliseconds(i64::try_from(ms).ok()?))
            .and_then(|wait| now.checked_add_signed(wait));
        Approval {
            state: ApprovalState::Pending,
            prompt: spec.and_then(|spec| spec.prompt.clone()),
            approver: None,
            approved_at: None,
            rejected_at: None,
            note: None,
            stated_by: None,
            requested_at: now,
            deadline,
            before_run: false,
        }
    }

    /// Whether this is a gate before the run that a person approved: the run may start.
    pub fn lets_the_run_start(&self) -> bool {
        self.before_run && self.state == ApprovalState::Approved
    }

    /// Records a decision: approved or rejected at `at`, by `by` (none for a timeout).
    pub fn decide(
        &mut self,
        state: ApprovalState,
        by: Option<&Decider>,
        note: Option<String>,
        at: DateTime<Utc>,
    ) {
        self.state = state;
        if let Some(by) = by {
            self.approver = Some(by.name.clone());
            self.stated_by = by.stated.clone().filter(|stated| *stated != by.name);
        }
        match state {
            ApprovalState::Approved => self.approved_at = Some(at),
            ApprovalState::Rejected => self.rejected_at = Some(at),
            ApprovalState::Pending => {}
        }
        if note.is_some() {
            self.note = note;
        }
    }
}

/// Reason recorded on an action whose approval nobody gave in time.
pub const APPROVAL_TIMED_OUT: &str = "approval timed out";

/// What a recurring action does when runs collide with the schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulePolicy {
    #[serde(default)]
    pub overlap: Overlap,
    #[serde(default)]
    pub catch_up: CatchUp,
}

/// When an occurrence is due while an earlier one of the series still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    /// Record the occurrence as Skipped and move on to the next slot.
    #[default]
    Skip,
    /// Keep it waiting (at most one) and run it as soon as the earlier run finishes.
    QueueOne,
    /// Run both.
    Allow,
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Overlap::Skip => "skip",
            Overlap::QueueOne => "queue-one",
            Overlap::Allow => "allow",
        })
    }
}

/// What happens to slots missed while the daemon was down (or the action was paused).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CatchUp {
    /// One run stands for all missed slots, then back on schedule.
    #[default]
    Latest,
    /// Missed slots are skipped; the next run is at the next slot.
    None,
    /// Every missed slot runs, one occurrence each (at most `CATCH_UP_ALL_CAP`).
    All,
}

impl std::fmt::Display for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CatchUp::Latest => "latest",
            CatchUp::None => "none",
            CatchUp::All => "all",
        })
    }
}

/// The most missed slots `CatchUp::All` replays.
pub const CATCH_UP_ALL_CAP: u64 = 100;

/// Retrying failed runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Extra attempts after the first.
    pub retries: u32,
    /// Wait before the first retry; doubles each time (with jitter), capped.
    pub backoff_ms: u64,
    /// Every retry waits exactly `backoff_ms` (a plan step's `retry_delay_sec`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fixed: bool,
}

/// One finished attempt of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    /// completed, failed or interrupted.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The link a run reported from outside gave with an end that has no result (failed,
    /// skipped, canceled): where to read why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_uri: Option<String>,
}

/// What makes an action due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionTrigger {
    /// Due at a point in time.
    Scheduled { next_tick_at: DateTime<Utc> },
    /// Fired by hand (`sdlc orchestrate run`): due at once, outside the schedule.
    Manual { requested_at: DateTime<Utc> },
    /// Produced by a webhook delivery; due when it was received.
    Webhook {
        route_id: Uuid,
        /// The route's path when the request arrived.
        #[serde(default)]
        route_path: String,
        /// The request body as text (as received when it was UTF-8, which JSON bodies are;
        /// with U+FFFD for bad bytes otherwise).
        raw_payload: String,
        /// The body's exact bytes, in hex, when it was not UTF-8 (`raw_payload` cannot hold
        /// them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        raw_payload_hex: Option<String>,
        received_at: DateTime<Utc>,
        /// The request's headers (credentials left out).
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        delivery_id: Option<String>,
    },
    /// A run reported from outside (`crate::external`): it runs elsewhere, and only reports
    /// change it; the daemon never claims, runs or recovers it.
    External {
        reported_at: DateTime<Utc>,
        /// The named token that reported its start, when there was one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reported_by: Option<String>,
    },
}

/// Where an action is in its life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ActionStatus {
    Pending,
    Running,
    Completed {
        result: Value,
    },
    Failed {
        reason: String,
    },
    /// Held by the user; never fires until resumed.
    Paused {
        #[serde(default)]
        reason: Option<String>,
    },
    /// An occurrence that did not run, by policy (overlap or catch-up); the reason says which.
    Skipped {
        reason: String,
    },
    /// The run ended well and waits for a person: approved it completes with `result`,
    /// rejected it fails.
    AwaitingApproval {
        result: Value,
    },
    /// Stopped by a person (`cancel`): a running run's process group was sent SIGTERM (and
    /// SIGKILL after the grace), or a pending one never ran. Never retried.
    Canceled {
        reason: String,
    },
}

/// How a recurring action repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recurrence {
    /// Every fixed interval, counted from the previous due time (not from when the run ended).
    Every { interval_ms: u64 },
    /// A cron expression (5 fields, or 6 with seconds first) in an IANA time zone.
    Cron { expr: String, tz: String },
}

/// The statuses without their payloads, for filters and indexes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    Pending,
    Running,
    Completed,
    Failed,
    Paused,
    Skipped,
    AwaitingApproval,
    Canceled,
}

impl StatusKind {
    pub const ALL: [StatusKind; 8] = [
        StatusKind::Pending,
        StatusKind::Running,
        StatusKind::Completed,
        StatusKind::Failed,
        StatusKind::Paused,
        StatusKind::Skipped,
        StatusKind::AwaitingApproval,
        StatusKind::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::Pending => "pending",
            StatusKind::Running => "running",
            StatusKind::Completed => "completed",
            StatusKind::Failed => "failed",
            StatusKind::Paused => "paused",
            StatusKind::Skipped => "skipped",
            StatusKind::AwaitingApproval => "awaiting_approval",
            StatusKind::Canceled => "canceled",
        }
    }

    /// Whether the action can change no more.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            StatusKind::Completed | StatusKind::Failed | StatusKind::Skipped | StatusKind::Canceled
        )
    }
}

impl std::fmt::Display for StatusKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StatusKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pending" => Ok(StatusKind::Pending),
            "running" => Ok(StatusKind::Running),
            "completed" => Ok(StatusKind::Completed),
            "failed" => Ok(StatusKind::Failed),
            "paused" => Ok(StatusKind::Paused),
            "skipped" => Ok(StatusKind::Skipped),
            "awaiting_approval" => Ok(StatusKind::AwaitingApproval),
            "canceled" | "cancelled" => Ok(StatusKind::Canceled),
            other => Err(format!(
                "unknown status '{other}': expected one of pending, running, completed, failed, paused, skipped, awaiting_approval, canceled"
            )),
        }
    }
}

impl ActionStatus {
    pub fn kind(&self) -> StatusKind {
        match self {
            ActionStatus::Pending => StatusKind::Pending,
            ActionStatus::Running => StatusKind::Running,
            ActionStatus::Completed { .. } => StatusKind::Completed,
            ActionStatus::Failed { .. } => StatusKind::Failed,
            ActionStatus::Paused { .. } => StatusKind::Paused,
            ActionStatus::Skipped { .. } => StatusKind::Skipped,
            ActionStatus::Canceled { .. } => StatusKind::Canceled,
            ActionStatus::AwaitingApproval { .. } => StatusKind::AwaitingApproval,
        }
    }

    /// Whether moving from `self` to `next` is a transition the lifecycle allows.
    ///
    /// Pending -> Running (claimed), Skipped (by policy), Paused, AwaitingApproval (a gate
    /// before the run), or Canceled; Paused -> Pending (resumed) or Canceled; Running ->
    /// Completed, Failed or Canceled (finished), AwaitingApproval, or Pending (to be
    /// retried); AwaitingApproval -> Completed (approved), Pending (approved to run) or
    /// Failed (rejected). Finished actions never change again.
    pub fn can_become(&self, next: &ActionStatus) -> bool {
        use StatusKind::*;
        matches!(
            (self.kind(), next.kind()),
            (
                Pending,
                Running | Skipped | Paused | Failed | Canceled | AwaitingApproval
            ) | (Paused, Pending | Failed | Canceled)
                | (
                    Running,
                    Completed | Failed | Pending | AwaitingApproval | Canceled
                )
                | (AwaitingApproval, Completed | Failed | Pending)
        )
    }
}

impl Action {
    /// A new Pending action, due per its trigger. `series` is its own id.
    pub fn new(
        label: impl Into<String>,
        tool_name: impl Into<String>,
        tool_input: Value,
        trigger: ActionTrigger,
        now: DateTime<Utc>,
    ) -> Action {
        // Time-ordered ids (v7): new actions land at the end of the id index, so the pages a
        // tick touches stay together however much history is stored.
        let id = Uuid::now_v7();
        Action {
            id,
            label: label.into(),
            tool_name: tool_name.into(),
            tool_input,
            trigger,
            status: ActionStatus::Pending,
            recurrence: None,
            series: id,
            timeout_ms: None,
            attempt: 0,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            policy: SchedulePolicy::default(),
            retry: None,
            attempts: Vec::new(),
            retry_at: None,
            queued_behind: None,
            next_scheduled: false,
            catch_up_left: None,
            step: None,
            command: None,
            plan: None,
            plan_run: None,
            requires_approval: None,
            approval: None,
            run_id: None,
            run_id_template: None,
            log_excerpt: None,
            notify_on: None,
            notified_at: None,
            cancel: None,
        }
    }

    /// When this action is due to run: a retry's time, else its trigger's.
    pub fn due_at(&self) -> DateTime<Utc> {
        if let (ActionStatus::AwaitingApproval { .. }, Some(deadline)) = (
            &self.status,
            self.approval.as_ref().and_then(|a| a.deadline),
        ) {
            return deadline;
        }
        self.retry_at.unwrap_or_else(|| self.scheduled_at())
    }

    /// The time its trigger gave it: the schedule slot a recurring occurrence stands for.
    pub fn scheduled_at(&self) -> DateTime<Utc> {
        match &self.trigger {
            ActionTrigger::Scheduled { next_tick_at } => *next_tick_at,
            ActionTrigger::Manual { requested_at } => *requested_at,
            ActionTrigger::Webhook { received_at, .. } => *received_at,
            ActionTrigger::External { reported_at, .. } => *reported_at,
        }
    }

    /// Whether it runs elsewhere and is reported from outside (see `crate::external`).
    pub fn is_external(&self) -> bool {
        matches!(self.trigger, ActionTrigger::External { .. })
    }

    /// Whether this is an occurrence of a schedule (not a manual or webhook run).
    pub fn is_scheduled_occurrence(&self) -> bool {
        self.recurrence.is_some() && matches!(self.trigger, ActionTrigger::Scheduled { .. })
    }

    /// The next occurrence of this recurring action, due at `due`: Pending, same series,
    /// same tool, input and policies.
    pub fn occurrence_at(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Action {
        let mut next = self.copy_for(ActionTrigger::Scheduled { next_tick_at: due }, now);
        next.recurrence = self.recurrence.clone();
        if let Some(template) = &self.run_id_template {
            next.run_id = Some(format_run_id(template, due, self.recurrence.as_ref()));
        }
        next
    }

    /// A new Pending action of the same series, tool, input and policies, with `trigger`
    /// (and no recurrence of its own).
    pub fn copy_for(&self, trigger: ActionTrigger, now: DateTime<Utc>) -> Action {
        let mut copy = Action::new(
            self.label.clone(),
            self.tool_name.clone(),
            self.tool_input.clone(),
            trigger,
            now,
        );
        copy.series = self.series;
        copy.timeout_ms = self.timeout_ms;
        copy.policy = self.policy;
        copy.retry = self.retry;
        copy.plan = self.plan.clone();
        copy.requires_approval = self.requires_approval.clone();
        copy.run_id = self.run_id.clone();
        copy.run_id_template = self.run_id_template.clone();
        copy.notify_on = self.notify_on.clone();
        copy
    }

    /// The run ids this action is found by: the user's grouping and the plan run it is a
    /// step of (or started).
    pub fn run_ids(&self) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
        let plan_run = self.step.as_ref().map(|s| s.run_id).or(self.plan_run);
        self.run_id
            .as_deref()
            .map(std::borrow::Cow::Borrowed)
            .into_iter()
            .chain(plan_run.map(|id| std::borrow::Cow::Owned(id.to_string())))
    }
}

/// Whether `fragment` (lower-case hex) begins or ends the 32 hex digits of `id`: a short id.
pub fn id_matches(id: Uuid, fragment: &str) -> bool {
    let hex = id.simple().to_string();
    hex.starts_with(fragment) || hex.ends_with(fragment)
}

/// A short id as typed: its hex digits, lower-case, dashes dropped; None unless 6 to 31 hex
/// digits (a whole id parses as one).
pub fn short_id_fragment(text: &str) -> Option<String> {
    let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
    ((6..32).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// The placeholders a `--run-id` may hold, formatted for each occurrence.
pub const RUN_ID_PLACEHOLDERS: &str = "{date} (YYYY-MM-DD) and {datetime} (YYYY-MM-DDTHHMM)";

/// Checks a `--run-id`: non-empty, no control characters, placeholders known. Returns
/// whether it has placeholders.
pub fn check_run_id(text: &str) -> Result<bool, String> {
    if text.trim().is_empty() || text.chars().any(char::is_control) || text.len() > 200 {
        return Err(format!(
            "--run-id '{text}': give up to 200 visible characters, e.g. nightly-{{date}}"
        ));
    }
    let mut rest = text;
    let mut placeholders = false;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        let close = after.find('}').ok_or_else(|| {
            format!(
                "--run-id '{text}': a '{{' without its '}}'; placeholders are {RUN_ID_PLACEHOLDERS}"
            )
        })?;
        let name = &after[..=close];
        if name != "{date}" && name != "{datetime}" {
            return Err(format!(
                "--run-id '{text}': unknown placeholder {name}; placeholders are {RUN_ID_PLACEHOLDERS}"
            ));
        }
        placeholders = true;
        rest = &after[close + 1..];
    }
    Ok(placeholders)
}

/// `template` with its placeholders formatted for the slot `at`, in the schedule's time
/// zone (UTC for `--every` and one-off actions).
pub fn format_run_id(template: &str, at: DateTime<Utc>, recurrence: Option<&Recurrence>) -> String {
    let tz = match recurrence {
        Some(Recurrence::Cron { tz, .. }) => tz.parse::<chrono_tz::Tz>().ok(),
        _ => None,
    };
    let (date, datetime) = match tz {
        Some(tz) => {
            let local = at.with_timezone(&tz);
            (
                local.format("%Y-%m-%d").to_string(),
                local.format("%Y-%m-%dT%H%M").to_string(),
            )
        }
        None => (
            at.format("%Y-%m-%d").to_string(),
            at.format("%Y-%m-%dT%H%M").to_string(),
        ),
    };
    template
        .replace("{datetime}", &datetime)
        .replace("{date}", &date)
}

/// A change worth telling people about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A run completed and waits for a person.
    AwaitingApproval,
    /// A run failed and will not be retried.
    Failed,
    /// A person (or the approval timeout) rejected it.
    Rejected,
    /// The daemon stopped while it ran, and it will not be retried.
    Interrupted,
    PlanFailed,
    PlanSucceeded,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 6] = [
        NotifyEvent::AwaitingApproval,
        NotifyEvent::Failed,
        NotifyEvent::Rejected,
        NotifyEvent::Interrupted,
        NotifyEvent::PlanFailed,
        NotifyEvent::PlanSucceeded,
    ];

    /// What the daemon notifies about when `--notify-on` is not given.
    pub const DEFAULT: [NotifyEvent; 3] = [
        NotifyEvent::AwaitingApproval,
        NotifyEvent::Failed,
        NotifyEvent::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::AwaitingApproval => "awaiting_approval",
            NotifyEvent::Failed => "failed",
            NotifyEvent::Rejected => "rejected",
            NotifyEvent::Interrupted => "interrupted",
            NotifyEvent::PlanFailed => "plan_failed",
            NotifyEvent::PlanSucceeded => "plan_succeeded",
        }
    }
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NotifyEvent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NotifyEvent::ALL
            .into_iter()
            .find(|event| event.as_str() == s.trim())
            .ok_or_else(|| {
                let all: Vec<&str> = NotifyEvent::ALL.iter().map(|e| e.as_str()).collect();
                format!(
                    "--notify-on: unknown event '{}': choose among {}",
                    s.trim(),
                    all.join(", ")
                )
            })
    }
}

/// `--notify-on a,b` (repeatable): the events, each once, in the order given.
pub fn parse_events<S: AsRef<str>>(given: &[S]) -> Result<Vec<NotifyEvent>, String> {
    let mut events = Vec::new();
    for part in given.iter().flat_map(|g| g.as_ref().split(',')) {
        if part.trim().is_empty() {
            continue;
        }
        let event: NotifyEvent = part.parse()?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    if events.is_empty() {
        return Err("--notify-on: name at least one event (or use --no-notify)".to_string());
    }
    Ok(events)
}

/// Which step of which run an action runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRef {
    pub run_id: Uuid,
    pub step_id: String,
    pub index: u32,
    /// The run's `globals.max_concurrency`: at most this many of its steps run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A command step's process: run directly, never through a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandSpec {
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Relative to the project root.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// How a run ended, or that it goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
        }
    }

    pub fn is_finished(self) -> bool {
        self != RunStatus::Running
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "running" => Ok(RunStatus::Running),
            "succeeded" => Ok(RunStatus::Succeeded),
            "failed" => Ok(RunStatus::Failed),
            "canceled" => Ok(RunStatus::Canceled),
            other => Err(format!(
                "unknown run status '{other}': expected running, succeeded, failed or canceled"
            )),
        }
    }
}

/// The `tool_name` of an action or route that starts plan `plan_id`: never a tool's name
/// (those have no `:`), so lists and filters show what it runs.
pub fn plan_target(plan_id: &str) -> String {
    format!("plan:{plan_id}")
}

/// The plan a `tool_name` made by [`plan_target`] names.
pub fn plan_of_target(tool_name: &str) -> Option<&str> {
    tool_name.strip_prefix("plan:")
}

/// Reason recorded on actions that were Running when a daemon died.
pub const INTERRUPTED_REASON: &str = "interrupted: the daemon stopped while this ran";

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> ActionStatus {
        ActionStatus::Failed { reason: "x".into() }
    }

    fn completed() -> ActionStatus {
        ActionStatus::Completed {
            result: Value::Null,
        }
    }

    #[test]
    fn lifecycle_allows_only_forward_transitions() {
        use ActionStatus::*;
        assert!(Pending.can_become(&Running));
        assert!(Pending.can_become(&failed()));
        assert!(Running.can_become(&completed()));
        assert!(Running.can_become(&failed()));
        assert!(Running.can_become(&Pending));

        assert!(!Pending.can_become(&completed()));
        assert!(!Pending.can_become(&Pending));
        assert!(!Running.can_become(&Running));
        for finished in [completed(), failed()] {
            for next in [Pending, Running, completed(), failed()] {
                assert!(!finished.can_become(&next), "{finished:?} -> {next:?}");
            }
        }
    }

    #[test]
    fn status_kind_parses_case_insensitively_and_names_bad_input() {
        assert_eq!("Failed".parse::<StatusKind>(), Ok(StatusKind::Failed));
        let err = "done".parse::<StatusKind>().unwrap_err();
        assert!(err.contains("'done'") && err.contains("pending"), "{err}");
    }

    #[test]
    fn records_written_before_the_policy_fields_still_read() {
        // An action as the first release stored it: no policy, retry, attempts or flags.
        let old = r#"{"id":"6f1c1e3e-0000-4000-8000-000000000001","label":"svc","tool_name":"t",
            "tool_input":{},"trigger":{"kind":"scheduled","next_tick_at":"2026-11-21T05:00:00Z"},
            "status":{"state":"pending"},"recurrence":{"kind":"every","interval_ms":1000},
            "series":"6f1c1e3e-0000-4000-8000-000000000001","created_at":"2026-11-21T05:00:00Z",
            "updated_at":"2026-11-21T05:00:00Z"}"#;
        let action: Action = serde_json::from_str(old).unwrap();
        assert_eq!(action.policy, SchedulePolicy::default());
        assert_eq!(action.retry, None);
        assert!(action.attempts.is_empty() && !action.next_scheduled);
        assert_eq!(
            action.recurrence,
            Some(Recurrence::Every { interval_ms: 1000 })
        );
    }

    #[test]
    fn stored_form_round_trips() {
        let now = Utc::now();
        let mut action = Action::new(
            "svc",
            "quality-check",
            serde_json::json!({"scope": "unit"}),
            ActionTrigger::Scheduled { next_tick_at: now },
            now,
        );
        action.recurrence = Some(Recurrence::Every { interval_ms: 1000 });
        action.status = ActionStatus::Completed {
            result: serde_json::json!({"ok": true}),
        };
        let bytes = serde_json::to_vec(&action).unwrap();
        let back: Action = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, action);
    }
}
