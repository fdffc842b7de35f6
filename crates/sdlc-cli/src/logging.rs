//! Where the binary's logs go and in what form: stderr, as text (coloured on a terminal) or
//! as one JSON object a line (`--log-format json`, for log shippers). The few lines the
//! daemon prints for people (its address at start, the last error) follow the same format,
//! so a JSON log holds nothing but JSON.

use std::sync::OnceLock;

use crate::cli::{Cli, LogFormat};

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Starts logging for this invocation. `RUST_LOG` wins over `-v`.
pub fn init(cli: &Cli) {
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = FORMAT.set(cli.log_format);
    match cli.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The event's fields at the top level beside `timestamp`, `level` and `message`:
        // what Loki, Vector and Elasticsearch index without a parsing rule.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

fn json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// A line for the person who started the command (the daemon's address, say): printed as
/// it is, or logged at info in JSON form.
pub fn say(line: &str) {
    if json() {
        tracing::info!("{line}");
    } else {
        eprintln!("{line}");
    }
}

/// The error a command ended with, as `error: ...` or as a JSON log line.
pub fn error(message: &str) {
    if json() {
        tracing::error!("{message}");
    } else {
        eprintln!("error: {message}");
    }
}
