//! Streamable HTTP (2025-03-26 and later) on `/mcp` and `/servers/{id}/mcp`: POST carries
//! messages (answered as JSON, SSE or 202), GET opens the session's standalone stream (resumed
//! with `Last-Event-ID`), DELETE ends the session.

use std::sync::Arc;

use bytes::Bytes;
use futures::{stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::Value;

use super::{parse_rpc_body, sse_response, stateless, Delivery, Face, Refused};
use crate::http::response::{json_response, method_not_allowed, Body};
use crate::http::{accepts, header_str};
use crate::platform::boxed_stream;
use crate::proto::jsonrpc::{self, Incoming, Message};
use crate::proto::method::{Kind, Method as McpMethod};
use crate::proto::version::{Era, ProtocolVersion};
use crate::registry::Server;
use crate::session::hub::{Frame, OnDrop};
use crate::session::STANDALONE;

use crate::proto::headers::LAST_EVENT_ID;
pub(super) use crate::proto::headers::MCP_SESSION_ID;
use stateless::MCP_PROTOCOL_VERSION;

/// A request on the streamable endpoint.
pub(crate) async fn streamable(face: &Arc<Face>, req: Request<Bytes>, scope: Option<Arc<Server>>) -> Response<Body> {
    match *req.method() {
        Method::POST => post(face, req, scope).await,
        Method::GET => get(face, req, scope).await,
        Method::DELETE => delete(face, req, scope).await,
        _ => method_not_allowed("GET, POST, DELETE"),
    }
}

fn check_version_header(h: &HeaderMap) -> Result<(), Refused> {
    match header_str(h, MCP_PROTOCOL_VERSION) {
        Some(v) if ProtocolVersion::served_in_session(v).is_none() => Err(Refused::UnsupportedVersion(v.to_string())),
        _ => Ok(()),
    }
}

/// A GET or DELETE without a session: in the stateless era there is neither a standalone stream
/// nor a session to end (405, POST only); in the session era the session id is missing (400).
fn without_session(h: &HeaderMap) -> Response<Body> {
    let stateless =
        header_str(h, MCP_PROTOCOL_VERSION).is_some_and(|v| ProtocolVersion::served_in_session(v).is_none());
    if stateless {
        return method_not_allowed("POST");
    }
    Refused::Missing("Mcp-Session-Id header").answer()
}

async fn post(face: &Arc<Face>, req: Request<Bytes>, scope: Option<Arc<Server>>) -> Response<Body> {
    let h = req.headers();
    if !(accepts(h, "application/json") && accepts(h, "text/event-stream")) {
        return Refused::NotAcceptable("application/json and text/event-stream").answer();
    }
    let incoming = match parse_rpc_body(&req, face.max_batch) {
        Ok(m) => m,
        Err(r) => return r.answer(),
    };
    let Some(session_id) = header_str(h, MCP_SESSION_ID) else {
        // No session: the stateless era if the request says so, else the session era's
        // `initialize` (or a request that needs a session first).
        if stateless::is_stateless_request(h, &incoming) {
            return stateless::post(face, &req, incoming, scope).await;
        }
        if let Err(r) = check_version_header(h) {
            return r.answer();
        }
        return sessionless_post(face, &req, incoming, scope).await;
    };
    if let Err(r) = check_version_header(h) {
        return r.answer();
    }
    let Some(session) = face.load_session(&req, session_id, scope.as_ref()).await else {
        return Refused::SessionNotFound.answer();
    };
    let batches = session.protocol_version.is_none_or(ProtocolVersion::allows_batches);
    if matches!(incoming, Incoming::Batch(_)) && !batches {
        return Refused::NotInEra(format!(
            "protocol version {} does not allow batches",
            session.protocol_version.map_or("", ProtocolVersion::as_str)
        ))
        .answer();
    }
    let sender = face.sender(&req);
    face.process(Some(session), scope, sender, None, incoming, Delivery::Response)
        .await
}

/// A POST without a session: `initialize` opens one; anything else is refused.
async fn sessionless_post(
    face: &Arc<Face>,
    http_req: &Request<Bytes>,
    incoming: Incoming,
    scope: Option<Arc<Server>>,
) -> Response<Body> {
    let req = match incoming {
        Incoming::Single(Message::Request(r)) if McpMethod::parse(&r.method) == Some(McpMethod::Initialize) => r,
        Incoming::Single(Message::Request(r)) => {
            // Includes the 2026-07-28 `server/discover` probe: a prompt JSON-RPC error makes
            // clients fall back to `initialize`.
            let known =
                McpMethod::parse(&r.method).is_some_and(|m| m.info().kind == Kind::Request && m.in_era(Era::Session));
            let refused = if known {
                Refused::NeedsSession(Some(r.id))
            } else {
                Refused::UnknownMethod {
                    id: r.id,
                    method: r.method,
                    status: StatusCode::BAD_REQUEST,
                }
            };
            return refused.answer();
        }
        _ => return Refused::NeedsSession(None).answer(),
    };
    let client = super::client_of(http_req);
    let mut s = face.new_session(http_req, scope.as_ref(), false);
    if let Err(why) = face.sessions.admit(&client, &s.id).await {
        return Refused::TooManySessions(why).answer();
    }
    let count = face.engine.counter("streamable", &req);
    let answer = face.engine.initialize_result(&req, scope.as_ref());
    if let Some(count) = count {
        count(if answer.is_ok() { "ok" } else { "error" });
    }
    match answer {
        Ok((version, result, params)) => {
            s.protocol_version = Some(version);
            s.client_capabilities = Value::Object(params.capabilities.unwrap_or_default());
            s.client_info = params.client_info.unwrap_or(Value::Null);
            let sid = s.id.clone();
            face.sessions.put(s).await;
            let mut r = json_response(StatusCode::OK, &jsonrpc::response(&req.id, result));
            if let Ok(v) = HeaderValue::from_str(&sid) {
                r.headers_mut().insert(MCP_SESSION_ID, v);
            }
            r
        }
        Err(e) => {
            face.sessions.abandon(&s.id);
            json_response(StatusCode::OK, &jsonrpc::error_response(Some(&req.id), &e))
        }
    }
}

/// GET: the session's standalone stream, or the rest of a POST stream after `Last-Event-ID`.
async fn get(face: &Arc<Face>, req: Request<Bytes>, scope: Option<Arc<Server>>) -> Response<Body> {
    let h = req.headers();
    if !accepts(h, "text/event-stream") {
        return Refused::NotAcceptable("text/event-stream").answer();
    }
    let Some(sid) = header_str(h, MCP_SESSION_ID) else {
        return without_session(h);
    };
    if let Err(r) = check_version_header(h) {
        return r.answer();
    }
    let Some(session) = face.load_session(&req, sid, scope.as_ref()).await else {
        return Refused::SessionNotFound.answer();
    };
    let resume = header_str(h, LAST_EVENT_ID).and_then(|id| {
        let (stream_name, seq) = id.rsplit_once('.')?;
        Some((stream_name.to_string(), seq.parse::<u64>().ok()?))
    });
    let mut replay = Vec::new();
    if let Some((stream_name, seq)) = resume {
        // A POST stream: what followed, and what its work still says, to its end.
        if stream_name != STANDALONE {
            let rest = face.sessions.resume(&session.id, &stream_name, seq, face.call_max_ms);
            let frames = rest.map(move |e| match e {
                Some(e) => Frame::message(Some(format!("{stream_name}.{}", e.seq)), e.data).to_bytes(),
                None => Frame::keepalive().to_bytes(),
            });
            return sse_response(boxed_stream(frames));
        }
        for e in face.sessions.replay(&session.id, &stream_name, seq).await {
            replay.push(Frame::message(Some(format!("{stream_name}.{}", e.seq)), e.data).to_bytes());
        }
    }
    let replayed = stream::iter(replay);
    let held = crate::session::hub::Held::of(super::identity_of(&req));
    let Some((conn, rx)) = face.sessions.hub().attach(&session.id, held) else {
        return Refused::ShuttingDown.answer();
    };
    face.engine.stream_opened(&session.id);
    let sessions = face.sessions.clone();
    let owner_sid = session.id.clone();
    let live_stream = OnDrop::new(
        rx.map(|f| f.to_bytes()),
        Box::new(move || sessions.hub().detach(&owner_sid, conn)),
    );
    sse_response(boxed_stream(replayed.chain(live_stream)))
}

/// DELETE: the client ends its session.
async fn delete(face: &Arc<Face>, req: Request<Bytes>, scope: Option<Arc<Server>>) -> Response<Body> {
    let Some(sid) = header_str(req.headers(), MCP_SESSION_ID) else {
        return without_session(req.headers());
    };
    if face.load_session(&req, sid, scope.as_ref()).await.is_none() {
        return Refused::SessionNotFound.answer();
    }
    face.sessions.end(sid).await;
    Response::new(Body::Empty)
}
