//! Several daemons on one PostgreSQL database: they share one queue, each action runs once,
//! and a node that dies or stops has its runs recovered by the others.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

/// Runs of each label across `projects`' run logs (each project is one node's machine).
fn runs_by_label(projects: &[Project]) -> HashMap<String, usize> {
    let mut runs = HashMap::new();
    for project in projects {
        for line in std::fs::read_to_string(project.runs_log())
            .unwrap_or_default()
            .lines()
        {
            *runs.entry(line.to_string()).or_insert(0) += 1;
        }
    }
    runs
}

#[test]
fn a_daemon_on_postgres_runs_what_a_command_adds() {
    let project = Project::on(Backend::Postgres);
    project.counting_tool("count");
    let daemon = project.daemon(&["--tick-rate", "60"]);
    let id = project.add(&["hello", "--tool", "count"]);
    let done = wait_for_status(&project, &id, "completed", Duration::from_secs(20));
    assert_eq!(done["label"], "hello");
    assert_eq!(project.runs_of("hello"), 1);
    let status = project.sdlc_ok(&["orchestrate", "status"]);
    assert!(status.contains("postgres://"), "{status}");
    assert!(daemon.stop().success());
}
