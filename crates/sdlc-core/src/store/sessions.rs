//! Dashboard sessions as both backends store them: a [`UiSession`] under the 32-byte hash of
//! its secret (the server hashes, the store keeps what it is given), listed without its
//! secrets as a [`SessionListing`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiSession {
    /// The token its page sends with every change it asks for (`X-CSRF-Token`).
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The role of the token that logged it in; none for the daemon's own token (an admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::access::Role>,
    /// The named token that logged it in, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_name: Option<String>,
    /// The SHA-256 (hex) of the named token that logged it in. The server checks on every
    /// request that this token still opens the API, so a session ends with its token
    /// (removed, or replaced by a new one of the same name). A session of a named token
    /// stored without it is not honoured. Sessions opened with the daemon's own authority (a
    /// login link, or its token) have none: they are the daemon owner's, and outlive a
    /// restart that gives the daemon a new token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_digest: Option<String>,
}

/// A session as listed (`sdlc orchestrate session list`, `GET /sessions`): never its secret
/// nor its CSRF token. Its id is the hex of the key it is stored under (the SHA-256 of the
/// cookie's secret, which the id does not reveal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionListing {
    pub id: String,
    /// The named token that opened it; none for the daemon's own token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The role it was opened with.
    pub role: crate::access::Role,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl SessionListing {
    pub fn new(key: &[u8; 32], session: &UiSession) -> SessionListing {
        SessionListing {
            id: hex::encode(key),
            token: session.token_name.clone(),
            role: session.role.unwrap_or(crate::access::Role::Admin),
            created_at: session.created_at,
            expires_at: session.expires_at,
        }
    }

    /// The key a listed id names (64 hex digits; a stored token digest is written alike).
    pub fn parse_id(id: &str) -> Option<[u8; 32]> {
        hex::decode(id).ok()?.try_into().ok()
    }
}

/// Sessions newest first (ties by key, so both backends list alike).
pub(crate) fn sort_newest_first(sessions: &mut [([u8; 32], UiSession)]) {
    sessions.sort_by(|(ka, a), (kb, b)| b.created_at.cmp(&a.created_at).then(ka.cmp(kb)));
}
