//! Federation's client side: a [`Link`] is one MCP session with an upstream server, over
//! streamable HTTP (each request a POST whose answer is JSON or an SSE stream), or over a duplex
//! pipe (legacy HTTP+SSE, or a stdio process) where answers come back on one shared stream and
//! are matched by id. Whatever the upstream sends besides the answer (progress, log messages,
//! sampling and elicitation requests) goes to the caller's sink as it arrives, untouched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::{mpsc::UnboundedSender, oneshot};
use futures::future::Either;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::model::{Catalog, Transport, UpstreamDef};
use crate::platform::{boxed, BoxFuture, BoxStream, MaybeSend, MaybeSync};
use crate::ports::{Clock, HttpClient, HttpError, InboundResponse, Launcher, OutboundRequest, Pipe, Spawner};
use crate::proto::sse;
use crate::proto::version::ProtocolVersion;

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
}

/// Who the gateway says it is when it opens a link: the client's capabilities and identity for
/// a client session's link (so the upstream knows what it may ask for), empty for pooled ones.
#[derive(Debug, Clone)]
pub(crate) struct Hello {
    pub capabilities: Value,
    pub client_info: Value,
}

/// The sinks of the calls in flight on a link, oldest first: what the upstream says outside any
/// call goes with the newest (a duplex link's unrelated messages; a streamable link's standalone
/// stream when the client has none of its own).
#[derive(Default)]
struct CallSinks(Mutex<Vec<(u64, UnboundedSender<Value>)>>);

impl CallSinks {
    /// Registers call `id`'s sink until the returned guard drops (however the call ends).
    fn enter(&self, id: u64, sink: Option<&UnboundedSender<Value>>) -> CallGuard<'_> {
        if let Some(s) = sink {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push((id, s.clone()));
        }
        CallGuard(self, id)
    }

    fn newest(&self) -> Option<UnboundedSender<Value>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .map(|(_, s)| s.clone())
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// Removes its call's sink from [`CallSinks`] when dropped.
struct CallGuard<'a>(&'a CallSinks, u64);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.0
             .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(i, _)| *i != self.1);
    }
}

/// True for a JSON-RPC response (an id and a result or error, no method).
pub(crate) fn is_response(v: &Value) -> bool {
    v.get("method").is_none() && v.get("id").is_some() && (v.get("result").is_some() || v.get("error").is_some())
}

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
}

enum Io {
    Http(HttpIo),
    Duplex(Arc<Duplex>),
}

struct HttpIo {
    http: Arc<dyn HttpClient>,
    clock: Arc<dyn Clock>,
    url: String,
    headers: Vec<(String, String)>,
    session: Mutex<Option<String>>,
    version: Mutex<Option<ProtocolVersion>>,
    max_bytes: usize,
    /// The calls in flight (see [`Link::call_sink`]).
    calls: CallSinks,
}

/// Longest wait for an upstream's standalone stream to open before a call goes out.
const LISTEN_READY_MS: u64 = 5_000;
/// Resumptions of one POST stream in a row that brought no event before giving up.
const MAX_RESUMES: u32 = 5;
/// The wait before resuming a stream when the upstream sent no `retry:` (SEP-1699).
const DEFAULT_RETRY_MS: u64 = 500;
/// The longest wait before resuming or reopening a stream, whatever `retry:` asked for.
const MAX_RETRY_MS: u64 = 30_000;

impl Drop for Link {
    fn drop(&mut self) {
        if let Io::Duplex(d) = &self.io {
            d.shutdown();
        }
    }
}

async fn read_all(resp: InboundResponse, limit: usize) -> Result<Bytes, UpstreamError> {
    let mut body = resp.body;
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(UpstreamError::Protocol(format!("answer larger than {limit} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

fn content_type(resp: &InboundResponse) -> String {
    resp.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn http_error(e: HttpError) -> UpstreamError {
    match e {
        HttpError::Timeout(ms) => UpstreamError::Timeout(ms),
        // The upstream may have the request: it is not sent again.
        HttpError::Lost(_) => UpstreamError::Closed,
        other => UpstreamError::Unreachable(other.to_string()),
    }
}

impl HttpIo {
    fn headers(&self, accept: &str) -> Vec<(String, String)> {
        let mut h = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("accept".to_string(), accept.to_string()),
        ];
        if let Some(s) = self.session.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            h.push(("mcp-session-id".into(), s));
        }
        if let Some(v) = *self.version.lock().unwrap_or_else(|e| e.into_inner()) {
            h.push(("mcp-protocol-version".into(), v.as_str().into()));
        }
        h.extend(self.headers.iter().cloned());
        h
    }

    /// POSTs one message; returns its answer if `expect` names a request id, else `None`.
    async fn post(
        &self,
        body: String,
        expect: Option<u64>,
        sink: Option<&UnboundedSender<Value>>,
    ) -> Result<Option<Value>, UpstreamError> {
        let had_session = self.session.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        let resp = self
            .http
            .send(OutboundRequest {
                method: http::Method::POST,
                url: self.url.clone(),
                headers: self.headers("application/json, text/event-stream"),
                body: Some(Bytes::from(body)),
            })
            .await
            .map_err(http_error)?;
        if !had_session {
            if let Some(s) = resp.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
                *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.to_string());
            }
        }
        let status = resp.status;
        if status == http::StatusCode::NOT_FOUND && had_session {
            return Err(UpstreamError::SessionGone);
        }
        if !status.is_success() {
            let text = read_all(resp, 4096).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            // A JSON-RPC error body is the upstream's answer, whatever the status.
            if let (Some(id), Ok(v)) = (expect, serde_json::from_str::<Value>(&text)) {
                if v.get("error").is_some() && v.get("id").and_then(Value::as_u64) == Some(id) {
                    return Ok(Some(v));
                }
            }
            return Err(UpstreamError::Protocol(format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        let Some(id) = expect else {
            return Ok(None);
        };
        if content_type(&resp).starts_with("text/event-stream") {
            return self.read_answer_stream(resp, id, sink).await.map(Some);
        }
        let bytes = read_all(resp, self.max_bytes).await?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| UpstreamError::Protocol(format!("the answer is not JSON: {e}")))?;
        let found = match v {
            Value::Array(items) => items.into_iter().find(|m| m["id"].as_u64() == Some(id)),
            m if m["id"].as_u64() == Some(id) && is_response(&m) => Some(m),
            _ => None,
        };
        found
            .map(Some)
            .ok_or_else(|| UpstreamError::Protocol("the answer is not a response to the request".into()))
    }
    /// Reads a POST's SSE stream until the answer to `id`, passing everything else to `sink`.
    /// A stream that ends (or breaks) before its answer after giving an event id is resumed the
    /// SEP-1699 way: after the `retry:` delay, a GET with `Last-Event-ID`, on which the upstream
    /// replays what followed and goes on with the same request.
    async fn read_answer_stream(
        &self,
        resp: InboundResponse,
        id: u64,
        sink: Option<&UnboundedSender<Value>>,
    ) -> Result<Value, UpstreamError> {
        let mut parser = sse::Parser::with_limit(self.max_bytes);
        let mut body = resp.body;
        let mut idle_resumes = 0;
        loop {
            let mut got_event = false;
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else { break };
                for ev in parser.push(&chunk).map_err(UpstreamError::Protocol)? {
                    got_event = true;
                    let Some(data) = ev.into_message() else {
                        continue;
                    };
                    let Ok(msg) = serde_json::from_str::<Value>(&data) else {
                        return Err(UpstreamError::Protocol("an SSE event is not JSON".into()));
                    };
                    if is_response(&msg) {
                        if msg["id"].as_u64() == Some(id) {
                            return Ok(msg);
                        }
                    } else if let Some(s) = sink {
                        let _ = s.unbounded_send(msg);
                    }
                }
            }
            let Some(last) = parser.last_event_id().map(str::to_string) else {
                return Err(UpstreamError::Closed);
            };
            idle_resumes = if got_event { 1 } else { idle_resumes + 1 };
            if idle_resumes > MAX_RESUMES {
                return Err(UpstreamError::Closed);
            }
            let wait = parser.retry_ms().unwrap_or(DEFAULT_RETRY_MS).min(MAX_RETRY_MS);
            self.clock.sleep(Duration::from_millis(wait)).await;
            parser.resume();
            let resp = self.get_stream(Some(&last)).await.map_err(|_| UpstreamError::Closed)?;
            if !resp.status.is_success() {
                // The request may have run: it is not sent again, whatever the status says.
                return Err(UpstreamError::Closed);
            }
            body = resp.body;
        }
    }

    /// Opens a GET stream: the standalone one, or (with `last_event_id`) the resumption of a
    /// stream that ended.
    async fn get_stream(&self, last_event_id: Option<&str>) -> Result<InboundResponse, UpstreamError> {
        self.http
            .send(self.get_request(last_event_id))
            .await
            .map_err(http_error)
    }

    /// The GET that opens (or, with `last_event_id`, resumes) a stream.
    fn get_request(&self, last_event_id: Option<&str>) -> OutboundRequest {
        let mut headers = self.headers("text/event-stream");
        headers.retain(|(k, _)| k != "content-type");
        if let Some(id) = last_event_id {
            headers.push(("last-event-id".into(), id.to_string()));
        }
        OutboundRequest {
            method: http::Method::GET,
            url: self.url.clone(),
            headers,
            body: None,
        }
    }
}

/// A duplex connection: messages go out through the [`Pipe`], everything comes back on one
/// stream read by a background task and dispatched here.
pub(crate) struct Duplex {
    pipe: Box<dyn Pipe>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    /// The requests in flight: unrelated messages go with the newest.
    sinks: CallSinks,
    /// Where messages go when no request is in flight.
    fallback: Mutex<Option<UnboundedSender<Value>>>,
    closed: AtomicBool,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl Duplex {
    /// Starts reading `incoming` on `spawner`; the returned duplex sends through `pipe`.
    #[cfg_attr(target_family = "wasm", allow(clippy::arc_with_non_send_sync))]
    fn start(pipe: Box<dyn Pipe>, incoming: BoxStream<'static, String>, spawner: &Arc<dyn Spawner>) -> Arc<Self> {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let d = Arc::new(Duplex {
            pipe,
            pending: Mutex::new(HashMap::new()),
            sinks: CallSinks::default(),
            fallback: Mutex::new(None),
            closed: AtomicBool::new(false),
            stop: Mutex::new(Some(stop_tx)),
        });
        let reader = d.clone();
        spawner.spawn(boxed(async move {
            let mut incoming = incoming;
            let mut stop = stop_rx;
            while let Either::Left((Some(line), _)) = futures::future::select(incoming.next(), &mut stop).await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    reader.feed(v);
                }
            }
            reader.fail_all();
        }));
        d
    }

    fn feed(&self, msg: Value) {
        if is_response(&msg) {
            if let Some(id) = msg["id"].as_u64() {
                let tx = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.send(msg);
                }
            }
            return;
        }
        let target = self
            .sinks
            .newest()
            .or_else(|| self.fallback.lock().unwrap_or_else(|e| e.into_inner()).clone());
        if let Some(t) = target {
            let _ = t.unbounded_send(msg);
        }
    }

    fn fail_all(&self) {
        self.closed.store(true, Ordering::Release);
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.sinks.clear();
    }

    fn shutdown(&self) {
        if let Some(s) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = s.send(());
        }
        self.pipe.close();
        self.fail_all();
    }

    async fn send(&self, body: String) -> Result<(), UpstreamError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(UpstreamError::Closed);
        }
        self.pipe.send(body).await.map_err(UpstreamError::Unreachable)
    }

    async fn call(&self, id: u64, body: String, sink: Option<&UnboundedSender<Value>>) -> Result<Value, UpstreamError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(UpstreamError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        // However this call ends (answer, error, or its future dropped on timeout), forget it.
        struct Forget<'a>(&'a Duplex, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.1);
            }
        }
        let _forget = Forget(self, id);
        let _in_flight = self.sinks.enter(id, sink);
        self.send(body).await?;
        rx.await.map_err(|_| UpstreamError::Closed)
    }
}

/// Resolves the legacy transport's `endpoint` event against the stream's URL.
fn resolve(base: &str, target: &str) -> String {
    if target.starts_with("http://") || target.starts_with("https://") {
        return target.to_string();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    if target.starts_with('/') {
        return format!("{}{target}", &base[..authority_end]);
    }
    let path = &base[..base.split('?').next().unwrap_or(base).len()];
    let dir_end = path
        .rfind('/')
        .filter(|i| *i >= authority_end)
        .map_or(path.len(), |i| i + 1);
    let dir = &path[..dir_end];
    if dir.ends_with('/') {
        format!("{dir}{target}")
    } else {
        format!("{dir}/{target}")
    }
}

/// The legacy transport's sending half: each message is a POST to the endpoint.
struct SsePipe {
    http: Arc<dyn HttpClient>,
    endpoint: String,
    headers: Vec<(String, String)>,
}

impl Pipe for SsePipe {
    fn send(&self, message: String) -> BoxFuture<'static, Result<(), String>> {
        let http = self.http.clone();
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        headers.extend(self.headers.iter().cloned());
        let req = OutboundRequest {
            method: http::Method::POST,
            url: self.endpoint.clone(),
            headers,
            body: Some(Bytes::from(message)),
        };
        boxed(async move {
            let r = http.send(req).await.map_err(|e| e.to_string())?;
            if r.status.is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {}", r.status))
            }
        })
    }
    fn close(&self) {}
}

fn header_pairs(def: &UpstreamDef) -> Vec<(String, String)> {
    def.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Opens the legacy SSE stream, waits for its endpoint, and starts the reader.
async fn open_sse(net: &Net, url: &str, def: &UpstreamDef) -> Result<Arc<Duplex>, UpstreamError> {
    let mut headers = vec![("accept".to_string(), "text/event-stream".to_string())];
    headers.extend(header_pairs(def));
    let resp = net
        .http
        .send(OutboundRequest {
            method: http::Method::GET,
            url: url.to_string(),
            headers,
            body: None,
        })
        .await
        .map_err(http_error)?;
    if !resp.status.is_success() {
        return Err(UpstreamError::Unreachable(format!("HTTP {} from {url}", resp.status)));
    }
    let mut parser = sse::Parser::with_limit(net.max_bytes);
    let mut body = resp.body;
    let mut early = Vec::new();
    let endpoint = 'found: loop {
        let Some(chunk) = body.next().await else {
            return Err(UpstreamError::Closed);
        };
        let chunk = chunk.map_err(|_| UpstreamError::Closed)?;
        let mut events = parser.push(&chunk).map_err(UpstreamError::Protocol)?.into_iter();
        while let Some(ev) = events.next() {
            if ev.event.as_deref() == Some("endpoint") {
                early.extend(events.filter_map(sse::Event::into_message));
                break 'found resolve(url, ev.data.trim());
            }
        }
    };
    let rest = futures::stream::unfold((parser, body), |(mut parser, mut body)| async move {
        loop {
            let chunk = body.next().await?.ok()?;
            let events = parser.push(&chunk).ok()?;
            let data: Vec<String> = events.into_iter().filter_map(sse::Event::into_message).collect();
            if !data.is_empty() {
                return Some((futures::stream::iter(data), (parser, body)));
            }
        }
    })
    .flatten();
    let incoming = crate::platform::boxed_stream(futures::stream::iter(early).chain(rest));
    let pipe = SsePipe {
        http: net.http.clone(),
        endpoint,
        headers: header_pairs(def),
    };
    Ok(Duplex::start(Box::new(pipe), incoming, &net.spawner))
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
        let io = match def.transport {
            Transport::StreamableHttp => Io::Http(HttpIo {
                http: net.http.clone(),
                clock: net.clock.clone(),
                url: endpoint.clone(),
                headers: header_pairs(def),
                session: Mutex::new(None),
                version: Mutex::new(None),
                max_bytes: net.max_bytes,
                calls: CallSinks::default(),
            }),
            Transport::Sse => Io::Duplex(deadline(&net.clock, timeout_ms, open_sse(net, &endpoint, def)).await?),
            Transport::Stdio => {
                let launcher = net.launcher.as_ref().ok_or_else(|| {
                    UpstreamError::Unsupported("stdio upstreams are available in the native gateway only".into())
                })?;
                let command = def.command.clone().unwrap_or_default();
                let (pipe, incoming) = launcher
                    .launch(&command, &def.args, &def.env)
                    .map_err(UpstreamError::Unreachable)?;
                Io::Duplex(Duplex::start(pipe, incoming, &net.spawner))
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
        };
        let params = json!({
            "protocolVersion": ProtocolVersion::LATEST,
            "capabilities": hello.capabilities,
            "clientInfo": if hello.client_info.is_object() { hello.client_info.clone() } else { json!({"name": "mcpgw", "version": env!("CARGO_PKG_VERSION")}) },
        });
        let answer = link.request("initialize", Some(params), None, timeout_ms).await?;
        let result = match answer.get("result") {
            Some(r) if r.is_object() => r.clone(),
            _ => {
                let msg = answer["error"]["message"].as_str().unwrap_or("no result").to_string();
                return Err(UpstreamError::Protocol(format!("initialize failed: {msg}")));
            }
        };
        let named = result["protocolVersion"].as_str().unwrap_or_default();
        let Some(version) = ProtocolVersion::served(named) else {
            return Err(UpstreamError::Protocol(format!(
                "unsupported protocol version '{named}'"
            )));
        };
        if let Io::Http(h) = &link.io {
            *h.version.lock().unwrap_or_else(|e| e.into_inner()) = Some(version);
        }
        link.init = result;
        link.notify("notifications/initialized", None).await?;
        Ok(link)
    }

    /// Ends the session: a DELETE to a streamable HTTP upstream (sent in the background), the
    /// end of the stream or process of a duplex one.
    pub fn close(&self, spawner: &Arc<dyn Spawner>) {
        self.mark_broken();
        self.listener().stop.take();
        match &self.io {
            Io::Duplex(d) => d.shutdown(),
            Io::Http(h) => {
                let session = h.session.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(sid) = session {
                    let mut headers = h.headers.clone();
                    headers.push(("mcp-session-id".into(), sid));
                    let req = OutboundRequest {
                        method: http::Method::DELETE,
                        url: h.url.clone(),
                        headers,
                        body: None,
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
        method: &str,
        params: Option<Value>,
        sink: Option<&UnboundedSender<Value>>,
        timeout_ms: u64,
    ) -> Result<Value, UpstreamError> {
        let id = self.next_id();
        self.request_with_id(id, method, params, sink, timeout_ms).await
    }

    /// [`Link::request`] with an id from [`Link::next_id`] (so the caller can cancel it).
    pub async fn request_with_id(
        &self,
        id: u64,
        method: &str,
        params: Option<Value>,
        sink: Option<&UnboundedSender<Value>>,
        timeout_ms: u64,
    ) -> Result<Value, UpstreamError> {
        let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(p) = params {
            msg["params"] = p;
        }
        let body = msg.to_string();
        // A duplex link registers its calls itself (it routes their messages). A streamable
        // one registers the call before it wakes a parked standalone stream, so the stream's
        // task cannot park again in between (it checks for calls under the listener's lock).
        let _in_flight = match &self.io {
            Io::Http(h) => {
                let guard = h.calls.enter(id, sink);
                if sink.is_some() {
                    self.stream_ready(timeout_ms.min(LISTEN_READY_MS)).await;
                }
                Some(guard)
            }
            Io::Duplex(_) => None,
        };
        let r = deadline(&self.clock, timeout_ms, async {
            match &self.io {
                Io::Http(h) => h
                    .post(body, Some(id), sink)
                    .await?
                    .ok_or_else(|| UpstreamError::Protocol("no answer".into())),
                Io::Duplex(d) => d.call(id, body, sink).await,
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
    pub fn call_sink(&self) -> Option<UnboundedSender<Value>> {
        match &self.io {
            Io::Http(h) => h.calls.newest(),
            Io::Duplex(_) => None,
        }
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
    pub fn listen(self: &Arc<Self>, sink: UnboundedSender<Value>, keep: Box<dyn KeepOpen>, spawner: &Arc<dyn Spawner>) {
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
        if on {
            l.watched.insert(uri.to_string());
        } else {
            l.watched.remove(uri);
        }
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

/// Ends a link's listening when its standalone stream's task ends (however it ends): calls no
/// longer wait for the stream.
struct ListenerGone(std::sync::Weak<Link>);

impl Drop for ListenerGone {
    fn drop(&mut self) {
        if let Some(link) = self.0.upgrade() {
            let mut l = link.listener();
            l.on = false;
            l.parked = None;
            l.waiters.clear();
        }
    }
}

/// The standalone GET stream of a streamable HTTP link, opened, reopened, parked and woken as
/// [`Link::listen`] says.
async fn standalone_stream(
    link: std::sync::Weak<Link>,
    clock: Arc<dyn Clock>,
    sink: UnboundedSender<Value>,
    keep: Box<dyn KeepOpen>,
    mut stop: oneshot::Receiver<()>,
) {
    let _gone = ListenerGone(link.clone());
    let mut last_id: Option<String> = None;
    let mut retry_ms = None;
    let mut failures: u32 = 0;
    loop {
        // Hold the link only while starting the request, so the stream never keeps it alive.
        let opening = {
            let Some(l) = link.upgrade() else { return };
            let Io::Http(h) = &l.io else { return };
            if l.is_broken() {
                return;
            }
            (
                h.http.clone(),
                h.get_request(last_id.as_deref()),
                h.max_bytes,
                l.linger_ms,
            )
        };
        let (http, req, max, linger_ms) = opening;
        let answered = match futures::future::select(http.send(req), &mut stop).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => return,
        };
        let settle = || {
            if let Some(l) = link.upgrade() {
                l.settle();
            }
        };
        let mut parked = None;
        match answered {
            Ok(resp) if resp.status.is_success() => {
                settle();
                let mut parser = sse::Parser::with_limit(max);
                let mut body = resp.body;
                let mut got = false;
                // Checked every `linger_ms`: a quiet stream with nothing to keep it is parked.
                let mut quiet = true;
                let mut tick = clock.sleep(Duration::from_millis(linger_ms));
                loop {
                    let next = futures::future::select(body.next(), &mut tick);
                    let chunk = match futures::future::select(next, &mut stop).await {
                        Either::Left((Either::Left((Some(Ok(c)), _)), _)) => c,
                        Either::Left((Either::Left(_), _)) => break,
                        Either::Left((Either::Right(_), _)) => {
                            if quiet {
                                let Some(l) = link.upgrade() else { return };
                                parked = l.try_park(&*keep);
                                if parked.is_some() {
                                    break;
                                }
                            }
                            quiet = true;
                            tick = clock.sleep(Duration::from_millis(linger_ms));
                            continue;
                        }
                        Either::Right(_) => return,
                    };
                    let Ok(events) = parser.push(&chunk) else { break };
                    for ev in events {
                        got = true;
                        quiet = false;
                        if let Some(v) = ev.into_message().and_then(|d| serde_json::from_str::<Value>(&d).ok()) {
                            if sink.unbounded_send(v).is_err() {
                                return;
                            }
                        }
                    }
                }
                if let Some(id) = parser.last_event_id() {
                    last_id = Some(id.to_string());
                }
                retry_ms = parser.retry_ms().or(retry_ms);
                failures = if got || parked.is_some() { 0 } else { failures + 1 };
            }
            Ok(resp) => {
                settle();
                if resp.status == http::StatusCode::NOT_FOUND {
                    if let Some(l) = link.upgrade() {
                        l.mark_broken();
                    }
                    return;
                }
                // 405: no standalone stream offered. Another client error will not change by
                // asking again, except a conflict (the previous stream not yet released),
                // a timeout or a rate limit.
                let transient = [
                    http::StatusCode::CONFLICT,
                    http::StatusCode::REQUEST_TIMEOUT,
                    http::StatusCode::TOO_MANY_REQUESTS,
                ];
                if resp.status.is_client_error() && !transient.contains(&resp.status) {
                    return;
                }
                failures += 1;
            }
            Err(_) => {
                settle();
                failures += 1;
            }
        }
        if sink.is_closed() {
            return;
        }
        if let Some(wake) = parked {
            // Parked: the connection is closed (the body dropped); reopen when woken.
            if let Either::Right(_) = futures::future::select(wake, &mut stop).await {
                return;
            }
            continue;
        }
        // The upstream's retry delay; doubled per failure in a row, at most 30 s.
        let base = retry_ms.unwrap_or(DEFAULT_RETRY_MS).min(MAX_RETRY_MS);
        let wait = base.saturating_mul(1u64 << failures.min(6)).min(MAX_RETRY_MS);
        if let Either::Right(_) = futures::future::select(clock.sleep(Duration::from_millis(wait)), &mut stop).await {
            return;
        }
    }
}

/// Reads every list the upstream offers, following cursors.
pub(crate) async fn fetch_catalog(link: &Link, timeout_ms: u64) -> Result<Catalog, UpstreamError> {
    let caps = link.capabilities().clone();
    let mut cat = Catalog {
        protocol_version: link.protocol_version(),
        server_info: link.init["serverInfo"].clone(),
        capabilities: caps.clone(),
        instructions: link.init["instructions"].as_str().map(str::to_string),
        ..Catalog::default()
    };
    let lists: [(&str, &str, &str); 4] = [
        ("tools", "tools/list", "tools"),
        ("resources", "resources/list", "resources"),
        ("resources", "resources/templates/list", "resourceTemplates"),
        ("prompts", "prompts/list", "prompts"),
    ];
    for (cap, method, field) in lists {
        if caps.get(cap).is_none() {
            continue;
        }
        let mut items = Vec::new();
        let mut cursor: Option<Value> = None;
        for _page in 0..1000 {
            let params = cursor.take().map(|c| json!({"cursor": c}));
            let answer = link.request(method, params, None, timeout_ms).await?;
            let Some(result) = answer.get("result") else {
                // An upstream without templates may not know the method: an empty list.
                if method == "resources/templates/list" {
                    break;
                }
                let msg = answer["error"]["message"].as_str().unwrap_or("error").to_string();
                return Err(UpstreamError::Protocol(format!("{method}: {msg}")));
            };
            if let Some(list) = result.get(field).and_then(Value::as_array) {
                items.extend(list.iter().filter(|i| i.is_object()).cloned());
            }
            match result.get("nextCursor") {
                Some(c) if !c.is_null() => cursor = Some(c.clone()),
                _ => break,
            }
        }
        match field {
            "tools" => cat.tools = items,
            "resources" => cat.resources = items,
            "resourceTemplates" => cat.resource_templates = items,
            _ => cat.prompts = items,
        }
    }
    Ok(cat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_resolution() {
        assert_eq!(
            resolve("http://127.0.0.1:9/sse", "/message?sessionId=1"),
            "http://127.0.0.1:9/message?sessionId=1"
        );
        assert_eq!(resolve("http://h:1/a/sse", "message?s=1"), "http://h:1/a/message?s=1");
        assert_eq!(resolve("http://h/sse", "https://o/x"), "https://o/x");
        assert_eq!(resolve("http://h", "m"), "http://h/m");
    }
}
