//! How an answer leaves the engine: the event the client gets (a stateless request's result
//! finished for its era), and what metrics count of it (requests by transport, method and
//! outcome; tool calls by tool, upstream and outcome).

use serde_json::Value;

use super::{stateless, Event, Reply};
use crate::federation::Relayed;
use crate::observe::{metrics, Telemetry};
use crate::platform::{boxed_stream, MaybeSend};
use crate::proto::jsonrpc::{self, Json, Request, RequestId, RpcError};
use crate::proto::method::Method;
use crate::registry::Tool;
use futures::StreamExt;

/// A request's answer as the client gets it: a stateless request's result finished with its
/// `resultType` (and cache hints), its error in the era's codes.
fn answer_event(
    id: &RequestId,
    r: Result<Json, RpcError>,
    input: bool,
    finish: Option<&(Vec<(&'static str, String)>, Value)>,
) -> Event {
    match (r, finish) {
        (Ok(result), Some((_, info))) if input => {
            let fields = [("resultType", "\"input_required\"".to_string())];
            Event::Answer(jsonrpc::response_json(id, &stateless::finish(&result, &fields, info)))
        }
        (Ok(result), Some((fields, info))) => {
            Event::Answer(jsonrpc::response_json(id, &stateless::finish(&result, fields, info)))
        }
        (Ok(result), None) => Event::Answer(jsonrpc::response_json(id, &result)),
        (Err(e), Some(_)) => Event::Answer(Json::from_value(&jsonrpc::error_response(
            Some(id),
            &stateless::error(e),
        ))),
        (Err(e), None) => Event::Answer(Json::from_value(&jsonrpc::error_response(Some(id), &e))),
    }
}

/// What turns a request's result (or error; `true` for `input_required`) into the client's
/// answer, counting it.
pub(super) fn responder(
    t: &Telemetry,
    transport: &'static str,
    req: &Request,
    finish: Option<(Vec<(&'static str, String)>, Value)>,
) -> impl Fn(Result<Json, RpcError>, bool) -> Event + MaybeSend + 'static {
    let count = counter(t, transport, req);
    let id = req.id.clone();
    move |r: Result<Json, RpcError>, input: bool| {
        if let Some(count) = &count {
            count(match (&r, input) {
                (Err(_), _) => "error",
                (Ok(_), true) => "input_required",
                (Ok(_), false) => "ok",
            });
        }
        answer_event(&id, r, input, finish.as_ref())
    }
}

/// Whether a `tools/call` result (as JSON text) says the tool failed (`"isError": true` at its
/// top level).
fn is_tool_error(result: &str) -> bool {
    let mut depth = 0usize;
    let b = result.as_bytes();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match c {
                b'\\' => i += 1,
                b'"' => in_str = false,
                _ => {}
            }
        } else {
            match c {
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.saturating_sub(1),
                b'"' if depth == 1 && result[i..].starts_with("\"isError\"") => {
                    let rest = result[i + 9..].trim_start();
                    if let Some(v) = rest.strip_prefix(':') {
                        return v.trim_start().starts_with("true");
                    }
                    in_str = true;
                }
                b'"' => in_str = true,
                _ => {}
            }
        }
        i += 1;
    }
    false
}

/// What counts a request's outcome (and times it), when metrics are on.
pub(super) fn counter(
    t: &Telemetry,
    transport: &'static str,
    req: &Request,
) -> Option<impl Fn(&'static str) + MaybeSend + 'static> {
    let t = t.clone();
    if !t.on() {
        return None;
    }
    let started = t.now_us();
    let method = Method::parse(&req.method).map_or("other", Method::name);
    Some(move |outcome: &'static str| {
        t.count(&metrics::MCP_REQUESTS, &[transport, method, outcome]);
        t.elapsed(&metrics::MCP_DURATION, &[transport, method], started);
    })
}

/// Counts a tool call's outcome (ok, tool_error, error) when its answer passes.
pub(super) fn count_tool_call(t: &Telemetry, tool: &Tool, reply: Reply) -> Reply {
    let t = t.clone();
    if !t.on() {
        return reply;
    }
    let name = tool.def.name.clone();
    let upstream = tool
        .fed
        .as_ref()
        .map(|f| f.upstream.def.name.clone())
        .unwrap_or_default();
    let count = move |outcome: &str| t.count(&metrics::TOOL_CALLS, &[&name, &upstream, outcome]);
    let outcome = |r: &Result<Json, RpcError>| match r {
        Ok(j) if is_tool_error(&j.0) => "tool_error",
        Ok(_) => "ok",
        Err(_) => "error",
    };
    match reply {
        Reply::Now(j) => {
            count(outcome(&Ok(j.clone())));
            Reply::Now(j)
        }
        Reply::Relay(items) => Reply::Relay(boxed_stream(items.inspect(move |item| match item {
            Relayed::Answer(r) => count(outcome(r)),
            Relayed::Input { .. } => count("input_required"),
            _ => {}
        }))),
    }
}

#[cfg(test)]
mod tests {
    use super::is_tool_error;

    #[test]
    fn a_tool_error_is_told_from_its_top_level_flag_only() {
        assert!(is_tool_error(r#"{"content":[],"isError":true}"#));
        assert!(is_tool_error(r#"{ "isError" : true, "content": [] }"#));
        assert!(!is_tool_error(r#"{"content":[],"isError":false}"#));
        assert!(!is_tool_error(
            r#"{"content":[{"type":"text","text":"\"isError\":true"}]}"#
        ));
        assert!(!is_tool_error(r#"{"structuredContent":{"isError":true},"content":[]}"#));
        assert!(!is_tool_error(r#"{"content":[]}"#));
    }
}
