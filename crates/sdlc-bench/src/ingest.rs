//! Figure 4: webhook ingest. Durable 202s per second from a load generator on loopback
//! (256 connections, 4 KiB push events: `payload.rs`), against the same HTTP stack (axum, same version, same
//! body reading) answering 202 without storing anything. Then: did every acknowledged request
//! run its tool?
//!
//! 4b splits the figure: the same load with the route's runs held back (one slot, taken by a
//! run that sleeps through the load), so nothing but storing competes with acknowledging. The
//! gap between 4 and 4b is what running a tool per request on the same cores costs ingress.
//!
//! Targets: with the route's runs competing for the same cores (4), at least 10,000 durable
//! 202/s and every acknowledged request runs; storing alone (4b), at least half the rate of
//! the server that stores nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::json;

use crate::Sizes;
use crate::support::{Daemon, Project, TRIVIAL_TOOL, report};

const CONNECTIONS: usize = 256;
const BODY_BYTES: usize = 4096;

pub async fn run(sizes: &Sizes) -> anyhow::Result<()> {
    let duration = Duration::from_secs(sizes.ingest_secs);
    let body = crate::payload::push_event(BODY_BYTES);

    let baseline_addr = start_baseline()?;
    let baseline = load(
        &format!("http://{baseline_addr}/webhooks/load"),
        &body,
        duration,
    )
    .await?;

    let project = Project::new()?;
    project.tool("trivial", TRIVIAL_TOOL)?;
    let daemon = Daemon::start(&project, &["--tick-rate", "60"])?;
    let url = daemon.add_route("load", "trivial").await?;
    let ours = load(&url, &body, duration).await?;

    let ours_rate = ours as f64 / duration.as_secs_f64();
    let base_rate = baseline as f64 / duration.as_secs_f64();
    let ratio = ours_rate / base_rate;
    report(
        &format!(
            "4. webhook ingest, 4 KiB push events ({} bytes in LZ4), 256 connections",
            crate::payload::compressed_len(&body)
        ),
        &format!("sdlc {ours_rate:.0} durable 202/s"),
        &format!("axum answering without storing {base_rate:.0} 202/s"),
        Some(ratio),
        ">= 10000/s with the runs competing",
        ours_rate >= 10_000.0,
    );

    let started = Instant::now();
    daemon
        .wait_completed(ours, Duration::from_secs(600))
        .await?;
    report(
        "5a. acknowledged requests that ran their tool",
        &format!(
            "{ours} of {ours} (all ran within {:.1} s after the load stopped)",
            started.elapsed().as_secs_f64()
        ),
        "every acknowledged request",
        None,
        "all",
        true,
    );
    daemon.stop()?;

    let held = storage_alone(&body, duration).await?;
    let held_rate = held as f64 / duration.as_secs_f64();
    let held_ratio = held_rate / base_rate;
    report(
        "4b. the same, runs held back (one slot, busy all along): storing alone",
        &format!("sdlc {held_rate:.0} durable 202/s"),
        &format!("axum answering without storing {base_rate:.0} 202/s"),
        Some(held_ratio),
        "ratio >= 0.5",
        held_ratio >= 0.5,
    );
    Ok(())
}

/// Figure 4's load against a daemon whose one slot is taken by a run that sleeps until the
/// daemon stops: every delivery is stored, none runs meanwhile.
async fn storage_alone(body: &str, duration: Duration) -> anyhow::Result<u64> {
    let project = Project::new()?;
    project.tool("held", HELD_TOOL)?;
    let daemon = Daemon::start(
        &project,
        &[
            "--tick-rate",
            "60",
            "--max-concurrency",
            "1",
            "--grace",
            "0s",
        ],
    )?;
    let url = daemon.add_route("held", "held").await?;
    let accepted = load(&url, body, duration).await?;
    daemon.stop()?;
    Ok(accepted)
}

/// Takes its slot until the daemon stops it (`--grace 0s` kills it at once).
const HELD_TOOL: &str = "#!/bin/sh\nexec sleep 3600\n";

/// Posts `body` to `url` from `CONNECTIONS` concurrent clients for `duration`; returns how
/// many requests were answered 202.
pub(crate) async fn load(url: &str, body: &str, duration: Duration) -> anyhow::Result<u64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()?;
    let accepted = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let client = client.clone();
            let url = url.to_string();
            let body = body.to_string();
            let accepted = accepted.clone();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    if let Ok(response) = sent
                        && response.status() == StatusCode::ACCEPTED
                    {
                        let _ = response.bytes().await;
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    Ok(accepted.load(Ordering::Relaxed))
}

/// The baseline: axum on its own runtime thread, reading the body and answering 202 with an
/// id, storing nothing.
fn start_baseline() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the baseline server");
        runtime.block_on(async move {
            let app = Router::new().route(
                "/webhooks/{*path}",
                post(|body: axum::body::Bytes| async move {
                    let _ = body.len();
                    (
                        StatusCode::ACCEPTED,
                        axum::Json(json!({"id": uuid::Uuid::new_v4(), "duplicate": false})),
                    )
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(addr)
}
