//! A bridge from a message channel to a streamable HTTP MCP endpoint: what `mcpgw stdio` (to
//! this process's own gateway), `mcpgw connect URL` (to a remote one) and the WebSocket route
//! use. The client's messages go in one at a time, as text; everything the endpoint says comes
//! out on one channel, a message per item.
//!
//! It is a client of the endpoint that carries someone else's session: the client's own
//! `initialize` goes through unchanged and the session id it gets back is kept; every later
//! message is POSTed with that id and the negotiated version, and its answer (JSON, or an SSE
//! stream resumed with `Last-Event-ID` when it ends early) is handed out message by message.
//! After `notifications/initialized`, the session's standalone GET stream is kept open (with
//! `Last-Event-ID` and the server's `retry:` delay when it ends) so requests the server sends
//! outside calls reach the client too. When the endpoint has forgotten the session (404: it
//! restarted), the client's `initialize` is replayed to open a new one and the message is sent
//! again, so the client never notices. A 2026-07-28 client needs none of this: its messages
//! carry their revision in `_meta`, and go out with the headers that revision asks for.
//!
//! Every request gets exactly one answer: when the endpoint cannot be reached, or fails without
//! a JSON-RPC answer of its own, the bridge writes an error for each request of the message.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::queue::{bounded, Receiver as Lines, Refused, Sender as LineSender};
use bytes::Bytes;
use futures::StreamExt;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

use crate::platform::BoxFuture;
use crate::ports::{Clock, HttpClient, HttpError, InboundResponse, OutboundRequest, Spawner};
use crate::proto::classify::{is_jsonrpc, response_id};
use crate::proto::jsonrpc::{INTERNAL_ERROR, INVALID_REQUEST};
use crate::proto::method::{Method as McpMethod, ServerMethod};
use crate::proto::sse::Parser;
use crate::upstream::follow::{follow, reopen_wait, Ended, Flow, Follower};

mod local;
mod outgoing;
use outgoing::Outgoing;

pub use local::LocalGateway;

use crate::proto::headers::{LAST_EVENT_ID, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
/// Requests of one client in flight at once; past it a request is answered with an error.
pub const MAX_IN_FLIGHT: usize = 256;
/// The id of a replayed `initialize`, which the client never sees.
const REPLAY_ID: &str = "mcpgw-bridge-initialize";

/// What a bridge runs on.
#[derive(Clone)]
pub struct BridgePorts {
    /// The endpoint's transport: the network, or [`LocalGateway`].
    pub http: Arc<dyn HttpClient>,
    /// Delays between reconnections.
    pub clock: Arc<dyn Clock>,
    /// Each message's exchange and the standalone stream run as tasks of their own.
    pub spawner: Arc<dyn Spawner>,
}

/// A bridge to one endpoint; cheap to clone.
#[derive(Clone)]
pub struct Bridge {
    inner: Arc<Inner>,
}

struct Inner {
    ports: BridgePorts,
    url: String,
    /// Sent with every request (an `Authorization` header, say).
    headers: HeaderMap,
    /// The largest answer or event read, in bytes.
    max_bytes: usize,
    out: LineSender<String>,
    state: Mutex<State>,
    /// Told whenever the session changes (see [`Bridge::on_change`]).
    hook: Mutex<Option<ChangeHook>>,
    /// Held while a session is opened again, so that concurrent 404s open one.
    reopening: futures::lock::Mutex<()>,
    /// Requests taken by [`Bridge::accept`] and not yet answered.
    in_flight: std::sync::atomic::AtomicUsize,
}

/// What a bridge must remember to go on after its process forgot it (a Durable Object that
/// hibernated): the session at the endpoint and how to open another.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BridgeState {
    /// The endpoint's session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The negotiated revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The client's `initialize` params.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello: Option<Value>,
}

/// What [`Bridge::on_change`] calls.
#[cfg(not(target_family = "wasm"))]
pub type ChangeHook = Arc<dyn Fn(BridgeState) + Send + Sync>;
/// What [`Bridge::on_change`] calls.
#[cfg(target_family = "wasm")]
pub type ChangeHook = Arc<dyn Fn(BridgeState)>;

#[derive(Default)]
struct State {
    session: Option<HeaderValue>,
    version: Option<HeaderValue>,
    /// The client's `initialize` params, replayed when the endpoint forgot the session.
    hello: Option<Value>,
    /// The id of the `initialize` whose answer is awaited (its version is kept).
    initializing: Option<Value>,
    /// Moves with every new session; a standalone stream of an older one stops.
    epoch: u64,
    closed: bool,
}

/// An error answer to request `id`.
fn error_line(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// Lines the client may leave unread before its channel ends.
const MAX_UNREAD: usize = 4096;

impl Bridge {
    /// A bridge to the endpoint at `url`, and the channel on which everything the endpoint says
    /// comes out (it ends when the bridge and its tasks are gone).
    #[cfg_attr(target_family = "wasm", allow(clippy::arc_with_non_send_sync))]
    pub fn new(
        ports: BridgePorts,
        url: impl Into<String>,
        headers: HeaderMap,
        max_bytes: usize,
    ) -> (Self, Lines<String>) {
        let (out, rx) = bounded(MAX_UNREAD);
        let inner = Inner {
            ports,
            url: url.into(),
            headers,
            max_bytes,
            out,
            state: Mutex::new(State::default()),
            hook: Mutex::new(None),
            reopening: futures::lock::Mutex::new(()),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
        };
        (Bridge { inner: Arc::new(inner) }, rx)
    }

    /// Takes one message of the client and sends it on its own task, so a long call never holds
    /// up the next message (the client's answer to that call's sampling request, say).
    /// At most [`MAX_IN_FLIGHT`] requests at once: one more is answered with an error at once
    /// (notifications and the client's answers always go through).
    pub fn accept(&self, text: String) {
        if let Some(work) = self.counted(text) {
            self.inner.ports.spawner.spawn(work);
        }
    }

    /// A message's delivery, counted against [`MAX_IN_FLIGHT`] if it holds requests; none (and
    /// its requests answered with an error) past the limit.
    fn counted(&self, text: String) -> Option<BoxFuture<'static, ()>> {
        use std::sync::atomic::Ordering;
        let msg = Outgoing::read(&text);
        let counted = msg.as_ref().is_some_and(|m| !m.requests.is_empty());
        if counted && self.inner.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
            let message = format!("too many requests in flight (at most {MAX_IN_FLIGHT}): wait for some answers");
            let requests = msg.map(|m| m.requests).unwrap_or_default();
            self.inner.fail(&requests, INTERNAL_ERROR, &message);
            return None;
        }
        let inner = self.inner.clone();
        Some(Box::pin(async move {
            inner.deliver(text, msg).await;
            if counted {
                inner.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
        }))
    }

    /// Sends one message of the client and hands out its answers before returning.
    pub async fn deliver(&self, text: String) {
        let msg = Outgoing::read(&text);
        self.inner.deliver(text, msg).await
    }

    /// Calls `hook` with the bridge's state whenever its session changes (opened, or opened
    /// again), for a runtime that must keep it outside memory.
    pub fn on_change(&self, hook: ChangeHook) {
        *self.inner.hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// What the bridge must remember to go on in another life: see [`Bridge::restore`].
    pub fn state(&self) -> BridgeState {
        self.inner.snapshot()
    }

    /// Takes up a session a bridge of an earlier life had open (and its standalone stream).
    pub fn restore(&self, state: BridgeState) {
        {
            let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            s.session = state.session.and_then(|v| HeaderValue::from_str(&v).ok());
            s.version = state.version.and_then(|v| HeaderValue::from_str(&v).ok());
            s.hello = state.hello;
            s.epoch += 1;
        }
        self.inner.listen();
    }

    /// The endpoint's session id in use, if there is one.
    pub fn session_id(&self) -> Option<String> {
        let s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        s.session.as_ref().and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// Ends the session at the endpoint (a DELETE) and stops the standalone stream.
    pub async fn close(&self) {
        let (sid, version) = {
            let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            s.closed = true;
            s.epoch += 1;
            (s.session.take(), s.version.take())
        };
        if let Some(sid) = sid {
            let mut h = self.inner.headers.clone();
            h.insert(MCP_SESSION_ID, sid);
            if let Some(v) = version {
                h.insert(MCP_PROTOCOL_VERSION, v);
            }
            let _ = self.inner.send(Method::DELETE, h, None).await;
        }
    }
}

impl Inner {
    fn snapshot(&self) -> BridgeState {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let text = |v: &Option<HeaderValue>| v.as_ref().and_then(|v| v.to_str().ok()).map(str::to_string);
        BridgeState {
            session: text(&s.session),
            version: text(&s.version),
            hello: s.hello.clone(),
        }
    }

    /// Tells the hook, if any, the state after a change.
    fn changed(&self) {
        let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(hook) = hook {
            hook(self.snapshot());
        }
    }

    fn emit(&self, text: String) {
        // A message spread over lines would break a line-framed client: such text is written
        // again compactly.
        let line = if text.contains(['\n', '\r']) {
            serde_json::from_str::<Value>(&text)
                .map(|v| v.to_string())
                .unwrap_or(text)
        } else {
            text
        };
        if let Err(Refused::Full) = self.out.send(line) {
            // A client this far behind has stopped reading: its channel ends here rather than
            // grow, and the adapter closes the connection.
            self.out.close();
        }
    }

    /// Tells the client something went wrong outside any request of its own (a log message).
    fn note(&self, message: &str) {
        let m = json!({"jsonrpc": "2.0", "method": ServerMethod::Log.name(),
            "params": {"level": "error", "logger": "mcpgw-bridge", "data": message}});
        self.emit(m.to_string());
    }

    fn fail(&self, ids: &[Value], code: i64, message: &str) {
        for id in ids {
            self.emit(error_line(id, code, message));
        }
    }

    async fn send(
        &self,
        method: Method,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<InboundResponse, HttpError> {
        self.ports
            .http
            .send(OutboundRequest {
                method,
                url: self.url.clone(),
                headers,
                body,
                tls: None,
            })
            .await
    }

    /// The headers of a message's POST: the configured ones, the session's, and for a
    /// sessionless 2026-07-28 message its revision and the method and name mirrored.
    fn post_headers(&self, msg: Option<&Outgoing>) -> HeaderMap {
        let mut h = self.headers.clone();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sid) = &s.session {
            h.insert(MCP_SESSION_ID, sid.clone());
            if let Some(v) = &s.version {
                h.insert(MCP_PROTOCOL_VERSION, v.clone());
            }
        } else if let Some((m, v)) = msg.and_then(|m| Some((m, m.stateless()?))) {
            h.insert(MCP_PROTOCOL_VERSION, HeaderValue::from_static(v.as_str()));
            if let Some(method) = &m.method {
                let params = m.params.clone().unwrap_or(Value::Null);
                h.extend(crate::upstream::mirror_headers(method, &params));
            }
        }
        h
    }

    /// Sends `text` (read as `msg`, none if it is not JSON) and hands out its answers.
    async fn deliver(self: &Arc<Self>, text: String, msg: Option<Outgoing>) {
        if let Some(m) = msg.as_ref().filter(|m| m.is(McpMethod::Initialize)) {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.session = None;
            s.version = None;
            s.hello = m.params.clone();
            s.initializing = m.id.clone();
            s.epoch += 1;
        }
        let ids = msg.as_ref().map(|m| m.requests.clone()).unwrap_or_default();
        let body = Bytes::from(text);
        let mut replayed = false;
        loop {
            let headers = self.post_headers(msg.as_ref());
            let sent_with = headers.get(MCP_SESSION_ID).cloned();
            let resp = match self.send(Method::POST, headers, Some(body.clone())).await {
                Ok(r) => r,
                Err(e) => return self.fail(&ids, INTERNAL_ERROR, &format!("cannot reach {}: {e}", self.url)),
            };
            // The endpoint forgot the session (it restarted): open a new one, then send again.
            if resp.status == StatusCode::NOT_FOUND && sent_with.is_some() && !replayed {
                replayed = true;
                if let Err(e) = self.reopen(sent_with).await {
                    return self.fail(
                        &ids,
                        INTERNAL_ERROR,
                        &format!("the session ended and a new one could not be opened: {e}"),
                    );
                }
                continue;
            }
            let initialized = msg.as_ref().is_some_and(|m| m.is(McpMethod::Initialized));
            let ok = resp.status.is_success();
            self.answer(resp, &ids).await;
            if initialized && ok {
                self.listen();
            }
            return;
        }
    }

    /// Hands out an answer to a POST: its messages, or errors for the requests it left
    /// unanswered. The session id of an answer that opened one is kept.
    async fn answer(self: &Arc<Self>, resp: InboundResponse, ids: &[Value]) {
        if resp.status.is_success() {
            if let Some(sid) = resp.headers.get(MCP_SESSION_ID) {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if s.session.is_none() {
                    s.session = Some(sid.clone());
                }
            }
        }
        let event_stream = resp
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/event-stream"));
        let status = resp.status;
        if status.is_success() && event_stream {
            return self.relay_stream(resp, ids).await;
        }
        let body = match read_all(resp, self.max_bytes).await {
            Ok(b) => b,
            Err(e) => return self.fail(ids, INTERNAL_ERROR, &e.to_string()),
        };
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        match parsed {
            // A refusal of the whole message (id null: a 401, a bad version) answers each of
            // its requests, under their own ids.
            Some(v) if v.get("error").is_some() && v.get("id").is_some_and(Value::is_null) && !ids.is_empty() => {
                let code = v["error"]["code"].as_i64().unwrap_or_else(|| code_for(status));
                self.fail(ids, code, &describe(status, &v));
            }
            Some(v) if is_jsonrpc(&v) => {
                let answered = answered_ids(&v);
                self.note_answer(&v);
                self.emit(String::from_utf8_lossy(&body).into_owned());
                let left: Vec<Value> = ids
                    .iter()
                    .filter(|i| !answered.contains(&i.to_string()))
                    .cloned()
                    .collect();
                if !left.is_empty() && !status.is_success() {
                    self.fail(&left, code_for(status), &describe(status, &v));
                }
            }
            // A notification or an answer of the client's, taken.
            _ if status.is_success() && ids.is_empty() => {}
            _ if status.is_success() => {
                let why = match status {
                    StatusCode::ACCEPTED => "the endpoint accepted a request without answering it".to_string(),
                    _ => format!("the endpoint answered {status} without a JSON-RPC message"),
                };
                self.fail(ids, INTERNAL_ERROR, &why);
            }
            other => {
                let detail = other.map(|v| describe(status, &v)).unwrap_or_else(|| {
                    let text = String::from_utf8_lossy(&body);
                    let text: String = text.chars().take(200).collect();
                    format!("HTTP {status}: {}", text.trim())
                });
                self.fail(ids, code_for(status), &detail);
            }
        }
    }

    /// Keeps the revision an `initialize` answer chose (the version header of later requests).
    fn note_answer(&self, v: &Value) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(awaited) = s.initializing.clone() else {
            return;
        };
        if v.get("id") == Some(&awaited) && v.get("method").is_none() {
            s.initializing = None;
            s.version = v["result"]["protocolVersion"]
                .as_str()
                .and_then(|p| HeaderValue::from_str(p).ok());
            drop(s);
            self.changed();
        }
    }

    /// Hands out a POST's SSE stream until every request of the message is answered, resumed
    /// as [`follow`] says (upstream links follow theirs by the same policy).
    async fn relay_stream(self: &Arc<Self>, resp: InboundResponse, ids: &[Value]) {
        /// Hands out each message and strikes off the requests answered.
        struct Relaying<'b> {
            bridge: &'b Inner,
            pending: HashSet<String>,
        }
        impl Follower for Relaying<'_> {
            fn message(&mut self, data: String) -> Result<Flow, Ended> {
                if let Ok(v) = serde_json::from_str::<Value>(&data) {
                    for id in answered_ids(&v) {
                        self.pending.remove(&id);
                    }
                    self.bridge.note_answer(&v);
                }
                self.bridge.emit(data);
                Ok(if self.pending.is_empty() {
                    Flow::Done
                } else {
                    Flow::More
                })
            }
        }
        // A message without requests owes nothing (its answer is 202): nothing to follow.
        if ids.is_empty() {
            return;
        }
        let mut reader = Relaying {
            bridge: self,
            pending: ids.iter().map(Value::to_string).collect(),
        };
        let resume = |last: String| -> BoxFuture<'_, Result<InboundResponse, HttpError>> {
            let mut h = self.get_headers();
            if let Ok(v) = HeaderValue::from_str(&last) {
                h.insert(LAST_EVENT_ID, v);
            }
            Box::pin(self.send(Method::GET, h, None))
        };
        let ended = follow(resp, self.max_bytes, &*self.ports.clock, resume, &mut reader).await;
        let left: Vec<Value> = ids
            .iter()
            .filter(|i| reader.pending.contains(&i.to_string()))
            .cloned()
            .collect();
        match ended {
            Ok(()) => {}
            Err(Ended::Invalid(e)) => self.fail(&left, INTERNAL_ERROR, &e),
            Err(Ended::Closed) => self.fail(&left, INTERNAL_ERROR, "the endpoint closed the stream before answering"),
        }
    }

    fn get_headers(&self) -> HeaderMap {
        let mut h = self.headers.clone();
        h.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sid) = &s.session {
            h.insert(MCP_SESSION_ID, sid.clone());
        }
        if let Some(v) = &s.version {
            h.insert(MCP_PROTOCOL_VERSION, v.clone());
        }
        h
    }

    /// Opens a new session with the client's own `initialize` after the endpoint forgot
    /// `stale`; nothing when another message already did.
    async fn reopen(self: &Arc<Self>, stale: Option<HeaderValue>) -> Result<(), Reopen> {
        let _one = self.reopening.lock().await;
        let hello = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.session != stale {
                return Ok(());
            }
            s.session = None;
            s.version = None;
            s.epoch += 1;
            s.initializing = Some(json!(REPLAY_ID));
            s.hello.clone().ok_or(Reopen::NeverInitialized)?
        };
        let init = json!({"jsonrpc": "2.0", "id": REPLAY_ID, "method": McpMethod::Initialize.name(), "params": hello});
        let resp = self
            .send(
                Method::POST,
                self.post_headers(None),
                Some(Bytes::from(init.to_string())),
            )
            .await?;
        if !resp.status.is_success() {
            return Err(Reopen::Refused(resp.status));
        }
        let sid = resp.headers.get(MCP_SESSION_ID).cloned();
        let answer = read_answer(resp, self.max_bytes).await?;
        if let Some(e) = answer.get("error") {
            return Err(Reopen::Failed(e.to_string()));
        }
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.session = sid;
            s.initializing = None;
            s.version = answer["result"]["protocolVersion"]
                .as_str()
                .and_then(|p| HeaderValue::from_str(p).ok());
        }
        self.changed();
        let note = json!({"jsonrpc": "2.0", "method": McpMethod::Initialized.name()});
        let resp = self
            .send(
                Method::POST,
                self.post_headers(None),
                Some(Bytes::from(note.to_string())),
            )
            .await?;
        if resp.status.is_success() {
            self.listen();
        }
        Ok(())
    }

    /// Keeps the session's standalone stream open on a task of its own until the session
    /// changes or the bridge closes.
    fn listen(self: &Arc<Self>) {
        let epoch = {
            let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.session.is_none() || s.closed {
                return;
            }
            s.epoch
        };
        let inner = self.clone();
        self.ports
            .spawner
            .spawn(Box::pin(async move { inner.standalone(epoch).await }));
    }

    fn current(&self, epoch: u64) -> bool {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.epoch == epoch && !s.closed
    }

    async fn standalone(self: Arc<Self>, epoch: u64) {
        let mut parser = Parser::with_limit(self.max_bytes);
        let mut failures: u32 = 0;
        while self.current(epoch) {
            let mut h = self.get_headers();
            if let Some(v) = parser.last_event_id().and_then(|l| HeaderValue::from_str(l).ok()) {
                h.insert(LAST_EVENT_ID, v);
            }
            match self.send(Method::GET, h, None).await {
                Ok(r) if r.status.is_success() => {
                    let mut body = r.body;
                    while let Some(Ok(chunk)) = body.next().await {
                        if !self.current(epoch) {
                            return;
                        }
                        let Ok(events) = parser.push(&chunk) else { break };
                        for data in events.into_iter().filter_map(|e| e.into_message()) {
                            failures = 0;
                            self.emit(data);
                        }
                    }
                    parser.resume();
                }
                // The endpoint offers no standalone stream.
                Ok(r) if r.status == StatusCode::METHOD_NOT_ALLOWED => return,
                // The endpoint forgot the session: a new one is opened now (with its own
                // stream), not at the client's next message, so nothing said meanwhile is lost.
                Ok(r) if r.status == StatusCode::NOT_FOUND => {
                    let stale = self.state.lock().unwrap_or_else(|e| e.into_inner()).session.clone();
                    if let Err(e) = self.reopen(stale).await {
                        self.note(&format!("the session ended and a new one could not be opened: {e}"));
                    }
                    return;
                }
                _ => failures += 1,
            }
            let wait = reopen_wait(parser.retry_ms(), failures);
            self.ports.clock.sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// The ids of the responses in `v` (one message or a batch), as JSON text.
fn answered_ids(v: &Value) -> Vec<String> {
    let one = |m: &Value| response_id(m).map(Value::to_string);
    match v {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        m => one(m).into_iter().collect(),
    }
}

/// The JSON-RPC code of a refusal without a JSON-RPC body of its own.
fn code_for(status: StatusCode) -> i64 {
    if status.is_client_error() {
        INVALID_REQUEST
    } else {
        INTERNAL_ERROR
    }
}

fn describe(status: StatusCode, v: &Value) -> String {
    let said = v["error"]["message"]
        .as_str()
        .or_else(|| v["message"].as_str())
        .or_else(|| v["error"].as_str())
        .unwrap_or_default();
    if said.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {said}")
    }
}

/// Why a session could not be opened again for the client.
#[derive(Debug, thiserror::Error)]
enum Reopen {
    /// Nothing to replay.
    #[error("the client has not initialized")]
    NeverInitialized,
    /// The endpoint cannot be reached.
    #[error(transparent)]
    Unreachable(#[from] HttpError),
    /// The endpoint refused the replayed `initialize`.
    #[error("initialize answered {0}")]
    Refused(StatusCode),
    /// The endpoint answered it with an error (the error object).
    #[error("initialize failed: {0}")]
    Failed(String),
    /// Its answer could not be read.
    #[error("{0}")]
    Unreadable(String),
}

async fn read_all(resp: InboundResponse, limit: usize) -> Result<Bytes, HttpError> {
    crate::http::fetch::read_body(resp, limit).await.map(|(_, body)| body)
}

/// The one answer of a POST made by the bridge itself (JSON, or the first response in an SSE
/// stream).
async fn read_answer(resp: InboundResponse, limit: usize) -> Result<Value, Reopen> {
    let unreadable = |e: &dyn std::fmt::Display| Reopen::Unreadable(e.to_string());
    let sse = resp
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    if !sse {
        let body = read_all(resp, limit).await?;
        return serde_json::from_slice(&body).map_err(|e| unreadable(&e));
    }
    let mut parser = Parser::with_limit(limit);
    let mut body = resp.body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        for data in parser
            .push(&chunk)
            .map_err(|e| unreadable(&e))?
            .into_iter()
            .filter_map(|e| e.into_message())
        {
            let v: Value = serde_json::from_str(&data).map_err(|e| unreadable(&e))?;
            if v.get("id") == Some(&json!(REPLAY_ID)) {
                return Ok(v);
            }
        }
    }
    Err(unreadable(&"the stream ended before the answer"))
}

/// Runs a client's side of a bridge: each item of `lines` is a message, sent concurrently with
/// the others; when `lines` ends, the answers still coming are waited for (at most `grace`) and
/// the session is closed.
pub fn pump<S>(bridge: Bridge, lines: S, grace: Duration) -> BoxFuture<'static, ()>
where
    S: futures::Stream<Item = String> + crate::platform::MaybeSend + 'static,
{
    Box::pin(async move {
        let mut lines = std::pin::pin!(lines.fuse());
        let mut inflight = futures::stream::FuturesUnordered::new();
        loop {
            futures::select! {
                line = lines.next() => match line {
                    Some(line) if line.trim().is_empty() => {}
                    Some(line) => {
                        if let Some(work) = bridge.counted(line) {
                            inflight.push(work);
                        }
                    }
                    None => break,
                },
                _ = inflight.select_next_some() => {}
            }
        }
        let drain = async { while inflight.next().await.is_some() {} };
        let sleep = bridge.inner.ports.clock.sleep(grace);
        futures::future::select(std::pin::pin!(drain), sleep).await;
        bridge.close().await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ManualClock, QueueSpawner};
    use futures::executor::block_on;

    /// What the scripted endpoint answers: status, headers, body.
    type Answer = Result<(u16, Vec<(&'static str, String)>, String), HttpError>;

    /// An endpoint that answers by a script and records what it was sent.
    struct Scripted {
        answer: Box<dyn Fn(&OutboundRequest) -> Answer + Send + Sync>,
        sent: Mutex<Vec<(Method, Option<String>, String)>>,
    }

    #[async_trait::async_trait]
    impl HttpClient for Scripted {
        async fn send(&self, r: OutboundRequest) -> Result<InboundResponse, HttpError> {
            let sid = r
                .headers
                .get(MCP_SESSION_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = r
                .body
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            self.sent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((r.method.clone(), sid, body));
            let (status, headers, text) = (self.answer)(&r)?;
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.insert(k, HeaderValue::from_str(&v).expect("header"));
            }
            Ok(InboundResponse {
                status: StatusCode::from_u16(status).expect("status"),
                headers: h,
                body: Box::pin(futures::stream::once(async move { Ok(Bytes::from(text)) })),
            })
        }
    }

    fn bridge(s: Arc<Scripted>) -> (Bridge, Lines<String>) {
        let ports = BridgePorts {
            http: s,
            clock: Arc::new(ManualClock::at(0)),
            spawner: Arc::new(QueueSpawner::default()),
        };
        Bridge::new(ports, "http://up/mcp", HeaderMap::new(), 1 << 20)
    }

    fn drain(rx: &mut Lines<String>) -> Vec<Value> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|l| serde_json::from_str(&l).expect("JSON"))
            .collect()
    }

    const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

    /// The endpoint forgets the session (a restart): the client's initialize is replayed on a
    /// new session, the message sent again, and the client sees one answer, its own.
    #[test]
    fn a_forgotten_session_is_opened_again_and_the_message_sent_again() {
        let sessions = Arc::new(Mutex::new(vec!["s1".to_string(), "s2".to_string()]));
        let live = Arc::new(Mutex::new(String::new()));
        let (sessions2, live2) = (sessions.clone(), live.clone());
        let s = Arc::new(Scripted {
            answer: Box::new(move |r| {
                let body: Value = serde_json::from_slice(r.body.as_deref().unwrap_or(b"null")).unwrap_or(Value::Null);
                let sid = r
                    .headers
                    .get(MCP_SESSION_ID)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let mut live = live2.lock().unwrap_or_else(|e| e.into_inner());
                if body["method"] == "initialize" {
                    let next = sessions2.lock().unwrap_or_else(|e| e.into_inner()).remove(0);
                    *live = next.clone();
                    let answer =
                        json!({"jsonrpc": "2.0", "id": body["id"], "result": {"protocolVersion": "2025-11-25"}});
                    return Ok((
                        200,
                        vec![("content-type", "application/json".into()), ("mcp-session-id", next)],
                        answer.to_string(),
                    ));
                }
                if sid.as_deref() != Some(live.as_str()) {
                    return Ok((404, vec![], String::new()));
                }
                if body.get("id").is_some() {
                    let answer = json!({"jsonrpc": "2.0", "id": body["id"], "result": {"on": *live}});
                    return Ok((
                        200,
                        vec![("content-type", "application/json".into())],
                        answer.to_string(),
                    ));
                }
                Ok((202, vec![], String::new()))
            }),
            sent: Mutex::new(Vec::new()),
        });
        let (b, mut rx) = bridge(s.clone());
        block_on(b.deliver(INIT.into()));
        assert_eq!(b.session_id().as_deref(), Some("s1"));
        let first = drain(&mut rx);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0]["id"], 1);
        // The endpoint restarts: it knows only the next session.
        *live.lock().unwrap_or_else(|e| e.into_inner()) = "gone".into();
        block_on(b.deliver(r#"{"jsonrpc":"2.0","id":"x","method":"tools/list"}"#.into()));
        let out = drain(&mut rx);
        assert_eq!(out, vec![json!({"jsonrpc": "2.0", "id": "x", "result": {"on": "s2"}})]);
        assert_eq!(b.session_id().as_deref(), Some("s2"));
        let sent = s.sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let replayed = sent
            .iter()
            .filter(|(_, _, body)| body.contains(r#""method":"initialize""#))
            .count();
        assert_eq!(replayed, 2, "the client's initialize, then its replay: {sent:?}");
        assert!(sent
            .iter()
            .any(|(_, sid, body)| sid.as_deref() == Some("s2") && body.contains("notifications/initialized")));
    }

    /// Past the limit of requests in flight, a request is answered at once; notifications and
    /// answers still go through, and so do requests once others are answered.
    #[test]
    fn requests_past_the_in_flight_limit_are_answered_at_once() {
        let s = Arc::new(Scripted {
            answer: Box::new(|r| {
                let body: Value = serde_json::from_slice(r.body.as_deref().unwrap_or(b"null")).unwrap_or(Value::Null);
                if body.get("id").is_none() {
                    return Ok((202, vec![], String::new()));
                }
                let answer = json!({"jsonrpc": "2.0", "id": body["id"], "result": {}});
                Ok((
                    200,
                    vec![("content-type", "application/json".into())],
                    answer.to_string(),
                ))
            }),
            sent: Mutex::new(Vec::new()),
        });
        let spawner = Arc::new(QueueSpawner::default());
        let ports = BridgePorts {
            http: s,
            clock: Arc::new(ManualClock::at(0)),
            spawner: spawner.clone(),
        };
        let (b, mut rx) = Bridge::new(ports, "http://up/mcp", HeaderMap::new(), 1 << 20);
        for i in 0..MAX_IN_FLIGHT {
            b.accept(json!({"jsonrpc": "2.0", "id": i, "method": "ping"}).to_string());
        }
        b.accept(r#"{"jsonrpc":"2.0","id":"over","method":"ping"}"#.into());
        b.accept(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#.into());
        let refused = drain(&mut rx);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0]["id"], "over");
        assert!(refused[0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("in flight")));
        assert_eq!(
            spawner.queue.lock().unwrap_or_else(|e| e.into_inner()).len(),
            MAX_IN_FLIGHT + 1,
            "the notification went on"
        );
        spawner.run_all();
        assert_eq!(drain(&mut rx).len(), MAX_IN_FLIGHT, "every taken request answered");
        b.accept(r#"{"jsonrpc":"2.0","id":"later","method":"ping"}"#.into());
        spawner.run_all();
        assert_eq!(drain(&mut rx)[0]["id"], "later");
    }

    /// A refusal of the whole message (a 401 with id null) answers each request under its own
    /// id, with the endpoint's code and reason; an unreachable endpoint answers each of them too.
    /// A POST's stream that ends before its answer is resumed with `Last-Event-ID` after the
    /// endpoint's `retry:` delay, by the policy upstream links follow too.
    #[test]
    fn an_early_end_is_resumed_after_the_endpoints_retry() {
        let s = Arc::new(Scripted {
            answer: Box::new(|r| {
                let sse = vec![("content-type", "text/event-stream".to_string())];
                if r.method == Method::GET {
                    let last = r.headers.get(LAST_EVENT_ID).and_then(|v| v.to_str().ok());
                    assert_eq!(last, Some("e1"), "resumed from the last event");
                    let answer = json!({"jsonrpc": "2.0", "id": 3, "result": {}});
                    return Ok((200, sse, format!("id: e2\ndata: {answer}\n\n")));
                }
                let note = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}});
                Ok((200, sse, format!("id: e1\nretry: 250\ndata: {note}\n\n")))
            }),
            sent: Mutex::new(Vec::new()),
        });
        let clock = Arc::new(ManualClock::at(0));
        let ports = BridgePorts {
            http: s.clone(),
            clock: clock.clone(),
            spawner: Arc::new(QueueSpawner::default()),
        };
        let (b, mut rx) = Bridge::new(ports, "http://up/mcp", HeaderMap::new(), 1 << 20);
        block_on(b.deliver(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow"}}"#.into()));
        let out = drain(&mut rx);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0]["method"], "notifications/progress");
        assert_eq!((out[1]["id"].clone(), out[1].get("error")), (json!(3), None));
        assert_eq!(clock.now_ms(), 250, "waited the endpoint's retry before resuming");
        let sent = s.sent.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(
            sent.iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
            [Method::POST, Method::GET]
        );
    }

    #[test]
    fn refusals_and_failures_answer_every_request_under_its_id() {
        let s = Arc::new(Scripted {
            answer: Box::new(|r| {
                if r.headers.contains_key(http::header::AUTHORIZATION) {
                    return Err(HttpError::Connect("refused".into()));
                }
                let e = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32040, "message": "authentication required"}});
                Ok((401, vec![("content-type", "application/json".into())], e.to_string()))
            }),
            sent: Mutex::new(Vec::new()),
        });
        let (b, mut rx) = bridge(s.clone());
        block_on(b.deliver(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":"two","method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"}]"#.into()));
        let out = drain(&mut rx);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0]["id"], 1);
        assert_eq!(out[1]["id"], "two");
        assert!(out.iter().all(|m| m["error"]["code"] == -32040), "{out:?}");
        assert!(out[0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("401") && m.contains("authentication required")));

        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        let ports = BridgePorts {
            http: s,
            clock: Arc::new(ManualClock::at(0)),
            spawner: Arc::new(QueueSpawner::default()),
        };
        let (b, mut rx) = Bridge::new(ports, "http://up/mcp", h, 1 << 20);
        block_on(b.deliver(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#.into()));
        let out = drain(&mut rx);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["id"], 7);
        assert!(
            out[0]["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot reach")),
            "{out:?}"
        );
    }
}
