//! Notifications: which state changes tell the team, to which receivers, and what each
//! message says. Pure data and rules: the store keeps the outbox (`store::outbox`, written in
//! the transaction of the change that causes it) and the server's sender delivers it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::model::{Action, ActionStatus, StatusKind};
pub use crate::model::{NotifyEvent, parse_events};

/// How a receiver wants its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverKind {
    /// A Slack incoming webhook: `{"text": ...}`.
    Slack,
    /// Any HTTP endpoint: the notification as JSON, with an `Idempotency-Key` header.
    Webhook,
}

impl ReceiverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverKind::Slack => "slack",
            ReceiverKind::Webhook => "webhook",
        }
    }
}

/// Somewhere notifications go. Its URL is a secret (a Slack webhook URL is a credential):
/// only [`mask_url`]'s form is ever shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receiver {
    pub kind: ReceiverKind,
    pub url: String,
}

impl Receiver {
    /// Checks the URL: http or https with a host.
    pub fn new(kind: ReceiverKind, url: &str) -> Result<Receiver, String> {
        let flag = match kind {
            ReceiverKind::Slack => "--notify-slack",
            ReceiverKind::Webhook => "--notify-webhook",
        };
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| format!("{flag} {}: give an http:// or https:// URL", mask_url(url)))?;
        if rest.split(['/', '?', '#']).next().is_none_or(str::is_empty) {
            return Err(format!("{flag} {}: the URL has no host", mask_url(url)));
        }
        Ok(Receiver {
            kind,
            url: url.to_string(),
        })
    }

    /// A stable name for this receiver that does not reveal its URL.
    pub fn id(&self) -> String {
        let crc = crc32fast::hash(format!("{}:{}", self.kind.as_str(), self.url).as_bytes());
        format!("{}-{crc:08x}", self.kind.as_str())
    }

    pub fn masked(&self) -> String {
        mask_url(&self.url)
    }
}

/// A URL with everything after its host hidden (paths and queries of webhook URLs carry
/// their secret), and any user or password dropped.
pub fn mask_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => return "…".to_string(),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let hidden = rest.len() > authority.len();
    format!("{scheme}://{host}{}", if hidden { "/…" } else { "" })
}

/// The daemon's notification settings, stored in the database while it runs so that every
/// writer queues what they ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyConfig {
    pub receivers: Vec<Receiver>,
    pub events: Vec<NotifyEvent>,
    /// The dashboard's address (`--public-url`): notifications link to the run's log there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// The event that the change `old` -> `new` of an action is, if any (`old` None: `new` is
/// stored for the first time, as a plan's gate step is, waiting from its start).
///
/// A failure that will be retried is no event (the action goes back to Pending); one that
/// ends a plan's parent action is not either (the run's own `plan_failed` tells it).
pub fn event_of(old: Option<&Action>, new: &Action) -> Option<NotifyEvent> {
    use StatusKind::*;
    let Some(old) = old else {
        return (new.status.kind() == AwaitingApproval).then_some(NotifyEvent::AwaitingApproval);
    };
    match (old.status.kind(), &new.status) {
        (AwaitingApproval, _) if new.status.kind() == AwaitingApproval => None,
        (_, ActionStatus::AwaitingApproval { .. }) => Some(NotifyEvent::AwaitingApproval),
        (AwaitingApproval, ActionStatus::Failed { .. }) => Some(NotifyEvent::Rejected),
        (Running, ActionStatus::Failed { reason }) => {
            if reason == crate::model::INTERRUPTED_REASON {
                Some(NotifyEvent::Interrupted)
            } else if new.plan_run.is_some() {
                None
            } else {
                Some(NotifyEvent::Failed)
            }
        }
        _ => None,
    }
}

/// What a notification is about, as its receivers are told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// The action (or, for a plan event, the plan run).
    pub id: Uuid,
    #[serde(default)]
    pub run_id: Option<String>,
    /// The action's label, or the plan's id.
    pub task: String,
    /// The status it reached: an action's (`awaiting_approval`, `failed`) or a run's.
    pub status: String,
    #[serde(default)]
    pub outputs_uri: Option<String>,
    #[serde(default)]
    pub log_excerpt: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub approval_state: Option<String>,
    /// The run's log on the dashboard (set when the daemon knows its `--public-url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// When the change happened.
    pub at: DateTime<Utc>,
}

impl Subject {
    pub fn of_action(action: &Action, at: DateTime<Utc>) -> Subject {
        use crate::view::{outputs_uri_of, reason_of, result_of};
        Subject {
            id: action.id,
            run_id: action.run_ids().next().map(|id| id.into_owned()),
            task: action.label.clone(),
            status: action.status.kind().as_str().to_string(),
            outputs_uri: result_of(&action.status).and_then(outputs_uri_of),
            log_excerpt: action.log_excerpt.clone(),
            reason: reason_of(&action.status).map(str::to_string),
            approval_state: action
                .approval
                .as_ref()
                .map(|a| a.state.as_str().to_string()),
            log_url: None,
            at,
        }
    }

    /// Links the subject to its run's log on the dashboard at `public_url` (an action's;
    /// a plan run has none of its own).
    pub fn link_log(&mut self, public_url: Option<&str>) {
        if let Some(base) = public_url
            && self.run_id.as_deref() != Some(self.id.to_string().as_str())
        {
            self.log_url = Some(format!(
                "{}/actions/{}#log",
                base.trim_end_matches('/'),
                self.id
            ));
        }
    }

    pub fn of_run(
        run: &crate::plan::PlanRun,
        reason: Option<String>,
        at: DateTime<Utc>,
    ) -> Subject {
        Subject {
            id: run.run_id,
            run_id: Some(run.run_id.to_string()),
            task: run.plan_id.clone(),
            status: run.status.as_str().to_string(),
            outputs_uri: None,
            log_excerpt: None,
            reason,
            approval_state: None,
            log_url: None,
            at,
        }
    }
}

/// Where one notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet acknowledged: due at `next_try_at`.
    Pending,
    /// The receiver answered 2xx.
    Sent,
    /// Every try failed (or the receiver is no longer configured).
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "sent" => Ok(DeliveryState::Sent),
            "failed" => Ok(DeliveryState::Failed),
            other => Err(format!(
                "--status {other}: expected pending, sent or failed"
            )),
        }
    }
}

/// One message to one receiver, as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Also the `Idempotency-Key` a generic webhook receives.
    pub id: Uuid,
    pub event: NotifyEvent,
    pub subject: Subject,
    pub receiver: Receiver,
    pub state: DeliveryState,
    /// Tries made so far.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// When the next try is due (while Pending).
    pub next_try_at: DateTime<Utc>,
    #[serde(default)]
    pub sent_at: Option<DateTime<Utc>>,
    /// The receiver's last answer (status and the start of its body), or why it could not
    /// be reached.
    #[serde(default)]
    pub last_answer: Option<String>,
}

impl Notification {
    pub fn new(
        event: NotifyEvent,
        subject: Subject,
        receiver: Receiver,
        now: DateTime<Utc>,
    ) -> Notification {
        Notification {
            id: Uuid::now_v7(),
            event,
            subject,
            receiver,
            state: DeliveryState::Pending,
            attempts: 0,
            created_at: now,
            next_try_at: now,
            sent_at: None,
            last_answer: None,
        }
    }

    /// The Slack message: the task, what happened, and the link or the reason.
    pub fn slack_text(&self) -> String {
        let s = &self.subject;
        let what = match self.event {
            NotifyEvent::AwaitingApproval => format!("Task {} awaiting approval", s.task),
            NotifyEvent::Failed => format!("Task {} failed", s.task),
            NotifyEvent::Rejected => format!("Task {} rejected", s.task),
            NotifyEvent::Interrupted => format!("Task {} interrupted", s.task),
            NotifyEvent::PlanFailed => format!("Plan {} run {} failed", s.task, s.id),
            NotifyEvent::PlanSucceeded => format!("Plan {} run {} succeeded", s.task, s.id),
        };
        let text = match s.outputs_uri.as_deref().or(s.reason.as_deref()) {
            Some(detail) => format!("{what}: {detail}"),
            None => what,
        };
        match &s.log_url {
            Some(url) => format!("{} (<{}|log>)", slack_escape(&text), slack_escape(url)),
            None => slack_escape(&text),
        }
    }

    /// The request body for the receiver's kind.
    pub fn body(&self) -> Value {
        match self.receiver.kind {
            ReceiverKind::Slack => json!({"text": self.slack_text()}),
            ReceiverKind::Webhook => {
                let s = &self.subject;
                json!({
                    "id": self.id,
                    "event": self.event,
                    "action_id": s.id,
                    "run_id": s.run_id,
                    "task": s.task,
                    "status": s.status,
                    "outputs_uri": s.outputs_uri,
                    "log_excerpt": s.log_excerpt,
                    "reason": s.reason,
                    "approval_state": s.approval_state,
                    "log_url": s.log_url,
                    "at": s.at,
                })
            }
        }
    }
}

/// Text made safe for Slack's `text` field: its control characters `&`, `<` and `>` are
/// escaped, so a task name or a tool's reason cannot mention `<!channel>` or forge a link.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// How notifications are retried: the first retry after `first`, each next one after twice
/// as long (at most `MAX_RETRY_GAP`), until `give_up_after` has passed since the first try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    pub first: std::time::Duration,
    pub give_up_after: std::time::Duration,
}

/// The longest wait between two tries.
pub const MAX_RETRY_GAP: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl Default for RetrySchedule {
    /// Tries at 0, 5 s, 15 s, 35 s, ... 15 min apart at most, for about an hour.
    fn default() -> RetrySchedule {
        RetrySchedule {
            first: std::time::Duration::from_secs(5),
            give_up_after: std::time::Duration::from_secs(3600),
        }
    }
}

impl RetrySchedule {
    /// When to try again after `attempts` failed tries of a notification created at
    /// `created`, or None to give up.
    pub fn next_try(
        &self,
        attempts: u32,
        created: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        let gap = self.first.saturating_mul(factor).min(MAX_RETRY_GAP);
        let at = now + chrono::Duration::from_std(gap).ok()?;
        let limit = created + chrono::Duration::from_std(self.give_up_after).ok()?;
        (at <= limit).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActionTrigger;

    fn action(status: ActionStatus) -> Action {
        let now = Utc::now();
        let mut a = Action::new(
            "seo.validate",
            "seo",
            json!({}),
            ActionTrigger::Manual { requested_at: now },
            now,
        );
        a.status = status;
        a
    }

    #[test]
    fn slack_text_cannot_mention_channels_or_forge_links() {
        assert_eq!(
            slack_escape("Task <!channel> & <https://evil.example|click>"),
            "Task &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"
        );
        assert_eq!(slack_escape("plain: fine"), "plain: fine");
    }

    #[test]
    fn only_final_changes_are_events() {
        let running = action(ActionStatus::Running);
        let awaiting = action(ActionStatus::AwaitingApproval { result: json!({}) });
        let failed = action(ActionStatus::Failed { reason: "x".into() });
        let pending = action(ActionStatus::Pending);
        assert_eq!(
            event_of(Some(&running), &awaiting),
            Some(NotifyEvent::AwaitingApproval)
        );
        assert_eq!(event_of(Some(&running), &failed), Some(NotifyEvent::Failed));
        assert_eq!(
            event_of(Some(&awaiting), &failed),
            Some(NotifyEvent::Rejected)
        );
        // A retry goes back to Pending; a cancel of a pending action is no failure of a run.
        assert_eq!(event_of(Some(&running), &pending), None);
        assert_eq!(event_of(Some(&pending), &failed), None);
        let interrupted = action(ActionStatus::Failed {
            reason: crate::model::INTERRUPTED_REASON.into(),
        });
        assert_eq!(
            event_of(Some(&running), &interrupted),
            Some(NotifyEvent::Interrupted)
        );
        let mut parent = failed.clone();
        parent.plan_run = Some(Uuid::now_v7());
        assert_eq!(event_of(Some(&running), &parent), None);
        assert_eq!(
            event_of(None, &awaiting),
            Some(NotifyEvent::AwaitingApproval)
        );
        assert_eq!(event_of(None, &pending), None);
    }

    #[test]
    fn urls_are_masked_after_the_host() {
        assert_eq!(
            mask_url("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            mask_url("http://user:pw@127.0.0.1:9/x?k=1"),
            "http://127.0.0.1:9/…"
        );
        assert_eq!(mask_url("http://127.0.0.1:9"), "http://127.0.0.1:9");
        assert!(Receiver::new(ReceiverKind::Slack, "ftp://x").is_err());
        assert!(Receiver::new(ReceiverKind::Slack, "https:///path").is_err());
    }

    #[test]
    fn the_slack_text_names_the_task_and_the_link() {
        let mut a = action(ActionStatus::AwaitingApproval {
            result: json!({"outputs_uri": "https://github.com/o/r/pull/123"}),
        });
        a.label = "seo.validate".into();
        let receiver = Receiver::new(ReceiverKind::Slack, "http://127.0.0.1:1/hook").unwrap();
        let n = Notification::new(
            NotifyEvent::AwaitingApproval,
            Subject::of_action(&a, Utc::now()),
            receiver,
            Utc::now(),
        );
        assert_eq!(
            n.body(),
            json!({"text": "Task seo.validate awaiting approval: https://github.com/o/r/pull/123"})
        );
        let mut linked = n.clone();
        linked.subject.link_log(Some("https://ci.example.com/"));
        assert_eq!(
            linked.body()["text"],
            format!(
                "Task seo.validate awaiting approval: https://github.com/o/r/pull/123 (<https://ci.example.com/actions/{}#log|log>)",
                a.id
            )
        );
    }

    #[test]
    fn retries_back_off_and_stop_after_the_window() {
        let s = RetrySchedule::default();
        let t0 = Utc::now();
        let first = s.next_try(1, t0, t0).unwrap();
        assert_eq!((first - t0).num_seconds(), 5);
        assert_eq!((s.next_try(2, t0, t0).unwrap() - t0).num_seconds(), 10);
        assert_eq!((s.next_try(12, t0, t0).unwrap() - t0).num_seconds(), 900);
        assert_eq!(s.next_try(3, t0, t0 + chrono::Duration::minutes(60)), None);
        assert!(
            parse_events(&["failed,plan_failed", "failed"])
                .unwrap()
                .len()
                == 2
        );
        assert!(
            parse_events(&["nope"])
                .unwrap_err()
                .contains("awaiting_approval")
        );
    }
}
