//! Federation's gateway side: which [`Link`] serves a call (one per client session and upstream,
//! opened on first use and kept; one shared per upstream for sessionless `/rpc` and for stdio),
//! forwarding a call and relaying what the upstream says meanwhile, mapping the ids of the
//! upstream's own requests (sampling, elicitation, roots) to ids of the gateway's, forwarding
//! the client's answers and cancellations, catalog refreshes and health.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::channel::mpsc::{unbounded, UnboundedSender};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};

use crate::gateway::Inner;
use crate::mcp::{CallCtx, Outbound};
use crate::model::{Catalog, Transport, UpstreamDef};
use crate::platform::boxed;
use crate::ports::SessionState;
use crate::proto::jsonrpc::{Json, RpcError, INTERNAL_ERROR};
use crate::registry::Upstream;
use crate::upstream::{fetch_catalog, Hello, KeepOpen, Link, Net, UpstreamError};

/// (session id or [`POOLED`], an id): how links, pending requests and calls are keyed.
type Key = (String, String);

/// The key of sessionless (pooled) links.
const POOLED: &str = "";

/// One link slot; the async lock makes concurrent first uses open one session, not several.
#[derive(Default)]
struct Slot {
    link: futures::lock::Mutex<Option<Arc<Link>>>,
}

/// An upstream's request waiting for the client's answer.
struct Pending {
    link: Arc<Link>,
    upstream_id: Value,
}

/// What the gateway knows about an upstream's health (per process or Durable Object).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// False while `failures` is at least `unhealthy_after` (derived when read).
    pub healthy: bool,
    /// Consecutive failures.
    pub failures: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// When the last check or connection attempt ended, ms since the epoch.
    pub checked_at: u64,
    /// When the catalog was last read, ms since the epoch.
    pub refreshed_at: u64,
    /// The endpoint in use (index into the upstream's URLs).
    pub endpoint: usize,
    /// How many times a stdio process was started.
    pub starts: u32,
}

/// Federation state of one gateway.
#[derive(Default)]
pub(crate) struct Federation {
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
    pending: Mutex<HashMap<Key, Pending>>,
    /// The upstream request serving each client request in flight (for cancellation).
    inflight: Mutex<HashMap<Key, (Arc<Link>, u64)>>,
    health: Mutex<HashMap<String, Health>>,
    seq: AtomicU64,
}

/// A JSON-RPC id as a map key (`1` and `"1"` stay distinct).
fn id_key(id: &Value) -> String {
    id.to_string()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Some(true)` for `resources/subscribe`, `Some(false)` for `resources/unsubscribe`.
fn subscribing(method: &str) -> Option<bool> {
    match method {
        "resources/subscribe" => Some(true),
        "resources/unsubscribe" => Some(false),
        _ => None,
    }
}

/// The client-visible error for a failed upstream.
pub(crate) fn upstream_error(name: &str, e: &UpstreamError) -> RpcError {
    let reason = match e {
        UpstreamError::Timeout(_) => "timeout",
        UpstreamError::Unreachable(_) | UpstreamError::SessionGone => "unreachable",
        UpstreamError::Closed => "closed",
        UpstreamError::Protocol(_) => "invalid_answer",
        UpstreamError::Unsupported(_) => "unsupported",
    };
    RpcError::new(INTERNAL_ERROR, format!("upstream '{name}' failed: {e}"))
        .with_data(json!({"upstream": name, "reason": reason}))
}

/// The hello of shared links (catalog reads, `/rpc`): every client capability the gateway can
/// relay, so that upstreams which offer some tools only to such clients list them. A call on a
/// shared link has no client to ask; such requests are answered with an error.
fn relayable_hello() -> Hello {
    Hello {
        capabilities: json!({"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}}),
        client_info: Value::Null,
    }
}

/// Where relayed messages go: the stream of the call they belong to, or the session's stream.
enum Dest<'a> {
    Call(&'a UnboundedSender<Outbound>),
    Session(&'a str),
}

impl Inner {
    fn net(&self) -> Net {
        Net {
            http: self.http.clone(),
            clock: self.clock.clone(),
            spawner: self.spawner.clone(),
            launcher: self.launcher.clone(),
            max_bytes: self.config.max_upstream_response_bytes,
            linger_ms: self.config.standalone_linger_ms,
        }
    }

    fn timeout_of(&self, def: &UpstreamDef) -> u64 {
        def.timeout_ms.unwrap_or(self.config.tool_timeout_ms)
    }

    /// The health of every upstream this gateway has talked to.
    pub(crate) fn health_of(&self, id: &str) -> Option<Health> {
        let mut h = lock(&self.fed.health).get(id).cloned()?;
        h.healthy = h.failures < self.config.unhealthy_after;
        Some(h)
    }

    /// Notes that an upstream answered (on `endpoint`, if a link was just opened).
    fn record_success(&self, id: &str, endpoint: Option<usize>) {
        let mut all = lock(&self.fed.health);
        let h = all.entry(id.to_string()).or_default();
        h.checked_at = self.clock.now_ms();
        h.failures = 0;
        if let Some(e) = endpoint {
            h.endpoint = e;
        }
    }

    /// Notes that an upstream failed.
    fn record_failure(&self, id: &str, e: &UpstreamError) {
        let mut all = lock(&self.fed.health);
        let h = all.entry(id.to_string()).or_default();
        h.checked_at = self.clock.now_ms();
        h.failures = h.failures.saturating_add(1);
        h.last_error = Some(e.to_string());
    }

    /// The link serving `ctx` for `up`: the session's own (opened now if needed), or the
    /// shared one for sessionless calls and stdio upstreams.
    #[cfg_attr(target_family = "wasm", allow(clippy::arc_with_non_send_sync))]
    async fn link_for(&self, session: Option<&SessionState>, up: &Arc<Upstream>) -> Result<Arc<Link>, RpcError> {
        let shared = session.is_none() || up.def.transport == Transport::Stdio;
        let sid = if shared {
            POOLED
        } else {
            session.map_or(POOLED, |s| s.id.as_str())
        };
        let slot = lock(&self.fed.slots)
            .entry((sid.to_string(), up.id.clone()))
            .or_default()
            .clone();
        let mut guard = slot.link.lock().await;
        if let Some(l) = guard.as_ref() {
            if !l.is_broken() {
                return Ok(l.clone());
            }
            l.close(&self.spawner);
            *guard = None;
        }
        let health = self.health_of(&up.id);
        let circuit_open = health.as_ref().is_some_and(|h| !h.healthy);
        let health = health.unwrap_or_default();
        if circuit_open {
            // Circuit open: fail fast until a health check (or the retry delay) lets one through.
            let retry_ms = self.config.health_check_secs.saturating_mul(1000);
            if self.clock.now_ms().saturating_sub(health.checked_at) < retry_ms {
                return Err(RpcError::new(
                    INTERNAL_ERROR,
                    format!(
                        "upstream '{}' is unhealthy: {}",
                        up.def.name,
                        health.last_error.unwrap_or_default()
                    ),
                )
                .with_data(json!({"upstream": up.def.name, "reason": "unhealthy"})));
            }
        }
        if up.def.transport == Transport::Stdio {
            // Restart backoff: 0.5 s doubling to 30 s after repeated quick deaths.
            let starts = health.starts;
            if starts > 1 {
                let wait = (250u64 << starts.min(7)).min(30_000);
                let since = self.clock.now_ms().saturating_sub(health.checked_at);
                if since < wait && health.failures > 0 {
                    self.clock.sleep(std::time::Duration::from_millis(wait - since)).await;
                }
            }
            lock(&self.fed.health).entry(up.id.clone()).or_default().starts += 1;
        }
        let hello = match session.filter(|_| !shared) {
            Some(s) => Hello {
                capabilities: s.client_capabilities.clone(),
                client_info: s.client_info.clone(),
            },
            None => relayable_hello(),
        };
        let opened = Link::open(&self.net(), &up.def, &hello, health.endpoint, self.timeout_of(&up.def)).await;
        let (link, endpoint) = match opened {
            Ok(x) => x,
            Err(e) => {
                self.record_failure(&up.id, &e);
                return Err(upstream_error(&up.def.name, &e));
            }
        };
        self.record_success(&up.id, Some(endpoint));
        let link = Arc::new(link);
        if let Some(level) = session.and_then(|s| s.log_level) {
            if link.capabilities().get("logging").is_some() {
                let _ = link
                    .request(
                        "logging/setLevel",
                        Some(json!({"level": level})),
                        None,
                        self.timeout_of(&up.def),
                    )
                    .await;
            }
        }
        // What the upstream says outside calls: a session's link listens from the start (its
        // standalone stream is open before each call goes out, see `Link::listen`); a shared
        // duplex link takes list changes from it.
        if link.is_duplex() || !shared {
            self.listen(&link, up, (!shared).then(|| sid.to_string()));
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
    fn listen(self: &Inner, link: &Arc<Link>, up: &Arc<Upstream>, sid: Option<String>) {
        let (tx, mut rx) = unbounded::<Value>();
        let Some(me) = self.me() else { return };
        let keep: Box<dyn KeepOpen> = match &sid {
            Some(s) => {
                let (gw, s) = (Arc::downgrade(&me), s.clone());
                Box::new(move || gw.upgrade().is_some_and(|g| g.hub.has_stream(&s)))
            }
            None => Box::new(|| false),
        };
        link.listen(tx, keep, &self.spawner);
        let up = up.clone();
        let weak = Arc::downgrade(link);
        self.spawner.spawn(boxed(async move {
            while let Some(mut msg) = rx.next().await {
                let Some(link) = weak.upgrade() else { return };
                match &sid {
                    Some(s) => {
                        if let Some(call) = link.call_sink().filter(|_| !me.hub.has_stream(s)) {
                            match call.unbounded_send(msg) {
                                Ok(()) => continue,
                                // That call just ended: the session's stream (log) takes it.
                                Err(e) => msg = e.into_inner(),
                            }
                        }
                        me.relay(Dest::Session(s), Some(s), &link, &up, msg).await
                    }
                    None => me.relay_unrouted(&link, &up, msg).await,
                }
            }
        }));
    }

    /// A message from a shared link that belongs to no session.
    async fn relay_unrouted(&self, link: &Arc<Link>, up: &Arc<Upstream>, msg: Value) {
        let method = msg.get("method").and_then(Value::as_str).unwrap_or_default();
        if method.ends_with("/list_changed") {
            self.spawn_catalog_refresh(up.id.clone());
        } else if msg.get("id").is_some() {
            // A request nobody can answer: say so rather than leave the upstream waiting.
            let answer = json!({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "no client session to forward this request to"}});
            let _ = link.send_raw(answer.to_string()).await;
        }
    }

    /// Relays one message of the upstream to the client.
    async fn relay(&self, dest: Dest<'_>, sid: Option<&str>, link: &Arc<Link>, up: &Arc<Upstream>, mut msg: Value) {
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if method.is_empty() {
            return; // a stray response: nothing waits for it
        }
        if msg.get("id").is_some() {
            let Some(sid) = sid else {
                return self.relay_unrouted(link, up, msg).await;
            };
            let gid = format!("mcpgw-{}", self.fed.seq.fetch_add(1, Ordering::Relaxed) + 1);
            let upstream_id = std::mem::replace(&mut msg["id"], json!(gid));
            lock(&self.fed.pending).insert(
                (sid.to_string(), id_key(&json!(gid))),
                Pending {
                    link: link.clone(),
                    upstream_id,
                },
            );
        } else if method.ends_with("/list_changed") {
            // Lists are merged: refresh this upstream's catalog; clients hear about it from the
            // registry's own change detection, once.
            self.spawn_catalog_refresh(up.id.clone());
            return;
        } else if method == "notifications/cancelled" {
            // The upstream gave up on a request it sent the client: name it by the client's id.
            let Some(sid) = sid else { return };
            let target = msg["params"]["requestId"].clone();
            let mut pending = lock(&self.fed.pending);
            let found = pending
                .iter()
                .find(|((s, _), p)| s == sid && Arc::ptr_eq(&p.link, link) && p.upstream_id == target)
                .map(|(k, _)| k.clone());
            let Some(key) = found else { return };
            pending.remove(&key);
            msg["params"]["requestId"] = serde_json::from_str(&key.1).unwrap_or(Value::Null);
        }
        match dest {
            Dest::Call(out) => {
                let _ = out.unbounded_send(Outbound::Message(Json(msg.to_string())));
            }
            Dest::Session(s) => self.send_to_session(s, msg.to_string()).await,
        }
    }

    /// Forwards a request to `up` for the client and relays everything the upstream sends
    /// while it runs; the answer is the upstream's result, or its error, unchanged.
    pub(crate) async fn forward(
        &self,
        ctx: &CallCtx,
        up: &Arc<Upstream>,
        client_id: &Value,
        method: &str,
        params: Value,
    ) -> Result<Json, RpcError> {
        let timeout = self.timeout_of(&up.def);
        let sid = ctx.session.as_ref().map(|s| s.id.clone());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let link = self.link_for(ctx.session.as_ref(), up).await?;
            let (tx, mut rx) = unbounded::<Value>();
            let uid = link.next_id();
            let key = sid.as_ref().map(|s| (s.clone(), id_key(client_id)));
            if let Some(k) = &key {
                lock(&self.fed.inflight).insert(k.clone(), (link.clone(), uid));
            }
            let result = {
                // `timeout` is an idle timeout, started again by every message of the call;
                // `call_max_ms` bounds the whole call.
                let max = self.config.call_max_ms.max(timeout);
                let call = link.request_with_id(uid, method, Some(params.clone()), Some(&tx), max);
                futures::pin_mut!(call);
                let mut call = futures::FutureExt::fuse(call);
                loop {
                    let idle = self.clock.sleep(std::time::Duration::from_millis(timeout));
                    let mut idle = futures::FutureExt::fuse(idle);
                    futures::select_biased! {
                        r = call => break r,
                        m = rx.next() => {
                            if let Some(m) = m {
                                self.relay_in_call(ctx, sid.as_deref(), &link, up, m).await;
                            }
                        }
                        _ = idle => break Err(UpstreamError::Timeout(timeout)),
                    }
                }
            };
            if matches!(result, Err(UpstreamError::Timeout(_))) {
                // The upstream may still be working on it: tell it to stop.
                let params = json!({"requestId": uid, "reason": "timed out at the gateway"});
                let _ = link.notify("notifications/cancelled", Some(params)).await;
            }
            while let Ok(m) = rx.try_recv() {
                self.relay_in_call(ctx, sid.as_deref(), &link, up, m).await;
            }
            if let Some(k) = &key {
                lock(&self.fed.inflight).remove(k);
            }
            match result {
                Ok(answer) => {
                    if let Some(r) = answer.get("result") {
                        if let (Some(on), Some(uri)) = (subscribing(method), params["uri"].as_str()) {
                            link.watch(uri, on);
                        }
                        return Ok(Json(r.to_string()));
                    }
                    let e = &answer["error"];
                    let mut err = RpcError::new(
                        e["code"].as_i64().unwrap_or(INTERNAL_ERROR),
                        e["message"].as_str().unwrap_or("upstream error").to_string(),
                    );
                    if let Some(d) = e.get("data") {
                        err = err.with_data(d.clone());
                    }
                    return Err(err);
                }
                // The upstream forgot the session (it restarted) or the connection failed before
                // the request got through: once more on a fresh session.
                Err(UpstreamError::SessionGone | UpstreamError::Unreachable(_)) if attempt == 1 => continue,
                Err(e) => {
                    self.record_failure(&up.id, &e);
                    return Err(upstream_error(&up.def.name, &e));
                }
            }
        }
    }

    async fn relay_in_call(&self, ctx: &CallCtx, sid: Option<&str>, link: &Arc<Link>, up: &Arc<Upstream>, m: Value) {
        match &ctx.out {
            Some(out) => self.relay(Dest::Call(out), sid, link, up, m).await,
            None => self.relay_unrouted(link, up, m).await,
        }
    }

    /// The client answered one of the upstream requests relayed to it: pass it on. True if the
    /// id was one the gateway handed out.
    pub(crate) async fn answer_upstream(&self, sid: &str, id: &Value, outcome: Result<Value, RpcError>) -> bool {
        let Some(p) = lock(&self.fed.pending).remove(&(sid.to_string(), id_key(id))) else {
            return false;
        };
        let msg = match outcome {
            Ok(result) => json!({"jsonrpc": "2.0", "id": p.upstream_id, "result": result}),
            Err(e) => json!({"jsonrpc": "2.0", "id": p.upstream_id, "error": e}),
        };
        let _ = p.link.send_raw(msg.to_string()).await;
        true
    }

    /// The client cancelled one of its requests: cancel the upstream request serving it.
    pub(crate) async fn cancel_upstream(&self, sid: &str, params: Option<&Value>) {
        let Some(p) = params else { return };
        let key = (sid.to_string(), id_key(&p["requestId"]));
        let found = lock(&self.fed.inflight).get(&key).cloned();
        if let Some((link, uid)) = found {
            let mut params = json!({"requestId": uid});
            if let Some(r) = p.get("reason") {
                params["reason"] = r.clone();
            }
            let _ = link.notify("notifications/cancelled", Some(params)).await;
        }
    }

    /// The link slots of session `sid`.
    fn session_slots(&self, sid: &str) -> Vec<Arc<Slot>> {
        lock(&self.fed.slots)
            .iter()
            .filter(|((s, _), _)| s == sid)
            .map(|(_, slot)| slot.clone())
            .collect()
    }

    /// The client opened a stream of its own: the session's links reopen their standalone
    /// streams (parked while idle) so that what the upstreams say outside calls reaches it.
    pub(crate) fn wake_links(&self, sid: &str) {
        for slot in self.session_slots(sid) {
            // A link being opened starts listening on its own.
            if let Some(link) = slot.link.try_lock().and_then(|g| g.clone()) {
                let _ = link.wake();
            }
        }
    }

    /// Sends a notification to every open link of a session (roots changed, log level).
    pub(crate) async fn notify_links(&self, sid: &str, method: &str, params: Option<Value>, as_request: bool) {
        for slot in self.session_slots(sid) {
            let link = slot.link.lock().await.clone();
            let Some(link) = link.filter(|l| !l.is_broken()) else {
                continue;
            };
            if as_request {
                if link.capabilities().get("logging").is_some() {
                    let _ = link
                        .request(method, params.clone(), None, self.config.tool_timeout_ms)
                        .await;
                }
            } else {
                let _ = link.notify(method, params.clone()).await;
            }
        }
    }

    /// Removes the link slots whose (session, upstream) key matches and closes their links. A
    /// link still being opened is left to its opener (it is dropped with its slot).
    fn close_slots(&self, matches: impl Fn(&Key) -> bool) {
        let gone: Vec<Arc<Slot>> = {
            let mut slots = lock(&self.fed.slots);
            let keys: Vec<Key> = slots.keys().filter(|k| matches(k)).cloned().collect();
            keys.into_iter().filter_map(|k| slots.remove(&k)).collect()
        };
        for slot in gone {
            if let Some(l) = slot.link.try_lock().and_then(|g| g.clone()) {
                l.close(&self.spawner);
            }
        }
    }

    /// Closes a session's links (the session ended).
    pub(crate) fn drop_links(&self, sid: &str) {
        self.close_slots(|(s, _)| s == sid);
        lock(&self.fed.pending).retain(|(s, _), _| s != sid);
        lock(&self.fed.inflight).retain(|(s, _), _| s != sid);
    }

    /// Closes every link to one upstream (it was changed or deleted).
    pub(crate) fn drop_upstream_links(&self, up_id: &str) {
        self.close_slots(|(_, u)| u == up_id);
        lock(&self.fed.health).remove(up_id);
    }

    /// Notes that an upstream's catalog was just read and it answered.
    pub(crate) fn mark_refreshed(&self, up_id: &str) {
        let now = self.clock.now_ms();
        let mut all = lock(&self.fed.health);
        let h = all.entry(up_id.to_string()).or_default();
        h.failures = 0;
        h.checked_at = now;
        h.refreshed_at = now;
    }

    /// Closes every link (shutdown): no stdio process outlives the gateway.
    pub(crate) fn close_all_links(&self) {
        self.close_slots(|_| true);
    }

    /// Connects to an upstream that is not stored yet (or stored under `def`) and reads its
    /// catalog over a short-lived session.
    pub(crate) async fn read_catalog(&self, def: &UpstreamDef) -> Result<Catalog, UpstreamError> {
        let hello = relayable_hello();
        let timeout = self.timeout_of(def);
        let (link, _) = Link::open(&self.net(), def, &hello, 0, timeout).await?;
        let cat = fetch_catalog(&link, timeout).await;
        link.close(&self.spawner);
        cat
    }

    /// Re-reads a stored upstream's catalog over its shared link; stores it and announces list
    /// changes if it differs. Returns whether it changed.
    pub(crate) async fn refresh_catalog(&self, id: &str) -> Result<bool, RpcError> {
        let snap = self
            .registry
            .snapshot()
            .await
            .map_err(|e| RpcError::internal(e.to_string()))?;
        let up = snap
            .upstream(id)
            .cloned()
            .ok_or_else(|| RpcError::invalid_params(format!("no upstream '{id}'")))?;
        let link = self.link_for(None, &up).await?;
        let cat = match fetch_catalog(&link, self.timeout_of(&up.def)).await {
            Ok(c) => c,
            Err(e) => {
                self.record_failure(&up.id, &e);
                return Err(upstream_error(&up.def.name, &e));
            }
        };
        lock(&self.fed.health).entry(up.id.clone()).or_default().refreshed_at = self.clock.now_ms();
        let changed = self
            .registry
            .set_catalog(&up.id, cat)
            .await
            .map_err(|e| RpcError::internal(e.to_string()))?;
        if changed {
            self.refresh_registry().await;
        }
        Ok(changed)
    }

    fn spawn_catalog_refresh(&self, id: String) {
        if let Some(me) = self.me() {
            self.spawner.spawn(boxed(async move {
                let _ = me.refresh_catalog(&id).await;
            }));
        }
    }

    /// Health checks and catalog refreshes that are due: a `ping` on each upstream's shared
    /// link every `health_check_secs`; the catalog re-read every `refresh_secs`, after a
    /// recovery, and when it was never read. Returns how many upstreams are healthy.
    pub(crate) async fn check_upstreams(&self, force: bool) -> usize {
        let Ok(snap) = self.registry.snapshot().await else {
            return 0;
        };
        let now = self.clock.now_ms();
        let mut healthy = 0;
        for up in &snap.upstreams {
            let before = self.health_of(&up.id);
            let due = force
                || before.as_ref().is_none_or(|h| {
                    now.saturating_sub(h.checked_at) >= self.config.health_check_secs.saturating_mul(1000)
                });
            if !due {
                healthy += usize::from(before.is_some_and(|h| h.healthy));
                continue;
            }
            // A due check finds the circuit's retry delay over too: it may always try.
            let timeout = self.timeout_of(&up.def).min(10_000);
            let ok = match self.link_for(None, up).await {
                Ok(link) => match link.request("ping", None, None, timeout).await {
                    Ok(_) => true,
                    Err(e) => {
                        self.record_failure(&up.id, &e);
                        false
                    }
                },
                Err(_) => false,
            };
            if !ok {
                continue;
            }
            self.record_success(&up.id, None);
            healthy += 1;
            let refresh_ms = up
                .def
                .refresh_secs
                .unwrap_or(self.config.upstream_refresh_secs)
                .saturating_mul(1000);
            let recovered = before.as_ref().is_some_and(|h| !h.healthy);
            let never = before.as_ref().is_none_or(|h| h.refreshed_at == 0);
            let stale = before
                .as_ref()
                .is_some_and(|h| now.saturating_sub(h.refreshed_at) >= refresh_ms);
            if force || recovered || never || stale {
                let _ = self.refresh_catalog(&up.id).await;
            }
        }
        healthy
    }
}
