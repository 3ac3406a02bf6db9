//! What the stateless era (2026-07-28) adds to a request's answer: the `server/discover` result,
//! `resultType` and the gateway's `serverInfo` on every result, cache hints on the cacheable
//! ones, and the codes that era gives errors. Pure functions over the answer's text; the engine
//! calls them when a request came without a session.

use serde_json::{json, Map, Value};

use crate::proto::jsonrpc::{self, Json, RpcError};
use crate::proto::logging::LogLevel;
use crate::proto::meta::{self, RequestMeta};
use crate::proto::method::Method;
use crate::proto::version::ProtocolVersion;

/// A stateless request's own context: its metadata (its revision checked as served).
#[derive(Debug)]
pub(crate) struct Modern {
    /// What `params._meta` said.
    pub meta: RequestMeta,
}

/// Whether a shared cache may keep an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheScope {
    /// The same for every caller.
    Public,
    /// Shaped by who asks (members limited by scope).
    Private,
}

impl CacheScope {
    fn as_str(self) -> &'static str {
        match self {
            CacheScope::Public => "public",
            CacheScope::Private => "private",
        }
    }
}

/// True for the methods whose results carry `ttlMs` and `cacheScope`.
pub(crate) fn cacheable(m: Method) -> bool {
    matches!(
        m,
        Method::ServerDiscover
            | Method::ToolsList
            | Method::ResourcesList
            | Method::ResourceTemplatesList
            | Method::PromptsList
            | Method::ResourcesRead
    )
}

/// The cache hint fields of a result, as raw JSON text.
pub(crate) fn cache_fields(ttl_ms: u64, scope: CacheScope) -> [(&'static str, String); 2] {
    [
        ("ttlMs", ttl_ms.to_string()),
        ("cacheScope", format!("\"{}\"", scope.as_str())),
    ]
}

/// `result` with `fields` (raw JSON values) added where it lacks them, and `server_info` under
/// `_meta` (merged into a `_meta` it has). Written into the text when none of those keys
/// appears in it; else parsed once and written again.
pub(crate) fn finish(result: &Json, fields: &[(&str, String)], server_info: &Value) -> Json {
    add(result, fields, Some(server_info))
}

/// `result` with `fields` (raw JSON values) added where it lacks them.
pub(crate) fn with_fields(result: &Json, fields: &[(&str, String)]) -> Json {
    add(result, fields, None)
}

fn add(result: &Json, fields: &[(&str, String)], server_info: Option<&Value>) -> Json {
    let text = result.0.trim();
    let plain = text.starts_with('{')
        && text.ends_with('}')
        && !text.contains("\"_meta\"")
        && fields.iter().all(|(k, _)| !text.contains(&format!("\"{k}\"")));
    if plain {
        let mut out = String::with_capacity(text.len() + 128);
        out.push('{');
        for (k, v) in fields {
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
            out.push_str(v);
            out.push(',');
        }
        if let Some(info) = server_info {
            out.push_str("\"_meta\":{\"");
            out.push_str(meta::SERVER_INFO);
            out.push_str("\":");
            out.push_str(&info.to_string());
            out.push_str("},");
        }
        let rest = text[1..].trim_start();
        if rest == "}" && out.ends_with(',') {
            // Nothing followed: the last comma written goes.
            out.pop();
        }
        out.push_str(rest);
        return Json(out);
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(text) else {
        // Not an object: nothing can be added (a result is always one; pass it on as it is).
        return result.clone();
    };
    for (k, v) in fields {
        if !obj.contains_key(*k) {
            obj.insert((*k).to_string(), serde_json::from_str(v).unwrap_or(Value::Null));
        }
    }
    if let Some(info) = server_info {
        let m = obj.entry("_meta").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = m {
            m.entry(meta::SERVER_INFO).or_insert_with(|| info.clone());
        }
    }
    Json(Value::Object(obj).to_string())
}

/// What of an upstream's message during a call reaches a stateless client on the request's
/// stream: progress, and log messages at or above the level it asked for (none if it asked for
/// none). Requests and other notifications have no place there.
pub(crate) fn on_request_stream(m: Json, min: Option<LogLevel>) -> Option<Json> {
    let v: Value = serde_json::from_str(&m.0).ok()?;
    if v.get("id").is_some() {
        return None;
    }
    match v.get("method").and_then(Value::as_str)? {
        "notifications/progress" => Some(m),
        "notifications/message" => {
            let level: LogLevel = serde_json::from_value(v["params"]["level"].clone()).ok()?;
            (level >= min?).then_some(m)
        }
        _ => None,
    }
}

/// An error as the stateless era codes it: resource not found is -32602 (with `data.uri`).
pub(crate) fn error(mut e: RpcError) -> RpcError {
    if e.code == jsonrpc::RESOURCE_NOT_FOUND {
        e.code = jsonrpc::INVALID_PARAMS;
    }
    e
}

/// The `server/discover` result: every revision served (newest first), the capabilities,
/// instructions if any, and the cache hints (the `serverInfo` is added by [`finish`]).
pub(crate) fn discover(capabilities: Value, instructions: Option<&str>, ttl_ms: u64) -> Json {
    let mut versions = ProtocolVersion::served_names();
    versions.reverse();
    let mut r = json!({
        "supportedVersions": versions,
        "capabilities": capabilities,
        "ttlMs": ttl_ms,
        "cacheScope": CacheScope::Public.as_str(),
    });
    if let Some(i) = instructions {
        r["instructions"] = json!(i);
    }
    Json::from_value(&r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> Value {
        json!({"name": "mcpgw", "version": "1"})
    }

    #[test]
    fn a_result_gets_its_type_and_the_server_info() {
        let done = finish(
            &Json("{\"tools\":[]}".into()),
            &[("resultType", "\"complete\"".into())],
            &info(),
        );
        let v: Value = serde_json::from_str(&done.0).unwrap();
        assert_eq!(v["resultType"], "complete");
        assert_eq!(v["tools"], json!([]));
        assert_eq!(v["_meta"][meta::SERVER_INFO]["name"], "mcpgw");

        let empty = finish(&Json("{}".into()), &[("resultType", "\"complete\"".into())], &info());
        let v: Value = serde_json::from_str(&empty.0).unwrap();
        assert_eq!(v["resultType"], "complete");
    }

    #[test]
    fn what_a_result_already_has_is_kept() {
        let upstream = Json(r#"{"resultType":"input_required","_meta":{"k":1},"n":1.50}"#.into());
        let mut fields = vec![("resultType", "\"complete\"".to_string())];
        fields.extend(cache_fields(5, CacheScope::Private));
        let v: Value = serde_json::from_str(&finish(&upstream, &fields, &info()).0).unwrap();
        assert_eq!(v["resultType"], "input_required");
        assert_eq!(v["_meta"]["k"], 1);
        assert_eq!(v["_meta"][meta::SERVER_INFO]["version"], "1");
        assert_eq!(v["ttlMs"], 5);
        assert_eq!(v["cacheScope"], "private");
    }

    #[test]
    fn discover_names_every_served_revision_newest_first() {
        let d: Value = serde_json::from_str(&discover(json!({"tools": {}}), Some("hi"), 7).0).unwrap();
        assert_eq!(d["supportedVersions"][0], "2026-07-28");
        assert!(d["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2025-11-25")));
        assert_eq!(
            (d["ttlMs"].as_u64(), d["cacheScope"].as_str()),
            (Some(7), Some("public"))
        );
        assert_eq!(d["instructions"], "hi");
        assert_eq!(error(RpcError::new(jsonrpc::RESOURCE_NOT_FOUND, "x")).code, -32602);
        assert!(cacheable(Method::ResourcesRead) && !cacheable(Method::ToolsCall));
    }

    #[test]
    fn a_request_stream_carries_progress_and_only_the_logs_asked_for() {
        let progress = Json(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#.into());
        let info =
            Json(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#.into());
        let request = Json(r#"{"jsonrpc":"2.0","id":"mcpgw-1","method":"sampling/createMessage"}"#.into());
        let changed = Json(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#.into());
        assert!(on_request_stream(progress.clone(), None).is_some());
        assert!(on_request_stream(info.clone(), None).is_none());
        assert!(on_request_stream(info.clone(), Some(LogLevel::Debug)).is_some());
        assert!(on_request_stream(info, Some(LogLevel::Warning)).is_none());
        assert!(on_request_stream(request, Some(LogLevel::Debug)).is_none());
        assert!(on_request_stream(changed, Some(LogLevel::Debug)).is_none());
    }
}
