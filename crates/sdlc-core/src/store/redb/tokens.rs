//! Named API tokens on redb: `api_tokens` key (32 bytes, the SHA-256 of the token's secret;
//! the caller hashes) -> sealed JSON of [`ApiToken`]. A request's token is one lookup by its
//! digest; names are unique, checked by a scan (a project has a handful of tokens).

use chrono::{DateTime, Utc};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::{ActionDb, decode_json, encode_json};
use crate::access::ApiToken;
use crate::error::StoreError;

const API_TOKENS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("api_tokens");

pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(API_TOKENS)?;
    Ok(())
}

impl ActionDb {
    /// Stores `token` under `digest`, unless a token of that name exists.
    pub fn add_api_token(&self, digest: [u8; 32], token: &ApiToken) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut table = tx.open_table(API_TOKENS)?;
            for entry in table.iter()? {
                let (_, bytes) = entry?;
                let stored: ApiToken = decode_json(Uuid::nil(), bytes.value())?;
                if stored.name == token.name {
                    return Err(StoreError::TokenNameTaken(token.name.clone()));
                }
            }
            table.insert(digest, encode_json(Uuid::nil(), token)?.as_slice())?;
        }
        self.db.commit(tx)?;
        Ok(())
    }

    /// Every named token, by name.
    pub fn api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(API_TOKENS)?;
        let mut tokens = Vec::new();
        for entry in table.iter()? {
            let (_, bytes) = entry?;
            tokens.push(decode_json::<ApiToken>(Uuid::nil(), bytes.value())?);
        }
        tokens.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tokens)
    }

    /// The token whose secret has this digest.
    pub fn api_token_by_digest(&self, digest: [u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(API_TOKENS)?;
        let Some(bytes) = table.get(digest)? else {
            return Ok(None);
        };
        decode_json(Uuid::nil(), bytes.value()).map(Some)
    }

    /// Removes the token named `name`.
    pub fn remove_api_token(&self, name: &str) -> Result<ApiToken, StoreError> {
        let tx = self.begin_write()?;
        let removed = {
            let mut table = tx.open_table(API_TOKENS)?;
            let mut found = None;
            for entry in table.iter()? {
                let (key, bytes) = entry?;
                let stored: ApiToken = decode_json(Uuid::nil(), bytes.value())?;
                if stored.name == name {
                    found = Some((key.value(), stored));
                    break;
                }
            }
            let Some((key, token)) = found else {
                return Err(StoreError::TokenNotFound(name.to_string()));
            };
            table.remove(key)?;
            token
        };
        self.db.commit(tx)?;
        Ok(removed)
    }

    /// Notes that the token with this digest was used at `at` (nothing when it is gone).
    pub fn touch_api_token(&self, digest: [u8; 32], at: DateTime<Utc>) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        {
            let mut table = tx.open_table(API_TOKENS)?;
            let stored = match table.get(digest)? {
                Some(bytes) => Some(decode_json::<ApiToken>(Uuid::nil(), bytes.value())?),
                None => None,
            };
            if let Some(mut token) = stored {
                token.last_used_at = Some(at);
                table.insert(digest, encode_json(Uuid::nil(), &token)?.as_slice())?;
            }
        }
        self.db.commit(tx)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;
    use crate::store::Store;

    #[test]
    fn tokens_are_kept_by_digest_with_unique_names_on_redb() {
        let dir = tempfile::tempdir().unwrap();
        tokens_are_kept_by_digest_with_unique_names(
            &ActionDb::open(&dir.path().join("o.db")).unwrap(),
        );
    }

    #[test]
    fn tokens_are_kept_by_digest_with_unique_names_on_postgres() {
        tokens_are_kept_by_digest_with_unique_names(&crate::store::redb::tests::open_pg());
    }

    fn tokens_are_kept_by_digest_with_unique_names(db: &dyn Store) {
        let now = Utc::now();
        let token = |name: &str, role| ApiToken {
            name: name.into(),
            role,
            created_at: now,
            last_used_at: None,
        };
        db.add_api_token([1; 32], &token("ci", Role::Operator))
            .unwrap();
        db.add_api_token([2; 32], &token("grafana", Role::Viewer))
            .unwrap();
        let taken = db.add_api_token([3; 32], &token("ci", Role::Admin));
        assert!(matches!(taken, Err(StoreError::TokenNameTaken(n)) if n == "ci"));
        assert_eq!(
            db.api_token_by_digest([1; 32]).unwrap(),
            Some(token("ci", Role::Operator))
        );
        assert_eq!(db.api_token_by_digest([3; 32]).unwrap(), None);
        let names: Vec<String> = db
            .api_tokens()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["ci", "grafana"]);

        let later = now + chrono::Duration::minutes(5);
        db.touch_api_token([2; 32], later).unwrap();
        db.touch_api_token([9; 32], later).unwrap();
        let grafana = db.api_token_by_digest([2; 32]).unwrap().unwrap();
        assert_eq!(grafana.last_used_at, Some(later));

        assert_eq!(db.remove_api_token("ci").unwrap().role, Role::Operator);
        assert_eq!(db.api_token_by_digest([1; 32]).unwrap(), None);
        assert!(matches!(
            db.remove_api_token("ci"),
            Err(StoreError::TokenNotFound(n)) if n == "ci"
        ));
    }
}
