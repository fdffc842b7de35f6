//! The stored form of every JSON record, on both backends: one byte of schema version, the
//! JSON, and a CRC-32 of both. A record from a newer schema is refused by version, one
//! changed on disk by its checksum.

use uuid::Uuid;

use crate::error::StoreError;

/// The schema this build writes. Bump it when a stored form changes in a way older code
/// would misread; adding a field with a serde default does not need a bump.
///
/// 2: a webhook action's input, body and headers are stored apart (`record`).
/// 3: a delivery's body goes to `action_bodies` when it is acknowledged; its inbox entry holds
///    only what the action record needs (an older build would dispatch it with an empty body).
/// 4: bodies in `action_bodies` carry a codec byte and may be LZ4-compressed (`record`).
/// 5: a webhook body is kept byte for byte, UTF-8 or not (an older build would call a body
///    that is not UTF-8 damaged).
/// 6: every record ends with a CRC-32 of the rest (`seal`), so an edit inside one is refused.
/// 7: plans: an action may be a step of a plan run (a command step has no tool) or start a
///    run, and the plan tables exist (an older build would run a command step as a tool);
///    the status `awaiting_approval` (status byte 7) and the approval record.
/// 8: the history index (built at open from the actions of an older file), run ids, log
///    excerpts, the notification outbox (an older build would leave the index stale).
/// 9: the history index has a series dimension and the recurring series are indexed (both
///    added at open to an older file), and dashboard sessions are stored.
/// 10: the history index is keyed by run time, not creation time (rebuilt at open from the
///    actions of an older file; an older build would page and filter a file by the wrong key).
///
/// The `run_logs` table (whole run logs) needs no bump: an older build never reads it, and
/// only leaves the logs of the actions it prunes behind.
pub const SCHEMA_VERSION: u64 = 11;

/// Records of this version and later end with a CRC-32 (little-endian) of all before it.
const CHECKSUM_SINCE: u8 = 6;

/// Appends the record's checksum (see `CHECKSUM_SINCE`).
pub(crate) fn seal(mut bytes: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// The record without its checksum, once the checksum matches; records older than
/// `CHECKSUM_SINCE` have none, and newer ones are left for their decoder to refuse by version.
pub(crate) fn unseal(id: Uuid, bytes: &[u8]) -> Result<&[u8], StoreError> {
    if bytes
        .first()
        .is_none_or(|&version| version < CHECKSUM_SINCE || u64::from(version) > SCHEMA_VERSION)
    {
        return Ok(bytes);
    }
    let corrupt = |detail: &str| StoreError::Corrupt {
        id,
        detail: detail.to_string(),
    };
    let (content, crc) = bytes
        .split_last_chunk::<4>()
        .ok_or_else(|| corrupt("cut short before its checksum"))?;
    if crc32fast::hash(content) != u32::from_le_bytes(*crc) {
        return Err(corrupt(
            "its checksum does not match: the record was changed on disk",
        ));
    }
    Ok(content)
}

/// One byte of schema version, then JSON: the form of every JSON record.
pub(crate) fn encode_json<T: serde::Serialize>(id: Uuid, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut bytes = vec![SCHEMA_VERSION as u8];
    serde_json::to_writer(&mut bytes, value).map_err(|err| StoreError::Corrupt {
        id,
        detail: err.to_string(),
    })?;
    Ok(seal(bytes))
}

/// Reads what `encode_json` wrote; refuses a record from a newer schema.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    id: Uuid,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let bytes = unseal(id, bytes)?;
    let (&version, json) = bytes.split_first().ok_or_else(|| StoreError::Corrupt {
        id,
        detail: "empty record".into(),
    })?;
    if u64::from(version) > SCHEMA_VERSION {
        return Err(StoreError::NewerRecord {
            id,
            found: version.into(),
            supported: SCHEMA_VERSION,
        });
    }
    serde_json::from_slice(json).map_err(|err| StoreError::Corrupt {
        id,
        detail: err.to_string(),
    })
}
