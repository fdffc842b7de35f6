//! Run history end to end: keyset pages that stay exact while actions arrive, every filter
//! (API and CLI), the CSV export read back with a real CSV parser, run ids (set by the user,
//! formatted per occurrence, carried by plan steps), log excerpts, and bad queries named.

mod common;

use common::Backend;

use std::collections::HashSet;
use std::time::Duration;

use common::{Project, http, wait_for, wait_for_status};
use serde_json::{Value, json};

fn get(daemon: &common::Daemon, token: &str, path: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    http(daemon.addr, "GET", path, &[("Authorization", &auth)], b"")
}

fn get_json(daemon: &common::Daemon, token: &str, path: &str) -> Value {
    let (status, body) = get(daemon, token, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Adds an action through the API (far in the future, so it only waits); returns its id.
fn add_waiting(daemon: &common::Daemon, token: &str, label: &str) -> String {
    let auth = format!("Bearer {token}");
    let body = json!({"label": label, "tool_name": "ok", "at": "2099-01-01T00:00:00Z"});
    let (status, answer) = http(
        daemon.addr,
        "POST",
        "/api/orchestrator/actions",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 201, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    answer["id"].as_str().unwrap().to_string()
}

fn ok_tool(project: &Project) {
    project.tool("ok", "cat > /dev/null\necho '{\"ok\": true}'");
}

fn paging_2500_actions_while_new_ones_arrive_returns_each_exactly_once(backend: Backend) {
    let project = Project::on(backend);
    ok_tool(&project);
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let token = daemon.token(&project);
    let stored: HashSet<String> = (0..2_500)
        .map(|i| add_waiting(&daemon, &token, &format!("svc-{i}")))
        .collect();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut arrived = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/orchestrator/actions/paged?limit=50&cursor={c}"),
            None => "/api/orchestrator/actions/paged?limit=50".to_string(),
        };
        let page = get_json(&daemon, &token, &path);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 50);
        // Newest first within the page.
        let times: Vec<&str> = items
            .iter()
            .map(|a| a["created_at"].as_str().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
        seen.extend(items.iter().map(|a| a["id"].as_str().unwrap().to_string()));
        // New runs arrive between pages: they are newer than the cursor, never on a later page.
        for _ in 0..2 {
            add_waiting(&daemon, &token, "late");
            arrived += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an action came twice");
    assert_eq!(unique, stored, "pages held other actions than the 2,500");
    assert_eq!(arrived, 100);

    // The CLI pages the same way: jsonl with no --limit streams every match.
    let out = project.sdlc_ok(&[
        "orchestrate",
        "list",
        "--format",
        "jsonl",
        "--label",
        "late",
    ]);
    assert_eq!(out.lines().count(), 100);
    // A table of 50 says where the next page starts.
    let out = project
        .command(&["orchestrate", "list", "--limit", "50"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cursor = stderr
        .split("--cursor ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no cursor on stderr: {stderr}"));
    let next = project.sdlc_ok(&[
        "orchestrate",
        "list",
        "--limit",
        "50",
        "--cursor",
        cursor,
        "--format",
        "json",
    ]);
    let next: Vec<Value> = serde_json::from_str(&next).unwrap();
    assert_eq!(next.len(), 50);
    let first = project.sdlc_ok(&["orchestrate", "list", "--limit", "50", "--format", "json"]);
    let first: Vec<Value> = serde_json::from_str(&first).unwrap();
    let ids = |v: &[Value]| -> HashSet<String> {
        v.iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(ids(&first).is_disjoint(&ids(&next)));
}

fn every_filter_narrows_history_in_the_api_and_the_cli(backend: Backend) {
    let project = Project::on(backend);
    ok_tool(&project);
    project.tool(
        "broken",
        "cat > /dev/null\necho 'first line of trouble' >&2\nfor i in $(seq 2 99); do echo \"line $i\" >&2; done\necho 'last words' >&2\nexit 3",
    );
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let token = daemon.token(&project);
    let mut ids = Vec::new();
    for (label, tool, run) in [
        ("seo.validate", "ok", "nightly-2026-12-01"),
        ("code.review", "broken", "nightly-2026-12-01"),
        ("seo.validate", "ok", "nightly-2026-12-02"),
        ("dx.check", "broken", "nightly-2026-12-02"),
    ] {
        ids.push(project.add(&[label, "--tool", tool, "--run-id", run]));
    }
    let untagged = project.add(&["seo.validate", "--tool", "ok"]);
    for (i, id) in ids.iter().enumerate() {
        let want = if i % 2 == 0 { "completed" } else { "failed" };
        wait_for_status(&project, id, want, Duration::from_secs(20));
    }
    wait_for_status(&project, &untagged, "completed", Duration::from_secs(20));

    let page = |query: &str| -> Vec<String> {
        let page = get_json(
            &daemon,
            &token,
            &format!("/api/orchestrator/actions/paged?{query}"),
        );
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let set = |v: Vec<String>| v.into_iter().collect::<HashSet<_>>();
    let of = |idx: &[usize]| idx.iter().map(|&i| ids[i].clone()).collect::<HashSet<_>>();
    assert_eq!(set(page("status=failed")), of(&[1, 3]));
    assert_eq!(set(page("tool=broken")), of(&[1, 3]));
    let mut seo = of(&[0, 2]);
    seo.insert(untagged.clone());
    assert_eq!(set(page("label=seo.validate")), seo);
    assert_eq!(set(page("run_id=nightly-2026-12-01")), of(&[0, 1]));
    assert_eq!(
        set(page("run_id=nightly-2026-12-02&status=completed&tool=ok")),
        of(&[2])
    );
    assert_eq!(page("since=1h").len(), 5);
    assert!(page("until=2020-01-01T00:00:00Z").is_empty());
    assert!(page("since=2099-01-01T00:00:00Z").is_empty());
    // The old list keeps working, with the run id filter too.
    let listed = get_json(
        &daemon,
        &token,
        "/api/orchestrator/actions?run_id=nightly-2026-12-02&status=failed",
    );
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[3].as_str()]);

    // The CLI's filters read the same index.
    let cli = |args: &[&str]| -> HashSet<String> {
        let mut full = vec!["orchestrate", "list", "--format", "json"];
        full.extend_from_slice(args);
        let out: Vec<Value> = serde_json::from_str(&project.sdlc_ok(&full)).unwrap();
        out.iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(cli(&["--run-id", "nightly-2026-12-01"]), of(&[0, 1]));
    assert_eq!(cli(&["--label", "dx.check", "--since", "1d"]), of(&[3]));
    assert!(cli(&["--until", "2020-01-01T00:00:00Z"]).is_empty());

    // A failure keeps the first and last lines of stderr, and the table shows durations.
    let failed = project.find(&ids[1]);
    let excerpt = failed["log_excerpt"].as_str().unwrap();
    assert!(excerpt.starts_with("first line of trouble"), "{excerpt}");
    assert!(excerpt.ends_with("last words"), "{excerpt}");
    assert!(excerpt.len() < 4096);
    assert_eq!(failed["run_id"], "nightly-2026-12-01");
    let table = project.sdlc_ok(&["orchestrate", "list", "--run-id", "nightly-2026-12-01"]);
    assert!(
        table.lines().next().unwrap().contains("DURATION"),
        "{table}"
    );

    // Bad queries are named.
    for (query, says) in [
        ("cursor=nope", "malformed cursor"),
        ("cursor=h1zz", "malformed cursor"),
        ("limit=0", "limit '0'"),
        ("limit=1001", "from 1 to 1000"),
        ("since=yesterday", "since 'yesterday'"),
        ("status=done", "unknown status"),
    ] {
        let (status, body) = get(
            &daemon,
            &token,
            &format!("/api/orchestrator/actions/paged?{query}"),
        );
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
    }
    let out = project.sdlc(&["orchestrate", "list", "--cursor", "bogus"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cursor: malformed cursor"));
    let out = project.sdlc(&["orchestrate", "list", "--since", "later"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since 'later'"));
}

fn the_csv_export_parses_with_a_real_csv_parser(backend: Backend) {
    let project = Project::on(backend);
    ok_tool(&project);
    // A reason with a comma, quotes and a newline must survive quoting.
    project.tool(
        "quoting",
        "cat > /dev/null\ncat <<'JSON'\n{\"ok\": false, \"error\": \"bad \\\"input\\\", see\\nline two\"}\nJSON",
    );
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let token = daemon.token(&project);
    let plain = project.add(&["report, weekly", "--tool", "ok", "--run-id", "week-49"]);
    let quoted = project.add(&["quoted", "--tool", "quoting", "--run-id", "week-49"]);
    wait_for_status(&project, &plain, "completed", Duration::from_secs(20));
    let failed = wait_for_status(&project, &quoted, "failed", Duration::from_secs(20));

    let (status, body) = get(
        &daemon,
        &token,
        "/api/orchestrator/actions/paged.csv?run_id=week-49",
    );
    assert_eq!(status, 200, "{body}");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "id",
            "label",
            "tool",
            "run_id",
            "status",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "outputs_uri",
            "approval_state",
            "approver",
            "reason"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let row_of = |id: &str| rows.iter().find(|r| &r[0] == id).unwrap().clone();
    let q = row_of(&quoted);
    assert_eq!(&q[4], "failed");
    assert_eq!(&q[12], failed["reason"].as_str().unwrap());
    assert!(q[12].contains('\n') && q[12].contains('"') && q[12].contains(','));
    let p = row_of(&plain);
    assert_eq!(&p[1], "report, weekly");
    assert_eq!(&p[3], "week-49");
    assert!(p[8].parse::<u64>().is_ok(), "duration_ms: {:?}", &p[8]);

    // The CLI writes the same CSV, every match when no --limit is given.
    let out = project.sdlc_ok(&[
        "orchestrate",
        "list",
        "--format",
        "csv",
        "--run-id",
        "week-49",
    ]);
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    assert_eq!(reader.headers().unwrap().len(), 13);
    assert_eq!(reader.records().count(), 2);

    // A cell a spreadsheet would run as a formula is neutralised with a leading quote.
    let formula = project.add(&[
        "=HYPERLINK(\"http://evil.example\")",
        "--tool",
        "ok",
        "--run-id",
        "week-50",
    ]);
    wait_for_status(&project, &formula, "completed", Duration::from_secs(20));
    let (status, body) = get(
        &daemon,
        &token,
        "/api/orchestrator/actions/paged.csv?run_id=week-50",
    );
    assert_eq!(status, 200, "{body}");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let row = reader.records().next().unwrap().unwrap();
    assert_eq!(&row[1], "'=HYPERLINK(\"http://evil.example\")");
}

fn a_schedules_run_id_is_formatted_per_occurrence_and_plan_steps_carry_theirs(backend: Backend) {
    let project = Project::on(backend);
    ok_tool(&project);
    std::fs::create_dir_all(project.root().join(".sdlc/plans")).unwrap();
    std::fs::write(
        project.root().join(".sdlc/plans/pair.json"),
        json!({"plan_id": "pair", "steps": [
            {"id": "a", "tool": "ok"},
            {"id": "b", "tool": "ok", "depends_on": ["a"]}
        ]})
        .to_string(),
    )
    .unwrap();
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let series = project.add(&[
        "nightly",
        "--tool",
        "ok",
        "--every",
        "1s",
        "--run-id",
        "nightly-{date}",
    ]);
    let first = wait_for_status(&project, &series, "completed", Duration::from_secs(20));
    let slot = chrono::DateTime::parse_from_rfc3339(first["scheduled_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        first["run_id"],
        format!("nightly-{}", slot.format("%Y-%m-%d"))
    );
    let started = project.add(&["nightly-plan", "--plan", "pair", "--run-id", "plans-49"]);
    wait_for_status(&project, &started, "completed", Duration::from_secs(20));
    // The starting action and both steps are found by the grouping.
    let grouped = wait_for(
        "the plan's steps under its run id",
        Duration::from_secs(10),
        || {
            let out = project.sdlc_ok(&[
                "orchestrate",
                "list",
                "--run-id",
                "plans-49",
                "--format",
                "json",
            ]);
            let out: Vec<Value> = serde_json::from_str(&out).unwrap();
            (out.len() == 3).then_some(out)
        },
    );
    let labels: HashSet<&str> = grouped
        .iter()
        .map(|a| a["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, HashSet::from(["nightly-plan", "pair/a", "pair/b"]));
    // And by the plan run's own id.
    let run = grouped.iter().find(|a| a["label"] == "pair/a").unwrap()["plan_run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let by_run = project.sdlc_ok(&["orchestrate", "list", "--run-id", &run, "--format", "jsonl"]);
    assert_eq!(by_run.lines().count(), 3);
    // `plan run --run-id` groups a run started by hand the same way.
    let out = project.sdlc_ok(&[
        "orchestrate",
        "plan",
        "run",
        "pair",
        "--run-id",
        "rel-{date}",
    ]);
    let run = out.lines().next().unwrap().trim().to_string();
    let steps = project.sdlc_ok(&["orchestrate", "list", "--run-id", &run, "--format", "jsonl"]);
    let steps: Vec<Value> = steps
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(steps.len(), 2);
    let created =
        chrono::DateTime::parse_from_rfc3339(steps[0]["created_at"].as_str().unwrap()).unwrap();
    let group = format!("rel-{}", created.format("%Y-%m-%d"));
    assert!(
        steps.iter().all(|s| s["run_id"] == group.as_str()),
        "{steps:?}"
    );
    let released = project.sdlc_ok(&[
        "orchestrate",
        "list",
        "--run-id",
        &group,
        "--format",
        "jsonl",
    ]);
    assert_eq!(released.lines().count(), 2, "{released}");
    let bad = project.sdlc(&["orchestrate", "plan", "run", "pair", "--run-id", "x-{when}"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown placeholder {when}"));
    drop(daemon);
}

/// `--since/--until` select by when a run was due (a schedule's slot), not when it was
/// created: an occurrence of a schedule is created a period before its slot.
fn since_and_until_select_runs_by_their_slot_not_their_creation(backend: Backend) {
    let project = Project::on(backend);
    ok_tool(&project);
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let token = daemon.token(&project);
    let first = project.add(&["every-2s", "--tool", "ok", "--every", "2s"]);
    wait_for_status(&project, &first, "completed", Duration::from_secs(20));
    let series = project.find(&first)["series"].as_str().unwrap().to_string();
    // A later occurrence, created when the one before it ran, has run too.
    let second = wait_for("a later occurrence to run", Duration::from_secs(20), || {
        project.list().into_iter().find(|a| {
            a["series"] == series.as_str()
                && a["id"] != first.as_str()
                && a["status"] == "completed"
        })
    });
    let time = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(second[field].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let (created, slot) = (time("created_at"), time("scheduled_at"));
    assert!(
        slot - created >= chrono::Duration::milliseconds(500),
        "created {created}, due {slot}"
    );
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let just_before = at(slot - chrono::Duration::milliseconds(1));
    let listed = |args: &[&str]| -> Vec<String> {
        let mut full = vec![
            "orchestrate",
            "list",
            "--format",
            "json",
            "--label",
            "every-2s",
        ];
        full.extend_from_slice(args);
        let out: Vec<Value> = serde_json::from_str(&project.sdlc_ok(&full)).unwrap();
        out.iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let second_id = second["id"].as_str().unwrap().to_string();
    // Created before `just_before`, but due (and run) after it.
    assert!(listed(&["--since", &at(slot)]).contains(&second_id));
    assert!(!listed(&["--until", &just_before]).contains(&second_id));
    assert!(listed(&["--until", &at(slot)]).contains(&second_id));
    assert!(listed(&["--until", &just_before]).contains(&first));
    // The API pages the same way.
    let paged = get_json(
        &daemon,
        &token,
        &format!(
            "/api/orchestrator/actions/paged?label=every-2s&until={}",
            just_before.replace('+', "%2B")
        ),
    );
    let paged: Vec<&str> = paged["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(paged.contains(&first.as_str()), "{paged:?}");
    assert!(!paged.contains(&second_id.as_str()), "{paged:?}");
    drop(daemon);
}

on_both_backends!(
    since_and_until_select_runs_by_their_slot_not_their_creation,
    paging_2500_actions_while_new_ones_arrive_returns_each_exactly_once,
    every_filter_narrows_history_in_the_api_and_the_cli,
    the_csv_export_parses_with_a_real_csv_parser,
    a_schedules_run_id_is_formatted_per_occurrence_and_plan_steps_carry_theirs,
);
