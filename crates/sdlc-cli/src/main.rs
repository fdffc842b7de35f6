//! The `sdlc` binary: parse the command line, start logging, run one command, and turn its
//! result into an exit code. Everything else lives in the modules below.
//!
//! Layout:
//! - `cli`: the clap definitions (every command, flag and default).
//! - `cmd/*`: one file per command.
//! - `backend`: reaches the database through a running daemon, or opens it directly.
//! - `output`: tables and the human-readable record.
//! - `config`: `.sdlc/orchestrator.toml`, applied as the flags' defaults.
//! - `logging`: stderr logs as text or JSON (`--log-format`).
//! - `systemd`: readiness and stopping notifications for a `Type=notify` unit.

#[macro_use]
mod output;
mod backend;
mod cli;
mod cmd;
mod config;
mod logging;
mod secret_file;
mod systemd;

use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_contained_panics();
    let config::Parsed { cli, settings } = match config::parse(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        // clap prints its own error with the usage, and exits 2 (0 for --help, --version).
        Err(config::ParseError::CommandLine(err)) => err.exit(),
        Err(config::ParseError::Config(err)) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(2);
        }
    };
    logging::init(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli, settings)) {
        Ok(code) => code,
        // The reader went away (`| head`, a pager quit): nothing left to say to anyone.
        Err(err) if err.is::<output::OutputClosed>() => ExitCode::SUCCESS,
        Err(err) => {
            logging::error(&format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}

/// A panic inside the store on a damaged file is turned into an error that names the file and
/// says what to do; the default hook would print the raw panic first. Other panics print as
/// always.
fn quiet_contained_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if sdlc_core::store::integrity::panic_is_contained() {
            tracing::debug!("contained panic in the store: {info}");
        } else {
            default(info);
        }
    }));
}
