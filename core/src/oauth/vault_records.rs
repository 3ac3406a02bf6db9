//! The token vault's records as the store keeps them: a connection (its tokens sealed), a
//! consent (a connect link's ticket, or an authorization under way), and their keys.

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// A connection's record body.
#[derive(Serialize, Deserialize)]
pub(super) struct Stored {
    pub(super) subject: String,
    pub(super) upstream: String,
    pub(super) issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) expires_at: Option<u64>,
    pub(super) connected_at: u64,
    #[serde(default)]
    pub(super) refreshable: bool,
    /// The tokens, sealed: `{"a": access, "r": refresh}`.
    pub(super) tokens: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Secrets {
    pub(super) a: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) r: Option<String>,
}

/// A consent record's body: a connect link's ticket, or an authorization under way.
#[derive(Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub(super) enum Consent {
    Ticket {
        subject: String,
        upstream: String,
        expires_at: u64,
    },
    Pending {
        subject: String,
        upstream: String,
        issuer: String,
        iss_required: bool,
        token_endpoint: String,
        redirect_uri: String,
        /// The PKCE verifier, sealed.
        verifier: String,
        expires_at: u64,
    },
}

impl Consent {
    pub(super) fn expires_at(&self) -> u64 {
        match self {
            Consent::Ticket { expires_at, .. } | Consent::Pending { expires_at, .. } => *expires_at,
        }
    }
}

pub(super) fn conn_key(upstream: &str, subject: &str) -> String {
    format!("{upstream}\u{1f}{subject}")
}

pub(super) fn ticket_key(upstream: &str, subject: &str) -> String {
    format!("ticket\u{1f}{upstream}\u{1f}{subject}")
}

/// The key of an authorization under way: its state's digest (the state itself is not kept).
pub(super) fn pending_key(state: &str) -> String {
    let d = sha2::Sha256::digest(state.as_bytes());
    format!(
        "state\u{1f}{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A query parameter's value, decoded.
pub(super) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}
