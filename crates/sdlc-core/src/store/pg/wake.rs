//! Wake-ups between nodes: a transaction that stores an action that is due notifies
//! [`CHANNEL`] as it commits (`PgTxn::commit`), and every daemon listens on it, so an action
//! added by a command, another node's webhook or a retry is picked up in milliseconds rather
//! than at the next tick.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::PgStore;

/// The channel of wake-ups: something is due.
pub(crate) const CHANNEL: &str = "sdlc_wake";
/// The channel of webhook route changes: each node reloads the routes it serves.
pub(crate) const ROUTES_CHANNEL: &str = "sdlc_routes";
/// The channel of named token changes: each node forgets the tokens it cached.
pub(crate) const TOKENS_CHANNEL: &str = "sdlc_tokens";
/// A running action was asked to stop: the payload says which, by whom, with what grace.
pub(crate) const CANCEL_CHANNEL: &str = "sdlc_cancel";

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Something stored is due (or may be: the listener was reconnected).
    Due,
    /// A webhook route was added or removed.
    Routes,
    /// A named token was added or removed.
    Tokens,
    /// Action `id` was asked to stop (by `by`, with `grace_ms` before SIGKILL).
    Cancel {
        id: uuid::Uuid,
        by: String,
        grace_ms: u64,
    },
}

/// How often a quiet listener looks whether it should stop.
const POLL: Duration = Duration::from_millis(200);
/// The longest wait before connecting again after the connection broke.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl PgStore {
    /// Listens for wake-ups until `stop` is set, calling `wake` for each (a burst of them
    /// may come as one). Blocks: run it on a thread of its own. A broken connection is
    /// logged and made again, with backoff; `wake` is called for both kinds once connected
    /// again, since what was notified meanwhile was missed.
    pub fn listen_for_wakeups(&self, stop: &Arc<AtomicBool>, wake: impl Fn(Wake)) {
        let mut backoff = Duration::from_millis(100);
        while !stop.load(Ordering::Acquire) {
            let mut client = match self.db.dedicated() {
                Ok(client) => client,
                Err(err) => {
                    tracing::warn!("wake-ups: {err}; trying again in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            if let Err(err) = client.batch_execute(&format!(
                "LISTEN {CHANNEL}; LISTEN {ROUTES_CHANNEL}; LISTEN {TOKENS_CHANNEL}; LISTEN {CANCEL_CHANNEL}"
            )) {
                tracing::warn!("wake-ups: cannot listen: {err}");
                std::thread::sleep(backoff);
                continue;
            }
            backoff = Duration::from_millis(100);
            wake(Wake::Routes);
            wake(Wake::Tokens);
            wake(Wake::Due);
            while !stop.load(Ordering::Acquire) {
                let mut notifications = client.notifications();
                let first = notifications.timeout_iter(POLL).next();
                match first {
                    Ok(Some(first)) => {
                        // Drain what came with it: one wake-up of each kind for the burst.
                        let (mut due, mut routes, mut tokens) = (false, false, false);
                        let mut cancels = Vec::new();
                        let mut note = |channel: &str, payload: &str| match channel {
                            ROUTES_CHANNEL => routes = true,
                            TOKENS_CHANNEL => tokens = true,
                            CANCEL_CHANNEL => cancels.extend(cancel_of(payload)),
                            _ => due = true,
                        };
                        note(first.channel(), first.payload());
                        while let Ok(Some(more)) = notifications.iter().next() {
                            note(more.channel(), more.payload());
                        }
                        for cancel in cancels {
                            wake(cancel);
                        }
                        if routes {
                            wake(Wake::Routes);
                        }
                        if tokens {
                            wake(Wake::Tokens);
                        }
                        if due {
                            wake(Wake::Due);
                        }
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::warn!("wake-ups: the connection broke: {err}; connecting again");
                        break;
                    }
                }
            }
        }
    }
}

/// The wake-up a `CANCEL_CHANNEL` payload asks for (None for one this build cannot read).
fn cancel_of(payload: &str) -> Option<Wake> {
    #[derive(serde::Deserialize)]
    struct Payload {
        id: uuid::Uuid,
        by: String,
        grace_ms: u64,
    }
    let Payload { id, by, grace_ms } = serde_json::from_str(payload)
        .inspect_err(|err| {
            tracing::warn!("a cancel notification that does not read ({err}): {payload}")
        })
        .ok()?;
    Some(Wake::Cancel { id, by, grace_ms })
}
