//! How an action is laid out on disk: the record in `actions`, and for an action that came
//! from a webhook, its body in `action_bodies`.
//!
//! A webhook action carries the request it came from (body and headers, often kilobytes) and
//! usually a tool input rendered from it. None of that changes after the action is stored,
//! yet every state change (claimed, finished, retried) rewrites the action's record. So from
//! schema version 2 those parts live apart, written once:
//!
//! - `actions`        id -> version byte ++ JSON of the action; for a webhook action of
//!   version >= 2, with `tool_input` null and the trigger's `raw_payload` and `headers` empty.
//! - `action_bodies`  id -> version byte ++ codec byte ++ content, where content is u32 BE
//!   length of the JSON that follows ++ JSON of `{tool_input, headers}` ++ the request body
//!   as stored (no JSON escaping). Codec 0: content as is; codec 1: content compressed with
//!   LZ4 (block format, its length prepended as u32 LE), chosen when it is smaller. Versions 2
//!   and 3 have no codec byte (content as is). Since schema 3 the body is written when the
//!   request is acknowledged (`ingest`), before the action exists: dispatch then writes only
//!   the action's small record (`write_light_in`).
//!
//! Why compress: webhook payloads are JSON full of repeated keys and URLs (a GitHub push
//! event of 6.1 KB is 2.3 KB in LZ4), and a 4 KiB body with its headers does not fit a 4 KiB
//! page, so it took an 8 KiB one. Writing those pages was most of the webhook writer's time;
//! compressing costs far less than it saves (acknowledged webhooks per second rose by half
//! under load: BENCHMARKS.md, the b09dc6f runs).
//!
//! Version-1 records (written before the split) hold everything inline and keep decoding; the
//! first rewrite of one stores its body apart. Other actions (scheduled, manual) stay inline:
//! their inputs are small, and a second lookup per read would buy nothing.

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{SCHEMA_VERSION, Tables, decode_json, encode_json};
use crate::error::StoreError;
use crate::model::{Action, ActionTrigger};

pub(super) const ACTION_BODIES: TableDefinition<u128, &[u8]> =
    TableDefinition::new("action_bodies");

/// The first record version whose webhook actions keep their body in `action_bodies`.
const SPLIT_SINCE: u8 = 2;
/// The first version whose bodies carry a codec byte.
const CODEC_SINCE: u8 = 4;
const CODEC_NONE: u8 = 0;
const CODEC_LZ4: u8 = 1;
/// Shorter contents are stored as they are: too little to gain, and they share pages anyway.
const COMPRESS_FROM: usize = 512;
/// LZ4 cannot expand data more than ~255 times: a larger length in front of a compressed
/// body is damage, and is refused before anything is allocated for it.
const LZ4_MAX_RATIO: usize = 255;

/// Whether this action's bulky, immutable parts are stored apart.
fn has_body(action: &Action) -> bool {
    matches!(action.trigger, ActionTrigger::Webhook { .. })
}

/// The part of a body stored as JSON; the request body follows it as raw bytes.
#[derive(Deserialize)]
struct BodyMeta {
    tool_input: Value,
    headers: BTreeMap<String, String>,
    /// When the request was acknowledged (ms since the epoch), in a body `ingest` wrote: with
    /// the id, the key of the delivery's inbox entry, so a delivery not yet dispatched can be
    /// found by its id. Absent in bodies written before, or rewritten with their action.
    #[serde(default)]
    received_ms: Option<i64>,
}

/// `BodyMeta` as written, borrowing from the action.
#[derive(Serialize)]
struct BodyMetaRef<'a> {
    tool_input: &'a Value,
    headers: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    received_ms: Option<i64>,
}

/// Reads the action `bytes` hold, fetching its body from `bodies` when it is stored apart.
fn decode_action(
    id: Uuid,
    bytes: &[u8],
    bodies: &impl ReadableTable<u128, &'static [u8]>,
) -> Result<Action, StoreError> {
    let mut action: Action = decode_json(id, bytes)?;
    let version = bytes.first().copied().unwrap_or(0);
    if version >= SPLIT_SINCE && has_body(&action) {
        StoredBody::get(bodies, id)?.attach(&mut action);
    }
    Ok(action)
}

/// The action with this id, from `actions` and (when stored apart) `bodies`, in any
/// transaction: the one way every reader looks an action up.
pub(super) fn lookup(
    actions: &impl ReadableTable<u128, &'static [u8]>,
    bodies: &impl ReadableTable<u128, &'static [u8]>,
    id: Uuid,
) -> Result<Option<Action>, StoreError> {
    match actions.get(id.as_u128())? {
        Some(bytes) => Ok(Some(decode_action(id, bytes.value(), bodies)?)),
        None => Ok(None),
    }
}

/// The action with this id, inside a write transaction.
pub(super) fn get_in(t: &Tables<'_>, id: Uuid) -> Result<Option<Action>, StoreError> {
    lookup(&t.actions, &t.bodies, id)
}

/// Whether an action with this id is stored (its record alone is looked at).
pub(super) fn exists_in(t: &Tables<'_>, id: Uuid) -> Result<bool, StoreError> {
    Ok(t.actions.get(id.as_u128())?.is_some())
}

/// Stores `new` (replacing `old`, the same action as last read, when given). The body is
/// written only when it is new, changed, or was inline in a version-1 record.
pub(super) fn write_in(
    t: &mut Tables<'_>,
    old: Option<&Action>,
    new: &Action,
) -> Result<(), StoreError> {
    let id = new.id.as_u128();
    if !has_body(new) {
        t.actions.insert(id, encode_json(new.id, new)?.as_slice())?;
        return Ok(());
    }
    let stored = old.is_some_and(|old| same_body(old, new)) && t.bodies.get(id)?.is_some();
    if !stored {
        t.bodies.insert(id, encode_body(new)?.as_slice())?;
    }
    let mut light = new.clone();
    light.tool_input = Value::Null;
    if let ActionTrigger::Webhook {
        raw_payload,
        headers,
        ..
    } = &mut light.trigger
    {
        *raw_payload = String::new();
        *headers = BTreeMap::new();
    }
    if let ActionTrigger::Webhook {
        raw_payload_hex, ..
    } = &mut light.trigger
    {
        *raw_payload_hex = None;
    }
    write_light_in(t, &light)
}

/// Stores the record of a webhook action whose body is already in `action_bodies` (written by
/// `ingest` when the request was acknowledged): `light` carries no input, payload or headers.
pub(super) fn write_light_in(t: &mut Tables<'_>, light: &Action) -> Result<(), StoreError> {
    debug_assert!(has_body(light) && light.tool_input.is_null());
    t.actions
        .insert(light.id.as_u128(), encode_json(light.id, light)?.as_slice())?;
    Ok(())
}

/// Removes the action's record and body; returns its series (read from the record alone:
/// the body is not needed to forget an action).
pub(super) fn remove_in(t: &mut Tables<'_>, id: Uuid) -> Result<Option<Uuid>, StoreError> {
    let Some(action) = record_in(t, id)? else {
        return Ok(None);
    };
    t.actions.remove(id.as_u128())?;
    t.bodies.remove(id.as_u128())?;
    Ok(Some(action.series))
}

/// The action's record alone, its webhook body not attached: what deciding to forget it
/// needs (its series, whether it is a plan step).
pub(super) fn record_in(t: &Tables<'_>, id: Uuid) -> Result<Option<Action>, StoreError> {
    t.actions
        .get(id.as_u128())?
        .map(|record| decode_json(id, record.value()))
        .transpose()
}

/// Compared rather than tracked: a memcmp of a few kilobytes is far cheaper than writing them.
fn same_body(old: &Action, new: &Action) -> bool {
    old.tool_input == new.tool_input && webhook_parts(old) == webhook_parts(new)
}

/// A webhook action's body bytes and headers.
type WebhookParts<'a> = (std::borrow::Cow<'a, [u8]>, &'a BTreeMap<String, String>);

/// The body's bytes (exact: from `raw_payload_hex` when it was not UTF-8) and headers.
fn webhook_parts(action: &Action) -> Option<WebhookParts<'_>> {
    match &action.trigger {
        ActionTrigger::Webhook {
            raw_payload,
            raw_payload_hex,
            headers,
            ..
        } => {
            let bytes = match raw_payload_hex.as_deref().and_then(|h| hex::decode(h).ok()) {
                Some(exact) => exact.into(),
                None => raw_payload.as_bytes().into(),
            };
            Some((bytes, headers))
        }
        _ => None,
    }
}

fn encode_body(action: &Action) -> Result<Vec<u8>, StoreError> {
    let no_headers = BTreeMap::new();
    let (payload, headers) = webhook_parts(action).unwrap_or((b"".as_slice().into(), &no_headers));
    encode_body_parts(action.id, &action.tool_input, headers, &payload, None)
}

/// The `action_bodies` value of action `id`; `ingest` writes it before the action exists,
/// with `received_ms` (see `BodyMeta`).
pub(super) fn encode_body_parts(
    id: Uuid,
    tool_input: &Value,
    headers: &BTreeMap<String, String>,
    payload: &[u8],
    received_ms: Option<i64>,
) -> Result<Vec<u8>, StoreError> {
    let meta = serde_json::to_vec(&BodyMetaRef {
        tool_input,
        headers,
        received_ms,
    })
    .map_err(|err| StoreError::Corrupt {
        id,
        detail: err.to_string(),
    })?;
    let mut plain = Vec::with_capacity(2 + 4 + meta.len() + payload.len());
    plain.extend_from_slice(&[SCHEMA_VERSION as u8, CODEC_NONE]);
    plain.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    plain.extend_from_slice(&meta);
    plain.extend_from_slice(payload);
    Ok(super::seal(compressed(&plain).unwrap_or(plain)))
}

/// `plain` (`version ++ CODEC_NONE ++ content`) with its content compressed, when that is
/// worth doing and makes it smaller.
fn compressed(plain: &[u8]) -> Option<Vec<u8>> {
    let content = &plain[2..];
    if content.len() < COMPRESS_FROM {
        return None;
    }
    let bound = lz4_flex::block::get_maximum_output_size(content.len());
    let mut packed = vec![0u8; 2 + 4 + bound];
    packed[0] = SCHEMA_VERSION as u8;
    packed[1] = CODEC_LZ4;
    packed[2..6].copy_from_slice(&(content.len() as u32).to_le_bytes());
    let written = lz4_flex::block::compress_into(content, &mut packed[6..])
        .expect("the output holds LZ4's worst case");
    (4 + written < content.len()).then(|| {
        packed.truncate(6 + written);
        packed
    })
}

/// The content of a stored body (see the module header), decompressed when it was packed.
fn unpack(id: Uuid, bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, StoreError> {
    let bytes = super::unseal(id, bytes)?;
    let corrupt = |detail: String| StoreError::Corrupt { id, detail };
    let (&version, rest) = bytes.split_first().ok_or_else(|| corrupt("empty".into()))?;
    if u64::from(version) > SCHEMA_VERSION {
        return Err(StoreError::NewerRecord {
            id,
            found: version.into(),
            supported: SCHEMA_VERSION,
        });
    }
    if version < CODEC_SINCE {
        return Ok(rest.into());
    }
    let (&codec, rest) = rest
        .split_first()
        .ok_or_else(|| corrupt("no codec byte".into()))?;
    match codec {
        CODEC_NONE => Ok(rest.into()),
        CODEC_LZ4 => {
            let (len, packed) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| corrupt("truncated".into()))?;
            let len = u32::from_le_bytes(*len) as usize;
            if len > packed.len().saturating_mul(LZ4_MAX_RATIO) + 16 {
                return Err(corrupt(format!(
                    "{len} bytes claimed from {} compressed",
                    packed.len()
                )));
            }
            let mut content = vec![0u8; len];
            let written = lz4_flex::block::decompress_into(packed, &mut content)
                .map_err(|err| corrupt(format!("LZ4: {err}")))?;
            if written != len {
                return Err(corrupt(format!("LZ4 gave {written} of {len} bytes")));
            }
            Ok(content.into())
        }
        other => Err(corrupt(format!("unknown codec {other}"))),
    }
}

/// A stored body, decoded: unpacked and checked once, then attached to an action.
pub(super) struct StoredBody {
    meta: BodyMeta,
    /// Exactly as received (a body need not be UTF-8).
    payload: Vec<u8>,
}

impl StoredBody {
    /// The body of action `id`, which must be stored: a missing one is damage.
    pub(super) fn get(
        bodies: &impl ReadableTable<u128, &'static [u8]>,
        id: Uuid,
    ) -> Result<StoredBody, StoreError> {
        let bytes = bodies
            .get(id.as_u128())?
            .ok_or_else(|| StoreError::Corrupt {
                id,
                detail: "the action's body (action_bodies) is missing".into(),
            })?;
        StoredBody::read(id, bytes.value())
    }

    /// Decodes the body of action `id`; any damage is an error naming the action.
    pub(super) fn read(id: Uuid, bytes: &[u8]) -> Result<StoredBody, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            id,
            detail: format!("action body: {detail}"),
        };
        let content = unpack(id, bytes).map_err(|err| match err {
            StoreError::Corrupt { detail, .. } => corrupt(detail),
            other => other,
        })?;
        let (meta, payload) = split_meta(&content).ok_or_else(|| corrupt("truncated".into()))?;
        let meta: BodyMeta =
            serde_json::from_slice(meta).map_err(|err| corrupt(err.to_string()))?;
        Ok(StoredBody {
            meta,
            payload: payload.to_vec(),
        })
    }

    /// When the delivery whose body this is was acknowledged, if the body says (see
    /// `BodyMeta`).
    pub(super) fn received_ms(&self) -> Option<i64> {
        self.meta.received_ms
    }

    /// Sets the action's input, payload and headers to this body's.
    pub(super) fn attach(self, action: &mut Action) {
        action.tool_input = self.meta.tool_input;
        if let ActionTrigger::Webhook {
            raw_payload,
            raw_payload_hex,
            headers,
            ..
        } = &mut action.trigger
        {
            match String::from_utf8(self.payload) {
                Ok(text) => *raw_payload = text,
                Err(err) => {
                    let bytes = err.into_bytes();
                    *raw_payload = String::from_utf8_lossy(&bytes).into_owned();
                    *raw_payload_hex = Some(hex::encode(&bytes));
                }
            }
            *headers = self.meta.headers;
        }
    }
}

/// `version byte ++ u32 BE length of meta ++ meta (JSON) ++ raw bytes`: a record whose bulk
/// is kept as received instead of escaped into JSON (inbox deliveries; action bodies before
/// version 4).
pub(super) fn frame(meta: &[u8], raw: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(5 + meta.len() + raw.len());
    bytes.push(SCHEMA_VERSION as u8);
    bytes.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    bytes.extend_from_slice(meta);
    bytes.extend_from_slice(raw);
    super::seal(bytes)
}

/// Splits what `frame` wrote into its meta and raw parts; refuses a newer version.
pub(super) fn unframe(id: Uuid, bytes: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let bytes = super::unseal(id, bytes)?;
    let corrupt = |detail: &str| StoreError::Corrupt {
        id,
        detail: detail.to_string(),
    };
    let (&version, rest) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
    if u64::from(version) > SCHEMA_VERSION {
        return Err(StoreError::NewerRecord {
            id,
            found: version.into(),
            supported: SCHEMA_VERSION,
        });
    }
    split_meta(rest).ok_or_else(|| corrupt("truncated"))
}

/// `u32 BE length of meta ++ meta ++ raw` -> (meta, raw); None when it is cut short.
fn split_meta(content: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = content.split_first_chunk::<4>()?;
    let meta_len = u32::from_be_bytes(*len) as usize;
    let meta = rest.get(..meta_len)?;
    Some((meta, &rest[meta_len..]))
}
