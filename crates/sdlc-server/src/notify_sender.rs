//! The notification sender: delivers what the outbox holds (see `sdlc_core::store::outbox`),
//! on the server's runtime, never in the tick. Each round takes the due notifications, sends
//! them at once (each with its own timeout), and records every answer in one transaction:
//! a 2xx is final, anything else waits for its next try by the retry schedule. What a stop
//! cuts off stays pending and is sent by the next daemon (at least once: a generic webhook's
//! `Idempotency-Key` lets the receiver drop a repeat).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tracing::{info, warn};

use sdlc_core::notify::{DeliveryState, Notification, Receiver, ReceiverKind, RetrySchedule};
use sdlc_core::store::Store;
use sdlc_core::store::outbox::{TryOutcome, queued};

/// How many notifications one round sends at most.
const ROUND: usize = 64;
/// How much of a receiver's answer is kept with the notification.
const ANSWER_CHARS: usize = 300;

/// How much of a receiver's answer is read at most (what is kept is `ANSWER_CHARS` of it).
const ANSWER_BYTES: usize = 4 * 1024;
/// The longest an idle sender sleeps before looking at the outbox again (a wake-up comes with
/// every queued notification; this only bounds a missed one).
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// The pause after answers could not be recorded, before the same notifications go again.
const RECORD_RETRY: Duration = Duration::from_secs(10);

/// How the sender delivers.
#[derive(Debug, Clone, Copy)]
pub struct SenderConfig {
    pub retry: RetrySchedule,
    /// Limit on one request, connection included.
    pub timeout: Duration,
}

impl Default for SenderConfig {
    fn default() -> SenderConfig {
        SenderConfig {
            retry: RetrySchedule::default(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// An HTTP client for receivers (HTTPS with the Web PKI roots: Slack's endpoint is HTTPS).
/// It follows no redirect: a receiver is a secret address, and a redirect would re-send the
/// notification (and its idempotency key) wherever the answer points. A 3xx is a refusal.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("sdlc-orchestrate/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with a timeout and a user agent builds")
}

/// Delivers notifications until `stop` resolves.
pub async fn run(
    db: Arc<dyn Store>,
    metrics: Arc<sdlc_core::metrics::Metrics>,
    config: SenderConfig,
    stop: impl std::future::Future<Output = ()>,
) {
    let client = client(config.timeout);
    tokio::pin!(stop);
    loop {
        let due = {
            let db = db.clone();
            tokio::task::spawn_blocking(move || db.due_notifications(Utc::now(), ROUND)).await
        };
        let due = match due {
            Ok(Ok(due)) => due,
            Ok(Err(err)) => {
                warn!("cannot read the notification outbox: {err}");
                Vec::new()
            }
            Err(err) => {
                warn!("the outbox read failed: {err}");
                Vec::new()
            }
        };
        if due.is_empty() {
            let next = {
                let db = db.clone();
                tokio::task::spawn_blocking(move || db.next_notification_at())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten()
            };
            let wait = next
                .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(IDLE_CHECK)
                .min(IDLE_CHECK);
            tokio::select! {
                () = &mut stop => return,
                () = queued() => {}
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let mut sends = tokio::task::JoinSet::new();
        for note in due {
            let client = client.clone();
            sends.spawn(async move {
                let outcome = send(&client, &note.receiver, &note.body(), Some(note.id)).await;
                (note, outcome)
            });
        }
        let mut tries = Vec::new();
        let mut stopped = false;
        loop {
            tokio::select! {
                joined = sends.join_next() => match joined {
                    Some(Ok((note, outcome))) => tries.push((note, outcome)),
                    Some(Err(err)) => warn!("a notification send failed: {err}"),
                    None => break,
                },
                () = &mut stop, if !stopped => {
                    // What is in flight may finish; nothing new starts.
                    stopped = true;
                }
            }
        }
        yield_to_tick(&db).await;
        let recorded = record(&db, &metrics, tries, config.retry).await;
        if stopped {
            return;
        }
        if !recorded {
            // The database refuses writes (a full disk, say): what was sent stays due, so
            // wait before sending it again rather than repeat it at the receivers' expense.
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(RECORD_RETRY) => {}
            }
        }
    }
}

/// How far ahead a due run makes the sender hold its commit back.
const TICK_WINDOW: Duration = Duration::from_millis(20);
/// How long past that due time the hold lasts (the claim and the tool's start).
const TICK_MARGIN: Duration = Duration::from_millis(5);
/// The longest one round's commit is held back.
const TICK_YIELD_MAX: Duration = Duration::from_millis(100);

/// Holds the round's commit back while a run is due within `TICK_WINDOW`: redb has one
/// writer at a time, and the engine commits its claim a few milliseconds before the due time,
/// so a sender's commit there would make that run late. Bounded by `TICK_YIELD_MAX` (under a
/// steady stream of due runs the answers still get recorded).
async fn yield_to_tick(db: &Arc<dyn Store>) {
    let deadline = tokio::time::Instant::now() + TICK_YIELD_MAX;
    loop {
        let next = {
            let db = db.clone();
            tokio::task::spawn_blocking(move || db.next_due_at())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        };
        let Some(due) = next else { return };
        let now = Utc::now();
        let ahead = (due - now).to_std().unwrap_or(Duration::ZERO);
        // Overdue runs mean the engine is catching up anyway: no point waiting for them.
        if due < now - chrono::Duration::milliseconds(TICK_MARGIN.as_millis() as i64)
            || ahead > TICK_WINDOW
        {
            return;
        }
        let until = tokio::time::Instant::now() + ahead + TICK_MARGIN;
        if until >= deadline {
            tokio::time::sleep_until(deadline).await;
            return;
        }
        tokio::time::sleep_until(until).await;
    }
}

/// Records a round's answers and says what happened in the log; false when they could not
/// be recorded.
async fn record(
    db: &Arc<dyn Store>,
    metrics: &sdlc_core::metrics::Metrics,
    tries: Vec<(Notification, TryOutcome)>,
    retry: RetrySchedule,
) -> bool {
    let outcomes: Vec<_> = tries.iter().map(|(n, o)| (n.id, o.clone())).collect();
    let db = db.clone();
    let recorded =
        tokio::task::spawn_blocking(move || db.record_notifications(&outcomes, retry, Utc::now()))
            .await;
    let changed = match recorded {
        Ok(Ok(changed)) => changed,
        Ok(Err(err)) => {
            warn!("cannot record notification answers (they will be sent again): {err}");
            return false;
        }
        Err(err) => {
            warn!("recording notification answers failed: {err}");
            return false;
        }
    };
    for note in changed {
        let receiver = note.receiver.masked();
        let answer = note.last_answer.as_deref().unwrap_or("");
        let outcome = match note.state {
            DeliveryState::Sent => "sent",
            DeliveryState::Pending => "retrying",
            DeliveryState::Failed => "failed",
        };
        metrics.notification(note.receiver.kind.as_str(), outcome);
        match note.state {
            DeliveryState::Sent => info!(
                id = %note.id, event = %note.event, task = %note.subject.task, %receiver,
                attempts = note.attempts, "notification sent"
            ),
            DeliveryState::Pending => warn!(
                id = %note.id, %receiver, attempts = note.attempts, next_try_at = %note.next_try_at,
                "notification refused ({answer}); trying again later"
            ),
            DeliveryState::Failed => tracing::error!(
                id = %note.id, event = %note.event, task = %note.subject.task, %receiver,
                attempts = note.attempts,
                "notification failed after its last try: {answer}"
            ),
        }
    }
    true
}

/// Sends `body` to `receiver` once. `key` becomes the `Idempotency-Key` of a generic webhook.
pub async fn send(
    client: &reqwest::Client,
    receiver: &Receiver,
    body: &Value,
    key: Option<uuid::Uuid>,
) -> TryOutcome {
    let mut request = client.post(&receiver.url).json(body);
    if let (ReceiverKind::Webhook, Some(key)) = (receiver.kind, key) {
        request = request.header("Idempotency-Key", key.to_string());
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let head = read_head(response, ANSWER_BYTES).await;
            let text = String::from_utf8_lossy(&head);
            let text: String = text.trim().chars().take(ANSWER_CHARS).collect();
            let answer = if status.is_redirection() {
                format!(
                    "HTTP {}: a redirect, not followed (set the receiver to the address it redirects to)",
                    status.as_u16()
                )
            } else if text.is_empty() {
                format!("HTTP {}", status.as_u16())
            } else {
                format!("HTTP {}: {text}", status.as_u16())
            };
            if status.is_success() {
                TryOutcome::Acknowledged(answer)
            } else {
                TryOutcome::Refused(answer)
            }
        }
        // reqwest's message names the URL: only the masked form may be shown.
        Err(err) => TryOutcome::Refused(describe(&err, receiver)),
    }
}

/// The first `cap` bytes of an answer's body; the rest is never read (the connection is
/// dropped), so a receiver answering without end costs nothing.
async fn read_head(mut response: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut head = Vec::new();
    while head.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk[..chunk.len().min(cap - head.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    head
}

fn describe(err: &reqwest::Error, receiver: &Receiver) -> String {
    let what = if err.is_timeout() {
        "no answer in time"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    let detail = detail.replace(&receiver.url, &receiver.masked());
    if detail.is_empty() {
        format!("{what} ({})", receiver.masked())
    } else {
        format!("{what} ({}): {detail}", receiver.masked())
    }
}

/// One receiver's answer to `notify test`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TestAnswer {
    pub kind: ReceiverKind,
    /// The receiver's URL, masked.
    pub receiver: String,
    pub ok: bool,
    pub answer: String,
}

/// Sends a test message to every receiver at once and reports each answer.
pub async fn send_tests(receivers: &[Receiver], timeout: Duration) -> Vec<TestAnswer> {
    let client = client(timeout);
    let now = Utc::now();
    let sends = receivers.iter().cloned().map(|receiver| {
        let client = client.clone();
        async move {
            let id = uuid::Uuid::now_v7();
            let body = match receiver.kind {
                ReceiverKind::Slack => {
                    json!({"text": "Test message from sdlc orchestrate: notifications reach this channel"})
                }
                ReceiverKind::Webhook => json!({
                    "id": id, "event": "test", "task": "notify test", "status": "test", "at": now,
                }),
            };
            let (ok, answer) = match send(&client, &receiver, &body, Some(id)).await {
                TryOutcome::Acknowledged(answer) => (true, answer),
                TryOutcome::Refused(answer) => (false, answer),
            };
            TestAnswer {
                kind: receiver.kind,
                receiver: receiver.masked(),
                ok,
                answer,
            }
        }
    });
    let mut answers = Vec::new();
    for send in sends {
        answers.push(tokio::spawn(send));
    }
    let mut out = Vec::new();
    for answer in answers {
        if let Ok(answer) = answer.await {
            out.push(answer);
        }
    }
    out
}
