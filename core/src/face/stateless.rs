//! The stateless era (2026-07-28) on the streamable endpoints: a POST without a session whose
//! headers or `_meta` name a stateless revision. Each request stands alone: its `_meta` is read and
//! its headers checked against its body, then the engine answers it as JSON, or as SSE when
//! progress or logs come first. No session is made or kept, no event log written.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};

use super::Refused;
use super::{accepted, Delivery, Face};
use crate::engine::StatelessRequest;
use crate::http::header_str;
use crate::http::response::Body;
use crate::proto::jsonrpc::{Incoming, Message, Request as RpcRequest, RpcError};
use crate::proto::meta::{self, header_mismatch, RequestMeta};
use crate::proto::method::{Kind, Method};
use crate::proto::version::{Era, ProtocolVersion};
use crate::registry::Server;

pub(super) use crate::proto::headers::{MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION};

/// True when a request without a session speaks the stateless era: its `MCP-Protocol-Version`
/// is not a session-era revision (a stateless one, or one nobody serves, which the stateless path
/// answers with the supported list), or its body's `_meta` names a revision.
pub(super) fn is_stateless_request(headers: &HeaderMap, incoming: &Incoming) -> bool {
    let by_header =
        header_str(headers, MCP_PROTOCOL_VERSION).is_some_and(|v| ProtocolVersion::served_in_session(v).is_none());
    let by_meta = match incoming {
        Incoming::Single(Message::Request(r)) => meta::declared_version(r.params.as_ref()).is_some(),
        Incoming::Single(Message::Notification { params, .. }) => meta::declared_version(params.as_ref()).is_some(),
        _ => false,
    };
    by_header || by_meta
}

/// The JSON-RPC request of a stateless POST to an MCP endpoint whose body holds one of `words`
/// (none for anything else; the body is parsed only then).
pub(crate) fn stateless_request(req: &Request<Bytes>, words: &[&str]) -> Option<RpcRequest> {
    let mcp = matches!(
        crate::http::route::Route::parse(req.uri().path()),
        crate::http::route::Route::Mcp { .. }
    );
    if !mcp || req.method() != http::Method::POST || req.headers().contains_key(crate::proto::headers::MCP_SESSION_ID) {
        return None;
    }
    let body = req.body();
    if !words.iter().any(|w| body.windows(w.len()).any(|x| x == w.as_bytes())) {
        return None;
    }
    let incoming = crate::proto::jsonrpc::parse(req.body()).ok()?;
    if !is_stateless_request(req.headers(), &incoming) {
        return None;
    }
    match incoming {
        Incoming::Single(Message::Request(r)) => Some(r),
        _ => None,
    }
}

/// The value a header holds, if it holds text.
fn header(h: &HeaderMap, name: http::HeaderName) -> Option<&str> {
    header_str(h, name)
}

/// The body field `Mcp-Name` mirrors for `method`, if it mirrors one.
fn named_field(method: Option<Method>) -> Option<&'static str> {
    match method? {
        Method::ToolsCall | Method::PromptsGet => Some("name"),
        Method::ResourcesRead => Some("uri"),
        _ => None,
    }
}

/// Checks a stateless request's `_meta` (-32602) and its headers against its body (-32020), in
/// the order the specification's errors are told apart; then its revision (-32022).
fn check(h: &HeaderMap, r: &RpcRequest) -> Result<StatelessRequest, RpcError> {
    let meta = RequestMeta::parse(r.params.as_ref())?;
    match header(h, MCP_PROTOCOL_VERSION) {
        None => return Err(header_mismatch("MCP-Protocol-Version header is required")),
        Some(v) if v != meta.version => {
            return Err(header_mismatch(format!(
                "MCP-Protocol-Version header '{v}' does not match _meta protocolVersion '{}'",
                meta.version
            )))
        }
        Some(_) => {}
    }
    meta.resolve()?;
    match header(h, MCP_METHOD) {
        None => return Err(header_mismatch("Mcp-Method header is required")),
        Some(m) if m != r.method => {
            return Err(header_mismatch(format!(
                "Mcp-Method header '{m}' does not match body method '{}'",
                r.method
            )))
        }
        Some(_) => {}
    }
    if let Some(field) = named_field(Method::parse(&r.method)) {
        let body = r.params.as_ref().and_then(|p| p.get(field)).and_then(|v| v.as_str());
        let raw = h.get(MCP_NAME).map(|v| v.to_str());
        match (raw, body) {
            (None, _) => return Err(header_mismatch("Mcp-Name header is required")),
            (Some(Err(_)), _) => return Err(header_mismatch("Mcp-Name header is not valid text")),
            (Some(Ok(raw)), body) => match meta::decode_header_value(raw) {
                None => return Err(header_mismatch("Mcp-Name header is not valid base64 of UTF-8")),
                Some(name) if Some(name.as_str()) != body => {
                    return Err(header_mismatch(format!(
                        "Mcp-Name header value '{name}' does not match body {field} '{}'",
                        body.unwrap_or_default()
                    )))
                }
                Some(_) => {}
            },
        }
    }
    Ok(StatelessRequest { meta })
}

/// A stateless POST: one request (or a notification, accepted and dropped: none is defined
/// over HTTP in this era).
pub(super) async fn post(
    face: &Arc<Face>,
    http_req: &Request<Bytes>,
    incoming: Incoming,
    scope: Option<Arc<Server>>,
) -> Response<Body> {
    let r = match incoming {
        Incoming::Single(Message::Request(r)) => r,
        Incoming::Single(Message::Notification { .. }) => return accepted(),
        Incoming::Single(Message::Response { .. }) => {
            return Refused::NotInEra("a client sends no responses in 2026-07-28".into()).answer();
        }
        Incoming::Batch(_) => {
            return Refused::NotInEra("2026-07-28 has no JSON-RPC batches".into()).answer();
        }
    };
    let stateless = match check(http_req.headers(), &r) {
        Ok(m) => m,
        Err(e) => return Refused::BadStatelessRequest(r.id, e).answer(),
    };
    let known = Method::parse(&r.method).is_some_and(|m| m.info().kind == Kind::Request && m.in_era(Era::Stateless));
    if !known {
        return Refused::UnknownMethod {
            id: r.id,
            method: r.method,
            status: StatusCode::NOT_FOUND,
        }
        .answer();
    }
    let sender = face.sender(http_req);
    let mut resp = face
        .process(
            None,
            scope,
            sender,
            Some(Arc::new(stateless)),
            Incoming::Single(Message::Request(r)),
            Delivery::Response,
        )
        .await;
    // A capability the request needed but did not declare is answered with 400.
    if let Body::Full(b) = resp.body() {
        if is_missing_capability(b) {
            *resp.status_mut() = StatusCode::BAD_REQUEST;
        }
    }
    resp
}

/// How a -32021 error starts, as the gateway writes it.
const MISSING_CAPABILITY_ERROR: &[u8] = b"\"error\":{\"code\":-32021";

/// Whether a whole answer is a -32021 error.
fn is_missing_capability(body: &[u8]) -> bool {
    body.len() < 4096
        && body
            .windows(MISSING_CAPABILITY_ERROR.len())
            .any(|w| w == MISSING_CAPABILITY_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_missing_capability_answer_is_told_apart() {
        let e = crate::proto::jsonrpc::error_response(Some(&1u64.into()), &meta::missing_capability(&["sampling"]));
        assert!(is_missing_capability(e.to_string().as_bytes()));
        let other = crate::proto::jsonrpc::error_response(Some(&1u64.into()), &RpcError::invalid_params("x"));
        assert!(!is_missing_capability(other.to_string().as_bytes()));
    }

    fn request(method: &str, params: serde_json::Value) -> RpcRequest {
        RpcRequest {
            id: 1u64.into(),
            method: method.into(),
            params: Some(params),
        }
    }

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().unwrap());
        }
        h
    }

    fn meta() -> serde_json::Value {
        json!({meta::PROTOCOL_VERSION: "2026-07-28", meta::CLIENT_CAPABILITIES: {}})
    }

    #[test]
    fn headers_must_mirror_the_body() {
        let call = request("tools/call", json!({"name": "héllo", "_meta": meta()}));
        let good = [
            (MCP_PROTOCOL_VERSION, "2026-07-28"),
            (MCP_METHOD, "tools/call"),
            (MCP_NAME, "=?base64?aMOpbGxv?="),
        ];
        assert!(check(&headers(&good), &call).is_ok());
        let code = |pairs: &[(http::HeaderName, &str)]| check(&headers(pairs), &call).unwrap_err().code;
        assert_eq!(code(&good[..2]), meta::HEADER_MISMATCH);
        assert_eq!(code(&[good[0].clone(), good[2].clone()]), meta::HEADER_MISMATCH);
        assert_eq!(code(&good[1..]), meta::HEADER_MISMATCH);
        assert_eq!(
            code(&[good[0].clone(), good[1].clone(), (MCP_NAME, "hello")]),
            meta::HEADER_MISMATCH
        );
        assert_eq!(
            code(&[(MCP_PROTOCOL_VERSION, "2025-11-25"), good[1].clone(), good[2].clone()]),
            meta::HEADER_MISMATCH
        );

        // The body's _meta is read first; a header naming the same unknown revision gets -32022.
        let bare = request("tools/list", json!({}));
        assert_eq!(check(&headers(&good), &bare).unwrap_err().code, -32602);
        let future = request(
            "tools/list",
            json!({"_meta": {meta::PROTOCOL_VERSION: "v9", meta::CLIENT_CAPABILITIES: {}}}),
        );
        let h = headers(&[(MCP_PROTOCOL_VERSION, "v9"), (MCP_METHOD, "tools/list")]);
        assert_eq!(check(&h, &future).unwrap_err().code, meta::UNSUPPORTED_VERSION);
    }

    #[test]
    fn a_modern_request_is_told_by_its_header_or_its_meta() {
        let list = Incoming::Single(Message::Request(request("tools/list", json!({"_meta": meta()}))));
        assert!(is_stateless_request(&HeaderMap::new(), &list));
        let plain = Incoming::Single(Message::Request(request("tools/list", json!({}))));
        assert!(!is_stateless_request(&HeaderMap::new(), &plain));
        assert!(!is_stateless_request(
            &headers(&[(MCP_PROTOCOL_VERSION, "2025-11-25")]),
            &plain
        ));
        assert!(is_stateless_request(
            &headers(&[(MCP_PROTOCOL_VERSION, "2026-07-28")]),
            &plain
        ));
    }
}
