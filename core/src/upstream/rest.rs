//! REST-backed tools: arguments checked against the input schema, sent as the URL's template
//! variables plus a JSON body or query string, and the response returned as tool content.
//! An HTTP failure is a tool result with `isError: true`, never a protocol error.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::HeaderValue;
use percent_encoding::utf8_percent_encode;
use serde_json::{json, Map, Value};

use crate::http::fetch::fetch;
use crate::netguard::NetPolicy;
use crate::platform::MaybeSync;
use crate::ports::{Clock, HttpClient, HttpError, OutboundRequest};
use crate::proto::logging::LogLevel;
use crate::registry::Tool;
use crate::uri_template::UriTemplate;

use crate::http::QUERY;

fn error_result(text: String) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

fn type_ok(expected: &str, v: &Value) -> bool {
    match expected {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// What is wrong with a call's arguments, for the model to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ArgumentError {
    /// A required argument is absent.
    #[error("missing required argument \"{0}\"")]
    Missing(String),
    /// An argument of another type than its schema says (the schema's `type`).
    #[error("argument \"{0}\" must be of type {1}")]
    WrongType(String, String),
    /// An argument the schema does not allow (`additionalProperties: false`).
    #[error("unexpected argument \"{0}\"")]
    Unexpected(String),
}

/// Checks required properties and top-level types; returns what is wrong, for the model to fix.
pub(crate) fn check_arguments(schema: &Value, args: &Map<String, Value>) -> Result<(), ArgumentError> {
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !args.contains_key(r) {
                return Err(ArgumentError::Missing(r.to_string()));
            }
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in args {
            let Some(t) = props.get(k).and_then(|p| p.get("type")) else {
                continue;
            };
            let ok = match t {
                Value::String(s) => type_ok(s, v),
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(|s| type_ok(s, v)),
                _ => true,
            };
            if !ok {
                return Err(ArgumentError::WrongType(k.clone(), t.to_string()));
            }
        }
        if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
            if let Some(extra) = args.keys().find(|k| !props.contains_key(*k)) {
                return Err(ArgumentError::Unexpected(extra.clone()));
            }
        }
    }
    Ok(())
}

fn query_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Builds the outbound request for a call.
pub(crate) fn build_request(
    tool: &Tool,
    template: &UriTemplate,
    mut args: Map<String, Value>,
) -> Result<OutboundRequest, HttpError> {
    let mut url = template.expand(&args);
    for v in template.variables() {
        args.remove(v);
    }
    let method = http::Method::from_bytes(tool.def.method.as_bytes()).unwrap_or(http::Method::GET);
    let mut headers = crate::http::header_map(&tool.def.headers)?;
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json, text/plain;q=0.9, */*;q=0.8"),
    );
    let body = if method == http::Method::GET || method == http::Method::DELETE {
        if !args.is_empty() {
            let q: Vec<String> = args
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        utf8_percent_encode(k, QUERY),
                        utf8_percent_encode(&query_value(v), QUERY)
                    )
                })
                .collect();
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&q.join("&"));
        }
        None
    } else {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Some(Bytes::from(
            serde_json::to_vec(&Value::Object(args)).unwrap_or_default(),
        ))
    };
    Ok(OutboundRequest {
        method,
        url,
        headers,
        body,
        tls: None,
    })
}

/// What REST tool calls need: outbound HTTP, time, the SSRF policy and the limits.
pub(crate) struct Rest {
    /// Outbound HTTP.
    pub http: Arc<dyn HttpClient>,
    /// Time (timeouts).
    pub clock: Arc<dyn Clock>,
    /// Which URLs may be called (a tool URL's host may be a template, so it is checked per call).
    pub net: NetPolicy,
    /// The largest response read.
    pub max_bytes: usize,
    /// The timeout of a tool without its own.
    pub timeout_ms: u64,
}

/// Where a REST call's log messages go (level, logger, data).
pub(crate) type Log<'a> = &'a dyn LogFn;

/// What a [`Log`] is: `Sync` on native targets.
pub(crate) trait LogFn: Fn(LogLevel, &str, Value) + MaybeSync {}
impl<F: Fn(LogLevel, &str, Value) + MaybeSync> LogFn for F {}

impl Rest {
    /// Calls a REST tool and shapes the response as a `tools/call` result.
    pub async fn call(&self, tool: &Tool, args: Map<String, Value>, log: Log<'_>) -> Value {
        let name = &tool.def.name;
        if let Err(e) = check_arguments(&tool.def.input_schema.value(), &args) {
            return error_result(format!("Invalid arguments for tool {name}: {e}"));
        }
        let built = match (&tool.op, &tool.url) {
            // An OpenAPI operation: `def.url` is the API's base.
            (Some(op), _) => super::openapi::request_of(&tool.def.url, op, &tool.def.headers, args),
            (None, Some(template)) => build_request(tool, template, args),
            (None, None) => return error_result(format!("Tool {name} has no URL")),
        };
        let request = match built {
            Ok(r) => r,
            Err(e) => return error_result(format!("Tool {name}: {e}")),
        };
        if let Err(e) = self.net.check_url(&request.url) {
            return error_result(format!("Tool {name}: {e}"));
        }
        if crate::uri_template::has_dot_segment(&request.url) {
            return error_result(format!(
                "Tool {name}: the URL's path would hold a '.' or '..' segment (from the arguments?): refused"
            ));
        }
        let (method, url) = (request.method.to_string(), request.url.clone());
        log(LogLevel::Debug, "mcpgw.tools", json!(format!("{name}: {method} {url}")));
        let timeout = Duration::from_millis(tool.def.timeout_ms.unwrap_or(self.timeout_ms));
        let (resp, body) = match fetch(&*self.http, &*self.clock, request, timeout, self.max_bytes).await {
            Ok(r) => r,
            Err(e) => {
                log(
                    LogLevel::Error,
                    "mcpgw.tools",
                    json!(format!("{name}: {method} {url} failed: {e}")),
                );
                return error_result(format!("Tool {name} failed: {method} {url}: {e}"));
            }
        };
        let content_type = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mime = content_type.split(';').next().unwrap_or("").trim().to_string();
        if !resp.status.is_success() {
            let text = String::from_utf8_lossy(&body);
            log(
                LogLevel::Warning,
                "mcpgw.tools",
                json!(format!("{name}: {method} {url} returned {}", resp.status)),
            );
            return error_result(format!("HTTP {} from {method} {url}: {text}", resp.status.as_u16()));
        }
        let b64 = || base64::engine::general_purpose::STANDARD.encode(&body);
        let content = if mime.starts_with("image/") {
            json!({"type": "image", "data": b64(), "mimeType": mime})
        } else if mime.starts_with("audio/") {
            json!({"type": "audio", "data": b64(), "mimeType": mime})
        } else {
            json!({"type": "text", "text": String::from_utf8_lossy(&body)})
        };
        let mut result = json!({"content": [content], "isError": false});
        if tool.def.output_schema.is_some() && (mime == "application/json" || mime.ends_with("+json")) {
            if let Ok(v @ Value::Object(_)) = serde_json::from_slice::<Value>(&body) {
                result["structuredContent"] = v;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ToolDef;
    use crate::uri_template::UriTemplate;

    fn tool(url: &str, method: &str) -> Tool {
        let def: ToolDef = serde_json::from_value(json!({"name": "t", "url": url, "method": method})).unwrap();
        Tool {
            id: "1".into(),
            url: Some(UriTemplate::parse(url).unwrap()),
            fed: None,
            listing: crate::registry::listing::tool_listing(&def),
            def,
            op: None,
        }
    }

    #[test]
    fn get_sends_query_and_fills_path_variables() {
        let args = json!({"city": "São Paulo", "units": "metric", "n": 3})
            .as_object()
            .cloned()
            .unwrap();
        let t = tool("http://h/w/{city}", "GET");
        let r = build_request(&t, t.url.as_ref().unwrap(), args).unwrap();
        assert_eq!(r.url, "http://h/w/S%C3%A3o%20Paulo?n=3&units=metric");
        assert!(r.body.is_none());
    }

    #[test]
    fn post_sends_remaining_arguments_as_json() {
        let args = json!({"id": 7, "name": "x"}).as_object().cloned().unwrap();
        let t = tool("http://h/items/{id}", "POST");
        let r = build_request(&t, t.url.as_ref().unwrap(), args).unwrap();
        assert_eq!(r.url, "http://h/items/7");
        assert_eq!(
            serde_json::from_slice::<Value>(r.body.as_ref().unwrap()).unwrap(),
            json!({"name": "x"})
        );
    }

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}, "required": ["city"]});
        let ok = json!({"city": "x", "n": 2}).as_object().cloned().unwrap();
        assert!(check_arguments(&schema, &ok).is_ok());
        let missing = json!({"n": 2}).as_object().cloned().unwrap();
        assert!(check_arguments(&schema, &missing)
            .unwrap_err()
            .to_string()
            .contains("city"));
        let wrong = json!({"city": "x", "n": 2.5}).as_object().cloned().unwrap();
        assert!(check_arguments(&schema, &wrong)
            .unwrap_err()
            .to_string()
            .contains("\"n\""));
    }
}
