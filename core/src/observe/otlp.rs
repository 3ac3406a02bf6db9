//! Spans in the OTLP/HTTP JSON encoding (`POST {endpoint}/v1/traces`, content type
//! `application/json`): trace and span ids as hex, times as decimal strings of nanoseconds.

use std::fmt::Write as _;

use crate::observe::trace::{Span, SpanKind};

/// `s` as a JSON string.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `{"key": k, "value": {"stringValue": v}}`.
fn attribute(out: &mut String, k: &str, v: &str) {
    out.push_str("{\"key\":");
    string(out, k);
    out.push_str(",\"value\":{\"stringValue\":");
    string(out, v);
    out.push_str("}}");
}

/// One export request's body: `spans` under a resource named `service` (written straight to
/// text: the exporter runs beside the requests).
pub fn encode(spans: &[Span], service: &str, version: &str) -> String {
    let mut out = String::with_capacity(256 + spans.len() * 400);
    out.push_str("{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    attribute(&mut out, "service.name", service);
    out.push(',');
    attribute(&mut out, "service.version", version);
    out.push_str("]},\"scopeSpans\":[{\"scope\":{\"name\":\"mcpgw\",\"version\":");
    string(&mut out, version);
    out.push_str("},\"spans\":[");
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"traceId\":");
        string(&mut out, &s.trace_id);
        out.push_str(",\"spanId\":");
        string(&mut out, &s.span_id);
        if let Some(p) = &s.parent_id {
            out.push_str(",\"parentSpanId\":");
            string(&mut out, p);
        }
        out.push_str(",\"name\":");
        string(&mut out, &s.name);
        // SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3; STATUS_CODE_UNSET = 0, _ERROR = 2.
        let kind = match s.kind {
            SpanKind::Server => 2,
            SpanKind::Client => 3,
        };
        let _ = write!(
            out,
            ",\"kind\":{kind},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":[",
            s.start_us.saturating_mul(1000),
            s.end_us.max(s.start_us).saturating_mul(1000)
        );
        for (j, (k, v)) in s.attributes.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            attribute(&mut out, k, v);
        }
        let _ = write!(out, "],\"status\":{{\"code\":{}}}}}", if s.error { 2 } else { 0 });
    }
    out.push_str("]}]}]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn spans_are_encoded_as_otlp_json() {
        let span = Span {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_id: Some("1111111111111111".into()),
            name: "tools/call echo".into(),
            kind: SpanKind::Client,
            start_us: 1_700_000_000_000_000,
            end_us: 1_700_000_000_000_250,
            attributes: vec![("mcpgw.upstream", "up".into()), ("odd", "q\"\\\n\u{1}é".into())],
            error: true,
        };
        let v: Value = serde_json::from_str(&encode(&[span], "mcpgw", "1.0")).unwrap();
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["parentSpanId"], "1111111111111111");
        assert_eq!(s["kind"], 3);
        assert_eq!(s["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(s["endTimeUnixNano"], "1700000000000250000");
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(s["attributes"][0]["value"]["stringValue"], "up");
        assert_eq!(s["attributes"][1]["value"]["stringValue"], "q\"\\\n\u{1}é");
        assert_eq!(
            v["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "mcpgw"
        );
    }
}
