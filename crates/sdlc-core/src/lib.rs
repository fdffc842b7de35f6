//! The core of `sdlc orchestrate`: everything the daemon, the CLI and the HTTP server stand
//! on. It knows nothing of clap or HTTP and prints nothing to stdout.
//!
//! Layout:
//! - [`model`]: Action, its trigger and status, the lifecycle rules.
//! - [`plan`]: plans (JSON DAGs of steps): parsing, checks, the pure ready/skip decisions.
//! - [`policy`]: overlap, catch-up and retry decisions, as pure functions.
//! - [`schedule`]: recurrence arithmetic (intervals, cron in a time zone) and the parsers for
//!   times and durations.
//! - [`store`]: `ActionDb`, the redb database (the only module that touches redb).
//! - [`tool`]: finding, describing and running tools; mapping a run to a status.
//! - [`service`]: checks shared by every way of adding an action (CLI, API).
//! - [`engine`]: the tick loop: claim due actions, run them in a bounded pool, record results.
//! - `start_gate`: on a shared store, a tool starts only once its start is marked.
//! - [`daemon_file`]: the file a running daemon publishes so other commands can reach it.
//! - [`orphans`]: the run log, and killing tools a SIGKILLed daemon left running.
//! - [`private_file`]: creating the database's companion files for their owner only.
//! - [`project`]: finding the project root and its default paths.
//! - [`clock`]: the source of "now", injectable for tests.
//! - [`webhook`]: routes, deliveries and the templates that turn a delivery into input.
//! - [`view`]: the flat JSON form of an action that the API and `--json` output share.

pub mod access;
pub mod clock;
pub mod daemon_file;
pub mod engine;
pub mod engine_stats;
pub mod error;
pub mod external;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod orphans;
pub mod plan;
pub mod policy;
pub mod private_file;
pub mod project;
pub mod run_group;
pub mod schedule;
pub mod service;
mod start_gate;
pub mod stops;
pub mod store;
pub mod tool;
pub mod view;
pub mod webhook;

pub use error::{StoreError, ToolError};
pub use model::{Action, ActionStatus, ActionTrigger, Recurrence, StatusKind};
pub use store::{ActionDb, ListFilter};

#[cfg(test)]
mod hostile_tests;
