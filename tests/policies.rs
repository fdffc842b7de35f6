//! End-to-end tests of the scheduling policies: cron with time zones, retries, overlap,
//! catch-up, pause/resume, run now, next fire times and retention, through the real binary.

mod common;

use common::Backend;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Project, wait_for, wait_for_status};
use serde_json::Value;

fn time(action: &Value, field: &str) -> DateTime<Utc> {
    action[field].as_str().unwrap().parse().unwrap()
}

fn in_series<'a>(actions: &'a [Value], series: &str) -> Vec<&'a Value> {
    let mut found: Vec<&Value> = actions.iter().filter(|a| a["series"] == series).collect();
    found.sort_by_key(|a| time(a, "scheduled_at"));
    found
}

fn count_status(actions: &[&Value], status: &str) -> usize {
    actions.iter().filter(|a| a["status"] == status).count()
}

/// RFC 3339 for `secs` seconds before now.
fn ago(secs: i64) -> String {
    (Utc::now() - chrono::Duration::seconds(secs)).to_rfc3339()
}

fn cron_with_seconds_fires_on_its_slots_and_next_shows_them_in_the_zone(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let daemon = project.daemon(&[]);
    let id = project.add(&[
        "cron",
        "--tool",
        "count",
        "--cron",
        "* * * * * *",
        "--tz",
        "Europe/Berlin",
    ]);
    let actions = wait_for("three cron runs", Duration::from_secs(15), || {
        let actions = project.list();
        (count_status(&in_series(&actions, &id), "completed") >= 3).then_some(actions)
    });
    drop(daemon);
    for occurrence in in_series(&actions, &id) {
        assert_eq!(
            time(occurrence, "scheduled_at").timestamp_subsec_millis(),
            0,
            "on a second boundary"
        );
        assert_eq!(occurrence["cron"], "* * * * * *");
        assert_eq!(occurrence["tz"], "Europe/Berlin");
    }

    let nightly = project.add(&[
        "nightly",
        "--tool",
        "count",
        "--cron",
        "0 2 * * *",
        "--tz",
        "Europe/Berlin",
    ]);
    let out = project.sdlc_ok(&["orchestrate", "next", &nightly, "--count", "5"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for line in &lines {
        // UTC first, then the wall-clock time in Berlin: always 02:00 there.
        assert!(
            line.contains("T02:00:00+01:00") || line.contains("T02:00:00+02:00"),
            "{line}"
        );
    }
    let bad = project.sdlc(&[
        "orchestrate",
        "add",
        "x",
        "--tool",
        "count",
        "--cron",
        "0 25 * * *",
    ]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("cannot read cron expression '0 25 * * *'")
    );
}

fn retries_back_off_and_every_attempt_is_visible(backend: Backend) {
    let project = Project::on(backend);
    let log = project.runs_log();
    // Fails twice, then succeeds.
    project.tool(
        "flaky",
        &format!(
            "echo try >> {0}\nif [ $(wc -l < {0}) -lt 3 ]; then echo \"not yet\" >&2; exit 1; fi\necho '{{\"ok\":true}}'",
            log.display()
        ),
    );
    let daemon = project.daemon(&[]);
    let id = project.add(&[
        "flaky",
        "--tool",
        "flaky",
        "--retries",
        "3",
        "--backoff",
        "200ms",
    ]);
    let action = wait_for_status(&project, &id, "completed", Duration::from_secs(15));
    drop(daemon);
    let attempts: Vec<(u64, &str)> = action["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(attempts, [(1, "failed"), (2, "failed"), (3, "completed")]);
    assert!(
        action["attempts"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not yet")
    );
    // The waits grew: the second retry came at least ~2x the base backoff after the failure.
    let gap = |i: usize| {
        let finished: DateTime<Utc> = action["attempts"][i]["finished_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let next_start: DateTime<Utc> = if i + 1 < 2 {
            action["attempts"][i + 1]["started_at"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        } else {
            time(&action, "started_at")
        };
        next_start - finished
    };
    assert!(gap(0) >= chrono::Duration::milliseconds(160), "{}", gap(0));
    assert!(gap(1) >= chrono::Duration::milliseconds(320), "{}", gap(1));
    let shown = project.sdlc_ok(&["orchestrate", "show", &id]);
    assert_eq!(shown.matches("attempt 1:").count(), 1, "{shown}");
    assert!(
        shown.contains("attempt 1:") && shown.contains("attempt 3:"),
        "{shown}"
    );
}

/// A recurring action every second whose runs take 1.5 s, under each overlap policy.
fn overlapping(overlap: &str) -> Vec<Value> {
    let project = Project::new();
    let log = project.runs_log();
    project.tool(
        "slow",
        &format!(
            "echo + >> {0}\nsleep 1.5\necho - >> {0}\necho '{{\"ok\":true}}'",
            log.display()
        ),
    );
    let daemon = project.daemon(&[]);
    let id = project.add(&[
        "slow",
        "--tool",
        "slow",
        "--every",
        "1s",
        "--overlap",
        overlap,
    ]);
    let actions = wait_for("three runs finished", Duration::from_secs(20), || {
        let actions = project.list();
        (count_status(&in_series(&actions, &id), "completed") >= 3).then_some(actions)
    });
    drop(daemon);
    let mut running = 0i32;
    let mut peak = 0;
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        running += if line == "+" { 1 } else { -1 };
        peak = peak.max(running);
    }
    let mut series: Vec<Value> = in_series(&actions, &id).into_iter().cloned().collect();
    series.push(serde_json::json!({"peak_concurrency": peak}));
    series
}

#[test]
fn overlap_skip_records_skipped_occurrences() {
    let series = overlapping("skip");
    let peak = series.last().unwrap()["peak_concurrency"].as_i64().unwrap();
    assert_eq!(peak, 1);
    let skipped: Vec<&Value> = series.iter().filter(|a| a["status"] == "skipped").collect();
    assert!(!skipped.is_empty(), "{series:#?}");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("still running")
    );
}

#[test]
fn overlap_queue_one_runs_back_to_back_without_piling_up() {
    let series = overlapping("queue-one");
    let peak = series.last().unwrap()["peak_concurrency"].as_i64().unwrap();
    assert_eq!(peak, 1);
    assert!(
        series.iter().all(|a| a["status"] != "skipped"),
        "{series:#?}"
    );
    // At most one occurrence ever waits behind a run.
    let waiting = series
        .iter()
        .filter(|a| !a["queued_behind"].is_null())
        .count();
    assert!(waiting <= 1, "{series:#?}");
}

#[test]
fn overlap_allow_runs_concurrently() {
    let series = overlapping("allow");
    let peak = series.last().unwrap()["peak_concurrency"].as_i64().unwrap();
    assert!(peak >= 2, "runs overlapped: peak {peak}");
}

#[test]
fn catch_up_policies_after_missed_slots() {
    for policy in ["latest", "none", "all"] {
        let project = Project::new();
        project.counting_tool("count");
        // Added as if the daemon had been down for the last ten seconds.
        let id = project.add(&[
            policy,
            "--tool",
            "count",
            "--every",
            "1s",
            "--at",
            &ago(10),
            "--catch-up",
            policy,
            "--overlap",
            "allow",
        ]);
        let start = Utc::now();
        let daemon = project.daemon(&[]);
        // Done once a slot after start-up has run: catching up is over by then.
        let actions = wait_for(
            "a slot after start-up to run",
            Duration::from_secs(20),
            || {
                let actions = project.list();
                let back_on_schedule = in_series(&actions, &id)
                    .iter()
                    .any(|a| a["status"] == "completed" && time(a, "scheduled_at") >= start);
                back_on_schedule.then_some(actions)
            },
        );
        drop(daemon);
        let series = in_series(&actions, &id);
        let missed: Vec<&&Value> = series
            .iter()
            .filter(|a| time(a, "scheduled_at") < start)
            .collect();
        let ran = count_status(&missed.iter().map(|a| **a).collect::<Vec<_>>(), "completed");
        let skipped = count_status(&missed.iter().map(|a| **a).collect::<Vec<_>>(), "skipped");
        match policy {
            "latest" => assert_eq!((ran, skipped), (1, 0), "{series:#?}"),
            "none" => {
                assert_eq!((ran, skipped), (0, 1), "{series:#?}");
                assert!(
                    missed[0]["reason"]
                        .as_str()
                        .unwrap()
                        .contains("catch-up is none")
                );
            }
            _ => {
                // Every missed slot (10 or 11, as the seconds fall) ran, and none was skipped.
                assert!(
                    (10..=11).contains(&ran) && skipped == 0,
                    "{ran} runs: {series:#?}"
                );
            }
        }
    }
}

fn pause_resume_and_run_now(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    let daemon = project.daemon(&[]);
    let id = project.add(&[
        "hourly", "--tool", "count", "--every", "1h", "--at", "now+2s",
    ]);
    project.sdlc_ok(&[
        "orchestrate",
        "pause",
        &id,
        "--reason",
        "maintenance window",
    ]);
    let paused = project.find(&id);
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["reason"], "maintenance window");
    let listed = project.sdlc_ok(&["orchestrate", "list", "--status", "paused"]);
    assert!(listed.contains(&id), "{listed}");

    // Run now: fires once at once, recorded as manual; the schedule does not move.
    let manual = project
        .sdlc_ok(&["orchestrate", "run", &id])
        .trim()
        .to_string();
    let ran = wait_for_status(&project, &manual, "completed", Duration::from_secs(10));
    assert_eq!(ran["trigger"], "manual");
    assert_eq!(ran["series"], id.as_str());
    assert_eq!(project.find(&id)["status"], "paused");

    // Past its due time while paused, it has not fired: only the manual run happened.
    let due = time(&paused, "due_at");
    wait_for("the paused slot to pass", Duration::from_secs(10), || {
        (Utc::now() > due + chrono::Duration::seconds(1)).then_some(())
    });
    assert_eq!(project.runs_of("hourly"), 1);

    project.sdlc_ok(&["orchestrate", "resume", &id]);
    wait_for_status(&project, &id, "completed", Duration::from_secs(10));
    assert_eq!(project.runs_of("hourly"), 2);
    // And the next occurrence is an hour after the original slot.
    let out = project.sdlc_ok(&["orchestrate", "next", &id, "--count", "1"]);
    let next: DateTime<Utc> = out.trim().parse().unwrap();
    assert_eq!(next - due, chrono::Duration::hours(1));
    let err = project.sdlc(&["orchestrate", "resume", &id]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("not paused"));
    drop(daemon);
}

#[test]
fn retention_keeps_at_least_a_minute_and_never_what_just_finished() {
    // Pruning itself is proven with explicit clocks (engine_tests, store tests); end to end
    // a real minute would be too long, so this checks the bound and what is kept.
    let project = Project::new();
    project.counting_tool("count");
    for keep in ["0s", "1s", "59s"] {
        let out = project.sdlc(&["orchestrate", "--keep", keep, "--listen", "127.0.0.1:0"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("at least a minute"),
            "--keep {keep}: {stderr}"
        );
    }
    let daemon = project.daemon(&["--keep", "1m", "--tick-rate", "0.2"]);
    let done = project.add(&["done", "--tool", "count"]);
    let future = project.add(&["future", "--tool", "count", "--at", "now+1h"]);
    wait_for_status(&project, &done, "completed", Duration::from_secs(10));
    assert_eq!(project.find(&done)["status"], "completed");
    assert_eq!(project.find(&future)["status"], "pending");
    drop(daemon);
}

fn policy_flags_are_checked(backend: Backend) {
    let project = Project::on(backend);
    project.counting_tool("count");
    for (args, expected) in [
        (vec!["--overlap", "skip"], "apply to recurring actions"),
        (
            vec!["--every", "1m", "--overlap", "never"],
            "unknown policy 'never'",
        ),
        (
            vec!["--every", "1m", "--catch-up", "some"],
            "unknown policy 'some'",
        ),
        (
            vec!["--cron", "0 2 * * *", "--tz", "Moon/Base"],
            "unknown time zone 'Moon/Base'",
        ),
        (
            vec!["--every", "1m", "--cron", "0 2 * * *"],
            "either --every or --cron",
        ),
        (vec!["--retries", "101"], "too many"),
        (
            vec!["--retries", "2", "--backoff", "soon"],
            "cannot read duration 'soon'",
        ),
    ] {
        let mut full = vec!["orchestrate", "add", "x", "--tool", "count"];
        full.extend(args.iter().copied());
        let out = project.sdlc(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        !project.db_path().exists(),
        "a refused add stored something"
    );
}

on_both_backends!(
    cron_with_seconds_fires_on_its_slots_and_next_shows_them_in_the_zone,
    retries_back_off_and_every_attempt_is_visible,
    pause_resume_and_run_now,
    policy_flags_are_checked,
);
