//! mcpgw-edge: mcpgw on Cloudflare Workers.
//!
//! The Worker hands every request to `mcpgw_core::Gateway::handle`; there is no MCP logic here.
//! Requests of an MCP session (streamable HTTP with `Mcp-Session-Id`, a new `initialize`, legacy
//! SSE) go to that session's Durable Object, [`McpSession`], named from the session id, which
//! runs its own gateway holding the session's state (in the object's storage, so it outlives
//! an eviction), open SSE streams and event log. Everything
//! else (the REST API, `/rpc`, operations) is answered by the Worker itself. The registry is in
//! D1 (binding `DB`) for both.
//!
//! Everything here is wasm-only; on the host the crate is empty so workspace-wide commands work.

#![cfg(target_family = "wasm")]

mod analytics;
mod cache;
mod convert;
mod d1_store;
mod fetch_client;
mod limiter;
mod object_sessions;
mod webcrypto;
mod ws;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use mcpgw_core::memory::{MemoryEventStore, MemorySessionStore};
use mcpgw_core::platform::BoxFuture;
use mcpgw_core::ports::{Clock, Ids, Spawner};
use mcpgw_core::{AssignSessionId, Gateway, GatewayConfig, Placement, Ports, ServerInfo};
use worker::{durable_object, event, Context, DurableObject, Env, Request, Response, Result, State};

/// The Worker→Durable Object header that names a new session. Stripped from client requests.
const NEW_SESSION_HEADER: &str = "x-mcpgw-new-session";
/// The Worker→Durable Object header carrying who the Worker let in (JSON of
/// [`mcpgw_core::Admitted`]). Stripped from client requests.
const ADMITTED_HEADER: &str = "x-mcpgw-admitted";
/// The Worker→Durable Object header naming the park a stateless request may park a call in
/// (the object's name). Stripped from client requests.
const PARK_HEADER: &str = "x-mcpgw-park";
/// The Durable Object namespace binding.
const SESSIONS_BINDING: &str = "SESSIONS";
/// How often a session object wakes while a stream is open (SSE keep-alives, list_changed for
/// registry writes made by the Worker), unless `MCPGW_UPKEEP_SECS` says otherwise.
const UPKEEP_SECS: u64 = 15;

/// Time from the JS runtime.
pub struct JsClock;

impl Clock for JsClock {
    fn now_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(Sleep::new(duration))
    }
}

/// A timer (`setTimeout`) that wakes whoever polled it last. (`worker::Delay` wakes the waker
/// of its first poll only: a sleep inside a stream whose reader changes between polls, such as
/// a response body pulled chunk by chunk, would never wake.)
struct Sleep {
    duration: Duration,
    state: std::rc::Rc<RefCell<(bool, Option<std::task::Waker>)>>,
    timer: Option<(wasm_bindgen::closure::Closure<dyn FnMut()>, i32)>,
}

impl Sleep {
    fn new(duration: Duration) -> Self {
        Self {
            duration,
            state: Default::default(),
            timer: None,
        }
    }
}

impl std::future::Future for Sleep {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        use wasm_bindgen::JsCast;
        {
            let mut st = self.state.borrow_mut();
            if st.0 {
                return std::task::Poll::Ready(());
            }
            st.1 = Some(cx.waker().clone());
        }
        if self.timer.is_none() {
            let state = self.state.clone();
            let fire = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(move || {
                let waker = {
                    let mut st = state.borrow_mut();
                    st.0 = true;
                    st.1.take()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            });
            let global: worker::worker_sys::web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
            let ms = self.duration.as_millis().min(i32::MAX as u128) as i32;
            match global.set_timeout_with_callback_and_timeout_and_arguments_0(fire.as_ref().unchecked_ref(), ms) {
                Ok(id) => self.timer = Some((fire, id)),
                // No timer can be set: it is over at once rather than never.
                Err(_) => return std::task::Poll::Ready(()),
            }
        }
        std::task::Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let (Some((_, id)), false) = (&self.timer, self.state.borrow().0) {
            use wasm_bindgen::JsCast;
            let global: worker::worker_sys::web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
            global.clear_timeout_with_handle(*id);
        }
    }
}

/// Random ids from the JS crypto source (getrandom's `js` backend).
pub struct CryptoIds;

impl Ids for CryptoIds {
    fn new_id(&self) -> String {
        let mut b = [0u8; 16];
        if getrandom::getrandom(&mut b).is_err() {
            // crypto.getRandomValues does not fail in a Worker; if it ever did, fall back to
            // Math.random rather than hand out a predictable id.
            for x in b.iter_mut() {
                *x = (js_sys::Math::random() * 256.0) as u8;
            }
        }
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}

/// Background work on the isolate's event loop. In the Worker a request may not wait on
/// another request's I/O; in a Durable Object the object's requests share its I/O.
pub struct LocalSpawner {
    in_object: bool,
}

impl Spawner for LocalSpawner {
    fn spawn(&self, work: BoxFuture<'static, ()>) {
        wasm_bindgen_futures::spawn_local(work);
    }
    fn waits_across_requests(&self) -> bool {
        self.in_object
    }
    // In an object, work goes on after the response that started it (its stream may close
    // mid-call); the Worker's own requests hold no sessions.
    fn outlives_requests(&self) -> bool {
        self.in_object
    }
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.trim().is_empty())
}

fn number<T: std::str::FromStr>(env: &Env, name: &str, default: T) -> Result<T> {
    match var(env, name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| worker::Error::RustError(format!("invalid setting {name}: '{v}' is not a number"))),
    }
}

/// Settings from wrangler vars: the same table ([`mcpgw_core::config::SETTINGS`]) native reads.
fn config(env: &Env) -> Result<GatewayConfig> {
    let invalid = |e: mcpgw_core::ConfigError| {
        worker::Error::RustError(format!("invalid setting {}: {}", e.variable(), e.message))
    };
    let mut cfg = GatewayConfig::from_vars(|n| var(env, n)).map_err(invalid)?;
    cfg.bind_host = var(env, "MCPGW_BIND_HOST").unwrap_or_else(|| "0.0.0.0".into());
    cfg.encryption_key = var(env, "MCPGW_ENCRYPTION_KEY").map(mcpgw_core::security::auth::Secret);
    cfg.validate().map_err(invalid)?;
    Ok(cfg)
}

// One isolate, one thread: the ports are !Send by design, and Arc is what the core shares.
/// The gateway of the Worker (`object` none) or of a Durable Object, whose sessions live in its
/// storage (`object`).
#[allow(clippy::arc_with_non_send_sync)]
async fn build_gateway(env: &Env, object: Option<&State>) -> Result<Gateway> {
    let mut cfg = config(env)?;
    if cfg.encryption_key.is_none() {
        cfg.deployment_key = Some(mcpgw_core::security::auth::Secret(deployment_key(env).await?));
    }
    let clock: Arc<JsClock> = Arc::new(JsClock);
    let in_object = object.is_some();
    let sessions: Arc<dyn mcpgw_core::ports::SessionStore> = match object {
        Some(state) => Arc::new(object_sessions::ObjectSessions::new(state.storage())),
        None => Arc::new(MemorySessionStore::default()),
    };
    let ports = Ports {
        store: Arc::new(d1_store::D1Store::new(env.d1("DB")?)),
        sessions,
        events: Arc::new(MemoryEventStore::default()),
        http: Arc::new(fetch_client::FetchClient),
        clock,
        ids: Arc::new(CryptoIds),
        spawner: Arc::new(LocalSpawner { in_object }),
        launcher: None,
        limiter: Arc::new(limiter::ObjectLimiter::new(env)?),
        crypto: Arc::new(webcrypto::WebCrypto),
        // A session lives in its own Durable Object: no other instance serves it.
        bus: None,
        cache: Arc::new(cache::ObjectCache::new(env)?),
        recorder: analytics::recorder(env).map(|a| Arc::new(a) as Arc<dyn mcpgw_core::observe::Recorder>),
    };
    let info = ServerInfo {
        name: "mcpgw".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    Gateway::new(cfg, ports, info).map_err(|e| worker::Error::RustError(e.to_string()))
}

thread_local! {
    /// The deployment's key (see [`d1_store::deployment_key`]), read once per isolate.
    static DEPLOYMENT_KEY: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The key the Worker and every Durable Object of this deployment share when
/// `MCPGW_ENCRYPTION_KEY` is not set: made by the first isolate that asks, kept in D1.
async fn deployment_key(env: &Env) -> Result<String> {
    if let Some(k) = DEPLOYMENT_KEY.with(|k| k.borrow().clone()) {
        return Ok(k);
    }
    // 32 random bytes as 64 hex digits.
    let fresh = format!("{}{}", CryptoIds.new_id(), CryptoIds.new_id());
    let key = d1_store::deployment_key(&env.d1("DB")?, &fresh).await.map_err(|e| {
        worker::Error::RustError(format!(
            "cannot keep the deployment key in D1 (or set MCPGW_ENCRYPTION_KEY): {e}"
        ))
    })?;
    DEPLOYMENT_KEY.with(|k| *k.borrow_mut() = Some(key.clone()));
    Ok(key)
}

/// The Durable Object namespace binding of the keyed objects: rate-limit buckets
/// ([`limiter`]) and cache entries ([`cache`]), one class.
pub const LIMITER_BINDING: &str = "LIMITER";

thread_local! {
    /// The Worker's own gateway (REST API, /rpc), built once per isolate.
    static WORKER_GATEWAY: RefCell<Option<Gateway>> = const { RefCell::new(None) };
}

async fn worker_gateway(env: &Env) -> Result<Gateway> {
    if let Some(gw) = WORKER_GATEWAY.with(|g| g.borrow().clone()) {
        return Ok(gw);
    }
    let gw = build_gateway(env, None).await?;
    if !gw.config().auth.required {
        worker::console_warn!("mcpgw: authentication is off (MCPGW_AUTH_REQUIRED=false): anyone who can reach the Worker can use and change it");
    }
    WORKER_GATEWAY.with(|g| *g.borrow_mut() = Some(gw.clone()));
    Ok(gw)
}

/// Cron Trigger (`[triggers]` in wrangler.toml): the upstream health checks and catalog
/// refreshes that are due, by the Worker's gateway. New catalogs go to D1, where every session's
/// Durable Object finds them on its next registry refresh and tells its client.
#[event(scheduled)]
async fn scheduled(_event: worker::ScheduledEvent, env: Env, _ctx: worker::ScheduleContext) {
    match worker_gateway(&env).await {
        Ok(gw) => {
            let healthy = gw.check_upstreams(false).await;
            worker::console_log!("mcpgw: upstream checks done, {healthy} healthy");
        }
        Err(e) => worker::console_error!("mcpgw: scheduled upkeep failed: {e}"),
    }
}

/// Hands `req` to the Durable Object named `session` (a session's id, or a park's name), with
/// the Worker's admission verdict and `extra`, an internal header.
async fn to_session(
    env: &Env,
    session: &str,
    req: &http::Request<bytes::Bytes>,
    url: &str,
    extra_header: Option<&str>,
) -> Result<Response> {
    // Who may use the session is decided here, once; the object trusts the Worker's verdict.
    let gw = worker_gateway(env).await?;
    let verdict = match req.extensions().get::<mcpgw_core::Admitted>() {
        Some(a) => Ok(a.clone()),
        None => gw.admit(req).await,
    };
    let admitted = match verdict {
        Ok(a) => serde_json::to_string(&a).map_err(|e| worker::Error::RustError(e.to_string()))?,
        Err(resp) => return convert::from_http(*resp),
    };
    // Session ids come from clients: anything that is not one of ours cannot name an object.
    if session.is_empty() || session.len() > 128 || !session.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return convert::from_http(gw.handle(req.clone()).await);
    }
    let ns = env.durable_object(SESSIONS_BINDING)?;
    let stub = ns.id_from_name(session)?.get_stub()?;
    let mut extra: Vec<(&str, &str)> = vec![(ADMITTED_HEADER, admitted.as_str())];
    if let Some(h) = extra_header {
        extra.push((h, session));
    }
    stub.fetch_with_request(convert::to_worker(req, url, &extra)?).await
}

/// The Worker entry point.
#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let gw = worker_gateway(&env).await?;
    let url = req.url()?.to_string();
    let mut head = convert::head_of(&req)?;
    head.headers_mut().remove(NEW_SESSION_HEADER);
    head.headers_mut().remove(ADMITTED_HEADER);
    head.headers_mut().remove(PARK_HEADER);
    // Cloudflare sets the client's address; anonymous callers are rate-limited per address.
    if let Some(ip) = head.headers().get("cf-connecting-ip").and_then(|v| v.to_str().ok()) {
        let ip = mcpgw_core::ClientIp(ip.to_string());
        head.extensions_mut().insert(ip);
    }
    // Host, Origin, credentials and rate limits (forwarded headers believed only from a
    // configured proxy, a WebSocket's query token read) before a byte of the body is read.
    let head = match gw.admit_head(head).await {
        Ok(h) => h,
        Err(refused) => return convert::from_http(refused),
    };
    let hreq = match convert::with_body(req, head, gw.config().max_body_bytes).await? {
        Ok(r) => r,
        Err(path) => return convert::from_http(gw.payload_too_large(&path)),
    };
    // The core says where: a session's object, a new session's, a park's (a stateless call
    // whose upstream may ask the client for input runs in an object of its own, where the retry
    // finds it), or the Worker.
    match gw.placement(&hreq).await {
        Placement::Session(id) => to_session(&env, &id, &hreq, &url, None).await,
        Placement::NewSession => {
            let id = CryptoIds.new_id();
            to_session(&env, &id, &hreq, &url, Some(NEW_SESSION_HEADER)).await
        }
        Placement::Park(park) => {
            let name = match park {
                mcpgw_core::Park::New => CryptoIds.new_id(),
                mcpgw_core::Park::At(name) => name,
            };
            to_session(&env, &name, &hreq, &url, Some(PARK_HEADER)).await
        }
        Placement::Here => convert::from_http(gw.handle(hreq).await),
    }
}

/// One MCP session: its gateway holds the session's state, open SSE streams and event log.
/// The object has one alarm: every 15 s while a stream is open (SSE keep-alives, list_changed
/// for registry writes the Worker made), else at the session's idle expiry, so an idle session
/// keeps no object awake.
#[durable_object]
pub struct McpSession {
    state: State,
    env: Env,
    gateway: RefCell<Option<Gateway>>,
    /// When the alarm is set for (ms since the epoch), as this object last set or read it;
    /// `None` until it has looked.
    alarm_at: RefCell<Option<Option<u64>>>,
    /// The bridge of this object's WebSocket, while the object is awake.
    ws_bridge: RefCell<Option<mcpgw_core::bridge::Bridge>>,
}

impl McpSession {
    fn upkeep(&self) -> Result<Duration> {
        Ok(Duration::from_secs(
            number(&self.env, "MCPGW_UPKEEP_SECS", UPKEEP_SECS)?.max(1),
        ))
    }

    /// Sets the one alarm for when the object is next needed: the next keep-alive while a
    /// stream is open, else just past the next session expiry, else never. Storage is written
    /// only when the alarm must move earlier (a later need is met by the earlier alarm, which
    /// schedules again when it fires), so requests of a busy session write nothing.
    async fn schedule(&self, gw: &Gateway, fired: bool) -> Result<()> {
        let now = worker::Date::now().as_millis();
        let want = if gw.open_streams() > 0 {
            Some(now + self.upkeep()?.as_millis() as u64)
        } else {
            // `expire` takes sessions idle for longer than the TTL: a second past it.
            gw.next_expiry().await.map(|t| t.max(now) + 1_000)
        };
        let storage = self.state.storage();
        let set = if fired {
            None
        } else {
            let known = *self.alarm_at.borrow();
            match known {
                Some(at) => at,
                None => storage.get_alarm().await?.map(|t| t.max(0) as u64),
            }
        };
        let next = match (want, set) {
            (Some(w), Some(s)) if s <= w => Some(s),
            (Some(w), _) => {
                storage.set_alarm((w.saturating_sub(now)) as i64).await?;
                Some(w)
            }
            (None, Some(_)) => {
                storage.delete_alarm().await?;
                None
            }
            (None, None) => None,
        };
        *self.alarm_at.borrow_mut() = Some(next);
        Ok(())
    }

    async fn gateway(&self) -> Result<Gateway> {
        if let Some(gw) = self.gateway.borrow().clone() {
            return Ok(gw);
        }
        let gw = build_gateway(&self.env, Some(&self.state)).await?;
        // Another request of this object may have built one meanwhile: keep the first.
        if let Some(first) = self.gateway.borrow().clone() {
            return Ok(first);
        }
        *self.gateway.borrow_mut() = Some(gw.clone());
        Ok(gw)
    }
}

impl DurableObject for McpSession {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            gateway: RefCell::new(None),
            alarm_at: RefCell::new(None),
            ws_bridge: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let gw = self.gateway().await?;
        let mut hreq = match convert::to_http(req, gw.config().max_body_bytes).await? {
            Ok(r) => r,
            Err(path) => return convert::from_http(gw.payload_too_large(&path)),
        };
        if let Some(id) = hreq.headers_mut().remove(NEW_SESSION_HEADER) {
            if let Ok(id) = id.to_str() {
                hreq.extensions_mut().insert(AssignSessionId(id.to_string()));
            }
        }
        // A park's object: its park ids name it, so that retries come back here.
        let park = hreq.headers_mut().remove(PARK_HEADER);
        if let Some(name) = park.as_ref().and_then(|v| v.to_str().ok()) {
            gw.park_under(name);
        }
        // Only the Worker reaches this object, and it strips this header from client requests.
        if let Some(a) = hreq.headers_mut().remove(ADMITTED_HEADER) {
            if let Ok(a) = serde_json::from_slice::<mcpgw_core::Admitted>(a.as_bytes()) {
                hreq.extensions_mut().insert(a);
            }
        }
        let client_ip = hreq
            .headers()
            .get("cf-connecting-ip")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut resp = gw.handle(hreq).await;
        self.schedule(&gw, false).await?;
        if let Some(accept) = resp.extensions_mut().remove::<mcpgw_core::ws::WsAccept>() {
            return ws::accept(&self.state, accept, client_ip);
        }
        convert::from_http(resp)
    }

    async fn websocket_message(
        &self,
        socket: worker::WebSocket,
        message: worker::WebSocketIncomingMessage,
    ) -> Result<()> {
        let gw = self.gateway().await?;
        ws::message(&self.ws_bridge, &gw, &socket, message)?;
        self.schedule(&gw, false).await
    }

    async fn websocket_close(
        &self,
        socket: worker::WebSocket,
        _code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        let gw = self.gateway().await?;
        ws::closed(&self.ws_bridge, &gw, &socket).await?;
        self.schedule(&gw, false).await
    }

    async fn websocket_error(&self, socket: worker::WebSocket, error: worker::Error) -> Result<()> {
        worker::console_log!("mcpgw: WebSocket error: {error}");
        let gw = self.gateway().await?;
        ws::closed(&self.ws_bridge, &gw, &socket).await
    }

    async fn alarm(&self) -> Result<Response> {
        let gw = self.gateway().await?;
        let streams = gw.keepalive();
        if streams > 0 {
            gw.refresh_registry().await;
        }
        let expired = gw.expire_sessions().await;
        // Rare by design (an idle session's object wakes once, at its expiry): worth a line.
        if streams == 0 || expired > 0 {
            worker::console_log!("mcpgw: object alarm: {streams} stream(s) open, {expired} session(s) expired");
        }
        self.schedule(&gw, true).await?;
        Response::ok("upkeep done")
    }
}
