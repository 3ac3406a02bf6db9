//! HTTP responses: the [`Body`] every answer carries, and the one place where errors become
//! responses ([`failure`]): a JSON-RPC error body on MCP routes, a `{"error": {...}}` body on
//! the REST API. Each layer's error enum says what it is ([`Failure`]: its status, JSON-RPC
//! error, API code and headers) beside its definition; only this file writes error bodies.

use std::fmt;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use super::route::ErrorStyle;
use crate::platform::BoxStream;
use crate::proto::jsonrpc::{self, RequestId, RpcError, INTERNAL_ERROR, INVALID_REQUEST};

/// An error that can be answered: what a layer's error enum says of itself so that
/// [`failure`] can write it in either style.
pub(crate) trait Failure: fmt::Display {
    /// The HTTP status.
    fn status(&self) -> StatusCode;
    /// The error on an MCP route: by default -32600 for a client's mistake (4xx), else -32603,
    /// with the error's text.
    fn rpc(&self) -> RpcError {
        let code = if self.status().is_client_error() {
            INVALID_REQUEST
        } else {
            INTERNAL_ERROR
        };
        RpcError::new(code, self.to_string())
    }
    /// The REST API's code word (`not_found`, `validation_failed`, ...).
    fn api_code(&self) -> &'static str;
    /// The field at fault, on the REST API.
    fn field(&self) -> Option<&str> {
        None
    }
    /// Headers the answer carries (challenges, `Retry-After`, rate-limit state).
    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        vec![]
    }
}

/// The answer to a failure, in the route's style; `id` is the request's on an MCP route when
/// it is known.
pub(crate) fn failure(f: &dyn Failure, style: ErrorStyle, id: Option<&RequestId>) -> Response<Body> {
    let mut r = match style {
        ErrorStyle::JsonRpc => rpc_error(f.status(), id, f.rpc()),
        ErrorStyle::Rest => api_error(f.status(), f.api_code(), f.to_string(), f.field()),
    };
    for (k, v) in f.headers() {
        r.headers_mut().append(k, v);
    }
    r
}

/// Why an adapter did not hand a request to the gateway: the HTTP layer's own failures,
/// answered with [`crate::Gateway::refuse`] (in the style of the route the request was for).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unread {
    /// The body is over the limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// The client went away or sent a broken body.
    #[error("could not read the request body")]
    BadBody,
    /// The body did not arrive in time.
    #[error("the request body did not arrive in time (MCPGW_BODY_TIMEOUT_MS)")]
    BodyTimeout,
    /// The client has too many bodies on their way at once.
    #[error("{0}")]
    TooManyBodies(String),
    /// The listener holds as many connections as it may (of this address, or in all).
    #[error("{0}")]
    TooManyConnections(String),
}

impl Failure for Unread {
    fn status(&self) -> StatusCode {
        match self {
            Unread::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Unread::BadBody => StatusCode::BAD_REQUEST,
            Unread::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Unread::TooManyBodies(_) => StatusCode::TOO_MANY_REQUESTS,
            Unread::TooManyConnections(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    fn rpc(&self) -> RpcError {
        RpcError::invalid_request(self.to_string())
    }
    fn api_code(&self) -> &'static str {
        match self {
            Unread::TooLarge(_) => "payload_too_large",
            Unread::BadBody => "bad_body",
            Unread::BodyTimeout => "body_timeout",
            Unread::TooManyBodies(_) => "too_many_bodies",
            Unread::TooManyConnections(_) => "too_many_connections",
        }
    }
    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        match self {
            Unread::BodyTimeout => vec![(header::CONNECTION, HeaderValue::from_static("close"))],
            Unread::TooManyConnections(_) => vec![
                (header::RETRY_AFTER, HeaderValue::from_static("5")),
                (header::CONNECTION, HeaderValue::from_static("close")),
            ],
            _ => vec![],
        }
    }
}

/// [`failure`] on an MCP route.
pub(crate) fn rpc_failure(f: &dyn Failure, id: Option<&RequestId>) -> Response<Body> {
    failure(f, ErrorStyle::JsonRpc, id)
}

/// [`failure`] on the REST API.
pub(crate) fn api_failure(f: &dyn Failure) -> Response<Body> {
    failure(f, ErrorStyle::Rest, None)
}

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
fn rpc_error(status: StatusCode, id: Option<&RequestId>, error: RpcError) -> Response<Body> {
    json_response(status, &jsonrpc::error_response(id, &error))
}

/// A REST API error: `{"error": {"code", "message", "field"?}}`.
fn api_error(status: StatusCode, code: &str, message: impl Into<String>, field: Option<&str>) -> Response<Body> {
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
