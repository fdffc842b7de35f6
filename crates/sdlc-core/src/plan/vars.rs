//! `${...}` in a step's strings: `${NAME}` is a variable (from `--var`, then the plan's
//! `vars`), `${steps.ID.result.PATH}` a value from the result of a step it depends on, and
//! `$${` a literal `${`. Pure functions: finding references, and replacing them.

use std::collections::BTreeMap;

use serde_json::Value;

/// One `${...}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Var(String),
    /// `${steps.ID.result}` or `${steps.ID.result.a.b.0}`.
    StepResult {
        step: String,
        path: Vec<String>,
    },
}

/// Whether `name` can be a variable: letters, digits and underscores, not starting with a digit.
pub fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_ref(inner: &str) -> Result<Ref, String> {
    if let Some(rest) = inner.strip_prefix("steps.") {
        let mut parts = rest.split('.');
        let step = parts.next().unwrap_or_default().to_string();
        if step.is_empty() || parts.next() != Some("result") {
            return Err(format!(
                "${{{inner}}}: a step's result is written ${{steps.ID.result}} or ${{steps.ID.result.field}}"
            ));
        }
        let path: Vec<String> = parts.map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("${{{inner}}}: an empty field name in the path"));
        }
        return Ok(Ref::StepResult { step, path });
    }
    if is_var_name(inner) {
        Ok(Ref::Var(inner.to_string()))
    } else {
        Err(format!(
            "${{{inner}}} is not a variable: names use letters, digits and underscores (write $${{ for a literal ${{)"
        ))
    }
}

/// The pieces of a string: literal text and references.
enum Piece<'a> {
    Text(&'a str),
    Ref(Ref),
}

fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${` is a literal `${`.
            out.push(Piece::Text(&rest[..at]));
            out.push(Piece::Text("{"));
            rest = &rest[at + 2..];
            continue;
        }
        out.push(Piece::Text(&rest[..at]));
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("'{text}': a ${{ without its closing }}"))?;
        out.push(Piece::Ref(parse_ref(&after[..end])?));
        rest = &after[end + 1..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Every reference in `text`.
pub fn refs(text: &str) -> Result<Vec<Ref>, String> {
    Ok(pieces(text)?
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

/// What references are replaced with.
pub struct Values<'a> {
    pub vars: &'a BTreeMap<String, String>,
    /// The result of each step a reference may name (its dependencies), by id.
    pub results: &'a dyn Fn(&str) -> Option<Value>,
}

/// `text` with every reference replaced; an unknown variable or a missing result field is an
/// error saying which.
pub fn substitute(text: &str, values: &Values<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(r) => match resolve(&r, values)? {
                Value::String(s) => out.push_str(&s),
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Ok(out)
}

/// A JSON value with references replaced in every string. A string that is exactly one
/// reference to a step's result takes that JSON value itself (a number stays a number).
pub fn substitute_json(value: &Value, values: &Values<'_>) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) => match pieces(text)?.as_slice() {
            [
                Piece::Text(""),
                Piece::Ref(r @ Ref::StepResult { .. }),
                Piece::Text(""),
            ] => resolve(r, values)?,
            _ => Value::String(substitute(text, values)?),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| substitute_json(v, values))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute_json(v, values)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn resolve(r: &Ref, values: &Values<'_>) -> Result<Value, String> {
    match r {
        Ref::Var(name) => values.vars.get(name).cloned().map(Value::String).ok_or_else(|| {
            format!("unknown variable ${{{name}}}: give it with --var {name}=VALUE or add it to the plan's \"vars\"")
        }),
        Ref::StepResult { step, path } => {
            let result = (values.results)(step)
                .ok_or_else(|| format!("${{steps.{step}.result}}: step '{step}' has no result"))?;
            let mut at = &result;
            for (depth, field) in path.iter().enumerate() {
                let next = match at {
                    Value::Object(map) => map.get(field),
                    Value::Array(items) => field.parse::<usize>().ok().and_then(|i| items.get(i)),
                    _ => None,
                };
                at = next.ok_or_else(|| {
                    format!(
                        "${{steps.{step}.result.{}}}: the result of '{step}' has no '{}'",
                        path.join("."),
                        path[..=depth].join(".")
                    )
                })?;
            }
            Ok(at.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with<T>(f: impl FnOnce(&Values<'_>) -> T) -> T {
        let vars = BTreeMap::from([("REMOTE".to_string(), "origin".to_string())]);
        let results = |step: &str| {
            (step == "build").then(|| json!({"version": "1.2", "n": 3, "list": ["a"]}))
        };
        f(&Values {
            vars: &vars,
            results: &results,
        })
    }

    #[test]
    fn variables_and_results_are_replaced() {
        with(|values| {
            assert_eq!(
                substitute("git fetch ${REMOTE}", values).unwrap(),
                "git fetch origin"
            );
            assert_eq!(
                substitute("v${steps.build.result.version}", values).unwrap(),
                "v1.2"
            );
            assert_eq!(
                substitute("${steps.build.result.list.0}", values).unwrap(),
                "a"
            );
            assert_eq!(
                substitute("cost $${HOME} ${REMOTE}", values).unwrap(),
                "cost ${HOME} origin"
            );
            assert_eq!(
                substitute_json(
                    &json!({"n": "${steps.build.result.n}", "s": "n=${steps.build.result.n}"}),
                    values
                )
                .unwrap(),
                json!({"n": 3, "s": "n=3"})
            );
        });
    }

    #[test]
    fn what_is_missing_is_named() {
        with(|values| {
            let err = substitute("${BRANCH}", values).unwrap_err();
            assert!(
                err.contains("unknown variable ${BRANCH}") && err.contains("--var BRANCH="),
                "{err}"
            );
            let err = substitute("${steps.build.result.nope.x}", values).unwrap_err();
            assert!(err.contains("has no 'nope'"), "{err}");
            let err = refs("${a b}").unwrap_err();
            assert!(err.contains("not a variable"), "{err}");
            assert!(refs("${open").unwrap_err().contains("closing"));
        });
    }
}
