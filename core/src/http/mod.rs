//! The HTTP vocabulary every layer above shares, with no service in it: the [`route::Route`]
//! a path names (parsed once, used by core and the edge Worker), the response [`response::Body`]
//! and the one place errors become responses, reading request headers, and fetching a whole
//! outbound response within a size limit and a timeout ([`fetch`]).
//!
//! Not here: anything that needs a session, the registry or a credential.

pub mod fetch;
pub(crate) mod response;
pub mod route;

use http::{header, HeaderMap, HeaderName, HeaderValue};

use crate::ports::HttpError;

/// What a query string's names and values keep unescaped (and a path segment's): RFC 3986's
/// unreserved characters.
pub(crate) const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The REST API's OpenAPI 3.1 document (written by `scripts/openapi.py`).
pub(crate) const OPENAPI: &str = include_str!("../../assets/openapi.json");

/// A header's value, if it is text.
pub(crate) fn header_str(h: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Request headers from text pairs (a definition's `headers`); the first invalid name or value
/// is named in the error. Definitions are checked when stored, so this fails only for rows
/// stored before that check.
pub fn header_map<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<HeaderMap, HttpError> {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        let bad = || HttpError::InvalidHeader(k.clone());
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad())?;
        h.append(name, HeaderValue::from_str(v).map_err(|_| bad())?);
    }
    Ok(h)
}

/// True when `accept` lists `mime` (or a wildcard covering it).
pub(crate) fn accepts(h: &HeaderMap, mime: &str) -> bool {
    let major = mime.split('/').next().unwrap_or_default();
    h.get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let m = item.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            m == mime || m == "*/*" || m.strip_suffix("/*") == Some(major)
        })
}

/// True when the body is declared JSON (`application/json`, `…+json`) or not declared at all.
pub(crate) fn is_json_content(h: &HeaderMap) -> bool {
    match header_str(h, "content-type") {
        None => true,
        Some(ct) => {
            let m = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn accept_matching() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        assert!(accepts(&h, "application/json") && accepts(&h, "text/event-stream"));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/*;q=0.5"));
        assert!(accepts(&h, "text/event-stream") && !accepts(&h, "application/json"));
        assert!(!accepts(&HeaderMap::new(), "application/json"));
    }
}
