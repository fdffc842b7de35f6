//! The webhook half of `ActionDb`: routes, the inbox of acknowledged deliveries, and the
//! delivery-id memory that keeps a repeated delivery from running twice.
//!
//! - `routes`        id -> version byte ++ JSON of `WebhookRoute`
//! - `route_paths`   normalised path -> route id (paths are unique)
//! - `inbox`         received_ms ++ id -> a delivery's meta (acknowledged, not yet an action);
//!   its body, headers and rendered input are already in `action_bodies` under the id the
//!   action will have, so dispatch writes only the small action record (schema 3; an entry
//!   from schema 2 still carries its body and is dispatched the old way).
//! - `delivery_ids`  route id ++ delivery id -> (first id, received_ms)
//! - `delivery_ids_by_time` received_ms ++ id -> `delivery_ids` key, so entries older than a
//!   day are pruned by a range scan rather than a walk over all of them.
//!
//! Dispatch (inbox -> action) happens inside the settle (`Store::settle_work`), in the engine's one commit,
//! for as many deliveries as that settle can claim (`dispatch_in`). Until then a delivery is
//! found through its body, which records when it arrived (the inbox key, with the id), and is
//! shown as the pending action it will become (`lookup_waiting`, `list_waiting`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::record::{ACTION_BODIES, StoredBody, encode_body_parts, exists_in, frame, unframe};
use super::{ActionDb, Tables, status_key};
use crate::error::StoreError;
use crate::model::{Action, StatusKind};
use crate::store::rules::{put, put_dispatched};
use crate::store::{DEDUPE_WINDOW_MS, Ingested, decode_json, due_key, encode_json};
use crate::webhook::{
    Delivery, WebhookRoute, delivery_action, delivery_action_rendered, normalize_path, render_input,
};

pub(super) const ROUTES: TableDefinition<u128, &[u8]> = TableDefinition::new("routes");
pub(super) const ROUTE_PATHS: TableDefinition<&str, u128> = TableDefinition::new("route_paths");
pub(super) const INBOX: TableDefinition<[u8; 24], &[u8]> = TableDefinition::new("inbox");
pub(super) const DELIVERY_IDS: TableDefinition<&[u8], (u128, u64)> =
    TableDefinition::new("delivery_ids");
pub(super) const DELIVERY_IDS_BY_TIME: TableDefinition<[u8; 24], &[u8]> =
    TableDefinition::new("delivery_ids_by_time");

/// Most deliveries turned into actions, and expired delivery ids pruned, per settle.
pub(super) const DISPATCH_BATCH: usize = 1024;

impl ActionDb {
    /// Stores a new route. Its path must not be taken.
    pub fn insert_route(&self, route: &WebhookRoute) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut paths = tx.open_table(ROUTE_PATHS)?;
            if paths.get(route.path.as_str())?.is_some() {
                return Err(StoreError::DuplicatePath(route.path.clone()));
            }
            paths.insert(route.path.as_str(), route.id.as_u128())?;
            tx.open_table(ROUTES)?
                .insert(route.id.as_u128(), encode_json(route.id, route)?.as_slice())?;
        }
        self.db.commit(tx)?;
        Ok(())
    }

    /// Every route, by path.
    pub fn routes(&self) -> Result<Vec<WebhookRoute>, StoreError> {
        let tx = self.db.begin_read()?;
        let routes = tx.open_table(ROUTES)?;
        let mut all = Vec::new();
        for entry in routes.iter()? {
            let (id, bytes) = entry?;
            all.push(decode_json(Uuid::from_u128(id.value()), bytes.value())?);
        }
        all.sort_by(|a: &WebhookRoute, b| a.path.cmp(&b.path));
        Ok(all)
    }

    /// The route registered at `path` (already normalised).
    pub fn route_by_path(&self, path: &str) -> Result<Option<WebhookRoute>, StoreError> {
        let tx = self.db.begin_read()?;
        let paths = tx.open_table(ROUTE_PATHS)?;
        let Some(id) = paths.get(path)?.map(|v| v.value()) else {
            return Ok(None);
        };
        let routes = tx.open_table(ROUTES)?;
        let found = routes.get(id)?;
        match found {
            Some(bytes) => Ok(Some(decode_json(Uuid::from_u128(id), bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Removes a route given its id or its path. Deliveries already acknowledged still run.
    pub fn delete_route(&self, id_or_path: &str) -> Result<WebhookRoute, StoreError> {
        let tx = self.begin_write()?;
        let route = {
            let mut routes = tx.open_table(ROUTES)?;
            let mut paths = tx.open_table(ROUTE_PATHS)?;
            let id = match Uuid::parse_str(id_or_path) {
                Ok(id) => Some(id.as_u128()),
                Err(_) => match normalize_path(id_or_path) {
                    Ok(path) => paths.get(path.as_str())?.map(|v| v.value()),
                    Err(_) => None,
                },
            };
            let route: WebhookRoute = match id {
                Some(id) => match routes.remove(id)? {
                    Some(bytes) => decode_json(Uuid::from_u128(id), bytes.value())?,
                    None => return Err(StoreError::RouteNotFound(id_or_path.to_string())),
                },
                None => return Err(StoreError::RouteNotFound(id_or_path.to_string())),
            };
            paths.remove(route.path.as_str())?;
            route
        };
        self.db.commit(tx)?;
        Ok(route)
    }

    /// Stores acknowledged deliveries in one transaction (one commit for a batch of requests).
    /// A delivery whose id was already seen on the same route within a day is not stored;
    /// its answer is the first delivery's id.
    ///
    /// The body is written once, here, where the action will read it (`action_bodies`), with
    /// the route's template rendered: the engine's dispatch then writes a record of a few
    /// hundred bytes instead of copying kilobytes from one table to another.
    pub fn ingest(
        &self,
        deliveries: &[Delivery],
        now: DateTime<Utc>,
    ) -> Result<Vec<Ingested>, StoreError> {
        let tx = self.begin_write()?;
        let mut results = Vec::with_capacity(deliveries.len());
        {
            let mut inbox = tx.open_table(INBOX)?;
            let mut bodies = tx.open_table(ACTION_BODIES)?;
            let mut seen = tx.open_table(DELIVERY_IDS)?;
            let mut seen_by_time = tx.open_table(DELIVERY_IDS_BY_TIME)?;
            for delivery in deliveries {
                if let Some(delivery_id) = &delivery.delivery_id {
                    let key = dedupe_key(delivery.route_id, delivery_id);
                    let earlier = seen.get(key.as_slice())?.map(|v| v.value());
                    if let Some((first, at_ms)) = earlier
                        && now.timestamp_millis() - (at_ms as i64) < DEDUPE_WINDOW_MS
                    {
                        results.push(Ingested {
                            id: Uuid::from_u128(first),
                            duplicate: true,
                        });
                        continue;
                    }
                    let at_ms = now.timestamp_millis().max(0) as u64;
                    seen.insert(key.as_slice(), (delivery.id.as_u128(), at_ms))?;
                    seen_by_time.insert(due_key(now, delivery.id), key.as_slice())?;
                }
                let (tool_input, render_error) = match render_input(delivery) {
                    Ok(input) => (input, None),
                    Err(reason) => (Value::Null, Some(reason)),
                };
                let body = encode_body_parts(
                    delivery.id,
                    &tool_input,
                    &delivery.headers,
                    &delivery.body,
                    Some(delivery.received_at.timestamp_millis()),
                )?;
                bodies.insert(delivery.id.as_u128(), body.as_slice())?;
                inbox.insert(
                    due_key(delivery.received_at, delivery.id),
                    encode_delivery(delivery, render_error)?.as_slice(),
                )?;
                super::changes::note(super::changes::Change {
                    id: delivery.id,
                    status: Some(crate::model::StatusKind::Pending),
                    plan_run: None,
                });
                results.push(Ingested {
                    id: delivery.id,
                    duplicate: false,
                });
            }
        }
        self.db.commit(tx)?;
        Ok(results)
    }

    /// How many acknowledged deliveries are waiting to become actions.
    pub fn inbox_len(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(INBOX)?.len()?)
    }
}

/// Turns up to `limit` inbox deliveries into actions inside `tx` (whose action tables `t`
/// holds open), oldest first, and forgets delivery ids older than the de-duplication window.
/// Returns how many were dispatched and whether more wait.
///
/// The engine asks for as many as it could claim in the same transaction, not for the whole
/// inbox: under a flood of webhooks, dispatching thousands ahead of the runs only held the
/// write lock (and the writer acknowledging requests behind it) for work that could wait.
/// A delivery waiting in the inbox is still seen by id, in lists and in counts (`get`,
/// `list`, `count_by_status`), as a pending action.
pub(super) fn dispatch_in(
    t: &mut Tables<'_>,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<(usize, bool), StoreError> {
    let tx = t.tx;
    let limit = limit.min(DISPATCH_BATCH);
    let mut inbox = tx.open_table(INBOX)?;
    let mut taken = Vec::new();
    for entry in inbox.iter()?.take(limit + 1) {
        let (key, bytes) = entry?;
        taken.push((key.value(), bytes.value().to_vec()));
    }
    let more = taken.len() > limit;
    taken.truncate(limit);
    for (key, bytes) in &taken {
        inbox.remove(*key)?;
        dispatch_one(t, decode_delivery(bytes)?, now)?;
    }
    drop(inbox);
    prune_delivery_ids(tx, now)?;
    Ok((taken.len(), more))
}

/// Stores the action of a delivery just taken out of the inbox.
fn dispatch_one(t: &mut Tables<'_>, queued: Queued, now: DateTime<Utc>) -> Result<(), StoreError> {
    // An action with this id exists only if this delivery was dispatched before, which the
    // inbox removal in the same transaction rules out; check anyway rather than overwrite.
    if exists_in(t, queued.delivery.id)? {
        return Ok(());
    }
    if queued.body_stored {
        let rendered = match queued.render_error {
            Some(reason) => Err(reason),
            None => Ok(Value::Null),
        };
        put_dispatched(
            t,
            &delivery_action_rendered(&queued.delivery, rendered, now),
        )
    } else {
        // Acknowledged by a build before schema 3: the body is in the entry.
        put(t, None, &delivery_action(&queued.delivery, now))
    }
}

/// Dispatches the delivery `id` if it is waiting in the inbox, so that a change by id
/// (cancel, pause, delete...) finds its action; as of `now`, or of the delivery's own
/// arrival when None. Nothing to do for an id already an action.
pub(super) fn dispatch_by_id(
    t: &mut Tables<'_>,
    id: Uuid,
    now: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    if exists_in(t, id)? {
        return Ok(());
    }
    let mut inbox = t.tx.open_table(INBOX)?;
    let Some((key, queued, _)) = find_waiting(&inbox, &t.bodies, id)? else {
        return Ok(());
    };
    inbox.remove(key)?;
    let now = now.unwrap_or(queued.delivery.received_at);
    dispatch_one(t, queued, now)
}

/// The inbox entry of the delivery `id`, found through its body (which says when it was
/// acknowledged, hence the entry's key), with that body. None when it is not waiting, or when
/// its body was written by a build that did not record the time (it is then found once
/// dispatched).
fn find_waiting(
    inbox: &impl ReadableTable<[u8; 24], &'static [u8]>,
    bodies: &impl ReadableTable<u128, &'static [u8]>,
    id: Uuid,
) -> Result<Option<([u8; 24], Queued, StoredBody)>, StoreError> {
    let Some(body) = bodies.get(id.as_u128())? else {
        return Ok(None);
    };
    let body = StoredBody::read(id, body.value())?;
    let Some(at) = body.received_ms().and_then(DateTime::from_timestamp_millis) else {
        return Ok(None);
    };
    let key = due_key(at, id);
    let entry = inbox.get(key)?;
    match entry {
        Some(bytes) => Ok(Some((key, decode_delivery(bytes.value())?, body))),
        None => Ok(None),
    }
}

/// A delivery waiting in the inbox, shown as the pending action it will become: created and
/// due when it was acknowledged, its input, body and headers from its stored `body` (None
/// only for an entry from schema 2, which carries its body). A body its route's template
/// could not use shows as pending too; it fails when dispatched.
fn waiting_action(queued: &Queued, body: Option<StoredBody>) -> Action {
    let delivery = &queued.delivery;
    let mut action = delivery_action_rendered(delivery, Ok(Value::Null), delivery.received_at);
    if let Some(body) = body {
        body.attach(&mut action);
    }
    action
}

/// The delivery `id` as a pending action, if it is waiting in the inbox.
pub(super) fn lookup_waiting(
    inbox: &impl ReadableTable<[u8; 24], &'static [u8]>,
    bodies: &impl ReadableTable<u128, &'static [u8]>,
    id: Uuid,
) -> Result<Option<Action>, StoreError> {
    Ok(find_waiting(inbox, bodies, id)?
        .map(|(_, queued, body)| waiting_action(&queued, Some(body))))
}

/// Up to `limit` deliveries waiting in the inbox, newest first, as pending actions, with
/// their keys in the form of the status index (`status_key`) for merging with stored actions.
pub(super) fn list_waiting(
    inbox: &impl ReadableTable<[u8; 24], &'static [u8]>,
    bodies: &impl ReadableTable<u128, &'static [u8]>,
    tool: Option<&str>,
    limit: usize,
) -> Result<Vec<([u8; 25], Action)>, StoreError> {
    let mut found = Vec::new();
    for entry in inbox.iter()?.rev() {
        if found.len() == limit {
            break;
        }
        let (_, bytes) = entry?;
        let queued = decode_delivery(bytes.value())?;
        if tool.is_some_and(|tool| tool != queued.delivery.tool_name) {
            continue;
        }
        let body = if queued.body_stored {
            Some(StoredBody::get(bodies, queued.delivery.id)?)
        } else {
            None
        };
        let action = waiting_action(&queued, body);
        found.push((
            status_key(StatusKind::Pending, action.updated_at, action.id),
            action,
        ));
    }
    Ok(found)
}

fn prune_delivery_ids(tx: &WriteTransaction, now: DateTime<Utc>) -> Result<(), StoreError> {
    let cutoff = now - chrono::Duration::milliseconds(DEDUPE_WINDOW_MS);
    let mut by_time = tx.open_table(DELIVERY_IDS_BY_TIME)?;
    let mut seen = tx.open_table(DELIVERY_IDS)?;
    let mut expired = Vec::new();
    for entry in by_time
        .range(..due_key(cutoff, Uuid::nil()))?
        .take(DISPATCH_BATCH)
    {
        let (key, dedupe) = entry?;
        expired.push((key.value(), dedupe.value().to_vec()));
    }
    for (key, dedupe) in expired {
        by_time.remove(key)?;
        // Only forget it if no newer delivery re-used the id after the window.
        let current = seen.get(dedupe.as_slice())?.map(|v| v.value());
        if current.is_some_and(|(_, at_ms)| (at_ms as i64) < cutoff.timestamp_millis()) {
            seen.remove(dedupe.as_slice())?;
        }
    }
    Ok(())
}

fn dedupe_key(route_id: Uuid, delivery_id: &str) -> Vec<u8> {
    let mut key = route_id.as_bytes().to_vec();
    key.extend_from_slice(delivery_id.as_bytes());
    key
}

/// The part of a delivery stored as JSON in its inbox entry. Since schema 3 nothing follows
/// it (the body is in `action_bodies`); before, the body followed it as raw bytes.
#[derive(Serialize, Deserialize)]
struct DeliveryMeta {
    id: Uuid,
    route_id: Uuid,
    route_path: String,
    tool_name: String,
    /// Empty when the body is stored apart: the input was rendered when it was stored.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    input_template: String,
    /// Empty when the body is stored apart (the headers are stored with it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    delivery_id: Option<String>,
    received_at: DateTime<Utc>,
    /// The body, headers and rendered input are in `action_bodies` under `id`.
    #[serde(default)]
    body_stored: bool,
    /// Why the route's template could not be rendered for this body (the action fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    render_error: Option<String>,
}

/// A delivery waiting in the inbox, as decoded.
struct Queued {
    /// Without body, headers and template when `body_stored`.
    delivery: Delivery,
    body_stored: bool,
    render_error: Option<String>,
}

/// The inbox entry of a delivery whose body `ingest` stores in `action_bodies`.
fn encode_delivery(
    delivery: &Delivery,
    render_error: Option<String>,
) -> Result<Vec<u8>, StoreError> {
    let meta = serde_json::to_vec(&DeliveryMeta {
        id: delivery.id,
        route_id: delivery.route_id,
        route_path: delivery.route_path.clone(),
        tool_name: delivery.tool_name.clone(),
        input_template: String::new(),
        headers: BTreeMap::new(),
        delivery_id: delivery.delivery_id.clone(),
        received_at: delivery.received_at,
        body_stored: true,
        render_error,
    })
    .map_err(|err| StoreError::Corrupt {
        id: delivery.id,
        detail: err.to_string(),
    })?;
    Ok(frame(&meta, &[]))
}

fn decode_delivery(bytes: &[u8]) -> Result<Queued, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        id: Uuid::nil(),
        detail: format!("inbox entry: {detail}"),
    };
    let (meta, body) = unframe(Uuid::nil(), bytes).map_err(|err| match err {
        StoreError::Corrupt { detail, .. } => corrupt(detail),
        other => other,
    })?;
    let meta: DeliveryMeta =
        serde_json::from_slice(meta).map_err(|err| corrupt(err.to_string()))?;
    Ok(Queued {
        delivery: Delivery {
            id: meta.id,
            route_id: meta.route_id,
            route_path: meta.route_path,
            tool_name: meta.tool_name,
            input_template: meta.input_template,
            headers: meta.headers,
            delivery_id: meta.delivery_id,
            received_at: meta.received_at,
            body: body.to_vec(),
        },
        body_stored: meta.body_stored,
        render_error: meta.render_error,
    })
}
