//! Requests to an authorization server's token endpoint (RFC 6749 §3.2): every grant the
//! gateway makes as a client of its upstreams' authorization servers (client credentials,
//! authorization code, refresh, RFC 8693 token exchange, RFC 7523 JWT bearer), each with
//! `resource` (RFC 8707) and the client's authentication, and the answer read into [`Tokens`].
//! Tokens never appear in `Debug` output or in errors.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;

use crate::http::fetch::fetch;
use crate::http::QUERY;
use crate::ports::{Clock, HttpClient, HttpError, OutboundRequest};

/// The largest token response read.
const MAX_RESPONSE: usize = 64 * 1024;
/// How long a token request may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// RFC 8693's grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 7523's grant type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 7523's client assertion type.
pub const CLIENT_ASSERTION_JWT: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// An access token's type URN (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// An ID token's type URN.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// An Identity Assertion JWT Authorization Grant's type URN (enterprise-managed authorization).
pub const ID_JAG_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";

/// How the gateway authenticates itself at a token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// A public client: only its `client_id`, in the body.
    Public {
        /// The client id.
        client_id: String,
    },
    /// `client_secret_basic`: id and secret in the `Authorization` header.
    SecretBasic {
        /// The client id.
        client_id: String,
        /// The secret.
        secret: String,
    },
    /// `client_secret_post`: id and secret in the body.
    SecretPost {
        /// The client id.
        client_id: String,
        /// The secret.
        secret: String,
    },
    /// `private_key_jwt`: a signed assertion made for this request (RFC 7523 §2.2).
    PrivateKeyJwt {
        /// The client id.
        client_id: String,
        /// The assertion.
        assertion: String,
    },
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, id) = match self {
            ClientAuth::Public { client_id } => ("public", client_id),
            ClientAuth::SecretBasic { client_id, .. } => ("client_secret_basic", client_id),
            ClientAuth::SecretPost { client_id, .. } => ("client_secret_post", client_id),
            ClientAuth::PrivateKeyJwt { client_id, .. } => ("private_key_jwt", client_id),
        };
        write!(f, "ClientAuth({kind}, {id})")
    }
}

/// What the gateway asks a token endpoint for.
#[derive(Clone, PartialEq, Eq)]
pub enum Grant {
    /// As itself (RFC 6749 §4.4).
    ClientCredentials,
    /// A user's authorization code, with its PKCE verifier (RFC 7636).
    AuthorizationCode {
        /// The code.
        code: String,
        /// The PKCE verifier.
        verifier: String,
        /// The redirect URI the code was sent to.
        redirect_uri: String,
    },
    /// A fresh access token for a refresh token.
    Refresh {
        /// The refresh token.
        refresh_token: String,
    },
    /// A token for another audience for a token the caller holds (RFC 8693).
    TokenExchange {
        /// The caller's token.
        subject_token: String,
        /// Its type URN.
        subject_token_type: String,
        /// The type asked for (an access token or an ID-JAG).
        requested_token_type: Option<String>,
        /// The audience asked for (an issuer, for an ID-JAG).
        audience: Option<String>,
    },
    /// An access token for a JWT assertion (RFC 7523 §2.1; an ID-JAG).
    JwtBearer {
        /// The assertion.
        assertion: String,
    },
    /// Not a grant: a token given up (RFC 7009), sent to the revocation endpoint with the
    /// same client authentication.
    Revoke {
        /// The token.
        token: String,
        /// `refresh_token` or `access_token`.
        hint: &'static str,
    },
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Grant::ClientCredentials => "Grant(client_credentials)",
            Grant::AuthorizationCode { .. } => "Grant(authorization_code)",
            Grant::Refresh { .. } => "Grant(refresh_token)",
            Grant::TokenExchange { .. } => "Grant(token_exchange)",
            Grant::JwtBearer { .. } => "Grant(jwt_bearer)",
            Grant::Revoke { .. } => "Grant(revoke)",
        })
    }
}

/// One request to a token endpoint.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The token endpoint.
    pub endpoint: String,
    /// What is asked for.
    pub grant: Grant,
    /// Who asks.
    pub auth: ClientAuth,
    /// The resource the token is for (RFC 8707): the upstream's canonical URI.
    pub resource: Option<String>,
    /// The scopes asked for (space-separated).
    pub scope: Option<String>,
}

/// What a token endpoint gave.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct Tokens {
    /// The access token (or, from a token exchange for an ID-JAG, the ID-JAG).
    pub access_token: String,
    /// `Bearer` (or `N_A` for an ID-JAG).
    #[serde(default)]
    pub token_type: String,
    /// Seconds it lives, if said.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// A refresh token, if one was issued.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// The scopes granted, if said.
    #[serde(default)]
    pub scope: Option<String>,
    /// What a token exchange issued.
    #[serde(default)]
    pub issued_token_type: Option<String>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "…"))
            .field("scope", &self.scope)
            .field("issued_token_type", &self.issued_token_type)
            .finish_non_exhaustive()
    }
}

/// Why a token request gave no tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The endpoint could not be reached, or did not answer in time.
    #[error("token endpoint unreachable: {0}")]
    Unreachable(String),
    /// It refused (RFC 6749 §5.2): `invalid_grant`, `invalid_client`, ...
    #[error("the token endpoint refused ({status}): {error}{}", .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code.
        error: String,
        /// Its description, if any (bounded).
        description: Option<String>,
    },
    /// It answered something that is not a token response.
    #[error("the token endpoint's answer is not a token response: {0}")]
    Malformed(String),
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn enc(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, QUERY).to_string()
}

/// The body and headers of a token request.
pub fn form(req: &TokenRequest) -> (HeaderMap, String) {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    match &req.grant {
        Grant::ClientCredentials => pairs.push(("grant_type", "client_credentials")),
        Grant::AuthorizationCode {
            code,
            verifier,
            redirect_uri,
        } => {
            pairs.push(("grant_type", "authorization_code"));
            pairs.push(("code", code));
            pairs.push(("code_verifier", verifier));
            pairs.push(("redirect_uri", redirect_uri));
        }
        Grant::Refresh { refresh_token } => {
            pairs.push(("grant_type", "refresh_token"));
            pairs.push(("refresh_token", refresh_token));
        }
        Grant::TokenExchange {
            subject_token,
            subject_token_type,
            requested_token_type,
            audience,
        } => {
            pairs.push(("grant_type", TOKEN_EXCHANGE));
            pairs.push(("subject_token", subject_token));
            pairs.push(("subject_token_type", subject_token_type));
            if let Some(t) = requested_token_type {
                pairs.push(("requested_token_type", t));
            }
            if let Some(a) = audience {
                pairs.push(("audience", a));
            }
        }
        Grant::JwtBearer { assertion } => {
            pairs.push(("grant_type", JWT_BEARER));
            pairs.push(("assertion", assertion));
        }
        Grant::Revoke { token, hint } => {
            pairs.push(("token", token));
            pairs.push(("token_type_hint", hint));
        }
    }
    if let Some(r) = &req.resource {
        pairs.push(("resource", r));
    }
    if let Some(s) = req.scope.as_deref().filter(|s| !s.is_empty()) {
        pairs.push(("scope", s));
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    match &req.auth {
        ClientAuth::Public { client_id } => pairs.push(("client_id", client_id)),
        ClientAuth::SecretBasic { client_id, secret } => {
            // RFC 6749 §2.3.1: each form-encoded, then joined and base64-encoded.
            let both = format!("{}:{}", enc(client_id), enc(secret));
            let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(both));
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(AUTHORIZATION, v);
            }
        }
        ClientAuth::SecretPost { client_id, secret } => {
            pairs.push(("client_id", client_id));
            pairs.push(("client_secret", secret));
        }
        ClientAuth::PrivateKeyJwt { client_id, assertion } => {
            pairs.push(("client_id", client_id));
            pairs.push(("client_assertion_type", CLIENT_ASSERTION_JWT));
            pairs.push(("client_assertion", assertion));
        }
    }
    let body = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    (headers, body)
}

/// POSTs `req`'s form to its endpoint: the body of a success, else the server's refusal.
async fn send(http: &dyn HttpClient, clock: &dyn Clock, req: &TokenRequest) -> Result<bytes::Bytes, TokenError> {
    let (headers, body) = form(req);
    let out = OutboundRequest {
        method: Method::POST,
        url: req.endpoint.clone(),
        headers,
        body: Some(body.into()),
        tls: None,
    };
    let (resp, body) = fetch(http, clock, out, TIMEOUT, MAX_RESPONSE)
        .await
        .map_err(|e: HttpError| TokenError::Unreachable(e.to_string()))?;
    if !resp.status.is_success() {
        return Err(refusal(resp.status, &body));
    }
    Ok(body)
}

/// Sends a token request and reads its answer.
pub async fn request(http: &dyn HttpClient, clock: &dyn Clock, req: &TokenRequest) -> Result<Tokens, TokenError> {
    let body = send(http, clock, req).await?;
    let tokens: Tokens = serde_json::from_slice(&body).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if tokens.access_token.is_empty() {
        return Err(TokenError::Malformed("an empty access_token".into()));
    }
    Ok(tokens)
}

/// Gives a token up at a revocation endpoint (RFC 7009 §2): `req.endpoint` is that endpoint
/// and `req.grant` a [`Grant::Revoke`]. A token the server no longer knows is revoked too.
pub async fn revoke(http: &dyn HttpClient, clock: &dyn Clock, req: &TokenRequest) -> Result<(), TokenError> {
    send(http, clock, req).await.map(|_| ())
}

/// The refusal a token endpoint's error answer says (RFC 6749 §5.2); its own words bounded.
pub(super) fn refusal(status: StatusCode, body: &[u8]) -> TokenError {
    #[derive(Deserialize)]
    struct Said {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    }
    let bounded = |s: String| s.chars().take(300).collect::<String>();
    match serde_json::from_slice::<Said>(body) {
        Ok(s) => TokenError::Refused {
            status: status.as_u16(),
            error: bounded(s.error),
            description: s.error_description.map(bounded),
        },
        Err(_) => TokenError::Refused {
            status: status.as_u16(),
            error: "no OAuth error in the answer".into(),
            description: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ManualClock;
    use crate::ports::InboundResponse;
    use bytes::Bytes;
    use std::sync::Mutex;

    fn fields(body: &str) -> Vec<(String, String)> {
        body.split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("k=v");
                let v = percent_encoding::percent_decode_str(v).decode_utf8().expect("utf-8");
                (k.to_string(), v.into_owned())
            })
            .collect()
    }

    fn get<'a>(f: &'a [(String, String)], k: &str) -> Option<&'a str> {
        f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn each_grant_and_client_authentication_is_written_as_the_rfcs_say() {
        let req = TokenRequest {
            endpoint: "https://as.example/token".into(),
            grant: Grant::ClientCredentials,
            auth: ClientAuth::SecretBasic {
                client_id: "gw client".into(),
                secret: "s:é&=".into(),
            },
            resource: Some("https://up.example/mcp".into()),
            scope: Some("read write".into()),
        };
        let (h, body) = form(&req);
        let f = fields(&body);
        assert_eq!(get(&f, "grant_type"), Some("client_credentials"));
        assert_eq!(get(&f, "resource"), Some("https://up.example/mcp"));
        assert_eq!(get(&f, "scope"), Some("read write"));
        assert_eq!(get(&f, "client_secret"), None, "the secret is in the header only");
        let basic = h[AUTHORIZATION].to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(basic).unwrap()).unwrap();
        assert_eq!(decoded, "gw%20client:s%3A%C3%A9%26%3D", "each part form-encoded first");
        assert_eq!(h[CONTENT_TYPE], "application/x-www-form-urlencoded");

        let req = TokenRequest {
            grant: Grant::TokenExchange {
                subject_token: "caller.jwt".into(),
                subject_token_type: ID_TOKEN_TYPE.into(),
                requested_token_type: Some(ID_JAG_TYPE.into()),
                audience: Some("https://as.up.example".into()),
            },
            auth: ClientAuth::SecretPost {
                client_id: "gw".into(),
                secret: "s".into(),
            },
            scope: None,
            ..req
        };
        let (h, body) = form(&req);
        let f = fields(&body);
        assert_eq!(get(&f, "grant_type"), Some(TOKEN_EXCHANGE));
        assert_eq!(get(&f, "subject_token_type"), Some(ID_TOKEN_TYPE));
        assert_eq!(get(&f, "requested_token_type"), Some(ID_JAG_TYPE));
        assert_eq!(get(&f, "audience"), Some("https://as.up.example"));
        assert_eq!(
            (get(&f, "client_id"), get(&f, "client_secret")),
            (Some("gw"), Some("s"))
        );
        assert_eq!(get(&f, "scope"), None);
        assert!(!h.contains_key(AUTHORIZATION));

        let req = TokenRequest {
            grant: Grant::AuthorizationCode {
                code: "c".into(),
                verifier: "v".repeat(43),
                redirect_uri: "https://gw.example/oauth/callback".into(),
            },
            auth: ClientAuth::PrivateKeyJwt {
                client_id: "https://gw.example/oauth/client".into(),
                assertion: "a.b.c".into(),
            },
            ..req
        };
        let f = fields(&form(&req).1);
        assert_eq!(get(&f, "code_verifier").map(str::len), Some(43));
        assert_eq!(get(&f, "client_assertion_type"), Some(CLIENT_ASSERTION_JWT));
        assert_eq!(get(&f, "redirect_uri"), Some("https://gw.example/oauth/callback"));
        let f = fields(
            &form(&TokenRequest {
                grant: Grant::JwtBearer {
                    assertion: "id.jag.x".into(),
                },
                ..req.clone()
            })
            .1,
        );
        assert_eq!(
            (get(&f, "grant_type"), get(&f, "assertion")),
            (Some(JWT_BEARER), Some("id.jag.x"))
        );
    }

    struct Answer(u16, &'static str, Mutex<Option<String>>);

    #[async_trait::async_trait]
    impl HttpClient for Answer {
        async fn send(&self, r: OutboundRequest) -> Result<InboundResponse, HttpError> {
            *self.2.lock().unwrap() = r.body.map(|b| String::from_utf8_lossy(&b).into_owned());
            let body = Bytes::from_static(self.1.as_bytes());
            Ok(InboundResponse {
                status: StatusCode::from_u16(self.0).unwrap(),
                headers: HeaderMap::new(),
                body: Box::pin(futures::stream::once(async move { Ok(body) })),
            })
        }
    }

    #[test]
    fn answers_are_read_and_refusals_say_why_without_a_token_in_sight() {
        let clock = ManualClock::at(0);
        let req = TokenRequest {
            endpoint: "https://as.example/token".into(),
            grant: Grant::Refresh {
                refresh_token: "rt-secret".into(),
            },
            auth: ClientAuth::Public { client_id: "gw".into() },
            resource: None,
            scope: None,
        };
        let ok = Answer(
            200,
            r#"{"access_token":"at-secret","token_type":"Bearer","expires_in":60,"refresh_token":"rt-2"}"#,
            Mutex::new(None),
        );
        let t = futures::executor::block_on(request(&ok, &clock, &req)).unwrap();
        assert_eq!((t.access_token.as_str(), t.expires_in), ("at-secret", Some(60)));
        let shown = format!("{t:?} {req:?}");
        assert!(!shown.contains("secret") && !shown.contains("rt-2"), "{shown}");
        assert!(ok
            .2
            .lock()
            .unwrap()
            .as_deref()
            .unwrap()
            .contains("refresh_token=rt-secret"));

        let refused = Answer(
            400,
            r#"{"error":"invalid_grant","error_description":"expired"}"#,
            Mutex::new(None),
        );
        let e = futures::executor::block_on(request(&refused, &clock, &req)).unwrap_err();
        assert_eq!(
            e,
            TokenError::Refused {
                status: 400,
                error: "invalid_grant".into(),
                description: Some("expired".into())
            }
        );
        assert!(!e.to_string().contains("rt-secret"));
        let odd = Answer(200, r#"{"token":"x"}"#, Mutex::new(None));
        assert!(matches!(
            futures::executor::block_on(request(&odd, &clock, &req)),
            Err(TokenError::Malformed(_))
        ));
        let html = Answer(502, "<html>bad gateway</html>", Mutex::new(None));
        assert!(matches!(
            futures::executor::block_on(request(&html, &clock, &req)),
            Err(TokenError::Refused { status: 502, .. })
        ));
    }
}
