//! Upstreams: how the gateway reaches one (its definition and transport), what it last read
//! from it (its catalog), and for an OpenAPI upstream how each operation is called.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{valid_headers, valid_http_url, valid_name, valid_scope, FieldError, JsonText};
use crate::ports::UpstreamTls;

/// How the gateway talks to an upstream MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Streamable HTTP (2025-03-26 and later).
    #[default]
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05): `GET` an event stream, `POST` to its endpoint.
    Sse,
    /// A local process speaking JSON-RPC lines on stdin/stdout (native only).
    Stdio,
    /// Not MCP: an OpenAPI 3.0/3.1 document (at `url`, or inline as `openapi`) whose operations
    /// become tools, called over plain HTTP.
    Openapi,
}

/// What the gateway last read from an upstream: its lists, verbatim, and what it declared at
/// `initialize`. Written by the gateway, never by the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// The negotiated protocol revision.
    #[serde(default, with = "crate::proto::version::stored")]
    pub protocol_version: Option<crate::proto::version::ProtocolVersion>,
    /// The upstream's `serverInfo`.
    #[serde(default)]
    pub server_info: Value,
    /// The upstream's capabilities.
    #[serde(default)]
    pub capabilities: Value,
    /// The upstream's `instructions`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// `tools/list` entries as the upstream sent them.
    #[serde(default)]
    pub tools: Vec<Value>,
    /// For a peer: its virtual servers, as its REST API shows them (members by its names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Value>,
    /// For an OpenAPI upstream: where its API is and how each tool's call is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<OpenApiSpec>,
    /// `resources/list` entries.
    #[serde(default)]
    pub resources: Vec<Value>,
    /// `resources/templates/list` entries.
    #[serde(default)]
    pub resource_templates: Vec<Value>,
    /// `prompts/list` entries.
    #[serde(default)]
    pub prompts: Vec<Value>,
    /// The tools the upstream lists only to a client that declares some capabilities
    /// (`sampling`, `elicitation`, `roots`): by name, the capabilities each needs. A client
    /// without them neither sees nor calls such a tool through the gateway.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub needs: std::collections::BTreeMap<String, Vec<String>>,
}

/// An upstream MCP server whose tools, resources and prompts the gateway federates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDef {
    /// Unique name, `[A-Za-z0-9_.-]{1,128}`.
    pub name: String,
    /// The scope a caller needs to see and use it (when auth is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Prefix of its members' names (default: the name, lower-cased).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The endpoint (streamable HTTP: the MCP URL; SSE: the event-stream URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// More endpoints of the same server, tried in order when the ones before fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// The transport.
    #[serde(default)]
    pub transport: Transport,
    /// stdio: the program to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// stdio: its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// stdio: extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// HTTP headers sent with every request (e.g. `Authorization`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout in milliseconds (default: the gateway's tool timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Seconds between catalog refreshes (default: the gateway's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_secs: Option<u64>,
    /// `peer`: another mcpgw, whose members carry where they come from (so that gateways
    /// registered both ways, or in a ring, never loop); `mcp` (the default): any MCP server.
    #[serde(default, skip_serializing_if = "UpstreamKind::is_mcp")]
    pub kind: UpstreamKind,
    /// A peer's members under their own names where no member here has the name (`prefer-local`:
    /// a clash is served namespaced; `refuse`: a clash is left out), instead of namespaced
    /// (`namespace`, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<ConflictPolicy>,
    /// OpenAPI: the document itself, when it is not read from `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<JsonText>,
    /// OpenAPI: where the API is, instead of the document's first server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// TLS towards this upstream beyond the gateway's own trust: a CA bundle, a client
    /// certificate (native gateway only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// How the upstream authenticates the gateway's requests besides `headers` (none: by the
    /// headers alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<UpstreamAuth>,
    /// The catalog last read (written by the gateway; ignored in requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<Catalog>,
}

/// Checks TLS settings' shape (the certificates themselves are read where TLS is spoken).
fn valid_tls(tls: &UpstreamTls) -> Result<(), FieldError> {
    let pem = |field: &str, text: &Option<String>, label: &str| match text {
        Some(t) if !t.contains("-----BEGIN ") || !t.contains(label) => Err(FieldError::new(
            format!("tls.{field}"),
            format!("must be PEM text holding a {label}"),
        )),
        _ => Ok(()),
    };
    pem("ca", &tls.ca, "CERTIFICATE")?;
    pem("client_cert", &tls.client_cert, "CERTIFICATE")?;
    pem("client_key", &tls.client_key, "PRIVATE KEY")?;
    match (&tls.client_cert, &tls.client_key) {
        (Some(_), None) => Err(FieldError::new("tls.client_key", "a client certificate needs its key")),
        (None, Some(_)) => Err(FieldError::new("tls.client_cert", "a client key needs its certificate")),
        _ => Ok(()),
    }
}

impl UpstreamDef {
    /// Where an upstream holds credentials: its `headers`, a stdio upstream's `env` (tokens
    /// passed to the program), and its TLS client key.
    pub const CREDENTIALS: &'static [&'static str] = &[
        "/headers/*",
        "/env/*",
        "/tls/client_key",
        "/auth/client_secret",
        "/auth/private_key",
        "/auth/idp/client_secret",
        "/auth/idp/private_key",
    ];

    /// A digest of how the upstream is reached (the definition, its catalog aside): a link
    /// opened under another revision is not reused, wherever the change was made.
    pub fn revision(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let mut bare = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = bare.as_object_mut() {
            m.remove("catalog");
        }
        bare.to_string().hash(&mut h);
        h.finish()
    }

    /// The prefix of member names.
    pub fn slug(&self) -> String {
        self.slug.clone().unwrap_or_else(|| self.name.to_ascii_lowercase())
    }

    /// Every endpoint, in failover order.
    pub fn endpoints(&self) -> Vec<&str> {
        self.url.iter().chain(self.urls.iter()).map(String::as_str).collect()
    }

    /// Checks the definition.
    pub fn validate(&self) -> Result<(), FieldError> {
        valid_name("name", &self.name)?;
        valid_scope(&self.scope)?;
        if let Some(s) = &self.slug {
            valid_name("slug", s)?;
        }
        match self.transport {
            Transport::Stdio => {
                if self.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
                    return Err(FieldError::new("command", "a stdio upstream needs a command"));
                }
                if !self.endpoints().is_empty() {
                    return Err(FieldError::new("url", "a stdio upstream has a command, not a URL"));
                }
            }
            Transport::Openapi => {
                if self.url.is_none() == self.openapi.is_none() {
                    return Err(FieldError::new(
                        "openapi",
                        "an OpenAPI upstream needs its document: a url to read it from, or the document inline as openapi (one of them)",
                    ));
                }
                if let Some(u) = &self.url {
                    valid_http_url("url", u)?;
                }
                if !self.urls.is_empty() {
                    return Err(FieldError::new("urls", "an OpenAPI upstream has one document"));
                }
                if let Some(b) = &self.base_url {
                    valid_http_url("base_url", b)?;
                }
                if self.openapi.as_ref().is_some_and(|d| !d.value().is_object()) {
                    return Err(FieldError::new(
                        "openapi",
                        "must be the OpenAPI document, a JSON object",
                    ));
                }
                if self.command.is_some() || !self.args.is_empty() || !self.env.is_empty() {
                    return Err(FieldError::new("command", "only stdio upstreams run a command"));
                }
            }
            _ => {
                if self.endpoints().is_empty() {
                    return Err(FieldError::new("url", "is required"));
                }
                if let Some(u) = &self.url {
                    valid_http_url("url", u)?;
                }
                for (i, u) in self.urls.iter().enumerate() {
                    valid_http_url(&format!("urls[{i}]"), u)?;
                }
                if self.command.is_some() || !self.args.is_empty() || !self.env.is_empty() {
                    return Err(FieldError::new("command", "only stdio upstreams run a command"));
                }
            }
        }
        if self.transport != Transport::Openapi && (self.openapi.is_some() || self.base_url.is_some()) {
            let field = if self.openapi.is_some() { "openapi" } else { "base_url" };
            return Err(FieldError::new(field, "only for transport \"openapi\""));
        }
        if self.kind == UpstreamKind::Peer && self.transport != Transport::StreamableHttp {
            return Err(FieldError::new(
                "kind",
                "a peer gateway is reached over streamable HTTP",
            ));
        }
        if self.conflicts.is_some() && self.kind != UpstreamKind::Peer {
            return Err(FieldError::new("conflicts", "only for kind \"peer\""));
        }
        valid_headers(&self.headers)?;
        if let Some(tls) = &self.tls {
            valid_tls(tls)?;
            let endpoints = self.endpoints();
            if endpoints.is_empty() || endpoints.iter().any(|u| !u.starts_with("https://")) {
                return Err(FieldError::new("tls", "TLS settings need https:// URLs"));
            }
        }
        if let Some(auth) = &self.auth {
            auth.validate()?;
            if self.transport != Transport::StreamableHttp {
                return Err(FieldError::new("auth", "OAuth is for upstreams over streamable HTTP"));
            }
        }
        if self.timeout_ms == Some(0) {
            return Err(FieldError::new("timeout_ms", "must be greater than 0"));
        }
        if self.refresh_secs == Some(0) {
            return Err(FieldError::new("refresh_secs", "must be greater than 0"));
        }
        Ok(())
    }
}

/// How an upstream authenticates the gateway (issue 30). The secret is a credential: sealed at
/// rest like `headers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum UpstreamAuth {
    /// The gateway as its own OAuth client (the client credentials grant; the MCP
    /// client-credentials extension): one token for every caller, kept and renewed.
    ClientCredentials {
        /// The client id registered at the upstream's authorization server.
        client_id: String,
        /// Its secret (`client_secret_basic`, `client_secret_post`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<String>,
        /// Its private key, a private JWK as JSON text (`private_key_jwt`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        private_key: Option<String>,
        /// How the client authenticates at the token endpoint.
        #[serde(default)]
        method: SecretMethod,
        /// The scopes asked for (space-separated; none: the challenge's, else the resource's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        /// The authorization server's issuer (none: discovered from the upstream's metadata).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<String>,
    },
    /// Each caller's own authorization (the authorization code flow with PKCE S256, through
    /// the caller's browser): given once, kept in the token vault per caller, refreshed. The
    /// gateway is the OAuth client named here; a public client (`method = none`) has no secret.
    User {
        /// The client id registered at the upstream's authorization server; none (empty): the
        /// gateway identifies itself by its Client ID Metadata Document where the server takes
        /// them, else registers itself there (RFC 7591).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        client_id: String,
        /// Its secret, for a confidential client.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<String>,
        /// Its private key, a private JWK as JSON text (`private_key_jwt`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        private_key: Option<String>,
        /// How the client authenticates at the token endpoint.
        #[serde(default)]
        method: SecretMethod,
        /// The scopes asked for (space-separated; none: the challenge's, else the resource's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        /// The authorization server's issuer (none: discovered from the upstream's metadata).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<String>,
    },
    /// The caller's own token (the one presented to the gateway) exchanged at a token service
    /// for one whose audience is the upstream (RFC 8693); never sent to the upstream itself.
    TokenExchange {
        /// The gateway's client id at the token service.
        client_id: String,
        /// Its secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<String>,
        /// Its private key, a private JWK as JSON text (`private_key_jwt`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        private_key: Option<String>,
        /// How the client authenticates at the token service.
        #[serde(default)]
        method: SecretMethod,
        /// The token service's issuer (its metadata names its token endpoint).
        token_service: String,
        /// The `audience` asked for (none: only the upstream as `resource`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
        /// The scopes asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        /// The caller's token's type URN (default: an access token).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject_token_type: Option<String>,
    },
    /// Enterprise-managed authorization: the caller's identity assertion from the enterprise
    /// IdP (the token presented to the gateway) exchanged there for an ID-JAG (RFC 8693), then
    /// at the upstream's authorization server for an access token (RFC 7523 jwt-bearer).
    Enterprise {
        /// The gateway's client id at the upstream's authorization server.
        client_id: String,
        /// Its secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<String>,
        /// Its private key, a private JWK as JSON text (`private_key_jwt`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        private_key: Option<String>,
        /// How the client authenticates there.
        #[serde(default)]
        method: SecretMethod,
        /// The scopes asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        /// The upstream's authorization server (none: discovered from its metadata).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<String>,
        /// The enterprise IdP and the gateway's client there.
        idp: IdpClient,
    },
}

/// The gateway as a client of an enterprise IdP (the `enterprise` mode's first exchange).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpClient {
    /// The IdP's issuer.
    pub issuer: String,
    /// The gateway's client id there.
    pub client_id: String,
    /// Its secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Its private key, a private JWK as JSON text (`private_key_jwt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// How the client authenticates there.
    #[serde(default)]
    pub method: SecretMethod,
    /// The caller's token's type URN (default: an ID token, as the extension says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_type: Option<String>,
}

impl IdpClient {
    /// The gateway's client at the IdP.
    pub fn client(&self) -> OAuthClient<'_> {
        OAuthClient {
            client_id: &self.client_id,
            client_secret: self.client_secret.as_deref(),
            private_key: self.private_key.as_deref(),
            method: self.method,
        }
    }
}

/// How a client secret goes to the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretMethod {
    /// `client_secret_basic` (the `Authorization` header).
    #[default]
    ClientSecretBasic,
    /// `client_secret_post` (the form body).
    ClientSecretPost,
    /// `private_key_jwt`: a JWT the gateway signs with its private key (RFC 7523 §2.2).
    PrivateKeyJwt,
    /// A public client: no secret (the `user` mode only, where PKCE protects the code).
    None,
}

/// The OAuth client an upstream's `auth` names: who the gateway is at its authorization server.
#[derive(Debug, Clone, Copy)]
pub struct OAuthClient<'a> {
    /// The client id.
    pub client_id: &'a str,
    /// Its secret, if it has one.
    pub client_secret: Option<&'a str>,
    /// Its private key (JWK text), for `private_key_jwt`.
    pub private_key: Option<&'a str>,
    /// How it authenticates at the token endpoint.
    pub method: SecretMethod,
}

impl UpstreamAuth {
    /// The OAuth client the gateway is toward the upstream's authorization server.
    pub fn client(&self) -> OAuthClient<'_> {
        match self {
            UpstreamAuth::ClientCredentials {
                client_id,
                client_secret,
                private_key,
                method,
                ..
            }
            | UpstreamAuth::User {
                client_id,
                client_secret,
                private_key,
                method,
                ..
            }
            | UpstreamAuth::TokenExchange {
                client_id,
                client_secret,
                private_key,
                method,
                ..
            }
            | UpstreamAuth::Enterprise {
                client_id,
                client_secret,
                private_key,
                method,
                ..
            } => OAuthClient {
                client_id,
                client_secret: client_secret.as_deref(),
                private_key: private_key.as_deref(),
                method: *method,
            },
        }
    }

    /// The configured scope, if any.
    pub fn scope(&self) -> Option<&str> {
        match self {
            UpstreamAuth::ClientCredentials { scope, .. }
            | UpstreamAuth::User { scope, .. }
            | UpstreamAuth::TokenExchange { scope, .. }
            | UpstreamAuth::Enterprise { scope, .. } => scope.as_deref(),
        }
    }

    /// The configured (or pinned) issuer of the upstream's authorization server, if any (a
    /// token exchange's token service is not one).
    pub fn issuer(&self) -> Option<&str> {
        match self {
            UpstreamAuth::ClientCredentials { issuer, .. }
            | UpstreamAuth::User { issuer, .. }
            | UpstreamAuth::Enterprise { issuer, .. } => issuer.as_deref(),
            UpstreamAuth::TokenExchange { .. } => None,
        }
    }

    /// Sets the issuer (pinned at registration).
    pub fn set_issuer(&mut self, to: String) {
        match self {
            UpstreamAuth::ClientCredentials { issuer, .. }
            | UpstreamAuth::User { issuer, .. }
            | UpstreamAuth::Enterprise { issuer, .. } => *issuer = Some(to),
            UpstreamAuth::TokenExchange { .. } => {}
        }
    }

    /// True when each caller reaches the upstream with a credential of their own: its links
    /// are never shared between callers.
    pub fn per_user(&self) -> bool {
        !matches!(self, UpstreamAuth::ClientCredentials { .. })
    }

    /// True when each caller authorizes the gateway there once, through their browser (the
    /// token vault's `user` mode).
    pub fn consents(&self) -> bool {
        matches!(self, UpstreamAuth::User { .. })
    }

    /// Checks the settings' shape.
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_client("auth", self.client(), self.consents())?;
        match self {
            UpstreamAuth::TokenExchange {
                token_service,
                audience,
                subject_token_type,
                ..
            } => {
                valid_http_url("auth.token_service", token_service)?;
                if audience.as_ref().is_some_and(|a| a.is_empty() || a.len() > 1024) {
                    return Err(FieldError::new("auth.audience", "1-1024 characters"));
                }
                valid_urn("auth.subject_token_type", subject_token_type.as_deref())?;
            }
            UpstreamAuth::Enterprise { idp, .. } => {
                valid_http_url("auth.idp.issuer", &idp.issuer)?;
                validate_client("auth.idp", idp.client(), false)?;
                valid_urn("auth.idp.subject_token_type", idp.subject_token_type.as_deref())?;
            }
            _ => {}
        }
        if self.scope().is_some_and(|s| s.len() > 1024) {
            return Err(FieldError::new("auth.scope", "at most 1024 characters"));
        }
        if let Some(i) = self.issuer() {
            valid_http_url("auth.issuer", i)?;
        }
        Ok(())
    }
}

/// A token type given as a URN, if given.
fn valid_urn(field: &str, urn: Option<&str>) -> Result<(), FieldError> {
    match urn {
        Some(u) if !u.starts_with("urn:") || u.len() > 256 => Err(FieldError::new(
            field,
            "a token type URN (urn:ietf:params:oauth:token-type:…)",
        )),
        _ => Ok(()),
    }
}

/// Checks an OAuth client's settings (`at`: where they are); a public client only where
/// `public_ok`.
fn validate_client(at: &str, c: OAuthClient<'_>, public_ok: bool) -> Result<(), FieldError> {
    {
        if public_ok && c.client_id.is_empty() {
            // No client registered by the operator: the gateway becomes one (a public client).
            if c.client_secret.is_some() || c.private_key.is_some() {
                return Err(FieldError::new(
                    format!("{at}.client_id"),
                    "a secret or key needs the client id it was issued with",
                ));
            }
            if !matches!(c.method, SecretMethod::None | SecretMethod::ClientSecretBasic) {
                return Err(FieldError::new(
                    format!("{at}.method"),
                    "without a client id the gateway is a public client (method none)",
                ));
            }
            return Ok(());
        }
        if c.client_id.trim().is_empty() || c.client_id.len() > 1024 {
            return Err(FieldError::new(
                format!("{at}.client_id"),
                "is required (at most 1024 characters)",
            ));
        }
        match c.method {
            SecretMethod::PrivateKeyJwt => {
                let key = c
                    .private_key
                    .map(serde_json::from_str::<Value>)
                    .and_then(Result::ok)
                    .filter(|k| k.get("kty").is_some() && k.get("d").is_some());
                if key.is_none() || c.private_key.is_some_and(|k| k.len() > 16 * 1024) {
                    return Err(FieldError::new(
                        format!("{at}.private_key"),
                        "private_key_jwt needs the private key as a JWK (JSON with kty and d)",
                    ));
                }
            }
            SecretMethod::None => {
                if !public_ok {
                    return Err(FieldError::new(
                        format!("{at}.method"),
                        "a public client (none) is for the user mode only: use client_secret_basic, client_secret_post or private_key_jwt",
                    ));
                }
                if c.client_secret.is_some() || c.private_key.is_some() {
                    return Err(FieldError::new(
                        format!("{at}.method"),
                        "a public client (none) has no secret or key",
                    ));
                }
            }
            SecretMethod::ClientSecretBasic | SecretMethod::ClientSecretPost => {
                if c.client_secret.is_none_or(|s| s.is_empty() || s.len() > 4096) {
                    return Err(FieldError::new(
                        format!("{at}.client_secret"),
                        "is required (at most 4096 characters)",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// An OpenAPI upstream's API: where it is, and each operation's call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenApiSpec {
    /// The API's base URL (the document's server, or the definition's `base_url`).
    pub base_url: String,
    /// One per tool, by the tool's name.
    pub operations: Vec<Operation>,
}

/// How a call of one OpenAPI operation's tool becomes an HTTP request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// The tool's name (at the upstream).
    pub name: String,
    /// The HTTP method.
    pub method: String,
    /// The path template, `{name}` for a path parameter.
    pub path: String,
    /// The parameters, each from one argument.
    #[serde(default)]
    pub params: Vec<OperationParam>,
    /// The JSON body, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<OperationBody>,
}

/// One parameter of an operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationParam {
    /// The argument that carries it.
    pub arg: String,
    /// Its name in the request.
    pub name: String,
    /// `path`, `query` or `header`.
    #[serde(rename = "in")]
    pub place: String,
}

/// Where an operation's JSON body comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationBody {
    /// These arguments, as the body object's members.
    Fields(Vec<String>),
    /// This argument, as the whole body.
    Whole(String),
}

/// What an upstream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamKind {
    /// Any MCP server.
    #[default]
    Mcp,
    /// Another mcpgw.
    Peer,
}

impl UpstreamKind {
    fn is_mcp(&self) -> bool {
        *self == UpstreamKind::Mcp
    }
}

/// What a peer's member becomes when a member here has its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// Every member namespaced (`{slug}__{name}`): no clash can happen.
    #[default]
    Namespace,
    /// Own names; a clash is served namespaced.
    PreferLocal,
    /// Own names; a clash is left out.
    Refuse,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(auth: Value) -> Result<(), String> {
        let a: UpstreamAuth = serde_json::from_value(auth).map_err(|e| e.to_string())?;
        a.validate().map_err(|e| format!("{}: {}", e.field, e.message))
    }

    /// Each mode's settings are checked where they are, with the field named.
    #[test]
    fn each_modes_settings_are_checked_and_the_field_named() {
        assert!(check(json!({"mode": "user", "client_id": "c", "method": "none"})).is_ok());
        // No client id in the user mode: the gateway becomes a public client there itself.
        assert!(check(json!({"mode": "user"})).is_ok());
        assert!(check(json!({"mode": "user", "method": "none", "scope": "read"})).is_ok());
        let e = check(json!({"mode": "user", "client_secret": "s"})).unwrap_err();
        assert!(e.starts_with("auth.client_id"), "{e}");
        let e = check(json!({"mode": "user", "method": "client_secret_post"})).unwrap_err();
        assert!(e.starts_with("auth.method"), "{e}");
        let e = check(json!({"mode": "client-credentials", "client_secret": "s"})).unwrap_err();
        assert!(e.contains("client_id"), "{e}");
        let e = check(json!({"mode": "client-credentials", "client_id": "c", "method": "none"})).unwrap_err();
        assert!(e.starts_with("auth.method"), "{e}");
        let e = check(json!({"mode": "user", "client_id": "c", "method": "none", "client_secret": "s"})).unwrap_err();
        assert!(e.starts_with("auth.method"), "{e}");
        assert!(check(json!({"mode": "token-exchange", "client_id": "c", "client_secret": "s"})).is_err());
        let e = check(
            json!({"mode": "token-exchange", "client_id": "c", "client_secret": "s", "token_service": "ftp://x"}),
        )
        .unwrap_err();
        assert!(e.starts_with("auth.token_service"), "{e}");
        let e = check(json!({"mode": "token-exchange", "client_id": "c", "client_secret": "s",
            "token_service": "https://sts.example", "subject_token_type": "jwt"}))
        .unwrap_err();
        assert!(e.starts_with("auth.subject_token_type"), "{e}");
        let ema = |idp: Value| json!({"mode": "enterprise", "client_id": "c", "client_secret": "s", "idp": idp});
        assert!(check(ema(
            json!({"issuer": "https://idp.example", "client_id": "i", "client_secret": "t"})
        ))
        .is_ok());
        let e = check(ema(json!({"issuer": "https://idp.example", "client_id": "i"}))).unwrap_err();
        assert!(e.starts_with("auth.idp.client_secret"), "{e}");
        let e = check(ema(
            json!({"issuer": "https://idp.example", "client_id": "i", "method": "none"}),
        ))
        .unwrap_err();
        assert!(e.starts_with("auth.idp.method"), "{e}");
        assert!(check(ema(
            json!({"issuer": "https://idp.example", "client_id": "i", "extra": 1})
        ))
        .is_err());
        // Only the user mode asks each caller to consent; every mode but the gateway's own acts
        // for each caller.
        let a: UpstreamAuth = serde_json::from_value(
            json!({"mode": "token-exchange", "client_id": "c", "client_secret": "s", "token_service": "https://s"}),
        )
        .unwrap();
        assert!(a.per_user() && !a.consents() && a.issuer().is_none());
    }
}
