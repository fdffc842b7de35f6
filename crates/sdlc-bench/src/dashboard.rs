//! Figure 9: the dashboard over a big store. The history of figure 8 (H actions), 500
//! recurring series each with 30 finished occurrences, 20 webhook routes with 1,000 logged
//! requests (a fifth refused), a plan: (9a) every page's request time on loopback with a
//! session (the server renders each whole), against `GET /status` on the same daemon; (9b)
//! first contentful paint of each page in headless Chromium (`tests/browser/paint.mjs`, when
//! Chromium and the browser tests' node_modules are there).

use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use serde_json::{Value, json};

use sdlc_core::model::Recurrence;
use sdlc_core::store::Store;
use sdlc_core::{Action, ActionDb, ActionStatus, ActionTrigger};

use crate::Sizes;
use crate::support::{Daemon, Project, TRIVIAL_TOOL, percentile, report};

const SERIES: usize = 500;
const OCCURRENCES: usize = 30;
const ROUTES: usize = 20;
const REQUESTS: usize = 1_000;
const SAMPLES: usize = 60;

pub async fn run(sizes: &Sizes) -> anyhow::Result<()> {
    let project = Project::new()?;
    for t in 0..10 {
        project.tool(&format!("tool-{t}"), TRIVIAL_TOOL)?;
    }
    let plans = project.root().join(".sdlc/plans");
    std::fs::create_dir_all(&plans)?;
    let steps: Vec<Value> = (0..8)
        .map(|i| {
            let deps: Vec<String> = if i == 0 {
                vec![]
            } else {
                vec![format!("s{}", (i - 1) / 2)]
            };
            json!({"id": format!("s{i}"), "tool": "tool-0", "depends_on": deps})
        })
        .collect();
    std::fs::write(
        plans.join("tree.json"),
        json!({"plan_id": "tree", "steps": steps}).to_string(),
    )?;
    let started = Instant::now();
    let waiting = crate::tracker::fill(&project, sizes.history)?;
    let series = fill_series(&project)?;
    println!(
        "9. {} actions and {SERIES} schedules of {OCCURRENCES} runs stored in {:.1} s",
        sizes.history + SERIES * (OCCURRENCES + 1),
        started.elapsed().as_secs_f64()
    );
    let daemon = Daemon::start(&project, &["--tick-rate", "60"])?;
    let routes = fill_requests(&daemon).await?;
    let cookie = log_in(&daemon).await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let pages = [
        "/".to_string(),
        "/runs".to_string(),
        "/runs?status=failed&tool=tool-3&since=7d".to_string(),
        "/groups".to_string(),
        format!("/actions/{}", waiting[0]),
        format!("/actions/{series}"),
        "/schedules".to_string(),
        "/webhooks".to_string(),
        format!("/webhooks?path={}", routes[0]),
        "/plans".to_string(),
        "/plans/tree".to_string(),
        "/tools".to_string(),
    ];
    let time = |path: String, min_bytes: usize| {
        let client = client.clone();
        let cookie = cookie.clone();
        let url = format!("http://{}{path}", daemon.addr);
        async move {
            let mut times = Vec::with_capacity(SAMPLES);
            for _ in 0..SAMPLES {
                let started = Instant::now();
                let response = client.get(&url).header("Cookie", &cookie).send().await?;
                let status = response.status();
                let body = response.bytes().await?;
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(status.is_success(), "{path}: {status}");
                anyhow::ensure!(
                    body.len() >= min_bytes,
                    "{path}: an answer of {} bytes",
                    body.len()
                );
            }
            times.sort_by(f64::total_cmp);
            Ok::<_, anyhow::Error>(times)
        }
    };
    let mut worst = 0.0f64;
    let mut lines = Vec::new();
    for path in &pages {
        let times = time(path.clone(), 1000).await?;
        let p99 = percentile(&times, 99.0);
        worst = worst.max(p99);
        lines.push(format!(
            "{path} p50 {:.1} ms p99 {p99:.1} ms",
            percentile(&times, 50.0)
        ));
    }
    let base = time("/api/orchestrator/status".to_string(), 100).await?;
    for line in &lines {
        println!("   {line}");
    }
    report(
        &format!(
            "9a. dashboard pages, {} stored (request on loopback, whole page rendered)",
            sizes.history
        ),
        &format!("worst page p99 {worst:.1} ms over {} pages", pages.len()),
        &format!(
            "GET /status p50 {:.2} ms, p99 {:.2} ms",
            percentile(&base, 50.0),
            percentile(&base, 99.0)
        ),
        None,
        "every page p99 < 50 ms",
        worst < 50.0,
    );
    paint(&daemon, &cookie, &pages)?;
    daemon.stop()
}

/// `SERIES` recurring actions, each the head of `OCCURRENCES` finished runs; the first
/// head's id.
fn fill_series(project: &Project) -> anyhow::Result<uuid::Uuid> {
    let db = ActionDb::open(&project.db_path())?;
    let now = Utc::now();
    let mut first = None;
    for s in 0..SERIES {
        let mut batch = Vec::with_capacity(OCCURRENCES + 1);
        let mut head = Action::new(
            format!("schedule-{s:03}"),
            format!("tool-{}", s % 10),
            json!({}),
            ActionTrigger::Scheduled {
                next_tick_at: now + chrono::Duration::hours(1),
            },
            now,
        );
        head.recurrence = Some(Recurrence::Every {
            interval_ms: 3_600_000,
        });
        for k in 0..OCCURRENCES {
            let at = now - chrono::Duration::hours((OCCURRENCES - k) as i64);
            let mut run = head.clone();
            run.id = uuid::Uuid::now_v7();
            run.created_at = at;
            run.trigger = ActionTrigger::Scheduled { next_tick_at: at };
            run.status = if k % 7 == 3 {
                ActionStatus::Failed {
                    reason: "exited with status 1".into(),
                }
            } else {
                ActionStatus::Completed {
                    result: json!({"ok": true}),
                }
            };
            run.started_at = Some(at);
            run.finished_at = Some(at + chrono::Duration::seconds(2));
            batch.push(run);
        }
        // Inserted last, so the head of the series is the waiting occurrence.
        first.get_or_insert(head.id);
        batch.push(head);
        db.insert_many(&batch)?;
    }
    first.context("no series")
}

/// `ROUTES` routes and `REQUESTS` requests to them, one in five refused (no such route).
async fn fill_requests(daemon: &Daemon) -> anyhow::Result<Vec<String>> {
    let mut paths = Vec::new();
    for r in 0..ROUTES {
        let path = format!("hooks/route-{r}");
        daemon.add_route(&path, "tool-0").await?;
        paths.push(path);
    }
    let client = reqwest::Client::new();
    for n in 0..REQUESTS {
        let path = if n % 5 == 0 {
            "hooks/missing".to_string()
        } else {
            paths[n % ROUTES].clone()
        };
        client
            .post(format!("http://{}/webhooks/{path}", daemon.addr))
            .body(format!("{{\"n\": {n}}}"))
            .send()
            .await?;
    }
    Ok(paths)
}

/// A session cookie, through the one-time login `sdlc orchestrate ui` would print.
async fn log_in(daemon: &Daemon) -> anyhow::Result<String> {
    let answer = daemon
        .api(reqwest::Method::POST, "/ui/login-token", None)
        .await?;
    let path = answer["path"].as_str().context("no login path")?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let response = client
        .get(format!("http://{}{path}", daemon.addr))
        .send()
        .await?;
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .context("no session cookie")?;
    Ok(cookie.split(';').next().unwrap_or_default().to_string())
}

/// 9b: first contentful paint of every page in headless Chromium.
fn paint(daemon: &Daemon, cookie: &str, pages: &[String]) -> anyhow::Result<()> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if !chromium.exists() || !script.join("node_modules/playwright-core").exists() {
        println!(
            "9b. first paint: not measured: needs /usr/bin/chromium and `npm ci` in tests/browser"
        );
        return Ok(());
    }
    let out = std::process::Command::new("node")
        .arg(script.join("paint.mjs"))
        .env("SDLC_BASE", format!("http://{}", daemon.addr))
        .env("SDLC_COOKIE", cookie)
        .env("SDLC_PAGES", serde_json::to_string(pages)?)
        .output()
        .context("run node")?;
    anyhow::ensure!(
        out.status.success(),
        "paint.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let painted: Value = serde_json::from_slice(&out.stdout)?;
    let mut worst = 0.0f64;
    for page in painted.as_array().context("a list")? {
        let ms = page["first_contentful_paint_ms"]
            .as_f64()
            .unwrap_or(f64::MAX);
        worst = worst.max(ms);
        println!(
            "   {} first paint {ms:.0} ms",
            page["path"].as_str().unwrap_or("")
        );
    }
    report(
        "9b. dashboard first contentful paint, headless Chromium on loopback",
        &format!("worst page {worst:.0} ms over {} pages", pages.len()),
        "none",
        None,
        "every page < 1000 ms",
        worst < 1000.0,
    );
    Ok(())
}
