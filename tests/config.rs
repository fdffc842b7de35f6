//! The daemon's settings file end to end: `.sdlc/orchestrator.toml` (or `--config`) under the
//! long flags' names, overridden by environment variables and flags; `sdlc orchestrate config`
//! telling where each setting came from with secrets masked; every kind of mistake refused
//! before the daemon starts, naming the key and the file.

mod common;

use common::Project;
use serde_json::Value;

const SLACK_SECRET: &str = "https://hooks.slack.com/services/T0001/B0001/s3cr3tPart";

fn write_config(project: &Project, text: &str) -> std::path::PathBuf {
    let path = project.root().join(".sdlc/orchestrator.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `sdlc orchestrate config --json` with extra arguments and environment.
fn effective(project: &Project, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut full = vec!["orchestrate"];
    full.extend_from_slice(args);
    full.extend(["config", "--json"]);
    let mut command = project.command(&full);
    command.env_remove("SDLC_SLACK_WEBHOOK");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn setting<'a>(config: &'a Value, key: &str) -> &'a Value {
    config["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no setting {key} in {config}"))
}

#[test]
fn flags_and_environment_override_the_file_which_overrides_the_defaults() {
    let project = Project::new();
    let file = write_config(
        &project,
        &format!(
            "max_concurrency = 3\ntick_rate = 0.5\ngrace = \"3s\"\nmetrics_open = true\n\
             notify_on = [\"failed\", \"interrupted\"]\nnotify_slack = \"{SLACK_SECRET}\"\n"
        ),
    );
    let config = effective(
        &project,
        &["--grace", "7s"],
        &[("SDLC_SLACK_WEBHOOK", "https://example.invalid/env-hook")],
    );
    assert_eq!(
        config["file"].as_str().unwrap(),
        file.to_str().unwrap(),
        "{config}"
    );
    let check = |key: &str, values: &[&str], origin: &str| {
        let s = setting(&config, key);
        assert_eq!(s["origin"], origin, "{key}: {s}");
        let got: Vec<&str> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(got, values, "{key}: {s}");
    };
    check("max_concurrency", &["3"], "file");
    check("tick_rate", &["0.5"], "file");
    check("grace", &["7s"], "flag");
    check("metrics_open", &["true"], "file");
    check("notify_on", &["failed", "interrupted"], "file");
    check("timeout", &["5m"], "default");
    let slack = setting(&config, "notify_slack");
    assert_eq!(slack["origin"], "environment", "{slack}");
    // Secrets never printed, whichever source they came from.
    let text = project.sdlc_ok(&["orchestrate", "config"]);
    assert!(!text.contains("s3cr3tPart"), "{text}");
    assert!(
        text.contains("max_concurrency") && text.contains("file"),
        "{text}"
    );
    assert!(!config.to_string().contains("env-hook"), "{config}");

    // The daemon runs with them: three slots from the file, five from a flag.
    let daemon = project.daemon(&[]);
    let status: Value =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "status", "--json"])).unwrap();
    assert_eq!(status["engine"]["max_concurrency"], 3, "{status}");
    assert!(daemon.stop().success());
    let daemon = project.daemon(&["--max-concurrency", "5"]);
    let status: Value =
        serde_json::from_str(&project.sdlc_ok(&["orchestrate", "status", "--json"])).unwrap();
    assert_eq!(status["engine"]["max_concurrency"], 5, "{status}");
    assert!(daemon.stop().success());
}

#[test]
fn a_config_file_named_on_the_command_line_is_read_and_must_exist() {
    let project = Project::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let path = elsewhere.path().join("prod.toml");
    std::fs::write(&path, "max_concurrency = 2\n").unwrap();
    let config = effective(&project, &["--config", path.to_str().unwrap()], &[]);
    assert_eq!(setting(&config, "max_concurrency")["values"][0], "2");
    let config = effective(&project, &[], &[("SDLC_CONFIG", path.to_str().unwrap())]);
    assert_eq!(setting(&config, "max_concurrency")["origin"], "file");

    let missing = elsewhere.path().join("missing.toml");
    let out = project.sdlc(&[
        "orchestrate",
        "--config",
        missing.to_str().unwrap(),
        "config",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing.toml") && stderr.contains("not found"),
        "{stderr}"
    );
}

#[test]
fn every_mistake_in_the_file_is_refused_before_the_daemon_starts() {
    let project = Project::new();
    let cases: &[(&str, &[&str])] = &[
        (
            "tick-rate = 5\n",
            &["unknown setting 'tick-rate'", "did you mean tick_rate"],
        ),
        (
            "colour = \"red\"\n",
            &["unknown setting 'colour'", "max_concurrency"],
        ),
        (
            "tick_rate = \"soon\"\n",
            &["bad value for 'tick_rate'", "soon"],
        ),
        (
            "max_concurrency = 0\n",
            &["bad value for 'max_concurrency'", "0"],
        ),
        ("listen = 5\n", &["bad value for 'listen'"]),
        (
            "keep_orphans = \"yes\"\n",
            &["bad value for 'keep_orphans'", "true or false"],
        ),
        (
            "grace = [\"1s\", \"2s\"]\n",
            &["bad value for 'grace'", "not a list"],
        ),
        (
            "timeout = true\n",
            &["bad value for 'timeout'", "not true or false"],
        ),
        (
            "[engine]\nmax_concurrency = 3\n",
            &["unknown setting 'engine'"],
        ),
        ("max_body = = 3\n", &["TOML parse error", "line 1"]),
        (
            "notify_on = [\"failed\", 3.5, {a = 1}]\n",
            &["bad value for 'notify_on'"],
        ),
    ];
    for (text, expected) in cases {
        let path = write_config(&project, text);
        let out = project.sdlc(&["orchestrate", "--listen", "127.0.0.1:0"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(
            stderr.contains(path.to_str().unwrap()),
            "{text}: the error does not name the file: {stderr}"
        );
        for part in *expected {
            assert!(stderr.contains(part), "{text}: no '{part}' in: {stderr}");
        }
        assert!(
            !stderr.contains("listening on"),
            "{text}: the daemon started: {stderr}"
        );
        assert!(
            !project
                .root()
                .join(".sdlc/orchestrator.db.daemon.json")
                .exists()
        );
    }
}

#[test]
fn a_database_password_in_the_file_is_masked() {
    let project = Project::new();
    write_config(
        &project,
        "db = \"postgres://sdlc:hunter2@db.invalid:5432/sdlc\"\n",
    );
    let config = effective(&project, &[], &[]);
    let db = setting(&config, "db");
    assert_eq!(db["origin"], "file", "{db}");
    assert!(!config.to_string().contains("hunter2"), "{config}");
    assert!(
        db["values"][0].as_str().unwrap().contains("db.invalid"),
        "{db}"
    );
}
