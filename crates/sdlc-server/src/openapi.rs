//! The management API's OpenAPI 3.1 document, generated from the handlers' own annotations
//! and types (utoipa), served at `GET /api/orchestrator/openapi.json` and printed by
//! `sdlc openapi`; `docs/openapi.json` is a copy a test keeps equal to it. What it does not
//! describe: webhook ingress (`/webhooks/...`: any body, per route), the dashboard's pages and
//! event stream, and `/metrics` (Prometheus' own format).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sdlc orchestrate management API",
        description = "Actions, webhook routes, plans and runs, approvals, history, notifications, tools and tokens of one sdlc orchestrate daemon. Every request needs a bearer token (the daemon's own, or a named token whose role covers it: viewer reads, operator also changes actions and runs, admin also manages webhook routes and tokens). Errors are {\"error\": \"...\"}.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        crate::api::list_actions,
        crate::api::add_action,
        crate::api::get_action,
        crate::logs_api::action_log,
        crate::api::match_short_id,
        crate::api::edit_action,
        crate::api::cancel_action,
        crate::api::pause_action,
        crate::api::resume_action,
        crate::api::run_action,
        crate::api::next_runs,
        crate::api::delete_action,
        crate::api::list_routes,
        crate::api::add_route,
        crate::api::delete_route,
        crate::api::list_deliveries,
        crate::api::preview_template,
        crate::api::list_tools,
        crate::api::login_token,
        crate::api::check,
        crate::api::status,
        crate::plans_api::list_plans,
        crate::plans_api::start_run,
        crate::plans_api::list_runs,
        crate::plans_api::get_run,
        crate::plans_api::run_events,
        crate::plans_api::cancel_run,
        crate::plans_api::retry_run,
        crate::approvals_api::approve,
        crate::external_api::start,
        crate::approvals_api::reject,
        crate::history_api::paged,
        crate::history_api::paged_jsonl,
        crate::history_api::paged_csv,
        crate::groups_api::list,
        crate::notify_api::list,
        crate::notify_api::test,
        crate::tools_api::tool_meta,
        crate::tools_api::try_run,
        crate::tokens_api::list,
        crate::tokens_api::add,
        crate::tokens_api::remove,
        crate::tokens_api::list_sessions,
        crate::tokens_api::end_session,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security, &CommonErrors),
    security(("bearer" = [])),
    tags(
        (name = "actions", description = "Scheduled and manual tool runs"),
        (name = "approvals", description = "Deciding on actions awaiting approval"),
        (name = "history", description = "Paged run history and exports"),
        (name = "webhooks", description = "Webhook routes and their requests"),
        (name = "plans", description = "Plans and their runs"),
        (name = "tools", description = "The project's tools"),
        (name = "notifications", description = "The notification outbox"),
        (name = "tokens", description = "Named API tokens (admin)"),
        (name = "daemon", description = "The daemon itself"),
    )
)]
struct ApiDoc;

/// The document, with this build's version.
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The document as pretty JSON with a final newline (the form of `docs/openapi.json`).
pub fn json() -> String {
    let mut text = document()
        .to_pretty_json()
        .expect("the OpenAPI document is plain data and always serializes");
    text.push('\n');
    text
}

#[utoipa::path(
    get,
    path = "/api/orchestrator/openapi.json",
    tag = "daemon",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub(crate) async fn openapi_json() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json(),
    )
}

/// `Authorization: Bearer <token>` on every operation.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The daemon's token (its .daemon.json file) or a named token (sdlc orchestrate token add)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The answers any operation may give besides its own: a missing or wrong token, a role that
/// does not cover it, storage that cannot take the request now, and, where a body is taken,
/// one that cannot be read.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut Document) {
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        let common = [
            ("401", "A missing or wrong token"),
            ("403", "The token's role does not cover this request"),
            ("503", "The database cannot be written now; retry later"),
            ("507", "The disk holding the database is full"),
        ];
        let with_body = [
            (
                "400",
                "The body is not valid JSON, or a parameter cannot be read",
            ),
            ("415", "The body is not sent as application/json"),
        ];
        for item in doc.paths.paths.values_mut() {
            for operation in item_operations(item) {
                let takes_body = operation.request_body.is_some();
                for (code, what) in with_body.into_iter().filter(|_| takes_body) {
                    operation
                        .responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(what).into());
                }
                for (code, what) in common {
                    operation
                        .responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(what).into());
                }
            }
        }
    }
}

fn item_operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.post.as_mut(),
        item.put.as_mut(),
        item.patch.as_mut(),
        item.delete.as_mut(),
        item.head.as_mut(),
    ]
    .into_iter()
    .flatten()
}
