//! The legacy HTTP+SSE transport (2024-11-05) on `/sse` and `/message` (and under
//! `/servers/{id}`): `GET /sse` opens the session and its one stream, which names the endpoint
//! to POST messages to; every answer goes on that stream; the session lives as long as it.

use std::sync::Arc;

use bytes::Bytes;
use futures::{stream, StreamExt};
use http::{Method, Request, Response};

use super::{parse_rpc_body, query_param, sse_response, Delivery, Face, Refused};
use crate::http::accepts;
use crate::http::response::{method_not_allowed, Body};
use crate::platform::{boxed, boxed_stream};
use crate::registry::Server;
use crate::session::hub::{Frame, OnDrop};

/// `GET /sse`: a new session and its stream; `prefix` is the path the endpoint is under.
pub(crate) async fn legacy_sse(
    face: &Arc<Face>,
    req: Request<Bytes>,
    scope: Option<Arc<Server>>,
    prefix: String,
) -> Response<Body> {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    if !accepts(req.headers(), "text/event-stream") {
        return Refused::NotAcceptable("text/event-stream").answer();
    }
    let client = super::client_of(&req);
    let session = face.new_session(&req, scope.as_ref(), true);
    if let Err(why) = face.sessions.admit(&client, &session.id).await {
        return Refused::TooManySessions(why).answer();
    }
    let sid = session.id.clone();
    let held = crate::session::hub::Held::of(super::identity_of(&req));
    let Some((conn, rx)) = face.sessions.hub().attach(&sid, held) else {
        face.sessions.abandon(&sid);
        return Refused::ShuttingDown.answer();
    };
    face.sessions.put(session).await;
    let endpoint = Frame::endpoint(format!("{prefix}/message?sessionId={sid}"));
    let (sessions, spawner) = (face.sessions.clone(), face.spawner.clone());
    // The legacy session lives as long as its stream.
    let cleanup = Box::new(move || {
        sessions.hub().detach(&sid, conn);
        spawner.spawn(boxed(async move { sessions.end(&sid).await }));
    });
    let body =
        stream::once(futures::future::ready(endpoint.to_bytes())).chain(OnDrop::new(rx.map(|f| f.to_bytes()), cleanup));
    sse_response(boxed_stream(body))
}

/// `POST /message?sessionId=…`: messages of a legacy session, answered on its stream.
pub(crate) async fn legacy_message(
    face: &Arc<Face>,
    req: Request<Bytes>,
    scope: Option<Arc<Server>>,
) -> Response<Body> {
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    let Some(sid) =
        query_param(req.uri().query(), "sessionId").or_else(|| query_param(req.uri().query(), "session_id"))
    else {
        return Refused::Missing("sessionId query parameter").answer();
    };
    let Some(session) = face
        .load_session(&req, sid, scope.as_ref())
        .await
        .filter(|s| s.legacy_sse)
    else {
        return Refused::SessionNotFound.answer();
    };
    let incoming = match parse_rpc_body(&req, face.max_batch) {
        Ok(m) => m,
        Err(r) => return r.answer(),
    };
    let sid = session.id.clone();
    let sender = face.sender(&req);
    face.process(
        Some(session),
        scope,
        sender,
        None,
        incoming,
        Delivery::LegacyStream(sid),
    )
    .await
}
