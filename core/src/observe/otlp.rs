//! Spans in the OTLP/HTTP JSON encoding (`POST {endpoint}/v1/traces`, content type
//! `application/json`): trace and span ids as hex, times as decimal strings of nanoseconds.

use serde_json::{json, Value};

use crate::observe::trace::{Span, SpanKind};

/// One export request's body: `spans` under a resource named `service`.
pub fn encode(spans: &[Span], service: &str, version: &str) -> String {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut v = json!({
                "traceId": s.trace_id,
                "spanId": s.span_id,
                "name": s.name,
                // SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3.
                "kind": match s.kind { SpanKind::Server => 2, SpanKind::Client => 3 },
                "startTimeUnixNano": (s.start_us.saturating_mul(1000)).to_string(),
                "endTimeUnixNano": (s.end_us.max(s.start_us).saturating_mul(1000)).to_string(),
                "attributes": s.attributes.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>(),
                // STATUS_CODE_UNSET = 0, STATUS_CODE_ERROR = 2.
                "status": {"code": if s.error { 2 } else { 0 }},
            });
            if let Some(p) = &s.parent_id {
                v["parentSpanId"] = json!(p);
            }
            v
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service}},
                {"key": "service.version", "value": {"stringValue": version}},
            ]},
            "scopeSpans": [{"scope": {"name": "mcpgw", "version": version}, "spans": spans}],
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            attributes: vec![("mcpgw.upstream", "up".into())],
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
        assert_eq!(
            v["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "mcpgw"
        );
    }
}
