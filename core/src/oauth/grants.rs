//! The gateway's own tokens for upstreams that authenticate it as an OAuth client (an
//! upstream's `auth.mode = "client-credentials"`): got from the authorization server the
//! upstream names (or the one configured), for the upstream as the resource (RFC 8707), kept in
//! memory until shortly before they expire, and dropped when the upstream refuses one. One token
//! per upstream and client serves every caller: it is the gateway's, not a user's.

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderValue;

use std::sync::Arc;

use super::assertion::{client_assertion, AssertionError};
use super::challenge::BearerChallenge;
use super::discovery::{self, DiscoveryError, ServerMetadata};
use super::kept::KeptTokens;
use super::token::{self, ClientAuth, Grant, TokenError, TokenRequest};
use crate::model::{OAuthClient, SecretMethod, UpstreamAuth};
use crate::ports::{Clock, Crypto, HttpClient, Ids};

/// The most tokens kept (one per upstream and client; more means definitions churn).
const MAX_KEPT: usize = 1024;

/// Why no token could be had for an upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Who authorizes requests to the upstream could not be found.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The authorization server has no token endpoint.
    #[error("the authorization server {0} has no token endpoint")]
    NoTokenEndpoint(String),
    /// The token endpoint gave none.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The upstream now names another authorization server than the one its credentials were
    /// first sent to: they are not sent to the new one.
    #[error("the upstream names the authorization server {now}, not {was} as before: its credentials go to {was} only (set auth.issuer to choose)")]
    IssuerChanged {
        /// The one first discovered.
        was: String,
        /// The one named now.
        now: String,
    },
    /// No client assertion could be signed.
    #[error(transparent)]
    Assertion(#[from] AssertionError),
    /// The upstream takes a token exchanged from the caller's own, and the request carried
    /// none (auth is off, or the transport had no bearer token).
    #[error("the upstream takes a token exchanged from the caller's own, and this request carried none")]
    NoCallerToken,
    /// The gateway is no client of the authorization server and cannot become one.
    #[error("{0}")]
    NoClient(String),
}

/// The token endpoint a server's metadata names.
pub fn token_endpoint_of(server: &ServerMetadata) -> Result<String, GrantError> {
    server
        .token_endpoint
        .clone()
        .ok_or_else(|| GrantError::NoTokenEndpoint(server.issuer.clone()))
}

/// Tokens the gateway holds as a client, by upstream and client.
pub struct ClientTokens {
    kept: KeptTokens,
    /// The issuer first discovered for an upstream whose `auth` names none: its secret goes to
    /// that authorization server only, whatever the upstream's metadata says later.
    pinned: Mutex<HashMap<String, String>>,
    /// Signs `private_key_jwt` assertions.
    crypto: Arc<dyn Crypto>,
    /// Their `jti`.
    ids: Arc<dyn Ids>,
}

/// The resource identifier of an upstream (RFC 8707 §2): its URL with scheme and host in lower
/// case, without a fragment or a trailing `/`.
pub fn resource_of(url: &str) -> String {
    let url = url.split('#').next().unwrap_or(url);
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    format!(
        "{}://{}{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase(),
        path.trim_end_matches('/')
    )
}

fn key(upstream_url: &str, auth: &UpstreamAuth) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}",
        resource_of(upstream_url),
        auth.client().client_id,
        auth.issuer().unwrap_or("")
    )
}

/// How the client `c` authenticates at the token endpoint of `issuer` (a `private_key_jwt`
/// assertion is signed now, for that server).
pub async fn client_auth(
    crypto: &dyn Crypto,
    ids: &dyn Ids,
    now_ms: u64,
    c: OAuthClient<'_>,
    issuer: &str,
) -> Result<ClientAuth, GrantError> {
    let client_id = c.client_id.to_string();
    let secret = || c.client_secret.unwrap_or_default().to_string();
    Ok(match c.method {
        SecretMethod::ClientSecretBasic => ClientAuth::SecretBasic {
            client_id,
            secret: secret(),
        },
        SecretMethod::ClientSecretPost => ClientAuth::SecretPost {
            client_id,
            secret: secret(),
        },
        SecretMethod::PrivateKeyJwt => {
            let key = c.private_key.unwrap_or_default();
            let assertion = client_assertion(crypto, ids, now_ms, c.client_id, issuer, key).await?;
            ClientAuth::PrivateKeyJwt { client_id, assertion }
        }
        SecretMethod::None => ClientAuth::Public { client_id },
    })
}

impl ClientTokens {
    /// No tokens yet; assertions signed with `crypto`.
    pub fn new(crypto: Arc<dyn Crypto>, ids: Arc<dyn Ids>) -> Self {
        Self {
            kept: KeptTokens::new(MAX_KEPT),
            pinned: Mutex::new(HashMap::new()),
            crypto,
            ids,
        }
    }

    /// The `Authorization` value for a request to the upstream at `upstream_url`: the token
    /// kept, or a new one. `scope` is what the upstream's challenge asked for, if it said.
    pub async fn bearer(
        &self,
        http: &dyn HttpClient,
        clock: &dyn Clock,
        upstream_url: &str,
        auth: &UpstreamAuth,
        challenge: Option<&BearerChallenge>,
    ) -> Result<HeaderValue, GrantError> {
        let challenged_scope = challenge.and_then(|c| c.scope.as_deref());
        let k = key(upstream_url, auth);
        let now = clock.now_ms();
        if let Some(header) = self.kept.get(&k, now) {
            return Ok(header);
        }
        let resource = resource_of(upstream_url);
        let (server, resource_scopes) = match auth.issuer() {
            Some(iss) => (discovery::server_metadata(http, clock, iss).await?, vec![]),
            None => {
                let from_challenge = challenge.and_then(|c| c.resource_metadata.as_deref());
                let d = discovery::discover(http, clock, upstream_url, from_challenge).await?;
                let mut pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
                match pinned.get(&k) {
                    Some(was) if *was != d.server.issuer => {
                        return Err(GrantError::IssuerChanged {
                            was: was.clone(),
                            now: d.server.issuer,
                        })
                    }
                    Some(_) => {}
                    None => {
                        if pinned.len() >= MAX_KEPT {
                            pinned.clear();
                        }
                        pinned.insert(k.clone(), d.server.issuer.clone());
                    }
                }
                drop(pinned);
                (d.server, d.resource.scopes_supported)
            }
        };
        let endpoint = token_endpoint_of(&server)?;
        // The configured scope, else the challenge's, else every scope the resource names.
        let scope = auth
            .scope()
            .map(str::to_string)
            .or_else(|| challenged_scope.map(str::to_string))
            .or_else(|| (!resource_scopes.is_empty()).then(|| resource_scopes.join(" ")));
        let auth = client_auth(&*self.crypto, &*self.ids, now, auth.client(), &server.issuer).await?;
        let req = TokenRequest {
            endpoint,
            grant: Grant::ClientCredentials,
            auth,
            resource: Some(resource),
            scope,
        };
        let tokens = token::request(http, clock, &req).await?;
        Ok(self.kept.keep(k, &tokens, now)?)
    }

    /// The issuer discovered for the upstream, when its `auth` names none and one was found: what
    /// a registration stores as its `auth.issuer`, so the credentials stay with that server.
    pub fn pinned_issuer(&self, upstream_url: &str, auth: &UpstreamAuth) -> Option<String> {
        self.pinned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(upstream_url, auth))
            .cloned()
    }

    /// Drops the token kept for the upstream (it refused it): the next request gets another.
    pub fn refused(&self, upstream_url: &str, auth: &UpstreamAuth) {
        self.kept.remove(&key(upstream_url, auth));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{HttpError, InboundResponse, OutboundRequest};
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use std::sync::atomic::AtomicU64;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// An authorization server at https://as.example that counts the tokens it gives.
    #[derive(Default)]
    struct Server {
        issued: AtomicU32,
    }

    #[async_trait::async_trait]
    impl HttpClient for Server {
        async fn send(&self, r: OutboundRequest) -> Result<InboundResponse, HttpError> {
            let body = match r.url.as_str() {
                "https://as.example/.well-known/oauth-authorization-server" => {
                    r#"{"issuer": "https://as.example", "token_endpoint": "https://as.example/token"}"#.to_string()
                }
                "https://as.example/token" => {
                    let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
                    format!(r#"{{"access_token": "t{n}", "token_type": "Bearer", "expires_in": 120}}"#)
                }
                _ => return Err(HttpError::Connect(r.url)),
            };
            Ok(InboundResponse {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Box::pin(futures::stream::once(async move { Ok(Bytes::from(body)) })),
            })
        }
    }

    /// An upstream whose metadata names `as` (changed by the test), and two servers that give
    /// tokens.
    struct Moving {
        names: Mutex<&'static str>,
    }

    #[async_trait::async_trait]
    impl HttpClient for Moving {
        async fn send(&self, r: OutboundRequest) -> Result<InboundResponse, HttpError> {
            let names = *self.names.lock().unwrap();
            let body = match r.url.as_str() {
                "https://up.example/.well-known/oauth-protected-resource/mcp" => {
                    format!(r#"{{"resource": "https://up.example/mcp", "authorization_servers": ["{names}"]}}"#)
                }
                u if u.ends_with("/.well-known/oauth-authorization-server") => {
                    let iss = u.trim_end_matches("/.well-known/oauth-authorization-server");
                    format!(r#"{{"issuer": "{iss}", "token_endpoint": "{iss}/token"}}"#)
                }
                u if u.ends_with("/token") => r#"{"access_token": "t", "expires_in": 1}"#.to_string(),
                _ => {
                    return Ok(InboundResponse {
                        status: StatusCode::NOT_FOUND,
                        headers: HeaderMap::new(),
                        body: Box::pin(futures::stream::empty()),
                    })
                }
            };
            Ok(InboundResponse {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Box::pin(futures::stream::once(async move { Ok(Bytes::from(body)) })),
            })
        }
    }

    /// Credentials go to the authorization server first discovered, never to another one the
    /// upstream's metadata names later; the registration can store the first.
    #[test]
    fn credentials_stay_with_the_first_authorization_server() {
        let kept = ClientTokens::new(
            Arc::new(crate::security::RustCrypto),
            Arc::new(crate::fixtures::SeqIds::default()),
        );
        let clock = Still(AtomicU64::new(1_000_000));
        let up = Moving {
            names: Mutex::new("https://as-one.example"),
        };
        let auth = UpstreamAuth::ClientCredentials {
            client_id: "gw".into(),
            client_secret: Some("s".into()),
            private_key: None,
            method: SecretMethod::ClientSecretBasic,
            scope: None,
            issuer: None,
        };
        let url = "https://up.example/mcp";
        assert!(futures::executor::block_on(kept.bearer(&up, &clock, url, &auth, None)).is_ok());
        assert_eq!(
            kept.pinned_issuer(url, &auth).as_deref(),
            Some("https://as-one.example")
        );
        *up.names.lock().unwrap() = "https://as-evil.example";
        clock.0.fetch_add(60_000, Ordering::SeqCst);
        let e = futures::executor::block_on(kept.bearer(&up, &clock, url, &auth, None)).unwrap_err();
        assert!(matches!(e, GrantError::IssuerChanged { .. }), "{e}");
    }

    /// A clock that moves only when told (its sleeps never end: the fake server answers first).
    struct Still(AtomicU64);

    impl Clock for Still {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
        fn sleep(&self, _: std::time::Duration) -> crate::platform::BoxFuture<'static, ()> {
            Box::pin(futures::future::pending())
        }
    }

    /// One token serves until shortly before it expires; a refused one is replaced at once.
    #[test]
    fn a_token_is_kept_until_it_nears_expiry_or_is_refused() {
        let kept = ClientTokens::new(
            Arc::new(crate::security::RustCrypto),
            Arc::new(crate::fixtures::SeqIds::default()),
        );
        let (server, clock) = (Server::default(), Still(AtomicU64::new(1_000_000)));
        let auth = UpstreamAuth::ClientCredentials {
            client_id: "gw".into(),
            client_secret: Some("s".into()),
            private_key: None,
            method: SecretMethod::ClientSecretPost,
            scope: None,
            issuer: Some("https://as.example".into()),
        };
        let url = "https://up.example/mcp";
        let get = || futures::executor::block_on(kept.bearer(&server, &clock, url, &auth, None)).unwrap();
        assert_eq!(get(), "Bearer t1");
        assert_eq!(get(), "Bearer t1", "kept");
        clock.0.fetch_add(89_000, Ordering::SeqCst);
        assert_eq!(get(), "Bearer t1", "still 31 s to go");
        clock.0.fetch_add(2_000, Ordering::SeqCst);
        assert_eq!(get(), "Bearer t2", "renewed 30 s before it expires");
        kept.refused(url, &auth);
        assert_eq!(get(), "Bearer t3", "a refused token is not sent again");
        assert_eq!(
            futures::executor::block_on(kept.bearer(&server, &clock, "https://other.example/mcp", &auth, None))
                .unwrap(),
            "Bearer t4",
            "another upstream has its own"
        );
    }

    #[test]
    fn a_resource_is_its_url_canonical() {
        assert_eq!(
            resource_of("HTTPS://Up.Example:8443/Mcp/#frag"),
            "https://up.example:8443/Mcp"
        );
        assert_eq!(resource_of("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }
}
