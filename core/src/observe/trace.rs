//! W3C trace context (`traceparent`), request ids, and spans as the recorder receives them.

use crate::ports::Ids;

/// The trace a request belongs to and its own span in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// This request's span: 16 lowercase hex digits.
    pub span_id: String,
    /// The caller's span, when the request came with a `traceparent`.
    pub parent_id: Option<String>,
    /// The trace flags (bit 0: sampled), kept as they came.
    pub flags: u8,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn not_zero(s: &str) -> bool {
    s.bytes().any(|b| b != b'0')
}

/// A fresh span id (16 hex digits, never all zeros).
pub fn span_id(ids: &dyn Ids) -> String {
    let id = ids.new_id();
    let s = id.get(id.len().saturating_sub(16)..).unwrap_or_default();
    if is_hex(s, 16) && not_zero(s) {
        s.to_string()
    } else {
        "0000000000000001".into()
    }
}

impl TraceContext {
    /// The trace of a request: the `traceparent` header's continued (a new span under it), or a
    /// new trace when there is none or it is malformed (W3C Trace Context level 1).
    pub fn of(traceparent: Option<&str>, ids: &dyn Ids) -> Self {
        if let Some((trace_id, parent, flags)) = traceparent.and_then(parse_traceparent) {
            return Self {
                trace_id,
                span_id: span_id(ids),
                parent_id: Some(parent),
                flags,
            };
        }
        let id = ids.new_id();
        let trace_id = if is_hex(&id, 32) && not_zero(&id) {
            id
        } else {
            format!("{:0>32}", id.len())
        };
        Self {
            trace_id,
            span_id: span_id(ids),
            parent_id: None,
            flags: 1,
        }
    }

    /// The same trace with a new span under this one (an upstream call).
    pub fn child(&self, ids: &dyn Ids) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: span_id(ids),
            parent_id: Some(self.span_id.clone()),
            flags: self.flags,
        }
    }

    /// The `traceparent` value naming this span.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

/// A `traceparent` value's trace id, parent span id and flags; none if malformed (or all-zero
/// ids, or the forbidden version `ff`).
pub fn parse_traceparent(v: &str) -> Option<(String, String, u8)> {
    let v = v.trim();
    let mut parts = v.split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four fields; a later version may add more after them.
    if !is_hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !is_hex(trace, 32) || !is_hex(parent, 16) || !is_hex(flags, 2) || !not_zero(trace) || !not_zero(parent) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace.to_string(), parent.to_string(), flags))
}

/// A request id from the client's `X-Request-Id`, if it is one we can log and echo safely: 1 to
/// 128 characters of letters, digits and `-._:`.
pub fn client_request_id(v: &str) -> Option<&str> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    ok.then_some(v)
}

/// What a request carries from the moment it arrives: its id and trace. An adapter may set it in
/// the request's extensions first (to log under it); the gateway sets it otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCtx {
    /// Echoed as `X-Request-Id` and logged with every line of the request.
    pub request_id: String,
    /// Continued from the request's `traceparent`, or new.
    pub trace: TraceContext,
}

impl RequestCtx {
    /// The context of a request with these headers.
    pub fn of(headers: &http::HeaderMap, ids: &dyn Ids) -> Self {
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let trace = TraceContext::of(header("traceparent"), ids);
        let request_id = match header("x-request-id").and_then(client_request_id) {
            Some(id) => id.to_string(),
            None => ids.new_id(),
        };
        Self { request_id, trace }
    }
}

/// What a span was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// A request the gateway served.
    Server,
    /// A request the gateway made (to an upstream).
    Client,
}

/// A finished span.
#[derive(Debug, Clone)]
pub struct Span {
    /// Its trace.
    pub trace_id: String,
    /// Its id.
    pub span_id: String,
    /// Its parent span, if any.
    pub parent_id: Option<String>,
    /// Its name (`POST /mcp`, `tools/call echo`).
    pub name: String,
    /// Server or client.
    pub kind: SpanKind,
    /// Start, µs since the epoch.
    pub start_us: u64,
    /// End, µs since the epoch.
    pub end_us: u64,
    /// Attributes (OpenTelemetry semantic names where there are ones).
    pub attributes: Vec<(&'static str, String)>,
    /// Whether it ended in an error.
    pub error: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::SeqIds;

    #[test]
    fn traceparent_is_continued_or_a_new_trace_starts() {
        let ids = SeqIds::default();
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::of(Some(incoming), &ids);
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(t.span_id, "00f067aa0ba902b7");
        let c = t.child(&ids);
        assert_eq!(c.trace_id, t.trace_id);
        assert_eq!(c.parent_id.as_deref(), Some(t.span_id.as_str()));
        assert_ne!(c.span_id, t.span_id);
        assert_eq!(c.traceparent(), format!("00-{}-{}-01", t.trace_id, c.span_id));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let t = TraceContext::of(Some(bad), &ids);
            assert!(t.parent_id.is_none(), "{bad}");
            assert_ne!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(is_hex(&t.trace_id, 32) && is_hex(&t.span_id, 16));
        }
        // A later version's extra fields are allowed.
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
    }

    #[test]
    fn only_safe_client_request_ids_are_kept() {
        assert_eq!(client_request_id("abc-123_x.y:z"), Some("abc-123_x.y:z"));
        assert_eq!(client_request_id(""), None);
        assert_eq!(client_request_id("a b"), None);
        assert_eq!(client_request_id("x\"y"), None);
        assert_eq!(client_request_id(&"a".repeat(129)), None);
    }
}
