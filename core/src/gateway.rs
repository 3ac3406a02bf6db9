//! The shared HTTP face: [`Gateway::handle`] takes an `http::Request<Bytes>` and returns an
//! `http::Response<Body>`. Routing, Host/Origin checks and the MCP transports (streamable HTTP,
//! legacy HTTP+SSE, plain `/rpc`) live here once for both runtimes; adapters only move bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{stream, StreamExt};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::config::{ConfigError, GatewayConfig};
use crate::guard::{add_headers, Admitted, Caller, Guard};
use crate::hub::{Frame, Hub, OnDrop};
use crate::mcp::{CallCtx, Outbound};
use crate::platform::{boxed, boxed_stream, BoxStream};
use crate::ports::{Clock, EventStore, HttpClient, Ids, Kind, Launcher, SessionState, SessionStore, Spawner, Store};
use crate::proto::jsonrpc::{self, Incoming, Json, Message, Request as RpcRequest, RpcError};
use crate::proto::version::ProtocolVersion;
use crate::registry::{Registry, Server};
use crate::response::Body;
use crate::response::{api_error, json_response, json_text_response, method_not_allowed, rpc_error};
use crate::route::{Access, ErrorStyle, Route};

/// Everything the gateway needs from its platform.
#[derive(Clone)]
pub struct Ports {
    /// Registry persistence.
    pub store: Arc<dyn Store>,
    /// Session state.
    pub sessions: Arc<dyn SessionStore>,
    /// SSE event logs for resumption.
    pub events: Arc<dyn EventStore>,
    /// Outbound HTTP.
    pub http: Arc<dyn HttpClient>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Random ids.
    pub ids: Arc<dyn Ids>,
    /// Background work.
    pub spawner: Arc<dyn Spawner>,
    /// Local processes for stdio upstreams (native only).
    pub launcher: Option<Arc<dyn Launcher>>,
    /// Rate-limit buckets.
    pub limiter: Arc<dyn crate::ratelimit::Limiter>,
}

/// Set by an adapter in a request's extensions (never from client input) to choose the id of
/// the session that request creates: the edge names the session's Durable Object first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignSessionId(pub String);

/// Name and version reported in `serverInfo` and `/version`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Product name.
    pub name: String,
    /// Version.
    pub version: String,
}

/// The gateway's shared state (one per process or Durable Object).
pub(crate) struct Inner {
    pub config: GatewayConfig,
    pub registry: Registry,
    pub sessions: Arc<dyn SessionStore>,
    pub events: Arc<dyn EventStore>,
    #[allow(dead_code)] // used by rate limiting and caching (later issues)
    pub http: Arc<dyn HttpClient>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
    pub spawner: Arc<dyn Spawner>,
    pub launcher: Option<Arc<dyn Launcher>>,
    pub limiter: Arc<dyn crate::ratelimit::Limiter>,
    pub hub: Hub,
    pub info: ServerInfo,
    pub fed: crate::federation::Federation,
    pub guard: Guard,
    stream_seq: AtomicU64,
    inits: AtomicU64,
    /// When a lookup miss last forced a registry re-read (ms since the epoch).
    pub last_miss_reload: AtomicU64,
    me: Weak<Inner>,
}

/// The gateway. Cheap to clone; every clone serves the same state.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

const MCP_SESSION_ID: &str = "mcp-session-id";
const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
const LAST_EVENT_ID: &str = "last-event-id";
/// The stream name of standalone GET streams in the event log.
const STANDALONE: &str = "g";

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// True when `accept` lists `mime` (or a wildcard covering it).
fn accepts(h: &HeaderMap, mime: &str) -> bool {
    let major = mime.split('/').next().unwrap_or_default();
    h.get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let m = item.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            m == mime || m == "*/*" || m.strip_suffix("/*") == Some(major)
        })
}

fn is_json_content(h: &HeaderMap) -> bool {
    match header_str(h, "content-type") {
        None => true,
        Some(ct) => {
            let m = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        }
    }
}

/// The host part of a `Host` header or origin authority, without port or brackets.
fn host_only(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.rsplit_once(':').map_or(authority, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            authority
        }
    })
}

fn is_loopback_name(host: &str) -> bool {
    let h = host.to_ascii_lowercase();
    h == "localhost"
        || h == "::1"
        || h.starts_with("127.") && h.split('.').count() == 4 && h.split('.').all(|o| o.parse::<u8>().is_ok())
}

fn sse_response(body: BoxStream<'static, Bytes>, session: Option<&str>) -> Response<Body> {
    let mut r = Response::new(Body::Stream(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(s) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert(MCP_SESSION_ID, s);
    }
    r
}

fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// 406 for a GET that would open an SSE stream without accepting one.
fn not_acceptable_sse() -> Response<Body> {
    rpc_error(
        StatusCode::NOT_ACCEPTABLE,
        &Value::Null,
        RpcError::invalid_request("Not Acceptable: Accept must list text/event-stream"),
    )
}

/// 404 for an unknown, expired or foreign session: the client must initialize again.
fn session_not_found() -> Response<Body> {
    rpc_error(
        StatusCode::NOT_FOUND,
        &Value::Null,
        RpcError::new(jsonrpc::SESSION_NOT_FOUND, "Session not found"),
    )
}

/// Checks the Content-Type (415) and parses the body as JSON-RPC (400 with -32700/-32600).
fn parse_rpc_body(req: &Request<Bytes>, max_batch: usize) -> Result<Incoming, Box<Response<Body>>> {
    if !is_json_content(req.headers()) {
        return Err(Box::new(rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &Value::Null,
            RpcError::invalid_request("Unsupported Media Type: Content-Type must be application/json"),
        )));
    }
    let incoming =
        jsonrpc::parse(req.body()).map_err(|e| Box::new(rpc_error(StatusCode::BAD_REQUEST, &Value::Null, e)))?;
    if let Incoming::Batch(items) = &incoming {
        if items.len() > max_batch {
            let e = RpcError::invalid_request(format!(
                "Invalid Request: a batch of {} messages is over the limit of {max_batch}",
                items.len()
            ));
            return Err(Box::new(rpc_error(StatusCode::BAD_REQUEST, &Value::Null, e)));
        }
    }
    Ok(incoming)
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

impl Gateway {
    /// Builds a gateway; fails if the configuration is invalid.
    // On wasm the ports are !Send by design (one isolate, one thread); Arc is still the right
    // shared pointer because native shares the same code.
    #[cfg_attr(target_family = "wasm", allow(clippy::arc_with_non_send_sync))]
    pub fn new(config: GatewayConfig, ports: Ports, info: ServerInfo) -> Result<Self, ConfigError> {
        config.validate()?;
        let auth = config.auth.clone();
        let store: Arc<dyn Store> = match &config.encryption_key {
            Some(k) => Arc::new(crate::seal::SealedStore::new(
                ports.store,
                crate::seal::Sealer::from_key_text(&k.0).map_err(|message| ConfigError {
                    setting: "encryption_key".into(),
                    message,
                })?,
                ports.ids.clone(),
            )),
            None => ports.store,
        };
        let registry = Registry::new(store, ports.clock.clone(), ports.ids.clone(), config.registry_cache_ms)
            .with_separator(&config.name_separator)
            .with_net_policy(crate::netguard::NetPolicy::parse(&config.ssrf_allow).unwrap_or_default())
            .with_sealed_credentials(config.encryption_key.is_some());
        Ok(Self {
            inner: Arc::new_cyclic(|me| Inner {
                config,
                registry,
                sessions: ports.sessions,
                events: ports.events,
                http: ports.http,
                clock: ports.clock,
                ids: ports.ids,
                spawner: ports.spawner,
                launcher: ports.launcher,
                limiter: ports.limiter,
                hub: Hub::default(),
                info,
                fed: Default::default(),
                guard: Guard::new(auth),
                stream_seq: AtomicU64::new(0),
                inits: AtomicU64::new(0),
                last_miss_reload: AtomicU64::new(0),
                me: me.clone(),
            }),
        })
    }

    /// The registry service (seeding, direct CRUD).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The settings in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// Ends every open SSE stream and refuses new ones; in-flight requests still finish.
    pub fn shutdown(&self) {
        self.inner.hub.shutdown();
    }

    /// Closes every upstream session and stops every stdio upstream process (after shutdown).
    pub fn close_upstreams(&self) {
        self.inner.close_all_links();
    }

    /// Runs the upstream health checks and catalog refreshes that are due (call periodically);
    /// `force` checks and refreshes every upstream now. Returns how many are healthy.
    pub async fn check_upstreams(&self, force: bool) -> usize {
        self.inner.check_upstreams(force).await
    }

    /// What this gateway knows of an upstream's health.
    pub fn upstream_health(&self, id: &str) -> Option<crate::federation::Health> {
        self.inner.health_of(id)
    }

    /// True once [`Gateway::shutdown`] has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.hub.is_closed()
    }

    /// Number of open SSE streams (standalone and legacy).
    pub fn open_streams(&self) -> usize {
        self.inner.hub.open_streams()
    }

    /// Reloads the registry and sends `list_changed` for lists that changed since the last
    /// refresh, whoever changed them (call periodically: another instance, or on the edge the
    /// Worker, may have written). Returns how many notifications each open stream got.
    pub async fn refresh_registry(&self) -> usize {
        self.inner.refresh_registry().await
    }

    /// Sends an SSE keep-alive comment on every open stream (call every ~15 s, so that clients
    /// and proxies with read timeouts keep idle streams); returns how many are open.
    pub fn keepalive(&self) -> usize {
        self.inner.hub.keepalive()
    }

    /// Expires idle sessions; returns how many.
    pub async fn expire_sessions(&self) -> usize {
        self.inner.expire_sessions().await
    }

    /// The response for a body over `max_body_bytes` (adapters stop reading and answer this).
    pub fn payload_too_large(&self, path: &str) -> Response<Body> {
        let msg = format!("request body larger than {} bytes", self.inner.config.max_body_bytes);
        match Route::parse(path).error_style() {
            ErrorStyle::JsonRpc => rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &Value::Null,
                RpcError::invalid_request(msg),
            ),
            ErrorStyle::Rest => api_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", msg, None),
        }
    }

    /// Handles one HTTP request.
    pub async fn handle(&self, req: Request<Bytes>) -> Response<Body> {
        let inner = &self.inner;
        let path = req.uri().path().to_string();
        let route = Route::parse(&path);
        if let Err(msg) = inner.check_host_origin(&req) {
            return match route.error_style() {
                ErrorStyle::JsonRpc => rpc_error(StatusCode::FORBIDDEN, &Value::Null, RpcError::invalid_request(msg)),
                ErrorStyle::Rest => api_error(StatusCode::FORBIDDEN, "forbidden", msg, None),
            };
        }
        // The Origin (if any) passed the check above: browsers from it may read the answer.
        let origin = req.headers().get("origin").cloned();
        if req.method() == Method::OPTIONS && req.headers().contains_key("access-control-request-method") {
            let mut r = Response::new(Body::Empty);
            *r.status_mut() = StatusCode::NO_CONTENT;
            let h = r.headers_mut();
            h.insert(
                "access-control-allow-methods",
                HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            h.insert(
                "access-control-allow-headers",
                HeaderValue::from_static(CORS_ALLOW_HEADERS),
            );
            h.insert("access-control-max-age", HeaderValue::from_static("600"));
            return with_cors(r, origin);
        }
        let mut admitted = match req.extensions().get::<Admitted>() {
            Some(a) => a.clone(),
            None => match self.admit(&req).await {
                Ok(a) => a,
                Err(r) => return *r,
            },
        };
        let extra = std::mem::take(&mut admitted.headers);
        let mut req = req;
        req.extensions_mut().insert(admitted);
        let mut resp = self.route(req, route, path).await;
        add_headers(&mut resp, &extra);
        with_cors(resp, origin)
    }

    /// Lets a request in or answers it (401, 403, 429): what [`Gateway::handle`] does before
    /// routing, for an adapter that routes the request elsewhere first (the edge Worker hands a
    /// session's requests to its Durable Object with the [`Admitted`] result in the extensions).
    pub async fn admit(&self, req: &Request<Bytes>) -> Result<Admitted, Box<Response<Body>>> {
        let route = Route::parse(req.uri().path());
        let mcp = route.error_style() == ErrorStyle::JsonRpc;
        let origin = req.headers().get("origin").cloned();
        self.inner
            .admit(req, route.access(), mcp)
            .await
            .map_err(|r| Box::new(with_cors(*r, origin)))
    }

    /// The virtual server `id` names, if it exists and the caller holds its scope.
    async fn virtual_server(&self, req: &Request<Bytes>, id: &str) -> Result<Arc<Server>, Box<Response<Body>>> {
        let inner = &self.inner;
        let snapshot = inner.registry.snapshot().await.map_err(|e| {
            Box::new(rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &Value::Null,
                RpcError::internal(e.to_string()),
            ))
        })?;
        let Some(server) = snapshot.server(id).cloned() else {
            return Err(Box::new(rpc_error(
                StatusCode::NOT_FOUND,
                &Value::Null,
                RpcError::invalid_request(format!("no virtual server '{id}'")),
            )));
        };
        if let Some(scope) = server.def.scope.as_deref() {
            if !inner.caller(req).may(Some(scope)) {
                let e = crate::auth::AuthError::InsufficientScope(scope.to_string());
                return Err(Box::new(inner.auth_error(req, Access::Client, true, &e)));
            }
        }
        Ok(server)
    }

    /// Routes a request whose Host and Origin passed.
    async fn route(&self, req: Request<Bytes>, route: Route, path: String) -> Response<Body> {
        let inner = &self.inner;
        if req.body().len() > inner.config.max_body_bytes {
            return self.payload_too_large(&path);
        }
        let operations = matches!(route, Route::Health | Route::Ready | Route::Version);
        if operations && req.method() != Method::GET && req.method() != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        match route {
            Route::Mcp { server: None } => inner.clone().streamable(req, None).await,
            Route::Sse { server: None } => inner.clone().legacy_sse(req, None, String::new()).await,
            Route::Message { server: None } => inner.clone().legacy_message(req, None).await,
            Route::Mcp { server: Some(id) } => match self.virtual_server(&req, &id).await {
                Ok(server) => inner.clone().streamable(req, Some(server)).await,
                Err(r) => *r,
            },
            Route::Sse { server: Some(id) } => match self.virtual_server(&req, &id).await {
                Ok(server) => {
                    inner
                        .clone()
                        .legacy_sse(req, Some(server), format!("/servers/{id}"))
                        .await
                }
                Err(r) => *r,
            },
            Route::Message { server: Some(id) } => match self.virtual_server(&req, &id).await {
                Ok(server) => inner.clone().legacy_message(req, Some(server)).await,
                Err(r) => *r,
            },
            Route::Rpc => inner.clone().rpc(req).await,
            Route::ResourceMetadata { resource } => inner.resource_metadata(&req, &resource),
            Route::Revocations { jti } => inner.admin(req, Kind::Revocation, jti.as_deref()).await,
            Route::Refresh { id } => inner.admin_refresh(&req, &id).await,
            Route::Health => json_response(StatusCode::OK, &json!({"status": "ok"})),
            Route::Ready => match inner.registry.store().ping().await {
                Ok(()) => json_response(StatusCode::OK, &json!({"status": "ready"})),
                Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.to_string(), None),
            },
            Route::Version => {
                let mut v = json!({"name": inner.info.name, "version": inner.info.version, "protocol_versions": ProtocolVersion::SERVED});
                if !inner.config.instance.is_empty() {
                    v["instance"] = json!(inner.config.instance);
                }
                json_response(StatusCode::OK, &v)
            }
            Route::Collection { kind, id } => inner.admin(req, kind, id.as_deref()).await,
            Route::NotFound { .. } => {
                api_error(StatusCode::NOT_FOUND, "not_found", format!("no route for {path}"), None)
            }
        }
    }
}

/// Request headers a browser client may send (answer to a CORS preflight).
const CORS_ALLOW_HEADERS: &str =
    "content-type, accept, authorization, mcp-session-id, mcp-protocol-version, last-event-id";
/// Response headers a browser client may read.
const CORS_EXPOSE_HEADERS: &str = "mcp-session-id, mcp-protocol-version, www-authenticate, retry-after, location";

/// Adds the CORS headers for an Origin that passed [`Inner::check_host_origin`] (configured in
/// `allowed_origins`, or a local page while bound to loopback).
fn with_cors(mut r: Response<Body>, origin: Option<HeaderValue>) -> Response<Body> {
    if let Some(o) = origin {
        let h = r.headers_mut();
        h.insert("access-control-allow-origin", o);
        h.insert(
            "access-control-expose-headers",
            HeaderValue::from_static(CORS_EXPOSE_HEADERS),
        );
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    r
}

/// The items of a POST body, in order.
enum Item {
    Request(RpcRequest),
    Invalid(Value, RpcError),
}

/// The authenticated subject of a request (set by [`Gateway::handle`]).
fn subject_of(req: &Request<Bytes>) -> Option<String> {
    req.extensions()
        .get::<Admitted>()
        .and_then(|a| a.identity.as_ref())
        .map(|i| i.subject.clone())
}

impl Inner {
    /// Who is calling, as the MCP methods need to know.
    fn caller(&self, req: &Request<Bytes>) -> Caller {
        let identity = req.extensions().get::<Admitted>().and_then(|a| a.identity.clone());
        Caller {
            admin: identity
                .as_ref()
                .is_some_and(|i| i.has_scope(&self.guard.cfg.admin_scope)),
            identity,
        }
    }

    /// This gateway as an `Arc`, for work that outlives the current call.
    pub(crate) fn me(&self) -> Option<Arc<Inner>> {
        self.me.upgrade()
    }

    fn check_host_origin(&self, req: &Request<Bytes>) -> Result<(), String> {
        let cfg = &self.config;
        let host = header_str(req.headers(), "host")
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        let host_listed = |h: &str| {
            cfg.allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(h) || a.eq_ignore_ascii_case(host_only(h)))
        };
        if let Some(h) = &host {
            let ok = if cfg.is_loopback() {
                is_loopback_name(host_only(h)) || host_listed(h)
            } else {
                cfg.allowed_hosts.is_empty() || host_listed(h)
            };
            if !ok {
                return Err(format!("Forbidden: Host '{h}' is not allowed"));
            }
        }
        if let Some(origin) = header_str(req.headers(), "origin") {
            if cfg
                .allowed_origins
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
            {
                return Ok(());
            }
            let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or(origin);
            let ok = if cfg.is_loopback() {
                is_loopback_name(host_only(authority))
            } else {
                host.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(authority))
            };
            if !ok {
                return Err(format!("Forbidden: Origin '{origin}' is not allowed"));
            }
        }
        Ok(())
    }

    async fn expire_sessions(&self) -> usize {
        let cutoff = self
            .clock
            .now_ms()
            .saturating_sub(self.config.session_ttl_secs.saturating_mul(1000));
        let gone = self.sessions.expire(cutoff).await;
        for id in &gone {
            self.events.forget(id).await;
            self.hub.close(id);
            self.drop_links(id);
        }
        gone.len()
    }

    /// A live session of this endpoint, touched; `None` if unknown, expired or of another endpoint.
    async fn load_session(&self, req: &Request<Bytes>, id: &str, scope: Option<&Arc<Server>>) -> Option<SessionState> {
        let mut s = self.sessions.get(id).await?;
        // Another caller's session does not exist for this one.
        if s.owner.is_some() && s.owner != subject_of(req) {
            return None;
        }
        let now = self.clock.now_ms();
        if now.saturating_sub(s.last_seen) > self.config.session_ttl_secs.saturating_mul(1000) {
            self.sessions.remove(id).await;
            self.events.forget(id).await;
            self.drop_links(id);
            return None;
        }
        if s.server.as_deref() != scope.map(|sv| sv.id.as_str()) {
            return None;
        }
        if now.saturating_sub(s.last_seen) >= 1000 {
            s.last_seen = now;
            self.sessions.put(s.clone()).await;
        }
        Some(s)
    }

    /// A new session; its id is the adapter's choice when it set [`AssignSessionId`], else random.
    fn new_session(&self, req: &Request<Bytes>, scope: Option<&Arc<Server>>, legacy_sse: bool) -> SessionState {
        let now = self.clock.now_ms();
        let id = req
            .extensions()
            .get::<AssignSessionId>()
            .map(|a| a.0.clone())
            .unwrap_or_else(|| self.ids.new_id());
        SessionState {
            id,
            protocol_version: None,
            server: scope.map(|s| s.id.clone()),
            client_capabilities: json!({}),
            client_info: Value::Null,
            log_level: None,
            legacy_sse,
            created_at: now,
            last_seen: now,
            owner: subject_of(req),
        }
    }

    /// Admits one more session (streamable `initialize` or legacy `GET /sse`). Idle sessions are
    /// swept now and then, and at once when the gateway holds `max_sessions`; still full, a 503
    /// the client can retry. The registry as the new session first sees it becomes the reference
    /// later `list_changed` are measured from.
    async fn admit_session(&self) -> Result<(), Box<Response<Body>>> {
        if self.inits.fetch_add(1, Ordering::Relaxed) % 64 == 63 {
            self.expire_sessions().await;
        }
        if self.sessions.count().await >= self.config.max_sessions {
            self.expire_sessions().await;
        }
        if self.sessions.count().await < self.config.max_sessions {
            let _ = self.registry.snapshot().await;
            return Ok(());
        }
        let mut r = rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &Value::Null,
            RpcError::new(-32000, "Too many sessions: try again later"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        Err(Box::new(r))
    }

    // ---- streamable HTTP -------------------------------------------------------------------

    async fn streamable(self: Arc<Self>, req: Request<Bytes>, scope: Option<Arc<Server>>) -> Response<Body> {
        match *req.method() {
            Method::POST => self.mcp_post(req, scope).await,
            Method::GET => self.mcp_get(req, scope).await,
            Method::DELETE => self.mcp_delete(req, scope).await,
            _ => method_not_allowed("GET, POST, DELETE"),
        }
    }

    fn check_version_header(h: &HeaderMap) -> Result<(), Box<Response<Body>>> {
        match header_str(h, MCP_PROTOCOL_VERSION) {
            Some(v) if ProtocolVersion::served(v).is_none() => Err(Box::new(rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                RpcError::invalid_request(format!(
                    "Bad Request: unsupported MCP-Protocol-Version '{v}' (supported: {})",
                    ProtocolVersion::served_names().join(", ")
                )),
            ))),
            _ => Ok(()),
        }
    }

    async fn mcp_post(self: Arc<Self>, req: Request<Bytes>, scope: Option<Arc<Server>>) -> Response<Body> {
        let h = req.headers();
        if !(accepts(h, "application/json") && accepts(h, "text/event-stream")) {
            return rpc_error(
                StatusCode::NOT_ACCEPTABLE,
                &Value::Null,
                RpcError::invalid_request("Not Acceptable: Accept must list application/json and text/event-stream"),
            );
        }
        if let Err(r) = Self::check_version_header(h) {
            return *r;
        }
        let incoming = match parse_rpc_body(&req, self.config.max_batch) {
            Ok(m) => m,
            Err(r) => return *r,
        };
        let Some(session_id) = header_str(h, MCP_SESSION_ID) else {
            return self.sessionless_post(&req, incoming, scope).await;
        };
        let Some(session) = self.load_session(&req, session_id, scope.as_ref()).await else {
            return session_not_found();
        };
        let batches = session.protocol_version.is_none_or(ProtocolVersion::allows_batches);
        if matches!(incoming, Incoming::Batch(_)) && !batches {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                RpcError::invalid_request(format!(
                    "Invalid Request: protocol version {} does not allow batches",
                    session.protocol_version.map_or("", ProtocolVersion::as_str)
                )),
            );
        }
        let caller = self.caller(&req);
        self.process(Some(session), scope, caller, incoming, Delivery::Response)
            .await
    }

    async fn sessionless_post(
        self: Arc<Self>,
        http_req: &Request<Bytes>,
        incoming: Incoming,
        scope: Option<Arc<Server>>,
    ) -> Response<Body> {
        let req = match incoming {
            Incoming::Single(Message::Request(r)) if r.method == "initialize" => r,
            Incoming::Single(Message::Request(r)) => {
                // Includes the 2026-07-28 `server/discover` probe: a prompt JSON-RPC error makes
                // clients fall back to `initialize`.
                let known = matches!(
                    r.method.as_str(),
                    "ping"
                        | "tools/list"
                        | "tools/call"
                        | "resources/list"
                        | "resources/read"
                        | "resources/templates/list"
                        | "prompts/list"
                        | "prompts/get"
                        | "completion/complete"
                        | "logging/setLevel"
                        | "resources/subscribe"
                        | "resources/unsubscribe"
                );
                let err = if known {
                    RpcError::invalid_request("Bad Request: missing Mcp-Session-Id header; send initialize first")
                } else {
                    RpcError::method_not_found(&r.method)
                };
                return rpc_error(StatusCode::BAD_REQUEST, &r.id, err);
            }
            _ => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    &Value::Null,
                    RpcError::invalid_request("Bad Request: missing Mcp-Session-Id header; send initialize first"),
                )
            }
        };
        if let Err(r) = self.admit_session().await {
            return *r;
        }
        match self.initialize_result(&req, scope.as_ref()) {
            Ok((version, result, params)) => {
                let mut s = self.new_session(http_req, scope.as_ref(), false);
                s.protocol_version = Some(version);
                s.client_capabilities = params.get("capabilities").cloned().unwrap_or(json!({}));
                s.client_info = params.get("clientInfo").cloned().unwrap_or(Value::Null);
                let sid = s.id.clone();
                self.sessions.put(s).await;
                let mut r = json_response(StatusCode::OK, &jsonrpc::response(&req.id, result));
                if let Ok(v) = HeaderValue::from_str(&sid) {
                    r.headers_mut().insert(MCP_SESSION_ID, v);
                }
                r
            }
            Err(e) => json_response(StatusCode::OK, &jsonrpc::error_response(&req.id, &e)),
        }
    }

    /// A notification from the client: cancellations and root changes go on to the upstreams
    /// serving the session; `initialized` needs nothing.
    async fn handle_notification(&self, session: Option<&SessionState>, method: &str, params: Option<&Value>) {
        let Some(s) = session else { return };
        match method {
            "notifications/cancelled" => self.cancel_upstream(&s.id, params).await,
            "notifications/roots/list_changed" => self.notify_links(&s.id, method, None, false).await,
            _ => {}
        }
    }

    /// Runs the messages of one POST and answers: 202 when there is nothing to answer, JSON when
    /// the work finished before anything else had to be sent, SSE otherwise.
    async fn process(
        self: Arc<Self>,
        session: Option<SessionState>,
        scope: Option<Arc<Server>>,
        caller: Caller,
        incoming: Incoming,
        delivery: Delivery,
    ) -> Response<Body> {
        let batch = matches!(incoming, Incoming::Batch(_));
        let messages = match incoming {
            Incoming::Single(m) => vec![Ok(m)],
            Incoming::Batch(items) => items,
        };
        let mut items = Vec::new();
        for m in messages {
            match m {
                Ok(Message::Request(r)) => items.push(Item::Request(r)),
                Ok(Message::Notification { method, params }) => {
                    self.handle_notification(session.as_ref(), &method, params.as_ref())
                        .await
                }
                Ok(Message::Response { id, outcome }) => {
                    // The client's answer to a request an upstream sent it through the gateway.
                    if let Some(s) = &session {
                        self.answer_upstream(&s.id, &id, outcome).await;
                    }
                }
                Err((id, e)) => items.push(Item::Invalid(id, e)),
            }
        }
        if items.is_empty() {
            return accepted();
        }
        let (tx, rx) = mpsc::unbounded::<Outbound>();
        let session_id = session.as_ref().map(|s| s.id.clone());
        let ctx = CallCtx {
            session,
            scope,
            caller,
            out: Some(tx.clone()),
        };
        let worker = self.clone();
        let work = async move {
            let answers = futures::future::join_all(items.iter().map(|item| async {
                match item {
                    Item::Request(r) => worker.respond(&ctx, r).await,
                    Item::Invalid(id, e) => Json::from_value(&jsonrpc::error_response(id, e)),
                }
            }))
            .await;
            let _ = tx.unbounded_send(Outbound::Done(answers));
        };
        let driver = stream::once(work).filter_map(|_| futures::future::ready(None::<Outbound>));
        let mut out = boxed_stream(stream::select(rx, driver));

        if let Delivery::LegacyStream(sid) = delivery {
            // Legacy SSE: everything goes to the session's stream; the POST is answered at once.
            let hub_inner = self.clone();
            self.spawner.spawn(boxed(async move {
                while let Some(o) = out.next().await {
                    let msgs = match o {
                        Outbound::Message(m) => vec![m],
                        Outbound::Done(answers) => answers,
                    };
                    for m in msgs {
                        hub_inner.hub.send(&sid, Frame::message(None, m.0));
                    }
                }
            }));
            return accepted();
        }

        let first = out.next().await;
        let pack = move |answers: Vec<Json>| -> String {
            if batch {
                let parts: Vec<String> = answers.into_iter().map(|a| a.0).collect();
                format!("[{}]", parts.join(","))
            } else {
                answers.into_iter().next().map(|a| a.0).unwrap_or_default()
            }
        };
        match first {
            Some(Outbound::Done(answers)) => json_text_response(StatusCode::OK, pack(answers)),
            Some(Outbound::Message(first)) => {
                let stream_name = format!("p{}", self.stream_seq.fetch_add(1, Ordering::Relaxed) + 1);
                let events = self.clone();
                let sid = session_id.clone();
                let body = stream::once(futures::future::ready(Outbound::Message(first)))
                    .chain(out)
                    .then(move |o| {
                        let events = events.clone();
                        let sid = sid.clone();
                        let stream_name = stream_name.clone();
                        let data = match o {
                            Outbound::Message(m) => m.0,
                            Outbound::Done(answers) => pack(answers),
                        };
                        async move {
                            let id = match &sid {
                                Some(sid) => Some(format!(
                                    "{stream_name}.{}",
                                    events.events.append(sid, &stream_name, data.clone()).await
                                )),
                                None => None,
                            };
                            Frame::message(id, data).to_bytes()
                        }
                    });
                sse_response(boxed_stream(body), None)
            }
            None => rpc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &Value::Null,
                RpcError::internal("request produced no response"),
            ),
        }
    }

    async fn mcp_get(self: Arc<Self>, req: Request<Bytes>, scope: Option<Arc<Server>>) -> Response<Body> {
        let h = req.headers();
        if !accepts(h, "text/event-stream") {
            return not_acceptable_sse();
        }
        if let Err(r) = Self::check_version_header(h) {
            return *r;
        }
        let Some(sid) = header_str(h, MCP_SESSION_ID) else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                RpcError::invalid_request("Bad Request: missing Mcp-Session-Id header"),
            );
        };
        let Some(session) = self.load_session(&req, sid, scope.as_ref()).await else {
            return session_not_found();
        };
        let resume = header_str(h, LAST_EVENT_ID).and_then(|id| {
            let (stream_name, seq) = id.rsplit_once('.')?;
            Some((stream_name.to_string(), seq.parse::<u64>().ok()?))
        });
        let mut replay = Vec::new();
        let mut live = true;
        if let Some((stream_name, seq)) = &resume {
            for e in self.events.replay(&session.id, stream_name, *seq).await {
                replay.push(Frame::message(Some(format!("{stream_name}.{}", e.seq)), e.data).to_bytes());
            }
            // A finished POST stream is replayed and closed; the standalone stream goes on live.
            live = stream_name == STANDALONE;
        }
        let replayed = stream::iter(replay);
        if !live {
            return sse_response(boxed_stream(replayed), None);
        }
        let Some((conn, rx)) = self.hub.attach(&session.id) else {
            return rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &Value::Null,
                RpcError::internal("shutting down"),
            );
        };
        self.wake_links(&session.id);
        let hub_owner = self.clone();
        let owner_sid = session.id.clone();
        let live_stream = OnDrop::new(
            rx.map(|f| f.to_bytes()),
            Box::new(move || hub_owner.hub.detach(&owner_sid, conn)),
        );
        sse_response(boxed_stream(replayed.chain(live_stream)), None)
    }

    async fn mcp_delete(self: Arc<Self>, req: Request<Bytes>, scope: Option<Arc<Server>>) -> Response<Body> {
        let Some(sid) = header_str(req.headers(), MCP_SESSION_ID) else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                RpcError::invalid_request("Bad Request: missing Mcp-Session-Id header"),
            );
        };
        if self.load_session(&req, sid, scope.as_ref()).await.is_none() {
            return session_not_found();
        }
        self.sessions.remove(sid).await;
        self.events.forget(sid).await;
        self.hub.close(sid);
        self.drop_links(sid);
        Response::new(Body::Empty)
    }

    /// Reloads the registry and tells connected clients which lists changed since the last
    /// refresh; returns how many notifications went out per stream.
    pub(crate) async fn refresh_registry(&self) -> usize {
        let kinds = match self.registry.refresh().await {
            Ok(k) => k,
            // The store is unreachable: nothing to announce; the next refresh will see it.
            Err(_) => return 0,
        };
        let mut methods = std::collections::BTreeSet::new();
        for kind in kinds {
            match kind {
                Kind::Tool => methods.insert("notifications/tools/list_changed"),
                Kind::Resource => methods.insert("notifications/resources/list_changed"),
                Kind::Prompt => methods.insert("notifications/prompts/list_changed"),
                // Membership changes what a virtual server's clients see in every list.
                _ => {
                    methods.insert("notifications/tools/list_changed");
                    methods.insert("notifications/resources/list_changed");
                    methods.insert("notifications/prompts/list_changed")
                }
            };
        }
        for m in &methods {
            self.broadcast(jsonrpc::notification(m, None)).await;
        }
        methods.len()
    }

    /// Sends a server-initiated message to every session with a live stream.
    pub(crate) async fn broadcast(&self, message: Value) {
        let data = message.to_string();
        for sid in self.hub.sessions() {
            self.send_to_session(&sid, data.clone()).await;
        }
    }

    /// Sends a server-initiated message on a session's stream (its standalone GET stream, logged
    /// for replay, or its legacy SSE stream).
    pub(crate) async fn send_to_session(&self, sid: &str, data: String) {
        let legacy = self.sessions.get(sid).await.is_some_and(|s| s.legacy_sse);
        let id = if legacy {
            None
        } else {
            Some(format!(
                "{STANDALONE}.{}",
                self.events.append(sid, STANDALONE, data.clone()).await
            ))
        };
        self.hub.send(sid, Frame::message(id, data));
    }

    // ---- legacy HTTP+SSE (2024-11-05) --------------------------------------------------------

    async fn legacy_sse(
        self: Arc<Self>,
        req: Request<Bytes>,
        scope: Option<Arc<Server>>,
        prefix: String,
    ) -> Response<Body> {
        if req.method() != Method::GET {
            return method_not_allowed("GET");
        }
        if !accepts(req.headers(), "text/event-stream") {
            return not_acceptable_sse();
        }
        if let Err(r) = self.admit_session().await {
            return *r;
        }
        let session = self.new_session(&req, scope.as_ref(), true);
        let sid = session.id.clone();
        let Some((conn, rx)) = self.hub.attach(&sid) else {
            return rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &Value::Null,
                RpcError::internal("shutting down"),
            );
        };
        self.sessions.put(session).await;
        let endpoint = Frame::endpoint(format!("{prefix}/message?sessionId={sid}"));
        let owner = self.clone();
        let owner_sid = sid.clone();
        // The legacy session lives as long as its stream.
        let cleanup = Box::new(move || {
            owner.hub.detach(&owner_sid, conn);
            let o = owner.clone();
            owner.drop_links(&owner_sid);
            owner.spawner.spawn(boxed(async move {
                o.sessions.remove(&owner_sid).await;
                o.events.forget(&owner_sid).await;
            }));
        });
        let body = stream::once(futures::future::ready(endpoint.to_bytes()))
            .chain(OnDrop::new(rx.map(|f| f.to_bytes()), cleanup));
        sse_response(boxed_stream(body), None)
    }

    async fn legacy_message(self: Arc<Self>, req: Request<Bytes>, scope: Option<Arc<Server>>) -> Response<Body> {
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        let Some(sid) =
            query_param(req.uri().query(), "sessionId").or_else(|| query_param(req.uri().query(), "session_id"))
        else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                RpcError::invalid_request("Bad Request: missing sessionId query parameter"),
            );
        };
        let Some(session) = self
            .load_session(&req, sid, scope.as_ref())
            .await
            .filter(|s| s.legacy_sse)
        else {
            return session_not_found();
        };
        let incoming = match parse_rpc_body(&req, self.config.max_batch) {
            Ok(m) => m,
            Err(r) => return *r,
        };
        let sid = session.id.clone();
        let caller = self.caller(&req);
        self.process(Some(session), scope, caller, incoming, Delivery::LegacyStream(sid))
            .await
    }

    // ---- plain JSON-RPC ------------------------------------------------------------------------

    async fn rpc(self: Arc<Self>, req: Request<Bytes>) -> Response<Body> {
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        let incoming = match parse_rpc_body(&req, self.config.max_batch) {
            Ok(m) => m,
            Err(r) => return *r,
        };
        // No session, so no notifications: the work always ends with a JSON answer.
        let caller = self.caller(&req);
        self.process(None, None, caller, incoming, Delivery::Response).await
    }
}

/// Where the answers of a POST go.
enum Delivery {
    /// In the HTTP response (JSON or SSE).
    Response,
    /// On the legacy SSE stream of this session.
    LegacyStream(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{memory_ports, ManualClock};
    use futures::executor::block_on;
    use std::time::Duration;

    fn gateway_with(clock: Arc<ManualClock>, config: GatewayConfig) -> Gateway {
        let ports = memory_ports(clock);
        Gateway::new(
            config,
            ports,
            ServerInfo {
                name: "mcpgw".into(),
                version: "test".into(),
            },
        )
        .unwrap()
    }

    fn gateway(clock: Arc<ManualClock>) -> Gateway {
        gateway_with(
            clock,
            GatewayConfig {
                session_ttl_secs: 60,
                ..GatewayConfig::default()
            },
        )
    }

    fn post(body: &str, session: Option<&str>) -> Request<Bytes> {
        let mut b = Request::post("/mcp")
            .header("host", "127.0.0.1:4444")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(s) = session {
            b = b.header(MCP_SESSION_ID, s);
        }
        b.body(Bytes::from(body.to_string())).unwrap()
    }

    #[test]
    fn idle_sessions_expire_after_the_ttl() {
        block_on(async {
            let clock = Arc::new(ManualClock::at(1_000_000));
            let gw = gateway(clock.clone());
            let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}"#;
            let r = gw.handle(post(init, None)).await;
            assert_eq!(r.status(), StatusCode::OK);
            let sid = r.headers()[MCP_SESSION_ID].to_str().unwrap().to_string();
            let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
            clock.advance(Duration::from_secs(59));
            assert_eq!(
                gw.handle(post(ping, Some(&sid))).await.status(),
                StatusCode::OK,
                "use keeps it alive"
            );
            clock.advance(Duration::from_secs(59));
            assert_eq!(gw.handle(post(ping, Some(&sid))).await.status(), StatusCode::OK);
            clock.advance(Duration::from_secs(61));
            assert_eq!(
                gw.handle(post(ping, Some(&sid))).await.status(),
                StatusCode::NOT_FOUND,
                "idle past the TTL"
            );
            assert_eq!(gw.expire_sessions().await, 0, "already removed on access");
        });
    }

    #[test]
    fn an_adapter_can_choose_the_new_session_id() {
        block_on(async {
            let gw = gateway(Arc::new(ManualClock::at(1)));
            let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#;
            let mut req = post(init, None);
            req.extensions_mut()
                .insert(AssignSessionId("chosen-by-the-edge".into()));
            let r = gw.handle(req).await;
            assert_eq!(r.headers()[MCP_SESSION_ID], "chosen-by-the-edge");
            let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
            assert_eq!(
                gw.handle(post(ping, Some("chosen-by-the-edge"))).await.status(),
                StatusCode::OK
            );
            // Without the extension, ids are random (here: sequential fakes), never client-chosen.
            let r = gw.handle(post(init, None)).await;
            assert_ne!(r.headers()[MCP_SESSION_ID], "chosen-by-the-edge");
        });
    }

    #[test]
    fn sessions_are_capped_and_idle_ones_make_room() {
        block_on(async {
            let clock = Arc::new(ManualClock::at(1_000_000));
            let config = GatewayConfig {
                session_ttl_secs: 60,
                max_sessions: 2,
                ..GatewayConfig::default()
            };
            let gw = gateway_with(clock.clone(), config);
            let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#;
            assert_eq!(gw.handle(post(init, None)).await.status(), StatusCode::OK);
            assert_eq!(gw.handle(post(init, None)).await.status(), StatusCode::OK);
            let full = gw.handle(post(init, None)).await;
            assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(full.headers()[header::RETRY_AFTER], "60");
            clock.advance(Duration::from_secs(61));
            assert_eq!(
                gw.handle(post(init, None)).await.status(),
                StatusCode::OK,
                "idle sessions made room"
            );
        });
    }

    #[test]
    fn background_sweep_removes_idle_sessions() {
        block_on(async {
            let clock = Arc::new(ManualClock::at(1_000_000));
            let gw = gateway(clock.clone());
            let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
            for _ in 0..3 {
                assert_eq!(gw.handle(post(init, None)).await.status(), StatusCode::OK);
            }
            clock.advance(Duration::from_secs(120));
            assert_eq!(gw.expire_sessions().await, 3);
        });
    }

    #[test]
    fn a_member_out_of_scope_is_unknown_under_its_original_name_too() {
        block_on(async {
            let secret = "unit-Q8vN3xk1Lr7Yt2Pw9Jm4Hs6Df0Gb5Ca3Ue8Io1Kn7";
            let auth = crate::auth::AuthConfig::from_vars(|n| (n == "MCPGW_JWT_SECRET").then(|| secret.to_string()))
                .expect("auth");
            let clock = Arc::new(ManualClock::at(1_000_000));
            let gw = gateway_with(
                clock,
                GatewayConfig {
                    auth: auth.clone(),
                    ..GatewayConfig::default()
                },
            );
            let up: crate::model::UpstreamDef = serde_json::from_value(json!({
                "name": "Up", "url": "https://up.example/mcp", "scope": "ops",
                "catalog": {"tools": [{"name": "launch", "inputSchema": {"type": "object"}}]},
            }))
            .expect("upstream");
            gw.registry().save_upstream(None, &up).await.expect("save");
            gw.registry()
                .create(
                    Kind::Server,
                    json!({"name": "s", "upstreams": ["Up"], "original_names": true}),
                )
                .await
                .expect("server");
            let call = |scope: &str| {
                let token = crate::auth::mint(&auth, "u", &["mcpgw:client".into(), scope.into()], 60, "j", 1_000_000)
                    .expect("token");
                let gw = gw.clone();
                async move {
                    let req = |body: &str, sid: Option<&str>| {
                        let mut r = post(body, sid);
                        *r.uri_mut() = "/servers/s/mcp".parse().expect("uri");
                        r.headers_mut()
                            .insert("authorization", format!("Bearer {token}").parse().expect("header"));
                        r
                    };
                    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
                    let r = gw.handle(req(init, None)).await;
                    let sid = r.headers()[MCP_SESSION_ID].to_str().expect("sid").to_string();
                    let body =
                        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"launch","arguments":{}}}"#;
                    let r = gw.handle(req(body, Some(&sid))).await;
                    let v: Value = serde_json::from_slice(r.body().as_bytes()).unwrap_or(Value::Null);
                    v["error"]["code"].clone()
                }
            };
            // Without the upstream's scope the tool does not exist; with it, the call is forwarded
            // (and fails here: there is no network).
            assert_eq!(call("other").await, json!(-32602));
            assert_ne!(call("ops").await, json!(-32602));
        });
    }

    #[test]
    fn cors_follows_the_allowed_origins() {
        block_on(async {
            let config = GatewayConfig {
                allowed_origins: vec!["https://app.example.com".into()],
                ..GatewayConfig::default()
            };
            let gw = gateway_with(Arc::new(ManualClock::at(1)), config);
            let preflight = |origin: &str| {
                Request::builder()
                    .method("OPTIONS")
                    .uri("/mcp")
                    .header("host", "127.0.0.1:4444")
                    .header("origin", origin)
                    .header("access-control-request-method", "POST")
                    .header("access-control-request-headers", "content-type, mcp-session-id")
                    .body(Bytes::new())
                    .unwrap()
            };
            let r = gw.handle(preflight("https://app.example.com")).await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
            let allowed = r.headers()["access-control-allow-headers"].to_str().unwrap();
            assert!(
                allowed.contains("mcp-session-id") && allowed.contains("authorization"),
                "{allowed}"
            );
            assert!(r.headers()["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("DELETE"));

            let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#;
            let mut req = post(init, None);
            req.headers_mut()
                .insert("origin", HeaderValue::from_static("https://app.example.com"));
            let r = gw.handle(req).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
            assert!(r.headers()["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .contains("mcp-session-id"));
            assert_eq!(r.headers()[header::VARY], "origin");

            let r = gw.handle(preflight("https://evil.example.com")).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            assert!(r.headers().get("access-control-allow-origin").is_none());
            let r = gw.handle(post(init, None)).await;
            assert!(
                r.headers().get("access-control-allow-origin").is_none(),
                "no Origin, no CORS headers"
            );
        });
    }

    #[test]
    fn accept_matching() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        assert!(accepts(&h, "application/json") && accepts(&h, "text/event-stream"));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/*;q=0.5"));
        assert!(accepts(&h, "text/event-stream") && !accepts(&h, "application/json"));
        assert!(!accepts(&HeaderMap::new(), "application/json"));
    }

    #[test]
    fn host_parsing() {
        assert_eq!(host_only("localhost:4444"), "localhost");
        assert_eq!(host_only("[::1]:80"), "::1");
        assert_eq!(host_only("evil.example.com"), "evil.example.com");
        assert!(is_loopback_name("127.0.0.1") && is_loopback_name("LOCALHOST") && is_loopback_name("::1"));
        assert!(!is_loopback_name("127.0.0.1.evil.com") && !is_loopback_name("evil.example.com"));
    }
}
