//! How the engine hands a call on: to a federated member's upstream (sealing a 2026-07-28
//! upstream's requestState for its client, see `envelope`), or to a REST tool.

use std::sync::Arc;

use futures::channel::mpsc::unbounded;
use futures::{stream, StreamExt};
use serde_json::{json, Map, Value};

use super::{envelope, CallCtx, Engine, Reply};
use crate::federation::{Forwarding, Relayed};
use crate::observe::{metrics, Span, SpanKind, Telemetry, TraceContext};
use crate::platform::{boxed_stream, BoxStream};
use crate::proto::jsonrpc::{self, Json, Request};
use crate::proto::logging::LogLevel;
use crate::proto::method::{Method, ServerMethod};
use crate::proto::version::Era;
use crate::registry::{Federated, Tool};
use crate::upstream::param_headers;

/// Reads a federated resource (`params.uri`, the URI its upstream knows): the answer kept from
/// an earlier read of that URI if there is one, else the upstream's, kept for the next if it
/// may be.
pub(super) async fn read_through(
    e: &Engine,
    ctx: &CallCtx,
    f: &Federated,
    req: &Request,
    params: Map<String, Value>,
) -> Reply {
    let subject = ctx.caller.identity.as_ref().map_or("", |i| i.subject.as_str());
    // By the URI read, not the member's: every URI of a template is a resource of its own.
    let uri = params.get("uri").and_then(Value::as_str).unwrap_or(&f.name).to_string();
    let slot = match e.fed.answers().lookup(&f.upstream.id, &uri, subject).await {
        Ok(kept) => return Reply::Relay(boxed_stream(stream::iter([Relayed::Answer(Ok(kept))]))),
        Err(slot) => slot,
    };
    match (forward(e, ctx, f, req, Method::ResourcesRead, params), slot) {
        (Reply::Relay(items), Some(slot)) => {
            let (fed, slot) = (e.fed.clone(), Arc::new(slot));
            Reply::Relay(boxed_stream(items.then(move |item| {
                let (fed, slot) = (fed.clone(), slot.clone());
                async move {
                    if let Relayed::Answer(Ok(j)) = &item {
                        fed.answers().keep(&slot, j).await;
                    }
                    item
                }
            })))
        }
        (other, _) => other,
    }
}

/// A read's answer with each of its contents at `from` (the URI the upstream knows) said to be at
/// `to` (the alias the client read).
pub(super) fn renamed_contents(reply: Reply, from: String, to: String) -> Reply {
    let rename = move |j: Json| -> Json {
        let Ok(mut v) = serde_json::from_str::<Value>(&j.0) else {
            return j;
        };
        let contents = v.get_mut("contents").and_then(Value::as_array_mut);
        for c in contents.into_iter().flatten() {
            if c["uri"] == from.as_str() {
                c["uri"] = json!(to);
            }
        }
        Json::from_value(&v)
    };
    match reply {
        Reply::Now(j) => Reply::Now(rename(j)),
        Reply::Relay(items) => Reply::Relay(boxed_stream(items.map(move |item| match item {
            Relayed::Answer(Ok(j)) => Relayed::Answer(Ok(rename(j))),
            other => other,
        }))),
    }
}

/// Forwards a request to a federated member's upstream.
pub(super) fn forward(
    e: &Engine,
    ctx: &CallCtx,
    f: &Federated,
    req: &Request,
    method: Method,
    mut params: Map<String, Value>,
) -> Reply {
    let up = f.upstream.clone();
    let asks =
        ctx.stateless.is_some() && matches!(method, Method::ToolsCall | Method::PromptsGet | Method::ResourcesRead);
    // An upstream that may speak 2026-07-28 may answer input_required: its state is sealed.
    let binding = (asks && up.era() != Some(Era::Session))
        .then(|| e.binding(ctx, req))
        .flatten();
    // A tool's parameters marked `x-mcp-header` go in headers too (SEP-2243).
    let mut headers = match (method, f.listing.contains("x-mcp-header")) {
        (Method::ToolsCall, true) => serde_json::from_str::<Value>(&f.listing)
            .map(|t| param_headers(&t, params.get("arguments").unwrap_or(&Value::Null)))
            .unwrap_or_default(),
        _ => http::HeaderMap::new(),
    };
    // The request's trace goes on: a span of its own for the upstream call, named in the
    // `traceparent` header and in `_meta`.
    let trace = ctx.trace.as_ref().map(|t| t.child(e.telemetry.ids()));
    if let Some(t) = &trace {
        let tp = t.traceparent();
        if let Ok(v) = http::HeaderValue::from_str(&tp) {
            headers.insert("traceparent", v);
        }
        match params.get_mut("_meta") {
            Some(Value::Object(meta)) => {
                meta.insert("traceparent".into(), Value::String(tp));
            }
            _ => {
                params.insert("_meta".into(), json!({ "traceparent": tp }));
            }
        }
    }
    let how = Forwarding {
        asks,
        headers,
        caller: ctx.caller.identity.as_ref().map(|i| i.subject.clone()),
        token: ctx.caller.token.clone(),
        base: ctx.caller.base.clone().unwrap_or_default(),
        stateless: ctx.stateless.is_some(),
    };
    let binding = binding.map(Arc::new);
    let (env, fed, b) = (e.envelope.clone(), e.fed.clone(), binding.clone());
    let (session, id) = (ctx.session.clone(), req.id.clone());
    // The upstream's own state put back where the client brought a wrapped one, then the call.
    let items = stream::once(async move {
        match envelope::unwrap(env.as_deref(), b.as_deref(), &up.id, params).await {
            Ok(params) => fed.forward(session, up, id, method, Value::Object(params), how),
            Err(e) => boxed_stream(stream::iter([Relayed::Answer(Err(e))])),
        }
    })
    .flatten();
    let items = observed(&e.telemetry, f, method, trace, boxed_stream(items));
    Reply::Relay(envelope::wrap(e.envelope.clone(), binding, items))
}

/// A forwarded call's stream, timed (per upstream, method and outcome) and, when traces are
/// on, ended with a client span under the request's.
fn observed(
    t: &Telemetry,
    f: &Federated,
    method: Method,
    trace: Option<TraceContext>,
    items: BoxStream<'static, Relayed>,
) -> BoxStream<'static, Relayed> {
    if !t.on() {
        return items;
    }
    let t = t.clone();
    let started = t.now_us();
    let upstream = f.upstream.def.name.clone();
    let name = format!("{} {}", method.name(), f.name);
    let trace = trace.filter(|_| t.traces());
    boxed_stream(items.inspect(move |item| {
        let outcome = match item {
            Relayed::Answer(Ok(_)) => "ok",
            Relayed::Answer(Err(_)) => "error",
            Relayed::Input { .. } => "input_required",
            _ => return,
        };
        t.elapsed(
            &metrics::UPSTREAM_DURATION,
            &[&upstream, method.name(), outcome],
            started,
        );
        if let Some(tc) = &trace {
            t.span(Span {
                trace_id: tc.trace_id.clone(),
                span_id: tc.span_id.clone(),
                parent_id: tc.parent_id.clone(),
                name: name.clone(),
                kind: SpanKind::Client,
                start_us: started,
                end_us: t.now_us(),
                attributes: vec![
                    ("mcpgw.upstream", upstream.clone()),
                    ("rpc.method", method.name().to_string()),
                    ("mcpgw.outcome", outcome.to_string()),
                ],
                error: outcome == "error",
            });
        }
    }))
}

/// Calls a REST tool: its log messages (at the session's level) while it runs, then the result.
pub(super) fn call_rest(e: &Engine, ctx: &CallCtx, tool: Arc<Tool>, args: Map<String, Value>) -> Reply {
    let min = ctx.log_level();
    let rest = e.rest.clone();
    let (tx, rx) = unbounded::<Relayed>();
    let work = async move {
        let log = |level: LogLevel, logger: &str, data: Value| {
            if min.is_some_and(|m| level >= m) {
                let params = json!({"level": level, "logger": logger, "data": data});
                let note = jsonrpc::notification(ServerMethod::Log.name(), Some(params));
                let _ = tx.unbounded_send(Relayed::Message(Json::from_value(&note)));
            }
        };
        let result = rest.call(&tool, args, &log).await;
        let _ = tx.unbounded_send(Relayed::Answer(Ok(Json::from_value(&result))));
    };
    // The call's one sender is `work`'s: the stream ends once it has sent the answer.
    let driver = stream::once(work).filter_map(|()| futures::future::ready(None));
    Reply::Relay(boxed_stream(stream::select(rx, driver)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(reply: Reply) -> String {
        match reply {
            Reply::Now(j) => j.0,
            Reply::Relay(_) => panic!("a reply now"),
        }
    }

    #[test]
    fn contents_read_by_an_alias_say_the_alias_and_odd_results_pass_as_they_are() {
        let read = Json(r#"{"contents":[{"uri":"test://x","text":"a"},{"uri":"test://y","text":"b"}]}"#.into());
        let out = answer(renamed_contents(
            Reply::Now(read),
            "test://x".into(),
            "mcpgw:b/test://x".into(),
        ));
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["contents"][0]["uri"], "mcpgw:b/test://x");
        assert_eq!(v["contents"][1]["uri"], "test://y");
        // A hostile upstream's result that is no object is passed on, not a panic.
        for odd in ["[]", "5", "\"x\"", "null", r#"{"contents":7}"#] {
            let out = answer(renamed_contents(Reply::Now(Json(odd.into())), "a".into(), "b".into()));
            assert_eq!(
                serde_json::from_str::<Value>(&out).ok(),
                serde_json::from_str::<Value>(odd).ok()
            );
        }
    }
}
