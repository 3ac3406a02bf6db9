//! The engine: what an MCP request means once a transport has delivered it, the same for every
//! face (streamable HTTP, legacy SSE, `/rpc`). [`Engine::respond`] answers one request as a
//! stream of [`Event`]s: whatever must reach the client while it runs (progress, log messages,
//! an upstream's requests), then the response. Local members are answered from the registry's
//! snapshot; federated ones are forwarded; REST tools are called.
//!
//! Lives here: method semantics, visibility by scope, the `initialize` result. Not here: HTTP,
//! SSE framing, session storage, upstream sessions.

mod calls;
mod ctx;
mod envelope;
mod mrtr;
mod outcome;
mod peer;
mod stateless;

use std::sync::Arc;

use futures::{stream, StreamExt};
use serde_json::{json, Map, Value};

use crate::federation::{Federation, Relayed};
use crate::model::{PromptContentDef, Role};
use crate::observe::Telemetry;
use crate::platform::{boxed_stream, BoxStream};
use crate::ports::{Clock, SessionState};
use crate::proto::cursor;
use crate::proto::jsonrpc::{self, Json, Request, RequestId, RpcError};
use crate::proto::logging::LogLevel;
use crate::proto::method::{Kind, Method};
use crate::proto::params;
use crate::proto::version::ProtocolVersion;
use crate::registry::{Registry, Resource, Server, Snapshot};
use crate::render;
use crate::session::peers::Note;
use crate::session::Sessions;
use crate::upstream::rest::Rest;

pub(crate) use ctx::CallCtx;
pub(crate) use envelope::Envelope;
pub use mrtr::Park;
pub(crate) use mrtr::{park_of, Mrtr};
use stateless::CacheScope;
pub(crate) use stateless::StatelessRequest;

/// Name and version reported in `serverInfo` and `/version`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Product name.
    pub name: String,
    /// Version.
    pub version: String,
}

/// One item of a request's answer stream.
pub(crate) enum Event {
    /// A JSON-RPC message to the client while the request runs.
    Message(Json),
    /// The response (serialized, with the request's id); always the last item.
    Answer(Json),
    /// Nothing to say: a keep-alive on a long-lived stream.
    KeepAlive,
    /// The work goes on, but its stream may close here: the client is to resume it after
    /// `retry_ms` (SEP-1699), as the upstream asked the gateway to.
    Poll { retry_ms: u64 },
}

/// What a method handler answers: now, or as the stream of a forwarded or REST call.
enum Reply {
    Now(Json),
    Relay(BoxStream<'static, Relayed>),
}

impl From<Json> for Reply {
    fn from(j: Json) -> Self {
        Reply::Now(j)
    }
}

/// What the engine reads of the gateway's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineSettings {
    /// Items per page of a list.
    pub page_size: usize,
    /// The `ttlMs` of cacheable stateless results.
    pub cache_ttl_ms: u64,
    /// How often a listen stream checks the registry for changes.
    pub listen_poll_ms: u64,
}

/// The engine of one gateway.
pub(crate) struct Engine {
    info: ServerInfo,
    page_size: usize,
    cache_ttl_ms: u64,
    listen_poll_ms: u64,
    registry: Arc<Registry>,
    sessions: Arc<Sessions>,
    fed: Arc<Federation>,
    rest: Arc<Rest>,
    clock: Arc<dyn Clock>,
    /// Parked calls of stateless clients to session-era upstreams (none where a request may
    /// not wait on another's I/O: then an upstream's requests during such a call are refused).
    mrtr: Option<Arc<Mrtr>>,
    /// Seals 2026-07-28 upstreams' own `requestState` for their clients.
    envelope: Option<Arc<Envelope>>,
    /// When a lookup miss last forced a registry re-read (ms since the epoch).
    /// Requests and tool calls are counted here.
    telemetry: Telemetry,
}

fn params_obj(req: &Request) -> Result<Map<String, Value>, RpcError> {
    match &req.params {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(RpcError::invalid_params(format!(
            "{}: params must be an object",
            req.method
        ))),
    }
}

impl Engine {
    /// The engine over these services.
    #[cfg_attr(target_family = "wasm", allow(clippy::arc_with_non_send_sync))]
    pub fn new(
        info: ServerInfo,
        settings: EngineSettings,
        registry: Arc<Registry>,
        sessions: Arc<Sessions>,
        fed: Arc<Federation>,
        rest: Rest,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            info,
            page_size: settings.page_size,
            cache_ttl_ms: settings.cache_ttl_ms,
            listen_poll_ms: settings.listen_poll_ms,
            registry,
            sessions,
            fed,
            rest: Arc::new(rest),
            clock: clock.clone(),
            mrtr: None,
            envelope: None,
            telemetry: Telemetry::off(clock.clone()),
        }
    }

    /// The parking of stateless calls, where there is any.
    pub fn mrtr(&self) -> Option<&Arc<Mrtr>> {
        self.mrtr.as_ref()
    }

    /// Parks stateless calls whose session-era upstream asks for input (see [`Mrtr`]), and
    /// counts requests and tool calls in `telemetry`.
    pub fn with_parts(mut self, mrtr: Option<Arc<Mrtr>>, envelope: Arc<Envelope>, telemetry: Telemetry) -> Self {
        self.mrtr = mrtr;
        self.envelope = Some(envelope);
        self.telemetry = telemetry;
        self
    }

    /// Counts and times a request answered outside [`Engine::respond`] (a sessionless
    /// `initialize`) when called with the outcome; none when metrics are off.
    pub fn counter(&self, transport: &'static str, req: &Request) -> Option<impl Fn(&'static str)> {
        outcome::counter(&self.telemetry, transport, req)
    }

    /// Name and version.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// The server's capabilities, the same for every endpoint.
    pub(crate) fn capabilities(&self) -> Value {
        json!({
            "tools": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true},
            "prompts": {"listChanged": true},
            "logging": {},
            "completions": {}
        })
    }

    /// The `serverInfo` an endpoint reports: a virtual server's under its own name.
    fn server_info(&self, scope: Option<&Arc<Server>>) -> Value {
        let mut info = json!({"name": self.info.name, "version": self.info.version});
        if let Some(s) = scope {
            info["name"] = json!(format!("{}/{}", self.info.name, s.def.name));
            if let Some(t) = &s.def.title {
                info["title"] = json!(t);
            }
        }
        info
    }

    /// Validates `initialize` params and builds the result; returns the negotiated version too.
    pub(crate) fn initialize_result(
        &self,
        req: &Request,
        scope: Option<&Arc<Server>>,
    ) -> Result<(ProtocolVersion, Value, params::Initialize), RpcError> {
        let p: params::Initialize = params::parse(&req.method, req.params.as_ref())?;
        let version = ProtocolVersion::negotiate(Some(&p.protocol_version));
        let result = params::InitializeResult {
            protocol_version: version.as_str(),
            capabilities: self.capabilities(),
            server_info: self.server_info(scope),
            instructions: scope.and_then(|s| s.def.description.clone()),
        };
        Ok((version, serde_json::to_value(result).unwrap_or_default(), p))
    }

    /// Answers one request: what must reach the client while it runs, then the response.
    pub fn respond(self: &Arc<Self>, ctx: Arc<CallCtx>, req: Request) -> BoxStream<'static, Event> {
        if ctx.stateless.is_some() && Method::parse(&req.method) == Some(Method::SubscriptionsListen) {
            let listen = stateless::Listen {
                sessions: self.sessions.clone(),
                registry: self.registry.clone(),
                clock: self.clock.clone(),
                every: std::time::Duration::from_millis(self.listen_poll_ms),
                server_info: self.server_info(ctx.scope.as_ref()),
                fed: self.fed.clone(),
                scope: ctx.scope.clone(),
                held: crate::session::hub::Held::of(ctx.caller.identity.as_ref()),
            };
            return listen.stream(&req);
        }
        let me = self.clone();
        let answer = async move {
            let finish = me.finisher(&ctx, &req);
            let respond = outcome::responder(&me.telemetry, ctx.transport, &req, finish);
            // A retry with the state of a parked call resumes it.
            let retry = req.params.as_ref().is_some_and(|p| {
                p.get("requestState")
                    .is_some_and(|s| !s.as_str().is_some_and(Envelope::is_wrapped))
            });
            let resumed = match (&me.mrtr, retry) {
                (Some(m), true) => match me.binding(&ctx, &req) {
                    Some(b) => {
                        let p = req
                            .params
                            .as_ref()
                            .and_then(Value::as_object)
                            .cloned()
                            .unwrap_or_default();
                        Some(m.resume(&b, &p).await)
                    }
                    None => None,
                },
                _ => None,
            };
            let reply = match resumed {
                Some(Ok(mrtr::Step::Resume(items))) => Ok(Reply::Relay(items)),
                Some(Ok(mrtr::Step::Input(j))) => return boxed_stream(stream::iter([respond(Ok(j), true)])),
                Some(Err(e)) => Err(e),
                None => me.call(&ctx, &req).await,
            };
            match reply {
                Ok(Reply::Now(result)) => boxed_stream(stream::iter([respond(Ok(result), false)])),
                Ok(Reply::Relay(items)) => {
                    // A stateless request gets what belongs on its own stream; `/rpc` (no
                    // session) gets nothing but its answer.
                    let level = ctx.stateless.as_ref().map(|m| m.meta.log_level);
                    let quiet = ctx.session.is_none() && level.is_none();
                    // The binding costs a digest of the request: made only if the upstream asks.
                    let (engine, mrtr) = (me.clone(), me.mrtr.clone());
                    let binding = move || engine.binding(&ctx, &req);
                    mrtr::events(items, quiet, level, binding, mrtr, respond)
                }
                Err(e) => boxed_stream(stream::iter([respond(Err(e), false)])),
            }
        };
        boxed_stream(stream::once(answer).flatten())
    }

    /// What binds a stateless request that may be asked for input to the `requestState` it
    /// may present: none for other requests.
    fn binding(&self, ctx: &CallCtx, req: &Request) -> Option<mrtr::Binding> {
        let stateless = ctx.stateless.as_ref()?;
        let method = Method::parse(&req.method)?;
        if !matches!(method, Method::ToolsCall | Method::PromptsGet | Method::ResourcesRead) {
            return None;
        }
        let p = req.params.as_ref().and_then(Value::as_object)?;
        let subject = ctx.caller.identity.as_ref().map_or("", |i| i.subject.as_str());
        let scope = ctx.scope.as_ref().map_or("", |s| s.id.as_str());
        Some(mrtr::Binding::of(
            subject,
            scope,
            &req.method,
            p,
            &stateless.meta.capabilities,
        ))
    }

    /// For a stateless request, what its result gets: `resultType`, cache hints where the
    /// method has them (public unless the handler set its own), and the `serverInfo`.
    #[allow(clippy::type_complexity)]
    fn finisher(&self, ctx: &CallCtx, req: &Request) -> Option<(Vec<(&'static str, String)>, Value)> {
        ctx.stateless.as_ref()?;
        let mut fields = vec![("resultType", "\"complete\"".to_string())];
        if Method::parse(&req.method).is_some_and(stateless::cacheable) {
            fields.extend(stateless::cache_fields(self.cache_ttl_ms, CacheScope::Public));
        }
        Some((fields, self.server_info(ctx.scope.as_ref())))
    }

    /// A notification from the client: cancellations and root changes go on to the upstreams
    /// serving the session; `initialized` needs nothing.
    pub async fn notification(&self, session: Option<&SessionState>, method: &str, params: Option<&Value>) {
        let Some(s) = session else { return };
        if self.notification_here(&s.id, method, params).await {
            // The request cancelled may run at another instance; its links hear of roots too.
            let note = Note::Notify {
                sid: s.id.clone(),
                method: method.to_string(),
                params: params.cloned(),
            };
            self.sessions.peers().tell(note).await;
        }
    }

    /// A client's notification, for what this instance holds of session `sid`; false if the
    /// notification concerns nothing upstream.
    pub async fn notification_here(&self, sid: &str, method: &str, params: Option<&Value>) -> bool {
        match Method::parse(method) {
            Some(Method::Cancelled) => self.fed.cancel_upstream(sid, params).await,
            Some(m @ Method::RootsListChanged) => self.fed.notify_links(sid, m, None, false).await,
            _ => return false,
        }
        true
    }

    /// The client's answer to a request an upstream sent it through the gateway: to the call
    /// here that waits for it, else to the instance whose call does.
    pub async fn client_answer(
        &self,
        session: &SessionState,
        id: Option<&RequestId>,
        outcome: Result<Value, RpcError>,
    ) {
        let Some(id) = id else { return };
        let shared = self.sessions.peers().shared();
        let kept = shared.then(|| outcome.clone());
        if !self.fed.answer_upstream(&session.id, id, outcome).await {
            if let Some(outcome) = kept {
                let note = Note::Answer {
                    sid: session.id.clone(),
                    id: id.to_value(),
                    outcome: outcome.map_err(|e| serde_json::to_value(e).unwrap_or(Value::Null)),
                };
                self.sessions.peers().tell(note).await;
            }
        }
    }

    /// The client opened a stream of its own on session `sid`.
    pub fn stream_opened(&self, sid: &str) {
        self.fed.wake_links(sid);
    }

    async fn snapshot(&self) -> Result<Arc<Snapshot>, RpcError> {
        self.registry
            .snapshot()
            .await
            .map_err(|e| RpcError::internal(e.to_string()))
    }

    /// The snapshot, re-read at once when `has` finds nothing in the cached one (see
    /// [`Registry::snapshot_having`]).
    async fn snapshot_having(&self, has: impl Fn(&Snapshot) -> bool) -> Result<Arc<Snapshot>, RpcError> {
        self.registry
            .snapshot_having(has)
            .await
            .map_err(|e| RpcError::internal(e.to_string()))
    }

    /// Dispatches one request by method.
    async fn call(&self, ctx: &CallCtx, req: &Request) -> Result<Reply, RpcError> {
        let era = ctx.era();
        let known = Method::parse(&req.method).filter(|m| m.info().kind == Kind::Request && m.in_era(era));
        let Some(method) = known else {
            return Err(RpcError::method_not_found(&req.method));
        };
        let result = match method {
            Method::ToolsList => return self.list(ctx, req, "tools").await.map(Reply::from),
            Method::ResourcesList => return self.list(ctx, req, "resources").await.map(Reply::from),
            Method::ResourceTemplatesList => return self.list(ctx, req, "resourceTemplates").await.map(Reply::from),
            Method::PromptsList => return self.list(ctx, req, "prompts").await.map(Reply::from),
            Method::Ping => json!({}),
            Method::Initialize => self.initialize_in_session(ctx, req).await?,
            Method::ToolsCall => return self.tools_call(ctx, req).await,
            Method::ResourcesRead => return self.resources_read(ctx, req).await,
            Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => return self.subscribe(ctx, req, method).await,
            Method::PromptsGet => return self.prompts_get(ctx, req).await,
            Method::CompletionComplete => return self.complete(ctx, req).await,
            Method::LoggingSetLevel => self.set_level(ctx, req).await?,
            Method::ServerDiscover => {
                let (caps, instructions) = match &ctx.scope {
                    Some(s) => stateless::merged(&self.capabilities(), s, &*self.snapshot().await?),
                    None => (self.capabilities(), None),
                };
                let d = stateless::discover(caps, instructions.as_deref(), self.cache_ttl_ms);
                return Ok(Reply::Now(d));
            }
            // Served by `listen` before dispatch.
            Method::SubscriptionsListen | Method::Initialized | Method::Cancelled | Method::RootsListChanged => {
                return Err(RpcError::method_not_found(&req.method))
            }
        };
        Ok(Reply::Now(Json::from_value(&result)))
    }

    async fn initialize_in_session(&self, ctx: &CallCtx, req: &Request) -> Result<Value, RpcError> {
        let (version, result, params) = self.initialize_result(req, ctx.scope.as_ref())?;
        match &ctx.session {
            // Legacy SSE: the session exists from GET /sse; initialize fills it in.
            Some(s) if s.legacy_sse && s.protocol_version.is_none() => {
                let mut s = SessionState::clone(s);
                s.protocol_version = Some(version);
                s.client_capabilities = Value::Object(params.capabilities.unwrap_or_default());
                s.client_info = params.client_info.unwrap_or(Value::Null);
                self.sessions.put(s).await;
                Ok(result)
            }
            Some(_) => Err(RpcError::invalid_request(
                "initialize: this session is already initialized",
            )),
            None => Ok(result),
        }
    }

    /// A page of a list, assembled from the snapshot's pre-rendered entries.
    async fn list(&self, ctx: &CallCtx, req: &Request, what: &'static str) -> Result<Json, RpcError> {
        let p = params_obj(req)?;
        let snap = self.snapshot().await?;
        // A peer gateway reading this one's lists: each entry with its origin.
        let stamped: Option<Vec<String>> = peer::asked(&p).then(|| {
            let own = self.registry.gateway_id();
            ctx.visible(&snap, what)
                .map(|(l, fed, key)| peer::stamp(l, fed, own, key))
                .collect()
        });
        let items: Vec<&str> = match &stamped {
            Some(all) => all.iter().map(String::as_str).collect(),
            None => ctx.visible(&snap, what).map(|(l, _, _)| l).collect(),
        };
        // A stateless answer says whether a shared cache may keep it: not when members are
        // shown by the caller's scopes.
        let private = ctx.stateless.is_some()
            && match what {
                // (or by what the client declared: tools only some clients are listed)
                "tools" => snap
                    .tools
                    .iter()
                    .any(|t| t.def.scope.is_some() || t.fed.as_ref().is_some_and(|f| !f.needs.is_empty())),
                "resources" => snap.resources.iter().any(|r| r.def.scope.is_some()),
                "resourceTemplates" => snap.templates.iter().any(|r| r.def.scope.is_some()),
                _ => snap.prompts.iter().any(|p| p.def.scope.is_some()),
            };
        let (page, next) = cursor::page(what, &items, p.get("cursor"), self.page_size)?;
        let mut out = String::with_capacity(32 + page.iter().map(|e| e.len() + 1).sum::<usize>());
        out.push_str("{\"");
        out.push_str(what);
        out.push_str("\":[");
        out.push_str(&page.join(","));
        out.push(']');
        if let Some(n) = next {
            // Cursors are base64url: no characters that need escaping.
            out.push_str(",\"nextCursor\":\"");
            out.push_str(&n);
            out.push('"');
        }
        if private {
            for (k, v) in stateless::cache_fields(self.cache_ttl_ms, CacheScope::Private) {
                out.push_str(",\"");
                out.push_str(k);
                out.push_str("\":");
                out.push_str(&v);
            }
        }
        out.push('}');
        Ok(Json(out))
    }

    async fn tools_call(&self, ctx: &CallCtx, req: &Request) -> Result<Reply, RpcError> {
        let params::Named { name, arguments } = params::parse(&req.method, req.params.as_ref())?;
        let args = arguments.unwrap_or_default();
        let mut p = params_obj(req)?;
        let snap = self.snapshot_having(|s| ctx.find_tool(s, &name).is_some()).await?;
        let tool = ctx
            .find_tool(&snap, &name)
            .ok_or_else(|| RpcError::invalid_params(format!("Unknown tool: {name}")))?;
        ctx.usable(tool, &name)?;
        // An OpenAPI upstream's tool is a REST call, not a forwarded one.
        let reply = if let Some(f) = tool.fed.as_ref().filter(|_| tool.op.is_none()) {
            p.insert("name".into(), json!(f.name));
            calls::forward(self, ctx, f, req, Method::ToolsCall, p)
        } else {
            calls::call_rest(self, ctx, tool.clone(), args)
        };
        Ok(outcome::count_tool_call(&self.telemetry, tool, reply))
    }

    async fn subscribe(&self, ctx: &CallCtx, req: &Request, subscription: Method) -> Result<Reply, RpcError> {
        let params::Uri { uri } = params::parse(&req.method, req.params.as_ref())?;
        let uri = uri.as_str();
        let p = params_obj(req)?;
        let snap = self.snapshot_having(|s| ctx.find_resource(s, uri).is_some()).await?;
        let found = ctx.find_resource(&snap, uri).ok_or_else(|| {
            RpcError::new(jsonrpc::RESOURCE_NOT_FOUND, "Resource not found").with_data(json!({"uri": uri}))
        })?;
        match (&found.resource.fed, &ctx.session) {
            // The session's link listens from the moment it opened: updates reach the client.
            (Some(f), Some(_)) => {
                let mut p = p.clone();
                p.insert("uri".into(), json!(found.own_uri));
                Ok(calls::forward(self, ctx, f, req, subscription, p))
            }
            (Some(_), None) => Err(RpcError::invalid_request(format!(
                "{}: subscriptions need a session",
                req.method
            ))),
            // Local resources change only through the REST API; nothing to forward.
            (None, _) => Ok(Reply::Now(Json("{}".into()))),
        }
    }

    /// The `contents` entry of a resource at `uri`.
    fn resource_contents(&self, r: &Resource, uri: &str, vars: &Map<String, Value>) -> Result<Value, RpcError> {
        let mut c = Map::new();
        c.insert("uri".into(), json!(uri));
        crate::registry::listing::put_opt(&mut c, "mimeType", &r.def.mime_type);
        match (&r.def.text, &r.def.blob, &r.template) {
            (Some(t), _, Some(_)) => {
                let text = render::render(t, vars)
                    .map_err(|e| RpcError::internal(format!("resource template failed: {e}")))?;
                c.insert("text".into(), json!(text));
            }
            (Some(t), _, None) => {
                c.insert("text".into(), json!(t));
            }
            (None, Some(b), _) => {
                c.insert("blob".into(), json!(b));
            }
            _ => return Err(RpcError::internal("resource has no content")),
        }
        Ok(Value::Object(c))
    }

    async fn resources_read(&self, ctx: &CallCtx, req: &Request) -> Result<Reply, RpcError> {
        let params::Uri { uri } = params::parse(&req.method, req.params.as_ref())?;
        let uri = uri.as_str();
        let p = params_obj(req)?;
        let snap = self.snapshot_having(|s| ctx.find_resource(s, uri).is_some()).await?;
        let found = ctx.find_resource(&snap, uri).ok_or_else(|| {
            RpcError::new(jsonrpc::RESOURCE_NOT_FOUND, "Resource not found").with_data(json!({"uri": uri}))
        })?;
        let r = found.resource;
        let private = ctx.stateless.is_some() && r.def.scope.is_some();
        if let Some(f) = &r.fed {
            let mut p = p.clone();
            p.insert("uri".into(), json!(found.own_uri));
            let reply = calls::read_through(self, ctx, f, req, p).await;
            // Read by its alias: the contents say the alias too.
            let reply = match found.own_uri != uri {
                true => calls::renamed_contents(reply, found.own_uri.clone(), uri.to_string()),
                false => reply,
            };
            return Ok(match reply {
                Reply::Relay(items) if private => {
                    let fields = stateless::cache_fields(self.cache_ttl_ms, CacheScope::Private);
                    Reply::Relay(boxed_stream(items.map(move |item| match item {
                        Relayed::Answer(Ok(j)) => Relayed::Answer(Ok(stateless::with_fields(&j, &fields))),
                        other => other,
                    })))
                }
                other => other,
            });
        }
        let vars = found.vars.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        let mut result = json!({"contents": [self.resource_contents(r, uri, &vars)?]});
        if private {
            result["ttlMs"] = json!(self.cache_ttl_ms);
            result["cacheScope"] = json!("private");
        }
        Ok(Reply::Now(Json::from_value(&result)))
    }

    async fn prompts_get(&self, ctx: &CallCtx, req: &Request) -> Result<Reply, RpcError> {
        let params::Named { name, arguments } = params::parse(&req.method, req.params.as_ref())?;
        let mut p = params_obj(req)?;
        let snap = self.snapshot_having(|s| ctx.find_prompt(s, &name).is_some()).await?;
        let found = ctx
            .find_prompt(&snap, &name)
            .ok_or_else(|| RpcError::invalid_params(format!("Unknown prompt: {name}")))?;
        if let Some(f) = &found.fed {
            p.insert("name".into(), json!(f.name));
            return Ok(calls::forward(self, ctx, f, req, Method::PromptsGet, p));
        }
        let prompt = &found.def;
        let mut args = Map::new();
        for (k, v) in arguments.unwrap_or_default() {
            let s = match v {
                Value::String(s) => s,
                Value::Number(_) | Value::Bool(_) => v.to_string(),
                _ => {
                    return Err(RpcError::invalid_params(format!(
                        "prompts/get: argument \"{k}\" must be a string"
                    )))
                }
            };
            args.insert(k, Value::String(s));
        }
        if let Some(missing) = prompt
            .arguments
            .iter()
            .find(|a| a.required && !args.contains_key(&a.name))
        {
            return Err(RpcError::invalid_params(format!(
                "prompts/get: missing required argument \"{}\"",
                missing.name
            )));
        }
        let render_err = |e: render::RenderError| RpcError::internal(format!("prompt template failed: {e}"));
        let mut messages = Vec::new();
        for msg in prompt.all_messages() {
            let content = match msg.content {
                PromptContentDef::Text { text } => {
                    json!({"type": "text", "text": render::render(&text, &args).map_err(render_err)?})
                }
                PromptContentDef::Image { data, mime_type } => {
                    json!({"type": "image", "data": data, "mimeType": mime_type})
                }
                PromptContentDef::Audio { data, mime_type } => {
                    json!({"type": "audio", "data": data, "mimeType": mime_type})
                }
                PromptContentDef::Resource { uri } => {
                    let uri = render::render(&uri, &args).map_err(render_err)?;
                    let found = ctx
                        .find_resource(&snap, &uri)
                        .ok_or_else(|| RpcError::invalid_params(format!("prompts/get: no resource at \"{uri}\"")))?;
                    let vars = found.vars.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                    json!({"type": "resource", "resource": self.resource_contents(found.resource, &uri, &vars)?})
                }
            };
            let role = if msg.role == Role::User { "user" } else { "assistant" };
            messages.push(json!({"role": role, "content": content}));
        }
        let mut out = json!({"messages": messages});
        if let Some(d) = &prompt.description {
            out["description"] = json!(d);
        }
        Ok(Reply::Now(Json::from_value(&out)))
    }

    async fn complete(&self, ctx: &CallCtx, req: &Request) -> Result<Reply, RpcError> {
        let mut p = params_obj(req)?;
        let bad = |m: &str| RpcError::invalid_params(format!("completion/complete: {m}"));
        let reference = p
            .get("ref")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("\"ref\" is required"))?;
        let arg = p
            .get("argument")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("\"argument\" is required"))?;
        let arg_name = arg
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("\"argument.name\" is required"))?;
        let prefix = arg
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        let snap = self.snapshot().await?;
        let candidates: Vec<String> = match reference.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = reference
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("\"ref.name\" is required"))?;
                let prompt = ctx
                    .find_prompt(&snap, name)
                    .ok_or_else(|| RpcError::invalid_params(format!("Unknown prompt: {name}")))?;
                if let Some(f) = &prompt.fed {
                    let mut reference = reference.clone();
                    reference.insert("name".into(), json!(f.name));
                    p.insert("ref".into(), Value::Object(reference));
                    return Ok(calls::forward(self, ctx, f, req, Method::CompletionComplete, p));
                }
                prompt
                    .def
                    .arguments
                    .iter()
                    .find(|a| a.name == arg_name)
                    .map(|a| a.values.clone())
                    .unwrap_or_default()
            }
            Some("ref/resource") => {
                let uri = reference
                    .get("uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("\"ref.uri\" is required"))?;
                let r = ctx.find_reference(&snap, uri).ok_or_else(|| {
                    RpcError::new(jsonrpc::RESOURCE_NOT_FOUND, "Resource not found").with_data(json!({"uri": uri}))
                })?;
                if let Some(f) = &r.fed {
                    let mut p = p.clone();
                    p["ref"]["uri"] = json!(f.name);
                    return Ok(calls::forward(self, ctx, f, req, Method::CompletionComplete, p));
                }
                r.def.completions.get(arg_name).cloned().unwrap_or_default()
            }
            _ => return Err(bad("\"ref.type\" must be ref/prompt or ref/resource")),
        };
        let matching: Vec<String> = candidates
            .into_iter()
            .filter(|v| v.to_lowercase().starts_with(&prefix))
            .collect();
        let total = matching.len();
        let values: Vec<String> = matching.into_iter().take(100).collect();
        Ok(Reply::Now(Json::from_value(
            &json!({"completion": {"values": values, "total": total, "hasMore": total > 100}}),
        )))
    }

    async fn set_level(&self, ctx: &CallCtx, req: &Request) -> Result<Value, RpcError> {
        let p = params_obj(req)?;
        let level: LogLevel = p
            .get("level")
            .cloned()
            .and_then(|l| serde_json::from_value(l).ok())
            .ok_or_else(|| RpcError::invalid_params("logging/setLevel: \"level\" must be one of debug, info, notice, warning, error, critical, alert, emergency"))?;
        if let Some(s) = &ctx.session {
            // Re-read: a concurrent request may have changed the session since this one began.
            let mut s = self.sessions.get(&s.id).await.unwrap_or_else(|| SessionState::clone(s));
            s.log_level = Some(level);
            let sid = s.id.clone();
            self.sessions.put(s).await;
            // Upstreams filter their own log messages: tell the ones this session uses.
            self.fed
                .notify_links(&sid, Method::LoggingSetLevel, Some(json!({"level": level})), true)
                .await;
        }
        Ok(json!({}))
    }
}
