//! Webhooks in the core: routes (which path fires which tool), deliveries (a stored request
//! waiting to be dispatched), and templates (how a delivery becomes the tool's input).
//!
//! A delivery is stored exactly as received (body bytes untouched) when the request is
//! acknowledged, with the route's template already rendered into the tool's input. The
//! engine later turns it into an Action in the same transaction that removes it from the
//! inbox. The action's id is the delivery's id: the id a caller got in the 202 is the id
//! `sdlc orchestrate show` takes.
//!
//! Template placeholders (each renders to exactly one JSON value):
//! - `{{payload}}`: the raw body as a JSON string;
//! - `{{payload.a.b}}` / `{{payload.items.0}}`: a value inside a JSON body, as JSON (`null`
//!   when absent);
//! - `{{headers.x-name}}`: a request header as a JSON string (`null` when absent);
//! - `{{received_at}}` (RFC 3339) and `{{route}}` (the route's path), as JSON strings.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::model::{Action, ActionStatus, ActionTrigger};

/// The template used when a route is added without one: the body as a string field.
pub const DEFAULT_TEMPLATE: &str = r#"{"payload": {{payload}}}"#;

/// A registered webhook path and what it fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookRoute {
    pub id: Uuid,
    /// Normalised path below `/webhooks/`, such as `deploy` or `github/push`.
    pub path: String,
    pub tool_name: String,
    pub input_template: String,
    /// When set, requests must carry `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body>`.
    #[serde(default)]
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A request to add a route, as the CLI sends it and the API accepts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewRoute {
    pub path: String,
    /// The tool to run (empty when `plan` is given).
    #[serde(default)]
    pub tool_name: String,
    /// Start a run of this plan instead; the template renders its variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, alias = "template")]
    pub input_template: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
}

/// A route as shown to people: the secret is never echoed, only whether there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouteView {
    pub id: Uuid,
    pub path: String,
    /// The full path to POST to.
    pub url_path: String,
    pub tool_name: String,
    pub input_template: String,
    pub signed: bool,
    pub created_at: DateTime<Utc>,
}

impl From<&WebhookRoute> for RouteView {
    fn from(route: &WebhookRoute) -> RouteView {
        RouteView {
            id: route.id,
            path: route.path.clone(),
            url_path: format!("/webhooks/{}", route.path),
            tool_name: route.tool_name.clone(),
            input_template: route.input_template.clone(),
            signed: route.secret.is_some(),
            created_at: route.created_at,
        }
    }
}

/// One acknowledged request, waiting in the inbox until the engine dispatches it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Also the id of the action it becomes.
    pub id: Uuid,
    pub route_id: Uuid,
    pub route_path: String,
    /// The route's tool and template when the request arrived (a later change of the route
    /// does not change what an acknowledged request does).
    pub tool_name: String,
    pub input_template: String,
    pub headers: BTreeMap<String, String>,
    /// From `X-GitHub-Delivery`, `X-Delivery-Id` or `Idempotency-Key`, for de-duplication.
    pub delivery_id: Option<String>,
    pub received_at: DateTime<Utc>,
    pub body: Vec<u8>,
}

/// Headers whose value identifies a delivery, in order of preference.
pub const DELIVERY_ID_HEADERS: [&str; 4] = [
    "x-github-delivery",
    "x-delivery-id",
    "x-gitlab-event-uuid",
    "idempotency-key",
];

/// Turns a user's path (`deploy`, `/deploy`, `/webhooks/deploy`) into the stored form, or
/// says what is wrong with it.
pub fn normalize_path(input: &str) -> Result<String, String> {
    let trimmed = input.trim().trim_start_matches('/');
    let trimmed = trimmed.strip_prefix("webhooks/").unwrap_or(trimmed);
    let trimmed = trimmed.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(format!(
            "webhook path '{input}' is empty: use a name such as deploy or github/push"
        ));
    }
    if trimmed.len() > 200 {
        return Err(format!(
            "webhook path '{input}' is longer than 200 characters"
        ));
    }
    for segment in trimmed.split('/') {
        let valid = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(format!(
                "webhook path '{input}' is not valid: use segments of letters, digits, '-', '_' and '.', separated by '/' (no empty, '.' or '..' segments)"
            ));
        }
    }
    Ok(trimmed.to_string())
}

/// Refuses a template that can never render valid JSON.
///
/// Every placeholder renders to exactly one JSON value, so rendering with a sample string
/// for each shows whether the text around them is valid JSON (a placeholder wrapped in
/// quotes, for one, never is).
pub fn check_template(template: &str) -> Result<(), String> {
    let pieces = parse_template(template)?;
    let sample: String = pieces
        .iter()
        .map(|piece| match piece {
            Piece::Text(text) => (*text).to_string(),
            Piece::Placeholder(_) => "\"sample\"".to_string(),
        })
        .collect();
    serde_json::from_str::<Value>(&sample).map(|_| ()).map_err(|err| {
        format!(
            "template can never render valid JSON ({err}); each {{{{...}}}} becomes a JSON value, so do not put it inside quotes: {template}"
        )
    })
}

/// Renders a delivery's input from its template.
pub fn render_input(delivery: &Delivery) -> Result<Value, String> {
    let pieces = parse_template(&delivery.input_template)?;
    let mut body_json: Option<Result<Value, String>> = None;
    let mut rendered = String::with_capacity(delivery.input_template.len() + delivery.body.len());
    for piece in pieces {
        match piece {
            Piece::Text(text) => rendered.push_str(text),
            Piece::Placeholder(expr) => {
                let value = placeholder_value(expr, delivery, &mut body_json)?;
                rendered.push_str(&value.to_string());
            }
        }
    }
    serde_json::from_str(&rendered).map_err(|err| {
        let shown: String = rendered.chars().take(300).collect();
        format!("the template rendered invalid JSON for this delivery ({err}): {shown}")
    })
}

/// The action a delivery becomes: Pending with the rendered input, or Failed when the
/// template cannot be rendered for this body (the reason says why).
pub fn delivery_action(delivery: &Delivery, now: DateTime<Utc>) -> Action {
    delivery_action_rendered(delivery, render_input(delivery), now)
}

/// `delivery_action` with the template already rendered (`render_input`'s result).
pub fn delivery_action_rendered(
    delivery: &Delivery,
    rendered: Result<Value, String>,
    now: DateTime<Utc>,
) -> Action {
    let (input, failure) = match rendered {
        Ok(input) => (input, None),
        Err(reason) => (Value::Null, Some(reason)),
    };
    let mut action = Action::new(
        format!("webhook:{}", delivery.route_path),
        delivery.tool_name.clone(),
        input,
        ActionTrigger::Webhook {
            route_id: delivery.route_id,
            route_path: delivery.route_path.clone(),
            raw_payload: String::from_utf8_lossy(&delivery.body).into_owned(),
            raw_payload_hex: std::str::from_utf8(&delivery.body)
                .is_err()
                .then(|| hex::encode(&delivery.body)),
            received_at: delivery.received_at,
            headers: delivery.headers.clone(),
            delivery_id: delivery.delivery_id.clone(),
        },
        now,
    );
    action.id = delivery.id;
    action.series = delivery.id;
    action.plan = crate::model::plan_of_target(&delivery.tool_name).map(str::to_string);
    if let Some(reason) = failure {
        action.status = ActionStatus::Failed { reason };
        action.finished_at = Some(now);
    }
    action
}

enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

fn parse_template(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        pieces.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("template has an unclosed '{{{{': {template}"))?;
        let expr = after[..end].trim();
        check_expression(expr)?;
        pieces.push(Piece::Placeholder(expr));
        rest = &after[end + 2..];
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

fn check_expression(expr: &str) -> Result<(), String> {
    let known = expr == "payload"
        || expr == "received_at"
        || expr == "route"
        || expr
            .strip_prefix("payload.")
            .is_some_and(|path| path.split('.').all(|s| !s.is_empty()))
        || expr.strip_prefix("headers.").is_some_and(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if known {
        Ok(())
    } else {
        Err(format!(
            "unknown template placeholder '{{{{{expr}}}}}': use {{{{payload}}}}, {{{{payload.a.b}}}}, {{{{headers.x-name}}}}, {{{{received_at}}}} or {{{{route}}}}"
        ))
    }
}

fn placeholder_value(
    expr: &str,
    delivery: &Delivery,
    body_json: &mut Option<Result<Value, String>>,
) -> Result<Value, String> {
    if expr == "payload" {
        return Ok(Value::String(
            String::from_utf8_lossy(&delivery.body).into_owned(),
        ));
    }
    if expr == "received_at" {
        return Ok(Value::String(delivery.received_at.to_rfc3339()));
    }
    if expr == "route" {
        return Ok(Value::String(delivery.route_path.clone()));
    }
    if let Some(name) = expr.strip_prefix("headers.") {
        return Ok(delivery
            .headers
            .get(&name.to_ascii_lowercase())
            .map(|v| Value::String(v.clone()))
            .unwrap_or(Value::Null));
    }
    let path = expr
        .strip_prefix("payload.")
        .expect("check_expression admits only known forms");
    let body = body_json
        .get_or_insert_with(|| {
            serde_json::from_slice(&delivery.body).map_err(|err| {
                format!("the body is not JSON ({err}), so {{{{{expr}}}}} cannot be read from it")
            })
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let mut current = body;
    for segment in path.split('.') {
        let next = match current {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(value) => current = value,
            None => return Ok(Value::Null),
        }
    }
    Ok(current.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn delivery(template: &str, body: &str) -> Delivery {
        let mut headers = BTreeMap::new();
        headers.insert("x-github-event".to_string(), "push".to_string());
        Delivery {
            id: Uuid::new_v4(),
            route_id: Uuid::new_v4(),
            route_path: "deploy".into(),
            tool_name: "t".into(),
            input_template: template.into(),
            headers,
            delivery_id: None,
            received_at: Utc::now(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn paths_are_normalised_and_checked() {
        for (input, want) in [
            ("deploy", "deploy"),
            ("/deploy", "deploy"),
            ("/webhooks/deploy", "deploy"),
            ("github/push/", "github/push"),
            ("v1.2_x-y", "v1.2_x-y"),
        ] {
            assert_eq!(normalize_path(input).unwrap(), want);
        }
        for bad in [
            "",
            "/",
            "/webhooks/",
            "a/../b",
            "a//b",
            "a b",
            "%2e%2e",
            "x?y",
            "./x",
        ] {
            assert!(normalize_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payload_renders_as_a_json_string_of_the_raw_body() {
        let d = delivery(r#"{"raw": {{payload}}}"#, r#"{"a": 1}"#);
        assert_eq!(render_input(&d).unwrap(), json!({"raw": "{\"a\": 1}"}));
    }

    #[test]
    fn paths_inside_a_json_body_insert_json_values() {
        let body = r#"{"ref": "main", "commits": [{"id": "c1"}], "n": 3, "obj": {"k": true}}"#;
        let d = delivery(
            r#"{"ref": {{ payload.ref }}, "first": {{payload.commits.0.id}}, "n": {{payload.n}}, "obj": {{payload.obj}}, "none": {{payload.missing.x}}}"#,
            body,
        );
        assert_eq!(
            render_input(&d).unwrap(),
            json!({"ref": "main", "first": "c1", "n": 3, "obj": {"k": true}, "none": null})
        );
    }

    #[test]
    fn headers_route_and_time_render_as_strings() {
        let d = delivery(
            r#"[{{headers.X-GitHub-Event}}, {{headers.x-missing}}, {{route}}]"#,
            "",
        );
        assert_eq!(render_input(&d).unwrap(), json!(["push", null, "deploy"]));
        let d = delivery("{{received_at}}", "");
        assert!(render_input(&d).unwrap().as_str().unwrap().contains('T'));
    }

    #[test]
    fn a_body_that_is_not_json_fails_path_placeholders_with_a_reason() {
        let d = delivery("{{payload.ref}}", "not json");
        let err = render_input(&d).unwrap_err();
        assert!(
            err.contains("not JSON") && err.contains("{{payload.ref}}"),
            "{err}"
        );
        // ... but {{payload}} still works on any body.
        assert_eq!(
            render_input(&delivery("{{payload}}", "not json")).unwrap(),
            json!("not json")
        );
    }

    #[test]
    fn templates_that_can_never_be_json_are_refused_up_front() {
        assert!(check_template(DEFAULT_TEMPLATE).is_ok());
        assert!(check_template("{}").is_ok());
        assert!(check_template(r#"{"a": {{payload.x}}, "b": [{{headers.h}}]}"#).is_ok());
        for bad in [
            r#"{"ref": "{{payload.ref}}"}"#,
            "{",
            "{{payload",
            "{{nope}}",
            "{{payload.}}",
            "",
        ] {
            assert!(check_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_delivery_becomes_an_action_with_its_id_or_a_failed_one() {
        let d = delivery("{{payload.ref}}", r#"{"ref":"main"}"#);
        let action = delivery_action(&d, Utc::now());
        assert_eq!(action.id, d.id);
        assert_eq!(action.tool_input, json!("main"));
        assert_eq!(action.status, ActionStatus::Pending);
        assert_eq!(action.due_at(), d.received_at);

        let d = delivery("{{payload.ref}}", "<xml/>");
        let action = delivery_action(&d, Utc::now());
        assert!(
            matches!(action.status, ActionStatus::Failed { ref reason } if reason.contains("not JSON"))
        );
    }
}
