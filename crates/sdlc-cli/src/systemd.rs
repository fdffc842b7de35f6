//! systemd integration for a `Type=notify` unit (`contrib/systemd/`): `READY=1` once the
//! listener is bound and start-up recovery is done, `STOPPING=1` when shutdown begins. Outside
//! systemd (`NOTIFY_SOCKET` unset) these do nothing.

use std::net::SocketAddr;

use sd_notify::NotifyState;
use tracing::warn;

/// Tells systemd the daemon serves at `addr`.
pub fn ready(addr: SocketAddr) {
    let status = format!("listening on {addr}");
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd the daemon is stopping (running tools get their grace period).
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        warn!("cannot notify systemd (NOTIFY_SOCKET): {err}");
    }
}
