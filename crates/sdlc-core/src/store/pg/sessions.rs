//! Dashboard sessions on PostgreSQL (see `store::sessions`): any node serves a page whose
//! session another node made.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PgStore;
use super::txn::fail;
use crate::error::StoreError;
use crate::store::{UiSession, decode_json, encode_json};

impl PgStore {
    /// Stores a new session under `key`, and forgets the ones expired by `now`.
    pub fn create_ui_session(
        &self,
        key: [u8; 32],
        session: &UiSession,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let url = self.db.shown_url();
        let mut client = self.db.client()?;
        let mut tx = client
            .transaction()
            .map_err(|e| fail(url, "cannot begin a transaction", e))?;
        tx.execute(
            "DELETE FROM sdlc_ui_sessions WHERE expires_at <= $1",
            &[&now.timestamp_millis()],
        )
        .map_err(|e| fail(url, "cannot forget expired sessions", e))?;
        tx.execute(
            "INSERT INTO sdlc_ui_sessions (key, expires_at, record) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at,
                 record = excluded.record",
            &[
                &key.as_slice(),
                &session.expires_at.timestamp_millis(),
                &encode_json(Uuid::nil(), session)?,
            ],
        )
        .map_err(|e| fail(url, "cannot store a session", e))?;
        tx.commit().map_err(|e| fail(url, "cannot commit", e))
    }

    /// The session stored under `key`, unless it expired by `now`.
    pub fn ui_session(
        &self,
        key: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<UiSession>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT record FROM sdlc_ui_sessions WHERE key = $1 AND expires_at > $2",
                &[&key.as_slice(), &now.timestamp_millis()],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot read a session", e))?;
        rows.first()
            .map(|row| decode_json(Uuid::nil(), row.get(0)))
            .transpose()
    }

    /// Ends the session stored under `key` (logout); the session it was, if there was one.
    pub fn end_ui_session(&self, key: [u8; 32]) -> Result<Option<UiSession>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "DELETE FROM sdlc_ui_sessions WHERE key = $1 RETURNING record",
                &[&key.as_slice()],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot end a session", e))?;
        rows.first()
            .map(|row| decode_json(Uuid::nil(), row.get(0)))
            .transpose()
    }

    /// The sessions not expired by `now`, with their keys, newest first.
    pub fn ui_sessions(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<([u8; 32], UiSession)>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT key, record FROM sdlc_ui_sessions WHERE expires_at > $1",
                &[&now.timestamp_millis()],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot list sessions", e))?;
        let mut live = Vec::with_capacity(rows.len());
        for row in rows {
            let key: &[u8] = row.get(0);
            let Ok(key) = <[u8; 32]>::try_from(key) else {
                continue;
            };
            live.push((key, decode_json(Uuid::nil(), row.get(1))?));
        }
        crate::store::sessions::sort_newest_first(&mut live);
        Ok(live)
    }
}
