//! Plans: JSON DAGs of steps, run by the same engine as actions.
//!
//! - `spec`: the plan file's fields, parsing and structural checks (pure).
//! - `vars`: `${VAR}` and `${steps.ID.result...}` substitution (pure).
//! - `decide`: which steps become ready, skipped or canceled, and how a run ends (pure).
//! - `run`: a run as stored (header, steps, events) and a ready step turned into its action.
//! - `load`: plans in a project, and the checks that need it (tools, input schemas).
//! - `view`: the JSON forms of runs for the API and `--json`.
//! - `export`: the event log files (`.sdlc/runs/<run_id>.jsonl`) and live followers.
//!
//! Storing runs and committing the decisions with the outcomes that cause them is the
//! store's work (`store::plans`); the engine only runs the steps' actions.

pub mod decide;
pub mod export;
pub mod load;
pub mod run;
pub mod spec;
pub mod vars;
pub mod view;

pub use decide::{RunStatus, StepCounts, StepStatus};
pub use run::{CommandSpec, NewRun, PlanRun, RunEvent, StepRef, StepState};
pub use spec::{OnFailure, Plan, PlanGraph, Problem, Problems, Step};
