//! Plans in a project: where they live (`.sdlc/plans/<plan_id>.json`, or any file), reading
//! one, and the checks that need the project: every tool a step names exists, and its input
//! passes the tool's `input_schema` (where no `${...}` is left to fill in).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::spec::{self, PlanGraph, Problem, Problems};
use crate::tool::{meta::read_meta, tool_script, validate_input};

/// The folder of a project's plans.
pub fn plans_dir(root: &Path) -> PathBuf {
    root.join(".sdlc").join("plans")
}

/// The folder of the runs' event logs (`<run_id>.jsonl`).
pub fn runs_dir(root: &Path) -> PathBuf {
    root.join(".sdlc").join("runs")
}

/// The file `spec` names: a path when it holds a `/` or ends in `.json`, else the plan of
/// that id in `.sdlc/plans/`.
pub fn resolve(root: &Path, spec: &str) -> PathBuf {
    if spec.contains('/') || spec.ends_with(".json") {
        PathBuf::from(spec)
    } else {
        plans_dir(root).join(format!("{spec}.json"))
    }
}

/// Whether `id` may name a plan of the project (what the API accepts: an id, never a path).
pub fn is_plan_id(id: &str) -> bool {
    spec::is_valid_id(id)
}

fn one(source: &str, message: String) -> Problems {
    Problems {
        origin: source.to_string(),
        problems: vec![Problem {
            step: None,
            message,
        }],
    }
}

/// Reads and checks the plan `spec` names (structure only; see [`check_project`]).
pub fn read(root: &Path, spec: &str) -> Result<(PlanGraph, PathBuf), Problems> {
    let path = resolve(root, spec);
    let source = path.display().to_string();
    let by_id = !spec.contains('/') && !spec.ends_with(".json");
    if by_id && let Some(outside) = outside_project(root, &path) {
        return Err(one(
            &source,
            format!(
                "it leads outside the project (to {}): a plan run by its id, as the API and schedules do, must be a file of the project; copy it into .sdlc/plans, or run it by its path",
                outside.display()
            ),
        ));
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err)
            if err.kind() == std::io::ErrorKind::NotFound
                && !spec.contains('/')
                && !spec.ends_with(".json") =>
        {
            let known = list_ids(root);
            return Err(one(
                spec,
                format!(
                    "no plan '{spec}': expected {}{}",
                    path.display(),
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!("; plans here: {}", known.join(", "))
                    }
                ),
            ));
        }
        Err(err) => return Err(one(&source, format!("cannot read it: {err}"))),
    };
    let graph = spec::parse(&text, &source)?;
    // A plan in the project's folder is found by its id: the two must agree.
    let in_folder = path.parent() == Some(plans_dir(root).as_path());
    if in_folder && path.file_stem().and_then(|s| s.to_str()) != Some(graph.plan.plan_id.as_str()) {
        return Err(one(
            &source,
            format!(
                "plan_id '{}' does not match the file name: rename the file to {}.json or change plan_id",
                graph.plan.plan_id, graph.plan.plan_id
            ),
        ));
    }
    Ok((graph, path))
}

/// Where `path` really is when a link takes it out of the project at `root` (the plans are
/// as trusted as the project's own files: a link to elsewhere would let whoever can write
/// there choose what the daemon runs); None when it stays inside or does not exist.
fn outside_project(root: &Path, path: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(path).ok()?;
    let root = std::fs::canonicalize(root).ok()?;
    (!real.starts_with(&root)).then_some(real)
}

/// Every tool a step names exists; every input with no `${...}` left passes its tool's
/// schema. Each tool's `--meta` is asked once, all at once.
pub async fn check_project(root: &Path, graph: &PlanGraph) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut by_tool: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, step) in graph.plan.steps.iter().enumerate() {
        if let Some(tool) = &step.tool {
            by_tool.entry(tool.as_str()).or_default().push(i);
        }
    }
    let mut asking = tokio::task::JoinSet::new();
    for (tool, steps) in by_tool {
        match tool_script(root, tool) {
            Err(err) => problems.extend(steps.iter().map(|&i| Problem {
                step: Some(graph.step(i).id.clone()),
                message: err.to_string(),
            })),
            Ok(script) => {
                let root = root.to_path_buf();
                asking.spawn(async move { (steps, read_meta(&script, &root).await) });
            }
        }
    }
    while let Some(joined) = asking.join_next().await {
        // A tool whose --meta fails is still run; its input is then not checked.
        let Ok((steps, Ok(meta))) = joined else {
            continue;
        };
        for i in steps {
            let step = graph.step(i);
            if spec::step_strings(step).iter().any(|s| s.contains("${")) {
                continue;
            }
            let input = step
                .input
                .clone()
                .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
            if let Err(message) = validate_input(&meta, &input) {
                problems.push(Problem {
                    step: Some(step.id.clone()),
                    message,
                });
            }
        }
    }
    problems
}

/// [`read`] then [`check_project`]: everything checked before a run is stored.
pub async fn load(root: &Path, spec: &str) -> Result<(Arc<PlanGraph>, PathBuf), Problems> {
    let (graph, path) = read(root, spec)?;
    let problems = check_project(root, &graph).await;
    if !problems.is_empty() {
        return Err(Problems {
            origin: path.display().to_string(),
            problems,
        });
    }
    Ok((Arc::new(graph), path))
}

/// Ids of the plans in `.sdlc/plans/`, sorted.
pub fn list_ids(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(plans_dir(root)) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".json").map(str::to_string))
        .filter(|id| is_plan_id(id))
        .collect();
    ids.sort();
    ids
}

/// Every plan of the project with what a list shows (problems instead of failing the list).
pub fn listings(root: &Path) -> Vec<super::view::PlanListing> {
    list_ids(root)
        .into_iter()
        .map(|id| match read(root, &id) {
            Ok((graph, _)) => super::view::PlanListing {
                plan_id: graph.plan.plan_id.clone(),
                version: graph.plan.version.clone(),
                description: graph.plan.description.clone(),
                steps: graph.len(),
                needs_vars: graph.required_vars().into_keys().collect(),
                problems: Vec::new(),
                last_run: None,
            },
            Err(problems) => super::view::PlanListing {
                plan_id: id,
                version: None,
                description: None,
                steps: 0,
                needs_vars: Vec::new(),
                problems: problems.problems.iter().map(|p| p.to_string()).collect(),
                last_run: None,
            },
        })
        .collect()
}

/// Reads and checks plan `spec`, then builds a run of it with `vars`: everything checked,
/// nothing stored.
pub async fn prepare_run(
    root: &Path,
    spec: &str,
    vars: BTreeMap<String, String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<super::NewRun, Problems> {
    let (graph, path) = load(root, spec).await?;
    super::run::new_run(graph, vars, &path.display().to_string(), now)
}
