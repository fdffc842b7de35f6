//! `sdlc orchestrate`: the daemon. Owns the database, serves webhooks and the management
//! API on one listener, runs the tick engine, and stops cleanly on SIGINT or SIGTERM.
//!
//! Start-up order matters: open the database (refusing if another daemon serves it), bind
//! the listener, publish the daemon file (only then can commands find us), then run. At
//! shutdown the engine stops claiming and drains, the server closes, the file is removed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use sdlc_core::clock::{Clock, SystemClock};
use sdlc_core::daemon_file::{self, DaemonInfo};
use sdlc_core::engine::{Engine, EngineConfig, EngineSummary};
use sdlc_core::tool::RunLimits;
use sdlc_server::{AppState, AppStateConfig, ConnectionLimits};

use super::Project;
use crate::backend::open_store_for_daemon;
use crate::cli::DaemonArgs;

/// Environment variable that fixes the management token instead of a random one (tools
/// never see it: the runner removes it from their environment).
use sdlc_core::tool::runner::MANAGEMENT_TOKEN_ENV as TOKEN_ENV;

pub async fn run(project: &Project, args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    // Installed first, so a SIGTERM that comes as soon as the daemon says it listens is a
    // clean stop, not the default action (death).
    let shutdown_requested = shutdown_signal()?;
    let open_files = raise_open_file_limit();
    let limits = ConnectionLimits {
        max_connections: connection_cap(args.max_connections, open_files),
        idle_timeout: args.idle_timeout,
        request_timeout: args.request_timeout,
    };
    let notify = notify_config(args)?;
    let node = args.node.clone().unwrap_or_else(default_node_name);
    let opened = open_store_for_daemon(
        &project.db_path,
        project.pg_url.as_deref(),
        &node,
        args.lease,
    )
    .await?;
    let db = opened.store.clone();
    let report = db.open_report();
    if report.unclean {
        warn!(
            db = %project.db_path.display(),
            repaired = report.repaired,
            "the last daemon did not stop cleanly; the database passed its integrity check"
        );
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(sdlc_server::tls::load(cert, key)?),
        _ => None,
    };
    let listener = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "cannot listen on {}: pass --listen with a free address (127.0.0.1:0 picks any free port)",
            args.listen
        )
    })?;
    let bound = listener
        .local_addr()
        .context("cannot read the listener's address")?;

    store_notify_settings(db.as_ref(), &notify)?;
    let token = daemon_token(args)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::new(db.clone(), clock.clone(), engine_config(project, args));
    let state = tokio::task::block_in_place(|| {
        AppState::new(AppStateConfig {
            db: db.clone(),
            root: project.root.clone(),
            waker: engine.waker(),
            token: token.clone(),
            clock,
            max_body: usize::try_from(args.max_body).unwrap_or(usize::MAX),
            live_logs: engine.live_logs(),
            run_events: engine.run_events(),
            engine_stats: Some(engine.stats()),
            metrics: engine.metrics(),
            metrics_open: args.metrics_open,
            https: tls.is_some(),
            log_cap: usize::try_from(args.log_cap).unwrap_or(usize::MAX),
        })
    })
    .context("cannot read the webhook routes")?;
    let node_duties = opened
        .pg
        .clone()
        .map(|pg| crate::cmd::node::start(pg, node.clone(), engine.waker(), Some(state.clone())));
    let _published = publish(project, bound, token, tls.as_ref())?;
    announce(project, args, &opened, &node, bound, tls.is_some(), &limits);

    // The server stops after the engine: requests that come while running tools finish
    // their grace period are still answered (what they add waits for the next start).
    let (stop_engine, engine_stop) = watch::channel(false);
    let (stop_server, server_stop) = watch::channel(false);
    let server = tokio::spawn(sdlc_server::serve(
        listener,
        state,
        limits,
        tls.map(|tls| tls.acceptor),
        stopped(server_stop),
    ));
    let (stop_sender, sender_stop) = watch::channel(false);
    let sender = tokio::spawn(sdlc_server::notify_sender::run(
        db.clone(),
        engine.metrics(),
        sdlc_server::notify_sender::SenderConfig {
            retry: sdlc_core::notify::RetrySchedule {
                first: args.notify_backoff,
                give_up_after: args.notify_give_up,
            },
            ..Default::default()
        },
        stopped(sender_stop),
    ));
    // systemd's READY=1 once the engine has recovered what a dead daemon left (the
    // listener is bound already): from then on every command sees the recovered state.
    let mut recovered = engine.stats().ready();
    let readiness = tokio::spawn(async move {
        if recovered.wait_for(|ready| *ready).await.is_ok() {
            crate::systemd::ready(bound);
        }
    });
    let engine_run = run_on_own_thread(engine, stopped(engine_stop));
    tokio::pin!(engine_run);
    let result = tokio::select! {
        result = &mut engine_run => result,
        () = shutdown_requested => {
            info!("shutdown requested");
            crate::systemd::stopping();
            let _ = stop_engine.send(true);
            engine_run.await
        }
    };
    readiness.abort();
    let _ = stop_server.send(true);
    let _ = stop_sender.send(true);
    if let Some(duties) = node_duties {
        duties.stop().await;
    }
    if let Some(pg) = &opened.pg {
        // A clean stop leaves the registry: what it ran is recorded, nothing to recover.
        if let Err(err) = tokio::task::block_in_place(|| pg.db().forget_node(&node)) {
            warn!("cannot leave the node registry: {err}");
        }
    }
    if let Err(err) = sender.await {
        warn!("the notification sender failed: {err}");
    }
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!("the HTTP server stopped with an error: {err}"),
        Err(err) => warn!("the HTTP server task failed: {err}"),
    }
    log_summary(&result?);
    Ok(ExitCode::SUCCESS)
}

/// Publishes the daemon file other commands find this daemon by; removed when the guard
/// drops.
fn publish(
    project: &Project,
    bound: std::net::SocketAddr,
    token: String,
    tls: Option<&sdlc_server::tls::ServerTls>,
) -> anyhow::Result<daemon_file::Published> {
    daemon_file::publish(
        &project.db_path,
        &DaemonInfo {
            pid: std::process::id(),
            addr: connectable(bound),
            token,
            db: project.db_path.clone(),
            started_at: Utc::now(),
            tls_sha256: tls.map(|tls| tls.fingerprint.clone()),
        },
    )
    .with_context(|| {
        format!(
            "cannot write {}",
            daemon_file::daemon_file_path(&project.db_path).display()
        )
    })
}

/// Stores the daemon's notification settings (failing what is queued for receivers no longer
/// configured), and says where notifications go.
fn store_notify_settings(
    db: &dyn sdlc_core::store::Store,
    notify: &sdlc_core::notify::NotifyConfig,
) -> anyhow::Result<()> {
    let dropped = tokio::task::block_in_place(|| db.set_notify_config(notify, Utc::now()))
        .context("cannot store the notification settings")?;
    if dropped > 0 {
        warn!(
            dropped,
            "notifications queued for receivers no longer configured are marked failed"
        );
    }
    for receiver in &notify.receivers {
        info!(kind = receiver.kind.as_str(), receiver = %receiver.masked(), "notifications go here");
    }
    Ok(())
}

/// The management token: `SDLC_TOKEN`'s fixed one, else `--token-file`'s, else a new random one.
fn daemon_token(args: &DaemonArgs) -> anyhow::Result<String> {
    Ok(
        match std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            Some(token) => token,
            None => match &args.token_file {
                Some(path) => read_token_file(path)?,
                None => random_token(),
            },
        },
    )
}

/// Says where the daemon listens and on what store, and warns when it listens beyond
/// loopback without TLS.
fn announce(
    project: &Project,
    args: &DaemonArgs,
    opened: &crate::backend::DaemonStore,
    node: &str,
    bound: std::net::SocketAddr,
    tls: bool,
    limits: &ConnectionLimits,
) {
    if let Some(pg) = &opened.pg {
        crate::logging::say(&format!(
            "sdlc orchestrate: node {} on PostgreSQL database {}, lease {}s",
            node,
            pg.location(),
            args.lease.as_secs_f64()
        ));
    }
    if !tls && !bound.ip().is_loopback() {
        warn!(
            "listening on {bound} without TLS: tokens and webhook bodies cross the network in clear; pass --tls-cert and --tls-key, or listen on loopback behind a reverse proxy that terminates TLS (see README)"
        );
    }
    let scheme = if tls { "https" } else { "http" };
    crate::logging::say(&format!(
        "sdlc orchestrate: listening on {scheme}://{bound}, database {}, tick {}s, max concurrency {}, max connections {}",
        project.db_shown(),
        args.tick_rate.as_secs_f64(),
        args.concurrency(),
        limits.max_connections
    ));
}

/// The engine's closing figures, logged as the daemon stops.
fn log_summary(summary: &sdlc_core::engine::EngineSummary) {
    info!(
        completed = summary.completed,
        failed = summary.failed,
        recovered = summary.recovered,
        returned = summary.returned,
        left_running = summary.abandoned,
        commits = summary.commits,
        wakeups = summary.wakeups,
        "stopped"
    );
}

/// A node's name when `--node` is not given: this machine's and this process's, so two
/// daemons never share one (a restarted daemon is a new node; the others recover what the
/// old one left once its lease runs out).
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string());
    format!("{host}-{}", std::process::id())
}

/// The engine's settings from the daemon's flags (also what `plan run` uses when it runs
/// the engine itself).
pub(crate) fn engine_config(project: &Project, args: &DaemonArgs) -> EngineConfig {
    EngineConfig {
        root: project.root.clone(),
        tick: args.tick_rate,
        max_concurrency: usize::from(args.concurrency()),
        limits: RunLimits {
            timeout: args.timeout,
            nice: args.tool_nice,
            ..RunLimits::default()
        },
        shutdown_grace: args.grace,
        retention: args.keep,
        run_log: Some(sdlc_core::orphans::run_log_path(&project.db_path)),
        kill_orphans: !args.keep_orphans,
        runs_dir: Some(sdlc_core::plan::load::runs_dir(&project.root)),
        log_cap: usize::try_from(args.log_cap).unwrap_or(usize::MAX),
    }
}

/// The receivers and events of `--notify-slack`, `--notify-webhook` and `--notify-on`.
fn notify_config(args: &DaemonArgs) -> anyhow::Result<sdlc_core::notify::NotifyConfig> {
    use sdlc_core::notify::{NotifyConfig, NotifyEvent, Receiver, ReceiverKind, parse_events};
    let mut receivers = Vec::new();
    for url in &args.notify_slack {
        receivers.push(Receiver::new(ReceiverKind::Slack, url.trim()).map_err(anyhow::Error::msg)?);
    }
    for url in &args.notify_webhook {
        receivers
            .push(Receiver::new(ReceiverKind::Webhook, url.trim()).map_err(anyhow::Error::msg)?);
    }
    // The same receivers kept out of argv: one URL a line.
    let from_files = [
        (
            &args.notify_slack_file,
            ReceiverKind::Slack,
            "--notify-slack-file",
        ),
        (
            &args.notify_webhook_file,
            ReceiverKind::Webhook,
            "--notify-webhook-file",
        ),
    ];
    for (path, kind, flag) in from_files {
        let Some(path) = path else { continue };
        for url in crate::secret_file::lines(path, flag)? {
            receivers.push(
                Receiver::new(kind, &url)
                    .map_err(|err| anyhow::anyhow!("{flag} {}: {err}", path.display()))?,
            );
        }
    }
    let events = if args.notify_on.is_empty() {
        NotifyEvent::DEFAULT.to_vec()
    } else {
        parse_events(&args.notify_on).map_err(anyhow::Error::msg)?
    };
    Ok(NotifyConfig {
        receivers,
        events,
        public_url: args.public_url.clone(),
    })
}

/// Raises the soft limit on open files to the hard limit (a daemon holding many connections
/// and tool pipes needs more than the usual 1024); returns the limit now in force.
fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => return hard,
            Err(err) => warn!(soft, hard, "cannot raise the open-file limit: {err}"),
        }
    }
    soft
}

/// Connections allowed at once: what the user asked, else 1024; never more than half the
/// open-file limit, which leaves the rest for tools' pipes, the database and the run log.
fn connection_cap(asked: Option<u32>, open_files: u64) -> usize {
    let ceiling = usize::try_from(open_files / 2)
        .unwrap_or(usize::MAX)
        .max(16);
    let wanted = asked.map_or(1024, |n| n as usize);
    if wanted > ceiling {
        warn!(
            wanted,
            ceiling, "--max-connections is above half the open-file limit; using {ceiling}"
        );
    }
    wanted.min(ceiling)
}

/// Runs the engine on a thread of its own, with a single-threaded runtime: the loop, its
/// runs' tasks (pipes, exits, timers) and its wake-ups then stay on one thread instead of
/// hopping between the server's workers and the loop (measured over 2,000 short runs: a third
/// fewer context switches and a fifth less daemon CPU). Database work still goes to that
/// runtime's blocking pool. The answer is sent only once the runtime is gone, so every handle
/// it held on the database is released before the caller closes it.
pub(crate) async fn run_on_own_thread(
    engine: Engine,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<EngineSummary> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => {
                    let result = runtime.block_on(engine.run(shutdown));
                    drop(runtime);
                    result
                }
                Err(err) => Err(anyhow::anyhow!("cannot start the engine's runtime: {err}")),
            };
            let _ = done_tx.send(result);
        })
        .context("cannot start the engine's thread")?;
    done_rx.await.map_err(|_| {
        anyhow::anyhow!(
            "the engine's thread stopped without an answer (it panicked; see the log above)"
        )
    })?
}

/// Completes once the stop flag is raised.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Completes at Ctrl-C (SIGINT) or SIGTERM; the handlers are in place when this returns.
pub(crate) fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// A wildcard bind is reachable on loopback; that is what commands should dial.
fn connectable(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), bound.port())
        }
        _ => bound,
    }
}

/// The management token kept in a file (`--token-file`): its first line.
fn read_token_file(path: &std::path::Path) -> anyhow::Result<String> {
    crate::secret_file::first_line(path, "token")
}

/// 256 bits from the OS's random source (uuid v4 draws on getrandom).
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
