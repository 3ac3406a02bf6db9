//! The composition root: builds every service from the platform's [`Ports`] and the
//! configuration, and [`Gateway::handle`] takes one HTTP request down the layers: the Host and
//! Origin policy, admission (credentials, rate limits), the [`Route`], then the face that serves
//! it (streamable HTTP, legacy SSE, `/rpc`, the admin API) or the operations endpoints.

mod account;
mod unserved;
use unserved::Unserved;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::config::{ConfigError, GatewayConfig};
use crate::engine::{Engine, EngineSettings, Envelope, Mrtr, ServerInfo};
use crate::face::{self, admin::Admin, Face};
use crate::federation::{self, Federation, Health};
use crate::http::response::{api_failure, failure, json_response, method_not_allowed, rpc_failure, Body, Unread};
use crate::http::route::{Access, Route};
use crate::observe::metrics::{self as m, Sample};
use crate::observe::{RequestCtx, Telemetry};
use crate::ports::{Clock, EventStore, HttpClient, Ids, Kind, Launcher, SessionStore, Spawner, Store};
use crate::proto::jsonrpc::{RequestId, RpcError};
use crate::proto::version::ProtocolVersion;
use crate::registry::{Registry, Server};
use crate::security::admission::{add_headers, Admitted, Caller, Refusal, Security, SecurityPorts};
use crate::security::origin::{preflight, with_cors, OriginPolicy};
use crate::security::ratelimit::Limiter;
use crate::session::peers::Note;
use crate::session::{Limits, Sessions};
use crate::upstream::rest::Rest;
use crate::upstream::Net;

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
    pub limiter: Arc<dyn Limiter>,
    /// Public-key signature checks (JWT).
    pub crypto: Arc<dyn crate::ports::Crypto>,
    /// Messages between instances that share sessions; none when this instance serves its
    /// sessions alone.
    pub bus: Option<Arc<dyn crate::ports::Bus>>,
    /// Upstream answers kept for reuse (resource reads).
    pub cache: Arc<dyn crate::ports::Cache>,
    /// Where metrics and spans go; none records nothing.
    pub recorder: Option<Arc<dyn crate::observe::Recorder>>,
}

/// The services of one gateway, composed.
struct Services {
    config: GatewayConfig,
    telemetry: Telemetry,
    ids: Arc<dyn Ids>,
    registry: Arc<Registry>,
    sessions: Arc<Sessions>,
    security: Security,
    fed: Arc<Federation>,
    engine: Arc<Engine>,
    face: Arc<Face>,
    admin: Admin,
    ui: crate::ui::Ui,
    /// A caller's own pages and API for upstreams acting for each caller.
    accounts: account::Accounts,
    /// `trusted_proxies`: whose forwarded headers are believed.
    proxies: crate::netguard::Networks,
    /// Gateways found by mDNS, where the runtime looks (`Gateway::set_discovery`).
    discovery: std::sync::OnceLock<Arc<dyn crate::ports::Discovery>>,
}

/// What an answer's bookkeeping needs of its request.
struct Head {
    class: &'static str,
    span_name: Option<String>,
    failed: Option<(Method, String)>,
}

/// The gateway. Cheap to clone; every clone serves the same state.
#[derive(Clone)]
pub struct Gateway {
    s: Arc<Services>,
}

impl Services {
    /// What another instance told about a shared session: acted on if this instance holds what
    /// it concerns (the session's stream, the call waiting for an answer, links), else ignored.
    async fn heard(&self, note: Note) {
        match note {
            Note::Stream { sid, id, data } => {
                self.sessions.deliver_here(&sid, id, data);
            }
            Note::Answer { sid, id, outcome } => {
                let Some(id) = RequestId::of(&id) else { return };
                let outcome = outcome.map_err(|e| {
                    serde_json::from_value(e)
                        .unwrap_or_else(|_| RpcError::internal("the client's error did not survive the bus"))
                });
                self.fed.answer_upstream(&sid, &id, outcome).await;
            }
            Note::Notify { sid, method, params } => {
                self.engine.notification_here(&sid, &method, params.as_ref()).await;
            }
            Note::End { sid } => self.sessions.forget(&sid).await,
        }
    }
}

impl Gateway {
    /// Builds a gateway; fails if the configuration is invalid.
    // On wasm the ports are !Send (one isolate, one thread); Arc, as native shares the code.
    #[cfg_attr(target_family = "wasm", allow(clippy::arc_with_non_send_sync))]
    pub fn new(config: GatewayConfig, ports: Ports, info: ServerInfo) -> Result<Self, ConfigError> {
        config.validate()?;
        let telemetry = Telemetry::new(ports.recorder.clone(), ports.clock.clone(), ports.ids.clone());
        let key_text = config.encryption_key.as_ref().map(|k| k.0.as_str());
        let store = crate::registry::seal::sealed_store(key_text, ports.store, ports.ids.clone(), ports.crypto.clone())
            .map_err(|e| ConfigError::new("encryption_key", e.to_string()))?;
        let net_policy = crate::netguard::NetPolicy::parse(&config.ssrf_allow).unwrap_or_default();
        // Every request the gateway sends passes the SSRF policy, whoever made its URL.
        let http: Arc<dyn HttpClient> = Arc::new(crate::netguard::Guarded::new(ports.http, net_policy.clone()));
        let registry = Arc::new(
            Registry::new(store, ports.clock.clone(), ports.ids.clone(), config.registry_cache_ms)
                .with_separator(&config.name_separator)
                .with_net_policy(net_policy.clone())
                .with_sealed_credentials(config.encryption_key.is_some())
                .with_gateway_id(&crate::registry::seal::gateway_id(
                    &config.instance,
                    key_text.or(config.deployment_key.as_ref().map(|k| k.0.as_str())),
                    ports.ids.as_ref(),
                )),
        );
        let sessions = Arc::new(Sessions::new(
            ports.sessions,
            ports.events,
            registry.clone(),
            ports.clock.clone(),
            ports.ids.clone(),
            Limits {
                ttl_ms: config.session_ttl_secs.saturating_mul(1000),
                max_sessions: config.max_sessions,
                per_client: config.max_sessions_per_client,
                stream_queue: config.max_stream_queue,
            },
            crate::session::peers::Peers::new(ports.bus, ports.ids.new_id().chars().take(8).collect()),
        ));
        let security = Security::new(
            config.auth.clone(),
            config.rate_limits,
            OriginPolicy {
                allowed_hosts: config.allowed_hosts.clone(),
                allowed_origins: config.allowed_origins.clone(),
                loopback: config.is_loopback(),
            },
            info.name.clone(),
            SecurityPorts {
                limiter: ports.limiter,
                clock: ports.clock.clone(),
                http: http.clone(),
                registry: registry.clone(),
                crypto: ports.crypto.clone(),
                cache: ports.cache.clone(),
                telemetry: telemetry.clone(),
            },
        );
        // The key for a purpose, derived from the encryption key, else the deployment's, else a
        // random one (what only this process opens again).
        use crate::oauth::{exchange::Exchanges, grants::ClientTokens};
        use crate::registry::seal::{Purpose, Sealer};
        let key = |purpose: Purpose| {
            let configured = config.encryption_key.as_ref().or(config.deployment_key.as_ref());
            configured
                .and_then(|k| Sealer::from_key_text(&k.0, purpose, ports.crypto.clone()).ok())
                .unwrap_or_else(|| Sealer::random(purpose, ports.ids.as_ref(), ports.crypto.clone()))
        };
        // Callers' tokens for upstreams acting for each of them, sealed with a key of their own.
        let vault = Arc::new(crate::oauth::vault::Vault::new(
            registry.store().clone(),
            key(Purpose::Vault),
            ports.clock.clone(),
            ports.ids.clone(),
            ports.crypto.clone(),
            config.registry_cache_ms,
        ));
        let net = Net {
            http: http.clone(),
            clock: ports.clock.clone(),
            spawner: ports.spawner.clone(),
            launcher: ports.launcher,
            max_bytes: config.max_upstream_response_bytes,
            linger_ms: config.standalone_linger_ms,
            telemetry: telemetry.clone(),
            max_queue: config.max_stream_queue,
            grants: Arc::new(ClientTokens::new(ports.crypto.clone(), ports.ids.clone())),
            vault: vault.clone(),
            exchanges: Arc::new(Exchanges::new(ports.crypto.clone(), ports.ids.clone())),
        };
        let fed = Federation::new(
            registry.clone(),
            sessions.clone(),
            net,
            federation::Settings {
                tool_timeout_ms: config.tool_timeout_ms,
                call_max_ms: config.call_max_ms,
                unhealthy_after: config.unhealthy_after,
                health_check_secs: config.health_check_secs,
                upstream_refresh_secs: config.upstream_refresh_secs,
            },
            federation::answers::ResourceCache::new(
                ports.cache,
                federation::answers::CacheTimes {
                    plain_ms: config.resource_cache_ms,
                    max_ms: config.resource_cache_max_ms,
                },
            ),
        );
        // A session that ends closes its upstream sessions.
        let weak = Arc::downgrade(&fed);
        sessions.on_end(Box::new(move |sid| {
            if let Some(f) = weak.upgrade() {
                f.drop_links(sid);
            }
        }));
        let rest = Rest {
            http,
            clock: ports.clock.clone(),
            net: net_policy,
            max_bytes: config.max_tool_response_bytes,
            timeout_ms: config.tool_timeout_ms,
        };
        let settings = EngineSettings {
            page_size: config.page_size,
            cache_ttl_ms: config.cache_ttl_ms,
            listen_poll_ms: config.listen_poll_ms.max(50),
        };
        let info_version = info.version.clone();
        // Parking a call needs the retry to reach the call's I/O: not in a Worker isolate.
        let mrtr = ports.spawner.waits_across_requests().then(|| {
            let ttl_ms = config.call_max_ms;
            Mrtr::new(
                key(Purpose::RequestState),
                ports.clock.clone(),
                ports.ids.clone(),
                ports.spawner.clone(),
                ttl_ms,
            )
        });
        let envelope = Arc::new(Envelope::new(
            key(Purpose::Envelope),
            ports.clock.clone(),
            ports.ids.clone(),
            config.call_max_ms,
        ));
        let engine = Arc::new(
            Engine::new(
                info,
                settings,
                registry.clone(),
                sessions.clone(),
                fed.clone(),
                rest,
                ports.clock.clone(),
            )
            .with_parts(mrtr, envelope, telemetry.clone()),
        );
        let ui = crate::ui::Ui::new(
            key(Purpose::AdminCookie),
            ports.clock.clone(),
            ports.ids.clone(),
            config.auth.required,
            info_version,
        );
        let accounts = account::Accounts::new(
            key(Purpose::AdminCookie),
            ports.clock.clone(),
            ports.ids.clone(),
            config.auth.required,
        );
        let hearing = sessions.peers().hear();
        let spawner = ports.spawner.clone();
        let face = Arc::new(Face::new(
            engine.clone(),
            sessions.clone(),
            ports.spawner,
            config.max_batch,
            config.auth.admin_scope.clone(),
            config.call_max_ms,
        ));
        let admin = Admin::new(registry.clone(), fed.clone(), sessions.clone(), config.allow_stdio_api);
        let proxies = crate::netguard::Networks::parse(&config.trusted_proxies).unwrap_or_default();
        let gw = Self {
            s: Arc::new(Services {
                config,
                telemetry,
                ids: ports.ids.clone(),
                registry,
                sessions,
                security,
                fed,
                engine,
                face,
                admin,
                ui,
                accounts,
                proxies,
                discovery: std::sync::OnceLock::new(),
            }),
        };
        // What the other instances tell about shared sessions, for as long as the gateway lives.
        if let Some(mut notes) = hearing {
            let weak = Arc::downgrade(&gw.s);
            spawner.spawn(Box::pin(async move {
                use futures::StreamExt;
                while let Some(note) = notes.next().await {
                    let Some(s) = weak.upgrade() else { break };
                    s.heard(note).await;
                }
            }));
        }
        Ok(gw)
    }

    /// The registry service (seeding, direct CRUD).
    pub fn registry(&self) -> &Registry {
        &self.s.registry
    }

    /// The settings in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.s.config
    }

    /// `MCPGW_PUBLIC_URL`: where links point from a transport with no web address (stdio).
    pub fn public_url(&self) -> Option<&str> {
        self.s.security.config().public_url.as_deref()
    }

    /// Ends every open SSE stream and refuses new ones; in-flight requests still finish.
    pub fn shutdown(&self) {
        self.s.sessions.hub().shutdown();
    }

    /// Closes every upstream session and stops every stdio upstream process (after shutdown).
    pub fn close_upstreams(&self) {
        self.s.fed.close_all_links();
    }

    /// Runs the upstream health checks and catalog refreshes that are due (call periodically);
    /// `force` checks and refreshes every upstream now. Returns how many are healthy.
    pub async fn check_upstreams(&self, force: bool) -> usize {
        self.s.fed.check_upstreams(force).await
    }

    /// What this gateway knows of an upstream's health.
    pub fn upstream_health(&self, id: &str) -> Option<Health> {
        self.s.fed.health_of(id)
    }

    /// True once [`Gateway::shutdown`] has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.s.sessions.hub().is_closed()
    }

    /// Upstream resource reads answered from the cache, and looked for there in vain.
    pub fn resource_cache_counts(&self) -> (u64, u64) {
        self.s.fed.answers().counts()
    }

    /// Where `GET /peers/discovered` looks (a runtime that browses mDNS); set once.
    pub fn set_discovery(&self, discovery: Arc<dyn crate::ports::Discovery>) {
        let _ = self.s.discovery.set(discovery);
    }

    /// Number of open SSE streams (standalone and legacy).
    pub fn open_streams(&self) -> usize {
        self.s.sessions.hub().open_streams()
    }

    /// Reloads the registry and sends `list_changed` for lists changed since (by anyone: call it
    /// periodically). Returns how many notifications each open stream got.
    pub async fn refresh_registry(&self) -> usize {
        self.s.sessions.refresh_registry().await
    }

    /// Sends an SSE keep-alive comment on every open stream (call every ~15 s, so that clients
    /// and proxies with read timeouts keep idle streams); returns how many are open.
    pub fn keepalive(&self) -> usize {
        self.s.sessions.hub().keepalive()
    }

    /// Where `req` is to be served (see [`crate::face::Placement`]): with its session, where a
    /// new session lives, at its park (a stateless request that may park a call waiting for its
    /// client's input, or listen to an upstream for as long as its stream is open, goes to one
    /// place per park, named by [`crate::Park::At`] for a retry), or here.
    pub async fn placement(&self, req: &Request<Bytes>) -> crate::face::Placement {
        use crate::face::Placement;
        if let Some(p) = crate::face::session_placement(req) {
            return p;
        }
        // Only a request naming a capability that can be asked for, or a state, may park; and
        // a listen stream.
        let listen = crate::proto::method::Method::SubscriptionsListen.name();
        let words = ["requestState", "sampling", "elicitation", "roots", listen];
        let park = async {
            let r = crate::face::stateless::stateless_request(req, &words)?;
            let snap = self.s.registry.snapshot().await.ok()?;
            let server = match Route::parse(req.uri().path()) {
                Route::Mcp { server: Some(id) } => Some(snap.server(&id)?.clone()),
                _ => None,
            };
            crate::engine::park_of(&r, &snap, server.as_deref())
        };
        match park.await {
            Some(park) => Placement::Park(park),
            None => Placement::Here,
        }
    }

    /// Park ids this gateway hands out start with `route` (so retries find their way back).
    pub fn park_under(&self, route: &str) {
        if let Some(m) = self.s.engine.mrtr() {
            m.route_under(route);
        }
    }

    /// Expires idle sessions; returns how many.
    pub async fn expire_sessions(&self) -> usize {
        self.s.sessions.expire().await
    }

    /// When the next session of this gateway expires unless a request touches it first (ms
    /// since the epoch); none without sessions. A runtime that sleeps between requests wakes
    /// then (the edge: one Durable Object alarm).
    pub async fn next_expiry(&self) -> Option<u64> {
        self.s.sessions.next_expiry().await
    }

    /// The response for a body over `max_body_bytes` (adapters stop reading and answer this).
    pub fn payload_too_large(&self, path: &str) -> Response<Body> {
        self.refuse(path, &Unread::TooLarge(self.s.config.max_body_bytes))
    }

    /// The answer to a request an adapter did not hand on, in the style of the route `path`
    /// names (a JSON-RPC error on MCP routes, the REST API's error object elsewhere).
    pub fn refuse(&self, path: &str, why: &Unread) -> Response<Body> {
        failure(why, Route::parse(path).error_style(), None)
    }

    /// The id and trace of a request with these headers (its `X-Request-Id` if it sent a safe
    /// one, its `traceparent` continued): an adapter that logs under them sets the result in
    /// the request's extensions before [`Gateway::handle`], which otherwise makes its own.
    pub fn request_ctx(&self, headers: &http::HeaderMap) -> RequestCtx {
        RequestCtx::of(headers, &*self.s.ids)
    }

    /// Every metric in the Prometheus text format; none when this gateway records nothing to
    /// read back (no recorder, or the edge's).
    pub async fn metrics_text(&self) -> Option<String> {
        let t = &self.s.telemetry;
        if !t.on() {
            return None;
        }
        t.render(&self.samples().await)
    }

    /// What the metrics read at scrape time: sessions, streams, registry size, upstream health,
    /// cache lookups, the version.
    async fn samples(&self) -> Vec<Sample> {
        let s = &self.s;
        let sample = |metric: &'static m::Metric, labels: &[&str], value: f64| Sample {
            metric,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            value,
        };
        let info = s.engine.info();
        let mut out = vec![
            sample(&m::SESSIONS, &[], s.sessions.count().await as f64),
            sample(&m::STREAMS, &[], self.open_streams() as f64),
            sample(&m::INFO, &[&info.version, &s.config.instance], 1.0),
        ];
        let (hits, misses) = self.resource_cache_counts();
        out.push(sample(&m::RESOURCE_CACHE, &["hit"], hits as f64));
        out.push(sample(&m::RESOURCE_CACHE, &["miss"], misses as f64));
        if let Ok(snap) = s.registry.snapshot().await {
            let split = |fed: &mut dyn Iterator<Item = bool>| {
                fed.fold((0usize, 0usize), |(l, f), is| if is { (l, f + 1) } else { (l + 1, f) })
            };
            let kinds: [(&str, (usize, usize)); 4] = [
                ("tool", split(&mut snap.tools.iter().map(|t| t.fed.is_some()))),
                (
                    "resource",
                    split(&mut snap.resources.iter().chain(&snap.templates).map(|r| r.fed.is_some())),
                ),
                ("prompt", split(&mut snap.prompts.iter().map(|p| p.fed.is_some()))),
                ("server", (snap.servers.len(), 0)),
            ];
            for (kind, (local, federated)) in kinds {
                out.push(sample(&m::REGISTRY_ENTRIES, &[kind, "local"], local as f64));
                out.push(sample(&m::REGISTRY_ENTRIES, &[kind, "federated"], federated as f64));
            }
            out.push(sample(
                &m::REGISTRY_ENTRIES,
                &["upstream", "local"],
                snap.upstreams.len() as f64,
            ));
            for up in &snap.upstreams {
                if let Some(h) = self.upstream_health(&up.id) {
                    let name = up.def.name.as_str();
                    out.push(sample(&m::UPSTREAM_UP, &[name], if h.healthy { 1.0 } else { 0.0 }));
                    out.push(sample(&m::UPSTREAM_FAILURES, &[name], h.failures as f64));
                }
            }
        }
        out
    }

    /// Handles one HTTP request: every answer carries the request's id (`X-Request-Id`), and is
    /// counted and timed by route class and status.
    pub async fn handle(&self, mut req: Request<Bytes>) -> Response<Body> {
        let started = self.s.telemetry.now_us();
        let ctx = self.ctx_of(&mut req);
        let (route, head) = self.head_of(&req);
        let resp = self.answer(req, route).await;
        self.finish(resp, head, ctx, started)
    }

    /// What is decided before a request's body is read, for an adapter that reads bodies
    /// itself: Host and Origin (403), a CORS preflight, admission (401, 403, 429). `Err`: the
    /// whole answer (counted, with its request id, as [`Gateway::handle`]'s), the body unread;
    /// `Ok`: the head, its verdict in its extensions, to be given its body and handled.
    pub async fn admit_head(&self, mut head: Request<Bytes>) -> Result<Request<Bytes>, Response<Body>> {
        let started = self.s.telemetry.now_us();
        let ctx = self.ctx_of(&mut head);
        match self.precheck(&mut head).await {
            None => Ok(head),
            Some(resp) => {
                let (_, info) = self.head_of(&head);
                Err(self.finish(resp, info, ctx, started))
            }
        }
    }

    /// The request's context (its id, its trace), made once.
    fn ctx_of(&self, req: &mut Request<Bytes>) -> RequestCtx {
        self.trust_forwarded(req);
        if let Some(c) = req.extensions().get::<RequestCtx>() {
            return c.clone();
        }
        let c = self.request_ctx(req.headers());
        req.extensions_mut().insert(c.clone());
        c
    }

    /// The route, and what [`Gateway::finish`] needs of the request.
    fn head_of(&self, req: &Request<Bytes>) -> (Route, Head) {
        let route = Route::parse(req.uri().path());
        let t = &self.s.telemetry;
        let head = Head {
            class: route.class(),
            span_name: t.traces().then(|| format!("{} {}", req.method(), req.uri().path())),
            failed: (!matches!(route, Route::Admin { .. }))
                .then(|| (req.method().clone(), req.uri().path().to_string())),
        };
        (route, head)
    }

    /// An answer with the request's id, counted, timed and traced.
    fn finish(&self, mut resp: Response<Body>, head: Head, ctx: RequestCtx, started: u64) -> Response<Body> {
        let t = &self.s.telemetry;
        if let Some((method, path)) = head.failed.filter(|_| resp.status().as_u16() >= 400) {
            self.s.ui.note_failure(&method, &path, resp.status(), &ctx.request_id);
        }
        if let Ok(v) = http::HeaderValue::from_str(&ctx.request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        if t.on() {
            t.count(&m::HTTP_REQUESTS, &[head.class, resp.status().as_str()]);
            t.elapsed(&m::HTTP_DURATION, &[head.class], started);
        }
        if let Some(name) = head.span_name {
            t.server_span(ctx, name, head.class, started, resp.status().as_u16());
        }
        resp
    }

    /// Host and Origin, a CORS preflight and admission, in that order: an answer when one of
    /// them settles the request, else none (the verdict in the extensions). Needs no body.
    async fn precheck(&self, req: &mut Request<Bytes>) -> Option<Response<Body>> {
        let route = Route::parse(req.uri().path());
        if matches!(route, Route::Ws { .. }) {
            crate::ws::token_from_query(req);
        }
        if let Err(refused) = self.s.security.check_origin(req) {
            return Some(failure(&refused, route.error_style(), None));
        }
        let origin = req.headers().get("origin").cloned();
        if req.method() == Method::OPTIONS && req.headers().contains_key("access-control-request-method") {
            return Some(with_cors(preflight(), origin));
        }
        // Admitted already: by the adapter before the body was read, or by the Worker.
        if req.extensions().get::<Admitted>().is_some() {
            return None;
        }
        match self.admit(req).await {
            Ok(a) => {
                req.extensions_mut().insert(a);
                None
            }
            Err(r) => Some(*r),
        }
    }

    /// The answer to a request, before the headers every answer gets.
    async fn answer(&self, mut req: Request<Bytes>, route: Route) -> Response<Body> {
        let path = req.uri().path().to_string();
        if let Some(settled) = self.precheck(&mut req).await {
            return settled;
        }
        // The Origin (if any) passed the check: browsers from it may read the answer.
        let origin = req.headers().get("origin").cloned();
        let Some(mut admitted) = req.extensions_mut().remove::<Admitted>() else {
            return api_failure(&Unserved::NotAdmitted);
        };
        let extra = std::mem::take(&mut admitted.headers);
        req.extensions_mut().insert(admitted);
        let mut resp = self.route(req, route, path).await;
        add_headers(&mut resp, &extra);
        with_cors(resp, origin)
    }

    /// Keeps a request's `X-Forwarded-*` headers only when it came through a trusted proxy (then
    /// its `ClientIp` becomes the client's); removes them otherwise. [`Gateway::handle`] does it
    /// first; an adapter that admits a request before handing it on calls it before.
    pub fn trust_forwarded(&self, req: &mut Request<Bytes>) {
        crate::security::origin::trust_forwarded(req, &self.s.proxies);
    }

    /// Lets a request in or answers it (401, 403, 429): what [`Gateway::handle`] does before
    /// routing, for an adapter that routes the request elsewhere first (the edge Worker hands a
    /// session's requests to its Durable Object with the [`Admitted`] result in the extensions).
    pub async fn admit(&self, req: &Request<Bytes>) -> Result<Admitted, Box<Response<Body>>> {
        let route = Route::parse(req.uri().path());
        let origin = req.headers().get("origin").cloned();
        self.s
            .security
            .admit(req, route.access())
            .await
            .map_err(|r| Box::new(with_cors(failure(&r, route.error_style(), None), origin)))
    }

    /// The virtual server `id` names, if it exists and the caller holds its scope.
    async fn virtual_server(&self, req: &Request<Bytes>, id: &str) -> Result<Arc<Server>, Box<Response<Body>>> {
        let snapshot = self
            .s
            .registry
            .snapshot_having(|s| s.server(id).is_some())
            .await
            .map_err(|e| Box::new(rpc_failure(&Unserved::Storage(e.to_string()), None)))?;
        let Some(server) = snapshot.server(id).cloned() else {
            return Err(Box::new(rpc_failure(&Unserved::NoServer(id.to_string()), None)));
        };
        if let Some(scope) = server.def.scope.as_deref() {
            let security = &self.s.security;
            if !Caller::of(req, security.admin_scope()).may(Some(scope)) {
                let e = crate::security::auth::AuthError::InsufficientScope(scope.to_string());
                return Err(Box::new(rpc_failure(&security.refusal(req, Access::Client, e), None)));
            }
        }
        Ok(server)
    }

    /// Routes a request whose Host and Origin passed.
    async fn route(&self, req: Request<Bytes>, route: Route, path: String) -> Response<Body> {
        let s = &self.s;
        if req.body().len() > s.config.max_body_bytes {
            return self.payload_too_large(&path);
        }
        let operations = matches!(
            route,
            Route::Health | Route::Ready | Route::Version | Route::Metrics | Route::OpenApi
        );
        if operations && req.method() != Method::GET && req.method() != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        let face = &s.face;
        match route {
            Route::Mcp { server: None } => face::streamable(face, req, None).await,
            Route::Sse { server: None } => face::legacy_sse(face, req, None, String::new()).await,
            Route::Message { server: None } => face::legacy_message(face, req, None).await,
            Route::Mcp { server: Some(id) } => match self.virtual_server(&req, &id).await {
                Ok(server) => face::streamable(face, req, Some(server)).await,
                Err(r) => *r,
            },
            Route::Sse { server: Some(id) } => match self.virtual_server(&req, &id).await {
                Ok(server) => face::legacy_sse(face, req, Some(server), format!("/servers/{id}")).await,
                Err(r) => *r,
            },
            Route::Message { server: Some(id) } => match self.virtual_server(&req, &id).await {
                Ok(server) => face::legacy_message(face, req, Some(server)).await,
                Err(r) => *r,
            },
            Route::Ws { server: None } => crate::ws::upgrade(&req, "/mcp".into(), s.config.max_body_bytes),
            Route::Ws { server: Some(id) } => match self.virtual_server(&req, &id).await {
                Ok(_) => crate::ws::upgrade(&req, format!("/servers/{id}/mcp"), s.config.max_body_bytes),
                Err(r) => *r,
            },
            Route::Rpc => face::rpc(face, req).await,
            Route::ResourceMetadata { resource } => s.security.resource_metadata(&req, &resource),
            Route::ClientMetadata => account::client_metadata(req.method(), s.security.config().public_url.as_deref()),
            Route::Revocations { jti } => s.admin.collection(req, Kind::Revocation, jti.as_deref()).await,
            Route::Refresh { id } => s.admin.refresh(&req, &id).await,
            Route::Health => json_response(StatusCode::OK, &json!({"status": "ok"})),
            Route::Ready => match s.registry.store().ping().await {
                Ok(()) => json_response(StatusCode::OK, &json!({"status": "ready"})),
                Err(e) => api_failure(&Unserved::NotReady(e.to_string())),
            },
            Route::Version => {
                let info = s.engine.info();
                let mut v =
                    json!({"name": info.name, "version": info.version, "protocol_versions": ProtocolVersion::SERVED});
                if !s.config.instance.is_empty() {
                    v["instance"] = json!(s.config.instance);
                }
                json_response(StatusCode::OK, &v)
            }
            Route::OpenApi => {
                let mut r = Response::new(Body::Full(Bytes::from_static(crate::http::OPENAPI.as_bytes())));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                r
            }
            Route::Metrics => match self.metrics_text().await {
                Some(text) => {
                    let mut r = Response::new(Body::Full(Bytes::from(text)));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    r
                }
                None => api_failure(&Unserved::NoMetrics),
            },
            Route::Collection { kind, id } => s.admin.collection(req, kind, id.as_deref()).await,
            Route::Discovered if req.method() != Method::GET => method_not_allowed("GET"),
            Route::Discovered => match s.discovery.get() {
                Some(d) => json_response(StatusCode::OK, &serde_json::Value::Array(d.discovered())),
                None => api_failure(&Unserved::NoDiscovery),
            },
            Route::Admin { rest } => s.ui.serve(self, req, &rest).await,
            Route::Account { path } => s.accounts.serve(s, req, &path).await,
            Route::Connections { upstream } => s.accounts.api(s, req, upstream.as_deref()).await,
            Route::NotFound { .. } => api_failure(&Unserved::NoRoute(path)),
        }
    }
}

/// What the admin UI asks of its gateway.
impl crate::ui::Host for Gateway {
    fn call(&self, req: Request<Bytes>) -> crate::platform::BoxFuture<'_, Response<Body>> {
        crate::platform::boxed(async move {
            let path = req.uri().path().to_string();
            self.route(req, Route::parse(&path), path).await
        })
    }

    fn login(&self, req: Request<Bytes>) -> crate::platform::BoxFuture<'_, Result<Admitted, Refusal>> {
        crate::platform::boxed(async move { self.s.security.admit(&req, Access::Admin).await })
    }

    fn revoked(&self, jti: String) -> crate::platform::BoxFuture<'_, bool> {
        crate::platform::boxed(async move {
            let snap = self.s.registry.snapshot().await;
            snap.is_ok_and(|s| s.is_revoked(&jti))
        })
    }

    fn sessions(&self) -> crate::platform::BoxFuture<'_, usize> {
        crate::platform::boxed(async move { self.s.sessions.count().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AssignSessionId;
    use http::{header, HeaderValue};
    use serde_json::{json, Value};

    use crate::fixtures::{memory_ports, ManualClock};
    use crate::proto::headers::MCP_SESSION_ID;
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

    /// One address opening sessions without end gives up its own oldest; another client's
    /// session is untouched, and the gateway never fills up.
    #[test]
    fn one_client_cannot_fill_the_gateway_with_sessions() {
        block_on(async {
            let clock = Arc::new(ManualClock::at(1_000_000));
            let config = GatewayConfig {
                max_sessions: 4,
                max_sessions_per_client: 2,
                ..GatewayConfig::default()
            };
            let gw = gateway_with(clock.clone(), config);
            let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#;
            let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
            let from = |ip: &str, body: &str, sid: Option<&str>| {
                let mut r = post(body, sid);
                r.extensions_mut().insert(crate::ClientIp(ip.into()));
                r
            };
            let open = |ip: &'static str| {
                let gw = gw.clone();
                async move {
                    let r = gw.handle(from(ip, init, None)).await;
                    assert_eq!(r.status(), StatusCode::OK, "{ip}");
                    r.headers()[MCP_SESSION_ID].to_str().unwrap().to_string()
                }
            };
            let other = open("10.0.0.2").await;
            let mut mine = vec![];
            for _ in 0..20 {
                clock.advance(Duration::from_secs(2));
                mine.push(open("10.0.0.1").await);
            }
            let status = |sid: String| {
                let gw = gw.clone();
                async move { gw.handle(from("10.0.0.1", ping, Some(&sid))).await.status() }
            };
            assert_eq!(status(other).await, StatusCode::OK, "the other client's session stays");
            assert_eq!(status(mine[19].clone()).await, StatusCode::OK);
            assert_eq!(status(mine[18].clone()).await, StatusCode::OK);
            assert_eq!(
                status(mine[17].clone()).await,
                StatusCode::NOT_FOUND,
                "gave up its oldest"
            );
            assert!(gw.s.sessions.count().await <= 3);
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
            let auth =
                crate::security::auth::AuthConfig::from_vars(|n| (n == "MCPGW_JWT_SECRET").then(|| secret.to_string()))
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
                let token =
                    crate::security::mint(&auth, "u", &["mcpgw:client".into(), scope.into()], 60, "j", 1_000_000)
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
}
