//! Dashboard sessions: `ui_sessions` key (32 bytes, a hash of the session's secret; the
//! server hashes, the store keeps what it is given) -> sealed JSON of [`UiSession`].
//!
//! Stored rather than held in memory so that a page stays logged in across a daemon restart
//! (its event stream reconnects on its own). Expired sessions are removed when a new one is
//! made; there are few (one per browser that logged in).

use chrono::{DateTime, Utc};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::ActionDb;
use crate::error::StoreError;
use crate::store::{UiSession, decode_json, encode_json, sort_newest_first};

const UI_SESSIONS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("ui_sessions");

pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(UI_SESSIONS)?;
    Ok(())
}

impl ActionDb {
    /// Stores a new session under `key`, and forgets the ones expired by `now`.
    pub fn create_ui_session(
        &self,
        key: [u8; 32],
        session: &UiSession,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut table = tx.open_table(UI_SESSIONS)?;
            let mut expired = Vec::new();
            for entry in table.iter()? {
                let (stored_key, bytes) = entry?;
                let stored: UiSession = decode_json(Uuid::nil(), bytes.value())?;
                if stored.expires_at <= now {
                    expired.push(stored_key.value());
                }
            }
            for old in expired {
                table.remove(old)?;
            }
            table.insert(key, encode_json(Uuid::nil(), session)?.as_slice())?;
        }
        self.db.commit(tx)?;
        Ok(())
    }

    /// The session stored under `key`, unless it expired by `now`.
    pub fn ui_session(
        &self,
        key: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<UiSession>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(UI_SESSIONS)?;
        let Some(bytes) = table.get(key)? else {
            return Ok(None);
        };
        let session: UiSession = decode_json(Uuid::nil(), bytes.value())?;
        Ok((session.expires_at > now).then_some(session))
    }

    /// Ends the session stored under `key` (logout); the session it was, if there was one.
    pub fn end_ui_session(&self, key: [u8; 32]) -> Result<Option<UiSession>, StoreError> {
        let tx = self.begin_write()?;
        let removed = match tx.open_table(UI_SESSIONS)?.remove(key)? {
            Some(bytes) => Some(decode_json(Uuid::nil(), bytes.value())?),
            None => None,
        };
        self.db.commit(tx)?;
        Ok(removed)
    }

    /// The sessions not expired by `now`, with their keys, newest first.
    pub fn ui_sessions(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<([u8; 32], UiSession)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(UI_SESSIONS)?;
        let mut live = Vec::new();
        for entry in table.iter()? {
            let (key, bytes) = entry?;
            let session: UiSession = decode_json(Uuid::nil(), bytes.value())?;
            if session.expires_at > now {
                live.push((key.value(), session));
            }
        }
        sort_newest_first(&mut live);
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_session_lives_until_it_expires_or_ends_on_redb() {
        let dir = tempfile::tempdir().unwrap();
        a_session_lives_until_it_expires_or_ends(
            &ActionDb::open(&dir.path().join("o.db")).unwrap(),
        );
    }

    #[test]
    fn a_session_lives_until_it_expires_or_ends_on_postgres() {
        a_session_lives_until_it_expires_or_ends(&crate::store::redb::tests::open_pg());
    }

    fn a_session_lives_until_it_expires_or_ends(db: &dyn Store) {
        let now = Utc::now();
        let session = |hours| UiSession {
            csrf: "c".into(),
            created_at: now,
            expires_at: now + chrono::Duration::hours(hours),
            role: None,
            token_name: None,
            token_digest: None,
        };
        db.create_ui_session([1; 32], &session(1), now).unwrap();
        db.create_ui_session([2; 32], &session(3), now).unwrap();
        assert_eq!(db.ui_session([1; 32], now).unwrap(), Some(session(1)));
        assert_eq!(db.ui_session([9; 32], now).unwrap(), None);
        let later = now + chrono::Duration::hours(2);
        assert_eq!(db.ui_session([1; 32], later).unwrap(), None, "expired");
        // Making a session forgets the expired ones.
        db.create_ui_session([3; 32], &session(5), later).unwrap();
        let live: Vec<[u8; 32]> = db
            .ui_sessions(later)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(live, [[2; 32], [3; 32]], "the live ones, with their keys");
        assert!(
            db.end_ui_session([1; 32]).unwrap().is_none(),
            "already forgotten"
        );
        assert_eq!(db.end_ui_session([2; 32]).unwrap(), Some(session(3)));
        assert_eq!(db.ui_session([2; 32], now).unwrap(), None, "ended");
        assert!(db.ui_session([3; 32], later).unwrap().is_some());
    }
}
