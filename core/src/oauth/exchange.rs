//! Tokens got for a caller from the caller's own token (issue 30's `token-exchange` and
//! `enterprise` modes): exchanged at a token service for one whose audience is the upstream
//! (RFC 8693), or exchanged at the enterprise IdP for an ID-JAG and that presented to the
//! upstream's authorization server (RFC 7523 jwt-bearer; the enterprise-managed authorization
//! extension). The caller's token goes only to the token service or the IdP, never to the
//! upstream. What comes back is kept in memory per caller and upstream until shortly before it
//! expires, and dropped when the upstream refuses it.

use std::sync::Arc;

use http::HeaderValue;

use super::challenge::BearerChallenge;
use super::discovery;
use super::grants::{client_auth, resource_of, token_endpoint_of, GrantError};
use super::kept::KeptTokens;
use super::token::{self, Grant, TokenError, TokenRequest, ACCESS_TOKEN_TYPE, ID_JAG_TYPE, ID_TOKEN_TYPE};
use crate::model::UpstreamAuth;
use crate::ports::{Clock, Crypto, HttpClient, Ids};

/// The most tokens kept.
const MAX_KEPT: usize = 4096;

/// The tokens got by exchange, by caller and upstream.
pub struct Exchanges {
    kept: KeptTokens,
    crypto: Arc<dyn Crypto>,
    ids: Arc<dyn Ids>,
}

/// What a token kept answers for: the caller, the upstream, and everything of `auth` that
/// decides what is asked where (two upstreams at one URL with other settings get their own).
fn key(subject: &str, upstream_url: &str, auth: &UpstreamAuth) -> String {
    let how = match auth {
        UpstreamAuth::TokenExchange {
            token_service,
            audience,
            subject_token_type,
            ..
        } => format!("exchange {token_service} {audience:?} {subject_token_type:?}"),
        UpstreamAuth::Enterprise { idp, issuer, .. } => {
            format!(
                "enterprise {} {} {issuer:?} {:?}",
                idp.issuer, idp.client_id, idp.subject_token_type
            )
        }
        UpstreamAuth::ClientCredentials { .. } | UpstreamAuth::User { .. } => String::new(),
    };
    format!(
        "{subject}\u{1f}{}\u{1f}{}\u{1f}{:?}\u{1f}{how}",
        resource_of(upstream_url),
        auth.client().client_id,
        auth.scope()
    )
}

impl Exchanges {
    /// None kept yet; assertions signed with `crypto`.
    pub fn new(crypto: Arc<dyn Crypto>, ids: Arc<dyn Ids>) -> Self {
        Self {
            kept: KeptTokens::new(MAX_KEPT),
            crypto,
            ids,
        }
    }

    /// The `Authorization` value for `subject`'s request to the upstream at `upstream_url`,
    /// from `subject_token` (the token the caller presented to the gateway).
    #[allow(clippy::too_many_arguments)]
    pub async fn bearer(
        &self,
        http: &dyn HttpClient,
        clock: &dyn Clock,
        upstream_url: &str,
        auth: &UpstreamAuth,
        subject: &str,
        subject_token: Option<&str>,
        challenge: Option<&BearerChallenge>,
    ) -> Result<HeaderValue, GrantError> {
        let k = key(subject, upstream_url, auth);
        let now = clock.now_ms();
        if let Some(h) = self.kept.get(&k, now) {
            return Ok(h);
        }
        let subject_token = subject_token.ok_or(GrantError::NoCallerToken)?;
        let resource = resource_of(upstream_url);
        let scope = auth
            .scope()
            .map(str::to_string)
            .or_else(|| challenge.and_then(|c| c.scope.clone()));
        let tokens = match auth {
            UpstreamAuth::TokenExchange {
                token_service,
                audience,
                subject_token_type,
                ..
            } => {
                let server = discovery::server_metadata(http, clock, token_service).await?;
                let endpoint = token_endpoint_of(&server)?;
                let req = TokenRequest {
                    endpoint,
                    grant: Grant::TokenExchange {
                        subject_token: subject_token.to_string(),
                        subject_token_type: subject_token_type.clone().unwrap_or_else(|| ACCESS_TOKEN_TYPE.into()),
                        requested_token_type: Some(ACCESS_TOKEN_TYPE.into()),
                        audience: audience.clone(),
                    },
                    auth: client_auth(&*self.crypto, &*self.ids, now, auth.client(), &server.issuer).await?,
                    resource: Some(resource),
                    scope,
                };
                token::request(http, clock, &req).await?
            }
            UpstreamAuth::Enterprise { idp, .. } => {
                // Who authorizes requests to the upstream: configured, else its metadata's.
                let upstream_as = match auth.issuer() {
                    Some(iss) => discovery::server_metadata(http, clock, iss).await?,
                    None => {
                        let from_challenge = challenge.and_then(|c| c.resource_metadata.as_deref());
                        discovery::discover(http, clock, upstream_url, from_challenge)
                            .await?
                            .server
                    }
                };
                let at_idp = discovery::server_metadata(http, clock, &idp.issuer).await?;
                let idp_endpoint = token_endpoint_of(&at_idp)?;
                let jag = TokenRequest {
                    endpoint: idp_endpoint,
                    grant: Grant::TokenExchange {
                        subject_token: subject_token.to_string(),
                        subject_token_type: idp.subject_token_type.clone().unwrap_or_else(|| ID_TOKEN_TYPE.into()),
                        requested_token_type: Some(ID_JAG_TYPE.into()),
                        audience: Some(upstream_as.issuer.clone()),
                    },
                    auth: client_auth(&*self.crypto, &*self.ids, now, idp.client(), &at_idp.issuer).await?,
                    resource: Some(resource.clone()),
                    scope: scope.clone(),
                };
                let got = token::request(http, clock, &jag).await?;
                if got.issued_token_type.as_deref() != Some(ID_JAG_TYPE) {
                    return Err(GrantError::Token(TokenError::Malformed(format!(
                        "the IdP issued {:?}, not an ID-JAG",
                        got.issued_token_type
                    ))));
                }
                let endpoint = token_endpoint_of(&upstream_as)?;
                let req = TokenRequest {
                    endpoint,
                    grant: Grant::JwtBearer {
                        assertion: got.access_token,
                    },
                    auth: client_auth(&*self.crypto, &*self.ids, now, auth.client(), &upstream_as.issuer).await?,
                    resource: Some(resource),
                    scope,
                };
                token::request(http, clock, &req).await?
            }
            UpstreamAuth::ClientCredentials { .. } | UpstreamAuth::User { .. } => {
                return Err(GrantError::NoCallerToken);
            }
        };
        Ok(self.kept.keep(k, &tokens, now)?)
    }

    /// Drops the token kept for `subject` at the upstream (it refused it).
    pub fn refused(&self, subject: &str, upstream_url: &str, auth: &UpstreamAuth) {
        self.kept.remove(&key(subject, upstream_url, auth));
    }
}
