//! `GET /api/orchestrator/events`: one Server-Sent Events stream of state changes for live
//! pages. Events:
//!
//! - `hello`: sent first, `{"boot", "seq"}`;
//! - `actions`: what one commit changed, `{"changes": [{"id","status","plan_run"?}],
//!   "more": N}` (at most [`MAX_LISTED`] listed, `more` counts the rest; `status` null =
//!   deleted);
//! - `run`: one event of a plan run, as `plan events` prints it;
//! - `delivery`: one webhook request and its outcome (`delivery_log`);
//! - `stats`: every [`STATS_EVERY`], the daemon's health (busy slots, counts, inbox depth,
//!   last commit, uptime);
//! - `resync`: the stream cannot say what was missed (the daemon restarted, or the client fell
//!   behind): the page reloads what it shows.
//!
//! Every event's id is `<boot>-<seq>`. The hub keeps the last [`RING`] events, so a client
//! that reconnects with `Last-Event-ID` (browsers do, by themselves) gets what it missed, or
//! `resync` when that is not known. The hub listens to the database's change feed only while
//! a client is connected, so the engine notes nothing for nobody.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, watch};

use sdlc_core::clock::Clock;
use sdlc_core::engine_stats::EngineStats;
use sdlc_core::plan::RunEvent;
use sdlc_core::store::Store;

use crate::AppState;

/// Events kept for clients that reconnect.
pub const RING: usize = 2048;
/// Changes listed in one `actions` event; a bigger commit is summed up in `more`.
pub const MAX_LISTED: usize = 200;
/// How often the health panel's figures are sent.
pub const STATS_EVERY: Duration = Duration::from_secs(2);

/// One event as sent.
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    pub event: &'static str,
    pub data: String,
}

/// The events of this daemon's life, fanned out to every connected page.
pub struct EventHub {
    /// Tells events of this daemon from a previous one's (ids restart with each boot).
    boot: String,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Frame>>,
    clients: AtomicUsize,
    client_came: Notify,
    /// True while the hub listens to the daemon; a new client waits for it, so nothing that
    /// commits after its `hello` goes untold.
    listening: watch::Sender<bool>,
}

#[derive(Default)]
struct Ring {
    frames: VecDeque<Arc<Frame>>,
    next_seq: u64,
}

/// What a reconnecting client is owed.
enum Replay {
    Frames(Vec<Arc<Frame>>),
    Resync,
}

/// What the hub reads from the daemon.
pub struct HubSources {
    pub db: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub stats: Option<Arc<EngineStats>>,
    pub run_events: broadcast::Sender<RunEvent>,
}

impl EventHub {
    pub fn new(boot_ms: i64) -> Arc<EventHub> {
        Arc::new(EventHub {
            boot: format!("{boot_ms:x}"),
            ring: Mutex::new(Ring {
                frames: VecDeque::new(),
                next_seq: 1,
            }),
            live: broadcast::channel(RING).0,
            clients: AtomicUsize::new(0),
            client_came: Notify::new(),
            listening: watch::channel(false).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn id_of(&self, seq: u64) -> String {
        format!("{}-{seq}", self.boot)
    }

    /// Whether any page is connected (events for nobody need not be built).
    pub fn has_clients(&self) -> bool {
        self.clients.load(Ordering::Acquire) > 0
    }

    /// Records and sends one event.
    pub fn publish(&self, event: &'static str, data: String) {
        let mut ring = self.lock();
        let frame = Arc::new(Frame {
            seq: ring.next_seq,
            event,
            data,
        });
        ring.next_seq += 1;
        if ring.frames.len() == RING {
            ring.frames.pop_front();
        }
        ring.frames.push_back(frame.clone());
        // Sent under the lock, so live frames reach subscribers in sequence order.
        let _ = self.live.send(frame);
    }

    /// The events after `last_event_id`, or `Resync` when they are not all known.
    fn replay(&self, last_event_id: &str) -> Replay {
        let ring = self.lock();
        let Some(seq) = last_event_id
            .strip_prefix(&self.boot)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|seq| seq.parse::<u64>().ok())
            .filter(|seq| *seq < ring.next_seq)
        else {
            return Replay::Resync;
        };
        let oldest_kept = ring.frames.front().map_or(ring.next_seq, |f| f.seq);
        if seq + 1 < oldest_kept {
            return Replay::Resync;
        }
        Replay::Frames(
            ring.frames
                .iter()
                .filter(|f| f.seq > seq)
                .cloned()
                .collect(),
        )
    }

    /// Listens to the daemon while clients are connected; runs until the database's feed
    /// closes (never, in a daemon).
    pub async fn run(self: Arc<EventHub>, sources: HubSources) {
        loop {
            while self.clients.load(Ordering::Acquire) == 0 {
                let came = self.client_came.notified();
                if self.clients.load(Ordering::Acquire) > 0 {
                    break;
                }
                came.await;
            }
            let mut changes = sources.db.changes();
            let mut runs = sources.run_events.subscribe();
            self.listening.send_replace(true);
            let mut stats = tokio::time::interval(STATS_EVERY);
            loop {
                tokio::select! {
                    batch = changes.recv() => match batch {
                        Ok(batch) => self.publish("actions", actions_data(&batch)),
                        Err(broadcast::error::RecvError::Lagged(_)) => self.publish("resync", "{}".into()),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    event = runs.recv() => match event {
                        Ok(event) => self.publish("run", serde_json::to_string(&event).unwrap_or_default()),
                        Err(broadcast::error::RecvError::Lagged(_)) => self.publish("resync", "{}".into()),
                        Err(broadcast::error::RecvError::Closed) => {}
                    },
                    _ = stats.tick() => {
                        if self.go_idle_if_alone() {
                            break;
                        }
                        if let Some(data) = stats_data(&sources).await {
                            self.publish("stats", data);
                        }
                    }
                }
            }
        }
    }

    /// With no client left, stops listening and forgets the ring (what happens next is not
    /// recorded, so a reconnect resyncs). Decided under the ring's lock, which a connecting
    /// client takes to count itself: it either keeps the hub listening or waits for it anew.
    fn go_idle_if_alone(&self) -> bool {
        let mut ring = self.lock();
        if self.clients.load(Ordering::Acquire) > 0 {
            return false;
        }
        self.listening.send_replace(false);
        ring.frames.clear();
        true
    }
}

/// Counts a connected client while it lives.
struct ClientGuard(Arc<EventHub>);

impl ClientGuard {
    fn new(hub: Arc<EventHub>) -> ClientGuard {
        {
            let _ring = hub.lock();
            hub.clients.fetch_add(1, Ordering::AcqRel);
        }
        hub.client_came.notify_one();
        ClientGuard(hub)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

fn actions_data(batch: &[sdlc_core::store::Change]) -> String {
    let listed = &batch[..batch.len().min(MAX_LISTED)];
    json!({ "changes": listed, "more": batch.len() - listed.len() }).to_string()
}

/// The health panel's figures, or None when the database cannot be read.
async fn stats_data(sources: &HubSources) -> Option<String> {
    let db = sources.db.clone();
    let (counts, inbox) = tokio::task::spawn_blocking(move || {
        sdlc_core::store::guarded(&*db, |db| Ok((db.count_by_status()?, db.inbox_len()?)))
    })
    .await
    .ok()?
    .ok()?;
    let counts: serde_json::Map<String, Value> = counts
        .into_iter()
        .map(|(kind, n)| (kind.to_string(), json!(n)))
        .collect();
    let engine = sources
        .stats
        .as_ref()
        .map(|stats| json!(stats.snapshot(sources.clock.now())));
    Some(json!({ "counts": counts, "webhook_inbox": inbox, "engine": engine }).to_string())
}

fn event_of(hub: &EventHub, frame: &Frame) -> Event {
    Event::default()
        .id(hub.id_of(frame.seq))
        .event(frame.event)
        .data(&frame.data)
}

/// The stream's state between events.
struct Feed {
    hub: Arc<EventHub>,
    _guard: ClientGuard,
    live: broadcast::Receiver<Arc<Frame>>,
    queued: VecDeque<Event>,
    /// The last sequence number sent, so replayed and live events do not repeat.
    last_seq: u64,
}

/// `GET /api/orchestrator/events`.
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let hub = state.events().clone();
    let guard = ClientGuard::new(hub.clone());
    let mut listening = hub.listening.subscribe();
    // Bounded: a hub that cannot start (no runtime) must not hang the request.
    let _ = tokio::time::timeout(Duration::from_secs(2), listening.wait_for(|on| *on)).await;
    // Subscribed before the replay is read: nothing falls between the two.
    let live = hub.live.subscribe();
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let current = hub.lock().next_seq - 1;
    let mut queued = VecDeque::new();
    let mut last_seq = current;
    let hello = json!({ "boot": hub.boot, "seq": current }).to_string();
    match last_event_id.map(|id| hub.replay(id)) {
        None => queued.push_back(
            Event::default()
                .id(hub.id_of(current))
                .event("hello")
                .data(hello)
                .retry(Duration::from_secs(1)),
        ),
        Some(Replay::Resync) => queued.push_back(
            Event::default()
                .id(hub.id_of(current))
                .event("resync")
                .data(hello)
                .retry(Duration::from_secs(1)),
        ),
        Some(Replay::Frames(frames)) => {
            if let Some(first) = frames.first() {
                last_seq = first.seq - 1;
            }
            for frame in frames {
                last_seq = last_seq.max(frame.seq);
                queued.push_back(event_of(&hub, &frame));
            }
        }
    }
    let feed = Feed {
        hub,
        _guard: guard,
        live,
        queued,
        last_seq,
    };
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(event) = feed.queued.pop_front() {
                return Some((Ok(event), feed));
            }
            match feed.live.recv().await {
                Ok(frame) if frame.seq <= feed.last_seq => continue,
                Ok(frame) => {
                    feed.last_seq = frame.seq;
                    let event = event_of(&feed.hub, &frame);
                    return Some((Ok(event), feed));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let current = feed.hub.lock().next_seq - 1;
                    feed.last_seq = current;
                    let event = Event::default()
                        .id(feed.hub.id_of(current))
                        .event("resync")
                        .data("{}");
                    return Some((Ok(event), feed));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(replay: Replay) -> Option<Vec<u64>> {
        match replay {
            Replay::Frames(frames) => Some(frames.iter().map(|f| f.seq).collect()),
            Replay::Resync => None,
        }
    }

    #[test]
    fn a_reconnect_gets_what_it_missed_or_a_resync() {
        let hub = EventHub::new(0xabc);
        for n in 0..5 {
            hub.publish("actions", format!("{n}"));
        }
        assert_eq!(seqs(hub.replay("abc-3")), Some(vec![4, 5]));
        assert_eq!(seqs(hub.replay("abc-5")), Some(vec![]));
        assert_eq!(seqs(hub.replay("abc-0")), Some(vec![1, 2, 3, 4, 5]));
        // Another boot's id, one from the future, or garbage: what was missed is unknown.
        assert_eq!(seqs(hub.replay("abd-3")), None);
        assert_eq!(seqs(hub.replay("abc-9")), None);
        assert_eq!(seqs(hub.replay("nonsense")), None);
        // Older than the ring keeps.
        for n in 0..RING {
            hub.publish("actions", format!("{n}"));
        }
        assert_eq!(seqs(hub.replay("abc-3")), None);
        let last = (5 + RING) as u64;
        assert_eq!(
            seqs(hub.replay(&format!("abc-{}", last - 1))),
            Some(vec![last])
        );
    }
}
