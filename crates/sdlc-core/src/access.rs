//! Named API tokens and their roles: what a token is, how it is made and recognised, and
//! which role covers which kind of request. Pure data and functions; the store keeps tokens
//! (by the SHA-256 of their secret, never the secret), the server checks requests with them.
//!
//! Roles are ordered: a viewer reads everything; an operator also changes actions and runs
//! (add, run, pause, cancel, approve, reject, edit, plan runs, trying a tool); an admin also
//! manages webhook routes and tokens. The daemon's own published token is an admin's.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do; each role includes the ones before it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| format!("unknown role '{s}': use admin, operator or viewer"))
    }
}

/// A named token as stored (its secret is not: only its digest, the store's key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// When a request last used it (written at most once a minute per token).
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token's secret is this prefix and 256 random bits in hex: the prefix lets secret
/// scanners recognise a leaked one.
pub const SECRET_PREFIX: &str = "sdlc_";

/// A new random secret for a token.
pub fn new_secret() -> String {
    format!(
        "{SECRET_PREFIX}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The digest a token is stored and looked up under. A fast hash is enough: secrets are
/// random and long, so there is nothing to guess from the digest.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Checks a token's name: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a token name: use 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

/// A token name that passed [`check_name`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    pub fn parse(name: &str) -> Result<TokenName, String> {
        check_name(name).map(|()| TokenName(name.to_string()))
    }
}

/// A new token named `name` with `role`: its secret (shown once, never stored), the digest it
/// is stored under, and its record.
pub fn mint(name: &TokenName, role: Role, now: DateTime<Utc>) -> (String, [u8; 32], ApiToken) {
    let secret = new_secret();
    let token = ApiToken {
        name: name.0.clone(),
        role,
        created_at: now,
        last_used_at: None,
    };
    let digest = digest(&secret);
    (secret, digest, token)
}

/// A token as `token add` answers it: the record and, this once, its secret.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MintedToken {
    #[serde(flatten)]
    pub token: ApiToken,
    pub secret: String,
}

/// The role a request to the management API needs, from its method and its path below
/// `/api/orchestrator`. Reading needs a viewer; changing webhook routes needs an admin, and
/// so does anything about tokens (who may do what is not for everyone to read) or a
/// dashboard login made through the API (it carries the daemon's own powers); every other
/// change needs an operator.
pub fn required_role(method_is_read: bool, path: &str) -> Role {
    let path = path.trim_end_matches('/');
    let admin_only = ["/tokens", "/sessions"]
        .iter()
        .any(|root| path == *root || path.strip_prefix(root).is_some_and(|r| r.starts_with('/')));
    if admin_only || path == "/ui/login-token" {
        return Role::Admin;
    }
    let routes =
        path == "/webhooks" || path == "/webhooks/routes" || path.starts_with("/webhooks/routes/");
    match (method_is_read, routes) {
        (true, _) => Role::Viewer,
        (false, true) => Role::Admin,
        (false, false) => Role::Operator,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parsed() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!(
            "root"
                .parse::<Role>()
                .unwrap_err()
                .contains("admin, operator or viewer")
        );
    }

    #[test]
    fn each_kind_of_request_needs_its_role() {
        assert_eq!(required_role(true, "/actions"), Role::Viewer);
        assert_eq!(required_role(true, "/webhooks/routes"), Role::Viewer);
        assert_eq!(required_role(true, "/tokens"), Role::Admin);
        assert_eq!(required_role(false, "/actions"), Role::Operator);
        assert_eq!(required_role(false, "/actions/x/approve"), Role::Operator);
        assert_eq!(required_role(false, "/plans/nightly/runs"), Role::Operator);
        assert_eq!(required_role(false, "/webhooks/preview"), Role::Operator);
        assert_eq!(required_role(false, "/webhooks"), Role::Admin);
        assert_eq!(required_role(false, "/webhooks/routes/"), Role::Admin);
        assert_eq!(required_role(false, "/webhooks/routes/deploy"), Role::Admin);
        assert_eq!(required_role(false, "/tokens"), Role::Admin);
        assert_eq!(required_role(false, "/tokens/ci"), Role::Admin);
        assert_eq!(required_role(false, "/ui/login-token"), Role::Admin);
    }

    #[test]
    fn names_are_checked_and_secrets_are_long_and_prefixed() {
        assert!(check_name("ci-bot.prod_1").is_ok());
        for bad in ["", "with space", "semi;colon", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let secret = new_secret();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert_eq!(secret.len(), SECRET_PREFIX.len() + 64);
        assert_ne!(new_secret(), secret);
        assert_eq!(digest(&secret), digest(&secret));
    }
}
