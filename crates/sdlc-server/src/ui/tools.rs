//! `GET /tools`: every tool of the project with its `--meta` (name, description, version,
//! input schema) and a form that tries it once (`POST /api/orchestrator/tools/{name}/run`,
//! the `sdlc tool run` behaviour). Metas are asked all at once and kept until the tool's
//! file changes, so the page does not start a process per tool on every view.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use sdlc_core::tool::meta::{ToolMeta, read_meta};
use sdlc_core::tool::{list_tools, tool_script};

use super::format;
use super::{Chrome, PageResult, done, page_session, render};
use crate::AppState;

/// A tool's meta as last read, with the modification time of the file it came from.
type KnownMeta = (Option<SystemTime>, Result<ToolMeta, String>);

/// Metas already read, by tool name.
#[derive(Default)]
pub struct MetaCache {
    known: Mutex<HashMap<String, KnownMeta>>,
}

impl MetaCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, KnownMeta>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct ToolCard {
    pub name: String,
    pub title: String,
    pub version: String,
    pub description: String,
    pub schema: String,
    pub error: String,
    pub example: String,
}

#[derive(askama::Template)]
#[template(path = "tools.html")]
pub struct ToolsPage {
    pub chrome: Chrome,
    pub tools: Vec<ToolCard>,
}

/// The metas of `names`, from the cache where the tool file did not change.
async fn metas(state: &AppState, names: &[String]) -> Vec<Result<ToolMeta, String>> {
    let root = state.root().clone();
    let mut asking = tokio::task::JoinSet::new();
    let mut answers: Vec<Option<Result<ToolMeta, String>>> = vec![None; names.len()];
    for (index, name) in names.iter().enumerate() {
        let script = match tool_script(&root, name) {
            Ok(script) => script,
            Err(err) => {
                answers[index] = Some(Err(err.to_string()));
                continue;
            }
        };
        let modified = std::fs::metadata(&script.source)
            .and_then(|m| m.modified())
            .ok();
        if let Some((seen, meta)) = state.tool_metas().lock().get(name)
            && *seen == modified
            && modified.is_some()
        {
            answers[index] = Some(meta.clone());
            continue;
        }
        let root = root.clone();
        let name = name.clone();
        asking.spawn(async move {
            let meta = read_meta(&script, &root).await;
            (index, name, modified, meta)
        });
    }
    while let Some(joined) = asking.join_next().await {
        let Ok((index, name, modified, meta)) = joined else {
            continue;
        };
        state
            .tool_metas()
            .lock()
            .insert(name, (modified, meta.clone()));
        answers[index] = Some(meta);
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err("asking the tool for its --meta failed".into())))
        .collect()
}

/// `GET /tools`.
pub async fn tools(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    done(tools_page(&state, &headers, &uri).await)
}

async fn tools_page(state: &AppState, headers: &HeaderMap, uri: &Uri) -> PageResult {
    let session = page_session(state, headers, uri).await?;
    let names = list_tools(state.root());
    let metas = metas(state, &names).await;
    let tools = names
        .into_iter()
        .zip(metas)
        .map(|(name, meta)| match meta {
            Ok(meta) => ToolCard {
                title: meta.display_name.clone().unwrap_or_else(|| name.clone()),
                version: meta.version.clone().unwrap_or_default(),
                description: meta.description.clone().unwrap_or_default(),
                schema: meta
                    .input_schema
                    .as_ref()
                    .map(format::pretty_json)
                    .unwrap_or_default(),
                error: String::new(),
                example: "{}".into(),
                name,
            },
            Err(err) => ToolCard {
                title: name.clone(),
                version: String::new(),
                description: String::new(),
                schema: String::new(),
                error: format!("its --meta failed: {err}"),
                example: "{}".into(),
                name,
            },
        })
        .collect();
    let page = ToolsPage {
        chrome: Chrome::new("tools", "Tools", &session.session.csrf),
        tools,
    };
    Ok(render(&page))
}
