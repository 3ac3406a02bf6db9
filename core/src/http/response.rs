//! HTTP responses: the [`Body`] every answer carries, and the one place where errors become
//! responses (JSON-RPC error bodies on MCP routes, a `{"error": {...}}` body on the REST API,
//! and the status for each failure).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use crate::platform::BoxStream;
use crate::proto::jsonrpc::{self, RequestId, RpcError};

/// A response body: empty, whole, or streamed (SSE).
pub enum Body {
    /// No body.
    Empty,
    /// The whole body.
    Full(Bytes),
    /// A body produced over time; ends when the stream ends.
    Stream(BoxStream<'static, Bytes>),
}

impl Body {
    /// The bytes of a whole body (empty for a stream); for tests and small responses.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Full(b) => b,
            _ => &[],
        }
    }
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    json_text_response(status, body.to_string())
}

/// A JSON response from already-serialized text.
pub(crate) fn json_text_response(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::Full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON-RPC error response for an MCP route, with the request's id (or null).
pub(crate) fn rpc_error(status: StatusCode, id: Option<&RequestId>, error: RpcError) -> Response<Body> {
    json_response(status, &jsonrpc::error_response(id, &error))
}

/// A REST API error: `{"error": {"code", "message", "field"?}}`.
pub(crate) fn api_error(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    field: Option<&str>,
) -> Response<Body> {
    let mut err = json!({"code": code, "message": message.into()});
    if let Some(f) = field {
        err["field"] = json!(f);
    }
    json_response(status, &json!({"error": err}))
}

/// 405 with the allowed methods.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = api_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("allowed methods: {allow}"),
        None,
    );
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}
