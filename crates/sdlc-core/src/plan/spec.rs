//! The plan file: its fields, parsing, and every structural check (ids, dependencies, cycles,
//! types, variables), as pure functions of the text. Whether the tools it names exist and
//! accept its input needs the project, so `load` checks that.
//!
//! Parsing is in two stages so that every problem is reported at once: the text becomes a
//! JSON value (a syntax error stops here, with its line and column), then the header and each
//! step are read separately, each failure recorded with the step it belongs to.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::vars::{self, Ref};

/// A plan, as its file declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub plan_id: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub globals: Globals,
    /// Defaults of the variables; `--var` overrides them.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Free-form data for the user's own tooling; kept, never interpreted.
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
    pub steps: Vec<Step>,
}

/// Settings of the whole plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Globals {
    /// Steps of one run at once (the daemon's `--max-concurrency` bounds everything).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// A step's timeout when it gives none (else the daemon's `--timeout`).
    #[serde(default)]
    pub default_timeout_sec: Option<f64>,
}

/// One step: a tool with its input, or a command with its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Relative to the project root.
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub timeout_sec: Option<f64>,
    #[serde(default)]
    pub retries: u32,
    #[serde(default)]
    pub retry_delay_sec: Option<f64>,
    #[serde(default = "yes")]
    pub critical: bool,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// A person must approve the step before its dependents run: after its tool or command
    /// succeeded, or, with neither, as a gate of its own.
    #[serde(default)]
    pub approval: Option<StepApproval>,
}

/// A step's `approval`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepApproval {
    /// Shown to the approver.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Nobody deciding within this many seconds rejects it ("approval timed out").
    #[serde(default)]
    pub timeout_sec: Option<f64>,
}

fn yes() -> bool {
    true
}

/// What a failed step does to the rest of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Cancel every step that has not started (when the step is critical).
    #[default]
    Abort,
    /// Skip every step that depends on it, directly or not; other branches go on.
    SkipDependents,
    /// Its dependents run as if it had succeeded.
    Continue,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Abort => "abort",
            OnFailure::SkipDependents => "skip_dependents",
            OnFailure::Continue => "continue",
        }
    }
}

/// Most steps in one plan: far past any pipeline, small enough to keep a run's records sane.
pub const MAX_STEPS: usize = 100_000;
/// Most retries one step may ask for (as for actions).
pub const MAX_RETRIES: u32 = 100;

/// One thing wrong with a plan, with the step it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.step {
            Some(step) => write!(f, "step '{step}': {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found in a plan, listed at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems {
    /// Where the plan came from (a file path or a plan id), for the message.
    pub origin: String,
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "plan {} has {n} problem{}:",
            self.origin,
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// A checked plan with its graph: indexes of dependencies and dependents, a topological
/// order, and the variables it needs. Built once per run and shared.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanGraph {
    pub plan: Plan,
    /// Step id -> index in `plan.steps`.
    pub index: HashMap<String, usize>,
    /// For each step, the indexes of the steps it depends on.
    pub deps: Vec<Vec<usize>>,
    /// For each step, the indexes of the steps that depend on it.
    pub dependents: Vec<Vec<usize>>,
    /// Every step, each after all it depends on.
    pub order: Vec<usize>,
}

impl PlanGraph {
    pub fn step(&self, index: usize) -> &Step {
        &self.plan.steps[index]
    }

    pub fn len(&self) -> usize {
        self.plan.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plan.steps.is_empty()
    }

    /// Variables used by the steps (`${NAME}`, not `${steps...}`) that the plan gives no
    /// default for, with the first step using each: what a run must be given with `--var`.
    pub fn required_vars(&self) -> BTreeMap<String, String> {
        let mut needed = BTreeMap::new();
        for step in &self.plan.steps {
            for name in step_var_names(step) {
                if !self.plan.vars.contains_key(&name) {
                    needed.entry(name).or_insert_with(|| step.id.clone());
                }
            }
        }
        needed
    }

    /// Every variable a run may be given: those the plan declares and those its steps use.
    pub fn known_vars(&self) -> std::collections::BTreeSet<String> {
        let mut known: std::collections::BTreeSet<String> =
            self.plan.vars.keys().cloned().collect();
        for step in &self.plan.steps {
            known.extend(step_var_names(step));
        }
        known
    }

    /// The variable names `vars` lacks, each with a step that uses it.
    pub fn missing_vars(&self, vars: &BTreeMap<String, String>) -> Vec<Problem> {
        self.required_vars()
            .into_iter()
            .filter(|(name, _)| !vars.contains_key(name))
            .map(|(name, step)| Problem {
                step: Some(step),
                message: format!(
                    "unknown variable ${{{name}}}: give it with --var {name}=VALUE or add it to the plan's \"vars\""
                ),
            })
            .collect()
    }
}

/// Every `${NAME}` variable a step's strings use.
fn step_var_names(step: &Step) -> Vec<String> {
    let mut names = Vec::new();
    for text in step_strings(step) {
        if let Ok(refs) = vars::refs(text) {
            for r in refs {
                if let Ref::Var(name) = r {
                    names.push(name);
                }
            }
        }
    }
    names
}

/// Every string of a step that `${...}` is replaced in.
pub fn step_strings(step: &Step) -> Vec<&str> {
    let mut all: Vec<&str> = Vec::new();
    all.extend(step.command.as_deref());
    all.extend(step.args.iter().map(String::as_str));
    all.extend(step.env.values().map(String::as_str));
    all.extend(step.cwd.as_deref());
    if let Some(input) = &step.input {
        json_strings(input, &mut all);
    }
    all
}

fn json_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

/// Parses and checks plan text; `source` names it in messages.
pub fn parse(text: &str, source: &str) -> Result<PlanGraph, Problems> {
    let fail = |problems: Vec<Problem>| Problems {
        origin: source.to_string(),
        problems,
    };
    let value: Value = serde_json::from_str(text).map_err(|err| {
        fail(vec![Problem {
            step: None,
            message: format!(
                "not valid JSON at line {}, column {}: {err}",
                err.line(),
                err.column()
            ),
        }])
    })?;
    let (plan, mut problems) = read_fields(value);
    let Some(plan) = plan else {
        return Err(fail(problems));
    };
    let graph = check_structure(plan, &mut problems);
    match graph {
        Some(graph) if problems.is_empty() => Ok(graph),
        _ => Err(fail(problems)),
    }
}

/// The graph of a plan already checked once (a run's stored copy).
pub fn build(plan: Plan) -> Result<PlanGraph, Problems> {
    let mut problems = Vec::new();
    let source = plan.plan_id.clone();
    match check_structure(plan, &mut problems) {
        Some(graph) if problems.is_empty() => Ok(graph),
        _ => Err(Problems {
            origin: source,
            problems,
        }),
    }
}

/// Reads the header and each step on its own, so one bad step does not hide the others.
fn read_fields(value: Value) -> (Option<Plan>, Vec<Problem>) {
    let mut problems = Vec::new();
    let header_problem = |message: String| Problem {
        step: None,
        message,
    };
    let Value::Object(mut map) = value else {
        return (
            None,
            vec![header_problem(
                "a plan is a JSON object with \"plan_id\" and \"steps\"".into(),
            )],
        );
    };
    let raw_steps = match map.remove("steps") {
        Some(Value::Array(steps)) => steps,
        Some(_) => {
            problems.push(header_problem(
                "\"steps\" must be an array of step objects".into(),
            ));
            Vec::new()
        }
        None => {
            problems.push(header_problem(
                "missing field \"steps\": a plan needs at least one step".into(),
            ));
            Vec::new()
        }
    };
    map.insert("steps".into(), Value::Array(Vec::new()));
    let header = match serde_json::from_value::<Plan>(Value::Object(map)) {
        Ok(header) => Some(header),
        Err(err) => {
            problems.push(header_problem(err.to_string()));
            None
        }
    };
    let mut steps = Vec::with_capacity(raw_steps.len());
    for (n, raw) in raw_steps.into_iter().enumerate() {
        let label = raw
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("#{}", n + 1));
        match serde_json::from_value::<Step>(raw) {
            Ok(step) => steps.push(step),
            Err(err) => problems.push(Problem {
                step: Some(label),
                message: err.to_string(),
            }),
        }
    }
    let plan = header.map(|mut plan| {
        plan.steps = steps;
        plan
    });
    (plan, problems)
}

/// Ids, kinds, numbers, dependencies, cycles and `${...}` references. Returns the graph when
/// it could be built (problems may still have been found).
fn check_structure(plan: Plan, problems: &mut Vec<Problem>) -> Option<PlanGraph> {
    let mut add = |step: Option<&str>, message: String| {
        problems.push(Problem {
            step: step.map(str::to_string),
            message,
        })
    };
    if let Err(message) = check_id("plan_id", &plan.plan_id) {
        add(None, message);
    }
    if plan.steps.len() > MAX_STEPS {
        add(
            None,
            format!(
                "{} steps: a plan holds at most {MAX_STEPS}",
                plan.steps.len()
            ),
        );
    }
    if plan.globals.max_concurrency == Some(0) {
        add(
            None,
            "globals.max_concurrency must be at least 1".to_string(),
        );
    }
    if let Some(secs) = plan.globals.default_timeout_sec
        && !(secs.is_finite() && secs > 0.0)
    {
        add(
            None,
            format!("globals.default_timeout_sec must be a positive number of seconds, not {secs}"),
        );
    }
    for name in plan.vars.keys() {
        if !vars::is_var_name(name) {
            add(
                None,
                format!(
                    "variable name '{name}' in \"vars\": use letters, digits and underscores, not starting with a digit"
                ),
            );
        }
    }

    let mut index = HashMap::with_capacity(plan.steps.len());
    for (i, step) in plan.steps.iter().enumerate() {
        if let Err(message) = check_id("id", &step.id) {
            add(Some(&step.id), message);
        }
        if index.insert(step.id.clone(), i).is_some() {
            add(
                Some(&step.id),
                "duplicate step id: every step needs an id of its own".to_string(),
            );
        }
        check_step_fields(step, &mut add);
    }

    let mut deps = vec![Vec::new(); plan.steps.len()];
    let mut dependents = vec![Vec::new(); plan.steps.len()];
    for (i, step) in plan.steps.iter().enumerate() {
        for dep in &step.depends_on {
            match index.get(dep) {
                None => add(
                    Some(&step.id),
                    format!("depends on '{dep}', which is not a step of this plan"),
                ),
                Some(&j) if j == i => add(Some(&step.id), "depends on itself".to_string()),
                Some(&j) if deps[i].contains(&j) => {
                    add(Some(&step.id), format!("lists '{dep}' twice in depends_on"))
                }
                Some(&j) => {
                    deps[i].push(j);
                    dependents[j].push(i);
                }
            }
        }
    }
    let order = match topological_order(&deps) {
        Ok(order) => order,
        Err(cycle) => {
            let names: Vec<&str> = cycle.iter().map(|&i| plan.steps[i].id.as_str()).collect();
            add(
                Some(names[0]),
                format!("dependency cycle: {}", names.join(" -> ")),
            );
            return None;
        }
    };
    let graph = PlanGraph {
        plan,
        index,
        deps,
        dependents,
        order,
    };
    check_references(&graph, problems);
    Some(graph)
}

fn check_step_fields(step: &Step, add: &mut impl FnMut(Option<&str>, String)) {
    let id = Some(step.id.as_str());
    match (&step.tool, &step.command) {
        (Some(_), Some(_)) => add(
            id,
            "has both \"tool\" and \"command\": a step runs one or the other".to_string(),
        ),
        (None, None) if step.approval.is_some() => {
            if step.input.is_some() || !step.args.is_empty() || !step.env.is_empty() {
                add(
                    id,
                    "an approval gate (no tool, no command) takes no \"input\", \"args\" or \"env\""
                        .to_string(),
                );
            }
        }
        (None, None) => add(
            id,
            "needs \"tool\" (with \"input\"), \"command\" (with \"args\"), or \"approval\" (a gate)"
                .to_string(),
        ),
        (Some(tool), None) => {
            if let Err(err) = crate::tool::validate_name(tool) {
                add(id, err.to_string());
            }
            if !step.args.is_empty() || !step.env.is_empty() || step.cwd.is_some() {
                add(
                    id,
                    "\"args\", \"env\" and \"cwd\" belong to command steps; a tool step gets \"input\""
                        .to_string(),
                );
            }
        }
        (None, Some(command)) => {
            if command.trim().is_empty() {
                add(id, "\"command\" is empty".to_string());
            }
            if step.input.is_some() {
                add(
                    id,
                    "\"input\" belongs to tool steps; a command step gets \"args\"".to_string(),
                );
            }
        }
    }
    for key in step.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            add(id, format!("env: '{key}' is not a variable name"));
        }
    }
    if let Some(cwd) = &step.cwd
        && (cwd.starts_with('/') || cwd.split('/').any(|part| part == ".."))
    {
        add(
            id,
            format!("cwd '{cwd}' must be a folder inside the project, relative to its root"),
        );
    }
    for (what, value) in [
        ("timeout_sec", step.timeout_sec),
        ("retry_delay_sec", step.retry_delay_sec),
        (
            "approval.timeout_sec",
            step.approval.as_ref().and_then(|a| a.timeout_sec),
        ),
    ] {
        if let Some(secs) = value
            && !(secs.is_finite() && (secs > 0.0 || (what == "retry_delay_sec" && secs == 0.0)))
        {
            add(
                id,
                format!("{what} must be a positive number of seconds, not {secs}"),
            );
        }
    }
    if step.retries > MAX_RETRIES {
        add(
            id,
            format!(
                "retries: {} is too many: at most {MAX_RETRIES}",
                step.retries
            ),
        );
    }
    if step.retry_delay_sec.is_some() && step.retries == 0 {
        add(
            id,
            "retry_delay_sec goes with retries: say how many times to retry".to_string(),
        );
    }
}

/// `${...}` in every string: well formed, and `${steps.X...}` naming a step this one depends
/// on (directly or not), whose result is known when this one becomes ready.
fn check_references(graph: &PlanGraph, problems: &mut Vec<Problem>) {
    let mut ancestors_of: HashMap<usize, Vec<bool>> = HashMap::new();
    for (i, step) in graph.plan.steps.iter().enumerate() {
        for text in step_strings(step) {
            let refs = match vars::refs(text) {
                Ok(refs) => refs,
                Err(message) => {
                    problems.push(Problem {
                        step: Some(step.id.clone()),
                        message,
                    });
                    continue;
                }
            };
            for r in refs {
                let Ref::StepResult { step: source, .. } = r else {
                    continue;
                };
                let ancestors = ancestors_of.entry(i).or_insert_with(|| ancestors(graph, i));
                let known = graph.index.get(&source).is_some_and(|&j| ancestors[j]);
                if !known {
                    problems.push(Problem {
                        step: Some(step.id.clone()),
                        message: format!(
                            "uses the result of '{source}', which is not a step it depends on: add it to depends_on"
                        ),
                    });
                }
            }
        }
    }
}

/// Which steps `i` depends on, directly or not.
fn ancestors(graph: &PlanGraph, i: usize) -> Vec<bool> {
    let mut seen = vec![false; graph.len()];
    let mut stack = graph.deps[i].clone();
    while let Some(j) = stack.pop() {
        if !seen[j] {
            seen[j] = true;
            stack.extend(&graph.deps[j]);
        }
    }
    seen
}

/// Step ids and plan ids: letters, digits, `-`, `_` and `.`, 1 to 64, starting with a letter
/// or digit (they become file names and appear in commands).
fn check_id(what: &str, id: &str) -> Result<(), String> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(format!(
            "{what} '{id}' is not valid: use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"
        ))
    }
}

/// Whether `id` may be a plan's or a step's id (see `check_id`).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Kahn's algorithm over `deps`; on a cycle, the cycle itself (first step repeated at the end).
fn topological_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, list) in deps.iter().enumerate() {
        for &j in list {
            dependents[j].push(i);
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut next = 0;
    while next < order.len() {
        let i = order[next];
        next += 1;
        for &k in &dependents[i] {
            waiting[k] -= 1;
            if waiting[k] == 0 {
                order.push(k);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Every step left has a dependency left: walk dependencies until one repeats.
    let start = (0..n).find(|&i| waiting[i] > 0).expect("a step is left");
    let mut position = vec![usize::MAX; n];
    let mut path = Vec::new();
    let mut at = start;
    while position[at] == usize::MAX {
        position[at] = path.len();
        path.push(at);
        at = *deps[at]
            .iter()
            .find(|&&j| waiting[j] > 0)
            .expect("a step in a cycle depends on another one in it");
    }
    let mut cycle: Vec<usize> = path[position[at]..].to_vec();
    // Walking dependencies goes against the arrows; a cycle reads in the order steps run,
    // from the one that comes first in the file.
    cycle.reverse();
    let first = (0..cycle.len())
        .min_by_key(|&i| cycle[i])
        .expect("a cycle has a step");
    cycle.rotate_left(first);
    cycle.push(cycle[0]);
    Err(cycle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(steps: &str) -> String {
        format!(r#"{{"plan_id": "p", "steps": [{steps}]}}"#)
    }

    fn problems(text: &str) -> Vec<String> {
        parse(text, "test")
            .unwrap_err()
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn a_good_plan_has_its_graph() {
        let graph = parse(
            &plan(
                r#"{"id": "a", "command": "true"}, {"id": "b", "command": "true", "depends_on": ["a"]},
                   {"id": "c", "tool": "t", "depends_on": ["a", "b"], "input": {"x": "${X}"}}"#,
            ),
            "test",
        )
        .unwrap();
        assert_eq!(graph.order, vec![0, 1, 2]);
        assert_eq!(graph.dependents[0], vec![1, 2]);
        assert!(graph.step(0).critical);
        assert_eq!(graph.step(0).on_failure, OnFailure::Abort);
        assert_eq!(
            graph.required_vars().into_iter().collect::<Vec<_>>(),
            vec![("X".to_string(), "c".to_string())]
        );
    }

    #[test]
    fn a_cycle_is_named_in_the_order_steps_would_run() {
        let found = problems(&plan(
            r#"{"id": "a", "command": "true", "depends_on": ["c"]},
               {"id": "b", "command": "true", "depends_on": ["a"]},
               {"id": "c", "command": "true", "depends_on": ["b"]},
               {"id": "d", "command": "true"}"#,
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("step 'a': dependency cycle: a -> b -> c -> a"),
            "{found:?}"
        );
    }

    #[test]
    fn every_problem_is_listed_with_its_step() {
        let found = problems(&plan(
            r#"{"id": "a", "command": "true", "depends_on": ["nope"]},
               {"id": "a", "tool": "t", "command": "x"},
               {"id": "b", "command": "true", "colour": "red"},
               {"id": "c", "command": "true", "on_failure": "explode"},
               {"id": "d", "command": "true", "timeout_sec": -1, "args": ["${steps.a.result.x}"]},
               {"id": "e", "command": "true", "args": ["${unclosed"]}"#,
        ));
        let all = found.join("\n");
        for expected in [
            "step 'a': depends on 'nope', which is not a step of this plan",
            "step 'a': duplicate step id",
            "step 'a': has both \"tool\" and \"command\"",
            "step 'b': unknown field `colour`",
            "step 'c': unknown variant `explode`",
            "step 'd': timeout_sec must be a positive number",
            "step 'd': uses the result of 'a', which is not a step it depends on",
            "step 'e': ",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let found = problems("{\n  \"plan_id\": \"p\",\n  \"steps\": [,]\n}");
        assert!(found[0].contains("line 3, column"), "{found:?}");
    }

    #[test]
    fn a_long_chain_is_checked_in_linear_time() {
        let steps: Vec<String> = (0..10_000)
            .map(|i| {
                if i == 0 {
                    r#"{"id": "s0", "command": "true"}"#.to_string()
                } else {
                    format!(
                        r#"{{"id": "s{i}", "command": "true", "depends_on": ["s{}"]}}"#,
                        i - 1
                    )
                }
            })
            .collect();
        let graph = parse(&plan(&steps.join(",")), "test").unwrap();
        assert_eq!(graph.order.len(), 10_000);
        assert_eq!(graph.order[9_999], 9_999);
    }
}
