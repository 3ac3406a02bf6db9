//! How the gateway, as an OAuth client, finds who authorizes requests to an upstream (the MCP
//! authorization spec, 2025-11-25): the protected resource's metadata (RFC 9728), from the
//! `resource_metadata` of a 401's challenge or at its well-known places, path first; then the
//! metadata of its authorization server (RFC 8414, or OpenID Connect discovery), at the
//! well-known places with the issuer's path inserted, then appended.

use std::time::Duration;

use http::header::ACCEPT;
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde::Deserialize;

use crate::http::fetch::fetch;
use crate::ports::{Clock, HttpClient, HttpError, OutboundRequest};

/// The largest metadata document read.
const MAX_DOCUMENT: usize = 64 * 1024;
/// How long one document may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why discovery found no authorization server to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The URL is not an absolute http(s) URL.
    #[error("'{0}' is not an absolute http(s) URL")]
    BadUrl(String),
    /// No place had the protected resource's metadata (each place tried and why).
    #[error("no protected resource metadata for {resource} (tried: {tried})")]
    NoResourceMetadata {
        /// The upstream.
        resource: String,
        /// What each place answered.
        tried: String,
    },
    /// The metadata is for another resource.
    #[error("the protected resource metadata at {at} is for '{said}', not {resource}")]
    OtherResource {
        /// Where it was read.
        at: String,
        /// The resource it names.
        said: String,
        /// The upstream.
        resource: String,
    },
    /// The metadata names no authorization server.
    #[error("the protected resource metadata of {0} names no authorization server")]
    NoAuthorizationServer(String),
    /// No place had the authorization server's metadata.
    #[error("no authorization server metadata for {issuer} (tried: {tried})")]
    NoServerMetadata {
        /// The issuer.
        issuer: String,
        /// What each place answered.
        tried: String,
    },
    /// The metadata names another issuer (RFC 8414 §3.3: a mix-up).
    #[error("the authorization server metadata at {at} names issuer '{said}', not {issuer}")]
    OtherIssuer {
        /// Where it was read.
        at: String,
        /// The issuer it names.
        said: String,
        /// The issuer asked for.
        issuer: String,
    },
}

/// A protected resource's metadata (RFC 9728 §2), what the gateway reads of it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResourceMetadata {
    /// The resource's identifier.
    pub resource: String,
    /// The issuers that may authorize requests to it.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// The scopes it knows.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

/// An authorization server's metadata (RFC 8414 §2), what the gateway reads of it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerMetadata {
    /// Its issuer identifier.
    pub issuer: String,
    /// Where users authorize (authorization code).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where tokens are got.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Where tokens are revoked (RFC 7009).
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// Where clients register themselves (RFC 7591).
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    /// PKCE methods; without `S256` the gateway does no authorization code flow there.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// The grant types it serves.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// How clients may authenticate at the token endpoint.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// The scopes it knows.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Whether its authorization responses carry `iss` (RFC 9207).
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// Whether it takes a Client ID Metadata Document's URL as a `client_id`.
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
}

impl ServerMetadata {
    /// Whether it does PKCE with S256, which the authorization code flow requires.
    pub fn supports_s256(&self) -> bool {
        self.code_challenge_methods_supported.iter().any(|m| m == "S256")
    }
}

/// What discovery found for an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The resource's metadata.
    pub resource: ResourceMetadata,
    /// Its (first) authorization server's metadata.
    pub server: ServerMetadata,
}

/// Scheme, authority and path (without a trailing `/`) of an absolute http(s) URL.
fn parts(url: &str) -> Result<(String, String, String), DiscoveryError> {
    let bad = || DiscoveryError::BadUrl(url.to_string());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let scheme = uri
        .scheme_str()
        .filter(|s| *s == "https" || *s == "http")
        .ok_or_else(bad)?;
    let authority = uri.authority().ok_or_else(bad)?.as_str();
    if authority.contains('@') {
        return Err(bad());
    }
    let path = uri.path().trim_end_matches('/');
    Ok((
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase(),
        path.to_string(),
    ))
}

/// The places of an upstream's protected-resource metadata, in the order to try: the challenge's
/// `resource_metadata`, then the well-known place with the upstream's path, then without.
pub fn resource_metadata_urls(server_url: &str, from_challenge: Option<&str>) -> Result<Vec<String>, DiscoveryError> {
    let (scheme, authority, path) = parts(server_url)?;
    let mut urls: Vec<String> = from_challenge.map(str::to_string).into_iter().collect();
    let well_known = format!("{scheme}://{authority}/.well-known/oauth-protected-resource");
    if !path.is_empty() {
        urls.push(format!("{well_known}{path}"));
    }
    urls.push(well_known);
    urls.dedup();
    Ok(urls)
}

/// The places of an issuer's metadata, in the order to try: OAuth's with the path inserted,
/// OpenID Connect's with the path inserted, then OpenID Connect's with the path appended (for an
/// issuer without a path: OAuth's, then OpenID Connect's).
pub fn server_metadata_urls(issuer: &str) -> Result<Vec<String>, DiscoveryError> {
    let (scheme, authority, path) = parts(issuer)?;
    let root = format!("{scheme}://{authority}");
    Ok(if path.is_empty() {
        vec![
            format!("{root}/.well-known/oauth-authorization-server"),
            format!("{root}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{root}/.well-known/oauth-authorization-server{path}"),
            format!("{root}/.well-known/openid-configuration{path}"),
            format!("{root}{path}/.well-known/openid-configuration"),
        ]
    })
}

/// Whether metadata naming `said` as its resource is for the upstream at `server_url`: the same
/// URL, or a base of it on the same origin (a resource identifier may name the server as a
/// whole, as the official SDKs accept), compared without case in scheme and host and without a
/// trailing `/`. RFC 9728 §3.3 asks for the same identifier; a base of the URL is the one
/// looseness kept, never another origin.
pub fn resource_matches(said: &str, server_url: &str) -> bool {
    match (parts(said), parts(server_url)) {
        (Ok((s1, a1, p1)), Ok((s2, a2, p2))) => {
            s1 == s2 && a1 == a2 && (p1 == p2 || p2.starts_with(&format!("{p1}/")) || p1.is_empty())
        }
        _ => false,
    }
}

/// Whether an issuer as metadata names it is the one asked for: identical, as RFC 8414 §3.3
/// says (no normalisation: a mix-up is refused, not explained away).
fn same_issuer(said: &str, asked: &str) -> bool {
    said == asked
}

/// GETs a JSON document: what it holds, or a short note of why not.
async fn get_json<T: serde::de::DeserializeOwned>(
    http: &dyn HttpClient,
    clock: &dyn Clock,
    url: &str,
) -> Result<T, String> {
    let req = OutboundRequest {
        method: Method::GET,
        url: url.to_string(),
        headers: HeaderMap::from_iter([(ACCEPT, HeaderValue::from_static("application/json"))]),
        body: None,
        tls: None,
    };
    let (resp, body) = fetch(http, clock, req, TIMEOUT, MAX_DOCUMENT)
        .await
        .map_err(|e: HttpError| e.to_string())?;
    if !resp.status.is_success() {
        return Err(format!("HTTP {}", resp.status.as_u16()));
    }
    serde_json::from_slice(&body).map_err(|e| format!("not the metadata: {e}"))
}

/// Finds the protected resource metadata and the authorization server of the upstream at
/// `server_url`, given the `resource_metadata` of its challenge if it sent one.
pub async fn discover(
    http: &dyn HttpClient,
    clock: &dyn Clock,
    server_url: &str,
    from_challenge: Option<&str>,
) -> Result<Discovered, DiscoveryError> {
    let mut tried = Vec::new();
    let mut found = None;
    for url in resource_metadata_urls(server_url, from_challenge)? {
        match get_json::<ResourceMetadata>(http, clock, &url).await {
            Ok(m) => {
                if !resource_matches(&m.resource, server_url) {
                    return Err(DiscoveryError::OtherResource {
                        at: url,
                        said: m.resource,
                        resource: server_url.to_string(),
                    });
                }
                found = Some(m);
                break;
            }
            Err(why) => tried.push(format!("{url}: {why}")),
        }
    }
    let resource = found.ok_or_else(|| DiscoveryError::NoResourceMetadata {
        resource: server_url.to_string(),
        tried: tried.join("; "),
    })?;
    let issuer = resource
        .authorization_servers
        .first()
        .cloned()
        .ok_or_else(|| DiscoveryError::NoAuthorizationServer(server_url.to_string()))?;
    let server = server_metadata(http, clock, &issuer).await?;
    Ok(Discovered { resource, server })
}

/// The authorization server of the upstream at `url`: `issuer`'s where one is configured or
/// pinned, else the one its metadata names (read from its well-known places, or from the
/// metadata its 401 names); and the scopes the resource lists.
pub async fn authorization_server(
    http: &dyn HttpClient,
    clock: &dyn Clock,
    url: &str,
    issuer: Option<&str>,
) -> Result<(ServerMetadata, Vec<String>), DiscoveryError> {
    if let Some(iss) = issuer {
        return Ok((server_metadata(http, clock, iss).await?, vec![]));
    }
    let found = match discover(http, clock, url, None).await {
        Err(DiscoveryError::NoResourceMetadata { .. }) => {
            let named = challenge_of(http, clock, url).await;
            discover(http, clock, url, named.as_deref()).await?
        }
        other => other?,
    };
    Ok((found.server, found.resource.scopes_supported))
}

/// The `resource_metadata` an upstream's refusal of a request without a token names (an
/// upstream that publishes its metadata nowhere else): a bare `initialize` POSTed, its 401's
/// challenge read.
pub async fn challenge_of(http: &dyn HttpClient, clock: &dyn Clock, server_url: &str) -> Option<String> {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json, text/event-stream"),
    );
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcpgw","version":"0"}}}"#;
    let out = OutboundRequest {
        method: http::Method::POST,
        url: server_url.to_string(),
        headers,
        body: Some(bytes::Bytes::from_static(body.as_bytes())),
        tls: None,
    };
    let (resp, _) = crate::http::fetch::fetch(http, clock, out, std::time::Duration::from_secs(10), 64 * 1024)
        .await
        .ok()?;
    let values = resp
        .headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    super::challenge::bearer(values)?.resource_metadata
}

/// The metadata of the authorization server `issuer`, from the first of its well-known places
/// that has it; metadata naming another issuer is refused.
pub async fn server_metadata(
    http: &dyn HttpClient,
    clock: &dyn Clock,
    issuer: &str,
) -> Result<ServerMetadata, DiscoveryError> {
    let mut tried = Vec::new();
    for url in server_metadata_urls(issuer)? {
        match get_json::<ServerMetadata>(http, clock, &url).await {
            Ok(server) if same_issuer(&server.issuer, issuer) => return Ok(server),
            Ok(server) => {
                return Err(DiscoveryError::OtherIssuer {
                    at: url,
                    said: server.issuer,
                    issuer: issuer.to_string(),
                })
            }
            Err(why) => tried.push(format!("{url}: {why}")),
        }
    }
    Err(DiscoveryError::NoServerMetadata {
        issuer: issuer.to_string(),
        tried: tried.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ManualClock;
    use crate::ports::InboundResponse;
    use bytes::Bytes;
    use http::StatusCode;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[test]
    fn resource_metadata_is_looked_for_where_the_challenge_says_then_path_first() {
        assert_eq!(
            resource_metadata_urls("https://Up.Example/public/mcp/", None).unwrap(),
            [
                "https://up.example/.well-known/oauth-protected-resource/public/mcp",
                "https://up.example/.well-known/oauth-protected-resource",
            ]
        );
        assert_eq!(
            resource_metadata_urls("http://127.0.0.1:9000", Some("https://up.example/prm")).unwrap(),
            [
                "https://up.example/prm",
                "http://127.0.0.1:9000/.well-known/oauth-protected-resource"
            ]
        );
        assert!(resource_metadata_urls("ftp://x/y", None).is_err());
        assert!(resource_metadata_urls("https://user@x/y", None).is_err());
        assert!(resource_metadata_urls("/relative", None).is_err());
    }

    #[test]
    fn an_issuers_path_is_inserted_then_appended() {
        assert_eq!(
            server_metadata_urls("https://auth.example/tenant1").unwrap(),
            [
                "https://auth.example/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example/.well-known/openid-configuration/tenant1",
                "https://auth.example/tenant1/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            server_metadata_urls("https://auth.example/").unwrap(),
            [
                "https://auth.example/.well-known/oauth-authorization-server",
                "https://auth.example/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn a_resource_matches_itself_or_a_base_of_it() {
        assert!(resource_matches("https://up.example/mcp", "https://UP.example/mcp/"));
        assert!(resource_matches("https://up.example", "https://up.example/mcp"));
        assert!(resource_matches("https://up.example/a", "https://up.example/a/mcp"));
        assert!(!resource_matches("https://up.example/ab", "https://up.example/a"));
        assert!(!resource_matches("https://evil.example/mcp", "https://up.example/mcp"));
        assert!(!resource_matches("http://up.example/mcp", "https://up.example/mcp"));
        assert!(!resource_matches(
            "https://up.example:8443/mcp",
            "https://up.example/mcp"
        ));
    }

    /// Answers GETs from a table of URL → (status, body), recording what was asked.
    #[derive(Default)]
    struct Table {
        docs: HashMap<String, (u16, String)>,
        asked: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl HttpClient for Table {
        async fn send(&self, r: OutboundRequest) -> Result<InboundResponse, HttpError> {
            self.asked.lock().unwrap().push(r.url.clone());
            let (status, body) = self.docs.get(&r.url).cloned().unwrap_or((404, "{}".into()));
            Ok(InboundResponse {
                status: StatusCode::from_u16(status).unwrap(),
                headers: HeaderMap::new(),
                body: Box::pin(futures::stream::once(async move { Ok(Bytes::from(body)) })),
            })
        }
    }

    fn table(docs: &[(&str, &str)]) -> Table {
        Table {
            docs: docs
                .iter()
                .map(|(u, b)| (u.to_string(), (200, b.to_string())))
                .collect(),
            ..Default::default()
        }
    }

    const AS: &str = r#"{"issuer": "https://auth.example/t1", "authorization_endpoint": "https://auth.example/t1/authorize",
        "token_endpoint": "https://auth.example/t1/token", "code_challenge_methods_supported": ["S256"]}"#;

    #[test]
    fn discovery_follows_the_places_in_order_and_checks_resource_and_issuer() {
        let clock = ManualClock::at(0);
        let http = table(&[
            (
                "https://up.example/.well-known/oauth-protected-resource",
                r#"{"resource": "https://up.example", "authorization_servers": ["https://auth.example/t1"], "scopes_supported": ["read"]}"#,
            ),
            ("https://auth.example/t1/.well-known/openid-configuration", AS),
        ]);
        let d = futures::executor::block_on(discover(&http, &clock, "https://up.example/mcp", None)).unwrap();
        assert_eq!(d.resource.scopes_supported, ["read"]);
        assert_eq!(
            d.server.token_endpoint.as_deref(),
            Some("https://auth.example/t1/token")
        );
        assert!(d.server.supports_s256());
        assert_eq!(
            *http.asked.lock().unwrap(),
            [
                "https://up.example/.well-known/oauth-protected-resource/mcp",
                "https://up.example/.well-known/oauth-protected-resource",
                "https://auth.example/.well-known/oauth-authorization-server/t1",
                "https://auth.example/.well-known/openid-configuration/t1",
                "https://auth.example/t1/.well-known/openid-configuration",
            ]
        );

        // Metadata for another resource, or naming another issuer, is refused.
        let http = table(&[(
            "https://up.example/prm",
            r#"{"resource": "https://evil.example/mcp", "authorization_servers": ["https://auth.example/t1"]}"#,
        )]);
        let e = futures::executor::block_on(discover(
            &http,
            &clock,
            "https://up.example/mcp",
            Some("https://up.example/prm"),
        ));
        assert!(matches!(e, Err(DiscoveryError::OtherResource { .. })), "{e:?}");
        let http = table(&[
            (
                "https://up.example/.well-known/oauth-protected-resource/mcp",
                r#"{"resource": "https://up.example/mcp", "authorization_servers": ["https://auth.example/t2"]}"#,
            ),
            ("https://auth.example/.well-known/oauth-authorization-server/t2", AS),
        ]);
        let e = futures::executor::block_on(discover(&http, &clock, "https://up.example/mcp", None));
        assert!(matches!(e, Err(DiscoveryError::OtherIssuer { .. })), "{e:?}");

        // Nothing anywhere: every place is named.
        let e = futures::executor::block_on(discover(&table(&[]), &clock, "https://up.example/mcp", None)).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("oauth-protected-resource/mcp: HTTP 404"), "{text}");
    }
}
