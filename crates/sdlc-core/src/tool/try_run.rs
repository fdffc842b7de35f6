//! Running a tool once to see what it answers, outside any action: `sdlc tool run` and the
//! dashboard's "try" (`POST /api/orchestrator/tools/{name}/run`). The input is checked
//! against the tool's schema first, as `add` would check it; nothing is stored.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::meta::read_meta;
use super::{RunLimits, ToolMode, log_excerpt, outcome_to_status, run_tool, tool_script};
use crate::model::ActionStatus;

/// What one try answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TryAnswer {
    pub ok: bool,
    /// The tool's answer when it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What it printed on stdout, when it failed (the answer it gave, if any).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    /// The first and last lines of its stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_excerpt: Option<String>,
    pub duration_ms: i64,
    /// The input could not be checked (the tool's --meta failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Why a try did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryRefused {
    /// No such tool (or a name that cannot be one).
    UnknownTool(String),
    /// The input does not match the tool's input schema.
    BadInput(String),
}

impl std::fmt::Display for TryRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryRefused::UnknownTool(message) | TryRefused::BadInput(message) => {
                f.write_str(message)
            }
        }
    }
}

/// Runs tool `name` once with `input`, within `timeout`.
pub async fn try_tool(
    root: &Path,
    name: &str,
    input: &Value,
    timeout: Duration,
) -> Result<TryAnswer, TryRefused> {
    let script = tool_script(root, name).map_err(|err| TryRefused::UnknownTool(err.to_string()))?;
    let warning = match read_meta(&script, root).await {
        Ok(meta) => {
            super::validate_input(&meta, input).map_err(TryRefused::BadInput)?;
            None
        }
        Err(err) => Some(format!("{err}; the input was not checked")),
    };
    let limits = RunLimits {
        timeout,
        ..RunLimits::default()
    };
    let run = run_tool(&script, ToolMode::Run, input, root, &[], &limits).await;
    let duration_ms = i64::try_from(run.duration.as_millis()).unwrap_or(i64::MAX);
    let excerpt = log_excerpt(&run, false);
    Ok(match outcome_to_status(&run) {
        ActionStatus::Completed { result } => TryAnswer {
            ok: true,
            result: Some(result),
            reason: None,
            stdout: String::new(),
            log_excerpt: excerpt,
            duration_ms,
            warning,
        },
        ActionStatus::Failed { reason } => TryAnswer {
            ok: false,
            result: None,
            reason: Some(reason),
            stdout: String::from_utf8_lossy(&run.stdout).trim_end().to_string(),
            log_excerpt: excerpt,
            duration_ms,
            warning,
        },
        other => unreachable!("a finished run is completed or failed, not {other:?}"),
    })
}
