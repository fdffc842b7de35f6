//! `GET /webhooks`: the webhook routes (add with a template preview against a sample body,
//! delete) and the last requests with their outcomes from the delivery log: accepted (with
//! the action it became), duplicate, refused by signature (401), too large (413), no route
//! (404). `?path=` shows one route's requests.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use sdlc_core::webhook::{DEFAULT_TEMPLATE, RouteView};

use super::format::{self, TimeCell};
use super::{Chrome, PageResult, done, error_page, page_session, render};
use crate::AppState;
use crate::delivery_log::DeliveryOutcome;

/// Requests shown.
pub const SHOWN: usize = 100;

pub struct RouteRow {
    pub route: RouteView,
    pub created: TimeCell,
    pub last: String,
    pub last_class: &'static str,
}

pub struct DeliveryRow {
    pub at: TimeCell,
    pub path: String,
    pub outcome: &'static str,
    pub class: &'static str,
    pub status: u16,
    pub action_id: String,
    pub delivery_id: String,
    pub detail: String,
    pub bytes: usize,
}

#[derive(askama::Template)]
#[template(path = "webhooks.html")]
pub struct WebhooksPage {
    pub chrome: Chrome,
    pub routes: Vec<RouteRow>,
    pub deliveries: Vec<DeliveryRow>,
    pub path: String,
    pub tools: Vec<String>,
    pub default_template: &'static str,
}

fn outcome_class(outcome: DeliveryOutcome) -> &'static str {
    match outcome {
        DeliveryOutcome::Accepted => "st-completed",
        DeliveryOutcome::Duplicate => "st-skipped",
        DeliveryOutcome::NoRoute | DeliveryOutcome::BadRequest => "st-paused",
        _ => "st-failed",
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct WebhooksQuery {
    pub path: Option<String>,
}

/// `GET /webhooks?path=`.
pub async fn webhooks(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<WebhooksQuery>,
) -> Response {
    done(webhooks_page(&state, &headers, &uri, query).await)
}

async fn webhooks_page(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    query: WebhooksQuery,
) -> PageResult {
    let session = page_session(state, headers, uri).await?;
    let now = state.clock().now();
    let routes = state
        .with_db(|db| db.routes())
        .await
        .map_err(|err| error_page(&err))?;
    let path = query
        .path
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty());
    let recent = state.deliveries().recent(None, crate::delivery_log::KEPT);
    let routes = routes
        .iter()
        .map(|route| {
            let last = recent.iter().find(|r| r.route_id == Some(route.id));
            RouteRow {
                route: RouteView::from(route),
                created: TimeCell::new(route.created_at, now),
                last: last.map_or("no request since the daemon started".into(), |r| {
                    format!(
                        "{} {}",
                        r.outcome.as_str(),
                        format::relative(r.received_at, now)
                    )
                }),
                last_class: last.map_or("", |r| outcome_class(r.outcome)),
            }
        })
        .collect();
    let deliveries = recent
        .iter()
        .filter(|r| path.as_deref().is_none_or(|p| r.path == p))
        .take(SHOWN)
        .map(|r| DeliveryRow {
            at: TimeCell::new(r.received_at, now),
            path: r.path.clone(),
            outcome: r.outcome.as_str(),
            class: outcome_class(r.outcome),
            status: r.status,
            action_id: r.action_id.map(|id| id.to_string()).unwrap_or_default(),
            delivery_id: r.delivery_id.clone().unwrap_or_default(),
            detail: r.detail.clone().unwrap_or_default(),
            bytes: r.body_bytes,
        })
        .collect();
    let page = WebhooksPage {
        chrome: Chrome::new("webhooks", "Webhooks", &session.session.csrf),
        routes,
        deliveries,
        path: path.unwrap_or_default(),
        tools: sdlc_core::tool::list_tools(state.root()),
        default_template: DEFAULT_TEMPLATE,
    };
    Ok(render(&page))
}
