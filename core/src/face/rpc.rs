//! Plain JSON-RPC on `/rpc`: one POST, one JSON answer, no session and so no notifications.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};

use super::{parse_rpc_body, Delivery, Face};
use crate::http::response::{method_not_allowed, Body};

/// `POST /rpc`.
pub(crate) async fn rpc(face: &Arc<Face>, req: Request<Bytes>) -> Response<Body> {
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    let incoming = match parse_rpc_body(&req, face.max_batch) {
        Ok(m) => m,
        Err(r) => return r.answer(),
    };
    // No session: the engine sends nothing besides the answers, which come back as JSON.
    let sender = face.sender(&req);
    face.process(None, None, sender, None, incoming, Delivery::Response)
        .await
}
