//! The faces clients see: streamable HTTP ([`streamable_http`]), the legacy HTTP+SSE transport
//! ([`legacy_sse`]), plain JSON-RPC ([`rpc`]) and the REST admin API ([`admin`]). A face reads
//! the HTTP request, finds or makes the session, hands each JSON-RPC request to the engine and
//! frames the engine's answer stream as JSON or SSE.
//!
//! Lives here: framing, session lookup and creation, HTTP status of transport errors. Not here:
//! what a method means (the engine), who may call (security, before the face is reached).

pub(crate) mod admin;
mod legacy_sse;
mod post_stream;
mod refused;
mod rpc;
pub(crate) mod stateless;
mod streamable_http;

use std::sync::Arc;

use bytes::Bytes;
use futures::{stream, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};

use crate::engine::{CallCtx, Engine, Event, StatelessRequest};
use crate::http::is_json_content;
use crate::http::response::{json_text_response, Body};
use crate::observe::{RequestCtx, TraceContext};
use crate::platform::{boxed, boxed_stream, BoxStream};
use crate::ports::{SessionState, Spawner};
use crate::proto::jsonrpc::{self, Incoming, Json, Message, Request as RpcRequest, RequestId, RpcError};
use crate::registry::Server;
use crate::security::admission::{Admitted, Caller};
use crate::session::hub::Frame;
use crate::session::Sessions;
use refused::Refused;

pub(crate) use legacy_sse::{legacy_message, legacy_sse};
pub(crate) use rpc::rpc;
pub(crate) use streamable_http::streamable;

/// Where a request is to be served, for a runtime that keeps each session (and each parked
/// call) in a place of its own (the edge: a Durable Object per session or park).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// With this existing session (its `Mcp-Session-Id`, or a legacy message's `sessionId`).
    Session(String),
    /// Where a new session will live: `initialize` without a session, opening a legacy SSE
    /// stream, a WebSocket upgrade.
    NewSession,
    /// A stateless request that may park a call or listen to upstreams: at its park.
    Park(crate::engine::Park),
    /// Anywhere: no session, nothing parked.
    Here,
}

/// The session placement of `req` (none: it has no session and opens none).
pub(crate) fn session_placement(req: &Request<Bytes>) -> Option<Placement> {
    use crate::http::route::Route;
    match Route::parse(req.uri().path()) {
        Route::Mcp { .. } => {
            if let Some(id) = req
                .headers()
                .get(streamable_http::MCP_SESSION_ID)
                .and_then(|v| v.to_str().ok())
            {
                return Some(Placement::Session(id.to_string()));
            }
            let opens = req.method() == http::Method::POST
                && matches!(jsonrpc::parse(req.body()), Ok(Incoming::Single(Message::Request(ref r)))
                    if crate::proto::method::Method::parse(&r.method) == Some(crate::proto::method::Method::Initialize));
            opens.then_some(Placement::NewSession)
        }
        Route::Sse { .. } if req.method() == http::Method::GET => Some(Placement::NewSession),
        // A WebSocket lives in a place of its own.
        Route::Ws { .. } if crate::ws::is_upgrade(req) => Some(Placement::NewSession),
        Route::Message { .. } => {
            let q = req.uri().query();
            let sid = query_param(q, "sessionId").or_else(|| query_param(q, "session_id"))?;
            Some(Placement::Session(sid.to_string()))
        }
        _ => None,
    }
}

/// Set by an adapter in a request's extensions (never from client input) to choose the id of
/// the session that request creates: the edge names the session's Durable Object first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignSessionId(pub String);

/// What the client-facing transports share.
pub(crate) struct Face {
    engine: Arc<Engine>,
    sessions: Arc<Sessions>,
    spawner: Arc<dyn Spawner>,
    max_batch: usize,
    admin_scope: String,
    /// How long a resumed POST stream waits for the rest of its work.
    call_max_ms: u64,
}

/// Who sends a request, and the trace it belongs to.
pub(crate) struct Sender {
    caller: Caller,
    trace: Option<TraceContext>,
}

/// The items of a POST body, in order.
enum Item {
    Request(RpcRequest),
    Invalid(Option<RequestId>, RpcError),
}

/// Where the answers of a POST go.
enum Delivery {
    /// In the HTTP response (JSON or SSE).
    Response,
    /// On the legacy SSE stream of this session.
    LegacyStream(String),
}

/// What a POST's work yields, in order: messages for the client, then every response.
enum Outbound {
    Message(Json),
    KeepAlive,
    /// The stream may close here; the work goes on (see [`post_stream`]).
    Poll {
        retry_ms: u64,
    },
    Done(Vec<Json>),
}

fn sse_response(body: BoxStream<'static, Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::Stream(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// Checks the Content-Type (415) and parses the body as JSON-RPC (400 with -32700/-32600).
fn parse_rpc_body(req: &Request<Bytes>, max_batch: usize) -> Result<Incoming, Refused> {
    if !is_json_content(req.headers()) {
        return Err(Refused::NotJson);
    }
    let incoming = jsonrpc::parse(req.body()).map_err(|(id, e)| Refused::Malformed(id, e))?;
    if let Incoming::Batch(items) = &incoming {
        if items.len() > max_batch {
            return Err(Refused::BatchTooLarge {
                got: items.len(),
                max: max_batch,
            });
        }
    }
    Ok(incoming)
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

/// The authenticated subject of a request (set by the gateway on admission).
/// Who a session is counted against: its subject, else (anonymous) its address (an IPv6
/// address by its /64, which one host holds whole).
fn client_of(req: &Request<Bytes>) -> String {
    match subject_of(req) {
        Some(s) => format!("sub:{s}"),
        None => match req.extensions().get::<crate::security::admission::ClientIp>() {
            Some(ip) => format!("ip:{}", crate::netguard::client_key(&ip.0)),
            None => "anonymous".into(),
        },
    }
}

/// Who the request was admitted as (none when auth is off).
fn identity_of(req: &Request<Bytes>) -> Option<&crate::security::auth::Identity> {
    req.extensions().get::<Admitted>().and_then(|a| a.identity.as_ref())
}

fn subject_of(req: &Request<Bytes>) -> Option<String> {
    identity_of(req).map(|i| i.subject.clone())
}

impl Face {
    /// The faces over `engine` and `sessions`.
    pub fn new(
        engine: Arc<Engine>,
        sessions: Arc<Sessions>,
        spawner: Arc<dyn Spawner>,
        max_batch: usize,
        admin_scope: String,
        call_max_ms: u64,
    ) -> Self {
        Self {
            engine,
            sessions,
            spawner,
            max_batch,
            admin_scope,
            call_max_ms,
        }
    }

    /// Who is calling, as the MCP methods need to know, and the request's trace.
    fn sender(&self, req: &Request<Bytes>) -> Sender {
        Sender {
            caller: Caller::of(req, &self.admin_scope),
            trace: req.extensions().get::<RequestCtx>().map(|c| c.trace.clone()),
        }
    }

    /// A live session of this endpoint for this request's caller, touched.
    async fn load_session(&self, req: &Request<Bytes>, id: &str, scope: Option<&Arc<Server>>) -> Option<SessionState> {
        let subject = subject_of(req);
        self.sessions
            .load(id, subject.as_deref(), scope.map(|s| s.id.as_str()))
            .await
    }

    /// A new session for this request; its id is the adapter's choice when it set
    /// [`AssignSessionId`], else random.
    fn new_session(&self, req: &Request<Bytes>, scope: Option<&Arc<Server>>, legacy_sse: bool) -> SessionState {
        let id = req.extensions().get::<AssignSessionId>().map(|a| a.0.clone());
        self.sessions
            .create(id, subject_of(req), scope.map(|s| s.id.clone()), legacy_sse)
    }

    /// Runs the messages of one POST and answers: 202 when there is nothing to answer, JSON when
    /// the work finished before anything else had to be sent, SSE otherwise.
    async fn process(
        &self,
        session: Option<SessionState>,
        scope: Option<Arc<Server>>,
        sender: Sender,
        stateless: Option<Arc<StatelessRequest>>,
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
                    self.engine
                        .notification(session.as_ref(), &method, params.as_ref())
                        .await
                }
                Ok(Message::Response { id, outcome }) => {
                    if let Some(s) = &session {
                        self.engine.client_answer(s, id.as_ref(), outcome).await;
                    }
                }
                Err((id, e)) => items.push(Item::Invalid(id, e)),
            }
        }
        if items.is_empty() {
            return accepted();
        }
        let session_id = session.as_ref().map(|s| s.id.clone());
        // SEP-1699 (2025-11-25): such a client resumes a stream the gateway closes mid-work.
        let polls = session
            .as_ref()
            .and_then(|s| s.protocol_version)
            .is_some_and(|v| v >= crate::proto::version::ProtocolVersion::V2025_11_25);
        let transport = match (&stateless, &delivery, &session) {
            (Some(_), _, _) => "stateless",
            (None, Delivery::LegacyStream(_), _) => "sse",
            (None, Delivery::Response, None) => "rpc",
            (None, Delivery::Response, Some(_)) => "streamable",
        };
        let ctx = Arc::new(CallCtx {
            session: session.map(Arc::new),
            scope,
            caller: sender.caller,
            stateless,
            transport,
            trace: sender.trace,
        });
        let n = items.len();
        let ids: Vec<RequestId> = items
            .iter()
            .filter_map(|i| match i {
                Item::Request(r) => Some(r.id.clone()),
                Item::Invalid(..) => None,
            })
            .collect();
        let answers_of = items.into_iter().enumerate().map(|(i, item)| match item {
            Item::Request(r) => boxed_stream(self.engine.respond(ctx.clone(), r).map(move |e| (i, e))),
            Item::Invalid(id, e) => {
                let answer = Event::Answer(Json::from_value(&jsonrpc::error_response(id.as_ref(), &e)));
                boxed_stream(stream::iter([(i, answer)]))
            }
        });
        // Every request's stream ends with its answer: when the last is in, all are done.
        let mut answers: Vec<Option<Json>> = (0..n).map(|_| None).collect();
        let mut left = n;
        // One request (the common case) needs no merging.
        let mut streams: Vec<_> = answers_of.collect();
        let merged = if streams.len() == 1 {
            streams.swap_remove(0)
        } else {
            boxed_stream(stream::select_all(streams))
        };
        let mut out = boxed_stream(merged.filter_map(move |(i, e)| {
            futures::future::ready(match e {
                Event::Message(m) => Some(Outbound::Message(m)),
                Event::KeepAlive => Some(Outbound::KeepAlive),
                Event::Poll { retry_ms } => Some(Outbound::Poll { retry_ms }),
                Event::Answer(a) => {
                    answers[i] = Some(a);
                    left -= 1;
                    (left == 0).then(|| Outbound::Done(answers.iter_mut().filter_map(Option::take).collect()))
                }
            })
        }));

        if let Delivery::LegacyStream(sid) = delivery {
            // Legacy SSE: everything goes to the session's stream; the POST is answered at once.
            let sessions = self.sessions.clone();
            self.spawner.spawn(boxed(async move {
                while let Some(o) = out.next().await {
                    let msgs = match o {
                        Outbound::Message(m) => vec![m],
                        Outbound::KeepAlive | Outbound::Poll { .. } => vec![],
                        Outbound::Done(answers) => answers,
                    };
                    for m in msgs {
                        sessions.deliver(&sid, None, m.0).await;
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
            // A session's stream is logged and outlives its connection.
            Some(first) if session_id.is_some() => {
                let post = post_stream::PostStream {
                    sessions: self.sessions.clone(),
                    spawner: self.spawner.clone(),
                    sid: session_id.unwrap_or_default(),
                    name: self.sessions.next_stream(),
                    polls,
                    outlives: self.spawner.outlives_requests(),
                    ids,
                };
                sse_response(post.serve(first, out, pack))
            }
            // Without a session (a stateless request): the stream is the work; closing it ends it.
            Some(first) => {
                let body = stream::once(futures::future::ready(first))
                    .chain(out)
                    .map(move |o| match o {
                        Outbound::Message(m) => Frame::message(None, m.0).to_bytes(),
                        Outbound::KeepAlive | Outbound::Poll { .. } => Frame::keepalive().to_bytes(),
                        Outbound::Done(answers) => Frame::message(None, pack(answers)).to_bytes(),
                    });
                sse_response(boxed_stream(body))
            }
            None => Refused::NoResponse.answer(),
        }
    }
}
