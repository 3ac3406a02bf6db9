//! The client side of every upstream: a [`Link`] is one MCP session with an upstream server, over
//! streamable HTTP (each request a POST whose answer is JSON or an SSE stream), or over a duplex
//! pipe (legacy HTTP+SSE, or a stdio process) where answers come back on one shared stream and
//! are matched by id. Whatever the upstream sends besides the answer (progress, log messages,
//! sampling and elicitation requests) goes to the caller's sink as it arrives, untouched.
//! REST tools are called by [`rest::Rest`].
//!
//! Lives here: talking to one upstream. Not here: which link serves which client session, or
//! rewriting what an upstream says for a client (that is federation's).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::Either;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::model::{Catalog, Transport, UpstreamDef};
use crate::platform::{boxed, BoxFuture, BoxStream, MaybeSend, MaybeSync};
use crate::ports::{Clock, HttpClient, HttpError, InboundResponse, Launcher, OutboundRequest, Pipe, Spawner};
use crate::proto::method::{Method, ServerMethod};
use crate::proto::sse;
use crate::proto::version::{Era, ProtocolVersion};

mod answer;
mod calls;
mod catalog;
mod duplex;
pub(crate) mod follow;
pub(crate) use crate::queue::{bounded as sink, Refused as SinkError};
#[cfg(feature = "test-util")]
pub(crate) use duplex::endpoint as sse_endpoint;
/// What an upstream says to a call or a listener while it waits.
#[derive(Debug)]
pub(crate) enum Said {
    /// One of its messages.
    Message(Value),
    /// It closed the call's stream before the answer and is asked again after `retry_ms` (the
    /// SEP-1699 way); the call goes on.
    Paused { retry_ms: u64 },
}
/// Where an upstream's messages go while a call or a listener waits for them: bounded.
pub(crate) type Sink = crate::queue::Sender<Said>;
/// The receiving half of a [`Sink`].
pub(crate) type SinkRx = crate::queue::Receiver<Said>;
mod acting;
mod listen;
mod negotiate;
pub(crate) mod openapi;
pub(crate) mod rest;
mod stateless;
mod streamable_http;

use acting::credential;
pub(crate) use acting::Acting;
pub(crate) use answer::Answer;
use calls::{progress_token, CallSinks};
pub(crate) use catalog::{fetch_catalog, fetch_tool_names};
use duplex::open_sse;
pub(crate) use duplex::Duplex;
use listen::standalone_stream;
pub(crate) use stateless::{mirror_headers, param_headers};
use streamable_http::{http_error, HttpIo};

/// Why a link failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// Could not connect or send.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No answer in time.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The upstream no longer knows the session (HTTP 404): open a new one.
    #[error("the upstream ended the session")]
    SessionGone,
    /// The connection ended before the answer (the upstream died or closed the stream).
    #[error("the upstream closed the connection before answering")]
    Closed,
    /// The upstream answered something that is not MCP.
    #[error("invalid answer: {0}")]
    Protocol(String),
    /// This runtime cannot reach the upstream this way.
    #[error("{0}")]
    Unsupported(String),
    /// No authorization the upstream takes could be had (why).
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// The upstream acts for each caller, and this caller has not authorized the gateway there
    /// yet (or the authorization was dropped).
    #[error("it needs your authorization first")]
    NeedsConsent,
}

impl UpstreamError {
    /// True when a fresh session (or the next endpoint) might succeed.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unreachable(_) | UpstreamError::SessionGone | UpstreamError::Closed
        )
    }
}

/// What the platform offers a link.
#[derive(Clone)]
pub(crate) struct Net {
    pub http: Arc<dyn HttpClient>,
    pub clock: Arc<dyn Clock>,
    pub spawner: Arc<dyn Spawner>,
    pub launcher: Option<Arc<dyn Launcher>>,
    /// Largest answer read, in bytes.
    pub max_bytes: usize,
    /// How long a standalone stream with nothing to keep it stays open (see [`Link::listen`]).
    pub linger_ms: u64,
    /// Health checks' round trips are timed here.
    pub telemetry: crate::observe::Telemetry,
    /// Messages an upstream may have waiting for a call or a listener (see [`Sink`]).
    pub max_queue: usize,
    /// The gateway's own OAuth tokens for upstreams that authenticate it as a client.
    pub grants: Arc<crate::oauth::grants::ClientTokens>,
    /// Callers' own tokens for upstreams that act for each of them.
    pub vault: Arc<crate::oauth::vault::Vault>,
    /// Tokens exchanged from callers' own.
    pub exchanges: Arc<crate::oauth::exchange::Exchanges>,
}

/// Who the gateway says it is when it opens a link: the client's capabilities and identity for
/// a client session's link (so the upstream knows what it may ask for), empty for pooled ones.
#[derive(Debug, Clone)]
pub(crate) struct Hello {
    pub capabilities: Value,
    pub client_info: Value,
    /// The era tried first with an upstream that may speak both (streamable HTTP): the other
    /// is tried when the upstream does not speak this one.
    pub prefer: Era,
    /// For an upstream that acts for each caller: the caller the link serves.
    pub acting_for: Option<Acting>,
}

pub(crate) use crate::proto::classify::is_response;

/// One MCP session with an upstream.
pub(crate) struct Link {
    io: Io,
    clock: Arc<dyn Clock>,
    next_id: AtomicU64,
    /// The `initialize` result.
    pub init: Value,
    /// Set once the link failed in a way that needs a new session.
    broken: AtomicBool,
    /// The standalone stream's state (streamable HTTP; see [`Link::listen`]).
    listener: Mutex<Listener>,
    /// How long the standalone stream stays open with nothing to keep it.
    linger_ms: u64,
    /// Set for a 2026-07-28 upstream: no session; every request stamped from this hello.
    stateless: Option<Hello>,
    /// The [`UpstreamDef::revision`] it was opened under.
    pub revision: u64,
}

/// What a streamable link's standalone stream is doing, shared by the link and the task that
/// reads the stream. The stream is open while something keeps it (a call in flight, a resource
/// subscription, the client's own stream); after `linger_ms` with none of those and no message
/// it is parked (closed), and woken before the next call goes out.
#[derive(Default)]
struct Listener {
    /// Whether the link listens at all ([`Link::listen`] was called and the task runs).
    on: bool,
    /// False while the stream is being (re)opened from parked or at start: a call waits for it.
    settled: bool,
    /// Set while parked; sending on it wakes the task.
    parked: Option<oneshot::Sender<()>>,
    /// Calls waiting for the stream to be answered.
    waiters: Vec<oneshot::Sender<()>>,
    /// Held while the task runs; dropping it (with the link, or on close) stops the task.
    stop: Option<oneshot::Sender<()>>,
    /// The resources the session subscribed to through this link.
    watched: std::collections::HashSet<String>,
    /// Set while a 2026-07-28 listen stream is open: sending on it reopens the stream (with
    /// the resources watched now).
    renew: Option<oneshot::Sender<()>>,
}

enum Io {
    Http(Box<HttpIo>),
    Duplex(Arc<Duplex>),
}

/// Longest wait for an upstream's standalone stream to open before a call goes out.
const LISTEN_READY_MS: u64 = 5_000;

impl Drop for Link {
    fn drop(&mut self) {
        if let Io::Duplex(d) = &self.io {
            d.shutdown();
        }
    }
}

/// The definition's headers (checked when it was stored; an older row may still hold a bad one).
fn def_headers(def: &UpstreamDef) -> Result<http::HeaderMap, UpstreamError> {
    crate::http::header_map(&def.headers).map_err(|e| UpstreamError::Unsupported(e.to_string()))
}

/// The client an upstream's link sends with: the gateway's, with the upstream's own TLS
/// settings (CA bundle, client certificate) on every request when it has any.
// On wasm32 the client is not Send, and nothing there is shared between threads.
#[allow(clippy::arc_with_non_send_sync)]
fn with_tls(http: &Arc<dyn HttpClient>, def: &UpstreamDef) -> Arc<dyn HttpClient> {
    match &def.tls {
        None => http.clone(),
        Some(tls) => Arc::new(WithTls {
            inner: http.clone(),
            tls: Arc::new(tls.clone()),
        }),
    }
}

struct WithTls {
    inner: Arc<dyn HttpClient>,
    tls: Arc<crate::ports::UpstreamTls>,
}

#[cfg_attr(not(target_family = "wasm"), async_trait::async_trait)]
#[cfg_attr(target_family = "wasm", async_trait::async_trait(?Send))]
impl HttpClient for WithTls {
    async fn send(&self, mut request: OutboundRequest) -> Result<InboundResponse, HttpError> {
        request.tls = Some(self.tls.clone());
        self.inner.send(request).await
    }
}

/// Runs `fut` with a deadline.
async fn deadline<T>(
    clock: &Arc<dyn Clock>,
    ms: u64,
    fut: impl std::future::Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    let sleep = clock.sleep(Duration::from_millis(ms));
    futures::pin_mut!(fut);
    match futures::future::select(fut, sleep).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => Err(UpstreamError::Timeout(ms)),
    }
}

impl Link {
    /// Connects to the upstream (trying its endpoints from `first`), initializes a session and
    /// returns it with the index of the endpoint that answered.
    pub async fn open(
        net: &Net,
        def: &UpstreamDef,
        hello: &Hello,
        first: usize,
        timeout_ms: u64,
    ) -> Result<(Link, usize), UpstreamError> {
        if def.transport == Transport::Stdio {
            let link = Self::open_on(net, def, hello, String::new(), timeout_ms).await?;
            return Ok((link, 0));
        }
        let endpoints = def.endpoints();
        let mut last = UpstreamError::Unreachable("no endpoint".into());
        for k in 0..endpoints.len() {
            let i = (first + k) % endpoints.len();
            match Self::open_on(net, def, hello, endpoints[i].to_string(), timeout_ms).await {
                Ok(link) => return Ok((link, i)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn open_on(
        net: &Net,
        def: &UpstreamDef,
        hello: &Hello,
        endpoint: String,
        timeout_ms: u64,
    ) -> Result<Link, UpstreamError> {
        let http = with_tls(&net.http, def);
        let io = match def.transport {
            Transport::StreamableHttp => Io::Http(Box::new(HttpIo {
                http,
                clock: net.clock.clone(),
                url: endpoint.clone(),
                headers: def_headers(def)?,
                auth: credential(net, def, hello),
                session: Mutex::new(None),
                version: Mutex::new(None),
                max_bytes: net.max_bytes,
                calls: CallSinks::default(),
            })),
            Transport::Sse => Io::Duplex(deadline(&net.clock, timeout_ms, open_sse(net, http, &endpoint, def)).await?),
            Transport::Stdio => {
                let launcher = net.launcher.as_ref().ok_or_else(|| {
                    UpstreamError::Unsupported("stdio upstreams are available in the native gateway only".into())
                })?;
                let command = def.command.clone().unwrap_or_default();
                let (pipe, incoming) = launcher
                    .launch(&command, &def.args, &def.env)
                    .map_err(|e| UpstreamError::Unreachable(e.0))?;
                Io::Duplex(Duplex::start(pipe, incoming, &net.spawner))
            }
            Transport::Openapi => {
                return Err(UpstreamError::Unsupported(
                    "an OpenAPI upstream is called over plain HTTP, not over an MCP session".into(),
                ))
            }
        };
        let mut link = Link {
            io,
            clock: net.clock.clone(),
            next_id: AtomicU64::new(1),
            init: Value::Null,
            broken: AtomicBool::new(false),
            listener: Mutex::new(Listener::default()),
            linger_ms: net.linger_ms,
            stateless: None,
            revision: def.revision(),
        };
        // Streamable HTTP may speak either era: the preferred one first, then the other, or
        // what a refusal names (see `negotiate`).
        let both = def.transport == Transport::StreamableHttp;
        let mut made: Vec<negotiate::Offer> = Vec::with_capacity(negotiate::MAX_OFFERS);
        let mut offer = negotiate::Offer::first(hello.prefer, both);
        loop {
            made.push(offer);
            let refusal = match offer.era {
                Era::Stateless => link.discover(hello, timeout_ms).await?,
                Era::Session => link.initialize(hello, offer.version, timeout_ms).await?,
            };
            let Some(refusal) = refusal else {
                return Ok(link);
            };
            match negotiate::next(&made, &refusal, both) {
                Some(o) => offer = o,
                None => return Err(UpstreamError::Protocol(negotiate::failed(&refusal))),
            }
        }
    }

    /// `server/discover`: none (and the link stateless from now on) when the upstream serves
    /// 2026-07-28; its refusal when it does not (any answer but a usable discovery); an error
    /// only when it could not be reached.
    async fn discover(&mut self, hello: &Hello, timeout_ms: u64) -> Result<Option<negotiate::Refusal>, UpstreamError> {
        let Io::Http(h) = &self.io else {
            return Ok(Some(negotiate::Refusal::of(
                &Value::Null,
                "not a streamable HTTP upstream",
            )));
        };
        // A session a refused `initialize` left is not this request's.
        let _ = h.end_session();
        h.set_version(Some(stateless::STATELESS_REVISION));
        let params = stateless::stamp(None, hello);
        let id = self.next_id();
        let body = crate::proto::jsonrpc::request_text(id, Method::ServerDiscover.name(), Some(&params));
        let headers = stateless::mirror_headers(Method::ServerDiscover.name(), &params);
        let answered = deadline(&self.clock, timeout_ms, h.post_with(body, Some(id), None, headers)).await;
        let (answer, why) = match answered {
            Ok(Some(a)) => (a.into_value(), "server/discover was refused".to_string()),
            Ok(None) => (Value::Null, "server/discover was not answered".to_string()),
            Err(UpstreamError::Protocol(why)) => (Value::Null, format!("server/discover: {why}")),
            Err(e) => return Err(e),
        };
        let Some(init) = stateless::discovered(&answer) else {
            h.set_version(None);
            let why = match answer["error"]["message"].as_str() {
                Some(m) => format!("server/discover failed: {m}"),
                None => why,
            };
            return Ok(Some(negotiate::Refusal::of(&answer, why)));
        };
        self.init = init;
        self.stateless = Some(hello.clone());
        Ok(None)
    }

    /// The session era's handshake, offering `version`: `initialize`, then
    /// `notifications/initialized`. The upstream's refusal if it did not take it.
    async fn initialize(
        &mut self,
        hello: &Hello,
        version: ProtocolVersion,
        timeout_ms: u64,
    ) -> Result<Option<negotiate::Refusal>, UpstreamError> {
        let params = json!({
            "protocolVersion": version,
            "capabilities": hello.capabilities,
            "clientInfo": stateless::client_info(hello),
        });
        let answer = match self.request(Method::Initialize, Some(params), None, timeout_ms).await {
            Ok(a) => a,
            Err(UpstreamError::Protocol(why)) => {
                return Ok(Some(negotiate::Refusal::of(
                    &Value::Null,
                    format!("initialize failed: {why}"),
                )))
            }
            Err(e) => return Err(e),
        };
        let result = match answer.get("result") {
            Some(r) if r.is_object() => r.clone(),
            _ => {
                let msg = answer["error"]["message"].as_str().unwrap_or("no result");
                return Ok(Some(negotiate::Refusal::of(
                    &answer,
                    format!("initialize failed: {msg}"),
                )));
            }
        };
        let named = result["protocolVersion"].as_str().unwrap_or_default();
        let Some(version) = ProtocolVersion::served_in_session(named) else {
            let why = format!("unsupported protocol version '{named}'");
            return Ok(Some(negotiate::Refusal::of(&Value::Null, why)));
        };
        if let Io::Http(h) = &self.io {
            h.set_version(Some(version));
        }
        self.init = result;
        self.notify(Method::Initialized.name(), None).await.map(|()| None)
    }

    /// Ends the session: a DELETE to a streamable HTTP upstream (sent in the background), the
    /// end of the stream or process of a duplex one.
    pub fn close(&self, spawner: &Arc<dyn Spawner>) {
        self.mark_broken();
        self.listener().stop.take();
        match &self.io {
            Io::Duplex(d) => d.shutdown(),
            Io::Http(h) => {
                if let Some(headers) = h.end_session() {
                    let req = OutboundRequest {
                        method: http::Method::DELETE,
                        url: h.url.clone(),
                        headers,
                        body: None,
                        tls: None,
                    };
                    let http = h.http.clone();
                    spawner.spawn(boxed(async move {
                        let _ = http.send(req).await;
                    }));
                }
            }
        }
    }

    /// The protocol revision agreed with the upstream.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.init["protocolVersion"].as_str().and_then(ProtocolVersion::parse)
    }

    /// The upstream's capabilities.
    pub fn capabilities(&self) -> &Value {
        &self.init["capabilities"]
    }

    /// True for a duplex link (legacy SSE, stdio).
    pub fn is_duplex(&self) -> bool {
        matches!(self.io, Io::Duplex(_))
    }

    /// True for a link to a 2026-07-28 upstream (no session).
    pub fn is_stateless(&self) -> bool {
        self.stateless.is_some()
    }

    /// Checks that the upstream answers: `ping` in a session, `server/discover` without one.
    pub async fn ping(&self, timeout_ms: u64) -> Result<(), UpstreamError> {
        let method = if self.is_stateless() {
            Method::ServerDiscover
        } else {
            Method::Ping
        };
        self.request(method, None, None, timeout_ms).await.map(drop)
    }

    /// True once the link needs replacing.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire) || matches!(&self.io, Io::Duplex(d) if d.closed.load(Ordering::Acquire))
    }

    /// Marks the link as needing replacement.
    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::Release);
    }

    /// A fresh request id on this link.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a request and waits for its answer (the whole response object), sending anything
    /// else the upstream says meanwhile to `sink`.
    pub async fn request(
        &self,
        method: Method,
        params: Option<Value>,
        sink: Option<&Sink>,
        timeout_ms: u64,
    ) -> Result<Value, UpstreamError> {
        let id = self.next_id();
        self.request_with_id(id, method, params.as_ref(), sink, timeout_ms, http::HeaderMap::new())
            .await
            .map(Answer::into_value)
    }

    /// [`Link::request`] with an id from [`Link::next_id`] (so the caller can cancel it).
    pub async fn request_with_id(
        &self,
        id: u64,
        method: Method,
        params: Option<&Value>,
        sink: Option<&Sink>,
        timeout_ms: u64,
        extra: http::HeaderMap,
    ) -> Result<Answer, UpstreamError> {
        let stamped = self.stateless.as_ref().map(|hello| stateless::stamp(params, hello));
        let body = crate::proto::jsonrpc::request_text(id, method.name(), stamped.as_ref().or(params));
        // A duplex link registers its calls itself (it routes their messages). A streamable
        // one registers the call before it wakes a parked standalone stream, so the stream's
        // task cannot park again in between (it checks for calls under the listener's lock).
        let _in_flight = match &self.io {
            Io::Http(h) => {
                let guard = h.calls.enter(id, sink, progress_token(params));
                if sink.is_some() {
                    self.stream_ready(timeout_ms.min(LISTEN_READY_MS)).await;
                }
                Some(guard)
            }
            Io::Duplex(_) => None,
        };
        let r = deadline(&self.clock, timeout_ms, async {
            match &self.io {
                Io::Http(h) => {
                    let mut headers = match &stamped {
                        Some(p) => stateless::mirror_headers(method.name(), p),
                        None => http::HeaderMap::new(),
                    };
                    headers.extend(extra);
                    h.post_with(body, Some(id), sink, headers)
                        .await?
                        .ok_or_else(|| UpstreamError::Protocol("no answer".into()))
                }
                Io::Duplex(d) => d.call(id, body, sink, progress_token(params)).await.map(Answer::Value),
            }
        })
        .await;
        if let Err(e) = &r {
            if e.is_connection() {
                self.mark_broken();
            }
        }
        r
    }

    /// The sink of the newest call in flight on a streamable HTTP link: where a request the
    /// upstream sends on its standalone stream goes when the client has no stream of its own to
    /// take it (servers on the TS SDK 1.x send a tool's sampling and elicitation requests there).
    pub fn call_sink(&self, msg: &Value) -> Option<Sink> {
        match &self.io {
            Io::Http(h) => h.calls.target(msg),
            Io::Duplex(_) => None,
        }
    }

    /// The caller presented `token` with the request about to go out on this link: an
    /// exchange for it (a link acting for one caller) uses the newest.
    pub fn present(&self, token: Option<&str>) {
        if let Io::Http(h) = &self.io {
            if let Some(c) = &h.auth {
                c.present(token);
            }
        }
    }

    /// Marks the link as shared by several clients' sessions (see [`CallSinks`]).
    pub fn mark_shared(&self) {
        let sinks = match &self.io {
            Io::Http(h) => &h.calls,
            Io::Duplex(d) => &d.sinks,
        };
        sinks.shared.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Tells the upstream to stop working on request `uid` (`notifications/cancelled`).
    pub async fn cancel(&self, uid: u64, reason: &str) {
        // Without a session the request's own stream is the call: closing it cancels.
        if self.is_stateless() {
            return;
        }
        let params = json!({"requestId": uid, "reason": reason});
        let _ = self.notify(Method::Cancelled.name(), Some(params)).await;
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), UpstreamError> {
        let mut msg = json!({"jsonrpc": "2.0", "method": method});
        if let Some(p) = params {
            msg["params"] = p;
        }
        self.send_raw(msg.to_string()).await
    }

    /// Sends a message that expects no answer (a notification, or a response to the upstream's
    /// own request).
    pub async fn send_raw(&self, body: String) -> Result<(), UpstreamError> {
        let r = match &self.io {
            Io::Http(h) => h.post(body, None, None).await.map(|_| ()),
            Io::Duplex(d) => d.send(body).await,
        };
        if let Err(e) = &r {
            if e.is_connection() {
                self.mark_broken();
            }
        }
        r
    }

    /// Routes what the upstream says outside any request to `sink`: on a duplex link, messages
    /// arriving while nothing is in flight; on streamable HTTP, the standalone GET stream, read
    /// in the background until the link is closed or dropped. The stream is reopened whenever it
    /// ends (with `Last-Event-ID`, after the upstream's `retry:` delay, backing off while it
    /// fails). It is kept open while a call is in flight, while the session is subscribed to a
    /// resource through the link, and while `keep()` says so (the client has a stream of its
    /// own); without any of these it is closed after `linger_ms` with no message, and reopened
    /// before the next call is forwarded (which waits for it: the upstream may send that call's
    /// sampling or elicitation on it). An upstream that answers 405 (or another client error but
    /// 408, 409 and 429) offers no such stream; 404 means its session is gone and the link is
    /// marked broken.
    pub fn listen(self: &Arc<Self>, sink: Sink, keep: Box<dyn KeepOpen>, spawner: &Arc<dyn Spawner>) {
        match &self.io {
            Io::Duplex(d) => {
                *d.fallback.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
            }
            Io::Http(_) => {
                let (stop_tx, stop_rx) = oneshot::channel::<()>();
                {
                    let mut l = self.listener();
                    if l.on {
                        return;
                    }
                    l.on = true;
                    l.stop = Some(stop_tx);
                }
                let task = standalone_stream(Arc::downgrade(self), self.clock.clone(), sink, keep, stop_rx);
                spawner.spawn(boxed(task));
            }
        }
    }

    /// Whether [`Link::listen`] has started (on a streamable HTTP link).
    pub fn is_listening(&self) -> bool {
        matches!(self.io, Io::Http(_)) && self.listener().on
    }

    fn listener(&self) -> std::sync::MutexGuard<'_, Listener> {
        self.listener.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes a parked standalone stream (the client opened a stream of its own, or a call is
    /// about to go out); the receiver resolves once the stream is answered, or is `None` when
    /// there is nothing to wait for.
    pub fn wake(&self) -> Option<oneshot::Receiver<()>> {
        let mut l = self.listener();
        if !l.on {
            return None;
        }
        if let Some(kick) = l.parked.take() {
            let _ = kick.send(());
        }
        if l.settled {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        l.waiters.push(tx);
        Some(rx)
    }

    /// Waits (at most `bound_ms`) until the standalone stream is answered, waking it if parked.
    async fn stream_ready(&self, bound_ms: u64) {
        if let Some(rx) = self.wake() {
            let _ = futures::future::select(rx, self.clock.sleep(Duration::from_millis(bound_ms))).await;
        }
    }

    /// Notes a resource subscription made (`on`) or ended through this link: while the session
    /// is subscribed to any, the standalone stream that brings the updates stays open.
    pub fn watch(&self, uri: &str, on: bool) {
        let mut l = self.listener();
        let changed = if on {
            l.watched.insert(uri.to_string())
        } else {
            l.watched.remove(uri)
        };
        // A 2026-07-28 upstream is told what to watch when the listen stream opens.
        if changed {
            if let Some(renew) = l.renew.take() {
                let _ = renew.send(());
            }
        }
    }

    /// The request that opens the stream of what the upstream says outside calls: the
    /// standalone GET (resumed from `last_event_id`), or for a 2026-07-28 upstream a
    /// `subscriptions/listen` for list changes and the watched resources' updates.
    fn stream_request(&self, last_event_id: Option<&str>) -> Option<OutboundRequest> {
        let Io::Http(h) = &self.io else { return None };
        let Some(hello) = &self.stateless else {
            return Some(h.get_request(last_event_id));
        };
        let mut uris: Vec<String> = self.listener().watched.iter().cloned().collect();
        uris.sort();
        let params = json!({"notifications": {"toolsListChanged": true, "promptsListChanged": true,
            "resourcesListChanged": true, "resourceSubscriptions": uris}});
        let params = stateless::stamp(Some(&params), hello);
        let listen = Method::SubscriptionsListen;
        let body = crate::proto::jsonrpc::request_text(self.next_id(), listen.name(), Some(&params));
        let mut headers = h.headers("application/json, text/event-stream");
        headers.extend(stateless::mirror_headers(listen.name(), &params));
        Some(OutboundRequest {
            method: http::Method::POST,
            url: h.url.clone(),
            headers,
            body: Some(Bytes::from(body)),
            tls: None,
        })
    }

    /// Arms the reopening of a 2026-07-28 listen stream when what it watches changes.
    fn renewal(&self) -> Option<oneshot::Receiver<()>> {
        self.stateless.as_ref()?;
        let (tx, rx) = oneshot::channel();
        self.listener().renew = Some(tx);
        Some(rx)
    }

    /// Called by the stream's task after `linger_ms` without a message: parks the stream (and
    /// returns the receiver that wakes it) unless something keeps it open. Under the listener's
    /// lock, so a call registered before it looks (see [`Link::request_with_id`]) keeps it.
    fn try_park(&self, keep: &dyn KeepOpen) -> Option<oneshot::Receiver<()>> {
        let Io::Http(h) = &self.io else { return None };
        let mut l = self.listener();
        if !h.calls.is_empty() || !l.watched.is_empty() || keep.keep() {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        l.parked = Some(tx);
        l.settled = false;
        Some(rx)
    }

    /// The stream was answered (or refused, or failed): calls need not wait for it.
    fn settle(&self) {
        let mut l = self.listener();
        l.settled = true;
        for w in l.waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

/// Whether something outside the link keeps its standalone stream open (the client's own
/// stream, for a session's link).
pub(crate) trait KeepOpen: MaybeSend + MaybeSync {
    fn keep(&self) -> bool;
}

impl<F: Fn() -> bool + MaybeSend + MaybeSync> KeepOpen for F {
    fn keep(&self) -> bool {
        self()
    }
}
