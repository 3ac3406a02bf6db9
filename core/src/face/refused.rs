//! Why a transport did not serve an MCP request ([`Refused`]): the face's error enum, answered
//! as a JSON-RPC error by [`crate::http::response::failure`].

use http::{header, HeaderName, HeaderValue, Response, StatusCode};

use crate::http::response::{rpc_failure, Body, Failure};
use crate::proto::jsonrpc::{RequestId, RpcError, SESSION_NOT_FOUND};
use crate::proto::version::ProtocolVersion;

/// A request the face refuses before any method runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refused {
    /// 406: `Accept` lacks what the answer needs (the media types it must list).
    NotAcceptable(&'static str),
    /// 415: the body is not declared JSON.
    NotJson,
    /// 400: the body is not JSON-RPC (-32700 or -32600), to the request `id` when it was read.
    Malformed(Option<RequestId>, RpcError),
    /// 400: a batch over the limit.
    BatchTooLarge {
        /// Messages in it.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// 400: an `MCP-Protocol-Version` header naming a revision not served with sessions.
    UnsupportedVersion(String),
    /// 400: something the transport needs is missing (what it is).
    Missing(&'static str),
    /// 400: a request of the session era sent before `initialize`.
    NeedsSession(Option<RequestId>),
    /// A method unknown to the era it was sent in (400 in the session era, 404 in the
    /// stateless one).
    UnknownMethod {
        /// The request.
        id: RequestId,
        /// Its method.
        method: String,
        /// 400 or 404.
        status: StatusCode,
    },
    /// 400: a message the era does not allow (why).
    NotInEra(String),
    /// 400: a stateless request whose headers and `_meta` disagree or are missing.
    BadStatelessRequest(RequestId, RpcError),
    /// 404: an unknown, expired or foreign session: the client must initialize again.
    SessionNotFound,
    /// 503: the gateway is stopping.
    ShuttingDown,
    /// 503 while the gateway holds `max_sessions` and none is idle enough to go; 429 while the
    /// client holds its quota of sessions, each with an open stream.
    TooManySessions(crate::session::Refused),
    /// 500: the request produced no answer.
    NoResponse,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NotAcceptable(types) => write!(f, "Not Acceptable: Accept must list {types}"),
            Refused::NotJson => f.write_str("Unsupported Media Type: Content-Type must be application/json"),
            Refused::Malformed(_, e) | Refused::BadStatelessRequest(_, e) => f.write_str(&e.message),
            Refused::BatchTooLarge { got, max } => {
                write!(f, "Invalid Request: a batch of {got} messages is over the limit of {max}")
            }
            Refused::UnsupportedVersion(v) => write!(
                f,
                "Bad Request: unsupported MCP-Protocol-Version '{v}' (supported: {})",
                ProtocolVersion::served_names().join(", ")
            ),
            Refused::Missing(what) => write!(f, "Bad Request: missing {what}"),
            Refused::NeedsSession(_) => f.write_str("Bad Request: missing Mcp-Session-Id header; send initialize first"),
            Refused::UnknownMethod { method, .. } => write!(f, "Method not found: {method}"),
            Refused::NotInEra(why) => write!(f, "Invalid Request: {why}"),
            Refused::SessionNotFound => f.write_str("Session not found"),
            Refused::ShuttingDown => f.write_str("shutting down"),
            Refused::TooManySessions(crate::session::Refused::Full) => {
                f.write_str("Too many sessions: try again later")
            }
            Refused::TooManySessions(crate::session::Refused::AtQuota) => f.write_str(
                "Too many sessions of this client (MCPGW_MAX_SESSIONS_PER_CLIENT), each with an open stream: close one first",
            ),
            Refused::NoResponse => f.write_str("request produced no response"),
        }
    }
}

impl Failure for Refused {
    fn status(&self) -> StatusCode {
        match self {
            Refused::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Refused::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refused::UnknownMethod { status, .. } => *status,
            Refused::SessionNotFound => StatusCode::NOT_FOUND,
            Refused::ShuttingDown | Refused::TooManySessions(crate::session::Refused::Full) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Refused::TooManySessions(crate::session::Refused::AtQuota) => StatusCode::TOO_MANY_REQUESTS,
            Refused::NoResponse => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
    fn rpc(&self) -> RpcError {
        match self {
            Refused::Malformed(_, e) | Refused::BadStatelessRequest(_, e) => e.clone(),
            Refused::UnknownMethod { method, .. } => RpcError::method_not_found(method),
            Refused::SessionNotFound => RpcError::new(SESSION_NOT_FOUND, self.to_string()),
            Refused::TooManySessions(_) => RpcError::new(-32000, self.to_string()),
            Refused::ShuttingDown | Refused::NoResponse => RpcError::internal(self.to_string()),
            _ => RpcError::invalid_request(self.to_string()),
        }
    }
    fn api_code(&self) -> &'static str {
        match self.status() {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            s if s.is_server_error() => "unavailable",
            _ => "bad_request",
        }
    }
    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        match self {
            Refused::TooManySessions(_) => vec![(header::RETRY_AFTER, HeaderValue::from_static("60"))],
            _ => vec![],
        }
    }
}

impl Refused {
    /// The request the refusal answers, when it was read.
    fn id(&self) -> Option<&RequestId> {
        match self {
            Refused::Malformed(id, _) | Refused::NeedsSession(id) => id.as_ref(),
            Refused::UnknownMethod { id, .. } | Refused::BadStatelessRequest(id, _) => Some(id),
            _ => None,
        }
    }

    /// The answer.
    pub fn answer(&self) -> Response<Body> {
        rpc_failure(self, self.id())
    }
}

impl From<Refused> for Response<Body> {
    fn from(r: Refused) -> Self {
        r.answer()
    }
}
