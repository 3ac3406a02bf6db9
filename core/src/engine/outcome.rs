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

/// Whether a `tools/call` result (as JSON text) says the tool failed: its top-level
/// `"isError": true`, read without building the result (other members are skipped).
fn is_tool_error(result: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Flag {
        #[serde(rename = "isError", default)]
        is_error: bool,
    }
    serde_json::from_str::<Flag>(result).is_ok_and(|f| f.is_error)
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
