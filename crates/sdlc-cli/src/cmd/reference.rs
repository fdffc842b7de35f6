//! `sdlc completions SHELL`, `sdlc man` and `sdlc openapi`: the shell completions and the man
//! page, generated from the clap definitions in `cli.rs`, and the management API's OpenAPI
//! document, generated from the server's handlers; so they always describe the binary that
//! prints them.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::Cli;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "sdlc", &mut script);
    emit(&script)
}

/// Prints the man page (roff) of `sdlc` and of every subcommand, one after another: `man`
/// shows the whole reference from one file.
pub fn man(markdown: bool) -> anyhow::Result<ExitCode> {
    if markdown {
        return emit(markdown_reference().as_bytes());
    }
    let mut page = Vec::new();
    render(&Cli::command(), &mut page)?;
    emit(&page)
}

/// Every command, flag and default as Markdown: `docs/cli.md`, which a test keeps equal to it.
fn markdown_reference() -> String {
    let options = clap_markdown::MarkdownOptions::new()
        .title("sdlc command reference".to_string())
        .show_footer(false)
        .show_table_of_contents(true);
    clap_markdown::help_markdown_command_custom(&Cli::command(), &options)
}

/// Prints the OpenAPI 3.1 document of the management API.
pub fn openapi() -> anyhow::Result<ExitCode> {
    emit(sdlc_server::openapi::json().as_bytes())
}

/// Renders `command`'s page, then its subcommands' pages (named `sdlc-orchestrate-add`, ...).
fn render(command: &clap::Command, out: &mut Vec<u8>) -> anyhow::Result<()> {
    clap_mangen::Man::new(command.clone()).render(out)?;
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let name = format!("{}-{}", command.get_name(), sub.get_name());
        let sub = sub.clone().name(name);
        render(&sub, out)?;
    }
    Ok(())
}

/// Writes generated text to stdout as it is (no terminal escaping: it is for a file or a pipe).
fn emit(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(crate::output::OutputClosed.into())
        }
        Err(err) => Err(anyhow::Error::new(err).context("cannot write to stdout")),
    }
}
