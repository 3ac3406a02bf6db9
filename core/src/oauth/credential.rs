//! Where a link's bearer token comes from: the gateway's own (client credentials, one for every
//! caller) or the caller's, from the vault (`user` mode: the link serves that caller alone).

use std::sync::Arc;

use http::HeaderValue;

use super::challenge::BearerChallenge;
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
            } => vault.bearer(http, subject, upstream, def).await,
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
        }
    }

    /// Whether a token of this source may be asked for before the upstream said anything (a
    /// caller's is; the gateway's needs the upstream's metadata, which a first refusal may
    /// name).
    pub fn is_users(&self) -> bool {
        matches!(self, Credential::User { .. })
    }
}
