//! What a credential proves and why one is refused: the accepted token algorithm ([`Alg`]),
//! the caller it names ([`Identity`]) and every [`AuthError`]. The bottom of `security`: the
//! settings (`auth`) and token checks (`jwt`) both build on it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The JWS algorithm accepted for bearer tokens (exactly one: a token naming any other,
/// `none` included, is refused before its signature is looked at).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Alg {
    /// HMAC-SHA256 with `MCPGW_JWT_SECRET`.
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl Alg {
    /// The name in a token header.
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }
}

impl FromStr for Alg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "HS256" => Ok(Alg::HS256),
            "RS256" => Ok(Alg::RS256),
            "ES256" => Ok(Alg::ES256),
            "EDDSA" | "ED25519" => Ok(Alg::EdDSA),
            other => Err(format!("'{other}' is not one of HS256, RS256, ES256, EdDSA")),
        }
    }
}

/// Why a request was not let in. The message is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials at all.
    Missing,
    /// Credentials that are not valid (malformed, bad signature, wrong algorithm, audience,
    /// issuer, unknown key, revoked).
    Invalid(String),
    /// A valid token whose `jti` is on the revocation list.
    Revoked,
    /// A valid token whose `exp` has passed.
    Expired,
    /// A valid token whose `nbf` is still ahead.
    NotYetValid,
    /// Authenticated, but without the scope this route needs.
    InsufficientScope(String),
}

impl AuthError {
    /// The OAuth error code (RFC 6750 §3.1), if any.
    pub fn oauth_code(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => None,
            AuthError::InsufficientScope(_) => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }
    /// A short machine-readable reason, for bodies and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_credentials",
            AuthError::Invalid(_) | AuthError::Revoked => "invalid_token",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::InsufficientScope(_) => "insufficient_scope",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("authentication required: send 'Authorization: Bearer <token>'"),
            AuthError::Invalid(m) => write!(f, "invalid token: {m}"),
            AuthError::Revoked => f.write_str("invalid token: token revoked"),
            AuthError::Expired => f.write_str("token expired"),
            AuthError::NotYetValid => f.write_str("token not yet valid"),
            AuthError::InsufficientScope(s) => write!(f, "this needs scope '{s}'"),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `sub` of the token, or the basic-auth user.
    pub subject: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `jti`, if the token had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `aud` of the token (checked where it is received).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// When the token expires (ms since the epoch): what it opened (a stream) ends then too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

impl Identity {
    /// True if the identity was granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}
