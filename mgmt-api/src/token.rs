//! Bearer tokens and roles.
//!
//! A token is `bh_` followed by 32 random bytes in unpadded base64url (46
//! characters in all): the prefix makes a leaked token recognisable (secret
//! scanners, logs). The store keeps only its SHA-256; a presented token is
//! hashed and compared with every active hash in constant time. Tokens carry
//! 256 bits of entropy, so a plain (unsalted, fast) hash is enough: there is
//! no dictionary to attack.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use control::store::{Store, StoreError, TokenHash, TokenInfo};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use std::fmt;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

/// The prefix of every token.
pub const TOKEN_PREFIX: &str = "bh_";
const TOKEN_BYTES: usize = 32;
/// Length of a token's text.
pub const TOKEN_LEN: usize = 3 + 43;

/// What a token may do. Ordered: each role may do what the ones below it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but tokens and the audit log.
    Viewer,
    /// A viewer who may also quarantine and release.
    Operator,
    /// An operator who may also change policy, manage tokens and read the audit log.
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

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token could not be made or listed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token name {0:?}: use 1 to 64 characters from a-z A-Z 0-9 . _ - @")]
    BadName(String),
    #[error("a token named {0:?} exists already (revoke it first)")]
    NameTaken(String),
    #[error("no random numbers from the system")]
    Random,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("stored token {name:?} has an unknown role {role:?}")]
    BadRole { name: String, role: String },
}

/// Whether a token name is acceptable: short, printable, no spaces.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// A new random token's text.
pub fn generate() -> Result<String, TokenError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenError::Random)?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// SHA-256 of a token's text.
pub fn hash(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether the text has a token's shape (checked before hashing, so obvious
/// garbage is refused early; it counts as a failed attempt all the same).
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token.starts_with(TOKEN_PREFIX)
        && token[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The active token `presented` matches, comparing hashes in constant time
/// (every active hash is compared; no early exit on a match).
pub fn find<'a>(presented: &str, active: &'a [TokenHash]) -> Option<&'a TokenHash> {
    let h = hash(presented);
    let mut found = None;
    for t in active {
        if bool::from(t.sha256.ct_eq(&h)) {
            found = Some(t);
        }
    }
    found
}

/// Creates a token: stores its hash and returns its text (shown once).
pub fn create(
    store: &mut Store,
    name: &str,
    role: Role,
    created_by: &str,
) -> Result<String, TokenError> {
    if !valid_name(name) {
        return Err(TokenError::BadName(name.to_string()));
    }
    let token = generate()?;
    if !store.insert_token(name, role.as_str(), &hash(&token), created_by)? {
        return Err(TokenError::NameTaken(name.to_string()));
    }
    Ok(token)
}

/// Installs a token known only by its SHA-256 (a day-0 channel hands over
/// the hash, never the token): active as `name` with `role`, replacing an
/// active token of that name. `Ok(Some(name))`: a token with this hash is
/// active already, under that name (nothing changed).
pub fn import(
    store: &mut Store,
    name: &str,
    role: Role,
    sha256: &[u8; 32],
    by: &str,
) -> Result<Option<String>, TokenError> {
    if !valid_name(name) {
        return Err(TokenError::BadName(name.to_string()));
    }
    Ok(store.import_token(name, role.as_str(), sha256, by)?)
}

/// A token's SHA-256 written as 64 hex digits (either case).
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *o = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// A token as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub name: String,
    pub role: Role,
    /// RFC 3339.
    pub created_at: String,
    pub created_by: String,
    /// RFC 3339; absent while the token is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

impl TryFrom<TokenInfo> for TokenView {
    type Error = TokenError;
    fn try_from(t: TokenInfo) -> Result<Self, TokenError> {
        let role = Role::parse(&t.role).ok_or_else(|| TokenError::BadRole {
            name: t.name.clone(),
            role: t.role.clone(),
        })?;
        Ok(TokenView {
            name: t.name,
            role,
            created_at: t.created_at.to_string(),
            created_by: t.created_by,
            revoked_at: t.revoked_at.map(|t| t.to_string()),
            revoked_by: t.revoked_by,
        })
    }
}

/// Tokens, oldest first.
pub fn list(store: &Store, include_revoked: bool) -> Result<Vec<TokenView>, TokenError> {
    store
        .tokens(include_revoked)?
        .into_iter()
        .map(TokenView::try_from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_well_formed_and_distinct() {
        let a = generate().expect("token");
        let b = generate().expect("token");
        assert_ne!(a, b);
        assert!(a.starts_with("bh_"));
        assert_eq!(a.len(), TOKEN_LEN);
        assert!(well_formed(&a));
        assert!(!well_formed("bh_short"));
        assert!(!well_formed(&a.replace("bh_", "xx_")));
        let mut bad = a.clone();
        bad.pop();
        bad.push('é');
        assert!(!well_formed(&bad));
    }

    #[test]
    fn find_matches_only_the_hash_of_the_presented_token() {
        let t = generate().expect("token");
        let active = vec![
            TokenHash {
                name: "a".into(),
                role: "viewer".into(),
                sha256: hash("bh_other"),
            },
            TokenHash {
                name: "b".into(),
                role: "admin".into(),
                sha256: hash(&t),
            },
        ];
        assert_eq!(find(&t, &active).map(|h| h.name.as_str()), Some("b"));
        assert!(find("bh_nothing", &active).is_none());
    }

    #[test]
    fn names_and_roles() {
        assert!(valid_name("ci-bot@ops.example"));
        assert!(!valid_name(""));
        assert!(!valid_name("has space"));
        assert!(!valid_name(&"x".repeat(65)));
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
    }
}
