//! The gate every request passes before it is routed ([`Security`]): which access a route
//! needs, who the caller is (bearer token or, on the admin API, basic auth), whether the token
//! was revoked, rate limits, and the 401/403/429 answers with their `WWW-Authenticate`
//! challenges. Also the RFC 9728 protected-resource metadata.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::{parse_basic, parse_bearer, AuthConfig, AuthError, Identity, PasswordHash};
use super::jwt::{KeySet, Verdict, Verifier};
use super::origin::OriginPolicy;
use super::ratelimit::{Limiter, RateLimits, Rule};
use crate::http::response::{json_response, method_not_allowed, Body, Failure};
use crate::observe::{metrics, Telemetry};
use crate::ports::{Clock, HttpClient, OutboundRequest};
use crate::proto::jsonrpc::RpcError;
use crate::registry::Registry;

/// JSON-RPC error code of a 401 on an MCP route.
pub const UNAUTHORIZED: i64 = -32040;
/// JSON-RPC error code of a 403 on an MCP route.
pub const FORBIDDEN: i64 = -32043;
/// JSON-RPC error code of a 429 on an MCP route.
pub const RATE_LIMITED: i64 = -32029;

pub use super::origin::ClientIp;

pub(crate) use crate::http::route::Access;

/// Set in a request's extensions by an adapter that already let the request in (the edge
/// Worker, before it hands a session's request to the session's Durable Object); never taken
/// from client input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Admitted {
    /// The caller, when auth is on.
    pub identity: Option<Identity>,
    /// Rate-limit headers to add to the answer.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The gateway's public base URL as this caller reaches it (configured, or from the
    /// request): where links the gateway hands out point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// Why [`Security`] did not let a request in: a value, answered by
/// [`crate::http::response::failure`] in the route's style.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// 401 (no or bad credentials) or 403 (a scope is missing), with the challenges to send.
    #[error("{error}")]
    Auth {
        /// Why.
        error: AuthError,
        /// `WWW-Authenticate` values, in order.
        challenges: Vec<String>,
    },
    /// 403: the Host or the Origin is not let in.
    #[error(transparent)]
    Origin(#[from] super::origin::Disallowed),
    /// 429: the caller's bucket is empty.
    #[error("rate limit exceeded ({limit} requests per {window_secs} s): retry in {retry_after_secs} s")]
    RateLimited {
        /// Requests per window.
        limit: u64,
        /// The window.
        window_secs: u64,
        /// When a request would pass again.
        retry_after_secs: u64,
        /// The `RateLimit-*` headers.
        headers: Vec<(String, String)>,
    },
}

impl Failure for Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Auth {
                error: AuthError::InsufficientScope(_),
                ..
            } => StatusCode::FORBIDDEN,
            Refusal::Auth { .. } => StatusCode::UNAUTHORIZED,
            Refusal::Origin(_) => StatusCode::FORBIDDEN,
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }
    fn rpc(&self) -> RpcError {
        match self {
            Refusal::Auth { error, .. } => {
                let code = match error {
                    AuthError::InsufficientScope(_) => FORBIDDEN,
                    _ => UNAUTHORIZED,
                };
                RpcError::new(code, error.to_string()).with_data(json!({"reason": error.reason()}))
            }
            Refusal::Origin(d) => RpcError::invalid_request(d.to_string()),
            Refusal::RateLimited { retry_after_secs, .. } => {
                RpcError::new(RATE_LIMITED, self.to_string()).with_data(json!({"retry_after": retry_after_secs}))
            }
        }
    }
    fn api_code(&self) -> &'static str {
        match self {
            Refusal::Auth { error, .. } => error.reason(),
            Refusal::Origin(_) => "forbidden",
            Refusal::RateLimited { .. } => "rate_limited",
        }
    }
    fn headers(&self) -> Vec<(http::HeaderName, HeaderValue)> {
        let pairs = match self {
            Refusal::Auth { challenges, .. } => challenges
                .iter()
                .map(|c| (header::WWW_AUTHENTICATE.as_str().to_string(), c.clone()))
                .collect(),
            Refusal::Origin(_) => vec![],
            Refusal::RateLimited {
                headers,
                retry_after_secs,
                ..
            } => {
                let mut h = headers.clone();
                h.push(("retry-after".to_string(), retry_after_secs.to_string()));
                h
            }
        };
        pairs
            .into_iter()
            .filter_map(|(k, v)| Some((http::HeaderName::try_from(k).ok()?, HeaderValue::from_str(&v).ok()?)))
            .collect()
    }
}

/// Why the issuer's metadata or keys could not be read.
#[derive(Debug, thiserror::Error)]
enum DocumentError {
    /// The request failed (the URL).
    #[error("{0}: {1}")]
    Fetch(String, crate::ports::HttpError),
    /// It answered another status.
    #[error("{0}: HTTP {1}")]
    Status(String, StatusCode),
    /// It is not JSON.
    #[error("{0}: not JSON: {1}")]
    NotJson(String, String),
}

/// Who is calling, as the MCP methods see it: decides which members are listed and callable.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    /// Holds the admin scope (sees everything).
    pub admin: bool,
    /// The authenticated caller; none when auth is off (then nothing is out of scope).
    pub identity: Option<Identity>,
    /// The gateway's public base URL as the caller reaches it.
    pub base: Option<String>,
    /// The bearer token the caller presented (for an upstream that takes a token exchanged
    /// from it; never sent on as it is).
    pub token: Option<String>,
}

impl Caller {
    /// The caller of a request let in by [`Security::admit`] (its [`Admitted`] in the
    /// extensions); `admin_scope` sees everything.
    pub fn of(req: &Request<Bytes>, admin_scope: &str) -> Self {
        let admitted = req.extensions().get::<Admitted>();
        let identity = admitted.and_then(|a| a.identity.clone());
        // The token that proved the identity (none when auth is off).
        let token = identity.as_ref().and_then(|_| {
            let value = req.headers().get(http::header::AUTHORIZATION)?.to_str().ok()?;
            parse_bearer(value).map(str::to_string)
        });
        Caller {
            admin: identity.as_ref().is_some_and(|i| i.has_scope(admin_scope)),
            identity,
            base: admitted.and_then(|a| a.base.clone()),
            token,
        }
    }

    /// True if the caller may use something that requires `scope`.
    pub fn may(&self, scope: Option<&str>) -> bool {
        match (scope.filter(|s| !s.is_empty()), &self.identity) {
            (Some(s), Some(i)) => self.admin || i.has_scope(s),
            _ => true,
        }
    }
}

/// Adds headers given as text (rate-limit headers) to an answer.
pub(crate) fn add_headers(resp: &mut Response<Body>, headers: &[(String, String)]) {
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (http::HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
            resp.headers_mut().insert(k, v);
        }
    }
}

/// What [`Security`] is built from besides the auth settings.
pub(crate) struct SecurityPorts {
    /// Rate-limit buckets.
    pub limiter: Arc<dyn Limiter>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Outbound HTTP (the issuer's metadata and keys).
    pub http: Arc<dyn HttpClient>,
    /// The revocation list.
    pub registry: Arc<Registry>,
    /// Public-key signature checks.
    pub crypto: Arc<dyn crate::ports::Crypto>,
    /// Where the issuer's JWKS is kept for every instance sharing the cache.
    pub cache: Arc<dyn crate::ports::Cache>,
    /// Refusals are counted here.
    pub telemetry: Telemetry,
}

/// The security service of one gateway: keys, verifier and the admin password (built once),
/// rate limits, and the Host/Origin policy.
pub(crate) struct Security {
    cfg: AuthConfig,
    limits: RateLimits,
    origins: OriginPolicy,
    /// The resource name in the protected-resource metadata.
    name: String,
    limiter: Arc<dyn Limiter>,
    clock: Arc<dyn Clock>,
    http: Arc<dyn HttpClient>,
    registry: Arc<Registry>,
    crypto: Arc<dyn crate::ports::Crypto>,
    cache: Arc<dyn crate::ports::Cache>,
    telemetry: Telemetry,
    verifier: Verifier,
    /// Static keys, or the OAuth issuer's last JWKS.
    keys: Mutex<Option<Arc<KeySet>>>,
    /// When the issuer's JWKS was last fetched (ms), to fetch at most every
    /// `oauth_jwks_refetch_secs`.
    fetched_at: Mutex<u64>,
    password: Option<PasswordHash>,
    /// SHA-256 of the last `user:password` that verified (PBKDF2 is slow on purpose).
    basic_ok: Mutex<Option<[u8; 32]>>,
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// The gateway's public base URL: configured, or from the request.
pub(crate) fn base_url(cfg: &AuthConfig, req: &Request<Bytes>) -> String {
    if let Some(u) = &cfg.public_url {
        return u.clone();
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    let scheme = req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .or(req.uri().scheme_str())
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// Who a request comes from when it is not (yet) authenticated: its address, if the adapter
/// knows it.
fn client_key(req: &Request<Bytes>) -> String {
    match req.extensions().get::<ClientIp>() {
        Some(ip) => format!("ip:{}", ip.0),
        None => "anonymous".into(),
    }
}

/// The metadata URL for the resource at `path` (RFC 9728 §3.1: inserted before the path).
fn metadata_url(base: &str, path: &str) -> String {
    let p = path.trim_end_matches('/');
    format!("{base}/.well-known/oauth-protected-resource{p}")
}

/// A header value from text that may hold anything: quotes and control characters dropped.
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// The largest issuer document (metadata, JWKS) read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

impl Security {
    /// The security service for these settings.
    pub fn new(cfg: AuthConfig, limits: RateLimits, origins: OriginPolicy, name: String, ports: SecurityPorts) -> Self {
        let keys = if cfg.oauth_issuer.is_some() {
            None
        } else {
            match cfg.algorithm {
                super::auth::Alg::HS256 => cfg.jwt_secret.as_ref().map(|s| KeySet::hs256(&s.0)),
                alg => cfg
                    .jwt_public_keys
                    .as_deref()
                    .and_then(|k| KeySet::from_jwks(alg, k).ok()),
            }
        };
        let password = cfg
            .admin_password_hash
            .as_ref()
            .and_then(|h| PasswordHash::parse(&h.0).ok());
        Self {
            limits,
            origins,
            name,
            limiter: ports.limiter,
            clock: ports.clock,
            http: ports.http,
            registry: ports.registry,
            crypto: ports.crypto,
            cache: ports.cache,
            telemetry: ports.telemetry,
            verifier: Verifier::new(&cfg),
            keys: Mutex::new(keys.map(Arc::new)),
            fetched_at: Mutex::new(0),
            password,
            basic_ok: Mutex::new(None),
            cfg,
        }
    }

    fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn check_basic(&self, user: &str, password: &str) -> bool {
        let (Some(want_user), Some(hash)) = (&self.cfg.admin_user, &self.password) else {
            return false;
        };
        let digest = sha256(format!("{user}:{password}").as_bytes());
        let cached = *self.basic_ok.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cached {
            use subtle::ConstantTimeEq;
            if bool::from(c.ct_eq(&digest)) {
                return true;
            }
        }
        let ok = super::auth::ct_eq_str(user, want_user) & hash.verify(password, &*self.crypto).await;
        if ok {
            *self.basic_ok.lock().unwrap_or_else(|e| e.into_inner()) = Some(digest);
        }
        ok
    }

    /// The authentication settings.
    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    /// The admin scope (its holders see everything).
    pub fn admin_scope(&self) -> &str {
        &self.cfg.admin_scope
    }

    /// Whether the request's Host and Origin may reach the gateway; why not otherwise.
    pub fn check_origin(&self, req: &Request<Bytes>) -> Result<(), Refusal> {
        self.origins.check(req).map_err(Refusal::Origin)
    }

    /// Who is calling and whether they may use this route: the identity (None when auth is
    /// off), or why not.
    pub(crate) async fn admit(&self, req: &Request<Bytes>, access: Access) -> Result<Admitted, Refusal> {
        if access == Access::Public {
            return Ok(Admitted::default());
        }
        let identity = if self.cfg.required {
            Some(self.authenticate(req, access).await?)
        } else {
            None
        };
        let headers = self.rate_limit(req, access, identity.as_ref()).await?;
        Ok(Admitted {
            identity,
            headers,
            base: Some(base_url(&self.cfg, req)),
        })
    }

    /// Takes a token from the caller's bucket for this route class: the `RateLimit-*` headers,
    /// or the refusal.
    async fn rate_limit(
        &self,
        req: &Request<Bytes>,
        access: Access,
        identity: Option<&Identity>,
    ) -> Result<Vec<(String, String)>, Refusal> {
        let limits = &self.limits;
        let (class, rule) = match access {
            Access::Client => ("mcp", limits.mcp),
            Access::Admin => ("admin", limits.admin),
            Access::Public => return Ok(vec![]),
        };
        let Some(rule) = rule else {
            return Ok(vec![]);
        };
        let who = match identity {
            Some(i) => format!("sub:{}", i.subject),
            None => client_key(req),
        };
        self.bucket(&format!("{class}:{who}"), rule, 1).await
    }

    /// Takes `cost` tokens (0: only looks) from bucket `key`: the `RateLimit-*` headers, or the
    /// refusal. A limiter that cannot be reached lets requests through.
    async fn bucket(&self, key: &str, rule: Rule, cost: u32) -> Result<Vec<(String, String)>, Refusal> {
        let Ok(d) = self.limiter.take(key, rule, self.clock.now_ms(), cost).await else {
            return Ok(vec![]);
        };
        let headers = vec![
            ("ratelimit-limit".to_string(), d.limit.to_string()),
            ("ratelimit-remaining".to_string(), d.remaining.to_string()),
            ("ratelimit-reset".to_string(), d.reset_secs.to_string()),
            (
                "ratelimit-policy".to_string(),
                format!("{};w={}", d.limit, d.window_secs),
            ),
        ];
        if d.allowed {
            return Ok(headers);
        }
        let class = match key.split_once(':').map(|(c, _)| c) {
            Some("authfail") => "auth_failures",
            Some(c @ ("mcp" | "admin")) => c,
            _ => "other",
        };
        self.telemetry.count(&metrics::RATE_LIMITED, &[class]);
        Err(Refusal::RateLimited {
            limit: d.limit.into(),
            window_secs: d.window_secs.into(),
            retry_after_secs: d.retry_after_secs,
            headers,
        })
    }

    /// The caller's identity from its credentials, or the refusal. An address whose refused
    /// passwords used up `auth_failures` gets 429 for basic auth before the password is looked
    /// at (no guessing, and no password hashing on demand).
    async fn authenticate(&self, req: &Request<Bytes>, access: Access) -> Result<Identity, Refusal> {
        // Passwords can be guessed and are slow to check on purpose; bearer tokens can be neither
        // (and a shared address must not let one client lock out every token holder behind it).
        let basic = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_basic)
            .is_some();
        let rule = self.limits.auth_failures.filter(|_| basic);
        let key = format!("authfail:{}", client_key(req));
        if let Some(rule) = rule {
            self.bucket(&key, rule, 0).await?;
        }
        match self.check_credentials(req, access).await {
            Ok(id) => Ok(id),
            Err(e) => {
                let reason = match &e {
                    AuthError::Invalid(_) if basic => "bad_password",
                    AuthError::Revoked => "token_revoked",
                    e => e.reason(),
                };
                self.telemetry.count(&metrics::AUTH_FAILURES, &[reason]);
                if let (Some(rule), AuthError::Invalid(_) | AuthError::Expired | AuthError::NotYetValid) = (rule, &e) {
                    let _ = self.limiter.take(&key, rule, self.clock.now_ms(), 1).await;
                }
                Err(self.refusal(req, access, e))
            }
        }
    }

    /// The caller's identity from its credentials, or why not.
    async fn check_credentials(&self, req: &Request<Bytes>, access: Access) -> Result<Identity, AuthError> {
        let g = self;
        let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Err(AuthError::Missing);
        };
        let identity = if let Some(token) = parse_bearer(value) {
            let id = self.verify_token(token).await?;
            // Resource-server mode without a configured audience: the token must be for this
            // gateway (RFC 8707): its base URL or a resource under it.
            if g.cfg.oauth_issuer.is_some() && g.cfg.audience.is_empty() {
                let base = base_url(&g.cfg, req);
                let under = format!("{base}/");
                if !id.audience.iter().any(|a| *a == base || a.starts_with(&under)) {
                    return Err(AuthError::Invalid(format!(
                        "audience {:?} is not accepted (expected {base} or a resource under it)",
                        id.audience
                    )));
                }
            }
            id
        } else if let Some((user, password)) = parse_basic(value) {
            // Basic auth is for the admin API only, and only when an admin user is configured.
            if access != Access::Admin || g.cfg.admin_user.is_none() {
                return Err(AuthError::Invalid(
                    "basic auth is accepted on the admin API only".into(),
                ));
            }
            if !g.check_basic(&user, &password).await {
                return Err(AuthError::Invalid("wrong user or password".into()));
            }
            Identity {
                subject: user,
                scopes: vec![g.cfg.admin_scope.clone()],
                jti: None,
                audience: vec![],
                expires_ms: None,
            }
        } else {
            return Err(AuthError::Invalid("unsupported authorization scheme".into()));
        };
        let admin = identity.has_scope(&g.cfg.admin_scope);
        let needed = match access {
            Access::Admin => Some(g.cfg.admin_scope.as_str()),
            _ => Some(g.cfg.client_scope.as_str()).filter(|s| !s.is_empty()),
        };
        if let Some(scope) = needed {
            if !admin && !identity.has_scope(scope) {
                return Err(AuthError::InsufficientScope(scope.to_string()));
            }
        }
        Ok(identity)
    }

    /// Verifies a bearer token: signature and claims, then the revocation list.
    async fn verify_token(&self, token: &str) -> Result<Identity, AuthError> {
        let now = self.clock.now_ms();
        let mut keys = match self.keys() {
            Some(k) => k,
            None => self.fetch_jwks(now, false).await?,
        };
        let mut verdict = self.verifier.verify(token, &keys, now, &*self.crypto).await;
        if let Verdict::UnknownKey(kid) = &verdict {
            // The issuer may have rotated its keys: fetch them again (at most every
            // `oauth_jwks_refetch_secs`).
            if self.cfg.oauth_issuer.is_none() {
                return Err(AuthError::Invalid(format!("unknown key id '{kid}'")));
            }
            keys = self.fetch_jwks(now, true).await?;
            verdict = self.verifier.verify(token, &keys, now, &*self.crypto).await;
        }
        let identity = match verdict {
            Verdict::Ok(id) => id,
            Verdict::Refused(e) => return Err(e),
            Verdict::UnknownKey(kid) => return Err(AuthError::Invalid(format!("unknown key id '{kid}'"))),
        };
        if let Some(jti) = &identity.jti {
            let snap = self
                .registry
                .snapshot()
                .await
                .map_err(|e| AuthError::Invalid(format!("revocation list unavailable: {e}")))?;
            if snap.is_revoked(jti) {
                return Err(AuthError::Revoked);
            }
        }
        Ok(identity)
    }

    /// The OAuth issuer's JWKS: as another instance sharing the cache (or this one before it
    /// restarted) fetched it, unless `rotated` (a token named a key it lacks); else fetched (URL
    /// configured, or from the issuer's metadata) and kept for `oauth_jwks_refetch_secs`.
    async fn fetch_jwks(&self, now: u64, rotated: bool) -> Result<Arc<KeySet>, AuthError> {
        let g = self;
        let unavailable = |m: &dyn std::fmt::Display| AuthError::Invalid(format!("issuer keys unavailable: {m}"));
        let Some(issuer) = g.cfg.oauth_issuer.clone() else {
            return Err(unavailable(&"no key configured"));
        };
        {
            let mut at = g.fetched_at.lock().unwrap_or_else(|e| e.into_inner());
            if now.saturating_sub(*at) < g.cfg.oauth_jwks_refetch_secs.saturating_mul(1000) {
                if let Some(k) = g.keys() {
                    return Ok(k);
                }
            }
            *at = now;
        }
        let cache_key = format!("jwks:{issuer}");
        let refetch_ms = g.cfg.oauth_jwks_refetch_secs.saturating_mul(1000).max(1000);
        if !rotated {
            let kept = self.cache.get(&cache_key).await;
            if let Some(keys) = kept.and_then(|text| KeySet::from_jwks(g.cfg.algorithm, &text).ok()) {
                let keys = Arc::new(keys);
                *g.keys.lock().unwrap_or_else(|e| e.into_inner()) = Some(keys.clone());
                return Ok(keys);
            }
        }
        let jwks_url = match &g.cfg.oauth_jwks_url {
            Some(u) => u.clone(),
            None => {
                let mut found = None;
                for suffix in ["oauth-authorization-server", "openid-configuration"] {
                    let url = format!("{issuer}/.well-known/{suffix}");
                    if let Ok(meta) = self.get_json(&url).await {
                        if let Some(u) = meta.get("jwks_uri").and_then(Value::as_str) {
                            found = Some(u.to_string());
                            break;
                        }
                    }
                }
                found.ok_or_else(|| unavailable(&format!("no jwks_uri in {issuer}'s metadata")))?
            }
        };
        let jwks = self.get_json(&jwks_url).await.map_err(|e| unavailable(&e))?.to_string();
        let keys = KeySet::from_jwks(g.cfg.algorithm, &jwks).map_err(|e| unavailable(&e))?;
        self.cache.put(&cache_key, jwks, refetch_ms).await;
        let keys = Arc::new(keys);
        *g.keys.lock().unwrap_or_else(|e| e.into_inner()) = Some(keys.clone());
        Ok(keys)
    }

    /// GET a small JSON document (issuer metadata, JWKS).
    async fn get_json(&self, url: &str) -> Result<Value, DocumentError> {
        let req = OutboundRequest {
            method: Method::GET,
            url: url.to_string(),
            headers: http::HeaderMap::from_iter([(header::ACCEPT, http::HeaderValue::from_static("application/json"))]),
            body: None,
            tls: None,
        };
        let timeout = std::time::Duration::from_secs(10);
        let (resp, body) = crate::http::fetch::fetch(&*self.http, &*self.clock, req, timeout, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| DocumentError::Fetch(url.to_string(), e))?;
        if !resp.status.is_success() {
            return Err(DocumentError::Status(url.to_string(), resp.status));
        }
        serde_json::from_slice::<Value>(&body).map_err(|e| DocumentError::NotJson(url.to_string(), e.to_string()))
    }

    /// The refusal for an authentication failure on `access`, with its challenge(s).
    pub(crate) fn refusal(&self, req: &Request<Bytes>, access: Access, e: AuthError) -> Refusal {
        let g = self;
        let base = base_url(&g.cfg, req);
        let scope = match &e {
            AuthError::InsufficientScope(s) => s.clone(),
            _ if access == Access::Admin => g.cfg.admin_scope.clone(),
            _ => g.cfg.client_scope.clone(),
        };
        let mut challenge = format!(
            "Bearer realm=\"mcpgw\", resource_metadata=\"{}\"",
            quoted(&metadata_url(&base, req.uri().path()))
        );
        if !scope.is_empty() {
            challenge.push_str(&format!(", scope=\"{}\"", quoted(&scope)));
        }
        if let Some(code) = e.oauth_code() {
            challenge.push_str(&format!(
                ", error=\"{code}\", error_description=\"{}\"",
                quoted(&e.to_string())
            ));
        }
        let mut challenges = vec![challenge];
        let forbidden = matches!(e, AuthError::InsufficientScope(_));
        if access == Access::Admin && g.cfg.admin_user.is_some() && !forbidden {
            challenges.push("Basic realm=\"mcpgw-admin\", charset=\"UTF-8\"".to_string());
        }
        Refusal::Auth { error: e, challenges }
    }

    /// `GET /.well-known/oauth-protected-resource[/path]` (RFC 9728).
    pub(crate) fn resource_metadata(&self, req: &Request<Bytes>, resource_path: &str) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        let g = &self.cfg;
        let base = base_url(g, req);
        let mut scopes = vec![];
        if !g.client_scope.is_empty() {
            scopes.push(g.client_scope.clone());
        }
        scopes.push(g.admin_scope.clone());
        let mut doc = json!({
            "resource": format!("{base}{}", resource_path.trim_end_matches('/')),
            "resource_name": self.name,
            "bearer_methods_supported": ["header"],
            "scopes_supported": scopes,
            "resource_signing_alg_values_supported": [g.algorithm.name()],
        });
        if let Some(iss) = &g.oauth_issuer {
            doc["authorization_servers"] = json!([iss]);
        }
        let mut r = json_response(StatusCode::OK, &doc);
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
        r
    }
}
