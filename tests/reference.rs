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
