//! Where a link's bearer token comes from: the gateway's own (client credentials, one for every
//! caller) or the caller's, from the vault (`user` mode: the link serves that caller alone).

use std::sync::{Arc, Mutex};

use http::HeaderValue;

use super::challenge::BearerChallenge;
use super::exchange::Exchanges;
use super::grants::ClientTokens;
use super::vault::{Vault, VaultError};
use crate::model::{UpstreamAuth, UpstreamDef};
use crate::ports::{Clock, HttpClient};

/// A link's source of tokens.
pub enum Credential {
    /// The gateway as its own client.
    Client {
        /// The upstream's `auth`.
        auth: UpstreamAuth,
        /// The tokens the gateway holds.
        tokens: Arc<ClientTokens>,
    },
    /// One caller's own authorization.
    User {
        /// The upstream's definition (its client, for refreshes).
        def: Arc<UpstreamDef>,
        /// The upstream's id.
        upstream: String,
        /// The caller.
        subject: String,
        /// Where the caller's tokens are.
        vault: Arc<Vault>,
    },
    /// A token exchanged from the caller's own (token exchange, enterprise-managed).
    Exchange {
        /// The upstream's `auth`.
        auth: UpstreamAuth,
        /// The caller.
        subject: String,
        /// The token the caller last presented to the gateway (a session's caller may present
        /// a fresh one with each request).
        token: Mutex<Option<String>>,
        /// The tokens got so far.
        exchanges: Arc<Exchanges>,
    },
}

impl Credential {
    /// The `Authorization` value for a request to `url` (`challenge`: what the upstream's last
    /// refusal asked for).
    pub async fn bearer(
        &self,
        http: &dyn HttpClient,
        clock: &dyn Clock,
        url: &str,
        challenge: Option<&BearerChallenge>,
    ) -> Result<HeaderValue, VaultError> {
        match self {
            Credential::Client { auth, tokens } => Ok(tokens.bearer(http, clock, url, auth, challenge).await?),
            Credential::User {
                def,
                upstream,
                subject,
                vault,
            } => vault.bearer(http, subject, upstream, def, challenge).await,
            Credential::Exchange {
                auth,
                subject,
                token,
                exchanges,
            } => {
                let presented = token.lock().unwrap_or_else(|e| e.into_inner()).clone();
                Ok(exchanges
                    .bearer(http, clock, url, auth, subject, presented.as_deref(), challenge)
                    .await?)
            }
        }
    }

    /// The caller presented `token` with its latest request: a later exchange uses it.
    pub fn present(&self, presented: Option<&str>) {
        if let (Credential::Exchange { token, .. }, Some(p)) = (self, presented) {
            let mut t = token.lock().unwrap_or_else(|e| e.into_inner());
            if t.as_deref() != Some(p) {
                *t = Some(p.to_string());
            }
        }
    }

    /// The upstream refused the token last given for `url`.
    pub fn refused(&self, url: &str) {
        match self {
            Credential::Client { auth, tokens } => tokens.refused(url, auth),
            Credential::User {
                upstream,
                subject,
                vault,
                ..
            } => vault.refused(subject, upstream),
            Credential::Exchange {
                auth,
                subject,
                exchanges,
                ..
            } => exchanges.refused(subject, url, auth),
        }
    }
}
