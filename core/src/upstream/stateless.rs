//! Calling an upstream that speaks 2026-07-28: no `initialize` and no session. The link is
//! opened by `server/discover`; every request then carries in `params._meta` the revision, the
//! client's capabilities and its info (the caller's own, when it sent them), and mirrors in
//! headers its method and the name it acts on (`Mcp-Method`, `Mcp-Name`). Pure: building the
//! requests and reading the discovery; the POSTs are the streamable transport's.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

use super::Hello;
use crate::proto::meta;
use crate::proto::method::Method;
use crate::proto::version::{Era, ProtocolVersion};

use crate::proto::headers::{MCP_METHOD, MCP_NAME};

/// The revision a stateless link speaks.
pub(super) const STATELESS_REVISION: ProtocolVersion = ProtocolVersion::V2026_07_28;

/// The gateway's own client info, for a hello that has none.
pub(super) fn client_info(hello: &Hello) -> Value {
    if hello.client_info.is_object() {
        hello.client_info.clone()
    } else {
        json!({"name": "mcpgw", "version": env!("CARGO_PKG_VERSION")})
    }
}

/// `params` with the `_meta` a stateless request needs: the caller's own keys kept (a stateless
/// client's capabilities and log level go on to the upstream), the revision set to the one
/// the link speaks, the hello's capabilities and info where the caller sent none. (A session's
/// log level is added by its call: it may change after the link opened.)
pub(super) fn stamp(params: Option<&Value>, hello: &Hello) -> Value {
    let mut p = match params {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let meta = p.entry("_meta").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Some(m) = meta.as_object_mut() {
        m.insert(meta::PROTOCOL_VERSION.into(), json!(STATELESS_REVISION.as_str()));
        if !m.get(meta::CLIENT_CAPABILITIES).is_some_and(Value::is_object) {
            m.insert(meta::CLIENT_CAPABILITIES.into(), hello.capabilities.clone());
        }
        if !m.get(meta::CLIENT_INFO).is_some_and(Value::is_object) {
            m.insert(meta::CLIENT_INFO.into(), client_info(hello));
        }
    }
    Value::Object(p)
}

/// The headers that mirror a request's body: `Mcp-Method`, and `Mcp-Name` for the methods that
/// act on a named tool, prompt or resource.
pub(crate) fn mirror_headers(method: &str, params: &Value) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(2);
    if let Ok(v) = HeaderValue::from_str(method) {
        h.insert(MCP_METHOD, v);
    }
    let name = match Method::parse(method) {
        Some(Method::ToolsCall | Method::PromptsGet) => params.get("name"),
        Some(Method::ResourcesRead) => params.get("uri"),
        _ => None,
    };
    if let Some(v) = name
        .and_then(Value::as_str)
        .and_then(|n| HeaderValue::from_str(&meta::encode_header_value(n)).ok())
    {
        h.insert(MCP_NAME, v);
    }
    h
}

/// The `Mcp-Param-{Name}` headers a `tools/call` with `arguments` carries for a tool whose
/// input schema (`tool`, its list entry) marks properties with `x-mcp-header: Name` (SEP-2243):
/// a string as a header value (`=?base64?…?=` where it must be), a number or boolean as its
/// JSON text; absent or other values send none.
pub(crate) fn param_headers(tool: &Value, arguments: &Value) -> HeaderMap {
    let mut h = HeaderMap::new();
    let props = tool["inputSchema"]["properties"].as_object();
    for (prop, schema) in props.into_iter().flatten() {
        let Some(name) = schema.get("x-mcp-header").and_then(Value::as_str) else {
            continue;
        };
        let value = match arguments.get(prop) {
            Some(Value::String(s)) => meta::encode_header_value(s),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            _ => continue,
        };
        let header = HeaderName::from_bytes(format!("mcp-param-{name}").as_bytes());
        if let (Ok(k), Ok(v)) = (header, HeaderValue::from_str(&value)) {
            h.insert(k, v);
        }
    }
    h
}

/// What `server/discover` answered, as the link's `init` (the shape of an `initialize`
/// result: the revision chosen, capabilities, serverInfo, instructions), if the upstream
/// serves a stateless revision this gateway speaks.
pub(super) fn discovered(answer: &Value) -> Option<Value> {
    let result = answer.get("result")?;
    let speaks = result
        .get("supportedVersions")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .filter_map(ProtocolVersion::parse)
        .any(|v| v == STATELESS_REVISION && v.era() == Era::Stateless);
    if !speaks {
        return None;
    }
    let info = result
        .get("_meta")
        .and_then(|m| m.get(meta::SERVER_INFO))
        .or_else(|| result.get("serverInfo"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut init = json!({
        "protocolVersion": STATELESS_REVISION.as_str(),
        "capabilities": result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "serverInfo": info,
    });
    if let Some(i) = result.get("instructions").filter(|i| i.is_string()) {
        init["instructions"] = i.clone();
    }
    Some(init)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            capabilities: json!({"sampling": {}}),
            client_info: json!({"name": "client", "version": "1"}),
            prefer: Era::Stateless,
            acting_for: None,
        }
    }

    #[test]
    fn stamping_keeps_the_callers_own_meta_and_fills_in_the_rest() {
        let own = json!({"name": "t", "_meta": {"progressToken": 7, meta::CLIENT_CAPABILITIES: {"elicitation": {}}, meta::PROTOCOL_VERSION: "2025-11-25"}});
        let p = stamp(Some(&own), &hello());
        let m = &p["_meta"];
        assert_eq!(m["progressToken"], 7);
        assert_eq!(m[meta::PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(m[meta::CLIENT_CAPABILITIES], json!({"elicitation": {}}));
        assert_eq!(m[meta::CLIENT_INFO]["name"], "client");
        let bare = stamp(None, &hello());
        assert_eq!(bare["_meta"][meta::CLIENT_CAPABILITIES], json!({"sampling": {}}));
    }

    #[test]
    fn mirrored_headers_name_the_tool_or_resource_encoded_when_needed() {
        let h = mirror_headers(Method::ToolsCall.name(), &json!({"name": "say hi "}));
        assert_eq!(h[&MCP_METHOD], "tools/call");
        assert_eq!(h[&MCP_NAME], &meta::encode_header_value("say hi "));
        assert!(h[&MCP_NAME].to_str().unwrap().starts_with("=?base64?"));
        let r = mirror_headers(Method::ResourcesRead.name(), &json!({"uri": "test://x"}));
        assert_eq!(r[&MCP_NAME], "test://x");
        assert!(mirror_headers(Method::ToolsList.name(), &json!({}))
            .get(&MCP_NAME)
            .is_none());
    }

    #[test]
    fn marked_parameters_are_mirrored_in_their_headers() {
        let tool = json!({"inputSchema": {"properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "count": {"type": "integer", "x-mcp-header": "Count"},
            "city": {"type": "string", "x-mcp-header": "City"},
            "free": {"type": "string"}}}});
        let h = param_headers(
            &tool,
            &json!({"region": "eu-west", "count": 3, "city": "Zürich", "free": "x"}),
        );
        assert_eq!(h["mcp-param-region"], "eu-west");
        assert_eq!(h["mcp-param-count"], "3");
        assert_eq!(h["mcp-param-city"], &meta::encode_header_value("Zürich"));
        assert_eq!(h.len(), 3);
        assert!(param_headers(&tool, &json!({})).is_empty());
    }

    #[test]
    fn discovery_is_read_only_when_the_stateless_revision_is_offered() {
        let ok = json!({"result": {"supportedVersions": ["2025-11-25", "2026-07-28"], "capabilities": {"tools": {}},
            "_meta": {meta::SERVER_INFO: {"name": "up", "version": "2"}}}});
        let init = discovered(&ok).expect("stateless");
        assert_eq!(init["protocolVersion"], "2026-07-28");
        assert_eq!(init["serverInfo"]["name"], "up");
        assert_eq!(init["capabilities"], json!({"tools": {}}));
        assert!(discovered(&json!({"result": {"supportedVersions": ["2025-11-25"]}})).is_none());
        assert!(discovered(&json!({"error": {"code": -32601, "message": "no"}})).is_none());
    }
}
