//! The accept loop: how many connections the daemon holds and for how long.
//!
//! A connection costs a file descriptor and some memory, and the daemon needs descriptors for
//! its tools' pipes and its database too. So: a connection that sends nothing, or sends its
//! headers too slowly, or sits idle between keep-alive requests, is closed after
//! `idle_timeout`; a request whose body (or handling) takes longer than `request_timeout` is
//! answered 408; and at most `max_connections` are open at once. When that many are open, a
//! new connection closes the oldest one that has no request in progress (idle, or still
//! sending its headers) rather than waiting behind it, so a flood of idle sockets cannot keep
//! real clients out; only when every connection is busy is the new one closed at once.
//!
//! With TLS, the handshake happens on the connection's own task, within `idle_timeout`, so a
//! client that never finishes one holds nothing but its slot.
//!
//! What it does not do: route or answer requests (`router` does).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

use crate::ApiError;

/// Limits on the connections the server holds.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest wait for a request's headers, including the wait for the next request on an
    /// idle keep-alive connection.
    pub idle_timeout: Duration,
    /// Longest a request may take once its headers are in (reading its body included).
    pub request_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// After an accept fails for want of descriptors, the loop waits this long before the next:
/// retrying at once would spin on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long connections may finish their requests once shutdown is asked for.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then lets open
/// connections finish their requests (for at most a few seconds).
pub async fn serve_with_limits(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Registry::default();
    tokio::pin!(shutdown);
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and friends: log once a minute at most, back off, carry on.
                if last_accept_error.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!("cannot accept a connection: {err}");
                    last_accept_error = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if registry.len() >= limits.max_connections && !registry.evict_oldest_idle() {
            // Every connection is in the middle of a request: refuse this one.
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let connection = registry.add();
        let (router, registry) = (router.clone(), registry.clone());
        match tls.clone() {
            None => {
                tokio::spawn(serve_connection(
                    stream, peer, router, limits, connection, registry,
                ));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(limits.idle_timeout, acceptor.accept(stream));
                    let outcome = tokio::select! {
                        outcome = handshake => outcome,
                        () = connection.evict.notified() => return registry.remove(connection.id),
                        () = connection.close.notified() => return registry.remove(connection.id),
                    };
                    match outcome {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, router, limits, connection, registry)
                                .await
                        }
                        // A failed or abandoned handshake: nothing was asked, nothing to answer.
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {err}");
                            registry.remove(connection.id);
                        }
                        Err(_) => registry.remove(connection.id),
                    }
                });
            }
        }
    }
    registry.close_all();
    let deadline = Instant::now() + SHUTDOWN_DRAIN;
    while registry.len() > 0 && Instant::now() < deadline {
        registry.changed().await;
    }
    Ok(())
}

async fn serve_connection<S>(
    stream: S,
    peer: std::net::SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    connection: Arc<Connection>,
    registry: Registry,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tracked = connection.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        let router = router.clone();
        // Only `/metrics` asks who is calling (`--metrics-open`): other requests skip the
        // extension's allocation.
        if request.uri().path() == crate::metrics_api::PATH {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let busy = tracked.busy();
        async move {
            let response =
                match tokio::time::timeout(limits.request_timeout, router.oneshot(request)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => ApiError::new(
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the request took longer than {}s: send its body at once",
                            limits.request_timeout.as_secs()
                        ),
                    )
                    .into_response(),
                };
            drop(busy);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // Evicted with no request in progress: drop it now, so its descriptor is free.
        () = connection.evict.notified() => {}
        () = connection.close.notified() => {
            // Shutting down: finish the request in progress, take no more.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_DRAIN, conn).await;
        }
    }
    registry.remove(connection.id);
}

/// One open connection, as the accept loop sees it.
struct Connection {
    id: u64,
    accepted: Instant,
    /// Requests in progress on it (0: idle or still sending headers).
    busy: AtomicU64,
    /// Asks for a graceful close (shutdown).
    close: Notify,
    /// Asks for an immediate close (evicted to make room).
    evict: Notify,
}

impl Connection {
    fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.clone())
    }
}

struct BusyGuard(Arc<Connection>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections; cheap to clone.
#[derive(Clone, Default)]
struct Registry {
    inner: Arc<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    changed: Notify,
}

impl Registry {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.inner
            .open
            .lock()
            .expect("the connection registry lock is never poisoned")
    }

    fn len(&self) -> usize {
        self.open().len()
    }

    fn add(&self) -> Arc<Connection> {
        let connection = Arc::new(Connection {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            accepted: Instant::now(),
            busy: AtomicU64::new(0),
            close: Notify::new(),
            evict: Notify::new(),
        });
        self.open().insert(connection.id, connection.clone());
        connection
    }

    fn remove(&self, id: u64) {
        self.open().remove(&id);
        self.inner.changed.notify_waiters();
    }

    /// Closes the oldest connection with no request in progress; false when there is none.
    /// It leaves the registry at once, so the new connection takes its place.
    fn evict_oldest_idle(&self) -> bool {
        let mut open = self.open();
        let oldest = open
            .values()
            .filter(|c| c.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|c| c.accepted)
            .map(|c| c.id);
        let Some(id) = oldest else {
            return false;
        };
        if let Some(connection) = open.remove(&id) {
            // notify_one keeps a permit, so a connection task not yet waiting still sees it.
            connection.evict.notify_one();
        }
        true
    }

    fn close_all(&self) {
        for connection in self.open().values() {
            connection.close.notify_one();
        }
    }

    async fn changed(&self) {
        let notified = self.inner.changed.notified();
        if self.len() == 0 {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
}
