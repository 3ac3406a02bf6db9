//! Which Hosts and Origins may reach the gateway (DNS-rebinding protection while bound to
//! loopback; the configured lists otherwise) and the CORS answers for the Origins that pass.

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};

use crate::http::header_str;
use crate::http::response::Body;

/// Request headers a browser client may send (answer to a CORS preflight).
const CORS_ALLOW_HEADERS: &str =
    "content-type, accept, authorization, mcp-session-id, mcp-protocol-version, last-event-id";
/// Response headers a browser client may read.
const CORS_EXPOSE_HEADERS: &str = "mcp-session-id, mcp-protocol-version, www-authenticate, retry-after, location";

/// The Host and Origin policy.
#[derive(Debug, Clone, Default)]
pub(crate) struct OriginPolicy {
    /// Hosts accepted besides loopback names (all, when empty and not bound to loopback).
    pub allowed_hosts: Vec<String>,
    /// Origins accepted (`*`: any).
    pub allowed_origins: Vec<String>,
    /// Bound to a loopback address: only loopback Hosts and Origins, unless listed.
    pub loopback: bool,
}

/// The host part of a `Host` header or origin authority, without port or brackets.
fn host_only(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.rsplit_once(':').map_or(authority, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            authority
        }
    })
}

fn is_loopback_name(host: &str) -> bool {
    let h = host.to_ascii_lowercase();
    h == "localhost"
        || h == "::1"
        || h.starts_with("127.") && h.split('.').count() == 4 && h.split('.').all(|o| o.parse::<u8>().is_ok())
}

/// A Host or Origin the policy does not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Disallowed {
    /// The `Host` header names a host that is not served.
    #[error("Forbidden: Host '{0}' is not allowed")]
    Host(String),
    /// A browser page from this origin may not call the gateway.
    #[error("Forbidden: Origin '{0}' is not allowed")]
    Origin(String),
}

impl OriginPolicy {
    /// Whether the request's Host and Origin may reach the gateway; why not otherwise.
    pub fn check(&self, req: &Request<Bytes>) -> Result<(), Disallowed> {
        let host = header_str(req.headers(), "host")
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        let host_listed = |h: &str| {
            self.allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(h) || a.eq_ignore_ascii_case(host_only(h)))
        };
        if let Some(h) = &host {
            let ok = if self.loopback {
                is_loopback_name(host_only(h)) || host_listed(h)
            } else {
                self.allowed_hosts.is_empty() || host_listed(h)
            };
            if !ok {
                return Err(Disallowed::Host(h.clone()));
            }
        }
        if let Some(origin) = header_str(req.headers(), "origin") {
            if self
                .allowed_origins
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
            {
                return Ok(());
            }
            let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or(origin);
            let ok = if self.loopback {
                is_loopback_name(host_only(authority))
            } else {
                host.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(authority))
            };
            if !ok {
                return Err(Disallowed::Origin(origin.to_string()));
            }
        }
        Ok(())
    }
}

/// The answer to a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
pub(crate) fn preflight() -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static(CORS_ALLOW_HEADERS),
    );
    h.insert("access-control-max-age", HeaderValue::from_static("600"));
    r
}

/// Adds the CORS headers for an Origin that passed [`OriginPolicy::check`].
pub(crate) fn with_cors(mut r: Response<Body>, origin: Option<HeaderValue>) -> Response<Body> {
    if let Some(o) = origin {
        let h = r.headers_mut();
        h.insert("access-control-allow-origin", o);
        h.insert(
            "access-control-expose-headers",
            HeaderValue::from_static(CORS_EXPOSE_HEADERS),
        );
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parsing() {
        assert_eq!(host_only("localhost:4444"), "localhost");
        assert_eq!(host_only("[::1]:80"), "::1");
        assert_eq!(host_only("evil.example.com"), "evil.example.com");
        assert!(is_loopback_name("127.0.0.1") && is_loopback_name("LOCALHOST") && is_loopback_name("::1"));
        assert!(!is_loopback_name("127.0.0.1.evil.com") && !is_loopback_name("evil.example.com"));
    }
}

/// Headers by which a proxy says what it saw of the client: believed only from a configured
/// proxy, removed from everyone else's requests before anything reads them (the gateway's
/// audience, its cookies' `Secure`, the client's address for quotas and rate limits).
const FORWARDED: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// The address of one `X-Forwarded-For` hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or
/// `[2001:db8::1]:443`.
fn hop_address(hop: &str) -> Option<std::net::IpAddr> {
    let h = hop.trim();
    if let Ok(ip) = h.parse() {
        return Some(ip);
    }
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    h.rsplit_once(':')?.0.parse::<std::net::Ipv4Addr>().ok().map(Into::into)
}

/// Set in a request's extensions by an adapter: the client's address (rate limits of
/// anonymous callers are per address); a trusted proxy's `X-Forwarded-For` may replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp(pub String);

/// Set once [`trust_forwarded`] has looked at a request, so that a second look (the edge
/// admits in the Worker, then serves in a Durable Object) changes nothing.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedChecked;

/// A request's forwarded headers kept only when its peer (its `ClientIp`) is one of the
/// `trusted` proxies; then the client's address becomes the last `X-Forwarded-For` hop that is
/// not itself a trusted proxy. From anyone else they are removed.
pub fn trust_forwarded(req: &mut Request<Bytes>, trusted: &crate::netguard::Networks) {
    if req.extensions().get::<ForwardedChecked>().is_some() {
        return;
    }
    req.extensions_mut().insert(ForwardedChecked);
    let peer = req.extensions().get::<ClientIp>().map(|c| c.0.clone());
    let from_proxy = peer.as_deref().is_some_and(|p| trusted.contains(p));
    if from_proxy {
        let hops: Vec<Option<std::net::IpAddr>> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(hop_address)
            .collect();
        // The last hop that is not a proxy of ours; one that is no address ends the search (what
        // came before it cannot be told apart from what a client wrote).
        let client = hops
            .iter()
            .rev()
            .find(|h| h.is_none_or(|ip| !trusted.contains(&ip.to_string())));
        if let Some(Some(ip)) = client {
            req.extensions_mut().insert(ClientIp(ip.to_string()));
        }
        return;
    }
    for h in FORWARDED {
        req.headers_mut().remove(h);
    }
}

#[cfg(test)]
mod forwarded_tests {
    use super::*;

    fn req(peer: &str) -> Request<Bytes> {
        let mut r = Request::builder()
            .uri("/mcp")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-for", "203.0.113.9, 10.0.0.2")
            .header("x-forwarded-host", "evil.example")
            .body(Bytes::new())
            .expect("request");
        r.extensions_mut().insert(ClientIp(peer.into()));
        r
    }

    #[test]
    fn forwarded_headers_are_believed_only_from_trusted_proxies() {
        let trusted = crate::netguard::Networks::parse(&["10.0.0.0/8".into()]).expect("cidr");
        // A client straight in: its forwarded headers are gone and its address stays its own.
        let mut r = req("198.51.100.7");
        trust_forwarded(&mut r, &trusted);
        assert!(
            FORWARDED.iter().all(|h| !r.headers().contains_key(*h)),
            "{:?}",
            r.headers()
        );
        assert_eq!(r.extensions().get::<ClientIp>(), Some(&ClientIp("198.51.100.7".into())));
        // Through the proxy: believed, and the client is the last hop that is not a proxy.
        let mut r = req("10.0.0.1");
        trust_forwarded(&mut r, &trusted);
        assert_eq!(r.headers()["x-forwarded-proto"], "https");
        assert_eq!(r.extensions().get::<ClientIp>(), Some(&ClientIp("203.0.113.9".into())));
        // A second look changes nothing (the client's address is not a proxy's).
        trust_forwarded(&mut r, &trusted);
        assert_eq!(r.headers()["x-forwarded-proto"], "https");
        // Hops with ports, IPv6 in brackets.
        let mut r = req("10.0.0.1");
        r.headers_mut().insert(
            "x-forwarded-for",
            "[2001:db8::7]:443, 10.0.0.3:5678".parse().expect("value"),
        );
        trust_forwarded(&mut r, &trusted);
        assert_eq!(r.extensions().get::<ClientIp>(), Some(&ClientIp("2001:db8::7".into())));
        // Nothing trusted: nobody's headers are believed.
        let mut r = req("10.0.0.1");
        trust_forwarded(&mut r, &crate::netguard::Networks::default());
        assert!(!r.headers().contains_key("x-forwarded-proto"));
    }
}
