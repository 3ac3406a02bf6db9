//! Federation: which [`Link`] serves a call (one per client session and upstream, opened on first
//! use and kept; one shared per upstream for sessionless `/rpc` and for stdio), forwarding a call
//! as a stream of what the upstream says ([`Relayed`]: progress, logs, its own requests, then the
//! answer), rewritten for the client by [`relay`]; what upstreams say outside calls (to the
//! session's stream); the client's answers and cancellations going back; catalog refreshes and
//! health ([`health`]).
//!
//! Lives here: the gateway side of every upstream session. Not here: talking to one upstream
//! (`upstream/`), MCP semantics (the engine), client streams (sessions and faces).

pub(crate) mod announce;
pub(crate) mod answers;
mod call;
mod forwarding;
mod health;
mod hello;
mod links;
pub(crate) mod relay;
mod upkeep;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use futures::channel::mpsc::{unbounded, UnboundedReceiver};
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};

pub(crate) use call::upstream_error;
use call::{Call, CallState};
pub(crate) use forwarding::{Ask, Forwarding, LinkError, Relayed};
pub use health::Health;
use health::HealthBook;
use hello::{era_for, relayable_hello};
use links::Links;
use relay::{unrouted, Relay, Rewrite};

use crate::model::{Catalog, Transport, UpstreamDef};
use crate::platform::{boxed, boxed_stream, BoxFuture, BoxStream};
use crate::ports::{SessionState, Spawner};
use crate::proto::jsonrpc::{Json, RequestId, RpcError, INTERNAL_ERROR};
use crate::proto::method::{Listed, Method, ServerMethod};
use crate::proto::version::Era;
use crate::registry::{Registry, Upstream};
use crate::session::Sessions;
use crate::upstream::{Acting, Answer, Hello, KeepOpen, Link, Net, Said, UpstreamError};

/// The upstream request serving a client request in flight: its link and the upstream's id.
type Inflight = (Arc<Link>, u64, futures::channel::mpsc::UnboundedSender<()>);
/// A listener (by number) hearing a federated resource's updates.
type UpdateSink = (u64, futures::channel::mpsc::UnboundedSender<()>);

/// Held by a listener hearing a federated resource's updates ([`Federation::watch_shared`]):
/// dropping it ends that.
pub(crate) struct Unwatch {
    fed: Weak<Federation>,
    up: Arc<Upstream>,
    uri: String,
    n: u64,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
        let Some(fed) = self.fed.upgrade() else { return };
        let (up, uri, n) = (self.up.clone(), std::mem::take(&mut self.uri), self.n);
        let spawner = fed.net.spawner.clone();
        spawner.spawn(boxed(async move { fed.unwatch_shared(&up, &uri, n).await }));
    }
}

/// Where a client's answer to a relayed request goes: back to the upstream on its link, or to
/// a call that asked on a 2026-07-28 upstream's behalf (its `input_required`).
#[derive(Clone)]
pub(crate) enum Back {
    Link(Arc<Link>),
    Round(futures::channel::mpsc::UnboundedSender<Value>),
}

/// One link slot; the async lock makes concurrent first uses open one session, not several.
#[derive(Default)]
struct Slot {
    link: futures::lock::Mutex<Option<Arc<Link>>>,
}

/// True when a result asks for input (2026-07-28 `resultType: "input_required"`).
fn is_input_required(result: &Json) -> bool {
    result.0.contains("input_required")
        && serde_json::from_str::<Value>(&result.0).is_ok_and(|v| v["resultType"] == "input_required")
}

/// The id of a request an upstream may ask a client during a call, if `msg` is one.
fn ask_id(msg: &Value) -> Option<RequestId> {
    let asks = ServerMethod::of(msg).is_some_and(ServerMethod::asks_input);
    asks.then(|| RequestId::of(msg.get("id")?)).flatten()
}

/// Timeouts and intervals federation works by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// The idle timeout of a call (and of each request) unless the upstream sets its own.
    pub tool_timeout_ms: u64,
    /// The longest a whole call may take.
    pub call_max_ms: u64,
    /// Failures in a row that open an upstream's circuit.
    pub unhealthy_after: u32,
    /// How often upstreams are pinged (and how long an open circuit fails fast).
    pub health_check_secs: u64,
    /// How often catalogs are re-read unless the upstream sets its own.
    pub upstream_refresh_secs: u64,
}

/// The federation service of one gateway.
pub(crate) struct Federation {
    registry: Arc<Registry>,
    sessions: Arc<Sessions>,
    net: Net,
    settings: Settings,
    /// Each session's links, calls in flight and waiting upstream requests; the shared links.
    links: Links,
    relay: Relay,
    /// Listeners without a session hearing a federated resource's updates: (upstream id, its
    /// URI there) → (listener, sink).
    updates: Mutex<HashMap<(String, String), Vec<UpdateSink>>>,
    watchers: std::sync::atomic::AtomicU64,
    health: HealthBook,
    /// Upstream resource reads kept for reuse.
    answers: answers::ResourceCache,
    /// List changes upstreams announce, for this process's listen streams.
    announced: Arc<announce::Announcements>,
    /// The catalog reads list changes asked for, one at a time per upstream.
    refreshes: upkeep::Refreshes,
    me: Weak<Federation>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tells links apart in the relay table.
fn link_key(link: &Arc<Link>) -> usize {
    Arc::as_ptr(link) as usize
}

impl Federation {
    /// The federation service over `registry`, relaying to `sessions`.
    pub fn new(
        registry: Arc<Registry>,
        sessions: Arc<Sessions>,
        net: Net,
        settings: Settings,
        answers: answers::ResourceCache,
    ) -> Arc<Self> {
        // Ids handed to clients name this instance when others serve the same sessions, so that
        // an answer reaching them is not mistaken for one to their own request.
        let relay = match sessions.peers().shared() {
            true => Relay::with_prefix(format!("mcpgw-{}-", sessions.peers().me())),
            false => Relay::default(),
        };
        Arc::new_cyclic(|me| Self {
            registry,
            sessions,
            net,
            health: HealthBook::new(settings.unhealthy_after),
            settings,
            links: Links::default(),
            relay,
            updates: Mutex::new(HashMap::new()),
            announced: Arc::default(),
            refreshes: upkeep::Refreshes::default(),
            watchers: std::sync::atomic::AtomicU64::new(0),
            answers,
            me: me.clone(),
        })
    }

    fn timeout_of(&self, def: &UpstreamDef) -> u64 {
        def.timeout_ms.unwrap_or(self.settings.tool_timeout_ms)
    }

    fn now(&self) -> u64 {
        self.net.clock.now_ms()
    }

    /// The upstream resource reads kept for reuse.
    pub fn answers(&self) -> &answers::ResourceCache {
        &self.answers
    }

    /// What this gateway knows of an upstream's health.
    pub fn health_of(&self, id: &str) -> Option<Health> {
        self.health.of(id)
    }

    fn record_failure(&self, id: &str, e: &UpstreamError) {
        self.health.failure(id, e, self.now());
    }

    /// The link serving `session` for `up`: the session's own (opened now if needed), or the
    /// shared one for sessionless calls and stdio upstreams.
    #[cfg_attr(target_family = "wasm", allow(clippy::arc_with_non_send_sync))]
    async fn link_for(
        &self,
        session: Option<&SessionState>,
        up: &Arc<Upstream>,
        caller: Option<&str>,
        token: Option<&str>,
    ) -> Result<Arc<Link>, LinkError> {
        if up.def.transport == Transport::Openapi {
            return Err(LinkError::Rpc(RpcError::invalid_request(format!(
                "'{}' is an OpenAPI upstream: it has no MCP session",
                up.def.name
            ))));
        }
        let own = session.filter(|_| up.def.transport != Transport::Stdio);
        let sid = own.map(|s| s.id.clone());
        // An upstream that acts for each caller has a link per caller: a session's own (its
        // owner is the caller), or a shared one per caller, never another's.
        let acting_for = up.def.auth.as_ref().filter(|a| a.per_user()).map(|_| Acting {
            subject: own
                .and_then(|s| s.owner.as_deref())
                .or(caller)
                .unwrap_or_default()
                .to_string(),
            upstream: up.id.clone(),
            token: token.map(str::to_string),
        });
        let shared_key = match (&acting_for, &sid) {
            (Some(a), None) => links::per_caller(&up.id, &a.subject),
            _ => up.id.clone(),
        };
        let slot = self.links.slot(sid.as_deref(), &shared_key);
        let mut guard = if self.net.spawner.waits_across_requests() {
            slot.link.lock().await
        } else {
            // Another request opening this link: look again on this request's own timer.
            loop {
                if let Some(g) = slot.link.try_lock() {
                    break g;
                }
                self.net.clock.sleep(std::time::Duration::from_millis(2)).await;
            }
        };
        if let Some(l) = guard.as_ref() {
            // One opened under an older definition (changed anywhere) opens anew.
            if !l.is_broken() && l.revision == up.revision {
                return Ok(l.clone());
            }
            l.close(&self.net.spawner);
            *guard = None;
        }
        let health = self.health.of(&up.id);
        let circuit_open = health.as_ref().is_some_and(|h| !h.healthy);
        let health = health.unwrap_or_default();
        if circuit_open {
            // Circuit open: fail fast until a health check (or the retry delay) lets one through.
            let retry_ms = self.settings.health_check_secs.saturating_mul(1000);
            if self.now().saturating_sub(health.checked_at) < retry_ms {
                return Err(LinkError::Rpc(
                    RpcError::new(
                        INTERNAL_ERROR,
                        format!(
                            "upstream '{}' is unhealthy: {}",
                            up.def.name,
                            health.last_error.unwrap_or_default()
                        ),
                    )
                    .with_data(json!({"upstream": up.def.name, "reason": "unhealthy"})),
                ));
            }
        }
        if up.def.transport == Transport::Stdio {
            // Restart backoff: 0.5 s doubling to 30 s after repeated quick deaths.
            let starts = health.starts;
            if starts > 1 {
                let wait = (250u64 << starts.min(7)).min(30_000);
                let since = self.now().saturating_sub(health.checked_at);
                if since < wait && health.failures > 0 {
                    self.net
                        .clock
                        .sleep(std::time::Duration::from_millis(wait - since))
                        .await;
                }
            }
            self.health.started(&up.id);
        }
        let mut hello = match own {
            Some(s) => Hello {
                capabilities: s.client_capabilities.clone(),
                client_info: s.client_info.clone(),
                prefer: Era::Session,
                acting_for: None,
            },
            None => relayable_hello(),
        };
        hello.prefer = era_for(up, hello.prefer);
        hello.acting_for = acting_for;
        let opened = Link::open(&self.net, &up.def, &hello, health.endpoint, self.timeout_of(&up.def)).await;
        let (link, endpoint) = match opened {
            Ok(x) => x,
            // Not the upstream's fault: the caller has a step to take.
            Err(UpstreamError::NeedsConsent) => return Err(LinkError::NeedsConsent),
            // A caller's own credential refused or not to be had: not the upstream's failure.
            Err(e @ UpstreamError::Unauthorized(_)) if up.def.auth.as_ref().is_some_and(|a| a.per_user()) => {
                return Err(LinkError::Rpc(upstream_error(&up.def.name, &e)));
            }
            Err(e) => {
                self.record_failure(&up.id, &e);
                return Err(LinkError::Rpc(upstream_error(&up.def.name, &e)));
            }
        };
        self.health.success(&up.id, Some(endpoint), self.now());
        let link = Arc::new(link);
        if sid.is_none() {
            link.mark_shared();
        }
        // A session's level goes to its own link. A shared link serves 2026-07-28 requests,
        // each with its own `logLevel` (the gateway passes on what each asked for): it asks
        // for everything.
        let level = match own {
            Some(s) => s.log_level,
            None if up.def.transport != Transport::Stdio => Some(crate::proto::logging::LogLevel::Debug),
            // A stdio upstream's one link serves sessions too: left as it starts.
            None => None,
        };
        if let Some(level) = level.filter(|_| !link.is_stateless()) {
            if link.capabilities().get("logging").is_some() {
                let params = Some(json!({"level": level}));
                let _ = link
                    .request(Method::LoggingSetLevel, params, None, self.timeout_of(&up.def))
                    .await;
            }
        }
        // What the upstream says outside calls: a session's link listens from the start (its
        // standalone stream is open before each call goes out, see `Link::listen`); a shared
        // duplex link takes list changes from it (a shared streamable one listens once a call
        // whose caller may be asked goes out on it, see `Call::next`).
        // A shared 2026-07-28 link listens for list changes all along (where a task may outlive
        // the request that starts it).
        let listens = link.is_stateless() && self.net.spawner.waits_across_requests();
        if link.is_duplex() || sid.is_some() || listens {
            self.listen(&link, up, sid);
        }
        *guard = Some(link.clone());
        Ok(link)
    }

    /// Starts relaying what `link` says outside calls: to the session `sid`'s stream, or (for
    /// shared links) only list changes, which refresh the catalog.
    /// A message reaches the session's own stream when the client has one open; otherwise it
    /// goes with the newest call in flight on that link (its answer stream is open), so a
    /// request the upstream sent on its standalone stream during a tool call is not stranded.
    /// The standalone stream is kept open while the client has a stream of its own.
    fn listen(&self, link: &Arc<Link>, up: &Arc<Upstream>, sid: Option<String>) {
        let (tx, mut rx) = crate::upstream::sink(self.net.max_queue);
        let Some(me) = self.me.upgrade() else { return };
        let keep: Box<dyn KeepOpen> = match &sid {
            Some(s) => {
                let (sessions, s) = (Arc::downgrade(&self.sessions), s.clone());
                Box::new(move || sessions.upgrade().is_some_and(|g| g.hub().has_stream(&s)))
            }
            None => {
                let always = link.is_stateless();
                Box::new(move || always)
            }
        };
        link.listen(tx, keep, &self.net.spawner);
        let up = up.clone();
        let weak = Arc::downgrade(link);
        self.net.spawner.spawn(boxed(async move {
            while let Some(said) = rx.next().await {
                let Said::Message(mut msg) = said else { continue };
                let Some(link) = weak.upgrade() else { return };
                // What is kept of the upstream's resources is stale now.
                let said = ServerMethod::of(&msg);
                use ServerMethod::{ListChanged, ResourceUpdated};
                if matches!(said, Some(ResourceUpdated | ListChanged(Listed::Resources))) {
                    me.answers.invalidate(&up.id).await;
                }
                let to_call = match &sid {
                    Some(s) => !me.sessions.hub().has_stream(s),
                    // On a shared link only requests: their call's caller may be asked.
                    None => msg.get("id").is_some() && msg.get("method").is_some(),
                };
                if let Some(call) = link.call_sink(&msg).filter(|_| to_call) {
                    match call.send(Said::Message(msg)) {
                        // Queued, or dropped at the call's bound (its client is not reading).
                        Ok(()) | Err(crate::upstream::SinkError::Full) => continue,
                        // That call just ended: the session's stream (log) takes it.
                        Err(crate::upstream::SinkError::Closed(Said::Message(m))) => msg = m,
                        Err(crate::upstream::SinkError::Closed(_)) => continue,
                    }
                }
                if sid.is_none() && said == Some(ResourceUpdated) {
                    if let Some(uri) = msg["params"]["uri"].as_str() {
                        me.updated(&up.id, uri);
                    }
                    continue;
                }
                if let Some(out) = me.rewrite(sid.as_deref(), &link, &up, msg).await {
                    if let Some(s) = &sid {
                        me.sessions.send(s, out.to_string()).await;
                    }
                }
            }
        }));
    }

    /// Starts hearing the updates of resource `uri` at `up` for a listener without a session
    /// (a 2026-07-28 `subscriptions/listen`): the shared link subscribes (a session-era
    /// upstream) or watches it on its listen stream (a 2026-07-28 one). Each update is a `()`
    /// on the receiver until the [`Unwatch`] is dropped. None where no task may outlive a
    /// request (a Worker), or when the upstream cannot be reached.
    pub async fn watch_shared(&self, up: &Arc<Upstream>, uri: &str) -> Option<(UnboundedReceiver<()>, Unwatch)> {
        if !self.net.spawner.waits_across_requests() {
            return None;
        }
        let link = self.link_for(None, up, None, None).await.ok()?;
        let (tx, rx) = unbounded::<()>();
        let n = self.watchers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let first = {
            let mut all = lock(&self.updates);
            let sinks = all.entry((up.id.clone(), uri.to_string())).or_default();
            sinks.push((n, tx));
            sinks.len() == 1
        };
        if first {
            if !link.is_listening() {
                self.listen(&link, up, None);
            }
            link.watch(uri, true);
            if !link.is_stateless() {
                let params = Some(json!({"uri": uri}));
                let _ = link
                    .request(Method::ResourcesSubscribe, params, None, self.timeout_of(&up.def))
                    .await;
            }
        }
        let unwatch = Unwatch {
            fed: self.me.clone(),
            up: up.clone(),
            uri: uri.to_string(),
            n,
        };
        Some((rx, unwatch))
    }

    /// Makes sure the shared link to `up`, a 2026-07-28 upstream, is open: it listens for the
    /// upstream's list changes all along (re-reading the catalog on each, which listen streams
    /// find in the registry). Nothing where no task may outlive a request (a Worker), or for a
    /// session-era upstream.
    pub async fn hear_lists(&self, up: &Arc<Upstream>) {
        let stateless = up.era() == Some(crate::proto::version::Era::Stateless);
        if stateless && self.net.spawner.waits_across_requests() {
            let _ = self.link_for(None, up, None, None).await;
        }
    }

    /// Hears the list changes the upstreams `ups` (by id) announce, until the guard drops.
    pub fn hear_announced(&self, ups: Vec<String>) -> (futures::channel::mpsc::Receiver<Listed>, announce::Unhear) {
        self.announced.hear(ups)
    }

    /// An update of `uri` at upstream `up_id` for the listeners without a session.
    fn updated(&self, up_id: &str, uri: &str) {
        if let Some(sinks) = lock(&self.updates).get_mut(&(up_id.to_string(), uri.to_string())) {
            sinks.retain(|(_, tx)| tx.unbounded_send(()).is_ok());
        }
    }

    /// The listener `n` no longer hears `uri` at `up`; the last one gone, the link stops.
    async fn unwatch_shared(&self, up: &Arc<Upstream>, uri: &str, n: u64) {
        let last = {
            let mut all = lock(&self.updates);
            let key = (up.id.clone(), uri.to_string());
            let empty = all.get_mut(&key).is_some_and(|s| {
                s.retain(|(m, _)| *m != n);
                s.is_empty()
            });
            if empty {
                all.remove(&key);
            }
            empty
        };
        if !last {
            return;
        }
        if let Ok(link) = self.link_for(None, up, None, None).await {
            link.watch(uri, false);
            if !link.is_stateless() {
                let params = Some(json!({"uri": uri}));
                let _ = link
                    .request(Method::ResourcesUnsubscribe, params, None, self.timeout_of(&up.def))
                    .await;
            }
        }
    }

    /// What the client is to get of a message `link` sent for session `sid` (none for shared
    /// links), after doing what it asks of the gateway.
    async fn rewrite(&self, sid: Option<&str>, link: &Arc<Link>, up: &Arc<Upstream>, msg: Value) -> Option<Value> {
        let listed = match ServerMethod::of(&msg) {
            Some(ServerMethod::ListChanged(l)) => Some(l),
            _ => None,
        };
        let decision = match sid {
            Some(s) => {
                let back = Back::Link(link.clone());
                self.links
                    .asked(s, |asked| self.relay.to_client(asked, &back, link_key(link), msg))
            }
            None => unrouted(&msg),
        };
        match decision {
            Rewrite::Deliver(mut v) => {
                // An update of a resource the session's endpoint serves under an alias says so.
                if let (Some(s), Some(ServerMethod::ResourceUpdated)) = (sid, ServerMethod::of(&v)) {
                    let server = self.sessions.get(s).await.and_then(|st| st.server);
                    if let Ok(snap) = self.registry.snapshot().await {
                        crate::registry::uris::updated_as_served(&snap, server.as_deref(), &up.id, &mut v);
                    }
                }
                return Some(v);
            }
            Rewrite::RefreshCatalog => {
                if let Some(l) = listed {
                    self.announced.announce(&up.id, l);
                }
                self.spawn_catalog_refresh(up.id.clone())
            }
            Rewrite::Reply(answer) => {
                let _ = link.send_raw(answer.to_string()).await;
            }
            Rewrite::Drop => {}
        }
        None
    }

    /// Forwards a request to `up` for the client: a stream of what the upstream says while it
    /// runs, ending with the upstream's result or error, unchanged. With `asks`, the upstream's
    /// requests come as [`Relayed::Ask`] for the caller to answer.
    pub fn forward(
        &self,
        session: Option<Arc<SessionState>>,
        up: Arc<Upstream>,
        client_id: RequestId,
        method: Method,
        params: Value,
        how: Forwarding,
    ) -> BoxStream<'static, Relayed> {
        let Some(fed) = self.me.upgrade() else {
            let gone = Relayed::Answer(Err(RpcError::internal("shutting down")));
            return boxed_stream(futures::stream::iter([gone]));
        };
        let mut params = params;
        // A retry after the gateway's own request to connect carries its answer: not the
        // upstream's to see.
        if let Some(p) = params.as_object_mut() {
            let emptied = p
                .get_mut("inputResponses")
                .and_then(Value::as_object_mut)
                .is_some_and(|r| r.remove(call::CONNECT_KEY).is_some() && r.is_empty());
            if emptied {
                p.remove("inputResponses");
            }
        }
        let call = Call {
            fed,
            sid: session.as_ref().map(|s| s.id.clone()),
            session,
            up,
            client_id,
            method,
            params: Arc::new(params),
            asks: how.asks,
            headers: how.headers,
            attempt: 0,
            rounds: 0,
            caller: how.caller,
            token: how.token,
            base: how.base,
            stateless: how.stateless,
            consents: 0,
            consent_asked_ms: 0,
            state: CallState::Start,
        };
        boxed_stream(futures::stream::unfold(call, |mut c| async move {
            let item = c.next().await?;
            Some((item, c))
        }))
    }

    /// The client answered one of the upstream requests relayed to it: pass it on. True if the
    /// id was one the gateway handed out.
    pub async fn answer_upstream(&self, sid: &str, id: &RequestId, outcome: Result<Value, RpcError>) -> bool {
        let outcome = outcome.map_err(|e| serde_json::to_value(e).unwrap_or(Value::Null));
        let Some((back, msg)) = self.links.answered(sid, |asked| asked.answer(id, outcome)) else {
            return false;
        };
        match back {
            Back::Link(link) => {
                let _ = link.send_raw(msg.to_string()).await;
            }
            Back::Round(call) => {
                let _ = call.unbounded_send(msg);
            }
        }
        true
    }

    /// The client cancelled one of its requests: cancel the upstream request serving it.
    pub async fn cancel_upstream(&self, sid: &str, params: Option<&Value>) {
        let Some(p) = params else { return };
        let Some(id) = RequestId::of(&p["requestId"]) else {
            return;
        };
        if let Some((link, uid, stop)) = self.links.serving(sid, &id) {
            if link.is_stateless() {
                let _ = stop.unbounded_send(());
                return;
            }
            let mut params = json!({"requestId": uid});
            if let Some(r) = p.get("reason") {
                params["reason"] = r.clone();
            }
            let _ = link.notify(Method::Cancelled.name(), Some(params)).await;
        }
    }

    /// The link slots of session `sid`.
    fn session_slots(&self, sid: &str) -> Vec<Arc<Slot>> {
        self.links.of_session(sid)
    }

    /// The client opened a stream of its own: the session's links reopen their standalone
    /// streams (parked while idle) so that what the upstreams say outside calls reaches it.
    pub fn wake_links(&self, sid: &str) {
        for slot in self.session_slots(sid) {
            // A link being opened starts listening on its own.
            if let Some(link) = slot.link.try_lock().and_then(|g| g.clone()) {
                let _ = link.wake();
            }
        }
    }

    /// Sends a notification to every open link of a session (roots changed), or, `as_request`,
    /// a request to those that log (the log level).
    pub async fn notify_links(&self, sid: &str, method: Method, params: Option<Value>, as_request: bool) {
        for slot in self.session_slots(sid) {
            let link = slot.link.lock().await.clone();
            let Some(link) = link.filter(|l| !l.is_broken()) else {
                continue;
            };
            if as_request {
                if link.capabilities().get("logging").is_some() {
                    let _ = link
                        .request(method, params.clone(), None, self.settings.tool_timeout_ms)
                        .await;
                }
            } else {
                let _ = link.notify(method.name(), params.clone()).await;
            }
        }
    }

    /// Closes the links of slots taken from [`Links`]. A link still being opened is left to
    /// its opener (it is dropped with its slot).
    fn close_slots(&self, gone: Vec<Arc<Slot>>) {
        for slot in gone {
            if let Some(l) = slot.link.try_lock().and_then(|g| g.clone()) {
                l.close(&self.net.spawner);
            }
        }
    }

    /// Closes a session's links (the session ended).
    pub fn drop_links(&self, sid: &str) {
        self.close_slots(self.links.end(sid));
    }

    /// Closes every link to one upstream (it was changed or deleted).
    pub fn drop_upstream_links(&self, up_id: &str) {
        self.close_slots(self.links.take_upstream(up_id));
        self.health.remove(up_id);
    }

    /// Notes that an upstream's catalog was just read and it answered.
    pub fn mark_refreshed(&self, up_id: &str) {
        self.health.refreshed(up_id, self.now(), true);
    }

    /// The authorization server found for an upstream whose `auth` names none: pinned at registration.
    pub fn pinned_issuer(&self, def: &UpstreamDef) -> Option<String> {
        let url = def.endpoints().first().map(|u| u.to_string())?;
        self.net.grants.pinned_issuer(&url, def.auth.as_ref()?)
    }

    /// Closes every link (shutdown): no stdio process outlives the gateway.
    pub fn close_all_links(&self) {
        self.close_slots(self.links.take_all());
    }

    /// Connects to an upstream that is not stored yet (or stored under `def`) and reads its
    /// catalog over a short-lived session (acting for `acting`, where it acts for each caller).
    pub async fn read_catalog(&self, def: &UpstreamDef, acting: Option<Acting>) -> Result<Catalog, UpstreamError> {
        let timeout = self.timeout_of(def);
        if def.transport == Transport::Openapi {
            return crate::upstream::openapi::read(&self.net, def, timeout).await;
        }
        let mut hello = relayable_hello();
        hello.acting_for = acting.filter(|_| def.auth.as_ref().is_some_and(|a| a.per_user()));
        let (link, _) = Link::open(&self.net, def, &hello, 0, timeout).await?;
        let cat = upkeep::catalog_over(self, &link, def).await;
        link.close(&self.net.spawner);
        cat
    }

    /// Re-reads a stored upstream's catalog over its shared link; stores it and announces list
    /// changes if it differs. Returns whether it changed.
    pub async fn refresh_catalog(&self, id: &str) -> Result<bool, RpcError> {
        let snap = self
            .registry
            .snapshot()
            .await
            .map_err(|e| RpcError::internal(e.to_string()))?;
        let up = snap
            .upstream(id)
            .cloned()
            .ok_or_else(|| RpcError::invalid_params(format!("no upstream '{id}'")))?;
        let read = match up.def.transport {
            Transport::Openapi => self.read_catalog(&up.def, None).await,
            _ => {
                // An upstream acting for each caller is read as one of its callers; with none
                // connected yet, what was read before stays.
                let reader = self.reader_of(&up).await;
                if up.def.auth.as_ref().is_some_and(|a| a.per_user()) && reader.is_none() {
                    return Ok(false);
                }
                let link = self.link_for(None, &up, reader.as_deref(), None).await?;
                upkeep::catalog_over(self, &link, &up.def).await
            }
        };
        let cat = match read {
            Ok(c) => c,
            Err(e) => {
                self.record_failure(&up.id, &e);
                return Err(upstream_error(&up.def.name, &e));
            }
        };
        self.health.refreshed(&up.id, self.now(), false);
        let changed = self
            .registry
            .set_catalog(&up.id, cat)
            .await
            .map_err(|e| RpcError::internal(e.to_string()))?;
        if changed {
            self.sessions.refresh_registry().await;
        }
        Ok(changed)
    }

    /// Callers' own tokens for upstreams acting for each of them.
    pub fn vault(&self) -> &Arc<crate::oauth::vault::Vault> {
        &self.net.vault
    }

    /// The HTTP client every outbound request goes through (the SSRF policy applied).
    pub fn http(&self) -> &dyn crate::ports::HttpClient {
        &*self.net.http
    }

    /// Whose authorization reads an upstream that acts for each caller (none for others).
    pub(super) async fn reader_of(&self, up: &Upstream) -> Option<String> {
        up.def.auth.as_ref().filter(|a| a.consents())?;
        self.net.vault.a_caller_of(&up.id).await
    }

    /// A caller ended their connection to an upstream: their links to it close.
    pub fn drop_callers_links(&self, up_id: &str, subject: &str) {
        self.close_slots(self.links.take_callers(up_id, subject));
    }

    /// Re-reads an upstream's catalog on a task of its own, at most one read at a time per
    /// upstream ([`upkeep::refresh_soon`]).
    fn spawn_catalog_refresh(&self, id: String) {
        if let Some(me) = self.me.upgrade() {
            upkeep::refresh_soon(me, id);
        }
    }

    /// A peer's own upstreams and their health, as it tells them now (see
    /// [`upkeep::peer_upstreams`]).
    pub async fn peer_upstreams(&self, def: &UpstreamDef) -> Result<Value, UpstreamError> {
        upkeep::peer_upstreams(self, def).await
    }

    /// Health checks and catalog refreshes that are due (see [`upkeep::check_upstreams`]).
    /// Returns how many upstreams are healthy.
    pub async fn check_upstreams(&self, force: bool) -> usize {
        upkeep::check_upstreams(self, force).await
    }
}
