//! Named API tokens on PostgreSQL (see `store::tokens`): the digest is the key, the name a
//! unique column, so two commands adding one name at once cannot both succeed. Adding or
//! removing one notifies every node (`wake::TOKENS_CHANNEL`), which forgets what it cached of
//! the tokens: a removed token, and the sessions it opened, stop working at once everywhere.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PgStore;
use super::txn::fail;
use crate::access::ApiToken;
use crate::error::StoreError;
use crate::store::{decode_json, encode_json};

impl PgStore {
    /// Stores `token` under `digest`, unless a token of that name exists.
    pub fn add_api_token(&self, digest: [u8; 32], token: &ApiToken) -> Result<(), StoreError> {
        let mut client = self.db.client()?;
        let added = client
            .execute(
                "WITH added AS (
                     INSERT INTO sdlc_api_tokens (digest, name, record) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING RETURNING name)
                 SELECT pg_notify($4, '') FROM added",
                &[
                    &digest.as_slice(),
                    &token.name,
                    &encode_json(Uuid::nil(), token)?,
                    &super::wake::TOKENS_CHANNEL,
                ],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot store a token", e))?;
        if added == 0 {
            return Err(StoreError::TokenNameTaken(token.name.clone()));
        }
        Ok(())
    }

    /// Every named token, by name.
    pub fn api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query("SELECT record FROM sdlc_api_tokens ORDER BY name", &[])
            .map_err(|e| fail(self.db.shown_url(), "cannot read the tokens", e))?;
        rows.iter()
            .map(|row| decode_json(Uuid::nil(), row.get(0)))
            .collect()
    }

    /// The token whose secret has this digest.
    pub fn api_token_by_digest(&self, digest: [u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "SELECT record FROM sdlc_api_tokens WHERE digest = $1",
                &[&digest.as_slice()],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot read a token", e))?;
        rows.first()
            .map(|row| decode_json(Uuid::nil(), row.get(0)))
            .transpose()
    }

    /// Removes the token named `name`.
    pub fn remove_api_token(&self, name: &str) -> Result<ApiToken, StoreError> {
        let mut client = self.db.client()?;
        let rows = client
            .query(
                "WITH removed AS (DELETE FROM sdlc_api_tokens WHERE name = $1 RETURNING record)
                 SELECT record, pg_notify($2, '') FROM removed",
                &[&name, &super::wake::TOKENS_CHANNEL],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot remove a token", e))?;
        match rows.first() {
            Some(row) => decode_json(Uuid::nil(), row.get(0)),
            None => Err(StoreError::TokenNotFound(name.to_string())),
        }
    }

    /// Notes that the token with this digest was used at `at` (nothing when it is gone).
    pub fn touch_api_token(&self, digest: [u8; 32], at: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(mut token) = self.api_token_by_digest(digest)? else {
            return Ok(());
        };
        token.last_used_at = Some(at);
        let mut client = self.db.client()?;
        client
            .execute(
                "UPDATE sdlc_api_tokens SET record = $2 WHERE digest = $1",
                &[&digest.as_slice(), &encode_json(Uuid::nil(), &token)?],
            )
            .map_err(|e| fail(self.db.shown_url(), "cannot note a token's use", e))?;
        Ok(())
    }
}
