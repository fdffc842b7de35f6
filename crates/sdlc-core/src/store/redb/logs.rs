//! Run logs on redb: `run_logs` key (action id ++ attempt, u32 BE) -> the stored form of
//! that attempt's log (see [`crate::logs`]). Written in the settle that records the
//! attempt's outcome, removed with the action; an action's logs are one range.

use redb::{Table, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::ActionDb;
use crate::error::StoreError;
use crate::logs::StoredLog;

pub(super) const RUN_LOGS: TableDefinition<[u8; 20], &[u8]> = TableDefinition::new("run_logs");

pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(RUN_LOGS)?;
    Ok(())
}

/// The key of attempt `attempt` of action `id`.
pub(super) fn key(id: Uuid, attempt: u32) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(id.as_bytes());
    key[16..].copy_from_slice(&attempt.to_be_bytes());
    key
}

/// Removes every log of action `id`.
pub(super) fn remove_all(
    table: &mut Table<'_, [u8; 20], &'static [u8]>,
    id: Uuid,
) -> Result<(), StoreError> {
    table.retain_in(key(id, 0)..=key(id, u32::MAX), |_, _| false)?;
    Ok(())
}

impl ActionDb {
    /// Nothing to do on redb: one process owns the file, and readers follow a running run's
    /// log through it (`logs::live`).
    pub fn put_partial_logs(&self, _logs: &[(Uuid, u32, Vec<u8>)]) -> Result<(), StoreError> {
        Ok(())
    }

    /// The stored log of attempt `attempt` of action `id`, or its newest one (one lookup
    /// either way: the newest is the last key of the action's range).
    pub fn run_log(&self, id: Uuid, attempt: Option<u32>) -> Result<Option<StoredLog>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RUN_LOGS)?;
        let (first, last) = match attempt {
            Some(n) => (key(id, n), key(id, n)),
            None => (key(id, 0), key(id, u32::MAX)),
        };
        let Some(entry) = table.range(first..=last)?.next_back() else {
            return Ok(None);
        };
        let (key, bytes) = entry?;
        let attempt = u32::from_be_bytes(key.value()[16..].try_into().expect("20-byte keys"));
        Ok(Some(StoredLog {
            attempt,
            bytes: bytes.value().to_vec(),
        }))
    }
}
