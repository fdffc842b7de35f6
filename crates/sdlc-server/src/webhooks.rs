//! `POST /webhooks/<path>`: webhook ingress.
//!
//! A request for a registered path is stored durably, exactly as received (body bytes,
//! headers, time), before it is answered `202 {"id"}`; the engine is woken as it is stored and
//! turns it into an action within milliseconds. Every refusal stores nothing:
//! - an unregistered path (including any with `..`, `%2F` or other characters a route cannot
//!   have, since the raw, undecoded path is matched): 404;
//! - a body over `--max-body`: 413;
//! - a route with a secret and a missing or wrong `X-Hub-Signature-256`: 401.
//!
//! A repeated delivery id on the same route within a day is answered 202 with the first id.
//! Every request, refused or not, is noted in the delivery log (`delivery_log`).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use sdlc_core::webhook::{DELIVERY_ID_HEADERS, Delivery, normalize_path};

use crate::delivery_log::{DeliveryOutcome, DeliveryRecord};
use crate::{ApiError, AppState};

/// Headers never stored: credentials meant for proxies or browsers, not for tools.
const PRIVATE_HEADERS: [&str; 4] = [
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];
/// Parts of a header name that mark a credential (`X-Gitlab-Token`, `X-Api-Key`,
/// `X-Hub-Signature-256`, `X-Access-Key`, `X-Pwd`, `X-Session-Id`, ...): such headers are
/// stored as `REDACTED`, so the database (and a template) shows that one came but never what
/// it said. The marks are short on purpose: a header redacted that needed not be costs a
/// template one value; one kept that was a secret leaks it. The signature was checked before.
const CREDENTIAL_MARKS: [&str; 14] = [
    "token", "secret", "sig", "key", "pass", "pwd", "auth", "cred", "session", "private", "cookie",
    "jwt", "bearer", "otp",
];
/// What a credential header's value is stored as.
pub const REDACTED: &str = "[redacted]";
/// At most this many headers are stored, each value cut to `MAX_HEADER_VALUE` bytes.
const MAX_STORED_HEADERS: usize = 64;
const MAX_HEADER_VALUE: usize = 4096;
const MAX_DELIVERY_ID: usize = 200;

/// The ingress handler for every path under `/webhooks/`.
pub async fn ingest(
    State(state): State<AppState>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let raw_path = request.uri().path();
    let mut record = DeliveryRecord {
        received_at: state.clock().now(),
        path: raw_path
            .strip_prefix("/webhooks/")
            .unwrap_or(raw_path)
            .chars()
            .take(200)
            .collect(),
        route_id: None,
        outcome: DeliveryOutcome::Error,
        status: 0,
        action_id: None,
        delivery_id: None,
        body_bytes: 0,
        detail: None,
    };
    let answer = receive(&state, request, &mut record).await;
    match &answer {
        Ok(ingested) => {
            record.status = StatusCode::ACCEPTED.as_u16();
            record.action_id = Some(ingested.id);
            record.outcome = if ingested.duplicate {
                DeliveryOutcome::Duplicate
            } else {
                DeliveryOutcome::Accepted
            };
        }
        Err(err) => {
            record.status = err.status.as_u16();
            record.outcome = DeliveryOutcome::of_refusal(err.status);
            record.detail = Some(err.message.clone());
        }
    }
    state.record_delivery(record);
    let ingested = answer?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": ingested.id, "duplicate": ingested.duplicate })),
    ))
}

/// Checks and stores one request, noting in `record` what it learns on the way.
async fn receive(
    state: &AppState,
    request: Request,
    record: &mut DeliveryRecord,
) -> Result<sdlc_core::store::Ingested, ApiError> {
    let raw_path = request.uri().path().to_string();
    let not_found = || {
        ApiError::not_found(format!(
            "no webhook route at {raw_path}: see sdlc orchestrate webhook list"
        ))
    };
    let wanted = raw_path.strip_prefix("/webhooks/").ok_or_else(not_found)?;
    let path = normalize_path(wanted).map_err(|_| not_found())?;
    let route = match state.route(&path) {
        Some(route) => route,
        // On a shared database a route added a moment ago by another process may not have
        // reached this node's cache yet (its notification is on the way): ask the store.
        None if state.db().shared() => {
            let wanted = path.clone();
            let found = state.with_db(move |db| db.route_by_path(&wanted)).await?;
            let route = found.ok_or_else(not_found)?;
            state.cache_route(&path, Some(route.clone()));
            route
        }
        None => return Err(not_found()),
    };
    record.path = route.path.clone();
    record.route_id = Some(route.id);

    let (parts, body) = request.into_parts();
    let body = read_body(body, &parts.headers, state.max_body()).await?;
    record.body_bytes = body.len();
    if let Some(secret) = &route.secret {
        verify_signature(secret, &body, &parts.headers)?;
    }
    let headers = stored_headers(&parts.headers);
    let delivery_id = DELIVERY_ID_HEADERS
        .iter()
        .find_map(|name| headers.get(*name).filter(|id| !id.trim().is_empty()))
        .map(|id: &String| id.chars().take(MAX_DELIVERY_ID).collect::<String>());
    record.delivery_id = delivery_id.clone();
    let now = state.clock().now();
    let delivery = Delivery {
        // The delivery's id becomes its action's: time-ordered like every action id.
        id: Uuid::now_v7(),
        route_id: route.id,
        route_path: route.path.clone(),
        tool_name: route.tool_name.clone(),
        input_template: route.input_template.clone(),
        headers,
        delivery_id,
        received_at: now,
        body: body.to_vec(),
    };
    // Stored, and the engine woken, by the webhook writer (`ingest.rs`).
    state.ingest(delivery).await
}

/// Reads the body, refusing it (413) as soon as it is known to exceed `limit`.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than the {limit}-byte limit (the daemon's --max-body)"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let length_limit = std::error::Error::source(&err)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if length_limit {
            too_large()
        } else {
            ApiError::bad_request(format!("could not read the request body: {err}"))
        }
    })
}

/// GitHub's form: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`,
/// compared in constant time.
fn verify_signature(secret: &str, body: &[u8], headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = |why: &str| ApiError::new(StatusCode::UNAUTHORIZED, why.to_string());
    let header = headers
        .get("x-hub-signature-256")
        .ok_or_else(|| unauthorized("this route requires X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body with the route's secret>"))?;
    let hex_digest = header
        .to_str()
        .ok()
        .and_then(|v| v.trim().strip_prefix("sha256="))
        .ok_or_else(|| unauthorized("X-Hub-Signature-256 must look like sha256=<64 hex digits>"))?;
    let digest = hex::decode(hex_digest)
        .map_err(|_| unauthorized("X-Hub-Signature-256 must look like sha256=<64 hex digits>"))?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&digest).map_err(|_| {
        unauthorized("X-Hub-Signature-256 does not match the body: check the route's secret")
    })
}

/// The headers kept with a delivery: lower-case names, credentials left out, bounded.
fn stored_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if PRIVATE_HEADERS.contains(&name) || kept.contains_key(name) {
            continue;
        }
        if kept.len() == MAX_STORED_HEADERS {
            break;
        }
        if is_credential(name) {
            kept.insert(name.to_string(), REDACTED.to_string());
            continue;
        }
        let bytes = value.as_bytes();
        let cut = &bytes[..bytes.len().min(MAX_HEADER_VALUE)];
        kept.insert(name.to_string(), String::from_utf8_lossy(cut).into_owned());
    }
    kept
}

/// Whether a (lower-case) header name marks a credential; delivery-id headers never do.
fn is_credential(name: &str) -> bool {
    !DELIVERY_ID_HEADERS.contains(&name) && CREDENTIAL_MARKS.iter().any(|mark| name.contains(mark))
}

/// The signature a sender computes, for tests and documentation.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn credentials_are_never_stored_and_other_headers_are() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer abc"),
            ("cookie", "session=abc"),
            ("proxy-authorization", "Basic abc"),
            ("x-gitlab-token", "glpat-abc"),
            ("x-api-key", "abc"),
            ("x-hub-signature-256", "sha256=abc"),
            ("x-auth-user", "abc"),
            ("x-access-key", "abc"),
            ("x-private-key", "abc"),
            ("x-pwd", "abc"),
            ("x-sig", "abc"),
            ("x-creds", "abc"),
            ("x-session-id", "abc"),
            ("x-passphrase", "abc"),
            ("x-jwt-assertion", "abc"),
            ("x-github-delivery", "1234"),
            ("idempotency-key", "k-1"),
            ("x-github-event", "push"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let kept = stored_headers(&headers);
        for gone in ["authorization", "cookie", "proxy-authorization"] {
            assert!(!kept.contains_key(gone), "{gone} stored: {kept:?}");
        }
        for redacted in [
            "x-gitlab-token",
            "x-api-key",
            "x-hub-signature-256",
            "x-auth-user",
            "x-access-key",
            "x-private-key",
            "x-pwd",
            "x-sig",
            "x-creds",
            "x-session-id",
            "x-passphrase",
            "x-jwt-assertion",
        ] {
            assert_eq!(kept[redacted], REDACTED, "{redacted}");
        }
        assert_eq!(kept["x-github-delivery"], "1234");
        assert_eq!(kept["idempotency-key"], "k-1");
        assert_eq!(kept["x-github-event"], "push");
        assert!(!kept.values().any(|v| v.contains("abc")), "{kept:?}");
    }

    #[test]
    fn signatures_in_githubs_form_verify_and_others_do_not() {
        let body = br#"{"ref":"main"}"#;
        let mut headers = HeaderMap::new();
        assert!(verify_signature("s", body, &headers).is_err());
        headers.insert(
            "x-hub-signature-256",
            HeaderValue::from_str(&sign("s", body)).unwrap(),
        );
        assert!(verify_signature("s", body, &headers).is_ok());
        assert!(verify_signature("other", body, &headers).is_err());
        assert!(verify_signature("s", b"tampered", &headers).is_err());
        for bad in ["sha1=abc", "sha256=zz", "sha256=", "garbage"] {
            headers.insert("x-hub-signature-256", HeaderValue::from_static(bad));
            assert_eq!(
                verify_signature("s", body, &headers).unwrap_err().status,
                401
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_signature_header_is_an_answer_not_a_panic(header in ".{0,100}", body in ".{0,100}") {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&header) {
                headers.insert("x-hub-signature-256", value);
            }
            if let Err(err) = verify_signature("secret", body.as_bytes(), &headers) {
                proptest::prop_assert_eq!(err.status, StatusCode::UNAUTHORIZED);
            }
        }
    }

    #[test]
    fn credentials_are_not_stored_and_values_are_bounded() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer x"));
        headers.insert("cookie", HeaderValue::from_static("a=b"));
        headers.insert("x-big", HeaderValue::from_str(&"v".repeat(10_000)).unwrap());
        headers.insert("X-GitHub-Event", HeaderValue::from_static("push"));
        let kept = stored_headers(&headers);
        assert!(!kept.contains_key("authorization") && !kept.contains_key("cookie"));
        assert_eq!(kept["x-big"].len(), MAX_HEADER_VALUE);
        assert_eq!(kept["x-github-event"], "push");
    }
}
