//! The command line's own reference, end to end: shell completions for each shell and the man
//! page, printed by the real binary from outside any project.

mod common;

use std::process::Command;

/// Runs `sdlc args` in an empty folder (no `.sdlc/` anywhere above it); its stdout.
fn sdlc_outside_a_project(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::SDLC)
        .args(args)
        .current_dir(dir.path())
        .env_remove("SDLC_ROOT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sdlc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish_from_the_real_commands() {
    let bash = sdlc_outside_a_project(&["completions", "bash"]);
    assert!(bash.contains("complete -F _sdlc"), "{bash}");
    for (shell, script) in [
        ("bash", bash.clone()),
        ("zsh", sdlc_outside_a_project(&["completions", "zsh"])),
        ("fish", sdlc_outside_a_project(&["completions", "fish"])),
    ] {
        // Commands and flags three levels down are offered.
        for word in [
            "orchestrate",
            "webhook",
            "max-concurrency",
            "notify-on",
            "lease",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    // The bash script parses.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sdlc.bash");
    std::fs::write(&path, &bash).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // An unknown shell is refused, naming the ones there are.
    let out = Command::new(common::SDLC)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}

#[test]
fn the_man_page_covers_every_command_and_renders() {
    let page = sdlc_outside_a_project(&["man"]);
    for title in [
        ".TH sdlc 1",
        ".TH sdlc-orchestrate 1",
        ".TH sdlc-orchestrate-add 1",
        ".TH sdlc-orchestrate-webhook-add 1",
        ".TH sdlc-orchestrate-plan-run 1",
        ".TH sdlc-tool-run 1",
    ] {
        assert!(page.contains(title), "the man page lacks {title}");
    }
    assert!(page.contains("max\\-concurrency"), "flags are listed");
    // Each page has its synopsis and options sections.
    assert_eq!(
        page.matches(".SH SYNOPSIS").count(),
        page.matches(".TH ").count(),
        "every page has a synopsis"
    );
}

/// The committed `docs/openapi.json` is what this build generates, and what a daemon serves.
#[test]
fn the_committed_openapi_document_is_the_one_the_build_generates_and_serves() {
    let generated = sdlc_outside_a_project(&["openapi"]);
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let committed = std::fs::read_to_string(committed_path).unwrap();
    assert!(
        generated == committed,
        "docs/openapi.json differs from what this build generates: run `cargo run --bin sdlc -- openapi > docs/openapi.json` and commit it"
    );
    let document: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert!(operations >= 38, "only {operations} operations documented");
    assert!(document["paths"]["/api/orchestrator/tokens"]["post"].is_object());
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // A daemon serves the same document to any token holder.
    let project = common::Project::new();
    let daemon = project.daemon(&[]);
    let secret = project.sdlc_ok(&["orchestrate", "token", "add", "reader", "--role", "viewer"]);
    let auth = format!("Bearer {}", secret.trim());
    let (status, served) = common::http(
        daemon.addr,
        "GET",
        "/api/orchestrator/openapi.json",
        &[("Authorization", auth.as_str())],
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(served, generated);
    let (status, _) = common::http(
        daemon.addr,
        "GET",
        "/api/orchestrator/openapi.json",
        &[],
        b"",
    );
    assert_eq!(status, 401);
    assert!(daemon.stop().success());
}

/// An error axum answers itself (a query it cannot read) comes in the API's JSON form too.
#[test]
fn every_api_error_is_json_even_a_query_the_server_cannot_read() {
    let project = common::Project::new();
    let daemon = project.daemon(&[]);
    let token = daemon.token(&project);
    let auth = format!("Bearer {token}");
    let run = uuid::Uuid::new_v4();
    let answer = common::http_answer(
        daemon.addr,
        "GET",
        &format!("/api/orchestrator/runs/{run}/events?after=-1"),
        &[("Authorization", auth.as_str())],
        b"",
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("after"), "{body}");
    assert!(daemon.stop().success());
}

/// `docs/cli.md` is the reference this build prints, and README's command table names every
/// command there is and no flag that is not.
#[test]
fn the_command_reference_and_readmes_table_are_in_step_with_the_binary() {
    let generated = sdlc_outside_a_project(&["man", "--markdown"]);
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli.md")).unwrap();
    assert!(
        generated == committed,
        "docs/cli.md differs from what this build generates: run `cargo run --bin sdlc -- man --markdown > docs/cli.md` and commit it"
    );

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let table = readme
        .split("\n## Commands\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a Commands section");
    // Every command (a heading `## \`sdlc ...\`` in the reference) is in the table.
    let listed = commands_in_table(table);
    for heading in generated.lines().filter_map(|l| l.strip_prefix("## `")) {
        let command = heading.trim_end_matches('`');
        assert!(
            listed.contains(command),
            "README's command table lacks `{command}` (it lists {listed:?})"
        );
    }
    // Every flag the table's command column names exists.
    let flags: std::collections::BTreeSet<&str> = generated
        .split("`--")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .next()
        })
        .collect();
    let command_cells: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|row| row.split(" | ").next().unwrap())
        .collect();
    for mention in command_cells
        .iter()
        .flat_map(|cell| cell.split("--").skip(1))
    {
        let flag: String = mention
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if flag.is_empty() || !flag.chars().next().unwrap().is_ascii_lowercase() {
            continue;
        }
        assert!(
            flags.contains(flag.as_str()),
            "README's command table names --{flag}, which no command has"
        );
    }
}

/// The commands README's table names: in each row, each `sdlc ...` (up to its first argument
/// or flag, `a\|b` naming several), and each `word ...` after it in place of as many last
/// words of the row's first command (`webhook rm` after `sdlc orchestrate webhook list`).
fn commands_in_table(table: &str) -> std::collections::BTreeSet<String> {
    let mut listed = std::collections::BTreeSet::from(["sdlc".to_string()]);
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = row.split(" | ").next().unwrap();
        let mut first: Option<Vec<String>> = None;
        for segment in first_cell.split('`').skip(1).step_by(2) {
            let words: Vec<String> = segment
                .split(' ')
                .take_while(|w| !w.starts_with(['<', '[', '-', '(', '.']))
                .map(str::to_string)
                .collect();
            let path = match &first {
                _ if words.first().is_some_and(|w| w == "sdlc") => words,
                Some(first) if words.len() <= first.len() => {
                    let mut path = first[..first.len() - words.len()].to_vec();
                    path.extend(words);
                    path
                }
                _ => continue,
            };
            let (last, parent) = path.split_last().unwrap();
            for name in last.split("\\|") {
                let mut full = parent.to_vec();
                full.push(name.to_string());
                for end in 1..=full.len() {
                    listed.insert(full[..end].join(" "));
                }
            }
            first.get_or_insert(path);
        }
    }
    listed
}
