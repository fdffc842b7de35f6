//! `sdlc orchestrate status`: whether a daemon serves the database, whether its storage takes
//! writes (a full disk shows here as `degraded`), and how many actions are in each status.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::Project;

pub async fn run(project: &Project, as_json: bool) -> anyhow::Result<ExitCode> {
    let daemon = sdlc_core::daemon_file::find_live(&project.db_path);
    let mut status: Value = project
        .backend()
        .route_read(
            async |client| client.status().await,
            |db| {
                let counts: serde_json::Map<String, Value> = db
                    .count_by_status()?
                    .into_iter()
                    .map(|(kind, n)| (kind.to_string(), json!(n)))
                    .collect();
                Ok(json!({
                    "root": project.root,
                    "db": db.location(),
                    "storage": { "state": "ok" },
                    "actions": counts,
                    "webhook_inbox": db.inbox_len()?,
                }))
            },
        )
        .await?;
    if let Some(url) = &project.pg_url {
        status["nodes"] = nodes(url)?;
    }
    status["daemon"] = match (&project.remote, &daemon) {
        // What the remote daemon said of itself is in the answer already (its pid, paths).
        (Some(remote), _) => json!({ "running": true, "server": remote.url }),
        (None, Some(info)) => {
            json!({ "running": true, "pid": info.pid, "addr": info.addr.to_string() })
        }
        (None, None) => json!({ "running": false }),
    };
    if as_json {
        outln!("{}", serde_json::to_string_pretty(&status)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    match (&project.remote, &daemon) {
        (Some(remote), _) => outln!("daemon:   {} (--server)", remote.url)?,
        (None, Some(info)) => outln!("daemon:   running (pid {}, {})", info.pid, info.base_url())?,
        (None, None) => outln!("daemon:   not running")?,
    }
    if let Some(engine) = status["engine"].as_object() {
        let uptime = engine["uptime_secs"].as_i64().unwrap_or(0);
        outln!(
            "uptime:   {} (since {})",
            uptime_text(uptime),
            engine["started_at"].as_str().unwrap_or("?")
        )?;
        outln!(
            "slots:    {} busy of {}, {} claimed ahead",
            engine["busy"],
            engine["max_concurrency"],
            engine["claimed_ahead"]
        )?;
    }
    outln!("database: {}", project.db_shown())?;
    let storage = &status["storage"];
    if storage["state"] == "ok" {
        outln!("storage:  ok")?;
    } else {
        let what = if storage["disk_full"] == true {
            "DISK FULL"
        } else {
            "DEGRADED"
        };
        outln!(
            "storage:  {what} since {}: {} (writes are refused; the daemon resumes by itself once it can write again)",
            storage["since"].as_str().unwrap_or("?"),
            storage["error"].as_str().unwrap_or("?"),
        )?;
    }
    match status["actions"].as_object() {
        Some(counts) => {
            let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            outln!("actions:  {}", counts.join(", "))?;
        }
        None => outln!("actions:  unknown (the database cannot be read now)")?,
    }
    if let Some(inbox) = status["webhook_inbox"].as_u64()
        && project.pg_url.is_none()
    {
        outln!("inbox:    {inbox} webhook deliveries waiting to be dispatched")?;
    }
    if let Some(nodes) = status["nodes"].as_array() {
        outln!("nodes:    {}", nodes.len())?;
        for node in nodes {
            outln!(
                "  {} {} (heartbeat {}, lease until {})",
                node["node"].as_str().unwrap_or("?"),
                if node["alive"] == true {
                    "alive"
                } else {
                    "PRESUMED DEAD"
                },
                node["heartbeat_at"].as_str().unwrap_or("?"),
                node["lease_until"].as_str().unwrap_or("?"),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An uptime in its two largest units: `2d 3h`, `5h 12m`, `4m 10s`, `12s`.
fn uptime_text(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The nodes registered on the PostgreSQL database at `url`, for `status`.
fn nodes(url: &str) -> anyhow::Result<Value> {
    let now = chrono::Utc::now();
    let nodes = tokio::task::block_in_place(|| {
        let store = sdlc_core::store::pg::PgStore::connect(url, 1)?;
        store.db().nodes()
    })?;
    Ok(nodes
        .iter()
        .map(|n| {
            json!({
                "node": n.node,
                "alive": n.alive_at(now),
                "started_at": n.started_at,
                "heartbeat_at": n.heartbeat_at,
                "lease_until": n.lease_until,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::uptime_text;

    #[test]
    fn uptime_is_shown_in_its_two_largest_units() {
        assert_eq!(uptime_text(12), "12s");
        assert_eq!(uptime_text(250), "4m 10s");
        assert_eq!(uptime_text(5 * 3600 + 12 * 60 + 9), "5h 12m");
        assert_eq!(uptime_text(2 * 86_400 + 3 * 3600 + 59), "2d 3h");
    }
}
