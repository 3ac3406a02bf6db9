//! The token vault's records as the store keeps them: a connection (its tokens sealed), a
//! consent (a connect link's ticket, or an authorization under way), and their keys; and what
//! the vault answers with.

use http::HeaderValue;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::authorize::AuthorizeError;
use super::discovery::DiscoveryError;
use super::grants::GrantError;
use super::registration::{Client, How};
use super::token::TokenError;
use crate::model::{SecretMethod, UpstreamAuth};
use crate::ports::StoreError;
use crate::registry::seal::SealError;

/// The client a connection's tokens were issued to, when it is not the one the upstream's
/// `auth` names (a metadata document's, or one the gateway registered): refreshed and revoked
/// as that client.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct ClientRef {
    pub(super) id: String,
    pub(super) method: SecretMethod,
    pub(super) how: How,
}

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
    /// The tokens, sealed: `{"a": access, "r": refresh, "c": the client's secret}`.
    pub(super) tokens: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) client: Option<ClientRef>,
    /// The resource (RFC 8707) the tokens were got for: sent nowhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) resource: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Secrets {
    pub(super) a: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) r: Option<String>,
    /// The secret of the client the tokens were issued to, if it is one the gateway registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) c: Option<String>,
}

/// A consent record's body: a connect link's ticket, or an authorization under way.
#[derive(Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub(super) enum Consent {
    Ticket {
        subject: String,
        upstream: String,
        expires_at: u64,
        /// The scopes to ask for, when an upstream asked for more than a connection has
        /// (step-up).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
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
        /// The client the authorization was asked as, when not the configured one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<ClientRef>,
        /// Its secret, sealed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<String>,
        /// The scopes asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
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

/// Why the vault could not do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VaultError {
    /// The caller has not authorized the gateway at this upstream (or the authorization was
    /// dropped): a connect link is the way on.
    #[error("the caller has not connected this upstream")]
    NotConnected,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sealed value could not be opened (the key changed).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// No token could be had.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// The authorization could not start, or its callback is not taken.
    #[error(transparent)]
    Authorize(#[from] AuthorizeError),
    /// The link or the callback is unknown, used already or expired.
    #[error("this authorization link is unknown, used or expired: ask for the tool again from your client")]
    Expired,
    /// The link was made for another caller than the one who opened it.
    #[error("this authorization link was made for another user")]
    OtherUser,
    /// Too many authorizations are under way.
    #[error("too many authorizations are under way; try again in a few minutes")]
    Busy,
    /// The upstream does not authenticate its users this way (any more).
    #[error("the upstream does not take each user's own authorization")]
    NotPerUser,
    /// The upstream asks for scopes the caller's authorization already has (or names none):
    /// asking the caller again would not help.
    #[error("the upstream refuses the caller's token for insufficient scope although it grants {granted:?} (asked: {asked:?})")]
    Scope {
        /// What the upstream asked for.
        asked: Option<String>,
        /// What the caller's authorization grants.
        granted: Option<String>,
    },
}

impl From<DiscoveryError> for VaultError {
    fn from(e: DiscoveryError) -> Self {
        VaultError::Grant(GrantError::Discovery(e))
    }
}

impl From<TokenError> for VaultError {
    fn from(e: TokenError) -> Self {
        VaultError::Grant(GrantError::Token(e))
    }
}

/// A connection as a caller may see it: never its tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionInfo {
    /// The upstream's id.
    pub upstream: String,
    /// The authorization server that issued the tokens.
    pub issuer: String,
    /// The scopes granted, if it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When the access token expires (ms since the epoch), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When the caller connected (ms since the epoch).
    pub connected_at: u64,
    /// Whether a refresh token is held.
    pub refreshable: bool,
}

/// What a connect link's ticket names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The caller it was made for.
    pub subject: String,
    /// The upstream's id.
    pub upstream: String,
    /// The scopes to ask for, when the upstream asked for more than the caller had given.
    pub scope: Option<String>,
}

/// The client a connection's tokens belong to: the one recorded with them, else the one the
/// upstream's `auth` names.
pub(super) fn client_of(r: Option<&ClientRef>, secret: Option<String>, auth: &UpstreamAuth) -> Client {
    match r {
        Some(r) => Client {
            client_id: r.id.clone(),
            client_secret: secret,
            method: r.method,
            how: r.how,
            redirect_uri: String::new(),
        },
        None => {
            let c = auth.client();
            Client {
                client_id: c.client_id.to_string(),
                client_secret: c.client_secret.map(str::to_string),
                method: c.method,
                how: How::PreRegistered,
                redirect_uri: String::new(),
            }
        }
    }
}

/// What a connection records of its client: nothing for the configured one (its settings,
/// rotated or not, are read from the upstream's `auth`).
pub(super) fn client_ref(c: &Client) -> Option<ClientRef> {
    (c.how != How::PreRegistered).then(|| ClientRef {
        id: c.client_id.clone(),
        method: c.method,
        how: c.how,
    })
}

/// The context an authorization's client secret is sealed in.
pub(super) fn secret_context(pending_key: &str) -> String {
    format!("{pending_key}\u{1f}client")
}

/// A token kept in memory.
pub(super) struct Kept {
    pub(super) header: HeaderValue,
    /// The resource it was got for: used for no other.
    pub(super) resource: Option<String>,
    pub(super) renew_at_ms: u64,
    /// The store's version when the connection was read: past `recheck_ms`, a token kept is
    /// used only while nothing was written since.
    pub(super) version: u64,
    /// When that version was last confirmed.
    pub(super) checked_at_ms: u64,
}

pub(super) fn bearer_header(access: &str) -> Result<HeaderValue, VaultError> {
    HeaderValue::from_str(&format!("Bearer {access}")).map_err(|_| {
        VaultError::from(TokenError::Malformed(
            "the access token cannot be sent in a header".into(),
        ))
    })
}
