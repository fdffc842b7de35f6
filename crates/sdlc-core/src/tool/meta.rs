//! A tool's self-description (`tool --meta`) and checking input against its `input_schema`.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ToolScript;
use super::runner::{ExitKind, RunLimits, ToolMode, run_tool};

/// What `tool --meta` prints. Unknown fields are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolMeta {
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// A JSON Schema for the input; when present, input is checked before an action is stored.
    #[serde(default)]
    pub input_schema: Option<Value>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// How long `--meta` may take: it should print a constant.
const META_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `tool --meta` and parses what it prints.
pub async fn read_meta(script: &ToolScript, root: &Path) -> Result<ToolMeta, String> {
    let limits = RunLimits {
        timeout: META_TIMEOUT,
        ..RunLimits::default()
    };
    let run = run_tool(script, ToolMode::Meta, &Value::Null, root, &[], &limits).await;
    let name = &script.name;
    match &run.exit {
        ExitKind::Exited(status) if status.success() => {}
        _ => {
            let status = super::outcome_to_status(&run);
            let detail = match status {
                crate::model::ActionStatus::Failed { reason } => reason,
                _ => "failed".to_string(),
            };
            return Err(format!("tool '{name}' --meta failed: {detail}"));
        }
    }
    serde_json::from_slice(&run.stdout).map_err(|err| {
        format!("tool '{name}' --meta did not print valid metadata JSON ({err}): it must print an object with at least \"name\"")
    })
}

/// Checks `input` against the tool's `input_schema`, if it declares one. The error lists
/// each violation with where in the input it is.
pub fn validate_input(meta: &ToolMeta, input: &Value) -> Result<(), String> {
    let Some(schema) = &meta.input_schema else {
        return Ok(());
    };
    let validator = jsonschema::validator_for(schema).map_err(|err| {
        format!(
            "tool '{}' declares an invalid input_schema: {err}",
            meta.name
        )
    })?;
    let problems: Vec<String> = validator
        .iter_errors(input)
        .map(|err| {
            let at = err.instance_path().to_string();
            if at.is_empty() {
                err.to_string()
            } else {
                format!("at {at}: {err}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "input does not match the input_schema of tool '{}': {}",
            meta.name,
            problems.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(schema: Option<Value>) -> ToolMeta {
        ToolMeta {
            name: "t".into(),
            display_name: None,
            description: None,
            version: None,
            input_schema: schema,
            extra: Default::default(),
        }
    }

    #[test]
    fn no_schema_accepts_anything() {
        assert!(validate_input(&meta(None), &json!([1, 2])).is_ok());
    }

    #[test]
    fn schema_violations_are_listed_with_their_place() {
        let schema = json!({
            "type": "object",
            "properties": {"scope": {"type": "string"}},
            "additionalProperties": false
        });
        let m = meta(Some(schema));
        assert!(validate_input(&m, &json!({"scope": "unit"})).is_ok());
        let err = validate_input(&m, &json!({"scope": 5})).unwrap_err();
        assert!(err.contains("tool 't'") && err.contains("/scope"), "{err}");
        let err = validate_input(&m, &json!({"other": 1})).unwrap_err();
        assert!(err.contains("other"), "{err}");
    }

    #[test]
    fn an_invalid_schema_is_reported_as_the_tools_fault() {
        let err = validate_input(&meta(Some(json!({"type": 5}))), &json!({})).unwrap_err();
        assert!(err.contains("invalid input_schema"), "{err}");
    }

    #[test]
    fn meta_keeps_unknown_fields() {
        let m: ToolMeta =
            serde_json::from_value(json!({"name": "x", "version": "1", "tags": ["a"]})).unwrap();
        assert_eq!(m.extra["tags"], json!(["a"]));
    }
}
