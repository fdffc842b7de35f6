//! A plan's DAG drawn as SVG, on the server: each step in the column of its longest chain of
//! dependencies, edges from a step to those that depend on it, boxes coloured by the step's
//! status in a run (the same st-* classes as every status on the dashboard). Pure: a graph
//! and statuses in, markup out, so the page needs no graph library.

use std::fmt::Write;

use sdlc_core::plan::{PlanGraph, StepStatus};

use super::html_escape;

const NODE_W: usize = 160;
const NODE_H: usize = 40;
const GAP_X: usize = 56;
const GAP_Y: usize = 18;
const PAD: usize = 8;

/// The CSS class of a step's status (a plan without a run: none).
pub fn step_class(status: Option<StepStatus>) -> &'static str {
    match status {
        None | Some(StepStatus::Waiting) | Some(StepStatus::Queued) => "st-pending",
        Some(StepStatus::Pending) => "st-pending",
        Some(StepStatus::Running) => "st-running",
        Some(StepStatus::Retrying) => "st-paused",
        Some(StepStatus::AwaitingApproval) => "st-awaiting",
        Some(StepStatus::Succeeded) => "st-completed",
        Some(StepStatus::Failed) => "st-failed",
        Some(StepStatus::Skipped) | Some(StepStatus::Canceled) => "st-skipped",
    }
}

/// Each step's column: the length of its longest chain of dependencies.
fn columns(graph: &PlanGraph) -> Vec<usize> {
    let mut column = vec![0usize; graph.len()];
    for &step in &graph.order {
        column[step] = graph.deps[step]
            .iter()
            .map(|&dep| column[dep] + 1)
            .max()
            .unwrap_or(0);
    }
    column
}

/// The SVG of `graph`; `statuses[i]` is step i's status in a run (empty: no run).
pub fn svg(graph: &PlanGraph, statuses: &[StepStatus]) -> String {
    let column = columns(graph);
    let mut row = vec![0usize; graph.len()];
    let mut rows_in: Vec<usize> = Vec::new();
    for &step in &graph.order {
        let c = column[step];
        if rows_in.len() <= c {
            rows_in.resize(c + 1, 0);
        }
        row[step] = rows_in[c];
        rows_in[c] += 1;
    }
    let cols = rows_in.len().max(1);
    let rows = rows_in.iter().copied().max().unwrap_or(1).max(1);
    let width = PAD * 2 + cols * NODE_W + (cols - 1) * GAP_X;
    let height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y;
    let x = |step: usize| PAD + column[step] * (NODE_W + GAP_X);
    let y = |step: usize| PAD + row[step] * (NODE_H + GAP_Y);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"dag\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"Plan graph: {} steps\">",
        graph.len()
    );
    for step in 0..graph.len() {
        for &dep in &graph.deps[step] {
            let (x1, y1) = (x(dep) + NODE_W, y(dep) + NODE_H / 2);
            let (x2, y2) = (x(step), y(step) + NODE_H / 2);
            let mid = (x1 + x2) / 2;
            let _ = write!(
                out,
                "<path class=\"edge\" d=\"M{x1} {y1} C{mid} {y1} {mid} {y2} {x2} {y2}\"/>"
            );
        }
    }
    for step in 0..graph.len() {
        let spec = graph.step(step);
        let status = statuses.get(step).copied();
        let class = step_class(status);
        let label = spec.name.as_deref().unwrap_or(&spec.id);
        let shown: String = if label.chars().count() > 20 {
            format!("{}…", label.chars().take(19).collect::<String>())
        } else {
            label.to_string()
        };
        let state = status.map_or("", |s| s.as_str());
        let _ = write!(
            out,
            "<g class=\"node {class}\" data-step=\"{id}\" data-status=\"{state}\"><title>{title}{sep}{state}</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"6\"/>\
             <text x=\"{tx}\" y=\"{ty}\">{text}</text></g>",
            id = html_escape(&spec.id),
            title = html_escape(label),
            sep = if state.is_empty() { "" } else { ": " },
            x = x(step),
            y = y(step),
            tx = x(step) + 10,
            ty = y(step) + NODE_H / 2 + 5,
            text = html_escape(&shown),
        );
    }
    out.push_str("</svg>");
    out
}
