//! OpenAPI documents (3.0 and 3.1) as upstreams: each operation becomes a tool. Pure apart from
//! reading the document: the conversion ([`catalog_of`]) gives the catalog the registry stores
//! (the tools' list entries, and for each the [`Operation`] saying where its arguments go), and
//! [`request_of`] turns a call into the HTTP request, which the REST tool path sends.
//!
//! A tool is named after the `operationId` (else `{method}_{path}`), described by the summary
//! (else the description); its input schema has one property per path, query and header
//! parameter, and the JSON request body's properties beside them (or, when the body is not an
//! object or a name is taken, the body whole as `body`). Local `$ref`s are resolved (a cycle is
//! cut to `{}`); cookie parameters and non-JSON bodies are not supported (an operation that
//! requires one is left out).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use percent_encoding::utf8_percent_encode;
use serde_json::{json, Map, Value};

use super::{Net, UpstreamError};
use crate::http::fetch::fetch;
use crate::http::QUERY;
use crate::model::{Catalog, OpenApiSpec, Operation, OperationBody, OperationParam, UpstreamDef};
use crate::ports::{HttpError, OutboundRequest};
use crate::registry::Upstream;

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];
/// How deep `$ref`s are followed inside one schema before the rest is cut to `{}`.
const MAX_REF_DEPTH: usize = 12;

/// Follows a local `$ref` (`#/components/...`), JSON-pointer escaped.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut v = v;
    for _ in 0..MAX_REF_DEPTH {
        match v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => match doc.pointer(pointer) {
                Some(target) => v = target,
                None => return &Value::Null,
            },
            None => return v,
        }
    }
    &Value::Null
}

/// A schema with its local `$ref`s replaced by what they point at, `depth` levels deep; a
/// cycle (or what lies too deep) becomes `{}` (anything).
fn inline(doc: &Value, v: &Value, seen: &mut Vec<String>) -> Value {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                if seen.iter().any(|s| s == r) || seen.len() >= MAX_REF_DEPTH {
                    return json!({});
                }
                let target = resolve(doc, v);
                seen.push(r.to_string());
                let out = inline(doc, target, seen);
                seen.pop();
                return out;
            }
            Value::Object(m.iter().map(|(k, x)| (k.clone(), inline(doc, x, seen))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|x| inline(doc, x, seen)).collect()),
        other => other.clone(),
    }
}

/// A tool name from an operation id or its method and path: `[A-Za-z0-9_.-]{1,128}`.
fn tool_name(op: &Value, method: &str, path: &str) -> String {
    let raw = match op.get("operationId").and_then(Value::as_str) {
        Some(id) if !id.trim().is_empty() => id.trim().to_string(),
        _ => format!("{method}_{}", path.trim_matches('/')),
    };
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    name.truncate(120);
    if name.is_empty() {
        name = method.to_string();
    }
    name
}

/// Why an OpenAPI document gives no catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotOpenApi {
    /// A Swagger 2.0 document.
    #[error("Swagger 2.0 is not supported: convert the document to OpenAPI 3")]
    Swagger2,
    /// No `"openapi": "3.x"`.
    #[error("not an OpenAPI 3.0 or 3.1 document (no \"openapi\": \"3.x\")")]
    NoVersion,
    /// No absolute server URL and no `base_url`.
    #[error("the document names no absolute server URL: set base_url")]
    NoServer,
    /// No `paths` object.
    #[error("the document has no paths")]
    NoPaths,
}

/// Where the API is: `base` if given, else the document's first server (its variables at their
/// defaults, a relative URL taken against the document's own), else the document's origin.
fn base_url(doc: &Value, doc_url: Option<&str>, base: Option<&str>) -> Result<String, NotOpenApi> {
    if let Some(b) = base {
        return Ok(b.trim_end_matches('/').to_string());
    }
    let origin = |u: &str| -> Option<String> {
        let rest = u.split_once("://")?;
        let host = rest.1.split('/').next()?;
        Some(format!("{}://{host}", rest.0))
    };
    let server = doc["servers"].get(0);
    let mut url = server.and_then(|s| s["url"].as_str()).unwrap_or("").to_string();
    if let Some(vars) = server.and_then(|s| s["variables"].as_object()) {
        for (k, v) in vars {
            if let Some(d) = v["default"].as_str() {
                url = url.replace(&format!("{{{k}}}"), d);
            }
        }
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(url.trim_end_matches('/').to_string());
    }
    match doc_url.and_then(origin) {
        Some(o) if url.starts_with('/') || url.is_empty() => Ok(format!("{o}{}", url.trim_end_matches('/'))),
        _ => Err(NotOpenApi::NoServer),
    }
}

/// The catalog of an OpenAPI document read from `doc_url` (none for one given inline), its API
/// at `base` (else as the document says).
pub(crate) fn catalog_of(doc: &Value, doc_url: Option<&str>, base: Option<&str>) -> Result<Catalog, NotOpenApi> {
    let version = doc["openapi"].as_str().unwrap_or_default();
    if !version.starts_with("3.") {
        return Err(match doc.get("swagger") {
            Some(_) => NotOpenApi::Swagger2,
            None => NotOpenApi::NoVersion,
        });
    }
    let base_url = base_url(doc, doc_url, base)?;
    let paths = doc["paths"].as_object().ok_or(NotOpenApi::NoPaths)?;
    let mut tools = Vec::new();
    let mut operations = Vec::new();
    let mut names = HashSet::new();
    for (path, item) in paths {
        let item = resolve(doc, item);
        let shared: Vec<&Value> = item["parameters"].as_array().into_iter().flatten().collect();
        for method in METHODS {
            let Some(op) = item.get(method).filter(|o| o.is_object()) else {
                continue;
            };
            let mut name = tool_name(op, method, path);
            let mut n = 2;
            while names.contains(&name) {
                name = format!("{}_{n}", tool_name(op, method, path));
                n += 1;
            }
            if let Some((tool, operation)) = operation(doc, &name, method, path, op, &shared) {
                names.insert(name);
                tools.push(tool);
                operations.push(operation);
            }
        }
    }
    let info = &doc["info"];
    Ok(Catalog {
        server_info: json!({"name": info["title"].as_str().unwrap_or("openapi"),
            "version": info["version"].as_str().unwrap_or("")}),
        capabilities: json!({"tools": {}}),
        instructions: info["description"].as_str().map(str::to_string),
        tools,
        openapi: Some(OpenApiSpec { base_url, operations }),
        ..Catalog::default()
    })
}

/// One operation's tool entry and call plan; none when it needs what is not supported.
fn operation(
    doc: &Value,
    name: &str,
    method: &str,
    path: &str,
    op: &Value,
    shared: &[&Value],
) -> Option<(Value, Operation)> {
    // The operation's parameters override the path's of the same name and place.
    let mut params: Vec<Value> = Vec::new();
    for p in shared
        .iter()
        .copied()
        .chain(op["parameters"].as_array().into_iter().flatten())
    {
        let p = resolve(doc, p).clone();
        params.retain(|q| !(q["name"] == p["name"] && q["in"] == p["in"]));
        params.push(p);
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut plan = Vec::new();
    for p in &params {
        let (Some(pname), Some(place)) = (p["name"].as_str(), p["in"].as_str()) else {
            continue;
        };
        if !matches!(place, "path" | "query" | "header") {
            if p["required"] == true {
                return None;
            }
            continue;
        }
        let arg = if properties.contains_key(pname) {
            format!("{place}_{pname}")
        } else {
            pname.to_string()
        };
        let mut schema = inline(
            doc,
            p.get("schema").unwrap_or(&json!({"type": "string"})),
            &mut Vec::new(),
        );
        if let (Some(d), Some(m)) = (p["description"].as_str(), schema.as_object_mut()) {
            m.entry("description").or_insert(json!(d));
        }
        if place == "path" || p["required"] == true {
            required.push(json!(arg));
        }
        properties.insert(arg.clone(), schema);
        plan.push(OperationParam {
            arg,
            name: pname.to_string(),
            place: place.to_string(),
        });
    }
    let mut body = None;
    let request_body = resolve(doc, &op["requestBody"]);
    if let Some(content) = request_body["content"].as_object() {
        let json_media = content
            .iter()
            .find(|(t, _)| t.starts_with("application/json") || t.ends_with("+json"));
        let body_required = request_body["required"] == true;
        match json_media {
            None if body_required => return None,
            None => {}
            Some((_, media)) => {
                let schema = inline(doc, media.get("schema").unwrap_or(&json!({})), &mut Vec::new());
                let props = schema["properties"].as_object().filter(|p| {
                    schema["type"].as_str().is_none_or(|t| t == "object")
                        && p.keys().all(|k| !properties.contains_key(k))
                });
                match props {
                    Some(props) => {
                        let args: Vec<String> = props.keys().cloned().collect();
                        properties.extend(props.clone());
                        if body_required {
                            required.extend(schema["required"].as_array().into_iter().flatten().cloned());
                        }
                        body = Some(OperationBody::Fields(args));
                    }
                    None => {
                        let arg = if properties.contains_key("body") {
                            "request_body"
                        } else {
                            "body"
                        };
                        properties.insert(arg.into(), schema);
                        if body_required {
                            required.push(json!(arg));
                        }
                        body = Some(OperationBody::Whole(arg.into()));
                    }
                }
            }
        }
    }
    let mut input = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        input["required"] = Value::Array(required);
    }
    let description = op["summary"]
        .as_str()
        .or_else(|| op["description"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} {path}", method.to_ascii_uppercase()));
    let read_only = matches!(method, "get" | "head" | "options");
    let tool = json!({
        "name": name,
        "description": description,
        "inputSchema": input,
        "annotations": {
            "readOnlyHint": read_only,
            "destructiveHint": method == "delete",
            "idempotentHint": read_only || matches!(method, "put" | "delete"),
            "openWorldHint": true,
        },
    });
    let operation = Operation {
        name: name.to_string(),
        method: method.to_ascii_uppercase(),
        path: path.to_string(),
        params: plan,
        body,
    };
    Some((tool, operation))
}

/// A GET of `url` with the upstream's headers and TLS settings, read whole.
async fn get(
    net: &Net,
    def: &UpstreamDef,
    url: &str,
    timeout_ms: u64,
) -> Result<(http::StatusCode, Bytes), UpstreamError> {
    let mut headers = crate::http::header_map(&def.headers).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    headers.insert(http::header::ACCEPT, HeaderValue::from_static("application/json"));
    let request = OutboundRequest {
        method: http::Method::GET,
        url: url.to_string(),
        headers,
        body: None,
        tls: def.tls.clone().map(Arc::new),
    };
    let timeout = Duration::from_millis(timeout_ms);
    match fetch(&*net.http, &*net.clock, request, timeout, net.max_bytes).await {
        Ok((resp, body)) => Ok((resp.status, body)),
        Err(HttpError::Timeout(ms)) => Err(UpstreamError::Timeout(ms)),
        Err(e) => Err(UpstreamError::Unreachable(e.to_string())),
    }
}

/// Reads an OpenAPI upstream's document (from its URL, or inline) and makes its catalog.
pub(crate) async fn read(net: &Net, def: &UpstreamDef, timeout_ms: u64) -> Result<Catalog, UpstreamError> {
    let doc = match (&def.openapi, &def.url) {
        (Some(inline), _) => inline.value(),
        (None, Some(url)) => {
            let (status, body) = get(net, def, url, timeout_ms).await?;
            if !status.is_success() {
                return Err(UpstreamError::Protocol(format!(
                    "the document at {url} answered {status}"
                )));
            }
            serde_json::from_slice(&body).map_err(|e| {
                UpstreamError::Protocol(format!(
                    "the document at {url} is not JSON ({e}); a YAML document must be converted to JSON"
                ))
            })?
        }
        (None, None) => return Err(UpstreamError::Protocol("no document".into())),
    };
    catalog_of(&doc, def.url.as_deref(), def.base_url.as_deref()).map_err(|e| UpstreamError::Protocol(e.to_string()))
}

/// Whether an OpenAPI upstream is there: its document still reads, or (inline) its API answers
/// at all (a status under 500).
pub(crate) async fn probe(net: &Net, up: &Upstream, timeout_ms: u64) -> Result<(), UpstreamError> {
    let def = &up.def;
    // The document where it is read from; an inline one's API itself (any answer but a server
    // error means it is there). The snapshot's upstream carries its base URL, not its catalog.
    let inline_base = up.base_url.clone().or_else(|| {
        def.catalog
            .as_ref()
            .and_then(|c| c.openapi.as_ref())
            .map(|s| s.base_url.clone())
    });
    let (url, any_status) = match (&def.url, inline_base) {
        (Some(doc), _) => (doc.clone(), false),
        (None, Some(base)) => (base, true),
        (None, None) => {
            return Err(UpstreamError::Protocol(
                "no document URL and no API base URL to probe".into(),
            ))
        }
    };
    let (status, _) = get(net, def, &url, timeout_ms).await?;
    if status.is_success() || (any_status && !status.is_server_error()) {
        Ok(())
    } else {
        Err(UpstreamError::Unreachable(format!("{url} answered {status}")))
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The HTTP request of a call to `op` at `base`, with the upstream's `headers`: path
/// parameters in the path, query parameters in the query (an array repeated), header
/// parameters in headers, the body as JSON.
pub(crate) fn request_of(
    base: &str,
    op: &Operation,
    headers: &BTreeMap<String, String>,
    mut args: Map<String, Value>,
) -> Result<OutboundRequest, HttpError> {
    let mut path = op.path.clone();
    let mut query = Vec::new();
    let mut h = crate::http::header_map(headers)?;
    for p in &op.params {
        let Some(v) = args.remove(&p.arg) else { continue };
        match p.place.as_str() {
            "path" => {
                let value = utf8_percent_encode(&text(&v), QUERY).to_string();
                path = path.replace(&format!("{{{}}}", p.name), &value);
            }
            "query" => {
                let values = match v {
                    Value::Array(items) => items,
                    one => vec![one],
                };
                for item in values {
                    query.push(format!(
                        "{}={}",
                        utf8_percent_encode(&p.name, QUERY),
                        utf8_percent_encode(&text(&item), QUERY)
                    ));
                }
            }
            _ => {
                let name = http::HeaderName::from_bytes(p.name.as_bytes())
                    .map_err(|_| HttpError::InvalidHeader(p.name.clone()))?;
                let value = HeaderValue::from_str(&text(&v)).map_err(|_| HttpError::InvalidHeader(p.name.clone()))?;
                h.insert(name, value);
            }
        }
    }
    if path.contains('{') {
        return Err(HttpError::InvalidUrl(format!(
            "a path parameter of {} is missing",
            op.path
        )));
    }
    let mut url = format!("{base}{path}");
    if !query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&query.join("&"));
    }
    let body = match &op.body {
        Some(OperationBody::Whole(arg)) => args.remove(arg),
        Some(OperationBody::Fields(fields)) => {
            let body: Map<String, Value> = fields.iter().filter_map(|f| args.remove_entry(f)).collect();
            (!body.is_empty()).then_some(Value::Object(body))
        }
        None => None,
    };
    h.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json, text/plain;q=0.9, */*;q=0.8"),
    );
    let body = body.map(|b| {
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Bytes::from(serde_json::to_vec(&b).unwrap_or_default())
    });
    Ok(OutboundRequest {
        method: http::Method::from_bytes(op.method.as_bytes()).unwrap_or(http::Method::GET),
        url,
        headers: h,
        body,
        tls: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {"title": "Pets", "version": "2"},
            "servers": [{"url": "/api/{v}", "variables": {"v": {"default": "v2"}}}],
            "components": {
                "schemas": {
                    "Pet": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"}, "tag": {"type": "string"},
                        "parent": {"$ref": "#/components/schemas/Pet"}}}
                },
                "parameters": {"Limit": {"name": "limit", "in": "query", "schema": {"type": "integer"}}}
            },
            "paths": {
                "/pets/{petId}": {
                    "parameters": [{"name": "petId", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "get": {"operationId": "getPet", "summary": "One pet",
                            "parameters": [{"name": "X-Trace", "in": "header", "schema": {"type": "string"}}]},
                    "delete": {"operationId": "delete pet!"}
                },
                "/pets": {
                    "get": {"operationId": "listPets", "parameters": [{"$ref": "#/components/parameters/Limit"},
                        {"name": "tag", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}}]},
                    "post": {"operationId": "createPet", "requestBody": {"required": true,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}},
                    "put": {"requestBody": {"required": true, "content": {"text/csv": {}}}}
                }
            }
        })
    }

    fn op<'a>(c: &'a Catalog, name: &str) -> &'a Operation {
        c.openapi
            .as_ref()
            .unwrap()
            .operations
            .iter()
            .find(|o| o.name == name)
            .unwrap()
    }

    #[test]
    fn operations_become_tools_with_their_arguments_placed() {
        let c = catalog_of(&doc(), Some("https://pets.example.com/openapi.json"), None).unwrap();
        assert_eq!(c.openapi.as_ref().unwrap().base_url, "https://pets.example.com/api/v2");
        let mut names: Vec<&str> = c.tools.iter().filter_map(|t| t["name"].as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            ["createPet", "delete_pet_", "getPet", "listPets"],
            "the CSV-only put is left out"
        );
        let get = c.tools.iter().find(|t| t["name"] == "getPet").unwrap();
        assert_eq!(get["description"], "One pet");
        assert_eq!(get["inputSchema"]["required"], json!(["petId"]));
        assert_eq!(get["annotations"]["readOnlyHint"], true);
        let create = c.tools.iter().find(|t| t["name"] == "createPet").unwrap();
        assert_eq!(create["inputSchema"]["required"], json!(["name"]));
        assert_eq!(
            create["inputSchema"]["properties"]["parent"],
            json!({}),
            "the cycle cut"
        );
        assert_eq!(
            op(&c, "createPet").body,
            Some(OperationBody::Fields(vec![
                "name".into(),
                "parent".into(),
                "tag".into()
            ]))
        );
        let list = c.tools.iter().find(|t| t["name"] == "listPets").unwrap();
        assert_eq!(
            list["inputSchema"]["properties"]["limit"]["type"], "integer",
            "a $ref parameter"
        );
    }

    #[test]
    fn a_call_becomes_the_request_the_operation_describes() {
        let c = catalog_of(&doc(), Some("https://pets.example.com/openapi.json"), None).unwrap();
        let base = &c.openapi.as_ref().unwrap().base_url;
        let headers = BTreeMap::from([("x-api-key".to_string(), "k1".to_string())]);
        let args = |v: Value| v.as_object().cloned().unwrap();
        let r = request_of(
            base,
            op(&c, "getPet"),
            &headers,
            args(json!({"petId": "a b/c", "X-Trace": "t1"})),
        )
        .unwrap();
        assert_eq!(r.url, "https://pets.example.com/api/v2/pets/a%20b%2Fc");
        assert_eq!(r.headers["x-trace"], "t1");
        assert_eq!(r.headers["x-api-key"], "k1");
        assert!(r.body.is_none());
        let r = request_of(
            base,
            op(&c, "listPets"),
            &headers,
            args(json!({"limit": 5, "tag": ["a", "b"]})),
        )
        .unwrap();
        assert_eq!(r.url, "https://pets.example.com/api/v2/pets?limit=5&tag=a&tag=b");
        let r = request_of(
            base,
            op(&c, "createPet"),
            &headers,
            args(json!({"name": "Rex", "tag": "dog"})),
        )
        .unwrap();
        assert_eq!(r.method, http::Method::POST);
        let body: Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(body, json!({"name": "Rex", "tag": "dog"}));
        assert!(
            request_of(base, op(&c, "getPet"), &headers, args(json!({}))).is_err(),
            "no path parameter"
        );
    }

    #[test]
    fn what_is_not_openapi_3_is_refused_saying_why() {
        assert!(catalog_of(&json!({"swagger": "2.0"}), None, None)
            .unwrap_err()
            .to_string()
            .contains("Swagger 2.0"));
        assert!(catalog_of(&json!({"openapi": "3.0.3", "paths": {}}), None, None)
            .unwrap_err()
            .to_string()
            .contains("base_url"));
        let c = catalog_of(&json!({"openapi": "3.0.3", "paths": {}}), None, Some("http://h/")).unwrap();
        assert_eq!(c.openapi.unwrap().base_url, "http://h");
    }
}
