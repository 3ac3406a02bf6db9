//! The WebSocket transport (`/ws`, `/servers/{id}/ws`, subprotocol `mcp`): one JSON-RPC message
//! per text frame, the session era over it. The upgrade request goes through
//! [`crate::Gateway::handle`] like any request (Host and Origin checks, admission with the
//! bearer header or the `access_token` query parameter, the virtual server and its scope); what
//! is decided here is whether it is a WebSocket upgrade this gateway takes. The answer is a
//! `101` carrying a [`WsAccept`] in its extensions, which the runtime's adapter completes (the
//! handshake's accept key, the socket) and then runs: each text frame goes to a
//! [`crate::bridge::Bridge`] over this gateway's own streamable HTTP endpoint, with the upgrade's
//! credentials, so every message is admitted (rate limits, expiry, revocation) as it would be
//! over HTTP, and everything the endpoint says goes back as text frames.
//!
//! Close codes an adapter uses: [`CLOSE_NORMAL`] when the client closes, [`CLOSE_UNSUPPORTED`]
//! for a binary frame, [`CLOSE_TOO_BIG`] for a message over `max_body_bytes`, [`CLOSE_GOING_AWAY`]
//! at shutdown or when pings go unanswered.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use crate::http::response::{rpc_failure, Body, Failure};
use crate::proto::jsonrpc::RpcError;

/// The subprotocol a client must offer.
pub const SUBPROTOCOL: &str = "mcp";
/// The query parameter a browser client (which cannot set headers on a WebSocket) may carry its
/// bearer token in.
pub const TOKEN_PARAM: &str = "access_token";
/// 1000: the client closed.
pub const CLOSE_NORMAL: u16 = 1000;
/// 1001: the gateway is shutting down, or the client stopped answering pings.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// 1003: a binary frame (MCP messages are text).
pub const CLOSE_UNSUPPORTED: u16 = 1003;
/// 1009: a message larger than the gateway takes.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// The close code for a client that broke the connection's terms (here: it stopped reading
/// its messages).
pub const CLOSE_POLICY: u16 = 1008;
/// Seconds between the gateway's pings; a connection that answered none of the last two is
/// closed.
pub const PING_SECS: u64 = 20;

/// An upgrade the gateway took: what the adapter needs to run the connection.
#[derive(Debug, Clone)]
pub struct WsAccept {
    /// The streamable HTTP endpoint the connection's messages go to (`/mcp`,
    /// `/servers/{id}/mcp`).
    pub path: String,
    /// The credentials each message carries (the upgrade's `Authorization`).
    pub headers: HeaderMap,
    /// The largest message taken, in bytes.
    pub max_message: usize,
}

/// Whether `req` asks for a WebSocket (an adapter upgrades only those).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// A bearer token in the `access_token` query parameter becomes the request's `Authorization`
/// header (unless it has one), so admission reads it like any other.
pub fn token_from_query(req: &mut Request<Bytes>) {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return;
    }
    let token = req.uri().query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == TOKEN_PARAM).then(|| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
        })
    });
    if let Some(v) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        req.headers_mut().insert(header::AUTHORIZATION, v);
    }
}

/// Why a request on a WebSocket route is not upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum NotUpgraded {
    /// 426: not an upgrade at all.
    #[error("this endpoint is a WebSocket (subprotocol 'mcp'); use /mcp for streamable HTTP")]
    NotUpgrade,
    /// 405.
    #[error("a WebSocket upgrade is a GET")]
    NotGet,
    /// 400.
    #[error("Sec-WebSocket-Version must be 13")]
    Version,
    /// 400.
    #[error("Sec-WebSocket-Key is missing")]
    NoKey,
    /// 400.
    #[error("the WebSocket subprotocol 'mcp' is required")]
    NoSubprotocol,
}

impl Failure for NotUpgraded {
    fn status(&self) -> StatusCode {
        match self {
            NotUpgraded::NotUpgrade => StatusCode::UPGRADE_REQUIRED,
            NotUpgraded::NotGet => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
    fn rpc(&self) -> RpcError {
        RpcError::invalid_request(self.to_string())
    }
    fn api_code(&self) -> &'static str {
        "bad_request"
    }
    fn headers(&self) -> Vec<(http::HeaderName, HeaderValue)> {
        match self {
            NotUpgraded::NotUpgrade => vec![(header::UPGRADE, HeaderValue::from_static("websocket"))],
            NotUpgraded::Version => vec![(
                http::HeaderName::from_static("sec-websocket-version"),
                HeaderValue::from_static("13"),
            )],
            _ => vec![],
        }
    }
}

fn refuse(why: NotUpgraded) -> Response<Body> {
    rpc_failure(&why, None)
}

/// Answers an admitted request on a WebSocket route: `101` with a [`WsAccept`] for a valid
/// upgrade that offers the `mcp` subprotocol; else 426 (not an upgrade), 405, or 400 saying
/// what is wrong.
pub(crate) fn upgrade(req: &Request<Bytes>, path: String, max_message: usize) -> Response<Body> {
    if !is_upgrade(req) {
        return refuse(NotUpgraded::NotUpgrade);
    }
    if req.method() != Method::GET {
        return refuse(NotUpgraded::NotGet);
    }
    let h = req.headers();
    if h.get("sec-websocket-version").and_then(|v| v.to_str().ok()) != Some("13") {
        return refuse(NotUpgraded::Version);
    }
    if !h.contains_key("sec-websocket-key") {
        return refuse(NotUpgraded::NoKey);
    }
    let offers_mcp = h
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if !offers_mcp {
        return refuse(NotUpgraded::NoSubprotocol);
    }
    let mut headers = HeaderMap::new();
    if let Some(auth) = h.get(header::AUTHORIZATION) {
        headers.insert(header::AUTHORIZATION, auth.clone());
    }
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
    r.extensions_mut().insert(WsAccept {
        path,
        headers,
        max_message,
    });
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)], uri: &str) -> Request<Bytes> {
        let mut b = Request::builder().method(Method::GET).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Bytes::new()).expect("request")
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "json, mcp"),
    ];

    #[test]
    fn an_upgrade_offering_mcp_is_taken_with_its_credentials() {
        let mut headers = GOOD.to_vec();
        headers.push(("authorization", "Bearer abc"));
        let r = upgrade(&req(&headers, "/ws"), "/mcp".into(), 10);
        assert_eq!(r.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(r.headers()["sec-websocket-protocol"], "mcp");
        let a = r.extensions().get::<WsAccept>().expect("accept");
        assert_eq!(a.path, "/mcp");
        assert_eq!(a.headers[header::AUTHORIZATION], "Bearer abc");
    }

    #[test]
    fn what_is_not_a_good_upgrade_is_refused_saying_why() {
        let plain = upgrade(&req(&[], "/ws"), "/mcp".into(), 10);
        assert_eq!(plain.status(), StatusCode::UPGRADE_REQUIRED);
        let no_mcp: Vec<_> = GOOD
            .iter()
            .map(|&(k, v)| (k, if k == "sec-websocket-protocol" { "json" } else { v }))
            .collect();
        let r = upgrade(&req(&no_mcp, "/ws"), "/mcp".into(), 10);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(r.body().as_bytes()).contains("'mcp'"));
        let old: Vec<_> = GOOD
            .iter()
            .map(|&(k, v)| (k, if k == "sec-websocket-version" { "8" } else { v }))
            .collect();
        assert_eq!(
            upgrade(&req(&old, "/ws"), "/mcp".into(), 10).status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_query_token_becomes_the_authorization_header_unless_one_is_sent() {
        let mut r = req(&[], "/ws?x=1&access_token=a%2Eb");
        token_from_query(&mut r);
        assert_eq!(r.headers()[header::AUTHORIZATION], "Bearer a.b");
        let mut r = req(&[("authorization", "Bearer header")], "/ws?access_token=query");
        token_from_query(&mut r);
        assert_eq!(r.headers()[header::AUTHORIZATION], "Bearer header");
    }
}
