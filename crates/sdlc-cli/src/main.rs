//! The `sdlc` binary: parse the command line, start logging, run one command, and turn its
//! result into an exit code. Everything else lives in the modules below.
//!
//! Layout:
//! - `cli`: the clap definitions (every command, flag and default).
//! - `cmd/*`: one file per command.
//! - `backend`: reaches the database through a running daemon, or opens it directly.
//! - `output`: tables and the human-readable record.

#[macro_use]
mod output;
mod backend;
mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_contained_panics();
    let cli = cli::Cli::parse();
    init_logging(&cli);
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
    match runtime.block_on(cmd::run(cli)) {
        Ok(code) => code,
        // The reader went away (`| head`, a pager quit): nothing left to say to anyone.
        Err(err) if err.is::<output::OutputClosed>() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
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

/// Logs go to stderr; stdout is each command's output. `RUST_LOG` wins over `-v`.
fn init_logging(cli: &cli::Cli) {
    let default = match (cli.is_daemon(), cli.verbose) {
        (_, v) if v >= 2 => "debug",
        (true, _) | (false, 1) => "info",
        // A plan run followed here prints each step's outcome itself; the engine it may run
        // in-process would say the same again for every failed step.
        (false, _) if cli.follows_a_plan_run() => "warn,sdlc_core::engine=error",
        (false, _) => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
